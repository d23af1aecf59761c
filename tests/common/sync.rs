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

/// A project `SYN` with the default lanes, connected to a fake Plane that
/// holds `items` work items; agent `ana` matches member `ana`.
pub async fn setup_with(items: usize, policy: &str) -> Setup {
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
    let plane = FakePlane::builder().member("ana", "ana@example.com").member("zed", "zed@example.com").start().await;
    plane.seed_items(items);
    let secret = tempfile::tempdir().unwrap();
    let token_file = secret.path().join("plane-token");
    std::fs::write(&token_file, format!("{}\n", plane.token())).unwrap();
    let connection = store
        .add_connection(
            &actor("ops"),
            project.id,
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
    Setup { db, store, plane, project_id: project.id, connection_id: connection.id, _secret: secret }
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
