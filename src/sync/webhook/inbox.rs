//! The webhook inbox: an accepted delivery is stored once per (connection,
//! delivery key) and queues its reconcile keys in the same statement, so a
//! delivery is either stored with its keys queued or not stored at all.

use serde_json::Value;

use crate::domain::Provider;
use crate::store::{Store, StoreResult};
use crate::sync::queue::{PULL, WAKE_CHANNEL};

/// What storing a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// New: these keys were queued.
    Accepted(Vec<String>),
    /// Seen before: nothing queued.
    Duplicate,
}

/// A verified delivery, ready to be stored.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub connection_id: i64,
    pub delivery_key: &'a str,
    pub event: Option<&'a str>,
    pub payload: &'a Value,
    pub payload_bytes: usize,
    /// Remote ids the payload names (issue numbers, work item ids...).
    pub remote_ids: Vec<String>,
    /// Queue the connection's pull when the payload names no mapped object.
    pub pull_if_unmapped: bool,
}

/// Stores a delivery and queues its keys: the mapped local objects it names
/// (`task:42`), else the connection's incremental pull, made due now (or, if
/// a worker holds the key, run again after it). Level-triggered: the worker
/// reads both sides again; the payload is never applied as such.
pub async fn store_delivery(store: &Store, delivery: &Delivery<'_>) -> StoreResult<Stored> {
    let client = store.client().await?;
    let statement = client
        .prepare_cached(
            "WITH inserted AS (
                 INSERT INTO webhook_inbox (connection_id, delivery_key, event, payload, payload_bytes, keys)
                 VALUES ($1, $2, $3, $4, $5,
                         -- By id or by key: two index lookups (an OR of the two would scan every mapping).
                         coalesce((SELECT array_agg(k ORDER BY k) FROM (
                                       SELECT em.local_kind || ':' || em.local_id AS k FROM external_mapping em
                                       WHERE em.connection_id = $1 AND em.local_kind IN ('task', 'cycle', 'module')
                                         AND em.sync_state <> 'deleted' AND em.external_id = ANY($6)
                                       UNION
                                       SELECT em.local_kind || ':' || em.local_id FROM external_mapping em
                                       WHERE em.connection_id = $1 AND em.local_kind IN ('task', 'cycle', 'module')
                                         AND em.sync_state <> 'deleted' AND em.external_key = ANY($6)) mapped),
                                  CASE WHEN $7 THEN ARRAY[$8] ELSE '{}'::text[] END))
                 ON CONFLICT (connection_id, delivery_key) DO NOTHING
                 RETURNING keys
             ), queued AS (
                 INSERT INTO sync_job (connection_id, key)
                 SELECT $1, k FROM inserted, unnest(inserted.keys) k
                 ON CONFLICT (connection_id, key) DO UPDATE
                     SET generation = sync_job.generation + 1, available_at = least(sync_job.available_at, now()),
                         dead = false, attempts = CASE WHEN sync_job.dead THEN 0 ELSE sync_job.attempts END,
                         updated_at = now()
                     -- A key already due and not yet claimed will read the change anyway:
                     -- a flood of deliveries for one object does not rewrite its row each time.
                     WHERE sync_job.dead OR sync_job.available_at > now() OR sync_job.locked_by IS NOT NULL
                 RETURNING 1
             )
             SELECT (SELECT keys FROM inserted),
                    (SELECT count(*) FROM (SELECT pg_notify($9, '') FROM (SELECT 1 FROM queued LIMIT 1) q) n)",
        )
        .await?;
    let row = client
        .query_one(
            &statement,
            &[
                &delivery.connection_id,
                &delivery.delivery_key,
                &delivery.event,
                &delivery.payload,
                &(delivery.payload_bytes.min(i32::MAX as usize) as i32),
                &delivery.remote_ids,
                &delivery.pull_if_unmapped,
                &PULL,
                &WAKE_CHANNEL,
            ],
        )
        .await?;
    Ok(match row.get::<_, Option<Vec<String>>>(0) {
        Some(keys) => Stored::Accepted(keys),
        None => Stored::Duplicate,
    })
}

/// Deliveries older than this are pruned by the receiver.
pub const RETENTION_DAYS: i32 = 14;

pub async fn prune(store: &Store) -> StoreResult<u64> {
    let client = store.client().await?;
    Ok(client
        .execute("DELETE FROM webhook_inbox WHERE received_at < now() - $1 * interval '1 day'", &[&RETENTION_DAYS])
        .await?)
}

/// The remote ids a provider's payload names, to find mapped local objects.
pub fn remote_ids(provider: Provider, payload: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    let mut push = |value: Option<&Value>, with_hash: bool| match value {
        Some(Value::Number(n)) => {
            ids.push(n.to_string());
            if with_hash {
                ids.push(format!("#{n}"));
            }
        }
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 200 => ids.push(s.clone()),
        _ => {}
    };
    match provider {
        Provider::Github | Provider::Gitea => {
            for object in ["issue", "pull_request"] {
                if let Some(o) = payload.get(object) {
                    push(o.get("number"), true);
                    push(o.get("id"), false);
                    push(o.get("node_id"), false);
                }
            }
        }
        Provider::Gitlab => {
            let kind = payload.get("object_kind").and_then(Value::as_str).unwrap_or_default();
            if matches!(kind, "issue" | "work_item" | "merge_request")
                && let Some(o) = payload.get("object_attributes")
            {
                push(o.get("iid"), true);
                push(o.get("id"), false);
            }
            if let Some(o) = payload.get("issue") {
                push(o.get("iid"), true);
                push(o.get("id"), false);
            }
        }
        Provider::Plane => {
            if let Some(data) = payload.get("data") {
                push(data.get("id"), false);
                push(data.get("issue"), false);
            }
        }
        Provider::N8n => {}
    }
    ids.sort();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_name_their_remote_objects() {
        let github = json!({"action": "edited", "issue": {"number": 12, "id": 9001, "node_id": "I_kw"}});
        assert_eq!(remote_ids(Provider::Github, &github), ["#12", "12", "9001", "I_kw"]);
        let gitlab = json!({"object_kind": "issue", "object_attributes": {"iid": 3, "id": 77}});
        assert_eq!(remote_ids(Provider::Gitlab, &gitlab), ["#3", "3", "77"]);
        let pipeline = json!({"object_kind": "pipeline", "object_attributes": {"iid": 3, "id": 77}});
        assert!(remote_ids(Provider::Gitlab, &pipeline).is_empty());
        let plane = json!({"event": "issue", "data": {"id": "4af6c1e0-aaaa"}});
        assert_eq!(remote_ids(Provider::Plane, &plane), ["4af6c1e0-aaaa"]);
        assert!(remote_ids(Provider::Github, &json!([1, 2])).is_empty());
        assert!(remote_ids(Provider::Plane, &json!({"data": {"id": {"nested": true}}})).is_empty());
    }
}
