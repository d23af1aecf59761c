//! Which PostgreSQL to use, and getting a migrated [`Store`] on it.
//!
//! Resolution order: `--database-url`, `MC_DATABASE_URL`, `DATABASE_URL`,
//! `database_url` in the config file, and finally the embedded local cluster,
//! so a first run needs no set-up at all.

pub mod embedded;

use std::str::FromStr;

use serde::Serialize;

use crate::config::{Config, Paths};
use crate::error::{Error, Result};
use crate::store::{Store, StoreOptions};
pub use embedded::EmbeddedCluster;

/// Where the connection settings came from (printed by `mctl db status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetSource {
    Flag,
    McDatabaseUrl,
    DatabaseUrl,
    ConfigFile,
    Embedded,
}

impl TargetSource {
    pub fn describe(self) -> &'static str {
        match self {
            TargetSource::Flag => "--database-url",
            TargetSource::McDatabaseUrl => "MC_DATABASE_URL",
            TargetSource::DatabaseUrl => "DATABASE_URL",
            TargetSource::ConfigFile => "database_url in the config file",
            TargetSource::Embedded => "the embedded cluster",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub source: TargetSource,
    pub pg: tokio_postgres::Config,
    /// Set when the target is the embedded cluster, which may need starting.
    pub embedded: Option<EmbeddedCluster>,
}

impl Target {
    /// Host, port and database, without user or password: safe to print.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        format!("{}:{}/{}", hosts.join(","), port, self.pg.get_dbname().unwrap_or("(default)"))
    }
}

/// Picks the database to talk to. Does not connect.
pub fn resolve(flag: Option<&str>, config: &Config, paths: &Paths) -> Result<Target> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let candidates = [
        (TargetSource::Flag, flag.map(str::to_string)),
        (TargetSource::McDatabaseUrl, env("MC_DATABASE_URL")),
        (TargetSource::DatabaseUrl, env("DATABASE_URL")),
        (TargetSource::ConfigFile, config.database_url.clone()),
    ];
    for (source, value) in candidates {
        if let Some(url) = value {
            let pg = tokio_postgres::Config::from_str(url.trim()).map_err(|e| {
                // The URL itself may hold a password: never echo it.
                Error::Usage(format!(
                    "the database URL from {} is not valid ({e}): use postgres://user@host:port/db",
                    source.describe()
                ))
            })?;
            return Ok(Target { source, pg, embedded: None });
        }
    }
    let cluster = EmbeddedCluster::new(&paths.cluster_dir, config.pg_bin_dir.clone());
    Ok(Target { source: TargetSource::Embedded, pg: cluster.pg_config(), embedded: Some(cluster) })
}

/// Connects (starting the embedded cluster first when that is the target) and
/// brings the schema up to date.
pub async fn open(target: &Target, options: StoreOptions) -> Result<Store> {
    let store = connect(target, options).await?;
    if !store.is_read_only() {
        store.migrate().await?;
    } else {
        // A read-only session cannot migrate; it can still refuse a schema it does not know.
        let found = store.schema_version().await?;
        let known = crate::store::migrate::latest_known_version();
        if found > known {
            return Err(crate::store::StoreError::SchemaTooNew { found, known }.into());
        }
    }
    Ok(store)
}

/// Connects without touching the schema, starting the embedded cluster first
/// when that is the target.
pub async fn connect(target: &Target, options: StoreOptions) -> Result<Store> {
    if let Some(cluster) = &target.embedded {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.ensure_running())
            .await
            .map_err(|e| Error::Database(format!("starting the embedded cluster failed: {e}")))??;
        embedded::ensure_database(&target.pg).await?;
    }
    let store = Store::connect(target.pg.clone(), options).await.map_err(|e| match e {
        crate::store::StoreError::Unavailable(reason) => Error::Database(format!(
            "cannot connect to PostgreSQL at {} (from {}): {reason}; check that it is running or fix the URL",
            target.describe(),
            target.source.describe()
        )),
        other => other.into(),
    })?;
    Ok(store)
}

pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
