//! The running sync workers, as they report themselves in `sync_worker`:
//! what each is doing and what it waits for, so `mctl sync status`,
//! `/readyz` and the console can say so. A running worker's [`Presence`]
//! writes its row every [`BEAT_EVERY`], on a task of its own so a long pass
//! does not silence it; a row not written for [`GONE_AFTER`] belongs to a
//! worker that is gone (killed, or its machine lost).

use crate::store::sql::Sql;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::store::{Store, StoreResult};

/// A worker silent this long is gone.
pub const GONE_AFTER: Duration = Duration::from_secs(180);
/// How often a running worker writes its row.
pub const BEAT_EVERY: Duration = Duration::from_secs(10);
/// A row write taking longer is given up (the database is away; the next
/// beat tries again).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Rows of workers stopped or gone this long are removed.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    Working,
    Idle,
    /// Cannot go on until something comes back (the database).
    Waiting,
    Stopped,
    /// Not heard from for [`GONE_AFTER`].
    Gone,
}

impl WorkerState {
    fn as_str(self) -> &'static str {
        match self {
            WorkerState::Working => "working",
            WorkerState::Idle => "idle",
            WorkerState::Waiting => "waiting",
            WorkerState::Stopped => "stopped",
            WorkerState::Gone => "gone",
        }
    }

    fn from_db(state: &str) -> WorkerState {
        match state {
            "working" => WorkerState::Working,
            "idle" => WorkerState::Idle,
            "waiting" => WorkerState::Waiting,
            _ => WorkerState::Stopped,
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One worker as `sync status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    pub id: String,
    /// The project's key, or none for a worker of every project.
    pub project: Option<String>,
    pub state: WorkerState,
    pub detail: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub seen_at: OffsetDateTime,
}

/// Writes a worker's row (creating it on first report).
pub async fn report(
    store: &Store,
    id: &str,
    project_id: Option<i64>,
    state: WorkerState,
    detail: Option<&str>,
) -> StoreResult<()> {
    let client = store.client().await?;
    let detail = detail.map(|d| crate::domain::text::clip(d, 500).into_owned());
    client
        .exec(
            "INSERT INTO sync_worker (id, project_id, state, detail) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET state = $3, detail = $4, seen_at = now(),
                 started_at = CASE WHEN sync_worker.state = 'stopped' THEN now() ELSE sync_worker.started_at END",
            &[&id, &project_id, &state.as_str(), &detail],
        )
        .await?;
    Ok(())
}

/// A running worker's row, kept current: the state lives in memory, a task
/// writes it with `seen_at` every [`BEAT_EVERY`], and a change that must
/// show at once (waiting, stopped) is written on the spot as well.
pub struct Presence {
    store: Store,
    id: String,
    project_id: Option<i64>,
    now: Arc<Mutex<(WorkerState, Option<String>)>>,
    beat: tokio::task::JoinHandle<()>,
}

impl Presence {
    pub fn start(store: &Store, id: &str, project_id: Option<i64>) -> Presence {
        let now = Arc::new(Mutex::new((WorkerState::Working, None)));
        let beat = {
            let (store, id, now) = (store.clone(), id.to_string(), now.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(BEAT_EVERY);
                loop {
                    every.tick().await;
                    let (state, detail) = now.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    write(&store, &id, project_id, state, detail.as_deref()).await;
                }
            })
        };
        Presence { store: store.clone(), id: id.to_string(), project_id, now, beat }
    }

    /// The state the next beat writes.
    pub fn set(&self, state: WorkerState, detail: Option<&str>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = (state, detail.map(str::to_string));
    }

    /// The same, written now.
    pub async fn set_now(&self, state: WorkerState, detail: Option<&str>) {
        self.set(state, detail);
        write(&self.store, &self.id, self.project_id, state, detail).await;
    }

    /// The worker ended: its row says so (and why), and old rows are forgotten.
    pub async fn stop(self, why: Option<&str>) {
        self.beat.abort();
        let _ = self.beat.await;
        write(&self.store, &self.id, self.project_id, WorkerState::Stopped, why).await;
        let _ = tokio::time::timeout(WRITE_TIMEOUT, forget_old(&self.store)).await;
    }
}

/// [`report`], bounded, best effort: a failure is the database's, which the
/// worker's own turn meets and reports.
async fn write(store: &Store, id: &str, project_id: Option<i64>, state: WorkerState, detail: Option<&str>) {
    let written = tokio::time::timeout(WRITE_TIMEOUT, report(store, id, project_id, state, detail)).await;
    if let Ok(Err(e)) = written {
        tracing::debug!(worker = %id, error = %e, "sync: could not write the worker's state");
    }
}

/// Forgets workers that stopped or went silent a day ago.
pub async fn forget_old(store: &Store) -> StoreResult<u64> {
    let client = store.client().await?;
    Ok(client
        .exec(
            "DELETE FROM sync_worker WHERE seen_at < now() - $1 * interval '1 second'",
            &[&(FORGET_AFTER.as_secs() as f64)],
        )
        .await?)
}

/// The workers that serve `project_id` (theirs, and those of every
/// project), or every worker without one; newest first.
pub async fn workers(store: &Store, project_id: Option<i64>) -> StoreResult<Vec<WorkerView>> {
    let client = store.client().await?;
    let rows = client
        .fetch(
            "SELECT w.id, p.key, w.state, w.detail, w.started_at, w.seen_at,
                    w.seen_at < now() - $2 * interval '1 second' AS silent
             FROM sync_worker w LEFT JOIN project p ON p.id = w.project_id
             WHERE $1::bigint IS NULL OR w.project_id = $1 OR w.project_id IS NULL
             ORDER BY w.state = 'stopped', w.seen_at DESC, w.id",
            &[&project_id, &(GONE_AFTER.as_secs() as f64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let state = WorkerState::from_db(r.get(2));
            let silent: bool = r.get(6);
            WorkerView {
                id: r.get(0),
                project: r.get(1),
                state: if silent && state != WorkerState::Stopped { WorkerState::Gone } else { state },
                detail: r.get(3),
                started_at: r.get(4),
                seen_at: r.get(5),
            }
        })
        .collect())
}
