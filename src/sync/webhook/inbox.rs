//! The webhook inbox: an accepted delivery is stored once per (connection,
//! delivery key) and queues its reconcile keys in the same statement, so a
//! delivery is either stored with its keys queued or not stored at all.
//!
//! Deliveries that arrive together are stored together: [`Inbox`] gathers
//! what is waiting into one statement and one commit (up to [`MAX_BATCH`]),
//! so a burst costs one round trip and one WAL flush per batch, not per
//! delivery. A delivery arriving alone is stored at once, as its own batch.

use crate::store::sql::Sql;
use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::Provider;
use crate::store::{Store, StoreError, StoreResult};
use crate::sync::queue::{COALESCE_WITH_QUEUED, PULL, REMOTE_PREFIX, WAKE_CHANNEL};

/// At most this many deliveries in one statement.
pub const MAX_BATCH: usize = 256;
/// Batches being written at once: the next one gathers while one commits.
const IN_FLIGHT: usize = 2;
/// Deliveries waiting for a batch before receivers wait for room.
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

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
pub struct Delivery {
    pub connection_id: i64,
    pub delivery_key: String,
    pub event: Option<String>,
    pub payload: Value,
    pub payload_bytes: usize,
    /// Remote ids the payload names (issue numbers, work item ids...).
    pub remote_ids: Vec<String>,
    /// Queue the connection's pull when the payload names no mapped object.
    pub pull_if_unmapped: bool,
}

struct Pending {
    delivery: Delivery,
    answer: oneshot::Sender<StoreResult<Stored>>,
}

/// The receiver's way into the inbox: stores deliveries in batches.
#[derive(Clone)]
pub struct Inbox {
    queue: mpsc::Sender<Pending>,
}

impl Inbox {
    /// Starts the batching task; it ends when the last `Inbox` is dropped.
    pub fn start(store: Store) -> Inbox {
        let (queue, waiting) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(gather(store, waiting));
        Inbox { queue }
    }

    /// Stores a delivery (with whatever else is waiting) and queues its keys.
    pub async fn store(&self, delivery: Delivery) -> StoreResult<Stored> {
        let (answer, answered) = oneshot::channel();
        let gone = || StoreError::Unavailable("the webhook inbox has stopped".into());
        self.queue.send(Pending { delivery, answer }).await.map_err(|_| gone())?;
        answered.await.map_err(|_| gone())?
    }
}

/// Takes what is waiting, up to [`MAX_BATCH`], whenever a batch may start.
async fn gather(store: Store, mut waiting: mpsc::Receiver<Pending>) {
    let flights = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = waiting.recv().await {
        let Ok(flight) = flights.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            write_batch(&store, batch).await;
            drop(flight);
        });
    }
}

/// Stores a batch in one statement; if that fails, each delivery on its own,
/// so one bad delivery (or a deadlock) cannot fail the others.
async fn write_batch(store: &Store, batch: Vec<Pending>) {
    let deliveries: Vec<&Delivery> = batch.iter().map(|p| &p.delivery).collect();
    if batch.len() > 1
        && let Ok(results) = store_deliveries(store, &deliveries).await
    {
        for (pending, result) in batch.into_iter().zip(results) {
            let _ = pending.answer.send(Ok(result));
        }
        return;
    }
    for pending in batch {
        let result = store_deliveries(store, &[&pending.delivery]).await.map(|mut r| r.remove(0));
        let _ = pending.answer.send(result);
    }
}

/// Stores deliveries and queues their keys in one statement: the mapped
/// local objects each names (`remote:task:42`: read its remote copy), else
/// the connection's incremental pull, made due now (or, if a worker holds the key, run again after it).
/// Level-triggered: the worker reads both sides again; the payload is never
/// applied as such. The answers are in the order of `deliveries`.
pub async fn store_deliveries(store: &Store, deliveries: &[&Delivery]) -> StoreResult<Vec<Stored>> {
    // The same delivery twice in one batch (a provider's quick redelivery):
    // the first is stored, the rest are duplicates.
    let mut seen = HashSet::new();
    let first: Vec<bool> = deliveries.iter().map(|d| seen.insert((d.connection_id, d.delivery_key.as_str()))).collect();
    let (mut ns, mut connections, mut keys, mut events, mut payloads, mut sizes, mut pulls) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut id_ns, mut ids) = (Vec::new(), Vec::new());
    for (n, d) in deliveries.iter().enumerate().filter(|(n, _)| first[*n]) {
        let n = n as i32;
        ns.push(n);
        connections.push(d.connection_id);
        keys.push(d.delivery_key.as_str());
        events.push(d.event.as_deref());
        payloads.push(&d.payload);
        sizes.push(d.payload_bytes.min(i32::MAX as usize) as i32);
        pulls.push(d.pull_if_unmapped);
        for id in &d.remote_ids {
            id_ns.push(n);
            ids.push(id.as_str());
        }
    }
    let client = store.client().await?;
    let statement = &format!(
            "WITH batch AS (
                 SELECT * FROM unnest($1::int[], $2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::int[], $7::bool[])
                     AS b (n, connection_id, delivery_key, event, payload, payload_bytes, pull_if_unmapped)
             ), named AS (
                 SELECT * FROM unnest($8::int[], $9::text[]) AS i (n, remote_id)
             ), inserted AS (
                 INSERT INTO webhook_inbox (connection_id, delivery_key, event, payload, payload_bytes, keys)
                 SELECT b.connection_id, b.delivery_key, b.event, b.payload, b.payload_bytes,
                        -- By id or by key: two index lookups (an OR of the two would scan every mapping).
                        coalesce((SELECT array_agg(k ORDER BY k) FROM (
                                      SELECT $12 || em.local_kind || ':' || em.local_id AS k FROM external_mapping em
                                      WHERE em.connection_id = b.connection_id
                                        AND em.local_kind IN ('task', 'cycle', 'module') AND em.sync_state <> 'deleted'
                                        AND em.external_id IN (SELECT remote_id FROM named WHERE named.n = b.n)
                                      UNION
                                      SELECT $12 || em.local_kind || ':' || em.local_id FROM external_mapping em
                                      WHERE em.connection_id = b.connection_id
                                        AND em.local_kind IN ('task', 'cycle', 'module') AND em.sync_state <> 'deleted'
                                        AND em.external_key IN (SELECT remote_id FROM named WHERE named.n = b.n)) mapped),
                                 CASE WHEN b.pull_if_unmapped THEN ARRAY[$10] ELSE '{{}}'::text[] END)
                 FROM batch b
                 ORDER BY b.connection_id, b.delivery_key
                 ON CONFLICT (connection_id, delivery_key) DO NOTHING
                 RETURNING connection_id, delivery_key, keys
             ), queued AS (
                 INSERT INTO sync_job (connection_id, key)
                 -- Distinct and in key order: concurrent batches lock queue rows in the same order.
                 SELECT DISTINCT i.connection_id, k FROM inserted i, unnest(i.keys) k
                 ORDER BY 1, 2
                 {COALESCE_WITH_QUEUED}
                 RETURNING 1
             ), woken AS (
                 SELECT count(*) AS n FROM (SELECT pg_notify($11, '') FROM (SELECT 1 FROM queued LIMIT 1) q) w
             )
             SELECT i.connection_id, i.delivery_key, i.keys, woken.n FROM inserted i, woken",
        );
    let rows = client
        .fetch(
            statement,
            &[
                &ns,
                &connections,
                &keys,
                &events,
                &payloads,
                &sizes,
                &pulls,
                &id_ns,
                &ids,
                &PULL,
                &WAKE_CHANNEL,
                &REMOTE_PREFIX,
            ],
        )
        .await?;
    let mut accepted: std::collections::HashMap<(i64, String), Vec<String>> =
        rows.iter().map(|row| ((row.get(0), row.get(1)), row.get(2))).collect();
    Ok(deliveries
        .iter()
        .zip(first)
        .map(|(d, first)| match first.then(|| accepted.remove(&(d.connection_id, d.delivery_key.clone()))).flatten() {
            Some(keys) => Stored::Accepted(keys),
            None => Stored::Duplicate,
        })
        .collect())
}

/// Deliveries older than this are pruned by the receiver.
pub const RETENTION_DAYS: i32 = 14;

/// Deletes inbox rows older than [`RETENTION_DAYS`]; returns how many.
pub async fn prune(store: &Store) -> StoreResult<u64> {
    let client = store.client().await?;
    // make_interval types its parameter as int4 (a bare `$1 * interval` would be inferred float8).
    Ok(client
        .exec("DELETE FROM webhook_inbox WHERE received_at < now() - make_interval(days => $1)", &[&RETENTION_DAYS])
        .await?)
}

/// Escapes every NUL character in the payload's strings and keys as the six
/// characters `\u0000` (PostgreSQL stores no NUL in jsonb). Returns whether
/// there was one.
pub fn escape_nul(value: &mut Value) -> bool {
    fn escaped(text: &str) -> String {
        text.replace('\0', "\\u0000")
    }
    match value {
        Value::String(text) if text.contains('\0') => {
            *text = escaped(text);
            true
        }
        Value::Array(items) => items.iter_mut().fold(false, |found, item| escape_nul(item) | found),
        Value::Object(map) => {
            let mut found = false;
            if map.keys().any(|k| k.contains('\0')) {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (key, item) in entries {
                    map.insert(escaped(&key), item);
                }
                found = true;
            }
            map.values_mut().fold(found, |found, item| escape_nul(item) | found)
        }
        _ => false,
    }
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
            // Merge requests are numbered apart from issues (!5 is not #5)
            // and are not synced: their iid names no mapped object.
            let kind = payload.get("object_kind").and_then(Value::as_str).unwrap_or_default();
            if matches!(kind, "issue" | "work_item")
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
        // Merge request !3 is not issue #3.
        let merge_request = json!({"object_kind": "merge_request", "object_attributes": {"iid": 3, "id": 78}});
        assert!(remote_ids(Provider::Gitlab, &merge_request).is_empty());
        let pipeline = json!({"object_kind": "pipeline", "object_attributes": {"iid": 3, "id": 77}});
        assert!(remote_ids(Provider::Gitlab, &pipeline).is_empty());
        let plane = json!({"event": "issue", "data": {"id": "4af6c1e0-aaaa"}});
        assert_eq!(remote_ids(Provider::Plane, &plane), ["4af6c1e0-aaaa"]);
        assert!(remote_ids(Provider::Github, &json!([1, 2])).is_empty());
        assert!(remote_ids(Provider::Plane, &json!({"data": {"id": {"nested": true}}})).is_empty());
    }

    #[test]
    fn nul_characters_are_escaped_in_strings_and_keys() {
        let mut value = json!({"a\0": ["x\0y", 1, {"b": "\0"}], "clean": "z"});
        assert!(escape_nul(&mut value));
        assert_eq!(value, json!({"a\\u0000": ["x\\u0000y", 1, {"b": "\\u0000"}], "clean": "z"}));
        assert!(!escape_nul(&mut value), "escaped once");
    }
}
