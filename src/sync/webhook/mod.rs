//! The webhook receiver (`mctl sync serve`): providers' webhooks and n8n's
//! automation commands over plain HTTP/1 (put TLS in front of it).
//!
//! | route | what |
//! |---|---|
//! | `POST /hooks/{connection}` | a provider's webhook, verified the provider's way |
//! | `POST /automation/{connection}` | a signed command from an n8n workflow |
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | the database answers and its schema is current; lists the sync workers and what they wait for |
//!
//! The raw body is verified before it is parsed. An accepted delivery is
//! stored in the inbox (deduplicated) and queues reconcile keys (none for
//! events that cannot change what mctl syncs); the answer is 202 at once. Every refusal is audited, at most once per connection and
//! reason every 10 seconds, with the count of the ones in between.

pub mod inbox;
pub mod verify;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use self::inbox::{Delivery, Stored};
use self::verify::Rejection;
use crate::domain::{Connection, Provider, Source};
use crate::store::audit::{self, Change};
use crate::store::{Actor, Store, StoreError};

/// The default address: loopback only, until an operator decides otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// Bodies larger than this are refused with 413.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// The connection setting holding the webhook secret's reference.
pub const SECRET_SETTING: &str = "webhook_secret_ref";

/// How long a looked-up connection (and its secret) is reused.
const CONNECTION_TTL: Duration = Duration::from_secs(5);
/// At most one audit entry per connection and reason in this window.
const AUDIT_WINDOW: Duration = Duration::from_secs(10);
/// How often the inbox is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub max_body: usize,
    /// A body must arrive within this long (a slow sender holds a connection).
    pub body_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            max_body: DEFAULT_MAX_BODY,
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// A bound receiver; [`Server::run`] serves until shutdown.
pub struct Server {
    listener: TcpListener,
    state: Arc<State>,
}

struct State {
    store: Store,
    inbox: inbox::Inbox,
    max_body: usize,
    body_timeout: Duration,
    /// Looked-up connections by key, with when they were read.
    connections: Mutex<HashMap<String, Cached>>,
    rejections: RejectionLog,
}

type Cached = (Instant, Option<Arc<Target>>);

/// A connection as the receiver needs it, with its webhook secret read.
struct Target {
    connection: Connection,
    secret: Result<String, String>,
}

impl Server {
    pub async fn bind(store: Store, options: ServeOptions) -> std::io::Result<Server> {
        let listener = TcpListener::bind(options.listen).await?;
        let state = Arc::new(State {
            inbox: inbox::Inbox::start(store.clone()),
            store,
            max_body: options.max_body.max(1024),
            body_timeout: options.body_timeout,
            connections: Mutex::new(HashMap::new()),
            rejections: RejectionLog::default(),
        });
        Ok(Server { listener, state })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish
    /// (up to 10 seconds).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let graceful = GracefulShutdown::new();
        let mut prune_at = Instant::now();
        loop {
            if prune_at <= Instant::now() {
                prune_at = Instant::now() + PRUNE_EVERY;
                let store = self.state.store.clone();
                tokio::spawn(async move {
                    if let Err(e) = inbox::prune(&store).await {
                        tracing::warn!("webhook inbox: pruning failed: {e}");
                    }
                });
            }
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!("webhook receiver: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let state = self.state.clone();
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, peer, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await;
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, body: Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Answer {
    answer(status, json!({ "error": message.into() }))
}

async fn handle(state: &State, peer: SocketAddr, request: Request<Incoming>) -> Answer {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => answer(StatusCode::OK, json!({ "status": "ok" })),
        (&Method::GET, ["readyz"]) => ready(&state.store).await,
        (&Method::POST, ["hooks", key]) => receive(state, peer, key, request, false).await,
        (&Method::POST, ["automation", key]) => receive(state, peer, key, request, true).await,
        (_, ["hooks" | "automation", _]) => error(StatusCode::METHOD_NOT_ALLOWED, "use POST"),
        (_, ["healthz" | "readyz"]) => error(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
        _ => {
            error(StatusCode::NOT_FOUND, "no such endpoint: use POST /hooks/CONNECTION or POST /automation/CONNECTION")
        }
    }
}

async fn ready(store: &Store) -> Answer {
    let known = crate::store::migrate::latest_known_version();
    match tokio::time::timeout(Duration::from_secs(3), store.schema_version()).await {
        Ok(Ok(version)) if version == known => {
            // What the sync workers are doing is not this receiver's readiness, but it is what an operator asks next.
            let workers =
                match tokio::time::timeout(Duration::from_secs(3), super::registry::workers(store, None)).await {
                    Ok(Ok(workers)) => json!(workers),
                    _ => Value::Null,
                };
            answer(StatusCode::OK, json!({ "status": "ready", "schema": version, "workers": workers }))
        }
        Ok(Ok(version)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the database schema is at version {version}, this mctl expects {known}: run `mctl migrate`"),
        ),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}")),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "not ready: the database did not answer within 3 s"),
    }
}

/// A refusal: the answer, and what the audit entry records.
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { status, reason, message: message.into() }
    }
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Refusal {
        Refusal::new(StatusCode::from_u16(r.status()).unwrap_or(StatusCode::UNAUTHORIZED), r.reason(), r.message())
    }
}

async fn receive(
    state: &State,
    peer: SocketAddr,
    raw_key: &str,
    request: Request<Incoming>,
    automation: bool,
) -> Answer {
    let key = crate::domain::connection_key(raw_key).ok();
    let target = match &key {
        Some(key) => match state.target(key).await {
            Ok(target) => target,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the connection: {e}")),
        },
        None => None,
    };
    let target = match target {
        Some(t) if t.connection.enabled && (t.connection.provider == Provider::N8n) == automation => t,
        other => {
            let message = match &other {
                Some(t) if !t.connection.enabled => format!("connection {} is disabled", t.connection.key),
                Some(t) if automation => {
                    format!(
                        "connection {} is not an n8n connection: send its webhooks to /hooks/{}",
                        t.connection.key, t.connection.key
                    )
                }
                Some(t) => format!(
                    "connection {} is an n8n connection: send commands to /automation/{}",
                    t.connection.key, t.connection.key
                ),
                None => "no such connection: check the webhook URL's connection key".to_string(),
            };
            let refusal = Refusal::new(StatusCode::NOT_FOUND, "unknown_connection", message);
            let connection = other.as_ref().map(|t| &t.connection);
            state.audit_refusal(connection, key.as_deref(), peer, &refusal, None).await;
            return error(refusal.status, refusal.message);
        }
    };
    let (parts, body) = request.into_parts();
    match process(state, &target, parts.uri.path(), &parts.headers, body, automation).await {
        Ok(answer) => answer,
        Err((refusal, delivery)) => {
            state.audit_refusal(Some(&target.connection), key.as_deref(), peer, &refusal, delivery.as_deref()).await;
            error(refusal.status, refusal.message)
        }
    }
}

type Refused = (Refusal, Option<String>);

async fn process(
    state: &State,
    target: &Target,
    path: &str,
    headers: &hyper::HeaderMap,
    body: Incoming,
    automation: bool,
) -> Result<Answer, Refused> {
    let connection = &target.connection;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than {} bytes: send smaller payloads", state.max_body),
        )
    };
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body as u64) {
        return Err((too_large(), None));
    }
    let read = tokio::time::timeout(state.body_timeout, Limited::new(body, state.max_body).collect()).await;
    let body = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            return Err((too_large(), None));
        }
        Ok(Err(_)) => {
            return Err((Refusal::new(StatusCode::BAD_REQUEST, "unreadable", "the body could not be read"), None));
        }
        Err(_) => {
            let message = format!("the body did not arrive within {} s: send it at once", state.body_timeout.as_secs());
            return Err((Refusal::new(StatusCode::REQUEST_TIMEOUT, "slow_body", message), None));
        }
    };
    let secret = target.secret.as_ref().map_err(|e| {
        (
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_secret",
                format!("this receiver cannot check signatures: {e}"),
            ),
            None,
        )
    })?;
    let delivery = if automation {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        verify::verify_automation(secret, headers, "POST", path, &body, now)
            .map_err(|r| (Refusal::from(r), verify::automation_delivery(headers).map(str::to_string)))?
    } else {
        let delivery = verify::delivery_key(connection.provider, headers, &body);
        verify::verify_provider(connection.provider, secret, headers, &body)
            .map_err(|r| (Refusal::from(r), Some(delivery.clone())))?;
        delivery
    };
    let mut payload: Value = serde_json::from_slice(&body).map_err(|_| {
        (
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "not_json",
                "the body is not JSON: set the webhook's content type to application/json",
            ),
            Some(delivery.clone()),
        )
    })?;
    // PostgreSQL cannot store a NUL in text or jsonb. A provider's payload is
    // kept for operators only, so its NULs are escaped; a command's strings
    // would be applied, so a command carrying one is refused, once, plainly.
    if inbox::escape_nul(&mut payload) && automation {
        let message =
            "the command contains a NUL character (\\u0000), which mctl cannot store: remove it and send again";
        return Err((Refusal::new(StatusCode::BAD_REQUEST, "nul_character", message), Some(delivery)));
    }
    let store_failed = |e: StoreError| {
        tracing::warn!(connection = %connection.key, "webhook: storing a delivery failed: {e}");
        error(StatusCode::SERVICE_UNAVAILABLE, "the delivery could not be stored: try again later")
    };
    if automation {
        return Ok(
            match crate::sync::n8n::inbound::handle(&state.store, connection, &delivery, &payload, body.len()).await {
                Ok((status, value)) => answer(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), value),
                Err(e) => store_failed(e),
            },
        );
    }
    let event = verify::event_name(connection.provider, headers);
    // Without an event name (a sender that omits it), reconcile as before.
    let syncs = event.as_deref().is_none_or(|e| verify::event_syncs(connection.provider, e));
    let remote_ids = if syncs { inbox::remote_ids(connection.provider, &payload) } else { Vec::new() };
    let stored = state
        .inbox
        .store(Delivery {
            connection_id: connection.id,
            delivery_key: delivery.clone(),
            event,
            payload,
            payload_bytes: body.len(),
            remote_ids,
            pull_if_unmapped: syncs,
        })
        .await;
    Ok(match stored {
        Ok(Stored::Accepted(keys)) => answer(StatusCode::ACCEPTED, json!({ "delivery": delivery, "queued": keys })),
        Ok(Stored::Duplicate) => answer(StatusCode::OK, json!({ "delivery": delivery, "duplicate": true })),
        Err(e) => store_failed(e),
    })
}

impl State {
    /// The connection by key, with its webhook secret; `None` when unknown.
    async fn target(&self, key: &str) -> Result<Option<Arc<Target>>, StoreError> {
        {
            let cache = self.connections.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, target)) = cache.get(key)
                && at.elapsed() < CONNECTION_TTL
            {
                return Ok(target.clone());
            }
        }
        let target = match self.store.connection_by_key(key).await {
            Ok(connection) => {
                let reference = connection.config.get(SECRET_SETTING).and_then(Value::as_str);
                let secret = match reference {
                    Some(reference) => crate::sync::secret::resolve(Some(reference)),
                    None => Err(format!(
                        "connection {} has no webhook secret: set one with `mctl connection update {} --webhook-secret-ref env:NAME`",
                        connection.key, connection.key
                    )),
                };
                Some(Arc::new(Target { connection, secret }))
            }
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let mut cache = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear(); // unknown keys from a scan must not grow the map without bound
        }
        cache.insert(key.to_string(), (Instant::now(), target.clone()));
        Ok(target)
    }

    async fn audit_refusal(
        &self,
        connection: Option<&Connection>,
        key: Option<&str>,
        peer: SocketAddr,
        refusal: &Refusal,
        delivery: Option<&str>,
    ) {
        let Some(suppressed) = self.rejections.admit(connection.map(|c| c.id), refusal.reason) else {
            return;
        };
        let mut change = Change::new("connection", "rejected", connection.map(|c| c.project_id));
        change.action = "webhook.rejected".into();
        change.entity_id = connection.map(|c| c.id);
        // An unknown key is recorded only when it is a well-formed one.
        change.entity_key = connection.map(|c| c.key.clone()).or_else(|| key.map(str::to_string));
        change.after = Some(json!({
            "reason": refusal.reason,
            "status": refusal.status.as_u16(),
            "delivery": delivery,
            "peer": peer.ip().to_string(),
            "suppressed_since_last": suppressed,
        }));
        let actor = Actor::new("webhook", Source::Sync);
        let result = async {
            let client = self.store.client().await?;
            audit::record(&client, &actor, change).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!("webhook: auditing a refusal failed: {e}");
        }
    }
}

/// Rate-limits refusal audit entries: one per (connection, reason) per
/// window, carrying how many were refused in between without an entry.
/// Refusals for unknown connections share one bucket.
#[derive(Default)]
struct RejectionLog(Mutex<HashMap<Bucket, (Instant, u64)>>);

/// A connection (`None`: unknown ones) and a reason.
type Bucket = (Option<i64>, &'static str);

impl RejectionLog {
    /// `Some(suppressed)` when an entry is due now.
    fn admit(&self, connection: Option<i64>, reason: &'static str) -> Option<u64> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match map.get_mut(&(connection, reason)) {
            Some((last, count)) if now.duration_since(*last) < AUDIT_WINDOW => {
                *count += 1;
                None
            }
            Some((last, count)) => {
                let suppressed = *count;
                *last = now;
                *count = 0;
                Some(suppressed)
            }
            None => {
                map.insert((connection, reason), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_audit_is_rate_limited_per_connection_and_reason() {
        let log = RejectionLog::default();
        assert_eq!(log.admit(Some(1), "bad_signature"), Some(0));
        for _ in 0..1000 {
            assert_eq!(log.admit(Some(1), "bad_signature"), None);
        }
        assert_eq!(log.admit(Some(1), "too_large"), Some(0));
        assert_eq!(log.admit(Some(2), "bad_signature"), Some(0));
        assert_eq!(log.admit(None, "unknown_connection"), Some(0));
        // After the window, the next entry carries the count in between.
        log.0.lock().unwrap().get_mut(&(Some(1), "bad_signature")).unwrap().0 -= AUDIT_WINDOW;
        assert_eq!(log.admit(Some(1), "bad_signature"), Some(1000));
        assert_eq!(log.admit(Some(1), "bad_signature"), None);
    }
}
