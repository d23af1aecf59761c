//! Two-way sync of tasks with GitHub issues, and delivery state pulled from
//! GitHub, against a local server that speaks GitHub's REST API and a real
//! PostgreSQL.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::actor;
use common::forge::Fault;
use common::github::{self, FakeGitHub};
use common::repo::{Setup, drain, full, make_due, mapping_of, setup, sync, task_of, tasks};
use mission_control::domain::{LaneCategory, Provider, SyncState};
use mission_control::store::tasks::{NewTask, Position, TaskEdit};

async fn connected(issues: usize, policy: &str) -> Setup<github::GitHubApi> {
    let forge: FakeGitHub = github::start().await;
    forge.seed(issues);
    setup(forge, Provider::Github, "acme/app", policy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_pass_imports_open_issues_but_not_pull_requests() {
    let s = connected(150, "newest").await;
    let pull = s.forge.add_pull("A pull request");
    let closed = s.forge.add_issue("Old and closed", "");
    s.forge.edit(closed, |i| i.closed = true);
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let imported = tasks(&s).await;
    assert_eq!(imported.len(), 150, "open issues only, no pull request, no closed history");
    assert!(imported.iter().all(|t| !t.title.contains("pull request") && t.title != "Old and closed"));
    let first = task_of(&s, 1).await;
    assert_eq!(first.title, "Issue 1");
    assert_eq!(first.description, "Body of issue 1");
    assert_eq!(first.labels, vec!["bug"]);
    assert_eq!(first.assignee.as_deref(), Some("ana"));
    assert_eq!(first.lane, "Inbox", "open issues land in the default open lane");
    assert_eq!(mapping_of(&s, &first.key).await.external_key.as_deref(), Some("#1"));
    assert_ne!(pull, 0);
    // `Link` paging: 150 issues and a pull request are two pages of 100.
    let pages: Vec<_> =
        s.forge.requests().into_iter().filter(|r| r.path.ends_with("/issues") && r.method == "GET").collect();
    assert!(pages.iter().any(|r| r.query.contains("page=2")), "{pages:?}");
    assert_eq!(s.db.count("audit_entry WHERE action = 'task.sync_create' AND source = 'sync'").await, 150);

    // The next pass writes nothing on either side.
    s.forge.reset_log();
    let again = sync(&s).await;
    assert_eq!(again.failed, 0, "{:?}", again.errors);
    assert_eq!(tasks(&s).await.len(), 150);
    assert_eq!(s.forge.count("POST", "/issues") + s.forge.count("PATCH", "/issues"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_edits_are_pushed_and_new_tasks_become_marked_issues() {
    let s = connected(3, "newest").await;
    sync(&s).await;
    let task = task_of(&s, 2).await;
    let edit =
        TaskEdit { title: Some("Renamed here".into()), description: Some("New *text*".into()), ..TaskEdit::default() };
    s.store.edit_task(&actor("bo"), &task.key, edit, None).await.unwrap();
    s.store.move_task(&actor("bo"), &task.key, Some("Done"), Position::Top, None).await.unwrap();
    s.store.assign_task(&actor("bo"), &task.key, Some("bo"), None).await.unwrap();
    let created = s
        .store
        .create_task(
            &actor("bo"),
            s.project_id,
            NewTask { title: "Made here".into(), labels: vec!["ops".into()], ..NewTask::default() },
        )
        .await
        .unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);

    let issue = s.forge.item(2).unwrap();
    assert_eq!(issue.title, "Renamed here");
    assert!(issue.closed, "a task in a completed lane closes its issue");
    assert_eq!(issue.assignees, vec!["bo"]);
    assert!(issue.body.starts_with("New *text*"), "{}", issue.body);
    assert!(issue.body.contains(&format!("<!-- mission-control:task:{} -->", task.id)));

    let made = s.forge.issues().into_iter().find(|i| i.title == "Made here").expect("created on GitHub");
    assert_eq!(made.labels, vec!["ops"]);
    assert!(made.body.contains(&format!("<!-- mission-control:task:{} -->", created.id)));
    assert_eq!(mapping_of(&s, &created.key).await.external_id, made.number.to_string());
    // The marker never shows here.
    assert_eq!(s.store.task_by_key(&created.key).await.unwrap().description, "");

    // What was pushed is not echoed back.
    s.forge.reset_log();
    let quiet = sync(&s).await;
    assert_eq!(quiet.failed, 0);
    assert_eq!(s.forge.count("PATCH", "/issues") + s.forge.count("POST", "/issues"), 0);
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Renamed here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_edits_are_pulled_and_closing_and_reopening_move_the_task() {
    let s = connected(2, "newest").await;
    sync(&s).await;
    let task = task_of(&s, 1).await;
    s.store.move_task(&actor("bo"), &task.key, Some("In Progress"), Position::Top, None).await.unwrap();
    sync(&s).await;
    s.forge.edit(1, |i| {
        i.title = "Renamed on GitHub".into();
        i.closed = true;
        i.labels = vec!["Needs Review".into()];
        i.assignees = vec!["bo".into()];
    });
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let after = s.store.task_by_key(&task.key).await.unwrap();
    assert_eq!(after.title, "Renamed on GitHub");
    assert_eq!(after.lane_category, LaneCategory::Completed);
    assert_eq!(after.labels, vec!["needs-review"]);
    assert_eq!(after.assignee.as_deref(), Some("bo"));
    assert!(
        s.db.count(&format!("audit_entry WHERE action = 'task.sync' AND source = 'sync' AND entity_id = {}", task.id))
            .await
            >= 1
    );
    // What was pulled is not pushed back.
    assert_eq!(s.forge.count("PATCH", "/issues"), 0);

    s.forge.edit(1, |i| i.closed = false);
    sync(&s).await;
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().lane, "Inbox", "reopened: the default open lane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_both_sides_edit_is_a_conflict() {
    let s = connected(1, "manual").await;
    sync(&s).await;
    let task = task_of(&s, 1).await;
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("Ours".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    s.forge.edit(1, |i| i.title = "Theirs".into());
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let conflicts = s.store.sync_conflicts(s.project_id, false).await.unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "title");
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::Conflict);
    // Manual: neither side is overwritten until an operator decides.
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Ours");
    assert_eq!(s.forge.item(1).unwrap().title, "Theirs");
    s.store.sync_resolve_conflict(&actor("ops"), s.project_id, conflicts[0].id, true).await.unwrap();
    sync(&s).await;
    assert_eq!(s.forge.item(1).unwrap().title, "Ours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_issue_archives_its_task_on_a_full_pass_only() {
    let s = connected(3, "newest").await;
    sync(&s).await;
    let task = task_of(&s, 2).await;
    s.forge.delete(2);
    let incremental = sync(&s).await;
    assert_eq!(incremental.failed, 0);
    assert!(!s.store.task_by_key(&task.key).await.unwrap().archived, "an incremental listing proves nothing");
    s.forge.reset_log();
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(s.store.task_by_key(&task.key).await.unwrap().archived);
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::Deleted);
    // Confirmed with a GET (answered 410 Gone) before acting.
    assert!(s.forge.requests().iter().any(|r| r.method == "GET" && r.path.ends_with("/issues/2") && r.status == 410));
    assert!(!s.store.task_by_key(&task_of(&s, 1).await.key).await.unwrap().archived);

    // A transferred issue still answers the GET (from its new repository): gone from this one.
    let moved = task_of(&s, 3).await;
    s.forge.transfer(3);
    assert_eq!(full(&s).await.failed, 0);
    assert!(s.store.task_by_key(&moved.key).await.unwrap().archived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_answer_never_makes_a_duplicate() {
    let s = connected(1, "newest").await;
    sync(&s).await;
    let created = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: "Once only".into(), ..NewTask::default() })
        .await
        .unwrap();
    s.forge.fail_next("POST", "/issues", Fault::ApplyThenFail(502));
    let first = drain(&s).await;
    assert_eq!(first.failed, 1, "the create's answer was lost");
    assert_eq!(s.forge.issues().iter().filter(|i| i.title == "Once only").count(), 1);
    make_due(&s).await;
    let retry = drain(&s).await;
    assert_eq!(retry.failed, 0, "{:?}", retry.errors);
    let made: Vec<_> = s.forge.issues().into_iter().filter(|i| i.title == "Once only").collect();
    assert_eq!(made.len(), 1, "the marker found the issue: no second create");
    assert_eq!(s.forge.count("POST", "/issues"), 1);
    assert_eq!(mapping_of(&s, &created.key).await.external_id, made[0].number.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_malformed_answers_are_retried() {
    let s = connected(2, "newest").await;
    s.forge.fail_next("GET", "/issues", Fault::Status(502));
    let report = full(&s).await;
    assert_eq!(report.failed, 1, "{:?}", report.errors);
    assert_eq!(tasks(&s).await.len(), 0);
    make_due(&s).await;
    s.forge.fail_next("GET", "/issues", Fault::Malformed);
    let report = full(&s).await;
    assert_eq!(report.failed, 1, "a malformed page fails the pass, never half-imports it");
    assert!(report.errors[0].contains("unexpected answer"), "{:?}", report.errors);
    make_due(&s).await;
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(tasks(&s).await.len(), 2);
    assert_eq!(s.db.count("sync_job WHERE dead").await, 0, "transient failures are not dead letters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_state_is_pulled_into_pipelines_deployments_and_releases() {
    let s = connected(0, "newest").await;
    github::seed_delivery(&s.forge);
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let pipelines = s.store.list_pipelines(s.project_id, 10).await.unwrap();
    assert_eq!(pipelines.len(), 2);
    let done = pipelines.iter().find(|p| p.external_id == "7001").unwrap();
    assert_eq!(done.status.as_str(), "success");
    assert_eq!(done.commit_sha.as_deref(), Some("abc1234def"));
    assert_eq!(pipelines.iter().find(|p| p.external_id == "7002").unwrap().status.as_str(), "running");
    let deployments = s.store.list_deployments(s.project_id, None, 10).await.unwrap();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0].status.as_str(), "success");
    assert_eq!(deployments[0].environment, "production");
    let environments = s.store.list_environments(s.project_id).await.unwrap();
    assert_eq!(environments[0].kind.as_str(), "production");
    let releases = s.store.list_releases(s.project_id).await.unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].tag.as_deref(), Some("v1.0.0"));
    assert_eq!(releases[0].status.as_str(), "released");
    assert!(s.db.count("audit_entry WHERE entity_kind = 'pipeline' AND source = 'sync'").await >= 2);
    // Reading it again changes nothing.
    let audit = s.db.count("audit_entry").await;
    full(&s).await;
    assert_eq!(s.db.count("audit_entry").await, audit);
    let capabilities =
        s.db.count("sync_cursor WHERE capabilities ->> 'actions' = 'true' AND capabilities ->> 'deployments' = 'true'")
            .await;
    assert_eq!(capabilities, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pass_is_answered_entirely_with_304s() {
    let s = connected(250, "newest").await;
    github::seed_delivery(&s.forge);
    // The first pass reads everything; the second makes the incremental listing known.
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(sync(&s).await.failed, 0);
    for pass in ["incremental", "full", "incremental"] {
        s.forge.reset_log();
        let report = if pass == "full" { full(&s).await } else { sync(&s).await };
        assert_eq!(report.failed, 0, "{:?}", report.errors);
        let listings: Vec<_> =
            s.forge.requests().into_iter().filter(|r| r.method == "GET" && !r.path.contains("/statuses")).collect();
        assert!(!listings.is_empty());
        assert!(listings.iter().all(|r| r.if_none_match && r.status == 304), "{pass}: {listings:?}");
        let pass_report = &report.passes[0];
        assert_eq!(pass_report.not_modified, pass_report.requests, "{pass}");
        if pass == "full" {
            assert_eq!(pass_report.requests, 3, "three pages of issues, every one a 304");
        }
    }
    // A changed issue changes its page only.
    s.forge.edit(5, |i| i.title = "Touched".into());
    s.forge.reset_log();
    full(&s).await;
    assert_eq!(task_of(&s, 5).await.title, "Touched");
    let issue_pages: Vec<_> =
        s.forge.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with("/issues")).collect();
    assert_eq!(issue_pages.iter().filter(|r| r.status == 200).count(), 1, "{issue_pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_pause_the_connection() {
    let s = connected(2, "newest").await;
    s.forge.fail_next("GET", "/issues", Fault::PrimaryLimit { reset_in_secs: 600 });
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "a rate limit is not a failure");
    assert_eq!(report.deferred, 1);
    assert_eq!(s.db.count("sync_cursor WHERE paused_until > now() + interval '5 minutes'").await, 1);
    assert_eq!(s.db.count("sync_job WHERE key = 'full' AND available_at > now() + interval '5 minutes'").await, 1);
    make_due(&s).await;
    s.forge.fail_next("GET", "/issues", Fault::RetryAfter(120));
    let report = full(&s).await;
    assert_eq!(report.deferred, 1, "a secondary limit's Retry-After is honoured");
    assert_eq!(s.db.count("sync_cursor WHERE paused_until > now() + interval '1 minute'").await, 1);
    make_due(&s).await;
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(tasks(&s).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_checks_the_token_the_repository_and_capabilities() {
    let s = connected(0, "newest").await;
    let connection = s.store.connection_by_key("github").await.unwrap();
    let report = mission_control::sync::check::check(&connection).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(report.repository.as_deref(), Some("acme/app (default branch main)"));
    assert_eq!((report.actions, report.deployments), (Some(true), Some(true)));
    let shown = report.lines().join("\n");
    assert!(!shown.contains(github::TOKEN), "the token is never shown");
    // A wrong token: one line, no secret in it.
    let secret = tempfile::tempdir().unwrap();
    let wrong = secret.path().join("wrong");
    std::fs::write(&wrong, "ghp_wrong").unwrap();
    let mut bad = connection.clone();
    bad.secret_ref = Some(format!("file:{}", wrong.display()));
    let report = mission_control::sync::check::check(&bad).await;
    assert!(!report.ok);
    let problem = report.problem.unwrap();
    assert!(problem.contains("401") && !problem.contains("ghp_wrong") && !problem.contains('\n'), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_connects_a_github_repository_from_the_cli() {
    let db = common::TestDb::new().await;
    let cli = common::Cli::new(&db);
    let run = |args: &[&str]| common::run_from(cli.command().env("MC_PROJECT", "SYN").args(args).output().unwrap());
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    let fake = github::start().await;
    fake.seed(12);
    let token = cli.home.path().join("gh-token");
    std::fs::write(&token, fake.token()).unwrap();
    let token_ref = format!("file:{}", token.display());
    let url = fake.url();
    let base = ["connection", "add", "github", "--key", "gh", "--url", url.as_str(), "--token-ref", token_ref.as_str()];

    let missing = run(&base);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("--repo OWNER/NAME") && missing.stderr.lines().count() == 1, "{}", missing.stderr);
    let bad = run(&[&base[..], &["--repo", "acme/../etc"]].concat());
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let added = run(&[
        &["--json"],
        &base[..],
        &["--repo", "acme/app", "--set", "write_interval_ms=0", "--set", "requests_per_minute=0"],
    ]
    .concat())
    .ok()
    .json();
    assert_eq!(added["config"]["repo"], "acme/app");
    assert!(!added.to_string().contains(github::TOKEN));

    let tested = run(&["connection", "test", "gh"]).ok();
    assert!(
        tested.stdout.contains("repository   acme/app") && tested.stdout.contains("actions      available"),
        "{}",
        tested.stdout
    );
    let plan = run(&["--json", "sync", "plan", "gh"]).ok().json();
    assert_eq!(plan["create_local"].as_array().unwrap().len(), 12);
    let once = run(&["--json", "sync", "once"]).ok().json();
    assert_eq!(once["failed"], 0);
    assert_eq!(run(&["--json", "task", "list"]).ok().json().as_array().unwrap().len(), 12);
    let status = run(&["--json", "sync", "status"]).ok().json();
    assert_eq!(status["connections"][0]["connection"], "gh");
    assert_eq!(status["connections"][0]["last_pass_ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_issue_carrying_a_mapped_tasks_marker_is_not_imported_again() {
    let s = connected(0, "newest").await;
    let created = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: "Original".into(), ..NewTask::default() })
        .await
        .unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    let original = s.forge.issues().into_iter().find(|i| i.title == "Original").unwrap();
    let copy = s.forge.add_issue("Copy of original", &original.body);
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(tasks(&s).await.len(), 1, "the copy is not a second task");
    assert_eq!(mapping_of(&s, &created.key).await.external_id, original.number.to_string());
    assert_ne!(copy, original.number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delivery_listing_does_not_stop_issue_sync() {
    let s = connected(3, "newest").await;
    github::seed_delivery(&s.forge);
    s.forge.fail_next("GET", "/releases", Fault::Status(502));
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(tasks(&s).await.len(), 3, "issues synced all the same");
    assert!(
        report.passes[0].errors.iter().any(|e| e.starts_with("releases:") && e.contains("502")),
        "{:?}",
        report.passes
    );
    assert_eq!(s.db.count("sync_cursor WHERE last_pass_ok = false AND last_error LIKE 'releases:%'").await, 1);
    assert_eq!(s.store.list_releases(s.project_id).await.unwrap().len(), 0);
    let again = full(&s).await;
    assert!(again.passes[0].errors.is_empty(), "{:?}", again.passes);
    assert_eq!(s.store.list_releases(s.project_id).await.unwrap().len(), 1);
}

/// Gives the connection the webhook secret `value` and starts a receiver;
/// keep the secret file as long as the receiver.
async fn receiving_webhooks(
    s: &Setup<github::GitHubApi>,
    value: &str,
) -> (common::hooks::SecretFile, common::hooks::Receiver) {
    let secret = common::hooks::secret_file(value);
    s.db.client()
        .await
        .execute(
            "UPDATE integration_connection SET config = config || jsonb_build_object('webhook_secret_ref', $1::text)
             WHERE id = $2",
            &[&secret.reference, &s.connection_id],
        )
        .await
        .unwrap();
    (secret, common::hooks::Receiver::start(&s.store).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_brings_the_issue_in_and_a_local_reorder_costs_no_request() {
    let s = connected(3, "newest").await;
    sync(&s).await;
    let (_secret, receiver) = receiving_webhooks(&s, "whsec-e2e").await;

    // Renamed on GitHub; the delivery names the issue, the worker reads it.
    s.forge.edit(2, |i| i.title = "Renamed on GitHub".into());
    s.forge.reset_log();
    let body = serde_json::to_vec(&serde_json::json!({ "action": "edited", "issue": { "number": 2 } })).unwrap();
    let headers = common::hooks::github("whsec-e2e", "e2e-1", "issues", &body);
    let (status, answer) = receiver.post("/hooks/github", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(task_of(&s, 2).await.title, "Renamed on GitHub");
    let reads: Vec<_> = s.forge.requests().into_iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(reads, ["GET /repos/acme/app/issues/2"], "one read of the named issue, no listing, no write");

    // A burst: both issues edited, each delivered several times (redeliveries
    // of one id, and several ids for one issue): each change applied once.
    s.forge.edit(1, |i| i.title = "First, renamed".into());
    s.forge.edit(3, |i| i.title = "Third, renamed".into());
    let synced_before = s.db.count("audit_entry WHERE action = 'task.sync'").await;
    for (delivery, number) in [("b-1", 1), ("b-1", 1), ("b-2", 1), ("b-3", 3), ("b-3", 3), ("b-4", 3), ("b-5", 1)] {
        let body =
            serde_json::to_vec(&serde_json::json!({ "action": "edited", "issue": { "number": number } })).unwrap();
        let headers = common::hooks::github("whsec-e2e", delivery, "issues", &body);
        let (status, answer) = receiver.post("/hooks/github", &headers, &body).await;
        assert!(status == 202 || status == 200, "{status} {answer}");
    }
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(task_of(&s, 1).await.title, "First, renamed");
    assert_eq!(task_of(&s, 3).await.title, "Third, renamed");
    assert_eq!(s.db.count("audit_entry WHERE action = 'task.sync'").await - synced_before, 2, "one change each");
    assert_eq!(s.db.count("webhook_inbox").await, 6, "b-1 and b-3 stored once each");

    // Reordering inside a lane changes no synced field: queued, but no request.
    s.forge.reset_log();
    let task = task_of(&s, 3).await;
    s.store.move_task(&actor("bo"), &task.key, None, Position::Top, None).await.unwrap();
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.jobs >= 1, "the reorder queued the task");
    assert!(s.forge.requests().is_empty(), "{:?}", s.forge.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_sharing_a_name_are_told_apart_by_the_providers_id() {
    let s = connected(2, "newest").await;
    // Nightlies: one name, three GitHub releases (ids and tags differ).
    for (id, tag) in [(6001, "nightly-1"), (6002, "nightly-2"), (6003, "nightly-3")] {
        s.forge.state().releases.push(serde_json::json!({
            "id": id, "tag_name": tag, "name": "Nightly", "draft": false, "prerelease": true,
            "target_commitish": "main", "html_url": format!("https://github.example/acme/app/releases/{tag}"),
            "published_at": "2026-01-05T00:00:00Z", "body": ""
        }));
    }
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.passes[0].errors.is_empty(), "{:?}", report.passes);
    assert_eq!(tasks(&s).await.len(), 2);
    let releases = s.store.list_releases(s.project_id).await.unwrap();
    let mut tags: Vec<_> = releases.iter().filter_map(|r| r.tag.clone()).collect();
    tags.sort();
    assert_eq!(tags, ["nightly-1", "nightly-2", "nightly-3"]);
    let names: std::collections::HashSet<_> = releases.iter().map(|r| r.name.to_lowercase()).collect();
    assert_eq!(names.len(), 3, "each has a name of its own: {releases:?}");
    // `sync plan` sees nothing to change.
    let connection = s.store.connection_by_key("github").await.unwrap();
    let limiter = mission_control::sync::providers::http::RateLimiter::new(0);
    let repo = mission_control::sync::repo::AnyRepo::load(&s.store, connection, limiter).await.unwrap();
    let plan = repo.plan().await.unwrap();
    assert!(plan.releases.pull.is_empty() && plan.releases.create_local.is_empty(), "{:?}", plan.releases);
    // The names are stable: another pass changes nothing.
    let audit = s.db.count("audit_entry WHERE entity_kind = 'release'").await;
    let again = full(&s).await;
    assert!(again.passes[0].errors.is_empty(), "{:?}", again.passes);
    assert_eq!(s.db.count("audit_entry WHERE entity_kind = 'release'").await, audit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_repository_is_followed_and_keeps_its_mappings() {
    let s = connected(3, "newest").await;
    assert_eq!(sync(&s).await.failed, 0);
    let edited = task_of(&s, 2).await;
    s.forge.dialect.rename("acme/renamed");
    // A local edit: its reconcile reads the issue through the old name.
    s.store
        .edit_task(
            &actor("bo"),
            &edited.key,
            TaskEdit { title: Some("Edited here".into()), ..TaskEdit::default() },
            None,
        )
        .await
        .unwrap();
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let after = s.store.task_by_key(&edited.key).await.unwrap();
    assert!(!after.archived, "a rename is not a deletion");
    assert_eq!(mapping_of(&s, &edited.key).await.sync_state, SyncState::InSync);
    assert_eq!(s.forge.item(2).unwrap().title, "Edited here");
    // The connection names the repository as it is called now.
    let connection = s.store.connection_by_key("github").await.unwrap();
    assert_eq!(connection.config["repo"], "acme/renamed");
    // A full pass keeps every mapping and archives nothing.
    s.forge.edit(3, |i| i.title = "Edited there".into());
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(task_of(&s, 3).await.title, "Edited there");
    assert!(tasks(&s).await.iter().all(|t| !t.archived));
    assert_eq!(s.db.count("external_mapping WHERE sync_state = 'deleted'").await, 0);
    // The next worker asks under the new name: no more redirects.
    s.forge.reset_log();
    assert_eq!(sync(&s).await.failed, 0);
    assert!(s.forge.requests().iter().all(|r| r.status != 301 && r.status != 307), "{:?}", s.forge.requests());
    // A transferred issue is still gone from this repository.
    s.forge.transfer(1);
    assert_eq!(full(&s).await.failed, 0);
    assert!(task_of(&s, 1).await.archived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_label_names_are_kept_exactly() {
    common::repo_suite::keeps_remote_label_names(&connected(1, "newest").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secondary_rate_limit_is_a_wait_not_bad_credentials() {
    let s = connected(2, "newest").await;
    assert_eq!(sync(&s).await.failed, 0);
    let task = task_of(&s, 1).await;
    s.store
        .edit_task(
            &actor("bo"),
            &task.key,
            TaskEdit { title: Some("Pushed later".into()), ..TaskEdit::default() },
            None,
        )
        .await
        .unwrap();
    s.forge.reset_log();
    // 403, requests left in the primary budget, no Retry-After: GitHub's
    // secondary limit. Wait at least a minute; the key lives.
    s.forge.fail_next("PATCH", "/issues/1", Fault::SecondaryLimit);
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.deferred >= 1, "{report:?}");
    assert_eq!(s.forge.count("PATCH", "/issues"), 1, "refused once, not sent again at once");
    assert_eq!(s.db.count("sync_job WHERE dead").await, 0, "no dead letter");
    assert_eq!(s.db.count("sync_cursor WHERE paused_until > now() + interval '50 seconds'").await, 1);
    assert_eq!(s.forge.item(1).unwrap().title, "Issue 1");
    make_due(&s).await;
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.forge.item(1).unwrap().title, "Pushed later");
    assert_eq!(s.forge.count("PATCH", "/issues"), 2);
    // A listing throttled the same way defers the pass.
    make_due(&s).await;
    s.forge.fail_next("GET", "/issues", Fault::SecondaryLimit);
    let report = full(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.db.count("sync_job WHERE key = 'full' AND available_at > now() + interval '50 seconds'").await, 1);
    assert_eq!(s.db.count("sync_job WHERE dead").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_actions_permission_still_syncs_issues() {
    let s = connected(3, "newest").await;
    github::seed_delivery(&s.forge);
    s.forge.state().denied = vec!["actions".into(), "deployments".into()];
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(report.passes[0].errors.is_empty(), "a missing permission is no failure: {:?}", report.passes);
    assert_eq!(tasks(&s).await.len(), 3);
    assert_eq!(s.store.list_releases(s.project_id).await.unwrap().len(), 1, "releases still come");
    assert_eq!(s.db.count("sync_cursor WHERE last_pass_ok").await, 1);
    assert_eq!(
        s.db.count(
            "sync_cursor WHERE capabilities ->> 'actions' = 'false' AND capabilities ->> 'missing' LIKE '%actions=read%'"
        )
        .await,
        1
    );
    // Validators were kept: once the incremental listing is known, a pass
    // asks conditionally and is answered 304.
    assert_eq!(sync(&s).await.failed, 0);
    s.forge.reset_log();
    assert_eq!(sync(&s).await.failed, 0);
    let issue_reads: Vec<_> =
        s.forge.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with("/issues")).collect();
    assert!(
        !issue_reads.is_empty() && issue_reads.iter().all(|r| r.if_none_match && r.status == 304),
        "{issue_reads:?}"
    );

    // `connection test`: usable, and says what the token lacks.
    let connection = s.store.connection_by_key("github").await.unwrap();
    let check = mission_control::sync::check::check(&connection).await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.actions, Some(false));
    let lines = check.lines().join("\n");
    assert!(lines.contains("actions") && lines.contains("actions=read"), "{lines}");
    assert!(lines.contains("deployments=read"), "{lines}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_runs_are_named_by_their_title_and_awaiting_approval_is_not_failed() {
    let s = connected(0, "newest").await;
    // rest-api-description: workflow-run `name` may be empty; `display_title`
    // is the run's title; `action_required` is a conclusion of a run waiting
    // for approval.
    s.forge.state().runs.push(serde_json::json!({
        "id": 7101, "name": "", "display_title": "Bump the parser", "head_branch": "deps", "head_sha": "abc1234def",
        "status": "completed", "conclusion": "action_required",
        "html_url": "https://github.example/acme/app/actions/runs/7101",
        "run_started_at": "2026-01-02T10:00:00Z", "created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-02T10:00:05Z"
    }));
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let pipelines = s.store.list_pipelines(s.project_id, 10).await.unwrap();
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0].name, "Bump the parser");
    assert_eq!(pipelines[0].status.as_str(), "queued", "waiting for approval, not failed");
    assert_eq!(pipelines[0].finished_at, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_closes_its_issue_as_not_planned() {
    let s = connected(3, "newest").await;
    let lane = mission_control::store::lanes::NewLane {
        name: "Cancelled".into(),
        category: LaneCategory::Cancelled,
        role: mission_control::domain::LaneRole::Normal,
        position: None,
        wip_limit: None,
    };
    s.store.create_lane(&actor("ops"), s.project_id, lane).await.unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    let (dropped, finished) = (task_of(&s, 1).await, task_of(&s, 2).await);
    s.store.move_task(&actor("bo"), &dropped.key, Some("Cancelled"), Position::Top, None).await.unwrap();
    s.store.move_task(&actor("bo"), &finished.key, Some("Done"), Position::Top, None).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let (one, two) = (s.forge.item(1).unwrap(), s.forge.item(2).unwrap());
    assert!(one.closed && two.closed);
    assert_eq!(one.state_reason.as_deref(), Some("not_planned"));
    assert_eq!(two.state_reason.as_deref(), Some("completed"));
    // Nothing echoes back: the tasks stay where they were put.
    s.forge.reset_log();
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(s.forge.count("PATCH", "/issues"), 0);
    assert_eq!(s.store.task_by_key(&dropped.key).await.unwrap().lane, "Cancelled");
    // Reopened and cancelled again: closed as not planned once more.
    s.forge.edit(2, |i| i.closed = false);
    assert_eq!(sync(&s).await.failed, 0);
    s.store.move_task(&actor("bo"), &finished.key, Some("Cancelled"), Position::Top, None).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let two = s.forge.item(2).unwrap();
    assert!(two.closed);
    assert_eq!(two.state_reason.as_deref(), Some("not_planned"));
}

/// The recorded exchanges of one octokit/fixtures scenario.
fn recorded(scenario: &str) -> Vec<serde_json::Value> {
    let path = format!("{}/tests/fixtures/github/{scenario}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_issue_pages_are_followed_by_link_and_asked_again_with_their_etags() {
    let replay = github::Replay::start(&["paginate-issues"]).await;
    let repo = "octokit-fixture-org/paginate-issues";
    let bare = common::repo::connect(&replay.url(), github::TOKEN, Provider::Github, repo, "newest").await;
    let report = bare.full().await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    // Every open issue GitHub recorded over its five pages (3 a page there).
    let pages = recorded("paginate-issues");
    let open: Vec<i64> = pages
        .iter()
        .flat_map(|p| p["response"].as_array().unwrap().clone())
        .filter(|i| i["state"] == "open" && i.get("pull_request").is_none())
        .map(|i| i["number"].as_i64().unwrap())
        .collect();
    let filter =
        mission_control::store::tasks::TaskFilter { project_id: bare.project_id, limit: 1000, ..Default::default() };
    let imported = bare.store.list_tasks(&filter).await.unwrap();
    assert_eq!(imported.len(), open.len());
    let reads: Vec<_> = replay.requests().into_iter().filter(|r| r.path.ends_with("/issues")).collect();
    assert_eq!(reads.len(), pages.len(), "one request a recorded page: {reads:?}");
    // The `Link` header led to GitHub's /repositories/{id} URLs, page by page.
    for (k, read) in reads.iter().enumerate().skip(1) {
        assert_eq!(read.path, "/repositories/1000/issues");
        assert!(read.query.contains(&format!("page={}", k + 1)), "{read:?}");
    }
    // Again: every page asked with its ETag, every one a 304, nothing changed.
    replay.reset_log();
    let again = bare.full().await;
    assert_eq!(again.failed, 0, "{:?}", again.errors);
    let reads: Vec<_> = replay.requests().into_iter().filter(|r| r.path.ends_with("/issues")).collect();
    assert_eq!(reads.len(), pages.len(), "{reads:?}");
    assert!(reads.iter().all(|r| r.if_none_match && r.status == 304), "{reads:?}");
    assert_eq!(again.passes[0].not_modified, pages.len());
    assert_eq!(bare.store.list_tasks(&filter).await.unwrap().len(), open.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_rename_is_followed_to_the_new_name() {
    use mission_control::sync::providers::repo::RepoProvider;
    let replay = github::Replay::start(&["rename-repository"]).await;
    let old = "octokit-fixture-org/rename-repository";
    let bare = common::repo::connect(&replay.url(), github::TOKEN, Provider::Github, old, "newest").await;
    let connection = bare.store.connection_by_key("github").await.unwrap();
    let renamed = recorded("rename-repository")
        .iter()
        .find(|e| e["path"] == "/repositories/1000" && e["method"] == "get")
        .map(|e| e["response"]["full_name"].as_str().unwrap().to_string())
        .unwrap();
    let github = mission_control::sync::providers::github::GitHub::new(
        &connection,
        github::TOKEN.into(),
        mission_control::sync::providers::http::RateLimiter::new(0),
    )
    .unwrap();
    let info = github.repository().await.unwrap();
    assert_eq!(info.full_name, renamed);
    assert_eq!(github.renamed().as_deref(), Some(renamed.as_str()), "the rename is kept for the connection");
    let seen: Vec<_> = replay.requests().iter().map(|r| (r.path.clone(), r.status)).collect();
    assert_eq!(seen[0], (format!("/repos/{old}"), 301), "{seen:?}");
    assert_eq!(seen[1], ("/repositories/1000".to_string(), 200), "{seen:?}");
    // `connection test` shows the repository by its new name.
    let check = mission_control::sync::check::check(&connection).await;
    assert!(check.repository.as_deref().is_some_and(|r| r.starts_with(&renamed)), "{check:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_default_labels_are_read_by_their_names() {
    use mission_control::sync::providers::repo::RepoProvider;
    let replay = github::Replay::start(&["labels", "errors"]).await;
    let bare =
        common::repo::connect(&replay.url(), github::TOKEN, Provider::Github, "octokit-fixture-org/labels", "newest")
            .await;
    let connection = bare.store.connection_by_key("github").await.unwrap();
    let limiter = mission_control::sync::providers::http::RateLimiter::new(0);
    let github =
        mission_control::sync::providers::github::GitHub::new(&connection, github::TOKEN.into(), limiter.clone())
            .unwrap();
    let expected: Vec<String> = recorded("labels")[0]["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    let names = github.label_names().await.unwrap();
    assert_eq!(names, expected);
    assert!(names.iter().any(|n| n == "good first issue") && names.iter().any(|n| n == "help wanted"));
    // A recorded 422: rejected with GitHub's own words, in one line.
    let http = mission_control::sync::providers::http::Http::new(limiter, "Authorization", "Bearer x".into()).unwrap();
    let url = format!("{}/repos/octokit-fixture-org/errors/labels", replay.url());
    let body = serde_json::json!({"name": "foo", "color": "invalid"});
    let error = http.send(reqwest::Method::POST, &url, Some(&body)).await.unwrap_err();
    assert_eq!(error.status(), Some(422));
    let shown = error.to_string();
    assert!(shown.contains("Validation Failed") && !shown.contains('\n'), "{shown}");
    assert!(!error.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_after_a_rename_brings_the_change_in_and_archives_nothing() {
    let s = connected(2, "newest").await;
    assert_eq!(sync(&s).await.failed, 0);
    let (_secret, receiver) = receiving_webhooks(&s, "whsec-rename").await;
    s.forge.dialect.rename("acme/renamed");
    s.forge.edit(2, |i| i.title = "Renamed there".into());
    let body = serde_json::to_vec(&serde_json::json!({ "action": "edited", "issue": { "number": 2 } })).unwrap();
    let headers = common::hooks::github("whsec-rename", "rn-1", "issues", &body);
    let (status, answer) = receiver.post("/hooks/github", &headers, &body).await;
    assert_eq!(status, 202, "{answer}");
    let report = drain(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let task = task_of(&s, 2).await;
    assert_eq!(task.title, "Renamed there");
    assert!(!task.archived);
    assert_eq!(mapping_of(&s, &task.key).await.sync_state, SyncState::InSync);
    assert_eq!(s.store.connection_by_key("github").await.unwrap().config["repo"], "acme/renamed");
}
