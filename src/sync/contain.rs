//! Failure containment inside a pass: one object the provider refuses (or
//! the store will not take) is that object's failure, recorded on its own
//! queue key with the provider's words, and the pass goes on. Only what
//! concerns the whole connection ends a pass: the provider's rate limit, or
//! the database going away (then nothing could be recorded anyway).

use std::time::Duration;

use super::error::{SyncError, SyncResult};
use super::queue;
use super::report::PassReport;
use crate::store::Store;

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
