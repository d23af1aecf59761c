//! The repository layer: typed functions over a pooled PostgreSQL connection.
//!
//! Every mutation is one transaction that makes the change, appends the audit
//! entry and sends the change notification (see [`audit`]). The CLI, the console
//! and the sync worker all go through here.

pub mod agents;
pub mod audit;
pub mod audit_chain;
pub mod board;
pub mod comments;
pub mod delivery;
pub mod dispatch;
mod error;
pub mod handoffs;
pub mod integrations;
pub mod lanes;
pub mod migrate;
pub mod planning;
pub mod projects;
mod rows;
pub mod sql;
pub mod sync;
pub mod tasks;
pub mod views;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use uuid::Uuid;

pub use error::{StoreError, StoreResult};

use crate::domain::Source;

/// Who is making a change, through what, and which operation it belongs to.
/// Every audit entry written under one `Actor` shares its correlation id.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub source: Source,
    pub correlation_id: Uuid,
    /// Why, when it is more than the action says ("undo of #812"). Recorded on
    /// every audit entry written under this actor.
    pub reason: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        Actor { name: name.into(), source, correlation_id: Uuid::new_v4(), reason: None }
    }

    /// The same person and source, starting a new operation.
    pub fn next_operation(&self) -> Self {
        Actor { correlation_id: Uuid::new_v4(), reason: None, ..self.clone() }
    }

    /// The same operation, with a reason recorded on its audit entries.
    pub fn because(&self, reason: impl Into<String>) -> Self {
        Actor { reason: Some(reason.into()), ..self.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: usize,
    /// Every transaction of the session is read-only (enforced by PostgreSQL).
    pub read_only: bool,
    pub application_name: String,
    /// TLS as `sslmode` and the certificates ask (libpq's `prefer` unless said otherwise).
    pub tls: crate::db::tls::Connector,
    /// Pooled connections unused this long are closed, so an idle console
    /// or worker gives its server connections back (`None`: kept).
    pub idle_timeout: Option<Duration>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            read_only: false,
            application_name: "mctl".into(),
            tls: crate::db::tls::Connector::default(),
            idle_timeout: Some(IDLE_TIMEOUT),
        }
    }
}

/// How long a pooled connection may sit unused before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection outside the pool, over TLS when the settings ask for it.
pub type DedicatedConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// The pooled handle every repository function hangs off.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    pg_config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    read_only: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("read_only", &self.read_only).finish_non_exhaustive()
    }
}

impl Store {
    /// Builds the pool and checks that the database answers.
    pub async fn connect(mut pg_config: tokio_postgres::Config, options: StoreOptions) -> StoreResult<Store> {
        pg_config.application_name(&options.application_name);
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(Duration::from_secs(5));
        }
        // A server that vanished without closing the connection (a network
        // partition, a lost VM) is noticed within a minute or two rather
        // than the kernel's two hours, so a waiting query fails and the
        // caller (a sync worker, the console) can wait and reconnect.
        if pg_config.get_keepalives_idle() == Duration::from_secs(2 * 3600) {
            pg_config.keepalives_idle(Duration::from_secs(30));
            pg_config.keepalives_interval(Duration::from_secs(10));
            pg_config.keepalives_retries(3);
        }
        if pg_config.get_tcp_user_timeout().is_none() {
            pg_config.tcp_user_timeout(Duration::from_secs(60));
        }
        if options.read_only {
            pg_config.options("-c default_transaction_read_only=on");
        }
        let tls = options.tls.0;
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Verified },
        );
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if let Some(idle) = options.idle_timeout {
            close_idle_connections(&pool, idle);
        }
        let store = Store { pool, pg_config, tls, read_only: options.read_only };
        store.client().await?.simple_query("SELECT 1").await?;
        Ok(store)
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The connection settings, for callers that need a dedicated connection
    /// (LISTEN for change notifications, COPY).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg_config
    }

    pub async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }

    /// A connection outside the pool. Used for LISTEN, which must stay on one session.
    pub async fn dedicated_connection(&self) -> StoreResult<(tokio_postgres::Client, DedicatedConnection)> {
        Ok(self.pg_config.connect(self.tls.clone()).await?)
    }

    pub(crate) fn refuse_if_read_only(&self) -> StoreResult<()> {
        if self.read_only { Err(StoreError::ReadOnly) } else { Ok(()) }
    }
}

/// Closes pooled connections unused for `idle`, checking twice as often,
/// until the pool is dropped: a default PostgreSQL allows 100 connections,
/// and a rotation of idle consoles must not hold them.
fn close_idle_connections(pool: &Pool, idle: Duration) {
    let weak = pool.weak();
    tokio::spawn(async move {
        let every = (idle / 2).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            let Some(pool) = weak.upgrade() else { return };
            pool.retain(|_, metrics| metrics.last_used() < idle);
        }
    });
}

/// Refuses a write made against a stale version of an optimistically locked row.
pub(crate) fn check_version(kind: &'static str, key: &str, expected: Option<i32>, actual: i32) -> StoreResult<()> {
    match expected {
        Some(expected) if expected != actual => {
            Err(StoreError::Conflict { kind, key: key.to_string(), expected, actual })
        }
        _ => Ok(()),
    }
}

/// Runs a transactional write again when PostgreSQL reports a deadlock or a
/// serialization failure; anything else is returned as is.
pub(crate) async fn with_retry<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut tries = 0;
    loop {
        match attempt().await {
            Err(e) if e.is_retryable() && tries < 4 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(5 * (1 << tries) + fastrand::u64(0..10))).await;
            }
            other => return other,
        }
    }
}
