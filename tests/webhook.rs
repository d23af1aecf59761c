//! The webhook receiver over real HTTP on loopback, against a real
//! PostgreSQL: verification, deduplication, the keys it queues, refusals and
//! their rate-limited audit, health and readiness, and a flood drained by a
//! worker against a fake GitHub.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::sync::Arc;

use common::github::{self, FakeGitHub};
use common::hooks::{self, Receiver};
use common::{TestDb, actor, repo};
use mission_control::domain::{LocalKind, Provider};
use mission_control::store::Store;
use mission_control::store::integrations::{ConnectionUpdate, NewMapping};
use mission_control::store::tasks::NewTask;
use mission_control::sync::webhook::ServeOptions;
use mission_control::sync::webhook::verify::hmac_hex;
use serde_json::json;

const SECRET: &str = "whsec-test-1";

struct Setup {
    db: TestDb,
    store: Store,
    project_id: i64,
    connection_id: i64,
    /// Local task ids mapped to GitHub issues 1..=n.
    tasks: Vec<i64>,
    _secret: hooks::SecretFile,
}

/// A project `WH` whose connection `gh` (to `url`, with `config`) verifies deliveries with [`SECRET`].
async fn project(url: &str, config: serde_json::Value) -> Setup {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "WH", "Webhooks", "").await.unwrap();
    let secret = hooks::secret_file(SECRET);
    let connection_id = hooks::connection(&store, project.id, "gh", Provider::Github, url, &secret, config).await;
    Setup { db, store, project_id: project.id, connection_id, tasks: Vec::new(), _secret: secret }
}

/// A project with `mapped` tasks linked to GitHub issues #1..#mapped on connection `gh`.
async fn setup(mapped: usize) -> Setup {
    let mut s = project("https://api.github.com", json!({ "repo": "acme/app" })).await;
    for n in 1..=mapped {
        let task = s
            .store
            .create_task(&actor("ops"), s.project_id, NewTask { title: format!("issue {n}"), ..NewTask::default() })
            .await
            .unwrap();
        s.store
            .create_mapping(
                &actor("ops"),
                s.project_id,
                NewMapping {
                    connection: "gh".into(),
                    local_kind: LocalKind::Task,
                    local_id: task.id,
                    external_id: n.to_string(),
                    external_key: Some(format!("#{n}")),
                    url: None,
                },
            )
            .await
            .unwrap();
        s.tasks.push(task.id);
    }
    // Linking the tasks queued them for the repo sync; these tests look at what deliveries queue.
    forget_jobs(&s).await;
    s
}

/// A project whose connection `gh` is a fake GitHub holding issues
/// #1..#issues, imported by a worker: the tasks are the issues', in order.
async fn imported(issues: usize) -> (Setup, FakeGitHub) {
    let forge = github::start().await;
    forge.seed(issues);
    let mut s =
        project(&forge.url(), json!({ "repo": "acme/app", "requests_per_minute": 0, "write_interval_ms": 0 })).await;
    let token = s._secret.dir.path().join("token");
    std::fs::write(&token, format!("{}\n", forge.token())).unwrap();
    let update = ConnectionUpdate { secret_ref: Some(Some(format!("file:{}", token.display()))), ..Default::default() };
    s.store.update_connection(&actor("ops"), "gh", update).await.unwrap();
    let mut worker = repo::project_worker(&s.store, s.project_id);
    worker.schedule(true).await.unwrap();
    let report = worker.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let mut mappings = s.store.sync_mappings(s.connection_id, LocalKind::Task).await.unwrap();
    mappings.sort_by_key(|m| m.external_id.parse::<u64>().unwrap());
    assert_eq!(mappings.len(), issues);
    s.tasks = mappings.iter().map(|m| m.local_id).collect();
    // The import scheduled the recurring passes; these tests look at what deliveries queue.
    forget_jobs(&s).await;
    (s, forge)
}

async fn forget_jobs(s: &Setup) {
    s.db.client().await.execute("DELETE FROM sync_job WHERE connection_id = $1", &[&s.connection_id]).await.unwrap();
}

fn issue_event(number: u64) -> Vec<u8> {
    serde_json::to_vec(
        &json!({ "action": "edited", "issue": { "number": number, "id": 100_000 + number, "title": "x" } }),
    )
    .unwrap()
}

async fn jobs(s: &Setup) -> Vec<(String, i32)> {
    let client = s.db.client().await;
    client
        .query("SELECT key, generation FROM sync_job WHERE connection_id = $1 ORDER BY key", &[&s.connection_id])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn rejections(s: &Setup) -> Vec<serde_json::Value> {
    let client = s.db.client().await;
    client
        .query("SELECT after FROM audit_entry WHERE action = 'webhook.rejected' AND source = 'sync' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_delivery_is_stored_once_and_queues_the_mapped_task() {
    let s = setup(3).await;
    let receiver = Receiver::start(&s.store).await;
    let body = issue_event(2);
    let headers = hooks::github(SECRET, "d-1", "issues", &body);

    let (status, answer) = receiver.post("/hooks/gh", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    let task_key = format!("remote:task:{}", s.tasks[1]);
    assert_eq!(answer["queued"], json!([task_key.clone()]));
    assert_eq!(jobs(&s).await, vec![(task_key.clone(), 1)]);
    let client = s.db.client().await;
    let row = client
        .query_one(
            "SELECT delivery_key, event, payload, keys FROM webhook_inbox WHERE connection_id = $1",
            &[&s.connection_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "d-1");
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("issues"));
    assert_eq!(row.get::<_, serde_json::Value>(2)["issue"]["number"], 2);
    assert_eq!(row.get::<_, Vec<String>>(3), vec![task_key.clone()]);

    // GitHub redelivers with the same delivery id: answered, nothing queued again.
    let (status, answer) = receiver.post("/hooks/gh", &headers, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], true);
    assert_eq!(jobs(&s).await, vec![(task_key.clone(), 1)]);
    assert_eq!(s.db.count("webhook_inbox").await, 1);

    // An issue with no mapping queues the incremental pull; a ping queues nothing.
    let body = issue_event(99);
    let (status, answer) = receiver.post("/hooks/gh", &hooks::github(SECRET, "d-2", "issues", &body), &body).await;
    assert_eq!(status, 202);
    assert_eq!(answer["queued"], json!(["pull"]));
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let (status, answer) = receiver.post("/hooks/gh", &hooks::github(SECRET, "d-3", "ping", ping), ping).await;
    assert_eq!(status, 202);
    assert_eq!(answer["queued"], json!([]));
    assert_eq!(jobs(&s).await, vec![("pull".to_string(), 1), (task_key.clone(), 1)]);
    assert!(rejections(&s).await.is_empty());

    // A key a worker is on runs again after it; a pass scheduled for later is made due now.
    client
        .batch_execute(&format!(
            "UPDATE sync_job SET locked_by = 'w1', locked_until = now() + interval '1 minute' WHERE key = '{task_key}';
             UPDATE sync_job SET available_at = now() + interval '1 hour' WHERE key = 'pull'"
        ))
        .await
        .unwrap();
    let body = issue_event(2);
    receiver.post("/hooks/gh", &hooks::github(SECRET, "d-4", "issues", &body), &body).await;
    let body = issue_event(98);
    receiver.post("/hooks/gh", &hooks::github(SECRET, "d-5", "issues", &body), &body).await;
    assert_eq!(jobs(&s).await, vec![("pull".to_string(), 2), (task_key, 2)]);
    assert_eq!(s.db.count("sync_job WHERE key = 'pull' AND available_at <= now()").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_unknown_connections_and_oversize_bodies_are_refused_and_audited_sparingly() {
    let s = setup(1).await;
    let receiver = Receiver::start_with(
        &s.store,
        ServeOptions { listen: "127.0.0.1:0".parse().unwrap(), max_body: 4096, ..Default::default() },
    )
    .await;
    let body = issue_event(1);

    // Signed with another secret, or a body changed after signing.
    let (status, answer) = receiver.post("/hooks/gh", &hooks::github("wrong", "bad-1", "issues", &body), &body).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("signature"), "{answer}");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let (status, _) = receiver.post("/hooks/gh", &hooks::github(SECRET, "bad-2", "issues", &body), &tampered).await;
    assert_eq!(status, 401);
    let unsigned: Vec<(&str, String)> = vec![("x-github-delivery", "bad-3".into())];
    let (status, _) = receiver.post("/hooks/gh", &unsigned, &body).await;
    assert_eq!(status, 401);
    assert_eq!(s.db.count("webhook_inbox").await, 0);
    assert!(jobs(&s).await.is_empty());

    // One audit entry for the burst of bad signatures (rate-limited), and one
    // for the missing one (another reason).
    let entries = rejections(&s).await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["reason"], "bad_signature");
    assert_eq!(entries[0]["delivery"], "bad-1");
    assert_eq!(entries[1]["reason"], "missing_signature");
    let client = s.db.client().await;
    let row = client
        .query_one("SELECT entity_kind, entity_id, entity_key, project_id FROM audit_entry WHERE action = 'webhook.rejected' LIMIT 1", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "connection");
    assert_eq!(row.get::<_, Option<i64>>(1), Some(s.connection_id));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("gh"));
    assert_eq!(row.get::<_, Option<i64>>(3), Some(s.project_id));
    // Nothing of the secret reaches the audit log.
    let dump: String =
        client.query_one("SELECT string_agg(after::text, ' ') FROM audit_entry", &[]).await.unwrap().get(0);
    assert!(!dump.contains(SECRET));

    // Unknown connection: 404.
    let (status, _) = receiver.post("/hooks/nope", &hooks::github(SECRET, "x-1", "issues", &body), &body).await;
    assert_eq!(status, 404);
    let (status, _) =
        receiver.post("/hooks/NOT%20A%20KEY", &hooks::github(SECRET, "x-2", "issues", &body), &body).await;
    assert_eq!(status, 404);
    assert_eq!(rejections(&s).await.last().unwrap()["reason"], "unknown_connection");

    // Over the size cap: 413, before the signature is even looked at.
    let big = vec![b' '; 5000];
    let (status, answer) = receiver.post("/hooks/gh", &hooks::github(SECRET, "big", "issues", &big), &big).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(rejections(&s).await.last().unwrap()["reason"], "too_large");

    // A verified body that is not JSON: 400.
    let form = b"payload=%7B%7D";
    let (status, answer) = receiver.post("/hooks/gh", &hooks::github(SECRET, "form", "issues", form), form).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("application/json"), "{answer}");

    // Wrong method or path.
    let (status, _) = receiver.get("/hooks/gh").await;
    assert_eq!(status, 405);
    let (status, _) = receiver.get("/nowhere").await;
    assert_eq!(status, 404);
    assert_eq!(s.db.count("webhook_inbox").await, 0);
    assert!(jobs(&s).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_gitlab_and_plane_deliveries_are_verified_their_own_way() {
    let s = setup(0).await;
    let secret = hooks::secret_file("another-secret");
    for (key, provider) in [("gitea", Provider::Gitea), ("gitlab", Provider::Gitlab), ("plane", Provider::Plane)] {
        let config = match provider {
            Provider::Plane => json!({ "workspace": "acme", "project": "4af6c1e0-0000-0000-0000-000000000000" }),
            _ => json!({ "repo": "acme/app" }),
        };
        hooks::connection(&s.store, s.project_id, key, provider, "https://example.com", &secret, config).await;
    }
    let receiver = Receiver::start(&s.store).await;
    let body = br#"{"action":"opened","issue":{"number":5}}"#;
    let sig = hmac_hex(b"another-secret", &[body]);
    type Headers = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Headers, u16)> = vec![
        (
            "gitea",
            vec![
                ("x-gitea-signature", sig.clone()),
                ("x-gitea-delivery", "g-1".into()),
                ("x-gitea-event", "issues".into()),
            ],
            202,
        ),
        ("gitea", vec![("x-forgejo-signature", sig.clone()), ("x-forgejo-delivery", "g-2".into())], 202),
        ("gitea", vec![("x-gitea-signature", "00".repeat(32)), ("x-gitea-delivery", "g-3".into())], 401),
        ("gitlab", vec![("x-gitlab-token", "another-secret".into()), ("x-gitlab-event", "Issue Hook".into())], 202),
        // No delivery header: the body's hash dedupes a redelivery.
        ("gitlab", vec![("x-gitlab-token", "another-secret".into())], 200),
        ("gitlab", vec![("x-gitlab-token", "another-secre".into())], 401),
        (
            "plane",
            vec![
                ("x-plane-signature", sig.clone()),
                ("x-plane-delivery", "p-1".into()),
                ("x-plane-event", "issue".into()),
            ],
            202,
        ),
        ("plane", vec![("x-plane-signature", format!("sha256={}", hmac_hex(b"nope", &[body])))], 401),
    ];
    for (key, headers, expected) in cases {
        let (status, answer) = receiver.post(&format!("/hooks/{key}"), &headers, body).await;
        assert_eq!(status, expected, "{key} {headers:?}: {answer}");
    }
    assert_eq!(s.db.count("webhook_inbox").await, 4);
    // Each accepted delivery queued its connection's pull.
    assert_eq!(s.db.count("sync_job WHERE key = 'pull'").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let s = setup(0).await;
    let receiver = Receiver::start(&s.store).await;
    assert_eq!(receiver.get("/healthz").await.0, 200);
    let (status, answer) = receiver.get("/readyz").await;
    assert_eq!(status, 200, "{answer}");
    // A schema behind this binary's migrations is not ready.
    let client = s.db.client().await;
    client
        .batch_execute("DELETE FROM mctl_schema_history WHERE version = (SELECT max(version) FROM mctl_schema_history)")
        .await
        .unwrap();
    let (status, answer) = receiver.get("/readyz").await;
    assert_eq!(status, 503);
    let reason = answer["error"].as_str().unwrap();
    assert!(reason.contains("mctl migrate") && !reason.contains('\n'), "{reason}");
}

/// `task.sync` audit entries (changes a worker applied to a task) by task id.
async fn synced_changes(s: &Setup) -> std::collections::HashMap<i64, i64> {
    let client = s.db.client().await;
    client
        .query(
            "SELECT entity_id, count(*) FROM audit_entry WHERE action = 'task.sync' AND source = 'sync'
             GROUP BY entity_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_concurrent_deliveries_loses_nothing_and_applies_each_change_once() {
    const MAPPED: u64 = 200;
    const UNIQUE: usize = 6_700;
    const DUPLICATES: usize = 3_000;
    const BAD: usize = 300;
    let (s, forge) = imported(MAPPED as usize).await;
    // Edited on GitHub before the flood: every tenth issue, and #1, which only forged deliveries name.
    let edited = |n: u64| n == 1 || n.is_multiple_of(10);
    for n in (1..=MAPPED).filter(|n| edited(*n)) {
        forge.edit(n as i64, |i| i.title = format!("Issue {n}, edited on GitHub"));
    }
    let receiver = Arc::new(Receiver::start(&s.store).await);

    // Unique deliveries name issues 2..=251 (201..=251 are not mapped); forged ones name #1.
    let mut requests: Vec<(String, Vec<u8>, bool)> =
        (0..UNIQUE).map(|i| (format!("d-{i}"), issue_event((i as u64 % 250) + 2), true)).collect();
    for _ in 0..DUPLICATES {
        let original = requests[fastrand::usize(..UNIQUE)].clone();
        requests.push(original);
    }
    for i in 0..BAD {
        requests.push((format!("bad-{i}"), issue_event(1), false));
    }
    fastrand::shuffle(&mut requests);
    assert_eq!(requests.len(), 10_000);

    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut handles = Vec::new();
    for (delivery, body, good) in requests {
        let receiver = receiver.clone();
        let permit = limit.clone().acquire_owned().await.unwrap();
        handles.push(tokio::spawn(async move {
            let secret = if good { SECRET } else { "forged" };
            let (status, _) =
                receiver.post("/hooks/gh", &hooks::github(secret, &delivery, "issues", &body), &body).await;
            drop(permit);
            (good, status)
        }));
    }
    let (mut accepted, mut duplicate, mut refused) = (0, 0, 0);
    for handle in handles {
        match handle.await.unwrap() {
            (true, 202) => accepted += 1,
            (true, 200) => duplicate += 1,
            (false, 401) => refused += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((accepted, duplicate, refused), (UNIQUE, DUPLICATES, BAD));
    assert_eq!(s.db.count("webhook_inbox").await, UNIQUE as i64);
    assert_eq!(s.db.count("webhook_inbox WHERE delivery_key LIKE 'bad-%'").await, 0);

    // Every accepted delivery's key is queued and due: one row per object
    // (deliveries for a key that is already due coalesce into it).
    let queued = jobs(&s).await;
    let mut expected: Vec<String> = s.tasks[1..].iter().map(|id| format!("remote:task:{id}")).collect();
    expected.push("pull".into());
    expected.sort();
    assert_eq!(queued.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), expected);
    let client = s.db.client().await;
    let missing: i64 = client
        .query_one(
            "SELECT count(*) FROM webhook_inbox i, unnest(i.keys) k
             WHERE NOT EXISTS (SELECT 1 FROM sync_job j WHERE j.connection_id = i.connection_id AND j.key = k
                               AND NOT j.dead AND j.available_at <= now())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(missing, 0);
    let unmapped = (0..UNIQUE).filter(|i| (*i as u64 % 250) + 2 > MAPPED).count() as i64;
    assert_eq!(s.db.count("webhook_inbox WHERE keys = ARRAY['pull']").await, unmapped);
    let second = format!("remote:task:{}", s.tasks[1]);
    let expected_second = (0..UNIQUE).filter(|i| i % 250 == 0).count() as i64;
    assert_eq!(s.db.count(&format!("webhook_inbox WHERE keys = ARRAY['{second}']")).await, expected_second);

    // The refusals left a bounded trail: one entry per 10 s window at most.
    let entries = rejections(&s).await;
    assert!(!entries.is_empty() && entries.len() <= 10, "{} entries", entries.len());
    let recorded: u64 = entries.iter().map(|e| 1 + e["suppressed_since_last"].as_u64().unwrap()).sum();
    assert!(recorded <= BAD as u64);

    // A worker drains the queue against GitHub. The pull the unmapped issues
    // queued would read every edit by itself, so it waits: only the
    // deliveries' keys are at work.
    client
        .execute(
            "UPDATE sync_job SET available_at = now() + interval '1 hour' WHERE connection_id = $1 AND key = 'pull'",
            &[&s.connection_id],
        )
        .await
        .unwrap();
    forge.reset_log();
    let mut worker = repo::project_worker(&s.store, s.project_id);
    let report = worker.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(report.jobs, MAPPED as usize - 1, "each queued key once");
    assert!(report.passes.is_empty());
    // Each key read its issue once; nothing was written back.
    assert_eq!(forge.count("GET", "/issues/"), MAPPED as usize - 1);
    assert_eq!(forge.count("PATCH", "/issues") + forge.count("POST", "/issues"), 0);
    assert_eq!(jobs(&s).await.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), ["pull"]);

    // Each edit reached its task, and was applied once; the issue only forged
    // deliveries named was not read at all.
    let check = |changes: std::collections::HashMap<i64, i64>, forged_seen: bool| {
        let s = &s;
        async move {
            for (k, task_id) in s.tasks.iter().enumerate() {
                let n = k as u64 + 1;
                let applied = edited(n) && (n != 1 || forged_seen);
                let title = s.store.sync_read_task(*task_id).await.unwrap().0.title;
                let want = if applied { format!("Issue {n}, edited on GitHub") } else { format!("Issue {n}") };
                assert_eq!(title, want, "issue #{n}");
                assert_eq!(changes.get(task_id).copied().unwrap_or(0), applied as i64, "issue #{n}");
            }
        }
    };
    check(synced_changes(&s).await, false).await;

    // The pull then brings #1's edit too, and applies none of the others again.
    client
        .execute("UPDATE sync_job SET available_at = now() WHERE connection_id = $1", &[&s.connection_id])
        .await
        .unwrap();
    let report = worker.drain().await.unwrap();
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(report.passes.len(), 1);
    check(synced_changes(&s).await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_stalls_mid_body_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup(0).await;
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        body_timeout: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let receiver = Receiver::start_with(&s.store, options).await;
    let mut stream = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(b"POST /hooks/gh HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buffer[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the receiver kept waiting");
    let answer = String::from_utf8_lossy(&answer).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(rejections(&s).await.last().unwrap()["reason"], "slow_body");
    assert_eq!(s.db.count("webhook_inbox").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_delivery_in_order_and_queues_each_key_once() {
    use mission_control::sync::webhook::inbox::{Delivery, Stored, store_deliveries};
    let s = setup(2).await;
    let delivery = |key: &str, ids: &[&str], pull: bool| Delivery {
        connection_id: s.connection_id,
        delivery_key: key.into(),
        event: Some("issues".into()),
        payload: json!({ "key": key }),
        payload_bytes: 12,
        remote_ids: ids.iter().map(|id| id.to_string()).collect(),
        pull_if_unmapped: pull,
    };
    let earlier = delivery("seen", &["1"], true);
    assert_eq!(store_deliveries(&s.store, &[&earlier]).await.unwrap().len(), 1);

    let by_key = delivery("a", &["#2"], true);
    let again = delivery("a", &["#2"], true);
    let unmapped = delivery("b", &["999"], true);
    let ping = delivery("c", &[], false);
    let both = delivery("d", &["1", "#2"], true);
    let batch = [&by_key, &earlier, &again, &unmapped, &ping, &both];
    let (one, two) = (format!("remote:task:{}", s.tasks[0]), format!("remote:task:{}", s.tasks[1]));
    let mut mapped_pair = vec![one.clone(), two.clone()];
    mapped_pair.sort();
    assert_eq!(
        store_deliveries(&s.store, &batch).await.unwrap(),
        [
            Stored::Accepted(vec![two.clone()]),
            Stored::Duplicate,
            Stored::Duplicate,
            Stored::Accepted(vec!["pull".into()]),
            Stored::Accepted(vec![]),
            Stored::Accepted(mapped_pair),
        ]
    );
    assert_eq!(s.db.count("webhook_inbox").await, 5);
    let mut expected = vec![one, two, "pull".to_string()];
    expected.sort();
    assert_eq!(jobs(&s).await.into_iter().map(|(k, _)| k).collect::<Vec<_>>(), expected);
}

/// A NUL (`\u0000`) in a signed payload is legal JSON that PostgreSQL's jsonb
/// refuses; stored as is, it failed every redelivery with 503, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_with_a_nul_character_is_stored_and_processed_not_refused_forever() {
    let s = setup(1).await;
    let receiver = Receiver::start(&s.store).await;
    let body = br#"{"action":"edited","issue":{"number":1,"id":100001,"title":"before\u0000after"},"sender":{"login":"a\u0000b"}}"#;
    let headers = hooks::github(SECRET, "nul-1", "issues", body);
    let (status, answer) = receiver.post("/hooks/gh", &headers, body).await;
    assert_eq!(status, 202, "{answer}");
    let task_key = format!("remote:task:{}", s.tasks[0]);
    assert_eq!(answer["queued"], json!([task_key]));
    let stored: serde_json::Value =
        s.db.client()
            .await
            .query_one("SELECT payload FROM webhook_inbox WHERE delivery_key = 'nul-1'", &[])
            .await
            .unwrap()
            .get(0);
    // Escaped, not lost: an operator still sees where the NUL was.
    assert_eq!(stored["issue"]["title"], "before\\u0000after");
    assert_eq!(stored["sender"]["login"], "a\\u0000b");
    // The provider's redelivery is a duplicate, not another failure.
    let (status, answer) = receiver.post("/hooks/gh", &headers, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], true);
}

/// Inbox rows older than the retention are pruned when the receiver starts
/// (and every hour after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_is_pruned_after_its_retention() {
    use mission_control::sync::webhook::inbox::{self, RETENTION_DAYS};
    let s = setup(0).await;
    let client = s.db.client().await;
    let insert = |key: &str, days: i32| {
        format!(
            "INSERT INTO webhook_inbox (connection_id, delivery_key, received_at, payload_bytes)
             VALUES ({}, '{key}', now() - interval '{days} days', 2)",
            s.connection_id
        )
    };
    client.batch_execute(&insert("old-1", RETENTION_DAYS + 1)).await.unwrap();
    client.batch_execute(&insert("recent", RETENTION_DAYS - 1)).await.unwrap();
    assert_eq!(inbox::prune(&s.store).await.unwrap(), 1);
    assert_eq!(s.db.count("webhook_inbox").await, 1);

    // The receiver prunes as it starts.
    client.batch_execute(&insert("old-2", RETENTION_DAYS + 30)).await.unwrap();
    let _receiver = Receiver::start(&s.store).await;
    let started = std::time::Instant::now();
    while s.db.count("webhook_inbox WHERE delivery_key = 'old-2'").await > 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the receiver did not prune the inbox");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(s.db.count("webhook_inbox WHERE delivery_key = 'recent'").await, 1);
}

/// Events mctl does not sync from (stars, watchers, label edits, comments,
/// pushes...) are stored but queue nothing: each used to queue a full pull.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_mctl_does_not_sync_queue_nothing() {
    let s = setup(1).await;
    let receiver = Receiver::start(&s.store).await;
    for (n, event) in ["star", "watch", "label", "issue_comment", "push", "fork", "member"].iter().enumerate() {
        let body = serde_json::to_vec(&json!({ "action": "created", "issue": { "number": 1 } })).unwrap();
        let (status, answer) =
            receiver.post("/hooks/gh", &hooks::github(SECRET, &format!("x-{n}"), event, &body), &body).await;
        assert_eq!(status, 202, "{event}: {answer}");
        assert_eq!(answer["queued"], json!([]), "{event}");
    }
    assert!(jobs(&s).await.is_empty(), "{:?}", jobs(&s).await);
    // An issue event still queues its task.
    let body = issue_event(1);
    let (_, answer) = receiver.post("/hooks/gh", &hooks::github(SECRET, "i-1", "issues", &body), &body).await;
    assert_eq!(answer["queued"], json!([format!("remote:task:{}", s.tasks[0])]));
}

/// GitHub's example deliveries (tests/fixtures/webhooks/github, from
/// octokit/webhooks), each replayed through the receiver as GitHub sends it:
/// events mctl reconciles from queue the mapped issue's task or the pull;
/// the others are stored and queue nothing; a redelivery is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_github_deliveries_are_verified_stored_and_queue_what_they_can_change() {
    let s = setup(1).await; // issue #1 is mapped (Codertocat/Hello-World#1 in the examples)
    let receiver = Receiver::start(&s.store).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhooks/github");
    let mut replayed = Vec::new();
    let mut events: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    events.sort();
    for dir in events {
        let event = dir.file_name().unwrap().to_str().unwrap().to_string();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let body = std::fs::read(&file).unwrap();
            let delivery = format!("{event}/{}", file.file_name().unwrap().to_str().unwrap());
            let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let expected = match event.as_str() {
                "issues" if payload["issue"]["number"] == 1 => json!([format!("remote:task:{}", s.tasks[0])]),
                "issues" | "workflow_run" | "deployment" | "deployment_status" | "release" => json!(["pull"]),
                _ => json!([]),
            };
            let headers = hooks::github(SECRET, &delivery, &event, &body);
            let (status, answer) = receiver.post("/hooks/gh", &headers, &body).await;
            assert_eq!(status, 202, "{delivery}: {answer}");
            assert_eq!(answer["queued"], expected, "{delivery}");
            replayed.push((delivery, headers, body));
        }
    }
    assert!(replayed.len() >= 70, "{} files", replayed.len());
    assert_eq!(s.db.count("webhook_inbox").await, replayed.len() as i64);
    assert_eq!(s.db.count("webhook_inbox WHERE event IS NULL").await, 0);
    for (delivery, headers, body) in &replayed {
        let (status, answer) = receiver.post("/hooks/gh", headers, body).await;
        assert_eq!((status, &answer["duplicate"]), (200, &json!(true)), "{delivery}");
    }
    assert!(rejections(&s).await.is_empty());
}

/// Gitea and GitLab deliveries with the headers their senders set: Gitea's
/// services/webhook/deliver.go (X-Gitea-*, X-Gogs-*, X-Hub-Signature-256,
/// X-GitHub-*; the event names of modules/webhook/type.go `Event()`), and
/// GitLab's app/services/web_hook_service.rb `build_headers` (Idempotency-Key,
/// X-Gitlab-Event = hook name titleized, X-Gitlab-Webhook-UUID, X-Gitlab-Instance,
/// X-Gitlab-Token, X-Gitlab-Event-UUID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_and_gitlab_deliveries_with_their_real_headers_queue_what_they_can_change() {
    let s = setup(0).await;
    let secret = hooks::secret_file("forge-secret");
    for (key, provider) in [("gitea", Provider::Gitea), ("gitlab", Provider::Gitlab)] {
        hooks::connection(&s.store, s.project_id, key, provider, "https://example.com", &secret, json!({})).await;
    }
    let receiver = Receiver::start(&s.store).await;
    let gitea = |uuid: &str, event: &str, event_type: &str, body: &[u8]| -> Vec<(&'static str, String)> {
        let sig = hmac_hex(b"forge-secret", &[body]);
        vec![
            ("content-type", "application/json".into()),
            ("x-gitea-delivery", uuid.into()),
            ("x-gitea-event", event.into()),
            ("x-gitea-event-type", event_type.into()),
            ("x-gitea-signature", sig.clone()),
            ("x-gogs-delivery", uuid.into()),
            ("x-gogs-event", event.into()),
            ("x-gogs-event-type", event_type.into()),
            ("x-gogs-signature", sig.clone()),
            ("x-hub-signature", "sha1=0000".into()),
            ("x-hub-signature-256", format!("sha256={sig}")),
            ("x-github-delivery", uuid.into()),
            ("x-github-event", event.into()),
            ("x-github-event-type", event_type.into()),
        ]
    };
    let issue = br#"{"action":"label_updated","number":7,"issue":{"id":70,"number":7}}"#;
    let (status, answer) = receiver.post("/hooks/gitea", &gitea("g-1", "issues", "issue_label", issue), issue).await;
    assert_eq!((status, answer["queued"].clone()), (202, json!(["pull"])), "{answer}");
    let push = br#"{"ref":"refs/heads/main","commits":[]}"#;
    let (status, answer) = receiver.post("/hooks/gitea", &gitea("g-2", "push", "push", push), push).await;
    assert_eq!((status, answer["queued"].clone()), (202, json!([])), "{answer}");

    let gitlab = |key: &str, event: &str| -> Vec<(&'static str, String)> {
        vec![
            ("content-type", "application/json".into()),
            ("user-agent", "GitLab/17.6.0".into()),
            ("idempotency-key", key.into()),
            ("x-gitlab-event", event.into()),
            ("x-gitlab-webhook-uuid", hooks::delivery()),
            ("x-gitlab-instance", "https://gitlab.example.com".into()),
            ("x-gitlab-token", "forge-secret".into()),
            ("x-gitlab-event-uuid", hooks::delivery()),
        ]
    };
    let issue = br#"{"object_kind":"issue","object_attributes":{"iid":3,"id":30}}"#;
    let (status, answer) = receiver.post("/hooks/gitlab", &gitlab("k-1", "Issue Hook"), issue).await;
    assert_eq!((status, answer["queued"].clone()), (202, json!(["pull"])), "{answer}");
    // A retry: the same Idempotency-Key, a new X-Gitlab-Webhook-UUID.
    let (status, answer) = receiver.post("/hooks/gitlab", &gitlab("k-1", "Issue Hook"), issue).await;
    assert_eq!((status, answer["duplicate"].clone()), (200, json!(true)), "{answer}");
    let note = br#"{"object_kind":"note","object_attributes":{"id":5}}"#;
    let (status, answer) = receiver.post("/hooks/gitlab", &gitlab("k-2", "Note Hook"), note).await;
    assert_eq!((status, answer["queued"].clone()), (202, json!([])), "{answer}");
    assert_eq!(s.db.count("webhook_inbox").await, 4);
}
