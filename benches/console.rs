//! Console benchmarks on a 100,000-task project (`cargo bench --bench console`):
//! drawing the Work board at 200×60, and start-up to the first complete board
//! frame on a warm database.

mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mission_control::console::app::App;
use mission_control::console::state::ConsoleOptions;
use mission_control::store::{Store, StoreOptions};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use time::OffsetDateTime;

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (store, project_id) = runtime.block_on(support::project_with_tasks("mctl_bench_console"));
    let project = runtime
        .block_on(async { store.list_projects(false).await.unwrap() })
        .into_iter()
        .find(|p| p.id == project_id)
        .unwrap();
    let options = ConsoleOptions::defaults(false);

    let app = runtime.block_on(async {
        let mut app = App::new(store.clone(), project.clone(), "bench", &options, OffsetDateTime::now_utc());
        app.state.width = 200;
        app.state.height = 60;
        app.start();
        assert!(app.settle(Duration::from_secs(30)).await);
        app
    });
    let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
    c.bench_function("console/draw work board 200x60 (100k tasks)", |b| {
        b.iter(|| {
            terminal.draw(|frame| app.draw(frame)).unwrap();
        })
    });

    // From nothing to the first complete board frame: a new pool (fresh
    // connections), the schema check, the initial queries, and the draw.
    let config = store.pg_config().clone();
    c.bench_function("console/start-up to first board frame (100k tasks, warm db)", |b| {
        b.to_async(&runtime).iter(|| {
            let config = config.clone();
            let project = project.clone();
            let options = options.clone();
            async move {
                let store = Store::connect(config, StoreOptions::default()).await.unwrap();
                store.migrate().await.unwrap();
                let mut app = App::new(store, project, "bench", &options, OffsetDateTime::now_utc());
                app.state.width = 200;
                app.state.height = 60;
                app.start();
                assert!(app.settle(Duration::from_secs(30)).await);
                let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
                terminal.draw(|frame| app.draw(frame)).unwrap();
                assert!(app.state.board.loaded);
            }
        })
    });
}

criterion_group! {
    name = console;
    config = Criterion::default().measurement_time(Duration::from_secs(10)).sample_size(40);
    targets = benches
}
criterion_main!(console);
