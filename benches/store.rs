//! Repository benchmarks on a 100,000-task project (`cargo bench --bench store`):
//! loading one board screen, and one task move (transaction + audit + notify).

mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mission_control::domain::Source;
use mission_control::store::Actor;
use mission_control::store::tasks::Position;

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (store, project_id) = runtime.block_on(support::project_with_tasks("mctl_bench_store"));

    c.bench_function("board/load 6 lanes x 50 cards of 100k tasks", |b| {
        b.to_async(&runtime).iter(|| async {
            let board = store.load_board(project_id, 50).await.unwrap();
            assert_eq!(board.iter().map(|l| l.lane.open_count as i64).sum::<i64>(), support::TASKS);
        })
    });

    // Moves the same few tasks back and forth between two busy lanes.
    let keys: Vec<String> = runtime.block_on(async {
        let board = store.load_board(project_id, 8).await.unwrap();
        board.iter().find(|l| l.lane.name == "Ready").unwrap().cards.iter().map(|c| c.key.clone()).collect()
    });
    let actor = Actor::new("bench", Source::Console);
    let mut turn = 0usize;
    c.bench_function("task/move (transaction + audit + notify)", |b| {
        b.to_async(&runtime).iter(|| {
            turn += 1;
            let key = keys[turn % keys.len()].clone();
            let lane = if (turn / keys.len()).is_multiple_of(2) { "In Progress" } else { "Ready" };
            let store = store.clone();
            let actor = actor.clone();
            async move {
                store.move_task(&actor, &key, Some(lane), Position::Top, None).await.unwrap();
            }
        })
    });
}

criterion_group! {
    name = store;
    config = Criterion::default().measurement_time(Duration::from_secs(10)).sample_size(60);
    targets = benches
}
criterion_main!(store);
