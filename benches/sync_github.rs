//! An idle pass over a GitHub repository with 5,000 issues, against a local
//! server that speaks GitHub's REST API (`cargo bench --bench sync_github`):
//! how many listing requests a pass makes, how many GitHub answered 304
//! (goal: all of them), and how long it takes. Incremental and full passes.
//!
//! Times are medians of five passes by one long-running worker.
//!
//! Then webhook delivery → change visible: with `mctl sync serve`'s receiver
//! and a running worker (`Worker::run`, woken by NOTIFY), an issue is renamed
//! on the server, its signed `issues` delivery is posted, and the clock runs
//! until the task's new title can be read from the database (goal: p99 under
//! 1 s). Deliveries one at a time, over distinct issues.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

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
use mission_control::sync::webhook::verify::hmac_hex;
use mission_control::sync::webhook::{ServeOptions, Server};
use mission_control::sync::worker::{Limiters, Worker, WorkerOptions};

const ISSUES: usize = 5_000;
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
const DELIVERIES: usize = 300;

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
        let webhook_secret = token_dir.path().join("webhook-secret");
        std::fs::write(&webhook_secret, WEBHOOK_SECRET).unwrap();
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
                    config: serde_json::json!({
                        "repo": "acme/app", "requests_per_minute": 0, "write_interval_ms": 0,
                        "webhook_secret_ref": format!("file:{}", webhook_secret.display()),
                    }),
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
        println!("import of {ISSUES} issues: {}", support::ms(started.elapsed(), 1));
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
                support::ms(support::median(times), 1),
                listing.0,
                listing.1,
                if listing.0 == listing.1 { "all" } else { "NOT all" }
            );
        }

        delivery_to_visible(&store, &fake, worker).await;
    });
}

/// Renames issues on the server, posts their deliveries to the receiver and
/// waits for each new title to be readable locally; a worker runs meanwhile.
async fn delivery_to_visible(store: &mission_control::store::Store, fake: &github::FakeGitHub, mut worker: Worker) {
    let server =
        Server::bind(store.clone(), ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), ..ServeOptions::default() })
            .await
            .unwrap();
    let url = format!("http://{}/hooks/github", server.local_addr().unwrap());
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = server_stopped.await;
    }));
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let working = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = worker_stopped.await;
            })
            .await
    });
    let http = reqwest::Client::new();
    let client = store.client().await.unwrap();
    let task_of = client
        .prepare("SELECT local_id FROM external_mapping WHERE local_kind = 'task' AND external_id = $1")
        .await
        .unwrap();
    let title_of = client.prepare("SELECT title FROM task WHERE id = $1").await.unwrap();

    let mut latencies = Vec::with_capacity(DELIVERIES);
    for i in 0..DELIVERIES {
        let number = (i * 16 % ISSUES) as i64 + 1;
        let task: i64 = client.query_one(&task_of, &[&number.to_string()]).await.unwrap().get(0);
        let title = format!("renamed by delivery {i}");
        fake.edit(number, |item| item.title = title.clone());
        let body =
            serde_json::to_vec(&serde_json::json!({ "action": "edited", "issue": { "number": number } })).unwrap();
        let signature = format!("sha256={}", hmac_hex(WEBHOOK_SECRET.as_bytes(), &[&body]));
        let started = Instant::now();
        let response = http
            .post(&url)
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", format!("visible-{i}"))
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        loop {
            let now: String = client.query_one(&title_of, &[&task]).await.unwrap().get(0);
            if now == title {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "delivery {i} never became visible");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let at = |p: f64| support::percentile(&latencies, p);
    println!(
        "webhook delivery -> change visible in the database ({DELIVERIES} deliveries, one at a time): p50 {}, p99 {}, max {}",
        support::ms(at(0.50), 1),
        support::ms(at(0.99), 1),
        support::ms(*latencies.last().unwrap(), 1)
    );
    let _ = stop_worker.send(());
    working.await.unwrap().unwrap();
    let _ = stop_server.send(());
    let _ = serving.await;
}
