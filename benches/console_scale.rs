//! A whole rotation on one PostgreSQL (`cargo bench --bench console_scale`):
//! N headless consoles — the console's own `App` (data layer, refresh
//! coalescing, the once-a-second clock) and its own listener
//! (`console::live`), each with its own pool — watch the demo board while 8
//! writers edit one task each, about once a second. Reported per N: server
//! connections (most seen, and when idle), change → visible in every console
//! p50/p99/max, and errors (writers' failures, consoles' lost connections and
//! failed loads).
//!
//! The server is a private cluster (mctl's embedded-cluster code) under the
//! system temp dir with `max_connections = 1100`, so a default server's 100
//! is no limit. Three ways in, chosen with `MC_SCALE_VIA` (comma-separated;
//! default all):
//! - `direct`: every console on the server, `pool_size = 1` plus its listener;
//! - `pgbouncer`: queries through PgBouncer in transaction mode
//!   (`default_pool_size = 40`), LISTEN on the server (`listen_url`);
//! - `pgbouncer-poll`: queries through PgBouncer, no LISTEN (`listen_url = poll`).
//!
//! `MC_SCALE_SESSIONS` (default `50,200,500`) and `MC_SCALE_SECONDS`
//! (measured time per run, default 30) change the runs.

#![allow(clippy::disallowed_methods)] // counting connections straight on the server

#[path = "../tests/common/pgbouncer.rs"]
mod pgbouncer;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mission_control::console::action::{Action, DbEvent};
use mission_control::console::app::App;
use mission_control::console::state::ConsoleOptions;
use mission_control::db::EmbeddedCluster;
use mission_control::domain::{Project, Source};
use mission_control::store::tasks::TaskEdit;
use mission_control::store::{Actor, Session, Store, StoreOptions};
use time::OffsetDateTime;
use tokio_postgres::NoTls;

const WRITERS: usize = 8;
const DATABASE: &str = "mctl_scale";
const BOUNCER_POOL: u32 = 40;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Via {
    Direct,
    PgBouncer,
    PgBouncerPoll,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::PgBouncer => "pgbouncer",
            Via::PgBouncerPoll => "pgbouncer-poll",
        }
    }
}

/// When each writer's n-th edit committed.
type Commits = Arc<Mutex<Vec<HashMap<u64, Instant>>>>;

#[derive(Default)]
struct Errors {
    writer: AtomicUsize,
    lost: AtomicUsize,
    failed_loads: AtomicUsize,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sessions: Vec<usize> = std::env::var("MC_SCALE_SESSIONS")
        .unwrap_or_else(|_| "50,200,500".into())
        .split(',')
        .map(|n| n.trim().parse().expect("MC_SCALE_SESSIONS: numbers separated by commas"))
        .collect();
    let seconds: u64 =
        std::env::var("MC_SCALE_SECONDS").ok().map(|s| s.parse().expect("MC_SCALE_SECONDS")).unwrap_or(30);
    let vias: Vec<Via> = std::env::var("MC_SCALE_VIA")
        .unwrap_or_else(|_| "direct,pgbouncer,pgbouncer-poll".into())
        .split(',')
        .map(|v| match v.trim() {
            "direct" => Via::Direct,
            "pgbouncer" => Via::PgBouncer,
            "pgbouncer-poll" => Via::PgBouncerPoll,
            other => panic!("MC_SCALE_VIA: unknown {other:?} (direct, pgbouncer, pgbouncer-poll)"),
        })
        .collect();

    let cluster = large_cluster();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let server = cluster.pg_config();
    runtime.block_on(mission_control::db::embedded::ensure_database(&server)).expect("the cluster's own database");
    println!("machine: {} cores; {seconds} s measured per run; {WRITERS} writers", num_cores());
    for via in vias {
        for &n in &sessions {
            // A PgBouncer of its own per run, so one run's closing sessions never weigh on the next.
            let bouncer = (via != Via::Direct)
                .then(|| pgbouncer::PgBouncer::start(&server, BOUNCER_POOL).expect("PgBouncer for the scale runs"));
            let report = runtime.block_on(run(via, n, seconds, &server, bouncer.as_ref()));
            println!("{}", report);
        }
    }
}

/// The embedded cluster, with room for a thousand connections.
fn large_cluster() -> EmbeddedCluster {
    let cluster = EmbeddedCluster::new(&std::env::temp_dir().join("mctl-scale-cluster"), None);
    cluster.ensure_running().expect("start the private cluster");
    let conf = cluster.data_dir().join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    if !text.contains("max_connections = 1100") {
        std::fs::write(&conf, format!("{text}\n# The scale benchmark.\nmax_connections = 1100\n")).unwrap();
        cluster.stop().unwrap();
        cluster.ensure_running().expect("restart the private cluster with max_connections = 1100");
    }
    cluster
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// A database of its own per run: the last run's sessions, still closing,
/// never meet this one's (nor a pooler's memory of a dropped database).
async fn fresh_database(
    server: &tokio_postgres::Config,
    name: &str,
) -> (tokio_postgres::Client, tokio_postgres::Config) {
    let (admin, connection) = server.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let mut config = server.clone();
    config.dbname(name);
    (admin, config)
}

async fn server_connections(admin: &tokio_postgres::Client, database: &str) -> i64 {
    admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", &[&database])
        .await
        .map(|row| row.get(0))
        .unwrap_or(-1)
}

async fn run(
    via: Via,
    n: usize,
    seconds: u64,
    server: &tokio_postgres::Config,
    bouncer: Option<&pgbouncer::PgBouncer>,
) -> String {
    let database = format!("{DATABASE}_{}_{n}", via.name().replace('-', "_"));
    let (admin, direct) = fresh_database(server, &database).await;
    let setup =
        Store::connect(direct.clone(), StoreOptions { max_connections: 2, ..Default::default() }).await.unwrap();
    setup.migrate().await.unwrap();
    let now = OffsetDateTime::now_utc();
    let project = match mission_control::seed::seed_demo(&setup, &Actor::new("seed", Source::Cli), now).await.unwrap() {
        mission_control::seed::DemoOutcome::Created(p) | mission_control::seed::DemoOutcome::AlreadyThere(p) => p,
    };
    drop(setup);
    let (queries, pool_size, session) = match via {
        Via::Direct => (direct.clone(), 1, Session::Same),
        Via::PgBouncer => (
            bouncer.unwrap().config(&database),
            8,
            Session::Url(Box::new(direct.clone()), mission_control::db::tls::Connector::default()),
        ),
        Via::PgBouncerPoll => (bouncer.unwrap().config(&database), 8, Session::None),
    };
    let options = |max_connections| StoreOptions {
        max_connections,
        session: session.clone(),
        application_name: "mctl-scale".into(),
        ..StoreOptions::default()
    };

    // The writers' tasks: the first eight cards of the board.
    let writer_store = match Store::connect(queries.clone(), options(WRITERS)).await {
        Ok(store) => store,
        Err(e) => return format!("{:<15} N={n:<4} the writers could not connect: {e}", via.name()),
    };
    let board = match writer_store.load_board(project.id, 50).await {
        Ok(board) => board,
        Err(e) => return format!("{:<15} N={n:<4} the writers could not read the board: {e}", via.name()),
    };
    let watched: Vec<String> = board.iter().flat_map(|l| l.cards.iter().map(|c| c.key.clone())).take(WRITERS).collect();
    assert_eq!(watched.len(), WRITERS, "the demo board has eight cards");

    let errors = Arc::new(Errors::default());
    let commits: Commits = Arc::new(Mutex::new(vec![HashMap::new(); WRITERS]));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let live = Arc::new(AtomicUsize::new(0));
    let refreshes = Arc::new(AtomicU64::new(0));

    // Consoles, opened a few at a time as a rotation logging in would.
    let mut consoles = Vec::new();
    let opening = Instant::now();
    for i in 0..n {
        let store = match Store::connect(queries.clone(), options(pool_size)).await {
            Ok(store) => store,
            Err(e) => {
                errors.failed_loads.fetch_add(1, Ordering::Relaxed);
                eprintln!("console {i}: {e}");
                continue;
            }
        };
        consoles.push(tokio::spawn(console(
            store,
            project.clone(),
            watched.clone(),
            commits.clone(),
            latencies.clone(),
            measuring.clone(),
            errors.clone(),
            live.clone(),
            refreshes.clone(),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while live.load(Ordering::Relaxed) < consoles.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened_in = opening.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_connections = server_connections(&admin, &database).await;

    // Writers, each about once a second, from the same instant.
    measuring.store(true, Ordering::Relaxed);
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut writers = Vec::new();
    for (w, key) in watched.iter().enumerate() {
        let (store, key, commits, errors) = (writer_store.clone(), key.clone(), commits.clone(), errors.clone());
        writers.push(tokio::spawn(async move {
            let actor = Actor::new(format!("writer{w}"), Source::Cli);
            let mut edit = 0u64;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1000))).await;
            while Instant::now() < stop {
                edit += 1;
                let change = TaskEdit { title: Some(format!("scale w{w} #{edit}")), ..TaskEdit::default() };
                match store.edit_task(&actor, &key, change, None).await {
                    Ok(_) => {
                        commits.lock().unwrap().get_mut(w).unwrap().insert(edit, Instant::now());
                    }
                    Err(e) => {
                        errors.writer.fetch_add(1, Ordering::Relaxed);
                        eprintln!("writer {w}: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(750 + fastrand::u64(0..500))).await;
            }
            edit
        }));
    }
    let mut most = idle_connections;
    while Instant::now() < stop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        most = most.max(server_connections(&admin, &database).await);
    }
    let mut edits = 0;
    for writer in writers {
        edits += writer.await.unwrap();
    }
    // The last edits' time to arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    measuring.store(false, Ordering::Relaxed);
    for console in &consoles {
        console.abort();
    }
    drop(writer_store);

    let mut samples = std::mem::take(&mut *latencies.lock().unwrap());
    samples.sort();
    let expected = edits as usize * consoles.len();
    let (p50, p99, max) = if samples.is_empty() {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        (ms(support::percentile(&samples, 0.5)), ms(support::percentile(&samples, 0.99)), ms(*samples.last().unwrap()))
    };
    format!(
        "{:<15} N={n:<4} connections: {most} most, {idle_connections} idle (consoles open in {:.1} s) · \
         change → console p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms over {} of {expected} (edit, console) pairs \
         ({edits} edits, {} refreshes) · errors: writers {}, lost {}, failed loads {}",
        via.name(),
        opened_in.as_secs_f64(),
        samples.len(),
        refreshes.load(Ordering::Relaxed),
        errors.writer.load(Ordering::Relaxed),
        errors.lost.load(Ordering::Relaxed),
        errors.failed_loads.load(Ordering::Relaxed),
    )
}

/// One headless console: the app, its listener and its clock, as
/// `console::run` wires them, without a terminal. Records, for every edit it
/// comes to show (or a later one of the same task, which includes it), the
/// time since the edit committed.
#[allow(clippy::too_many_arguments)]
async fn console(
    store: Store,
    project: Project,
    watched: Vec<String>,
    commits: Commits,
    latencies: Arc<Mutex<Vec<Duration>>>,
    measuring: Arc<std::sync::atomic::AtomicBool>,
    errors: Arc<Errors>,
    live: Arc<AtomicUsize>,
    refreshes: Arc<AtomicU64>,
) {
    let mut app =
        App::new(store.clone(), project, "scale", &ConsoleOptions::defaults(false), OffsetDateTime::now_utc());
    app.state.width = 120;
    app.state.height = 40;
    let tx = app.sender();
    let _listener = mission_control::console::live::spawn(store, tx.clone());
    let _clock = tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            if tx.send(Action::Tick(OffsetDateTime::now_utc())).is_err() {
                return;
            }
        }
    });
    app.start();
    let mut counted_live = false;
    let mut seen = vec![0u64; watched.len()];
    while let Some(action) = app.next_action().await {
        let mut batch = vec![action];
        while let Some(more) = app.try_next_action() {
            batch.push(more);
        }
        for action in batch {
            match &action {
                Action::Db(DbEvent::Lost(_)) => {
                    errors.lost.fetch_add(1, Ordering::Relaxed);
                }
                Action::Loaded { result: Err(_), .. } => {
                    errors.failed_loads.fetch_add(1, Ordering::Relaxed);
                }
                Action::RefreshDue => {
                    refreshes.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
            app.dispatch(action);
        }
        if !counted_live && app.state.conn.live && app.state.board.loaded {
            counted_live = true;
            live.fetch_add(1, Ordering::Relaxed);
        }
        if !measuring.load(Ordering::Relaxed) {
            continue;
        }
        let now = Instant::now();
        for (w, key) in watched.iter().enumerate() {
            let Some(card) = app.state.board.columns.iter().flat_map(|c| c.cards.iter()).find(|c| &c.key == key) else {
                continue;
            };
            let Some(edit) = card.title.strip_prefix(&format!("scale w{w} #")).and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if edit > seen[w] {
                let committed = commits.lock().unwrap();
                let mut found = latencies.lock().unwrap();
                for shown in seen[w] + 1..=edit {
                    // Not yet recorded: the writer has not heard its commit back yet.
                    let at = committed[w].get(&shown).copied().unwrap_or(now);
                    found.push(now.saturating_duration_since(at));
                }
                seen[w] = edit;
            }
        }
    }
}
