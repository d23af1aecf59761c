//! The webhook receiver on loopback (`cargo bench --bench webhook`):
//!
//! - accepted deliveries per second: signed GitHub `issues` deliveries, each
//!   new, sent 64 at a time (goal: more than 2,000/s on 2 cores);
//! - delivery → key queued latency, p50 and p99 (goal: p99 under 1 s). The
//!   receiver answers 202 only after the statement that stores the delivery
//!   and queues its key has committed, so the time to the answer bounds the
//!   time until the key is in `sync_job`. Measured under the same load and
//!   one at a time.
//!
//! Rates and percentiles are medians of three runs.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mission_control::domain::{LocalKind, Provider, Source};
use mission_control::store::integrations::{NewConnection, NewMapping};
use mission_control::store::tasks::NewTask;
use mission_control::store::{Actor, Store};
use mission_control::sync::webhook::verify::hmac_hex;
use mission_control::sync::webhook::{ServeOptions, Server};
use serde_json::json;

const SECRET: &str = "bench-webhook-secret";
const MAPPED: u64 = 1_000;
const DELIVERIES: usize = 20_000;
const CONCURRENCY: usize = 64;
const SEQUENTIAL: usize = 1_000;

async fn setup(secret_path: &std::path::Path) -> Store {
    let store = support::empty_database("mctl_bench_webhook").await;
    let actor = Actor::new("bench", Source::Cli);
    let project = store.create_project(&actor, "HOOK", "Webhooks", "").await.unwrap();
    store
        .add_connection(
            &actor,
            project.id,
            NewConnection {
                key: "gh".into(),
                provider: Provider::Github,
                base_url: "https://api.github.com".into(),
                config: json!({ "repo": "acme/app", "webhook_secret_ref": format!("file:{}", secret_path.display()) }),
                secret_ref: None,
            },
        )
        .await
        .unwrap();
    for n in 1..=MAPPED {
        let task = store
            .create_task(&actor, project.id, NewTask { title: format!("issue {n}"), ..NewTask::default() })
            .await
            .unwrap();
        let mapping = NewMapping {
            connection: "gh".into(),
            local_kind: LocalKind::Task,
            local_id: task.id,
            external_id: n.to_string(),
            external_key: Some(format!("#{n}")),
            url: None,
        };
        store.create_mapping(&actor, project.id, mapping).await.unwrap();
    }
    // Statistics, as autovacuum would have gathered on a server that has been running.
    store.client().await.unwrap().batch_execute("ANALYZE").await.unwrap();
    store
}

async fn send(http: &reqwest::Client, url: &str, delivery: String, number: u64) -> Duration {
    let body = serde_json::to_vec(&json!({ "action": "edited", "issue": { "number": number } })).unwrap();
    let signature = format!("sha256={}", hmac_hex(SECRET.as_bytes(), &[&body]));
    let started = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "issues")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await
        .expect("the receiver answers");
    assert_eq!(response.status().as_u16(), 202, "every delivery is new");
    started.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("secret");
        std::fs::write(&secret_path, SECRET).unwrap();
        let store = setup(&secret_path).await;
        let server =
            Server::bind(store.clone(), ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), ..ServeOptions::default() })
                .await
                .unwrap();
        let url = format!("http://{}/hooks/gh", server.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();

        let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..3 {
            let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
            let started = Instant::now();
            let mut handles = Vec::with_capacity(DELIVERIES);
            for i in 0..DELIVERIES {
                let permit = limit.clone().acquire_owned().await.unwrap();
                let (http, url) = (http.clone(), url.clone());
                handles.push(tokio::spawn(async move {
                    let latency = send(&http, &url, format!("load-{run}-{i}"), (i as u64 % (MAPPED + 200)) + 1).await;
                    drop(permit);
                    latency
                }));
            }
            let mut latencies = Vec::with_capacity(DELIVERIES);
            for handle in handles {
                latencies.push(handle.await.unwrap());
            }
            let elapsed = started.elapsed();
            latencies.sort();
            rates.push(DELIVERIES as f64 / elapsed.as_secs_f64());
            p50s.push(support::percentile(&latencies, 0.50));
            p99s.push(support::percentile(&latencies, 0.99));
        }
        println!(
            "accepted deliveries, {CONCURRENCY} at a time: {:.0}/s; delivery -> key queued under that load: p50 {}, p99 {}",
            support::median(rates),
            support::ms(support::median(p50s), 2),
            support::ms(support::median(p99s), 2)
        );

        let mut p50s = Vec::new();
        let mut p99s = Vec::new();
        for run in 0..3 {
            let mut latencies = Vec::with_capacity(SEQUENTIAL);
            for i in 0..SEQUENTIAL {
                latencies.push(send(&http, &url, format!("one-{run}-{i}"), (i as u64 % MAPPED) + 1).await);
            }
            latencies.sort();
            p50s.push(support::percentile(&latencies, 0.50));
            p99s.push(support::percentile(&latencies, 0.99));
        }
        println!("delivery -> key queued, one at a time: p50 {}, p99 {}", support::ms(support::median(p50s), 2), support::ms(support::median(p99s), 2));

        let client = store.client().await.unwrap();
        let stored: i64 = client.query_one("SELECT count(*) FROM webhook_inbox", &[]).await.unwrap().get(0);
        let missing: i64 = client
            .query_one(
                "SELECT count(*) FROM webhook_inbox i, unnest(i.keys) k
                 WHERE NOT EXISTS (SELECT 1 FROM sync_job j WHERE j.connection_id = i.connection_id AND j.key = k)",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let keys: i64 = client.query_one("SELECT count(*) FROM sync_job", &[]).await.unwrap().get(0);
        println!("stored {stored} deliveries; {keys} keys queued; {missing} delivery keys missing from the queue");
        assert_eq!(stored as usize, 3 * (DELIVERIES + SEQUENTIAL));
        assert_eq!(missing, 0);
        let _ = stop.send(());
        let _ = serving.await;
    });
}
