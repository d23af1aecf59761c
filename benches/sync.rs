//! Sync against a local server that speaks Plane's API
//! (`cargo bench --bench sync`):
//!
//! - the initial import of 10,000 work items;
//! - an idle pass over those 10,000 mappings (requests per object type, time);
//! - 1,000 local edits to distinct mapped tasks pushed with no rate limit;
//! - edits pushed under Plane's default 60 requests a minute: the worker
//!   paces itself, and every 429 it meets is handled.
//!
//! Times are medians of three runs where a run can be repeated.

#[path = "../tests/common/plane.rs"]
mod plane;
mod support;

use std::time::{Duration, Instant};

use mission_control::domain::{Provider, Source};
use mission_control::store::integrations::NewConnection;
use mission_control::store::tasks::{TaskEdit, TaskFilter};
use mission_control::store::{Actor, Store};
use mission_control::sync::worker::{Limiters, Worker, WorkerOptions};
use plane::FakePlane;

const ITEMS: usize = 10_000;
const EDITS: usize = 1_000;
const PACED_EDITS: usize = 40;

async fn connect(
    store: &Store,
    project_id: i64,
    plane: &FakePlane,
    key: &str,
    per_minute: u32,
    token: &std::path::Path,
) -> i64 {
    store
        .add_connection(
            &Actor::new("bench", Source::Cli),
            project_id,
            NewConnection {
                key: key.into(),
                provider: Provider::Plane,
                base_url: plane.url(),
                config: serde_json::json!({
                    "workspace": plane.workspace(), "project": plane.project_id(), "requests_per_minute": per_minute,
                }),
                secret_ref: Some(format!("file:{}", token.display())),
            },
        )
        .await
        .unwrap()
        .id
}

fn worker(store: &Store, project_id: i64, id: &str, limiters: &Limiters) -> Worker {
    let options = WorkerOptions { id: id.into(), project_id: Some(project_id), batch: 50, ..WorkerOptions::default() };
    Worker::new(store.clone(), options, limiters.clone())
}

/// Drains the queue with `workers` workers side by side.
async fn drain(store: &Store, project_id: i64, workers: usize, limiters: &Limiters) -> usize {
    let mut handles = Vec::new();
    for n in 0..workers {
        let mut w = worker(store, project_id, &format!("bench-{n}"), limiters);
        handles.push(tokio::spawn(async move { w.drain().await.unwrap() }));
    }
    let mut failed = 0;
    for handle in handles {
        failed += handle.await.unwrap().failed;
    }
    failed
}

async fn edit_all(store: &Store, project_id: i64, count: usize, round: usize) {
    let tasks =
        store.list_tasks(&TaskFilter { project_id, limit: count as i64, ..TaskFilter::default() }).await.unwrap();
    let actor = Actor::new("bench", Source::Cli);
    for task in tasks.iter().take(count) {
        let edit = TaskEdit { title: Some(format!("{} · edit {round}", task.title)), ..TaskEdit::default() };
        store.edit_task(&actor, &task.key, edit, None).await.unwrap();
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let token_dir = tempfile::tempdir().unwrap();
        let token = token_dir.path().join("plane-token");

        // Import: three fresh databases, each importing the same 10,000 items.
        let plane = FakePlane::start().await;
        plane.seed_items(ITEMS);
        std::fs::write(&token, plane.token()).unwrap();
        let mut imports = Vec::new();
        let mut kept = None;
        for run in 0..3 {
            let store = support::empty_database("mctl_bench_sync").await;
            let project = store.create_project(&Actor::new("bench", Source::Cli), "SYN", "Sync", "").await.unwrap();
            connect(&store, project.id, &plane, "plane", 0, &token).await;
            let limiters = Limiters::default();
            let started = Instant::now();
            let mut w = worker(&store, project.id, "import", &limiters);
            w.schedule(true).await.unwrap();
            let report = w.drain().await.unwrap();
            imports.push(started.elapsed());
            assert_eq!(report.failed, 0, "{:?}", report.errors);
            let created: usize = report.passes.iter().map(|p| p.created_local).sum();
            assert_eq!(created, ITEMS);
            println!("import run {run}: {} ({} passes)", support::ms(started.elapsed(), 1), report.passes.len());
            kept = Some((store, project.id));
        }
        println!("initial import of {ITEMS} work items: {} (median of {:?})", support::ms(support::median(imports.clone()), 1), imports.iter().map(|d| support::ms(*d, 1)).collect::<Vec<_>>());
        let (store, project_id) = kept.unwrap();
        store.client().await.unwrap().batch_execute("VACUUM ANALYZE").await.unwrap();

        // Idle passes: one long-running worker (context loaded), nothing changed on either side.
        // The steady state first: time passes and one item changes, so the watermark's overlap
        // window no longer covers the 10,000 items the import just read (all made a moment ago).
        let limiters = Limiters::default();
        let mut w = worker(&store, project_id, "idle", &limiters);
        plane.advance_clock(Duration::from_secs(600));
        let first = plane.items()[0]["id"].as_str().unwrap().to_string();
        plane.edit_item(&first, serde_json::json!({"name": "changed later"}));
        w.schedule(true).await.unwrap();
        w.drain().await.unwrap();
        let mut idle = Vec::new();
        for _ in 0..5 {
            plane.reset_log();
            w.schedule(true).await.unwrap();
            let started = Instant::now();
            let report = w.drain().await.unwrap();
            idle.push(started.elapsed());
            let pass = &report.passes[0];
            assert_eq!(pass.listed + pass.created_local + pass.objects.pulled + pass.objects.pushed, pass.listed);
        }
        let requests = plane.requests();
        let per_type = |path: &str| requests.iter().filter(|r| r.method == "GET" && r.path.ends_with(path)).count();
        println!(
            "idle pass over {ITEMS} mappings: {} (median of 5: {:?}); requests: work-items {}, cycles {}, modules {}, other {}",
            support::ms(support::median(idle.clone()), 1),
            idle.iter().map(|d| support::ms(*d, 1)).collect::<Vec<_>>(),
            per_type("/work-items/"),
            per_type("/cycles/"),
            per_type("/modules/"),
            requests.len() - per_type("/work-items/") - per_type("/cycles/") - per_type("/modules/"),
        );

        // 1,000 edits pushed, no rate limit, four workers.
        let mut pushes = Vec::new();
        for round in 0..3 {
            edit_all(&store, project_id, EDITS, round).await;
            plane.reset_log();
            let started = Instant::now();
            let failed = drain(&store, project_id, 4, &limiters).await;
            pushes.push(started.elapsed());
            assert_eq!(failed, 0);
            assert_eq!(plane.count("PATCH", "work-items"), EDITS);
        }
        println!("{EDITS} local edits pushed (4 workers, no rate limit): {} (median of {:?})", support::ms(support::median(pushes.clone()), 1), pushes.iter().map(|d| support::ms(*d, 1)).collect::<Vec<_>>());

        // Plane's default budget: 60 requests a minute per token, enforced by the server.
        let paced = FakePlane::builder().rate_limit(60, Duration::from_secs(60)).start().await;
        paced.seed_items(PACED_EDITS);
        std::fs::write(&token, paced.token()).unwrap();
        let store = support::empty_database("mctl_bench_sync_paced").await;
        let project = store.create_project(&Actor::new("bench", Source::Cli), "PAC", "Paced", "").await.unwrap();
        connect(&store, project.id, &paced, "plane", 60, &token).await;
        let limiters = Limiters::default();
        let started = Instant::now();
        let mut importer = worker(&store, project.id, "paced-import", &limiters);
        importer.schedule(true).await.unwrap();
        while importer.drain().await.unwrap().jobs > 0 {}
        edit_all(&store, project.id, PACED_EDITS, 0).await;
        // Work until every edit is in Plane, waking up as a long-running worker would.
        loop {
            let failed = drain(&store, project.id, 2, &limiters).await;
            assert_eq!(failed, 0);
            let pushed = paced.items().iter().filter(|i| i["name"].as_str().unwrap_or("").contains("· edit 0")).count();
            if pushed == PACED_EDITS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let elapsed = started.elapsed();
        let served = paced.requests();
        println!(
            "{PACED_EDITS} edits under 60 requests/minute: done in {:.1} s with {} requests, {} answered 429 (each put off until the provider's reset, none dropped)",
            elapsed.as_secs_f64(),
            served.len(),
            paced.throttled()
        );
    });
}
