//! Tasks ↔ issues.
//!
//! A task with no mapping gets an issue, but first the most recent issues
//! are searched for our marker: a create whose answer was lost is adopted,
//! never duplicated. A mapped task is merged field by field with its issue
//! against the mapping's base (one half per side), as for Plane.

use serde_json::{Value, json};

use super::{ISSUE_FIELDS, RepoSync};
use crate::domain::{LocalKind, SyncState, Task};
use crate::store::StoreError;
use crate::store::sync::{MappingUpdate, SyncMapping, SyncedTask};
use crate::sync::error::SyncResult;
use crate::sync::merge::{self, Base, Clocks, Convert, Fields};
use crate::sync::providers::repo::{self, Issue, IssueWrite, RepoProvider};
use crate::sync::report::ObjectOutcome;

/// A task's shared fields, in local representation.
pub fn local_fields(task: &Task) -> Fields {
    let mut labels = task.labels.clone();
    labels.sort();
    Fields::from([
        ("title".into(), json!(task.title)),
        ("description".into(), json!(task.description)),
        ("lane".into(), json!(task.lane_id)),
        ("assignee".into(), json!(task.assignee_id)),
        ("labels".into(), json!(labels)),
    ])
}

/// An issue's shared fields, in remote representation.
pub fn remote_fields(issue: &Issue) -> Fields {
    let mut assignees: Vec<String> = issue.assignees.iter().map(|a| a.to_lowercase()).collect();
    assignees.sort();
    let mut labels = issue.labels.clone();
    labels.sort();
    Fields::from([
        ("title".into(), json!(issue.title)),
        ("description".into(), json!(repo::strip_marker(&issue.body))),
        ("lane".into(), json!(if issue.closed { "closed" } else { "open" })),
        ("assignee".into(), json!(assignees)),
        ("labels".into(), json!(labels)),
    ])
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// What to write remotely for merged fields; `not_planned`: the task's lane
/// is a cancelled one.
fn issue_write(push: &Fields, task_id: i64, not_planned: bool) -> IssueWrite {
    let mut write = IssueWrite { not_planned, ..IssueWrite::default() };
    for (field, value) in push {
        match field.as_str() {
            "title" => write.title = value.as_str().map(str::to_string),
            "description" => write.body = Some(repo::with_marker(value.as_str().unwrap_or(""), task_id)),
            "lane" => write.closed = Some(value.as_str() == Some("closed")),
            "assignee" => write.assignees = strings(value),
            "labels" => write.labels = strings(value),
            _ => {}
        }
    }
    write
}

/// Local changes from merged fields.
pub fn local_changes(pull: &Fields) -> SyncedTask {
    let mut changes = SyncedTask::default();
    for (field, value) in pull {
        match field.as_str() {
            "title" => changes.title = value.as_str().map(str::to_string),
            "description" => changes.description = value.as_str().map(str::to_string),
            "lane" => changes.lane_id = value.as_i64(),
            "assignee" => changes.assignee_id = Some(value.as_i64()),
            "labels" => changes.labels = strings(value),
            _ => {}
        }
    }
    changes
}

impl<P: RepoProvider> RepoSync<P> {
    /// Whether a lane is a cancelled one.
    fn cancelled(&self, lane_id: i64) -> bool {
        self.lanes.iter().any(|l| l.id == lane_id && l.category == crate::domain::LaneCategory::Cancelled)
    }

    pub fn link(&self, issue: &Issue, base: &Base, state: SyncState) -> MappingUpdate {
        MappingUpdate {
            connection_id: self.connection.id,
            local_kind: LocalKind::Task,
            external_id: issue.number.to_string(),
            external_key: Some(format!("#{}", issue.number)),
            url: issue.url.clone(),
            base: serde_json::to_value(base).unwrap_or_default(),
            remote_version: Some(issue.updated_at.to_string()),
            state,
            error: None,
        }
    }

    /// Reconciles a task after a local change (the outbox key `task:ID`).
    /// Converges a task with its remote copy; unless `remote_changed`, the
    /// remote read is skipped when no synced field changed locally.
    pub async fn reconcile_task(&mut self, task_id: i64, remote_changed: bool) -> SyncResult<ObjectOutcome> {
        let task = match self.store.sync_read_task(task_id).await {
            Ok((task, _)) => task,
            Err(StoreError::NotFound { .. }) => return Ok(ObjectOutcome::Skipped),
            Err(e) => return Err(e.into()),
        };
        if task.project_id != self.connection.project_id {
            return Ok(ObjectOutcome::Skipped);
        }
        let Some(mapping) = self.store.sync_mapping(self.connection.id, LocalKind::Task, task_id).await? else {
            return self.create_remote(&task).await;
        };
        if mapping.sync_state == SyncState::Deleted {
            return Ok(ObjectOutcome::Skipped);
        }
        let base: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
        if local_fields(&task) == base.local && mapping.sync_state == SyncState::InSync && !remote_changed {
            return Ok(ObjectOutcome::Unchanged);
        }
        let Ok(number) = mapping.external_id.parse::<i64>() else { return Ok(ObjectOutcome::Skipped) };
        match self.provider.issue(number).await? {
            Some(issue) => self.converge(task, &mapping, &issue).await,
            None => {
                self.store.sync_remote_deleted(&self.actor, &mapping).await?;
                Ok(ObjectOutcome::RemoteDeleted)
            }
        }
    }

    /// Reconciles a mapped task with its issue as a pass listed it.
    pub async fn reconcile_issue(&mut self, mapping: &SyncMapping, issue: &Issue) -> SyncResult<ObjectOutcome> {
        if mapping.sync_state == SyncState::Deleted {
            return Ok(ObjectOutcome::Skipped);
        }
        let task = match self.store.sync_read_task(mapping.local_id).await {
            Ok((task, _)) => task,
            Err(StoreError::NotFound { .. }) => return Ok(ObjectOutcome::Skipped),
            Err(e) => return Err(e.into()),
        };
        let base: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
        // Echo suppression: the issue as we last wrote or read it, the task as last synced.
        if mapping.remote_version.as_deref() == Some(issue.updated_at.to_string().as_str())
            && local_fields(&task) == base.local
        {
            return Ok(ObjectOutcome::Unchanged);
        }
        self.converge(task, mapping, issue).await
    }

    async fn converge(&mut self, task: Task, mapping: &SyncMapping, issue: &Issue) -> SyncResult<ObjectOutcome> {
        let stored: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
        if let Some(Value::Array(names)) = stored.remote.get("labels") {
            self.labels.learn(names.iter().filter_map(Value::as_str));
        }
        self.labels.prefer(issue.labels.iter().map(String::as_str));
        let local = local_fields(&task);
        if stored.local.get("labels") != local.get("labels") {
            self.know_labels(&task.labels).await?;
        }
        let remote = remote_fields(issue);
        let base = stored.settled(&remote);
        let clocks = Clocks { local: task.updated_at, remote: issue.updated_at };
        let plan = merge::merge(ISSUE_FIELDS, &base, &local, &remote, &*self, self.policy, clocks);
        // GitHub keeps why an issue closed (`state_reason`), but only with a
        // change of `state`: a task moved between closed lanes stays as it was.
        let cancelled = self.cancelled(task.lane_id);
        let open_conflicts =
            crate::sync::cursor::record_conflicts(&self.store, &self.actor, mapping, &task.key, &plan).await?;
        let state = if open_conflicts { SyncState::Conflict } else { SyncState::InSync };
        let mut issue = issue.clone();
        let pushed = !plan.push.is_empty();
        if pushed {
            // Written down before it is sent, so a crash after the server took
            // it cannot make our own push look like an edit made there.
            let intent = base.intending(&plan.push, &local);
            self.store.sync_save_intent(mapping.id, &serde_json::to_value(&intent).unwrap_or_default()).await?;
        }
        let mut base = plan.base.clone();
        if pushed {
            self.step("task.before_push").await;
            issue = self.provider.update_issue(issue.number, &issue_write(&plan.push, task.id, cancelled)).await?;
            self.step("task.pushed").await;
            // What the server made of our values is the new remote base.
            let answered = remote_fields(&issue);
            let pushed_only = plan.base_after_push(&mut base, &answered, &local);
            self.store
                .sync_save_link(&self.actor, task.project_id, task.id, &self.link(&issue, &pushed_only, state))
                .await?;
        }
        let pulled = !plan.pull.is_empty();
        let link = self.link(&issue, &base, state);
        if pulled {
            self.store.sync_update_task(&self.actor, task.id, task.version, &local_changes(&plan.pull), &link).await?;
        } else if !pushed {
            self.store.sync_save_link(&self.actor, task.project_id, task.id, &link).await?;
        }
        Ok(match (pushed, pulled) {
            _ if open_conflicts => ObjectOutcome::Conflict,
            (true, true) => ObjectOutcome::PushedAndPulled,
            (true, false) => ObjectOutcome::Pushed,
            (false, true) => ObjectOutcome::Pulled,
            (false, false) => ObjectOutcome::Unchanged,
        })
    }

    /// Creates the issue of a task that has none, unless a recent issue
    /// already carries its marker (a create whose answer was lost).
    async fn create_remote(&mut self, task: &Task) -> SyncResult<ObjectOutcome> {
        let lane = self.lanes.iter().find(|l| l.id == task.lane_id);
        if task.archived || lane.is_some_and(|l| !l.sync) {
            return Ok(ObjectOutcome::Skipped);
        }
        let recent = self.provider.recent_issues().await?;
        if let Some(found) = recent.iter().find(|i| repo::marked_task(&i.body) == Some(task.id)) {
            self.adopt(task, found).await?;
            return Ok(ObjectOutcome::Adopted);
        }
        self.know_labels(&task.labels).await?;
        let local = local_fields(task);
        let mut remote = Fields::new();
        for field in ISSUE_FIELDS {
            if let Some(value) = local.get(*field).and_then(|v| self.to_remote(field, v)) {
                remote.insert(field.to_string(), value);
            }
        }
        // The body always carries the marker.
        remote.entry("description".into()).or_insert_with(|| json!(""));
        self.step("task.before_create").await;
        let issue = self.provider.create_issue(&issue_write(&remote, task.id, self.cancelled(task.lane_id))).await?;
        self.step("task.created_remotely").await;
        let base = Base::new(local, remote_fields(&issue));
        self.store
            .sync_save_link(&self.actor, task.project_id, task.id, &self.link(&issue, &base, SyncState::InSync))
            .await?;
        self.step("task.linked").await;
        Ok(ObjectOutcome::Created)
    }

    /// Links a task to an issue carrying its marker. The issue is taken as
    /// the agreed base, so what differs here is pushed by the reconcile that
    /// follows (queued now).
    pub async fn adopt(&mut self, task: &Task, issue: &Issue) -> SyncResult<()> {
        self.labels.learn(issue.labels.iter().map(String::as_str));
        let remote = remote_fields(issue);
        let mut local = Fields::new();
        for (field, value) in &remote {
            if let Some(converted) = self.to_local(field, value) {
                local.insert(field.clone(), converted);
            }
        }
        let base = Base::new(local, remote);
        self.store
            .sync_save_link(&self.actor, task.project_id, task.id, &self.link(issue, &base, SyncState::Pending))
            .await?;
        let key = crate::sync::queue::object_key(LocalKind::Task, task.id);
        crate::sync::queue::enqueue(&self.store, self.connection.id, &key).await?;
        Ok(())
    }
}
