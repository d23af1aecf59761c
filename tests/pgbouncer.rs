//! Through a real PgBouncer in transaction mode: the store, the CLI and the
//! console's live updates (LISTEN on `listen_url`, or polling), with fewer
//! server connections than clients so statements interleave between them.
//! Skipped, saying why, only where PgBouncer is not installed.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::time::Duration;

use common::console::{app, ch, press, seed_demo, wait_until};
use common::pgbouncer::PgBouncer;
use common::{Cli, TestDb};
use mission_control::console::state::ConsoleOptions;
use mission_control::db::tls::Connector;
use mission_control::store::tasks::{NewTask, Position};
use mission_control::store::{Session, Store, StoreError, StoreOptions};
use tokio_postgres::NoTls;

macro_rules! bouncer_or_skip {
    ($db:expr, $pool:expr) => {
        match PgBouncer::start(&$db.config, $pool) {
            Ok(bouncer) => bouncer,
            Err(reason) => {
                eprintln!("skipping: {reason}");
                return;
            }
        }
    };
}

/// A store whose queries go through `bouncer` and whose LISTEN goes as `session` says.
async fn pooled_store(db: &TestDb, bouncer: &PgBouncer, session: Session, read_only: bool) -> Store {
    let options = StoreOptions { max_connections: 8, read_only, session, ..StoreOptions::default() };
    Store::connect(bouncer.config(&db.name), options).await.unwrap_or_else(|e| panic!("{e}: {}", bouncer.log()))
}

fn direct(db: &TestDb) -> Session {
    Session::Url(Box::new(db.config.clone()), Connector::default())
}

/// The control: the pooler really hands one server session to several
/// clients between transactions, so one client's named statement is seen
/// by (and in the way of) another. Without this the other tests prove nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn this_pooler_shares_server_sessions_between_clients() {
    let db = TestDb::new().await;
    let bouncer = bouncer_or_skip!(&db, 1);
    let connect = || async {
        let (client, connection) = bouncer.config(&db.name).connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    };
    let (a, b) = (connect().await, connect().await);
    let _kept = a.prepare("SELECT 1 AS prepared_by_a").await.unwrap();
    let seen_by_b = b.query("SELECT statement FROM pg_prepared_statements", &[]).await.unwrap();
    let statements: Vec<String> = seen_by_b.iter().map(|row| row.get(0)).collect();
    assert!(statements.iter().any(|s| s.contains("prepared_by_a")), "B should see A's statement: {statements:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_store_reads_and_writes_through_pgbouncer() {
    let db = TestDb::new().await;
    let bouncer = bouncer_or_skip!(&db, 2);
    let store = pooled_store(&db, &bouncer, direct(&db), false).await;
    let actor = common::actor("ana");
    let project = store.create_project(&actor, "PB", "Pooled", "").await.unwrap();
    assert!(store.migrate().await.unwrap().applied.is_empty(), "current already: a no-op on the session URL");

    // Eight writers on two server connections: every statement's messages
    // must make sense on whichever connection they reach.
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (store, actor) = (store.clone(), common::actor(&format!("w{writer}")));
        writers.push(tokio::spawn(async move {
            for n in 0..10 {
                let new = NewTask { title: format!("w{writer} task {n}"), ..NewTask::default() };
                let task = store.create_task(&actor, project.id, new).await?;
                store.move_task(&actor, &task.key, Some("Ready"), Position::Top, Some(task.version)).await?;
                store.load_board(project.id, 50).await?;
            }
            Ok::<_, StoreError>(())
        }));
    }
    for writer in writers {
        writer.await.unwrap().unwrap_or_else(|e| panic!("a writer failed through PgBouncer: {e}"));
    }
    let board = store.load_board(project.id, 200).await.unwrap();
    let ready = board.iter().find(|lane| lane.lane.name == "Ready").unwrap();
    assert_eq!(ready.cards.len(), 80, "every task created and moved");
    // The audit chain, written by eight sessions through the pooler, holds.
    let verified = common::Cli::new(&db).run(&["--json", "audit", "verify"]).ok().json();
    assert_eq!(verified["intact"], true, "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_session_through_pgbouncer_still_refuses_writes() {
    let db = TestDb::new().await;
    let bouncer = bouncer_or_skip!(&db, 2);
    let writer = pooled_store(&db, &bouncer, direct(&db), false).await;
    let project = writer.create_project(&common::actor("ana"), "RO", "Read only", "").await.unwrap();
    // PgBouncer refuses the startup option that makes the server enforce it…
    let reader = pooled_store(&db, &bouncer, direct(&db), true).await;
    assert!(!reader.server_enforces_read_only());
    // …and the session still reads, and refuses to write.
    assert!(reader.load_board(project.id, 10).await.is_ok());
    let refused = reader.create_task(&common::actor("ana"), project.id, NewTask::default()).await;
    assert!(matches!(refused, Err(StoreError::ReadOnly)), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_commands_run_through_pgbouncer_with_listen_url() {
    let db = TestDb::new().await;
    let bouncer = bouncer_or_skip!(&db, 2);
    let cli = Cli { url: bouncer.url(&db.name), home: tempfile::tempdir().unwrap() };
    let run = |args: &[&str]| {
        let output = cli.command().env("MC_LISTEN_URL", db.url()).args(args).output().unwrap();
        common::run_from(output)
    };
    run(&["project", "create", "PB", "--name", "Pooled"]).ok();
    assert_eq!(run(&["task", "create", "--title", "Through the pooler"]).ok().stdout.trim(), "PB-1");
    let moved = run(&["--json", "task", "move", "PB-1", "Ready"]).ok().json();
    assert_eq!(moved["lane"], "Ready");
    let listed = run(&["--json", "task", "list"]).ok().json();
    assert_eq!(listed[0]["key"], "PB-1");
    let status = run(&["db", "status"]).ok().stdout;
    assert!(status.contains(&format!("127.0.0.1:{}/{}", bouncer.port, db.name)), "{status}");
    assert!(status.contains("live:       LISTEN on") && status.contains("from MC_LISTEN_URL"), "{status}");
    let refused = run(&["--readonly", "task", "create", "--title", "nope"]);
    assert_ne!(refused.code, 0, "a read-only write through the pooler must fail");
    assert!(refused.stderr.contains("read-only"), "{}", refused.stderr);
    assert_eq!(run(&["--json", "task", "list"]).ok().json().as_array().unwrap().len(), 1);
}

/// A console watching through the pooler sees another operator's move,
/// both when it LISTENs on `listen_url` and when it polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consoles_behind_pgbouncer_see_changes_live() {
    let db = TestDb::new().await;
    let bouncer = bouncer_or_skip!(&db, 2);
    let store_a = pooled_store(&db, &bouncer, direct(&db), false).await;
    let project = seed_demo(&store_a).await;
    let options = ConsoleOptions::defaults(false);
    let mut a = app(&store_a, project.clone(), 100, 30, &options).await;
    let mut watchers = Vec::new();
    for session in [direct(&db), Session::None] {
        let store = pooled_store(&db, &bouncer, session, false).await;
        let mut watcher = app(&store, project.clone(), 100, 30, &options).await;
        let listener = mission_control::console::live::spawn(store.clone(), watcher.sender());
        assert!(wait_until(&mut watcher, Duration::from_secs(5), |w| w.state.conn.live).await);
        watchers.push((watcher, listener, store.can_listen()));
    }
    press(&mut a, &[ch('L')]).await; // A moves the first Inbox card, DEMO-4, to Ready
    for (watcher, _listener, listens) in &mut watchers {
        let seen = wait_until(watcher, Duration::from_secs(5), |w| {
            w.state.board.columns.iter().any(|c| c.lane.name == "Ready" && c.position_of("DEMO-4").is_some())
        })
        .await;
        assert!(seen, "a console that {} never saw the move", if *listens { "listens" } else { "polls" });
    }
}
