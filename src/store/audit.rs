//! The audit log: written in the same transaction as every change, read by
//! `mctl audit`, the console's audit drawer and a task's history.

use crate::store::sql::Sql;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Actor, Store, StoreResult};
use crate::domain::{AuditEntry, Source};

/// The channel every change is announced on. Payloads carry ids only, never
/// content: listeners read what they need through the repository.
pub const CHANGE_CHANNEL: &str = "mc_change";

/// One change, as the audit log records it.
#[derive(Debug, Clone)]
pub struct Change {
    pub project_id: Option<i64>,
    /// `kind.verb`, e.g. `task.move`.
    pub action: String,
    pub entity_kind: &'static str,
    pub entity_id: Option<i64>,
    /// The human key operators search by (task key, slug, handle...).
    pub entity_key: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl Change {
    pub fn new(entity_kind: &'static str, verb: &str, project_id: Option<i64>) -> Self {
        Change {
            project_id,
            action: format!("{entity_kind}.{verb}"),
            entity_kind,
            entity_id: None,
            entity_key: None,
            before: None,
            after: None,
        }
    }

    pub fn entity(mut self, id: i64, key: impl Into<String>) -> Self {
        self.entity_id = Some(id);
        self.entity_key = Some(key.into());
        self
    }

    pub fn before<T: Serialize>(mut self, value: &T) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    pub fn after<T: Serialize>(mut self, value: &T) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }
}

/// Appends the audit entry and queues the change notification (delivered when
/// the surrounding transaction commits). Returns the audit entry id.
pub async fn record(client: &impl Sql, actor: &Actor, change: Change) -> StoreResult<i64> {
    let statement = "WITH entry AS (
                 INSERT INTO audit_entry (project_id, actor, source, action, entity_kind, entity_id,
                                          entity_key, before, after, correlation_id, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $12)
                 RETURNING id, project_id, entity_kind, entity_id, action)
             SELECT id, pg_notify($11, change_payload(project_id, entity_kind, entity_id, action, id))::text
             FROM entry";
    let row = client
        .fetch_one(
            statement,
            &[
                &change.project_id,
                &actor.name,
                &actor.source.as_str(),
                &change.action,
                &change.entity_kind,
                &change.entity_id,
                &change.entity_key,
                &change.before,
                &change.after,
                &actor.correlation_id,
                &CHANGE_CHANNEL,
                &actor.reason,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Sends the change notification of an audit entry whose transaction has
/// already committed (`announce_committed_change` in `sql/`): for writes that
/// must not hold the server's notification lock through their own commit.
pub async fn announce_committed(client: &impl Sql, audit_id: i64) -> StoreResult<()> {
    let statement = "SELECT announce_committed_change($1, $2)";
    client.exec(statement, &[&CHANGE_CHANNEL, &audit_id]).await?;
    Ok(())
}

/// What `mctl audit list` and the audit drawer ask for. Results are newest
/// first, except with `after_id` (following a tail), which returns the entries
/// after the cursor oldest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub project_id: Option<i64>,
    pub since: Option<OffsetDateTime>,
    pub entity_key: Option<String>,
    pub source: Option<Source>,
    pub correlation_id: Option<Uuid>,
    /// Keyset paging: only entries older than this id.
    pub before_id: Option<i64>,
    /// Only entries newer than this id (for following a tail).
    pub after_id: Option<i64>,
    pub limit: i64,
}

const AUDIT_COLUMNS: &str = "id, project_id, at, actor, source, action, entity_kind, entity_id, entity_key, before, after, correlation_id, reason, db_role";

fn audit_from_row(row: &Row) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        source: Source::from_db(row.try_get("source")?)?,
        action: row.try_get("action")?,
        entity_kind: row.try_get("entity_kind")?,
        entity_id: row.try_get("entity_id")?,
        entity_key: row.try_get("entity_key")?,
        before: row.try_get("before")?,
        after: row.try_get("after")?,
        correlation_id: row.try_get("correlation_id")?,
        reason: row.try_get("reason")?,
        db_role: row.try_get("db_role")?,
    })
}

impl Store {
    pub async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let client = self.client().await?;
        let order = if query.after_id.is_some() { "ASC" } else { "DESC" };
        let limit = query.limit;
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entry
             WHERE ($1::bigint IS NULL OR project_id = $1)
               AND ($2::timestamptz IS NULL OR at >= $2)
               AND ($3::text IS NULL OR entity_key = $3)
               AND ($4::text IS NULL OR source = $4)
               AND ($5::uuid IS NULL OR correlation_id = $5)
               AND ($6::bigint IS NULL OR id < $6)
               AND ($7::bigint IS NULL OR id > $7)
             ORDER BY id {order} LIMIT $8"
        );
        let statement = &sql;
        let rows = client
            .fetch(
                statement,
                &[
                    &query.project_id,
                    &query.since,
                    &query.entity_key,
                    &query.source.map(|s| s.as_str()),
                    &query.correlation_id,
                    &query.before_id,
                    &query.after_id,
                    &limit.clamp(1, 10_000),
                ],
            )
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Records an entry that stands on its own, with no row changed: an
    /// agent's read, a refused call.
    pub async fn record_entry(&self, actor: &Actor, change: Change) -> StoreResult<i64> {
        let client = self.client().await?;
        record(&client, actor, change).await
    }

    /// Entries of one task (and its handoffs and mappings), oldest first.
    pub async fn task_history(&self, task_key: &str, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let mut entries = self
            .list_audit(&AuditQuery { entity_key: Some(task_key.to_string()), limit, ..Default::default() })
            .await?;
        entries.reverse();
        Ok(entries)
    }
}
