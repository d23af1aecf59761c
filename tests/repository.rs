//! Every entity through the repository, against a real PostgreSQL: created,
//! read, updated, and audited exactly once per mutation with the right
//! before/after.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::{TestDb, actor};
use mission_control::domain::*;
use mission_control::store::agents::{AgentUpdate, NewAgent};
use mission_control::store::audit::AuditQuery;
use mission_control::store::delivery::{
    DeploymentReport, EnvironmentUpdate, NewRelease, PipelineReport, ReleaseUpdate,
};
use mission_control::store::handoffs::{HandoffFilter, NewHandoff};
use mission_control::store::integrations::{ConnectionUpdate, MappingFilter, NewConnection, NewMapping};
use mission_control::store::lanes::{LaneUpdate, NewLane};
use mission_control::store::planning::{CycleUpdate, ModuleUpdate, NewModule};
use mission_control::store::projects::ProjectUpdate;
use mission_control::store::tasks::{NewTask, Position, TaskEdit, TaskFilter};
use mission_control::store::{Store, StoreError};
use serde_json::json;
use time::macros::date;

/// The audit entries written since `after_id`, oldest first.
async fn entries_since(store: &Store, after_id: i64) -> Vec<AuditEntry> {
    store.list_audit(&AuditQuery { after_id: Some(after_id), limit: 1000, ..Default::default() }).await.unwrap()
}

async fn last_audit_id(store: &Store) -> i64 {
    store.list_audit(&AuditQuery { limit: 1, ..Default::default() }).await.unwrap().first().map_or(0, |e| e.id)
}

/// Runs one mutation and returns its result with the single audit entry it wrote.
macro_rules! audited {
    ($store:expr, $action:expr, $call:expr) => {{
        let before_id = last_audit_id($store).await;
        let result = $call.await.expect(concat!("mutation failed: ", $action));
        let entries = entries_since($store, before_id).await;
        assert_eq!(entries.len(), 1, "{} should write exactly one audit entry: {entries:#?}", $action);
        assert_eq!(entries[0].action, $action);
        (result, entries.into_iter().next().unwrap())
    }};
}

async fn project(store: &Store, key: &str) -> Project {
    store.create_project(&actor("ana"), key, "Test project", "").await.unwrap()
}

fn new_task(title: &str) -> NewTask {
    NewTask { title: title.into(), ..Default::default() }
}

#[tokio::test]
async fn projects_and_default_lanes() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (created, entry) =
        audited!(&store, "project.create", store.create_project(&actor("ana"), "mc", "Mission", "desc"));
    assert_eq!(created.key, "MC", "keys are normalised to upper case");
    assert_eq!(entry.entity_key.as_deref(), Some("MC"));
    assert!(entry.before.is_none());
    assert_eq!(entry.after.as_ref().unwrap()["lanes"].as_array().unwrap().len(), 6);

    let lanes = store.list_lanes(created.id).await.unwrap();
    let names: Vec<&str> = lanes.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Inbox", "Ready", "In Progress", "Review", "Blocked", "Done"]);
    assert_eq!(lanes[0].category, LaneCategory::Backlog);
    assert_eq!(lanes[3].role, LaneRole::Review);
    assert_eq!(lanes[5].category, LaneCategory::Completed);

    let (updated, entry) = audited!(
        &store,
        "project.update",
        store.update_project(
            &actor("ana"),
            "MC",
            ProjectUpdate {
                name: Some("Mission Control".into()),
                settings: Some(json!({"stale_days": 7})),
                ..Default::default()
            }
        )
    );
    assert_eq!(updated.version, 2);
    assert_eq!(entry.before.unwrap()["name"], "Mission");
    assert_eq!(entry.after.unwrap()["settings"]["stale_days"], 7);

    let err = store.create_project(&actor("ana"), "MC", "Again", "").await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    assert!(matches!(store.project_by_key("NOPE").await.unwrap_err(), StoreError::NotFound { .. }));
}

#[tokio::test]
async fn lanes_create_update_and_reorder() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    let new = NewLane {
        name: "QA".into(),
        category: LaneCategory::Started,
        role: LaneRole::Review,
        position: Some(4),
        wip_limit: Some(3),
    };
    let (qa, entry) = audited!(&store, "lane.create", store.create_lane(&actor("ana"), p.id, new));
    assert_eq!(qa.position, 4);
    assert_eq!(entry.after.unwrap()["wip_limit"], 3);
    let order: Vec<String> = store.list_lanes(p.id).await.unwrap().into_iter().map(|l| l.name).collect();
    assert_eq!(order, ["Inbox", "Ready", "In Progress", "QA", "Review", "Blocked", "Done"]);

    let update =
        LaneUpdate { name: Some("Quality".into()), position: Some(1), wip_limit: Some(None), ..Default::default() };
    let (quality, entry) = audited!(&store, "lane.update", store.update_lane(&actor("ana"), p.id, "qa", update));
    assert_eq!(quality.position, 1);
    assert_eq!(quality.wip_limit, None);
    assert_eq!(entry.before.unwrap()["name"], "QA");
    let lanes = store.list_lanes(p.id).await.unwrap();
    let positions: Vec<i32> = lanes.iter().map(|l| l.position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6, 7], "positions stay dense");
    assert_eq!(lanes[0].name, "Quality");

    let dup = NewLane {
        name: "done".into(),
        category: LaneCategory::Completed,
        role: LaneRole::Normal,
        position: None,
        wip_limit: None,
    };
    assert!(matches!(store.create_lane(&actor("ana"), p.id, dup).await.unwrap_err(), StoreError::AlreadyExists(_)));
    let bad = LaneUpdate { wip_limit: Some(Some(0)), ..Default::default() };
    assert!(matches!(store.update_lane(&actor("ana"), p.id, "Done", bad).await.unwrap_err(), StoreError::Invalid(_)));
}

#[tokio::test]
async fn agents_create_and_update() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let new = NewAgent {
        handle: "@Ana".into(),
        display_name: "Ana Lima".into(),
        kind: AgentKind::Human,
        capacity: Some(4),
        skills: vec!["Backend".into()],
    };
    let (ana, entry) = audited!(&store, "agent.create", store.create_agent(&actor("root"), new));
    assert_eq!(ana.handle, "ana");
    assert_eq!(ana.skills, ["backend"]);
    assert_eq!(entry.project_id, None, "agents are global");
    let update = AgentUpdate { status: Some(AgentStatus::Away), capacity: Some(2), ..Default::default() };
    let (away, entry) = audited!(&store, "agent.update", store.update_agent(&actor("root"), "ana", update));
    assert_eq!(away.status, AgentStatus::Away);
    assert_eq!(entry.before.unwrap()["status"], "available");
    assert_eq!(entry.after.unwrap()["capacity"], 2);
    let dup = NewAgent {
        handle: "ana".into(),
        display_name: "Other".into(),
        kind: AgentKind::Ai,
        capacity: None,
        skills: vec![],
    };
    assert!(matches!(store.create_agent(&actor("root"), dup).await.unwrap_err(), StoreError::AlreadyExists(_)));
}

#[tokio::test]
async fn tasks_lifecycle_is_audited_and_versioned() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    store
        .create_agent(
            &actor("root"),
            NewAgent {
                handle: "bo".into(),
                display_name: "Bo".into(),
                kind: AgentKind::Human,
                capacity: None,
                skills: vec![],
            },
        )
        .await
        .unwrap();
    store
        .create_cycle(&actor("ana"), p.id, "Sprint 1", date!(2026 - 11 - 20), date!(2026 - 12 - 04), "")
        .await
        .unwrap();
    let module = NewModule {
        name: "Billing".into(),
        description: String::new(),
        status: ModuleStatus::Planned,
        lead: Some("bo".into()),
        target_on: None,
    };
    store.create_module(&actor("ana"), p.id, module).await.unwrap();

    let new = NewTask {
        title: "  Fix login  ".into(),
        priority: Some(Priority::High),
        labels: vec!["Bug".into()],
        cycle: Some("sprint 1".into()),
        modules: vec!["billing".into()],
        due_on: Some(date!(2026 - 12 - 01)),
        ..Default::default()
    };
    let (task, entry) = audited!(&store, "task.create", store.create_task(&actor("ana"), p.id, new));
    assert_eq!(task.key, "MC-1");
    assert_eq!(task.title, "Fix login");
    assert_eq!(task.lane, "Inbox", "new tasks land in the first backlog lane");
    assert_eq!(task.labels, ["bug"]);
    assert_eq!(task.cycle.as_deref(), Some("Sprint 1"));
    assert_eq!(task.modules, ["Billing"]);
    assert_eq!(task.version, 1);
    assert_eq!(entry.entity_key.as_deref(), Some("MC-1"));
    assert_eq!(entry.after.unwrap()["title"], "Fix login");
    assert_eq!(store.task_by_key("mc-1").await.unwrap(), task);

    let edit = TaskEdit {
        title: Some("Fix login on Safari".into()),
        add_labels: vec!["web".into()],
        due_on: Some(None),
        ..Default::default()
    };
    let (edited, entry) = audited!(&store, "task.update", store.edit_task(&actor("ana"), "MC-1", edit, Some(1)));
    assert_eq!(edited.version, 2);
    assert_eq!(edited.labels, ["bug", "web"]);
    assert_eq!(edited.due_on, None);
    assert_eq!(entry.before.as_ref().unwrap()["title"], "Fix login");
    assert_eq!(entry.after.as_ref().unwrap()["title"], "Fix login on Safari");

    let (assigned, entry) =
        audited!(&store, "task.assign", store.assign_task(&actor("ana"), "MC-1", Some("@bo"), None));
    assert_eq!(assigned.assignee.as_deref(), Some("bo"));
    assert_eq!(entry.before.unwrap()["assignee"], serde_json::Value::Null);

    let (moved, entry) = audited!(
        &store,
        "task.move",
        store.move_task(&actor("ana"), "MC-1", Some("in progress"), Position::Bottom, Some(3))
    );
    assert_eq!(moved.lane, "In Progress");
    assert_eq!(moved.version, 4);
    assert_eq!(entry.before.unwrap()["lane"], "Inbox");
    assert_eq!(entry.after.unwrap()["lane"], "In Progress");

    let (archived, _) = audited!(&store, "task.archive", store.set_task_archived(&actor("ana"), "MC-1", true, None));
    assert!(archived.archived);
    let lanes = store.list_lanes(p.id).await.unwrap();
    assert!(lanes.iter().all(|l| l.open_count == 0), "archived tasks leave the lane counts");
    let visible = store.list_tasks(&TaskFilter { project_id: p.id, ..Default::default() }).await.unwrap();
    assert!(visible.is_empty());
    let (back, _) = audited!(&store, "task.unarchive", store.set_task_archived(&actor("ana"), "MC-1", false, None));
    assert!(!back.archived);
    assert_eq!(store.lane_by_name(p.id, "In Progress").await.unwrap().open_count, 1);

    // A stale version is refused, typed, and changes nothing.
    let before = last_audit_id(&store).await;
    let err = store
        .edit_task(&actor("ana"), "MC-1", TaskEdit { title: Some("x".into()), ..Default::default() }, Some(1))
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict { kind, key, expected, actual } => {
            assert_eq!((kind, key.as_str(), expected, actual), ("task", "MC-1", 1, 6));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(last_audit_id(&store).await, before);
    assert_eq!(store.task_by_key("MC-1").await.unwrap().title, "Fix login on Safari");

    // No-op edits are not mutations.
    let same = store
        .edit_task(
            &actor("ana"),
            "MC-1",
            TaskEdit { title: Some("Fix login on Safari".into()), ..Default::default() },
            None,
        )
        .await
        .unwrap();
    assert_eq!(same.version, 6);
    assert_eq!(last_audit_id(&store).await, before);
}

#[tokio::test]
async fn moves_keep_ranks_consistent() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    for n in 1..=4 {
        store.create_task(&actor("ana"), p.id, new_task(&format!("task {n}"))).await.unwrap();
    }
    let order = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .list_tasks(&TaskFilter { project_id: p.id, lane: Some("Inbox".into()), ..Default::default() })
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.key)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(order(&store).await, ["MC-1", "MC-2", "MC-3", "MC-4"]);
    store.move_task(&actor("ana"), "MC-4", None, Position::Top, None).await.unwrap();
    assert_eq!(order(&store).await, ["MC-4", "MC-1", "MC-2", "MC-3"]);
    let (_, entry) =
        audited!(&store, "task.reorder", store.move_task(&actor("ana"), "MC-1", None, Position::Down, None));
    assert_eq!(entry.entity_key.as_deref(), Some("MC-1"));
    assert_eq!(order(&store).await, ["MC-4", "MC-2", "MC-1", "MC-3"]);
    store.move_task(&actor("ana"), "MC-3", None, Position::Before("MC-4".into()), None).await.unwrap();
    assert_eq!(order(&store).await, ["MC-3", "MC-4", "MC-2", "MC-1"]);
    // Up at the top is a no-op, not an error and not an audit entry.
    let before = last_audit_id(&store).await;
    store.move_task(&actor("ana"), "MC-3", None, Position::Up, None).await.unwrap();
    assert_eq!(last_audit_id(&store).await, before);

    // Squeeze many cards between the same two neighbours: the lane renumbers
    // itself when the gap runs out, and the order stays right.
    for n in 5..=40 {
        store.create_task(&actor("ana"), p.id, new_task(&format!("task {n}"))).await.unwrap();
        store.move_task(&actor("ana"), &format!("MC-{n}"), None, Position::After("MC-3".into()), None).await.unwrap();
    }
    let keys = order(&store).await;
    let mut expected = vec!["MC-3".to_string()];
    expected.extend((5..=40).rev().map(|n| format!("MC-{n}")));
    expected.extend(["MC-4", "MC-2", "MC-1"].map(String::from));
    assert_eq!(keys, expected);

    // Across lanes with a position, and refusing an anchor in another lane.
    store.move_task(&actor("ana"), "MC-1", Some("Ready"), Position::Bottom, None).await.unwrap();
    store.move_task(&actor("ana"), "MC-2", Some("Ready"), Position::Before("MC-1".into()), None).await.unwrap();
    let ready = store
        .list_tasks(&TaskFilter { project_id: p.id, lane: Some("Ready".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ready.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), ["MC-2", "MC-1"]);
    let err =
        store.move_task(&actor("ana"), "MC-3", Some("Done"), Position::Before("MC-1".into()), None).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");

    let lanes = store.list_lanes(p.id).await.unwrap();
    assert_eq!(lanes.iter().map(|l| l.open_count).sum::<i32>(), 40);
    assert_eq!(lanes[0].open_count, 38);
}

#[tokio::test]
async fn handoffs_follow_their_state_machine() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    for handle in ["ana", "bo"] {
        let new = NewAgent {
            handle: handle.into(),
            display_name: handle.into(),
            kind: AgentKind::Human,
            capacity: None,
            skills: vec![],
        };
        store.create_agent(&actor("root"), new).await.unwrap();
    }
    store
        .create_task(&actor("ana"), p.id, NewTask { assignee: Some("ana".into()), ..new_task("Ship it") })
        .await
        .unwrap();

    let blocked = NewHandoff {
        task_key: "MC-1".into(),
        kind: HandoffKind::Blocked,
        from: None,
        to: "bo".into(),
        reason: "waiting for creds".into(),
        needs: "vault access".into(),
        due_at: Some(time::OffsetDateTime::now_utc() - time::Duration::hours(1)),
    };
    // The operator `ana` has an agent, so she is the sender.
    let (h, entry) = audited!(&store, "handoff.open", store.open_handoff(&actor("ana"), blocked));
    assert_eq!(h.from_agent.as_deref(), Some("ana"));
    assert_eq!(h.state, HandoffState::Open);
    assert!(h.is_overdue(time::OffsetDateTime::now_utc()));
    assert_eq!(entry.entity_key.as_deref(), Some("MC-1"), "handoff history reads under the task key");

    let (accepted, entry) = audited!(
        &store,
        "handoff.accept",
        store.transition_handoff(&actor("bo"), h.id, HandoffState::Accepted, "", Some(1))
    );
    assert_eq!(accepted.version, 2);
    assert_eq!(entry.before.unwrap()["state"], "open");
    let err = store.transition_handoff(&actor("bo"), h.id, HandoffState::Rejected, "", None).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongState(_)), "accepted cannot become rejected: {err}");
    let (resolved, _) = audited!(
        &store,
        "handoff.resolve",
        store.transition_handoff(&actor("bo"), h.id, HandoffState::Resolved, "done", None)
    );
    assert_eq!(resolved.resolution, "done");
    assert!(resolved.closed_at.is_some());
    assert_eq!(
        store.task_by_key("MC-1").await.unwrap().assignee.as_deref(),
        Some("ana"),
        "a blocked handoff does not reassign"
    );

    // Accepting a transfer hands the task over: two entries, one operation.
    let transfer = NewHandoff {
        kind: HandoffKind::Transfer,
        reason: "on leave".into(),
        needs: String::new(),
        due_at: None,
        ..blocked_to("bo")
    };
    let t = store.open_handoff(&actor("ana"), transfer).await.unwrap();
    let before = last_audit_id(&store).await;
    let bo = actor("bo");
    store.transition_handoff(&bo, t.id, HandoffState::Accepted, "", None).await.unwrap();
    let entries = entries_since(&store, before).await;
    assert_eq!(entries.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["handoff.accept", "task.assign"]);
    assert!(entries.iter().all(|e| e.correlation_id == bo.correlation_id));
    assert_eq!(store.task_by_key("MC-1").await.unwrap().assignee.as_deref(), Some("bo"));

    let active = store.list_handoffs(&HandoffFilter { project_id: p.id, ..Default::default() }).await.unwrap();
    assert_eq!(active.len(), 1);
    let all =
        store.list_handoffs(&HandoffFilter { project_id: p.id, all_states: true, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 2);
    let err =
        store.open_handoff(&actor("ana"), NewHandoff { reason: "   ".into(), ..blocked_to("bo") }).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)));
}

fn blocked_to(to: &str) -> NewHandoff {
    NewHandoff {
        task_key: "MC-1".into(),
        kind: HandoffKind::Blocked,
        from: None,
        to: to.into(),
        reason: "blocked".into(),
        needs: String::new(),
        due_at: None,
    }
}

#[tokio::test]
async fn planning_objects() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    let (cycle, _) = audited!(
        &store,
        "cycle.create",
        store.create_cycle(&actor("ana"), p.id, "Sprint 1", date!(2026 - 11 - 20), date!(2026 - 12 - 04), "")
    );
    assert_eq!(cycle.phase(date!(2026 - 11 - 27)), "current");
    let update = CycleUpdate { ends_on: Some(date!(2026 - 12 - 11)), ..Default::default() };
    let (cycle, entry) = audited!(&store, "cycle.update", store.update_cycle(&actor("ana"), p.id, "sprint 1", update));
    assert_eq!(cycle.ends_on, date!(2026 - 12 - 11));
    assert_eq!(entry.before.unwrap()["ends_on"], "2026-12-04");
    let bad = CycleUpdate { ends_on: Some(date!(2026 - 01 - 01)), ..Default::default() };
    assert!(matches!(
        store.update_cycle(&actor("ana"), p.id, "Sprint 1", bad).await.unwrap_err(),
        StoreError::Invalid(_)
    ));

    let new = NewModule {
        name: "Billing".into(),
        description: "money".into(),
        status: ModuleStatus::Planned,
        lead: None,
        target_on: None,
    };
    let (_, _) = audited!(&store, "module.create", store.create_module(&actor("ana"), p.id, new));
    let (module, entry) = audited!(
        &store,
        "module.update",
        store.update_module(
            &actor("ana"),
            p.id,
            "billing",
            ModuleUpdate { status: Some(ModuleStatus::InProgress), ..Default::default() }
        )
    );
    assert_eq!(module.status, ModuleStatus::InProgress);
    assert_eq!(entry.after.unwrap()["status"], "in-progress");

    // Progress: two tasks, one done.
    for title in ["a", "b"] {
        let t = store
            .create_task(
                &actor("ana"),
                p.id,
                NewTask { cycle: Some("Sprint 1".into()), modules: vec!["Billing".into()], ..new_task(title) },
            )
            .await
            .unwrap();
        if title == "a" {
            store.move_task(&actor("ana"), &t.key, Some("Done"), Position::Bottom, None).await.unwrap();
        }
    }
    let cycle = store.cycle_by_name(p.id, "Sprint 1").await.unwrap();
    assert_eq!((cycle.done_count, cycle.task_count), (1, 2));
    let module = store.module_by_name(p.id, "Billing").await.unwrap();
    assert_eq!((module.done_count, module.task_count), (1, 2));
    let edit = TaskEdit { cycle: Some(None), remove_modules: vec!["billing".into()], ..Default::default() };
    let (t, _) = audited!(&store, "task.update", store.edit_task(&actor("ana"), "MC-2", edit, None));
    assert_eq!((t.cycle, t.modules.len()), (None, 0));

    let (page, entry) =
        audited!(&store, "page.create", store.create_page(&actor("ana"), p.id, "deploy-runbook", "Deploy", "# Steps"));
    assert_eq!(entry.entity_key.as_deref(), Some("deploy-runbook"));
    let (saved, entry) = audited!(
        &store,
        "page.update",
        store.edit_page(&actor("bo"), p.id, "deploy-runbook", None, Some("# Steps\n1. ship"), Some(page.version))
    );
    assert_eq!(saved.version, 2);
    assert_eq!(saved.updated_by, "bo");
    assert_eq!(entry.before.unwrap()["body"], "# Steps");
    let err = store.edit_page(&actor("ana"), p.id, "deploy-runbook", None, Some("lost"), Some(1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { kind: "page", expected: 1, actual: 2, .. }), "{err}");
    assert_eq!(store.page_by_slug(p.id, "deploy-runbook").await.unwrap().body, "# Steps\n1. ship");
    let dup = store.create_page(&actor("ana"), p.id, "deploy-runbook", "Again", "").await.unwrap_err();
    assert!(matches!(dup, StoreError::AlreadyExists(_)));
    assert!(matches!(
        store.create_page(&actor("ana"), p.id, "Bad Slug", "x", "").await.unwrap_err(),
        StoreError::Invalid(_)
    ));
}

fn pipeline(id: &str, status: PipelineStatus, commit: &str) -> PipelineReport {
    PipelineReport {
        provider: "github".into(),
        external_id: id.into(),
        name: "ci".into(),
        git_ref: "main".into(),
        commit_sha: Some(commit.into()),
        status,
        url: Some("https://ci.example.com/1".into()),
        started_at: None,
        finished_at: None,
    }
}

#[tokio::test]
async fn delivery_state_and_release_readiness() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    let (env, _) = audited!(
        &store,
        "environment.create",
        store.create_environment(
            &actor("ci"),
            p.id,
            "production",
            EnvironmentKind::Production,
            Some("https://example.com")
        )
    );
    assert_eq!(env.kind, EnvironmentKind::Production);
    let update = EnvironmentUpdate { url: Some(None), kind: Some(EnvironmentKind::Staging), ..Default::default() };
    let (env, entry) =
        audited!(&store, "environment.update", store.update_environment(&actor("ci"), p.id, "PRODUCTION", update));
    assert_eq!((env.kind, env.url), (EnvironmentKind::Staging, None));
    assert_eq!(entry.before.unwrap()["url"], "https://example.com");
    store
        .update_environment(
            &actor("ci"),
            p.id,
            "production",
            EnvironmentUpdate { kind: Some(EnvironmentKind::Production), ..Default::default() },
        )
        .await
        .unwrap();

    let (run, entry) = audited!(
        &store,
        "pipeline.report",
        store.report_pipeline(&actor("ci"), p.id, pipeline("1", PipelineStatus::Running, "abc1234"))
    );
    assert!(entry.before.is_none());
    assert_eq!(run.status, PipelineStatus::Running);
    let (run, entry) = audited!(
        &store,
        "pipeline.report",
        store.report_pipeline(&actor("ci"), p.id, pipeline("1", PipelineStatus::Failed, "abc1234"))
    );
    assert_eq!(run.id, store.list_pipelines(p.id, 10).await.unwrap()[0].id, "the same run is updated in place");
    assert_eq!(entry.before.unwrap()["status"], "running");
    // The same report again changes nothing and is not audited.
    let before = last_audit_id(&store).await;
    store.report_pipeline(&actor("ci"), p.id, pipeline("1", PipelineStatus::Failed, "abc1234")).await.unwrap();
    assert_eq!(last_audit_id(&store).await, before);
    assert_eq!(store.list_pipelines(p.id, 10).await.unwrap().len(), 1);

    let report = DeploymentReport {
        environment: "Production".into(),
        provider: "github".into(),
        external_id: "d1".into(),
        git_ref: "v1".into(),
        commit_sha: Some("abc1234".into()),
        status: DeploymentStatus::Success,
        url: None,
        release: None,
        started_at: None,
        finished_at: None,
    };
    let (deployment, _) =
        audited!(&store, "deployment.report", store.report_deployment(&actor("ci"), p.id, report.clone()));
    assert_eq!(deployment.environment, "production");
    let unknown = DeploymentReport { environment: "moon".into(), ..report };
    assert!(matches!(
        store.report_deployment(&actor("ci"), p.id, unknown).await.unwrap_err(),
        StoreError::NotFound { .. }
    ));

    store.create_task(&actor("ana"), p.id, new_task("feature")).await.unwrap();
    let new = NewRelease {
        name: "v1.0".into(),
        tag: Some("v1.0".into()),
        commit_sha: Some("abc1234".into()),
        ..Default::default()
    };
    let (release, _) = audited!(&store, "release.create", store.create_release(&actor("ana"), p.id, new));
    assert_eq!(release.status, ReleaseStatus::Planned);
    let (release, _) =
        audited!(&store, "release.link", store.link_release_tasks(&actor("ana"), p.id, "v1.0", &["MC-1".into()], true));
    assert_eq!(release.task_keys, ["MC-1"]);

    let readiness = store.release_readiness(p.id, "v1.0").await.unwrap();
    assert!(!readiness.ready);
    assert_eq!(readiness.open_tasks, ["MC-1"]);
    assert_eq!(readiness.failing_pipelines, ["ci (failed)"]);
    store.move_task(&actor("ana"), "MC-1", Some("Done"), Position::Bottom, None).await.unwrap();
    store.report_pipeline(&actor("ci"), p.id, pipeline("2", PipelineStatus::Success, "abc1234")).await.unwrap();
    let readiness = store.release_readiness(p.id, "v1.0").await.unwrap();
    assert!(readiness.ready, "{readiness:?}");
    assert_eq!((readiness.tasks_done, readiness.pipelines_green), (1, 1));

    let (released, entry) = audited!(
        &store,
        "release.update",
        store.update_release(
            &actor("ana"),
            p.id,
            "v1.0",
            ReleaseUpdate { status: Some(ReleaseStatus::Released), ..Default::default() }
        )
    );
    assert!(released.released_at.is_some());
    assert_eq!(entry.before.unwrap()["status"], "planned");
}

#[tokio::test]
async fn connections_hold_references_and_mappings_are_unique_both_ways() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    let new = NewConnection {
        key: "github-main".into(),
        provider: Provider::Github,
        base_url: "https://api.github.com/".into(),
        config: json!({"repo": "acme/shop"}),
        secret_ref: Some("env:GITHUB_TOKEN".into()),
    };
    let (connection, entry) =
        audited!(&store, "connection.create", store.add_connection(&actor("ana"), p.id, new.clone()));
    assert_eq!(connection.base_url, "https://api.github.com");
    assert_eq!(entry.after.unwrap()["secret_ref"], "env:GITHUB_TOKEN");

    let update = ConnectionUpdate {
        secret_ref: Some(Some("file:/run/secrets/github".into())),
        enabled: Some(false),
        config: Some(json!({"branch": "main"})),
        ..Default::default()
    };
    let (updated, entry) =
        audited!(&store, "connection.update", store.update_connection(&actor("ana"), "github-main", update));
    assert_eq!(updated.secret_ref.as_deref(), Some("file:/run/secrets/github"));
    assert!(!updated.enabled);
    assert_eq!(updated.config, json!({"repo": "acme/shop", "branch": "main"}));
    assert_eq!(entry.before.unwrap()["secret_ref"], "env:GITHUB_TOKEN");
    let leak = ConnectionUpdate { config: Some(json!({"password": "x"})), ..Default::default() };
    assert!(matches!(
        store.update_connection(&actor("ana"), "github-main", leak).await.unwrap_err(),
        StoreError::Invalid(_)
    ));

    let leaky = NewConnection { key: "leaky".into(), config: json!({"api_token": "ghp_x"}), ..new.clone() };
    assert!(matches!(store.add_connection(&actor("ana"), p.id, leaky).await.unwrap_err(), StoreError::Invalid(_)));
    let pasted = NewConnection { key: "pasted".into(), secret_ref: Some("ghp_abcdefghijklmnop".into()), ..new.clone() };
    let err = store.add_connection(&actor("ana"), p.id, pasted).await.unwrap_err();
    assert!(!err.to_string().contains("ghp_"), "a pasted secret is never echoed: {err}");

    let task = store.create_task(&actor("ana"), p.id, new_task("mapped")).await.unwrap();
    let other = store.create_task(&actor("ana"), p.id, new_task("other")).await.unwrap();
    let mapping = NewMapping {
        connection: "github-main".into(),
        local_kind: LocalKind::Task,
        local_id: task.id,
        external_id: "1001".into(),
        external_key: Some("#12".into()),
        url: Some("https://github.com/acme/shop/issues/12".into()),
    };
    let (m, entry) = audited!(&store, "mapping.create", store.create_mapping(&actor("sync"), p.id, mapping.clone()));
    assert_eq!(m.local_key.as_deref(), Some("MC-1"));
    assert_eq!(entry.entity_key.as_deref(), Some("MC-1"));
    let same_local = NewMapping { external_id: "1002".into(), ..mapping.clone() };
    assert!(matches!(
        store.create_mapping(&actor("sync"), p.id, same_local).await.unwrap_err(),
        StoreError::AlreadyExists(_)
    ));
    let same_remote = NewMapping { local_id: other.id, ..mapping };
    assert!(matches!(
        store.create_mapping(&actor("sync"), p.id, same_remote).await.unwrap_err(),
        StoreError::AlreadyExists(_)
    ));
    let listed = store
        .list_mappings(&MappingFilter { project_id: p.id, local_key: Some("MC-1".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    let err = store.remove_connection(&actor("ana"), "github-main", false).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let (_, entry) = audited!(&store, "connection.remove", store.remove_connection(&actor("ana"), "github-main", true));
    assert_eq!(entry.before.unwrap()["mappings"], 1);
    assert!(store.list_connections(p.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn audit_entries_are_append_only() {
    let db = TestDb::new().await;
    let store = db.store().await;
    project(&store, "MC").await;
    let client = db.client().await;
    for statement in ["UPDATE audit_entry SET actor = 'mallory'", "DELETE FROM audit_entry", "TRUNCATE audit_entry"] {
        let err = client.batch_execute(statement).await.expect_err(statement);
        assert!(err.as_db_error().unwrap().message().contains("append-only"), "{statement}: {err}");
    }
    assert_eq!(db.count("audit_entry").await, 1);
}

#[tokio::test]
async fn changes_are_announced_with_ids_only() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let p = project(&store, "MC").await;
    let mut rx = common::change_payloads(&store).await;
    let task = store.create_task(&actor("ana"), p.id, new_task("Secret plans for Q3")).await.unwrap();
    let payload =
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.notifications.recv()).await.unwrap().unwrap();
    let value: serde_json::Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(value["project_id"], p.id);
    assert_eq!(value["kind"], "task");
    assert_eq!(value["id"], task.id);
    assert_eq!(value["action"], "task.create");
    assert!(!payload.contains("Secret plans"), "payloads carry ids, not content: {payload}");
}
