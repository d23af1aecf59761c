//! Sync as an operator meets it in the console, against a fake Plane and a
//! real PostgreSQL: health in the status line, conflicts and dead letters on
//! Risks settled with their keys, mappings in the task detail, and the sync
//! worker started and stopped with `:sync`.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::time::Duration;

use common::actor;
use common::console::{app, ch, key, press, render, text, wait_until};
use common::plane::Fault;
use common::sync::{Setup, mapping_of, setup_with, sync, tasks};
use crossterm::event::KeyCode;
use mission_control::console::app::App;
use mission_control::console::rows::{self, Target};
use mission_control::console::state::{ConsoleOptions, Overlay, Screen};
use mission_control::console::sync::LocalWorker;
use mission_control::domain::SyncState;
use mission_control::store::tasks::TaskEdit;
use mission_control::sync::queue;
use serde_json::json;

async fn console(s: &Setup) -> App {
    let project = s.store.project_by_key("SYN").await.unwrap();
    app(&s.store, project, 120, 40, &ConsoleOptions::defaults(false)).await
}

/// Moves the Risks cursor onto the first row whose target `wanted` accepts.
async fn select_on_risks(app: &mut App, wanted: impl Fn(&Target) -> bool) {
    let sections = rows::sections(&app.state, Screen::Risks);
    let index = rows::flat(&sections).iter().position(|(_, row)| wanted(&row.target)).expect("the row is listed");
    press(app, &[key(KeyCode::Home)]).await;
    for _ in 0..index {
        press(app, &[ch('j')]).await;
    }
    assert!(wanted(&rows::selected_target(&app.state, Screen::Risks)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflict_is_listed_on_risks_and_settled_with_a_key() {
    let s = setup_with(3, "manual").await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("Ours".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    s.plane.edit_item(&mapping.external_id, json!({"name": "Theirs"}));
    sync(&s).await;

    let mut app = console(&s).await;
    let status = render(&app);
    assert!(status.contains("sync: plane"), "the status line names the connection:\n{status}");
    assert!(status.contains("conflict"), "and says it has a conflict:\n{status}");
    // The card carries the conflict badge.
    let card = app.state.board.columns.iter().flat_map(|c| c.cards.iter()).find(|c| c.key == task.key).unwrap();
    assert_eq!(card.sync_state, Some(SyncState::Conflict));

    press(&mut app, &[ch('6')]).await;
    let screen = render(&app);
    assert!(screen.contains("Sync conflicts (1)"), "{screen}");
    assert!(screen.contains("local: Ours") && screen.contains("remote: Theirs"), "{screen}");

    // R takes the remote value; the next pass carries it to the task.
    select_on_risks(&mut app, |t| matches!(t, Target::Conflict { .. })).await;
    press(&mut app, &[ch('R')]).await;
    let toast = &app.state.toasts.last().unwrap().text;
    assert!(toast.contains("took the remote value") && toast.contains("queued"), "{toast}");
    assert!(s.store.sync_conflicts(s.project_id, false).await.unwrap().is_empty());
    assert!(!render(&app).contains("Sync conflicts"), "the row is gone once settled");
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Theirs");
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "Theirs");
    let settled = s
        .store
        .list_audit(&mission_control::store::audit::AuditQuery {
            entity_key: Some(task.key.clone()),
            limit: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        settled.iter().any(|e| e.actor == "ana"
            && e.action.contains("resolve")
            && e.source == mission_control::domain::Source::Console),
        "{settled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_is_listed_and_retried_and_the_detail_shows_the_mapping() {
    let s = setup_with(2, "newest").await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("refused".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    s.plane.fail_next(("PATCH", "work-items/*"), Fault::Status(400));
    common::sync::drain(&s).await;
    assert_eq!(queue::dead_letters(&s.store, s.project_id).await.unwrap().len(), 1);

    let mut app = console(&s).await;
    press(&mut app, &[ch('6')]).await;
    let screen = render(&app);
    assert!(screen.contains("Sync dead letters (1)"), "{screen}");
    assert!(screen.contains(&format!("task:{}", task.id)) && screen.contains("400"), "{screen}");
    select_on_risks(&mut app, |t| matches!(t, Target::DeadLetter(_))).await;
    press(&mut app, &[ch('t')]).await;
    assert!(app.state.toasts.last().unwrap().text.contains("queued again"), "{:?}", app.state.toasts);
    assert!(queue::dead_letters(&s.store, s.project_id).await.unwrap().is_empty());
    assert!(!render(&app).contains("Sync dead letters"));
    assert_eq!(common::sync::drain(&s).await.failed, 0);
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "refused");

    // `T` with nothing dead says so and changes nothing.
    press(&mut app, &[ch('T')]).await;
    assert!(app.state.toasts.last().unwrap().text.contains("no sync dead letters"));

    // The task detail shows the mapping, its URL and its last sync.
    press(&mut app, &[key(KeyCode::Char(':'))]).await;
    press(&mut app, &text(&task.key)).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    assert!(matches!(app.state.overlay, Some(Overlay::Detail(_))));
    let detail = render(&app);
    assert!(detail.contains("External mappings (1)"), "{detail}");
    assert!(detail.contains("plane") && detail.contains("synced"), "{detail}");
    let url = mapping.url.clone().expect("a work item mapping has a URL");
    assert!(detail.contains(&url[..url.len().min(40)]), "the URL is shown:\n{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sync_worker_runs_inside_the_console_until_stopped() {
    let s = setup_with(2, "newest").await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    let mut app = console(&s).await;

    press(&mut app, &[key(KeyCode::Char(':'))]).await;
    press(&mut app, &text("sync start")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    assert!(matches!(app.state.conn.sync.worker, LocalWorker::Running { .. }), "{:?}", app.state.toasts);
    assert!(render(&app).contains("sync(here):"));

    // A local edit reaches Plane without any other process running.
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("from here".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    let plane = &s.plane;
    let external = mapping.external_id.clone();
    let pushed = wait_until(&mut app, Duration::from_secs(20), |_| {
        plane.item(&external).is_some_and(|item| item["name"] == "from here")
    })
    .await;
    assert!(pushed, "the console's worker pushed the edit");

    press(&mut app, &[key(KeyCode::Char(':'))]).await;
    press(&mut app, &text("sync stop")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    let stopped =
        wait_until(&mut app, Duration::from_secs(10), |app| app.state.conn.sync.worker == LocalWorker::Off).await;
    assert!(stopped, "the worker stopped: {:?}", app.state.toasts);
    assert!(app.state.toasts.iter().any(|t| t.text.contains("has stopped")), "{:?}", app.state.toasts);

    // Stopped means stopped: a later edit stays queued.
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("later".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    app.settle(Duration::from_millis(500)).await;
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "from here");
    assert_eq!(s.db.count(&format!("sync_job WHERE key = 'task:{}'", task.id)).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_only_console_does_not_start_a_worker() {
    let s = setup_with(1, "newest").await;
    let project = s.store.project_by_key("SYN").await.unwrap();
    let mut options = ConsoleOptions::defaults(false);
    options.read_only = true;
    let mut app = app(&s.store, project, 100, 30, &options).await;
    press(&mut app, &[key(KeyCode::Char(':'))]).await;
    press(&mut app, &text("sync start")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    assert_eq!(app.state.conn.sync.worker, LocalWorker::Off);
    assert!(app.state.toasts.last().unwrap().text.contains("read-only"));
}
