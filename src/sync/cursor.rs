//! A connection's pull state in `sync_cursor`, and conflict recording, as
//! every provider's reconcile writes them.

use crate::store::sql::Sql;
use std::collections::HashMap;

use serde_json::Value;
use time::OffsetDateTime;

use super::merge::{self, MergePlan};
use super::providers::repo::PageMemo;
use crate::store::sync::{NewConflict, SyncMapping};
use crate::store::{Actor, Store, StoreResult};

pub async fn watermarks(store: &Store, connection_id: i64) -> StoreResult<Value> {
    let client = store.client().await?;
    let row =
        client.fetch_opt("SELECT watermarks FROM sync_cursor WHERE connection_id = $1", &[&connection_id]).await?;
    Ok(row.map(|r| r.get(0)).unwrap_or(Value::Null))
}

pub async fn save_watermarks(store: &Store, connection_id: i64, value: &Value) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .exec(
            "INSERT INTO sync_cursor (connection_id, watermarks) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO UPDATE SET watermarks = EXCLUDED.watermarks, updated_at = now()",
            &[&connection_id, value],
        )
        .await?;
    Ok(())
}

pub async fn save_pass(
    store: &Store,
    connection_id: i64,
    full: bool,
    ok: bool,
    error: Option<&str>,
) -> StoreResult<()> {
    let client = store.client().await?;
    let error = error.map(|e| crate::domain::text::clip(e, 500).into_owned());
    client
        .exec(
            "INSERT INTO sync_cursor (connection_id, last_pass_at, last_pass_ok, last_full_at, last_error)
             VALUES ($1, now(), $2, CASE WHEN $3 THEN now() END, $4)
             ON CONFLICT (connection_id) DO UPDATE
                 SET last_pass_at = now(), last_pass_ok = $2,
                     last_full_at = CASE WHEN $3 THEN now() ELSE sync_cursor.last_full_at END,
                     last_error = $4, updated_at = now()",
            &[&connection_id, &ok, &full, &error],
        )
        .await?;
    Ok(())
}

pub async fn save_capabilities(store: &Store, connection_id: i64, capabilities: &Value) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .exec(
            "INSERT INTO sync_cursor (connection_id, capabilities) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO UPDATE SET capabilities = EXCLUDED.capabilities, updated_at = now()",
            &[&connection_id, capabilities],
        )
        .await?;
    Ok(())
}

/// Pauses the connection's queue until `until` (a provider rate limit).
pub async fn pause(store: &Store, connection_id: i64, until: OffsetDateTime) -> StoreResult<()> {
    let client = store.client().await?;
    client
        .exec(
            "INSERT INTO sync_cursor (connection_id, paused_until) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO UPDATE SET paused_until = $2, updated_at = now()",
            &[&connection_id, &until],
        )
        .await?;
    Ok(())
}

/// Listing validators by URL.
pub async fn etags(store: &Store, connection_id: i64) -> StoreResult<HashMap<String, PageMemo>> {
    let client = store.client().await?;
    let row = client.fetch_opt("SELECT etags FROM sync_cursor WHERE connection_id = $1", &[&connection_id]).await?;
    Ok(row.and_then(|r| serde_json::from_value(r.get(0)).ok()).unwrap_or_default())
}

pub async fn save_etags(store: &Store, connection_id: i64, memos: &HashMap<String, PageMemo>) -> StoreResult<()> {
    let value = serde_json::to_value(memos).unwrap_or_default();
    let client = store.client().await?;
    client
        .exec(
            "INSERT INTO sync_cursor (connection_id, etags) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO UPDATE SET etags = EXCLUDED.etags, updated_at = now()",
            &[&connection_id, &value],
        )
        .await?;
    Ok(())
}

/// Records a merge plan's conflicts on a mapping; whether any is left open.
pub async fn record_conflicts(
    store: &Store,
    actor: &Actor,
    mapping: &SyncMapping,
    entity_key: &str,
    plan: &MergePlan,
) -> StoreResult<bool> {
    let had_open = mapping.sync_state == crate::domain::SyncState::Conflict;
    if plan.conflicts.is_empty() && !had_open {
        return Ok(false);
    }
    let conflicts: Vec<NewConflict> = plan
        .conflicts
        .iter()
        .map(|c| NewConflict {
            field: c.field.clone(),
            base: c.base.clone(),
            local: c.local.clone(),
            remote: c.remote.clone(),
            resolution: c.winner.map(|side| match side {
                merge::Side::Local => "local",
                merge::Side::Remote => "remote",
            }),
        })
        .collect();
    store.sync_record_conflicts(actor, mapping, entity_key, &conflicts).await?;
    Ok(conflicts.iter().any(|c| c.resolution.is_none()))
}
