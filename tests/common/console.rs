//! Driving the console headless: an `App` on a test database, keys in,
//! frames out through ratatui's `TestBackend`.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mission_control::console::action::Action;
use mission_control::console::app::App;
use mission_control::console::state::{AppState, ConsoleOptions, Overlay};
use mission_control::domain::Project;
use mission_control::store::Store;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use time::OffsetDateTime;
use time::macros::datetime;

use super::TestDb;

/// The fixed "now" of every console test: the demo data set is laid out
/// around it, and the console's clock shows it, so frames are repeatable.
pub const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

pub async fn seed_demo(store: &Store) -> Project {
    let actor = super::actor("seed");
    match mission_control::seed::seed_demo(store, &actor, NOW).await.unwrap() {
        mission_control::seed::DemoOutcome::Created(p) | mission_control::seed::DemoOutcome::AlreadyThere(p) => p,
    }
}

/// An app on `project` as operator `ana`, sized `width`×`height`, loaded.
pub async fn app(store: &Store, project: Project, width: u16, height: u16, options: &ConsoleOptions) -> App {
    let mut app = App::new(store.clone(), project, "ana", options, NOW);
    app.state.width = width;
    app.state.height = height;
    app.start();
    let settled = app.settle(Duration::from_secs(10)).await;
    assert!(settled, "the console did not finish loading: {} pending, toasts {:?}", app.pending(), app.state.toasts);
    app
}

pub async fn demo_app(db: &TestDb, width: u16, height: u16) -> App {
    let store = db.store().await;
    let project = seed_demo(&store).await;
    app(&store, project, width, height, &ConsoleOptions::defaults(false)).await
}

/// Lets `app` process whatever arrives until `done` holds or `limit` passes.
pub async fn wait_until(app: &mut App, limit: Duration, done: impl Fn(&App) -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        app.settle(Duration::from_millis(50)).await;
        if done(app) {
            return true;
        }
    }
    false
}

/// Sends keys as a person would type them, letting each one's effects finish.
pub async fn press(app: &mut App, keys: &[KeyEvent]) {
    for key in keys {
        app.dispatch(Action::Key(*key));
        assert!(app.settle(Duration::from_secs(10)).await, "effects of {key:?} did not finish");
    }
}

pub fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub fn ch(c: char) -> KeyEvent {
    let modifiers = if c.is_ascii_uppercase() { KeyModifiers::SHIFT } else { KeyModifiers::NONE };
    KeyEvent::new(KeyCode::Char(c), modifiers)
}

pub fn text(s: &str) -> Vec<KeyEvent> {
    s.chars().map(ch).collect()
}

/// Timestamps that come from the database clock (audit times, page edits)
/// differ run to run; pin them so frames can be compared.
pub fn pin_clock(state: &mut AppState) {
    for entry in state.drawer.entries.iter_mut() {
        entry.at = NOW - time::Duration::minutes(1);
    }
    if let Some(Overlay::Detail(detail)) = &mut state.overlay
        && let Some(data) = &mut detail.data
    {
        for entry in &mut data.history {
            entry.at = NOW - time::Duration::minutes(1);
        }
    }
    if let Some(planning) = &mut state.planning {
        for page in &mut planning.pages {
            page.updated_at = NOW - time::Duration::hours(2);
        }
    }
    // A snapshot's time comes from the database clock, and its compressed
    // size varies with the timestamps inside.
    for snapshot in state.recovery.iter_mut().flatten() {
        snapshot.created_at = NOW - time::Duration::minutes(5);
        snapshot.size_bytes = 40 * 1024;
    }
    state.conn.last_refresh = Some(NOW);
}

/// Draws the app and returns the screen as text, one line per row.
pub fn render(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(app.state.width, app.state.height)).unwrap();
    terminal.draw(|frame| app.draw(frame)).unwrap();
    screen_text(terminal.backend().buffer())
}

pub fn screen_text(buffer: &ratatui::buffer::Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        let mut x = 0;
        while x < area.width {
            let symbol = buffer[(x, y)].symbol();
            line.push_str(symbol);
            // A wide character covers the next cell too.
            x += unicode_width::UnicodeWidthStr::width(symbol).max(1) as u16;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
