//! What sync did, and what it would do: one object's reconcile, one pass
//! over a connection, a drain of the queue (`mctl sync once`), and the dry
//! run of a full pass (`mctl sync plan`). Shared by every provider.

use serde::Serialize;
use time::OffsetDateTime;

/// What one object's reconcile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectOutcome {
    Unchanged,
    Created,
    /// Linked to the remote copy an earlier, interrupted create left.
    Adopted,
    Pushed,
    Pulled,
    PushedAndPulled,
    /// Some field needs an operator.
    Conflict,
    RemoteDeleted,
    /// Not synced (archived, or in a lane that does not sync).
    Skipped,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassReport {
    pub full: bool,
    /// HTTP requests the listings took.
    pub requests: usize,
    /// Listing requests answered 304 (unchanged since last read).
    pub not_modified: usize,
    pub listed: usize,
    /// What the listed objects came to (in the JSON beside the other counts).
    #[serde(flatten)]
    pub objects: ObjectCounts,
    pub created_local: usize,
    pub planning_changes: usize,
    /// Lanes made for Plane states on a connection's first pass.
    pub lanes_created: usize,
    /// Pipelines, deployments and releases read (repository providers).
    pub delivery: usize,
    /// Local objects with no remote copy yet, queued to be created remotely
    /// (the initial push of a connection, or what a full pass found missing).
    pub queued_creates: usize,
    /// Objects that failed in this pass; each failure is recorded on the
    /// object's own key (retried there, or a dead letter), never the pass's.
    pub failed_objects: usize,
    /// Listings that failed without ending the pass (a delivery feed, the
    /// planning objects): the pass's own trouble, `WHAT: what failed`.
    pub failed_listings: Vec<String>,
    /// `OBJECT: what failed` per failed object, then the failed listings.
    pub errors: Vec<String>,
}

impl PassReport {
    /// Counts one listed object's outcome.
    pub fn count(&mut self, outcome: ObjectOutcome) {
        self.objects.count(outcome);
    }

    /// Records that one object failed (its key holds the failure).
    pub fn object_failed(&mut self, object: &str, error: &impl std::fmt::Display) {
        self.failed_objects += 1;
        self.errors.push(format!("{object}: {error}"));
    }

    /// Records that a listing failed; the pass went on without it.
    pub fn listing_failed(&mut self, what: &str, error: &impl std::fmt::Display) {
        let message = format!("{what}: {error}");
        self.failed_listings.push(message.clone());
        self.errors.push(message);
    }

    /// The pass's own trouble, if any (object failures are the objects').
    pub fn listing_error(&self) -> Option<&str> {
        self.failed_listings.first().map(String::as_str)
    }
}

/// What reconciled objects came to: a pass's listed ones, or a drain's
/// objects worked off one by one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObjectCounts {
    pub created_remote: usize,
    pub pushed: usize,
    pub pulled: usize,
    pub conflicts: usize,
    pub deleted_remotely: usize,
    /// Needed nothing (or are not synced: archived, a lane that does not sync).
    pub unchanged: usize,
}

impl ObjectCounts {
    pub fn count(&mut self, outcome: ObjectOutcome) {
        match outcome {
            ObjectOutcome::Created | ObjectOutcome::Adopted => self.created_remote += 1,
            ObjectOutcome::Pushed => self.pushed += 1,
            ObjectOutcome::Pulled => self.pulled += 1,
            ObjectOutcome::PushedAndPulled => {
                self.pushed += 1;
                self.pulled += 1;
            }
            ObjectOutcome::Conflict => self.conflicts += 1,
            ObjectOutcome::RemoteDeleted => self.deleted_remotely += 1,
            ObjectOutcome::Unchanged | ObjectOutcome::Skipped => self.unchanged += 1,
        }
    }
}

/// What a drain did (`mctl sync once`), and what it left undone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    pub jobs: usize,
    /// Keys that failed in this drain (retried later, or dead letters).
    pub failed: usize,
    /// Put off because the provider asked us to wait.
    pub deferred: usize,
    /// Of those, recurring passes (`pull`, `full`): not done this time.
    pub deferred_passes: usize,
    pub objects: ObjectCounts,
    pub passes: Vec<PassReport>,
    /// `KEY: what failed`, for keys and for objects inside passes.
    pub errors: Vec<String>,
    /// Keys of the served connections still queued when the drain ended
    /// (waiting out a rate limit or a backoff), recurring passes aside.
    pub left_queued: i64,
    /// When the first of them may run.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_due: Option<OffsetDateTime>,
    /// The latest rate-limit pause among the served connections.
    #[serde(with = "time::serde::rfc3339::option")]
    pub rate_limited_until: Option<OffsetDateTime>,
    /// Dead letters of the served connections, old ones included.
    pub dead_letters: i64,
}

impl DrainReport {
    /// Whether everything was done: nothing failed, nothing was left queued.
    pub fn complete(&self) -> bool {
        self.failed == 0
            && self.left_queued == 0
            && self.deferred_passes == 0
            && self.passes.iter().all(|p| p.errors.is_empty())
    }
}

/// A dry run of one kind of planning object (cycles, modules) or of
/// releases: names on each side.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObjectPlan {
    /// Local objects that would get a remote copy.
    pub create_remote: Vec<String>,
    /// Remote objects that would be made here.
    pub create_local: Vec<String>,
    /// Name → fields that would be sent.
    pub push: Vec<(String, Vec<String>)>,
    /// Name → fields that would be written here.
    pub pull: Vec<(String, Vec<String>)>,
}

impl ObjectPlan {
    pub fn is_empty(&self) -> bool {
        self.create_remote.is_empty() && self.create_local.is_empty() && self.push.is_empty() && self.pull.is_empty()
    }
}

/// `mctl sync plan`: what a full pass would do on each side.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncPlan {
    /// Tasks (`KEY title` here, `PROJ-12 title` remotely; task key → fields
    /// to send or take), at the top level of the JSON.
    #[serde(flatten)]
    pub tasks: ObjectPlan,
    /// Task key → fields changed differently on both sides.
    pub conflicts: Vec<(String, Vec<String>)>,
    /// Tasks whose remote copy is gone.
    pub deleted_remotely: Vec<String>,
    /// Plane states that would become lanes (`name (group)`) on the first pass.
    pub lanes_to_create: Vec<String>,
    /// Plane cycles and modules.
    pub cycles: ObjectPlan,
    pub modules: ObjectPlan,
    /// Provider releases that would be recorded or updated here (repositories).
    pub releases: ObjectPlan,
    pub requests: usize,
}
