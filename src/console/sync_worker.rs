//! The sync worker run inside the console (`:sync start`), for a single
//! operator who has no `mctl sync run` elsewhere: one `Worker` for the open
//! project on a tokio task. It stops on `:sync stop`, on quit, or when the
//! console goes away (dropping the handle asks it to stop), always after the
//! key at hand, and reports `Action::SyncWorkerStopped` when it has ended.
//! A database outage does not end it: like `mctl sync run`'s, it waits and
//! carries on; it ends on its own only when it cannot go on, with the reason.

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::action::Action;
use crate::store::Store;
use crate::sync::worker::{Limiters, Worker, WorkerOptions};

pub struct ConsoleSyncWorker {
    run: u64,
    /// Sending (or dropping) this asks the worker to stop.
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl ConsoleSyncWorker {
    pub fn start(
        store: Store,
        project_id: i64,
        run: u64,
        retry_for: std::time::Duration,
        tx: UnboundedSender<Action>,
    ) -> ConsoleSyncWorker {
        let (stop, stopped) = oneshot::channel::<()>();
        let defaults = WorkerOptions::default();
        // Named apart from `mctl sync run` workers in leases and logs.
        let options = WorkerOptions {
            id: format!("{}-console", defaults.id),
            project_id: Some(project_id),
            retry_for,
            ..defaults
        };
        let handle = tokio::spawn(async move {
            let mut worker = Worker::new(store, options, Limiters::default());
            let result = worker
                .run(async move {
                    let _ = stopped.await;
                })
                .await;
            let error = result.err().map(|e| e.to_string());
            if let Some(error) = &error {
                tracing::warn!(%error, "the console's sync worker stopped");
            }
            let _ = tx.send(Action::SyncWorkerStopped { run, error });
        });
        ConsoleSyncWorker { run, stop, handle }
    }

    pub fn run(&self) -> u64 {
        self.run
    }

    /// Asks the worker to stop; the handle resolves once it has.
    pub fn stop(self) -> JoinHandle<()> {
        let _ = self.stop.send(());
        self.handle
    }
}
