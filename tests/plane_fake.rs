//! The fake Plane server itself (`tests/common/plane.rs`), over real HTTP:
//! auth, work-item CRUD and its validation, idempotent creates, paging and
//! ordering, faults, the rate limit, cycles and modules, and the request log.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::plane::{FakePlane, Fault, Matcher};
use reqwest::Method;
use serde_json::{Value, json};

/// An answer: status, headers, raw body.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
}

struct Api {
    fake: FakePlane,
    http: reqwest::Client,
}

impl Api {
    async fn start() -> Api {
        Api::with(FakePlane::start().await)
    }

    fn with(fake: FakePlane) -> Api {
        Api { fake, http: FakePlane::client() }
    }

    /// `path` is relative to the project (`work-items/?per_page=5`).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.raw(method, &self.fake.endpoint(path), Some(self.fake.token()), body).await
    }

    async fn raw(&self, method: Method, url: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.header("X-API-Key", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the fake answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        Answer { status, headers, text }
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// Every page of a list, following `next_page_results`.
    async fn all_pages(&self, path: &str, per_page: usize, extra: &str) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut pages = 0;
        for page in 0.. {
            let answer = self.get(&format!("{path}?per_page={per_page}&cursor={per_page}:{page}:0{extra}")).await;
            assert_eq!(answer.status, 200, "{}", answer.text);
            let body = answer.json();
            pages += 1;
            items.extend(body["results"].as_array().unwrap().iter().cloned());
            if !body["next_page_results"].as_bool().unwrap() {
                break;
            }
        }
        (items, pages)
    }
}

fn id(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_string()
}

#[tokio::test]
async fn only_the_token_opens_only_the_configured_project() {
    let api = Api::start().await;
    let url = api.fake.endpoint("work-items/");

    let none = api.raw(Method::GET, &url, None, None).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json(), json!({ "detail": "Authentication credentials were not provided." }));
    assert_eq!(api.raw(Method::GET, &url, Some("wrong"), None).await.status, 401);
    assert_eq!(api.get("work-items/").await.status, 200);

    let other_workspace = url.replace(&format!("/workspaces/{}/", api.fake.workspace()), "/workspaces/elsewhere/");
    assert_eq!(api.raw(Method::GET, &other_workspace, Some(api.fake.token()), None).await.status, 404);
    let other_project = url.replace(api.fake.project_id(), &uuid::Uuid::new_v4().to_string());
    assert_eq!(api.raw(Method::GET, &other_project, Some(api.fake.token()), None).await.status, 404);
    // No trailing slash, unknown endpoints (CE has no pages API), wrong method.
    assert_eq!(api.get("work-items").await.status, 404);
    assert_eq!(api.get("pages/").await.status, 404);
    assert_eq!(api.call(Method::PUT, "work-items/", Some(json!({}))).await.status, 405);

    let project = api.get("").await.json();
    assert_eq!(project["id"], api.fake.project_id());
    assert_eq!(project["identifier"], "FAKE");
    assert!(api.fake.url().starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn work_items_are_created_read_patched_and_deleted() {
    let api = Api::start().await;
    let ana = api.fake.add_member("Ana Lima", "ana@example.com");
    let bug = api.fake.add_label("bug");

    let created = api.post("work-items/", json!({ "name": "First" })).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let first = created.json();
    assert_eq!(first["sequence_id"], 1);
    assert_eq!(first["description_html"], "<p></p>");
    assert_eq!(first["priority"], "none");
    assert_eq!(first["state"], api.fake.state_id("backlog").as_str());
    assert_eq!(first["state"], api.fake.state_id("Backlog").as_str());
    assert_eq!(first["assignees"], json!([]));
    assert_eq!(first["parent"], Value::Null);
    assert_eq!(first["archived_at"], Value::Null);
    assert_eq!(first["is_draft"], false);
    assert_eq!(first["project"], api.fake.project_id());
    let stamp = first["updated_at"].as_str().unwrap();
    assert_eq!(stamp.len(), "2026-11-27T12:00:00.123456Z".len(), "{stamp}");
    assert!(
        stamp.ends_with('Z')
            && time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).is_ok()
    );

    let full = api
        .post(
            "work-items/",
            json!({
                "name": "Second",
                "description_html": "<p>Hello <em>there</em></p>",
                "priority": "high",
                "state": api.fake.state_id("started"),
                "start_date": "2026-01-02",
                "target_date": "2026-02-03",
                "assignees": [ana],
                "labels": [bug],
                "external_source": "mission-control",
                "external_id": "42",
            }),
        )
        .await
        .json();
    assert_eq!(full["sequence_id"], 2);
    assert_eq!(full["description_html"], "<p>Hello <em>there</em></p>");
    assert_eq!(full["labels"], json!([bug]));
    assert_eq!(full["assignees"], json!([ana]));
    assert_eq!(full["target_date"], "2026-02-03");

    let item = id(&first);
    assert_eq!(api.get(&format!("work-items/{item}/")).await.json(), first);

    let patched = api
        .patch(&format!("work-items/{item}/"), json!({ "priority": "urgent", "state": api.fake.state_id("completed") }))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let patched = patched.json();
    assert_eq!(patched["priority"], "urgent");
    assert_eq!(patched["name"], "First", "fields not given stay");
    assert!(patched["completed_at"].is_string());
    assert!(patched["updated_at"].as_str().unwrap() > first["updated_at"].as_str().unwrap());
    assert_eq!(patched["created_at"], first["created_at"]);
    assert_eq!(api.fake.item(&item).unwrap(), patched);

    assert_eq!(api.delete(&format!("work-items/{item}/")).await.status, 204);
    let gone = api.get(&format!("work-items/{item}/")).await;
    assert_eq!(gone.status, 404);
    assert!(gone.json()["error"].is_string());
    assert_eq!(api.delete(&format!("work-items/{item}/")).await.status, 404);
    assert_eq!(api.patch(&format!("work-items/{item}/"), json!({ "name": "x" })).await.status, 404);
    assert_eq!(api.fake.item_count(), 1);
    // Sequence ids are not reused.
    assert_eq!(api.post("work-items/", json!({ "name": "Third" })).await.json()["sequence_id"], 3);
}

#[tokio::test]
async fn invalid_work_items_are_refused_with_400() {
    let api = Api::start().await;
    let missing = api.post("work-items/", json!({ "priority": "low" })).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json(), json!({ "name": ["This field is required."] }));
    assert_eq!(api.post("work-items/", json!({ "name": "" })).await.status, 400);
    assert_eq!(api.post("work-items/", json!({ "name": "x".repeat(256) })).await.status, 400);
    assert_eq!(api.post("work-items/", json!({ "name": "x".repeat(255) })).await.status, 201);

    let unknown = uuid::Uuid::new_v4().to_string();
    for body in [
        json!({ "name": "n", "priority": "critical" }),
        json!({ "name": "n", "state": unknown }),
        json!({ "name": "n", "labels": [unknown] }),
        json!({ "name": "n", "assignees": [unknown] }),
        json!({ "name": "n", "target_date": "03/02/2026" }),
        json!({ "name": "n", "start_date": "2026-03-02", "target_date": "2026-03-01" }),
    ] {
        let answer = api.post("work-items/", body.clone()).await;
        assert_eq!(answer.status, 400, "{body} -> {}", answer.text);
    }
    let bad_json = api
        .http
        .post(api.fake.endpoint("work-items/"))
        .header("X-API-Key", api.fake.token())
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_json.status().as_u16(), 400);
    assert_eq!(api.fake.item_count(), 1, "nothing refused was stored");

    let item = id(&api.fake.items()[0]);
    let before = api.fake.item(&item).unwrap();
    assert_eq!(api.patch(&format!("work-items/{item}/"), json!({ "priority": "meh" })).await.status, 400);
    assert_eq!(api.patch(&format!("work-items/{item}/"), json!({ "name": "" })).await.status, 400);
    assert_eq!(api.fake.item(&item).unwrap(), before, "a refused patch changes nothing");
}

#[tokio::test]
async fn a_second_create_with_the_same_external_pair_is_a_409_naming_the_first() {
    let api = Api::start().await;
    let body = json!({ "name": "Once", "external_source": "mission-control", "external_id": "7" });
    let first = api.post("work-items/", body.clone()).await.json();

    let again = api.post("work-items/", body).await;
    assert_eq!(again.status, 409);
    assert_eq!(
        again.json(),
        json!({ "error": "Issue with the same external id and external source already exists", "id": id(&first) })
    );
    assert_eq!(api.fake.item_count(), 1);
    // The same id from another source is another object.
    let other = json!({ "name": "Other", "external_source": "elsewhere", "external_id": "7" });
    assert_eq!(api.post("work-items/", other).await.status, 201);

    let found = api.get("work-items/?external_id=7&external_source=mission-control").await;
    assert_eq!(found.status, 200);
    assert_eq!(found.json(), first, "the lookup answers with the object, not a page");
    let missing = api.get("work-items/?external_id=8&external_source=mission-control").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({ "error": "Issue not found" }));
    assert_eq!(api.fake.find_by_external("mission-control", "7").unwrap(), first);

    // A patch cannot take another item's pair.
    let second = api
        .post("work-items/", json!({ "name": "Two", "external_source": "mission-control", "external_id": "8" }))
        .await
        .json();
    let clash = api.patch(&format!("work-items/{}/", id(&second)), json!({ "external_id": "7" })).await;
    assert_eq!(clash.status, 409);
    assert_eq!(clash.json()["id"], id(&first));
}

#[tokio::test]
async fn lists_are_offset_pages_in_plane_envelopes() {
    let api = Api::start().await;
    let ids = api.fake.seed_items(250);
    assert_eq!(ids.len(), 250);

    let first = api.get("work-items/?per_page=100").await.json();
    assert_eq!(first["count"], 100);
    assert_eq!(first["total_count"], 250);
    assert_eq!(first["total_results"], 250);
    assert_eq!(first["total_pages"], 3);
    assert_eq!(first["next_cursor"], "100:1:0");
    assert_eq!(first["prev_cursor"], "100:-1:1");
    assert_eq!(first["next_page_results"], true);
    assert_eq!(first["prev_page_results"], false);
    assert_eq!(first["grouped_by"], Value::Null);
    assert_eq!(first["extra_stats"], Value::Null);
    // Plane's default order is newest first.
    assert_eq!(first["results"][0]["id"], ids[249].as_str());

    let last = api.get("work-items/?per_page=100&cursor=100:2:0").await.json();
    assert_eq!(last["count"], 50);
    assert_eq!(last["next_page_results"], false);
    assert_eq!(last["prev_page_results"], true);
    assert_eq!(last["prev_cursor"], "100:1:1");
    let past = api.get("work-items/?per_page=100&cursor=100:3:0").await.json();
    assert_eq!(past["count"], 0);

    let (items, pages) = api.all_pages("work-items/", 100, "&order_by=created_at").await;
    assert_eq!(pages, 3);
    let seen: Vec<String> = items.iter().map(id).collect();
    assert_eq!(seen, ids, "created_at order is creation order, nothing lost or repeated");
    let (items, pages) = api.all_pages("work-items/", 7, "&order_by=sequence_id").await;
    assert_eq!((items.len(), pages), (250, 36));

    assert_eq!(api.get("work-items/?per_page=1001").await.status, 400);
    assert_eq!(api.get("work-items/?per_page=1000").await.json()["count"], 250);
    assert_eq!(api.get("work-items/?cursor=nonsense").await.status, 400);
    assert_eq!(api.get("work-items/?cursor=100:-1:1").await.status, 400);

    let states = api.get("states/").await.json();
    assert_eq!(states["total_count"], 5);
    let groups: Vec<&str> =
        states["results"].as_array().unwrap().iter().map(|s| s["group"].as_str().unwrap()).collect();
    assert_eq!(groups, ["backlog", "unstarted", "started", "completed", "cancelled"]);
    assert_eq!(states["results"][0]["default"], true);
    assert_eq!(states["results"][0]["name"], "Backlog");
}

#[tokio::test]
async fn ten_thousand_items_list_quickly() {
    let api = Api::start().await;
    let started = Instant::now();
    api.fake.seed_items(10_000);
    let seeded = started.elapsed();
    let started = Instant::now();
    let (items, pages) = api.all_pages("work-items/", 100, "&order_by=-updated_at").await;
    let listed = started.elapsed();
    assert_eq!((items.len(), pages), (10_000, 100));
    assert_eq!(items.iter().map(id).collect::<HashSet<_>>().len(), 10_000);
    eprintln!("seeded 10,000 in {seeded:?}, listed in {listed:?}");
    assert!(listed < Duration::from_secs(20), "listing 10,000 took {listed:?}");
}

#[tokio::test]
async fn updated_at_order_puts_the_latest_edit_first_and_never_ties() {
    let api = Api::start().await;
    let ids = api.fake.seed_items(20);
    api.fake.edit_item(&ids[3], json!({ "name": "Edited in Plane" }));
    api.patch(&format!("work-items/{}/", ids[10]), json!({ "priority": "low" })).await;

    let newest = api.get("work-items/?order_by=-updated_at").await.json();
    let order: Vec<String> = newest["results"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(order[0], ids[10]);
    assert_eq!(order[1], ids[3]);
    assert_eq!(order[2], ids[19]);
    let stamps: Vec<&str> =
        newest["results"].as_array().unwrap().iter().map(|i| i["updated_at"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] > w[1]), "strictly decreasing: {stamps:?}");

    let oldest = api.get("work-items/?order_by=updated_at").await.json();
    assert_eq!(oldest["results"][19]["id"], ids[10].as_str());
    assert_eq!(oldest["results"][0]["id"], ids[0].as_str());
    assert_eq!(api.get("work-items/?order_by=-created_at").await.json()["results"][0]["id"], ids[19].as_str());

    // Writes in a burst still get distinct, increasing stamps.
    let mut last = String::new();
    for k in 0..50 {
        let item = api.fake.edit_item(&ids[k % 20], json!({ "priority": "medium" }));
        let stamp = item["updated_at"].as_str().unwrap().to_string();
        assert!(stamp > last, "{stamp} after {last}");
        last = stamp;
    }
}

#[tokio::test]
async fn status_faults_answer_without_applying_and_are_used_up_in_order() {
    let api = Api::start().await;
    api.fake.fail_next(("POST", "work-items"), Fault::Status(503));
    api.fake.fail_next("POST work-items", Fault::Status(500));
    assert_eq!(api.fake.pending_faults(), 2);

    // A request the matcher does not select leaves the faults queued.
    assert_eq!(api.get("work-items/").await.status, 200);
    let first = api.post("work-items/", json!({ "name": "a" })).await;
    assert_eq!(first.status, 503);
    assert!(first.json()["error"].is_string());
    assert_eq!(api.post("work-items/", json!({ "name": "a" })).await.status, 500);
    assert_eq!(api.fake.item_count(), 0);
    assert_eq!(api.post("work-items/", json!({ "name": "a" })).await.status, 201);
    assert_eq!(api.fake.pending_faults(), 0);

    // `{id}` selects one item, not the list; `*` any method.
    let item = id(&api.fake.items()[0]);
    api.fake.fail_next(Matcher::new("*", "work-items/{id}"), Fault::Status(502));
    assert_eq!(api.get("work-items/").await.status, 200);
    assert_eq!(api.patch(&format!("work-items/{item}/"), json!({ "name": "b" })).await.status, 502);
    assert_eq!(api.fake.item(&item).unwrap()["name"], "a");
    api.fake.fail_times(Matcher::any(), Fault::Status(500), 2);
    assert_eq!(api.get("states/").await.status, 500);
    assert_eq!(api.get("labels/").await.status, 500);
    assert_eq!(api.get("labels/").await.status, 200);
    api.fake.fail_next("cycles/*/cycle-issues", Fault::Status(500));
    api.fake.clear_faults();
    assert_eq!(api.fake.pending_faults(), 0);
}

#[tokio::test]
async fn rate_limited_and_malformed_faults() {
    let api = Api::start().await;
    api.fake.fail_next(("GET", "work-items"), Fault::RateLimited { retry_after_secs: 7 });
    let throttled = api.get("work-items/").await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("retry-after").as_deref(), Some("7"));
    assert_eq!(throttled.json(), json!({ "detail": "Request was throttled. Expected available in 7 seconds." }));
    assert_eq!(api.fake.throttled(), 1);

    api.fake.fail_next(("GET", "work-items"), Fault::Malformed);
    let broken = api.get("work-items/").await;
    assert_eq!(broken.status, 200);
    assert!(serde_json::from_str::<Value>(&broken.text).is_err(), "{}", broken.text);
    assert_eq!(api.get("work-items/").await.json()["count"], 0);
}

#[tokio::test]
async fn a_delayed_answer_arrives_late_and_a_lost_answer_was_applied() {
    let api = Api::start().await;
    api.fake.fail_next(("POST", "work-items"), Fault::Delay(Duration::from_millis(400)));
    let started = Instant::now();
    let slow = api.post("work-items/", json!({ "name": "slow" })).await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(slow.status, 201);
    assert_eq!(api.fake.item_count(), 1);

    // A client that gives up early still changed the server.
    api.fake.fail_next(("POST", "work-items"), Fault::Delay(Duration::from_secs(2)));
    let gave_up = api
        .http
        .post(api.fake.endpoint("work-items/"))
        .header("X-API-Key", api.fake.token())
        .json(&json!({ "name": "timed out" }))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(gave_up.is_err_and(|e| e.is_timeout()));
    assert_eq!(api.fake.item_count(), 2);

    // The create whose answer was lost: applied, then 502; the retry gets a 409 naming it.
    let body = json!({ "name": "lost", "external_source": "mission-control", "external_id": "99" });
    api.fake.fail_next(("POST", "work-items"), Fault::ApplyThenFail(502));
    let lost = api.post("work-items/", body.clone()).await;
    assert_eq!(lost.status, 502);
    let stored = api.fake.find_by_external("mission-control", "99").expect("the create was applied");
    let retry = api.post("work-items/", body).await;
    assert_eq!(retry.status, 409);
    assert_eq!(retry.json()["id"], id(&stored));
}

#[tokio::test]
async fn the_rate_limit_counts_a_fixed_window_and_says_when_it_resets() {
    let api = Api::start().await;
    assert!(api.get("states/").await.header("x-ratelimit-remaining").is_none(), "off by default");

    api.fake.set_rate_limit(3, Duration::from_millis(1500));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = api.get("states/").await;
        assert_eq!(answer.status, 200);
        remaining.push(answer.header("x-ratelimit-remaining").unwrap());
        let reset: i64 = answer.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((now..=now + 3).contains(&reset), "reset {reset} vs now {now}");
    }
    assert_eq!(remaining, ["2", "1", "0"]);

    let over = api.get("states/").await;
    assert_eq!(over.status, 429);
    assert_eq!(over.header("x-ratelimit-remaining").as_deref(), Some("0"));
    let retry_after: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(over.json()["detail"], format!("Request was throttled. Expected available in {retry_after} seconds."));
    // Throttled writes change nothing.
    assert_eq!(api.post("work-items/", json!({ "name": "x" })).await.status, 429);
    assert_eq!(api.fake.item_count(), 0);
    assert_eq!(api.fake.throttled(), 2);

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let fresh = api.get("states/").await;
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("x-ratelimit-remaining").as_deref(), Some("2"));

    api.fake.clear_rate_limit();
    for _ in 0..5 {
        assert_eq!(api.get("states/").await.status, 200);
    }
}

#[tokio::test]
async fn a_work_item_is_in_one_cycle_at_a_time() {
    let api = Api::start().await;
    let items = api.fake.seed_items(3);

    let mut body = json!({
        "name": "Sprint 1",
        "description": "first",
        "start_date": "2099-01-01",
        "end_date": "2099-01-14",
        "external_source": "mission-control",
        "external_id": "c1",
    });
    // Plane's cycle serializer reads the project from the body.
    let refused = api.post("cycles/", body.clone()).await;
    assert_eq!((refused.status, refused.json()), (400, json!({ "non_field_errors": ["Project ID is required"] })));
    body["project_id"] = json!(api.fake.project_id());
    let created = api.post("cycles/", body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sprint1 = created.json();
    assert!(sprint1["updated_at"].is_string());
    assert_eq!(sprint1["total_issues"], 0);
    let conflict = api.post("cycles/", body).await;
    assert_eq!(conflict.status, 409);
    assert_eq!(conflict.json()["id"], id(&sprint1));
    let half = api.post("cycles/", json!({ "name": "Half", "start_date": "2099-01-01" })).await;
    assert_eq!(half.status, 400);
    let sprint2 = api.post("cycles/", json!({ "name": "Sprint 2", "project_id": api.fake.project_id() })).await.json();
    let (c1, c2) = (id(&sprint1), id(&sprint2));

    let added = api.post(&format!("cycles/{c1}/cycle-issues/"), json!({ "issues": [items[0], items[1]] })).await;
    assert_eq!(added.status, 200, "{}", added.text);
    assert_eq!(added.json().as_array().unwrap().len(), 2);
    assert_eq!(api.post(&format!("cycles/{c1}/cycle-issues/"), json!({ "issues": [] })).await.status, 400);

    let members = api.get(&format!("cycles/{c1}/cycle-issues/")).await.json();
    assert_eq!(members["total_count"], 2);
    assert_eq!(members["results"][0]["id"], items[0].as_str());
    assert_eq!(api.get(&format!("cycles/{c1}/")).await.json()["total_issues"], 2);

    // Adding to another cycle moves it.
    api.post(&format!("cycles/{c2}/cycle-issues/"), json!({ "issues": [items[1]] })).await;
    assert_eq!(api.fake.cycle_items(&c1), [items[0].clone()]);
    assert_eq!(api.fake.cycle_items(&c2), [items[1].clone()]);
    assert_eq!(api.fake.cycle_of(&items[1]), Some(c2.clone()));

    assert_eq!(api.delete(&format!("cycles/{c1}/cycle-issues/{}/", items[0])).await.status, 204);
    assert_eq!(api.delete(&format!("cycles/{c1}/cycle-issues/{}/", items[0])).await.status, 404);
    assert!(api.fake.cycle_items(&c1).is_empty());

    let patched = api.patch(&format!("cycles/{c1}/"), json!({ "name": "Sprint One" })).await.json();
    assert_eq!(patched["name"], "Sprint One");
    assert_eq!(patched["description"], "first");
    assert!(patched["updated_at"].as_str().unwrap() > sprint1["updated_at"].as_str().unwrap());
    let listed = api.get("cycles/").await.json();
    assert_eq!(listed["total_count"], 2);

    // A finished cycle takes no new work items and no edits.
    let past = api.fake.create_cycle(json!({ "name": "Old", "start_date": "2020-01-01", "end_date": "2020-01-14" }));
    let old = id(&past);
    assert_eq!(api.post(&format!("cycles/{old}/cycle-issues/"), json!({ "issues": [items[2]] })).await.status, 400);
    assert_eq!(api.patch(&format!("cycles/{old}/"), json!({ "name": "Older" })).await.status, 400);

    // Deleting a work item takes it out of its cycle.
    api.fake.add_to_cycle(&c2, &[&items[2]]);
    assert!(api.fake.delete_item(&items[2]));
    assert_eq!(api.fake.cycle_items(&c2), [items[1].clone()]);
}

#[tokio::test]
async fn modules_hold_work_items_many_to_many() {
    let api = Api::start().await;
    let items = api.fake.seed_items(3);
    let body = json!({
        "name": "Payments",
        "description": "all things money",
        "status": "in-progress",
        "target_date": "2026-12-01",
        "external_source": "mission-control",
        "external_id": "m1",
    });
    let payments = api.post("modules/", body.clone()).await;
    assert_eq!(payments.status, 201, "{}", payments.text);
    let payments = payments.json();
    assert_eq!(payments["status"], "in-progress");
    let again = api.post("modules/", body).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json()["id"], id(&payments));
    assert_eq!(api.post("modules/", json!({ "name": "Bad", "status": "doing" })).await.status, 400);
    let search = api.post("modules/", json!({ "name": "Search" })).await.json();
    assert_eq!(search["status"], "planned");
    let (m1, m2) = (id(&payments), id(&search));

    api.post(&format!("modules/{m1}/module-issues/"), json!({ "issues": [items[0], items[1]] })).await;
    let added = api.post(&format!("modules/{m2}/module-issues/"), json!({ "issues": [items[1]] })).await;
    assert_eq!(added.status, 200);
    assert_eq!(api.fake.module_items(&m1), [items[0].clone(), items[1].clone()]);
    assert_eq!(api.fake.module_items(&m2), [items[1].clone()]);
    let page = api.get(&format!("modules/{m1}/module-issues/")).await.json();
    assert_eq!(page["total_count"], 2);
    assert_eq!(page["results"][1]["id"], items[1].as_str());

    assert_eq!(api.delete(&format!("modules/{m1}/module-issues/{}/", items[1])).await.status, 204);
    assert_eq!(api.fake.module_items(&m1), [items[0].clone()]);
    assert_eq!(api.fake.module_items(&m2), [items[1].clone()]);

    let patched = api.patch(&format!("modules/{m1}/"), json!({ "status": "completed" })).await.json();
    assert_eq!(patched["status"], "completed");
    assert_eq!(patched["name"], "Payments");
    assert!(patched["updated_at"].as_str().unwrap() > payments["updated_at"].as_str().unwrap());
    assert_eq!(api.get(&format!("modules/{m1}/")).await.json(), api.fake.module(&m1).unwrap());
}

#[tokio::test]
async fn labels_states_and_members() {
    let fake = FakePlane::builder()
        .workspace("team")
        .token("secret-key")
        .member("Ana Lima", "ana@example.com")
        .label("bug")
        .start()
        .await;
    let api = Api::with(fake);
    assert_eq!(api.fake.workspace(), "team");

    let members = api.get("members/").await.json();
    let members = members.as_array().expect("members are a plain array");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["display_name"], "Ana Lima");
    assert_eq!(members[0]["first_name"], "Ana");
    assert_eq!(members[0]["last_name"], "Lima");
    assert_eq!(members[0]["email"], "ana@example.com");

    let created = api.post("labels/", json!({ "name": "feature", "color": "#00FF00" })).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["color"], "#00FF00");
    let duplicate = api.post("labels/", json!({ "name": "bug" })).await;
    assert_eq!(duplicate.status, 409, "Plane answers a taken label name with 409 and the id");
    assert_eq!(duplicate.json()["id"], api.fake.label_id("bug").unwrap());
    let labels = api.get("labels/").await.json();
    assert_eq!(labels["total_count"], 2);

    let review = api.post("states/", json!({ "name": "In Review", "group": "started", "color": "#123456" })).await;
    assert_eq!(review.status, 201);
    assert_eq!(review.json()["id"], api.fake.state_id("in review"));
    assert_eq!(api.post("states/", json!({ "name": "Weird", "group": "limbo" })).await.status, 400);
    assert_eq!(api.get("states/").await.json()["total_count"], 6);
    // The first state of a group by sequence, not the newest.
    assert_eq!(api.fake.state_id("started"), api.fake.state_id("In Progress"));
}

#[tokio::test]
async fn the_log_records_every_request() {
    let api = Api::start().await;
    api.get("states/").await;
    api.get("work-items/?per_page=5&cursor=5:0:0").await;
    api.post("work-items/", json!({ "name": "x" })).await;
    api.raw(Method::GET, &api.fake.endpoint("labels/"), None, None).await;

    let log = api.fake.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(log[1].method, "GET");
    assert!(log[1].path.ends_with("/work-items/"));
    assert_eq!(log[1].query, "per_page=5&cursor=5:0:0");
    assert_eq!(log[2].status, 201);
    assert_eq!(log[3].status, 401);
    assert_eq!(api.fake.count("GET", "work-items"), 1);
    assert_eq!(api.fake.count("post", "/work-items/"), 1);
    assert_eq!(api.fake.count("*", "/"), 4);
    api.fake.reset_log();
    assert!(api.fake.requests().is_empty());
}
