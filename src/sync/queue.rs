//! The work queue in PostgreSQL. Keys are claimed with `FOR UPDATE SKIP
//! LOCKED` and a lease, so several workers share the work and a crashed
//! worker's keys come back when its lease runs out. A key changed again while
//! it was being worked on (its generation went up) is run again rather than
//! removed.

use crate::store::sql::Sql;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::retry::{backoff, next_attempt};
use crate::store::{Store, StoreResult};

/// The channel the outbox trigger wakes workers on.
pub const WAKE_CHANNEL: &str = "mc_sync";

/// Keys of the recurring passes.
pub const PULL: &str = "pull";
pub const FULL: &str = "full";

/// `remote:task:42` asks for task 42's remote copy to be read (a webhook said
/// it changed). The outbox queues plain `task:42` on any local change, and a
/// reconcile of that skips the remote read when no synced field changed.
pub const REMOTE_PREFIX: &str = "remote:";

/// `import:ID` is a remote object with no local copy yet that a pass could
/// not bring in (`import:cycle:ID` for Plane's planning objects).
pub const IMPORT_PREFIX: &str = "import:";

/// One object's key: `task:42`, `cycle:7`, `release:5001`.
pub fn object_key(kind: impl std::fmt::Display, id: impl std::fmt::Display) -> String {
    format!("{kind}:{id}")
}

/// The key asking for an object's remote copy to be read: `remote:task:42`.
pub fn remote_key(kind: impl std::fmt::Display, id: i64) -> String {
    format!("{REMOTE_PREFIX}{kind}:{id}")
}

/// The key of a remote object to bring in: `import:ID`.
pub fn import_key(remote_id: impl std::fmt::Display) -> String {
    format!("{IMPORT_PREFIX}{remote_id}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub connection_id: i64,
    pub key: String,
    pub generation: i32,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done,
    /// Run a recurring pass again after this long.
    Again(Duration),
    /// Not attempted: the provider asked us to wait until then (not a failure).
    Deferred(OffsetDateTime),
    /// Failed; `transient` failures come back after a backoff (and the
    /// provider's not-before), others become dead letters at once.
    Failed {
        error: String,
        transient: bool,
        not_before: Option<OffsetDateTime>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    pub id: i64,
    pub connection: String,
    pub key: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub failed_at: OffsetDateTime,
}

/// The tail of an `INSERT INTO sync_job` that coalesces with a queued key:
/// one claimed is run again (its generation goes up), one waiting out a
/// backoff runs now, a dead one comes back. One already due and unclaimed
/// is left alone: whoever claims it reads the object as it is then, so a
/// flood of changes to one object does not rewrite its row each time. The
/// outbox trigger (`sync_enqueue`, migration V12) does the same in SQL.
pub(crate) const COALESCE_WITH_QUEUED: &str = "ON CONFLICT (connection_id, key) DO UPDATE
    SET generation = sync_job.generation + 1, available_at = least(sync_job.available_at, now()),
        dead = false, attempts = CASE WHEN sync_job.dead THEN 0 ELSE sync_job.attempts END,
        updated_at = now()
    WHERE sync_job.dead OR sync_job.available_at > now() OR sync_job.locked_by IS NOT NULL";

/// Adds (or wakes) a key; a pending one coalesces.
pub async fn enqueue(store: &Store, connection_id: i64, key: &str) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .exec(
            &format!(
                "WITH queued AS (
                     INSERT INTO sync_job (connection_id, key) VALUES ($1, $2)
                     {COALESCE_WITH_QUEUED}
                     RETURNING id)
                 SELECT pg_notify($3, '') FROM queued"
            ),
            &[&connection_id, &key, &WAKE_CHANNEL],
        )
        .await?;
    Ok(())
}

/// Makes sure a recurring pass is queued, without moving one that is. A
/// dead one (a pass that failed for good: bad credentials, say) comes back
/// once it has been dead for `revive_after`, so a connection fixed by its
/// operator heals without anyone retrying it.
pub async fn schedule(
    store: &Store,
    connection_id: i64,
    key: &str,
    after: Duration,
    revive_after: Duration,
) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .exec(
            "INSERT INTO sync_job (connection_id, key, available_at) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
             ON CONFLICT (connection_id, key) DO UPDATE
                 SET dead = false, attempts = 0, available_at = now(), locked_by = NULL, locked_until = NULL,
                     updated_at = now()
                 WHERE sync_job.dead AND sync_job.updated_at <= now() - $4 * interval '1 millisecond'",
            &[&connection_id, &key, &millis(after), &millis(revive_after)],
        )
        .await?;
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_millis() as f64
}

/// Claims up to `limit` due keys for `worker` for `lease`. Keys of a
/// connection paused by its provider's rate limit wait.
pub async fn claim(store: &Store, worker: &str, limit: i64, lease: Duration) -> StoreResult<Vec<Job>> {
    let client = store.client().await?;
    let rows = client
        .fetch(
            "UPDATE sync_job j SET locked_by = $1, locked_until = now() + $2 * interval '1 millisecond', updated_at = now()
             FROM (SELECT q.id FROM sync_job q
                   JOIN integration_connection c ON c.id = q.connection_id AND c.enabled
                   LEFT JOIN sync_cursor s ON s.connection_id = q.connection_id
                   WHERE NOT q.dead AND q.available_at <= now()
                     AND (q.locked_until IS NULL OR q.locked_until < now())
                     AND (s.paused_until IS NULL OR s.paused_until <= now())
                   ORDER BY q.available_at, q.id
                   LIMIT $3
                   FOR UPDATE OF q SKIP LOCKED) due
             WHERE j.id = due.id
             RETURNING j.id, j.connection_id, j.key, j.generation, j.attempts, j.available_at",
            &[&worker, &(lease.as_millis() as f64), &limit],
        )
        .await?;
    // Oldest first, as claimed (RETURNING has no order of its own).
    let mut jobs: Vec<(OffsetDateTime, Job)> = rows
        .iter()
        .map(|r| {
            let job =
                Job { id: r.get(0), connection_id: r.get(1), key: r.get(2), generation: r.get(3), attempts: r.get(4) };
            (r.get(5), job)
        })
        .collect();
    jobs.sort_by_key(|(at, job)| (*at, job.id));
    Ok(jobs.into_iter().map(|(_, job)| job).collect())
}

/// Records how a claimed job ended. A transient failure is retried until
/// `retry_for` has passed since the key first failed; a final one is a dead
/// letter at once. Returns false when the worker had lost the job (its lease
/// ran out and another worker took it).
pub async fn finish(
    store: &Store,
    worker: &str,
    job: &Job,
    outcome: &Outcome,
    retry_for: Duration,
) -> StoreResult<bool> {
    let client = store.client().await?;
    let changed = match outcome {
        Outcome::Done => {
            let removed = client
                .exec(
                    "DELETE FROM sync_job WHERE id = $1 AND generation = $2 AND locked_by = $3",
                    &[&job.id, &job.generation, &worker],
                )
                .await?;
            if removed == 1 {
                return Ok(true);
            }
            // Changed again while we worked: release it to run again now.
            client
                .exec(
                    "UPDATE sync_job SET locked_by = NULL, locked_until = NULL, attempts = 0, last_error = NULL,
                            updated_at = now()
                     WHERE id = $1 AND locked_by = $2",
                    &[&job.id, &worker],
                )
                .await?
        }
        Outcome::Again(after) => {
            client
                .exec(
                    "UPDATE sync_job SET locked_by = NULL, locked_until = NULL, attempts = 0, last_error = NULL,
                            available_at = now() + $3 * interval '1 millisecond', updated_at = now()
                     WHERE id = $1 AND locked_by = $2",
                    &[&job.id, &worker, &(after.as_millis() as f64)],
                )
                .await?
        }
        Outcome::Deferred(until) => {
            client
                .exec(
                    "UPDATE sync_job SET locked_by = NULL, locked_until = NULL, available_at = $3,
                            last_error = 'waiting for the provider''s rate limit', updated_at = now()
                     WHERE id = $1 AND locked_by = $2",
                    &[&job.id, &worker, until],
                )
                .await?
        }
        Outcome::Failed { error, transient, not_before } => {
            let attempts = job.attempts + 1;
            let at = next_attempt(OffsetDateTime::now_utc(), attempts, *not_before);
            let error = crate::domain::text::clip(error, 1000).into_owned();
            client
                .exec(
                    &format!(
                        "UPDATE sync_job SET locked_by = NULL, locked_until = NULL, attempts = $3, available_at = $6,
                                {GIVE_UP}, updated_at = now()
                         WHERE id = $1 AND locked_by = $2"
                    ),
                    &[&job.id, &worker, &attempts, &error, &!transient, &at, &millis(retry_for), &horizon(retry_for)],
                )
                .await?
        }
    };
    Ok(changed == 1)
}

/// The `SET` part that decides whether a failing key gives up: at once when
/// the failure is final (`$5`), or once it has failed for the retry horizon
/// (`$7` ms, named `$8`) since its first failure. Its error is `$4`.
const GIVE_UP: &str = "dead = $5 OR coalesce(sync_job.first_failed_at, now()) <= now() - $7 * interval '1 millisecond',
     last_error = CASE WHEN NOT $5 AND coalesce(sync_job.first_failed_at, now()) <= now() - $7 * interval '1 millisecond'
                       THEN 'still failing after ' || $8 || ' of retries: ' || $4 ELSE $4 END";

fn horizon(retry_for: Duration) -> String {
    super::retry::span_text(retry_for)
}

/// Records the failure of an object that a pass met (it was not claimed as
/// a key): the object's own key is queued with the failure, so it is retried
/// with backoff there, or becomes that object's dead letter, and the pass
/// goes on. A key another worker holds right now is left to that worker.
pub async fn record_failure(
    store: &Store,
    connection_id: i64,
    key: &str,
    error: &str,
    transient: bool,
    retry_for: Duration,
) -> StoreResult<()> {
    let client = store.client().await?;
    let attempts: i32 = client
        .fetch_opt("SELECT attempts FROM sync_job WHERE connection_id = $1 AND key = $2", &[&connection_id, &key])
        .await?
        .map_or(0, |r| r.get(0))
        + 1;
    let at = OffsetDateTime::now_utc() + backoff(attempts);
    let error = crate::domain::text::clip(error, 1000).into_owned();
    client
        .exec(
            &format!(
                "INSERT INTO sync_job (connection_id, key, attempts, last_error, dead, available_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (connection_id, key) DO UPDATE
                     SET attempts = sync_job.attempts + 1, available_at = greatest(sync_job.available_at, $6),
                         {GIVE_UP}, updated_at = now()
                     WHERE sync_job.locked_by IS NULL OR sync_job.locked_until < now()"
            ),
            &[&connection_id, &key, &attempts, &error, &!transient, &at, &millis(retry_for), &horizon(retry_for)],
        )
        .await?;
    Ok(())
}

/// Queues a create for every task of the project that should be mirrored
/// on the connection and has none there yet: the initial push of a new
/// connection, and whatever a full pass finds missing. The rule is
/// [`crate::sync::fields::mirrored`]'s (not archived, in a syncing lane),
/// which `sync plan` uses too. A key already queued, or dead (refused for
/// good), is left as it is. Returns how many were queued.
pub async fn queue_unmapped_tasks(store: &Store, connection_id: i64, project_id: i64) -> StoreResult<usize> {
    let client = store.client().await?;
    let row = client
        .fetch_one(
            "WITH queued AS (
                 INSERT INTO sync_job (connection_id, key)
                 SELECT $1, 'task:' || t.id FROM task t JOIN lane l ON l.id = t.lane_id
                 WHERE t.project_id = $2 AND NOT t.archived AND l.sync
                   AND NOT EXISTS (SELECT 1 FROM external_mapping m
                                   WHERE m.connection_id = $1 AND m.local_kind = 'task' AND m.local_id = t.id)
                 ORDER BY t.id
                 ON CONFLICT (connection_id, key) DO NOTHING
                 RETURNING 1)
             SELECT count(*) FROM queued",
            &[&connection_id, &project_id],
        )
        .await?;
    let queued: i64 = row.get(0);
    if queued > 0 {
        client.exec("SELECT pg_notify($1, '')", &[&WAKE_CHANNEL]).await?;
    }
    Ok(queued as usize)
}

/// Removes the dead letters of objects a pass has since synced (a stale
/// dead letter would send an operator after a problem that healed).
pub async fn clear_dead(store: &Store, connection_id: i64, keys: &[String]) -> StoreResult<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let client = store.client().await?;
    Ok(client
        .exec("DELETE FROM sync_job WHERE connection_id = $1 AND key = ANY($2) AND dead", &[&connection_id, &keys])
        .await?)
}

/// What is left in the queue of some connections: keys waiting (recurring
/// passes aside), when the first may run, the latest rate-limit pause, and
/// dead letters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leftovers {
    pub queued: i64,
    pub next_due: Option<OffsetDateTime>,
    pub paused_until: Option<OffsetDateTime>,
    pub dead: i64,
}

pub async fn leftovers(store: &Store, connection_ids: &[i64]) -> StoreResult<Leftovers> {
    let client = store.client().await?;
    let row = client
        .fetch_one(
            "SELECT count(*) FILTER (WHERE NOT j.dead AND j.key NOT IN ($2, $3)),
                    min(j.available_at) FILTER (WHERE NOT j.dead AND j.key NOT IN ($2, $3)),
                    (SELECT max(paused_until) FROM sync_cursor
                      WHERE connection_id = ANY($1) AND paused_until > now()),
                    count(*) FILTER (WHERE j.dead)
             FROM sync_job j WHERE j.connection_id = ANY($1)",
            &[&connection_ids, &PULL, &FULL],
        )
        .await?;
    Ok(Leftovers { queued: row.get(0), next_due: row.get(1), paused_until: row.get(2), dead: row.get(3) })
}

/// Extends the lease of a job still being worked on.
pub async fn extend(store: &Store, worker: &str, job: &Job, lease: Duration) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .exec(
            "UPDATE sync_job SET locked_until = now() + $3 * interval '1 millisecond' WHERE id = $1 AND locked_by = $2",
            &[&job.id, &worker, &(lease.as_millis() as f64)],
        )
        .await?;
    Ok(())
}

pub async fn dead_letters(store: &Store, project_id: i64) -> StoreResult<Vec<DeadLetter>> {
    let client = store.client().await?;
    let rows = client
        .fetch(
            "SELECT j.id, c.connection_key, j.key, j.attempts, j.last_error, j.updated_at
             FROM sync_job j JOIN integration_connection c ON c.id = j.connection_id
             WHERE j.dead AND c.project_id = $1 ORDER BY j.updated_at DESC, j.id DESC",
            &[&project_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DeadLetter {
            id: r.get(0),
            connection: r.get(1),
            key: r.get(2),
            attempts: r.get(3),
            last_error: r.get(4),
            failed_at: r.get(5),
        })
        .collect())
}

/// Puts dead letters back in the queue (all of the project's with `None`).
pub async fn retry_dead(store: &Store, project_id: i64, id: Option<i64>) -> StoreResult<u64> {
    let client = store.client().await?;
    let revived = client
        .exec(
            "UPDATE sync_job j SET dead = false, attempts = 0, available_at = now(), locked_by = NULL,
                    locked_until = NULL, updated_at = now()
             FROM integration_connection c
             WHERE c.id = j.connection_id AND c.project_id = $1 AND j.dead AND ($2::bigint IS NULL OR j.id = $2)",
            &[&project_id, &id],
        )
        .await?;
    if revived > 0 {
        client.exec("SELECT pg_notify($1, '')", &[&WAKE_CHANNEL]).await?;
    }
    Ok(revived)
}

/// Keys waiting per connection (excluding the recurring passes), and dead letters.
pub async fn depth(store: &Store, connection_id: i64) -> StoreResult<(i64, i64, Option<OffsetDateTime>)> {
    let client = store.client().await?;
    let row = client
        .fetch_one(
            "SELECT count(*) FILTER (WHERE NOT dead AND key NOT IN ($2, $3)),
                    count(*) FILTER (WHERE dead),
                    min(created_at) FILTER (WHERE NOT dead AND key NOT IN ($2, $3))
             FROM sync_job WHERE connection_id = $1",
            &[&connection_id, &PULL, &FULL],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}
