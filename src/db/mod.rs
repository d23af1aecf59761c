//! Which PostgreSQL to use, and getting a migrated [`Store`] on it.
//!
//! Resolution order: `--database-url`, `MC_DATABASE_URL`, `DATABASE_URL`,
//! `database_url` in the config file; then libpq's own conventions
//! (`PGHOST`, `PGSERVICE`, … — see [`conninfo`]); and finally the embedded
//! local cluster, so a first run needs no set-up at all. Whatever string is
//! chosen is completed the libpq way (service file, `PG*` variables,
//! `~/.pgpass`), so a password never needs to be in a URL.

pub mod conninfo;
pub mod embedded;
pub mod roles;
pub mod tls;

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
    /// `PGHOST`, `PGSERVICE` and the other libpq variables, with no URL.
    Libpq,
    Embedded,
}

impl TargetSource {
    pub fn describe(self) -> &'static str {
        match self {
            TargetSource::Flag => "--database-url",
            TargetSource::McDatabaseUrl => "MC_DATABASE_URL",
            TargetSource::DatabaseUrl => "DATABASE_URL",
            TargetSource::ConfigFile => "database_url in the config file",
            TargetSource::Libpq => "the PG* environment variables",
            TargetSource::Embedded => "the embedded cluster",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Target {
    pub source: TargetSource,
    pub pg: tokio_postgres::Config,
    pub tls: tls::TlsSettings,
    /// `tls` built: certificates read once, for every connection of the session.
    pub connector: tls::Connector,
    /// Where each connection parameter came from (names only, no values).
    pub origins: Vec<(String, String)>,
    /// Set when the target is the embedded cluster, which may need starting.
    pub embedded: Option<EmbeddedCluster>,
    /// Where LISTEN goes (`listen_url`).
    pub listen: Listen,
}

/// `listen_url = "poll"`: no LISTEN connection at all.
const POLL: &str = "poll";

/// Where change notifications are listened for. A transaction pooler
/// (PgBouncer's `pool_mode = transaction`) cannot carry LISTEN, a session
/// setting, or an advisory lock from one statement to the next.
#[derive(Debug, Clone)]
pub enum Listen {
    /// On the database URL itself (direct, or a session pooler).
    Same,
    /// On a second URL that reaches the server directly or through a session
    /// pooler; migrations run there too.
    Session(Box<SessionTarget>),
    /// Nowhere: consoles ask for the latest change twice a second through
    /// the pool, so a large rotation costs the server no connection each.
    Poll,
}

#[derive(Debug, Clone)]
pub struct SessionTarget {
    /// Where the URL came from (`MC_LISTEN_URL`, the config file).
    pub from: &'static str,
    pub pg: tokio_postgres::Config,
    pub tls: tls::TlsSettings,
    pub connector: tls::Connector,
}

impl Listen {
    /// For `db status` and `config path`: how change notifications arrive.
    pub fn describe(&self) -> String {
        match self {
            Listen::Same => "LISTEN on the database connection".into(),
            Listen::Session(session) => format!(
                "LISTEN on {} (from {}, sslmode={})",
                describe_pg(&session.pg),
                session.from,
                session.tls.mode.as_str()
            ),
            Listen::Poll => "polled through the pool twice a second (listen_url = poll)".into(),
        }
    }
}

impl Target {
    /// Host, port and database, without user or password: safe to print.
    pub fn describe(&self) -> String {
        describe_pg(&self.pg)
    }
}

/// Host, port and database of a connection, without user or password.
fn describe_pg(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{}:{}/{}", hosts.join(","), port, pg.get_dbname().unwrap_or("(default)"))
}

/// Picks the database to talk to. Does not connect.
pub fn resolve(flag: Option<&str>, config: &Config, paths: &Paths) -> Result<Target> {
    resolve_in(flag, config, paths, &conninfo::ProcessEnv)
}

/// [`resolve`] with the environment given (tests).
pub fn resolve_in(
    flag: Option<&str>,
    config: &Config,
    paths: &Paths,
    env: &dyn conninfo::Environment,
) -> Result<Target> {
    let var = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
    let candidates = [
        (TargetSource::Flag, flag.map(str::to_string)),
        (TargetSource::McDatabaseUrl, var("MC_DATABASE_URL")),
        (TargetSource::DatabaseUrl, var("DATABASE_URL")),
        (TargetSource::ConfigFile, config.database_url.clone()),
    ];
    let chosen = candidates.into_iter().find_map(|(source, value)| Some((source, value?)));
    let (source, text) = match chosen {
        Some(found) => found,
        None if conninfo::environment_names_a_server(env) => (TargetSource::Libpq, String::new()),
        None => {
            let cluster = EmbeddedCluster::new(&paths.cluster_dir, config.pg_bin_dir.clone());
            let tls = tls::TlsSettings { mode: tls::SslMode::Disable, ..Default::default() };
            return Ok(Target {
                source: TargetSource::Embedded,
                pg: cluster.pg_config(),
                connector: tls.connector().map_err(Error::Usage)?,
                tls,
                origins: Vec::new(),
                embedded: Some(cluster),
                listen: Listen::Same,
            });
        }
    };
    let Settled { pg, tls, connector, origins } = settle(&text, source.describe(), env)?;
    let listen = resolve_listen(config, env)?;
    Ok(Target { source, pg, tls, connector, origins, embedded: None, listen })
}

/// `MC_LISTEN_URL`, then `listen_url` in the config file: where LISTEN and
/// migrations go when the database URL is a transaction pooler.
fn resolve_listen(config: &Config, env: &dyn conninfo::Environment) -> Result<Listen> {
    let from_env = env.var("MC_LISTEN_URL").filter(|v| !v.trim().is_empty()).map(|v| (v, "MC_LISTEN_URL"));
    let from_config = config.listen_url.clone().map(|v| (v, "listen_url in the config file"));
    let Some((text, from)) = from_env.or(from_config) else { return Ok(Listen::Same) };
    if text.trim() == POLL {
        return Ok(Listen::Poll);
    }
    let Settled { pg, tls, connector, .. } = settle(&text, from, env)?;
    Ok(Listen::Session(Box::new(SessionTarget { from, pg, tls, connector })))
}

/// A connection string completed the libpq way, with its TLS connector built.
struct Settled {
    pg: tokio_postgres::Config,
    tls: tls::TlsSettings,
    connector: tls::Connector,
    origins: Vec<(String, String)>,
}

fn settle(text: &str, from: &str, env: &dyn conninfo::Environment) -> Result<Settled> {
    // The string itself may hold a password: never echo it.
    let invalid = |e: String| {
        Error::Usage(format!(
            "the database connection from {from} is not valid: {e}; use postgres://user@host:port/db or host=… dbname=…"
        ))
    };
    let mut info = conninfo::ConnInfo::parse(text).map_err(invalid)?;
    info.complete(env).map_err(Error::Usage)?;
    let tls = tls::TlsSettings::from_conninfo(&info, env.home().as_deref()).map_err(Error::Usage)?;
    // Certificates that cannot be read, or a verifying mode without a CA: said now, not as a failed connection.
    let connector = tls.connector().map_err(Error::Usage)?;
    let mut pg = tokio_postgres::Config::from_str(&info.for_tokio_postgres()).map_err(|e| invalid(e.to_string()))?;
    pg.ssl_mode(tls.mode.negotiation());
    if pg.get_hosts().is_empty() && pg.get_hostaddrs().is_empty() {
        // libpq's default: the local socket directory.
        let socket =
            ["/var/run/postgresql", "/tmp"].into_iter().find(|d| std::path::Path::new(d).is_dir()).unwrap_or("/tmp");
        pg.host_path(socket);
    }
    if pg.get_user().is_none() {
        pg.user(conninfo::os_user(env));
    }
    Ok(Settled { pg, tls, connector, origins: info.origins() })
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
    let session = match &target.listen {
        Listen::Same => crate::store::Session::Same,
        Listen::Session(session) => crate::store::Session::Url(Box::new(session.pg.clone()), session.connector.clone()),
        Listen::Poll => crate::store::Session::None,
    };
    let options = StoreOptions { tls: target.connector.clone(), session, ..options };
    let store = Store::connect(target.pg.clone(), options).await.map_err(|e| {
        let at = format!("cannot connect to PostgreSQL at {} (from {})", target.describe(), target.source.describe());
        match (tls::describe_failure(&e.to_string()), e) {
            (Some(tls), _) => Error::Database(format!("{at}: {tls}")),
            (None, crate::store::StoreError::Unavailable(reason)) => {
                Error::Database(format!("{at}: {reason}; check that it is running or fix the URL"))
            }
            (None, other) => other.into(),
        }
    })?;
    Ok(store)
}

pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
