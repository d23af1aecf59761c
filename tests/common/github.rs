//! A fake GitHub REST API (version 2022-11-28) for one repository
//! `acme/app`, on the shared [`super::forge`] state: issues (with pull
//! requests in `/issues`, as GitHub lists them), Actions runs, deployments
//! with statuses, releases. `Link` paging, ETags with 304s, `Authorization:
//! Bearer`. A deleted issue answers 410.
#![allow(dead_code)]

use serde_json::{Value, json};
use wiremock::Request;

use super::forge::{Call, Dialect, Forge, Item, Reply, State, page, rfc3339};

pub const TOKEN: &str = "ghp_fake_token";

pub struct GitHubApi;

pub type FakeGitHub = Forge<GitHubApi>;

pub async fn start() -> FakeGitHub {
    Forge::start(GitHubApi, TOKEN).await
}

pub fn issue_json(base: &str, item: &Item) -> Value {
    let mut value = json!({
        "id": 1_000_000 + item.number,
        "number": item.number,
        "title": item.title,
        "body": if item.body.is_empty() { Value::Null } else { json!(item.body) },
        "state": if item.closed { "closed" } else { "open" },
        "labels": item.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "assignees": item.assignees.iter().map(|a| json!({"login": a})).collect::<Vec<_>>(),
        "created_at": rfc3339(item.created_at),
        "updated_at": rfc3339(item.updated_at),
        "html_url": format!("{base}/acme/app/issues/{}", item.number),
        "repository_url": format!("{base}/repos/{}", if item.transferred { "acme/elsewhere" } else { "acme/app" }),
    });
    if item.pull {
        value["pull_request"] = json!({"url": format!("{base}/repos/acme/app/pulls/{}", item.number)});
    }
    value
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// Applies an issue write body (GitHub's field names).
pub fn apply(item: &mut Item, body: &Value) {
    if let Some(title) = body.get("title").and_then(Value::as_str) {
        item.title = title.into();
    }
    if let Some(text) = body.get("body").and_then(Value::as_str) {
        item.body = text.into();
    }
    if let Some(state) = body.get("state").and_then(Value::as_str) {
        item.closed = state == "closed";
    }
    if let Some(labels) = body.get("labels").and_then(strings) {
        item.labels = labels;
    }
    if let Some(assignees) = body.get("assignees").and_then(strings) {
        item.assignees = assignees;
    }
}

impl Dialect for GitHubApi {
    fn prefix(&self) -> String {
        "/repos/acme/app".into()
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
        if outside {
            return Reply::not_found();
        }
        let base = call.base.split("/repos/").next().unwrap_or("").to_string();
        let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        match (call.method.as_str(), segments.as_slice()) {
            ("GET", []) => Reply::ok(json!({"full_name": "acme/app", "default_branch": "main"})),
            ("GET", ["issues"]) => {
                let by_updated = call.param("sort") == Some("updated");
                let descending = call.param("direction") != Some("asc");
                let items = state.listed(true, call.time("since"), by_updated, descending);
                let (slice, more) = page(&items, call.number("page", 1), call.number("per_page", 30));
                let body: Vec<Value> = slice.iter().map(|i| issue_json(&base, i)).collect();
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
                Reply::json(201, issue_json(&base, &state.items[&number]))
            }
            ("GET", ["issues", n]) => match n.parse::<i64>().ok().and_then(|n| state.items.get(&n)) {
                Some(item) if item.deleted => Reply::json(410, json!({"message": "This issue was deleted"})),
                Some(item) => Reply::ok(issue_json(&base, item)),
                None => Reply::not_found(),
            },
            ("PATCH", ["issues", n]) => {
                let Some(number) = n.parse::<i64>().ok().filter(|n| state.item(*n).is_some()) else {
                    return Reply::not_found();
                };
                let item = state.item_mut(number).unwrap();
                apply(item, &call.body);
                Reply::ok(issue_json(&base, &state.items[&number]))
            }
            ("GET", ["actions", "runs"]) if state.actions => {
                Reply::ok(json!({"total_count": state.runs.len(), "workflow_runs": state.runs}))
            }
            ("GET", ["deployments"]) => Reply::ok(json!(state.deployments)),
            ("GET", ["deployments", id, "statuses"]) => {
                let statuses =
                    id.parse::<i64>().ok().and_then(|id| state.statuses.get(&id)).cloned().unwrap_or_default();
                Reply::ok(json!(statuses.into_iter().take(call.number("per_page", 30) as usize).collect::<Vec<_>>()))
            }
            ("GET", ["environments"]) => {
                Reply::ok(json!({"total_count": state.environments.len(), "environments": state.environments}))
            }
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
