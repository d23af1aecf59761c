//! The operator console: one state, one action enum, a single `update`, a pure
//! `draw`, and I/O as tokio tasks that report back as actions.
//!
//! ```text
//! keys ─► Action ─► update(state) ─► Effect ─► tokio task ─► repository ─► PostgreSQL
//!            ▲                                      │                         │
//!            └──────── Action::Loaded/Mutated ◄─────┘      LISTEN/NOTIFY ◄────┘
//! state ─► draw (pure) ─► terminal (diffed, synchronized output, ≤ 30 fps)
//! ```

pub mod action;
pub mod app;
pub mod command_line;
pub mod data;
pub mod draw;
pub mod editor;
pub mod effects;
pub mod filter;
pub mod keymap;
pub mod layout;
pub mod live;
pub mod panes;
pub mod recovery;
pub mod rows;
pub mod state;
pub mod sync;
pub mod sync_worker;
pub mod terminal;
pub mod theme;
pub mod update;

use std::time::Duration;

use time::OffsetDateTime;

use self::action::Action;
use self::app::App;
use self::state::ConsoleOptions;
use crate::domain::Project;
use crate::error::{Error, Result};
use crate::store::Store;

/// Frames are coalesced to at most this rate.
const FRAME: Duration = Duration::from_millis(33);

/// Opens the console on `project` and runs it until the operator quits.
pub async fn run(store: Store, project: Project, operator: &str, options: ConsoleOptions) -> Result<()> {
    terminal::install_panic_hook(options.mouse);
    let (mut term, mut guard) = terminal::TerminalGuard::enter(options.mouse)
        .map_err(|e| Error::Io(format!("cannot set up the terminal: {e}")))?;
    let size = term.size().map_err(|e| Error::Io(e.to_string()))?;
    let mut app = App::new(store.clone(), project, operator, &options, OffsetDateTime::now_utc());
    app.state.width = size.width;
    app.state.height = size.height;
    let tx = app.sender();
    let input = terminal::Input::spawn(tx.clone());
    terminal::spawn_signals(tx.clone());
    let listener = live::spawn(store, tx.clone());
    let clock = tokio::spawn({
        let tx = tx.clone();
        async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                if tx.send(Action::Tick(OffsetDateTime::now_utc())).is_err() {
                    return;
                }
            }
        }
    });
    app.start();
    let draw = |term: &mut terminal::Term, app: &App| {
        terminal::draw(term, |frame| app.draw(frame)).map_err(|e| Error::Io(format!("cannot draw: {e}")))
    };
    draw(&mut term, &app)?;
    let mut last_frame = tokio::time::Instant::now();
    let mut dirty = false;
    loop {
        let next_frame = last_frame + FRAME;
        tokio::select! {
            action = app.next_action() => {
                let Some(action) = action else { break };
                app.dispatch(action);
                // Take everything already queued before drawing once.
                let mut batch = 0;
                while batch < 512 {
                    let Some(action) = app.try_next_action() else { break };
                    app.dispatch(action);
                    batch += 1;
                }
                dirty = true;
            }
            _ = tokio::time::sleep_until(next_frame), if dirty => {}
        }
        if app.state.should_quit {
            break;
        }
        if let Some(request) = app.take_editor_request() {
            input.pause();
            guard.suspend();
            let outcome = tokio::task::spawn_blocking(move || {
                let result = editor::edit(&request.body, &request.slug);
                (request, result)
            })
            .await;
            guard.resume(&mut term).map_err(|e| Error::Io(format!("cannot restore the console: {e}")))?;
            input.resume();
            if let Ok((request, result)) = outcome {
                let (body, error) = match result {
                    Ok(body) => (body, None),
                    Err(error) => (None, Some(error)),
                };
                app.dispatch(Action::EditorDone { slug: request.slug, version: request.version, body, error });
            }
            dirty = true;
        }
        if dirty && tokio::time::Instant::now() >= next_frame {
            draw(&mut term, &app)?;
            last_frame = tokio::time::Instant::now();
            dirty = false;
        }
    }
    listener.abort();
    clock.abort();
    drop(guard);
    // The terminal is back; let a sync worker started here finish its key.
    app.shutdown().await;
    Ok(())
}
