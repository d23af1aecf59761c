//! Tasks ↔ Plane work items.
//!
//! A task with no mapping is created remotely (idempotently: a lost answer is
//! adopted from Plane's 409). A mapped task is merged field by field with its
//! work item against the mapping's base; what changed remotely is written
//! locally through the repository, what changed locally is sent as one PATCH
//! (and cycle/module membership calls).
//!
//! Adopting a work item (one we created, whose mapping was never saved)
//! takes the item as the agreed copy and the task as changed since, so
//! whatever the task gained after the create — an edit made while a worker
//! was down — is pushed, not lost.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::{PlaneSync, TASK_FIELDS};
use crate::domain::{LocalKind, Priority, SyncState, Task};
use crate::store::StoreError;
use crate::store::sync::{MappingUpdate, SyncMapping, SyncedTask};
use crate::sync::error::SyncResult;
use crate::sync::merge::{self, Base, Clocks, Convert, Fields, MergePlan};
use crate::sync::providers::plane::{WorkItem, cycle_completed};
use crate::sync::report::ObjectOutcome;

/// A work item's cycle and modules, when a pass listed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Membership {
    pub cycle: Option<String>,
    pub modules: Vec<String>,
}

/// A task's shared fields, in local representation.
pub fn local_fields(task: &Task, modules: &[i64]) -> Fields {
    let mut labels = task.labels.clone();
    labels.sort();
    let mut modules = modules.to_vec();
    modules.sort_unstable();
    Fields::from([
        ("title".into(), json!(task.title)),
        ("description".into(), json!(task.description)),
        ("priority".into(), json!(task.priority.as_str())),
        ("lane".into(), json!(task.lane_id)),
        ("assignee".into(), json!(task.assignee_id)),
        ("labels".into(), json!(labels)),
        ("due".into(), json!(task.due_on.map(|d| d.to_string()))),
        ("cycle".into(), json!(task.cycle_id)),
        ("modules".into(), json!(modules)),
    ])
}

/// A work item's shared fields, in remote representation. Membership comes
/// from a pass's listing when there was one, else it is taken as last seen.
pub fn remote_fields(item: &WorkItem, membership: Option<&Membership>, base: &Base) -> Fields {
    let mut assignees = item.assignees.clone();
    assignees.sort();
    let mut labels = item.labels.clone();
    labels.sort();
    let mut fields = Fields::from([
        ("title".into(), json!(item.name)),
        ("description".into(), json!(item.description_html.clone().unwrap_or_default())),
        ("priority".into(), json!(item.priority.clone().unwrap_or_else(|| "none".into()))),
        ("lane".into(), json!(item.state)),
        ("assignee".into(), json!(assignees)),
        ("labels".into(), json!(labels)),
        ("due".into(), json!(item.target_date)),
    ]);
    match membership {
        Some(m) => {
            let mut modules = m.modules.clone();
            modules.sort();
            fields.insert("cycle".into(), json!(m.cycle));
            fields.insert("modules".into(), json!(modules));
        }
        None => {
            for field in ["cycle", "modules"] {
                let known =
                    base.remote.get(field).cloned().unwrap_or(if field == "cycle" { Value::Null } else { json!([]) });
                fields.insert(field.into(), known);
            }
        }
    }
    fields
}

/// The PATCH/POST body for work-item fields (membership goes separately).
fn item_body(fields: &Fields) -> Value {
    let mut body = Map::new();
    for (field, value) in fields {
        let name = match field.as_str() {
            "title" => "name",
            "description" => "description_html",
            "priority" => "priority",
            "lane" => "state",
            "assignee" => "assignees",
            "labels" => "labels",
            "due" => "target_date",
            _ => continue,
        };
        body.insert(name.into(), value.clone());
    }
    Value::Object(body)
}

/// Local changes from merged fields.
fn local_changes(pull: &Fields) -> SyncedTask {
    let mut changes = SyncedTask::default();
    for (field, value) in pull {
        match field.as_str() {
            "title" => changes.title = value.as_str().map(str::to_string),
            "description" => changes.description = value.as_str().map(str::to_string),
            "priority" => changes.priority = value.as_str().and_then(|p| p.parse::<Priority>().ok()),
            "lane" => changes.lane_id = value.as_i64(),
            "assignee" => changes.assignee_id = Some(value.as_i64()),
            "labels" => {
                changes.labels =
                    value.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            }
            "due" => changes.due_on = Some(value.as_str().and_then(parse_date)),
            "cycle" => changes.cycle_id = Some(value.as_i64()),
            "modules" => changes.module_ids = value.as_array().map(|a| a.iter().filter_map(Value::as_i64).collect()),
            _ => {}
        }
    }
    changes
}

/// What the operator reads when Plane keeps a work item out of an ended cycle.
fn cycle_refusal(task: &Task) -> String {
    let cycle = task.cycle.as_deref().unwrap_or("?");
    format!(
        "Plane takes no new work items in cycle {cycle:?}, which has ended: move {} to an open cycle or clear its cycle",
        task.key
    )
}

fn parse_date(text: &str) -> Option<time::Date> {
    time::Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

impl PlaneSync {
    fn link(&self, item: &WorkItem, base: &Base, state: SyncState) -> MappingUpdate {
        MappingUpdate {
            connection_id: self.connection.id,
            local_kind: LocalKind::Task,
            external_id: item.id.clone(),
            external_key: self.item_key(item.sequence_id),
            url: Some(self.plane.item_url(&item.id)),
            base: serde_json::to_value(base).unwrap_or_default(),
            remote_version: Some(item.updated_at.to_string()),
            state,
            error: None,
        }
    }

    /// Reconciles a task after a local change (the outbox key `task:ID`).
    /// Nothing is asked of Plane when the task is as last synced.
    /// Converges a task with its remote copy; unless `remote_changed`, the
    /// remote read is skipped when no synced field changed locally.
    pub async fn reconcile_task(&mut self, task_id: i64, remote_changed: bool) -> SyncResult<ObjectOutcome> {
        let (task, modules) = match self.store.sync_read_task(task_id).await {
            Ok(found) => found,
            Err(StoreError::NotFound { .. }) => return Ok(ObjectOutcome::Skipped),
            Err(e) => return Err(e.into()),
        };
        if task.project_id != self.connection.project_id {
            return Ok(ObjectOutcome::Skipped);
        }
        let mapping = self.store.sync_mapping(self.connection.id, LocalKind::Task, task_id).await?;
        let Some(mapping) = mapping else {
            return self.create_remote(&task, &modules).await;
        };
        if mapping.sync_state == SyncState::Deleted {
            return Ok(ObjectOutcome::Skipped);
        }
        let base: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
        if local_fields(&task, &modules) == base.local && mapping.sync_state == SyncState::InSync && !remote_changed {
            return Ok(ObjectOutcome::Unchanged);
        }
        match self.plane.work_item(&mapping.external_id).await? {
            Some(item) => self.converge(task, modules, &mapping, &item, None).await,
            None => {
                self.store.sync_remote_deleted(&self.actor, &mapping).await?;
                Ok(ObjectOutcome::RemoteDeleted)
            }
        }
    }

    /// Reconciles a mapped task with its work item as a pass listed it.
    pub async fn reconcile_item(
        &mut self,
        mapping: &SyncMapping,
        item: &WorkItem,
        membership: Option<&Membership>,
    ) -> SyncResult<ObjectOutcome> {
        let restored;
        let mapping = if mapping.sync_state == SyncState::Deleted {
            // Listed again: it was archived in Plane (which the API shows as
            // gone), and now it is not. Same task, same mapping.
            self.store.sync_remote_restored(&self.actor, mapping).await?;
            restored = self
                .store
                .sync_mapping(self.connection.id, LocalKind::Task, mapping.local_id)
                .await?
                .ok_or_else(|| StoreError::not_found("mapping of task", mapping.local_id.to_string()))?;
            &restored
        } else {
            mapping
        };
        let (task, modules) = match self.store.sync_read_task(mapping.local_id).await {
            Ok(found) => found,
            Err(StoreError::NotFound { .. }) => return Ok(ObjectOutcome::Skipped),
            Err(e) => return Err(e.into()),
        };
        let base: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
        // Echo suppression: the item as we last wrote or read it, and the task as last synced.
        if mapping.remote_version.as_deref() == Some(item.updated_at.to_string().as_str())
            && membership.is_none_or(|m| remote_fields(item, Some(m), &base) == base.remote)
            && local_fields(&task, &modules) == base.local
        {
            return Ok(ObjectOutcome::Unchanged);
        }
        self.converge(task, modules, mapping, item, membership).await
    }

    async fn converge(
        &mut self,
        task: Task,
        modules: Vec<i64>,
        mapping: &SyncMapping,
        item: &WorkItem,
        membership: Option<&Membership>,
    ) -> SyncResult<ObjectOutcome> {
        let stored: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
        self.ensure_labels(&task.labels).await?;
        let local = local_fields(&task, &modules);
        let remote = remote_fields(item, membership, &stored);
        let base = stored.settled(&remote);
        let clocks = Clocks { local: task.updated_at, remote: item.updated_at };
        let mut plan = merge::merge(TASK_FIELDS, &base, &local, &remote, &*self, self.policy, clocks);
        self.keep_other_assignees(&mut plan.push, &remote, &base);
        let open_conflicts = self.record_conflicts(mapping, &task, &plan).await?;
        let state = if open_conflicts { SyncState::Conflict } else { SyncState::InSync };
        let mut item = item.clone();
        let pushed = !plan.push.is_empty();
        if pushed {
            // Written down before it is sent, so a crash after Plane took it
            // cannot make our own push look like an edit made in Plane.
            let intent = base.intending(&plan.push, &local);
            self.store.sync_save_intent(mapping.id, &serde_json::to_value(&intent).unwrap_or_default()).await?;
        }
        let mut base = plan.base.clone();
        // A refusal stands while the task and the item are still in different cycles.
        let still_apart = self.to_remote("cycle", &local["cycle"]).as_ref() != remote.get("cycle");
        let mut refused = (mapping.sync_state == SyncState::Error && still_apart).then(|| cycle_refusal(&task));
        if pushed {
            self.step("task.before_push").await;
            let (updated, cycle_refused) = self.push(&item, &remote, &plan.push).await?;
            item = updated;
            if cycle_refused {
                // The item stays in the cycle Plane has; the task keeps its own.
                base.remote.insert("cycle".into(), remote.get("cycle").cloned().unwrap_or(Value::Null));
                refused = Some(cycle_refusal(&task));
            }
            self.step("task.pushed").await;
            // What Plane made of our values (it sanitizes HTML) is the new remote base.
            let answered = remote_fields(&item, None, &base);
            let pushed_only = plan.base_after_push(&mut base, &answered, &local);
            let link = self.link(&item, &pushed_only, state).refused(refused.as_deref());
            self.store.sync_save_link(&self.actor, task.project_id, task.id, &link).await?;
            self.step("task.push_recorded").await;
        }
        let pulled = !plan.pull.is_empty();
        let link = self.link(&item, &base, state).refused(refused.as_deref());
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

    /// Plane has several assignees, a task one: a local reassignment swaps
    /// the member that stood for the previous assignee and keeps the others
    /// (someone added in Plane stays).
    fn keep_other_assignees(&self, push: &mut Fields, remote: &Fields, base: &Base) {
        let Some(wanted) = push.get_mut("assignee") else { return };
        let members = |value: Option<&Value>| -> BTreeSet<String> {
            value
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default()
        };
        let previous = base.local.get("assignee").and_then(|a| self.to_remote("assignee", a));
        let mut assignees = members(remote.get("assignee"));
        for member in members(previous.as_ref()) {
            assignees.remove(&member);
        }
        assignees.extend(members(Some(wanted)));
        *wanted = json!(assignees.into_iter().collect::<Vec<_>>());
    }

    /// Sends local values: one PATCH for the item's own fields, then
    /// membership calls. Returns the item as Plane now has it, and whether
    /// Plane kept it out of the task's cycle (a completed cycle takes no new
    /// work items; everything else was still sent).
    async fn push(&mut self, item: &WorkItem, remote: &Fields, push: &Fields) -> SyncResult<(WorkItem, bool)> {
        let body = item_body(push);
        let updated = if body.as_object().is_some_and(|b| !b.is_empty()) {
            self.plane.update_work_item(&item.id, &body).await?
        } else {
            item.clone()
        };
        let mut cycle_refused = false;
        if let Some(cycle) = push.get("cycle") {
            match (cycle.as_str(), remote.get("cycle").and_then(Value::as_str)) {
                (Some(new), _) => match self.plane.add_to("cycles", new, &item.id).await {
                    Ok(()) => {}
                    Err(e) if cycle_completed(&e) => cycle_refused = true,
                    Err(e) => return Err(e.into()),
                },
                (None, Some(old)) => self.plane.remove_from("cycles", old, &item.id).await?,
                (None, None) => {}
            }
        }
        if let Some(modules) = push.get("modules") {
            let set = |v: Option<&Value>| -> BTreeSet<String> {
                v.and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default()
            };
            let (new, old) = (set(Some(modules)), set(remote.get("modules")));
            for module in new.difference(&old) {
                self.plane.add_to("modules", module, &item.id).await?;
            }
            for module in old.difference(&new) {
                self.plane.remove_from("modules", module, &item.id).await?;
            }
        }
        Ok((updated, cycle_refused))
    }

    /// Creates the work item of a task that has none.
    async fn create_remote(&mut self, task: &Task, modules: &[i64]) -> SyncResult<ObjectOutcome> {
        let lane = self.lanes.iter().find(|l| l.id == task.lane_id);
        if task.archived || lane.is_some_and(|l| !l.sync) {
            return Ok(ObjectOutcome::Skipped);
        }
        self.ensure_labels(&task.labels).await?;
        let local = local_fields(task, modules);
        let mut remote = Fields::new();
        for field in TASK_FIELDS {
            if let Some(value) = local.get(*field).and_then(|v| merge::Convert::to_remote(&*self, field, v)) {
                remote.insert(field.to_string(), value);
            }
        }
        let mut body = item_body(&remote);
        if let Some(map) = body.as_object_mut()
            && map.get("state").is_some_and(Value::is_null)
        {
            // No state for the lane: Plane uses the project's default.
            map.remove("state");
        }
        self.step("task.before_create").await;
        let (item, adopted) = self.plane.create_work_item(task.id, &body).await?;
        self.step("task.created_remotely").await;
        if adopted {
            // Made by an earlier create whose answer was lost: what it holds
            // is that create's, and the task may have changed since.
            return self.adopt_item(task.clone(), modules.to_vec(), &item, None).await;
        }
        let empty = Base::default();
        let pushed_membership = Membership {
            cycle: remote.get("cycle").and_then(Value::as_str).map(str::to_string),
            modules: remote
                .get("modules")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        };
        // The base: the task as it is, and the item as Plane answered (membership as we are about to set it).
        let base = Base::new(local.clone(), remote_fields(&item, Some(&pushed_membership), &empty));
        // Saved first: if membership calls fail, the retry finds the mapping and converges.
        let mut pending = base.clone();
        pending.remote.insert("cycle".into(), Value::Null);
        pending.remote.insert("modules".into(), json!([]));
        self.store
            .sync_save_link(&self.actor, task.project_id, task.id, &self.link(&item, &pending, SyncState::InSync))
            .await?;
        self.step("task.linked").await;
        if let Some(cycle) = &pushed_membership.cycle {
            self.plane.add_to("cycles", cycle, &item.id).await?;
        }
        for module in &pushed_membership.modules {
            self.plane.add_to("modules", module, &item.id).await?;
        }
        if pushed_membership != Membership::default() {
            self.store
                .sync_save_link(&self.actor, task.project_id, task.id, &self.link(&item, &base, SyncState::InSync))
                .await?;
        }
        Ok(ObjectOutcome::Created)
    }

    /// Links a task to a work item an earlier create made for it, then
    /// converges: the item is taken as the last agreed copy (in both
    /// representations), so every field the task holds differently now is
    /// pushed, and nothing of the task is overwritten by the item's older values.
    pub async fn adopt_item(
        &mut self,
        task: Task,
        modules: Vec<i64>,
        item: &WorkItem,
        membership: Option<&Membership>,
    ) -> SyncResult<ObjectOutcome> {
        let remote = remote_fields(item, membership, &Base::default());
        let local = remote.iter().filter_map(|(f, v)| Some((f.clone(), self.to_local(f, v)?))).collect();
        let base = Base::new(local, remote);
        let link = self.link(item, &base, SyncState::Pending);
        self.store.sync_save_link(&self.actor, task.project_id, task.id, &link).await?;
        self.step("task.adopted").await;
        let mapping = self
            .store
            .sync_mapping(self.connection.id, LocalKind::Task, task.id)
            .await?
            .ok_or_else(|| StoreError::not_found("mapping of task", &task.key))?;
        match self.converge(task, modules, &mapping, item, membership).await? {
            ObjectOutcome::Conflict => Ok(ObjectOutcome::Conflict),
            _ => Ok(ObjectOutcome::Adopted),
        }
    }
}

impl PlaneSync {
    /// Records the plan's conflicts; whether any is left open.
    async fn record_conflicts(&self, mapping: &SyncMapping, task: &Task, plan: &MergePlan) -> SyncResult<bool> {
        Ok(crate::sync::cursor::record_conflicts(&self.store, &self.actor, mapping, &task.key, plan).await?)
    }
}
