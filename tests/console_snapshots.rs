//! Every screen, the task detail, help, command mode, the forms, the assign
//! picker, the confirmations and the Recovery screen with a snapshot (its diff
//! and the restore confirmation), at 80×24 and 160×48, on the demo data set
//! (insta snapshots in tests/snapshots/).

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::TestDb;
use common::console::{ch, demo_app, key, pin_clock, press, render, text};
use crossterm::event::KeyCode;
use mission_control::store::tasks::{NewTask, TaskEdit};

async fn snapshot_all(width: u16, height: u16) {
    let db = TestDb::new().await;
    let mut app = demo_app(&db, width, height).await;
    let size = format!("{width}x{height}");
    let shot = |app: &mut mission_control::console::app::App, name: &str| {
        pin_clock(&mut app.state);
        insta::assert_snapshot!(format!("{name}_{size}"), render(app));
    };

    for (number, name) in [
        ('1', "inbox"),
        ('2', "today"),
        ('4', "planning"),
        ('5', "delivery"),
        ('6', "risks"),
        ('8', "settings"),
        ('3', "work"),
    ] {
        press(&mut app, &[ch(number)]).await;
        shot(&mut app, name);
    }

    // The board with the audit drawer open.
    press(&mut app, &[ch('A')]).await;
    shot(&mut app, "work_drawer");
    press(&mut app, &[ch('A')]).await;

    // Task detail of a blocked task with a handoff.
    press(&mut app, &[ch(':')]).await;
    press(&mut app, &text("DEMO-13")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    shot(&mut app, "detail");
    press(&mut app, &[key(KeyCode::Esc)]).await;

    press(&mut app, &[ch('?')]).await;
    shot(&mut app, "help");
    press(&mut app, &[key(KeyCode::Esc)]).await;

    press(&mut app, &[ch(':')]).await;
    press(&mut app, &text("move DEMO-4 Re")).await;
    shot(&mut app, "command");
    press(&mut app, &[key(KeyCode::Esc)]).await;

    press(&mut app, &[ch('n')]).await;
    press(&mut app, &text("Rotate the webhook signing key")).await;
    shot(&mut app, "new_task_form");
    press(&mut app, &[key(KeyCode::Esc)]).await;

    press(&mut app, &[ch('x')]).await;
    shot(&mut app, "confirm_archive");
    press(&mut app, &[ch('n')]).await;
    // Toasts expire by the clock, which stands still here: drop the ones
    // earlier steps left before each new scene.
    app.state.toasts.clear();

    // A blocked handoff on the selected card, half filled in.
    press(&mut app, &[ch('o'), key(KeyCode::Right), key(KeyCode::Tab)]).await;
    press(&mut app, &text("@bo")).await;
    press(&mut app, &[key(KeyCode::Tab)]).await;
    press(&mut app, &text("waiting for the staging credentials")).await;
    shot(&mut app, "handoff_form");
    press(&mut app, &[key(KeyCode::Esc)]).await;

    // The assign picker, narrowed by typing.
    press(&mut app, &[ch('a'), ch('a')]).await;
    shot(&mut app, "assign_picker");
    press(&mut app, &[key(KeyCode::Esc)]).await;

    // Recovery with a snapshot taken here, then changes made elsewhere.
    press(&mut app, &[ch('7'), ch('c')]).await;
    press(&mut app, &text("before the offsite")).await;
    press(&mut app, &[key(KeyCode::Enter)]).await;
    let bo = common::actor("bo");
    let store = db.store().await;
    let edit = TaskEdit { title: Some("Evaluate moving feature flags to a vendor".into()), ..Default::default() };
    store.edit_task(&bo, "DEMO-4", edit, None).await.unwrap();
    store.set_task_archived(&bo, "DEMO-16", true, None).await.unwrap();
    let new = NewTask { title: "Rotate the webhook signing key".into(), ..Default::default() };
    store.create_task(&bo, app.state.project.id, new).await.unwrap();
    press(&mut app, &[ch('7')]).await;
    app.state.toasts.clear();
    shot(&mut app, "recovery_snapshots");

    // What changed since, with one task marked for a partial restore.
    press(&mut app, &[ch('d'), ch('j'), ch('j'), key(KeyCode::Char(' '))]).await;
    shot(&mut app, "snapshot_diff");

    // The restore asks for the project key, typed here in part.
    press(&mut app, &[ch('r')]).await;
    press(&mut app, &text("DEM")).await;
    pin_clock(&mut app.state);
    let screen = render(&app);
    assert!(screen.contains("Type DEMO to restore: DEM"), "the prompt shows what was typed:\n{screen}");
    shot(&mut app, "restore_confirm");
    press(&mut app, &[key(KeyCode::Esc)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_at_80x24() {
    snapshot_all(80, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_at_160x48() {
    snapshot_all(160, 48).await;
}
