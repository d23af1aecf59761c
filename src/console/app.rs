//! The console without a terminal: state, the effect runner and the action
//! channel. The terminal loop drives it; headless tests drive it the same way.

use std::time::Duration;

use ratatui::Frame;
use time::OffsetDateTime;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use super::action::{Action, Effect};
use super::effects::Runner;
use super::state::{AppState, ConsoleOptions};
use super::{draw, update};
use crate::domain::Project;
use crate::store::Store;

/// A page edit waiting for the terminal to hand over to `$EDITOR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditorRequest {
    pub slug: String,
    pub version: i32,
    pub body: String,
}

/// How long quitting waits for the console's sync worker.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub struct App {
    pub state: AppState,
    runner: Runner,
    tx: UnboundedSender<Action>,
    rx: UnboundedReceiver<Action>,
    editor: Option<EditorRequest>,
}

impl App {
    pub fn new(store: Store, project: Project, operator: &str, options: &ConsoleOptions, now: OffsetDateTime) -> App {
        let (tx, rx) = mpsc::unbounded_channel();
        App {
            state: AppState::new(project, operator, options, now),
            runner: Runner::new(store, operator, options.snapshot_before_bulk, tx.clone())
                .with_sync_retry_for(options.sync_retry_for),
            tx,
            rx,
            editor: None,
        }
    }

    /// Where other tasks (terminal input, change notifications, the clock) send actions.
    pub fn sender(&self) -> UnboundedSender<Action> {
        self.tx.clone()
    }

    pub fn start(&mut self) {
        let effects = update::start(&mut self.state);
        self.run_effects(effects);
    }

    pub fn dispatch(&mut self, action: Action) {
        let effects = update::update(&mut self.state, action);
        self.run_effects(effects);
    }

    fn run_effects(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::OpenEditor { slug, version, body } => self.editor = Some(EditorRequest { slug, version, body }),
                other => self.runner.run(other, self.state.project.id),
            }
        }
    }

    pub async fn next_action(&mut self) -> Option<Action> {
        self.rx.recv().await
    }

    pub fn try_next_action(&mut self) -> Option<Action> {
        self.rx.try_recv().ok()
    }

    pub fn take_editor_request(&mut self) -> Option<EditorRequest> {
        self.editor.take()
    }

    /// Stops what outlives a frame: a sync worker started here gets a few
    /// seconds to finish the key at hand (an unfinished one is picked up
    /// again when its lease runs out).
    pub async fn shutdown(&mut self) {
        if let Some(worker) = self.runner.stop_sync_worker() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, worker).await;
        }
    }

    /// Effects started and not yet reported back.
    pub fn pending(&self) -> usize {
        self.runner.pending()
    }

    /// Processes actions until every effect has reported back and nothing is
    /// queued (or `timeout` passes). For tests and benchmarks.
    pub async fn settle(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(action) = self.try_next_action() {
                self.dispatch(action);
            }
            // A task sends its result just before it stops counting as pending,
            // so "nothing pending and nothing queued" is checked in that order.
            if self.pending() == 0 && self.rx.is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if let Ok(Some(action)) = tokio::time::timeout(Duration::from_millis(1), self.rx.recv()).await {
                self.dispatch(action);
            }
        }
    }

    pub fn draw(&self, frame: &mut Frame<'_>) {
        draw::draw(frame, &self.state);
    }
}
