//! Schema migrations: applied once, idempotent, and a newer schema refused.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::{Cli, TestDb};
use mission_control::store::StoreError;
use mission_control::store::migrate::latest_known_version;

#[tokio::test]
async fn migrating_again_is_a_no_op() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let known = latest_known_version();
    assert!(known >= 1);
    assert_eq!(store.schema_version().await.unwrap(), known);
    let report = store.migrate().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert_eq!(report.current, known);
    let cli = Cli::new(&db);
    let out = cli.run(&["--json", "migrate"]).ok().json();
    assert_eq!(out["schema_version"], known);
}

#[tokio::test]
async fn a_fresh_database_is_migrated_on_first_use() {
    let db = TestDb::new().await;
    let client = db.client().await;
    // Start from an empty database rather than the migrated template.
    client.batch_execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;").await.unwrap();
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "MC", "--name", "Fresh"]).ok();
    let version: i64 =
        client.query_one("SELECT max(version)::bigint FROM mctl_schema_history", &[]).await.unwrap().get(0);
    assert_eq!(version, latest_known_version());
}

#[tokio::test]
async fn a_newer_schema_is_refused_untouched() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO mctl_schema_history (version, name, applied_on, checksum)
             VALUES (9999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
        )
        .await
        .unwrap();
    let store = db.store().await;
    match store.migrate().await.unwrap_err() {
        StoreError::SchemaTooNew { found, known } => assert_eq!((found, known), (9999, latest_known_version())),
        other => panic!("expected SchemaTooNew, got {other}"),
    }
    let cli = Cli::new(&db);
    let run = cli.run(&["project", "list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("schema is at version 9999") && run.stderr.contains("upgrade mctl"), "{}", run.stderr);
    let read_only = cli.run(&["--readonly", "project", "list"]);
    assert_eq!(read_only.code, 1, "read-only sessions refuse it too");
}

#[tokio::test]
async fn read_only_sessions_refuse_writes() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "MC", "--name", "Mission"]).ok();
    let before = db.count("audit_entry").await;
    let run = cli.run(&["--readonly", "task", "create", "--title", "nope"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("read-only"), "{}", run.stderr);
    cli.run(&["--readonly", "task", "list"]).ok();
    assert_eq!(db.count("task").await, 0);
    assert_eq!(db.count("audit_entry").await, before);
}
