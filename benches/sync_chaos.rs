//! Crash convergence (`cargo bench --bench sync_chaos`): `mctl sync run` is
//! killed with SIGKILL twenty times, at random moments, while a stream of
//! edits goes on here and in Plane (a local server that speaks Plane's API,
//! in this process, so it outlives every kill). Then the killed workers'
//! leases are let run out, one `mctl sync once --full` converges, and every
//! task is compared with its work item field by field, through the sync's
//! own conversions.
//!
//! Prints the kills, the edits on each side, how many keys killed workers
//! were holding and how many creates came back as Plane's 409 (an earlier,
//! interrupted create adopted), and what is left different:
//! fields that disagree, tasks without exactly one work item, work items
//! created twice, mappings to nothing. Every one of those must be 0; the run
//! panics otherwise.
//!
//! `CHAOS_KILLS` (default 20) and `CHAOS_SEED` change the run.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

#[path = "../tests/common/plane.rs"]
mod plane;
mod support;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mission_control::domain::{LocalKind, Priority, Provider, Source};
use mission_control::store::integrations::NewConnection;
use mission_control::store::tasks::{NewTask, Position, TaskEdit, TaskFilter};
use mission_control::store::{Actor, Store};
use mission_control::sync::merge::Convert;
use mission_control::sync::plane::PlaneSync;
use mission_control::sync::plane::tasks::{local_fields, remote_fields};
use mission_control::sync::providers::http::RateLimiter;
use plane::FakePlane;
use serde_json::json;

const LOCAL_TASKS: usize = 30;
const REMOTE_ITEMS: usize = 15;
const LANES: [&str; 6] = ["Inbox", "Ready", "In Progress", "Review", "Blocked", "Done"];
const PRIORITIES: [Priority; 5] = [Priority::Urgent, Priority::High, Priority::Medium, Priority::Low, Priority::None];
/// Fields compared; descriptions are not edited here (their conversion is
/// tested on its own), the rest are.
const FIELDS: [&str; 6] = ["title", "priority", "lane", "labels", "due", "assignee"];

/// The key=value connection string of `dbname` on the benchmark server.
fn url(dbname: &str) -> String {
    let server = support::server();
    let host = match &server.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let port = server.get_ports().first().copied().unwrap_or(5432);
    let user = server.get_user().unwrap_or("postgres");
    format!("host={host} port={port} user={user} dbname={dbname}")
}

struct Mctl {
    url: String,
    home: tempfile::TempDir,
}

impl Mctl {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mctl"));
        command
            .args(args)
            .env("MC_DATABASE_URL", &self.url)
            .env("MC_PROJECT", "SYN")
            .env("MC_CONFIG_DIR", self.home.path().join("config"))
            .env("MC_DATA_DIR", self.home.path().join("data"))
            .env("MC_STATE_DIR", self.home.path().join("state"))
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn start_worker(&self) -> Child {
        self.command(&["sync", "run", "--workers", "2", "--pull-every", "1s"]).spawn().expect("start mctl sync run")
    }
}

/// One random local edit: a title, a priority, a lane, labels or a due date.
async fn local_edit(store: &Store, actor: &Actor, key: &str, n: usize) {
    let result = match fastrand::usize(0..5) {
        0 => {
            store
                .edit_task(actor, key, TaskEdit { title: Some(format!("here {n}")), ..TaskEdit::default() }, None)
                .await
        }
        1 => {
            let edit = TaskEdit { priority: Some(PRIORITIES[fastrand::usize(0..5)]), ..TaskEdit::default() };
            store.edit_task(actor, key, edit, None).await
        }
        2 => store.move_task(actor, key, Some(LANES[fastrand::usize(0..LANES.len())]), Position::Bottom, None).await,
        3 => {
            let labels = (0..fastrand::usize(0..3)).map(|_| format!("l{}", fastrand::usize(0..4))).collect();
            store.edit_task(actor, key, TaskEdit { set_labels: Some(labels), ..TaskEdit::default() }, None).await
        }
        _ => {
            let due = time::OffsetDateTime::now_utc().date() + time::Duration::days(fastrand::i64(1..30));
            store.edit_task(actor, key, TaskEdit { due_on: Some(Some(due)), ..TaskEdit::default() }, None).await
        }
    };
    if let Err(e) = result {
        // A stale version or a busy lane is the operator's retry, not the sync's.
        eprintln!("local edit of {key} refused: {e}");
    }
}

/// One random edit in Plane, as someone in its UI would make it.
fn remote_edit(plane: &FakePlane, id: &str, n: usize) {
    let patch = match fastrand::usize(0..3) {
        0 => json!({ "name": format!("there {n}") }),
        1 => {
            let priority = ["urgent", "high", "medium", "low", "none"][fastrand::usize(0..5)];
            json!({ "priority": priority })
        }
        _ => {
            let groups = ["backlog", "unstarted", "started", "completed"];
            json!({ "state": plane.state_id(groups[fastrand::usize(0..groups.len())]) })
        }
    };
    plane.edit_item(id, patch);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let kills: usize = std::env::var("CHAOS_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(20);
    if let Some(seed) = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()) {
        fastrand::seed(seed);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = support::empty_database("mctl_bench_chaos").await;
        let actor = Actor::new("bench", Source::Cli);
        let project = store.create_project(&actor, "SYN", "Sync", "").await.unwrap();
        // Work made before the connection: the initial push has to send it.
        for n in 0..LOCAL_TASKS {
            let new = NewTask { title: format!("Local task {n}"), ..NewTask::default() };
            store.create_task(&actor, project.id, new).await.unwrap();
        }
        let plane = Arc::new(FakePlane::start().await);
        plane.seed_items(REMOTE_ITEMS);
        let token_dir = tempfile::tempdir().unwrap();
        let token = token_dir.path().join("plane-token");
        std::fs::write(&token, plane.token()).unwrap();
        let connection = store
            .add_connection(
                &actor,
                project.id,
                NewConnection {
                    key: "plane".into(),
                    provider: Provider::Plane,
                    base_url: plane.url(),
                    config: json!({
                        "workspace": plane.workspace(), "project": plane.project_id(), "requests_per_minute": 0,
                    }),
                    secret_ref: Some(format!("file:{}", token.display())),
                },
            )
            .await
            .unwrap();
        let mctl = Mctl { url: url("mctl_bench_chaos"), home: tempfile::tempdir().unwrap() };

        // The stream of edits, on both sides, for as long as the kills go on.
        let running = Arc::new(AtomicBool::new(true));
        let (local_edits, remote_edits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let editor = {
            let (store, plane, running) = (store.clone(), plane.clone(), running.clone());
            let (local_edits, remote_edits) = (local_edits.clone(), remote_edits.clone());
            tokio::spawn(async move {
                let actor = Actor::new("editor", Source::Cli);
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    n += 1;
                    if n % 4 == 0 {
                        let items = plane.items();
                        if !items.is_empty() {
                            let id = items[fastrand::usize(0..items.len())]["id"].as_str().unwrap().to_string();
                            remote_edit(&plane, &id, n);
                            remote_edits.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        let filter = TaskFilter { project_id: project.id, limit: 1000, ..TaskFilter::default() };
                        let tasks = store.list_tasks(&filter).await.unwrap();
                        if !tasks.is_empty() {
                            let key = tasks[fastrand::usize(0..tasks.len())].key.clone();
                            local_edit(&store, &actor, &key, n).await;
                            local_edits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(10..60))).await;
                }
            })
        };

        let started = Instant::now();
        for kill in 1..=kills {
            let mut worker = mctl.start_worker();
            tokio::time::sleep(Duration::from_millis(fastrand::u64(200..1500))).await;
            worker.kill().expect("SIGKILL the worker");
            let status = worker.wait().unwrap();
            println!("kill {kill:>2}: after {:>5.1}s, worker ended by {status}", started.elapsed().as_secs_f64());
        }
        running.store(false, Ordering::Relaxed);
        editor.await.unwrap();
        let edits = (local_edits.load(Ordering::Relaxed), remote_edits.load(Ordering::Relaxed));

        // The killed workers' leases would run out in two minutes; they are certainly dead.
        let held = store
            .client()
            .await
            .unwrap()
            .execute("UPDATE sync_job SET locked_until = now() - interval '1 second' WHERE locked_by IS NOT NULL", &[])
            .await
            .unwrap();
        let converging = Instant::now();
        let mut tries = 0;
        loop {
            tries += 1;
            let once = mctl.command(&["sync", "once", "--full"]).output().unwrap();
            if once.status.success() || tries == 5 {
                if !once.status.success() {
                    eprintln!("{}", String::from_utf8_lossy(&once.stderr));
                }
                break;
            }
        }
        let converged_in = converging.elapsed();

        // Field by field, through the sync's own conversions.
        let connection = store.connection_by_id(connection.id).await.unwrap();
        let sync = PlaneSync::load_with(&store, connection.clone(), RateLimiter::new(0), false).await.unwrap();
        let filter = TaskFilter { project_id: project.id, limit: 10_000, ..TaskFilter::default() };
        let tasks = store.list_tasks(&filter).await.unwrap();
        let mappings: HashMap<i64, String> = store
            .sync_mappings(connection.id, LocalKind::Task)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.local_id, m.external_id))
            .collect();
        let items = plane.items();
        let mut differences = Vec::new();
        let mut unmapped = 0;
        for task in &tasks {
            let Some(external) = mappings.get(&task.id) else {
                unmapped += 1;
                continue;
            };
            let Some(item) = plane.item(external) else {
                differences.push(format!("{}: its work item is gone", task.key));
                continue;
            };
            let item: mission_control::sync::providers::plane::WorkItem = serde_json::from_value(item).unwrap();
            let (detail, modules) = store.sync_read_task(task.id).await.unwrap();
            let local = local_fields(&detail, &modules);
            let remote = remote_fields(&item, None, &Default::default());
            for field in FIELDS {
                let here = local.get(field).and_then(|v| sync.to_remote(field, v));
                let there = remote.get(field).cloned();
                if here != there {
                    differences.push(format!("{} {field}: here {here:?}, in Plane {there:?}", task.key));
                }
            }
        }
        let mut ours: HashMap<String, usize> = HashMap::new();
        for item in &items {
            if item["external_source"] == "mission-control"
                && let Some(id) = item["external_id"].as_str()
            {
                *ours.entry(id.to_string()).or_default() += 1;
            }
        }
        let duplicates: usize = ours.values().map(|n| n.saturating_sub(1)).sum();
        let orphans = mappings.values().filter(|id| plane.item(id).is_none()).count();
        let stray = items.len().saturating_sub(mappings.len());

        println!("kills: {kills}, in {:.1}s", started.elapsed().as_secs_f64() - converged_in.as_secs_f64());
        println!("edits: {} here, {} in Plane", edits.0, edits.1);
        println!("converged by `sync once --full` in {:.1}s ({tries} run(s))", converged_in.as_secs_f64());
        println!("tasks: {}, work items: {}, mappings: {}", tasks.len(), items.len(), mappings.len());
        let adopted = plane.requests().iter().filter(|r| r.method == "POST" && r.status == 409).count();
        println!("keys a killed worker still held: {held}; creates answered 409 and adopted: {adopted}");
        println!("final differences: {} field(s)", differences.len());
        println!("tasks without a work item: {unmapped}; work items without a task: {stray}");
        println!("work items created twice: {duplicates}; mappings to nothing: {orphans}");
        for difference in differences.iter().take(20) {
            println!("  {difference}");
        }
        let clean = differences.is_empty() && unmapped == 0 && stray == 0 && duplicates == 0 && orphans == 0;
        assert!(clean, "the chaos run did not converge");
    });
}
