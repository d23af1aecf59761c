//! An idle pass over a GitHub repository with 5,000 issues, against a local
//! server that speaks GitHub's REST API (`cargo bench --bench sync_github`):
//! how many listing requests a pass makes, how many GitHub answered 304
//! (goal: all of them), and how long it takes. Incremental and full passes.
//!
//! Times are medians of five passes by one long-running worker.

#[path = "../tests/common/forge.rs"]
mod forge;
#[path = "../tests/common/github.rs"]
mod github;
mod support;

use std::time::{Duration, Instant};

use mission_control::domain::{Provider, Source};
use mission_control::store::Actor;
use mission_control::store::integrations::NewConnection;
use mission_control::sync::queue;
use mission_control::sync::worker::{Limiters, Worker, WorkerOptions};

const ISSUES: usize = 5_000;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let token_dir = tempfile::tempdir().unwrap();
        let token = token_dir.path().join("github-token");
        let fake = github::start().await;
        fake.seed(ISSUES);
        github::seed_delivery(&fake);
        std::fs::write(&token, fake.token()).unwrap();
        let store = support::empty_database("mctl_bench_sync_github").await;
        let actor = Actor::new("bench", Source::Cli);
        let project = store.create_project(&actor, "GH", "GitHub", "").await.unwrap();
        let connection = store
            .add_connection(
                &actor,
                project.id,
                NewConnection {
                    key: "github".into(),
                    provider: Provider::Github,
                    base_url: fake.url(),
                    config: serde_json::json!({"repo": "acme/app", "requests_per_minute": 0, "write_interval_ms": 0}),
                    secret_ref: Some(format!("file:{}", token.display())),
                },
            )
            .await
            .unwrap();
        let options =
            WorkerOptions { id: "bench".into(), project_id: Some(project.id), batch: 50, ..WorkerOptions::default() };
        let mut worker = Worker::new(store.clone(), options, Limiters::default());

        let started = Instant::now();
        worker.schedule(true).await.unwrap();
        let report = worker.drain().await.unwrap();
        assert_eq!(report.failed, 0, "{:?}", report.errors);
        println!("import of {ISSUES} issues: {}", ms(started.elapsed()));
        // One more of each so every listing URL has been read once.
        worker.schedule(true).await.unwrap();
        worker.drain().await.unwrap();
        queue::enqueue(&store, connection.id, queue::FULL).await.unwrap();
        worker.drain().await.unwrap();

        for (name, key) in [("incremental", queue::PULL), ("full", queue::FULL)] {
            let mut times = Vec::new();
            let mut listing = (0, 0);
            for _ in 0..5 {
                fake.reset_log();
                queue::enqueue(&store, connection.id, key).await.unwrap();
                let started = Instant::now();
                let report = worker.drain().await.unwrap();
                times.push(started.elapsed());
                assert_eq!(report.failed, 0, "{:?}", report.errors);
                let requests: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "GET").collect();
                listing = (requests.len(), requests.iter().filter(|r| r.status == 304).count());
            }
            println!(
                "idle {name} pass over {ISSUES} issues: {} (median of 5); listing requests {}, answered 304: {} ({})",
                ms(median(times)),
                listing.0,
                listing.1,
                if listing.0 == listing.1 { "all" } else { "NOT all" }
            );
        }
    });
}
