//! Snapshots against a real PostgreSQL: consistent capture under load,
//! corruption refused, restore after bulk damage (and its undo), partial
//! restore, a dropped connection mid-restore, restore racing an edit (and a
//! change committed mid-restore, which makes it start again), older
//! format versions, and the CLI.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::snapshots::{assert_restored, normalized};
use common::{Cli, TestDb, actor};
use futures_util::future::join_all;
use mission_control::domain::{
    AuditEntry, EnvironmentKind, HandoffKind, HandoffState, LaneCategory, LaneRole, LocalKind, PipelineStatus,
    SnapshotMeta,
};
use mission_control::snapshot::{Reason, RestoreOptions, SnapshotData};
use mission_control::store::audit::AuditQuery;
use mission_control::store::delivery::PipelineReport;
use mission_control::store::handoffs::NewHandoff;
use mission_control::store::integrations::{NewConnection, NewMapping};
use mission_control::store::lanes::{LaneUpdate, NewLane};
use mission_control::store::tasks::{NewTask, Position, TaskEdit};
use mission_control::store::{Store, StoreError};

/// The demo project, plus a connection with mappings for a few tasks.
async fn demo(store: &Store) -> i64 {
    let project = common::console::seed_demo(store).await;
    let connection = NewConnection {
        key: "github".into(),
        provider: mission_control::domain::Provider::Github,
        base_url: "https://api.github.com".into(),
        config: serde_json::json!({"repo": "northwind/checkout"}),
        secret_ref: Some("env:GITHUB_TOKEN".into()),
    };
    store.add_connection(&actor("ana"), project.id, connection).await.unwrap();
    for n in [4, 8, 11] {
        let task = store.task_by_key(&format!("DEMO-{n}")).await.unwrap();
        let mapping = NewMapping {
            connection: "github".into(),
            local_kind: LocalKind::Task,
            local_id: task.id,
            external_id: format!("10{n}"),
            external_key: Some(format!("#{n}")),
            url: Some(format!("https://github.com/northwind/checkout/issues/{n}")),
        };
        store.create_mapping(&actor("sync"), project.id, mapping).await.unwrap();
    }
    // As the sync worker leaves them once both sides agree.
    let client = store.client().await.unwrap();
    client.execute("UPDATE external_mapping SET sync_state = 'in_sync'", &[]).await.unwrap();
    project.id
}

fn no_progress(_: &str) {}

/// A fresh database holding the demo project (see `demo`), a snapshot of it,
/// and the state that snapshot holds.
struct Snapshotted {
    store: Store,
    db: TestDb,
    project_id: i64,
    snapshot: SnapshotMeta,
    original: SnapshotData,
}

async fn snapshotted() -> Snapshotted {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project_id = demo(&store).await;
    let snapshot = store.create_snapshot(&actor("ana"), project_id, "", Reason::Manual).await.unwrap();
    let original = store.capture(project_id).await.unwrap();
    Snapshotted { store, db, project_id, snapshot, original }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_after_bulk_damage_and_undo_it() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project_id = demo(&store).await;
    // About a third of generated tasks are open: enough to move 3,000 of them.
    mission_control::seed::load_tasks(&store, &actor("load"), "DEMO", 10_000, 7).await.unwrap();
    let good = store.create_snapshot(&actor("ana"), project_id, "good", Reason::Manual).await.unwrap();
    let before = store.capture(project_id).await.unwrap();
    assert_eq!(good.counts["tasks"], before.tasks.len());

    // The night's damage, as a bad bulk action would do it.
    let client = db.client().await;
    let done: i64 = client
        .query_one("SELECT id FROM lane WHERE project_id = $1 AND name = 'Done'", &[&project_id])
        .await
        .unwrap()
        .get(0);
    let moved = client
        .execute(
            "UPDATE task SET lane_id = $2, rank = 10000000 + id, version = version + 1
             WHERE id IN (SELECT id FROM task WHERE project_id = $1 AND lane_id <> $2 AND NOT archived ORDER BY id LIMIT 3000)",
            &[&project_id, &done],
        )
        .await
        .unwrap();
    assert_eq!(moved, 3000);
    client
        .execute("UPDATE task SET archived = true WHERE id IN (SELECT id FROM task WHERE project_id = $1 AND NOT archived ORDER BY id DESC LIMIT 100)", &[&project_id])
        .await
        .unwrap();
    client
        .execute(
            "UPDATE task SET title = 'overwritten by a sync run' WHERE project_id = $1 AND number % 7 = 0",
            &[&project_id],
        )
        .await
        .unwrap();
    store
        .create_task(
            &actor("bo"),
            project_id,
            NewTask { title: "made after the snapshot".into(), ..Default::default() },
        )
        .await
        .unwrap();
    let damaged = store.capture(project_id).await.unwrap();

    let started = Instant::now();
    let report =
        store.restore_snapshot(&actor("ana"), good.id, &RestoreOptions::default(), &no_progress).await.unwrap();
    eprintln!("restore of {} tasks took {:?}", before.tasks.len(), started.elapsed());
    assert!(report.kinds["tasks"].restored >= 3000, "{report:?}");
    assert_eq!(report.kinds["tasks"].set_aside, 1, "the task made since is archived, not destroyed");
    assert_eq!(report.flagged_mappings, 3, "mapped tasks that changed are flagged for the sync worker");
    let after = store.capture(project_id).await.unwrap();
    assert_restored(&before, &after);
    assert_eq!(after.project.last_task_number, damaged.project.last_task_number, "the key counter never goes back");
    // Lane counts were kept exact through the bulk writes.
    for lane in store.list_lanes(project_id).await.unwrap() {
        let n = after.tasks.iter().filter(|t| t.lane_id == lane.id && !t.archived).count();
        assert_eq!(lane.open_count as usize, n, "{}", lane.name);
    }
    // One correlation id for the whole restore, source recovery.
    let entries = store
        .list_audit(&mission_control::store::audit::AuditQuery {
            correlation_id: Some(report.correlation_id),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(entries.len() > 3000);
    assert!(entries.iter().all(|e| e.source.as_str() == "recovery"));
    assert!(entries.iter().any(|e| e.action == "snapshot.restore"));
    let moved_back =
        entries.iter().find(|e| e.action == "task.restore" && e.after.as_ref().unwrap().get("lane").is_some()).unwrap();
    assert_eq!(moved_back.before.as_ref().unwrap()["lane"], "Done");
    // New tasks continue after the highest key ever handed out.
    let next = store
        .create_task(&actor("bo"), project_id, NewTask { title: "after the restore".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(next.number, damaged.project.last_task_number + 1);

    // The restore is undoable: the pre-restore snapshot brings the damage back.
    let pre = report.pre_restore_snapshot.unwrap();
    store.restore_snapshot(&actor("ana"), pre, &RestoreOptions::default(), &no_progress).await.unwrap();
    let undone = store.capture(project_id).await.unwrap();
    assert_restored(&damaged, &undone);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_restore_touches_only_the_chosen_tasks() {
    let Snapshotted { db: _db, store, project_id, snapshot, original } = snapshotted().await;
    for n in 1..=10 {
        let edit = TaskEdit { title: Some(format!("damaged {n}")), ..Default::default() };
        store.edit_task(&actor("bo"), &format!("DEMO-{n}"), edit, None).await.unwrap();
    }
    // Someone since put another card where DEMO-2 used to sit.
    store.move_task(&actor("bo"), "DEMO-2", Some("Inbox"), Position::Bottom, None).await.unwrap();
    store.move_task(&actor("bo"), "DEMO-4", Some("Done"), Position::Top, None).await.unwrap();
    let options =
        RestoreOptions { only: vec!["DEMO-2".into(), "demo-5".into(), "DEMO-9".into()], ..Default::default() };
    let report = store.restore_snapshot(&actor("ana"), snapshot.id, &options, &no_progress).await.unwrap();
    assert_eq!(report.kinds.len(), 1);
    assert_eq!(report.kinds["tasks"].restored, 3);
    let now = store.capture(project_id).await.unwrap();
    for n in 1..=10 {
        let key = format!("DEMO-{n}");
        let task = now.tasks.iter().find(|t| t.key == key).unwrap();
        let was = original.tasks.iter().find(|t| t.key == key).unwrap();
        if [2, 5, 9].contains(&n) {
            assert_eq!(task.title, was.title, "{key} restored");
            assert_eq!(task.lane_id, was.lane_id, "{key} back in its lane");
        } else {
            assert_eq!(task.title, format!("damaged {n}"), "{key} untouched");
        }
    }
    let entries = store
        .list_audit(&mission_control::store::audit::AuditQuery {
            correlation_id: Some(report.correlation_id),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: std::collections::BTreeSet<String> =
        entries.iter().filter(|e| e.action == "task.restore").map(|e| e.entity_key.clone().unwrap()).collect();
    assert_eq!(keys, ["DEMO-2", "DEMO-5", "DEMO-9"].map(String::from).into_iter().collect());
    let err = store
        .restore_snapshot(
            &actor("ana"),
            snapshot.id,
            &RestoreOptions { only: vec!["DEMO-999".into()], ..Default::default() },
            &no_progress,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

/// A restore's audit entries, all with source `recovery`.
async fn restore_entries(store: &Store, report: &mission_control::snapshot::RestoreReport) -> Vec<AuditEntry> {
    let query = AuditQuery { correlation_id: Some(report.correlation_id), limit: 10_000, ..Default::default() };
    let entries = store.list_audit(&query).await.unwrap();
    assert!(entries.iter().all(|e| e.source.as_str() == "recovery"), "every entry from the recovery");
    entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_of_some_kinds_changes_only_those_kinds() {
    let Snapshotted { db, store, project_id, snapshot, original } = snapshotted().await;
    // Damage across kinds: tasks, a handoff, a page, a lane; and a page and a task made since.
    let bo = actor("bo");
    store
        .edit_task(&bo, "DEMO-8", TaskEdit { title: Some("damaged".into()), ..Default::default() }, None)
        .await
        .unwrap();
    store.move_task(&bo, "DEMO-4", Some("Done"), Position::Top, None).await.unwrap();
    let handoff = original.handoffs.iter().find(|h| h.state == "open").unwrap();
    store.transition_handoff(&bo, handoff.id, HandoffState::Cancelled, "", None).await.unwrap();
    let page = &original.pages[0];
    store.edit_page(&bo, project_id, &page.slug, None, Some("damaged body"), None).await.unwrap();
    store.create_page(&bo, project_id, "made-since", "Made since", "new").await.unwrap();
    store.create_task(&bo, project_id, NewTask { title: "made since".into(), ..Default::default() }).await.unwrap();
    let review = LaneUpdate { wip_limit: Some(Some(1)), ..Default::default() };
    store.update_lane(&bo, project_id, "Review", review).await.unwrap();
    let damaged = normalized(&store.capture(project_id).await.unwrap());

    let options = RestoreOptions { kinds: vec!["handoffs".into(), "pages".into()], ..Default::default() };
    let report = store.restore_snapshot(&actor("ana"), snapshot.id, &options, &no_progress).await.unwrap();
    assert_eq!(report.kinds.keys().map(String::as_str).collect::<Vec<_>>(), ["handoffs", "pages"]);
    assert_eq!(report.kinds["handoffs"].restored, 1);
    assert_eq!((report.kinds["pages"].restored, report.kinds["pages"].set_aside), (1, 1));
    assert!(report.project_fields.is_empty());

    let now = normalized(&store.capture(project_id).await.unwrap());
    let expected = normalized(&original);
    assert_eq!(now.handoffs, expected.handoffs, "handoffs restored");
    let (old_pages, new_pages): (Vec<_>, Vec<_>) = now.pages.iter().partition(|p| expected.pages.contains(p));
    assert_eq!(old_pages.len(), expected.pages.len(), "pages restored");
    assert!(new_pages.len() == 1 && new_pages[0].archived, "the page made since is archived");
    // Everything else is as the damage left it.
    assert_eq!(now.tasks, damaged.tasks, "tasks untouched");
    assert_eq!(now.lanes, damaged.lanes, "lanes untouched");
    assert_eq!(now.project, damaged.project);
    let entries = restore_entries(&store, &report).await;
    let kinds: BTreeSet<&str> = entries.iter().map(|e| e.entity_kind.as_str()).collect();
    assert_eq!(kinds, ["handoff", "page", "snapshot"].into_iter().collect());

    // An unknown kind is refused before anything is written.
    let before = row_counts(&db).await;
    let options = RestoreOptions { kinds: vec!["tasks".into(), "widgets".into()], ..Default::default() };
    let err = store.restore_snapshot(&actor("ana"), snapshot.id, &options, &no_progress).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)) && err.to_string().contains("widgets"), "{err}");
    assert_eq!(row_counts(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_exact_restore_deletes_what_was_made_since_and_audits_each_deletion() {
    let Snapshotted { db, store, project_id, snapshot, original } = snapshotted().await;
    // Made since the snapshot: a task with a handoff and a mapping, a page,
    // a lane an old task moved into, an environment and a pipeline run.
    let bo = actor("bo");
    let new = NewTask { title: "made since".into(), lane: Some("Ready".into()), ..Default::default() };
    let task = store.create_task(&bo, project_id, new).await.unwrap();
    let handoff = NewHandoff {
        task_key: task.key.clone(),
        kind: HandoffKind::Transfer,
        from: Some("ana".into()),
        to: "bo".into(),
        reason: "made since".into(),
        needs: String::new(),
        due_at: None,
    };
    store.open_handoff(&bo, handoff).await.unwrap();
    let mapping = NewMapping {
        connection: "github".into(),
        local_kind: LocalKind::Task,
        local_id: task.id,
        external_id: "999".into(),
        external_key: Some("#999".into()),
        url: None,
    };
    store.create_mapping(&actor("sync"), project_id, mapping).await.unwrap();
    store.create_page(&bo, project_id, "postmortem", "Postmortem", "what happened").await.unwrap();
    let qa = NewLane {
        name: "QA".into(),
        category: LaneCategory::Started,
        role: LaneRole::Normal,
        position: None,
        wip_limit: None,
    };
    store.create_lane(&bo, project_id, qa).await.unwrap();
    store.move_task(&bo, "DEMO-4", Some("QA"), Position::Top, None).await.unwrap();
    store.create_environment(&bo, project_id, "qa", EnvironmentKind::Preview, None).await.unwrap();
    let run = PipelineReport {
        provider: "github".into(),
        external_id: "run-since".into(),
        name: "ci".into(),
        git_ref: "main".into(),
        commit_sha: None,
        status: PipelineStatus::Failed,
        url: None,
        started_at: None,
        finished_at: None,
    };
    store.report_pipeline(&bo, project_id, run).await.unwrap();
    store
        .edit_task(&bo, "DEMO-8", TaskEdit { title: Some("damaged".into()), ..Default::default() }, None)
        .await
        .unwrap();
    let damaged = store.capture(project_id).await.unwrap();

    let options = RestoreOptions { exact: true, ..Default::default() };
    let report = store.restore_snapshot(&actor("ana"), snapshot.id, &options, &no_progress).await.unwrap();
    for kind in ["tasks", "handoffs", "mappings", "pages", "lanes", "environments", "pipelines"] {
        let counts = &report.kinds[kind];
        assert_eq!((counts.deleted, counts.set_aside), (1, 0), "{kind}: {counts:?}");
    }
    assert_eq!(report.kinds["tasks"].restored, 2, "DEMO-4 and DEMO-8");

    // Exactly the snapshot: nothing made since is left, archived or not.
    let now = store.capture(project_id).await.unwrap();
    assert_eq!(normalized(&now), normalized(&original));
    assert_eq!(db.count(&format!("task WHERE id = {}", task.id)).await, 0);
    assert_eq!(db.count("lane WHERE name = 'QA'").await, 0);
    // Each deletion is audited with the row as it was.
    let entries = restore_entries(&store, &report).await;
    let deleted = |action: &str, key: &str| {
        let entry = entries
            .iter()
            .find(|e| e.action == action && e.entity_key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("no {action} of {key}"));
        assert!(entry.after.is_none(), "{action} {key}");
        entry.before.clone().unwrap()
    };
    assert_eq!(deleted("task.delete", &task.key)["title"], "made since");
    assert_eq!(deleted("lane.delete", "QA")["name"], "QA");
    assert_eq!(deleted("page.delete", "postmortem")["title"], "Postmortem");
    assert_eq!(deleted("mapping.delete", "task 999")["external_id"], "999");
    assert_eq!(deleted("environment.delete", "qa")["kind"], "preview");
    assert_eq!(deleted("pipeline.delete", "ci run-since")["status"], "failed");
    let handoff_id = damaged.handoffs.iter().find(|h| h.task_id == task.id).unwrap().id;
    assert_eq!(deleted("handoff.delete", &format!("#{handoff_id}"))["reason"], "made since");
    // Nothing is lost for good: the pre-restore snapshot holds the deleted rows.
    let (_, pre) = store.load_snapshot(report.pre_restore_snapshot.unwrap()).await.unwrap();
    assert_eq!(normalized(&pre), normalized(&damaged));
    // The deleted task's key is never handed out again.
    let next =
        store.create_task(&bo, project_id, NewTask { title: "next".into(), ..Default::default() }).await.unwrap();
    assert_eq!(next.number, task.number + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lane_inserted_since_the_snapshot_is_hidden_behind_the_restored_lanes() {
    let Snapshotted { db: _db, store, project_id, snapshot, original } = snapshotted().await;
    // Inserted first: every snapshot lane moved one place along.
    let triage = NewLane {
        name: "Triage".into(),
        category: LaneCategory::Backlog,
        role: LaneRole::Normal,
        position: Some(1),
        wip_limit: None,
    };
    let triage = store.create_lane(&actor("bo"), project_id, triage).await.unwrap();
    store.move_task(&actor("bo"), "DEMO-4", Some("Triage"), Position::Top, None).await.unwrap();

    let report =
        store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &no_progress).await.unwrap();
    assert_eq!(report.kinds["lanes"].set_aside, 1);
    let now = store.capture(project_id).await.unwrap();
    assert_restored(&original, &now);
    let hidden = now.lanes.iter().find(|l| l.id == triage.id).unwrap();
    let last = original.lanes.iter().map(|l| l.position).max().unwrap();
    assert_eq!((hidden.visible, hidden.position), (false, last + 1), "hidden, after the snapshot's lanes");
    let entry = restore_entries(&store, &report).await.into_iter().find(|e| e.action == "lane.hide").unwrap();
    assert_eq!(entry.before.unwrap()["position"], 1);
    assert_eq!(entry.after.unwrap()["position"], last + 1);
}

/// After the snapshot, someone renamed a lane, a page, an environment and a
/// connection and made new ones under the old names; a pipeline and a mapping
/// were deleted and synced in again under new ids. The default restore gives
/// the names back to the snapshot's rows, renames the newer ones, replaces the
/// second copies of the remote objects, and can be undone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_made_since_under_a_restored_name_move_aside_and_remote_copies_are_replaced() {
    let Snapshotted { db: _db, store, project_id, snapshot, original } = snapshotted().await;
    // Connection keys are unique across projects: another one already holds the first name tried.
    let ops = store.create_project(&actor("ana"), "OPS", "Operations", "").await.unwrap();
    let elsewhere = NewConnection {
        key: format!("github-since-{}", snapshot.id),
        provider: mission_control::domain::Provider::Github,
        base_url: "https://api.github.com".into(),
        config: serde_json::json!({"repo": "northwind/ops"}),
        secret_ref: None,
    };
    store.add_connection(&actor("ana"), ops.id, elsewhere).await.unwrap();

    let rename = LaneUpdate { name: Some("Code review".into()), ..Default::default() };
    store.update_lane(&actor("bo"), project_id, "Review", rename).await.unwrap();
    let review = NewLane {
        name: "REVIEW".into(),
        category: LaneCategory::Started,
        role: LaneRole::Review,
        position: None,
        wip_limit: None,
    };
    let new_lane = store.create_lane(&actor("bo"), project_id, review).await.unwrap();
    let client = store.client().await.unwrap();
    client
        .batch_execute(
            "UPDATE page SET slug = 'deploy-runbook-v1' WHERE slug = 'deploy-runbook';
             UPDATE environment SET name = 'stage' WHERE name = 'staging';
             DELETE FROM pipeline WHERE external_id = 'gh-run-88123';
             DELETE FROM external_mapping WHERE external_id = '104';",
        )
        .await
        .unwrap();
    let new_page =
        store.create_page(&actor("bo"), project_id, "deploy-runbook", "Deploy runbook", "new").await.unwrap();
    store.create_environment(&actor("bo"), project_id, "staging", EnvironmentKind::Staging, None).await.unwrap();
    let old_pipeline = original.pipelines.iter().find(|p| p.external_id == "gh-run-88123").unwrap();
    let report = PipelineReport {
        provider: old_pipeline.provider.clone(),
        external_id: old_pipeline.external_id.clone(),
        name: "ci".into(),
        git_ref: "main".into(),
        commit_sha: None,
        status: PipelineStatus::Running,
        url: None,
        started_at: None,
        finished_at: None,
    };
    let new_pipeline = store.report_pipeline(&actor("sync"), project_id, report).await.unwrap();
    let task = store.task_by_key("DEMO-4").await.unwrap();
    let mapping = NewMapping {
        connection: "github".into(),
        local_kind: LocalKind::Task,
        local_id: task.id,
        external_id: "104".into(),
        external_key: Some("#4".into()),
        url: None,
    };
    store.create_mapping(&actor("sync"), project_id, mapping).await.unwrap();
    client
        .execute("UPDATE integration_connection SET connection_key = 'github-old' WHERE connection_key = 'github'", &[])
        .await
        .unwrap();
    let connection = NewConnection {
        key: "github".into(),
        provider: mission_control::domain::Provider::Github,
        base_url: "https://api.github.com".into(),
        config: serde_json::json!({"repo": "northwind/checkout-next"}),
        secret_ref: None,
    };
    store.add_connection(&actor("bo"), project_id, connection).await.unwrap();
    let damaged = store.capture(project_id).await.unwrap();

    let preview = RestoreOptions { dry_run: true, ..Default::default() };
    let preview = store.restore_snapshot(&actor("ana"), snapshot.id, &preview, &no_progress).await.unwrap();
    let renamed: BTreeMap<&str, (&str, String)> =
        preview.renames.iter().map(|r| (r.kind.as_str(), (r.from.as_str(), r.to.clone()))).collect();
    let n = snapshot.id;
    assert_eq!(
        renamed,
        BTreeMap::from([
            ("connection", ("github", format!("github-since-{n}-2"))),
            ("environment", ("staging", format!("staging-since-{n}"))),
            ("lane", ("REVIEW", format!("REVIEW (since #{n})"))),
            ("page", ("deploy-runbook", format!("deploy-runbook-since-{n}"))),
        ])
    );
    assert_eq!((preview.kinds["pipelines"].deleted, preview.kinds["mappings"].deleted), (1, 1));
    assert_eq!(store.capture(project_id).await.unwrap(), damaged, "a dry run writes nothing");

    let report =
        store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &no_progress).await.unwrap();
    assert_eq!(report.renames, preview.renames);
    let now = store.capture(project_id).await.unwrap();
    assert_restored(&original, &now);
    let lane = now.lanes.iter().find(|l| l.id == new_lane.id).unwrap();
    assert_eq!((lane.name.clone(), lane.visible), (format!("REVIEW (since #{n})"), false));
    let page = now.pages.iter().find(|p| p.id == new_page.id).unwrap();
    assert_eq!((page.slug.clone(), page.archived), (format!("deploy-runbook-since-{n}"), true));
    assert!(now.environments.iter().any(|e| e.name == format!("staging-since-{n}")));
    assert!(now.connections.iter().any(|c| c.key == format!("github-since-{n}-2")));
    assert!(!now.pipelines.iter().any(|p| p.id == new_pipeline.id), "the second copy is replaced");
    assert_eq!(now.mappings.len(), original.mappings.len());
    let entries = restore_entries(&store, &report).await;
    let actions: BTreeSet<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for action in ["lane.rename", "page.rename", "environment.rename", "connection.rename"] {
        assert!(actions.contains(action), "{action} in {actions:?}");
    }
    let replaced = entries.iter().find(|e| e.action == "pipeline.replace").unwrap();
    assert_eq!(replaced.entity_id, Some(new_pipeline.id));
    assert_eq!(replaced.before.as_ref().unwrap()["status"], "running", "the replaced row is kept in the audit log");
    assert!(actions.contains("mapping.replace"));

    // Undo: the pre-restore snapshot swaps every name back.
    let undo = report.pre_restore_snapshot.unwrap();
    store.restore_snapshot(&actor("ana"), undo, &RestoreOptions::default(), &no_progress).await.unwrap();
    assert_restored(&damaged, &store.capture(project_id).await.unwrap());
}

/// Rows in every table a restore or an import writes to.
async fn row_counts(db: &TestDb) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in ["project", "agent", "lane", "task", "handoff", "page", "external_mapping", "snapshot", "audit_entry"]
    {
        counts.push((table, db.count(table).await));
    }
    counts
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for part in parts {
        std::io::Write::write_all(&mut encoder, part).unwrap();
    }
    encoder.finish().unwrap()
}

/// A canonical payload with one letter of a task title changed: still JSON
/// that decodes to a valid snapshot, so only the checksum can tell.
fn tampered(canonical: &[u8]) -> Vec<u8> {
    let mut payload = canonical.to_vec();
    let marker = b"\"title\":\"";
    let at = (payload.len() / 2..payload.len() - marker.len())
        .find(|&i| payload[i..].starts_with(marker) && payload[i + marker.len()].is_ascii_alphabetic())
        .expect("a title starting with a letter")
        + marker.len();
    payload[at] ^= 0x20;
    mission_control::snapshot::format::decode(mission_control::snapshot::FORMAT_VERSION, &payload)
        .expect("the tampered payload still decodes");
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_snapshot_is_reported_and_never_restored() {
    let Snapshotted { db, store, project_id, snapshot, original: _ } = snapshotted().await;
    assert!(store.verify_snapshot(snapshot.id).await.unwrap().ok);
    let (_, intact) = store.load_snapshot(snapshot.id).await.unwrap();
    store.move_task(&actor("bo"), "DEMO-4", Some("Done"), Position::Top, None).await.unwrap();
    let client = db.client().await;
    let now = store.capture(project_id).await.unwrap();

    // A payload edited behind mctl's back decompresses and decodes, but its checksum fails.
    let edited = gzip(&[&tampered(&intact.canonical())]);
    client.execute("UPDATE snapshot SET payload = $2 WHERE id = $1", &[&snapshot.id, &edited]).await.unwrap();
    let problem = store.verify_snapshot(snapshot.id).await.unwrap().problem.expect("reported");
    assert!(problem.contains("checksum mismatch"), "{problem}");
    // A flipped bit in the stored bytes: the payload does not even decompress.
    let compressed = gzip(&[&intact.canonical()]);
    client.execute("UPDATE snapshot SET payload = $2 WHERE id = $1", &[&snapshot.id, &compressed]).await.unwrap();
    assert!(store.verify_snapshot(snapshot.id).await.unwrap().ok, "the same bytes recompressed are intact");
    client
        .execute(
            "UPDATE snapshot SET payload = set_byte(payload, length(payload) / 2, get_byte(payload, length(payload) / 2) # 1) WHERE id = $1",
            &[&snapshot.id],
        )
        .await
        .unwrap();
    let problem = store.verify_snapshot(snapshot.id).await.unwrap().problem.expect("reported");
    assert!(problem.contains("does not decompress"), "{problem}");

    let flipped: Vec<u8> =
        client.query_one("SELECT payload FROM snapshot WHERE id = $1", &[&snapshot.id]).await.unwrap().get(0);

    // Neither is restored, and nothing is written: not even the pre-restore snapshot.
    for payload in [edited, flipped] {
        client.execute("UPDATE snapshot SET payload = $2 WHERE id = $1", &[&snapshot.id, &payload]).await.unwrap();
        let before = row_counts(&db).await;
        let err = store
            .restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &no_progress)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("corrupted") && err.to_string().contains("will not be restored"), "{err}");
        assert_eq!(row_counts(&db).await, before, "nothing written");
        assert_eq!(normalized(&store.capture(project_id).await.unwrap()), normalized(&now));
    }
    assert_eq!(store.task_by_key("DEMO-4").await.unwrap().lane, "Done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupted_export_file_is_refused_before_anything_is_written() {
    let source = TestDb::new().await;
    let store = source.store().await;
    let project_id = demo(&store).await;
    let snapshot = store.create_snapshot(&actor("ana"), project_id, "", Reason::Manual).await.unwrap();
    let file = store.export_snapshot(snapshot.id).await.unwrap();
    let bytes = mission_control::snapshot::storage::decompress(&file).unwrap();
    let newline = bytes.iter().position(|b| *b == b'\n').unwrap();
    let (header, payload) = (&bytes[..=newline], &bytes[newline + 1..]);

    // Into an empty database, where a good file would create the project.
    let target = TestDb::new().await;
    let fresh = target.store().await;
    let empty = row_counts(&target).await;

    // The file unpacks and its header parses; the payload inside was edited.
    let edited = gzip(&[header, &tampered(payload)]);
    let err = fresh.import_snapshot(&actor("ana"), edited).await.unwrap_err();
    assert!(err.to_string().contains("corrupted: checksum mismatch"), "{err}");
    assert_eq!(row_counts(&target).await, empty, "nothing written");

    // A flipped bit in the compressed file: it does not unpack.
    let mut flipped = file.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let err = fresh.import_snapshot(&actor("ana"), flipped).await.unwrap_err();
    assert!(err.to_string().contains("not a snapshot export"), "{err}");
    assert_eq!(row_counts(&target).await, empty, "nothing written");

    // The untouched file imports: the refusals were the corruption's doing.
    fresh.import_snapshot(&actor("ana"), file).await.unwrap();
    assert_eq!(target.count("snapshot").await, 1);
}

/// A state that existed at one instant: the key counter matches the tasks,
/// every task appears once and sits in a lane the snapshot holds, the lanes'
/// counts add up to the total, and every reference points at a row it holds.
#[track_caller]
fn assert_consistent(data: &SnapshotData) {
    let ids: BTreeSet<i64> = data.tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), data.tasks.len(), "a task appears twice");
    assert_eq!(data.tasks.len() as i64, data.project.last_task_number, "torn read: counter and tasks disagree");
    let numbers: BTreeSet<i64> = data.tasks.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (1..=data.project.last_task_number).collect(), "a task number is missing or repeated");
    let mut per_lane: BTreeMap<i64, usize> = data.lanes.iter().map(|l| (l.id, 0)).collect();
    for t in &data.tasks {
        *per_lane.get_mut(&t.lane_id).unwrap_or_else(|| panic!("{} is in a lane the snapshot lacks", t.key)) += 1;
    }
    assert_eq!(per_lane.values().sum::<usize>(), data.tasks.len(), "lane counts do not add up to the tasks");
    // Every card in exactly one lane slot.
    let mut slots = BTreeSet::new();
    for t in data.tasks.iter().filter(|t| !t.archived) {
        assert!(slots.insert((t.lane_id, t.rank)), "two cards share a slot");
    }
    // Handoffs opened on brand-new tasks only make sense with those tasks.
    if let Err(problem) = mission_control::snapshot::export::validate(data) {
        panic!("{problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshots_taken_during_heavy_writing_are_consistent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let db = TestDb::new().await;
    let store = db.store().await;
    let project_id = demo(&store).await;
    let open: Vec<String> =
        store.capture(project_id).await.unwrap().tasks.into_iter().filter(|t| !t.archived).map(|t| t.key).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let moves: Arc<Vec<AtomicUsize>> = Arc::new((0..8).map(|_| AtomicUsize::new(0)).collect());
    // Eight writers move cards between lanes; every fourth round each also
    // files a task and opens a handoff on it (two transactions that a torn
    // read would split).
    let writers: Vec<_> = (0..8usize)
        .map(|w| {
            let (store, stop, moves, mut keys) = (store.clone(), stop.clone(), moves.clone(), open.clone());
            tokio::spawn(async move {
                let lanes = ["Inbox", "Ready", "In Progress", "Review", "Done"];
                let mut rng = fastrand::Rng::with_seed(w as u64);
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let key = &keys[rng.usize(..keys.len())];
                    let lane = lanes[rng.usize(..lanes.len())];
                    store.move_task(&actor("w"), key, Some(lane), Position::Top, None).await.unwrap();
                    moves[w].fetch_add(1, Ordering::Relaxed);
                    if round % 4 == 0 {
                        let new = NewTask { title: format!("writer {w} round {round}"), ..Default::default() };
                        let task = store.create_task(&actor("w"), project_id, new).await.unwrap();
                        let handoff = NewHandoff {
                            task_key: task.key.clone(),
                            kind: HandoffKind::Transfer,
                            from: Some("ana".into()),
                            to: "bo".into(),
                            reason: format!("from writer {w}"),
                            needs: String::new(),
                            due_at: None,
                        };
                        store.open_handoff(&actor("w"), handoff).await.unwrap();
                        keys.push(task.key);
                    }
                }
            })
        })
        .collect();

    let mut checksums = BTreeSet::new();
    let mut round = 0;
    // At least eight rounds, and until every writer has moved cards while snapshots were taken.
    while round < 8 || moves.iter().any(|m| m.load(Ordering::Relaxed) < 3) {
        round += 1;
        assert!(round < 1000, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_consistent(&store.capture(project_id).await.unwrap());
        // The stored path too: captured, encoded, stored, then read back and verified.
        let meta = store.create_snapshot(&actor("ana"), project_id, "under load", Reason::Scheduled).await.unwrap();
        assert!(store.verify_snapshot(meta.id).await.unwrap().ok, "snapshot #{} does not verify", meta.id);
        let (_, data) = store.load_snapshot(meta.id).await.unwrap();
        assert_consistent(&data);
        assert_eq!(meta.counts, data.counts(), "the stored counts describe the payload");
        checksums.insert(meta.checksum);
    }
    stop.store(true, Ordering::Relaxed);
    for w in join_all(writers).await {
        w.unwrap();
    }
    assert!(checksums.len() > 1, "the project changed between snapshots");

    // Once the writers have stopped: the lanes' kept counts match the tasks,
    // and the audit log has one task.create entry per task.
    let last = store.capture(project_id).await.unwrap();
    assert_consistent(&last);
    for lane in store.list_lanes(project_id).await.unwrap() {
        let n = last.tasks.iter().filter(|t| t.lane_id == lane.id && !t.archived).count();
        assert_eq!(lane.open_count as usize, n, "{}", lane.name);
    }
    let creates = db.count(&format!("audit_entry WHERE project_id = {project_id} AND action = 'task.create'")).await;
    assert_eq!(creates, last.tasks.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_restore_sends_tasks_whose_slots_are_taken_to_the_bottom_of_their_lane() {
    let Snapshotted { db, store, project_id, snapshot, original } = snapshotted().await;
    // Two cards of one lane, and two cards of other lanes to take their slots.
    let lane = original
        .lanes
        .iter()
        .find(|l| original.tasks.iter().filter(|t| t.lane_id == l.id && !t.archived).count() >= 2)
        .unwrap();
    let mut in_lane = original.tasks.iter().filter(|t| t.lane_id == lane.id && !t.archived);
    let (a, b) = (in_lane.next().unwrap(), in_lane.next().unwrap());
    let mut others = original.tasks.iter().filter(|t| t.lane_id != lane.id && !t.archived);
    let (c, d) = (others.next().unwrap(), others.next().unwrap());
    let elsewhere = original.lanes.iter().find(|l| l.id != lane.id).unwrap();
    for task in [a, b] {
        store.move_task(&actor("bo"), &task.key, Some(&elsewhere.name), Position::Bottom, None).await.unwrap();
    }
    let client = db.client().await;
    for (taker, slot) in [(c, a.rank), (d, b.rank)] {
        client
            .execute("UPDATE task SET lane_id = $2, rank = $3 WHERE id = $1", &[&taker.id, &lane.id, &slot])
            .await
            .unwrap();
    }
    let options = RestoreOptions { only: vec![a.key.clone(), b.key.clone()], ..Default::default() };
    store.restore_snapshot(&actor("ana"), snapshot.id, &options, &no_progress).await.unwrap();
    let now = store.capture(project_id).await.unwrap();
    let find = |id: i64| now.tasks.iter().find(|t| t.id == id).unwrap();
    let (a_now, b_now) = (find(a.id), find(b.id));
    assert_eq!((a_now.lane_id, b_now.lane_id), (lane.id, lane.id), "both back in their lane");
    assert_ne!(a_now.rank, b_now.rank);
    let lowest_other = now
        .tasks
        .iter()
        .filter(|t| t.lane_id == lane.id && !t.archived && t.id != a.id && t.id != b.id)
        .map(|t| t.rank)
        .max()
        .unwrap();
    assert!(a_now.rank > lowest_other && b_now.rank > lowest_other, "both at the bottom");
    assert_eq!((find(c.id).rank, find(d.id).rank), (a.rank, b.rank), "the cards in their old slots stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_connection_mid_restore_leaves_the_project_as_it_was() {
    let Snapshotted { db, store, project_id, snapshot, original: _ } = snapshotted().await;
    for n in 1..=20 {
        store.move_task(&actor("bo"), &format!("DEMO-{n}"), Some("Done"), Position::Top, None).await.unwrap();
    }
    let damaged = store.capture(project_id).await.unwrap();
    let restores_before = db.count("audit_entry WHERE action = 'task.restore'").await;
    let config = db.config.clone();
    let cut = move |step: &str| {
        if step.starts_with("restoring") && step.contains("tasks") {
            // Kill every other session of this database, the restore's included.
            let config = config.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(connection);
                    client
                        .execute(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                             WHERE datname = current_database() AND pid <> pg_backend_pid()",
                            &[],
                        )
                        .await
                        .unwrap();
                });
            })
            .join()
            .unwrap();
        }
    };
    let result = store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &cut).await;
    assert!(result.is_err(), "the restore cannot have committed");
    let fresh = db.store().await;
    let now = fresh.capture(project_id).await.unwrap();
    assert_eq!(normalized(&now), normalized(&damaged), "rolled back: the project is as it was");
    assert_eq!(db.count("audit_entry WHERE action = 'task.restore'").await, restores_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_committed_while_a_restore_runs_makes_it_start_again_and_keeps_the_change_in_the_pre_restore_snapshot()
{
    let Snapshotted { db, store, project_id, snapshot, original: _ } = snapshotted().await;
    let handoff = store.capture(project_id).await.unwrap().handoffs[0].clone();
    let client = db.client().await;
    client.execute("UPDATE handoff SET needs = 'damaged' WHERE id = $1", &[&handoff.id]).await.unwrap();
    // Once the restore has read the project, another session changes the same handoff and commits.
    let config = db.config.clone();
    let steps = std::sync::Mutex::new(Vec::new());
    let interfere = |step: &str| {
        let first_comparison = step == "comparing" && !steps.lock().unwrap().iter().any(|s: &String| s == "comparing");
        steps.lock().unwrap().push(step.to_string());
        if first_comparison {
            let config = config.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async move {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                    tokio::spawn(connection);
                    client
                        .execute("UPDATE handoff SET needs = 'concurrent' WHERE id = $1", &[&handoff.id])
                        .await
                        .unwrap();
                });
            })
            .join()
            .unwrap();
        }
    };
    let report =
        store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &interfere).await.unwrap();
    let steps = steps.lock().unwrap().clone();
    assert!(steps.iter().any(|s| s.contains("trying again")), "the first attempt was refused: {steps:?}");
    let restored = store.capture(project_id).await.unwrap();
    assert_eq!(restored.handoffs.iter().find(|h| h.id == handoff.id).unwrap().needs, handoff.needs);
    let (_, pre) = store.load_snapshot(report.pre_restore_snapshot.unwrap()).await.unwrap();
    assert_eq!(pre.handoffs.iter().find(|h| h.id == handoff.id).unwrap().needs, "concurrent");
    // One restore committed: one summary entry.
    assert_eq!(db.count("audit_entry WHERE action = 'snapshot.restore'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_racing_an_edit_waits_and_the_stale_edit_fails_cleanly() {
    let Snapshotted { db, store, project_id, snapshot, original: _ } = snapshotted().await;
    store.move_task(&actor("bo"), "DEMO-4", Some("Done"), Position::Top, None).await.unwrap();
    let stale_version = store.task_by_key("DEMO-4").await.unwrap().version;
    // An edit in flight holds the task's lane.
    let mut holder = db.client().await;
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT id FROM lane WHERE project_id = $1 AND name = 'Done' FOR NO KEY UPDATE", &[&project_id])
        .await
        .unwrap();
    let started = Instant::now();
    let restore = {
        let store = store.clone();
        tokio::spawn(async move {
            store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &no_progress).await
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!restore.is_finished(), "the restore waits for the edit");
    tx.commit().await.unwrap();
    restore.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(store.task_by_key("DEMO-4").await.unwrap().lane, "Inbox");
    // The console's edit, made against the version it had before the restore, is refused.
    let err =
        store.move_task(&actor("bo"), "DEMO-4", Some("Review"), Position::Top, Some(stale_version)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

/// A format 1 export (task modules by name), written by hand byte for byte.
fn format_one_export() -> Vec<u8> {
    let payload = r#"{"project":{"id":1,"key":"OLD","name":"Old format","description":"","settings":{},"dashboard":{},"last_task_number":2,"archived":false,"created_at":"2025-01-02T03:04:05Z"},"lanes":[{"id":1,"name":"Todo","position":1,"wip_limit":null,"category":"unstarted","role":"normal","visible":true,"sync":true},{"id":2,"name":"Done","position":2,"wip_limit":null,"category":"completed","role":"normal","visible":true,"sync":true}],"agents":[{"id":1,"handle":"ana","display_name":"Ana","kind":"human","capacity":3,"skills":[]}],"cycles":[],"modules":[{"id":1,"name":"Billing","description":"","status":"planned","lead_agent_id":null,"target_on":null}],"tasks":[{"id":1,"number":1,"key":"OLD-1","title":"Bill in euros","description":"","lane_id":1,"rank":65536,"priority":"high","assignee_id":1,"labels":["money"],"due_on":null,"cycle_id":null,"modules":["billing"],"archived":false,"version":3,"created_by":"ana","created_at":"2025-01-02T03:04:05Z"},{"id":2,"number":2,"key":"OLD-2","title":"Ship it","description":"","lane_id":2,"rank":65536,"priority":"none","assignee_id":null,"labels":[],"due_on":null,"cycle_id":null,"modules":[],"archived":false,"version":1,"created_by":"ana","created_at":"2025-01-02T03:04:05Z"}],"handoffs":[],"pages":[],"environments":[],"releases":[],"pipelines":[],"deployments":[],"connections":[],"mappings":[]}"#;
    let checksum = mission_control::snapshot::model::checksum(payload.as_bytes());
    let header = serde_json::json!({
        "format": "mission-control-snapshot", "format_version": 1, "checksum": checksum,
        "project_key": "OLD", "project_name": "Old format", "snapshot_id": 7,
        "created_at": "2025-01-02T03:04:05Z", "created_by": "ana", "label": "", "reason": "manual",
        "counts": {}, "exported_at": "2025-01-02T03:04:05Z", "layout": "",
    });
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, header.to_string().as_bytes()).unwrap();
    std::io::Write::write_all(&mut encoder, b"\n").unwrap();
    std::io::Write::write_all(&mut encoder, payload.as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_format_imports_and_restores() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let imported = store.import_snapshot(&actor("ana"), format_one_export()).await.unwrap();
    assert_eq!(imported.format_version, 1);
    assert!(store.verify_snapshot(imported.id).await.unwrap().ok);
    let report =
        store.restore_snapshot(&actor("ana"), imported.id, &RestoreOptions::default(), &no_progress).await.unwrap();
    assert_eq!(report.kinds["tasks"].created, 2);
    let task = store.task_by_key("OLD-1").await.unwrap();
    assert_eq!(task.modules, ["Billing"], "module names became module ids");
    assert_eq!(
        (task.lane.as_str(), task.assignee.as_deref(), task.labels.as_slice()),
        ("Todo", Some("ana"), &["money".to_string()][..])
    );
    // New tasks follow the restored keys.
    let project = store.project_by_key("OLD").await.unwrap();
    let next = store
        .create_task(&actor("ana"), project.id, NewTask { title: "new".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(next.key, "OLD-3");
    // A newer format than this binary knows is refused.
    let err = mission_control::snapshot::format::decode(99, b"{}").unwrap_err();
    assert!(err.contains("upgrade mctl"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_an_empty_database_restores_everything() {
    let source = TestDb::new().await;
    let store = source.store().await;
    let project_id = demo(&store).await;
    let snapshot =
        store.create_snapshot(&actor("ana"), project_id, "for the new server", Reason::Manual).await.unwrap();
    let expected = store.capture(project_id).await.unwrap();
    let file = store.export_snapshot(snapshot.id).await.unwrap();

    let target = TestDb::new().await;
    let fresh = target.store().await;
    let imported = fresh.import_snapshot(&actor("ana"), file).await.unwrap();
    fresh.restore_snapshot(&actor("ana"), imported.id, &RestoreOptions::default(), &no_progress).await.unwrap();
    let restored = fresh.capture(project_id).await.unwrap();
    let mut restored_no_agents = restored.clone();
    restored_no_agents.agents = expected.agents.clone();
    assert_restored(&expected, &restored_no_agents);
    assert_eq!(restored.agents.len(), expected.agents.len(), "referenced agents came along");
    // The board works on the restored project.
    let board = fresh.load_board(project_id, 50).await.unwrap();
    assert_eq!(
        board.iter().map(|l| l.lane.open_count as usize).sum::<usize>(),
        expected.tasks.iter().filter(|t| !t.archived).count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_commands() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["seed", "demo"]).ok();
    let created = cli.run(&["--json", "snapshot", "create", "--label", "before the change"]).ok().json();
    let id = created["id"].as_i64().unwrap().to_string();
    assert_eq!(created["reason"], "manual");
    cli.run(&["task", "move", "DEMO-4", "Done"]).ok();
    cli.run(&["task", "edit", "DEMO-8", "--title", "Oops"]).ok();
    let listed = cli.run(&["--json", "snapshot", "list"]).ok().json();
    assert_eq!(listed[0]["label"], "before the change");
    assert!(cli.run(&["snapshot", "verify", &id]).ok().stdout.contains("intact"));
    let diff = cli.run(&["--json", "snapshot", "diff", &id]).ok().json();
    let tasks = diff["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "tasks").unwrap();
    let changed: Vec<(&str, Vec<&str>)> = tasks["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (c["key"].as_str().unwrap(), c["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect())
        })
        .collect();
    assert!(changed.contains(&("DEMO-4", vec!["lane", "rank"])), "{changed:?}");
    assert!(changed.contains(&("DEMO-8", vec!["title"])), "{changed:?}");
    let dry = cli.run(&["--json", "snapshot", "restore", &id, "--dry-run"]).ok().json();
    assert_eq!(dry["kinds"]["tasks"]["restored"], 2);
    let refused = cli.run(&["snapshot", "restore", &id]);
    assert_eq!(refused.code, 2, "no terminal, no --yes: {}", refused.stderr);
    assert!(refused.stderr.contains("--yes"));
    let report = cli.run(&["--json", "snapshot", "restore", &id, "--yes"]).ok().json();
    assert_eq!(report["kinds"]["tasks"]["restored"], 2);
    let show = cli.run(&["--json", "task", "show", "DEMO-8"]).ok().json();
    assert_ne!(show["task"]["title"], "Oops");
    let file = cli.home.path().join("demo.snapshot.gz");
    cli.run(&["snapshot", "export", &id, "--out", file.to_str().unwrap()]).ok();
    assert!(file.metadata().unwrap().len() > 1000);
    let imported = cli.run(&["--json", "snapshot", "import", file.to_str().unwrap()]).ok().json();
    assert_eq!(imported["reason"], "import");
    let pruned =
        cli.run(&["--json", "snapshot", "prune", "--keep-last", "1", "--hourly", "0", "--daily", "0"]).ok().json();
    assert_eq!(pruned["pruned"].as_array().unwrap().len(), 2, "three snapshots, keep the newest");
    let missing = cli.run(&["snapshot", "show", "999"]);
    assert_eq!(missing.code, 4);
}

/// A `snapshot diff --json` kind as (added keys, removed keys, changed (key, fields)).
type KindChanges = (Vec<String>, Vec<String>, Vec<(String, Vec<String>)>);

fn kind_changes(diff: &serde_json::Value, kind: &str) -> KindChanges {
    let Some(found) = diff["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == kind) else {
        return Default::default();
    };
    let keys = |field: &str| -> Vec<String> {
        found[field].as_array().unwrap().iter().map(|pair| pair[1].as_str().unwrap().to_string()).collect()
    };
    let changed = found["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let fields = c["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect();
            (c["key"].as_str().unwrap().to_string(), fields)
        })
        .collect();
    (keys("added"), keys("removed"), changed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diff_between_two_snapshots_and_restore_by_kind_or_exactly_from_the_cli() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["seed", "demo"]).ok();
    let snapshot = |label: &str| {
        cli.run(&["--json", "snapshot", "create", "--label", label]).ok().json()["id"].as_i64().unwrap().to_string()
    };
    let first = snapshot("first");
    cli.run(&["task", "move", "DEMO-4", "Done"]).ok();
    cli.run(&["task", "edit", "DEMO-8", "--title", "Renamed"]).ok();
    let made = cli.run(&["--json", "task", "create", "--title", "Made between"]).ok().json();
    let made = made["key"].as_str().unwrap().to_string();
    let second = snapshot("second");
    cli.run(&["task", "edit", "DEMO-9", "--title", "After both"]).ok();

    // Between the two snapshots: what changed then, not what changed since.
    let diff = cli.run(&["--json", "snapshot", "diff", &first, &second]).ok().json();
    let (added, removed, changed) = kind_changes(&diff, "tasks");
    assert_eq!((added, removed), (vec![made.clone()], vec![]));
    let keys: Vec<&str> = changed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["DEMO-4", "DEMO-8"], "{changed:?}");
    assert!(changed.contains(&("DEMO-8".into(), vec!["title".into()])), "{changed:?}");
    // The other way round, the task made between them was removed.
    let back = cli.run(&["--json", "snapshot", "diff", &second, &first]).ok().json();
    assert_eq!(kind_changes(&back, "tasks").1, [made.as_str()]);
    // Against now, the later edit shows too.
    let since = cli.run(&["--json", "snapshot", "diff", &first, "current"]).ok().json();
    assert!(kind_changes(&since, "tasks").2.iter().any(|(k, _)| k == "DEMO-9"));
    let text = cli.run(&["snapshot", "diff", &first, &second]).ok().stdout;
    assert!(text.contains("DEMO-8") && !text.contains("DEMO-9"), "{text}");
    assert_eq!(cli.run(&["snapshot", "diff", &first, "999"]).code, 4);
    assert_eq!(cli.run(&["snapshot", "diff", &first, "yesterday"]).code, 2);

    // --kinds: only the handoffs go back.
    let handoffs = cli.run(&["--json", "handoff", "list"]).ok().json();
    let handoff = handoffs[0]["id"].as_i64().unwrap().to_string();
    cli.run(&["handoff", "cancel", &handoff]).ok();
    let report = cli.run(&["--json", "snapshot", "restore", &first, "--kinds", "handoffs", "--yes"]).ok().json();
    let kinds: Vec<&String> = report["kinds"].as_object().unwrap().keys().collect();
    assert_eq!(kinds, ["handoffs"]);
    assert_eq!(report["kinds"]["handoffs"]["restored"], 1);
    let shown = cli.run(&["--json", "handoff", "show", &handoff]).ok().json();
    assert_ne!(shown["state"], "cancelled", "{shown}");
    assert_eq!(cli.run(&["--json", "task", "show", "DEMO-8"]).ok().json()["task"]["title"], "Renamed");

    // --exact: the task made since the first snapshot is deleted, not archived.
    let report = cli.run(&["--json", "snapshot", "restore", &first, "--exact", "--yes"]).ok().json();
    assert_eq!(report["kinds"]["tasks"]["deleted"], 1);
    assert_eq!(report["kinds"]["tasks"]["set_aside"], 0);
    assert_eq!(cli.run(&["task", "show", &made]).code, 4, "{made} is gone");
    assert_ne!(cli.run(&["--json", "task", "show", "DEMO-8"]).ok().json()["task"]["title"], "Renamed");
    let unknown = cli.run(&["snapshot", "restore", &first, "--kinds", "widgets", "--yes"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_which_row_made_since_gives_its_name_back() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["seed", "demo"]).ok();
    let snapshot = cli.run(&["--json", "snapshot", "create"]).ok().json()["id"].as_i64().unwrap().to_string();
    cli.run(&["lane", "update", "Review", "--name", "Code review"]).ok();
    cli.run(&["lane", "create", "Review", "--category", "started"]).ok();

    let preview = cli.run(&["snapshot", "restore", &snapshot, "--dry-run"]).ok().stdout;
    let line = format!("lane \"Review\" made since the snapshot: would be renamed \"Review (since #{snapshot})\"");
    assert!(preview.contains(&line), "{preview}");
    assert!(preview.contains("RENAMED"), "{preview}");
    let report = cli.run(&["--json", "snapshot", "restore", &snapshot, "--yes"]).ok().json();
    assert_eq!(report["kinds"]["lanes"]["renamed"], 1);
    assert_eq!(report["renames"][0]["to"], format!("Review (since #{snapshot})"));
    let lanes = cli.run(&["--json", "lane", "list"]).ok().json();
    let names: Vec<&str> = lanes.as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"Review") && !names.contains(&"Code review"), "{names:?}");
}
