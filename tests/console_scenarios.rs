//! The console driven headless through its action channel against a real
//! PostgreSQL: what an operator does, and what other operators see.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::time::{Duration, Instant};

use common::TestDb;
use common::console::{app, ch, key, press, seed_demo, text, wait_until};
use crossterm::event::KeyCode;
use mission_control::console::app::App;
use mission_control::console::state::{ConsoleOptions, DbHealth, Screen, ToastLevel};
use mission_control::store::audit::AuditQuery;
use mission_control::store::tasks::TaskEdit;
use mission_control::store::{Store, StoreOptions};

fn lane_of(app: &App, key: &str) -> Option<String> {
    app.state.board.columns.iter().find(|c| c.position_of(key).is_some()).map(|c| c.lane.name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moving_a_task_leaves_an_audit_entry() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut app = app(&store, project, 100, 30, &ConsoleOptions::defaults(false)).await;
    assert_eq!(app.state.board.selected().unwrap().key, "DEMO-4");
    press(&mut app, &[ch('L')]).await;
    assert_eq!(lane_of(&app, "DEMO-4").as_deref(), Some("Ready"));
    assert_eq!(app.state.board.selected().unwrap().key, "DEMO-4", "the cursor follows the task");
    assert_eq!(app.state.toasts.last().unwrap().level, ToastLevel::Success);
    let entries = store
        .list_audit(&AuditQuery { entity_key: Some("DEMO-4".into()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    let moved = &entries[0];
    assert_eq!((moved.action.as_str(), moved.actor.as_str(), moved.source.as_str()), ("task.move", "ana", "console"));
    assert_eq!(moved.after.as_ref().unwrap()["lane"], "Ready");
    // The drawer shows it too.
    assert!(app.state.drawer.entries.iter().any(|e| e.id == moved.id));

    // u undoes it through the repository, audited as an undo.
    press(&mut app, &[ch('u')]).await;
    assert_eq!(lane_of(&app, "DEMO-4").as_deref(), Some("Inbox"));
    let undo = &store
        .list_audit(&AuditQuery { entity_key: Some("DEMO-4".into()), limit: 1, ..Default::default() })
        .await
        .unwrap()[0];
    assert_eq!(undo.action, "task.move");
    assert!(undo.reason.as_deref().unwrap().starts_with("undo of"), "{:?}", undo.reason);
    assert_eq!(app.state.board.columns[0].cards[0].key, "DEMO-4", "back in its old place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_operators_move_shows_up_and_the_selection_stays() {
    let db = TestDb::new().await;
    let store_a = db.store().await;
    let project = seed_demo(&store_a).await;
    let store_b = db.store().await;
    let mut a = app(&store_a, project.clone(), 100, 30, &ConsoleOptions::defaults(false)).await;
    let mut b = app(&store_b, project, 100, 30, &ConsoleOptions::defaults(false)).await;
    let _listener = mission_control::console::live::spawn(store_b.clone(), b.sender());
    assert!(wait_until(&mut b, Duration::from_secs(5), |b| b.state.conn.live).await);
    // B looks at the third card of the Inbox.
    press(&mut b, &[ch('j'), ch('j')]).await;
    let watched = b.state.board.selected().unwrap().key.clone();
    assert_eq!(watched, "DEMO-34");

    let started = Instant::now();
    press(&mut a, &[ch('L')]).await; // A moves DEMO-4, above B's card, to Ready
    let seen = wait_until(&mut b, Duration::from_secs(5), |b| lane_of(b, "DEMO-4").as_deref() == Some("Ready")).await;
    assert!(
        seen,
        "B never saw A's move: db {:?}, refresh scheduled {}, last audit id {}, pending {}, toasts {:?}, board DEMO-4 in {:?}; A toasts {:?}; B's last entries {:?}",
        b.state.conn.db,
        b.state.refresh_scheduled,
        b.state.conn.last_audit_id,
        b.pending(),
        b.state.toasts,
        lane_of(&b, "DEMO-4"),
        a.state.toasts,
        b.state
            .drawer
            .entries
            .iter()
            .rev()
            .take(3)
            .map(|e| (e.id, e.action.clone(), e.entity_key.clone()))
            .collect::<Vec<_>>()
    );
    eprintln!("B saw A's move after {:?}", started.elapsed());
    assert_eq!(b.state.board.selected().unwrap().key, watched, "B's selection stayed on the same task");
    assert!(b.state.drawer.entries.iter().any(|e| e.action == "task.move" && e.actor == "ana"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_version_is_refused_reloaded_and_said() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut app = app(&store, project, 100, 30, &ConsoleOptions::defaults(false)).await;
    // Someone else edits the task after the board was loaded.
    let other = common::actor("bo");
    let edit = TaskEdit { title: Some("Renamed by Bo".into()), ..Default::default() };
    store.edit_task(&other, "DEMO-4", edit, None).await.unwrap();
    press(&mut app, &[ch('L')]).await;
    let toast = app.state.toasts.last().unwrap();
    assert_eq!(toast.level, ToastLevel::Error);
    assert!(toast.text.contains("changed by someone else") && toast.text.contains("reloaded"), "{}", toast.text);
    assert_eq!(lane_of(&app, "DEMO-4").as_deref(), Some("Inbox"), "nothing moved");
    assert_eq!(app.state.board.columns[0].cards[0].title, "Renamed by Bo", "the task was reloaded");
    let moves = store
        .list_audit(&AuditQuery { entity_key: Some("DEMO-4".into()), limit: 10, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "task.move")
        .count();
    assert_eq!(moves, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn when_the_database_goes_away_the_console_says_so_refuses_changes_and_catches_up() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut app = app(&store, project, 100, 30, &ConsoleOptions::defaults(false)).await;
    let _listener = mission_control::console::live::spawn(store.clone(), app.sender());
    assert!(wait_until(&mut app, Duration::from_secs(5), |a| a.state.conn.live).await);
    // Cut every session of this database, as a restart or failover would.
    let admin = db.client().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let lost =
        wait_until(&mut app, Duration::from_secs(5), |a| matches!(a.state.conn.db, DbHealth::Reconnecting { .. }))
            .await;
    assert!(lost, "the console noticed the lost connection");
    let status = common::console::render(&app);
    assert!(status.contains("reconnecting"), "the status line says so:\n{status}");
    // A change meanwhile is refused with a message, not dropped silently.
    press(&mut app, &[ch('L')]).await;
    assert!(app.state.toasts.last().unwrap().text.contains("unreachable"));
    // It comes back by itself and catches up on what changed meanwhile.
    store
        .edit_task(
            &common::actor("bo"),
            "DEMO-16",
            TaskEdit { title: Some("Changed while away".into()), ..Default::default() },
            None,
        )
        .await
        .unwrap();
    let back = wait_until(&mut app, Duration::from_secs(15), |a| {
        a.state.conn.live && a.state.board.columns[0].cards.iter().any(|c| c.title == "Changed while away")
    })
    .await;
    assert!(back, "reconnected and caught up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_session_changes_nothing() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let read_only =
        Store::connect(db.config.clone(), StoreOptions { read_only: true, ..Default::default() }).await.unwrap();
    let mut options = ConsoleOptions::defaults(false);
    options.read_only = true;
    let mut app = app(&read_only, project, 100, 30, &options).await;
    let before = db.count("audit_entry").await;
    press(&mut app, &[ch('L'), ch('n'), ch('x'), ch('u')]).await;
    press(&mut app, &[ch(':')]).await;
    press(&mut app, &text("move DEMO-4 Done")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    assert!(app.state.toasts.iter().all(|t| t.text.contains("read-only")), "{:?}", app.state.toasts);
    assert!(app.state.overlay.is_none());
    assert_eq!(db.count("audit_entry").await, before);
    assert!(common::console::render(&app).contains("READ-ONLY"));
    // Reading still works.
    press(&mut app, &[ch('6')]).await;
    assert_eq!(app.state.screen, Screen::Risks);
    assert!(app.state.risks.as_ref().is_some_and(|r| !r.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_is_edited_in_the_editor_and_saved_with_its_version() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut app = app(&store, project.clone(), 100, 30, &ConsoleOptions::defaults(false)).await;
    press(&mut app, &[ch('4')]).await;
    // Down to the first page row: past two cycles and four modules.
    press(&mut app, &[ch('l'), ch('l')]).await;
    let target = mission_control::console::rows::selected_target(&app.state, Screen::Planning);
    assert_eq!(target, mission_control::console::rows::Target::Page("deploy-runbook".into()));
    press(&mut app, &[ch('e')]).await;
    let request = app.take_editor_request().expect("e asks for the editor");
    assert_eq!(request.version, 1);
    // What the terminal loop does: hand the text to the editor (here a script).
    let editor = "sed -i -e '1s/.*/# Deploy runbook (edited)/'";
    let edited =
        mission_control::console::editor::edit_with(editor, &request.body, &request.slug).unwrap().expect("changed");
    app.dispatch(mission_control::console::action::Action::EditorDone {
        slug: request.slug,
        version: request.version,
        body: Some(edited),
        error: None,
    });
    assert!(app.settle(Duration::from_secs(10)).await);
    let page = store.page_by_slug(project.id, "deploy-runbook").await.unwrap();
    assert_eq!(page.version, 2);
    assert!(page.body.starts_with("# Deploy runbook (edited)"));
    assert_eq!(page.updated_by, "ana");
    // Saving over a newer version is refused, not silently overwritten.
    app.dispatch(mission_control::console::action::Action::EditorDone {
        slug: "deploy-runbook".into(),
        version: 1,
        body: Some("stale".into()),
        error: None,
    });
    assert!(app.settle(Duration::from_secs(10)).await);
    assert!(app.state.toasts.last().unwrap().text.contains("changed by someone else"));
    assert_eq!(store.page_by_slug(project.id, "deploy-runbook").await.unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_pipeline_gets_a_follow_up_task() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut app = app(&store, project.clone(), 100, 30, &ConsoleOptions::defaults(false)).await;
    press(&mut app, &[ch('5'), ch('l')]).await; // Delivery, down to the pipelines
    let target = mission_control::console::rows::selected_target(&app.state, Screen::Delivery);
    assert!(matches!(target, mission_control::console::rows::Target::Pipeline(_)), "{target:?}");
    press(&mut app, &[ch('f')]).await;
    let toast = app.state.toasts.last().unwrap();
    assert!(toast.text.starts_with("created DEMO-63"), "{}", toast.text);
    let task = store.task_by_key("DEMO-63").await.unwrap();
    assert_eq!(task.title, "Fix failing ci on main");
    assert!(task.description.contains("4f2c9a1"));
    assert_eq!(task.labels, ["ci"]);
    let entry = &store
        .list_audit(&AuditQuery { entity_key: Some("DEMO-63".into()), limit: 1, ..Default::default() })
        .await
        .unwrap()[0];
    assert!(entry.reason.as_deref().unwrap().contains("follow-up of pipeline ci"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_takes_a_snapshot_shows_the_diff_and_restores_marked_tasks() {
    use mission_control::console::state::Overlay;
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut app = app(&store, project.clone(), 120, 40, &ConsoleOptions::defaults(false)).await;
    press(&mut app, &[ch('7'), ch('c')]).await;
    press(&mut app, &text("before the offsite")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    let snapshots = store.list_snapshots(project.id).await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0].label, "before the offsite");
    assert_eq!(app.state.recovery.as_ref().unwrap().len(), 1, "the list reloaded");

    // Damage two tasks behind the console's back.
    let bo = common::actor("bo");
    store
        .edit_task(&bo, "DEMO-4", TaskEdit { title: Some("vandalised".into()), ..Default::default() }, None)
        .await
        .unwrap();
    store
        .edit_task(&bo, "DEMO-16", TaskEdit { title: Some("also vandalised".into()), ..Default::default() }, None)
        .await
        .unwrap();

    press(&mut app, &[ch('d')]).await;
    let Some(Overlay::SnapshotDiff(view)) = &app.state.overlay else { panic!("no diff view") };
    let lines = mission_control::console::rows::diff_lines(view.diff.as_ref().expect("the diff loaded"));
    let position = lines.iter().position(|l| l.task_key.as_deref() == Some("DEMO-4")).expect("DEMO-4 listed");
    assert!(lines[position].text.contains("title"));
    assert!(common::console::render(&app).contains("DEMO-16"));
    // Mark DEMO-4 only and restore it.
    for _ in 0..position {
        press(&mut app, &[ch('j')]).await;
    }
    press(&mut app, &[key(KeyCode::Char(' ')), ch('r')]).await;
    let Some(Overlay::RestoreConfirm(confirm)) = &app.state.overlay else { panic!("no confirmation") };
    assert_eq!(confirm.only, ["DEMO-4"]);
    assert_eq!(confirm.report.kinds["tasks"].restored, 1);
    press(&mut app, &text("NOPE")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    assert!(app.state.toasts.last().unwrap().text.contains("type DEMO"));
    assert_eq!(store.task_by_key("DEMO-4").await.unwrap().title, "vandalised", "nothing restored yet");
    for _ in 0..4 {
        press(&mut app, &[key(KeyCode::Backspace)]).await;
    }
    press(&mut app, &text("DEMO")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    assert!(app.state.progress.is_none(), "the progress line clears when done");
    assert_ne!(store.task_by_key("DEMO-4").await.unwrap().title, "vandalised", "DEMO-4 restored");
    assert_eq!(store.task_by_key("DEMO-16").await.unwrap().title, "also vandalised", "DEMO-16 left alone");
    assert!(app.state.toasts.iter().any(|t| t.text.contains("restored 1 task(s) from snapshot")));
    // The pre-restore snapshot is listed for an undo.
    let reasons: Vec<String> = app.state.recovery.as_ref().unwrap().iter().map(|s| s.reason.clone()).collect();
    assert!(reasons.contains(&"pre-restore".to_string()), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_bulk_action_takes_a_snapshot_first() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = seed_demo(&store).await;
    let mut options = ConsoleOptions::defaults(false);
    options.snapshot_before_bulk = 3;
    let mut app = app(&store, project.clone(), 120, 40, &options).await;
    // Mark four Inbox cards and move them right.
    press(&mut app, &[key(KeyCode::Char(' ')), ch('j'), ch('j'), ch('j'), ch('v'), ch('L')]).await;
    let snapshots = store.list_snapshots(project.id).await.unwrap();
    assert_eq!(snapshots.len(), 1);
    assert_eq!(snapshots[0].reason, "pre-bulk");
    assert_eq!(lane_of(&app, "DEMO-4").as_deref(), Some("Ready"));
    // Two tasks stay under the threshold: no snapshot.
    press(&mut app, &[ch('h'), key(KeyCode::Char(' ')), ch('j'), ch('v'), ch('L')]).await;
    assert_eq!(store.list_snapshots(project.id).await.unwrap().len(), 1);
}
