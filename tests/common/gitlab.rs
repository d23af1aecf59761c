//! A fake GitLab API v4 for one project `acme/app` (addressed as
//! `acme%2Fapp`), on the shared [`super::forge`] state: issues by `iid`
//! (the issues endpoint has no merge requests), users by username,
//! pipelines, deployments with environments, releases. Offset paging with
//! `x-next-page`, `PRIVATE-TOKEN`, `state_event` and comma-separated labels.
#![allow(dead_code)]

use serde_json::{Value, json};
use wiremock::Request;

use super::forge::{Call, Dialect, Forge, Item, Reply, State, page, rfc3339};

pub const TOKEN: &str = "glpat-fake-token";

pub struct GitLabApi;

pub type FakeGitLab = Forge<GitLabApi>;

pub async fn start() -> FakeGitLab {
    Forge::start(GitLabApi, TOKEN).await
}

fn issue_json(state: &State, base: &str, item: &Item) -> Value {
    json!({
        "id": 3_000_000 + item.number,
        "iid": item.number,
        "title": item.title,
        "description": if item.body.is_empty() { Value::Null } else { json!(item.body) },
        "state": if item.closed { "closed" } else { "opened" },
        "labels": item.labels,
        "assignees": item.assignees.iter().map(|a| json!({"id": state.user_id(a), "username": a})).collect::<Vec<_>>(),
        "created_at": rfc3339(item.created_at),
        "updated_at": rfc3339(item.updated_at),
        "web_url": format!("{base}/acme/app/-/issues/{}", item.number),
    })
}

fn apply(state: &mut State, number: i64, body: &Value) {
    let assignees: Option<Vec<String>> = body
        .get("assignee_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).filter_map(|id| state.user_name(id)).collect());
    // doc/api/issues.md: a label named that does not exist yet is created.
    if let Some(labels) = body.get("labels").and_then(Value::as_str) {
        for label in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            state.label_id(label);
        }
    }
    let item = state.items.get_mut(&number).unwrap();
    if let Some(title) = body.get("title").and_then(Value::as_str) {
        item.title = title.into();
    }
    if let Some(text) = body.get("description").and_then(Value::as_str) {
        item.body = text.into();
    }
    match body.get("state_event").and_then(Value::as_str) {
        Some("close") => item.closed = true,
        Some("reopen") => item.closed = false,
        _ => {}
    }
    if let Some(labels) = body.get("labels").and_then(Value::as_str) {
        item.labels = labels.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    }
    if let Some(assignees) = assignees {
        item.assignees = assignees;
    }
}

impl Dialect for GitLabApi {
    fn prefix(&self) -> String {
        "/api/v4/projects/acme%2Fapp".into()
    }

    fn authorized(&self, request: &Request, token: &str) -> bool {
        request.headers.get("private-token").and_then(|v| v.to_str().ok()) == Some(token)
    }

    fn etags(&self) -> bool {
        false
    }

    fn serve(&self, state: &mut State, call: &Call, outside: bool) -> Reply {
        let base = call.base.split("/api/v4/").next().unwrap_or("").to_string();
        let segments: Vec<&str> = call.segments.iter().map(String::as_str).collect();
        if outside {
            return match (call.method.as_str(), segments.as_slice()) {
                ("GET", ["api", "v4", "users"]) => {
                    let name = call.param("username").unwrap_or("");
                    let found: Vec<Value> =
                        state.user_id(name).map(|id| json!({"id": id, "username": name})).into_iter().collect();
                    Reply::ok(json!(found))
                }
                _ => Reply::not_found(),
            };
        }
        match (call.method.as_str(), segments.as_slice()) {
            ("GET", []) => Reply::ok(json!({"path_with_namespace": "acme/app", "default_branch": "main"})),
            ("GET", ["issues"]) => {
                let by_updated = call.param("order_by") == Some("updated_at");
                let descending = call.param("sort") != Some("asc");
                let items = state.listed(false, call.time("updated_after"), by_updated, descending);
                let current = call.number("page", 1);
                let (slice, more) = page(&items, current, call.number("per_page", 20));
                let body: Vec<Value> = slice.iter().map(|i| issue_json(state, &base, i)).collect();
                Reply::ok(json!(body))
                    .header("x-page", current.to_string())
                    .header("x-next-page", if more { (current + 1).to_string() } else { String::new() })
                    .header("x-total", items.len().to_string())
            }
            ("POST", ["issues"]) => {
                let title = call.body.get("title").and_then(Value::as_str).unwrap_or("");
                if title.is_empty() {
                    return Reply::json(400, json!({"message": "title is missing"}));
                }
                let number = state.create(title, "", vec![], vec![], false);
                apply(state, number, &call.body);
                Reply::json(201, issue_json(state, &base, &state.items[&number]))
            }
            ("GET", ["issues", n]) => match n.parse::<i64>().ok().and_then(|n| state.item(n)) {
                Some(item) => Reply::ok(issue_json(state, &base, item)),
                None => Reply::not_found(),
            },
            ("PUT", ["issues", n]) => {
                let Some(number) = n.parse::<i64>().ok().filter(|n| state.item(*n).is_some()) else {
                    return Reply::not_found();
                };
                state.item_mut(number);
                apply(state, number, &call.body);
                Reply::ok(issue_json(state, &base, &state.items[&number]))
            }
            // doc/api/labels.md: GET /projects/:id/labels, offset paging.
            ("GET", ["labels"]) => {
                let labels: Vec<Value> = state.labels.iter().map(|(n, id)| json!({"id": id, "name": n})).collect();
                let current = call.number("page", 1);
                let (slice, more) = page(&labels, current, call.number("per_page", 20));
                Reply::ok(json!(slice))
                    .header("x-page", current.to_string())
                    .header("x-next-page", if more { (current + 1).to_string() } else { String::new() })
            }
            ("GET", ["pipelines"]) => Reply::ok(json!(state.runs)),
            // lib/api/deployments.rb over app/finders/deployments_finder.rb:
            // `order_by=updated_at` without an `updated_after`/`updated_before`
            // filter is an InefficientQueryError (tracked today, a 400 to come:
            // gitlab-org/gitlab#328500), answered here as that 400.
            ("GET", ["deployments"]) => {
                let filtered = call.param("updated_after").is_some() || call.param("updated_before").is_some();
                if (call.param("order_by") == Some("updated_at")) != filtered {
                    return Reply::json(
                        400,
                        json!({"message": "400 Bad request - `updated_at` filter and `updated_at` sorting must be paired"}),
                    );
                }
                let after = call.time("updated_after");
                let listed: Vec<&Value> = state
                    .deployments
                    .iter()
                    .filter(|d| {
                        let at = d.get("updated_at").and_then(Value::as_str).and_then(|t| {
                            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                        });
                        after.is_none_or(|after| at.is_some_and(|at| at > after))
                    })
                    .collect();
                Reply::ok(json!(listed))
            }
            // doc/api/environments.md: each environment with its `tier`.
            ("GET", ["environments"]) => Reply::ok(json!(state.environments)),
            ("GET", ["releases"]) => Reply::ok(json!(state.releases)),
            _ => Reply::not_found(),
        }
    }
}

/// A pipeline, a deployment to staging and a release.
pub fn seed_delivery(forge: &FakeGitLab) {
    let mut state = forge.state();
    state.runs.push(json!({
        "id": 401, "sha": "fedcba98", "ref": "main", "status": "success",
        "web_url": "https://gitlab.example/acme/app/-/pipelines/401",
        "created_at": "2026-01-04T08:00:00Z", "updated_at": "2026-01-04T08:06:00Z"
    }));
    // lib/api/entities/deployment.rb: no `finished_at`; the environment is an
    // Entities::EnvironmentBasic (no `tier`); `deployable` is the CI job
    // (Entities::Ci::Job, with started_at/finished_at), null when the
    // deployment was made through the API.
    let at = |minutes: i64| {
        rfc3339(time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::minutes(minutes))
    };
    state.deployments.push(json!({
        "id": 77, "iid": 3, "ref": "main", "sha": "fedcba98", "status": "running",
        "environment": {"id": 5, "name": "staging", "slug": "staging", "external_url": "https://staging.example.com",
                        "created_at": at(600), "updated_at": at(30)},
        "deployable": null, "user": {"id": 1, "username": "ana"},
        "created_at": at(31), "updated_at": at(30)
    }));
    state.deployments.push(json!({
        "id": 78, "iid": 4, "ref": "main", "sha": "fedcba98", "status": "success",
        "environment": {"id": 6, "name": "eu-west", "slug": "eu-west", "external_url": "https://eu.example.com",
                        "created_at": at(600), "updated_at": at(10)},
        "deployable": {"id": 901, "status": "success", "stage": "deploy", "name": "deploy", "ref": "main",
                       "created_at": at(25), "started_at": at(20), "finished_at": at(12),
                       "web_url": "https://gitlab.example/acme/app/-/jobs/901"},
        "user": {"id": 1, "username": "ana"},
        "created_at": at(25), "updated_at": at(10)
    }));
    // A deployment updated long ago: outside any recent window.
    state.deployments.push(json!({
        "id": 12, "iid": 1, "ref": "main", "sha": "fedcba98", "status": "success",
        "environment": {"id": 5, "name": "staging", "slug": "staging", "external_url": "https://staging.example.com"},
        "deployable": null, "created_at": "2025-01-04T08:07:00Z", "updated_at": "2025-01-04T08:07:30Z"
    }));
    state.environments = vec![
        json!({"id": 5, "name": "staging", "slug": "staging", "external_url": "https://staging.example.com", "tier": "staging", "state": "available"}),
        json!({"id": 6, "name": "eu-west", "slug": "eu-west", "external_url": "https://eu.example.com", "tier": "production", "state": "available"}),
    ];
    state.releases.push(json!({
        "tag_name": "v2.1.0", "name": "Spring", "description": "Notes",
        "released_at": "2026-01-04T09:00:00Z", "upcoming_release": false,
        "commit": {"id": "fedcba98"}, "_links": {"self": "https://gitlab.example/acme/app/-/releases/v2.1.0"}
    }));
}
