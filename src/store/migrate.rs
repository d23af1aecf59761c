//! Schema migrations: the numbered SQL files in `sql/`, embedded in the binary
//! and applied in order (refinery records each one with its checksum).

use super::{Store, StoreError, StoreResult};
use crate::store::sql::Sql;

refinery::embed_migrations!("sql");

/// Serialises concurrent `mctl` processes migrating the same database.
const MIGRATION_LOCK: i64 = 0x6d63_746c_0001;
const HISTORY_TABLE: &str = "mctl_schema_history";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    /// Versions applied by this run, in order.
    pub applied: Vec<i64>,
    /// The schema version the database is at now.
    pub current: i64,
}

/// The newest schema version this binary knows.
pub fn latest_known_version() -> i64 {
    migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max().unwrap_or(0)
}

impl Store {
    /// Applies every migration the database lacks. Safe to run from several
    /// processes at once, and a no-op when the schema is current. A database
    /// migrated by a newer `mctl` is refused untouched.
    pub async fn migrate(&self) -> StoreResult<MigrationReport> {
        // Current already: nothing to take a lock for, nothing an operator's
        // role (which may not create tables) would be refused.
        let found = self.schema_version().await?;
        if found == latest_known_version() {
            return Ok(MigrationReport { applied: Vec::new(), current: found });
        }
        // The advisory lock and `SET ROLE` are session state: on a session
        // connection (`listen_url` when the pool goes through a transaction
        // pooler), else on a pooled one.
        if self.can_listen() {
            let (mut pg, connection) = self.dedicated_connection().await?;
            let driver = tokio::spawn(connection);
            let result = migrate_on(&mut pg).await;
            drop(pg);
            let _ = driver.await;
            result
        } else {
            let mut client = self.client().await?;
            migrate_on(&mut client).await
        }
    }

    /// The schema version recorded in the database (0 when never migrated).
    pub async fn schema_version(&self) -> StoreResult<i64> {
        let client = self.client().await?;
        recorded_version(&client).await
    }
}

/// Takes the migration lock and applies what is missing, as the owner role
/// when the roles are set up.
async fn migrate_on(pg: &mut tokio_postgres::Client) -> StoreResult<MigrationReport> {
    // With the roles set up in this database (its history table is
    // mctl_owner's; the role itself is the cluster's), objects are made
    // by the owner role.
    let owner: bool = pg
        .fetch_one(
            "SELECT coalesce((SELECT pg_get_userbyid(relowner) = 'mctl_owner' FROM pg_class WHERE oid = to_regclass($1)), false)
                    AND pg_has_role(current_user, 'mctl_owner', 'MEMBER')",
            &[&HISTORY_TABLE],
        )
        .await?
        .get(0);
    if owner {
        pg.batch_execute("SET ROLE mctl_owner").await?;
    }
    let result = match pg.exec("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await {
        Ok(_) => {
            let result = run_migrations(pg).await;
            // Release even when the run failed; the session would release it on close anyway.
            let _ = pg.exec("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
            result
        }
        Err(e) => Err(e.into()),
    };
    if owner {
        // The connection goes back to the pool as the role it logged in as.
        pg.batch_execute("RESET ROLE").await?;
    }
    result
}

async fn recorded_version(client: &tokio_postgres::Client) -> StoreResult<i64> {
    let exists: bool = client.fetch_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let row = client.fetch_one(&format!("SELECT coalesce(max(version), 0)::bigint FROM {HISTORY_TABLE}"), &[]).await?;
    Ok(row.get(0))
}

async fn run_migrations(pg: &mut tokio_postgres::Client) -> StoreResult<MigrationReport> {
    let known = latest_known_version();
    let mut runner = migrations::runner().set_abort_divergent(true).set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    let last = recorded_version(pg).await?;
    if last > known {
        return Err(StoreError::SchemaTooNew { found: last, known });
    }
    let report = runner.run_async(pg).await.map_err(|e| StoreError::Database(format!("migrating the schema: {e}")))?;
    let applied: Vec<i64> = report.applied_migrations().iter().map(|m| i64::from(m.version())).collect();
    let current = applied.last().copied().unwrap_or(last);
    Ok(MigrationReport { applied, current })
}
