//! `update` without a terminal or a database: one action in, state and
//! effects out.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use mission_control::console::action::{
    Action, ChangeNote, DbEvent, Effect, Failure, Mutation, MutationRequest, Outcome, RequestId, UndoRecipe,
};
use mission_control::console::data::{DetailData, InboxData, Loaded, Query, QueryKey};
use mission_control::console::keymap::Command;
use mission_control::console::state::{
    AppState, ConsoleOptions, DbHealth, Focus, FormKind, InputKind, Overlay, Screen, ToastLevel,
};
use mission_control::console::sync::LocalWorker;
use mission_control::console::update::update;
use mission_control::domain::*;
use mission_control::snapshot::RestoreReport;
use mission_control::snapshot::restore::KindCounts;
use mission_control::store::agents::AgentLoad;
use mission_control::store::board::{BoardLane, Card};
use mission_control::store::handoffs::NewHandoff;
use mission_control::store::tasks::Position;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

fn project(id: i64, key: &str) -> Project {
    Project {
        id,
        key: key.into(),
        name: format!("{key} project"),
        description: String::new(),
        settings: serde_json::json!({}),
        dashboard: serde_json::json!({}),
        last_task_number: 0,
        archived: false,
        version: 1,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn card(n: i64) -> Card {
    Card {
        id: n,
        key: format!("MC-{n}"),
        title: format!("task {n}"),
        priority: Priority::Medium,
        assignee: None,
        labels: vec![],
        due_on: None,
        rank: n * 10,
        version: 1,
        open_handoffs: 0,
        sync_state: None,
        updated_at: NOW,
    }
}

/// Lanes with `total` cards each, of which the first 50 are loaded.
fn board(totals: &[(&str, i64)]) -> Vec<BoardLane> {
    let mut next = 1;
    totals
        .iter()
        .enumerate()
        .map(|(i, (name, total))| {
            let cards: Vec<Card> = (0..(*total).min(50)).map(|k| card(next + k)).collect();
            next += total;
            BoardLane {
                lane: Lane {
                    id: i as i64 + 1,
                    project_id: 1,
                    name: name.to_string(),
                    position: i as i32 + 1,
                    wip_limit: None,
                    category: LaneCategory::Unstarted,
                    role: LaneRole::Normal,
                    visible: true,
                    sync: true,
                    open_count: *total as i32,
                },
                cards,
            }
        })
        .collect()
}

fn state() -> AppState {
    let mut state = AppState::new(project(1, "MC"), "ana", &ConsoleOptions::defaults(false), NOW);
    state.conn.db = DbHealth::Connected;
    state
}

fn loaded(state: &mut AppState, key: QueryKey, result: Loaded) -> Vec<Effect> {
    let id = state.requests.issue(key);
    update(state, Action::Loaded { id, result: Ok(result) })
}

fn with_board(totals: &[(&str, i64)]) -> AppState {
    let mut s = state();
    loaded(&mut s, QueryKey::Board, Loaded::Board(board(totals)));
    s
}

fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Action {
    let m = if c.is_ascii_uppercase() { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
    Action::Key(KeyEvent::new(KeyCode::Char(c), m))
}

fn typed(state: &mut AppState, text: &str) -> Vec<Effect> {
    text.chars().flat_map(|c| update(state, ch(c))).collect()
}

fn mutation(effects: &[Effect]) -> &Mutation {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Mutate { request, .. } => Some(&request.mutation),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no mutation in {effects:?}"))
}

fn queries(effects: &[Effect]) -> Vec<&Query> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Query { query, .. } => Some(query),
            _ => None,
        })
        .collect()
}

fn task(key: &str, lane: &str, version: i32) -> Task {
    Task {
        id: 1,
        project_id: 1,
        key: key.into(),
        number: 1,
        title: "t".into(),
        description: String::new(),
        lane_id: 2,
        lane: lane.into(),
        lane_category: LaneCategory::Unstarted,
        rank: 1,
        priority: Priority::Medium,
        assignee: None,
        assignee_id: None,
        labels: vec![],
        due_on: None,
        cycle_id: None,
        cycle: None,
        modules: vec![],
        archived: false,
        version,
        created_by: "ana".into(),
        created_at: NOW,
        updated_at: NOW,
    }
}

fn handoff(id: i64, key: &str, state: HandoffState) -> Handoff {
    Handoff {
        id,
        project_id: 1,
        task_id: 1,
        task_key: key.into(),
        kind: HandoffKind::Blocked,
        from_agent: Some("bo".into()),
        to_agent: "ana".into(),
        reason: "waiting for creds".into(),
        needs: String::new(),
        due_at: None,
        state,
        resolution: String::new(),
        opened_by: "bo".into(),
        version: 1,
        created_at: NOW,
        updated_at: NOW,
        closed_at: None,
    }
}

/// The one change in `effects`, with its request.
fn sent(effects: Vec<Effect>) -> (RequestId, Box<MutationRequest>) {
    effects
        .into_iter()
        .find_map(|e| match e {
            Effect::Mutate { id, request } => Some((id, request)),
            _ => None,
        })
        .expect("a change was sent")
}

fn agent(handle: &str, name: &str, in_progress: i64) -> AgentLoad {
    AgentLoad {
        agent: Agent {
            id: 1,
            handle: handle.into(),
            display_name: name.into(),
            kind: AgentKind::Human,
            status: AgentStatus::Available,
            capacity: 3,
            skills: vec![],
            last_seen_at: None,
            version: 1,
        },
        in_progress,
    }
}

#[test]
fn start_loads_the_board_agents_audit_tail_and_sync_health() {
    let mut s = state();
    let effects = mission_control::console::update::start(&mut s);
    let kinds: Vec<QueryKey> = queries(&effects).iter().map(|q| q.key()).collect();
    assert_eq!(kinds, [QueryKey::Board, QueryKey::Agents, QueryKey::AuditTail, QueryKey::SyncHealth]);
}

#[test]
fn moving_down_scrolls_and_pages_in_more_cards() {
    let mut s = with_board(&[("Ready", 500), ("Done", 3)]);
    assert_eq!(s.board.selected().unwrap().key, "MC-1");
    let mut requested = Vec::new();
    for _ in 0..60 {
        requested.extend(update(&mut s, ch('j')));
    }
    let column = s.board.column().unwrap();
    assert_eq!(column.cursor, 60);
    assert!(column.scroll > 0 && column.scroll <= 60, "scroll follows the cursor: {}", column.scroll);
    let windows: Vec<_> = queries(&requested).into_iter().filter(|q| matches!(q, Query::LaneWindow { .. })).collect();
    assert_eq!(windows.len(), 1, "one window request, not one per key: {windows:?}");
    // The window arrives and the card under the cursor is known.
    let Query::LaneWindow { lane_id, offset, .. } = windows[0].clone() else { unreachable!() };
    let cards: Vec<Card> = (offset..offset + 120).map(|i| card(i + 1)).collect();
    loaded(&mut s, QueryKey::LaneWindow(lane_id), Loaded::LaneWindow { lane_id, offset, cards });
    assert_eq!(s.board.selected().unwrap().key, "MC-61");
    // G jumps to the end, gg... g to the top.
    update(&mut s, ch('G'));
    assert_eq!(s.board.column().unwrap().cursor, 499);
    update(&mut s, ch('g'));
    assert_eq!(s.board.column().unwrap().cursor, 0);
    update(&mut s, ch('l'));
    assert_eq!(s.board.lane, 1);
    update(&mut s, ch('l'));
    assert_eq!(s.board.lane, 1, "no lane past the last");
}

#[test]
fn screens_switch_by_number_and_load_their_data() {
    let mut s = with_board(&[("Ready", 2)]);
    let effects = update(&mut s, ch('1'));
    assert_eq!(s.screen, Screen::Inbox);
    assert!(matches!(queries(&effects)[0], Query::Inbox { operator } if operator == "ana"));
    for (c, screen) in [
        ('2', Screen::Today),
        ('4', Screen::Planning),
        ('5', Screen::Delivery),
        ('6', Screen::Risks),
        ('7', Screen::Recovery),
        ('8', Screen::Settings),
        ('3', Screen::Work),
    ] {
        let effects = update(&mut s, ch(c));
        assert_eq!(s.screen, screen);
        assert_eq!(queries(&effects).len(), 1, "{screen:?} loads once");
    }
    update(&mut s, ch(']'));
    assert_eq!(s.screen, Screen::Planning);
}

#[test]
fn moving_a_card_is_optimistic_and_versioned() {
    let mut s = with_board(&[("Ready", 3), ("Review", 1)]);
    update(&mut s, ch('j')); // MC-2
    let effects = update(&mut s, ch('L'));
    match mutation(&effects) {
        Mutation::Move { key, lane, position, expect_version } => {
            assert_eq!(
                (key.as_str(), lane.as_deref(), position, *expect_version),
                ("MC-2", Some("Review"), &Position::Top, Some(1))
            );
        }
        other => panic!("{other:?}"),
    }
    // Shown at once: the card is at the top of Review and selected there.
    assert_eq!(s.board.lane, 1);
    assert_eq!(s.board.selected().unwrap().key, "MC-2");
    assert_eq!(s.board.columns[0].total, 2);
    assert_eq!(s.board.columns[1].total, 2);
    assert_eq!(s.requests.mutations_in_flight, 1);
    // Reordering within a lane.
    let effects = update(&mut s, ch('J'));
    assert!(matches!(mutation(&effects), Mutation::Move { position: Position::Down, lane: None, .. }));
    assert_eq!(s.board.selected().unwrap().key, "MC-2");
    assert_eq!(s.board.column().unwrap().cursor, 1);
}

#[test]
fn read_only_and_offline_sessions_refuse_changes_with_a_message() {
    let mut s = with_board(&[("Ready", 2), ("Done", 0)]);
    s.read_only = true;
    assert!(update(&mut s, ch('L')).is_empty());
    assert!(s.toasts.last().unwrap().text.contains("read-only"));
    assert_eq!(s.board.columns[0].total, 2, "nothing moved on screen either");
    s.read_only = false;
    update(&mut s, Action::Db(DbEvent::Lost("connection refused".into())));
    assert!(matches!(s.conn.db, DbHealth::Reconnecting { .. }));
    assert!(update(&mut s, ch('L')).is_empty());
    assert!(s.toasts.last().unwrap().text.contains("unreachable"));
    assert_eq!(s.board.columns[0].total, 2);
    // Back again: the console says so and catches up.
    let effects = update(&mut s, Action::Db(DbEvent::Connected));
    assert_eq!(s.conn.db, DbHealth::Connected);
    assert!(s.toasts.last().unwrap().text.contains("reconnected"));
    assert!(queries(&effects).iter().any(|q| q.key() == QueryKey::Board));
}

#[test]
fn stale_results_are_dropped_newest_wins() {
    let mut s = state();
    let old = s.requests.issue(QueryKey::Board);
    let new = s.requests.issue(QueryKey::Board);
    update(&mut s, Action::Loaded { id: old, result: Ok(Loaded::Board(board(&[("Old", 1)]))) });
    assert!(s.board.columns.is_empty(), "an older result is ignored");
    update(&mut s, Action::Loaded { id: new, result: Ok(Loaded::Board(board(&[("New", 1)]))) });
    assert_eq!(s.board.columns[0].lane.name, "New");
    assert_eq!(s.conn.last_refresh, Some(NOW));
}

#[test]
fn success_toasts_reloads_and_can_be_undone_as_an_undo() {
    let mut s = with_board(&[("Ready", 3), ("Review", 0)]);
    let (id, request) = sent(update(&mut s, ch('L')));
    let outcome = Outcome::Task(Box::new(task("MC-1", "Review", 2)));
    let effects = update(&mut s, Action::Mutated { id, request, result: Ok(outcome) });
    assert_eq!(s.toasts.last().unwrap().level, ToastLevel::Success);
    assert!(queries(&effects).iter().any(|q| q.key() == QueryKey::Board), "the database's truth is reloaded");
    assert_eq!(s.undo.len(), 1);
    let effects = update(&mut s, ch('u'));
    let Effect::Mutate { request, .. } = &effects[0] else { panic!("{effects:?}") };
    assert_eq!(
        request.mutation,
        Mutation::Move {
            key: "MC-1".into(),
            lane: Some("Ready".into()),
            position: Position::Before("MC-2".into()),
            expect_version: Some(2),
        }
    );
    assert!(request.reason.as_deref().unwrap().starts_with("undo of"));
    assert!(request.undo.is_none(), "an undo does not itself become undoable");
    assert!(s.undo.is_empty());
    update(&mut s, ch('u'));
    assert!(s.toasts.last().unwrap().text.contains("nothing to undo"));
}

#[test]
fn a_conflict_says_so_and_reloads() {
    let mut s = with_board(&[("Ready", 1), ("Review", 0)]);
    let (id, request) = sent(update(&mut s, ch('L')));
    let failure = Failure::Conflict {
        key: "MC-1".into(),
        message: "task MC-1 was changed by someone else (you had version 1, it is now 3)".into(),
    };
    let effects = update(&mut s, Action::Mutated { id, request, result: Err(failure) });
    let toast = s.toasts.last().unwrap();
    assert_eq!(toast.level, ToastLevel::Error);
    assert!(toast.text.contains("changed by someone else") && toast.text.contains("reloaded"), "{}", toast.text);
    assert!(queries(&effects).iter().any(|q| q.key() == QueryKey::Board));
    assert!(s.undo.is_empty());
}

#[test]
fn change_notifications_coalesce_into_one_refresh() {
    let mut s = with_board(&[("Ready", 1)]);
    s.conn.last_audit_id = 10;
    let note =
        |audit_id| Action::Changed(ChangeNote { project_id: Some(1), kind: "task".into(), id: Some(1), audit_id });
    assert!(matches!(update(&mut s, note(11)).as_slice(), [Effect::ScheduleRefresh(_)]));
    assert!(update(&mut s, note(12)).is_empty(), "already scheduled");
    assert!(update(&mut s, note(9)).is_empty() || s.refresh_scheduled);
    let other_project =
        Action::Changed(ChangeNote { project_id: Some(2), kind: "task".into(), id: Some(5), audit_id: 99 });
    s.refresh_scheduled = false;
    assert!(update(&mut s, other_project).is_empty(), "other projects' changes are ignored");
    s.refresh_scheduled = true;
    let effects = update(&mut s, Action::RefreshDue);
    assert!(!s.refresh_scheduled);
    let kinds: Vec<QueryKey> = queries(&effects).iter().map(|q| q.key()).collect();
    assert!(kinds.contains(&QueryKey::Board) && kinds.contains(&QueryKey::AuditTail), "{kinds:?}");
}

/// Under load (many consoles, a stream of changes) a console keeps one
/// refresh in flight: a change meanwhile asks for one more when the answers
/// are in, instead of piling queries onto its pool.
#[test]
fn a_refresh_waits_for_the_last_one_to_land() {
    let mut s = with_board(&[("Ready", 1)]);
    let first = update(&mut s, Action::RefreshDue);
    let in_flight: Vec<(RequestId, QueryKey)> = first
        .iter()
        .filter_map(|e| match e {
            Effect::Query { id, query } => Some((*id, query.key())),
            _ => None,
        })
        .collect();
    assert!(in_flight.iter().any(|(_, key)| *key == QueryKey::Board), "{in_flight:?}");
    assert!(update(&mut s, Action::RefreshDue).is_empty(), "no second refresh while the first is in flight");
    assert!(s.refresh_again);
    // The answers land one by one; the last one brings the next refresh.
    let mut next = Vec::new();
    for (id, key) in &in_flight {
        let result = match key {
            QueryKey::Board => Err(Failure::Unavailable("gone".into())),
            QueryKey::AuditTail => Ok(Loaded::AuditTail(Vec::new())),
            _ => Err(Failure::Unavailable("gone".into())),
        };
        next = update(&mut s, Action::Loaded { id: *id, result });
    }
    assert!(queries(&next).iter().any(|q| q.key() == QueryKey::Board), "one more refresh after the last answer");
    assert!(!s.refresh_again);
}

#[test]
fn ticks_move_the_clock_expire_toasts_and_poll() {
    let mut s = with_board(&[("Ready", 1)]);
    s.toast(ToastLevel::Info, "hello");
    let mut polls = 0;
    for second in 1..=10 {
        let effects = update(&mut s, Action::Tick(NOW + time::Duration::seconds(second)));
        polls += queries(&effects).iter().filter(|q| q.key() == QueryKey::Latest).count();
        if let Some(Effect::Query { id, .. }) = effects.first() {
            update(&mut s, Action::Loaded { id: *id, result: Ok(Loaded::Latest(0)) });
        }
    }
    assert_eq!(s.now, NOW + time::Duration::seconds(10));
    assert!(s.toasts.is_empty());
    assert_eq!(polls, 2, "the fallback poll runs every five seconds");
}

#[test]
fn command_mode_runs_verbs_completes_and_remembers() {
    let mut s = with_board(&[("Ready", 2), ("In Progress", 0)]);
    update(&mut s, ch(':'));
    assert_eq!(s.input.as_ref().unwrap().kind, InputKind::Command);
    typed(&mut s, "move MC-1 in");
    update(&mut s, key(KeyCode::Tab));
    assert_eq!(s.input.as_ref().unwrap().text, "move MC-1 \"In Progress\" ");
    let effects = update(&mut s, key(KeyCode::Enter));
    assert!(
        matches!(mutation(&effects), Mutation::Move { key, lane: Some(lane), .. } if key == "MC-1" && lane == "In Progress")
    );
    assert!(s.input.is_none());
    update(&mut s, ch(':'));
    update(&mut s, key(KeyCode::Up));
    assert_eq!(s.input.as_ref().unwrap().text, "move MC-1 \"In Progress\"");
    update(&mut s, key(KeyCode::Esc));
    update(&mut s, ch(':'));
    typed(&mut s, "frobnicate");
    update(&mut s, key(KeyCode::Enter));
    assert!(s.input.is_some(), "a bad command stays for fixing");
    assert!(s.toasts.last().unwrap().text.contains("unknown command"));
    update(&mut s, key(KeyCode::Esc));
    update(&mut s, ch(':'));
    typed(&mut s, "MC-2");
    let effects = update(&mut s, key(KeyCode::Enter));
    assert!(matches!(&s.overlay, Some(Overlay::Detail(d)) if d.key == "MC-2"));
    assert!(matches!(queries(&effects)[0], Query::Detail { key } if key == "MC-2"));
    update(&mut s, key(KeyCode::Esc));
    update(&mut s, ch(':'));
    typed(&mut s, "q");
    update(&mut s, key(KeyCode::Enter));
    assert!(s.should_quit);
}

#[test]
fn filters_apply_as_you_type_on_lists_and_on_enter_on_the_board() {
    let mut s = with_board(&[("Ready", 2)]);
    update(&mut s, ch('/'));
    typed(&mut s, "@ana !high");
    let effects = update(&mut s, key(KeyCode::Enter));
    let filter = s.filters.get(&Screen::Work).unwrap();
    assert_eq!((filter.agent.as_deref(), filter.priority), (Some("ana"), Some(Priority::High)));
    assert!(matches!(queries(&effects)[0], Query::Board { filter } if filter.assignee.as_deref() == Some("ana")));
    // Esc on the board clears it and reloads.
    let effects = update(&mut s, key(KeyCode::Esc));
    assert!(!s.filters.contains_key(&Screen::Work));
    assert_eq!(queries(&effects).len(), 1);

    update(&mut s, ch('1'));
    let inbox = InboxData {
        tasks: vec![task("MC-1", "Inbox", 1), Task { title: "Safari login".into(), ..task("MC-2", "Inbox", 1) }],
        handoffs: vec![],
    };
    loaded(&mut s, QueryKey::Inbox, Loaded::Inbox(inbox));
    update(&mut s, ch('/'));
    typed(&mut s, "safari");
    let rows = mission_control::console::rows::sections(&s, Screen::Inbox);
    let keys: Vec<_> = rows.iter().flat_map(|r| r.rows.iter()).filter_map(|r| r.target.task_key()).collect();
    assert_eq!(keys, ["MC-2"], "filtered while typing");
    update(&mut s, key(KeyCode::Enter));
    update(&mut s, ch('/'));
    typed(&mut s, " !bogus");
    update(&mut s, key(KeyCode::Enter));
    assert!(s.toasts.last().unwrap().text.contains("invalid priority"));
}

#[test]
fn help_is_built_from_the_keymap_filters_and_runs() {
    let mut s = with_board(&[("Ready", 1)]);
    update(&mut s, ch('?'));
    assert!(matches!(s.overlay, Some(Overlay::Help(_))));
    let all = mission_control::console::rows::help_items(&s, "");
    assert!(all.iter().any(|(c, keys)| *c == Command::MoveRight && keys.contains('L') && keys.contains("shift+right")));
    typed(&mut s, "audit");
    let shown = mission_control::console::rows::help_items(&s, "audit");
    assert_eq!(shown[0].0, Command::ToggleAudit);
    update(&mut s, key(KeyCode::Enter));
    assert!(s.overlay.is_none());
    assert!(s.drawer.open, "enter ran the command");
}

#[test]
fn the_new_task_form_validates_then_creates() {
    let mut s = with_board(&[("Ready", 1)]);
    update(&mut s, ch('n'));
    let effects = update(&mut s, key(KeyCode::Enter));
    assert!(effects.is_empty());
    let Some(Overlay::Form(form)) = &s.overlay else { panic!() };
    assert!(form.error.as_deref().unwrap().contains("title is empty"));
    typed(&mut s, "Rotate keys");
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::Tab)); // priority
    update(&mut s, key(KeyCode::Left)); // none → low
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, "@Bo");
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, "ops #security");
    let effects = update(&mut s, key(KeyCode::Enter));
    match mutation(&effects) {
        Mutation::Create(new) => {
            assert_eq!(new.title, "Rotate keys");
            assert_eq!(new.lane.as_deref(), Some("Ready"));
            assert_eq!(new.priority, Some(Priority::Low));
            assert_eq!(new.assignee.as_deref(), Some("bo"));
            assert_eq!(new.labels, ["ops", "security"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn marks_and_the_picker_assign_in_bulk() {
    let mut s = with_board(&[("Ready", 4)]);
    s.agents = vec![agent("bo", "Bo Andersen", 0)];
    update(&mut s, key(KeyCode::Char(' ')));
    update(&mut s, ch('j'));
    update(&mut s, ch('j'));
    update(&mut s, ch('v'));
    assert_eq!(s.board.marked.len(), 3, "space marks one, v marks the range up to here");
    update(&mut s, ch('a'));
    typed(&mut s, "andr");
    let effects = update(&mut s, key(KeyCode::Enter));
    match mutation(&effects) {
        Mutation::Bulk(items) => {
            assert_eq!(items.len(), 3);
            assert!(items.iter().all(|m| matches!(m, Mutation::Assign { handle: Some(h), .. } if h == "bo")));
        }
        other => panic!("{other:?}"),
    }
    assert!(s.board.marked.is_empty());
}

#[test]
fn the_picker_lines_up_the_load_column_whatever_the_names() {
    let mut s = state();
    s.agents = vec![
        agent("bo", "Bo Andersen", 1),
        agent("patchbot", "Patchbot (dependency agent for every repository)", 2),
        agent("mei", "王美玲 (北京办公室)", 0),
        agent("a-very-long-agent-handle", "Ana", 3),
    ];
    let items = mission_control::console::rows::picker_items(&s, "");
    let loads: Vec<usize> = items
        .iter()
        .filter(|(handle, _)| handle.is_some())
        .map(|(_, label)| {
            let at = label.rfind(' ').unwrap();
            unicode_width::UnicodeWidthStr::width(&label[..at])
        })
        .collect();
    assert_eq!(loads.len(), 4);
    assert!(loads.iter().all(|w| *w == loads[0]), "the load column starts at one display column: {items:?}");
    assert!(items.iter().any(|(_, label)| label.contains('…')), "long names are clipped, not wrapped: {items:?}");
}

#[test]
fn archive_asks_first() {
    let mut s = with_board(&[("Ready", 2)]);
    update(&mut s, ch('x'));
    assert!(matches!(s.overlay, Some(Overlay::Confirm(_))));
    assert!(update(&mut s, ch('n')).is_empty());
    assert!(s.overlay.is_none());
    update(&mut s, ch('x'));
    let effects = update(&mut s, ch('y'));
    assert!(matches!(mutation(&effects), Mutation::SetArchived { key, archived: true, .. } if key == "MC-1"));
}

#[test]
fn the_audit_drawer_follows_and_pages_older_entries_in() {
    let mut s = with_board(&[("Ready", 1)]);
    update(&mut s, ch('A'));
    assert!(s.drawer.open);
    assert_eq!(s.focus, Focus::Drawer);
    let entry = |id: i64| AuditEntry {
        id,
        project_id: Some(1),
        at: NOW,
        actor: "bo".into(),
        source: Source::Cli,
        action: "task.move".into(),
        entity_kind: "task".into(),
        entity_id: Some(1),
        entity_key: Some("MC-1".into()),
        before: Some(serde_json::json!({"lane": "Ready"})),
        after: Some(serde_json::json!({"lane": "Done"})),
        correlation_id: uuid::Uuid::nil(),
        reason: None,
        db_role: None,
    };
    loaded(&mut s, QueryKey::AuditTail, Loaded::AuditTail((100..110).map(entry).collect()));
    assert_eq!(s.drawer.selected, 9, "following: the newest is selected");
    assert_eq!(s.conn.last_audit_id, 109);
    update(&mut s, ch('k'));
    assert!(!s.drawer.follow, "moving up pauses");
    loaded(&mut s, QueryKey::AuditTail, Loaded::AuditTail(vec![entry(110)]));
    assert_eq!(s.drawer.selected, 8, "paused: the selection stays put");
    let effects = update(&mut s, ch('g'));
    assert!(matches!(queries(&effects)[0], Query::AuditOlder { before_id: 100 }));
    loaded(&mut s, QueryKey::AuditOlder, Loaded::AuditOlder((90..100).map(entry).collect()));
    assert_eq!(s.drawer.entries.front().unwrap().id, 90);
    update(&mut s, key(KeyCode::Enter));
    assert!(matches!(s.overlay, Some(Overlay::Diff(_))));
    assert_eq!(s.drawer.entries[0].summary(), "lane: Ready → Done");
}

#[test]
fn resize_keeps_the_cursor_on_screen() {
    let mut s = with_board(&[("A", 40), ("B", 1), ("C", 1), ("D", 1), ("E", 1)]);
    for _ in 0..30 {
        update(&mut s, ch('j'));
    }
    update(&mut s, Action::Resize(80, 12));
    let column = s.board.column().unwrap();
    assert!(column.cursor >= column.scroll && column.cursor < column.scroll + 4, "{} {}", column.cursor, column.scroll);
    for _ in 0..4 {
        update(&mut s, ch('l'));
    }
    assert_eq!(s.board.lane, 4);
    assert!(s.board.first_column >= 2, "columns scroll sideways");
}

#[test]
fn the_mouse_is_ignored_unless_enabled() {
    // Two lanes at 80 columns: 40 each; cards start on row 3, two rows per card.
    let click = |row| {
        Action::Mouse(MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 50,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    let mut s = with_board(&[("A", 5), ("B", 5)]);
    update(&mut s, click(6));
    assert_eq!((s.board.lane, s.board.column().unwrap().cursor), (0, 0));
    s.mouse = true;
    update(&mut s, click(6));
    assert_eq!((s.board.lane, s.board.column().unwrap().cursor), (1, 1));
    update(
        &mut s,
        Action::Mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: 50,
            row: 6,
            modifiers: KeyModifiers::NONE,
        }),
    );
    assert_eq!(s.board.column().unwrap().cursor, 4);
}

#[test]
fn paste_goes_into_the_input_line_without_control_characters() {
    let mut s = with_board(&[("A", 1)]);
    update(&mut s, ch(':'));
    update(&mut s, Action::Paste("move MC-1\x1b[2J done".into()));
    assert_eq!(s.input.as_ref().unwrap().text, "move MC-1[2J done");
}

#[test]
fn an_edited_page_is_saved_with_its_version() {
    let mut s = with_board(&[("A", 1)]);
    let effects = update(
        &mut s,
        Action::EditorDone { slug: "runbook".into(), version: 4, body: Some("# new".into()), error: None },
    );
    assert_eq!(
        mutation(&effects),
        &Mutation::EditPage { slug: "runbook".into(), body: "# new".into(), expect_version: 4 }
    );
    assert!(
        update(&mut s, Action::EditorDone { slug: "runbook".into(), version: 4, body: None, error: None }).is_empty()
    );
    update(
        &mut s,
        Action::EditorDone { slug: "runbook".into(), version: 4, body: None, error: Some("vi exited with 1".into()) },
    );
    assert!(s.toasts.last().unwrap().text.contains("vi exited"));
}

#[test]
fn switching_projects_starts_clean() {
    let mut s = with_board(&[("A", 1)]);
    update(&mut s, ch(':'));
    typed(&mut s, "project ops");
    let effects = update(&mut s, key(KeyCode::Enter));
    assert!(matches!(effects.as_slice(), [Effect::LoadProject(key)] if key == "OPS"));
    let effects = update(&mut s, Action::ProjectLoaded(Ok(project(2, "OPS"))));
    assert_eq!(s.project.key, "OPS");
    assert!(s.board.columns.is_empty());
    assert!(queries(&effects).iter().any(|q| q.key() == QueryKey::Board));
    update(&mut s, Action::ProjectLoaded(Err(Failure::NotFound("project NOPE not found".into()))));
    assert!(s.toasts.last().unwrap().text.contains("NOPE"));
}

#[test]
fn quit_from_the_keyboard_and_from_a_signal() {
    let mut s = with_board(&[("A", 1)]);
    update(&mut s, ch('q'));
    assert!(s.should_quit);
    let mut s = with_board(&[("A", 1)]);
    update(&mut s, Action::Quit);
    assert!(s.should_quit);
    let mut s = with_board(&[("A", 1)]);
    update(&mut s, Action::Run(Command::Quit));
    assert!(s.should_quit);
}

#[test]
fn a_lost_database_during_a_query_is_reported_in_the_status() {
    let mut s = with_board(&[("A", 1)]);
    let id = s.requests.issue(QueryKey::Inbox);
    update(&mut s, Action::Loaded { id, result: Err(Failure::Unavailable("connection refused".into())) });
    assert!(matches!(&s.conn.db, DbHealth::Reconnecting { reason, .. } if reason.contains("refused")));
    assert!(!s.requests.pending(QueryKey::Inbox));
}

#[test]
fn shift_h_and_shift_k_move_left_and_up_and_stop_at_the_edges() {
    let mut s = with_board(&[("Ready", 2), ("Review", 3)]);
    update(&mut s, ch('l'));
    update(&mut s, ch('j')); // MC-4, second in Review
    let effects = update(&mut s, ch('K'));
    assert_eq!(
        mutation(&effects),
        &Mutation::Move { key: "MC-4".into(), lane: None, position: Position::Up, expect_version: Some(1) }
    );
    let Some(Effect::Mutate { request, .. }) = effects.first() else { panic!("{effects:?}") };
    assert_eq!(
        request.undo,
        Some(UndoRecipe::MoveBack { key: "MC-4".into(), lane: "Review".into(), before: Some("MC-5".into()) }),
        "undo puts it back above its old neighbour"
    );
    assert_eq!(s.board.column().unwrap().cursor, 0, "the cursor follows the card up");
    assert_eq!(s.board.selected().unwrap().key, "MC-4");
    assert!(update(&mut s, ch('K')).is_empty(), "nothing above the top card");

    let effects = update(&mut s, ch('H'));
    assert_eq!(
        mutation(&effects),
        &Mutation::Move {
            key: "MC-4".into(),
            lane: Some("Ready".into()),
            position: Position::Top,
            expect_version: Some(1)
        }
    );
    assert_eq!(s.board.lane, 0);
    assert_eq!(s.board.selected().unwrap().key, "MC-4", "shown at the top of Ready at once");
    assert_eq!((s.board.columns[0].total, s.board.columns[1].total), (3, 2));
    assert_eq!(s.requests.mutations_in_flight, 2);

    assert!(update(&mut s, ch('H')).is_empty(), "no lane left of the first");
    assert!(s.toasts.last().unwrap().text.contains("no lane that way"));
    assert_eq!(s.board.columns[0].total, 3, "nothing moved");
}

#[test]
fn shift_h_moves_marked_tasks_as_one_bulk_change() {
    let mut s = with_board(&[("Ready", 1), ("Review", 3)]);
    update(&mut s, ch('l'));
    update(&mut s, key(KeyCode::Char(' ')));
    update(&mut s, ch('j'));
    update(&mut s, key(KeyCode::Char(' ')));
    let (_, request) = sent(update(&mut s, ch('H')));
    let Mutation::Bulk(moves) = &request.mutation else { panic!("{:?}", request.mutation) };
    let keys: Vec<&str> = moves
        .iter()
        .map(|m| match m {
            Mutation::Move { key, lane: Some(lane), position: Position::Bottom, .. } if lane == "Ready" => key.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["MC-2", "MC-3"]);
    assert_eq!(request.reason.as_deref(), Some("bulk move of 2 tasks"));
    assert!(s.board.marked.is_empty(), "the marks are used up");
}

#[test]
fn enter_on_the_board_opens_the_task_detail() {
    let mut s = with_board(&[("Ready", 2), ("Empty", 0)]);
    update(&mut s, ch('j'));
    let effects = update(&mut s, key(KeyCode::Enter));
    assert!(matches!(&s.overlay, Some(Overlay::Detail(d)) if d.key == "MC-2" && d.data.is_none()));
    assert!(matches!(queries(&effects).as_slice(), [Query::Detail { key }] if key == "MC-2"));
    let data = DetailData {
        task: Task { title: "Fix checkout".into(), ..task("MC-2", "Ready", 3) },
        handoffs: vec![handoff(7, "MC-2", HandoffState::Open)],
        mappings: vec![],
        connections: vec![],
        history: vec![],
    };
    loaded(&mut s, QueryKey::Detail, Loaded::Detail(Box::new(data)));
    let Some(Overlay::Detail(detail)) = &s.overlay else { panic!("{:?}", s.overlay) };
    assert_eq!(detail.data.as_ref().unwrap().task.title, "Fix checkout");
    // Board keys do not reach the board while the detail is open.
    assert!(update(&mut s, ch('L')).is_empty());
    assert_eq!(s.board.lane, 0);
    update(&mut s, key(KeyCode::Esc));
    assert!(s.overlay.is_none());
    // An empty lane has nothing to open.
    update(&mut s, ch('l'));
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    assert!(s.overlay.is_none());
}

#[test]
fn o_opens_the_handoff_form_which_validates_then_opens_a_handoff() {
    let mut s = with_board(&[("Ready", 2)]);
    update(&mut s, ch('j'));
    update(&mut s, ch('o'));
    let Some(Overlay::Form(form)) = &s.overlay else { panic!("{:?}", s.overlay) };
    assert_eq!(form.kind, FormKind::Handoff { key: "MC-2".into() });
    // Kind starts at transfer; → makes it blocked.
    update(&mut s, key(KeyCode::Right));
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    let Some(Overlay::Form(form)) = &s.overlay else { panic!() };
    assert!(form.error.as_deref().unwrap().contains("say who it goes to"), "{:?}", form.error);
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, "@Bo");
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    let Some(Overlay::Form(form)) = &s.overlay else { panic!() };
    assert!(form.error.as_deref().unwrap().contains("give a reason"), "{:?}", form.error);
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, "waiting for creds");
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, "a token");
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, "2026-11-28T09:00:00Z");
    let (_, request) = sent(update(&mut s, key(KeyCode::Enter)));
    assert_eq!(
        request.mutation,
        Mutation::OpenHandoff(NewHandoff {
            task_key: "MC-2".into(),
            kind: HandoffKind::Blocked,
            from: None,
            to: "bo".into(),
            reason: "waiting for creds".into(),
            needs: "a token".into(),
            due_at: Some(datetime!(2026-11-28 09:00 UTC)),
        })
    );
    assert_eq!(request.undo, Some(UndoRecipe::CancelCreatedHandoff));
    assert!(s.overlay.is_none(), "the form closes once sent");
}

#[test]
fn handoffs_in_the_inbox_are_accepted_rejected_and_resolved_only_where_allowed() {
    let mut s = with_board(&[("Ready", 1)]);
    update(&mut s, ch('1'));
    let inbox = InboxData {
        tasks: vec![],
        handoffs: vec![handoff(7, "MC-1", HandoffState::Open), handoff(8, "MC-2", HandoffState::Accepted)],
    };
    loaded(&mut s, QueryKey::Inbox, Loaded::Inbox(inbox));
    let transition = |effects: &[Effect]| mutation(effects).clone();
    assert_eq!(
        transition(&update(&mut s, ch('y'))),
        Mutation::TransitionHandoff { id: 7, state: HandoffState::Accepted }
    );
    assert_eq!(
        transition(&update(&mut s, ch('d'))),
        Mutation::TransitionHandoff { id: 7, state: HandoffState::Rejected }
    );
    // An open handoff cannot be resolved: refused here, before the database.
    assert!(update(&mut s, ch('r')).is_empty());
    assert!(s.toasts.last().unwrap().text.contains("handoff #7 is open: it cannot become resolved"));
    update(&mut s, ch('j'));
    assert_eq!(
        transition(&update(&mut s, ch('r'))),
        Mutation::TransitionHandoff { id: 8, state: HandoffState::Resolved }
    );
    assert!(update(&mut s, ch('d')).is_empty(), "an accepted handoff cannot be rejected");
    assert!(s.toasts.last().unwrap().text.contains("it cannot become rejected"));
    let (id, request) = sent(update(&mut s, ch('r')));
    assert_eq!(request.label, "handoff #8 resolved");
    let outcome = Outcome::Handoff(Box::new(handoff(8, "MC-2", HandoffState::Resolved)));
    let effects = update(&mut s, Action::Mutated { id, request, result: Ok(outcome) });
    assert_eq!(s.toasts.last().unwrap().text, "handoff #8 resolved");
    assert!(queries(&effects).iter().any(|q| q.key() == QueryKey::Inbox), "the inbox is read again");
}

#[test]
fn the_task_detail_acts_on_the_handoff_picked_with_the_arrows() {
    let mut s = with_board(&[("Ready", 1)]);
    update(&mut s, key(KeyCode::Enter));
    update(&mut s, ch('c'));
    assert!(s.toasts.last().unwrap().text.contains("no handoffs"), "nothing loaded yet, nothing sent");
    let data = DetailData {
        task: task("MC-1", "Ready", 1),
        handoffs: vec![handoff(7, "MC-1", HandoffState::Accepted), handoff(9, "MC-1", HandoffState::Open)],
        mappings: vec![],
        connections: vec![],
        history: vec![],
    };
    loaded(&mut s, QueryKey::Detail, Loaded::Detail(Box::new(data)));
    assert_eq!(
        mutation(&update(&mut s, ch('c'))),
        &Mutation::TransitionHandoff { id: 7, state: HandoffState::Cancelled }
    );
    update(&mut s, key(KeyCode::Right));
    update(&mut s, key(KeyCode::Right));
    let Some(Overlay::Detail(detail)) = &s.overlay else { panic!() };
    assert_eq!(detail.handoff, 1, "→ stops at the last handoff");
    assert_eq!(
        mutation(&update(&mut s, ch('y'))),
        &Mutation::TransitionHandoff { id: 9, state: HandoffState::Accepted }
    );
    assert_eq!(
        mutation(&update(&mut s, ch('d'))),
        &Mutation::TransitionHandoff { id: 9, state: HandoffState::Rejected }
    );
    assert_eq!(
        mutation(&update(&mut s, ch('c'))),
        &Mutation::TransitionHandoff { id: 9, state: HandoffState::Cancelled }
    );
    assert!(update(&mut s, ch('r')).is_empty(), "an open handoff is not resolved");
    update(&mut s, key(KeyCode::Left));
    assert_eq!(
        mutation(&update(&mut s, ch('r'))),
        &Mutation::TransitionHandoff { id: 7, state: HandoffState::Resolved }
    );
    assert!(matches!(s.overlay, Some(Overlay::Detail(_))), "the detail stays open");
}

#[test]
fn the_edit_form_sends_only_what_changed_with_the_version_and_an_undo() {
    let mut s = state();
    let mut lanes = board(&[("Ready", 2)]);
    lanes[0].cards[0] = Card {
        title: "Fix checkout".into(),
        priority: Priority::Low,
        labels: vec!["bug".into()],
        due_on: Some(NOW.date()),
        version: 4,
        ..card(1)
    };
    loaded(&mut s, QueryKey::Board, Loaded::Board(lanes));
    update(&mut s, ch('e'));
    let Some(Overlay::Form(form)) = &s.overlay else { panic!("{:?}", s.overlay) };
    let values: Vec<&str> = form.fields.iter().map(|f| f.value.as_str()).collect();
    assert_eq!(values, ["Fix checkout", "low", "bug", "2026-11-27"], "the form starts from the task");
    // Unchanged: nothing to send.
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    assert!(s.toasts.last().unwrap().text.contains("nothing changed"));

    update(&mut s, ch('e'));
    typed(&mut s, " on Safari");
    update(&mut s, key(KeyCode::Tab));
    update(&mut s, key(KeyCode::Left)); // low → medium
    update(&mut s, key(KeyCode::Tab));
    typed(&mut s, " web");
    update(&mut s, key(KeyCode::Tab));
    for _ in 0.."2026-11-27".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    let (_, request) = sent(update(&mut s, key(KeyCode::Enter)));
    let Mutation::Edit { key: edited, edit, expect_version } = &request.mutation else { panic!("{request:?}") };
    assert_eq!((edited.as_str(), *expect_version), ("MC-1", Some(4)));
    assert_eq!(edit.title.as_deref(), Some("Fix checkout on Safari"));
    assert_eq!(edit.priority, Some(Priority::Medium));
    assert_eq!(edit.set_labels.as_deref(), Some(&["bug".to_string(), "web".to_string()][..]));
    assert_eq!(edit.due_on, Some(None), "an emptied due date clears it");
    let Some(UndoRecipe::EditBack { key: back_key, edit: back }) = &request.undo else { panic!("{request:?}") };
    assert_eq!(back_key, "MC-1");
    assert_eq!(back.title.as_deref(), Some("Fix checkout"));
    assert_eq!(back.priority, Some(Priority::Low));
    assert_eq!(back.set_labels.as_deref(), Some(&["bug".to_string()][..]));
    assert_eq!(back.due_on, Some(Some(NOW.date())));

    // A title the product refuses keeps the form open with the reason.
    update(&mut s, ch('e'));
    for _ in 0.."Fix checkout".len() {
        update(&mut s, key(KeyCode::Backspace));
    }
    assert!(update(&mut s, key(KeyCode::Enter)).is_empty());
    let Some(Overlay::Form(form)) = &s.overlay else { panic!() };
    assert!(form.error.as_deref().unwrap().contains("title is empty"));
}

#[test]
fn bulk_archive_asks_first_naming_the_count_and_archives_every_marked_task() {
    let mut s = with_board(&[("Ready", 4)]);
    update(&mut s, key(KeyCode::Char(' ')));
    update(&mut s, ch('j'));
    update(&mut s, ch('j'));
    update(&mut s, key(KeyCode::Char(' ')));
    assert!(update(&mut s, ch('x')).is_empty(), "nothing is sent before the answer");
    let Some(Overlay::Confirm(confirm)) = &s.overlay else { panic!("{:?}", s.overlay) };
    assert!(confirm.message.starts_with("Archive 2 marked tasks?"), "{}", confirm.message);
    // Other keys leave the question open; n cancels.
    assert!(update(&mut s, ch('j')).is_empty());
    assert!(matches!(s.overlay, Some(Overlay::Confirm(_))));
    assert!(update(&mut s, ch('n')).is_empty());
    assert!(s.overlay.is_none());
    assert!(s.toasts.last().unwrap().text.contains("nothing was changed"));
    assert_eq!(s.board.marked.len(), 2, "the marks survive a cancel");

    update(&mut s, ch('x'));
    let (_, request) = sent(update(&mut s, ch('y')));
    assert_eq!(
        request.mutation,
        Mutation::Bulk(vec![
            Mutation::SetArchived { key: "MC-1".into(), archived: true, expect_version: None },
            Mutation::SetArchived { key: "MC-3".into(), archived: true, expect_version: None },
        ])
    );
    assert_eq!(request.reason.as_deref(), Some("bulk archive of 2 tasks"));
    assert_eq!(
        request.undo,
        Some(UndoRecipe::Many(vec![
            UndoRecipe::SetArchived { key: "MC-1".into(), archived: false },
            UndoRecipe::SetArchived { key: "MC-3".into(), archived: false },
        ]))
    );
    assert!(s.overlay.is_none());
}

fn restore_report(snapshot_id: i64) -> RestoreReport {
    RestoreReport {
        snapshot_id,
        project: "MC".into(),
        dry_run: true,
        pre_restore_snapshot: None,
        correlation_id: uuid::Uuid::nil(),
        project_fields: vec![],
        kinds: [("tasks".to_string(), KindCounts { restored: 2, ..Default::default() })].into(),
        renames: vec![],
        flagged_mappings: 0,
    }
}

#[test]
fn progress_steps_show_while_a_restore_runs_and_clear_when_it_ends() {
    let mut s = with_board(&[("Ready", 1)]);
    update(&mut s, ch('7'));
    let only = vec!["MC-1".to_string()];
    loaded(&mut s, QueryKey::RestorePlan, Loaded::RestorePlan { report: Box::new(restore_report(3)), only });
    assert!(matches!(s.overlay, Some(Overlay::RestoreConfirm(_))));
    typed(&mut s, "MC");
    let (id, request) = sent(update(&mut s, key(KeyCode::Enter)));
    assert_eq!(request.mutation, Mutation::Restore { snapshot_id: 3, only: vec!["MC-1".into()] });
    assert_eq!(s.progress.as_deref(), Some("starting the restore"));

    assert!(update(&mut s, Action::Progress("restoring tasks".into())).is_empty());
    assert_eq!(s.progress.as_deref(), Some("restoring tasks"), "each step replaces the last");
    let report = RestoreReport { dry_run: false, pre_restore_snapshot: Some(4), ..restore_report(3) };
    update(&mut s, Action::Mutated { id, request, result: Ok(Outcome::Restored(Box::new(report))) });
    assert_eq!(s.progress, None);
    assert_eq!(s.toasts.last().unwrap().text, "restored 1 task(s) from snapshot #3 · undo: restore #4");
    // A failed restore clears the line too.
    s.progress = Some("restoring tasks".into());
    let request = Box::new(MutationRequest {
        mutation: Mutation::Restore { snapshot_id: 3, only: vec![] },
        reason: None,
        undo: None,
        label: "restored snapshot #3".into(),
    });
    update(&mut s, Action::Mutated { id: 99, request, result: Err(Failure::Other("checksum mismatch".into())) });
    assert_eq!(s.progress, None);
    assert!(s.toasts.last().unwrap().text.contains("checksum mismatch"));
}

/// Starts a sync worker here with `:sync start` and returns its run id.
fn start_worker(s: &mut AppState) -> u64 {
    update(s, ch(':'));
    typed(s, "sync start");
    let effects = update(s, key(KeyCode::Enter));
    match effects.first() {
        Some(Effect::StartSyncWorker { run, project_id: 1 }) => *run,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stopped_sync_worker_is_reported_once_and_only_for_the_current_run() {
    let mut s = with_board(&[("Ready", 1)]);
    let run = start_worker(&mut s);
    assert_eq!(s.conn.sync.worker, LocalWorker::Running { run, project_id: 1 });
    // A late report from an earlier worker changes nothing.
    assert!(update(&mut s, Action::SyncWorkerStopped { run: run + 100, error: None }).is_empty());
    assert_eq!(s.conn.sync.worker, LocalWorker::Running { run, project_id: 1 });

    let effects = update(&mut s, Action::SyncWorkerStopped { run, error: Some("plane: 401 unauthorized".into()) });
    assert_eq!(s.conn.sync.worker, LocalWorker::Off);
    let toast = s.toasts.last().unwrap();
    assert_eq!(toast.level, ToastLevel::Error);
    assert!(toast.text.contains("stopped: plane: 401 unauthorized"), "{}", toast.text);
    assert!(matches!(queries(&effects).as_slice(), [Query::SyncHealth]), "sync health is read again");
    let toasts = s.toasts.len();
    assert!(update(&mut s, Action::SyncWorkerStopped { run, error: None }).is_empty(), "reported once");
    assert_eq!(s.toasts.len(), toasts);

    // Asked to stop: it goes through Stopping, then Off with a plain message.
    let run = start_worker(&mut s);
    update(&mut s, ch(':'));
    typed(&mut s, "sync stop");
    let effects = update(&mut s, key(KeyCode::Enter));
    assert!(matches!(effects.as_slice(), [Effect::StopSyncWorker { run: r }] if *r == run));
    assert_eq!(s.conn.sync.worker, LocalWorker::Stopping { run });
    update(&mut s, Action::Db(DbEvent::Lost("connection refused".into())));
    let effects = update(&mut s, Action::SyncWorkerStopped { run, error: None });
    assert_eq!(s.conn.sync.worker, LocalWorker::Off);
    assert_eq!(s.toasts.last().unwrap().level, ToastLevel::Info);
    assert!(s.toasts.last().unwrap().text.contains("has stopped"));
    assert!(effects.is_empty(), "no health read while the database is away");
}

/// The frame `state` draws, as text.
fn drawn(state: &AppState) -> String {
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(state.width, state.height)).unwrap();
    terminal.draw(|frame| mission_control::console::draw::draw(frame, state)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_recovery_list_shows_what_each_snapshot_holds() {
    let mut s = state();
    update(&mut s, ch('7'));
    let snapshot = SnapshotMeta {
        id: 12,
        project_id: 1,
        format_version: 2,
        created_at: NOW - time::Duration::hours(3),
        created_by: "ana".into(),
        label: "before the offsite".into(),
        reason: "manual".into(),
        counts: serde_json::json!({
            "lanes": 6, "agents": 4, "tasks": 120, "handoffs": 8, "pages": 3, "cycles": 0, "modules": 0,
            "environments": 0, "releases": 0, "pipelines": 0, "deployments": 0, "connections": 0, "mappings": 0,
        }),
        size_bytes: 41_000,
        checksum: "ab".repeat(32),
    };
    loaded(&mut s, QueryKey::Recovery, Loaded::Recovery(vec![snapshot]));
    let sections = mission_control::console::rows::sections(&s, Screen::Recovery);
    let row = &sections[0].rows[0];
    assert!(row.cells.iter().any(|c| c.text == "120 tasks · 8 handoffs …"), "{row:?}");

    // At 80 columns: the counts that fit, then the label.
    let screen = drawn(&s);
    let line = screen.lines().find(|l| l.contains("#12")).unwrap_or_else(|| panic!("no row:\n{screen}"));
    assert!(line.contains("3h") && line.contains("manual") && line.contains("120 tasks · 8 handoffs …"), "{line}");
    assert!(line.contains("before the"), "the label keeps its room: {line}");
    // Wide: every kind that is not zero, and the size.
    s.width = 160;
    s.height = 48;
    let screen = drawn(&s);
    let line = screen.lines().find(|l| l.contains("#12")).unwrap();
    assert!(line.contains("120 tasks · 8 handoffs · 3 pages") && line.contains("40 KB"), "{line}");
    assert!(!line.contains("lanes") && !line.contains("agents") && !line.contains("cycles"), "{line}");
    assert!(line.contains("before the offsite"), "{line}");
}

#[test]
fn the_restore_confirmation_names_each_row_that_gives_its_name_back() {
    let mut s = with_board(&[("Ready", 1)]);
    s.width = 100;
    update(&mut s, ch('7'));
    let report = RestoreReport {
        kinds: [("lanes".to_string(), KindCounts { restored: 1, set_aside: 1, renamed: 1, ..Default::default() })]
            .into(),
        renames: vec![mission_control::snapshot::restore::Rename {
            kind: "lane".into(),
            id: 9,
            from: "Review\u{1b}[2J".into(),
            to: "Review\u{1b}[2J (since #3)".into(),
        }],
        ..restore_report(3)
    };
    loaded(&mut s, QueryKey::RestorePlan, Loaded::RestorePlan { report: Box::new(report.clone()), only: vec![] });
    let screen = drawn(&s);
    assert!(screen.contains("1 set aside, 1 renamed"), "{screen}");
    assert!(screen.contains("lane \"Review"), "{screen}");
    assert!(screen.contains("(since #3)\" "), "{screen}");
    assert!(!screen.contains('\u{1b}'), "an escape sequence in a name is never drawn raw");

    // Done: the toast says so, and how to undo it.
    typed(&mut s, "MC");
    let (id, request) = sent(update(&mut s, key(KeyCode::Enter)));
    let report = RestoreReport { dry_run: false, pre_restore_snapshot: Some(4), ..report };
    update(&mut s, Action::Mutated { id, request, result: Ok(Outcome::Restored(Box::new(report))) });
    assert_eq!(s.toasts.last().unwrap().text, "restored snapshot #3, 1 row made since renamed · undo: restore #4");
}
