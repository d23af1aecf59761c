//! The sync engine against the failures the real world brings: a database
//! that goes away under a running worker, one object the provider refuses,
//! a crash between a create and its mapping with an edit made meanwhile,
//! work that existed before its connection, and outages measured in hours.
//! Each test is a defect an operator saw, written down before it was fixed.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::time::Duration;

use common::plane::Fault;
use common::repo;
use common::sync::{
    Setup, crash_project_worker_at, crash_worker_at, drain, make_due, mapping_of, quick_runner, setup, sync, tasks,
    unconnected, worker,
};
use common::{actor, github};
use mission_control::domain::{LocalKind, Priority, Provider, SyncState};
use mission_control::store::planning::NewModule;
use mission_control::store::tasks::{NewTask, Position, TaskEdit};
use mission_control::sync::plane::PlaneSync;
use mission_control::sync::providers::http::RateLimiter;
use mission_control::sync::queue;
use serde_json::json;

/// The queue row of `key`: (dead, attempts, last error).
async fn job(s: &Setup, key: &str) -> Option<(bool, i32, Option<String>)> {
    let row =
        s.db.client()
            .await
            .query_opt("SELECT dead, attempts, last_error FROM sync_job WHERE key = $1", &[&key])
            .await
            .unwrap();
    row.map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// Makes the recurring pull due now, as `sync run`'s next poll would find it.
async fn pull_due(s: &Setup) {
    s.db.client().await.batch_execute("UPDATE sync_job SET available_at = now() WHERE key = 'pull'").await.unwrap();
}

/// What `sync run` does on each turn: make sure the passes are scheduled
/// (never forcing one), then work off what is due.
async fn turn(s: &Setup) -> mission_control::sync::worker::DrainReport {
    let mut worker = worker(s, "runner", None);
    worker.schedule(false).await.unwrap();
    worker.drain().await.unwrap()
}

/// Waits up to `limit` for `check` to hold, polling.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

fn retitle(title: &str) -> TaskEdit {
    TaskEdit { title: Some(title.into()), ..TaskEdit::default() }
}

// 1. A database error must not end a running worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_outlives_database_errors_and_pushes_what_came_after() {
    let s = setup(1).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let external = mapping_of(&s, &task.key).await.external_id;

    let mut runner = quick_runner(&s.store, s.project_id);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        runner
            .run(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    // The queue table goes away under the worker for a while: every query it makes fails.
    let client = s.db.client().await;
    client.batch_execute("ALTER TABLE sync_job RENAME TO sync_job_away").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!running.is_finished(), "the worker is still there while the database fails");
    client.batch_execute("ALTER TABLE sync_job_away RENAME TO sync_job").await.unwrap();

    s.store.edit_task(&actor("bo"), &task.key, retitle("Made after the outage"), None).await.unwrap();
    let pushed = eventually(Duration::from_secs(30), || async {
        s.plane.item(&external).is_some_and(|i| i["name"] == "Made after the outage")
    })
    .await;
    assert!(pushed, "an edit made after the database came back is pushed");
    assert!(!running.is_finished());
    let _ = stop_tx.send(());
    let ended = tokio::time::timeout(Duration::from_secs(10), running).await.expect("it stops when asked").unwrap();
    assert!(ended.is_ok(), "a stop asked for is a clean end: {ended:?}");
}

// 1'. A worker that cannot go on says so and ends, so its process can exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_meets_a_newer_schema_after_an_outage_ends_with_the_reason() {
    let s = setup(0).await;
    let mut runner = quick_runner(&s.store, s.project_id);
    let running = tokio::spawn(async move { runner.run(std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = s.db.client().await;
    // A newer mctl migrated the database while the queue was away.
    client.batch_execute("ALTER TABLE sync_job RENAME TO sync_job_away").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    client
        .batch_execute(
            "INSERT INTO mctl_schema_history (version, name, applied_on, checksum) VALUES (9999, 'future', '', '0');
             ALTER TABLE sync_job_away RENAME TO sync_job",
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(30), running).await.expect("the worker ends").unwrap();
    let error = ended.expect_err("a worker that cannot go on returns why").to_string();
    assert!(error.contains("upgrade mctl"), "{error}");
    let state: String =
        client.query_one("SELECT state FROM sync_worker WHERE id = 'runner'", &[]).await.unwrap().get(0);
    assert_eq!(state, "stopped");
}

// 2a. A cycle Plane refuses is that cycle's failure, not the connection's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cycle_is_recorded_on_the_cycle_and_remote_changes_keep_arriving() {
    let s = setup(2).await;
    sync(&s).await;
    let start = time::OffsetDateTime::now_utc().date();
    let cycle = s
        .store
        .create_cycle(&actor("bo"), s.project_id, "Sprint 9", start, start + time::Duration::days(14), "")
        .await
        .unwrap();
    s.plane.fail_times(("POST", "cycles"), Fault::Status(400), 1000);
    pull_due(&s).await;
    turn(&s).await;

    let (pull_dead, _, _) = job(&s, "pull").await.expect("the pull stays scheduled");
    assert!(!pull_dead, "one refused cycle never kills the connection's pull");
    let (_, attempts, error) =
        job(&s, &format!("cycle:{}", cycle.id)).await.expect("the failure is on the cycle's key");
    assert!(attempts >= 1);
    let error = error.unwrap_or_default();
    assert!(error.contains("POST") && error.contains("/cycles/") && error.contains("400"), "{error}");

    // Remote changes still come in.
    let item = s.plane.items()[0]["id"].as_str().unwrap().to_string();
    s.plane.edit_item(&item, json!({"name": "Renamed in Plane"}));
    pull_due(&s).await;
    turn(&s).await;
    assert!(tasks(&s).await.iter().any(|t| t.title == "Renamed in Plane"), "the pass went on without the cycle");

    // Once Plane takes it, the cycle goes out and its failure is gone.
    s.plane.clear_faults();
    make_due(&s).await;
    pull_due(&s).await;
    turn(&s).await;
    assert!(s.plane.cycles().iter().any(|c| c["name"] == "Sprint 9"));
    assert_eq!(job(&s, &format!("cycle:{}", cycle.id)).await, None);
}

// 2a'. The same for a module, and for a module an operator can retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_module_is_a_dead_letter_of_its_own() {
    let s = setup(1).await;
    sync(&s).await;
    let module = s
        .store
        .create_module(
            &actor("bo"),
            s.project_id,
            NewModule {
                name: "Payments".into(),
                description: String::new(),
                status: mission_control::domain::ModuleStatus::Planned,
                lead: None,
                target_on: None,
            },
        )
        .await
        .unwrap();
    s.plane.fail_times(("POST", "modules"), Fault::Status(400), 1000);
    pull_due(&s).await;
    turn(&s).await;
    let dead = queue::dead_letters(&s.store, s.project_id).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.key.as_str()).collect::<Vec<_>>(), [format!("module:{}", module.id)]);
    assert!(!job(&s, "pull").await.unwrap().0);
    s.plane.clear_faults();
    assert_eq!(queue::retry_dead(&s.store, s.project_id, Some(dead[0].id)).await.unwrap(), 1);
    drain(&s).await;
    assert!(s.plane.modules().iter().any(|m| m["name"] == "Payments"));
    assert!(queue::dead_letters(&s.store, s.project_id).await.unwrap().is_empty());
}

// 2b. A dead pull comes back by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_scheduled_pass_is_revived_by_the_scheduler() {
    let s = setup(1).await;
    sync(&s).await;
    s.db.client()
        .await
        .batch_execute(
            "UPDATE sync_job SET dead = true, attempts = 3, last_error = 'refused',
                    updated_at = now() - interval '2 hours', available_at = now() - interval '2 hours'
             WHERE key = 'pull'",
        )
        .await
        .unwrap();
    let item = s.plane.items()[0]["id"].as_str().unwrap().to_string();
    s.plane.edit_item(&item, json!({"name": "Arrives anyway"}));
    turn(&s).await;
    assert!(!job(&s, "pull").await.unwrap().0, "the scheduler revives a dead pull");
    assert!(tasks(&s).await.iter().any(|t| t.title == "Arrives anyway"));
}

// 2c. One release the store will not take never stops a repository connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_sharing_one_name_never_stop_the_connection() {
    let forge = github::start().await;
    forge.seed(1);
    {
        let mut state = forge.state();
        for (id, tag) in [(6001, "nightly-1"), (6002, "nightly-2"), (6003, "nightly-3")] {
            state.releases.push(json!({
                "id": id, "tag_name": tag, "name": "Nightly", "draft": false, "prerelease": true,
                "target_commitish": "main", "html_url": format!("https://github.example/acme/app/releases/{tag}"),
                "published_at": "2026-01-02T12:00:00Z", "body": ""
            }));
        }
    }
    let s = repo::setup(forge, Provider::Github, "acme/app", "newest").await;
    let connection = s.store.connection_by_id(s.connection_id).await.unwrap();
    let plan = mission_control::sync::repo::AnyRepo::load(&s.store, connection, RateLimiter::new(0)).await.unwrap();
    let plan = plan.plan().await.unwrap();
    assert_eq!(plan.releases.create_local, ["Nightly", "Nightly", "Nightly"], "the plan lists provider releases");
    repo::sync(&s).await;
    let client = s.db.client().await;
    let pull_dead: bool = client.query_one("SELECT dead FROM sync_job WHERE key = 'pull'", &[]).await.unwrap().get(0);
    assert!(!pull_dead, "the pull stays alive");
    let failing: Vec<String> = client
        .query("SELECT key FROM sync_job WHERE attempts > 0 OR dead", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(failing.iter().all(|k| k.starts_with("release:")), "only a release's own key may fail: {failing:?}");
    // Issues keep coming.
    s.forge.add_issue("Opened after the nightlies", "");
    client.batch_execute("UPDATE sync_job SET available_at = now() WHERE key = 'pull'").await.unwrap();
    let mut runner = repo::worker(&s);
    runner.schedule(false).await.unwrap();
    runner.drain().await.unwrap();
    assert!(repo::tasks(&s).await.iter().any(|t| t.title == "Opened after the nightlies"));
}

// 3. An edit made after a crash between Plane's create and our mapping is pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_after_a_crash_between_create_and_mapping_is_pushed() {
    for step in ["task.created_remotely", "task.before_create", "task.linked"] {
        let s = setup(0).await;
        sync(&s).await;
        let task = s
            .store
            .create_task(&actor("bo"), s.project_id, NewTask { title: "As created".into(), ..NewTask::default() })
            .await
            .unwrap();
        crash_worker_at(&s, step).await;
        let edit = TaskEdit {
            title: Some("Edited after the crash".into()),
            priority: Some(Priority::Urgent),
            ..TaskEdit::default()
        };
        s.store.edit_task(&actor("bo"), &task.key, edit, None).await.unwrap();
        s.store.move_task(&actor("bo"), &task.key, Some("Review"), Position::Top, None).await.unwrap();
        let report = sync(&s).await;
        assert_eq!(report.failed, 0, "{step}: {:?}", report.errors);
        assert_eq!(s.plane.item_count(), 1, "{step}: no duplicate");
        let mapping = mapping_of(&s, &task.key).await;
        let item = s.plane.item(&mapping.external_id).unwrap();
        assert_eq!(item["name"], "Edited after the crash", "{step}");
        assert_eq!(item["priority"], "urgent", "{step}");
        assert_eq!(item["state"], s.plane.state_id("started"), "{step}: Review maps to a started state");
        assert_eq!(mapping.sync_state, SyncState::InSync, "{step}");
        // A full pass finds nothing left to do.
        queue::enqueue(&s.store, s.connection_id, queue::FULL).await.unwrap();
        let again = drain(&s).await;
        assert_eq!(
            again.passes.iter().map(|p| p.objects.pushed + p.objects.pulled + p.objects.conflicts).sum::<usize>(),
            0,
            "{step}"
        );
    }
}

// 3'. An update interrupted at any step, with another edit made before the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_after_a_crash_in_the_middle_of_a_push_is_pushed_too() {
    for step in ["job.claimed", "task.before_push", "task.pushed", "task.push_recorded"] {
        let s = setup(1).await;
        sync(&s).await;
        let task = tasks(&s).await[0].clone();
        s.store.edit_task(&actor("bo"), &task.key, retitle("First edit"), None).await.unwrap();
        crash_worker_at(&s, step).await;
        let edit = TaskEdit { title: Some("Second edit".into()), priority: Some(Priority::Low), ..TaskEdit::default() };
        s.store.edit_task(&actor("bo"), &task.key, edit, None).await.unwrap();
        let report = sync(&s).await;
        assert_eq!(report.failed, 0, "{step}: {:?}", report.errors);
        let mapping = mapping_of(&s, &task.key).await;
        let item = s.plane.item(&mapping.external_id).unwrap();
        assert_eq!((item["name"].as_str(), item["priority"].as_str()), (Some("Second edit"), Some("low")), "{step}");
        assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Second edit", "{step}: nothing pulled back");
        assert_eq!(mapping.sync_state, SyncState::InSync, "{step}");
        assert!(s.store.sync_conflicts(s.project_id, true).await.unwrap().is_empty(), "{step}: no conflict");
    }
}

// 3'. The same on a repository connection, at a create and in the middle of a push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_made_after_a_crash_between_issue_create_and_mapping_is_pushed() {
    let forge = github::start().await;
    let s = repo::setup(forge, Provider::Github, "acme/app", "manual").await;
    repo::sync(&s).await;
    let task = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: "As created".into(), ..NewTask::default() })
        .await
        .unwrap();
    crash_project_worker_at(&s.db, &s.store, s.project_id, false, "task.created_remotely").await;
    s.store.edit_task(&actor("bo"), &task.key, retitle("Edited after the crash"), None).await.unwrap();
    let report = repo::sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.forge.issues().len(), 1, "no duplicate");
    assert_eq!(s.forge.issues()[0].title, "Edited after the crash");

    // Under the manual policy a conflict would wait for an operator: our own
    // push, taken by GitHub and not recorded, must not look like one.
    s.store.edit_task(&actor("bo"), &task.key, retitle("First edit"), None).await.unwrap();
    crash_project_worker_at(&s.db, &s.store, s.project_id, false, "task.pushed").await;
    s.store.edit_task(&actor("bo"), &task.key, retitle("Second edit"), None).await.unwrap();
    let report = repo::sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.forge.issues()[0].title, "Second edit");
    assert!(s.store.sync_conflicts(s.project_id, true).await.unwrap().is_empty(), "no conflict");
}

// 4. Work that existed before the connection goes out, once, as the plan said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_cycles_and_modules_made_before_the_connection_are_created_remotely_once() {
    let before = unconnected(3).await;
    let actor = actor("bo");
    let mut keys = Vec::new();
    for n in 0..5 {
        let task = before
            .store
            .create_task(&actor, before.project_id, NewTask { title: format!("Older task {n}"), ..NewTask::default() })
            .await
            .unwrap();
        keys.push(task.key);
    }
    before.store.set_task_archived(&actor, &keys[4], true, None).await.unwrap();
    let start = time::OffsetDateTime::now_utc().date();
    before
        .store
        .create_cycle(&actor, before.project_id, "Older cycle", start, start + time::Duration::days(7), "")
        .await
        .unwrap();
    let s = before.connect("newest").await;
    assert_eq!(s.db.count("sync_job WHERE key LIKE 'task:%'").await, 0, "nothing was queued for them");

    let connection = s.store.connection_by_id(s.connection_id).await.unwrap();
    let plan = PlaneSync::load_with(&s.store, connection, RateLimiter::new(0), false).await.unwrap();
    let plan = plan.plan().await.unwrap();
    assert_eq!(plan.tasks.create_remote.len(), 4, "the archived task stays here: {:?}", plan.tasks.create_remote);
    assert_eq!(plan.tasks.create_local.len(), 3);

    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let ours = |i: &serde_json::Value| i["external_source"] == "mission-control";
    assert_eq!(s.plane.items().iter().filter(|i| ours(i)).count(), plan.tasks.create_remote.len(), "as planned");
    assert_eq!(tasks(&s).await.len(), 4 + 3);
    assert!(s.plane.cycles().iter().any(|c| c["name"] == "Older cycle"));
    assert_eq!(s.db.count("external_mapping WHERE local_kind = 'task'").await, 7);

    // Exactly once: a full pass and another run create nothing more.
    queue::enqueue(&s.store, s.connection_id, queue::FULL).await.unwrap();
    drain(&s).await;
    sync(&s).await;
    assert_eq!(s.plane.item_count(), 7);
}

// 6. Transient failures are retried for hours, not minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_for_a_day_before_they_are_dead() {
    let s = setup(1).await;
    sync(&s).await;
    let task = tasks(&s).await[0].clone();
    let key = format!("task:{}", task.id);
    s.store.edit_task(&actor("bo"), &task.key, retitle("Through an outage"), None).await.unwrap();
    s.plane.fail_times(("GET", "work-items/*"), Fault::Status(503), 1000);
    for attempt in 1..=12 {
        make_due(&s).await;
        drain(&s).await;
        let (dead, attempts, _) = job(&s, &key).await.unwrap();
        assert!(!dead, "attempt {attempt}: a 503 is not final");
        assert_eq!(attempts, attempt);
    }
    let capped: bool =
        s.db.client()
            .await
            .query_one("SELECT available_at <= now() + interval '5 minutes' FROM sync_job WHERE key = $1", &[&key])
            .await
            .unwrap()
            .get(0);
    assert!(capped, "the backoff is capped at a few minutes");
    // A day later the key gives up and says why.
    s.db.client()
        .await
        .execute("UPDATE sync_job SET first_failed_at = now() - interval '25 hours' WHERE key = $1", &[&key])
        .await
        .unwrap();
    make_due(&s).await;
    drain(&s).await;
    let (dead, _, error) = job(&s, &key).await.unwrap();
    assert!(dead, "after the retry horizon the key is a dead letter");
    assert!(error.unwrap_or_default().contains("503"));
    // The provider heals; an operator's retry pushes the edit.
    s.plane.clear_faults();
    queue::retry_dead(&s.store, s.project_id, None).await.unwrap();
    drain(&s).await;
    let external = mapping_of(&s, &task.key).await.external_id;
    assert_eq!(s.plane.item(&external).unwrap()["name"], "Through an outage");
}

// 5. A provider error names the request that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_error_names_the_method_path_and_status() {
    let s = setup(1).await;
    sync(&s).await;
    s.plane.fail_next(("GET", "work-items"), Fault::Status(404));
    pull_due(&s).await;
    let report = turn(&s).await;
    let error = report.errors.join("\n");
    assert!(error.contains("GET") && error.contains("/work-items/") && error.contains("404"), "{error}");
    assert_eq!(s.db.count("sync_cursor WHERE last_error LIKE '%404%GET %/work-items/%'").await, 1);
}

// 5'. The plan covers planning objects, and the pass does what it said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_covers_cycles_and_modules_and_the_pass_agrees() {
    let before = unconnected(0).await;
    let start = time::OffsetDateTime::now_utc().date();
    before
        .store
        .create_cycle(&actor("bo"), before.project_id, "Ours", start, start + time::Duration::days(7), "")
        .await
        .unwrap();
    before
        .store
        .create_module(
            &actor("bo"),
            before.project_id,
            NewModule {
                name: "Our module".into(),
                description: String::new(),
                status: mission_control::domain::ModuleStatus::Backlog,
                lead: None,
                target_on: None,
            },
        )
        .await
        .unwrap();
    before.plane.create_cycle(json!({"name": "Theirs", "start_date": "2026-12-01", "end_date": "2026-12-14"}));
    before.plane.create_module(json!({"name": "Their module"}));
    let s = before.connect("newest").await;
    let connection = s.store.connection_by_id(s.connection_id).await.unwrap();
    let plan = PlaneSync::load_with(&s.store, connection, RateLimiter::new(0), false).await.unwrap();
    let plan = serde_json::to_value(plan.plan().await.unwrap()).unwrap();
    assert_eq!(plan["cycles"]["create_remote"], json!(["Ours"]), "{plan}");
    assert_eq!(plan["cycles"]["create_local"], json!(["Theirs"]), "{plan}");
    assert_eq!(plan["modules"]["create_remote"], json!(["Our module"]), "{plan}");
    assert_eq!(plan["modules"]["create_local"], json!(["Their module"]), "{plan}");
    sync(&s).await;
    let mut cycles: Vec<String> = s.plane.cycles().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    cycles.sort();
    assert_eq!(cycles, ["Ours", "Theirs"]);
    assert_eq!(s.db.count("external_mapping WHERE local_kind IN ('cycle', 'module')").await, 4);
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(s.store.list_cycles(s.project_id, today).await.unwrap().len(), 2);
    assert_eq!(s.store.sync_mappings(s.connection_id, LocalKind::Module).await.unwrap().len(), 2);
}

// 5''. A pass that cannot even start says why on its connection, not only in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_cannot_start_says_why_on_its_connection() {
    let s = setup(0).await;
    s.db.client()
        .await
        .execute(
            "UPDATE integration_connection SET secret_ref = 'env:MCTL_TEST_NO_SUCH_TOKEN' WHERE id = $1",
            &[&s.connection_id],
        )
        .await
        .unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 1, "{:?}", report.errors);
    let health = s.store.sync_health(s.project_id).await.unwrap();
    assert_eq!(health[0].last_pass_ok, Some(false));
    let error = health[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("MCTL_TEST_NO_SUCH_TOKEN"), "{error}");
    assert_eq!(health[0].dead_letters, 1, "a missing secret will not heal by retrying: the pull is dead until revived");
}

// A worker busy with one long job keeps saying it is there (else a long full
// pass would show it as gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_busy_with_a_long_job_keeps_its_row_fresh() {
    let s = setup(0).await;
    let (hook, mut reached) = common::sync::crash_at("job.claimed");
    let options = mission_control::sync::worker::WorkerOptions {
        id: "busy".into(),
        project_id: Some(s.project_id),
        hook: Some(hook),
        ..Default::default()
    };
    let mut busy = mission_control::sync::worker::Worker::new(
        s.store.clone(),
        options,
        mission_control::sync::worker::Limiters::default(),
    );
    let running = tokio::spawn(async move { busy.run(std::future::pending()).await });
    tokio::time::timeout(Duration::from_secs(20), reached.wait_for(|r| *r)).await.unwrap().unwrap();
    let seen = || async {
        let row = s.db.client().await.query_one("SELECT seen_at FROM sync_worker WHERE id = 'busy'", &[]).await;
        row.map(|r| r.get::<_, time::OffsetDateTime>(0)).ok()
    };
    assert!(eventually(Duration::from_secs(5), || async { seen().await.is_some() }).await, "the row is written");
    let first = seen().await.unwrap();
    let beat = mission_control::sync::registry::BEAT_EVERY + Duration::from_secs(2);
    assert!(
        eventually(beat, || async { seen().await.is_some_and(|at| at > first) }).await,
        "the row is written again while the job is still running"
    );
    running.abort();
}
