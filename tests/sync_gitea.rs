//! Two-way sync of tasks with Gitea (or Forgejo) issues, and Actions runs
//! and releases pulled from Gitea, against a local server that speaks
//! Gitea's API v1 and a real PostgreSQL.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::gitea::{self, GiteaApi};
use common::repo::{Setup, setup, sync};
use common::repo_suite as suite;
use mission_control::domain::Provider;

async fn connected(issues: usize, policy: &str) -> Setup<GiteaApi> {
    let forge = gitea::start().await;
    forge.seed(issues);
    setup(forge, Provider::Gitea, "acme/app", policy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_pass_imports_open_issues_but_not_pull_requests() {
    let s = connected(70, "newest").await;
    suite::imports_open_issues(&s, 70, true).await;
    // Listings ask for issues only, with page/limit paging.
    let listing = s.forge.requests().into_iter().find(|r| r.path.ends_with("/issues")).unwrap();
    assert!(listing.query.contains("type=issues") && listing.query.contains("state=all"), "{listing:?}");
    assert!(listing.query.contains("limit=50"), "{listing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_edits_are_pushed_with_label_ids() {
    let s = connected(3, "newest").await;
    suite::pushes_local_edits(&s).await;
    // The missing label was created, then set by id.
    assert!(s.forge.state().labels.iter().any(|(name, _)| name == "ops"));
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
async fn actions_runs_and_releases_are_pulled_and_missing_apis_are_capabilities() {
    let s = connected(0, "newest").await;
    gitea::seed_delivery(&s.forge);
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let pipelines = s.store.list_pipelines(s.project_id, 10).await.unwrap();
    assert_eq!(pipelines.len(), 2);
    let done = pipelines.iter().find(|p| p.external_id == "31").unwrap();
    assert_eq!(done.status.as_str(), "failed");
    // Gitea's fields: the title, started_at and completed_at.
    assert_eq!(done.name, "Fix the build");
    let at = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(done.started_at, Some(at("2026-01-03T09:00:00Z")));
    assert_eq!(done.finished_at, Some(at("2026-01-03T09:04:00Z")));
    let queued = pipelines.iter().find(|p| p.external_id == "32").unwrap();
    assert_eq!((queued.status.as_str(), queued.name.as_str()), ("queued", "Waiting for a runner"));
    assert_eq!((queued.started_at, queued.finished_at), (None, None), "a zero time is no time");
    let releases = s.store.list_releases(s.project_id).await.unwrap();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].name, "v0.9.0");
    assert_eq!(releases[0].status.as_str(), "draft");
    assert_eq!(s.store.list_deployments(s.project_id, None, 10).await.unwrap().len(), 0);
    assert_eq!(
        s.db.count(
            "sync_cursor WHERE capabilities ->> 'deployments' = 'false' AND capabilities ->> 'actions' = 'true'"
        )
        .await,
        1
    );

    // A server without Actions: a 404 is recorded as a capability, never a failure.
    s.forge.state().actions = false;
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(s.db.count("sync_cursor WHERE capabilities ->> 'actions' = 'false'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_test_reports_no_deployments_api() {
    let s = connected(0, "newest").await;
    let connection = s.store.connection_by_key("gitea").await.unwrap();
    let report = mission_control::sync::check::check(&connection).await;
    assert!(report.ok, "{report:?}");
    assert_eq!((report.actions, report.deployments), (Some(true), Some(false)));
    assert!(report.lines().iter().any(|l| l.contains("deployments") && l.contains("unavailable")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_label_names_are_kept_exactly() {
    suite::keeps_remote_label_names(&connected(1, "newest").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_past_the_first_page_are_found_by_id() {
    let s = connected(0, "newest").await;
    let number = {
        let mut state = s.forge.state();
        for k in 0..70 {
            state.label_id(&format!("area-{k:02}"));
        }
        state.create("Deep label", "", vec!["area-65".into()], vec![], false)
    };
    assert_eq!(sync(&s).await.failed, 0);
    let task = common::repo::task_of(&s, number).await;
    let edit = mission_control::store::tasks::TaskEdit { add_labels: vec!["area-03".into()], ..Default::default() };
    s.store.edit_task(&common::actor("bo"), &task.key, edit, None).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let mut labels = s.forge.item(number).unwrap().labels;
    labels.sort();
    assert_eq!(labels, ["area-03", "area-65"]);
    // Both were found among the 70 (two pages of 50): none was made again.
    assert_eq!(s.forge.state().labels.len(), 70);
    assert_eq!(s.forge.count("POST", "/labels"), 0);
}
