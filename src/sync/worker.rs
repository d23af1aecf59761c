//! The worker loop: claim due keys, reconcile each, record the outcome; wait
//! for a `NOTIFY` from the outbox or the next poll. Several workers (tasks in
//! one process, or processes) share one queue safely.
//!
//! A worker outlives what it depends on. When the database goes away, hangs
//! or restarts, the turn fails, the worker says it is waiting (in its
//! `sync_worker` row, which its [`Presence`] writes every few seconds, once
//! it can write one, and in the log), waits with
//! capped backoff and carries on by itself; a provider's outage is each
//! key's own failure, retried by the queue. It returns an error only when
//! it cannot go on at all (the schema is newer than this binary, the
//! database is read-only), so the process can exit and be restarted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::error::{SyncError, SyncResult};
use super::plane::PlaneSync;
use super::providers::http::RateLimiter;
use super::providers::plane::DEFAULT_REQUESTS_PER_MINUTE;
use super::queue::{self, FULL, Job, Outcome, PULL, REMOTE_PREFIX};
use super::registry::{Presence, WorkerState};
use super::repo::AnyRepo;
pub use super::report::DrainReport;
use super::report::{ObjectOutcome, PassReport};
use super::retry::DEFAULT_RETRY_FOR;
use crate::domain::Provider;
use crate::store::{Store, StoreError, StoreResult};

/// A test's window into a worker: called at named steps of a reconcile (e.g.
/// `task.created_remotely`); a hook that never returns models a crash there.
pub type Hook = Arc<dyn Fn(&'static str) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct WorkerOptions {
    /// Names this worker in leases (`locked_by`) and in `sync_worker`.
    pub id: String,
    /// Only this project's connections (all projects' without).
    pub project_id: Option<i64>,
    pub batch: i64,
    pub lease: Duration,
    /// How often to look for work when no notification came.
    pub poll: Duration,
    pub pull_every: Duration,
    pub full_every: Duration,
    /// Marks agents silent for this long offline, at most once a minute
    /// (`mctl sync run` sets it from `[dispatch] offline_after_minutes`).
    pub offline_after: Option<Duration>,
    /// How long a key that keeps failing transiently is retried before it
    /// becomes a dead letter (`[sync] retry_for`).
    pub retry_for: Duration,
    /// One key taking longer than this is given up and retried later (a
    /// hung provider or database never holds a worker for good).
    pub job_timeout: Duration,
    pub hook: Option<Hook>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            id: format!("{}-{}", hostname(), std::process::id()),
            project_id: None,
            batch: 20,
            lease: Duration::from_secs(120),
            poll: Duration::from_secs(5),
            pull_every: Duration::from_secs(60),
            full_every: Duration::from_secs(3600),
            offline_after: None,
            retry_for: DEFAULT_RETRY_FOR,
            // Long enough for a full pass over a large project at a provider's
            // budget (100,000 Plane items at 60 requests a minute: ~17 min).
            job_timeout: Duration::from_secs(3600),
            hook: None,
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "mctl".into())
}

/// Rate limiters by connection, shared by every worker of the process.
#[derive(Clone, Default)]
pub struct Limiters(Arc<Mutex<HashMap<i64, Arc<RateLimiter>>>>);

impl Limiters {
    pub fn of(&self, connection_id: i64, per_minute: u32) -> Arc<RateLimiter> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(connection_id).or_insert_with(|| RateLimiter::new(per_minute)).clone()
    }
}

/// How often a running worker looks for silent agents.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);
/// How often a running worker checks that it still knows the schema.
const SCHEMA_CHECK_EVERY: Duration = Duration::from_secs(300);
/// One queue statement taking longer than this means the database hangs.
const DB_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between two tries while the database is away.
const OUTAGE_WAIT_CAP: Duration = Duration::from_secs(30);

/// The providers whose connections the worker reconciles.
pub const SYNCED: [Provider; 4] = [Provider::Plane, Provider::Github, Provider::Gitea, Provider::Gitlab];

/// One connection's context, by its provider.
pub enum Context {
    Plane(Box<PlaneSync>),
    Repo(Box<AnyRepo>),
}

impl Context {
    async fn load(
        store: &Store,
        connection: crate::domain::Connection,
        limiter: Arc<RateLimiter>,
        retry_for: Duration,
    ) -> SyncResult<Context> {
        let mut context = match connection.provider {
            Provider::Plane => Context::Plane(Box::new(PlaneSync::load(store, connection, limiter).await?)),
            _ => Context::Repo(Box::new(AnyRepo::load(store, connection, limiter).await?)),
        };
        match &mut context {
            Context::Plane(plane) => plane.retry_for = retry_for,
            Context::Repo(repo) => repo.set_retry_for(retry_for),
        }
        Ok(context)
    }

    fn set_hook(&mut self, hook: Option<Hook>) {
        match self {
            Context::Plane(plane) => plane.hook = hook,
            Context::Repo(repo) => repo.set_hook(hook),
        }
    }

    async fn reconcile_task(&mut self, id: i64, remote_changed: bool) -> SyncResult<ObjectOutcome> {
        match self {
            Context::Plane(plane) => plane.reconcile_task(id, remote_changed).await,
            Context::Repo(repo) => repo.reconcile_task(id, remote_changed).await,
        }
    }

    /// One cycle or module (Plane only: repositories have no counterpart).
    async fn reconcile_planning(&mut self, kind: &str, id: i64) -> SyncResult<()> {
        match self {
            Context::Plane(plane) => plane.reconcile_planning_object(kind, id).await,
            Context::Repo(_) => Ok(()),
        }
    }

    /// A remote object with no local counterpart yet that a pass could
    /// not bring in (`import:…`), or a delivery object (`release:…`).
    async fn reconcile_remote(&mut self, key: &str) -> SyncResult<()> {
        match self {
            Context::Plane(plane) => plane.reconcile_remote(key).await,
            Context::Repo(repo) => repo.reconcile_remote(key).await,
        }
    }

    async fn pull(&mut self, full: bool) -> SyncResult<PassReport> {
        match self {
            Context::Plane(plane) => plane.pull(full).await,
            Context::Repo(repo) => repo.pull(full).await,
        }
    }
}

/// Why a worker's turn did not finish.
enum TurnError {
    /// The database failed or did not answer: wait and try again.
    Outage(String),
    /// The worker cannot go on.
    Fatal(StoreError),
}

impl From<StoreError> for TurnError {
    fn from(e: StoreError) -> TurnError {
        match e {
            StoreError::SchemaTooNew { .. } | StoreError::ReadOnly => TurnError::Fatal(e),
            other => TurnError::Outage(other.to_string()),
        }
    }
}

/// A queue statement bounded by [`DB_TIMEOUT`].
async fn bounded<T>(future: impl std::future::Future<Output = StoreResult<T>>) -> Result<T, TurnError> {
    match tokio::time::timeout(DB_TIMEOUT, future).await {
        Ok(result) => result.map_err(TurnError::from),
        Err(_) => Err(TurnError::Outage(format!("the database did not answer within {}s", DB_TIMEOUT.as_secs()))),
    }
}

/// A time of a trouble the worker waited out.
struct Outage {
    since: Instant,
    failures: u32,
    error: String,
}

pub struct Worker {
    store: Store,
    options: WorkerOptions,
    limiters: Limiters,
    contexts: HashMap<i64, Context>,
}

impl Worker {
    pub fn new(store: Store, options: WorkerOptions, limiters: Limiters) -> Worker {
        Worker { store, options, limiters, contexts: HashMap::new() }
    }

    /// The connections this worker serves: every enabled synced or n8n one
    /// of its project (or of every project).
    async fn served(&self) -> StoreResult<Vec<crate::domain::Connection>> {
        let mut connections = Vec::new();
        for provider in SYNCED.into_iter().chain([Provider::N8n]) {
            connections.extend(self.store.enabled_connections(provider, self.options.project_id).await?);
        }
        Ok(connections)
    }

    /// Queues the recurring passes of every connection this worker serves;
    /// `now` makes the incremental pull due at once. A recurring pass that
    /// died is revived after its interval.
    pub async fn schedule(&self, now: bool) -> StoreResult<()> {
        for connection in self.served().await? {
            if connection.provider == Provider::N8n {
                // Its periodic check re-queues itself; only a dead one needs bringing back.
                queue::schedule(&self.store, connection.id, PULL, Duration::ZERO, self.options.pull_every).await?;
                continue;
            }
            if now {
                queue::enqueue(&self.store, connection.id, PULL).await?;
            } else {
                queue::schedule(&self.store, connection.id, PULL, Duration::ZERO, self.options.pull_every).await?;
            }
            // A connection's first pass reads everything anyway, so the full pass waits its turn.
            let full_every = self.options.full_every;
            queue::schedule(&self.store, connection.id, FULL, full_every, full_every).await?;
        }
        Ok(())
    }

    /// Processes due keys until none is left (`mctl sync once`, tests).
    pub async fn drain(&mut self) -> StoreResult<DrainReport> {
        let mut report = DrainReport::default();
        match self.drain_into(&mut report).await {
            Ok(()) => Ok(report),
            Err(TurnError::Fatal(e)) => Err(e),
            Err(TurnError::Outage(message)) => Err(StoreError::Unavailable(message)),
        }
    }

    /// What the drain left: keys still queued, when they come due, rate
    /// limits, dead letters (for `mctl sync once`'s verdict).
    pub async fn leftovers(&self, report: &mut DrainReport) -> StoreResult<()> {
        let ids: Vec<i64> = self.served().await?.iter().map(|c| c.id).collect();
        let left = queue::leftovers(&self.store, &ids).await?;
        report.left_queued = left.queued;
        report.next_due = left.next_due;
        report.rate_limited_until = left.paused_until;
        report.dead_letters = left.dead;
        Ok(())
    }

    async fn drain_into(&mut self, report: &mut DrainReport) -> Result<(), TurnError> {
        loop {
            let (id, batch, lease) = (self.options.id.clone(), self.options.batch, self.options.lease);
            let jobs = bounded(queue::claim(&self.store, &id, batch, lease)).await?;
            if jobs.is_empty() {
                return Ok(());
            }
            for job in jobs {
                let (outcome, done) = self.process_bounded(&job).await;
                report.jobs += 1;
                match done {
                    Done::Pass(pass) => {
                        report.errors.extend(pass.errors.iter().map(|e| format!("{}: {e}", job.key)));
                        report.passes.push(pass);
                    }
                    Done::Object(outcome) => report.objects.count(outcome),
                    Done::Nothing => {}
                }
                match &outcome {
                    Outcome::Failed { error, .. } => {
                        report.failed += 1;
                        report.errors.push(format!("{}: {error}", job.key));
                    }
                    Outcome::Deferred(_) => {
                        report.deferred += 1;
                        if matches!(Key::parse(&job.key), Key::Pass { .. }) {
                            report.deferred_passes += 1;
                        }
                    }
                    _ => {}
                }
                let retry_for = self.options.retry_for;
                bounded(queue::finish(&self.store, &id, &job, &outcome, retry_for)).await?;
            }
        }
    }

    /// Runs until `shutdown` resolves: drains, then sleeps until a
    /// notification or the poll interval. Returns an error only when the
    /// worker cannot go on; everything else it waits out.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> StoreResult<()> {
        tokio::pin!(shutdown);
        let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
        let listener = tokio::spawn(listen(self.store.clone(), wake_tx));
        let presence = Presence::start(&self.store, &self.options.id, self.options.project_id);
        let mut last_expiry: Option<Instant> = None;
        let mut schema_checked: Option<Instant> = None;
        let mut outage: Option<Outage> = None;
        // The last trouble waited out, shown with the worker until the next one.
        let mut recovered: Option<String> = None;
        let result = loop {
            let check_schema = outage.is_some() || schema_checked.is_none_or(|t| t.elapsed() >= SCHEMA_CHECK_EVERY);
            presence.set(WorkerState::Working, recovered.as_deref());
            let turn = self.turn(&mut last_expiry, check_schema).await;
            let wait = match turn {
                Ok(()) => {
                    if check_schema {
                        schema_checked = Some(Instant::now());
                    }
                    if let Some(gone) = outage.take() {
                        let note = format!(
                            "recovered at {} after waiting {}s for the database ({})",
                            crate::domain::text::utc_time(time::OffsetDateTime::now_utc()),
                            gone.since.elapsed().as_secs(),
                            gone.error
                        );
                        tracing::info!(worker = %self.options.id, "sync: {note}");
                        recovered = Some(note);
                    }
                    presence.set(WorkerState::Idle, recovered.as_deref());
                    self.options.poll
                }
                Err(TurnError::Fatal(e)) => {
                    tracing::error!(worker = %self.options.id, error = %e, "sync: the worker cannot go on");
                    break Err(e);
                }
                Err(TurnError::Outage(error)) => {
                    let gone = outage.get_or_insert_with(|| Outage {
                        since: Instant::now(),
                        failures: 0,
                        error: String::new(),
                    });
                    gone.failures += 1;
                    gone.error = error.clone();
                    // Reference data may be stale after the database comes back.
                    self.contexts.clear();
                    let wait = outage_wait(gone.failures);
                    if gone.failures == 1 || gone.failures.is_multiple_of(20) {
                        tracing::warn!(
                            worker = %self.options.id,
                            failures = gone.failures,
                            "sync: waiting for the database: {error}"
                        );
                    }
                    let detail = format!("waiting for the database since {}s: {error}", gone.since.elapsed().as_secs());
                    presence.set_now(WorkerState::Waiting, Some(&detail)).await;
                    wait
                }
            };
            tokio::select! {
                _ = &mut shutdown => break Ok(()),
                _ = wake_rx.recv() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        };
        presence.stop(result.as_ref().err().map(ToString::to_string).as_deref()).await;
        listener.abort();
        result
    }

    /// One turn of `run`: the schema check when due, scheduling, the drain,
    /// and agent expiry.
    async fn turn(&mut self, last_expiry: &mut Option<Instant>, check_schema: bool) -> Result<(), TurnError> {
        if check_schema {
            let found = bounded(self.store.schema_version()).await?;
            let known = crate::store::migrate::latest_known_version();
            if found > known {
                return Err(TurnError::Fatal(StoreError::SchemaTooNew { found, known }));
            }
        }
        bounded(self.schedule(false)).await?;
        let mut report = DrainReport::default();
        let drained = self.drain_into(&mut report).await;
        for error in &report.errors {
            tracing::warn!(worker = %self.options.id, "sync: {error}");
        }
        drained?;
        if let Some(after) = self.options.offline_after
            && last_expiry.is_none_or(|t| t.elapsed() >= EXPIRY_EVERY)
        {
            *last_expiry = Some(Instant::now());
            self.expire_silent_agents(after).await;
        }
        Ok(())
    }

    /// Keeps agent status honest between console visits. A failure is logged,
    /// never the end of the worker.
    async fn expire_silent_agents(&self, after: Duration) {
        let actor = crate::store::Actor::new(format!("sync worker {}", self.options.id), crate::domain::Source::Sync);
        match self.store.expire_silent_agents(&actor, after).await {
            Ok(agents) => {
                for agent in agents {
                    tracing::info!(worker = %self.options.id, agent = %agent.handle, "agent silent: marked offline");
                }
            }
            Err(e) => tracing::warn!(worker = %self.options.id, error = %e, "marking silent agents offline"),
        }
    }

    /// One job within [`WorkerOptions::job_timeout`].
    async fn process_bounded(&mut self, job: &Job) -> (Outcome, Done) {
        let limit = self.options.job_timeout;
        match tokio::time::timeout(limit, self.process(job)).await {
            Ok(done) => done,
            Err(_) => {
                // Whatever it held may be mid-way: read the connection afresh next time.
                self.contexts.remove(&job.connection_id);
                let error = format!("gave up after {}s without an answer (provider or database hung)", limit.as_secs());
                (Outcome::Failed { error, transient: true, not_before: None }, Done::Nothing)
            }
        }
    }

    /// One job; never fails itself: errors become the job's outcome.
    async fn process(&mut self, job: &Job) -> (Outcome, Done) {
        if let Some(hook) = &self.options.hook {
            hook("job.claimed").await;
        }
        // n8n automation (deliveries, periodic checks) lives in its own module.
        if let Some(outcome) = super::n8n::process_job(&self.store, job, &self.limiters).await {
            return (outcome, Done::Nothing);
        }
        let (pull_every, full_every) = (self.options.pull_every, self.options.full_every);
        let key = Key::parse(&job.key);
        let context = match self.context(job.connection_id).await {
            Ok(context) => context,
            Err(e) => {
                // A pass that cannot even start (a missing secret, the reference
                // data refused) is the connection's state now: say so there.
                if let (Key::Pass { full }, false) = (key, e.is_database_outage()) {
                    let error = e.to_string();
                    let _ = super::cursor::save_pass(&self.store, job.connection_id, full, false, Some(&error)).await;
                }
                return (failed(&e), Done::Nothing);
            }
        };
        let result = match key {
            Key::Task { id, remote_changed } => {
                context.reconcile_task(id, remote_changed).await.map(|o| (Outcome::Done, Done::Object(o)))
            }
            Key::Planning { kind, id } => {
                context.reconcile_planning(kind, id).await.map(|()| (Outcome::Done, Done::Nothing))
            }
            Key::Remote(key) => context.reconcile_remote(key).await.map(|()| (Outcome::Done, Done::Nothing)),
            Key::Pass { full } => context.pull(full).await.map(|pass| {
                let again = if full { full_every } else { pull_every };
                (Outcome::Again(again), Done::Pass(pass))
            }),
            Key::Unknown => {
                let error = format!("unknown sync key {:?}", job.key);
                return (Outcome::Failed { error, transient: false, not_before: None }, Done::Nothing);
            }
        };
        match result {
            Ok(done) => done,
            Err(e) => {
                if let Some(until) = e.not_before() {
                    let _ = super::cursor::pause(&self.store, job.connection_id, until).await;
                }
                if matches!(key, Key::Pass { .. }) || e.is_database_outage() {
                    // Reference data may be stale: read it again next time.
                    self.contexts.remove(&job.connection_id);
                }
                (failed(&e), Done::Nothing)
            }
        }
    }

    async fn context(&mut self, connection_id: i64) -> Result<&mut Context, SyncError> {
        if !self.contexts.contains_key(&connection_id) {
            let connection = self.store.connection_by_id(connection_id).await?;
            let per_minute = connection
                .config
                .get("requests_per_minute")
                .and_then(serde_json::Value::as_u64)
                .map_or(DEFAULT_REQUESTS_PER_MINUTE, |n| n.min(100_000) as u32);
            let limiter = self.limiters.of(connection_id, per_minute);
            let mut context = Context::load(&self.store, connection, limiter, self.options.retry_for).await?;
            context.set_hook(self.options.hook.clone());
            self.contexts.insert(connection_id, context);
        }
        Ok(self.contexts.get_mut(&connection_id).expect("just inserted"))
    }
}

/// What a finished job adds to the drain's report.
enum Done {
    Pass(PassReport),
    Object(ObjectOutcome),
    Nothing,
}

/// A queue key, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key<'a> {
    /// `task:ID`, or `remote:task:ID` when the remote copy changed.
    Task {
        id: i64,
        remote_changed: bool,
    },
    /// `cycle:ID`, `module:ID` (with or without `remote:`).
    Planning {
        kind: &'static str,
        id: i64,
    },
    /// `import:…` or a delivery object's `release:…`, `pipeline:…`, `deployment:…`.
    Remote(&'a str),
    /// `pull`, `full`.
    Pass {
        full: bool,
    },
    Unknown,
}

impl<'a> Key<'a> {
    fn parse(key: &'a str) -> Key<'a> {
        match key {
            PULL => return Key::Pass { full: false },
            FULL => return Key::Pass { full: true },
            _ => {}
        }
        let (remote_changed, bare) = match key.strip_prefix(REMOTE_PREFIX) {
            Some(bare) => (true, bare),
            None => (false, key),
        };
        let (kind, rest) = bare.split_once(':').unwrap_or((bare, ""));
        match (kind, rest.parse::<i64>()) {
            ("task", Ok(id)) => Key::Task { id, remote_changed },
            ("cycle", Ok(id)) => Key::Planning { kind: "cycle", id },
            ("module", Ok(id)) => Key::Planning { kind: "module", id },
            ("import" | "release" | "pipeline" | "deployment", _) if !remote_changed && !rest.is_empty() => {
                Key::Remote(key)
            }
            _ => Key::Unknown,
        }
    }
}

fn failed(error: &SyncError) -> Outcome {
    match error.not_before() {
        Some(until) => Outcome::Deferred(until),
        None => Outcome::Failed { error: error.to_string(), transient: error.is_transient(), not_before: None },
    }
}

/// 1 s doubling up to [`OUTAGE_WAIT_CAP`].
fn outage_wait(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(5)).min(OUTAGE_WAIT_CAP)
}

/// Forwards outbox notifications; reconnects after a pause when the
/// connection drops (the poll covers the gap).
async fn listen(store: Store, wake: tokio::sync::mpsc::Sender<()>) {
    if !store.can_listen() {
        // `listen_url = poll`: the poll interval alone; keep the channel open.
        wake.closed().await;
        return;
    }
    loop {
        if let Ok(mut listener) = store.listen(queue::WAKE_CHANNEL).await {
            // Back from an outage: look for work at once.
            let _ = wake.try_send(());
            while listener.notifications.recv().await.is_some() {
                let _ = wake.try_send(());
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_by_kind() {
        assert_eq!(Key::parse("pull"), Key::Pass { full: false });
        assert_eq!(Key::parse("full"), Key::Pass { full: true });
        assert_eq!(Key::parse("task:12"), Key::Task { id: 12, remote_changed: false });
        assert_eq!(Key::parse("remote:task:12"), Key::Task { id: 12, remote_changed: true });
        assert_eq!(Key::parse("remote:cycle:3"), Key::Planning { kind: "cycle", id: 3 });
        assert_eq!(Key::parse("module:4"), Key::Planning { kind: "module", id: 4 });
        assert_eq!(Key::parse("import:cycle:abc"), Key::Remote("import:cycle:abc"));
        assert_eq!(Key::parse("release:5001"), Key::Remote("release:5001"));
        assert_eq!(Key::parse("task:x"), Key::Unknown);
        assert_eq!(Key::parse("import:"), Key::Unknown);
        assert_eq!(Key::parse("remote:import:1"), Key::Unknown);
    }

    #[test]
    fn an_outage_is_retried_ever_slower_up_to_a_cap() {
        assert_eq!(outage_wait(1), Duration::from_secs(1));
        assert_eq!(outage_wait(2), Duration::from_secs(2));
        assert_eq!(outage_wait(5), Duration::from_secs(16));
        assert_eq!(outage_wait(6), OUTAGE_WAIT_CAP);
        assert_eq!(outage_wait(1000), OUTAGE_WAIT_CAP);
    }
}
