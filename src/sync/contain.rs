//! Failure containment inside a pass: one object the provider refuses (or
//! the store will not take) is that object's failure, recorded on its own
//! queue key with the provider's words, and the pass goes on. Only what
//! concerns the whole connection ends a pass: the provider's rate limit, or
//! the database going away (then nothing could be recorded anyway).

use std::time::Duration;

use super::error::{SyncError, SyncResult, is_store_outage};
use super::queue;
use super::report::PassReport;
use crate::store::sync::ImportedTask;
use crate::store::{Actor, Store};

/// New remote objects are created locally in batches of this many.
const IMPORT_BATCH: usize = 500;

/// A remote object to create locally: the task, its key and how an
/// operator reads it (for when it fails).
pub struct Import {
    pub task: ImportedTask,
    pub key: String,
    pub label: String,
}

/// Whether an object's failure ends the whole pass.
pub fn stops_pass(error: &SyncError) -> bool {
    error.not_before().is_some() || error.is_database_outage()
}

/// The failures and successes of one pass's objects.
pub struct Containment {
    store: Store,
    connection_id: i64,
    retry_for: Duration,
    /// Keys of objects that synced: their old dead letters are stale.
    synced: Vec<String>,
}

impl Containment {
    pub fn new(store: &Store, connection_id: i64, retry_for: Duration) -> Containment {
        Containment { store: store.clone(), connection_id, retry_for, synced: Vec::new() }
    }

    /// Records that the object of `key` (shown as `object`) failed, unless
    /// the failure must end the pass, which is then returned.
    pub async fn failed(&self, report: &mut PassReport, key: &str, object: &str, error: SyncError) -> SyncResult<()> {
        if stops_pass(&error) {
            return Err(error);
        }
        let message = error.to_string();
        queue::record_failure(&self.store, self.connection_id, key, &message, error.is_transient(), self.retry_for)
            .await?;
        tracing::warn!(connection = self.connection_id, key, "sync: {object}: {message}");
        report.object_failed(object, &message);
        Ok(())
    }

    /// Creates local tasks for remote objects, in batches. A batch the store
    /// refuses is brought in one by one, so only the object at fault fails
    /// (recorded on its key). Returns how many were created.
    pub async fn import(
        &self,
        actor: &Actor,
        project_id: i64,
        imports: Vec<Import>,
        report: &mut PassReport,
    ) -> SyncResult<usize> {
        let mut created = 0;
        for chunk in imports.chunks(IMPORT_BATCH) {
            let batch: Vec<ImportedTask> = chunk.iter().map(|i| i.task.clone()).collect();
            match self.store.sync_import_tasks(actor, project_id, self.connection_id, &batch).await {
                Ok(n) => created += n,
                Err(e) if is_store_outage(&e) => return Err(e.into()),
                Err(_) => {
                    for one in chunk {
                        let single = std::slice::from_ref(&one.task);
                        match self.store.sync_import_tasks(actor, project_id, self.connection_id, single).await {
                            Ok(n) => created += n,
                            Err(e) => self.failed(report, &one.key, &one.label, e.into()).await?,
                        }
                    }
                }
            }
        }
        Ok(created)
    }

    /// Notes that the object of `key` synced.
    pub fn synced(&mut self, key: String) {
        self.synced.push(key);
    }

    /// Clears the dead letters of objects that synced since.
    pub async fn finish(self) -> SyncResult<()> {
        queue::clear_dead(&self.store, self.connection_id, &self.synced).await?;
        Ok(())
    }
}
