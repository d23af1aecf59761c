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
pub mod listen;
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
    /// Where connections that need a session of their own (LISTEN,
    /// migrations) go.
    pub session: Session,
}

/// Where a connection that keeps session state goes.
#[derive(Debug, Clone, Default)]
pub enum Session {
    /// The pool's own settings: the server directly, or a session pooler.
    #[default]
    Same,
    /// Other settings, because the pool goes through a transaction pooler.
    Url(Box<tokio_postgres::Config>, crate::db::tls::Connector),
    /// None: notifications are polled (`listen_url = poll`).
    None,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            read_only: false,
            application_name: "mctl".into(),
            tls: crate::db::tls::Connector::default(),
            idle_timeout: Some(IDLE_TIMEOUT),
            session: Session::Same,
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
    read_only: bool,
    /// PostgreSQL itself refuses writes (`default_transaction_read_only`);
    /// false behind a pooler that refuses that startup setting, where the
    /// client's refusal and the role's grants remain.
    server_read_only: bool,
    /// Where LISTEN and migrations connect (`None`: nowhere, poll).
    session: Option<(tokio_postgres::Config, tokio_postgres_rustls::MakeRustlsConnect)>,
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
        let session = match options.session {
            Session::Same => Some((pg_config.clone(), options.tls.0.clone())),
            Session::Url(config, tls) => {
                let mut config = *config;
                config.application_name(&options.application_name);
                if config.get_connect_timeout().is_none() {
                    config.connect_timeout(Duration::from_secs(5));
                }
                Some((config, tls.0))
            }
            Session::None => None,
        };
        let tls = options.tls.0;
        let pool_for = |pg_config: &tokio_postgres::Config| {
            let manager = Manager::from_config(
                pg_config.clone(),
                tls.clone(),
                ManagerConfig { recycling_method: RecyclingMethod::Verified },
            );
            Pool::builder(manager)
                .max_size(options.max_connections.max(1))
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))
        };
        let mut server_read_only = false;
        let mut pool = None;
        if options.read_only {
            let mut read_only_config = pg_config.clone();
            read_only_config.options("-c default_transaction_read_only=on");
            let read_only_pool = pool_for(&read_only_config)?;
            match read_only_pool.get().await.map_err(StoreError::from) {
                Ok(_) => (pool, pg_config, server_read_only) = (Some(read_only_pool), read_only_config, true),
                // PgBouncer refuses startup options it does not know.
                Err(e) if e.to_string().contains("unsupported startup parameter") => {
                    tracing::info!(
                        "the server refused default_transaction_read_only at start-up; read-only is enforced by mctl and the role's grants"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let pool = match pool {
            Some(pool) => pool,
            None => pool_for(&pg_config)?,
        };
        if let Some(idle) = options.idle_timeout {
            close_idle_connections(&pool, idle);
        }
        let store = Store { pool, pg_config, read_only: options.read_only, server_read_only, session };
        store.client().await?.simple_query("SELECT 1").await?;
        Ok(store)
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Whether PostgreSQL itself refuses this session's writes (see [`Store::is_read_only`]).
    pub fn server_enforces_read_only(&self) -> bool {
        self.server_read_only
    }

    /// Whether change notifications can be listened for (else they are polled).
    pub fn can_listen(&self) -> bool {
        self.session.is_some()
    }

    /// The connection settings, for callers that need a dedicated connection
    /// (LISTEN for change notifications, COPY).
    pub fn pg_config(&self) -> &tokio_postgres::Config {
        &self.pg_config
    }

    pub async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        Ok(self.pool.get().await?)
    }

    /// A connection outside the pool that keeps its session: for LISTEN, and
    /// for migrations (advisory lock, `SET ROLE`). It goes to `listen_url`
    /// when one is set.
    pub async fn dedicated_connection(&self) -> StoreResult<(tokio_postgres::Client, DedicatedConnection)> {
        let Some((config, tls)) = &self.session else {
            return Err(StoreError::Unavailable(
                "no session connection is configured (listen_url = poll): set listen_url to a direct URL".into(),
            ));
        };
        Ok(config.connect(tls.clone()).await?)
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
