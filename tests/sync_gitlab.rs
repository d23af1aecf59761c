//! Two-way sync of tasks with GitLab issues (by `iid`), and pipelines,
//! deployments and releases pulled from GitLab, against a local server that
//! speaks GitLab's API v4 and a real PostgreSQL.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::forge::Fault;
use common::gitlab::{self, GitLabApi};
use common::repo::{Setup, full, make_due, setup, sync, tasks};
use common::repo_suite as suite;
use mission_control::domain::Provider;

async fn connected(issues: usize, policy: &str) -> Setup<GitLabApi> {
    let forge = gitlab::start().await;
    forge.seed(issues);
    setup(forge, Provider::Gitlab, "acme/app", policy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_pass_imports_open_issues_with_x_next_page_paging() {
    let s = connected(120, "newest").await;
    suite::imports_open_issues(&s, 120, false).await;
    // Incremental pulls ask for what changed since, oldest first.
    let incremental = s.forge.requests().into_iter().find(|r| r.path.ends_with("/issues")).unwrap();
    assert!(incremental.query.contains("updated_after=") && incremental.query.contains("order_by=updated_at"));
    assert!(incremental.query.contains("sort=asc"), "{incremental:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_edits_are_pushed_with_state_events_and_user_ids() {
    let s = connected(3, "newest").await;
    // The fake stores assignees from `assignee_ids`: the suite's check that
    // issue #2 is assigned to bo proves the username was looked up as id 3.
    suite::pushes_local_edits(&s).await;
    let closed = s.forge.item(2).unwrap();
    assert!(closed.closed, "state_event=close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_edits_are_pulled() {
    suite::pulls_remote_edits(&connected(2, "newest").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_both_sides_edit_is_a_conflict() {
    suite::records_conflicts(&connected(1, "manual").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_issue_archives_its_task_on_a_full_pass() {
    suite::infers_deletions_on_full_passes(&connected(3, "newest").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_answer_never_makes_a_duplicate() {
    suite::adopts_lost_creates(&connected(1, "newest").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_malformed_answers_are_retried() {
    suite::retries_failures(&connected(2, "newest").await, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_rate_limit_headers_pause_the_connection() {
    let s = connected(2, "newest").await;
    let paused_for_the_reset = "sync_cursor WHERE paused_until > now() + interval '5 minutes'";
    // Requests left in the window: the pass goes on past the answer that said so.
    s.forge.fail_next("GET", "/pipelines", Fault::GitLabBudget { remaining: 5, reset_in_secs: 600 });
    let report = full(&s).await;
    assert_eq!((report.failed, report.deferred), (0, 0), "{:?}", report.errors);
    assert_eq!(tasks(&s).await.len(), 2);
    let pass = s.forge.requests();
    let budget_read = pass.iter().position(|r| r.path.ends_with("/pipelines")).unwrap();
    assert!(budget_read + 1 < pass.len(), "more requests follow: {pass:?}");

    // The last request of the window spent: nothing more is sent until the
    // reset, and the pass waits for it rather than failing.
    make_due(&s).await;
    s.forge.reset_log();
    s.forge.fail_next("GET", "/pipelines", Fault::GitLabBudget { remaining: 0, reset_in_secs: 600 });
    let report = full(&s).await;
    assert_eq!((report.failed, report.deferred), (0, 1), "{:?}", report.errors);
    let seen = s.forge.requests();
    assert_eq!(seen.len(), budget_read + 1, "{seen:?}");
    assert!(seen.last().unwrap().path.ends_with("/pipelines"));
    assert_eq!(s.db.count(paused_for_the_reset).await, 1);

    // A 429 that names only its reset (no Retry-After) is waited out until then.
    make_due(&s).await;
    s.forge.fail_next("GET", "/pipelines", Fault::GitLabLimit { reset_in_secs: 600 });
    let report = full(&s).await;
    assert_eq!((report.failed, report.deferred), (0, 1), "a rate limit is not a failure: {:?}", report.errors);
    assert_eq!(s.db.count(paused_for_the_reset).await, 1);
    assert_eq!(s.db.count("sync_job WHERE key = 'full' AND available_at > now() + interval '5 minutes'").await, 1);
    make_due(&s).await;
    let report = sync(&s).await;
    assert_eq!((report.failed, report.deferred), (0, 0), "{:?}", report.errors);
    assert_eq!(s.db.count("sync_job WHERE dead").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_deployments_and_releases_are_pulled() {
    let s = connected(0, "newest").await;
    gitlab::seed_delivery(&s.forge);
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let pipelines = s.store.list_pipelines(s.project_id, 10).await.unwrap();
    assert_eq!(pipelines.len(), 1);
    assert_eq!(pipelines[0].provider, "gitlab");
    assert_eq!(pipelines[0].status.as_str(), "success");
    let deployments = s.store.list_deployments(s.project_id, None, 10).await.unwrap();
    assert_eq!(deployments.len(), 2, "the recently updated ones: {deployments:?}");
    let running = deployments.iter().find(|d| d.external_id == "77").unwrap();
    assert_eq!(running.status.as_str(), "in_progress");
    assert_eq!(running.environment, "staging");
    assert_eq!(running.finished_at, None);
    // Finished: when its job finished (the deployment has no finished_at).
    let done = deployments.iter().find(|d| d.external_id == "78").unwrap();
    assert_eq!(done.status.as_str(), "success");
    let job = s.forge.state().deployments[1]["deployable"].clone();
    let at = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert_eq!(done.finished_at, Some(at(&job["finished_at"])));
    assert_eq!(done.started_at, Some(at(&job["started_at"])));
    // The kind is the environment's tier (from the environments list).
    let environments = s.store.list_environments(s.project_id).await.unwrap();
    let kind = |name: &str| environments.iter().find(|e| e.name == name).map(|e| e.kind.as_str().to_string());
    assert_eq!(kind("staging").as_deref(), Some("staging"));
    assert_eq!(kind("eu-west").as_deref(), Some("production"), "the tier, not the name");
    let staging = environments.iter().find(|e| e.name == "staging").unwrap();
    assert_eq!(staging.url.as_deref(), Some("https://staging.example.com"));
    // Sorted by update only together with an update window.
    let listing = s.forge.requests().into_iter().find(|r| r.path.ends_with("/deployments")).unwrap();
    assert!(listing.query.contains("order_by=updated_at") && listing.query.contains("updated_after="), "{listing:?}");
    let releases = s.store.list_releases(s.project_id).await.unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].name, "Spring");
    assert_eq!(releases[0].tag.as_deref(), Some("v2.1.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_label_names_are_kept_exactly() {
    suite::keeps_remote_label_names(&connected(1, "newest").await).await;
}
