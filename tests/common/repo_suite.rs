//! Behaviour every repository provider shares, written once over any fake
//! [`Dialect`]: each provider's test file runs these against its server.
#![allow(dead_code)]

use mission_control::domain::{LaneCategory, SyncState};
use mission_control::store::tasks::{NewTask, Position, TaskEdit};

use super::actor;
use super::forge::{Dialect, Fault};
use super::repo::{Setup, drain, full, make_due, mapping_of, sync, task_of, tasks};

/// `seeded` open issues (and maybe a pull request and a closed issue) are
/// imported on the first pass, over more than one page; a second pass
/// writes nothing.
pub async fn imports_open_issues<D: Dialect>(s: &Setup<D>, seeded: usize, with_pull: bool) {
    if with_pull {
        s.forge.add_pull("A pull request");
    }
    let closed = s.forge.add_issue("Old and closed", "");
    s.forge.edit(closed, |i| i.closed = true);
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let imported = tasks(s).await;
    assert_eq!(imported.len(), seeded, "open issues only");
    assert!(imported.iter().all(|t| t.title != "A pull request" && t.title != "Old and closed"));
    let first = task_of(s, 1).await;
    assert_eq!(first.title, "Issue 1");
    assert_eq!(first.description, "Body of issue 1");
    assert_eq!(first.labels, vec!["bug"]);
    assert_eq!(first.assignee.as_deref(), Some("ana"));
    assert_eq!(first.lane, "Inbox");
    assert_eq!(mapping_of(s, &first.key).await.external_key.as_deref(), Some("#1"));
    let listed: Vec<_> =
        s.forge.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with("/issues")).collect();
    assert!(listed.iter().any(|r| r.query.contains("page=2")), "more than one page was read: {listed:?}");
    s.forge.reset_log();
    let again = sync(s).await;
    assert_eq!(again.failed, 0, "{:?}", again.errors);
    assert_eq!(tasks(s).await.len(), seeded);
    let writes = s.forge.requests().into_iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, 0);
}

/// A local edit (title, body, lane → closed, assignee) is pushed; a new task
/// becomes an issue carrying its marker; nothing echoes back.
pub async fn pushes_local_edits<D: Dialect>(s: &Setup<D>) {
    sync(s).await;
    let task = task_of(s, 2).await;
    let edit =
        TaskEdit { title: Some("Renamed here".into()), description: Some("New text".into()), ..TaskEdit::default() };
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
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let issue = s.forge.item(2).unwrap();
    assert_eq!(issue.title, "Renamed here");
    assert!(issue.closed);
    assert_eq!(issue.assignees, vec!["bo"], "agent bo is login bo");
    assert!(issue.body.starts_with("New text"));
    assert!(issue.body.contains(&format!("<!-- mission-control:task:{} -->", task.id)));
    let made = s.forge.issues().into_iter().find(|i| i.title == "Made here").expect("created remotely");
    assert_eq!(made.labels, vec!["ops"]);
    assert_eq!(mapping_of(s, &created.key).await.external_id, made.number.to_string());
    s.forge.reset_log();
    assert_eq!(sync(s).await.failed, 0);
    let writes = s.forge.requests().into_iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, 0, "pushed values are not echoed back");
}

/// A remote edit is pulled (source sync); closing and reopening move the task.
pub async fn pulls_remote_edits<D: Dialect>(s: &Setup<D>) {
    sync(s).await;
    let task = task_of(s, 1).await;
    s.forge.edit(1, |i| {
        i.title = "Renamed remotely".into();
        i.closed = true;
        i.labels = vec!["Needs Review".into()];
    });
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let after = s.store.task_by_key(&task.key).await.unwrap();
    assert_eq!(after.title, "Renamed remotely");
    assert_eq!(after.lane_category, LaneCategory::Completed);
    assert_eq!(after.labels, vec!["needs-review"]);
    let writes = s.forge.requests().into_iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, 0, "what was pulled is not pushed back");
    s.forge.edit(1, |i| i.closed = false);
    sync(s).await;
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().lane, "Inbox");
}

/// Both sides changed the title: a conflict, left open under `manual`.
pub async fn records_conflicts<D: Dialect>(s: &Setup<D>) {
    sync(s).await;
    let task = task_of(s, 1).await;
    s.store
        .edit_task(&actor("bo"), &task.key, TaskEdit { title: Some("Ours".into()), ..TaskEdit::default() }, None)
        .await
        .unwrap();
    s.forge.edit(1, |i| i.title = "Theirs".into());
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let conflicts = s.store.sync_conflicts(s.project_id, false).await.unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].field, "title");
    assert_eq!(mapping_of(s, &task.key).await.sync_state, SyncState::Conflict);
    assert_eq!(s.forge.item(1).unwrap().title, "Theirs");
    assert_eq!(s.store.task_by_key(&task.key).await.unwrap().title, "Ours");
}

/// A deleted issue archives its task on a full pass, after a confirming GET.
pub async fn infers_deletions_on_full_passes<D: Dialect>(s: &Setup<D>) {
    sync(s).await;
    let task = task_of(s, 2).await;
    s.forge.delete(2);
    sync(s).await;
    assert!(!s.store.task_by_key(&task.key).await.unwrap().archived, "an incremental listing proves nothing");
    s.forge.reset_log();
    let report = full(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert!(s.store.task_by_key(&task.key).await.unwrap().archived);
    assert_eq!(mapping_of(s, &task.key).await.sync_state, SyncState::Deleted);
    assert!(s.forge.requests().iter().any(|r| r.method == "GET" && r.path.ends_with("/issues/2")));
}

/// A create whose answer was lost is found by its marker, not made twice.
pub async fn adopts_lost_creates<D: Dialect>(s: &Setup<D>) {
    sync(s).await;
    let created = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: "Once only".into(), ..NewTask::default() })
        .await
        .unwrap();
    s.forge.fail_next("POST", "/issues", Fault::ApplyThenFail(502));
    assert_eq!(drain(s).await.failed, 1);
    make_due(s).await;
    let retry = drain(s).await;
    assert_eq!(retry.failed, 0, "{:?}", retry.errors);
    let made: Vec<_> = s.forge.issues().into_iter().filter(|i| i.title == "Once only").collect();
    assert_eq!(made.len(), 1);
    assert_eq!(s.forge.count("POST", "/issues"), 1);
    assert_eq!(mapping_of(s, &created.key).await.external_id, made[0].number.to_string());
}

/// 5xx and malformed listings fail the pass (retried, never dead letters);
/// the next try imports.
pub async fn retries_failures<D: Dialect>(s: &Setup<D>, seeded: usize) {
    s.forge.fail_next("GET", "/issues", Fault::Status(503));
    assert_eq!(full(s).await.failed, 1);
    assert_eq!(tasks(s).await.len(), 0);
    make_due(s).await;
    s.forge.fail_next("GET", "/issues", Fault::Malformed);
    let report = full(s).await;
    assert_eq!(report.failed, 1);
    assert!(report.errors[0].contains("unexpected answer"), "{:?}", report.errors);
    make_due(s).await;
    let report = full(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(tasks(s).await.len(), seeded);
    assert_eq!(s.db.count("sync_job WHERE dead").await, 0);
}

/// Remote label names are kept as they are: `good first issue` shows here
/// as `good-first-issue`, and a local label change writes the remote's own
/// names back (never our slugs, which would replace the real labels). A
/// label only the repository knows (`Needs Triage`, on no issue) is found
/// in the repository's labels when a new task carries it.
pub async fn keeps_remote_label_names<D: Dialect>(s: &Setup<D>) {
    let number = {
        let mut state = s.forge.state();
        state.label_id("Needs Triage");
        state.create(
            "Starter task",
            "For newcomers",
            vec!["good first issue".into(), "help wanted".into()],
            vec![],
            false,
        )
    };
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let task = task_of(s, number).await;
    assert_eq!(task.labels, vec!["good-first-issue", "help-wanted"]);
    let edit = TaskEdit { add_labels: vec!["ops".into()], ..TaskEdit::default() };
    s.store.edit_task(&actor("bo"), &task.key, edit, None).await.unwrap();
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let mut labels = s.forge.item(number).unwrap().labels;
    labels.sort();
    assert_eq!(labels, vec!["good first issue", "help wanted", "ops"], "the remote names, and the new one");
    assert_eq!(task_of(s, number).await.labels, vec!["good-first-issue", "help-wanted", "ops"]);

    let created = s
        .store
        .create_task(
            &actor("bo"),
            s.project_id,
            NewTask { title: "Triage me".into(), labels: vec!["needs-triage".into()], ..NewTask::default() },
        )
        .await
        .unwrap();
    let report = sync(s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let made = s.forge.issues().into_iter().find(|i| i.title == "Triage me").expect("created remotely");
    assert_eq!(made.labels, vec!["Needs Triage"]);
    assert_eq!(s.store.task_by_key(&created.key).await.unwrap().labels, vec!["needs-triage"]);
    // No label was made twice under another spelling.
    let names: Vec<String> = s.forge.state().labels.iter().map(|(n, _)| n.to_lowercase()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "{names:?}");
    assert!(!names.contains(&"good-first-issue".to_string()) && !names.contains(&"needs-triage".to_string()));
}
