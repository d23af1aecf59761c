//! Test harness: every test gets its own fresh database, cloned from a
//! migrated template, on a real PostgreSQL.
//!
//! The server is `MC_TEST_DATABASE_URL` when set (a maintenance database such
//! as `postgres` on a server where the user may create databases), else the
//! local server on 127.0.0.1:5432 as `postgres`, else a private cluster that
//! the harness starts with mctl's own embedded-cluster code.
#![allow(dead_code)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

pub mod console;
pub mod forge;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod hooks;
pub mod mcp;
pub mod pgbouncer;
pub mod plane;
pub mod repo;
pub mod repo_suite;
pub mod snapshots;
pub mod sync;

use mission_control::domain::Source;
use mission_control::store::{Actor, Store, StoreOptions};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

static SERVER: OnceCell<tokio_postgres::Config> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh database, dropped when the value goes out of scope.
pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
    admin: tokio_postgres::Config,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = SERVER.get_or_init(find_server).await.clone();
        let template = ensure_template(&admin).await;
        let name =
            format!("mctl_t_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), fastrand::u32(..));
        let (client, connection) = admin.connect(NoTls).await.expect("connect to the test server");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .await
            .expect("create the test database");
        let mut config = admin.clone();
        config.dbname(&name);
        TestDb { name, config, admin }
    }

    pub async fn store(&self) -> Store {
        Store::connect(self.config.clone(), StoreOptions { max_connections: 24, ..StoreOptions::default() })
            .await
            .expect("open the store")
    }

    /// A raw connection, for checks the repository does not offer.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = self.config.connect(NoTls).await.expect("connect to the test database");
        tokio::spawn(connection);
        client
    }

    /// The connection string in key=value form, for the CLI.
    pub fn url(&self) -> String {
        let host = match &self.config.get_hosts()[0] {
            Host::Tcp(host) => host.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        format!("host={host} port={port} user={user} dbname={}", self.name)
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.client().await.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                if let Ok((client, connection)) = admin.connect(NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// The payloads of the change notifications (`mc_change`) sent from now on,
/// while the returned listener is kept.
pub async fn change_payloads(store: &Store) -> mission_control::store::listen::Listener {
    store.listen("mc_change").await.unwrap()
}

pub fn actor(name: &str) -> Actor {
    Actor::new(name, Source::Cli)
}

async fn find_server() -> tokio_postgres::Config {
    if let Ok(url) = std::env::var("MC_TEST_DATABASE_URL") {
        return tokio_postgres::Config::from_str(&url).expect("MC_TEST_DATABASE_URL is not a valid connection string");
    }
    let mut local = tokio_postgres::Config::new();
    local
        .host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(std::time::Duration::from_secs(2));
    if local.connect(NoTls).await.is_ok() {
        return local;
    }
    // No server to use: start a private one with mctl's embedded-cluster code.
    let uid = unsafe { libc::geteuid() };
    let dir = PathBuf::from(format!("/tmp/mctl-test-cluster-{uid}"));
    let cluster = mission_control::db::EmbeddedCluster::new(&dir, None);
    let config = cluster.pg_config();
    tokio::task::spawn_blocking(move || cluster.ensure_running())
        .await
        .unwrap()
        .expect("start a private PostgreSQL for the tests (install PostgreSQL 14+ server binaries)");
    let mut admin = config;
    admin.dbname("postgres");
    admin
}

/// A migrated template database named after the migrations' content, made
/// once per schema and shared by every test process.
async fn ensure_template(admin: &tokio_postgres::Config) -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let mut hasher = DefaultHasher::new();
            let sql_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sql");
            let mut files: Vec<_> = std::fs::read_dir(&sql_dir).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            for file in files {
                file.file_name().hash(&mut hasher);
                std::fs::read(&file).unwrap().hash(&mut hasher);
            }
            let name = format!("mctl_tpl_{:016x}", hasher.finish());
            let (client, connection) = admin.connect(NoTls).await.expect("connect to the test server");
            tokio::spawn(connection);
            client.execute("SELECT pg_advisory_lock(7431001)", &[]).await.unwrap();
            let exists =
                client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().is_some();
            if !exists {
                let building = format!("{name}_build");
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await.unwrap();
                client.batch_execute(&format!("CREATE DATABASE {building}")).await.unwrap();
                let mut config = admin.clone();
                config.dbname(&building);
                {
                    let store = Store::connect(config, StoreOptions { max_connections: 1, ..Default::default() })
                        .await
                        .expect("connect to the template");
                    store.migrate().await.expect("migrate the template");
                }
                client
                    .batch_execute(&format!(
                        "ALTER DATABASE {building} WITH ALLOW_CONNECTIONS false;
                         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}';"
                    ))
                    .await
                    .unwrap();
                client.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}")).await.unwrap();
                client.batch_execute(&format!("ALTER DATABASE {name} WITH IS_TEMPLATE true")).await.unwrap();
            }
            client.execute("SELECT pg_advisory_unlock(7431001)", &[]).await.unwrap();
            name
        })
        .await
        .clone()
}

/// Runs the real `mctl` binary against a test database, isolated from the
/// user's config, data and log directories.
pub struct Cli {
    pub url: String,
    pub home: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "mctl failed: {}{}", self.stderr, self.stdout);
        self
    }
}

impl Cli {
    pub fn new(db: &TestDb) -> Cli {
        Cli { url: db.url(), home: tempfile::tempdir().unwrap() }
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mctl"));
        command
            .env("MC_DATABASE_URL", &self.url)
            .env("MC_CONFIG_DIR", self.home.path().join("config"))
            .env("MC_DATA_DIR", self.home.path().join("data"))
            .env("MC_STATE_DIR", self.home.path().join("state"))
            .env("MC_OPERATOR", "tester")
            .env_remove("DATABASE_URL")
            .env_remove("MC_PROJECT")
            .env_remove("MC_CONFIG");
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command().args(args).output().expect("run mctl");
        run_from(output)
    }
}

pub fn run_from(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
