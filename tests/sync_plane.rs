//! The sync engine against a local server that speaks Plane's API, and a real
//! PostgreSQL: import, pushes, pulls, conflicts, remote deletes, lost
//! answers, provider failures, a full pass cut short, a failing neighbour
//! connection, crashes at every step, and two workers on one queue.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::time::Duration;

use common::plane::Fault;
use common::sync::{Setup, crash_worker_at, drain, make_due, mapping_of, setup, setup_with, sync, tasks, worker};
use common::{actor, github, hooks};
use mission_control::domain::{LocalKind, Priority, Provider, SyncState};
use mission_control::store::integrations::{ConnectionUpdate, NewConnection};
use mission_control::store::tasks::{NewTask, Position, TaskEdit};
use mission_control::sync::queue;
use serde_json::json;

const DAY: Duration = mission_control::sync::retry::DEFAULT_RETRY_FOR;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_import_brings_every_work_item_in_once() {
    let s = setup(1000).await;
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let imported = tasks(&s).await;
    assert_eq!(imported.len(), 1000);
    assert_eq!(s.db.count("external_mapping WHERE local_kind = 'task'").await, 1000);
    // States map to lanes by group: seeded items spread over the five groups.
    let item = &s.plane.items()[0];
    let mapping = s
        .store
        .sync_mappings(s.connection_id, LocalKind::Task)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.external_id == item["id"].as_str().unwrap())
        .unwrap();
    let task = imported.iter().find(|t| t.id == mapping.local_id).unwrap();
    assert_eq!(task.title, item["name"].as_str().unwrap());
    assert_eq!(task.priority.as_str(), item["priority"].as_str().unwrap());
    let group = s.plane.states().into_iter().find(|st| st["id"] == item["state"]).unwrap()["group"].clone();
    assert_eq!(task.lane_category.as_str(), group.as_str().unwrap());
    assert_eq!(mapping.external_key.as_deref(), Some(format!("FAKE-{}", item["sequence_id"]).as_str()));
    // Every import is audited with source sync.
    assert_eq!(s.db.count("audit_entry WHERE action = 'task.sync_create' AND source = 'sync'").await, 1000);

    // A second pass changes nothing and creates nothing remotely.
    s.plane.reset_log();
    let again = sync(&s).await;
    assert_eq!(again.failed, 0);
    assert_eq!(tasks(&s).await.len(), 1000);
    assert_eq!(s.plane.item_count(), 1000);
    assert_eq!(s.plane.count("POST", "work-items") + s.plane.count("PATCH", "work-items"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_brings_the_states_no_lane_stands_for_as_lanes() {
    let s = setup(0).await;
    let review = s.plane.add_state("In Review", "started");
    let item = s.plane.create_item(json!({"name": "Under review", "state": review}));
    let cancelled = s.plane.create_item(json!({"name": "Dropped", "state": s.plane.state_id("cancelled")}));
    let client = s.db.client().await;

    // The dry run says which lanes the first pass would make, and makes none.
    let mut plane_sync = mission_control::sync::plane::PlaneSync::load_with(
        &s.store,
        s.store.connection_by_id(s.connection_id).await.unwrap(),
        mission_control::sync::providers::http::RateLimiter::new(0),
        false,
    )
    .await
    .unwrap();
    let plan = plane_sync.plan().await.unwrap();
    assert_eq!(plan.lanes_to_create, ["In Review (started)", "Cancelled (cancelled)"]);
    let lanes_before = s.db.count("lane").await;
    plane_sync.refresh().await.unwrap();
    assert_eq!(s.db.count("lane").await, lanes_before);

    assert_eq!(sync(&s).await.failed, 0);
    let lanes = s.store.list_lanes(s.project_id).await.unwrap();
    let names: Vec<&str> = lanes.iter().map(|l| l.name.as_str()).collect();
    // Default lanes stand for Backlog, Todo, In Progress and Done; the others come in, in group order.
    assert_eq!(names, ["Inbox", "Ready", "In Progress", "Review", "Blocked", "In Review", "Done", "Cancelled"]);
    let lane_of = |id: &str| {
        let id = id.to_string();
        let s = &s;
        async move {
            let m = s.store.sync_mappings(s.connection_id, LocalKind::Task).await.unwrap();
            let local = m.into_iter().find(|m| m.external_id == id).unwrap().local_id;
            tasks(s).await.into_iter().find(|t| t.id == local).unwrap().lane
        }
    };
    assert_eq!(lane_of(item["id"].as_str().unwrap()).await, "In Review");
    assert_eq!(lane_of(cancelled["id"].as_str().unwrap()).await, "Cancelled");
    let made: i64 = client
        .query_one("SELECT count(*) FROM audit_entry WHERE action = 'lane.create' AND source = 'sync'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(made, 2, "lanes made by the import are audited as sync");

    // The lane and the state stay paired both ways: a task moved into Review goes to
    // Plane's first started state, one moved into In Review to In Review.
    let task = tasks(&s).await.into_iter().find(|t| t.title == "Dropped").unwrap();
    s.store.move_task(&actor("bo"), &task.key, Some("In Review"), Position::Bottom, None).await.unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(s.plane.item(cancelled["id"].as_str().unwrap()).unwrap()["state"], review.as_str());
    // A second first-pass check makes no more lanes.
    assert_eq!(s.db.count("lane").await, lanes_before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_edits_are_pushed_and_new_tasks_created_remotely() {
    let s = setup(5).await;
    sync(&s).await;
    let key = tasks(&s).await[0].key.clone();
    let edit = TaskEdit { title: Some("Renamed here".into()), priority: Some(Priority::Urgent), ..TaskEdit::default() };
    s.store.edit_task(&actor("bo"), &key, edit, None).await.unwrap();
    s.store.move_task(&actor("bo"), &key, Some("Done"), Position::Top, None).await.unwrap();
    s.store.assign_task(&actor("bo"), &key, Some("ana"), None).await.unwrap();
    let created = s
        .store
        .create_task(
            &actor("bo"),
            s.project_id,
            NewTask { title: "Made here".into(), labels: vec!["ops".into()], ..NewTask::default() },
        )
        .await
        .unwrap();
    // The outbox queued both tasks in the same transactions as the edits.
    assert_eq!(
        s.db.count(&format!(
            "sync_job WHERE key IN ('task:{}', 'task:{}')",
            mapping_of(&s, &key).await.local_id,
            created.id
        ))
        .await,
        2
    );
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);

    let remote = s.plane.item(&mapping_of(&s, &key).await.external_id).unwrap();
    assert_eq!(remote["name"], "Renamed here");
    assert_eq!(remote["priority"], "urgent");
    assert_eq!(remote["state"], json!(s.plane.state_id("completed")));
    let ana = s.plane.members().into_iter().find(|m| m["display_name"] == "ana").unwrap()["id"].clone();
    assert_eq!(remote["assignees"], json!([ana]));

    let made = s.plane.find_by_external("mission-control", &created.id.to_string()).expect("created in Plane");
    assert_eq!(made["name"], "Made here");
    assert_eq!(made["labels"], json!([s.plane.label_id("ops").expect("the label was created in Plane")]));
    assert_eq!(mapping_of(&s, &created.key).await.external_id, made["id"].as_str().unwrap());
    // Pushing is not echoed back as a change.
    s.plane.reset_log();
    let quiet = sync(&s).await;
    assert_eq!(quiet.failed, 0);
    assert_eq!(s.plane.count("PATCH", "work-items") + s.plane.count("POST", "work-items"), 0);
    assert_eq!(s.store.task_by_key(&key).await.unwrap().title, "Renamed here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_edits_are_pulled_with_source_sync() {
    let s = setup(3).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    s.plane.edit_item(
        &mapping.external_id,
        json!({"name": "Renamed in Plane", "priority": "high", "state": s.plane.state_id("started")}),
    );
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let after = s.store.task_by_key(&task.key).await.unwrap();
    assert_eq!(after.title, "Renamed in Plane");
    assert_eq!(after.priority, Priority::High);
    assert_eq!(after.lane_category.as_str(), "started");
    assert_eq!(
        s.db.count(&format!("audit_entry WHERE action = 'task.sync' AND source = 'sync' AND entity_id = {}", task.id))
            .await,
        1
    );
    // What was pulled is not pushed back.
    assert_eq!(s.plane.count("PATCH", "work-items"), 0);
    assert_eq!(s.db.count(&format!("sync_job WHERE key = 'task:{}'", task.id)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_both_sides_edit_is_a_conflict_an_operator_resolves() {
    let s = setup_with(2, "manual").await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("Ours".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    s.plane.edit_item(&mapping.external_id, json!({"name": "Theirs"}));
    sync(&s).await;
    let conflicts = s.store.sync_conflicts(s.project_id, false).await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(
        (conflicts[0].field.as_str(), conflicts[0].local_value.clone(), conflicts[0].remote_value.clone()),
        ("title", Some(json!("Ours")), Some(json!("Theirs")))
    );
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::Conflict);
    // Neither side was overwritten while it is open.
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Ours");
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "Theirs");

    s.store.sync_resolve_conflict(&actor("ops"), s.project_id, conflicts[0].id, true).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "Ours");
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Ours");
    assert!(s.store.sync_conflicts(s.project_id, false).await.unwrap().is_empty());
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::InSync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_side_wins_a_conflict_by_default_and_it_is_recorded() {
    let s = setup(2).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("Ours".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    // Plane's edit is a minute later than ours.
    s.plane.advance_clock(Duration::from_secs(60));
    s.plane.edit_item(&mapping.external_id, json!({"name": "Theirs, later"}));
    sync(&s).await;
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Theirs, later");
    let history = s.store.sync_conflicts(s.project_id, true).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].resolution.as_deref(), Some("remote"));
    assert!(history[0].resolved_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_delete_archives_the_task_on_a_full_pass_and_is_not_recreated() {
    let s = setup(3).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    assert!(s.plane.delete_item(&mapping.external_id));
    queue::enqueue(&s.store, s.connection_id, queue::FULL).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(s.store.task_by_key(&task.key).await.unwrap().archived);
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::Deleted);
    // A later local edit does not bring it back in Plane.
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("Still here".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    sync(&s).await;
    assert_eq!(s.plane.item_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_adopted_not_duplicated() {
    let s = setup(0).await;
    sync(&s).await;
    let task = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: "Once only".into(), ..NewTask::default() })
        .await
        .unwrap();
    s.plane.fail_next(("POST", "work-items"), Fault::ApplyThenFail(502));
    let first = sync(&s).await;
    assert_eq!(first.failed, 1, "the lost answer fails the attempt");
    assert_eq!(s.plane.item_count(), 1, "but Plane made the item");
    make_due(&s).await;
    let second = sync(&s).await;
    assert_eq!(second.failed, 0, "{:?}", second.errors);
    assert_eq!(s.plane.item_count(), 1, "no duplicate");
    let item = s.plane.find_by_external("mission-control", &task.id.to_string()).unwrap();
    assert_eq!(mapping_of(&s, &task.key).await.external_id, item["id"].as_str().unwrap());
    assert_eq!(s.db.count("external_mapping WHERE local_kind = 'task'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failures_are_retried_and_permanent_ones_become_dead_letters() {
    let s = setup(2).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    let edit = |title: &str| TaskEdit { title: Some(title.into()), ..TaskEdit::default() };

    // 429 with Retry-After: the job waits at least that long and the connection pauses.
    s.store.edit_task(&actor("bo"), &task.key, edit("after a 429"), None).await.unwrap();
    s.plane.fail_next(("PATCH", "work-items/*"), Fault::RateLimited { retry_after_secs: 30 });
    let report = sync(&s).await;
    assert_eq!((report.failed, report.deferred >= 1), (0, true), "put off, not failed: {report:?}");
    let client = s.db.client().await;
    let waits: bool = client
        .query_one(
            &format!(
                "SELECT available_at >= now() + interval '25 seconds' FROM sync_job WHERE key = 'task:{}'",
                task.id
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(waits, "the retry honours Retry-After");
    assert_eq!(s.db.count("sync_cursor WHERE paused_until > now()").await, 1, "the connection pauses");
    make_due(&s).await;
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "after a 429");

    // 5xx and a malformed answer: transient, retried.
    s.store.edit_task(&actor("bo"), &task.key, edit("after a 503"), None).await.unwrap();
    s.plane.fail_next(("GET", "work-items/*"), Fault::Status(503));
    assert_eq!(drain(&s).await.failed, 1);
    s.plane.fail_next(("GET", "work-items/*"), Fault::Malformed);
    make_due(&s).await;
    assert_eq!(drain(&s).await.failed, 1);
    make_due(&s).await;
    assert_eq!(drain(&s).await.failed, 0);
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "after a 503");
    assert_eq!(s.db.count("sync_job WHERE dead").await, 0);

    // A 400 will not heal: a dead letter at once, with the error; an operator retries it.
    s.store.edit_task(&actor("bo"), &task.key, edit("refused"), None).await.unwrap();
    s.plane.fail_next(("PATCH", "work-items/*"), Fault::Status(400));
    drain(&s).await;
    let dead = queue::dead_letters(&s.store, s.project_id).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].key, format!("task:{}", task.id));
    assert!(dead[0].last_error.as_deref().is_some_and(|e| e.contains("400")), "{dead:?}");
    assert_eq!(queue::retry_dead(&s.store, s.project_id, Some(dead[0].id)).await.unwrap(), 1);
    assert_eq!(drain(&s).await.failed, 0);
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "refused");
    // A slow answer is only slow.
    s.store.edit_task(&actor("bo"), &task.key, edit("slowly"), None).await.unwrap();
    s.plane.fail_next(("PATCH", "work-items/*"), Fault::Delay(Duration::from_millis(300)));
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], "slowly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_any_step_of_a_create_leaves_one_remote_object_and_one_mapping() {
    for step in ["job.claimed", "task.before_create", "task.created_remotely", "task.linked"] {
        let s = setup(0).await;
        sync(&s).await;
        let task = s
            .store
            .create_task(
                &actor("bo"),
                s.project_id,
                NewTask { title: format!("Crash at {step}"), ..NewTask::default() },
            )
            .await
            .unwrap();
        crash_worker_at(&s, step).await;
        let report = sync(&s).await;
        assert_eq!(report.failed, 0, "{step}: {:?}", report.errors);
        assert_eq!(s.plane.item_count(), 1, "{step}: one remote object");
        assert_eq!(s.db.count("external_mapping WHERE local_kind = 'task'").await, 1, "{step}: one mapping");
        let item = s.plane.find_by_external("mission-control", &task.id.to_string()).unwrap();
        assert_eq!(item["name"], format!("Crash at {step}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_any_step_of_an_update_converges_after_restart() {
    for step in ["job.claimed", "task.before_push", "task.pushed", "task.push_recorded"] {
        let s = setup(1).await;
        sync(&s).await;
        let task = tasks(&s).await[0].clone();
        let title = format!("Edited before a crash at {step}");
        s.store
            .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some(title.clone()), ..TaskEdit::default() }, None)
            .await
            .unwrap();
        crash_worker_at(&s, step).await;
        let report = sync(&s).await;
        assert_eq!(report.failed, 0, "{step}: {:?}", report.errors);
        assert_eq!(s.plane.item_count(), 1, "{step}");
        assert_eq!(s.db.count("external_mapping WHERE local_kind = 'task'").await, 1, "{step}");
        let mapping = mapping_of(&s, &task.key).await;
        assert_eq!(s.plane.item(&mapping.external_id).unwrap()["name"], title.as_str(), "{step}");
        assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, title, "{step}");
        assert!(
            s.store.sync_conflicts(s.project_id, true).await.unwrap().is_empty(),
            "{step}: our own push is no conflict"
        );
        assert_eq!(mapping.sync_state, SyncState::InSync, "{step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_one_queue_without_double_pushes() {
    let s = setup(40).await;
    sync(&s).await;
    for task in tasks(&s).await {
        s.store
            .edit_task(
                &actor("bo"),
                &task.key,
                TaskEdit { title: Some(format!("{} (edited)", task.title)), ..TaskEdit::default() },
                None,
            )
            .await
            .unwrap();
    }
    s.plane.reset_log();
    let (mut a, mut b) = (worker(&s, "a", None), worker(&s, "b", None));
    let (ra, rb) = tokio::join!(a.drain(), b.drain());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.failed + rb.failed, 0);
    assert_eq!(ra.jobs + rb.jobs, 40, "every key once");
    assert!(ra.jobs > 0 && rb.jobs > 0, "both workers took keys ({} and {})", ra.jobs, rb.jobs);
    let patches: Vec<String> = s.plane.requests().into_iter().filter(|r| r.method == "PATCH").map(|r| r.path).collect();
    let distinct: std::collections::BTreeSet<&String> = patches.iter().collect();
    assert_eq!(patches.len(), 40, "one PATCH per change");
    assert_eq!(distinct.len(), 40, "no item pushed twice");
    for item in s.plane.items() {
        assert!(item["name"].as_str().unwrap().ends_with("(edited)"));
    }
}

/// The queue row of a task's key: (generation, due now, dead).
async fn task_job(s: &Setup, task_id: i64) -> (i32, bool, bool) {
    let row =
        s.db.client()
            .await
            .query_one(
                "SELECT generation, available_at <= now(), dead FROM sync_job WHERE key = $1",
                &[&format!("task:{task_id}")],
            )
            .await
            .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Claims due keys as worker `w` and returns the task's (others go back).
async fn claim_task(s: &Setup, task_id: i64) -> queue::Job {
    let mut task = None;
    for job in queue::claim(&s.store, "w", 100, Duration::from_secs(60)).await.unwrap() {
        if job.key == format!("task:{task_id}") {
            task = Some(job);
        } else {
            queue::finish(&s.store, "w", &job, &queue::Outcome::Again(Duration::from_secs(600)), DAY).await.unwrap();
        }
    }
    task.expect("the task's key was due")
}

async fn retitle(s: &Setup, key: &str, title: &str) {
    s.store
        .edit_task(&actor("bo"), key, TaskEdit { title: Some(title.into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_edits_coalesce_into_one_job() {
    let s = setup(1).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    for n in 0..10 {
        retitle(&s, &task.key, &format!("edit {n}")).await;
    }
    assert_eq!(s.db.count(&format!("sync_job WHERE key = 'task:{}'", task.id)).await, 1);
    // Due and unclaimed: later edits leave the row as the first one wrote it.
    assert_eq!(task_job(&s, task.id).await, (1, true, false));
    s.plane.reset_log();
    sync(&s).await;
    assert_eq!(s.plane.count("PATCH", "work-items"), 1);
    assert_eq!(s.plane.item(&mapping_of(&s, &task.key).await.external_id).unwrap()["name"], "edit 9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reruns_a_claimed_key_and_wakes_a_waiting_or_dead_one() {
    let s = setup(1).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    retitle(&s, &task.key, "first").await;

    // Claimed: an edit while the worker holds the key makes it run again.
    let job = claim_task(&s, task.id).await;
    retitle(&s, &task.key, "second").await;
    assert_eq!(task_job(&s, task.id).await.0, 2);
    assert!(queue::finish(&s.store, "w", &job, &queue::Outcome::Done, DAY).await.unwrap());
    assert_eq!(s.db.count(&format!("sync_job WHERE key = 'task:{}'", task.id)).await, 1, "kept to run again");

    // Waiting out a backoff: an edit makes it due now.
    let job = claim_task(&s, task.id).await;
    let failed = queue::Outcome::Failed { error: "503".into(), transient: true, not_before: None };
    queue::finish(&s.store, "w", &job, &failed, DAY).await.unwrap();
    assert!(!task_job(&s, task.id).await.1, "backing off");
    retitle(&s, &task.key, "third").await;
    assert!(task_job(&s, task.id).await.1, "due again");

    // Dead: an edit brings it back.
    let job = claim_task(&s, task.id).await;
    let refused = queue::Outcome::Failed { error: "422".into(), transient: false, not_before: None };
    queue::finish(&s.store, "w", &job, &refused, DAY).await.unwrap();
    assert!(task_job(&s, task.id).await.2, "a dead letter");
    retitle(&s, &task.key, "fourth").await;
    let (_, due, dead) = task_job(&s, task.id).await;
    assert!(due && !dead, "back from the dead letters");

    s.plane.reset_log();
    sync(&s).await;
    assert_eq!(s.plane.item(&mapping_of(&s, &task.key).await.external_id).unwrap()["name"], "fourth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pass_reads_one_page_per_object_type() {
    let s = setup(300).await;
    sync(&s).await;
    // Time passes; one item changes, and is pulled.
    s.plane.advance_clock(Duration::from_secs(600));
    let first = s.plane.items()[0]["id"].as_str().unwrap().to_string();
    s.plane.edit_item(&first, json!({"name": "Changed later"}));
    assert_eq!(sync(&s).await.failed, 0);
    s.plane.reset_log();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0);
    let requests: Vec<_> = s.plane.requests();
    let listing_work_items = requests.iter().filter(|r| r.method == "GET" && r.path.ends_with("/work-items/")).count();
    assert_eq!(listing_work_items, 1, "{requests:?}");
    assert_eq!(requests.iter().filter(|r| r.method != "GET").count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pass_with_a_failed_page_infers_no_deletion() {
    // Three pages of work items (Plane's pages hold 1000).
    let s = setup(2100).await;
    assert_eq!(sync(&s).await.failed, 0);
    let task = tasks(&s).await[0].clone();
    let mapping = mapping_of(&s, &task.key).await;
    assert!(s.plane.delete_item(&mapping.external_id));

    // The full listing's first page is answered (a zero delay), its second fails.
    s.plane.fail_next(("GET", "work-items"), Fault::Delay(Duration::ZERO));
    s.plane.fail_next(("GET", "work-items"), Fault::Status(502));
    s.plane.reset_log();
    queue::enqueue(&s.store, s.connection_id, queue::FULL).await.unwrap();
    let report = drain(&s).await;
    assert_eq!((report.jobs, report.failed), (1, 1), "{report:?}");
    let failed: Vec<_> = s.plane.requests().into_iter().filter(|r| r.status == 502).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].path.ends_with("/work-items/") && failed[0].query.contains("cursor=1000:1:0"), "{failed:?}");
    // Nothing is archived or marked deleted, not even the item that is gone,
    // and no absent item was looked up to confirm a deletion.
    assert_eq!(s.db.count("task WHERE archived").await, 0);
    assert_eq!(s.db.count("external_mapping WHERE sync_state = 'deleted'").await, 0);
    let lookups = s.plane.requests().into_iter().filter(|r| r.method == "GET" && !r.path.ends_with("/work-items/"));
    assert_eq!(lookups.filter(|r| r.path.contains("/work-items/")).count(), 0);

    // The next full pass reads every page and finds the deletion, and only it.
    queue::enqueue(&s.store, s.connection_id, queue::FULL).await.unwrap();
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(report.passes.len(), 1);
    assert!(report.passes[0].full);
    assert_eq!(report.passes[0].objects.deleted_remotely, 1);
    assert!(s.store.task_by_key(&task.key).await.unwrap().archived);
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::Deleted);
    assert_eq!(s.db.count("task WHERE archived").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_connection_never_holds_up_another() {
    let s = setup(2).await;
    assert_eq!(sync(&s).await.failed, 0);
    let (first, second) = {
        let all = tasks(&s).await;
        (all[0].clone(), all[1].clone())
    };
    // A second connection of the project, to a GitHub whose server is gone.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone_url = format!("http://{}", gone.local_addr().unwrap());
    drop(gone);
    let token = hooks::secret_file(github::TOKEN);
    let config = json!({ "repo": "acme/app", "requests_per_minute": 0, "write_interval_ms": 0 });
    let new = NewConnection {
        key: "gh".into(),
        provider: Provider::Github,
        base_url: gone_url,
        config,
        secret_ref: Some(token.reference.clone()),
    };
    let gh = s.store.add_connection(&actor("ops"), s.project_id, new).await.unwrap().id;
    let client = s.db.client().await;
    // Its keys are claimed first: they are older.
    let older = format!("UPDATE sync_job SET available_at = now() - interval '1 minute' WHERE connection_id = {gh}");
    let rename = |title: &str| TaskEdit { title: Some(title.into()), ..TaskEdit::default() };

    // Local work queues keys on both connections.
    s.store.edit_task(&actor("bo"), &first.key, rename("Renamed while GitHub is down"), None).await.unwrap();
    let created = s
        .store
        .create_task(
            &actor("bo"),
            s.project_id,
            NewTask { title: "Made while GitHub is down".into(), ..NewTask::default() },
        )
        .await
        .unwrap();
    let mut worker = worker(&s, "test", None);
    worker.schedule(true).await.unwrap();
    client.batch_execute(&older).await.unwrap();
    let report = worker.drain().await.unwrap();
    assert!(report.failed >= 3, "the dead server's pull and both tasks: {report:?}");
    assert!(report.errors.iter().all(|e| e.contains("could not connect")), "{:?}", report.errors);
    // Plane got all of its work in the same drain.
    let plane_item = |key: &str| {
        let key = key.to_string();
        let s = &s;
        async move { s.plane.item(&mapping_of(s, &key).await.external_id).unwrap() }
    };
    assert_eq!(plane_item(&first.key).await["name"], "Renamed while GitHub is down");
    assert_eq!(plane_item(&created.key).await["name"], "Made while GitHub is down");
    let stuck = |connection: i64| format!("sync_job WHERE connection_id = {connection} AND (attempts > 0 OR dead)");
    assert_eq!(s.db.count(&stuck(s.connection_id)).await, 0);
    // The dead connection's keys wait for another try; none is given up on.
    assert!(s.db.count(&stuck(gh)).await >= 3);
    assert_eq!(s.db.count(&format!("sync_job WHERE connection_id = {gh} AND dead")).await, 0);

    // The server is back but throttles: its connection pauses, Plane's does not.
    let forge = github::start().await;
    forge.fail_next("*", "", common::forge::Fault::RetryAfter(120));
    let moved = ConnectionUpdate { base_url: Some(forge.url()), ..ConnectionUpdate::default() };
    s.store.update_connection(&actor("ops"), "gh", moved).await.unwrap();
    s.store.edit_task(&actor("bo"), &second.key, rename("Renamed while GitHub throttles"), None).await.unwrap();
    client.batch_execute(&older).await.unwrap();
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.deferred >= 1, "{report:?}");
    assert_eq!(forge.requests().len(), 1, "one 429, then the connection waits");
    assert_eq!(plane_item(&second.key).await["name"], "Renamed while GitHub throttles");
    let paused = |connection: i64| format!("sync_cursor WHERE connection_id = {connection} AND paused_until > now()");
    assert_eq!(s.db.count(&paused(gh)).await, 1);
    assert_eq!(s.db.count(&paused(s.connection_id)).await, 0);
    assert_eq!(s.db.count(&stuck(s.connection_id)).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycles_modules_and_membership_come_in_and_local_membership_goes_out() {
    let s = setup(4).await;
    let ids: Vec<String> = s.plane.items().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    let day = |n: i64| (time::OffsetDateTime::now_utc().date() + time::Duration::days(n)).to_string();
    let cycle = s.plane.create_cycle(json!({"name": "Sprint 7", "start_date": day(1), "end_date": day(14)}));
    let module = s.plane.create_module(json!({"name": "Billing", "status": "in-progress", "target_date": day(30)}));
    let (cycle_id, module_id) = (cycle["id"].as_str().unwrap(), module["id"].as_str().unwrap());
    // Items 0 and 1 in the cycle; 1 and 2 in the module; 3 in neither.
    s.plane.add_to_cycle(cycle_id, &[&ids[0], &ids[1]]);
    s.plane.add_to_module(module_id, &[&ids[1], &ids[2]]);

    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let cycles = s.store.list_cycles(s.project_id, time::OffsetDateTime::now_utc().date()).await.unwrap();
    assert_eq!(cycles.len(), 1);
    assert_eq!(
        (cycles[0].name.as_str(), cycles[0].starts_on.to_string(), cycles[0].ends_on.to_string()),
        ("Sprint 7", day(1), day(14))
    );
    let modules = s.store.list_modules(s.project_id).await.unwrap();
    assert_eq!(modules.len(), 1);
    assert_eq!((modules[0].name.as_str(), modules[0].status.as_str()), ("Billing", "in-progress"));
    assert_eq!(modules[0].target_on.map(|d| d.to_string()), Some(day(30)));
    for (kind, local, remote) in
        [(LocalKind::Cycle, cycles[0].id, cycle_id), (LocalKind::Module, modules[0].id, module_id)]
    {
        let mapping = s.store.sync_mapping(s.connection_id, kind, local).await.unwrap().expect("linked");
        assert_eq!(mapping.external_id, remote);
    }
    let task_of = |id: &str| {
        let id = id.to_string();
        let s = &s;
        async move {
            let mappings = s.store.sync_mappings(s.connection_id, LocalKind::Task).await.unwrap();
            let local = mappings.into_iter().find(|m| m.external_id == id).unwrap().local_id;
            s.store.sync_read_task(local).await.unwrap().0
        }
    };
    let membership = |task: mission_control::domain::Task| (task.cycle, task.modules);
    let sprint = || Some("Sprint 7".to_string());
    let billing = || vec!["Billing".to_string()];
    assert_eq!(membership(task_of(&ids[0]).await), (sprint(), vec![]));
    assert_eq!(membership(task_of(&ids[1]).await), (sprint(), billing()));
    assert_eq!(membership(task_of(&ids[2]).await), (None, billing()));
    assert_eq!(membership(task_of(&ids[3]).await), (None, vec![]));

    // Local membership changes: 3 joins both, 0 leaves the cycle, 2 the module.
    let edit = |task: &mission_control::domain::Task, change: TaskEdit| {
        let (key, s) = (task.key.clone(), &s);
        async move { s.store.edit_task(&actor("bo"), &key, change, None).await.unwrap() }
    };
    let join = TaskEdit { cycle: Some(sprint()), add_modules: billing(), ..TaskEdit::default() };
    edit(&task_of(&ids[3]).await, join).await;
    edit(&task_of(&ids[0]).await, TaskEdit { cycle: Some(None), ..TaskEdit::default() }).await;
    edit(&task_of(&ids[2]).await, TaskEdit { remove_modules: billing(), ..TaskEdit::default() }).await;
    s.plane.reset_log();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.plane.cycle_items(cycle_id), [ids[1].clone(), ids[3].clone()]);
    assert_eq!(s.plane.module_items(module_id), [ids[1].clone(), ids[3].clone()]);
    assert_eq!(s.plane.cycle_of(&ids[0]), None);
    for (method, path) in
        [("POST", "cycle-issues"), ("DELETE", "cycle-issues"), ("POST", "module-issues"), ("DELETE", "module-issues")]
    {
        assert_eq!(s.plane.count(method, path), 1, "{method} {path}: {:?}", s.plane.requests());
    }

    // Nothing comes back or goes out again.
    s.plane.reset_log();
    queue::enqueue(&s.store, s.connection_id, queue::FULL).await.unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(s.plane.count("*", "-issues") - s.plane.count("GET", "-issues"), 0, "{:?}", s.plane.requests());
    assert_eq!(membership(task_of(&ids[3]).await), (sprint(), billing()));
    assert_eq!(membership(task_of(&ids[0]).await), (None, vec![]));
    assert_eq!(membership(task_of(&ids[2]).await), (None, vec![]));
}
