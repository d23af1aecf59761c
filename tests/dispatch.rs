//! Agent dispatch against a real PostgreSQL: concurrent claims, the ready,
//! priority, skills and capacity rules, heartbeats, offline expiry and the
//! risk it raises, and `mctl dispatch next` end to end.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Cli, TestDb, actor};
use futures_util::future::join_all;
use mission_control::domain::*;
use mission_control::store::agents::{AgentUpdate, NewAgent};
use mission_control::store::audit::AuditQuery;
use mission_control::store::dispatch::DispatchOutcome;
use mission_control::store::handoffs::NewHandoff;
use mission_control::store::tasks::{NewTask, Position};
use mission_control::store::views::Risk;
use mission_control::store::{Actor, Store, StoreError};
use time::macros::date;

const OFFLINE_AFTER: Duration = Duration::from_secs(15 * 60);

async fn setup(db: &TestDb) -> (Store, Project) {
    let store = db.store().await;
    let project = store.create_project(&actor("ana"), "MC", "Mission", "").await.unwrap();
    (store, project)
}

async fn agent(store: &Store, handle: &str, capacity: i32, skills: &[&str]) -> Agent {
    store
        .create_agent(
            &actor("ana"),
            NewAgent {
                handle: handle.into(),
                display_name: handle.to_uppercase(),
                kind: AgentKind::Ai,
                capacity: Some(capacity),
                skills: skills.iter().map(|s| s.to_string()).collect(),
            },
        )
        .await
        .unwrap()
}

async fn ready_task(store: &Store, project: &Project, title: &str, priority: Priority, labels: &[&str]) -> Task {
    store
        .create_task(
            &actor("ana"),
            project.id,
            NewTask {
                title: title.into(),
                lane: Some("Ready".into()),
                priority: Some(priority),
                labels: labels.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

fn bot(handle: &str) -> Actor {
    Actor::new(handle, Source::Agent)
}

async fn claim(store: &Store, project: &Project, handle: &str) -> DispatchOutcome {
    store.dispatch_next(&bot(handle), project.id, handle).await.unwrap()
}

fn claimed(outcome: DispatchOutcome) -> Task {
    match outcome {
        DispatchOutcome::Claimed(task) => *task,
        other => panic!("expected a claim, got {other:?}"),
    }
}

/// The `agent.offline` audit entries of agent `handle`.
async fn offline_entries(store: &Store, handle: &str) -> Vec<AuditEntry> {
    store
        .list_audit(&AuditQuery { entity_key: Some(handle.into()), limit: 100, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "agent.offline")
        .collect()
}

async fn claim_entries(store: &Store) -> Vec<AuditEntry> {
    store
        .list_audit(&AuditQuery { limit: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "task.claim")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_claims_over_ten_ready_tasks() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    // Twelve agents claim once each; a thirteenth with room for four claims four times at once.
    let mut claimers: Vec<String> = Vec::new();
    for n in 0..12 {
        agent(&store, &format!("bot{n}"), 3, &[]).await;
        claimers.push(format!("bot{n}"));
    }
    agent(&store, "pool", 4, &[]).await;
    claimers.extend(std::iter::repeat_n("pool".to_string(), 4));
    for n in 0..10 {
        ready_task(&store, &project, &format!("task {n}"), Priority::Medium, &[]).await;
    }
    let before: Vec<Task> = {
        let mut tasks = Vec::new();
        for n in 1..=10 {
            tasks.push(store.task_by_key(&format!("MC-{n}")).await.unwrap());
        }
        tasks
    };

    let claims = claimers.iter().map(|handle| {
        let (store, handle) = (store.clone(), handle.clone());
        let project_id = project.id;
        tokio::spawn(async move { (handle.clone(), store.dispatch_next(&bot(&handle), project_id, &handle).await) })
    });
    let results: Vec<(String, Result<DispatchOutcome, StoreError>)> =
        join_all(claims).await.into_iter().map(Result::unwrap).collect();

    let mut keys = HashSet::new();
    let mut nothing_ready = 0;
    for (handle, result) in results {
        match result.unwrap() {
            DispatchOutcome::Claimed(task) => {
                assert!(keys.insert(task.key.clone()), "{} was claimed twice", task.key);
                assert_eq!(task.assignee.as_deref(), Some(handle.as_str()));
                assert_eq!(task.lane, "In Progress");
                assert_eq!(task.lane_category, LaneCategory::Started);
                let stored = store.task_by_key(&task.key).await.unwrap();
                assert_eq!(stored, *task, "the returned task is the stored one");
                let was = before.iter().find(|t| t.key == task.key).unwrap();
                assert_eq!(stored.version, was.version + 1, "one version bump per claim");
            }
            DispatchOutcome::NothingReady => nothing_ready += 1,
            other => panic!("{handle}: unexpected {other:?}"),
        }
    }
    assert_eq!(keys.len(), 10, "every ready task is claimed once");
    assert_eq!(nothing_ready, 6);
    let pool_claims = store.list_agents().await.unwrap().into_iter().find(|a| a.agent.handle == "pool").unwrap();
    assert!(pool_claims.in_progress <= 4);

    let entries = claim_entries(&store).await;
    assert_eq!(entries.len(), 10, "one task.claim entry per claim");
    let audited: HashSet<String> = entries.iter().map(|e| e.entity_key.clone().unwrap()).collect();
    assert_eq!(audited, keys);
    for entry in &entries {
        assert_eq!(entry.source, Source::Agent);
        assert_eq!(entry.project_id, Some(project.id));
        assert_eq!(entry.before.as_ref().unwrap()["lane"], "Ready");
        assert_eq!(entry.after.as_ref().unwrap()["lane"], "In Progress");
        assert_eq!(entry.after.as_ref().unwrap()["assignee"], entry.actor.as_str());
    }
    assert_eq!(store.lane_by_name(project.id, "Ready").await.unwrap().open_count, 0);
    assert_eq!(store.lane_by_name(project.id, "In Progress").await.unwrap().open_count, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claimers_in_a_loop_and_concurrent_moves_never_share_a_task() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    for n in 0..8 {
        agent(&store, &format!("bot{n}"), 1000, &[]).await;
    }
    for n in 0..120 {
        ready_task(&store, &project, &format!("task {n}"), Priority::None, &[]).await;
    }
    // Operators move other cards meanwhile: in and out of the claimers'
    // destination lane, and up and down inside whatever lane a task is in.
    for n in 0..20 {
        store
            .create_task(
                &actor("ana"),
                project.id,
                NewTask { title: format!("review {n}"), lane: Some("Review".into()), ..Default::default() },
            )
            .await
            .unwrap();
    }
    let movers = [
        tokio::spawn({
            let store = store.clone();
            async move {
                for n in 121..=140 {
                    let key = format!("MC-{n}");
                    store.move_task(&actor("op"), &key, Some("In Progress"), Position::Top, None).await.unwrap();
                    store.move_task(&actor("op"), &key, Some("Review"), Position::Bottom, None).await.unwrap();
                }
            }
        }),
        tokio::spawn({
            let store = store.clone();
            async move {
                for n in 1..=60 {
                    let key = format!("MC-{n}");
                    store.move_task(&actor("op"), &key, None, Position::Top, None).await.unwrap();
                }
            }
        }),
    ];
    let loops = (0..8).map(|n| {
        let store = store.clone();
        let project_id = project.id;
        tokio::spawn(async move {
            let handle = format!("bot{n}");
            let mut mine = Vec::new();
            loop {
                match store.dispatch_next(&bot(&handle), project_id, &handle).await.unwrap() {
                    DispatchOutcome::Claimed(task) => mine.push(task.key),
                    DispatchOutcome::NothingReady => return mine,
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
    });
    let all: Vec<String> = join_all(loops).await.into_iter().flat_map(Result::unwrap).collect();
    for mover in movers {
        mover.await.unwrap();
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "no task claimed twice");
    let in_progress = store.lane_by_name(project.id, "In Progress").await.unwrap();
    assert_eq!(all.len(), 120, "every ready task was claimed");
    assert_eq!(in_progress.open_count, 120);
    assert_eq!(store.lane_by_name(project.id, "Ready").await.unwrap().open_count, 0);
    assert_eq!(store.lane_by_name(project.id, "Review").await.unwrap().open_count, 20);
    // Ranks in the started lane stayed distinct (the unique board index would have refused otherwise).
    let client = db.client().await;
    let duplicates: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT rank FROM task WHERE lane_id = $1 AND NOT archived
                                   GROUP BY rank HAVING count(*) > 1) d",
            &[&in_progress.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(duplicates, 0);
}

#[tokio::test]
async fn claims_follow_priority_then_due_date_then_age() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 100, &[]).await;
    let new = |title: &str, priority: Priority, due_on| NewTask {
        title: title.into(),
        lane: Some("Ready".into()),
        priority: Some(priority),
        due_on,
        ..Default::default()
    };
    for task in [
        new("none", Priority::None, None),
        new("low", Priority::Low, None),
        new("high, undated", Priority::High, None),
        new("high, due later", Priority::High, Some(date!(2031 - 06 - 01))),
        new("high, due sooner", Priority::High, Some(date!(2031 - 01 - 01))),
        new("urgent", Priority::Urgent, None),
        new("medium, older", Priority::Medium, None),
        new("medium, newer", Priority::Medium, None),
    ] {
        store.create_task(&actor("ana"), project.id, task).await.unwrap();
    }
    // Not ready: backlog, archived.
    store
        .create_task(
            &actor("ana"),
            project.id,
            NewTask { title: "in the inbox".into(), priority: Some(Priority::Urgent), ..Default::default() },
        )
        .await
        .unwrap();
    let archived = ready_task(&store, &project, "archived", Priority::Urgent, &[]).await;
    store.set_task_archived(&actor("ana"), &archived.key, true, None).await.unwrap();

    let mut order = Vec::new();
    loop {
        match claim(&store, &project, "bot").await {
            DispatchOutcome::Claimed(task) => order.push(task.title),
            DispatchOutcome::NothingReady => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        order,
        [
            "urgent",
            "high, due sooner",
            "high, due later",
            "high, undated",
            "medium, older",
            "medium, newer",
            "low",
            "none"
        ]
    );
    // Claimed tasks go to the bottom of In Progress in claim order.
    let lane = store.lane_by_name(project.id, "In Progress").await.unwrap();
    let board = store
        .list_tasks(&mission_control::store::tasks::TaskFilter {
            project_id: project.id,
            lane: Some(lane.name.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let titles: Vec<&str> = board.iter().map(|t| t.title.as_str()).collect();
    assert_eq!(titles, order.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn skills_decide_who_takes_a_labelled_task() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "backend-bot", 10, &["backend", "db"]).await;
    agent(&store, "generalist", 10, &[]).await;
    ready_task(&store, &project, "frontend work", Priority::Urgent, &["frontend"]).await;
    ready_task(&store, &project, "anyone's work", Priority::High, &[]).await;
    ready_task(&store, &project, "backend work", Priority::Medium, &["api", "backend"]).await;

    // The urgent frontend task is not for a backend agent; the unlabelled one is.
    assert_eq!(claimed(claim(&store, &project, "backend-bot").await).title, "anyone's work");
    assert_eq!(claimed(claim(&store, &project, "backend-bot").await).title, "backend work");
    assert_eq!(claim(&store, &project, "backend-bot").await, DispatchOutcome::NothingReady);
    // An agent without skills takes anything.
    assert_eq!(claimed(claim(&store, &project, "generalist").await).title, "frontend work");
}

#[tokio::test]
async fn assigned_and_blocked_tasks() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 10, &["backend"]).await;
    agent(&store, "other", 10, &[]).await;
    let blocked = ready_task(&store, &project, "blocked", Priority::Urgent, &[]).await;
    let others = ready_task(&store, &project, "someone else's", Priority::Urgent, &[]).await;
    store.assign_task(&actor("ana"), &others.key, Some("other"), None).await.unwrap();
    let mine = ready_task(&store, &project, "mine", Priority::Low, &["frontend"]).await;
    store.assign_task(&actor("ana"), &mine.key, Some("bot"), None).await.unwrap();
    ready_task(&store, &project, "free", Priority::Medium, &[]).await;
    let handoff = store
        .open_handoff(
            &actor("ana"),
            NewHandoff {
                task_key: blocked.key.clone(),
                kind: HandoffKind::Blocked,
                from: None,
                to: "other".into(),
                reason: "waiting for credentials".into(),
                needs: String::new(),
                due_at: None,
            },
        )
        .await
        .unwrap();
    store.transition_handoff(&actor("other"), handoff.id, HandoffState::Accepted, "", None).await.unwrap();

    // The blocked one waits, the other agent's one is not offered; then the
    // free one, then the agent's own (its labels do not matter: it is assigned).
    assert_eq!(claimed(claim(&store, &project, "bot").await).title, "free");
    assert_eq!(claimed(claim(&store, &project, "bot").await).title, "mine");
    assert_eq!(claim(&store, &project, "bot").await, DispatchOutcome::NothingReady);
    // Once the blocker is resolved the task is ready again.
    store.transition_handoff(&actor("other"), handoff.id, HandoffState::Resolved, "got them", None).await.unwrap();
    assert_eq!(claimed(claim(&store, &project, "bot").await).key, blocked.key);
    // The other agent gets its own task.
    assert_eq!(claimed(claim(&store, &project, "other").await).key, others.key);
}

#[tokio::test]
async fn capacity_counts_started_work_in_every_project() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    let elsewhere = store.create_project(&actor("ana"), "OPS", "Operations", "").await.unwrap();
    agent(&store, "bot", 2, &[]).await;
    let busy = ready_task(&store, &elsewhere, "ops work", Priority::None, &[]).await;
    assert_eq!(claimed(claim(&store, &elsewhere, "bot").await).key, busy.key);
    ready_task(&store, &project, "one", Priority::None, &[]).await;
    ready_task(&store, &project, "two", Priority::None, &[]).await;

    assert_eq!(claimed(claim(&store, &project, "bot").await).title, "one");
    assert_eq!(claim(&store, &project, "bot").await, DispatchOutcome::AtCapacity { in_progress: 2, capacity: 2 });
    assert_eq!(claim_entries(&store).await.len(), 2, "a refused claim writes nothing");
    // Finishing work makes room.
    store.move_task(&actor("bot"), &busy.key, Some("Done"), Position::Bottom, None).await.unwrap();
    assert_eq!(claimed(claim(&store, &project, "bot").await).title, "two");

    // Concurrent claims of one agent never overshoot its capacity.
    agent(&store, "single", 3, &[]).await;
    for n in 0..10 {
        ready_task(&store, &project, &format!("more {n}"), Priority::None, &[]).await;
    }
    let claims = (0..8).map(|_| {
        let store = store.clone();
        let project_id = project.id;
        tokio::spawn(async move { store.dispatch_next(&bot("single"), project_id, "single").await.unwrap() })
    });
    let outcomes: Vec<DispatchOutcome> = join_all(claims).await.into_iter().map(Result::unwrap).collect();
    let won = outcomes.iter().filter(|o| matches!(o, DispatchOutcome::Claimed(_))).count();
    assert_eq!(won, 3);
    assert!(
        outcomes
            .iter()
            .filter(|o| !matches!(o, DispatchOutcome::Claimed(_)))
            .all(|o| *o == DispatchOutcome::AtCapacity { in_progress: 3, capacity: 3 })
    );
}

#[tokio::test]
async fn away_and_offline_agents_do_not_claim_until_they_are_back() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 3, &[]).await;
    ready_task(&store, &project, "work", Priority::High, &[]).await;
    for status in [AgentStatus::Away, AgentStatus::Offline] {
        store
            .update_agent(&actor("ana"), "bot", AgentUpdate { status: Some(status), ..Default::default() })
            .await
            .unwrap();
        let audit_before = store.list_audit(&AuditQuery { limit: 1000, ..Default::default() }).await.unwrap().len();
        assert_eq!(claim(&store, &project, "bot").await, DispatchOutcome::Unavailable { status });
        let agent = store.agent_by_handle("bot").await.unwrap();
        assert_eq!(agent.last_seen_at, None, "a refused claim is not a heartbeat");
        let audit_after = store.list_audit(&AuditQuery { limit: 1000, ..Default::default() }).await.unwrap().len();
        assert_eq!(audit_before, audit_after);
    }
    assert_eq!(store.task_by_key("MC-1").await.unwrap().lane, "Ready");
    // Heartbeating brings an offline agent back, and it claims.
    let back = store.heartbeat(&bot("bot"), "bot", None).await.unwrap();
    assert_eq!(back.status, AgentStatus::Available);
    assert_eq!(claimed(claim(&store, &project, "bot").await).key, "MC-1");
    // A busy agent still claims (capacity decides).
    store.heartbeat(&bot("bot"), "bot", Some(AgentStatus::Busy)).await.unwrap();
    ready_task(&store, &project, "more", Priority::High, &[]).await;
    assert_eq!(claimed(claim(&store, &project, "bot").await).key, "MC-2");
    assert!(store.agent_by_handle("bot").await.unwrap().last_seen_at.is_some(), "a claim is a heartbeat");

    let missing = store.dispatch_next(&bot("ghost"), project.id, "ghost").await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { kind: "agent", .. }), "{missing}");
    let bad = store.dispatch_next(&bot("x"), project.id, "Not A Handle!").await.unwrap_err();
    assert!(matches!(bad, StoreError::Invalid(_)), "{bad}");
}

#[tokio::test]
async fn a_project_without_a_started_lane_says_what_to_do() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ana"), "MC", "Mission", "").await.unwrap();
    agent(&store, "bot", 3, &[]).await;
    let client = db.client().await;
    // Leave the project with Inbox and Ready only.
    client
        .batch_execute(&format!(
            "UPDATE lane SET category = 'completed' WHERE project_id = {} AND category = 'started'",
            project.id
        ))
        .await
        .unwrap();
    ready_task(&store, &project, "work", Priority::High, &[]).await;
    let err = store.dispatch_next(&bot("bot"), project.id, "bot").await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)) && err.to_string().contains("started lane"), "{err}");
    assert_eq!(store.task_by_key("MC-1").await.unwrap().lane, "Ready", "nothing moved");
}

#[tokio::test]
async fn the_claim_audit_entry_records_the_task_as_the_program_does() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 3, &[]).await;
    let module = store
        .create_module(
            &actor("ana"),
            project.id,
            mission_control::store::planning::NewModule {
                name: "Payments".into(),
                description: String::new(),
                status: ModuleStatus::Planned,
                lead: None,
                target_on: None,
            },
        )
        .await
        .unwrap();
    let task = store
        .create_task(
            &actor("ana"),
            project.id,
            NewTask {
                title: "Ship \"it\" ✓".into(),
                description: "line one\nline two".into(),
                lane: Some("Ready".into()),
                priority: Some(Priority::High),
                labels: vec!["api".into(), "bug".into()],
                due_on: Some(date!(2031 - 02 - 03)),
                modules: vec![module.name.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // An n8n workflow subscribed to moves hears about the claim.
    store
        .add_connection(
            &actor("ana"),
            project.id,
            mission_control::store::integrations::NewConnection {
                key: "flows".into(),
                provider: Provider::N8n,
                base_url: "http://127.0.0.1:9/webhook/mc".into(),
                config: serde_json::json!({ "events": ["task.moved"] }),
                secret_ref: None,
            },
        )
        .await
        .unwrap();
    let before = store.task_by_key(&task.key).await.unwrap();
    let after = claimed(claim(&store, &project, "bot").await);
    let entry = claim_entries(&store).await.pop().unwrap();
    assert_eq!(entry.entity_kind, "task");
    assert_eq!(entry.entity_id, Some(task.id));
    assert_eq!(entry.entity_key.as_deref(), Some(task.key.as_str()));
    assert_eq!(entry.actor, "bot");
    assert_eq!(entry.before, Some(serde_json::to_value(&before).unwrap()));
    assert_eq!(entry.after, Some(serde_json::to_value(store.task_by_key(&task.key).await.unwrap()).unwrap()));
    assert_eq!(entry.after, Some(serde_json::to_value(&after).unwrap()));

    // n8n sees a claim as a move; the earlier mappings are unchanged.
    let client = db.client().await;
    let deliveries = client.query("SELECT event, payload FROM automation_delivery", &[]).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].get::<_, String>(0), "task.moved");
    let payload: serde_json::Value = deliveries[0].get(1);
    assert_eq!(payload["data"]["key"], task.key.as_str());
    assert_eq!(payload["data"]["from_lane"], "Ready");
    assert_eq!(payload["data"]["lane"], "In Progress");
    assert_eq!(payload["data"]["assignee"], "bot");
    let events: Vec<Option<String>> = client
        .query_one(
            "SELECT automation_event('task.claim', NULL, NULL), automation_event('task.move', NULL, NULL),
                    automation_event('task.create', NULL, NULL), automation_event('task.assign', NULL, NULL),
                    automation_event('handoff.open', NULL, NULL), automation_event('snapshot.restore', NULL, NULL),
                    automation_event('pipeline.report', '{\"status\":\"running\"}', '{\"status\":\"failed\"}'),
                    automation_event('deployment.report', NULL, '{\"status\":\"success\"}'),
                    automation_event('task.update', NULL, NULL)",
            &[],
        )
        .await
        .map(|row| (0..9).map(|i| row.get(i)).collect())
        .unwrap();
    let events: Vec<Option<&str>> = events.iter().map(Option::as_deref).collect();
    assert_eq!(
        events,
        [
            Some("task.moved"),
            Some("task.moved"),
            Some("task.created"),
            Some("task.assigned"),
            Some("handoff.opened"),
            Some("snapshot.restored"),
            Some("pipeline.failed"),
            Some("deployment.finished"),
            None
        ]
    );
}

#[tokio::test]
async fn heartbeats_are_audited_only_when_the_status_changes() {
    let db = TestDb::new().await;
    let (store, _) = setup(&db).await;
    let created = agent(&store, "bot", 3, &[]).await;
    assert_eq!(created.last_seen_at, None);
    let status_entries = |store: Store| async move {
        store
            .list_audit(&AuditQuery { entity_key: Some("bot".into()), limit: 100, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "agent.status")
            .collect::<Vec<_>>()
    };
    let first = store.heartbeat(&bot("bot"), "bot", None).await.unwrap();
    let second = store.heartbeat(&bot("bot"), "@BOT", None).await.unwrap();
    assert!(first.last_seen_at.is_some());
    assert!(second.last_seen_at >= first.last_seen_at);
    assert_eq!(second.version, created.version, "a beat is not an edit");
    assert!(status_entries(store.clone()).await.is_empty(), "plain beats are not audited");

    let away = store.heartbeat(&bot("bot"), "bot", Some(AgentStatus::Away)).await.unwrap();
    assert_eq!(away.status, AgentStatus::Away);
    assert_eq!(away.version, created.version + 1);
    // An away agent stays away on a plain beat; only offline comes back by itself.
    assert_eq!(store.heartbeat(&bot("bot"), "bot", None).await.unwrap().status, AgentStatus::Away);
    let entries = status_entries(store.clone()).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].source, Source::Agent);
    assert_eq!(entries[0].before.as_ref().unwrap()["status"], "available");
    assert_eq!(entries[0].after.as_ref().unwrap()["status"], "away");

    let missing = store.heartbeat(&bot("ghost"), "ghost", None).await.unwrap_err();
    assert!(matches!(missing, StoreError::NotFound { .. }), "{missing}");
}

#[tokio::test]
async fn silent_agents_go_offline_and_their_work_becomes_a_risk() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 3, &[]).await;
    agent(&store, "alive", 3, &[]).await;
    agent(&store, "human", 3, &[]).await; // never heartbeats
    ready_task(&store, &project, "held by bot", Priority::High, &[]).await;
    ready_task(&store, &project, "held by alive", Priority::High, &[]).await;
    claimed(claim(&store, &project, "bot").await);
    claimed(claim(&store, &project, "alive").await);
    let human_task = ready_task(&store, &project, "held by a human", Priority::High, &[]).await;
    store.assign_task(&actor("ana"), &human_task.key, Some("human"), None).await.unwrap();
    store.move_task(&actor("ana"), &human_task.key, Some("In Progress"), Position::Bottom, None).await.unwrap();

    let now = time::OffsetDateTime::now_utc();
    let (stale, offline_after) = (time::Duration::days(7), time::Duration::minutes(15));
    let offline_risks = |risks: Vec<Risk>| {
        risks
            .into_iter()
            .filter_map(|r| match r {
                Risk::OfflineAgentWithWork { agent, tasks } => Some((agent.handle, agent.status, tasks)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert!(offline_risks(store.risks(project.id, now, stale, offline_after).await.unwrap()).is_empty());

    // The bot falls silent for an hour.
    let client = db.client().await;
    client
        .execute("UPDATE agent SET last_seen_at = now() - interval '1 hour' WHERE handle = 'bot'", &[])
        .await
        .unwrap();
    // Before anything marks it, the risk already shows it as silent.
    assert_eq!(
        offline_risks(store.risks(project.id, now, stale, offline_after).await.unwrap()),
        [("bot".to_string(), AgentStatus::Available, 1)]
    );

    let sweeper = Actor::new("sync worker", Source::Sync);
    let expired = store.expire_silent_agents(&sweeper, OFFLINE_AFTER).await.unwrap();
    assert_eq!(
        expired.iter().map(|a| (a.handle.as_str(), a.status)).collect::<Vec<_>>(),
        [("bot", AgentStatus::Offline)]
    );
    assert!(store.expire_silent_agents(&sweeper, OFFLINE_AFTER).await.unwrap().is_empty(), "only once");
    assert_eq!(store.agent_by_handle("human").await.unwrap().status, AgentStatus::Available, "never seen: left alone");
    assert_eq!(store.agent_by_handle("alive").await.unwrap().status, AgentStatus::Available);

    let entries = offline_entries(&store, "bot").await;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].actor.as_str(), entries[0].source), ("sync worker", Source::Sync));
    assert_eq!(entries[0].before.as_ref().unwrap()["status"], "available");
    assert_eq!(entries[0].after.as_ref().unwrap()["status"], "offline");

    assert_eq!(
        offline_risks(store.risks(project.id, now, stale, offline_after).await.unwrap()),
        [("bot".to_string(), AgentStatus::Offline, 1)]
    );
    // An offline agent set so by hand with work is a risk too; one without work is not.
    store
        .update_agent(&actor("ana"), "human", AgentUpdate { status: Some(AgentStatus::Offline), ..Default::default() })
        .await
        .unwrap();
    store
        .update_agent(&actor("ana"), "alive", AgentUpdate { status: Some(AgentStatus::Offline), ..Default::default() })
        .await
        .unwrap();
    store.move_task(&actor("ana"), "MC-2", Some("Done"), Position::Bottom, None).await.unwrap();
    let risks = offline_risks(store.risks(project.id, now, stale, offline_after).await.unwrap());
    assert_eq!(risks, [("bot".to_string(), AgentStatus::Offline, 1), ("human".to_string(), AgentStatus::Offline, 1)]);
    // The bot comes back: heartbeat makes it available, the risk goes.
    store.heartbeat(&bot("bot"), "bot", None).await.unwrap();
    let risks = offline_risks(store.risks(project.id, now, stale, offline_after).await.unwrap());
    assert_eq!(risks, [("human".to_string(), AgentStatus::Offline, 1)]);
}

#[tokio::test]
async fn a_read_only_store_refuses_claims_and_beats_but_still_checks_for_silence() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 3, &[]).await;
    ready_task(&store, &project, "work", Priority::High, &[]).await;
    let read_only = mission_control::store::Store::connect(
        db.config.clone(),
        mission_control::store::StoreOptions { read_only: true, ..Default::default() },
    )
    .await
    .unwrap();
    assert!(matches!(read_only.dispatch_next(&bot("bot"), project.id, "bot").await, Err(StoreError::ReadOnly)));
    assert!(matches!(read_only.heartbeat(&bot("bot"), "bot", None).await, Err(StoreError::ReadOnly)));
    assert!(read_only.expire_silent_agents(&bot("x"), OFFLINE_AFTER).await.unwrap().is_empty());
    assert_eq!(store.task_by_key("MC-1").await.unwrap().lane, "Ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_next_on_the_command_line() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "MC", "--name", "Mission Control"]).ok();
    cli.run(&["project", "create", "OPS", "--name", "Operations"]).ok();
    cli.run(&["agent", "create", "bot", "--name", "Bot", "--kind", "ai", "--capacity", "2", "--skill", "backend"]).ok();
    cli.run(&[
        "--project",
        "MC",
        "task",
        "create",
        "--title",
        "Fix the API",
        "--lane",
        "Ready",
        "--label",
        "backend",
        "--priority",
        "high",
    ])
    .ok();
    cli.run(&["--project", "MC", "task", "create", "--title", "Later", "--lane", "Ready", "--priority", "low"]).ok();

    let claim = cli.run(&["--project", "MC", "--json", "dispatch", "next", "--agent", "bot"]).ok().json();
    assert_eq!(claim["outcome"], "claimed");
    assert_eq!(claim["task"]["key"], "MC-1");
    assert_eq!(claim["task"]["lane"], "In Progress");
    assert_eq!(claim["task"]["assignee"], "bot");
    assert_eq!(claim["task"]["version"], 2);

    let text = cli.run(&["--project", "MC", "dispatch", "next", "--agent", "@bot"]).ok();
    assert!(text.stdout.starts_with("claimed MC-2 "), "{}", text.stdout);
    assert_eq!(text.stdout.lines().count(), 1);

    // Nothing to claim: exit 5, one line, JSON says why.
    let full = cli.run(&["--project", "MC", "dispatch", "next", "--agent", "bot"]);
    assert_eq!(full.code, 5, "{}{}", full.stdout, full.stderr);
    assert_eq!(full.stdout.trim(), "@bot is at capacity (2/2): nothing claimed");
    assert!(full.stderr.is_empty(), "{}", full.stderr);
    let full = cli.run(&["--project", "MC", "--json", "dispatch", "next", "--agent", "bot"]);
    assert_eq!(full.code, 5);
    assert_eq!(full.json(), serde_json::json!({"outcome": "at_capacity", "in_progress": 2, "capacity": 2}));

    cli.run(&["--project", "MC", "task", "move", "MC-1", "Done"]).ok();
    let nothing = cli.run(&["--project", "OPS", "--json", "dispatch", "next", "--agent", "bot"]);
    assert_eq!(nothing.code, 5);
    assert_eq!(nothing.json(), serde_json::json!({"outcome": "nothing_ready"}));
    let nothing = cli.run(&["--project", "OPS", "dispatch", "next", "--agent", "bot"]);
    assert_eq!((nothing.code, nothing.stdout.trim()), (5, "nothing ready for @bot in OPS"));

    let beat = cli.run(&["--json", "agent", "heartbeat", "bot", "--status", "away"]).ok().json();
    assert_eq!(beat["status"], "away");
    assert!(beat["last_seen_at"].is_string());
    let away = cli.run(&["--project", "MC", "dispatch", "next", "--agent", "bot"]);
    assert_eq!((away.code, away.stdout.trim()), (5, "@bot is away: nothing claimed"));
    let away = cli.run(&["--project", "MC", "--json", "dispatch", "next", "--agent", "bot"]);
    assert_eq!(away.json(), serde_json::json!({"outcome": "unavailable", "status": "away"}));

    let beat = cli.run(&["agent", "heartbeat", "bot", "--status", "available"]).ok();
    assert_eq!(beat.stdout.trim(), "@bot is available, seen now");
    let list = cli.run(&["agent", "list"]).ok().stdout;
    let header = list.lines().next().unwrap();
    assert!(header.contains("STATUS") && header.contains("LOAD") && header.contains("LAST SEEN"), "{list}");
    let row = list.lines().find(|l| l.starts_with("@bot")).unwrap();
    assert!(row.contains("available") && row.contains("1/2") && row.contains("0s ago"), "{row}");

    // Errors keep their own codes: unknown agent 4, bad handle 2, bad status 2.
    assert_eq!(cli.run(&["--project", "MC", "dispatch", "next", "--agent", "ghost"]).code, 4);
    assert_eq!(cli.run(&["--project", "MC", "dispatch", "next", "--agent", "Not A Handle"]).code, 2);
    let bad = cli.run(&["agent", "heartbeat", "bot", "--status", "sleeping"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let missing = cli.run(&["--project", "NOPE", "dispatch", "next", "--agent", "bot"]);
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert_eq!(cli.run(&["dispatch", "next", "--agent", "bot"]).code, 2, "two projects: --project is needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_load_against_capacity_and_offline_agents_with_work() {
    use common::console::{app, ch, press, render};
    use mission_control::console::rows::{Tone, sections};
    use mission_control::console::state::{ConsoleOptions, Screen};

    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 2, &[]).await;
    agent(&store, "quiet", 3, &[]).await;
    ready_task(&store, &project, "first", Priority::High, &[]).await;
    ready_task(&store, &project, "second", Priority::High, &[]).await;
    ready_task(&store, &project, "third", Priority::High, &[]).await;
    claimed(claim(&store, &project, "bot").await);
    claimed(claim(&store, &project, "bot").await);
    claimed(claim(&store, &project, "quiet").await);
    let client = db.client().await;
    client
        .execute("UPDATE agent SET last_seen_at = now() - interval '1 hour' WHERE handle IN ('bot', 'quiet')", &[])
        .await
        .unwrap();

    // A read-only console marks nobody offline, but shows who has gone silent.
    let mut read_only = ConsoleOptions::defaults(false);
    read_only.read_only = true;
    let watcher_store = mission_control::store::Store::connect(
        db.config.clone(),
        mission_control::store::StoreOptions { read_only: true, ..Default::default() },
    )
    .await
    .unwrap();
    let mut watcher = app(&watcher_store, project.clone(), 100, 30, &read_only).await;
    press(&mut watcher, &[ch('6')]).await;
    let screen = render(&watcher);
    assert!(screen.contains("agent silent") && screen.contains("@bot is silent"), "{screen}");
    assert_eq!(store.agent_by_handle("bot").await.unwrap().status, AgentStatus::Available);

    // The operator's console: opening Today marks both silent agents offline.
    let mut console = app(&store, project.clone(), 100, 30, &ConsoleOptions::defaults(false)).await;
    press(&mut console, &[ch('2')]).await;
    assert_eq!(store.agent_by_handle("bot").await.unwrap().status, AgentStatus::Offline);
    let entries: Vec<AuditEntry> = store
        .list_audit(&AuditQuery { limit: 100, ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "agent.offline")
        .collect();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.actor == "ana" && e.source == Source::Console));

    let today = sections(&console.state, Screen::Today);
    assert!(today[0].title.starts_with("Agents"), "{:?}", today[0].title);
    let row = |handle: &str| {
        today[0].rows.iter().find(|r| r.cells[0].text == format!("@{handle}")).unwrap_or_else(|| panic!("{handle}"))
    };
    assert_eq!((row("bot").cells[1].text.as_str(), row("bot").cells[1].tone), ("2/2", Tone::Warn));
    assert_eq!((row("bot").cells[2].text.as_str(), row("bot").cells[2].tone), ("offline", Tone::Danger));
    assert_eq!((row("quiet").cells[1].text.as_str(), row("quiet").cells[1].tone), ("1/3", Tone::Normal));
    let screen = render(&console);
    assert!(screen.contains("Agents (in progress/capacity)") && screen.contains("@bot"), "{screen}");

    // Over capacity (an operator assigned more by hand) is a danger.
    let extra = ready_task(&store, &project, "by hand", Priority::Low, &[]).await;
    store.assign_task(&actor("ana"), &extra.key, Some("bot"), None).await.unwrap();
    store.move_task(&actor("ana"), &extra.key, Some("In Progress"), Position::Bottom, None).await.unwrap();
    press(&mut console, &[ch('4'), ch('2')]).await;
    let today = sections(&console.state, Screen::Today);
    let bot_row = today[0].rows.iter().find(|r| r.cells[0].text == "@bot").unwrap();
    assert_eq!((bot_row.cells[1].text.as_str(), bot_row.cells[1].tone), ("3/2", Tone::Danger));

    press(&mut console, &[ch('6')]).await;
    let screen = render(&console);
    assert!(screen.contains("agent offline") && screen.contains("@bot is offline"), "{screen}");
    assert!(screen.contains("holds 3 tasks in progress"), "{screen}");
    assert!(screen.contains("@quiet is offline") && screen.contains("holds 1 task in progress"), "{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_worker_marks_silent_agents_offline() {
    use mission_control::sync::worker::{Limiters, Worker, WorkerOptions};

    let db = TestDb::new().await;
    let (store, _) = setup(&db).await;
    agent(&store, "bot", 3, &[]).await;
    store.heartbeat(&bot("bot"), "bot", None).await.unwrap();
    let client = db.client().await;
    client.execute("UPDATE agent SET last_seen_at = now() - interval '20 minutes'", &[]).await.unwrap();

    let options = WorkerOptions {
        id: "w1".into(),
        offline_after: Some(OFFLINE_AFTER),
        poll: Duration::from_millis(50),
        ..WorkerOptions::default()
    };
    let mut worker = Worker::new(store.clone(), options, Limiters::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = stopped.await;
            })
            .await
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.agent_by_handle("bot").await.unwrap().status != AgentStatus::Offline {
        assert!(std::time::Instant::now() < deadline, "the worker did not mark the silent agent offline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Back, then silent again: within the minute the worker does not look again.
    store.heartbeat(&bot("bot"), "bot", None).await.unwrap();
    client.execute("UPDATE agent SET last_seen_at = now() - interval '20 minutes'", &[]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.agent_by_handle("bot").await.unwrap().status, AgentStatus::Available);
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    let entries = offline_entries(&store, "bot").await;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].actor.as_str(), entries[0].source), ("sync worker w1", Source::Sync));
}

/// Claims lock no lane (sql/V10): a transaction holding every lane of the
/// project, as a long move or restore would, does not hold them up, and the
/// counts read exactly meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_do_not_wait_for_lanes_another_transaction_holds() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 1000, &[]).await;
    for n in 0..70 {
        ready_task(&store, &project, &format!("task {n}"), Priority::None, &[]).await;
    }
    let mut holder = db.client().await;
    let hold = holder.transaction().await.unwrap();
    hold.query("SELECT id FROM lane WHERE project_id = $1 ORDER BY id FOR NO KEY UPDATE", &[&project.id])
        .await
        .unwrap();

    // 70 claims append 140 deltas, past two fold points; the folds skip the held lanes.
    let claims = async {
        for _ in 0..70 {
            claimed(claim(&store, &project, "bot").await);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), claims).await.expect("claims waited for a held lane");
    assert_eq!(store.lane_by_name(project.id, "Ready").await.unwrap().open_count, 0);
    assert_eq!(store.lane_by_name(project.id, "In Progress").await.unwrap().open_count, 70);
    hold.commit().await.unwrap();
}

/// Should the rank a claim picked be taken before its write lands (the lane
/// renumbered meanwhile, say), the claim waits for that writer and takes the
/// next free rank instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_claim_whose_rank_was_taken_meanwhile_takes_the_next_one() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 10, &[]).await;
    ready_task(&store, &project, "ready", Priority::None, &[]).await;
    let review = NewTask { title: "in review".into(), lane: Some("Review".into()), ..Default::default() };
    let other = store.create_task(&actor("ana"), project.id, review).await.unwrap();
    let in_progress = store.lane_by_name(project.id, "In Progress").await.unwrap();

    // The empty lane's bottom is 0, so with the next offset 6 the claim will pick RANK_STEP + 6.
    let mut writer = db.client().await;
    writer.execute("SELECT setval('dispatch_rank_offset', 5)", &[]).await.unwrap();
    let taken = mission_control::store::tasks::RANK_STEP + 6;
    let tx = writer.transaction().await.unwrap();
    tx.execute("UPDATE task SET lane_id = $1, rank = $2 WHERE id = $3", &[&in_progress.id, &taken, &other.id])
        .await
        .unwrap();

    let claiming = tokio::spawn({
        let (store, project) = (store.clone(), project.clone());
        async move { claim(&store, &project, "bot").await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!claiming.is_finished(), "the claim waits for the writer that holds its rank");
    tx.commit().await.unwrap();
    let task = claimed(claiming.await.unwrap());
    assert_eq!(task.lane, "In Progress");
    assert!(task.rank > taken, "the claim went below the card that took its rank: {} vs {taken}", task.rank);
    assert_eq!(store.lane_by_name(project.id, "In Progress").await.unwrap().open_count, 2);
}

/// A claim commits first and is announced after, with the payload every
/// change has (ids only, the audit entry's id among them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_is_announced_to_listeners() {
    let db = TestDb::new().await;
    let (store, project) = setup(&db).await;
    agent(&store, "bot", 10, &[]).await;
    ready_task(&store, &project, "Secret rollout", Priority::High, &[]).await;
    let mut changes = common::change_payloads(&store).await;
    let task = claimed(claim(&store, &project, "bot").await);
    let payload = tokio::time::timeout(Duration::from_secs(5), changes.notifications.recv()).await.unwrap().unwrap();
    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
    let entry = claim_entries(&store).await.remove(0);
    assert_eq!(value["action"], "task.claim");
    assert_eq!(value["kind"], "task");
    assert_eq!(value["id"], task.id);
    assert_eq!(value["project_id"], project.id);
    assert_eq!(value["audit_id"], entry.id);
    assert!(!payload.contains("Secret"), "payloads carry ids, not content: {payload}");
}
