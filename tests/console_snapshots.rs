//! Every screen, the task detail, help, command mode, a form and a
//! confirmation, at 80×24 and 160×48, on the demo data set (insta snapshots
//! in tests/snapshots/). Recovery lists one snapshot of it.

mod common;

use common::TestDb;
use common::console::{ch, demo_app, key, pin_clock, press, render, text};
use crossterm::event::KeyCode;
use mission_control::snapshot::Reason;

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

    // Recovery with a snapshot listed, taken last: its audit entry would show
    // in the drawer above.
    let store = db.store().await;
    let operator = common::actor("ana");
    store.create_snapshot(&operator, app.state.project.id, "before the offsite", Reason::Manual).await.unwrap();
    press(&mut app, &[ch('7')]).await;
    // The archive confirmation's "cancelled" toast is not part of this screen.
    app.state.toasts.clear();
    shot(&mut app, "recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_at_80x24() {
    snapshot_all(80, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_at_160x48() {
    snapshot_all(160, 48).await;
}
