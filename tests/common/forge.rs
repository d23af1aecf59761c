//! What the fake GitHub, Gitea and GitLab servers share: one in-memory
//! repository (issues and pull requests, labels, users, workflow runs,
//! deployments, releases), a clock that never repeats, faults, a request
//! log, page slicing, and ETag / `If-None-Match` answers.
//!
//! Each provider's file (`github.rs`, `gitea.rs`, `gitlab.rs`) is a
//! [`Dialect`]: its paths, authentication, paging headers and JSON shapes
//! over this state. [`Forge`] runs a dialect on a wiremock server with one
//! catch-all responder.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use time::OffsetDateTime;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// An issue or pull request in the fake repository.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub number: i64,
    pub title: String,
    pub body: String,
    pub closed: bool,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub pull: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub deleted: bool,
    /// Moved to another repository: gone from listings, still answered by
    /// GitHub's GET (a redirect to the new home).
    pub transferred: bool,
    /// GitHub's `state_reason` as last written (`completed`, `not_planned`, `reopened`).
    pub state_reason: Option<String>,
}

/// What to do to the next request a fault selects.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status without applying the request.
    Status(u16),
    /// Answer 200 with a body that is not JSON.
    Malformed,
    /// Apply the request, then answer with this status (a lost answer).
    ApplyThenFail(u16),
    /// Answer 403 with `x-ratelimit-remaining: 0` and a reset this far ahead.
    PrimaryLimit { reset_in_secs: i64 },
    /// Answer 429 with `Retry-After`.
    RetryAfter(u64),
    /// Answer as GitHub's secondary rate limit does when it names no wait:
    /// 403, requests left in the primary budget, no `Retry-After`, and a
    /// message saying so.
    SecondaryLimit,
    /// Answer 429 as GitLab's throttle may: its `RateLimit-*` headers (the
    /// reset this far ahead, as a Unix time) and no `Retry-After`.
    GitLabLimit { reset_in_secs: i64 },
    /// Answer as usual, with GitLab's `RateLimit-*` headers saying
    /// `remaining` requests are left until a reset this far ahead.
    GitLabBudget { remaining: u64, reset_in_secs: i64 },
}

/// GitLab's rate-limit headers, for a window of 600 requests a minute.
fn gitlab_limit(reply: Reply, remaining: u64, reset_in_secs: i64) -> Reply {
    let reset = OffsetDateTime::now_utc() + time::Duration::seconds(reset_in_secs);
    let http_date = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    reply
        .header("ratelimit-limit", "600")
        .header("ratelimit-observed", (600 - remaining.min(600)).to_string())
        .header("ratelimit-remaining", remaining.to_string())
        .header("ratelimit-reset", reset.unix_timestamp().to_string())
        .header("ratelimit-resettime", reset.format(http_date).unwrap())
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub method: String,
    pub path: String,
    pub query: String,
    pub if_none_match: bool,
    pub status: u16,
}

/// The repository's state.
#[derive(Debug)]
pub struct State {
    pub items: BTreeMap<i64, Item>,
    pub next_number: i64,
    pub clock: OffsetDateTime,
    /// Label name → id.
    pub labels: Vec<(String, i64)>,
    /// Username → id.
    pub users: Vec<(String, i64)>,
    pub runs: Vec<Value>,
    pub deployments: Vec<Value>,
    /// Deployment id → statuses, newest first.
    pub statuses: HashMap<i64, Vec<Value>>,
    pub environments: Vec<Value>,
    pub releases: Vec<Value>,
    /// Whether the server has an Actions / pipelines API.
    pub actions: bool,
    /// Listings the token may not read (`actions`, `deployments`, …): a
    /// fine-grained token without that permission.
    pub denied: Vec<String>,
    pub log: Vec<Record>,
    faults: Vec<(String, String, Fault)>,
    pub token: String,
}

impl State {
    /// The next write time: one second after the last, never repeating.
    pub fn tick(&mut self) -> OffsetDateTime {
        self.clock += time::Duration::seconds(1);
        self.clock
    }

    pub fn create(&mut self, title: &str, body: &str, labels: Vec<String>, assignees: Vec<String>, pull: bool) -> i64 {
        let number = self.next_number;
        self.next_number += 1;
        let at = self.tick();
        for label in &labels {
            self.label_id(label);
        }
        self.items.insert(
            number,
            Item {
                number,
                title: title.into(),
                body: body.into(),
                closed: false,
                labels,
                assignees,
                pull,
                created_at: at,
                updated_at: at,
                deleted: false,
                transferred: false,
                state_reason: None,
            },
        );
        number
    }

    /// The live item `number`, if any.
    pub fn item(&self, number: i64) -> Option<&Item> {
        self.items.get(&number).filter(|i| !i.deleted)
    }

    pub fn item_mut(&mut self, number: i64) -> Option<&mut Item> {
        let at = self.tick();
        let item = self.items.get_mut(&number).filter(|i| !i.deleted)?;
        item.updated_at = at;
        Some(item)
    }

    /// The id of a label, made when missing (case-insensitive).
    pub fn label_id(&mut self, name: &str) -> i64 {
        if let Some((_, id)) = self.labels.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return *id;
        }
        let id = 100 + self.labels.len() as i64;
        self.labels.push((name.to_string(), id));
        id
    }

    pub fn label_name(&self, id: i64) -> Option<String> {
        self.labels.iter().find(|(_, i)| *i == id).map(|(n, _)| n.clone())
    }

    pub fn user_id(&self, name: &str) -> Option<i64> {
        self.users.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, id)| *id)
    }

    pub fn user_name(&self, id: i64) -> Option<String> {
        self.users.iter().find(|(_, i)| *i == id).map(|(n, _)| n.clone())
    }

    /// Live items, filtered and in order for a listing.
    pub fn listed(&self, pulls: bool, since: Option<OffsetDateTime>, by_updated: bool, descending: bool) -> Vec<Item> {
        let mut items: Vec<Item> = self
            .items
            .values()
            .filter(|i| !i.deleted && !i.transferred && (pulls || !i.pull) && since.is_none_or(|s| i.updated_at >= s))
            .cloned()
            .collect();
        items.sort_by_key(|i| if by_updated { (i.updated_at, i.number) } else { (i.created_at, i.number) });
        if descending {
            items.reverse();
        }
        items
    }
}

/// A reply before it becomes a wiremock template.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub raw: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: Some(body), raw: None, headers: Vec::new() }
    }

    pub fn ok(body: Value) -> Reply {
        Reply::json(200, body)
    }

    pub fn not_found() -> Reply {
        Reply::json(404, json!({"message": "Not Found"}))
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A request as a dialect sees it.
pub struct Call<'a> {
    pub method: String,
    /// Path segments after the dialect's prefix.
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: Value,
    /// The request URL without its query (for `Link` headers).
    pub base: String,
    pub raw_query: &'a str,
}

impl Call<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    pub fn number(&self, name: &str, default: i64) -> i64 {
        self.param(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    }

    pub fn time(&self, name: &str) -> Option<OffsetDateTime> {
        self.param(name).and_then(|v| OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).ok())
    }

    /// The same URL with `page` replaced.
    pub fn page_url(&self, page: i64) -> String {
        let mut parts: Vec<String> = self
            .raw_query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("page="))
            .map(str::to_string)
            .collect();
        parts.push(format!("page={page}"));
        format!("{}?{}", self.base, parts.join("&"))
    }
}

/// One page of `items` (1-based `page`), and whether more follow.
pub fn page<T: Clone>(items: &[T], page: i64, per_page: i64) -> (Vec<T>, bool) {
    let per_page = per_page.clamp(1, 100) as usize;
    let start = (page.max(1) as usize - 1) * per_page;
    let slice = items.iter().skip(start).take(per_page).cloned().collect();
    (slice, start + per_page < items.len())
}

pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// A provider's API over the shared state.
pub trait Dialect: Send + Sync + 'static {
    /// The path prefix of the repository's API (`/repos/acme/app`).
    fn prefix(&self) -> String;
    /// Whether the request carries the token as this provider expects.
    fn authorized(&self, request: &Request, token: &str) -> bool;
    /// Answers a request addressed below the prefix, or elsewhere (`segments`
    /// then hold the full path with `outside` set).
    fn serve(&self, state: &mut State, call: &Call, outside: bool) -> Reply;
    /// Whether GET answers carry an ETag and honour `If-None-Match`.
    fn etags(&self) -> bool;
}

struct Responder<D: Dialect> {
    state: Arc<Mutex<State>>,
    dialect: Arc<D>,
    /// The server's own address, for URLs in answers.
    origin: String,
}

fn etag_of(reply: &Reply) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    reply.body.as_ref().map(Value::to_string).hash(&mut hasher);
    for (name, value) in &reply.headers {
        if name.eq_ignore_ascii_case("link") {
            value.hash(&mut hasher);
        }
    }
    format!("W/\"{:016x}\"", hasher.finish())
}

impl<D: Dialect> Respond for Responder<D> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let method = request.method.as_str().to_ascii_uppercase();
        let path = request.url.path().to_string();
        let if_none_match = request.headers.get("if-none-match").and_then(|v| v.to_str().ok()).map(str::to_string);
        state.log.push(Record {
            method: method.clone(),
            path: path.clone(),
            query: request.url.query().unwrap_or("").to_string(),
            if_none_match: if_none_match.is_some(),
            status: 0,
        });
        let reply = self.answer(&mut state, request, &method, &path, if_none_match.as_deref());
        if let Some(last) = state.log.last_mut() {
            last.status = reply.status;
        }
        let mut template = ResponseTemplate::new(reply.status);
        if let Some(raw) = reply.raw {
            template = template.set_body_raw(raw.into_bytes(), "application/json");
        } else if let Some(body) = reply.body {
            template = template.set_body_json(body);
        }
        for (name, value) in reply.headers {
            template = template.insert_header(name.as_str(), value.as_str());
        }
        template
    }
}

impl<D: Dialect> Responder<D> {
    fn answer(&self, state: &mut State, request: &Request, method: &str, path: &str, inm: Option<&str>) -> Reply {
        if !self.dialect.authorized(request, &state.token) {
            return Reply::json(401, json!({"message": "Bad credentials"}));
        }
        let fault = state
            .faults
            .iter()
            .position(|(m, p, _)| (m == "*" || m == method) && path.contains(p.as_str()))
            .map(|k| state.faults.remove(k).2);
        match &fault {
            Some(Fault::Status(status)) => return Reply::json(*status, json!({"message": "injected failure"})),
            Some(Fault::Malformed) => {
                return Reply { status: 200, body: None, raw: Some("[{\"number\": ".into()), headers: vec![] };
            }
            Some(Fault::PrimaryLimit { reset_in_secs }) => {
                let reset = OffsetDateTime::now_utc().unix_timestamp() + reset_in_secs;
                return Reply::json(403, json!({"message": "API rate limit exceeded"}))
                    .header("x-ratelimit-remaining", "0")
                    .header("x-ratelimit-reset", reset.to_string());
            }
            Some(Fault::SecondaryLimit) => {
                // github docs: rest/using-the-rest-api/rate-limits-for-the-rest-api.md "Exceeding the rate limit"
                let reset = OffsetDateTime::now_utc().unix_timestamp() + 3000;
                return Reply::json(
                    403,
                    json!({
                        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
                        "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"
                    }),
                )
                .header("x-ratelimit-limit", "5000")
                .header("x-ratelimit-remaining", "4990")
                .header("x-ratelimit-reset", reset.to_string());
            }
            Some(Fault::RetryAfter(secs)) => {
                return Reply::json(429, json!({"message": "slow down"})).header("retry-after", secs.to_string());
            }
            Some(Fault::GitLabLimit { reset_in_secs }) => {
                return gitlab_limit(Reply::json(429, json!({"message": "Retry later"})), 0, *reset_in_secs);
            }
            _ => {}
        }
        let raw_query = request.url.query().unwrap_or("");
        let query: HashMap<String, String> =
            request.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let base = format!("{}{}", self.origin, request.url.path());
        let prefix = self.dialect.prefix();
        let (rest, outside) = match path.strip_prefix(&prefix) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => (rest.to_string(), false),
            _ => (path.to_string(), true),
        };
        let call = Call {
            method: method.to_string(),
            segments: rest.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect(),
            query,
            body,
            base,
            raw_query,
        };
        let mut reply = self.dialect.serve(state, &call, outside);
        match fault {
            Some(Fault::ApplyThenFail(status)) => {
                return Reply::json(status, json!({"message": "the answer was lost"}));
            }
            Some(Fault::GitLabBudget { remaining, reset_in_secs }) => {
                reply = gitlab_limit(reply, remaining, reset_in_secs);
            }
            _ => {}
        }
        if self.dialect.etags() && method == "GET" && reply.status == 200 {
            let etag = etag_of(&reply);
            if inm == Some(etag.as_str()) {
                return Reply { status: 304, body: None, raw: None, headers: vec![("etag".into(), etag)] };
            }
            reply.headers.push(("etag".into(), etag));
        }
        reply
    }
}

/// A fake forge running one dialect.
pub struct Forge<D: Dialect> {
    server: MockServer,
    state: Arc<Mutex<State>>,
    pub dialect: Arc<D>,
}

impl<D: Dialect> Forge<D> {
    pub async fn start(dialect: D, token: &str) -> Forge<D> {
        let state = Arc::new(Mutex::new(State {
            items: BTreeMap::new(),
            next_number: 1,
            clock: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::days(1),
            labels: Vec::new(),
            users: vec![("ana".into(), 1), ("zed".into(), 2), ("bo".into(), 3)],
            runs: Vec::new(),
            deployments: Vec::new(),
            statuses: HashMap::new(),
            environments: Vec::new(),
            releases: Vec::new(),
            actions: true,
            denied: Vec::new(),
            log: Vec::new(),
            faults: Vec::new(),
            token: token.to_string(),
        }));
        let dialect = Arc::new(dialect);
        let server = MockServer::start().await;
        let responder = Responder { state: state.clone(), dialect: dialect.clone(), origin: server.uri() };
        Mock::given(any()).respond_with(responder).mount(&server).await;
        Forge { server, state, dialect }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// `count` open issues titled `Issue N`, some labelled, every third assigned to ana.
    pub fn seed(&self, count: usize) -> Vec<i64> {
        let mut state = self.state();
        (0..count)
            .map(|k| {
                let labels = if k % 2 == 0 { vec!["bug".to_string()] } else { vec![] };
                let assignees = if k % 3 == 0 { vec!["ana".to_string()] } else { vec![] };
                state.create(&format!("Issue {}", k + 1), &format!("Body of issue {}", k + 1), labels, assignees, false)
            })
            .collect()
    }

    pub fn add_issue(&self, title: &str, body: &str) -> i64 {
        self.state().create(title, body, vec![], vec![], false)
    }

    pub fn add_pull(&self, title: &str) -> i64 {
        self.state().create(title, "a change", vec![], vec![], true)
    }

    pub fn item(&self, number: i64) -> Option<Item> {
        self.state().item(number).cloned()
    }

    /// Live issues (not pull requests).
    pub fn issues(&self) -> Vec<Item> {
        self.state().items.values().filter(|i| !i.deleted && !i.pull).cloned().collect()
    }

    pub fn edit(&self, number: i64, change: impl FnOnce(&mut Item)) {
        let mut state = self.state();
        let item = state.item_mut(number).expect("the issue exists");
        change(item);
    }

    pub fn transfer(&self, number: i64) {
        self.state().items.get_mut(&number).expect("the issue exists").transferred = true;
    }

    pub fn delete(&self, number: i64) {
        self.state().items.get_mut(&number).expect("the issue exists").deleted = true;
    }

    pub fn fail_next(&self, method: &str, path_contains: &str, fault: Fault) {
        self.state().faults.push((method.to_string(), path_contains.to_string(), fault));
    }

    pub fn requests(&self) -> Vec<Record> {
        self.state().log.clone()
    }

    pub fn reset_log(&self) {
        self.state().log.clear();
    }

    /// Requests with this method whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.state().log.iter().filter(|r| r.method == method && r.path.contains(path_contains)).count()
    }
}
