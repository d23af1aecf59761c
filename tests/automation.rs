//! n8n automation against a real PostgreSQL and real HTTP: events captured
//! with the change and delivered through the queue to a local receiver
//! (retries, the same delivery id, signatures, a 404 dead letter), derived
//! events sent once, and signed commands applied as an agent.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::hooks::{self, Receiver};
use common::{TestDb, actor};
use mission_control::domain::{AgentKind, HandoffKind, Provider};
use mission_control::store::Store;
use mission_control::store::agents::NewAgent;
use mission_control::store::delivery::NewRelease;
use mission_control::store::handoffs::NewHandoff;
use mission_control::store::tasks::{NewTask, Position};
use mission_control::sync::webhook::verify::mc_signature;
use mission_control::sync::worker::{DrainReport, Limiters, Worker, WorkerOptions};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SIGNING: &str = "n8n-signing-secret";
const TOKEN: &str = "n8n-header-token";

/// What an n8n webhook node saw, and a script of answers.
#[derive(Clone, Default)]
struct Workflow {
    seen: Arc<Mutex<Vec<Request>>>,
    calls: Arc<AtomicUsize>,
    /// Answers for the first calls, in order; 200 after them.
    script: Arc<Vec<ResponseTemplate>>,
}

impl Respond for Workflow {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.seen.lock().unwrap().push(request.clone());
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        self.script.get(n).cloned().unwrap_or_else(|| ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
    }
}

impl Workflow {
    async fn start(script: Vec<ResponseTemplate>) -> (MockServer, Workflow) {
        let server = MockServer::start().await;
        let workflow = Workflow { script: Arc::new(script), ..Workflow::default() };
        Mock::given(any()).respond_with(workflow.clone()).mount(&server).await;
        (server, workflow)
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn header(request: &Request, name: &str) -> String {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

struct Setup {
    db: TestDb,
    store: Store,
    project_id: i64,
    _secrets: (hooks::SecretFile, hooks::SecretFile),
}

/// Project `AU` with agent `ana`.
async fn setup() -> Setup {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "AU", "Automation", "").await.unwrap();
    store
        .create_agent(
            &actor("ops"),
            NewAgent {
                handle: "ana".into(),
                display_name: "Ana".into(),
                kind: AgentKind::Human,
                capacity: None,
                skills: vec![],
            },
        )
        .await
        .unwrap();
    let secrets = (hooks::secret_file(SIGNING), hooks::secret_file(TOKEN));
    Setup { db, store, project_id: project.id, _secrets: secrets }
}

/// An n8n connection to `url`, subscribed to `events`, with a header-auth token.
async fn n8n(s: &Setup, key: &str, url: &str, events: &[&str]) -> i64 {
    let id = hooks::connection(
        &s.store,
        s.project_id,
        key,
        Provider::N8n,
        url,
        &s._secrets.0,
        json!({ "events": events, "requests_per_minute": 0 }),
    )
    .await;
    s.db.client()
        .await
        .execute("UPDATE integration_connection SET secret_ref = $2 WHERE id = $1", &[&id, &s._secrets.1.reference])
        .await
        .unwrap();
    id
}

async fn drain(s: &Setup) -> DrainReport {
    let options = WorkerOptions { id: "test".into(), project_id: Some(s.project_id), ..WorkerOptions::default() };
    Worker::new(s.store.clone(), options, Limiters::default()).drain().await.unwrap()
}

async fn make_due(s: &Setup) {
    s.db.client()
        .await
        .batch_execute("UPDATE sync_job SET available_at = now() WHERE key LIKE 'delivery:%'")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribed_events_are_delivered_once_each_after_retries_with_the_same_id_and_a_valid_signature() {
    let s = setup().await;
    let (server, workflow) = Workflow::start(vec![
        ResponseTemplate::new(500),
        ResponseTemplate::new(429).insert_header("Retry-After", "30"),
    ])
    .await;
    // Two tasks, so that neither event waits for the other (events of one
    // task go out in order, see events_of_a_task_arrive_in_order_with_sequence_numbers).
    let moved = s
        .store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "Ship it".into(), ..NewTask::default() })
        .await
        .unwrap();
    n8n(&s, "flows", &format!("{}/webhook/mc", server.uri()), &["task.created", "task.moved"]).await;
    let created = s
        .store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "Then this".into(), ..NewTask::default() })
        .await
        .unwrap();
    s.store.move_task(&actor("ops"), &moved.key, Some("Ready"), Position::Bottom, None).await.unwrap();
    // Not subscribed: no delivery.
    s.store.assign_task(&actor("ops"), &moved.key, Some("ana"), None).await.unwrap();
    assert_eq!(s.db.count("automation_delivery").await, 2);
    assert_eq!(s.db.count("sync_job WHERE key LIKE 'delivery:%'").await, 2);

    // First pass: one 500 and one 429; both are retried, the 429 not before its Retry-After.
    let report = drain(&s).await;
    assert_eq!(report.failed, 2, "{:?}", report.errors);
    assert_eq!(s.db.count("sync_job WHERE key LIKE 'delivery:%' AND NOT dead AND attempts = 1").await, 2);
    assert_eq!(
        s.db.count("sync_job WHERE key LIKE 'delivery:%' AND available_at > now() + interval '25 seconds'").await,
        1
    );
    assert_eq!(s.db.count("automation_delivery WHERE delivered_at IS NULL").await, 2);

    make_due(&s).await;
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.db.count("sync_job WHERE key LIKE 'delivery:%'").await, 0);
    assert_eq!(s.db.count("automation_delivery WHERE delivered_at IS NOT NULL AND attempts = 2").await, 2);
    // Nothing more goes out.
    drain(&s).await;

    let requests = workflow.requests();
    assert_eq!(requests.len(), 4);
    let mut by_delivery: HashMap<String, Vec<&Request>> = HashMap::new();
    for request in &requests {
        // Signed over timestamp, delivery id, method, path and body with the webhook secret,
        // authenticated with the token.
        let timestamp: i64 = header(request, "x-mc-timestamp").parse().unwrap();
        let delivery = header(request, "x-mc-delivery");
        let path = request.url.path();
        assert_eq!(path, "/webhook/mc");
        let expected = mc_signature(SIGNING.as_bytes(), timestamp, &delivery, "POST", path, &request.body);
        assert_eq!(header(request, "x-mc-signature"), expected);
        assert_eq!(header(request, "authorization"), format!("Bearer {TOKEN}"));
        by_delivery.entry(header(request, "x-mc-delivery")).or_default().push(request);
    }
    assert_eq!(by_delivery.len(), 2, "each event keeps one delivery id across attempts");
    let mut events = Vec::new();
    for (id, attempts) in &by_delivery {
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].body, attempts[1].body, "the same body on every attempt");
        let body: Value = serde_json::from_slice(&attempts[0].body).unwrap();
        assert_eq!(&body["delivery"], id);
        assert_eq!(body["project"], "AU");
        let task = if body["event"] == "task.moved" { &moved } else { &created };
        assert_eq!(body["data"]["key"], task.key.as_str());
        events.push(body["event"].as_str().unwrap().to_string());
        if body["event"] == "task.moved" {
            assert_eq!(body["data"]["lane"], "Ready");
            assert_eq!(body["data"]["from_lane"], "Inbox");
        }
        let dump = String::from_utf8_lossy(&attempts[0].body).to_string();
        assert!(!dump.contains(SIGNING) && !dump.contains(TOKEN));
    }
    events.sort();
    assert_eq!(events, ["task.created", "task.moved"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_from_an_inactive_workflow_is_a_dead_letter_at_once() {
    let s = setup().await;
    let (server, workflow) = Workflow::start(vec![ResponseTemplate::new(404); 5]).await;
    n8n(&s, "inactive", &format!("{}/webhook/gone", server.uri()), &["task.created"]).await;
    s.store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "x".into(), ..NewTask::default() })
        .await
        .unwrap();
    let report = drain(&s).await;
    assert_eq!(report.failed, 1);
    let client = s.db.client().await;
    let row = client
        .query_one("SELECT dead, attempts, last_error FROM sync_job WHERE key LIKE 'delivery:%'", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, i32>(1), 1);
    let error: String = row.get(2);
    assert!(error.contains("404") && error.contains("not active"), "{error}");
    drain(&s).await;
    assert_eq!(workflow.requests().len(), 1, "not retried");
    assert_eq!(s.db.count("automation_delivery WHERE last_status = 404 AND delivered_at IS NULL").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_from_a_workflow_that_took_deliveries_before_is_retried_not_dead() {
    let s = setup().await;
    // n8n answers 404 for its webhooks while it starts up again.
    let (server, workflow) =
        Workflow::start(vec![ResponseTemplate::new(200), ResponseTemplate::new(404), ResponseTemplate::new(404)]).await;
    n8n(&s, "flows", &format!("{}/webhook/mc", server.uri()), &["task.created"]).await;
    let new_task = |title: &str| NewTask { title: title.into(), ..NewTask::default() };
    s.store.create_task(&actor("ops"), s.project_id, new_task("first")).await.unwrap();
    assert_eq!(drain(&s).await.failed, 0);
    s.store.create_task(&actor("ops"), s.project_id, new_task("during the restart")).await.unwrap();
    for attempt in 1..=2 {
        assert_eq!(drain(&s).await.failed, 1);
        let dead: bool =
            s.db.client()
                .await
                .query_one("SELECT dead FROM sync_job WHERE key LIKE 'delivery:%'", &[])
                .await
                .unwrap()
                .get(0);
        assert!(!dead, "attempt {attempt}: a webhook that answered before is coming back");
        make_due(&s).await;
    }
    assert_eq!(drain(&s).await.failed, 0);
    assert_eq!(s.db.count("automation_delivery WHERE delivered_at IS NOT NULL").await, 2);
    assert_eq!(workflow.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_status_reports_an_n8n_connections_deliveries() {
    let s = setup().await;
    let (server, _workflow) = Workflow::start(vec![ResponseTemplate::new(500)]).await;
    n8n(&s, "flows", &format!("{}/webhook/mc", server.uri()), &["task.created"]).await;
    for title in ["one", "two"] {
        s.store
            .create_task(&actor("ops"), s.project_id, NewTask { title: title.into(), ..NewTask::default() })
            .await
            .unwrap();
    }
    drain(&s).await;
    let cli = common::Cli::new(&s.db);
    let run = |args: &[&str]| common::run_from(cli.command().env("MC_PROJECT", "AU").args(args).output().unwrap());
    let status = run(&["--json", "sync", "status"]).ok().json();
    let flows = &status["connections"][0];
    assert_eq!(flows["connection"], "flows");
    assert_eq!(flows["deliveries"]["delivered"], 1, "{status}");
    assert_eq!(flows["deliveries"]["failing"], 1, "{status}");
    assert!(flows["deliveries"]["last_delivered_at"].is_string(), "{status}");
    let text = run(&["sync", "status"]).ok().stdout;
    assert!(!text.contains("never ran"), "{text}");
    assert!(text.contains("1 delivered") && text.contains("1 failing"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_handoffs_and_ready_releases_are_sent_once_each() {
    let s = setup().await;
    let (server, workflow) = Workflow::start(vec![]).await;
    let id = n8n(&s, "flows", &format!("{}/webhook/mc", server.uri()), &["handoff.overdue", "release.ready"]).await;
    let task = s
        .store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "Blocked".into(), ..NewTask::default() })
        .await
        .unwrap();
    let due = time::OffsetDateTime::now_utc() - Duration::from_secs(3600);
    s.store
        .open_handoff(
            &actor("ops"),
            NewHandoff {
                task_key: task.key.clone(),
                kind: HandoffKind::Blocked,
                from: None,
                to: "ana".into(),
                reason: "waiting on review".into(),
                needs: String::new(),
                due_at: Some(due),
            },
        )
        .await
        .unwrap();
    // Not overdue yet: not sent.
    s.store
        .open_handoff(
            &actor("ops"),
            NewHandoff {
                task_key: task.key.clone(),
                kind: HandoffKind::Transfer,
                from: None,
                to: "ana".into(),
                reason: "later".into(),
                needs: String::new(),
                due_at: Some(time::OffsetDateTime::now_utc() + Duration::from_secs(3600)),
            },
        )
        .await
        .unwrap();
    s.store
        .create_release(&actor("ops"), s.project_id, NewRelease { name: "1.0".into(), ..NewRelease::default() })
        .await
        .unwrap();

    let connection = s.store.connection_by_id(id).await.unwrap();
    assert_eq!(mission_control::sync::n8n::check(&s.store, &connection).await.unwrap(), 2);
    assert_eq!(mission_control::sync::n8n::check(&s.store, &connection).await.unwrap(), 0);
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(mission_control::sync::n8n::check(&s.store, &connection).await.unwrap(), 0);
    drain(&s).await;

    let mut events: Vec<Value> = workflow.requests().iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    events.sort_by_key(|e| e["event"].as_str().unwrap().to_string());
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event"], "handoff.overdue");
    assert_eq!(events[0]["data"]["task"], task.key.as_str());
    assert_eq!(events[0]["data"]["to"], "ana");
    assert_eq!(events[1]["event"], "release.ready");
    assert_eq!(events[1]["data"]["name"], "1.0");
}

async fn counts(s: &Setup) -> (i64, i64) {
    (s.db.count("task").await, s.db.count("audit_entry WHERE action <> 'webhook.rejected'").await)
}

/// The inbound side: a receiver and an n8n connection `flows` (identity `flows`).
async fn inbound() -> (Setup, Receiver) {
    let s = setup().await;
    n8n(&s, "flows", "https://n8n.example.com/webhook/mc", &["task.created"]).await;
    let receiver = Receiver::start(&s.store).await;
    (s, receiver)
}

async fn command(receiver: &Receiver, body: Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(&body).unwrap();
    receiver
        .post(
            "/automation/flows",
            &hooks::automation(SIGNING, "flows", &hooks::delivery(), hooks::now(), &bytes),
            &bytes,
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_commands_are_applied_and_audited_as_the_connections_identity() {
    let (s, receiver) = inbound().await;
    let (status, answer) =
        command(&receiver, json!({"command": "create_task", "title": "From n8n", "lane": "Ready", "priority": "high"}))
            .await;
    assert_eq!(status, 200, "{answer}");
    let key = answer["result"]["task"].as_str().unwrap().to_string();
    let task = s.store.task_by_key(&key).await.unwrap();
    assert_eq!((task.title.as_str(), task.lane.as_str(), task.priority.as_str()), ("From n8n", "Ready", "high"));

    let (status, answer) =
        command(&receiver, json!({"command": "move_task", "key": key, "lane": "In Progress", "version": task.version}))
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["lane"], "In Progress");
    // A stale version is a conflict, not a silent overwrite.
    let (status, answer) =
        command(&receiver, json!({"command": "move_task", "key": key, "lane": "Review", "version": 1})).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(s.store.task_by_key(&key).await.unwrap().lane, "In Progress");

    let (status, answer) = command(
        &receiver,
        json!({"command": "open_handoff", "key": key, "to": "ana", "kind": "blocked", "reason": "needs a review"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["to"], "ana");

    let (status, answer) = command(
        &receiver,
        json!({"command": "report_pipeline", "id": "run-7", "name": "ci", "ref": "main", "status": "failed"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let client = s.db.client().await;
    let audited: Vec<(String, String, String, String)> = client
        .query("SELECT action, source, actor, reason FROM audit_entry WHERE source = 'automation' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let actions: Vec<&str> = audited.iter().map(|(a, _, _, _)| a.as_str()).collect();
    assert_eq!(actions, ["task.create", "task.move", "handoff.open", "pipeline.report"]);
    assert!(audited.iter().all(|(_, source, actor, reason)| source == "automation"
        && actor == "flows"
        && reason.starts_with("n8n delivery ")));

    // The workflow's own change is not sent back to it; an operator's is.
    assert_eq!(s.db.count("automation_delivery").await, 0);
    s.store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "by hand".into(), ..NewTask::default() })
        .await
        .unwrap();
    assert_eq!(s.db.count("automation_delivery WHERE event = 'task.created'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stale_replayed_or_invalid_commands_write_nothing() {
    let (s, receiver) = inbound().await;
    hooks::connection(
        &s.store,
        s.project_id,
        "gh",
        Provider::Github,
        "https://api.github.com",
        &s._secrets.0,
        json!({}),
    )
    .await;
    let before = counts(&s).await;
    let body = serde_json::to_vec(&json!({"command": "create_task", "title": "evil"})).unwrap();

    let forged = hooks::automation("not-the-secret", "flows", "f-1", hooks::now(), &body);
    assert_eq!(receiver.post("/automation/flows", &forged, &body).await.0, 401);
    let stale = hooks::automation(SIGNING, "flows", "f-2", hooks::now() - 600, &body);
    let (status, answer) = receiver.post("/automation/flows", &stale, &body).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("5 minutes"), "{answer}");
    let unsigned: Vec<(&str, String)> =
        vec![("x-mc-timestamp", hooks::now().to_string()), ("x-mc-delivery", "f-3".into())];
    assert_eq!(receiver.post("/automation/flows", &unsigned, &body).await.0, 401);
    // A provider connection does not take commands.
    let signed = hooks::automation(SIGNING, "gh", "f-4", hooks::now(), &body);
    assert_eq!(receiver.post("/automation/gh", &signed, &body).await.0, 404);
    assert_eq!(counts(&s).await.0, before.0);
    let reasons: Vec<String> =
        s.db.client()
            .await
            .query("SELECT after ->> 'reason' FROM audit_entry WHERE action = 'webhook.rejected' ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(reasons, ["bad_signature", "stale_timestamp", "missing_signature", "unknown_connection"]);

    for (bad, status) in [
        (json!({"command": "drop_tables"}), 400),
        (json!({"title": "no command"}), 400),
        (json!({"command": "create_task"}), 400),
        (json!({"command": "create_task", "title": "x", "colour": "red"}), 400),
        (json!({"command": "create_task", "title": "x", "priority": "asap"}), 400),
        (json!({"command": "create_task", "title": "x", "lane": "Nowhere"}), 404),
        (json!({"command": "move_task", "key": "ZZ-1", "lane": "Ready"}), 404),
        (json!({"command": "open_handoff", "key": "AU-1", "to": "ana", "reason": "x"}), 404),
        (json!({"command": "report_pipeline", "id": "r", "name": "ci", "status": "exploded"}), 400),
        (json!({"command": "report_deployment", "environment": "prod", "id": "d", "status": "success"}), 404),
    ] {
        let (got, answer) = command(&receiver, bad.clone()).await;
        assert_eq!(got, status, "{bad}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(!message.is_empty() && !message.contains('\n'), "{message}");
    }
    assert_eq!(counts(&s).await, before);
    assert_eq!(s.db.count("webhook_inbox").await, 0, "refused commands leave no inbox row");

    // The same signed request twice is applied once.
    let body = serde_json::to_vec(&json!({"command": "create_task", "title": "once"})).unwrap();
    let headers = hooks::automation(SIGNING, "flows", "once-1", hooks::now(), &body);
    let (first, answer) = receiver.post("/automation/flows", &headers, &body).await;
    assert_eq!(first, 200, "{answer}");
    let (again, replay) = receiver.post("/automation/flows", &headers, &body).await;
    assert_eq!(again, 200);
    assert_eq!(replay["duplicate"], true);
    assert_eq!(replay["result"], answer["result"]);
    assert_eq!(counts(&s).await.0, before.0 + 1);
}

fn no_progress(_: &str) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_and_recovery_events_are_captured_once_per_change() {
    use mission_control::domain::{DeploymentStatus, EnvironmentKind, PipelineStatus};
    use mission_control::snapshot::{Reason, RestoreOptions};
    use mission_control::store::delivery::{DeploymentReport, PipelineReport};

    let s = setup().await;
    n8n(
        &s,
        "flows",
        "https://n8n.example.com/webhook/mc",
        &["pipeline.failed", "deployment.finished", "snapshot.restored"],
    )
    .await;
    let ops = actor("ops");
    let pipeline = |status: PipelineStatus| PipelineReport {
        provider: "github".into(),
        external_id: "run-1".into(),
        name: "ci".into(),
        git_ref: "main".into(),
        commit_sha: None,
        status,
        url: None,
        started_at: None,
        finished_at: None,
    };
    s.store.report_pipeline(&ops, s.project_id, pipeline(PipelineStatus::Running)).await.unwrap();
    s.store.report_pipeline(&ops, s.project_id, pipeline(PipelineStatus::Failed)).await.unwrap();
    // The same report again changes nothing and sends nothing.
    s.store.report_pipeline(&ops, s.project_id, pipeline(PipelineStatus::Failed)).await.unwrap();

    s.store.create_environment(&ops, s.project_id, "prod", EnvironmentKind::Production, None).await.unwrap();
    let deployment = |status: DeploymentStatus| DeploymentReport {
        environment: "prod".into(),
        provider: "github".into(),
        external_id: "dep-1".into(),
        git_ref: "main".into(),
        commit_sha: None,
        status,
        url: None,
        release: None,
        started_at: None,
        finished_at: None,
    };
    s.store.report_deployment(&ops, s.project_id, deployment(DeploymentStatus::InProgress)).await.unwrap();
    s.store.report_deployment(&ops, s.project_id, deployment(DeploymentStatus::Success)).await.unwrap();

    let snapshot = s.store.create_snapshot(&ops, s.project_id, "before", Reason::Manual).await.unwrap();
    s.store.create_task(&ops, s.project_id, NewTask { title: "after".into(), ..NewTask::default() }).await.unwrap();
    s.store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &no_progress).await.unwrap();

    let client = s.db.client().await;
    let events: Vec<(String, Value)> = client
        .query("SELECT event, payload FROM automation_delivery ORDER BY created_at, event", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["pipeline.failed", "deployment.finished", "snapshot.restored"]);
    assert_eq!(events[0].1["data"]["external_id"], "run-1");
    assert_eq!(events[1].1["data"]["status"], "success");
    assert_eq!(events[1].1["data"]["environment"], "prod");
    assert_eq!(events[2].1["data"]["snapshot"], snapshot.id);
    assert_eq!(events[2].1["actor"]["source"], "recovery");
    assert_eq!(s.db.count("sync_job WHERE key LIKE 'delivery:%'").await, 3);
}

fn run_in(cli: &common::Cli, args: &[&str]) -> common::Run {
    let output = cli.command().env("MC_PROJECT", "AU").args(args).output().expect("run mctl");
    common::run_from(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_subscribe_a_connection_and_serve_webhooks_from_the_cli() {
    let db = TestDb::new().await;
    let cli = common::Cli::new(&db);
    cli.run(&["project", "create", "AU", "--name", "Automation"]).ok();
    let added = run_in(
        &cli,
        &[
            "--json",
            "connection",
            "add",
            "n8n",
            "--key",
            "flows",
            "--url",
            "https://n8n.example.com/webhook/mc",
            "--webhook-secret-ref",
            "env:N8N_HOOK_SECRET",
            "--token-ref",
            "env:N8N_HOOK_TOKEN",
        ],
    )
    .ok()
    .json();
    assert_eq!(added["config"]["webhook_secret_ref"], "env:N8N_HOOK_SECRET");

    let subscribed =
        run_in(&cli, &["automation", "subscribe", "flows", "task.moved,task.created", "pipeline.failed"]).ok();
    assert!(subscribed.stdout.contains("task.created, task.moved"), "{}", subscribed.stdout);
    run_in(&cli, &["automation", "unsubscribe", "flows", "task.created"]).ok();
    let events = run_in(&cli, &["--json", "automation", "events", "flows"]).ok().json();
    let on: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subscribed"] == true)
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(on, ["task.moved", "pipeline.failed"]);

    let unknown = run_in(&cli, &["automation", "subscribe", "flows", "task.deleted"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("unknown event") && unknown.stderr.trim().lines().count() == 1,
        "{}",
        unknown.stderr
    );
    // A secret value in place of a reference is refused.
    let pasted = run_in(&cli, &["connection", "update", "flows", "--set", "webhook_secret_ref=hunter2"]);
    assert_ne!(pasted.code, 0);
    assert!(!pasted.stderr.contains("hunter2"), "{}", pasted.stderr);
    let listed = run_in(&cli, &["connection", "update", "flows", "--set", "events=task.created"]);
    assert_ne!(listed.code, 0);
    assert!(listed.stderr.contains("automation subscribe"), "{}", listed.stderr);
    run_in(&cli, &["connection", "add", "github", "--key", "gh", "--url", "https://api.github.com", "--repo", "a/b"])
        .ok();
    let wrong = run_in(&cli, &["automation", "subscribe", "gh", "task.moved"]);
    assert_ne!(wrong.code, 0);
    assert!(wrong.stderr.contains("n8n"), "{}", wrong.stderr);

    // The receiver: serves, then stops cleanly on ctrl+c.
    use std::io::BufRead;
    let mut serve = cli
        .command()
        .env("MC_PROJECT", "AU")
        .args(["sync", "serve", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(serve.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.split("http://").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let health = reqwest::get(format!("http://{address}/healthz")).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let ready = reqwest::get(format!("http://{address}/readyz")).await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the receiver did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// `mctl connection test` on an n8n connection sends one signed `ping`, the
/// way every delivery is sent, and says what the workflow answered; secrets
/// never appear in what it prints.
/// `mctl ARGS` in project AU, with the workflow's signing secret and token in the environment.
fn with_n8n_secrets(cli: &common::Cli, args: &[&str]) -> common::Run {
    let output = cli
        .command()
        .env("MC_PROJECT", "AU")
        .env("N8N_HOOK_SECRET", SIGNING)
        .env("N8N_HOOK_TOKEN", TOKEN)
        .args(args)
        .output()
        .expect("run mctl");
    common::run_from(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_pings_the_workflow_signed_and_says_what_it_answered() {
    let db = TestDb::new().await;
    let cli = common::Cli::new(&db);
    cli.run(&["project", "create", "AU", "--name", "Automation"]).ok();
    let (server, workflow) = Workflow::start(vec![ResponseTemplate::new(200), ResponseTemplate::new(404)]).await;
    let url = format!("{}/webhook/mc", server.uri());
    let test = |args: &[&str]| with_n8n_secrets(&cli, args);
    test(&["connection", "add", "n8n", "--key", "flows", "--url", &url, "--token-ref", "env:N8N_HOOK_TOKEN"]).ok();

    let unsigned = test(&["connection", "test", "flows"]);
    assert_ne!(unsigned.code, 0);
    assert!(unsigned.stdout.contains("no webhook secret to sign with"), "{}", unsigned.stdout);
    assert!(workflow.requests().is_empty(), "nothing is sent unsigned");

    test(&["connection", "update", "flows", "--webhook-secret-ref", "env:N8N_HOOK_SECRET"]).ok();
    let accepted = test(&["connection", "test", "flows"]).ok();
    assert!(accepted.stdout.contains("ping") && accepted.stdout.contains("ready"), "{}", accepted.stdout);
    let ping = workflow.requests().remove(0);
    assert_eq!(header(&ping, "x-mc-event"), "ping");
    assert_eq!(header(&ping, "authorization"), format!("Bearer {TOKEN}"));
    let timestamp: i64 = header(&ping, "x-mc-timestamp").parse().unwrap();
    let delivery = header(&ping, "x-mc-delivery");
    let expected = mc_signature(SIGNING.as_bytes(), timestamp, &delivery, "POST", "/webhook/mc", &ping.body);
    assert_eq!(header(&ping, "x-mc-signature"), expected);
    let body: Value = serde_json::from_slice(&ping.body).unwrap();
    assert_eq!(body["event"], "ping");
    assert_eq!(body["connection"], "flows");
    assert_eq!(body["delivery"].as_str().unwrap(), header(&ping, "x-mc-delivery"));

    let inactive = test(&["connection", "test", "flows"]);
    assert_ne!(inactive.code, 0);
    assert!(inactive.stdout.contains("the workflow is not active"), "{}", inactive.stdout);
    for run in [&unsigned, &accepted, &inactive] {
        let shown = format!("{}{}", run.stdout, run.stderr);
        assert!(!shown.contains(SIGNING) && !shown.contains(TOKEN), "a secret was shown: {shown}");
    }
    assert_eq!(workflow.requests().len(), 2, "one ping per test");
}

/// Headers for a command as a workflow signs it, with its delivery id.
fn signed(body: &[u8], delivery: &str) -> Vec<(&'static str, String)> {
    hooks::automation(SIGNING, "flows", delivery, hooks::now(), body)
}

/// The delivery id is the replay key, so it must be signed: resending a
/// captured command with another delivery id, or none, must not apply it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_command_resent_with_another_or_no_delivery_id_is_refused() {
    let (s, receiver) = inbound().await;
    let before = counts(&s).await.0;
    let body = serde_json::to_vec(&json!({"command": "create_task", "title": "once only"})).unwrap();
    let original = signed(&body, "exec-1");
    let (status, answer) = receiver.post("/automation/flows", &original, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(counts(&s).await.0, before + 1);

    // The captured request, its delivery id swapped or dropped.
    let mut swapped = original.clone();
    swapped.iter_mut().find(|(name, _)| *name == "x-mc-delivery").unwrap().1 = "exec-2".into();
    let (status, answer) = receiver.post("/automation/flows", &swapped, &body).await;
    assert_eq!(status, 401, "{answer}");
    let dropped: Vec<_> = original.iter().filter(|(name, _)| *name != "x-mc-delivery").cloned().collect();
    let (status, answer) = receiver.post("/automation/flows", &dropped, &body).await;
    assert!(status == 400 || status == 401, "{status} {answer}");
    assert!(answer["error"].as_str().unwrap().contains("X-MC-Delivery"), "{answer}");
    // The same request again is the duplicate it is.
    let (status, answer) = receiver.post("/automation/flows", &original, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], true);
    assert_eq!(counts(&s).await.0, before + 1, "applied once");
}

/// A command carrying a NUL character is refused once with a clear 400 and
/// an audit entry, not 503 on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_a_nul_character_is_refused_with_a_clear_answer() {
    let (s, receiver) = inbound().await;
    let before = counts(&s).await;
    let body = br#"{"command":"create_task","title":"evil\u0000title"}"#;
    for attempt in ["nul-1", "nul-2"] {
        let (status, answer) = receiver.post("/automation/flows", &signed(body, attempt), body).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains("NUL") && !message.contains('\n'), "{message}");
    }
    assert_eq!(counts(&s).await.0, before.0);
    assert_eq!(
        s.db.count("audit_entry WHERE action = 'webhook.rejected' AND after ->> 'reason' = 'nul_character'").await,
        1
    );
}

/// Audit entries of a workflow's commands carry the delivery id, under a
/// source of their own that `mctl audit list --source` filters on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_of_commands_carry_the_delivery_id_and_filter_by_source() {
    let (s, receiver) = inbound().await;
    let body = serde_json::to_vec(&json!({"command": "create_task", "title": "audited"})).unwrap();
    let (status, answer) = receiver.post("/automation/flows", &signed(&body, "exec-77"), &body).await;
    assert_eq!(status, 200, "{answer}");
    s.store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "by hand".into(), ..NewTask::default() })
        .await
        .unwrap();
    let cli = common::Cli::new(&s.db);
    let listed = run_in(&cli, &["--json", "audit", "list", "--source", "automation"]).ok().json();
    let entries = listed.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed}");
    assert_eq!(entries[0]["action"], "task.create");
    assert_eq!(entries[0]["actor"], "flows");
    assert!(entries[0]["reason"].as_str().unwrap().contains("exec-77"), "{listed}");
    let text = run_in(&cli, &["audit", "list", "--source", "automation"]).ok().stdout;
    assert!(text.contains("exec-77"), "{text}");
}

fn rfc3339_utc(value: &Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok() && text.ends_with('Z')
}

/// Events of one task arrive in the order they happened, even when an
/// earlier one had to be retried; each carries a per-project sequence
/// number, and every time is RFC 3339 in UTC with `Z`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_task_arrive_in_order_with_sequence_numbers() {
    let s = setup().await;
    // The first delivery (task.created) fails once.
    let (server, workflow) = Workflow::start(vec![ResponseTemplate::new(503)]).await;
    n8n(&s, "flows", &format!("{}/webhook/mc", server.uri()), &["task.created", "task.moved", "handoff.opened"]).await;
    let task = s
        .store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "ordered".into(), ..NewTask::default() })
        .await
        .unwrap();
    s.store.move_task(&actor("ops"), &task.key, Some("Ready"), Position::Bottom, None).await.unwrap();
    s.store.move_task(&actor("ops"), &task.key, Some("In Progress"), Position::Bottom, None).await.unwrap();
    s.store
        .open_handoff(
            &actor("ops"),
            NewHandoff {
                task_key: task.key.clone(),
                kind: HandoffKind::Blocked,
                from: None,
                to: "ana".into(),
                reason: "review".into(),
                needs: String::new(),
                due_at: Some(time::OffsetDateTime::now_utc() + Duration::from_secs(3600)),
            },
        )
        .await
        .unwrap();
    for _ in 0..4 {
        drain(&s).await;
        make_due(&s).await;
    }
    assert_eq!(s.db.count("automation_delivery WHERE delivered_at IS NULL").await, 0);
    let delivered: Vec<Value> = workflow
        .requests()
        .iter()
        .skip(1) // the failed attempt
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let task_events: Vec<(&str, &str)> = delivered
        .iter()
        .filter(|e| e["event"].as_str().unwrap().starts_with("task."))
        .map(|e| (e["event"].as_str().unwrap(), e["data"]["lane"].as_str().unwrap()))
        .collect();
    assert_eq!(task_events, [("task.created", "Inbox"), ("task.moved", "Ready"), ("task.moved", "In Progress")]);
    let seqs: Vec<i64> = delivered.iter().map(|e| e["seq"].as_i64().expect("a sequence number")).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "distinct: {seqs:?}");
    for event in &delivered {
        assert!(rfc3339_utc(&event["at"]), "{event}");
        if event["event"] == "handoff.opened" {
            assert!(rfc3339_utc(&event["data"]["due_at"]), "{event}");
        }
    }
    let created = delivered.iter().find(|e| e["event"] == "task.created").unwrap();
    let moved = delivered.iter().find(|e| e["event"] == "task.moved").unwrap();
    assert!(created["seq"].as_i64() < moved["seq"].as_i64());
}

/// `connection test` tells a signing secret the workflow rejects (its
/// signature check answers 401 naming the signature) from a token n8n's
/// header auth rejects (403 "Authorization data is wrong!").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_tells_a_wrong_signing_secret_from_a_wrong_token() {
    let db = TestDb::new().await;
    let cli = common::Cli::new(&db);
    cli.run(&["project", "create", "AU", "--name", "Automation"]).ok();
    let (server, _workflow) = Workflow::start(vec![
        // assets/n8n/receive-events.json answers this when the signature does not match.
        ResponseTemplate::new(401).set_body_json(json!({"error": "mctl signature does not match the body"})),
        // n8n: packages/nodes-base/nodes/Webhook/error.ts WebhookAuthorizationError(403)
        ResponseTemplate::new(403).set_body_string("Authorization data is wrong!"),
    ])
    .await;
    let url = format!("{}/webhook/mc", server.uri());
    let test = |args: &[&str]| with_n8n_secrets(&cli, args);
    test(&[
        "connection",
        "add",
        "n8n",
        "--key",
        "flows",
        "--url",
        &url,
        "--token-ref",
        "env:N8N_HOOK_TOKEN",
        "--webhook-secret-ref",
        "env:N8N_HOOK_SECRET",
    ])
    .ok();
    let signing = test(&["connection", "test", "flows"]);
    assert_ne!(signing.code, 0);
    assert!(signing.stdout.contains("signing secret") && !signing.stdout.contains("token"), "{}", signing.stdout);
    let token = test(&["connection", "test", "flows"]);
    assert_ne!(token.code, 0);
    assert!(token.stdout.contains("token") && !token.stdout.contains("signing secret"), "{}", token.stdout);
}

// ---- The workflows shipped in assets/n8n ----

const RECEIVE: &str = include_str!("../assets/n8n/receive-events.json");
const SEND: &str = include_str!("../assets/n8n/send-command.json");

/// Node types (and the versions used) as n8n's source defines them:
/// packages/nodes-base/nodes/<Node>/<Node>.node.ts `name` and `version`.
const N8N_NODES: &[(&str, &[f64])] = &[
    // Webhook/Webhook.node.ts: version [1, 1.1, 2, 2.1]
    ("n8n-nodes-base.webhook", &[1.0, 1.1, 2.0, 2.1]),
    // Crypto/Crypto.node.ts: VersionedNodeType {1: CryptoV1, 2: CryptoV2}
    ("n8n-nodes-base.crypto", &[1.0, 2.0]),
    // If/V2/IfV2.node.ts: version [2, 2.1, 2.2]
    ("n8n-nodes-base.if", &[2.0, 2.1, 2.2]),
    // RespondToWebhook/RespondToWebhook.node.ts (respondWith, responseBody, options.responseCode)
    ("n8n-nodes-base.respondToWebhook", &[1.0, 1.1]),
    ("n8n-nodes-base.noOp", &[1.0]),
    ("n8n-nodes-base.manualTrigger", &[1.0]),
    // Set/v2 (typeVersion 3.4 in Set/test/v2/manual.test.ts: assignments.assignments)
    ("n8n-nodes-base.set", &[3.3, 3.4]),
    // HttpRequest/V3/Description.ts (contentType raw, rawContentType, body)
    ("n8n-nodes-base.httpRequest", &[4.0, 4.1, 4.2]),
];

fn node<'a>(workflow: &'a Value, name: &str) -> &'a Value {
    workflow["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap_or_else(|| panic!("no node {name}"))
}

/// Renders an n8n expression parameter (`=...{{ expr }}...`) with the values
/// the test gives each expression; an expression it does not know fails the test.
fn render(template: &str, values: &[(&str, String)]) -> String {
    let mut rest = template.strip_prefix('=').unwrap_or_else(|| panic!("not an expression: {template}"));
    let mut out = String::new();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("a closed expression") + start;
        let expression = rest[start + 2..end].trim();
        let value = values.iter().find(|(e, _)| *e == expression).unwrap_or_else(|| panic!("unknown {expression}"));
        out.push_str(&value.1);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    mission_control::sync::webhook::verify::hex(&sha2::Sha256::digest(bytes))
}

#[test]
fn the_shipped_workflows_are_n8n_exports_of_nodes_that_exist() {
    for (file, text) in [("receive-events.json", RECEIVE), ("send-command.json", SEND)] {
        let workflow: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        let nodes = workflow["nodes"].as_array().unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
        for node in nodes {
            let kind = node["type"].as_str().unwrap();
            let version = node["typeVersion"].as_f64().unwrap();
            let known = N8N_NODES.iter().find(|(k, _)| *k == kind).unwrap_or_else(|| panic!("{file}: {kind}"));
            assert!(known.1.contains(&version), "{file}: {kind} has no version {version}");
            assert!(node["position"].as_array().is_some_and(|p| p.len() == 2), "{file}: {}", node["name"]);
            // Credentials by name only: nothing secret ships.
            for (_, credential) in node["credentials"].as_object().into_iter().flatten() {
                assert_eq!(credential["id"], "REPLACE_ME", "{file}");
            }
        }
        for (from, outputs) in workflow["connections"].as_object().unwrap() {
            assert!(names.contains(&from.as_str()), "{file}: {from}");
            for target in outputs["main"].as_array().unwrap().iter().flat_map(|o| o.as_array().unwrap()) {
                assert!(names.contains(&target["node"].as_str().unwrap()), "{file}: {target}");
            }
        }
        assert!(!text.contains(SIGNING) && !text.contains(TOKEN));
    }
    let receive: Value = serde_json::from_str(RECEIVE).unwrap();
    let hook = node(&receive, "mctl event");
    assert_eq!(hook["parameters"]["options"]["rawBody"], true, "the raw body is what was signed");
    assert_eq!(hook["parameters"]["responseMode"], "responseNode");
    assert_eq!(node(&receive, "Hash the raw body")["parameters"]["binaryData"], true);
    let send: Value = serde_json::from_str(SEND).unwrap();
    let http = &node(&send, "Send to mctl")["parameters"];
    assert_eq!(http["contentType"], "raw", "a JSON body is re-serialized by n8n and breaks the signature");
}

/// What `send-command.json` signs, computed the way its Crypto nodes are
/// configured, is what mctl's receiver verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_signed_as_the_shipped_workflow_signs_it_is_applied() {
    let (s, receiver) = inbound().await;
    let workflow: Value = serde_json::from_str(SEND).unwrap();
    let assignments = node(&workflow, "Command")["parameters"]["assignments"]["assignments"].as_array().unwrap();
    let field = |name: &str| assignments.iter().find(|a| a["name"] == name).unwrap()["value"].as_str().unwrap();
    assert_eq!(field("path"), "/automation/flows");
    // JSON.stringify of that object literal: keys in order, no spaces.
    assert_eq!(field("body"), "={{ JSON.stringify({ command: 'create_task', title: 'From n8n', lane: 'Ready' }) }}");
    let body = r#"{"command":"create_task","title":"From n8n","lane":"Ready"}"#.to_string();
    let mut values = vec![
        ("$json.mctl_url", receiver.url("")),
        ("$json.path", field("path").to_string()),
        ("$json.body", body.clone()),
        ("$json.timestamp", hooks::now().to_string()),
        ("$json.delivery", hooks::delivery()),
    ];
    let hash = &node(&workflow, "Hash the body")["parameters"];
    assert_eq!((hash["action"].as_str(), hash["type"].as_str()), (Some("hash"), Some("SHA256")));
    assert_eq!(render(hash["value"].as_str().unwrap(), &values), body);
    values.push(("$json.body_sha256", sha256_hex(body.as_bytes())));
    let sign = &node(&workflow, "Sign")["parameters"];
    assert_eq!((sign["action"].as_str(), sign["encoding"].as_str()), (Some("hmac"), Some("hex")));
    let signed = render(sign["value"].as_str().unwrap(), &values);
    // The Crypto credential holds the connection's webhook secret.
    values.push((
        "$json.signature",
        mission_control::sync::webhook::verify::hmac_hex(SIGNING.as_bytes(), &[signed.as_bytes()]),
    ));

    let http = &node(&workflow, "Send to mctl")["parameters"];
    let url = render(http["url"].as_str().unwrap(), &values);
    let mut headers: Vec<(&str, String)> = vec![("content-type", http["rawContentType"].as_str().unwrap().to_string())];
    for header in http["headerParameters"]["parameters"].as_array().unwrap() {
        headers.push((header["name"].as_str().unwrap(), render(header["value"].as_str().unwrap(), &values)));
    }
    let sent = render(http["body"].as_str().unwrap(), &values);
    let path = url.strip_prefix(&receiver.url("")).unwrap();
    let (status, answer) = receiver.post(path, &headers, sent.as_bytes()).await;
    assert_eq!(status, 200, "{answer}");
    let task = s.store.task_by_key(answer["result"]["task"].as_str().unwrap()).await.unwrap();
    assert_eq!((task.title.as_str(), task.lane.as_str()), ("From n8n", "Ready"));

    // The same body sent as n8n's "Using JSON" would re-serialize it (spaces) no longer verifies.
    let reserialized = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&sent).unwrap()).unwrap();
    let (status, answer) = receiver.post(path, &headers, reserialized.as_bytes()).await;
    assert_eq!(status, 401);
    assert!(answer["error"].as_str().unwrap().contains("signature does not match the body"), "{answer}");
}

/// What `receive-events.json` computes from an event mctl sent (its Webhook
/// node's raw body and headers, its Crypto nodes, its If node) matches the
/// event's signature, and not a changed body's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_verifies_the_way_the_shipped_workflow_checks_it() {
    let s = setup().await;
    let (server, workflow) = Workflow::start(vec![]).await;
    n8n(&s, "flows", &format!("{}/webhook/mission-control", server.uri()), &["task.created"]).await;
    s.store
        .create_task(&actor("ops"), s.project_id, NewTask { title: "verify me".into(), ..NewTask::default() })
        .await
        .unwrap();
    assert_eq!(drain(&s).await.failed, 0);
    let request = workflow.requests().remove(0);
    let exported: Value = serde_json::from_str(RECEIVE).unwrap();
    let hook = node(&exported, "mctl event");
    assert_eq!(request.url.path(), format!("/webhook/{}", hook["parameters"]["path"].as_str().unwrap()));
    // n8n's Webhook node: `webhookUrl` is its production URL (Webhook/utils.ts setupOutputConnection).
    let webhook_url = format!("{}{}", server.uri(), request.url.path());
    let path_expression = webhook_url.split('/').skip(3).collect::<Vec<_>>().join("/");
    let check = |body: &[u8]| {
        let values = vec![
            ("$json.headers['x-mc-timestamp']", header(&request, "x-mc-timestamp")),
            ("$json.headers['x-mc-delivery']", header(&request, "x-mc-delivery")),
            ("$json.webhookUrl.split('/').slice(3).join('/')", path_expression.clone()),
            ("$json.body_sha256", sha256_hex(body)),
        ];
        let sign = &node(&exported, "Sign as mctl does")["parameters"];
        let expected = mission_control::sync::webhook::verify::hmac_hex(
            SIGNING.as_bytes(),
            &[render(sign["value"].as_str().unwrap(), &values).as_bytes()],
        );
        let condition = &node(&exported, "Signature matches?")["parameters"]["conditions"]["conditions"][0];
        assert_eq!(condition["leftValue"], "={{ 'sha256=' + $json.expected_signature }}");
        assert_eq!(condition["rightValue"], "={{ $json.headers['x-mc-signature'] }}");
        format!("sha256={expected}") == header(&request, "x-mc-signature")
    };
    assert!(check(&request.body), "the workflow's check refuses a genuine event");
    let mut changed = request.body.clone();
    changed.push(b' ');
    assert!(!check(&changed), "the workflow's check accepts a changed body");
}
