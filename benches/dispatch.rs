//! `dispatch next` on loopback (`cargo bench --bench dispatch`):
//!
//! - claims per second with 16 concurrent claimers (16 agents with room to
//!   spare) taking tasks from a project of 100,000 tasks of which 20,000 are
//!   ready for them (goal: more than 500/s), and the claim latency p50/p99
//!   under that load;
//! - the latency of one claimer alone, and of a one-row update committed
//!   alone: claims into one lane queue on that lane's row until each commits,
//!   so the commit time bounds the rate.
//!
//! Every figure is the median of three runs.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mission_control::domain::{AgentKind, Source};
use mission_control::store::agents::NewAgent;
use mission_control::store::dispatch::DispatchOutcome;
use mission_control::store::{Actor, Store};

const SEEDED: i64 = 80_000;
const READY: i64 = 20_000;
const CLAIMERS: usize = 16;
const CLAIMS_PER_RUN: usize = 4_000;
const ALONE: usize = 500;

/// 80,000 generated tasks (their ready ones all reserved for other agents),
/// then 20,000 unassigned ready tasks of mixed priority: 100,000 in all.
async fn setup() -> (Store, i64) {
    let store = support::empty_database("mctl_bench_dispatch").await;
    let actor = Actor::new("bench", Source::Cli);
    mission_control::seed::load_tasks(&store, &actor, "BENCH", SEEDED, 7).await.unwrap();
    let client = store.client().await.unwrap();
    client
        .batch_execute(&format!(
            "UPDATE task SET assignee_id = (SELECT id FROM agent WHERE handle = 'load-01')
             WHERE assignee_id IS NULL
               AND lane_id = (SELECT l.id FROM lane l JOIN project p ON p.id = l.project_id
                              WHERE p.key = 'BENCH' AND l.name = 'Ready');
             INSERT INTO task (project_id, number, task_key, title, lane_id, rank, priority, labels, created_by)
             SELECT p.id, p.last_task_number + g, p.key || '-' || (p.last_task_number + g), 'Ready task ' || g,
                    l.id, (SELECT max(rank) FROM task WHERE lane_id = l.id) + g * 65536,
                    (ARRAY['urgent', 'high', 'medium', 'low', 'none'])[1 + g % 5],
                    CASE WHEN g % 3 = 0 THEN ARRAY['backend'] ELSE '{{}}' END, 'bench'
             FROM project p JOIN lane l ON l.project_id = p.id AND l.name = 'Ready', generate_series(1, {READY}) g
             WHERE p.key = 'BENCH';
             UPDATE project SET last_task_number = last_task_number + {READY} WHERE key = 'BENCH';"
        ))
        .await
        .unwrap();
    // Statistics and a visibility map, as autovacuum would have left them (on its own: not in a transaction).
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    let project = store.project_by_key("BENCH").await.unwrap();
    (store, project.id)
}

async fn agents(store: &Store, prefix: &str, count: usize) -> Vec<String> {
    let actor = Actor::new("bench", Source::Cli);
    let mut handles = Vec::new();
    for n in 0..count {
        let handle = format!("{prefix}-{n:02}");
        let new = NewAgent {
            handle: handle.clone(),
            display_name: handle.clone(),
            kind: AgentKind::Ai,
            capacity: Some(1000),
            skills: Vec::new(),
        };
        store.create_agent(&actor, new).await.unwrap();
        handles.push(handle);
    }
    handles
}

async fn claim(store: &Store, project_id: i64, handle: &str) -> Duration {
    let actor = Actor::new(handle, Source::Agent);
    let started = Instant::now();
    let outcome = store.dispatch_next(&actor, project_id, handle).await.unwrap();
    let took = started.elapsed();
    assert!(matches!(outcome, DispatchOutcome::Claimed(_)), "{handle}: {outcome:?}");
    took
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (store, project_id) = setup().await;
        // Every pooled connection goes to the claimers while they run.
        let client = store.client().await.unwrap();
        let ready: i64 = client
            .query_one(
                "SELECT count(*) FROM task t JOIN lane l ON l.id = t.lane_id
                 WHERE l.category = 'unstarted' AND NOT t.archived AND t.assignee_id IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let total: i64 = client.query_one("SELECT count(*) FROM task", &[]).await.unwrap().get(0);
        println!("project: {total} tasks, {ready} ready and unassigned");
        drop(client);

        let (mut rates, mut p50s, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..3 {
            // Fresh agents each run, so no run starts with a claimer near its capacity.
            let handles = agents(&store, &format!("claimer{run}"), CLAIMERS).await;
            let left = Arc::new(AtomicUsize::new(CLAIMS_PER_RUN));
            let started = Instant::now();
            let workers: Vec<_> = handles
                .into_iter()
                .map(|handle| {
                    let (store, left) = (store.clone(), left.clone());
                    tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        while left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                            latencies.push(claim(&store, project_id, &handle).await);
                        }
                        latencies
                    })
                })
                .collect();
            let mut latencies = Vec::with_capacity(CLAIMS_PER_RUN);
            for worker in workers {
                latencies.extend(worker.await.unwrap());
            }
            let elapsed = started.elapsed();
            latencies.sort();
            rates.push(CLAIMS_PER_RUN as f64 / elapsed.as_secs_f64());
            p50s.push(support::percentile(&latencies, 0.50));
            p99s.push(support::percentile(&latencies, 0.99));
            println!(
                "  run {}: {:.0} claims/s, p50 {}, p99 {}",
                run + 1,
                rates[run],
                support::ms(p50s[run], 2),
                support::ms(p99s[run], 2)
            );
        }
        println!(
            "{CLAIMERS} concurrent claimers, {CLAIMS_PER_RUN} claims per run: {:.0} claims/s; claim latency p50 {}, p99 {}",
            support::median(rates),
            support::ms(support::median(p50s), 2),
            support::ms(support::median(p99s), 2)
        );

        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        for run in 0..3 {
            let handle = agents(&store, &format!("alone{run}"), 1).await.remove(0);
            let mut latencies = Vec::with_capacity(ALONE);
            for _ in 0..ALONE {
                latencies.push(claim(&store, project_id, &handle).await);
            }
            latencies.sort();
            p50s.push(support::percentile(&latencies, 0.50));
            p99s.push(support::percentile(&latencies, 0.99));
        }
        println!("one claimer alone, {ALONE} claims: p50 {}, p99 {}", support::ms(support::median(p50s), 2), support::ms(support::median(p99s), 2));

        // The floor under any claim: one row updated and committed, one at a time.
        let client = store.client().await.unwrap();
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        let statement = client.prepare("UPDATE agent SET last_seen_at = now() WHERE handle = 'load-01'").await.unwrap();
        for _ in 0..3 {
            let mut latencies = Vec::with_capacity(ALONE);
            for _ in 0..ALONE {
                let started = Instant::now();
                client.execute(&statement, &[]).await.unwrap();
                latencies.push(started.elapsed());
            }
            latencies.sort();
            p50s.push(support::percentile(&latencies, 0.50));
            p99s.push(support::percentile(&latencies, 0.99));
        }
        println!(
            "one-row update committed alone (the commit floor): p50 {}, p99 {}",
            support::ms(support::median(p50s), 2),
            support::ms(support::median(p99s), 2)
        );

        let claimed: i64 = client
            .query_one("SELECT count(*) FROM audit_entry WHERE action = 'task.claim'", &[])
            .await
            .unwrap()
            .get(0);
        let distinct: i64 = client
            .query_one("SELECT count(DISTINCT entity_id) FROM audit_entry WHERE action = 'task.claim'", &[])
            .await
            .unwrap()
            .get(0);
        println!("{claimed} claims audited, {distinct} distinct tasks");
        assert_eq!(claimed as usize, 3 * (CLAIMS_PER_RUN + ALONE));
        assert_eq!(claimed, distinct, "no task was claimed twice");
    });
}
