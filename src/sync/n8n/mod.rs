//! n8n automation: events sent to n8n workflows, and commands received from
//! them ([`inbound`]).
//!
//! Outbound, an n8n connection's URL is a workflow's webhook. Operators
//! subscribe it to events (`mctl automation subscribe`). A subscribed event
//! is captured in the transaction that made the change (a trigger on the
//! audit log writes an `automation_delivery` row and queues
//! `delivery:<id>`, see `sql/V7__webhook_inbox.sql`); events that are not one
//! change (a handoff went overdue, a release became ready) are found by the
//! connection's periodic check (its `pull` key), each sent at most once.
//! Deliveries go through the sync queue: at least once, the same delivery id
//! on every attempt, signed, retried with backoff, and a 404 (workflow not
//! active) is a dead letter at once. Every event carries `seq`, its number
//! among the project's events (`sql/V15__automation_order.sql`); events of
//! one object go out in that order.

pub mod inbound;

use crate::store::sql::Sql;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::queue::{FULL, Job, Outcome, PULL, WAKE_CHANNEL};
use super::retry::parse_retry_after;
use super::webhook::SECRET_SETTING;
use super::webhook::verify::mc_signature;
use super::worker::Limiters;
use crate::domain::{Connection, Provider};
use crate::store::{Store, StoreResult};

/// The events a connection can subscribe to.
pub const EVENTS: &[(&str, &str)] = &[
    ("task.created", "a task was created"),
    ("task.moved", "a task moved to another lane"),
    ("task.assigned", "a task's assignee changed"),
    ("handoff.opened", "a handoff was opened"),
    ("handoff.overdue", "an open or accepted handoff passed its due time (sent once per handoff)"),
    ("pipeline.failed", "a pipeline run was reported failed"),
    ("deployment.finished", "a deployment was reported success, failed or cancelled"),
    ("release.ready", "a planned or draft release became ready to ship (sent once per release)"),
    ("snapshot.restored", "a snapshot was restored"),
];

/// Seconds between periodic checks when the connection does not say.
const DEFAULT_CHECK_EVERY: u64 = 60;
/// Requests per minute to one n8n connection when it does not say.
const DEFAULT_REQUESTS_PER_MINUTE: u32 = 600;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Validates event names (`all` stands for every event).
pub fn parse_events(names: &[String]) -> Result<Vec<String>, String> {
    let mut events = Vec::new();
    for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            events.extend(EVENTS.iter().map(|(e, _)| e.to_string()));
        } else if EVENTS.iter().any(|(e, _)| *e == name) {
            events.push(name.to_string());
        } else {
            let known: Vec<&str> = EVENTS.iter().map(|(e, _)| *e).collect();
            return Err(format!(
                "unknown event {:?}: use one of {} (or all)",
                crate::domain::text::clip(name, 40),
                known.join(", ")
            ));
        }
    }
    if events.is_empty() {
        return Err("name at least one event (or all)".into());
    }
    events.sort();
    events.dedup();
    Ok(events)
}

/// The events a connection is subscribed to.
pub fn subscribed(connection: &Connection) -> Vec<String> {
    connection
        .config
        .get("events")
        .and_then(Value::as_array)
        .map(|events| events.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The worker's entry point: `Some(outcome)` when the job belongs to an n8n
/// connection (handled here), `None` to let the worker handle it.
pub async fn process_job(store: &Store, job: &Job, limiters: &Limiters) -> Option<Outcome> {
    if provider_of(store, job.connection_id).await? != Provider::N8n {
        return None;
    }
    let outcome = match store.connection_by_id(job.connection_id).await {
        Ok(connection) => process(store, &connection, &job.key, limiters).await,
        Err(e) => Outcome::Failed { error: e.to_string(), transient: true, not_before: None },
    };
    Some(outcome)
}

/// A connection's provider never changes: remembered per process.
async fn provider_of(store: &Store, connection_id: i64) -> Option<Provider> {
    static PROVIDERS: OnceLock<Mutex<HashMap<i64, Provider>>> = OnceLock::new();
    let cache = PROVIDERS.get_or_init(Default::default);
    if let Some(provider) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&connection_id) {
        return Some(*provider);
    }
    let provider = store.connection_by_id(connection_id).await.ok()?.provider;
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(connection_id, provider);
    Some(provider)
}

/// Processes one key of an n8n connection: `delivery:<id>`, or `pull` (the
/// periodic check for derived events).
pub async fn process(store: &Store, connection: &Connection, key: &str, limiters: &Limiters) -> Outcome {
    let transient =
        |e: crate::store::StoreError| Outcome::Failed { error: e.to_string(), transient: true, not_before: None };
    match key.split_once(':') {
        Some(("delivery", id)) => match Uuid::parse_str(id) {
            Ok(id) => deliver(store, connection, id, limiters).await,
            Err(_) => {
                Outcome::Failed { error: format!("invalid delivery key {key:?}"), transient: false, not_before: None }
            }
        },
        None if key == PULL => {
            let checked = check(store, connection).await;
            let error = checked.as_ref().err().map(ToString::to_string);
            let _ = super::cursor::save_pass(store, connection.id, false, checked.is_ok(), error.as_deref()).await;
            match checked {
                Ok(_) => Outcome::Again(check_every(connection)),
                Err(e) => transient(e),
            }
        }
        None if key == FULL => Outcome::Again(Duration::from_secs(3600)),
        _ => Outcome::Failed { error: format!("unknown automation key {key:?}"), transient: false, not_before: None },
    }
}

fn check_every(connection: &Connection) -> Duration {
    let seconds = connection.config.get("check_every").and_then(Value::as_u64).unwrap_or(DEFAULT_CHECK_EVERY);
    Duration::from_secs(seconds.clamp(5, 86_400))
}

/// The periodic check: queues `handoff.overdue` and `release.ready` for the
/// handoffs and releases that qualify now and were never sent. Returns how
/// many deliveries it queued.
pub async fn check(store: &Store, connection: &Connection) -> StoreResult<u64> {
    let events = subscribed(connection);
    let mut queued = 0;
    let client = store.client().await?;
    if events.iter().any(|e| e == "handoff.overdue") {
        let rows = client
            .fetch(
                "WITH captured AS (
                     INSERT INTO automation_delivery (connection_id, project_id, event, subject, entity, seq, payload)
                     SELECT $1, h.project_id, 'handoff.overdue', 'handoff:' || h.id, 'handoff:' || h.id,
                            automation_next_seq(h.project_id),
                            jsonb_strip_nulls(jsonb_build_object(
                                'project', p.key, 'at', automation_time(now()),
                                'data', jsonb_build_object('id', h.id, 'task', t.task_key, 'kind', h.kind,
                                                           'from', fa.handle, 'to', ta.handle, 'reason', h.reason,
                                                           'state', h.state, 'due_at', automation_time(h.due_at))))
                     FROM handoff h
                     JOIN task t ON t.id = h.task_id
                     JOIN project p ON p.id = h.project_id
                     JOIN agent ta ON ta.id = h.to_agent_id
                     LEFT JOIN agent fa ON fa.id = h.from_agent_id
                     WHERE h.project_id = $2 AND h.state IN ('open', 'accepted') AND h.due_at < now()
                     ON CONFLICT (connection_id, event, subject) WHERE subject IS NOT NULL DO NOTHING
                     RETURNING id)
                 INSERT INTO sync_job (connection_id, key) SELECT $1, 'delivery:' || id FROM captured
                 ON CONFLICT (connection_id, key) DO NOTHING RETURNING 1",
                &[&connection.id, &connection.project_id],
            )
            .await?;
        queued += rows.len() as u64;
    }
    if events.iter().any(|e| e == "release.ready") {
        let candidates = client
            .fetch(
                "SELECT r.id, r.name FROM release r
                 WHERE r.project_id = $2 AND r.status IN ('planned', 'draft')
                   AND NOT EXISTS (SELECT 1 FROM automation_delivery d
                                   WHERE d.connection_id = $1 AND d.event = 'release.ready'
                                     AND d.subject = 'release:' || r.id)
                 ORDER BY r.id",
                &[&connection.id, &connection.project_id],
            )
            .await?;
        for row in candidates {
            let (id, name): (i64, String) = (row.get(0), row.get(1));
            let readiness = store.release_readiness(connection.project_id, &name).await?;
            if !readiness.ready {
                continue;
            }
            let data = json!({
                "id": id, "name": name, "tasks_total": readiness.tasks_total,
                "pipelines_total": readiness.pipelines_total,
            });
            let rows = client
                .fetch(
                    "WITH captured AS (
                         INSERT INTO automation_delivery (connection_id, project_id, event, subject, entity, seq, payload)
                         SELECT $1, $2, 'release.ready', 'release:' || $3::bigint, 'release:' || $3::bigint,
                                automation_next_seq($2),
                                jsonb_build_object('project', p.key, 'at', automation_time(now()), 'data', $4::jsonb)
                         FROM project p WHERE p.id = $2
                         ON CONFLICT (connection_id, event, subject) WHERE subject IS NOT NULL DO NOTHING
                         RETURNING id)
                     INSERT INTO sync_job (connection_id, key) SELECT $1, 'delivery:' || id FROM captured
                     ON CONFLICT (connection_id, key) DO NOTHING RETURNING 1",
                    &[&connection.id, &connection.project_id, &id, &data],
                )
                .await?;
            queued += rows.len() as u64;
        }
    }
    if queued > 0 {
        client.exec("SELECT pg_notify($1, '')", &[&WAKE_CHANNEL]).await?;
    }
    Ok(queued)
}

/// The body sent for a delivery: the same bytes on every attempt. `seq`
/// numbers the project's events in the order they happened (a ping has none).
pub fn body(id: Uuid, event: &str, seq: Option<i64>, payload: &Value) -> Vec<u8> {
    let mut object = match payload {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    object.insert("delivery".into(), Value::String(id.to_string()));
    object.insert("event".into(), Value::String(event.to_string()));
    if let Some(seq) = seq {
        object.insert("seq".into(), Value::from(seq));
    }
    serde_json::to_vec(&Value::Object(object)).unwrap_or_default()
}

/// Times in what mctl sends: RFC 3339 in UTC, with `Z` (as the SQL capture writes them).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mission-control/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}

/// The connection's signing secret (required: n8n checks every delivery
/// with it) and its header-auth token (optional), resolved from their references.
pub fn credentials(connection: &Connection) -> Result<(String, Option<String>), String> {
    let signing = match crate::sync::secret::resolve(connection.config.get(SECRET_SETTING).and_then(Value::as_str)) {
        Ok(secret) => secret,
        Err(_) if connection.config.get(SECRET_SETTING).is_none() => {
            return Err(format!(
                "connection {} has no webhook secret to sign with: set one with `mctl connection update {} --webhook-secret-ref env:NAME`",
                connection.key, connection.key
            ));
        }
        Err(e) => return Err(e),
    };
    let token =
        connection.secret_ref.as_ref().map(|reference| crate::sync::secret::resolve(Some(reference))).transpose()?;
    Ok((signing, token))
}

/// A POST of `body` to the connection's webhook, signed over the timestamp,
/// delivery id, method, path and body (`verify::signing_string`), with header
/// auth when the connection has a token.
fn signed_request(
    connection: &Connection,
    id: Uuid,
    event: &str,
    body: Vec<u8>,
    signing: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    // The path the workflow's Webhook node is at, as this request names it.
    let path = reqwest::Url::parse(&connection.base_url).map(|url| url.path().to_string()).unwrap_or_default();
    let delivery = id.to_string();
    let signature = mc_signature(signing.as_bytes(), timestamp, &delivery, "POST", &path, &body);
    let request = client()
        .post(&connection.base_url)
        .header("content-type", "application/json")
        .header("x-mc-delivery", delivery)
        .header("x-mc-event", event)
        .header("x-mc-timestamp", timestamp.to_string())
        .header("x-mc-signature", signature)
        .body(body);
    match token {
        None => request,
        Some(token) => match connection.config.get("auth_header").and_then(Value::as_str) {
            Some(name) if !name.eq_ignore_ascii_case("authorization") => request.header(name, token),
            _ => request.header("authorization", format!("Bearer {token}")),
        },
    }
}

/// What an answer other than 2xx says, for the operator. A 401 whose body
/// names the signature is the workflow's own check refusing the signing
/// secret (assets/n8n answers so); n8n's header auth answers 403
/// "Authorization data is wrong!" for a wrong token, 401 for a missing one
/// (packages/nodes-base/nodes/Webhook/error.ts).
fn refusal(status: u16, event: &str, body: &str) -> String {
    match status {
        404 => format!("n8n answered 404 for {event}: the workflow is not active (or the URL is wrong); activate it"),
        401 if body.to_ascii_lowercase().contains("timestamp") => format!(
            "the workflow found {event}'s X-MC-Timestamp stale (HTTP 401): the clocks of this host and n8n differ by more than 5 minutes; fix the clock"
        ),
        401 if body.to_ascii_lowercase().contains("signature") => format!(
            "the workflow rejected the signature of {event} (HTTP 401): the connection's webhook secret is not the workflow's signing secret (its Crypto credential); set the same value on both"
        ),
        401 | 403 => format!(
            "n8n refused the token (HTTP {status}): check what --token-ref points at and the Webhook node's Header Auth credential"
        ),
        429 => format!("n8n is rate limiting (HTTP 429) and did not take {event}: try again later"),
        500..=599 => format!("n8n failed with HTTP {status}"),
        _ => format!("n8n rejected {event} with HTTP {status}: check the workflow's webhook node"),
    }
}

/// The start of an answer's body (at most 4 KiB read), to tell refusals
/// apart; never logged or shown.
async fn answer_text(mut response: reqwest::Response) -> String {
    const LIMIT: usize = 4096;
    let mut bytes = Vec::new();
    while bytes.len() < LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(LIMIT);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `mctl connection test` for n8n: sends one signed `ping` event, the way
/// every delivery is sent, and says what n8n answered. A workflow can tell
/// it apart by `event` = `ping` (no task or project data in it).
pub async fn ping(connection: &Connection, signing: &str, token: Option<&str>) -> Result<(), String> {
    let id = Uuid::new_v4();
    let payload = json!({ "connection": connection.key, "sent_at": rfc3339(OffsetDateTime::now_utc()) });
    let request = signed_request(connection, id, "ping", body(id, "ping", None, &payload), signing, token);
    match request.send().await {
        Err(e) if e.is_timeout() => {
            Err("sending a ping to n8n timed out: check the connection's URL and that n8n is up".into())
        }
        Err(_) => Err("could not reach n8n: check the connection's URL and that n8n is up".into()),
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => {
            let status = response.status().as_u16();
            Err(refusal(status, "ping", &answer_text(response).await))
        }
    }
}

async fn deliver(store: &Store, connection: &Connection, id: Uuid, limiters: &Limiters) -> Outcome {
    let fail = |error: String, transient: bool, not_before: Option<OffsetDateTime>| Outcome::Failed {
        error,
        transient,
        not_before,
    };
    let row = match store.client().await {
        Ok(client) => client
            .fetch_opt(
                "SELECT event, payload, delivered_at IS NOT NULL, entity, seq FROM automation_delivery
                 WHERE id = $1 AND connection_id = $2",
                &[&id, &connection.id],
            )
            .await
            .map_err(crate::store::StoreError::from),
        Err(e) => Err(e),
    };
    let (event, payload, entity, seq) = match row {
        Ok(Some(row)) if row.get::<_, bool>(2) => return Outcome::Done,
        Ok(Some(row)) => {
            (row.get::<_, String>(0), row.get::<_, Value>(1), row.get::<_, Option<String>>(3), row.get::<_, i64>(4))
        }
        Ok(None) => return Outcome::Done, // removed with its connection: nothing to send
        Err(e) => return fail(e.to_string(), true, None),
    };
    match earlier_pending(store, connection.id, entity.as_deref(), seq).await {
        Ok(Some(wait)) => return Outcome::Again(wait),
        Ok(None) => {}
        Err(e) => return fail(e.to_string(), true, None),
    }
    let (signing, token) = match credentials(connection) {
        Ok(credentials) => credentials,
        Err(e) => return fail(e, false, None),
    };
    let per_minute = connection
        .config
        .get("requests_per_minute")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_REQUESTS_PER_MINUTE, |n| n.min(100_000) as u32);
    if let Err(wait) = limiters.of(connection.id, per_minute).acquire().await {
        return Outcome::Deferred(OffsetDateTime::now_utc() + wait);
    }
    let request =
        signed_request(connection, id, &event, body(id, &event, Some(seq), &payload), &signing, token.as_deref());
    let (status, outcome) = match request.send().await {
        Err(e) => {
            let what = if e.is_timeout() { "timed out" } else { "could not connect or the connection failed" };
            (
                None,
                fail(
                    format!("sending {event} to n8n {what}: check the connection's URL and that n8n is up"),
                    true,
                    None,
                ),
            )
        }
        Ok(response) => {
            let status = response.status().as_u16();
            let now = OffsetDateTime::now_utc();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let outcome = match status {
                200..=299 => Outcome::Done,
                404 if took_deliveries_before(store, connection.id).await => fail(
                    format!(
                        "n8n answered 404 for {event} at a webhook that worked before: n8n may be starting up; retrying"
                    ),
                    true,
                    retry_after,
                ),
                404 => fail(format!("{}, then retry this dead letter", refusal(status, &event, "")), false, None),
                429 => {
                    let until = retry_after.unwrap_or(now + Duration::from_secs(60));
                    if let Ok(wait) = Duration::try_from(until - now) {
                        limiters.of(connection.id, per_minute).pause_for(wait);
                    }
                    fail(format!("n8n is rate limiting (HTTP 429) until {until}"), true, Some(until))
                }
                500..=599 => fail(refusal(status, &event, ""), true, retry_after),
                _ => fail(refusal(status, &event, &answer_text(response).await), false, None),
            };
            (Some(status as i32), outcome)
        }
    };
    let error = match &outcome {
        Outcome::Failed { error, .. } => Some(error.clone()),
        _ => None,
    };
    let recorded = async {
        let client = store.client().await?;
        client
            .exec(
                "UPDATE automation_delivery SET attempts = attempts + 1, last_status = $2, last_error = $3,
                        delivered_at = CASE WHEN $4 THEN now() ELSE delivered_at END
                 WHERE id = $1",
                &[&id, &status, &error, &matches!(outcome, Outcome::Done)],
            )
            .await?;
        Ok::<_, crate::store::StoreError>(())
    }
    .await;
    if let Err(e) = recorded {
        tracing::warn!(connection = %connection.key, "automation: recording a delivery attempt failed: {e}");
    }
    outcome
}

/// Events of one object go out in the order they happened: while an
/// earlier event of the same object (lower `seq`) waits to be delivered on
/// this connection, a later one waits too, until just after the earlier one
/// is due. An earlier event that became a dead letter no longer holds the
/// others back (the workflow orders by `seq` if it must).
async fn earlier_pending(
    store: &Store,
    connection_id: i64,
    entity: Option<&str>,
    seq: i64,
) -> StoreResult<Option<Duration>> {
    let Some(entity) = entity else { return Ok(None) };
    let client = store.client().await?;
    let row = client
        .fetch_opt(
            "SELECT greatest(extract(epoch FROM j.available_at - now()), 0)::float8 FROM automation_delivery d
             JOIN sync_job j ON j.connection_id = d.connection_id AND j.key = 'delivery:' || d.id
             WHERE d.connection_id = $1 AND d.entity = $2 AND d.seq < $3 AND d.delivered_at IS NULL AND NOT j.dead
             ORDER BY d.seq LIMIT 1",
            &[&connection_id, &entity, &seq],
        )
        .await?;
    Ok(row.map(|r| Duration::from_secs_f64(r.get::<_, f64>(0).min(300.0)) + Duration::from_secs(1)))
}

/// Whether the connection's webhook ever took a delivery (then a 404 is n8n
/// restarting, not a wrong URL). A database error counts as yes: retrying
/// costs little, a dead letter costs an operator.
async fn took_deliveries_before(store: &Store, connection_id: i64) -> bool {
    let found = async {
        let client = store.client().await?;
        let row = client
            .fetch_one(
                "SELECT EXISTS (SELECT 1 FROM automation_delivery WHERE connection_id = $1 AND delivered_at IS NOT NULL)",
                &[&connection_id],
            )
            .await?;
        Ok::<bool, crate::store::StoreError>(row.get(0))
    };
    found.await.unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_validated_and_all_expands() {
        assert_eq!(parse_events(&["task.moved,task.created".into()]).unwrap(), ["task.created", "task.moved"]);
        assert_eq!(parse_events(&["all".into()]).unwrap().len(), EVENTS.len());
        let err = parse_events(&["task.deleted".into()]).unwrap_err();
        assert!(err.contains("unknown event") && err.contains("task.moved"), "{err}");
        assert!(parse_events(&[]).is_err());
    }

    #[test]
    fn a_deliverys_body_is_stable_and_names_itself() {
        let id = Uuid::new_v4();
        let payload = json!({"project": "MC", "data": {"key": "MC-1"}});
        let a = body(id, "task.moved", Some(7), &payload);
        assert_eq!(a, body(id, "task.moved", Some(7), &payload));
        let parsed: Value = serde_json::from_slice(&a).unwrap();
        assert_eq!(parsed["delivery"], id.to_string());
        assert_eq!(parsed["event"], "task.moved");
        assert_eq!(parsed["seq"], 7);
        assert_eq!(parsed["data"]["key"], "MC-1");
    }
}
