//! Task-move latency percentiles (`cargo bench --bench move_latency`).
//! Criterion reports means and medians; the p99 goal needs the tail, so this
//! runs 5,000 sequential moves on a 100,000-task project and prints p50/p95/p99.

mod support;

use std::time::Instant;

use mission_control::domain::Source;
use mission_control::store::Actor;
use mission_control::store::tasks::Position;

const MOVES: usize = 5_000;

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing and
    // should not spend a minute here.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (store, project_id) = support::project_with_tasks("mctl_bench_moves").await;
        let board = store.load_board(project_id, 20).await.unwrap();
        let keys: Vec<String> =
            board.iter().find(|l| l.lane.name == "Ready").unwrap().cards.iter().map(|c| c.key.clone()).collect();
        let actor = Actor::new("bench", Source::Console);
        // Warm the pool and the statement caches.
        for key in &keys {
            store.move_task(&actor, key, Some("In Progress"), Position::Top, None).await.unwrap();
            store.move_task(&actor, key, Some("Ready"), Position::Top, None).await.unwrap();
        }
        let mut samples = Vec::with_capacity(MOVES);
        for n in 0..MOVES {
            let key = &keys[n % keys.len()];
            let lane = if (n / keys.len()).is_multiple_of(2) { "In Progress" } else { "Ready" };
            let started = Instant::now();
            store.move_task(&actor, key, Some(lane), Position::Top, None).await.unwrap();
            samples.push(started.elapsed());
        }
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "task move over {MOVES} moves on {} tasks: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            support::TASKS,
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.95).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            samples.last().unwrap().as_secs_f64() * 1e3
        );
    });
}
