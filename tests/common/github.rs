//! A fake GitHub REST API (version 2022-11-28) for one repository
//! `acme/app`, on the shared [`super::forge`] state: issues (with pull
//! requests in `/issues`, as GitHub lists them), Actions runs, deployments
//! with statuses, releases. `Link` paging, ETags with 304s, `Authorization:
//! Bearer`. A deleted issue answers 410.
#![allow(dead_code)]

use std::sync::Mutex;

use serde_json::{Value, json};
use wiremock::Request;

use super::forge::{Call, Dialect, Forge, Item, Reply, State, page, rfc3339};

pub const TOKEN: &str = "ghp_fake_token";

/// The repository `acme/app` (id 1000); after [`GitHubApi::rename`] its
/// old names answer with redirects to `/repositories/1000/…`, as GitHub's do.
pub struct GitHubApi {
    names: Mutex<(String, Vec<String>)>,
}

impl Default for GitHubApi {
    fn default() -> GitHubApi {
        GitHubApi { names: Mutex::new(("acme/app".into(), Vec::new())) }
    }
}

/// The repository's id, in `/repositories/{id}` redirects.
pub const REPO_ID: i64 = 1000;

impl GitHubApi {
    /// `owner/name` now.
    pub fn name(&self) -> String {
        self.names.lock().unwrap().0.clone()
    }

    /// Renames the repository; the old name keeps answering, with redirects.
    pub fn rename(&self, to: &str) {
        let mut names = self.names.lock().unwrap();
        let old = std::mem::replace(&mut names.0, to.to_string());
        names.1.push(old);
    }

    fn former(&self, owner: &str, name: &str) -> bool {
        self.names.lock().unwrap().1.iter().any(|n| n.eq_ignore_ascii_case(&format!("{owner}/{name}")))
    }
}

pub type FakeGitHub = Forge<GitHubApi>;

pub async fn start() -> FakeGitHub {
    Forge::start(GitHubApi::default(), TOKEN).await
}

pub fn issue_json(base: &str, repo: &str, item: &Item) -> Value {
    let mut value = json!({
        "id": 1_000_000 + item.number,
        "number": item.number,
        "title": item.title,
        "body": if item.body.is_empty() { Value::Null } else { json!(item.body) },
        "state": if item.closed { "closed" } else { "open" },
        "state_reason": item.state_reason,
        "labels": item.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "assignees": item.assignees.iter().map(|a| json!({"login": a})).collect::<Vec<_>>(),
        "created_at": rfc3339(item.created_at),
        "updated_at": rfc3339(item.updated_at),
        "html_url": format!("{base}/{repo}/issues/{}", item.number),
        "repository_url": format!("{base}/repos/{}", if item.transferred { "acme/elsewhere" } else { repo }),
    });
    if item.pull {
        value["pull_request"] = json!({"url": format!("{base}/repos/{repo}/pulls/{}", item.number)});
    }
    value
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// Applies an issue write body (GitHub's field names). `state_reason` is
/// taken only with a change of `state` (rest-api-description issues/update:
/// "Ignored unless `state` is changed"); a close that names none is
/// `completed`, a reopen `reopened`.
pub fn apply(item: &mut Item, body: &Value) {
    if let Some(title) = body.get("title").and_then(Value::as_str) {
        item.title = title.into();
    }
    if let Some(text) = body.get("body").and_then(Value::as_str) {
        item.body = text.into();
    }
    if let Some(state) = body.get("state").and_then(Value::as_str) {
        let closed = state == "closed";
        if closed != item.closed {
            item.closed = closed;
            item.state_reason = match body.get("state_reason").and_then(Value::as_str) {
                Some(reason) => Some(reason.to_string()),
                None if closed => Some("completed".into()),
                None => Some("reopened".into()),
            };
        }
    }
    if let Some(labels) = body.get("labels").and_then(strings) {
        item.labels = labels;
    }
    if let Some(assignees) = body.get("assignees").and_then(strings) {
        item.assignees = assignees;
    }
}

/// The server's origin (`http://127.0.0.1:PORT`) in a request URL.
fn origin(base: &str) -> String {
    match base.find("/repos").or_else(|| base.find("/repositories")) {
        Some(at) => base[..at].to_string(),
        None => base.trim_end_matches('/').to_string(),
    }
}

/// A listing the token may not read: what GitHub answers a fine-grained
/// token without the permission (docs: rest/authentication/
/// permissions-required-for-fine-grained-personal-access-tokens; the
/// `x-accepted-github-permissions` header names what is needed).
fn denied(permission: &str) -> Reply {
    Reply::json(
        403,
        json!({
            "message": "Resource not accessible by personal access token",
            "documentation_url": "https://docs.github.com/rest",
            "status": "403"
        }),
    )
    .header("x-accepted-github-permissions", format!("{permission}=read"))
    .header("x-ratelimit-remaining", "4999")
}

impl Dialect for GitHubApi {
    fn prefix(&self) -> String {
        format!("/repos/{}", self.name())
    }

    fn authorized(&self, request: &Request, token: &str) -> bool {
        let bearer =
            request.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {token}"));
        let version = request.headers.get("x-github-api-version").and_then(|v| v.to_str().ok()) == Some("2022-11-28");
        bearer && version
    }

    fn etags(&self) -> bool {
        true
    }

    fn serve(&self, state: &mut State, call: &Call, outside: bool) -> Reply {
        let origin = origin(&call.base);
        if !outside {
            let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
            return self.serve_repo(state, call, &segments, &origin);
        }
        let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        match segments.as_slice() {
            // A renamed repository's old name: 301 for a GET, 307 for a write,
            // to the repository's id (octokit/fixtures
            // scenarios/api.github.com/rename-repository/normalized-fixture.json).
            ["repos", owner, name, rest @ ..] if self.former(owner, name) => {
                let mut location = format!("{origin}/repositories/{REPO_ID}");
                for segment in rest {
                    location.push('/');
                    location.push_str(segment);
                }
                if !call.raw_query.is_empty() {
                    location.push('?');
                    location.push_str(call.raw_query);
                }
                let status = if call.method == "GET" { 301 } else { 307 };
                Reply::json(
                    status,
                    json!({
                        "message": "Moved Permanently",
                        "url": location,
                        "documentation_url": "https://docs.github.com/v3/#http-redirects"
                    }),
                )
                .header("location", location)
            }
            ["repositories", id, rest @ ..] if *id == REPO_ID.to_string() => {
                self.serve_repo(state, call, rest, &origin)
            }
            _ => Reply::not_found(),
        }
    }
}

impl GitHubApi {
    fn serve_repo(&self, state: &mut State, call: &Call, segments: &[&str], base: &str) -> Reply {
        let repo = self.name();
        match (call.method.as_str(), segments) {
            ("GET", []) => Reply::ok(json!({
                "id": REPO_ID,
                "full_name": repo,
                "url": format!("{base}/repos/{repo}"),
                "default_branch": "main"
            })),
            ("GET", ["issues"]) => {
                let by_updated = call.param("sort") == Some("updated");
                let descending = call.param("direction") != Some("asc");
                let items = state.listed(true, call.time("since"), by_updated, descending);
                let (slice, more) = page(&items, call.number("page", 1), call.number("per_page", 30));
                let body: Vec<Value> = slice.iter().map(|i| issue_json(base, &repo, i)).collect();
                let mut reply = Reply::ok(json!(body));
                if more {
                    let next = call.page_url(call.number("page", 1) + 1);
                    reply = reply.header("link", format!("<{next}>; rel=\"next\""));
                }
                reply
            }
            ("POST", ["issues"]) => {
                let title = call.body.get("title").and_then(Value::as_str).unwrap_or("");
                if title.is_empty() {
                    return Reply::json(422, json!({"message": "Validation Failed"}));
                }
                let number = state.create(title, "", vec![], vec![], false);
                let item = state.items.get_mut(&number).unwrap();
                apply(item, &call.body);
                for label in item.labels.clone() {
                    state.label_id(&label);
                }
                Reply::json(201, issue_json(base, &repo, &state.items[&number]))
            }
            ("GET", ["issues", n]) => match n.parse::<i64>().ok().and_then(|n| state.items.get(&n)) {
                Some(item) if item.deleted => Reply::json(410, json!({"message": "This issue was deleted"})),
                Some(item) => Reply::ok(issue_json(base, &repo, item)),
                None => Reply::not_found(),
            },
            ("PATCH", ["issues", n]) => {
                let Some(number) = n.parse::<i64>().ok().filter(|n| state.item(*n).is_some()) else {
                    return Reply::not_found();
                };
                let item = state.item_mut(number).unwrap();
                apply(item, &call.body);
                for label in state.items[&number].labels.clone() {
                    state.label_id(&label);
                }
                Reply::ok(issue_json(base, &repo, &state.items[&number]))
            }
            // rest-api-description: GET /repos/{owner}/{repo}/labels (Link paging).
            ("GET", ["labels"]) => {
                let labels: Vec<Value> =
                    state.labels.iter().map(|(name, id)| json!({"id": id, "name": name, "color": "ededed"})).collect();
                let (slice, more) = page(&labels, call.number("page", 1), call.number("per_page", 30));
                let mut reply = Reply::ok(json!(slice));
                if more {
                    let next = call.page_url(call.number("page", 1) + 1);
                    reply = reply.header("link", format!("<{next}>; rel=\"next\""));
                }
                reply
            }
            ("GET", ["actions", "runs"]) if state.denied.iter().any(|d| d == "actions") => denied("actions"),
            ("GET", ["actions", "runs"]) if state.actions => {
                Reply::ok(json!({"total_count": state.runs.len(), "workflow_runs": state.runs}))
            }
            ("GET", ["deployments", ..]) if state.denied.iter().any(|d| d == "deployments") => denied("deployments"),
            ("GET", ["deployments"]) => Reply::ok(json!(state.deployments)),
            ("GET", ["deployments", id, "statuses"]) => {
                let statuses =
                    id.parse::<i64>().ok().and_then(|id| state.statuses.get(&id)).cloned().unwrap_or_default();
                Reply::ok(json!(statuses.into_iter().take(call.number("per_page", 30) as usize).collect::<Vec<_>>()))
            }
            ("GET", ["environments"]) => {
                Reply::ok(json!({"total_count": state.environments.len(), "environments": state.environments}))
            }
            ("GET", ["releases"]) if state.denied.iter().any(|d| d == "releases") => denied("contents"),
            ("GET", ["releases"]) => Reply::ok(json!(state.releases)),
            _ => Reply::not_found(),
        }
    }
}

/// Delivery state: a finished run, a deployment to production with a
/// success status, a published release.
pub fn seed_delivery(forge: &FakeGitHub) {
    let mut state = forge.state();
    state.runs.push(json!({
        "id": 7001, "name": "CI", "head_branch": "main", "head_sha": "abc1234def",
        "status": "completed", "conclusion": "success", "html_url": "https://github.example/acme/app/actions/runs/7001",
        "run_started_at": "2026-01-02T10:00:00Z", "created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-02T10:05:00Z"
    }));
    state.runs.push(json!({
        "id": 7002, "name": "CI", "head_branch": "feature", "head_sha": "bcd2345efa",
        "status": "in_progress", "conclusion": null, "html_url": "https://github.example/acme/app/actions/runs/7002",
        "created_at": "2026-01-02T11:00:00Z", "updated_at": "2026-01-02T11:01:00Z"
    }));
    state.deployments.push(json!({
        "id": 9001, "sha": "abc1234def", "ref": "main", "environment": "production",
        "created_at": "2026-01-02T10:10:00Z", "updated_at": "2026-01-02T10:12:00Z"
    }));
    state.statuses.insert(
        9001,
        vec![json!({
            "state": "success", "environment_url": "https://app.example.com",
            "log_url": "https://github.example/acme/app/deployments/9001", "created_at": "2026-01-02T10:12:00Z"
        })],
    );
    state.releases.push(json!({
        "id": 5001, "tag_name": "v1.0.0", "name": "v1.0.0", "draft": false, "prerelease": false,
        "target_commitish": "main", "html_url": "https://github.example/acme/app/releases/v1.0.0",
        "published_at": "2026-01-02T12:00:00Z", "body": "First release"
    }));
}

/// Recorded GitHub traffic (tests/fixtures/github, from octokit/fixtures)
/// answered again on a local server: each request is matched to a recorded
/// one by method, path and `page`, and `https://api.github.com` in headers
/// and bodies becomes this server. A request carrying the recorded ETag in
/// `If-None-Match` is answered 304 with no body, as GitHub answers a
/// conditional request for an unchanged resource (docs: "Best practices for
/// using the REST API", Use conditional requests if appropriate).
pub struct Replay {
    server: wiremock::MockServer,
    log: std::sync::Arc<Mutex<Vec<super::forge::Record>>>,
}

struct Recorded {
    method: String,
    path: String,
    page: String,
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

struct ReplayResponder {
    recorded: Vec<Recorded>,
    log: std::sync::Arc<Mutex<Vec<super::forge::Record>>>,
}

fn page_of(query: Option<&str>) -> String {
    query.unwrap_or("").split('&').find_map(|p| p.strip_prefix("page=")).unwrap_or("1").to_string()
}

impl wiremock::Respond for ReplayResponder {
    fn respond(&self, request: &Request) -> wiremock::ResponseTemplate {
        let method = request.method.as_str().to_ascii_uppercase();
        let path = request.url.path().to_string();
        let page = page_of(request.url.query());
        let if_none_match = request.headers.get("if-none-match").and_then(|v| v.to_str().ok()).map(str::to_string);
        let found = self.recorded.iter().find(|r| r.method == method && r.path == path && r.page == page);
        let (status, template) = match found {
            None => (404, wiremock::ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"}))),
            Some(r) => {
                let etag = r.headers.iter().find(|(n, _)| n == "etag").map(|(_, v)| v.clone());
                let status = if method == "GET" && etag.is_some() && if_none_match == etag { 304 } else { r.status };
                let mut template = wiremock::ResponseTemplate::new(status);
                if status != 304 {
                    template = template.set_body_json(r.body.clone());
                }
                for (name, value) in &r.headers {
                    template = template.insert_header(name.as_str(), value.as_str());
                }
                (status, template)
            }
        };
        self.log.lock().unwrap().push(super::forge::Record {
            method,
            path,
            query: request.url.query().unwrap_or("").to_string(),
            if_none_match: if_none_match.is_some(),
            status,
        });
        template
    }
}

impl Replay {
    /// Serves the recorded scenarios named (`paginate-issues`, …).
    pub async fn start(scenarios: &[&str]) -> Replay {
        let server = wiremock::MockServer::start().await;
        let origin = server.uri();
        let mut recorded = Vec::new();
        for scenario in scenarios {
            let path = format!("{}/tests/fixtures/github/{scenario}.json", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap().replace("https://api.github.com", &origin);
            let entries: Vec<Value> = serde_json::from_str(&text).unwrap();
            for entry in entries {
                let full = entry["path"].as_str().unwrap().to_string();
                let (path, query) = match full.split_once('?') {
                    Some((path, query)) => (path.to_string(), Some(query.to_string())),
                    None => (full, None),
                };
                // Headers as sent (values are strings on the wire); the body
                // length no longer holds once URLs are rewritten.
                let headers = entry["headers"]
                    .as_object()
                    .map(|h| {
                        h.iter()
                            .filter(|(n, _)| !matches!(n.as_str(), "content-length" | "connection" | "content-type"))
                            .map(|(n, v)| (n.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                recorded.push(Recorded {
                    method: entry["method"].as_str().unwrap().to_ascii_uppercase(),
                    page: page_of(query.as_deref()),
                    path,
                    status: entry["status"].as_u64().unwrap() as u16,
                    body: entry["response"].clone(),
                    headers,
                });
            }
        }
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let responder = ReplayResponder { recorded, log: log.clone() };
        wiremock::Mock::given(wiremock::matchers::any()).respond_with(responder).mount(&server).await;
        Replay { server, log }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    pub fn requests(&self) -> Vec<super::forge::Record> {
        self.log.lock().unwrap().clone()
    }

    pub fn reset_log(&self) {
        self.log.lock().unwrap().clear();
    }
}
