//! A fake Plane server for sync tests and benchmarks.
//!
//! [`FakePlane`] is a stateful, in-memory stand-in for one project of a
//! self-hosted Plane (Community Edition) speaking its public REST API v1:
//! `{url}/api/v1/workspaces/{slug}/projects/{project_id}/…`, authenticated by
//! the `X-API-Key` header. It runs on a wiremock [`MockServer`] (random port,
//! its own thread) with one catch-all mock whose responder routes and answers
//! every request from shared state, so the state can also be read and edited
//! directly from the test, as a human working in Plane's UI would.
//!
//! What it serves (all paths relative to the project and ending in `/`):
//!
//! | path | methods |
//! |---|---|
//! | `` (the project itself) | GET |
//! | `work-items/` | GET (list; or `?external_id=&external_source=` lookup), POST |
//! | `work-items/{id}/` | GET, PATCH, DELETE |
//! | `states/`, `labels/` | GET (list), POST |
//! | `states/{id}/`, `labels/{id}/` | GET |
//! | `members/` | GET (a plain array, not a page) |
//! | `cycles/`, `modules/` | GET (list), POST |
//! | `cycles/{id}/`, `modules/{id}/` | GET, PATCH |
//! | `cycles/{id}/cycle-issues/`, `modules/{id}/module-issues/` | GET (page of work items), POST `{"issues": [..]}` |
//! | `cycles/{id}/cycle-issues/{item}/`, `modules/{id}/module-issues/{item}/` | DELETE |
//!
//! Anything else is a 404 (so `pages/` reports "no pages API", as on CE); a
//! known path with another method is a 405.
//!
//! Lists are Plane's offset pages: `per_page` (default and at most 1000) and
//! `cursor=per_page:page:is_prev`, answered in Plane's envelope
//! (`next_cursor`, `next_page_results`, `total_count`, `results`, …).
//! Work-item lists take `order_by` (`created_at`, `updated_at`,
//! `sequence_id`, each optionally with `-`); the default is Plane's
//! `-created_at` (newest first). Cycles, modules and labels list newest
//! first; states by `sequence`; cycle and module members by creation.
//!
//! Every write stamps `updated_at` from a clock that never repeats or goes
//! back, so `updated_at` is strictly increasing across all writes.
//!
//! Faults ([`Fault`], [`FakePlane::fail_next`]), a fixed-window rate limit
//! ([`FakePlane::set_rate_limit`]) and a request log
//! ([`FakePlane::requests`]) let tests exercise the unhappy paths.
//!
//! Not reflected anywhere, as in Plane: adding a work item to or removing it
//! from a cycle or module does not change the item's (or the cycle's or
//! module's) `updated_at`, so an `-updated_at` poll does not see membership
//! changes; read the membership lists for those.
//!
//! Benchmarks can use this file too: `#[path = "../tests/common/plane.rs"] mod plane;`.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;
use uuid::Uuid;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The workspace slug a [`FakePlane::start`] server answers for.
pub const DEFAULT_WORKSPACE: &str = "acme";
/// The API key a [`FakePlane::start`] server accepts.
pub const DEFAULT_TOKEN: &str = "plane_api_fake_token";
/// The project identifier (`PRJ` in `PRJ-12`) a default server reports.
pub const DEFAULT_IDENTIFIER: &str = "FAKE";

const PRIORITIES: [&str; 5] = ["urgent", "high", "medium", "low", "none"];
const STATE_GROUPS: [&str; 5] = ["backlog", "unstarted", "started", "completed", "cancelled"];
const MODULE_STATUSES: [&str; 6] = ["backlog", "planned", "in-progress", "paused", "completed", "cancelled"];
const MAX_PER_PAGE: i64 = 1000;
// plane: apps/api/plane/utils/paginator.py BasePaginator.paginate (default_per_page=1000, max_per_page=1000)
const DEFAULT_PER_PAGE: i64 = 1000;
const NOT_FOUND: &str = "The required object does not exist.";

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// What to do to the next request a [`Matcher`] selects (see [`FakePlane::fail_next`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and a JSON error body, without applying the request.
    Status(u16),
    /// Answer 429 with `Retry-After: retry_after_secs`, without applying the request.
    RateLimited { retry_after_secs: u64 },
    /// Answer 200 with a body that is not JSON (`{"results": [`), without applying.
    Malformed,
    /// Apply the request as usual, then hold the answer back this long.
    /// The change is made when the request arrives, so a client that times out
    /// does not know whether it happened (like a slow real server).
    Delay(Duration),
    /// Apply the request, then answer with this status and a JSON error body
    /// instead of the real answer (whatever it was): a create whose answer
    /// was lost.
    ApplyThenFail(u16),
}

/// Selects requests by HTTP method and path pattern.
///
/// The pattern is matched segment by segment against the path relative to
/// the project (`work-items/…`; the full path for requests outside the
/// project). Leading and trailing slashes do not matter. A segment `*` or
/// `{anything}` matches any one segment; a final `**` matches any rest.
/// `"work-items"` selects list and create, `"work-items/{id}"` one item,
/// `"cycles/*/cycle-issues"` membership of any cycle, `"**"` everything.
/// The method is case-insensitive; `*` means any method.
///
/// Build one with [`Matcher::new`], [`Matcher::any`], a `(method, pattern)`
/// tuple or a `"METHOD pattern"` string (a string without a space is a
/// pattern for any method).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    method: Option<String>,
    pattern: Vec<String>,
}

impl Matcher {
    /// `method` such as `"POST"` (or `"*"`), `pattern` such as `"work-items/{id}"`.
    pub fn new(method: &str, pattern: &str) -> Matcher {
        let method = (method != "*").then(|| method.to_ascii_uppercase());
        let pattern = pattern.trim_matches('/');
        let pattern = if pattern.is_empty() { Vec::new() } else { pattern.split('/').map(str::to_string).collect() };
        Matcher { method, pattern }
    }

    /// Every request.
    pub fn any() -> Matcher {
        Matcher::new("*", "**")
    }

    fn matches(&self, method: &str, segments: &[&str]) -> bool {
        if self.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            return false;
        }
        for (k, p) in self.pattern.iter().enumerate() {
            if p == "**" {
                return true;
            }
            let Some(segment) = segments.get(k) else { return false };
            let wildcard = p == "*" || (p.starts_with('{') && p.ends_with('}'));
            if !wildcard && p != segment {
                return false;
            }
        }
        self.pattern.len() == segments.len()
    }
}

impl From<(&str, &str)> for Matcher {
    fn from((method, pattern): (&str, &str)) -> Matcher {
        Matcher::new(method, pattern)
    }
}

impl From<&str> for Matcher {
    /// `"PATCH work-items/{id}"`, or just a pattern for any method.
    fn from(spec: &str) -> Matcher {
        match spec.trim().split_once(' ') {
            Some((method, pattern)) => Matcher::new(method, pattern.trim()),
            None => Matcher::new("*", spec),
        }
    }
}

/// One request the server received, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// The full path, e.g. `/api/v1/workspaces/acme/projects/…/work-items/`.
    pub path: String,
    /// The raw query string without `?` (empty when there is none).
    pub query: String,
    /// The status the server answered with.
    pub status: u16,
}

/// Configures a [`FakePlane`] before it starts; see [`FakePlane::builder`].
#[derive(Debug, Clone)]
pub struct FakePlaneBuilder {
    workspace: String,
    project_id: String,
    identifier: String,
    token: String,
    members: Vec<(String, String)>,
    labels: Vec<String>,
    rate_limit: Option<(u32, Duration)>,
    zones: (String, String),
}

impl FakePlaneBuilder {
    /// The workspace slug (default [`DEFAULT_WORKSPACE`]).
    pub fn workspace(mut self, slug: &str) -> Self {
        self.workspace = slug.to_string();
        self
    }

    /// The project id, a uuid (default: a random one).
    pub fn project_id(mut self, id: &str) -> Self {
        Uuid::parse_str(id).expect("a Plane project id is a uuid");
        self.project_id = id.to_string();
        self
    }

    /// The project identifier, `PRJ` in `PRJ-12` (default [`DEFAULT_IDENTIFIER`]).
    pub fn identifier(mut self, identifier: &str) -> Self {
        self.identifier = identifier.to_string();
        self
    }

    /// The one API key the server accepts (default [`DEFAULT_TOKEN`]).
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_string();
        self
    }

    /// A project member to seed (see [`FakePlane::add_member`]).
    pub fn member(mut self, display_name: &str, email: &str) -> Self {
        self.members.push((display_name.to_string(), email.to_string()));
        self
    }

    /// A label to seed.
    pub fn label(mut self, name: &str) -> Self {
        self.labels.push(name.to_string());
        self
    }

    /// Starts in rate-limit mode (see [`FakePlane::set_rate_limit`]).
    pub fn rate_limit(mut self, requests: u32, per: Duration) -> Self {
        self.rate_limit = Some((requests, per));
        self
    }

    /// Starts the server on a random local port.
    /// The project's time zone (cycle days are its days) and the token
    /// user's (every timestamp is rendered in it), as Plane does; default
    /// both UTC. Only zones without daylight saving time are known here.
    pub fn time_zones(mut self, project: &str, user: &str) -> Self {
        assert!(zone_offset(project).is_some() && zone_offset(user).is_some(), "a zone the fake knows");
        self.zones = (project.to_string(), user.to_string());
        self
    }

    pub async fn start(self) -> FakePlane {
        let project = Uuid::parse_str(&self.project_id).expect("a Plane project id is a uuid");
        let mut state = State::new(&self.workspace, project, &self.identifier, &self.token);
        state.zones = self.zones.clone();
        for (display_name, email) in &self.members {
            state.add_member(display_name, email);
        }
        for name in &self.labels {
            state.create_label(&obj(json!({ "name": name }))).unwrap_or_else(|r| r.panic("a builder label"));
        }
        if let Some((requests, per)) = self.rate_limit {
            state.rate = Some(RateLimit::new(requests, per));
        }
        let state = Arc::new(Mutex::new(state));
        // Recording off: the fake keeps its own lighter log, and benchmarks
        // send tens of thousands of requests.
        let server = MockServer::builder().disable_request_recording().start().await;
        Mock::given(any()).respond_with(Responder { state: state.clone() }).mount(&server).await;
        FakePlane { server, state, workspace: self.workspace, project_id: self.project_id, token: self.token }
    }
}

/// A running fake Plane; stops when dropped. All methods but the
/// constructors are synchronous and safe to call while requests are in flight.
pub struct FakePlane {
    server: MockServer,
    state: Arc<Mutex<State>>,
    workspace: String,
    project_id: String,
    token: String,
}

impl FakePlane {
    /// A server with the defaults: workspace [`DEFAULT_WORKSPACE`], a random
    /// project id, token [`DEFAULT_TOKEN`], the five default states, no
    /// members, no labels, no rate limit.
    pub async fn start() -> FakePlane {
        FakePlane::builder().start().await
    }

    /// A builder with the defaults of [`FakePlane::start`].
    pub fn builder() -> FakePlaneBuilder {
        FakePlaneBuilder {
            workspace: DEFAULT_WORKSPACE.to_string(),
            project_id: Uuid::new_v4().to_string(),
            identifier: DEFAULT_IDENTIFIER.to_string(),
            token: DEFAULT_TOKEN.to_string(),
            members: Vec::new(),
            labels: Vec::new(),
            rate_limit: None,
            zones: ("UTC".to_string(), "UTC".to_string()),
        }
    }

    /// An HTTP client that works with the fake (installs the ring TLS
    /// provider that this crate's reqwest build needs before any client).
    pub fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().build().expect("an HTTP client")
    }

    /// The instance URL, e.g. `http://127.0.0.1:PORT` (no trailing slash):
    /// what a connection's base URL would be.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// The project's API root, ending in `/`:
    /// `{url}/api/v1/workspaces/{slug}/projects/{project_id}/`.
    pub fn project_url(&self) -> String {
        format!("{}/api/v1/workspaces/{}/projects/{}/", self.url(), self.workspace, self.project_id)
    }

    /// [`FakePlane::project_url`] joined with `path` (e.g. `"work-items/"`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.project_url(), path.trim_start_matches('/'))
    }

    /// The workspace slug.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// The project id (a uuid string).
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The API key the server accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // --- seeding and direct edits ------------------------------------------

    /// Adds a project member and returns its id. The display name is split
    /// on the first space into first and last name.
    pub fn add_member(&self, display_name: &str, email: &str) -> String {
        self.lock().add_member(display_name, email).to_string()
    }

    /// Project members as `GET members/` shows them.
    pub fn members(&self) -> Vec<Value> {
        let st = self.lock();
        st.members.iter().map(Member::json).collect()
    }

    /// Adds a label and returns its id; panics if the name is taken.
    pub fn add_label(&self, name: &str) -> String {
        let mut st = self.lock();
        let label = st.create_label(&obj(json!({ "name": name }))).unwrap_or_else(|r| r.panic("add_label"));
        label["id"].as_str().unwrap().to_string()
    }

    /// The id of the label with this name.
    pub fn label_id(&self, name: &str) -> Option<String> {
        self.lock().labels.iter().find(|l| l.name == name).map(|l| l.id.to_string())
    }

    /// Labels in creation order.
    pub fn labels(&self) -> Vec<Value> {
        let st = self.lock();
        st.labels.iter().map(|l| st.label_json(l)).collect()
    }

    /// The id of the state with this name (case-insensitive), else of the
    /// first state (by sequence) in this group (`backlog`, `unstarted`,
    /// `started`, `completed`, `cancelled`). Panics when there is none.
    pub fn state_id(&self, group_or_name: &str) -> String {
        let st = self.lock();
        let by_name = st.states.iter().find(|s| s.name.eq_ignore_ascii_case(group_or_name));
        let by_group =
            || st.states.iter().filter(|s| s.group == group_or_name).min_by(|a, b| a.sequence.total_cmp(&b.sequence));
        by_name
            .or_else(by_group)
            .map(|s| s.id.to_string())
            .unwrap_or_else(|| panic!("the fake Plane has no state named or grouped {group_or_name:?}"))
    }

    /// Adds a workflow state and returns its id; panics if the name is taken
    /// or the group is not one of Plane's five.
    pub fn add_state(&self, name: &str, group: &str) -> String {
        let mut st = self.lock();
        let state =
            st.create_state(&obj(json!({ "name": name, "group": group }))).unwrap_or_else(|r| r.panic("add_state"));
        state["id"].as_str().unwrap().to_string()
    }

    /// States by sequence, as `GET states/` shows them.
    pub fn states(&self) -> Vec<Value> {
        let st = self.lock();
        st.sorted_states().into_iter().map(|s| st.state_json(s)).collect()
    }

    /// Creates a work item from the same JSON `POST work-items/` takes and
    /// returns it; panics on anything the API would refuse (400 or 409).
    pub fn create_item(&self, body: Value) -> Value {
        self.lock().create_item(&obj(body)).unwrap_or_else(|r| r.panic("create_item"))
    }

    /// Seeds `count` work items quickly (no validation round trip) with
    /// varied names, descriptions, priorities, states, dates, and, when
    /// there are members or labels, assignees and labels. Returns their ids
    /// in creation order. No external pair is set (they were made in Plane).
    pub fn seed_items(&self, count: usize) -> Vec<String> {
        self.lock().seed_items(count)
    }

    /// Edits a work item as a human would (same JSON as `PATCH`): applies
    /// only the given fields, bumps `updated_at`, returns the item. Panics
    /// on an unknown id or a patch the API would refuse.
    pub fn edit_item(&self, id: &str, patch: Value) -> Value {
        let id = Uuid::parse_str(id).expect("a work item id is a uuid");
        self.lock().patch_item(id, &obj(patch)).unwrap_or_else(|r| r.panic("edit_item"))
    }

    /// Deletes a work item (and its cycle and module memberships); false
    /// when there was none.
    pub fn delete_item(&self, id: &str) -> bool {
        Uuid::parse_str(id).is_ok_and(|id| self.lock().delete_item(id))
    }

    /// One work item as the API shows it.
    pub fn item(&self, id: &str) -> Option<Value> {
        let st = self.lock();
        let id = Uuid::parse_str(id).ok()?;
        st.item_index.get(&id).map(|&k| st.item_json(&st.items[k]))
    }

    /// Archives a work item as Plane's app does: from then on the public
    /// API lists it nowhere and answers 404 for it (`Issue.issue_objects`
    /// excludes `archived_at` set; `plane/db/models/issue.py` IssueManager).
    pub fn archive_item(&self, id: &str) {
        let id = Uuid::parse_str(id).expect("a work item id is a uuid");
        let mut st = self.lock();
        let at = st.tick();
        let k = st.item_index[&id];
        st.items[k].archived_at = Some(at);
        st.items[k].updated_at = at;
        st.items_version += 1;
    }

    /// Un-archives a work item (its `updated_at` moves, as the model's save does).
    pub fn unarchive_item(&self, id: &str) {
        let id = Uuid::parse_str(id).expect("a work item id is a uuid");
        let mut st = self.lock();
        let at = st.tick();
        let k = st.item_index[&id];
        st.items[k].archived_at = None;
        st.items[k].updated_at = at;
        st.items_version += 1;
    }

    /// All work items in creation order.
    pub fn items(&self) -> Vec<Value> {
        let st = self.lock();
        st.items.iter().map(|it| st.item_json(it)).collect()
    }

    /// How many work items exist.
    pub fn item_count(&self) -> usize {
        self.lock().items.len()
    }

    /// The work item with this external pair.
    pub fn find_by_external(&self, source: &str, external_id: &str) -> Option<Value> {
        let st = self.lock();
        let id = st.item_ext.get(&(source.to_string(), external_id.to_string()))?;
        Some(st.item_json(&st.items[st.item_index[id]]))
    }

    /// Creates a cycle from the same JSON `POST cycles/` takes; panics on
    /// anything the API would refuse.
    pub fn create_cycle(&self, body: Value) -> Value {
        self.lock().create_cycle(&obj(body)).unwrap_or_else(|r| r.panic("create_cycle"))
    }

    /// Edits a cycle as `PATCH cycles/{id}/` would (bumps its `updated_at`).
    pub fn edit_cycle(&self, id: &str, patch: Value) -> Value {
        let id = Uuid::parse_str(id).expect("a cycle id is a uuid");
        self.lock().patch_cycle(id, &obj(patch)).unwrap_or_else(|r| r.panic("edit_cycle"))
    }

    /// One cycle as the API shows it.
    pub fn cycle(&self, id: &str) -> Option<Value> {
        let st = self.lock();
        let id = Uuid::parse_str(id).ok()?;
        st.cycles.iter().find(|c| c.id == id).map(|c| st.cycle_json(c))
    }

    /// All cycles in creation order.
    pub fn cycles(&self) -> Vec<Value> {
        let st = self.lock();
        st.cycles.iter().map(|c| st.cycle_json(c)).collect()
    }

    /// Puts work items in a cycle (moving them out of any other), as
    /// `POST cycles/{id}/cycle-issues/` would; unknown item ids are ignored.
    /// Panics on an unknown cycle or a completed one.
    pub fn add_to_cycle(&self, cycle_id: &str, item_ids: &[&str]) {
        let id = Uuid::parse_str(cycle_id).expect("a cycle id is a uuid");
        let body = obj(json!({ "issues": item_ids }));
        self.lock().add_cycle_issues(id, &body).unwrap_or_else(|r| r.panic("add_to_cycle"));
    }

    /// Takes a work item out of a cycle; false when it was not in it.
    pub fn remove_from_cycle(&self, cycle_id: &str, item_id: &str) -> bool {
        let (Ok(cycle), Ok(item)) = (Uuid::parse_str(cycle_id), Uuid::parse_str(item_id)) else { return false };
        self.lock().remove_cycle_issue(cycle, item)
    }

    /// Ids of the work items in a cycle, in the order they were added.
    pub fn cycle_items(&self, cycle_id: &str) -> Vec<String> {
        let st = self.lock();
        let Ok(id) = Uuid::parse_str(cycle_id) else { return Vec::new() };
        st.cycles
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.issues.iter().map(Uuid::to_string).collect())
            .unwrap_or_default()
    }

    /// The cycle a work item is in.
    pub fn cycle_of(&self, item_id: &str) -> Option<String> {
        let id = Uuid::parse_str(item_id).ok()?;
        self.lock().item_cycle.get(&id).map(Uuid::to_string)
    }

    /// Creates a module from the same JSON `POST modules/` takes; panics on
    /// anything the API would refuse.
    pub fn create_module(&self, body: Value) -> Value {
        self.lock().create_module(&obj(body)).unwrap_or_else(|r| r.panic("create_module"))
    }

    /// Edits a module as `PATCH modules/{id}/` would (bumps its `updated_at`).
    pub fn edit_module(&self, id: &str, patch: Value) -> Value {
        let id = Uuid::parse_str(id).expect("a module id is a uuid");
        self.lock().patch_module(id, &obj(patch)).unwrap_or_else(|r| r.panic("edit_module"))
    }

    /// One module as the API shows it.
    pub fn module(&self, id: &str) -> Option<Value> {
        let st = self.lock();
        let id = Uuid::parse_str(id).ok()?;
        st.modules.iter().find(|m| m.id == id).map(|m| st.module_json(m))
    }

    /// All modules in creation order.
    pub fn modules(&self) -> Vec<Value> {
        let st = self.lock();
        st.modules.iter().map(|m| st.module_json(m)).collect()
    }

    /// Adds work items to a module (they stay in their other modules);
    /// unknown item ids are ignored. Panics on an unknown module.
    pub fn add_to_module(&self, module_id: &str, item_ids: &[&str]) {
        let id = Uuid::parse_str(module_id).expect("a module id is a uuid");
        let body = obj(json!({ "issues": item_ids }));
        self.lock().add_module_issues(id, &body).unwrap_or_else(|r| r.panic("add_to_module"));
    }

    /// Takes a work item out of a module; false when it was not in it.
    pub fn remove_from_module(&self, module_id: &str, item_id: &str) -> bool {
        let (Ok(module), Ok(item)) = (Uuid::parse_str(module_id), Uuid::parse_str(item_id)) else { return false };
        self.lock().remove_module_issue(module, item)
    }

    /// Ids of the work items in a module, in the order they were added.
    pub fn module_items(&self, module_id: &str) -> Vec<String> {
        let st = self.lock();
        let Ok(id) = Uuid::parse_str(module_id) else { return Vec::new() };
        st.modules
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.issues.iter().map(Uuid::to_string).collect())
            .unwrap_or_default()
    }

    /// Moves the fake's clock forward: later writes are stamped at least
    /// this much later than real time (and "today" moves too).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset_us += by.as_micros() as i64;
    }

    // --- faults, rate limit, log -------------------------------------------

    /// Queues a fault for the next request `matcher` selects. Faults are
    /// tried in the order queued; each is used up by one request. Requests
    /// refused before (401, or 429 from the rate limit) use none.
    pub fn fail_next(&self, matcher: impl Into<Matcher>, fault: Fault) {
        self.lock().faults.push_back((matcher.into(), fault));
    }

    /// Queues the same fault for the next `times` selected requests.
    pub fn fail_times(&self, matcher: impl Into<Matcher>, fault: Fault, times: usize) {
        let matcher = matcher.into();
        let mut st = self.lock();
        for _ in 0..times {
            st.faults.push_back((matcher.clone(), fault.clone()));
        }
    }

    /// Faults queued and not yet used.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Turns on rate limiting: each token may make `requests` requests per
    /// fixed window of `per`, starting at its first request; beyond that the
    /// server answers 429 until the window ends. Replaces any earlier limit
    /// and starts fresh windows.
    pub fn set_rate_limit(&self, requests: u32, per: Duration) {
        self.lock().rate = Some(RateLimit::new(requests, per));
    }

    /// Turns rate limiting off (no more `X-RateLimit-*` headers).
    pub fn clear_rate_limit(&self) {
        self.lock().rate = None;
    }

    /// How many 429 answers were served (rate limit and faults alike).
    pub fn throttled(&self) -> usize {
        self.lock().throttled
    }

    /// Every request received since the start or the last [`FakePlane::reset_log`].
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// How many logged requests had this method (case-insensitive; `*` for
    /// any) and a path containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.lock()
            .log
            .iter()
            .filter(|r| (method == "*" || r.method.eq_ignore_ascii_case(method)) && r.path.contains(path_contains))
            .count()
    }

    /// Forgets the request log (not the throttle count).
    pub fn reset_log(&self) {
        self.lock().log.clear();
    }
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

/// Microseconds since the Unix epoch.
type Micros = i64;

struct WfState {
    id: Uuid,
    name: String,
    color: String,
    group: String,
    sequence: f64,
    default: bool,
    created_at: Micros,
    updated_at: Micros,
}

struct Label {
    id: Uuid,
    name: String,
    color: String,
    sort_order: f64,
    external_source: Option<String>,
    external_id: Option<String>,
    created_at: Micros,
    updated_at: Micros,
}

struct Member {
    id: Uuid,
    display_name: String,
    first_name: String,
    last_name: String,
    email: String,
}

impl Member {
    fn json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "email": self.email,
            "avatar": "",
            "avatar_url": null,
            "display_name": self.display_name,
        })
    }
}

struct Item {
    id: Uuid,
    sequence_id: i64,
    name: String,
    description_html: String,
    state: Uuid,
    priority: String,
    start_date: Option<String>,
    target_date: Option<String>,
    assignees: Vec<Uuid>,
    labels: Vec<Uuid>,
    parent: Option<Uuid>,
    external_source: Option<String>,
    external_id: Option<String>,
    sort_order: f64,
    created_at: Micros,
    updated_at: Micros,
    completed_at: Option<Micros>,
    archived_at: Option<Micros>,
}

struct Cycle {
    id: Uuid,
    name: String,
    description: String,
    start_date: Option<String>,
    end_date: Option<String>,
    external_source: Option<String>,
    external_id: Option<String>,
    sort_order: f64,
    created_at: Micros,
    updated_at: Micros,
    /// Work items, in the order added.
    issues: Vec<Uuid>,
}

struct Module {
    id: Uuid,
    name: String,
    description: String,
    status: String,
    start_date: Option<String>,
    target_date: Option<String>,
    external_source: Option<String>,
    external_id: Option<String>,
    sort_order: f64,
    created_at: Micros,
    updated_at: Micros,
    /// Work items, in the order added.
    issues: Vec<Uuid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    CreatedAsc,
    CreatedDesc,
    UpdatedAsc,
    UpdatedDesc,
}

impl Order {
    fn parse(value: Option<&str>, default: Order) -> Result<Order, Reply> {
        Ok(match value {
            None | Some("") => default,
            Some("created_at" | "sequence_id") => Order::CreatedAsc,
            Some("-created_at" | "-sequence_id") => Order::CreatedDesc,
            Some("updated_at") => Order::UpdatedAsc,
            Some("-updated_at") => Order::UpdatedDesc,
            Some(other) => {
                return Err(Reply::error(400, json!({ "error": format!("The fake Plane cannot order by {other:?}") })));
            }
        })
    }
}

struct RateLimit {
    limit: u32,
    per: Duration,
    windows: HashMap<String, Window>,
}

struct Window {
    start: Instant,
    admitted: u32,
}

impl RateLimit {
    fn new(limit: u32, per: Duration) -> RateLimit {
        assert!(!per.is_zero(), "a rate-limit window must be longer than zero");
        RateLimit { limit, per, windows: HashMap::new() }
    }

    /// Counts a request for `key`: whether it is admitted, the headers to
    /// send, and the seconds until the window resets.
    fn check(&mut self, key: &str) -> (bool, Vec<(&'static str, String)>, u64) {
        let now = Instant::now();
        let window = self.windows.entry(key.to_string()).or_insert(Window { start: now, admitted: 0 });
        if now.duration_since(window.start) >= self.per {
            *window = Window { start: now, admitted: 0 };
        }
        let admitted = window.admitted < self.limit;
        if admitted {
            window.admitted += 1;
        }
        let left = (window.start + self.per).saturating_duration_since(now);
        let left_secs = left.as_secs_f64().ceil().max(1.0) as u64;
        let epoch_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let reset = (epoch_now + left).as_secs_f64().ceil() as u64;
        let headers = vec![
            ("X-RateLimit-Remaining", (self.limit - window.admitted).to_string()),
            ("X-RateLimit-Reset", reset.to_string()),
        ];
        (admitted, headers, left_secs)
    }
}

struct State {
    workspace: String,
    workspace_id: Uuid,
    project_id: Uuid,
    project_name: String,
    identifier: String,
    token: String,
    created_at: Micros,
    last_stamp: Micros,
    clock_offset_us: i64,
    states: Vec<WfState>,
    labels: Vec<Label>,
    members: Vec<Member>,
    items: Vec<Item>,
    item_index: HashMap<Uuid, usize>,
    item_ext: HashMap<(String, String), Uuid>,
    next_sequence: i64,
    /// Bumped on every work-item change; keys `order_cache`.
    items_version: u64,
    order_cache: Option<(u64, Order, Vec<usize>)>,
    cycles: Vec<Cycle>,
    item_cycle: HashMap<Uuid, Uuid>,
    modules: Vec<Module>,
    faults: VecDeque<(Matcher, Fault)>,
    log: Vec<RequestRecord>,
    rate: Option<RateLimit>,
    throttled: usize,
    /// The project's and the token user's time zones.
    zones: (String, String),
}

fn now_micros() -> Micros {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as Micros
}

/// RFC 3339 with microseconds and `Z`, as Plane writes timestamps.
fn stamp(us: Micros) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).expect("a timestamp in range");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.microsecond()
    )
}

fn opt_stamp(us: Option<Micros>) -> Value {
    us.map(|us| Value::String(stamp(us))).unwrap_or(Value::Null)
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("the fake Plane expected a JSON object, got {other}"),
    }
}

fn palette(k: usize) -> &'static str {
    const COLORS: [&str; 8] = ["#EF4444", "#F59E0B", "#10B981", "#3B82F6", "#8B5CF6", "#EC4899", "#6B7280", "#14B8A6"];
    COLORS[k % COLORS.len()]
}

/// Collects DRF-style field errors: `{"field": ["message"]}`.
#[derive(Default)]
struct Errors(Map<String, Value>);

impl Errors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.insert(field.to_string(), json!([message.into()]));
    }

    fn check(self) -> Result<(), Reply> {
        if self.0.is_empty() { Ok(()) } else { Err(Reply::error(400, Value::Object(self.0))) }
    }
}

/// A required or optional name: 1 to 255 characters after trimming.
fn name_field(body: &Map<String, Value>, required: bool, errors: &mut Errors) -> Option<String> {
    match body.get("name") {
        None if required => errors.add("name", "This field is required."),
        None => {}
        Some(Value::Null) => errors.add("name", "This field may not be null."),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                errors.add("name", "This field may not be blank.");
            } else if s.chars().count() > 255 {
                errors.add("name", "Ensure this field has no more than 255 characters.");
            } else {
                return Some(s.to_string());
            }
        }
        Some(_) => errors.add("name", "Not a valid string."),
    }
    None
}

/// An optional text field: `Some(None)` for null.
fn text_field(body: &Map<String, Value>, field: &str, errors: &mut Errors) -> Option<Option<String>> {
    match body.get(field)? {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        Value::Number(n) => Some(Some(n.to_string())),
        _ => {
            errors.add(field, "Not a valid string.");
            None
        }
    }
}

/// The date part of `YYYY-MM-DD` or an RFC 3339 date-time.
fn parse_date(s: &str) -> Option<time::Date> {
    let day = s.get(..10)?;
    let date = time::Date::parse(day, format_description!("[year]-[month]-[day]")).ok()?;
    let rest = &s[10..];
    let ok = rest.is_empty()
        || ((rest.starts_with('T') || rest.starts_with(' '))
            && OffsetDateTime::parse(&s.replacen(' ', "T", 1), &time::format_description::well_known::Rfc3339).is_ok());
    ok.then_some(date)
}

/// An optional date: `Some(None)` for null. `datetime_ok` also accepts an
/// RFC 3339 date-time (cycles), else only `YYYY-MM-DD`.
fn date_field(
    body: &Map<String, Value>,
    field: &str,
    datetime_ok: bool,
    errors: &mut Errors,
) -> Option<Option<String>> {
    match body.get(field)? {
        Value::Null => Some(None),
        Value::String(s) if parse_date(s).is_some() && (datetime_ok || s.len() == 10) => Some(Some(s.clone())),
        _ => {
            errors.add(field, "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.");
            None
        }
    }
}

/// A list of uuids that must each be in `known`.
fn uuid_list_field(
    body: &Map<String, Value>,
    field: &str,
    known: impl Fn(&Uuid) -> bool,
    errors: &mut Errors,
) -> Option<Vec<Uuid>> {
    let value = body.get(field)?;
    let Value::Array(values) = value else {
        let kind = if value.is_null() { "null" } else { "str" };
        errors.add(field, format!("Expected a list of items but got type \"{kind}\"."));
        return None;
    };
    let mut ids: Vec<Uuid> = Vec::new();
    for v in values {
        match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            Some(id) if known(&id) => {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Some(id) => {
                errors.add(field, format!("Invalid pk \"{id}\" - object does not exist."));
                return None;
            }
            None => {
                errors.add(
                    field,
                    format!("\u{201c}{}\u{201d} is not a valid UUID.", v.as_str().unwrap_or(&v.to_string())),
                );
                return None;
            }
        }
    }
    Some(ids)
}

/// The external pair after a write, when both halves are non-empty.
fn pair(source: &Option<String>, id: &Option<String>) -> Option<(String, String)> {
    match (source, id) {
        (Some(s), Some(i)) if !s.is_empty() && !i.is_empty() => Some((s.clone(), i.clone())),
        _ => None,
    }
}

#[derive(Default)]
struct ItemInput {
    name: Option<String>,
    description_html: Option<String>,
    state: Option<Uuid>,
    priority: Option<String>,
    start_date: Option<Option<String>>,
    target_date: Option<Option<String>>,
    assignees: Option<Vec<Uuid>>,
    labels: Option<Vec<Uuid>>,
    parent: Option<Option<Uuid>>,
    external_source: Option<Option<String>>,
    external_id: Option<Option<String>>,
}

impl State {
    fn new(workspace: &str, project_id: Uuid, identifier: &str, token: &str) -> State {
        let mut st = State {
            workspace: workspace.to_string(),
            workspace_id: Uuid::new_v4(),
            project_id,
            project_name: "Fake Plane project".to_string(),
            identifier: identifier.to_string(),
            token: token.to_string(),
            created_at: 0,
            last_stamp: 0,
            clock_offset_us: 0,
            states: Vec::new(),
            labels: Vec::new(),
            members: Vec::new(),
            items: Vec::new(),
            item_index: HashMap::new(),
            item_ext: HashMap::new(),
            next_sequence: 1,
            items_version: 0,
            order_cache: None,
            cycles: Vec::new(),
            item_cycle: HashMap::new(),
            modules: Vec::new(),
            faults: VecDeque::new(),
            log: Vec::new(),
            rate: None,
            throttled: 0,
            zones: ("UTC".to_string(), "UTC".to_string()),
        };
        st.created_at = st.tick();
        let seeds = [
            ("Backlog", "backlog", "#A3A3A3"),
            ("Todo", "unstarted", "#3A3A3A"),
            ("In Progress", "started", "#F59E0B"),
            ("Done", "completed", "#16A34A"),
            ("Cancelled", "cancelled", "#EF4444"),
        ];
        for (k, (name, group, color)) in seeds.into_iter().enumerate() {
            let at = st.tick();
            st.states.push(WfState {
                id: Uuid::new_v4(),
                name: name.to_string(),
                color: color.to_string(),
                group: group.to_string(),
                sequence: 15000.0 * (k as f64 + 1.0),
                default: k == 0,
                created_at: at,
                updated_at: at,
            });
        }
        st
    }

    /// The next write's timestamp: now, but always after the last one.
    fn tick(&mut self) -> Micros {
        let now = now_micros() + self.clock_offset_us;
        self.last_stamp = now.max(self.last_stamp + 1);
        self.last_stamp
    }

    fn today(&self) -> time::Date {
        let now = now_micros() + self.clock_offset_us;
        OffsetDateTime::from_unix_timestamp_nanos(now as i128 * 1000).expect("now is in range").date()
    }

    /// A timestamp as the API renders it: in the token user's time zone
    /// (plane: apps/api/plane/api/views/base.py TimezoneMixin activates
    /// `user.user_timezone`; DRF writes `Z` only for UTC).
    fn shown(&self, us: Micros) -> String {
        let offset = zone_offset(&self.zones.1).expect("a known zone");
        if offset == 0 {
            return stamp(us);
        }
        let at = OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1000).expect("a timestamp in range");
        let zone = time::UtcOffset::from_whole_seconds(offset * 60).expect("an offset");
        let local = at.to_offset(zone);
        let sign = if offset < 0 { '-' } else { '+' };
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}{sign}{:02}:{:02}",
            local.year(),
            local.month() as u8,
            local.day(),
            local.hour(),
            local.minute(),
            local.second(),
            local.microsecond(),
            offset.abs() / 60,
            offset.abs() % 60
        )
    }

    /// A cycle boundary day as Plane stores it: the project's 00:00:01 for a
    /// start, 23:59 for an end, as an instant
    /// (plane: apps/api/plane/utils/timezone_converter.py convert_to_utc).
    fn cycle_instant(&self, day: &str, start: bool) -> Micros {
        let date = parse_date(day).expect("a stored cycle day");
        let offset = zone_offset(&self.zones.0).expect("a known zone");
        let zone = time::UtcOffset::from_whole_seconds(offset * 60).expect("an offset");
        let time = if start { time::Time::from_hms(0, 0, 1) } else { time::Time::from_hms(23, 59, 0) };
        let at = time::PrimitiveDateTime::new(date, time.expect("a time")).assume_offset(zone);
        (at.unix_timestamp_nanos() / 1000) as Micros
    }

    /// The project's day of a date or a date-time a client sent.
    fn project_day(&self, text: &str) -> String {
        match OffsetDateTime::parse(&text.replacen(' ', "T", 1), &time::format_description::well_known::Rfc3339) {
            Ok(at) => {
                let offset = zone_offset(&self.zones.0).expect("a known zone");
                at.to_offset(time::UtcOffset::from_whole_seconds(offset * 60).expect("an offset")).date().to_string()
            }
            Err(_) => text.get(..10).unwrap_or(text).to_string(),
        }
    }

    fn common(&self, value: &mut Value) {
        value["project"] = json!(self.project_id.to_string());
        value["workspace"] = json!(self.workspace_id.to_string());
    }

    // --- project, members, states, labels ---------------------------------

    fn project_json(&self) -> Value {
        json!({
            "id": self.project_id.to_string(),
            "name": self.project_name,
            "identifier": self.identifier,
            "description": "",
            "network": 2,
            "timezone": self.zones.0,
            "workspace": self.workspace_id.to_string(),
            "default_state": self.states.iter().find(|s| s.default).map(|s| s.id.to_string()),
            "cycle_view": true,
            "module_view": true,
            "issue_views_view": true,
            "page_view": true,
            "intake_view": false,
            "archived_at": null,
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.created_at),
            "total_members": self.members.len(),
            "is_member": true,
        })
    }

    fn add_member(&mut self, display_name: &str, email: &str) -> Uuid {
        let id = Uuid::new_v4();
        let (first, last) = display_name.split_once(' ').unwrap_or((display_name, ""));
        self.members.push(Member {
            id,
            display_name: display_name.to_string(),
            first_name: first.to_string(),
            last_name: last.to_string(),
            email: email.to_string(),
        });
        id
    }

    fn sorted_states(&self) -> Vec<&WfState> {
        let mut states: Vec<&WfState> = self.states.iter().collect();
        states.sort_by(|a, b| a.sequence.total_cmp(&b.sequence));
        states
    }

    fn state_json(&self, s: &WfState) -> Value {
        let mut v = json!({
            "id": s.id.to_string(),
            "name": s.name,
            "description": "",
            "color": s.color,
            "group": s.group,
            "sequence": s.sequence,
            "default": s.default,
            "external_source": null,
            "external_id": null,
            "created_at": stamp(s.created_at),
            "updated_at": stamp(s.updated_at),
        });
        self.common(&mut v);
        v
    }

    fn group_of(&self, state: Uuid) -> &str {
        self.states.iter().find(|s| s.id == state).map(|s| s.group.as_str()).unwrap_or("backlog")
    }

    fn create_state(&mut self, body: &Map<String, Value>) -> Result<Value, Reply> {
        let mut errors = Errors::default();
        let name = name_field(body, true, &mut errors);
        let group = match body.get("group") {
            Some(Value::String(g)) if STATE_GROUPS.contains(&g.as_str()) => Some(g.clone()),
            Some(v) => {
                errors.add("group", format!("\"{}\" is not a valid choice.", v.as_str().unwrap_or(&v.to_string())));
                None
            }
            None => {
                errors.add("group", "This field is required.");
                None
            }
        };
        let color = text_field(body, "color", &mut errors).flatten();
        errors.check()?;
        let (name, group) = (name.unwrap(), group.unwrap());
        if let Some(existing) = self.states.iter().find(|s| s.name == name) {
            return Err(Reply::error(
                409,
                json!({ "error": "State with the same name already exists in the project", "id": existing.id.to_string() }),
            ));
        }
        let at = self.tick();
        let sequence = self.states.iter().map(|s| s.sequence).fold(0.0, f64::max) + 15000.0;
        let k = self.states.len();
        self.states.push(WfState {
            id: Uuid::new_v4(),
            name,
            color: color.unwrap_or_else(|| palette(k).to_string()),
            group,
            sequence,
            default: false,
            created_at: at,
            updated_at: at,
        });
        Ok(self.state_json(self.states.last().unwrap()))
    }

    fn label_json(&self, l: &Label) -> Value {
        let mut v = json!({
            "id": l.id.to_string(),
            "name": l.name,
            "description": "",
            "color": l.color,
            "parent": null,
            "sort_order": l.sort_order,
            "external_source": l.external_source,
            "external_id": l.external_id,
            "created_at": stamp(l.created_at),
            "updated_at": stamp(l.updated_at),
            "created_by": null,
            "updated_by": null,
            "deleted_at": null,
        });
        self.common(&mut v);
        v
    }

    fn create_label(&mut self, body: &Map<String, Value>) -> Result<Value, Reply> {
        let mut errors = Errors::default();
        let name = name_field(body, true, &mut errors);
        let color = text_field(body, "color", &mut errors).flatten();
        let external_source = text_field(body, "external_source", &mut errors).flatten();
        let external_id = text_field(body, "external_id", &mut errors).flatten();
        errors.check()?;
        let name = name.unwrap();
        if let Some(key) = pair(&external_source, &external_id)
            && let Some(existing) =
                self.labels.iter().find(|l| pair(&l.external_source, &l.external_id).as_ref() == Some(&key))
        {
            return Err(Reply::error(
                409,
                json!({ "error": "Label with the same external id and external source already exists", "id": existing.id.to_string() }),
            ));
        }
        if let Some(existing) = self.labels.iter().find(|l| l.name == name) {
            return Err(Reply::error(
                409,
                json!({ "error": "Label with the same name already exists in the project", "id": existing.id.to_string() }),
            ));
        }
        let at = self.tick();
        let k = self.labels.len();
        self.labels.push(Label {
            id: Uuid::new_v4(),
            name,
            color: color.unwrap_or_else(|| palette(k).to_string()),
            sort_order: 65535.0 + 10000.0 * k as f64,
            external_source,
            external_id,
            created_at: at,
            updated_at: at,
        });
        Ok(self.label_json(self.labels.last().unwrap()))
    }

    // --- work items --------------------------------------------------------

    fn item_json(&self, it: &Item) -> Value {
        let mut v = json!({
            "id": it.id.to_string(),
            "sequence_id": it.sequence_id,
            "name": it.name,
            "description_html": it.description_html,
            "state": it.state.to_string(),
            "priority": it.priority,
            "start_date": it.start_date,
            "target_date": it.target_date,
            "assignees": it.assignees.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            "labels": it.labels.iter().map(Uuid::to_string).collect::<Vec<_>>(),
            "parent": it.parent.map(|p| p.to_string()),
            "estimate_point": null,
            "point": null,
            "sort_order": it.sort_order,
            "type_id": null,
            "external_source": it.external_source,
            "external_id": it.external_id,
            "created_at": self.shown(it.created_at),
            "updated_at": self.shown(it.updated_at),
            "archived_at": it.archived_at.map(|at| self.shown(at)),
            "completed_at": it.completed_at.map(|at| self.shown(at)),
            "deleted_at": null,
            "is_draft": false,
            "created_by": null,
            "updated_by": null,
        });
        self.common(&mut v);
        v
    }

    fn parse_item(&self, body: &Map<String, Value>, create: bool, this: Option<Uuid>) -> Result<ItemInput, Reply> {
        let mut errors = Errors::default();
        let mut input = ItemInput { name: name_field(body, create, &mut errors), ..ItemInput::default() };
        match body.get("description_html") {
            None => {}
            Some(Value::Null) => input.description_html = Some("<p></p>".to_string()),
            // plane: apps/api/plane/api/serializers/issue.py IssueSerializer.validate —
            // lxml's `html.fromstring("")` raises, answered as a non-field error.
            Some(Value::String(s)) if s.trim().is_empty() => errors.add("non_field_errors", "Invalid HTML passed"),
            Some(Value::String(s)) => input.description_html = Some(s.clone()),
            Some(_) => errors.add("description_html", "Not a valid string."),
        }
        match body.get("state") {
            None => {}
            Some(Value::Null) if create => {}
            Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(id) if self.states.iter().any(|s| s.id == id) => input.state = Some(id),
                _ => errors.add("state", "State is not valid please pass a valid state_id"),
            },
        }
        match body.get("priority") {
            None => {}
            Some(Value::String(p)) if PRIORITIES.contains(&p.as_str()) => input.priority = Some(p.clone()),
            Some(Value::Null) => errors.add("priority", "This field may not be null."),
            Some(v) => {
                errors.add("priority", format!("\"{}\" is not a valid choice.", v.as_str().unwrap_or(&v.to_string())))
            }
        }
        input.start_date = date_field(body, "start_date", false, &mut errors);
        input.target_date = date_field(body, "target_date", false, &mut errors);
        input.assignees =
            uuid_list_field(body, "assignees", |id| self.members.iter().any(|m| m.id == *id), &mut errors);
        input.labels = uuid_list_field(body, "labels", |id| self.labels.iter().any(|l| l.id == *id), &mut errors);
        match body.get("parent") {
            None => {}
            Some(Value::Null) => input.parent = Some(None),
            Some(v) => match v.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                Some(id) if Some(id) == this => errors.add("parent", "A work item cannot be its own parent."),
                Some(id) if self.item_index.contains_key(&id) => input.parent = Some(Some(id)),
                _ => errors.add(
                    "parent",
                    format!("Invalid pk \"{}\" - object does not exist.", v.as_str().unwrap_or(&v.to_string())),
                ),
            },
        }
        input.external_source = text_field(body, "external_source", &mut errors);
        input.external_id = text_field(body, "external_id", &mut errors);
        errors.check()?;
        Ok(input)
    }

    fn check_item_dates(start: &Option<String>, target: &Option<String>) -> Result<(), Reply> {
        if let (Some(s), Some(t)) = (start, target)
            && parse_date(s) > parse_date(t)
        {
            return Err(Reply::error(400, json!({ "error": "Start date cannot exceed target date" })));
        }
        Ok(())
    }

    fn item_conflict(&self, key: &Option<(String, String)>, this: Option<Uuid>) -> Result<(), Reply> {
        if let Some(key) = key
            && let Some(&existing) = self.item_ext.get(key)
            && Some(existing) != this
        {
            return Err(Reply::error(
                409,
                json!({ "error": "Issue with the same external id and external source already exists", "id": existing.to_string() }),
            ));
        }
        Ok(())
    }

    fn default_state(&self) -> Uuid {
        self.states.iter().find(|s| s.default).or(self.states.first()).expect("a project has states").id
    }

    fn create_item(&mut self, body: &Map<String, Value>) -> Result<Value, Reply> {
        let input = self.parse_item(body, true, None)?;
        let start_date = input.start_date.flatten();
        let target_date = input.target_date.flatten();
        Self::check_item_dates(&start_date, &target_date)?;
        let external_source = input.external_source.flatten();
        let external_id = input.external_id.flatten();
        let key = pair(&external_source, &external_id);
        self.item_conflict(&key, None)?;
        let state = input.state.unwrap_or_else(|| self.default_state());
        let at = self.tick();
        let completed = self.group_of(state) == "completed";
        let item = Item {
            id: Uuid::new_v4(),
            sequence_id: self.next_sequence,
            name: input.name.expect("validated"),
            description_html: input.description_html.unwrap_or_else(|| "<p></p>".to_string()),
            state,
            priority: input.priority.unwrap_or_else(|| "none".to_string()),
            start_date,
            target_date,
            assignees: input.assignees.unwrap_or_default(),
            labels: input.labels.unwrap_or_default(),
            parent: input.parent.flatten(),
            external_source,
            external_id,
            sort_order: 65535.0 + 10000.0 * (self.next_sequence - 1) as f64,
            created_at: at,
            updated_at: at,
            completed_at: completed.then_some(at),
            archived_at: None,
        };
        self.next_sequence += 1;
        let json = self.item_json(&item);
        self.insert_item(item, key);
        Ok(json)
    }

    fn insert_item(&mut self, item: Item, key: Option<(String, String)>) {
        if let Some(key) = key {
            self.item_ext.insert(key, item.id);
        }
        self.item_index.insert(item.id, self.items.len());
        self.items.push(item);
        self.items_version += 1;
    }

    fn patch_item(&mut self, id: Uuid, body: &Map<String, Value>) -> Result<Value, Reply> {
        let Some(&k) = self.item_index.get(&id) else { return Err(Reply::not_found()) };
        let input = self.parse_item(body, false, Some(id))?;
        let current = &self.items[k];
        let start = input.start_date.clone().unwrap_or_else(|| current.start_date.clone());
        let target = input.target_date.clone().unwrap_or_else(|| current.target_date.clone());
        Self::check_item_dates(&start, &target)?;
        let source = input.external_source.clone().unwrap_or_else(|| current.external_source.clone());
        let ext_id = input.external_id.clone().unwrap_or_else(|| current.external_id.clone());
        let old_key = pair(&current.external_source, &current.external_id);
        let new_key = pair(&source, &ext_id);
        self.item_conflict(&new_key, Some(id))?;
        let new_group_completed = input.state.map(|s| self.group_of(s) == "completed");
        let at = self.tick();
        let it = &mut self.items[k];
        if let Some(v) = input.name {
            it.name = v;
        }
        if let Some(v) = input.description_html {
            it.description_html = v;
        }
        if let Some(v) = input.state {
            let was_completed = it.completed_at.is_some();
            it.state = v;
            match new_group_completed {
                Some(true) if !was_completed => it.completed_at = Some(at),
                Some(false) => it.completed_at = None,
                _ => {}
            }
        }
        if let Some(v) = input.priority {
            it.priority = v;
        }
        it.start_date = start;
        it.target_date = target;
        if let Some(v) = input.assignees {
            it.assignees = v;
        }
        if let Some(v) = input.labels {
            it.labels = v;
        }
        if let Some(v) = input.parent {
            it.parent = v;
        }
        it.external_source = source;
        it.external_id = ext_id;
        it.updated_at = at;
        if old_key != new_key {
            if let Some(old) = old_key {
                self.item_ext.remove(&old);
            }
            if let Some(new) = new_key {
                self.item_ext.insert(new, id);
            }
        }
        self.items_version += 1;
        Ok(self.item_json(&self.items[k]))
    }

    fn delete_item(&mut self, id: Uuid) -> bool {
        let Some(k) = self.item_index.remove(&id) else { return false };
        let item = self.items.remove(k);
        for later in &self.items[k..] {
            *self.item_index.get_mut(&later.id).expect("indexed") -= 1;
        }
        if let Some(key) = pair(&item.external_source, &item.external_id) {
            self.item_ext.remove(&key);
        }
        if let Some(cycle) = self.item_cycle.remove(&id)
            && let Some(c) = self.cycles.iter_mut().find(|c| c.id == cycle)
        {
            c.issues.retain(|i| *i != id);
        }
        for m in &mut self.modules {
            m.issues.retain(|i| *i != id);
        }
        for other in &mut self.items {
            if other.parent == Some(id) {
                other.parent = None;
            }
        }
        self.items_version += 1;
        true
    }

    fn seed_items(&mut self, count: usize) -> Vec<String> {
        const WORDS: [&str; 12] = [
            "login",
            "billing",
            "search",
            "export",
            "onboarding",
            "cache",
            "dashboard",
            "webhooks",
            "audit",
            "import",
            "permissions",
            "reports",
        ];
        const VERBS: [&str; 6] = ["Fix", "Improve", "Add", "Refactor", "Document", "Investigate"];
        let states: Vec<Uuid> = self.sorted_states().iter().map(|s| s.id).collect();
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let seq = self.next_sequence;
            self.next_sequence += 1;
            let at = self.tick();
            let state = states[(n * 7 + n / 3) % states.len()];
            let completed = self.group_of(state) == "completed";
            let assignees = match self.members.len() {
                0 => Vec::new(),
                _ if n % 3 == 0 => Vec::new(),
                m => vec![self.members[n % m].id],
            };
            let labels = match self.labels.len() {
                0 => Vec::new(),
                l if n % 2 == 0 => vec![self.labels[n % l].id],
                _ => Vec::new(),
            };
            let target_date = (n % 4 == 0).then(|| {
                let day = time::Date::from_calendar_date(2026, time::Month::January, 1).unwrap()
                    + time::Duration::days((n % 365) as i64);
                day.to_string()
            });
            let item = Item {
                id: Uuid::new_v4(),
                sequence_id: seq,
                name: format!("{} {} #{n}", VERBS[n % VERBS.len()], WORDS[(n / VERBS.len()) % WORDS.len()]),
                description_html: format!(
                    "<p>Seeded work item {n}: <strong>{}</strong> needs attention.</p>",
                    WORDS[n % WORDS.len()]
                ),
                state,
                priority: PRIORITIES[(n * 3 + 1) % PRIORITIES.len()].to_string(),
                start_date: None,
                target_date,
                assignees,
                labels,
                parent: None,
                external_source: None,
                external_id: None,
                sort_order: 65535.0 + 10000.0 * (seq - 1) as f64,
                created_at: at,
                updated_at: at,
                completed_at: completed.then_some(at),
                archived_at: None,
            };
            ids.push(item.id.to_string());
            self.insert_item(item, None);
        }
        ids
    }

    /// Item positions in `order`, cached until the next work-item change.
    fn ordered(&mut self, order: Order) -> &[usize] {
        let fresh = matches!(&self.order_cache, Some((v, o, _)) if *v == self.items_version && *o == order);
        if !fresh {
            let mut positions: Vec<usize> =
                (0..self.items.len()).filter(|&k| self.items[k].archived_at.is_none()).collect();
            match order {
                Order::CreatedAsc => {}
                Order::CreatedDesc => positions.reverse(),
                Order::UpdatedAsc => positions.sort_unstable_by_key(|&k| self.items[k].updated_at),
                Order::UpdatedDesc => positions.sort_unstable_by_key(|&k| std::cmp::Reverse(self.items[k].updated_at)),
            }
            self.order_cache = Some((self.items_version, order, positions));
        }
        &self.order_cache.as_ref().unwrap().2
    }

    fn list_items(&mut self, query: &HashMap<String, String>) -> Result<Reply, Reply> {
        if let (Some(ext_id), Some(source)) = (query.get("external_id"), query.get("external_source")) {
            let key = (source.clone(), ext_id.clone());
            return match self.item_ext.get(&key) {
                Some(id) => Ok(Reply::ok(self.item_json(&self.items[self.item_index[id]]))),
                None => Err(Reply::error(404, json!({ "error": "Issue not found" }))),
            };
        }
        let order = Order::parse(query.get("order_by").map(String::as_str), Order::CreatedDesc)?;
        let listed = self.ordered(order).len();
        let window = PageWindow::of(query, listed)?;
        let positions = &self.order_cache.as_ref().unwrap().2;
        let results = positions[window.range()].iter().map(|&k| self.item_json(&self.items[k])).collect();
        Ok(Reply::ok(window.envelope(results)))
    }

    /// Work items by id, ordered for a membership list.
    fn member_page(&self, ids: &[Uuid], query: &HashMap<String, String>) -> Result<Reply, Reply> {
        let order = Order::parse(query.get("order_by").map(String::as_str), Order::CreatedAsc)?;
        let mut positions: Vec<usize> = ids.iter().filter_map(|id| self.item_index.get(id).copied()).collect();
        match order {
            Order::CreatedAsc => positions.sort_unstable(),
            Order::CreatedDesc => positions.sort_unstable_by_key(|&k| std::cmp::Reverse(k)),
            Order::UpdatedAsc => positions.sort_unstable_by_key(|&k| self.items[k].updated_at),
            Order::UpdatedDesc => positions.sort_unstable_by_key(|&k| std::cmp::Reverse(self.items[k].updated_at)),
        }
        let window = PageWindow::of(query, positions.len())?;
        let results = positions[window.range()].iter().map(|&k| self.item_json(&self.items[k])).collect();
        Ok(Reply::ok(window.envelope(results)))
    }

    /// `total_issues` and the per-group counts Plane adds to cycles and modules.
    fn issue_counts(&self, ids: &[Uuid], value: &mut Value) {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for id in ids {
            if let Some(&k) = self.item_index.get(id) {
                *counts.entry(self.group_of(self.items[k].state)).or_default() += 1;
            }
        }
        value["total_issues"] = json!(ids.len());
        for group in STATE_GROUPS {
            value[format!("{group}_issues")] = json!(counts.get(group).copied().unwrap_or(0));
        }
    }

    // --- cycles ------------------------------------------------------------

    fn cycle_json(&self, c: &Cycle) -> Value {
        let mut v = json!({
            "id": c.id.to_string(),
            "name": c.name,
            "description": c.description,
            "start_date": c.start_date.as_deref().map(|d| self.shown(self.cycle_instant(d, true))),
            "end_date": c.end_date.as_deref().map(|d| self.shown(self.cycle_instant(d, false))),
            "owned_by": null,
            "view_props": {},
            "sort_order": c.sort_order,
            "external_source": c.external_source,
            "external_id": c.external_id,
            "progress_snapshot": {},
            "logo_props": {},
            "timezone": "UTC",
            "created_at": self.shown(c.created_at),
            "updated_at": self.shown(c.updated_at),
            "created_by": null,
            "updated_by": null,
            "archived_at": null,
        });
        self.common(&mut v);
        self.issue_counts(&c.issues, &mut v);
        v
    }

    fn planning_conflict(
        what: &str,
        mut existing: impl Iterator<Item = (Uuid, Option<(String, String)>)>,
        key: &Option<(String, String)>,
        this: Option<Uuid>,
    ) -> Result<(), Reply> {
        if let Some(key) = key
            && let Some((id, _)) = existing.find(|(id, k)| k.as_ref() == Some(key) && Some(*id) != this)
        {
            return Err(Reply::error(
                409,
                json!({ "error": format!("{what} with the same external id and external source already exists"), "id": id.to_string() }),
            ));
        }
        Ok(())
    }

    /// plane: `cycle.end_date < timezone.now()`, the end being the project's 23:59.
    fn is_completed(&self, end: &Option<String>) -> bool {
        end.as_deref().is_some_and(|d| self.cycle_instant(d, false) < now_micros() + self.clock_offset_us)
    }

    /// `POST cycles/` as the API view runs it: the dates check, then the
    /// serializer's, which reads the project from the body
    /// (plane: apps/api/plane/api/serializers/cycle.py CycleCreateSerializer.validate).
    fn post_cycle(&mut self, body: &Map<String, Value>) -> Result<Value, Reply> {
        let given = |f: &str| body.get(f).is_some_and(|v| !v.is_null());
        if given("start_date") == given("end_date") && !given("project_id") {
            return Err(Reply::error(400, json!({ "non_field_errors": ["Project ID is required"] })));
        }
        self.create_cycle(body)
    }

    fn is_archived(&self, id: Uuid) -> bool {
        self.item_index.get(&id).is_some_and(|&k| self.items[k].archived_at.is_some())
    }

    fn create_cycle(&mut self, body: &Map<String, Value>) -> Result<Value, Reply> {
        let given = |f: &str| body.get(f).is_some_and(|v| !v.is_null());
        if given("start_date") != given("end_date") {
            return Err(Reply::error(
                400,
                json!({ "error": "Both start date and end date are either required or are to be null" }),
            ));
        }
        let mut errors = Errors::default();
        let name = name_field(body, true, &mut errors);
        let description = text_field(body, "description", &mut errors).flatten();
        let start_date = date_field(body, "start_date", true, &mut errors).flatten().map(|d| self.project_day(&d));
        let end_date = date_field(body, "end_date", true, &mut errors).flatten().map(|d| self.project_day(&d));
        let external_source = text_field(body, "external_source", &mut errors).flatten();
        let external_id = text_field(body, "external_id", &mut errors).flatten();
        errors.check()?;
        Self::check_cycle_dates(&start_date, &end_date)?;
        let key = pair(&external_source, &external_id);
        let existing = self.cycles.iter().map(|c| (c.id, pair(&c.external_source, &c.external_id)));
        Self::planning_conflict("Cycle", existing, &key, None)?;
        let at = self.tick();
        let k = self.cycles.len();
        self.cycles.push(Cycle {
            id: Uuid::new_v4(),
            name: name.expect("validated"),
            description: description.unwrap_or_default(),
            start_date,
            end_date,
            external_source,
            external_id,
            sort_order: 65535.0 + 10000.0 * k as f64,
            created_at: at,
            updated_at: at,
            issues: Vec::new(),
        });
        Ok(self.cycle_json(self.cycles.last().unwrap()))
    }

    fn check_cycle_dates(start: &Option<String>, end: &Option<String>) -> Result<(), Reply> {
        match (start, end) {
            (Some(s), Some(e)) if parse_date(s) > parse_date(e) => {
                Err(Reply::error(400, json!({ "error": "Start date cannot exceed end date" })))
            }
            (Some(_), None) | (None, Some(_)) => Err(Reply::error(
                400,
                json!({ "error": "Both start date and end date are either required or are to be null" }),
            )),
            _ => Ok(()),
        }
    }

    fn patch_cycle(&mut self, id: Uuid, body: &Map<String, Value>) -> Result<Value, Reply> {
        let Some(k) = self.cycles.iter().position(|c| c.id == id) else { return Err(Reply::not_found()) };
        let only_sort_order = body.keys().all(|f| f == "sort_order");
        if self.is_completed(&self.cycles[k].end_date) && !only_sort_order {
            return Err(Reply::error(
                400,
                json!({ "error": "The Cycle has already been completed so it cannot be edited" }),
            ));
        }
        let mut errors = Errors::default();
        let name = name_field(body, false, &mut errors);
        let description = text_field(body, "description", &mut errors);
        let day = |d: Option<Option<String>>| d.map(|d| d.map(|d| self.project_day(&d)));
        let start_date = day(date_field(body, "start_date", true, &mut errors));
        let end_date = day(date_field(body, "end_date", true, &mut errors));
        let source = text_field(body, "external_source", &mut errors);
        let ext_id = text_field(body, "external_id", &mut errors);
        let sort_order = body.get("sort_order").map(|v| v.as_f64());
        if sort_order == Some(None) {
            errors.add("sort_order", "A valid number is required.");
        }
        errors.check()?;
        let c = &self.cycles[k];
        let start_date = start_date.unwrap_or_else(|| c.start_date.clone());
        let end_date = end_date.unwrap_or_else(|| c.end_date.clone());
        Self::check_cycle_dates(&start_date, &end_date)?;
        let source = source.unwrap_or_else(|| c.external_source.clone());
        let ext_id = ext_id.unwrap_or_else(|| c.external_id.clone());
        let key = pair(&source, &ext_id);
        let existing = self.cycles.iter().map(|c| (c.id, pair(&c.external_source, &c.external_id)));
        Self::planning_conflict("Cycle", existing, &key, Some(id))?;
        let at = self.tick();
        let c = &mut self.cycles[k];
        if let Some(v) = name {
            c.name = v;
        }
        if let Some(v) = description {
            c.description = v.unwrap_or_default();
        }
        if let Some(Some(v)) = sort_order {
            c.sort_order = v;
        }
        c.start_date = start_date;
        c.end_date = end_date;
        c.external_source = source;
        c.external_id = ext_id;
        c.updated_at = at;
        Ok(self.cycle_json(&self.cycles[k]))
    }

    /// Item ids from `{"issues": [...]}`, keeping only existing work items.
    fn issues_body(&self, body: &Map<String, Value>) -> Result<Vec<Uuid>, Reply> {
        let ids: Vec<Uuid> = match body.get("issues") {
            Some(Value::Array(values)) => {
                values.iter().filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok())).collect()
            }
            _ => Vec::new(),
        };
        if body.get("issues").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            return Err(Reply::error(400, json!({ "error": "Issues are required" })));
        }
        let mut known = Vec::new();
        for id in ids {
            if self.item_index.contains_key(&id) && !known.contains(&id) {
                known.push(id);
            }
        }
        Ok(known)
    }

    fn add_cycle_issues(&mut self, cycle: Uuid, body: &Map<String, Value>) -> Result<Value, Reply> {
        let Some(k) = self.cycles.iter().position(|c| c.id == cycle) else { return Err(Reply::not_found()) };
        let ids = self.issues_body(body)?;
        // plane: apps/api/plane/api/views/cycle.py CycleIssueListCreateAPIEndpoint.post
        if self.is_completed(&self.cycles[k].end_date) {
            return Err(Reply::error(
                400,
                json!({
                    "code": "CYCLE_COMPLETED",
                    "message": "The Cycle has already been completed so no new issues can be added",
                }),
            ));
        }
        for id in ids {
            match self.item_cycle.insert(id, cycle) {
                Some(old) if old == cycle => {}
                Some(old) => {
                    if let Some(c) = self.cycles.iter_mut().find(|c| c.id == old) {
                        c.issues.retain(|i| *i != id);
                    }
                    self.cycles[k].issues.push(id);
                }
                None => self.cycles[k].issues.push(id),
            }
        }
        let c = &self.cycles[k];
        let records = c.issues.iter().map(|i| self.bridge_json("cycle", c.id, *i, c.updated_at)).collect();
        Ok(Value::Array(records))
    }

    /// A cycle-issue or module-issue record as the POST answers with.
    fn bridge_json(&self, kind: &str, owner: Uuid, item: Uuid, at: Micros) -> Value {
        let mut v = json!({
            "id": Uuid::new_v4().to_string(),
            "issue": item.to_string(),
            "created_at": stamp(at),
            "updated_at": stamp(at),
            "created_by": null,
            "updated_by": null,
        });
        v[kind] = json!(owner.to_string());
        self.common(&mut v);
        v
    }

    fn remove_cycle_issue(&mut self, cycle: Uuid, item: Uuid) -> bool {
        if self.item_cycle.get(&item) != Some(&cycle) {
            return false;
        }
        self.item_cycle.remove(&item);
        if let Some(c) = self.cycles.iter_mut().find(|c| c.id == cycle) {
            c.issues.retain(|i| *i != item);
        }
        true
    }

    // --- modules -----------------------------------------------------------

    fn module_json(&self, m: &Module) -> Value {
        let mut v = json!({
            "id": m.id.to_string(),
            "name": m.name,
            "description": m.description,
            "description_text": null,
            "description_html": null,
            "start_date": m.start_date,
            "target_date": m.target_date,
            "status": m.status,
            "lead": null,
            "members": [],
            "view_props": {},
            "sort_order": m.sort_order,
            "external_source": m.external_source,
            "external_id": m.external_id,
            "logo_props": {},
            "created_at": self.shown(m.created_at),
            "updated_at": self.shown(m.updated_at),
            "created_by": null,
            "updated_by": null,
            "archived_at": null,
        });
        self.common(&mut v);
        self.issue_counts(&m.issues, &mut v);
        v
    }

    fn module_status(body: &Map<String, Value>, errors: &mut Errors) -> Option<String> {
        match body.get("status")? {
            Value::String(s) if MODULE_STATUSES.contains(&s.as_str()) => Some(s.clone()),
            v => {
                errors.add("status", format!("\"{}\" is not a valid choice.", v.as_str().unwrap_or(&v.to_string())));
                None
            }
        }
    }

    fn check_module_dates(start: &Option<String>, target: &Option<String>) -> Result<(), Reply> {
        if let (Some(s), Some(t)) = (start, target)
            && parse_date(s) > parse_date(t)
        {
            return Err(Reply::error(400, json!({ "error": "Start date cannot exceed target date" })));
        }
        Ok(())
    }

    /// plane: apps/api/plane/api/serializers/module.py — ModuleSerializer.create
    /// raises a 400 naming the module and a code; ModuleUpdateSerializer.update
    /// a 400 with the error only.
    fn module_name_conflict(&self, name: &Option<String>, this: Option<Uuid>) -> Result<(), Reply> {
        if let Some(name) = name
            && let Some(m) = self.modules.iter().find(|m| &m.name == name && Some(m.id) != this)
        {
            let body = match this {
                None => json!({
                    "id": m.id.to_string(),
                    "code": "MODULE_NAME_ALREADY_EXISTS",
                    "error": "Module with this name already exists",
                    "message": "Module with this name already exists",
                }),
                Some(_) => json!({ "error": "Module with this name already exists" }),
            };
            return Err(Reply::error(400, body));
        }
        Ok(())
    }

    fn create_module(&mut self, body: &Map<String, Value>) -> Result<Value, Reply> {
        let mut errors = Errors::default();
        let name = name_field(body, true, &mut errors);
        let description = text_field(body, "description", &mut errors).flatten();
        let status = Self::module_status(body, &mut errors);
        let start_date = date_field(body, "start_date", false, &mut errors).flatten();
        let target_date = date_field(body, "target_date", false, &mut errors).flatten();
        let external_source = text_field(body, "external_source", &mut errors).flatten();
        let external_id = text_field(body, "external_id", &mut errors).flatten();
        errors.check()?;
        Self::check_module_dates(&start_date, &target_date)?;
        let key = pair(&external_source, &external_id);
        let existing = self.modules.iter().map(|m| (m.id, pair(&m.external_source, &m.external_id)));
        Self::planning_conflict("Module", existing, &key, None)?;
        self.module_name_conflict(&name, None)?;
        let at = self.tick();
        let k = self.modules.len();
        self.modules.push(Module {
            id: Uuid::new_v4(),
            name: name.expect("validated"),
            description: description.unwrap_or_default(),
            status: status.unwrap_or_else(|| "planned".to_string()),
            start_date,
            target_date,
            external_source,
            external_id,
            sort_order: 65535.0 + 10000.0 * k as f64,
            created_at: at,
            updated_at: at,
            issues: Vec::new(),
        });
        Ok(self.module_json(self.modules.last().unwrap()))
    }

    fn patch_module(&mut self, id: Uuid, body: &Map<String, Value>) -> Result<Value, Reply> {
        let Some(k) = self.modules.iter().position(|m| m.id == id) else { return Err(Reply::not_found()) };
        let mut errors = Errors::default();
        let name = name_field(body, false, &mut errors);
        let description = text_field(body, "description", &mut errors);
        let status = Self::module_status(body, &mut errors);
        let start_date = date_field(body, "start_date", false, &mut errors);
        let target_date = date_field(body, "target_date", false, &mut errors);
        let source = text_field(body, "external_source", &mut errors);
        let ext_id = text_field(body, "external_id", &mut errors);
        errors.check()?;
        let m = &self.modules[k];
        let start_date = start_date.unwrap_or_else(|| m.start_date.clone());
        let target_date = target_date.unwrap_or_else(|| m.target_date.clone());
        Self::check_module_dates(&start_date, &target_date)?;
        let source = source.unwrap_or_else(|| m.external_source.clone());
        let ext_id = ext_id.unwrap_or_else(|| m.external_id.clone());
        let key = pair(&source, &ext_id);
        let existing = self.modules.iter().map(|m| (m.id, pair(&m.external_source, &m.external_id)));
        Self::planning_conflict("Module", existing, &key, Some(id))?;
        self.module_name_conflict(&name, Some(id))?;
        let at = self.tick();
        let m = &mut self.modules[k];
        if let Some(v) = name {
            m.name = v;
        }
        if let Some(v) = description {
            m.description = v.unwrap_or_default();
        }
        if let Some(v) = status {
            m.status = v;
        }
        m.start_date = start_date;
        m.target_date = target_date;
        m.external_source = source;
        m.external_id = ext_id;
        m.updated_at = at;
        Ok(self.module_json(&self.modules[k]))
    }

    fn add_module_issues(&mut self, module: Uuid, body: &Map<String, Value>) -> Result<Value, Reply> {
        let Some(k) = self.modules.iter().position(|m| m.id == module) else { return Err(Reply::not_found()) };
        let ids = self.issues_body(body)?;
        for id in ids {
            if !self.modules[k].issues.contains(&id) {
                self.modules[k].issues.push(id);
            }
        }
        let m = &self.modules[k];
        let records = m.issues.iter().map(|i| self.bridge_json("module", m.id, *i, m.updated_at)).collect();
        Ok(Value::Array(records))
    }

    fn remove_module_issue(&mut self, module: Uuid, item: Uuid) -> bool {
        let Some(m) = self.modules.iter_mut().find(|m| m.id == module) else { return false };
        let before = m.issues.len();
        m.issues.retain(|i| *i != item);
        m.issues.len() != before
    }
}

// ---------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------

/// One page of an offset listing, computed as Plane's `OffsetPaginator` does.
struct PageWindow {
    limit: usize,
    page: i64,
    start: usize,
    end: usize,
    has_next: bool,
    total: usize,
}

impl PageWindow {
    fn of(query: &HashMap<String, String>, total: usize) -> Result<PageWindow, Reply> {
        let bad = |detail: String| Reply::error(400, json!({ "detail": detail }));
        let limit = match query.get("per_page") {
            None => DEFAULT_PER_PAGE,
            Some(v) => v.trim().parse::<i64>().map_err(|_| bad("Invalid per_page parameter.".into()))?,
        };
        if limit > MAX_PER_PAGE {
            return Err(bad(format!("Invalid per_page value. Cannot exceed {MAX_PER_PAGE}.")));
        }
        if limit < 1 {
            return Err(bad("Invalid per_page parameter.".into()));
        }
        let (value, page) = match query.get("cursor").filter(|c| !c.is_empty()) {
            None => (0, 0),
            Some(cursor) => {
                let bits: Vec<&str> = cursor.split(':').collect();
                let parsed = (bits.len() == 3)
                    .then(|| {
                        let value = bits[0].parse::<f64>().ok()? as i64;
                        let page = bits[1].parse::<i64>().ok()?;
                        bits[2].parse::<i64>().ok()?;
                        Some((value, page))
                    })
                    .flatten();
                parsed.ok_or_else(|| bad("Invalid cursor parameter.".into()))?
            }
        };
        let offset = page * value;
        if offset < 0 {
            return Err(bad("Error in parsing".into()));
        }
        let stop = offset + if value == 0 { limit } else { value } + 1;
        let mut start = (offset as usize).min(total);
        let end = (stop as usize).min(total);
        let limit = limit as usize;
        if value as usize != limit && end - start > limit + 1 {
            start = end - (limit + 1);
        }
        let has_next = end - start > limit;
        Ok(PageWindow { limit, page, start, end: end.min(start + limit), has_next, total })
    }

    fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }

    fn envelope(&self, results: Vec<Value>) -> Value {
        json!({
            "grouped_by": null,
            "sub_grouped_by": null,
            "total_count": self.total,
            "next_cursor": format!("{}:{}:0", self.limit, self.page + 1),
            "prev_cursor": format!("{}:{}:1", self.limit, self.page - 1),
            "next_page_results": self.has_next,
            "prev_page_results": self.page > 0,
            "count": results.len(),
            "total_pages": self.total.div_ceil(self.limit),
            "total_results": self.total,
            "extra_stats": null,
            "results": results,
        })
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

enum Body {
    Json(Value),
    Raw(&'static str),
    Empty,
}

struct Reply {
    status: u16,
    body: Body,
    headers: Vec<(&'static str, String)>,
    delay: Option<Duration>,
}

impl Reply {
    fn new(status: u16, body: Body) -> Reply {
        Reply { status, body, headers: Vec::new(), delay: None }
    }

    fn ok(value: Value) -> Reply {
        Reply::new(200, Body::Json(value))
    }

    fn created(value: Value) -> Reply {
        Reply::new(201, Body::Json(value))
    }

    fn no_content() -> Reply {
        Reply::new(204, Body::Empty)
    }

    fn error(status: u16, value: Value) -> Reply {
        Reply::new(status, Body::Json(value))
    }

    fn not_found() -> Reply {
        Reply::error(404, json!({ "error": NOT_FOUND }))
    }

    fn throttled(retry_after: u64) -> Reply {
        let mut reply = Reply::error(
            429,
            json!({ "detail": format!("Request was throttled. Expected available in {retry_after} seconds.") }),
        );
        reply.headers.push(("Retry-After", retry_after.to_string()));
        reply
    }

    /// For direct (test-side) calls the API would have refused.
    fn panic(self, what: &str) -> ! {
        let body = match self.body {
            Body::Json(v) => v.to_string(),
            Body::Raw(s) => s.to_string(),
            Body::Empty => String::new(),
        };
        panic!("the fake Plane refused {what}: HTTP {} {body}", self.status)
    }

    fn template(self) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(self.status);
        t = match self.body {
            Body::Json(v) => t.set_body_json(v),
            Body::Raw(s) => t.set_body_raw(s.as_bytes().to_vec(), "application/json"),
            Body::Empty => t,
        };
        for (name, value) in self.headers {
            t = t.insert_header(name, value.as_str());
        }
        if let Some(delay) = self.delay {
            t = t.set_delay(delay);
        }
        t
    }
}

/// What a request addresses inside the project.
enum Route {
    Project,
    Items,
    Item(Uuid),
    States,
    StateOne(Uuid),
    Labels,
    LabelOne(Uuid),
    Members,
    Cycles,
    CycleOne(Uuid),
    CycleIssues(Uuid),
    CycleIssue(Uuid, Uuid),
    Modules,
    ModuleOne(Uuid),
    ModuleIssues(Uuid),
    ModuleIssue(Uuid, Uuid),
}

impl Route {
    fn parse(segments: &[&str]) -> Option<Route> {
        let id = |s: &str| Uuid::parse_str(s).ok();
        Some(match segments {
            [] => Route::Project,
            ["work-items"] => Route::Items,
            ["work-items", i] => Route::Item(id(i)?),
            ["states"] => Route::States,
            ["states", i] => Route::StateOne(id(i)?),
            ["labels"] => Route::Labels,
            ["labels", i] => Route::LabelOne(id(i)?),
            ["members"] => Route::Members,
            ["cycles"] => Route::Cycles,
            ["cycles", c] => Route::CycleOne(id(c)?),
            ["cycles", c, "cycle-issues"] => Route::CycleIssues(id(c)?),
            ["cycles", c, "cycle-issues", i] => Route::CycleIssue(id(c)?, id(i)?),
            ["modules"] => Route::Modules,
            ["modules", m] => Route::ModuleOne(id(m)?),
            ["modules", m, "module-issues"] => Route::ModuleIssues(id(m)?),
            ["modules", m, "module-issues", i] => Route::ModuleIssue(id(m)?, id(i)?),
            _ => return None,
        })
    }
}

/// The one wiremock responder: every request goes through here.
struct Responder {
    state: Arc<Mutex<State>>,
}

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let reply = st.serve(request);
        if reply.status == 429 {
            st.throttled += 1;
        }
        if let Some(last) = st.log.last_mut() {
            last.status = reply.status;
        }
        reply.template()
    }
}

impl State {
    fn serve(&mut self, request: &Request) -> Reply {
        let method = request.method.as_str().to_ascii_uppercase();
        let path = request.url.path().to_string();
        self.log.push(RequestRecord {
            method: method.clone(),
            path: path.clone(),
            query: request.url.query().unwrap_or("").to_string(),
            status: 0,
        });

        let token = request.headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if token != Some(self.token.as_str()) {
            return Reply::error(401, json!({ "detail": "Authentication credentials were not provided." }));
        }

        let mut rate_headers = Vec::new();
        if let Some(rate) = &mut self.rate {
            let (admitted, headers, retry_after) = rate.check(&self.token);
            rate_headers = headers;
            if !admitted {
                let mut reply = Reply::throttled(retry_after);
                reply.headers.extend(rate_headers);
                return reply;
            }
        }

        let all: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
        let in_project = all.len() >= 6 && all[..3] == ["api", "v1", "workspaces"] && all[4] == "projects";
        let segments: &[&str] = if in_project { &all[6..] } else { &all };

        let fault = self.faults.iter().position(|(m, _)| m.matches(&method, segments));
        let fault = fault.and_then(|k| self.faults.remove(k)).map(|(_, f)| f);
        let mut reply = match fault {
            Some(Fault::Status(status)) => {
                Reply::error(status, json!({ "error": format!("Injected fault: HTTP {status}") }))
            }
            Some(Fault::RateLimited { retry_after_secs }) => Reply::throttled(retry_after_secs),
            Some(Fault::Malformed) => Reply::new(200, Body::Raw("{\"results\": [")),
            Some(Fault::Delay(delay)) => {
                let mut reply = self.route(&method, &path, in_project, &all, request);
                reply.delay = Some(delay);
                reply
            }
            Some(Fault::ApplyThenFail(status)) => {
                self.route(&method, &path, in_project, &all, request);
                Reply::error(status, json!({ "error": format!("Injected fault after applying: HTTP {status}") }))
            }
            None => self.route(&method, &path, in_project, &all, request),
        };
        reply.headers.extend(rate_headers);
        reply
    }

    fn route(&mut self, method: &str, path: &str, in_project: bool, all: &[&str], request: &Request) -> Reply {
        let not_found = || Reply::error(404, json!({ "detail": "Not found." }));
        if !in_project || !path.ends_with('/') {
            return not_found();
        }
        if all[3] != self.workspace || Uuid::parse_str(all[5]).ok() != Some(self.project_id) {
            return Reply::error(404, json!({ "error": "Project not found" }));
        }
        let Some(route) = Route::parse(&all[6..]) else { return not_found() };
        let query: HashMap<String, String> =
            request.url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let body = || -> Result<Map<String, Value>, Reply> {
            if request.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Map::new());
            }
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(other) => Err(Reply::error(
                    400,
                    json!({ "non_field_errors": [format!("Invalid data. Expected a dictionary, but got {}.", kind(&other))] }),
                )),
                Err(e) => Err(Reply::error(400, json!({ "detail": format!("JSON parse error - {e}") }))),
            }
        };
        let result = match (method, route) {
            ("GET", Route::Project) => Ok(Reply::ok(self.project_json())),
            ("GET", Route::Items) => self.list_items(&query),
            ("POST", Route::Items) => body().and_then(|b| self.create_item(&b)).map(Reply::created),
            // An archived work item is not in `Issue.issue_objects`: the
            // detail view's `.get()` raises DoesNotExist, answered 404.
            ("GET", Route::Item(id)) => match self.item_index.get(&id) {
                Some(&k) if self.items[k].archived_at.is_none() => Ok(Reply::ok(self.item_json(&self.items[k]))),
                _ => Err(Reply::not_found()),
            },
            ("PATCH", Route::Item(id)) if self.is_archived(id) => Err(Reply::not_found()),
            ("PATCH", Route::Item(id)) => body().and_then(|b| self.patch_item(id, &b)).map(Reply::ok),
            ("DELETE", Route::Item(id)) => {
                if self.delete_item(id) {
                    Ok(Reply::no_content())
                } else {
                    Err(Reply::not_found())
                }
            }
            ("GET", Route::States) => {
                let states: Vec<Value> = self.sorted_states().into_iter().map(|s| self.state_json(s)).collect();
                self.page_of(states, &query)
            }
            ("POST", Route::States) => body().and_then(|b| self.create_state(&b)).map(Reply::created),
            ("GET", Route::StateOne(id)) => match self.states.iter().find(|s| s.id == id) {
                Some(s) => Ok(Reply::ok(self.state_json(s))),
                None => Err(Reply::not_found()),
            },
            ("GET", Route::Labels) => {
                let labels: Vec<Value> = self.labels.iter().rev().map(|l| self.label_json(l)).collect();
                self.page_of(labels, &query)
            }
            ("POST", Route::Labels) => body().and_then(|b| self.create_label(&b)).map(Reply::created),
            ("GET", Route::LabelOne(id)) => match self.labels.iter().find(|l| l.id == id) {
                Some(l) => Ok(Reply::ok(self.label_json(l))),
                None => Err(Reply::not_found()),
            },
            ("GET", Route::Members) => Ok(Reply::ok(Value::Array(self.members.iter().map(Member::json).collect()))),
            ("GET", Route::Cycles) => {
                let cycles: Vec<Value> = self.cycles.iter().rev().map(|c| self.cycle_json(c)).collect();
                self.page_of(cycles, &query)
            }
            ("POST", Route::Cycles) => body().and_then(|b| self.post_cycle(&b)).map(Reply::created),
            ("GET", Route::CycleOne(id)) => match self.cycles.iter().find(|c| c.id == id) {
                Some(c) => Ok(Reply::ok(self.cycle_json(c))),
                None => Err(Reply::not_found()),
            },
            ("PATCH", Route::CycleOne(id)) => body().and_then(|b| self.patch_cycle(id, &b)).map(Reply::ok),
            ("GET", Route::CycleIssues(id)) => match self.cycles.iter().find(|c| c.id == id) {
                Some(c) => self.member_page(&c.issues, &query),
                None => Err(Reply::not_found()),
            },
            ("POST", Route::CycleIssues(id)) => body().and_then(|b| self.add_cycle_issues(id, &b)).map(Reply::ok),
            ("DELETE", Route::CycleIssue(c, i)) => {
                if self.remove_cycle_issue(c, i) {
                    Ok(Reply::no_content())
                } else {
                    Err(Reply::not_found())
                }
            }
            ("GET", Route::Modules) => {
                let modules: Vec<Value> = self.modules.iter().rev().map(|m| self.module_json(m)).collect();
                self.page_of(modules, &query)
            }
            ("POST", Route::Modules) => body().and_then(|b| self.create_module(&b)).map(Reply::created),
            ("GET", Route::ModuleOne(id)) => match self.modules.iter().find(|m| m.id == id) {
                Some(m) => Ok(Reply::ok(self.module_json(m))),
                None => Err(Reply::not_found()),
            },
            ("PATCH", Route::ModuleOne(id)) => body().and_then(|b| self.patch_module(id, &b)).map(Reply::ok),
            ("GET", Route::ModuleIssues(id)) => match self.modules.iter().find(|m| m.id == id) {
                Some(m) => self.member_page(&m.issues, &query),
                None => Err(Reply::not_found()),
            },
            ("POST", Route::ModuleIssues(id)) => body().and_then(|b| self.add_module_issues(id, &b)).map(Reply::ok),
            ("DELETE", Route::ModuleIssue(m, i)) => {
                if self.remove_module_issue(m, i) {
                    Ok(Reply::no_content())
                } else {
                    Err(Reply::not_found())
                }
            }
            (other, _) => Err(Reply::error(405, json!({ "detail": format!("Method \"{other}\" not allowed.") }))),
        };
        result.unwrap_or_else(|reply| reply)
    }

    /// A page of an already ordered small list (states, labels, cycles, modules).
    fn page_of(&self, all: Vec<Value>, query: &HashMap<String, String>) -> Result<Reply, Reply> {
        let window = PageWindow::of(query, all.len())?;
        let results = all[window.range()].to_vec();
        Ok(Reply::ok(window.envelope(results)))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Minutes east of UTC of the time zones the fake knows: ones without
/// daylight saving time, so a fixed offset is the zone.
fn zone_offset(zone: &str) -> Option<i32> {
    Some(match zone {
        "UTC" => 0,
        "Asia/Kolkata" => 330,
        "Asia/Tokyo" => 540,
        "America/Sao_Paulo" => -180,
        "Pacific/Pago_Pago" => -660,
        "Pacific/Kiritimati" => 840,
        _ => return None,
    })
}
