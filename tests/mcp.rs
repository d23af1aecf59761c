//! `mctl mcp` driven by the SDK's client side against a real PostgreSQL:
//! every tool, its audit entries, the agent policy, malformed arguments, and
//! the real binary over stdio.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::mcp::{self, answer, call, tool_error};
use common::{Cli, TestDb, actor};
use mission_control::config::Config;
use mission_control::domain::{AgentKind, EnvironmentKind, LocalKind, Project, Provider};
use mission_control::mcp::policy::AgentPolicy;
use mission_control::store::Store;
use mission_control::store::agents::NewAgent;
use mission_control::store::delivery::NewRelease;
use mission_control::store::integrations::{NewConnection, NewMapping};
use mission_control::store::tasks::NewTask;
use rmcp::model::ReadResourceRequestParams;
use rmcp::{ServiceError, ServiceExt};
use serde_json::{Value, json};

struct Setup {
    db: TestDb,
    store: Store,
    project: Project,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "MCP", "Agents", "").await.unwrap();
    for (handle, kind) in [("bot", AgentKind::Ai), ("ana", AgentKind::Human)] {
        let agent = NewAgent {
            handle: handle.into(),
            display_name: handle.to_uppercase(),
            kind,
            capacity: Some(5),
            skills: vec![],
        };
        store.create_agent(&actor("ops"), agent).await.unwrap();
    }
    store
        .create_page(&actor("ops"), project.id, "runbook", "Runbook", "# Restarting\n\nRun `make restart`.")
        .await
        .unwrap();
    // A repository tasks can be linked to (nothing syncs it here).
    let github = NewConnection {
        key: "gh".into(),
        provider: Provider::Github,
        base_url: "https://github.example".into(),
        config: json!({ "repo": "acme/app" }),
        secret_ref: None,
    };
    store.add_connection(&actor("ops"), project.id, github).await.unwrap();
    Setup { db, store, project }
}

/// Entries the agent's calls wrote, oldest first: (action, source).
async fn agent_entries(s: &Setup) -> Vec<(String, String)> {
    let client = s.db.client().await;
    client
        .query("SELECT action, source FROM audit_entry WHERE actor = 'bot' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The bot's refusals, oldest first: each `mcp.denied` entry's `after`
/// (tool, reason, arguments).
async fn refusals(s: &Setup) -> Vec<Value> {
    let client = s.db.client().await;
    client
        .query("SELECT after FROM audit_entry WHERE action = 'mcp.denied' AND actor = 'bot' AND source = 'agent' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A task made by an operator, in the default lane unless `lane` says.
async fn task(s: &Setup, title: &str, lane: Option<&str>) -> mission_control::domain::Task {
    let new = NewTask { title: title.into(), lane: lane.map(str::to_string), ..NewTask::default() };
    s.store.create_task(&actor("ops"), s.project.id, new).await.unwrap()
}

fn protocol_error(result: Result<rmcp::model::CallToolResult, ServiceError>) -> (i32, String) {
    match result {
        Err(ServiceError::McpError(e)) => (e.code.0, e.message.to_string()),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_works_against_the_database_and_is_audited_as_the_agent() {
    let s = setup().await;
    let client = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;

    let mut tools: Vec<String> =
        client.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    tools.sort();
    let mut expected = vec![
        "claim_next_task",
        "comment_task",
        "create_follow_up",
        "create_task",
        "move_task",
        "open_handoff",
        "read_board",
        "read_page",
        "read_pipelines",
        "read_task",
        "release_readiness",
        "report_deployment",
        "report_pipeline",
        "review_queue",
        "update_description",
        "update_handoff",
    ];
    expected.sort();
    assert_eq!(tools, expected);

    // Create, read, move (with the version read), describe, comment.
    let created = answer(
        call(
            &client,
            "create_task",
            json!({"title": "Rotate the keys", "lane": "Ready", "priority": "high", "labels": ["sec"]}),
        )
        .await,
    );
    let key = created["key"].as_str().unwrap().to_string();
    let issue = "https://github.example/acme/app/issues/42";
    let link = NewMapping {
        connection: "gh".into(),
        local_kind: LocalKind::Task,
        local_id: created["id"].as_i64().unwrap(),
        external_id: "42".into(),
        external_key: Some("#42".into()),
        url: Some(issue.into()),
    };
    s.store.create_mapping(&actor("ops"), s.project.id, link).await.unwrap();
    let hostile = answer(call(&client, "create_task", json!({"title": "Clear\u{1b}[2J\u{202e}screen"})).await);
    assert_eq!(hostile["title"], "Clear[2Jscreen", "control characters and bidi overrides are removed");
    assert_eq!((created["lane"].as_str(), created["priority"].as_str()), (Some("Ready"), Some("high")));
    let board = answer(call(&client, "read_board", json!({"label": "sec"})).await);
    let ready = board["lanes"].as_array().unwrap().iter().find(|l| l["lane"] == "Ready").unwrap();
    assert_eq!(ready["count"], 1);
    assert_eq!(ready["tasks"][0]["key"], key.as_str());
    assert_eq!(board["lanes"].as_array().unwrap().len(), 6);

    // Dispatch: the ready task is claimed once, then nothing is ready.
    let claim = answer(call(&client, "claim_next_task", json!({})).await);
    assert_eq!(claim["claimed"], true, "{claim}");
    let claimed = &claim["task"];
    assert_eq!((claimed["key"].as_str(), claimed["lane"].as_str()), (Some(key.as_str()), Some("In Progress")));
    assert_eq!(claimed["assignee"], "bot");
    let none = answer(call(&client, "claim_next_task", json!({})).await);
    assert_eq!(none["claimed"], false);
    assert!(none["reason"].as_str().unwrap().contains("nothing is ready"), "{none}");
    let seen = s.store.agent_by_handle("bot").await.unwrap().last_seen_at;
    assert!(seen.is_some(), "a call is a heartbeat");

    let version = claim["task"]["version"].as_i64().unwrap();
    let moved =
        answer(call(&client, "move_task", json!({"key": key, "lane": "Review", "expected_version": version})).await);
    assert_eq!(moved["lane"], "Review");
    let stale =
        tool_error(call(&client, "move_task", json!({"key": key, "lane": "Ready", "expected_version": version})).await);
    assert!(stale.contains("changed by someone else"), "{stale}");
    let described = answer(
        call(
            &client,
            "update_description",
            json!({"key": key, "description": "Keys \u{1b}[31mexpire\u{1b}[0m Friday", "expected_version": moved["version"]}),
        )
        .await,
    );
    assert_eq!(described["description"], "Keys [31mexpire[0m Friday", "escape characters are removed");
    answer(call(&client, "comment_task", json!({"key": key, "text": "Started on staging"})).await);

    // Handoffs: open one to ana, ana's side accepts it through the same tool.
    let handoff = answer(
        call(
            &client,
            "open_handoff",
            json!({"key": key, "to": "ana", "kind": "blocked", "reason": "need the vault token"}),
        )
        .await,
    );
    assert_eq!((handoff["from_agent"].as_str(), handoff["state"].as_str()), (Some("bot"), Some("open")));
    let not_mine = tool_error(call(&client, "update_handoff", json!({"id": handoff["id"], "state": "accepted"})).await);
    assert!(not_mine.contains("addressed to ana"), "{not_mine}");
    let ana = mcp::connect(&s.store, &s.project, "ana", AgentPolicy::default()).await;
    let accepted = answer(call(&ana, "update_handoff", json!({"id": handoff["id"], "state": "accepted"})).await);
    assert_eq!(accepted["state"], "accepted");
    // Its opener resolves it, with a note.
    let resolved = answer(
        call(
            &client,
            "update_handoff",
            json!({"id": handoff["id"], "state": "resolved", "note": "token in the vault"}),
        )
        .await,
    );
    assert_eq!(
        (resolved["state"].as_str(), resolved["resolution"].as_str()),
        (Some("resolved"), Some("token in the vault"))
    );
    assert!(resolved["closed_at"].is_string(), "{resolved}");
    // Understood but not possible in its state: a tool error the agent can read, not a protocol error.
    let closed = tool_error(call(&client, "update_handoff", json!({"id": handoff["id"], "state": "resolved"})).await);
    assert!(closed.contains("cannot become resolved"), "{closed}");
    // A second one ana rejects; only ana could.
    let second = answer(
        call(&client, "open_handoff", json!({"key": key, "to": "ana", "kind": "transfer", "reason": "on leave"})).await,
    );
    let not_mine = tool_error(call(&client, "update_handoff", json!({"id": second["id"], "state": "rejected"})).await);
    assert!(not_mine.starts_with("denied:") && not_mine.contains("addressed to ana"), "{not_mine}");
    let rejected =
        answer(call(&ana, "update_handoff", json!({"id": second["id"], "state": "rejected", "note": "out too"})).await);
    assert_eq!((rejected["state"].as_str(), rejected["resolution"].as_str()), (Some("rejected"), Some("out too")));
    assert_eq!(
        s.store.task_by_key(&key).await.unwrap().assignee.as_deref(),
        Some("bot"),
        "a rejected transfer moves nothing"
    );
    ana.cancel().await.unwrap();
    let client_db = s.db.client().await;
    let answered: Vec<(String, String)> = client_db
        .query(
            "SELECT action, actor FROM audit_entry WHERE entity_kind = 'handoff' AND source = 'agent' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        answered.iter().map(|(action, actor)| (action.as_str(), actor.as_str())).collect::<Vec<_>>(),
        [
            ("handoff.open", "bot"),
            ("handoff.accept", "ana"),
            ("handoff.resolve", "bot"),
            ("handoff.open", "bot"),
            ("handoff.reject", "ana"),
        ]
    );

    let detail = answer(call(&client, "read_task", json!({"key": key})).await);
    assert_eq!(detail["task"]["description"], "Keys [31mexpire[0m Friday");
    let states: Vec<&str> =
        detail["handoffs"].as_array().unwrap().iter().map(|h| h["state"].as_str().unwrap()).collect();
    assert_eq!(states.len(), 2);
    assert!(states.contains(&"resolved") && states.contains(&"rejected"), "{states:?}");
    assert_eq!(
        detail["mappings"],
        json!([{"connection": "gh", "external_key": "#42", "url": issue, "sync_state": "pending"}])
    );
    let history = detail["history"].as_array().unwrap();
    let comment = history.iter().find(|h| h["action"] == "task.comment").unwrap();
    assert_eq!((comment["comment"].as_str(), comment["actor"].as_str()), (Some("Started on staging"), Some("bot")));
    assert!(
        history.iter().any(|h| h["action"] == "task.move" && h["changed"].as_array().unwrap().contains(&json!("lane")))
    );

    // Delivery: a failed run, its follow-up, a deployment, readiness, the review queue.
    let pipeline = answer(
        call(
            &client,
            "report_pipeline",
            json!({"name": "ci", "git_ref": "main", "status": "failed", "commit_sha": "abc1234"}),
        )
        .await,
    );
    let again = answer(
        call(
            &client,
            "report_pipeline",
            json!({"name": "ci", "git_ref": "main", "status": "failed", "commit_sha": "abc1234"}),
        )
        .await,
    );
    assert_eq!(pipeline["id"], again["id"], "reporting twice is one run");
    let failing = answer(call(&client, "read_pipelines", json!({"failed_only": true})).await);
    assert_eq!(failing["pipelines"].as_array().unwrap().len(), 1);
    let follow_up = answer(call(&client, "create_follow_up", json!({"pipeline_id": pipeline["id"]})).await);
    let not_failed =
        answer(call(&client, "report_pipeline", json!({"name": "lint", "git_ref": "main", "status": "success"})).await);
    // A state precondition is the tool's answer, for the model to read.
    let refused = tool_error(call(&client, "create_follow_up", json!({"pipeline_id": not_failed["id"]})).await);
    assert!(refused.contains("has not failed"), "{refused:?}");
    assert_eq!(follow_up["title"], "Fix failing ci on main");
    assert_eq!(follow_up["labels"], json!(["ci"]));
    s.store.create_environment(&actor("ops"), s.project.id, "staging", EnvironmentKind::Staging, None).await.unwrap();
    let deployment = answer(
        call(&client, "report_deployment", json!({"environment": "staging", "git_ref": "main", "status": "success"}))
            .await,
    );
    assert_eq!(deployment["status"], "success");
    let release = NewRelease { name: "1.0".into(), commit_sha: Some("abc1234".into()), ..NewRelease::default() };
    s.store.create_release(&actor("ops"), s.project.id, release).await.unwrap();
    s.store.link_release_tasks(&actor("ops"), s.project.id, "1.0", std::slice::from_ref(&key), true).await.unwrap();
    let readiness = answer(call(&client, "release_readiness", json!({"release": "1.0"})).await);
    assert_eq!(readiness["ready"], false);
    assert_eq!(readiness["open_tasks"], json!([key]));
    assert_eq!(readiness["failing_pipelines"], json!(["ci (failed)"]));
    let review = answer(call(&client, "review_queue", json!({})).await);
    assert_eq!(review["tasks"][0]["key"], key.as_str());

    // Knowledge pages, as a tool and as resources.
    let page = answer(call(&client, "read_page", json!({"slug": "runbook"})).await);
    assert!(page["body"].as_str().unwrap().contains("make restart"));
    let resources = client.list_all_resources().await.unwrap();
    assert_eq!(resources.iter().map(|r| r.uri.as_str()).collect::<Vec<_>>(), ["mctl://MCP/pages/runbook"]);
    let read = client.read_resource(ReadResourceRequestParams::new("mctl://MCP/pages/runbook")).await.unwrap();
    let text = serde_json::to_value(&read).unwrap();
    assert!(text.to_string().contains("make restart"), "{text}");
    assert!(client.read_resource(ReadResourceRequestParams::new("mctl://MCP/pages/nope")).await.is_err());
    let missing = tool_error(call(&client, "read_task", json!({"key": "MCP-999"})).await);
    assert!(missing.contains("not found"), "{missing}");

    // Every entry the calls wrote is the agent's, with source agent.
    let entries = agent_entries(&s).await;
    assert!(entries.iter().all(|(_, source)| source == "agent"), "{entries:?}");
    let actions: Vec<&str> = entries.iter().map(|(a, _)| a.as_str()).collect();
    for action in [
        "task.create",
        "mcp.read_board",
        "task.claim",
        "task.move",
        "task.update",
        "task.comment",
        "handoff.open",
        "mcp.read_task",
        "pipeline.report",
        "mcp.read_pipelines",
        "deployment.report",
        "mcp.release_readiness",
        "mcp.review_queue",
        "mcp.read_page",
        "mcp.read_resource",
    ] {
        assert!(actions.contains(&action), "no {action} in {actions:?}");
    }
    assert_eq!(actions.iter().filter(|a| **a == "task.create").count(), 3, "two tasks and the follow-up");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_refuses_and_audits_a_move_to_done_and_a_read_only_agent_cannot_write() {
    let s = setup().await;
    let task = s
        .store
        .create_task(
            &actor("ops"),
            s.project.id,
            NewTask { title: "Ship it".into(), lane: Some("Review".into()), ..NewTask::default() },
        )
        .await
        .unwrap();

    let client = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;
    let refused = tool_error(
        call(&client, "move_task", json!({"key": task.key, "lane": "Done", "expected_version": task.version})).await,
    );
    assert!(refused.starts_with("denied:") && refused.contains("a human has to"), "{refused}");
    let after = s.store.task_by_key(&task.key).await.unwrap();
    assert_eq!((after.lane.as_str(), after.version), ("Review", task.version), "nothing moved");
    let client_db = s.db.client().await;
    let denied = client_db
        .query_one(
            "SELECT after FROM audit_entry WHERE action = 'mcp.denied' AND actor = 'bot' AND source = 'agent'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, Value>(0);
    assert_eq!(denied["tool"], "move_task");
    assert_eq!(denied["arguments"]["lane"], "Done");
    client.cancel().await.unwrap();

    // Read-only: reads work, every write is refused and audited, nothing written.
    let read_only: AgentPolicy = toml::from_str("read_only = true").unwrap();
    let client = mcp::connect(&s.store, &s.project, "bot", read_only).await;
    answer(call(&client, "read_board", json!({})).await);
    let tasks_before = s.db.count("task").await;
    for (tool, args) in [
        ("create_task", json!({"title": "sneaky"})),
        ("move_task", json!({"key": task.key, "lane": "In Progress", "expected_version": task.version})),
        ("comment_task", json!({"key": task.key, "text": "hi"})),
        ("report_pipeline", json!({"name": "ci", "git_ref": "main", "status": "success"})),
    ] {
        let refused = tool_error(call(&client, tool, args).await);
        assert!(refused.contains("read-only"), "{tool}: {refused}");
    }
    assert_eq!(s.db.count("task").await, tasks_before);
    assert_eq!(s.db.count("pipeline").await, 0);
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().version, task.version);
    assert_eq!(s.db.count("audit_entry WHERE action = 'mcp.denied'").await, 5);
    client.cancel().await.unwrap();

    // An allow-list hides nothing from tools/list but refuses the rest.
    let narrow: AgentPolicy = toml::from_str(r#"tools = ["read_board"]"#).unwrap();
    let client = mcp::connect(&s.store, &s.project, "bot", narrow).await;
    assert!(tool_error(call(&client, "read_task", json!({"key": task.key})).await).contains("not among"));
    assert!(client.list_all_resources().await.unwrap().is_empty(), "pages need read_page");
    client.cancel().await.unwrap();

    // A policy naming a tool that does not exist is refused up front.
    let typo: AgentPolicy = toml::from_str(r#"deny_tools = ["move_tsk"]"#).unwrap();
    let error =
        mission_control::mcp::McpServer::new(s.store.clone(), s.project.clone(), "bot", typo).await.err().unwrap();
    assert!(error.to_string().contains("move_tsk"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_list_in_the_config_allows_moves_and_creates_into_those_lanes_only() {
    let s = setup().await;
    let config = Config::parse(
        r#"
[agents.bot]
lanes = ["In Progress", "review", "Done"]
"#,
    )
    .unwrap();
    let client = mcp::connect(&s.store, &s.project, "bot", config.agents["bot"].clone()).await;
    let task = s
        .store
        .create_task(
            &actor("ops"),
            s.project.id,
            NewTask { title: "Fix the login".into(), lane: Some("Ready".into()), ..NewTask::default() },
        )
        .await
        .unwrap();

    // Into listed lanes (names in any case): allowed.
    let moved = answer(
        call(&client, "move_task", json!({"key": task.key, "lane": "In Progress", "expected_version": task.version}))
            .await,
    );
    assert_eq!(moved["lane"], "In Progress");
    let moved = answer(
        call(&client, "move_task", json!({"key": task.key, "lane": "Review", "expected_version": moved["version"]}))
            .await,
    );
    assert_eq!(moved["lane"], "Review");
    let version = moved["version"].as_i64().unwrap();
    let made = answer(call(&client, "create_task", json!({"title": "Review the fix", "lane": "REVIEW"})).await);
    assert_eq!(made["lane"], "Review");

    // Anywhere else: refused and audited, nothing changed. A listed lane of a
    // closed category stays closed to agents; a create without a lane lands
    // in the default lane, which the list does not name either.
    let tasks_before = s.db.count("task").await;
    for (tool, args, reason) in [
        ("move_task", json!({"key": task.key, "lane": "Ready", "expected_version": version}), "into \"Ready\""),
        ("move_task", json!({"key": task.key, "lane": "Done", "expected_version": version}), "a human has to"),
        ("create_task", json!({"title": "Elsewhere", "lane": "Blocked"}), "into \"Blocked\""),
        ("create_task", json!({"title": "Wherever"}), "into \"Inbox\""),
    ] {
        let refused = tool_error(call(&client, tool, args).await);
        assert!(refused.starts_with("denied:") && refused.contains(reason), "{tool}: {refused}");
    }
    let after = s.store.task_by_key(&task.key).await.unwrap();
    assert_eq!((after.lane.as_str(), after.version as i64), ("Review", version));
    assert_eq!(s.db.count("task").await, tasks_before);
    let denied = refusals(&s).await;
    let refused: Vec<(&str, &str)> = denied
        .iter()
        .map(|d| (d["tool"].as_str().unwrap(), d["arguments"]["lane"].as_str().unwrap_or("(default)")))
        .collect();
    assert_eq!(
        refused,
        [("move_task", "Ready"), ("move_task", "Done"), ("create_task", "Blocked"), ("create_task", "(default)")]
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_tool_errors_in_the_schemas_terms_and_write_nothing() {
    let s = setup().await;
    let task = task(&s, "Here", None).await;
    let client = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;
    let (tasks, entries) = (s.db.count("task").await, s.db.count("audit_entry").await);
    let huge = "x".repeat(1 << 20);
    for (tool, args, says) in [
        ("create_task", json!({"title": 5}), "title must be text"),
        ("create_task", json!({}), "title is required"),
        (
            "create_task",
            json!({"title": "ok", "colour": "red"}),
            "unknown argument \"colour\": this tool takes assignee,",
        ),
        ("create_task", json!({"title": huge}), "title"),
        ("create_task", json!({"title": "ok", "description": "y".repeat(100_001)}), "description"),
        (
            "create_task",
            json!({"title": "ok", "priority": "whenever"}),
            "priority must be one of urgent, high, medium, low, none",
        ),
        ("create_task", json!({"title": "ok", "due_on": "tomorrow-ish"}), "date"),
        ("create_task", json!({"title": "two\nlines"}), "title"),
        (
            "move_task",
            json!({"key": task.key, "lane": "Ready", "expected_version": "one"}),
            "expected_version must be a whole number of at least 1",
        ),
        (
            "move_task",
            json!({"key": task.key, "lane": "Ready", "expected_version": 1, "position": "sideways"}),
            "position must be one of top, bottom",
        ),
        ("read_task", json!({"key": huge}), "key"),
        ("comment_task", json!({"key": task.key, "text": "z".repeat(10_001)}), "comment"),
        (
            "update_handoff",
            json!({"id": 1, "state": "open"}),
            "state must be one of accepted, resolved, rejected, cancelled",
        ),
        ("read_board", json!({"limit_per_lane": -3}), "limit_per_lane must be a whole number from 1 to 200"),
        ("read_pipelines", json!({"failed_only": "maybe"}), "failed_only must be true or false"),
    ] {
        let shown = mission_control::domain::text::clip(&args.to_string(), 80).into_owned();
        let message = tool_error(call(&client, tool, args).await);
        assert!(message.contains(says), "{tool} {shown}: {message:?} should say {says:?}");
        assert!(message.len() < 600 && !message.contains('\n'), "the message is one short line: {}", message.len());
    }
    // A state the arguments meet, not a protocol fault either.
    let not_failed = tool_error(call(&client, "create_follow_up", json!({"pipeline_id": 999})).await);
    assert!(not_failed.contains("not found"), "{not_failed}");
    assert_eq!(s.db.count("task").await, tasks);
    assert_eq!(s.db.count("audit_entry").await, entries, "nothing was written, not even an audit entry");
    // An unknown tool is a protocol fault.
    let (code, message) = protocol_error(call(&client, "drop_tables", json!({})).await);
    assert_eq!(code, -32602, "{message}");
    assert!(message.contains("unknown tool"), "{message}");
    // The session survives all of that.
    answer(call(&client, "read_board", json!({})).await);
    client.cancel().await.unwrap();
}

/// MCP Inspector 0.15 sends every argument as a string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_and_booleans_sent_as_text_are_taken() {
    let s = setup().await;
    let task = task(&s, "Typed", None).await;
    let client = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;
    let board = answer(call(&client, "read_board", json!({"limit_per_lane": "1", "priority": "NONE"})).await);
    assert_eq!(board["lanes"][0]["tasks"].as_array().unwrap().len(), 1);
    let version = task.version.to_string();
    let moved = answer(
        call(&client, "move_task", json!({"key": task.key, "lane": "Ready", "expected_version": version})).await,
    );
    assert_eq!(moved["lane"], "Ready");
    let failing = answer(call(&client, "read_pipelines", json!({"failed_only": "true", "limit": "5"})).await);
    assert_eq!(failing["pipelines"], json!([]));
    client.cancel().await.unwrap();
}

/// Every string that goes out, errors included, is sanitized: a "not found"
/// must not echo an OSC 52 clipboard write or bidi overrides to the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_arguments_never_come_back_out() {
    let s = setup().await;
    let task = task(&s, "Safe", None).await;
    let client = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;
    let hostile = "Ready\u{1b}]52;c;cm0gLXJmIH4=\u{7}\u{202e}lanE";
    for (tool, args) in [
        ("move_task", json!({"key": task.key, "lane": hostile, "expected_version": task.version})),
        ("release_readiness", json!({"release": hostile})),
        ("read_task", json!({"key": hostile})),
        ("read_page", json!({"slug": hostile})),
        ("create_task", json!({"title": "x", "lane": hostile})),
    ] {
        let message = tool_error(call(&client, tool, args).await);
        assert!(
            !message.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "{tool}: {message:?}"
        );
    }
    let (_, message) = protocol_error(call(&client, hostile, json!({})).await);
    assert!(!message.contains('\u{1b}'), "{message:?}");
    // Names an agent reports are stored clean, so the console and other agents never see them raw.
    let run = answer(
        call(
            &client,
            "report_pipeline",
            json!({"name": "ci\u{202e}lmth", "git_ref": "main\u{1b}[2J", "status": "failed"}),
        )
        .await,
    );
    assert_eq!((run["name"].as_str(), run["git_ref"].as_str()), (Some("cilmth"), Some("main[2J")));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_offers_only_what_the_policy_allows() {
    let s = setup().await;
    let read_only: AgentPolicy = toml::from_str("read_only = true").unwrap();
    let client = mcp::connect(&s.store, &s.project, "bot", read_only).await;
    let mut names: Vec<String> =
        client.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        ["read_board", "read_page", "read_pipelines", "read_task", "release_readiness", "review_queue"],
        "a read-only agent is offered the reading tools only"
    );
    client.cancel().await.unwrap();
    let narrow: AgentPolicy = toml::from_str(r#"tools = ["read_board", "move_task"]"#).unwrap();
    let client = mcp::connect(&s.store, &s.project, "bot", narrow).await;
    let names: Vec<String> = client.list_all_tools().await.unwrap().into_iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    client.cancel().await.unwrap();
}

/// Every write tool goes through the lane policy: a claim into a lane the
/// agent may not use and a follow-up into the default lane are refused and
/// audited, as a move or a create would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_and_follow_ups_obey_the_lane_policy() {
    let s = setup().await;
    task(&s, "Ready work", Some("Ready")).await;
    let report = mission_control::store::delivery::PipelineReport {
        provider: "ci".into(),
        external_id: "run-1".into(),
        name: "build".into(),
        git_ref: "main".into(),
        commit_sha: None,
        status: mission_control::domain::PipelineStatus::Failed,
        url: None,
        started_at: None,
        finished_at: None,
    };
    let failed = s.store.report_pipeline(&actor("ci"), s.project.id, report).await.unwrap();
    let policy: AgentPolicy = toml::from_str(r#"lanes = ["Review"]"#).unwrap();
    let client = mcp::connect(&s.store, &s.project, "bot", policy).await;
    let (tasks, in_progress) = (
        s.db.count("task").await,
        s.db.count("task WHERE lane_id IN (SELECT id FROM lane WHERE name = 'In Progress')").await,
    );
    let claim = tool_error(call(&client, "claim_next_task", json!({})).await);
    assert!(claim.starts_with("denied:") && claim.contains("\"In Progress\""), "{claim}");
    let follow_up = tool_error(call(&client, "create_follow_up", json!({"pipeline_id": failed.id})).await);
    assert!(follow_up.starts_with("denied:") && follow_up.contains("\"Inbox\""), "{follow_up}");
    assert_eq!(s.db.count("task").await, tasks, "no follow-up was made");
    assert_eq!(
        s.db.count("task WHERE lane_id IN (SELECT id FROM lane WHERE name = 'In Progress')").await,
        in_progress,
        "nothing was claimed"
    );
    let denied: Vec<String> = refusals(&s).await.iter().map(|d| d["tool"].as_str().unwrap().to_string()).collect();
    assert_eq!(denied, ["claim_next_task", "create_follow_up"]);
    client.cancel().await.unwrap();
}

/// `failed_only` is what is failing now: the latest run of each pipeline and
/// ref, when it failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_only_leaves_out_failures_a_later_run_fixed() {
    let s = setup().await;
    let client = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;
    for (name, git_ref, status, id) in [
        ("build", "main", "failed", "b1"),
        ("build", "main", "success", "b2"),
        ("build", "release", "failed", "r1"),
        ("lint", "main", "success", "l1"),
        ("lint", "main", "failed", "l2"),
    ] {
        answer(
            call(
                &client,
                "report_pipeline",
                json!({"name": name, "git_ref": git_ref, "status": status, "external_id": id}),
            )
            .await,
        );
    }
    let failing = answer(call(&client, "read_pipelines", json!({"failed_only": true})).await);
    let mut runs: Vec<&str> =
        failing["pipelines"].as_array().unwrap().iter().map(|p| p["external_id"].as_str().unwrap()).collect();
    runs.sort();
    assert_eq!(runs, ["l2", "r1"]);
    client.cancel().await.unwrap();
}

/// The agent that opened a handoff can withdraw it; nobody else can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_withdraws_the_handoff_it_opened() {
    let s = setup().await;
    let task = task(&s, "Pass it on", None).await;
    let bot = mcp::connect(&s.store, &s.project, "bot", AgentPolicy::default()).await;
    let opened = answer(
        call(
            &bot,
            "open_handoff",
            json!({"key": task.key, "to": "ana", "kind": "transfer", "reason": "out of my depth"}),
        )
        .await,
    );
    let id = opened["id"].as_i64().unwrap();
    let ana = mcp::connect(&s.store, &s.project, "ana", AgentPolicy::default()).await;
    let refused = tool_error(call(&ana, "update_handoff", json!({"id": id, "state": "cancelled"})).await);
    assert!(refused.starts_with("denied:") && refused.contains("only they can cancel"), "{refused}");
    let withdrawn = answer(call(&bot, "update_handoff", json!({"id": id, "state": "cancelled"})).await);
    assert_eq!(withdrawn["state"], "cancelled");
    bot.cancel().await.unwrap();
    ana.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_stdio_for_an_existing_agent_and_refuses_an_unknown_one() {
    let s = setup().await;
    let cli = Cli::new(&s.db);
    let refused = cli.run(&["mcp", "--agent", "ghost", "--project", "MCP"]);
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("no agent \"ghost\"") && refused.stderr.contains("mctl agent create"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.trim().lines().count(), 1, "{}", refused.stderr);

    let mut child = tokio::process::Command::from(cli.command())
        .args(["mcp", "--agent", "bot", "--project", "MCP"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let client = ().serve((stdout, stdin)).await.expect("an MCP session over stdio");
    let info = client.peer_info().expect("the server introduced itself");
    assert!(info.instructions.as_deref().unwrap_or_default().contains("acting as agent bot"));
    let board = answer(call(&client, "read_board", json!({})).await);
    assert_eq!(board["lanes"][0]["lane"], "Inbox");
    client.cancel().await.unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "mctl mcp ends cleanly when the client goes: {status}");
    assert_eq!(agent_entries(&s).await, [("mcp.read_board".to_string(), "agent".to_string())]);
}

/// A probe that asks one thing and disconnects, without starting a
/// session, is a client going away: exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_without_a_session_is_a_clean_exit() {
    use tokio::io::AsyncWriteExt;
    let s = setup().await;
    let cli = Cli::new(&s.db);
    for first in [Some(r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#), None] {
        let mut child = tokio::process::Command::from(cli.command())
            .args(["mcp", "--agent", "bot", "--project", "MCP"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        if let Some(line) = first {
            stdin.write_all(format!("{line}\n").as_bytes()).await.unwrap();
        }
        drop(stdin);
        let output =
            tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output()).await.unwrap().unwrap();
        assert!(output.status.success(), "{first:?}: {} {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
}
