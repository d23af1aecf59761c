//! Results coming back: query results (newest wins), change outcomes, change
//! notifications, connection health, the clock, and the audit drawer.

use super::{board, change, load_screen, mutate, query, sync, undo};
use crate::console::action::{Action, DbEvent, Effect, Failure, Mutation, Outcome};
use crate::console::data::{Loaded, Query, QueryKey};
use crate::console::keymap::Command;
use crate::console::state::{AppState, AuditDrawer, DbHealth, Focus, Overlay, ToastLevel};

/// How long change notifications are gathered before one refresh.
const COALESCE_MS: u64 = 80;
/// Fallback poll for missed notifications, in ticks (seconds).
const POLL_EVERY: u64 = 5;

/// "restored snapshot #3, 1 row made since renamed · undo: restore #4".
fn restored_message(label: &str, report: &crate::snapshot::RestoreReport) -> String {
    let mut message = label.to_string();
    match report.renames.len() {
        0 => {}
        1 => message.push_str(", 1 row made since renamed"),
        n => message.push_str(&format!(", {n} rows made since renamed")),
    }
    if let Some(pre) = report.pre_restore_snapshot {
        message.push_str(&format!(" · undo: restore #{pre}"));
    }
    message
}

pub fn on_data(state: &mut AppState, action: Action) -> Vec<Effect> {
    match action {
        Action::Loaded { id, result } => {
            let mut effects = loaded(state, id, result);
            if state.refresh_again && !refresh_in_flight(state) {
                state.refresh_again = false;
                effects.extend(refresh(state));
            }
            effects
        }
        Action::Mutated { request, result, .. } => {
            state.requests.mutations_in_flight = state.requests.mutations_in_flight.saturating_sub(1);
            state.progress = None;
            match result {
                Ok(outcome) => {
                    let message = match &outcome {
                        Outcome::Task(task)
                            if matches!(request.mutation, Mutation::Create(_) | Mutation::FollowUp { .. }) =>
                        {
                            format!("created {}", task.key)
                        }
                        Outcome::SyncQueued { .. } | Outcome::Retried(_) => {
                            let (level, text) = sync::outcome_message(&request, &outcome);
                            state.toast(level, text);
                            String::new()
                        }
                        Outcome::Partial { tasks, failures } if !failures.is_empty() => {
                            state.toast(
                                ToastLevel::Error,
                                format!("{} done, {} failed: {}", tasks.len(), failures.len(), failures[0]),
                            );
                            String::new()
                        }
                        Outcome::Restored(report) => restored_message(&request.label, report),
                        _ => request.label.clone(),
                    };
                    if !message.is_empty() {
                        state.toast(ToastLevel::Success, message);
                    }
                    undo::remember(state, &request, &outcome);
                    if let Outcome::Task(task) = &outcome
                        && matches!(request.mutation, Mutation::Create(_) | Mutation::FollowUp { .. })
                    {
                        state.board.follow_key = Some(task.key.clone());
                    }
                }
                Err(Failure::Conflict { key, message }) => {
                    // Say so, and show what is there now.
                    state.toast(ToastLevel::Error, format!("{message}; {key} reloaded"));
                }
                Err(failure) => {
                    if let Failure::Unavailable(reason) = &failure {
                        lost(state, reason.clone());
                    }
                    state.toast(ToastLevel::Error, failure.message());
                }
            }
            // Confirmed or not, show the database's truth (it also undoes an optimistic move).
            refresh(state)
        }
        Action::Changed(note) => {
            let ours = note.project_id.is_none_or(|p| p == state.project.id);
            if ours && note.audit_id > state.conn.last_audit_id && !state.refresh_scheduled {
                state.refresh_scheduled = true;
                return vec![Effect::ScheduleRefresh(COALESCE_MS)];
            }
            Vec::new()
        }
        Action::RefreshDue => {
            state.refresh_scheduled = false;
            // One refresh at a time: under load (a busy server, a stream of
            // changes) the console asks again once the answers are in,
            // instead of piling queries onto its pool.
            if refresh_in_flight(state) {
                state.refresh_again = true;
                return Vec::new();
            }
            refresh(state)
        }
        Action::Db(DbEvent::Connected) => {
            let was_down = matches!(state.conn.db, DbHealth::Reconnecting { .. });
            state.conn.db = DbHealth::Connected;
            state.conn.live = true;
            if was_down {
                state.toast(ToastLevel::Success, "reconnected to the database; catching up");
                return refresh(state);
            }
            Vec::new()
        }
        Action::Db(DbEvent::Lost(reason)) => {
            lost(state, reason);
            Vec::new()
        }
        Action::Tick(now) => {
            state.now = now;
            state.ticks += 1;
            state.toasts.retain(|t| t.until > now);
            let mut effects = Vec::new();
            if state.ticks.is_multiple_of(POLL_EVERY)
                && state.is_connected()
                && !state.requests.pending(QueryKey::Latest)
            {
                effects.push(query(state, Query::Latest));
            }
            effects.extend(sync::poll(state));
            effects
        }
        Action::EditorDone { slug, version, body, error } => {
            if let Some(error) = error {
                state.toast(ToastLevel::Error, error);
                return Vec::new();
            }
            match body {
                Some(body) => mutate(state, change(Mutation::EditPage { slug, body, expect_version: version }, None)),
                None => {
                    state.toast(ToastLevel::Info, "page unchanged");
                    Vec::new()
                }
            }
        }
        Action::ProjectLoaded(Ok(project)) => {
            let key = project.key.clone();
            let old_key = state.project.key.clone();
            // A worker started here serves the project it was started for.
            let mut effects = if state.conn.sync.worker.run().is_some() {
                sync::stop(state, &format!("stopping the sync worker here: it served {old_key}"))
            } else {
                Vec::new()
            };
            state.project = project;
            state.sync_issues = None;
            state.conn.sync.health = None;
            state.board = Default::default();
            state.inbox = None;
            state.today = None;
            state.planning = None;
            state.delivery = None;
            state.risks = None;
            state.recovery = None;
            state.settings = None;
            state.filters.clear();
            state.cursors.clear();
            state.undo.clear();
            state.overlay = None;
            state.drawer = AuditDrawer { open: state.drawer.open, ..AuditDrawer::default() };
            state.conn.last_audit_id = 0;
            state.toast(ToastLevel::Success, format!("switched to {key}"));
            effects.extend(load_screen(state, state.screen));
            effects.push(query(state, Query::AuditTail { after_id: 0 }));
            effects.push(query(state, Query::SyncHealth));
            effects
        }
        Action::Progress(step) => {
            state.progress = Some(step);
            Vec::new()
        }
        Action::ProjectLoaded(Err(failure)) => {
            state.toast(ToastLevel::Error, failure.message());
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn lost(state: &mut AppState, reason: String) {
    state.conn.live = false;
    if !matches!(state.conn.db, DbHealth::Reconnecting { .. }) {
        state.conn.db = DbHealth::Reconnecting { since: state.now, reason };
    }
}

/// Whether the answers of the last refresh are still on their way.
fn refresh_in_flight(state: &AppState) -> bool {
    [QueryKey::Board, QueryKey::AuditTail, QueryKey::SyncHealth].into_iter().any(|key| state.requests.pending(key))
}

/// Reloads what is on screen: the current screen (Today brings the agents'
/// load with it), the drawer's tail, the open task.
pub fn refresh(state: &mut AppState) -> Vec<Effect> {
    let mut effects = load_screen(state, state.screen);
    if state.screen != crate::console::state::Screen::Work && state.board.loaded {
        // The board feeds completion and forms; keep it current too.
        effects.extend(load_screen(state, crate::console::state::Screen::Work));
    }
    let after_id = state.drawer.last_id();
    effects.push(query(state, Query::AuditTail { after_id }));
    effects.push(query(state, Query::SyncHealth));
    if let Some(Overlay::Detail(detail)) = &state.overlay {
        let key = detail.key.clone();
        effects.push(query(state, Query::Detail { key }));
    }
    effects
}

fn loaded(state: &mut AppState, id: u64, result: Result<Loaded, Failure>) -> Vec<Effect> {
    let key = match &result {
        Ok(loaded) => loaded_key(loaded),
        Err(_) => None,
    };
    if let Some(key) = key
        && !state.requests.accept(key, id)
    {
        return Vec::new(); // a newer request of this kind is on its way
    }
    let loaded = match result {
        Ok(loaded) => loaded,
        Err(failure) => {
            // Drop the request bookkeeping of whatever failed.
            state.requests.latest.retain(|_, v| *v != id);
            match failure {
                Failure::Unavailable(reason) => lost(state, reason),
                Failure::NotFound(message) => {
                    if matches!(state.overlay, Some(Overlay::Detail(_)) | Some(Overlay::Page(_))) {
                        state.overlay = None;
                    }
                    state.toast(ToastLevel::Error, message);
                }
                other => state.toast(ToastLevel::Error, other.message()),
            }
            return Vec::new();
        }
    };
    state.conn.last_refresh = Some(state.now);
    if matches!(state.conn.db, DbHealth::Connecting) {
        state.conn.db = DbHealth::Connected;
    }
    match loaded {
        Loaded::Board(lanes) => return board::apply_board(state, lanes),
        Loaded::LaneWindow { lane_id, offset, cards } => board::apply_window(state, lane_id, offset, cards),
        Loaded::Inbox(data) => state.inbox = Some(data),
        Loaded::Today(data) => {
            state.today = Some(data.tasks);
            state.agents = data.agents;
        }
        Loaded::Planning(data) => {
            if let Some(Overlay::Page(view)) = &mut state.overlay
                && let Some(page) = data.pages.iter().find(|p| p.slug == view.page.slug)
            {
                view.page = page.clone();
            }
            state.planning = Some(data);
        }
        Loaded::Delivery(data) => state.delivery = Some(data),
        Loaded::Risks { risks, sync } => {
            state.risks = Some(risks);
            state.sync_issues = Some(sync);
        }
        Loaded::SyncHealth(health, workers) => return sync::health_loaded(state, health, workers),
        Loaded::Recovery(snapshots) => state.recovery = Some(snapshots),
        Loaded::Settings(data) => state.settings = Some(data),
        Loaded::Agents(agents) => state.agents = agents,
        Loaded::AuditTail(entries) => append_audit(state, entries),
        Loaded::AuditOlder(entries) => {
            state.drawer.loading_older = false;
            if entries.is_empty() {
                state.drawer.exhausted = true;
            }
            let added = entries.len();
            for entry in entries.into_iter().rev() {
                state.drawer.entries.push_front(entry);
            }
            state.drawer.entries.truncate(AuditDrawer::CAPACITY);
            state.drawer.selected += added;
        }
        Loaded::Detail(data) => {
            if let Some(Overlay::Detail(detail)) = &mut state.overlay
                && detail.key == data.task.key
            {
                detail.handoff = detail.handoff.min(data.handoffs.len().saturating_sub(1));
                detail.data = Some(*data);
            }
        }
        Loaded::Page(page) => {
            if let Some(Overlay::Page(view)) = &mut state.overlay
                && view.page.slug == page.slug
            {
                view.page = page;
            } else if state.overlay.is_none() {
                state.overlay = Some(Overlay::Page(crate::console::state::PageView { page, scroll: 0 }));
            }
        }
        Loaded::SnapshotDiff { id, diff } => {
            if let Some(Overlay::SnapshotDiff(view)) = &mut state.overlay
                && view.snapshot_id == id
            {
                view.diff = Some(*diff);
            }
        }
        Loaded::RestorePlan { report, only } => {
            if report.is_noop() {
                state.toast(
                    ToastLevel::Info,
                    format!("{} already matches snapshot #{}", report.project, report.snapshot_id),
                );
                state.overlay = None;
            } else {
                state.overlay = Some(Overlay::RestoreConfirm(Box::new(crate::console::state::RestoreConfirm {
                    report: *report,
                    only,
                    typed: String::new(),
                })));
            }
        }
        Loaded::Latest(latest) => {
            if latest > state.conn.last_audit_id && state.conn.last_audit_id > 0 {
                return refresh(state);
            }
        }
    }
    Vec::new()
}

fn loaded_key(loaded: &Loaded) -> Option<QueryKey> {
    Some(match loaded {
        Loaded::Board(_) => QueryKey::Board,
        Loaded::LaneWindow { lane_id, .. } => QueryKey::LaneWindow(*lane_id),
        Loaded::Inbox(_) => QueryKey::Inbox,
        Loaded::Today(_) => QueryKey::Today,
        Loaded::Planning(_) => QueryKey::Planning,
        Loaded::Delivery(_) => QueryKey::Delivery,
        Loaded::Risks { .. } => QueryKey::Risks,
        Loaded::Recovery(_) => QueryKey::Recovery,
        Loaded::Settings(_) => QueryKey::Settings,
        Loaded::Agents(_) => QueryKey::Agents,
        Loaded::AuditTail(_) => QueryKey::AuditTail,
        Loaded::AuditOlder(_) => QueryKey::AuditOlder,
        Loaded::Detail(_) => QueryKey::Detail,
        Loaded::Page(_) => QueryKey::Page,
        Loaded::Latest(_) => QueryKey::Latest,
        Loaded::SnapshotDiff { .. } => QueryKey::SnapshotDiff,
        Loaded::RestorePlan { .. } => QueryKey::RestorePlan,
        Loaded::SyncHealth(..) => QueryKey::SyncHealth,
    })
}

fn append_audit(state: &mut AppState, entries: Vec<crate::domain::AuditEntry>) {
    let drawer = &mut state.drawer;
    let last = drawer.last_id();
    let was_at_end = drawer.selected + 1 >= drawer.visible().len();
    for entry in entries {
        if entry.id > last {
            state.conn.last_audit_id = state.conn.last_audit_id.max(entry.id);
            drawer.entries.push_back(entry);
        }
    }
    while drawer.entries.len() > AuditDrawer::CAPACITY {
        drawer.entries.pop_front();
        drawer.exhausted = false;
    }
    if drawer.follow || was_at_end {
        drawer.selected = drawer.visible().len().saturating_sub(1);
    }
}

/// Moving through the audit drawer: older entries page in at the top.
pub fn drawer_command(state: &mut AppState, command: Command) -> Vec<Effect> {
    let count = state.drawer.visible().len();
    let drawer = &mut state.drawer;
    let page = 8;
    match command {
        Command::Up | Command::PageUp | Command::Top => {
            drawer.follow = false;
            let step = match command {
                Command::Up => 1,
                Command::PageUp => page,
                _ => usize::MAX,
            };
            drawer.selected = drawer.selected.saturating_sub(step);
            if drawer.selected == 0
                && !drawer.exhausted
                && !drawer.loading_older
                && let Some(oldest) = drawer.entries.front().map(|e| e.id)
            {
                drawer.loading_older = true;
                return vec![query(state, Query::AuditOlder { before_id: oldest })];
            }
        }
        Command::Down | Command::PageDown | Command::Bottom => {
            let step = match command {
                Command::Down => 1,
                Command::PageDown => page,
                _ => usize::MAX,
            };
            drawer.selected = drawer.selected.saturating_add(step).min(count.saturating_sub(1));
            drawer.follow = drawer.selected + 1 >= count;
        }
        Command::Open => {
            let entry = drawer.visible().get(drawer.selected).map(|e| (*e).clone());
            if let Some(entry) = entry {
                state.overlay = Some(Overlay::Diff(Box::new(entry)));
            }
        }
        Command::Back => state.focus = Focus::Screen,
        _ => {}
    }
    Vec::new()
}
