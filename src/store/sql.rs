//! Statements that also work through a transaction-pooling PgBouncer.
//!
//! tokio-postgres prepares a *named* statement for every query, and deadpool
//! caches them per connection. Behind PgBouncer in transaction mode (1.18 on
//! Debian 12; before 1.21 it cannot track them) two consecutive messages may
//! reach different server connections, so a statement prepared on one is
//! missing — or clashes with another client's of the same name — on the next.
//!
//! Every query here is one unnamed Parse/Bind/Describe/Execute/Sync round trip
//! (`query_typed`), which never outlives its message. The parameter types it
//! needs are learnt once per SQL text, inside a transaction so the learning
//! statement is prepared and closed on one server connection, and kept for
//! the process. `clippy.toml` forbids the named-statement methods in `src/`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, RwLock};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, GenericClient, Row};

/// Parameter types by SQL text. Types follow from the schema, which every
/// database a process talks to shares; the bound keeps a process that builds
/// SQL dynamically (table names in restores) from growing without end.
type TypesBySql = HashMap<Box<str>, Arc<[Type]>>;
static PARAM_TYPES: LazyLock<RwLock<TypesBySql>> = LazyLock::new(Default::default);
const MAX_REMEMBERED: usize = 4096;

/// A connection or a transaction, pooled or dedicated, spoken to with
/// unnamed statements only.
pub trait Sql: Sync {
    /// The tokio-postgres handle underneath.
    #[doc(hidden)]
    type Pg: GenericClient + Sync;
    /// Whether statements run inside an open transaction (learning types
    /// then needs no transaction of its own).
    #[doc(hidden)]
    const IN_TRANSACTION: bool;
    #[doc(hidden)]
    fn pg(&self) -> &Self::Pg;

    /// Every row the statement returns.
    fn fetch(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> impl Future<Output = Result<Vec<Row>, Error>> + Send {
        async move {
            let types = param_types(self, sql, params.len()).await?;
            self.pg().query_typed(sql, &typed(params, &types)).await
        }
    }

    /// Exactly one row: none or several is an error.
    fn fetch_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> impl Future<Output = Result<Row, Error>> + Send {
        async move {
            let types = param_types(self, sql, params.len()).await?;
            self.pg().query_typed_one(sql, &typed(params, &types)).await
        }
    }

    /// At most one row: several is an error.
    fn fetch_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send {
        async move {
            let types = param_types(self, sql, params.len()).await?;
            self.pg().query_typed_opt(sql, &typed(params, &types)).await
        }
    }

    /// Runs a statement and returns how many rows it touched.
    fn exec(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> impl Future<Output = Result<u64, Error>> + Send {
        async move {
            let types = param_types(self, sql, params.len()).await?;
            self.pg().execute_typed(sql, &typed(params, &types)).await
        }
    }
}

fn typed<'a>(params: &[&'a (dyn ToSql + Sync)], types: &[Type]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().copied().zip(types.iter().cloned()).collect()
}

/// The server's idea of the statement's parameter types, learnt on first use.
// The one named statement allowed: prepared and closed inside one transaction.
#[allow(clippy::disallowed_methods)]
async fn param_types<S: Sql + ?Sized>(session: &S, sql: &str, count: usize) -> Result<Arc<[Type]>, Error> {
    if count == 0 {
        return Ok(Arc::from([]));
    }
    if let Some(types) = PARAM_TYPES.read().unwrap_or_else(|e| e.into_inner()).get(sql) {
        return Ok(types.clone());
    }
    let pg = session.pg();
    let learnt = if S::IN_TRANSACTION {
        pg.prepare(sql).await.map(|statement| statement.params().to_vec())
    } else {
        // The named statement is prepared and closed (on drop, before COMMIT)
        // inside one transaction, which a pooler keeps on one server connection.
        pg.batch_execute("BEGIN").await?;
        let learnt = pg.prepare(sql).await.map(|statement| statement.params().to_vec());
        pg.batch_execute(if learnt.is_ok() { "COMMIT" } else { "ROLLBACK" }).await?;
        learnt
    }?;
    let types: Arc<[Type]> = Arc::from(learnt);
    let mut remembered = PARAM_TYPES.write().unwrap_or_else(|e| e.into_inner());
    if remembered.len() >= MAX_REMEMBERED {
        remembered.clear();
    }
    remembered.insert(sql.into(), types.clone());
    Ok(types)
}

impl Sql for tokio_postgres::Client {
    type Pg = tokio_postgres::Client;
    const IN_TRANSACTION: bool = false;
    fn pg(&self) -> &Self::Pg {
        self
    }
}

impl<'a> Sql for tokio_postgres::Transaction<'a> {
    type Pg = tokio_postgres::Transaction<'a>;
    const IN_TRANSACTION: bool = true;
    fn pg(&self) -> &Self::Pg {
        self
    }
}

impl Sql for deadpool_postgres::Client {
    type Pg = tokio_postgres::Client;
    const IN_TRANSACTION: bool = false;
    fn pg(&self) -> &Self::Pg {
        self
    }
}

impl<'a> Sql for deadpool_postgres::Transaction<'a> {
    type Pg = tokio_postgres::Transaction<'a>;
    const IN_TRANSACTION: bool = true;
    fn pg(&self) -> &Self::Pg {
        self
    }
}
