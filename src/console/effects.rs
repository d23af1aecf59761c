//! Runs effects as tokio tasks against the repository and sends the results
//! back as actions. One query of each kind in flight: a newer request aborts
//! the older one (whose result would be dropped anyway).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;

use super::action::{Action, Effect, Failure, Mutation, Outcome};
use super::data::{self, QueryKey};
use super::sync_worker::ConsoleSyncWorker;
use crate::domain::Source;
use crate::store::{Actor, Store};

pub struct Runner {
    store: Store,
    actor: Actor,
    /// Bulk changes over this many tasks take a snapshot first (0: never).
    snapshot_before_bulk: usize,
    tx: UnboundedSender<Action>,
    in_flight: HashMap<QueryKey, AbortHandle>,
    pending: Arc<AtomicUsize>,
    /// The sync worker started with `:sync start`, while it runs.
    sync_worker: Option<ConsoleSyncWorker>,
    /// How long that worker retries a failing key.
    sync_retry_for: std::time::Duration,
}

/// Decrements the pending count when a task ends, finished or aborted.
struct Pending(Arc<AtomicUsize>);

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Runner {
    pub fn new(store: Store, operator: &str, snapshot_before_bulk: usize, tx: UnboundedSender<Action>) -> Runner {
        Runner {
            store,
            actor: Actor::new(operator, Source::Console),
            snapshot_before_bulk,
            tx,
            in_flight: HashMap::new(),
            pending: Arc::new(AtomicUsize::new(0)),
            sync_worker: None,
            sync_retry_for: crate::sync::retry::DEFAULT_RETRY_FOR,
        }
    }

    pub fn with_sync_retry_for(mut self, retry_for: std::time::Duration) -> Runner {
        self.sync_retry_for = retry_for;
        self
    }

    /// Effects started and not yet reported back.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    fn guard(&self) -> Pending {
        self.pending.fetch_add(1, Ordering::SeqCst);
        Pending(self.pending.clone())
    }

    pub fn run(&mut self, effect: Effect, project_id: i64) {
        let tx = self.tx.clone();
        let store = self.store.clone();
        let guard = self.guard();
        match effect {
            Effect::Query { id, query } => {
                let key = query.key();
                let actor = self.actor.clone();
                let handle = tokio::spawn(async move {
                    let result = data::fetch(&store, &actor, project_id, query).await;
                    let _ = tx.send(Action::Loaded { id, result });
                    drop(guard);
                });
                if let Some(previous) = self.in_flight.insert(key, handle.abort_handle()) {
                    previous.abort();
                }
            }
            Effect::Mutate { id, request } => {
                let mut actor = self.actor.next_operation();
                actor.reason = request.reason.clone();
                let threshold = self.snapshot_before_bulk;
                tokio::spawn(async move {
                    let progress_tx = tx.clone();
                    let progress = move |step: &str| {
                        let _ = progress_tx.send(Action::Progress(step.to_string()));
                    };
                    let result = match &request.mutation {
                        Mutation::Bulk(items) if threshold > 0 && items.len() >= threshold => {
                            // A bulk change this size is undoable from Recovery as well.
                            let label = format!("before: {}", request.label);
                            match store
                                .create_snapshot(&actor, project_id, &label, crate::snapshot::Reason::PreBulk)
                                .await
                            {
                                Ok(_) => apply(&store, &actor, project_id, &request.mutation, &progress).await,
                                Err(e) => Err(Failure::from(e)),
                            }
                        }
                        mutation => apply(&store, &actor, project_id, mutation, &progress).await,
                    };
                    let _ = tx.send(Action::Mutated { id, request, result });
                    drop(guard);
                });
            }
            Effect::ScheduleRefresh(ms) => {
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    let _ = tx.send(Action::RefreshDue);
                    drop(guard);
                });
            }
            Effect::LoadProject(key) => {
                tokio::spawn(async move {
                    let result = store.project_by_key(&key).await.map_err(Failure::from);
                    let _ = tx.send(Action::ProjectLoaded(result));
                    drop(guard);
                });
            }
            Effect::OpenEditor { .. } => {
                // The terminal loop owns the terminal and handles this one.
                drop(guard);
            }
            Effect::StartSyncWorker { run, project_id } => {
                // A long-running task, not a pending effect: it reports when it ends.
                drop(guard);
                if let Some(previous) = self.sync_worker.take() {
                    previous.stop();
                }
                self.sync_worker = Some(ConsoleSyncWorker::start(store, project_id, run, self.sync_retry_for, tx));
            }
            Effect::StopSyncWorker { run } => {
                match self.sync_worker.take_if(|worker| worker.run() == run) {
                    // Pending until the worker has ended, so its report is queued by then.
                    Some(worker) => {
                        let handle = worker.stop();
                        tokio::spawn(async move {
                            let _ = handle.await;
                            drop(guard);
                        });
                    }
                    None => drop(guard),
                }
            }
        }
    }

    /// Asks the console's sync worker (if any) to stop; the handle resolves once it has.
    pub fn stop_sync_worker(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.sync_worker.take().map(ConsoleSyncWorker::stop)
    }
}

/// Makes one change through the repository; long ones report their steps to `progress`.
pub async fn apply(
    store: &Store,
    actor: &Actor,
    project_id: i64,
    mutation: &Mutation,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<Outcome, Failure> {
    let task = |t| Ok(Outcome::Task(Box::new(t)));
    match mutation {
        Mutation::Move { key, lane, position, expect_version } => {
            task(store.move_task(actor, key, lane.as_deref(), position.clone(), *expect_version).await?)
        }
        Mutation::Create(new) => task(store.create_task(actor, project_id, new.clone()).await?),
        Mutation::Edit { key, edit, expect_version } => {
            task(store.edit_task(actor, key, edit.clone(), *expect_version).await?)
        }
        Mutation::Assign { key, handle, expect_version } => {
            task(store.assign_task(actor, key, handle.as_deref(), *expect_version).await?)
        }
        Mutation::SetArchived { key, archived, expect_version } => {
            task(store.set_task_archived(actor, key, *archived, *expect_version).await?)
        }
        Mutation::OpenHandoff(new) => Ok(Outcome::Handoff(Box::new(store.open_handoff(actor, new.clone()).await?))),
        Mutation::TransitionHandoff { id, state } => {
            Ok(Outcome::Handoff(Box::new(store.transition_handoff(actor, *id, *state, "", None).await?)))
        }
        Mutation::EditPage { slug, body, expect_version } => Ok(Outcome::Page(Box::new(
            store.edit_page(actor, project_id, slug, None, Some(body), Some(*expect_version)).await?,
        ))),
        Mutation::FollowUp { pipeline } => task(store.create_follow_up(actor, project_id, pipeline.id).await?),
        Mutation::Bulk(items) => {
            let mut tasks = Vec::new();
            let mut failures = Vec::new();
            for item in items {
                match Box::pin(apply(store, actor, project_id, item, progress)).await {
                    Ok(Outcome::Task(t)) => tasks.push(*t),
                    Ok(_) => {}
                    Err(Failure::Unavailable(reason)) => return Err(Failure::Unavailable(reason)),
                    Err(failure) => failures.push(failure.message()),
                }
            }
            if failures.is_empty() { Ok(Outcome::Tasks(tasks)) } else { Ok(Outcome::Partial { tasks, failures }) }
        }
        Mutation::CreateSnapshot { label } => Ok(Outcome::Snapshot(Box::new(
            store.create_snapshot(actor, project_id, label, crate::snapshot::Reason::Manual).await?,
        ))),
        Mutation::Restore { snapshot_id, only } => {
            let options = crate::snapshot::RestoreOptions { only: only.clone(), ..Default::default() };
            Ok(Outcome::Restored(Box::new(store.restore_snapshot(actor, *snapshot_id, &options, progress).await?)))
        }
        Mutation::ResolveConflict { id, take_local } => {
            let (_, key) = store.sync_resolve_conflict(actor, project_id, *id, *take_local).await?;
            Ok(Outcome::SyncQueued { key })
        }
        Mutation::RetryDead { id } => {
            Ok(Outcome::Retried(crate::sync::queue::retry_dead(store, project_id, *id).await?))
        }
    }
}
