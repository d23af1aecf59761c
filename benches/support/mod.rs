//! Shared set-up for the benchmarks: a fresh database on the benchmark server
//! holding a 100,000-task project.
//!
//! The server is `MC_BENCH_DATABASE_URL` (a maintenance database on a server
//! where the user may create databases), else 127.0.0.1:5432 as `postgres`.
#![allow(dead_code)]

use std::str::FromStr;
use std::time::Duration;

use mission_control::domain::Source;
use mission_control::store::{Actor, Store, StoreOptions};
use tokio_postgres::NoTls;

pub const TASKS: i64 = 100_000;

pub fn server() -> tokio_postgres::Config {
    let url = std::env::var("MC_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".to_string());
    tokio_postgres::Config::from_str(&url).expect("MC_BENCH_DATABASE_URL is not a valid connection string")
}

/// Creates (or re-creates) database `name` and migrates it.
pub async fn empty_database(name: &str) -> Store {
    let admin = server();
    let (client, connection) = admin.connect(NoTls).await.expect("connect to the benchmark server");
    tokio::spawn(connection);
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let mut config = admin.clone();
    config.dbname(name);
    let store = Store::connect(config, StoreOptions { max_connections: 16, ..Default::default() }).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Creates (or re-creates) database `name`, migrates it and loads a project
/// `BENCH` with [`TASKS`] tasks. Returns the store and the project id.
pub async fn project_with_tasks(name: &str) -> (Store, i64) {
    let store = empty_database(name).await;
    let actor = Actor::new("bench", Source::Cli);
    mission_control::seed::load_tasks(&store, &actor, "BENCH", TASKS, 7).await.unwrap();
    // Give the planner real statistics, as autovacuum would on a live system.
    store.client().await.unwrap().batch_execute("VACUUM ANALYZE").await.unwrap();
    let project = store.project_by_key("BENCH").await.unwrap();
    (store, project.id)
}

/// The `p` quantile (0..=1) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// The middle of a few runs' figures.
pub fn median<T: Copy + PartialOrd>(mut runs: Vec<T>) -> T {
    runs.sort_by(|a, b| a.partial_cmp(b).expect("comparable figures"));
    runs[runs.len() / 2]
}

/// Milliseconds with `decimals` places, as the figures are quoted.
pub fn ms(d: Duration, decimals: usize) -> String {
    format!("{:.*} ms", decimals, d.as_secs_f64() * 1000.0)
}
