//! What every provider client shares: one HTTP client, a per-connection rate
//! limiter that also follows the provider's rate-limit headers
//! (`X-RateLimit-*`, GitLab's `RateLimit-*`, `Retry-After`), and errors
//! sorted by what the worker should do about them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::sync::retry::parse_retry_after;

/// A request that did not give a usable answer. Errors that come from an
/// exchange say what the provider answered first (its status and its own
/// words, which fit a narrow screen), then name the request (`GET
/// /api/v1/…/work-items/`: the method and the path, never the query or a
/// header), so an operator can tell which call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// No answer: connection refused or reset, timed out, DNS or TLS failure.
    #[error("{detail} ({request})")]
    Network { request: String, detail: String },
    /// The provider is throttling us until then.
    #[error("rate limited by the provider until {until}")]
    RateLimited { until: OffsetDateTime },
    /// 5xx: worth another try later.
    #[error("the provider failed with HTTP {status}: {message} ({request})")]
    Unavailable { request: String, status: u16, message: String },
    /// 404 or 410.
    #[error("not found: HTTP {status} ({request})")]
    NotFound { request: String, status: u16 },
    /// 409 naming the object that already exists (Plane's idempotent create).
    #[error("already exists as {existing}")]
    AlreadyExists { existing: String },
    /// 401 (or a 403 that names no permission): the token is wrong or
    /// lacks rights; retrying will not help.
    #[error(
        "the provider refused the credentials (HTTP {status}, {request}): check the token the connection's secret reference points at"
    )]
    Unauthorized { request: String, status: u16 },
    /// 403 that is no rate limit: the token may not do this one thing (a
    /// fine-grained token without that permission); other requests work.
    #[error("the token may not do this (HTTP 403, {request}): {message}")]
    Forbidden { request: String, message: String },
    /// 4xx that will not heal by retrying, with the provider's own words and,
    /// where the provider gives one, its machine-readable reason (Plane's
    /// `"code": "CYCLE_COMPLETED"`).
    #[error("rejected with HTTP {status}: {message} ({request})")]
    Rejected { request: String, status: u16, message: String, code: Option<String> },
    /// An answer that is not what the API documents.
    #[error("unexpected answer from the provider: {0}")]
    Malformed(String),
    /// The connection's own settings are unusable (no request was made).
    #[error("{0}")]
    Config(String),
    /// The secret could not be read.
    #[error("{0}")]
    Secret(String),
}

impl ProviderError {
    /// Whether trying again later can succeed: no answer, a server error, a
    /// throttle, or an answer garbled on the way (a proxy's error page).
    /// 408 (request timeout) and 425 (too early) are the provider asking
    /// for a later try too.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Network { .. }
            | ProviderError::RateLimited { .. }
            | ProviderError::Unavailable { .. }
            | ProviderError::Malformed(_) => true,
            ProviderError::Rejected { status, .. } => matches!(status, 408 | 425),
            _ => false,
        }
    }

    /// The provider's "not before", when it said one.
    pub fn not_before(&self) -> Option<OffsetDateTime> {
        match self {
            ProviderError::RateLimited { until } => Some(*until),
            _ => None,
        }
    }

    /// The HTTP status the provider answered with, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Unavailable { status, .. }
            | ProviderError::NotFound { status, .. }
            | ProviderError::Unauthorized { status, .. }
            | ProviderError::Rejected { status, .. } => Some(*status),
            ProviderError::Forbidden { .. } => Some(403),
            ProviderError::AlreadyExists { .. } => Some(409),
            _ => None,
        }
    }

    /// A 404 for `request` (providers that answer "gone" without a status).
    pub fn not_found(request: impl Into<String>) -> ProviderError {
        ProviderError::NotFound { request: request.into(), status: 404 }
    }
}

pub type ProviderResult<T> = Result<T, ProviderError>;

/// Pacing waits up to this long; a longer pause gives the job back.
const MAX_PACING_WAIT: Duration = Duration::from_secs(5);

/// Requests per minute a connection may make, shared by every client of that
/// connection in this process; the provider's own `X-RateLimit-*` headers
/// pause it early when other processes used the budget.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// `per_minute` of 0 means unlimited.
    pub fn new(per_minute: u32) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            per_minute,
            state: Mutex::new(Bucket { tokens: per_minute as f64, refilled: Instant::now(), paused_until: None }),
        })
    }

    /// Waits for a request slot: briefly, to pace requests under the
    /// budget. A longer pause (the provider throttled us) is not waited out:
    /// the wait is returned so the job can come back later.
    pub async fn acquire(&self) -> Result<(), Duration> {
        loop {
            let wait = {
                let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                match bucket.paused_until {
                    Some(until) if until > now => until - now,
                    _ if self.per_minute == 0 => return Ok(()),
                    _ => {
                        let rate = self.per_minute as f64 / 60.0;
                        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
                        bucket.tokens = (bucket.tokens + elapsed * rate).min(self.per_minute as f64);
                        bucket.refilled = now;
                        if bucket.tokens >= 1.0 {
                            bucket.tokens -= 1.0;
                            return Ok(());
                        }
                        Duration::from_secs_f64((1.0 - bucket.tokens) / rate)
                    }
                }
            };
            if wait > MAX_PACING_WAIT {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Follows the provider's view: with no requests left, wait for the reset.
    pub fn observe(&self, remaining: Option<u64>, reset_in: Option<Duration>) {
        if let (Some(0), Some(reset_in)) = (remaining, reset_in) {
            self.pause_for(reset_in);
        }
    }

    pub fn pause_for(&self, wait: Duration) {
        let mut bucket = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + wait.min(Duration::from_secs(3600));
        if bucket.paused_until.is_none_or(|current| current < until) {
            bucket.paused_until = Some(until);
        }
    }
}

/// An HTTP client for one connection.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    limiter: Arc<RateLimiter>,
    /// Header name and value that authenticate (never logged or shown).
    auth: (String, String),
    /// Sent with every request (API version, media type).
    headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("auth_header", &self.auth.0).finish_non_exhaustive()
    }
}

/// Requests that take longer than this fail (and are retried later).
const TIMEOUT: Duration = Duration::from_secs(30);

/// Answers larger than this are refused rather than read into memory.
const MAX_BODY: usize = 32 << 20;

impl Http {
    pub fn new(limiter: Arc<RateLimiter>, auth_header: &str, secret: String) -> ProviderResult<Http> {
        // reqwest is built without a default TLS provider; ring is ours.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("mission-control/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config(format!("cannot set up HTTP: {e}")))?;
        Ok(Http { client, limiter, auth: (auth_header.to_string(), secret), headers: Vec::new() })
    }

    /// Adds a header sent with every request.
    pub fn with_header(mut self, name: &str, value: &str) -> Http {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends one request and returns the JSON answer (`Value::Null` for an
    /// empty body). Every status is mapped to a [`ProviderError`].
    pub async fn send(&self, method: Method, url: &str, body: Option<&Value>) -> ProviderResult<Value> {
        self.exchange(method, url, body, None).await.map(|answer| answer.body)
    }

    /// Sends one request with the client's default headers and, when given,
    /// `If-None-Match`; returns the answer with its headers. A 304 is an
    /// answer (`not_modified`), not an error.
    pub async fn exchange(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        if_none_match: Option<&str>,
    ) -> ProviderResult<Answer> {
        if let Err(wait) = self.limiter.acquire().await {
            return Err(ProviderError::RateLimited { until: OffsetDateTime::now_utc() + wait });
        }
        let call = request_line(&method, url);
        let mut request = self.client.request(method, url).header(&self.auth.0, &self.auth.1);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(etag) = if_none_match {
            request = request.header("if-none-match", etag);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let network = |e: reqwest::Error| ProviderError::Network { request: call.clone(), detail: describe(&e) };
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let headers = response.headers().clone();
        let now = OffsetDateTime::now_utc();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        // GitHub, Gitea and Plane say `X-RateLimit-*`; GitLab `RateLimit-*`.
        // Either way the reset is a Unix time.
        let limit_header =
            |name: &str| header(&format!("x-ratelimit-{name}")).or_else(|| header(&format!("ratelimit-{name}")));
        let remaining = limit_header("remaining").and_then(|v| v.trim().parse::<u64>().ok());
        let reset_in = limit_header("reset")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|epoch| Duration::from_secs((epoch - now.unix_timestamp()).clamp(0, 3600) as u64));
        self.limiter.observe(remaining, reset_in);
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now));
        let reset = reset_in.map(|d| now + d);
        let mut answer = Answer { status: status.as_u16(), body: Value::Null, headers };
        if status == StatusCode::NOT_MODIFIED {
            return Ok(answer);
        }
        // A 429, or a 403 GitHub marks as a rate limit, is a throttle, never a
        // refusal of the credentials. GitHub's signals (docs: "Rate limits for
        // the REST API", Exceeding the rate limit): `retry-after`; else
        // `x-ratelimit-remaining: 0` until `x-ratelimit-reset`; else (a
        // secondary limit naming no time, told by its message) at least a
        // minute.
        let forbidden = status == StatusCode::FORBIDDEN;
        let bytes = response.bytes().await.map_err(network)?;
        let says_rate_limit = forbidden && {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .map(|v| error_message(&v).to_ascii_lowercase())
                .is_some_and(|m| m.contains("rate limit") || m.contains("abuse detection"))
        };
        let throttled = status == StatusCode::TOO_MANY_REQUESTS
            || (forbidden && (remaining == Some(0) || retry_after.is_some() || says_rate_limit));
        if throttled {
            let minute = now + Duration::from_secs(60);
            let until = match retry_after {
                Some(at) => at,
                None if remaining == Some(0) => reset.unwrap_or(minute),
                // GitLab's 429 may name only its window's reset.
                None if status == StatusCode::TOO_MANY_REQUESTS => reset.unwrap_or(minute),
                None => minute,
            };
            let until = until.max(now + Duration::from_secs(1));
            self.limiter.pause_for((until - now).try_into().unwrap_or(Duration::ZERO));
            return Err(ProviderError::RateLimited { until });
        }
        if bytes.len() > MAX_BODY {
            return Err(ProviderError::Malformed(format!("{call} answered {} bytes", bytes.len())));
        }
        let json = || -> ProviderResult<Value> {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            serde_json::from_slice(&bytes)
                .map_err(|e| ProviderError::Malformed(format!("{call} answered not JSON ({e})")))
        };
        if status.is_success() {
            answer.body = json()?;
            return Ok(answer);
        }
        let body = json().ok();
        let message = body.as_ref().map(error_message).unwrap_or_else(|| "no details".into());
        let field = |name: &str| body.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_string);
        let (existing, code) = (field("id"), field("code"));
        let request = call.clone();
        // GitHub names what a fine-grained token lacks (docs: "Permissions
        // required for fine-grained personal access tokens").
        let needs =
            answer.header("x-accepted-github-permissions").map(|p| crate::domain::text::clip(p, 100).into_owned());
        Err(match status.as_u16() {
            401 => ProviderError::Unauthorized { request, status: 401 },
            403 => ProviderError::Forbidden {
                request,
                message: match needs {
                    Some(needs) => format!("{message}; give the token the permission {needs}"),
                    None => format!("{message}; check the token's permissions"),
                },
            },
            status @ (404 | 410) => ProviderError::NotFound { request, status },
            // A 409 naming the object; Plane says a taken module name with a
            // 400 and `"code": "MODULE_NAME_ALREADY_EXISTS"` instead.
            409 if existing.is_some() => ProviderError::AlreadyExists { existing: existing.unwrap_or_default() },
            400 if existing.is_some() && code.as_deref().is_some_and(|c| c.ends_with("_ALREADY_EXISTS")) => {
                ProviderError::AlreadyExists { existing: existing.unwrap_or_default() }
            }
            status if status >= 500 => ProviderError::Unavailable { request, status, message },
            status => ProviderError::Rejected { request, status, message, code },
        })
    }
}

/// A successful (or 304) answer with the headers paging and caching need.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn not_modified(&self) -> bool {
        self.status == 304
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `rel="next"` target of a `Link` header.
    pub fn next_link(&self) -> Option<String> {
        let link = self.header("link")?;
        link.split(',').find_map(|part| {
            let (target, params) = part.split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim();
                p == "rel=\"next\"" || p == "rel=next"
            });
            is_next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        })
    }
}

/// `GET /api/v1/…/work-items/`: the method and the URL's path (no host, no
/// query), for error messages.
pub fn request_line(method: &Method, url: &str) -> String {
    let path = reqwest::Url::parse(url).map(|u| u.path().to_string()).unwrap_or_else(|_| "?".into());
    format!("{method} {}", crate::domain::text::clip(&path, 200))
}

/// A transport error in one line, without the URL's query (which never holds
/// secrets here, but keeps messages short).
fn describe(error: &reqwest::Error) -> String {
    let chain = std::iter::successors(std::error::Error::source(error), |e| e.source())
        .map(|e| e.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(": ");
    let what = if error.is_timeout() {
        "timed out"
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake") {
        "the TLS handshake failed"
    } else if chain.contains("dns") || chain.contains("resolve") || chain.contains("lookup") {
        "could not resolve the host name"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    let host = error.url().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    format!("{what} to {host}: check the connection's URL and the network")
}

/// The human part of a provider's error body, clipped for one line.
fn error_message(body: &Value) -> String {
    let text = match body {
        Value::Object(map) => map
            .get("error")
            .or_else(|| map.get("detail"))
            .or_else(|| map.get("message"))
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .unwrap_or_else(|| body.to_string()),
        other => other.to_string(),
    };
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    crate::domain::text::clip(clean.trim(), 200).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_read_from_a_link_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "link",
            "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=3>; rel=\"next\", <https://api.github.com/x?page=9>; rel=\"last\""
                .parse()
                .unwrap(),
        );
        let answer = Answer { status: 200, body: Value::Null, headers };
        assert_eq!(answer.next_link().as_deref(), Some("https://api.github.com/x?page=3"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("link", "<https://h/x?page=1>; rel=\"first\", garbage".parse().unwrap());
        assert_eq!(Answer { status: 200, body: Value::Null, headers }.next_link(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_limiter_paces_requests_to_the_budget() {
        let limiter = RateLimiter::new(60);
        let started = Instant::now();
        for _ in 0..65 {
            limiter.acquire().await.unwrap();
        }
        // 60 from the full bucket, then one per second.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(4) && elapsed < Duration::from_secs(6), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_providers_headers_pause_the_limiter() {
        let limiter = RateLimiter::new(0);
        limiter.observe(Some(0), Some(Duration::from_secs(3)));
        let started = Instant::now();
        limiter.acquire().await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(3), "a short pause is waited out");
        limiter.observe(Some(5), Some(Duration::from_secs(30)));
        let started = Instant::now();
        limiter.acquire().await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(1), "requests left: no pause");
        // A long pause is handed back instead of blocking the worker.
        limiter.observe(Some(0), Some(Duration::from_secs(30)));
        let wait = limiter.acquire().await.unwrap_err();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
    }
}
