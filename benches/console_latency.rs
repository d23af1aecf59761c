//! Key press to redrawn frame for a task move on a 100,000-task project
//! (`cargo bench --bench console_latency`), with p50/p95/p99, plus the
//! benchmark process's resident memory with that project open.
//!
//! Two frames matter: the optimistic one (drawn as soon as the key is handled)
//! and the confirmed one (after the move's transaction and the board reload).

mod support;

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use mission_control::console::action::Action;
use mission_control::console::app::App;
use mission_control::console::state::ConsoleOptions;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use time::OffsetDateTime;

const MOVES: usize = 400;

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| support::percentile(&samples, p).as_secs_f64() * 1e3;
    format!("p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms", at(0.5), at(0.95), at(0.99), at(1.0))
}

fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (store, project_id) = support::project_with_tasks("mctl_bench_latency").await;
        let project = store.list_projects(false).await.unwrap().into_iter().find(|p| p.id == project_id).unwrap();
        let before = resident_kb();
        let mut app = App::new(store, project, "bench", &ConsoleOptions::defaults(false), OffsetDateTime::now_utc());
        app.state.width = 200;
        app.state.height = 60;
        app.start();
        assert!(app.settle(Duration::from_secs(30)).await);
        let mut terminal = Terminal::new(TestBackend::new(200, 60)).unwrap();
        terminal.draw(|frame| app.draw(frame)).unwrap();
        println!(
            "resident memory: {} MB with the 100k-task project open ({} MB before the console)",
            resident_kb() / 1024,
            before / 1024
        );
        let key = |c: char| Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::SHIFT));
        let (mut optimistic, mut confirmed) = (Vec::new(), Vec::new());
        for n in 0..MOVES {
            // Alternate the first Ready card right and back left.
            let c = if n % 2 == 0 { 'L' } else { 'H' };
            let started = Instant::now();
            app.dispatch(key(c));
            terminal.draw(|frame| app.draw(frame)).unwrap();
            optimistic.push(started.elapsed());
            assert!(app.settle(Duration::from_secs(10)).await);
            terminal.draw(|frame| app.draw(frame)).unwrap();
            confirmed.push(started.elapsed());
        }
        println!("key to optimistic frame over {MOVES} moves: {}", percentiles(optimistic));
        println!("key to confirmed frame (move transaction + board reload + draw): {}", percentiles(confirmed));
    });
}
