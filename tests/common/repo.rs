//! A project connected to a fake repository server (GitHub, Gitea or
//! GitLab), and workers to sync it.
#![allow(dead_code)]

use std::time::Duration;

use mission_control::domain::{LocalKind, Provider};
use mission_control::store::Store;
use mission_control::store::integrations::NewConnection;
use mission_control::store::tasks::TaskFilter;
use mission_control::sync::worker::{DrainReport, Limiters, Worker, WorkerOptions};
use serde_json::json;

use super::forge::{Dialect, Forge};
use super::{TestDb, actor};

pub struct Setup<D: Dialect> {
    pub db: TestDb,
    pub store: Store,
    pub forge: Forge<D>,
    pub project_id: i64,
    pub connection_id: i64,
    _secret: tempfile::TempDir,
}

/// A project `SYN` with the default lanes and agents `ana` and `bo`,
/// connected to `forge` as `repo` (the repository path the fake serves).
pub async fn setup<D: Dialect>(forge: Forge<D>, provider: Provider, repo: &str, policy: &str) -> Setup<D> {
    let bare = connect(&forge.url(), &forge.token(), provider, repo, policy).await;
    Setup {
        db: bare.db,
        store: bare.store,
        forge,
        project_id: bare.project_id,
        connection_id: bare.connection_id,
        _secret: bare._secret,
    }
}

/// A project connected to any server at `url` (a replay of recorded traffic).
pub struct Bare {
    pub db: TestDb,
    pub store: Store,
    pub project_id: i64,
    pub connection_id: i64,
    _secret: tempfile::TempDir,
}

impl Bare {
    /// A full pass now and everything queued.
    pub async fn full(&self) -> DrainReport {
        let mut worker = project_worker(&self.store, self.project_id);
        mission_control::sync::queue::enqueue(&self.store, self.connection_id, mission_control::sync::queue::FULL)
            .await
            .unwrap();
        worker.drain().await.unwrap()
    }
}

pub async fn connect(url: &str, token: &str, provider: Provider, repo: &str, policy: &str) -> Bare {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "SYN", "Sync", "").await.unwrap();
    for handle in ["ana", "bo"] {
        store
            .create_agent(
                &actor("ops"),
                mission_control::store::agents::NewAgent {
                    handle: handle.into(),
                    display_name: handle.to_uppercase(),
                    kind: mission_control::domain::AgentKind::Human,
                    capacity: Some(5),
                    skills: vec![],
                },
            )
            .await
            .unwrap();
    }
    let secret = tempfile::tempdir().unwrap();
    let token_file = secret.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let connection = store
        .add_connection(
            &actor("ops"),
            project.id,
            NewConnection {
                key: provider.to_string(),
                provider,
                base_url: url.to_string(),
                config: json!({
                    "repo": repo,
                    "requests_per_minute": 0,
                    "write_interval_ms": 0,
                    "conflict_policy": policy,
                }),
                secret_ref: Some(format!("file:{}", token_file.display())),
            },
        )
        .await
        .unwrap();
    Bare { db, store, project_id: project.id, connection_id: connection.id, _secret: secret }
}

pub fn worker<D: Dialect>(s: &Setup<D>) -> Worker {
    project_worker(&s.store, s.project_id)
}

/// A worker for one project's connections.
pub fn project_worker(store: &Store, project_id: i64) -> Worker {
    let options = WorkerOptions {
        id: "test".into(),
        project_id: Some(project_id),
        lease: Duration::from_secs(30),
        ..WorkerOptions::default()
    };
    Worker::new(store.clone(), options, Limiters::default())
}

/// An incremental pass (made due now) and everything queued.
pub async fn sync<D: Dialect>(s: &Setup<D>) -> DrainReport {
    let mut worker = worker(s);
    worker.schedule(true).await.unwrap();
    worker.drain().await.unwrap()
}

/// A full pass now and everything queued.
pub async fn full<D: Dialect>(s: &Setup<D>) -> DrainReport {
    let mut worker = worker(s);
    mission_control::sync::queue::enqueue(&s.store, s.connection_id, mission_control::sync::queue::FULL).await.unwrap();
    worker.drain().await.unwrap()
}

/// Only the keys due now.
pub async fn drain<D: Dialect>(s: &Setup<D>) -> DrainReport {
    worker(s).drain().await.unwrap()
}

/// Makes every queued key due now, as if the backoff had passed.
pub async fn make_due<D: Dialect>(s: &Setup<D>) {
    let client = s.db.client().await;
    client
        .batch_execute(
            "UPDATE sync_job SET available_at = now() WHERE NOT dead;
             UPDATE sync_cursor SET paused_until = NULL",
        )
        .await
        .unwrap();
}

pub async fn mapping_of<D: Dialect>(s: &Setup<D>, key: &str) -> mission_control::store::sync::SyncMapping {
    let task = s.store.task_by_key(key).await.unwrap();
    s.store.sync_mapping(s.connection_id, LocalKind::Task, task.id).await.unwrap().expect("the task is mapped")
}

/// The task mapped to issue `number`.
pub async fn task_of<D: Dialect>(s: &Setup<D>, number: i64) -> mission_control::domain::Task {
    let mapping = s
        .store
        .sync_mappings(s.connection_id, LocalKind::Task)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.external_id == number.to_string())
        .expect("the issue is mapped");
    s.store.sync_read_task(mapping.local_id).await.unwrap().0
}

pub async fn tasks<D: Dialect>(s: &Setup<D>) -> Vec<mission_control::domain::Task> {
    s.store.list_tasks(&TaskFilter { project_id: s.project_id, limit: 100_000, ..TaskFilter::default() }).await.unwrap()
}
