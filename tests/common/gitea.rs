//! A fake Gitea (or Forgejo) API v1 for one repository `acme/app`, on the
//! shared [`super::forge`] state: issues (`type=issues` leaves pull requests
//! out), labels by id, Actions runs (switchable off: a 404, as on servers
//! without Actions), releases; no deployments API. `page`/`limit` paging
//! with `X-Total-Count`, `Authorization: token`.
#![allow(dead_code)]

use serde_json::{Value, json};
use wiremock::Request;

use super::forge::{Call, Dialect, Forge, Item, Reply, State, page, rfc3339};

pub const TOKEN: &str = "gitea_fake_token";

pub struct GiteaApi;

pub type FakeGitea = Forge<GiteaApi>;

pub async fn start() -> FakeGitea {
    Forge::start(GiteaApi, TOKEN).await
}

fn issue_json(state: &State, base: &str, item: &Item) -> Value {
    json!({
        "id": 2_000_000 + item.number,
        "number": item.number,
        "title": item.title,
        "body": item.body,
        "state": if item.closed { "closed" } else { "open" },
        "labels": item.labels.iter().map(|l| json!({"id": state.labels.iter().find(|(n, _)| n == l).map(|(_, id)| *id), "name": l})).collect::<Vec<_>>(),
        "assignees": item.assignees.iter().map(|a| json!({"login": a})).collect::<Vec<_>>(),
        "created_at": rfc3339(item.created_at),
        "updated_at": rfc3339(item.updated_at),
        "html_url": format!("{base}/acme/app/issues/{}", item.number),
        "pull_request": if item.pull { json!({"merged": false}) } else { Value::Null },
    })
}

fn apply(state: &mut State, number: i64, body: &Value) {
    let labels: Option<Vec<String>> = body
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).filter_map(|id| state.label_name(id)).collect());
    let item = state.items.get_mut(&number).unwrap();
    if let Some(title) = body.get("title").and_then(Value::as_str) {
        item.title = title.into();
    }
    if let Some(text) = body.get("body").and_then(Value::as_str) {
        item.body = text.into();
    }
    if let Some(state) = body.get("state").and_then(Value::as_str) {
        item.closed = state == "closed";
    }
    if let Some(closed) = body.get("closed").and_then(Value::as_bool) {
        item.closed = closed;
    }
    if let Some(assignees) = body.get("assignees").and_then(Value::as_array) {
        item.assignees = assignees.iter().filter_map(Value::as_str).map(str::to_string).collect();
    }
    if let Some(labels) = labels {
        item.labels = labels;
    }
}

impl Dialect for GiteaApi {
    fn prefix(&self) -> String {
        "/api/v1/repos/acme/app".into()
    }

    fn authorized(&self, request: &Request, token: &str) -> bool {
        request.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("token {token}"))
    }

    fn etags(&self) -> bool {
        false
    }

    fn serve(&self, state: &mut State, call: &Call, outside: bool) -> Reply {
        if outside {
            return Reply::not_found();
        }
        let base = call.base.split("/api/v1/").next().unwrap_or("").to_string();
        let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        match (call.method.as_str(), segments.as_slice()) {
            ("GET", []) => Reply::ok(json!({"full_name": "acme/app", "default_branch": "main"})),
            ("GET", ["issues"]) => {
                let pulls = call.param("type") != Some("issues");
                let wanted = call.param("state").unwrap_or("open");
                // Gitea lists newest first.
                let items: Vec<Item> = state
                    .listed(pulls, call.time("since"), false, true)
                    .into_iter()
                    .filter(|i| wanted == "all" || (wanted == "closed") == i.closed)
                    .collect();
                let (slice, _) = page(&items, call.number("page", 1), call.number("limit", 30).min(50));
                let body: Vec<Value> = slice.iter().map(|i| issue_json(state, &base, i)).collect();
                Reply::ok(json!(body)).header("x-total-count", items.len().to_string())
            }
            ("POST", ["issues"]) => {
                let title = call.body.get("title").and_then(Value::as_str).unwrap_or("");
                if title.is_empty() {
                    return Reply::json(422, json!({"message": "title is empty"}));
                }
                let number = state.create(title, "", vec![], vec![], false);
                apply(state, number, &call.body);
                Reply::json(201, issue_json(state, &base, &state.items[&number]))
            }
            ("GET", ["issues", n]) => match n.parse::<i64>().ok().and_then(|n| state.item(n)) {
                Some(item) => Reply::ok(issue_json(state, &base, item)),
                None => Reply::not_found(),
            },
            ("PATCH", ["issues", n]) => {
                let Some(number) = n.parse::<i64>().ok().filter(|n| state.item(*n).is_some()) else {
                    return Reply::not_found();
                };
                state.item_mut(number);
                apply(state, number, &call.body);
                Reply::json(201, issue_json(state, &base, &state.items[&number]))
            }
            ("PUT", ["issues", n, "labels"]) => {
                let Some(number) = n.parse::<i64>().ok().filter(|n| state.item(*n).is_some()) else {
                    return Reply::not_found();
                };
                state.item_mut(number);
                apply(state, number, &json!({"labels": call.body.get("labels").cloned().unwrap_or(json!([]))}));
                let labels: Vec<Value> = state.items[&number].labels.iter().map(|l| json!({"name": l})).collect();
                Reply::ok(json!(labels))
            }
            // routers/api/v1/repo/label.go ListLabels: paged by `page`/`limit`
            // (utils.GetListOptions: at most 50 a page), X-Total-Count.
            ("GET", ["labels"]) => {
                let labels: Vec<Value> = state.labels.iter().map(|(n, id)| json!({"id": id, "name": n})).collect();
                let (slice, _) = page(&labels, call.number("page", 1), call.number("limit", 30).min(50));
                Reply::ok(json!(slice)).header("x-total-count", labels.len().to_string())
            }
            // CreateLabel: a new label every time (names are not unique in Gitea).
            ("POST", ["labels"]) => {
                let name = call.body.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                let id = 100 + state.labels.len() as i64;
                state.labels.push((name.clone(), id));
                Reply::json(201, json!({"id": id, "name": name}))
            }
            ("GET", ["actions", "runs"]) if state.actions => {
                Reply::ok(json!({"total_count": state.runs.len(), "workflow_runs": state.runs}))
            }
            ("GET", ["releases"]) => Reply::ok(json!(state.releases)),
            _ => Reply::not_found(),
        }
    }
}

/// A finished Actions run and a published release.
pub fn seed_delivery(forge: &FakeGitea) {
    let mut state = forge.state();
    // modules/structs/repo_actions.go ActionWorkflowRun, as
    // services/convert/convert.go ToActionWorkflowRun fills it: no `name`,
    // `updated_at`, `run_started_at` or `created_at`; a time not reached yet
    // is the zero TimeStamp (the Unix epoch).
    state.runs.push(json!({
        "id": 31, "url": "https://gitea.example/api/v1/repos/acme/app/actions/runs/31",
        "html_url": "https://gitea.example/acme/app/actions/runs/31", "display_title": "Fix the build",
        "path": "build.yml@refs/heads/main", "event": "push", "run_attempt": 1, "run_number": 9,
        "head_sha": "0123abcd", "head_branch": "main", "status": "completed", "conclusion": "failure",
        "started_at": "2026-01-03T09:00:00Z", "completed_at": "2026-01-03T09:04:00Z"
    }));
    state.runs.push(json!({
        "id": 32, "url": "https://gitea.example/api/v1/repos/acme/app/actions/runs/32",
        "html_url": "https://gitea.example/acme/app/actions/runs/32", "display_title": "Waiting for a runner",
        "path": "build.yml@refs/heads/main", "event": "push", "run_attempt": 1, "run_number": 10,
        "head_sha": "1234abcd", "head_branch": "main", "status": "queued",
        "started_at": "1970-01-01T00:00:00Z", "completed_at": "1970-01-01T00:00:00Z"
    }));
    state.releases.push(json!({
        "id": 12, "tag_name": "v0.9.0", "name": "", "draft": true, "prerelease": false,
        "target_commitish": "main", "html_url": "https://gitea.example/acme/app/releases/tag/v0.9.0",
        "published_at": null, "body": ""
    }));
}
