//! A project connected to a fake Plane, and workers to sync it: shared by
//! the sync engine's tests and the console's.

use std::time::Duration;

use mission_control::domain::{LocalKind, Provider};
use mission_control::store::Store;
use mission_control::store::integrations::NewConnection;
use mission_control::store::tasks::TaskFilter;
use mission_control::sync::worker::{DrainReport, Hook, Limiters, Worker, WorkerOptions};
use serde_json::json;

use super::plane::FakePlane;
use super::{TestDb, actor};

pub struct Setup {
    pub db: TestDb,
    pub store: Store,
    pub plane: FakePlane,
    pub project_id: i64,
    pub connection_id: i64,
    _secret: tempfile::TempDir,
}

/// A project `SYN` with the default lanes and agent `ana`, and a fake Plane
/// that holds `items` work items (member `ana` matches the agent), not yet
/// connected: work made now exists before the connection does.
pub async fn unconnected(items: usize) -> Unconnected {
    unconnected_on(items, FakePlane::builder()).await
}

/// [`unconnected`], with the fake Plane made from `plane` (its time zones, say).
pub async fn unconnected_on(items: usize, plane: super::plane::FakePlaneBuilder) -> Unconnected {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "SYN", "Sync", "").await.unwrap();
    store
        .create_agent(
            &actor("ops"),
            mission_control::store::agents::NewAgent {
                handle: "ana".into(),
                display_name: "Ana".into(),
                kind: mission_control::domain::AgentKind::Human,
                capacity: Some(5),
                skills: vec![],
            },
        )
        .await
        .unwrap();
    let plane = plane.member("ana", "ana@example.com").member("zed", "zed@example.com").start().await;
    plane.seed_items(items);
    Unconnected { db, store, plane, project_id: project.id }
}

/// A project and a fake Plane before they are connected; see [`unconnected`].
pub struct Unconnected {
    pub db: TestDb,
    pub store: Store,
    pub plane: FakePlane,
    pub project_id: i64,
}

impl Unconnected {
    /// Adds the connection `plane` (no rate limit, the conflict `policy`).
    pub async fn connect(self, policy: &str) -> Setup {
        let Unconnected { db, store, plane, project_id } = self;
        let secret = tempfile::tempdir().unwrap();
        let token_file = secret.path().join("plane-token");
        std::fs::write(&token_file, format!("{}\n", plane.token())).unwrap();
        let connection = store
            .add_connection(
                &actor("ops"),
                project_id,
                NewConnection {
                    key: "plane".into(),
                    provider: Provider::Plane,
                    base_url: plane.url(),
                    config: json!({
                        "workspace": plane.workspace(),
                        "project": plane.project_id(),
                        "requests_per_minute": 0,
                        "conflict_policy": policy,
                    }),
                    secret_ref: Some(format!("file:{}", token_file.display())),
                },
            )
            .await
            .unwrap();
        Setup { db, store, plane, project_id, connection_id: connection.id, _secret: secret }
    }
}

/// A project `SYN` with the default lanes, connected to a fake Plane that
/// holds `items` work items; agent `ana` matches member `ana`.
pub async fn setup_with(items: usize, policy: &str) -> Setup {
    unconnected(items).await.connect(policy).await
}

pub async fn setup(items: usize) -> Setup {
    setup_with(items, "newest").await
}

pub fn worker(s: &Setup, id: &str, hook: Option<Hook>) -> Worker {
    let options = WorkerOptions {
        id: id.into(),
        project_id: Some(s.project_id),
        lease: Duration::from_secs(30),
        hook,
        ..WorkerOptions::default()
    };
    Worker::new(s.store.clone(), options, Limiters::default())
}

/// A pull pass (made due now) and everything queued.
pub async fn sync(s: &Setup) -> DrainReport {
    let mut worker = worker(s, "test", None);
    worker.schedule(true).await.unwrap();
    worker.drain().await.unwrap()
}

/// Only the keys due now, without a pull pass (which would also converge
/// the objects a test is making fail).
pub async fn drain(s: &Setup) -> DrainReport {
    worker(s, "test", None).drain().await.unwrap()
}

/// Makes every queued object key due now, as if the backoff had passed (the
/// recurring passes keep their schedule: `sync` queues a pull itself).
pub async fn make_due(s: &Setup) {
    let client = s.db.client().await;
    client
        .batch_execute(
            "UPDATE sync_job SET available_at = now() WHERE NOT dead AND key NOT IN ('pull', 'full');
             UPDATE sync_cursor SET paused_until = NULL",
        )
        .await
        .unwrap();
}

pub async fn mapping_of(s: &Setup, key: &str) -> mission_control::store::sync::SyncMapping {
    let task = s.store.task_by_key(key).await.unwrap();
    s.store.sync_mapping(s.connection_id, LocalKind::Task, task.id).await.unwrap().expect("the task is mapped")
}

pub async fn tasks(s: &Setup) -> Vec<mission_control::domain::Task> {
    s.store.list_tasks(&TaskFilter { project_id: s.project_id, limit: 100_000, ..TaskFilter::default() }).await.unwrap()
}

/// A hook that parks the worker for good at `step` and reports that it did.
pub fn crash_at(step: &'static str) -> (Hook, tokio::sync::watch::Receiver<bool>) {
    let (reached_tx, reached_rx) = tokio::sync::watch::channel(false);
    let reached_tx = std::sync::Arc::new(reached_tx);
    let hook: Hook = std::sync::Arc::new(move |at| {
        let reached_tx = reached_tx.clone();
        Box::pin(async move {
            if at == step {
                let _ = reached_tx.send(true);
                std::future::pending::<()>().await;
            }
        })
    });
    (hook, reached_rx)
}

/// Runs a worker until it reaches `step`, then drops it mid-flight, as a
/// crash would; its lease is then let run out.
pub async fn crash_worker_at(s: &Setup, step: &'static str) {
    crash_project_worker_at(&s.db, &s.store, s.project_id, true, step).await;
}

/// The same for any project's worker; `pull` first queues a pass.
pub async fn crash_project_worker_at(db: &TestDb, store: &Store, project_id: i64, pull: bool, step: &'static str) {
    let (hook, mut reached) = crash_at(step);
    let options = WorkerOptions {
        id: "doomed".into(),
        project_id: Some(project_id),
        lease: Duration::from_secs(30),
        hook: Some(hook),
        ..WorkerOptions::default()
    };
    let mut crashing = Worker::new(store.clone(), options, Limiters::default());
    if pull {
        crashing.schedule(true).await.unwrap();
    }
    let run = tokio::spawn(async move { crashing.drain().await });
    tokio::time::timeout(Duration::from_secs(20), reached.wait_for(|r| *r))
        .await
        .expect("the step is reached")
        .unwrap();
    run.abort();
    let _ = run.await;
    db.client()
        .await
        .batch_execute("UPDATE sync_job SET locked_until = now() - interval '1 second' WHERE locked_by = 'doomed'")
        .await
        .unwrap();
}

/// A worker for `project_id` that polls every 200 ms, for tests of `run`.
pub fn quick_runner(store: &Store, project_id: i64) -> Worker {
    let options = WorkerOptions {
        id: "runner".into(),
        project_id: Some(project_id),
        poll: Duration::from_millis(200),
        ..WorkerOptions::default()
    };
    Worker::new(store.clone(), options, Limiters::default())
}
