//! The worker loop: claim due keys, reconcile each, record the outcome; wait
//! for a `NOTIFY` from the outbox or the next poll. Several workers (tasks in
//! one process, or processes) share one queue safely.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::Serialize;

use super::plane::pass::PassReport;
use super::plane::{PlaneSync, SyncError, SyncResult};
use super::providers::http::RateLimiter;
use super::providers::plane::DEFAULT_REQUESTS_PER_MINUTE;
use super::queue::{self, FULL, Job, Outcome, PULL, REMOTE_PREFIX};
use super::repo::AnyRepo;
use crate::domain::Provider;
use crate::store::{Store, StoreResult};

/// A test's window into a worker: called at named steps of a reconcile (e.g.
/// `task.created_remotely`); a hook that never returns models a crash there.
pub type Hook = Arc<dyn Fn(&'static str) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Clone)]
pub struct WorkerOptions {
    /// Names this worker in leases (`locked_by`).
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

/// What a drain did, for `mctl sync once`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrainReport {
    pub jobs: usize,
    pub failed: usize,
    /// Put off because the provider asked us to wait.
    pub deferred: usize,
    pub passes: Vec<PassReport>,
    pub errors: Vec<String>,
}

/// How often a running worker looks for silent agents.
const EXPIRY_EVERY: Duration = Duration::from_secs(60);

/// The providers whose connections the worker serves.
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
    ) -> SyncResult<Context> {
        Ok(match connection.provider {
            Provider::Plane => Context::Plane(Box::new(PlaneSync::load(store, connection, limiter).await?)),
            _ => Context::Repo(Box::new(AnyRepo::load(store, connection, limiter).await?)),
        })
    }

    fn set_hook(&mut self, hook: Option<Hook>) {
        match self {
            Context::Plane(plane) => plane.hook = hook,
            Context::Repo(repo) => repo.set_hook(hook),
        }
    }

    async fn reconcile_task(&mut self, id: i64, remote_changed: bool) -> SyncResult<()> {
        match self {
            Context::Plane(plane) => plane.reconcile_task(id, remote_changed).await.map(drop),
            Context::Repo(repo) => repo.reconcile_task(id, remote_changed).await.map(drop),
        }
    }

    /// Cycles and modules: Plane only (repositories have no counterpart).
    async fn reconcile_planning(&mut self) -> SyncResult<()> {
        match self {
            Context::Plane(plane) => plane.reconcile_planning().await.map(drop),
            Context::Repo(_) => Ok(()),
        }
    }

    async fn pull(&mut self, full: bool) -> SyncResult<PassReport> {
        match self {
            Context::Plane(plane) => plane.pull(full).await,
            Context::Repo(repo) => repo.pull(full).await,
        }
    }
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

    /// Queues the recurring passes of every connection this worker serves;
    /// `now` makes the incremental pull due at once.
    pub async fn schedule(&self, now: bool) -> StoreResult<()> {
        let mut connections = Vec::new();
        for provider in SYNCED {
            connections.extend(self.store.enabled_connections(provider, self.options.project_id).await?);
        }
        for connection in connections {
            if now {
                queue::enqueue(&self.store, connection.id, PULL).await?;
            } else {
                queue::schedule(&self.store, connection.id, PULL, Duration::ZERO).await?;
            }
            // A connection's first pass reads everything anyway, so the full pass waits its turn.
            queue::schedule(&self.store, connection.id, FULL, self.options.full_every).await?;
        }
        Ok(())
    }

    /// Processes due keys until none is left (`mctl sync once`, tests).
    pub async fn drain(&mut self) -> StoreResult<DrainReport> {
        let mut report = DrainReport::default();
        loop {
            let jobs = queue::claim(&self.store, &self.options.id, self.options.batch, self.options.lease).await?;
            if jobs.is_empty() {
                return Ok(report);
            }
            for job in jobs {
                let (outcome, pass) = self.process(&job).await;
                report.jobs += 1;
                if let Some(pass) = pass {
                    report.passes.push(pass);
                }
                match &outcome {
                    Outcome::Failed { error, .. } => {
                        report.failed += 1;
                        report.errors.push(format!("{}: {error}", job.key));
                    }
                    Outcome::Deferred(_) => report.deferred += 1,
                    _ => {}
                }
                queue::finish(&self.store, &self.options.id, &job, &outcome).await?;
            }
        }
    }

    /// Runs until `shutdown` resolves: drains, then sleeps until a
    /// notification or the poll interval.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> StoreResult<()> {
        tokio::pin!(shutdown);
        let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
        let listener = tokio::spawn(listen(self.store.clone(), wake_tx));
        let mut last_expiry: Option<std::time::Instant> = None;
        let result = async {
            loop {
                self.schedule(false).await?;
                let report = self.drain().await?;
                if let Some(after) = self.options.offline_after
                    && last_expiry.is_none_or(|t| t.elapsed() >= EXPIRY_EVERY)
                {
                    last_expiry = Some(std::time::Instant::now());
                    self.expire_silent_agents(after).await;
                }
                for error in &report.errors {
                    tracing::warn!(worker = %self.options.id, "sync: {error}");
                }
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = wake_rx.recv() => {}
                    _ = tokio::time::sleep(self.options.poll) => {}
                }
            }
        }
        .await;
        listener.abort();
        result
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

    /// One job; never fails itself: errors become the job's outcome.
    async fn process(&mut self, job: &Job) -> (Outcome, Option<PassReport>) {
        if let Some(hook) = &self.options.hook {
            hook("job.claimed").await;
        }
        // n8n automation (deliveries, periodic checks) lives in its own module.
        if let Some(outcome) = super::n8n::process_job(&self.store, job, &self.limiters).await {
            return (outcome, None);
        }
        let (pull_every, full_every) = (self.options.pull_every, self.options.full_every);
        let context = match self.context(job.connection_id).await {
            Ok(context) => context,
            Err(e) => return (failed(&e), None),
        };
        let (remote_changed, key) = match job.key.strip_prefix(REMOTE_PREFIX) {
            Some(key) => (true, key),
            None => (false, job.key.as_str()),
        };
        let (kind, id) = key.split_once(':').unwrap_or((key, ""));
        let result = match (kind, id.parse::<i64>()) {
            ("task", Ok(id)) => context.reconcile_task(id, remote_changed).await.map(|_| (Outcome::Done, None)),
            ("cycle" | "module", Ok(_)) => context.reconcile_planning().await.map(|_| (Outcome::Done, None)),
            (PULL, _) => context.pull(false).await.map(|r| (Outcome::Again(pull_every), Some(r))),
            (FULL, _) => context.pull(true).await.map(|r| (Outcome::Again(full_every), Some(r))),
            _ => {
                let error = format!("unknown sync key {:?}", job.key);
                return (Outcome::Failed { error, transient: false, not_before: None }, None);
            }
        };
        match result {
            Ok(done) => done,
            Err(e) => {
                if let Some(until) = e.not_before() {
                    let _ = super::cursor::pause(&self.store, job.connection_id, until).await;
                }
                let outcome = failed(&e);
                if matches!(kind, PULL | FULL) {
                    // Reference data may be stale: read it again next time.
                    self.contexts.remove(&job.connection_id);
                }
                (outcome, None)
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
            let mut context = Context::load(&self.store, connection, limiter).await?;
            context.set_hook(self.options.hook.clone());
            self.contexts.insert(connection_id, context);
        }
        Ok(self.contexts.get_mut(&connection_id).expect("just inserted"))
    }
}

fn failed(error: &SyncError) -> Outcome {
    match error.not_before() {
        Some(until) => Outcome::Deferred(until),
        None => Outcome::Failed { error: error.to_string(), transient: error.is_transient(), not_before: None },
    }
}

/// Forwards outbox notifications; reconnects after a pause when the
/// connection drops (the poll covers the gap).
async fn listen(store: Store, wake: tokio::sync::mpsc::Sender<()>) {
    loop {
        if let Ok((client, mut connection)) = store.dedicated_connection().await {
            let wake = wake.clone();
            // The connection is driven on its own task so the LISTEN below gets its answer.
            let driver = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                            let _ = wake.try_send(());
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            if client.batch_execute(&format!("LISTEN {}", queue::WAKE_CHANNEL)).await.is_ok() {
                let _ = driver.await;
            } else {
                driver.abort();
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
