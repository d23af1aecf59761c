//! `mctl sync plan`: what a full pass would do on each side, computed from a
//! full read of both sides without writing anything.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::tasks::{local_fields, remote_fields};
use super::{PlaneSync, SyncResult, TASK_FIELDS};
use crate::domain::{LocalKind, SyncState};
use crate::store::tasks::TaskFilter;
use crate::sync::merge::{self, Base, Clocks};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncPlan {
    /// Local tasks that would get a work item.
    pub create_remote: Vec<String>,
    /// Work items that would become tasks (`PROJ-12 title`).
    pub create_local: Vec<String>,
    /// Task key → fields that would be sent to Plane.
    pub push: Vec<(String, Vec<String>)>,
    /// Task key → fields that would be written here.
    pub pull: Vec<(String, Vec<String>)>,
    /// Task key → fields changed differently on both sides.
    pub conflicts: Vec<(String, Vec<String>)>,
    /// Tasks whose work item is gone.
    pub deleted_remotely: Vec<String>,
    /// Plane states that would become lanes (`name (group)`) on the first pass.
    pub lanes_to_create: Vec<String>,
    pub requests: usize,
}

impl PlaneSync {
    pub async fn plan(&self) -> SyncResult<SyncPlan> {
        let mut plan = SyncPlan::default();
        let listing = self.plane.work_items_since(None).await?;
        plan.requests = listing.requests;
        let filter = TaskFilter { project_id: self.connection.project_id, limit: 1_000_000, ..TaskFilter::default() };
        let tasks = self.store.list_tasks(&filter).await?;
        let modules: HashMap<String, i64> =
            self.store.list_modules(self.connection.project_id).await?.into_iter().map(|m| (m.name, m.id)).collect();
        let mappings = self.store.sync_mappings(self.connection.id, LocalKind::Task).await?;
        let by_local: HashMap<i64, _> = mappings.iter().map(|m| (m.local_id, m)).collect();
        let items: HashMap<&str, _> = listing.items.iter().map(|i| (i.id.as_str(), i)).collect();
        for task in &tasks {
            let module_ids: Vec<i64> = task.modules.iter().filter_map(|m| modules.get(m)).copied().collect();
            let Some(mapping) = by_local.get(&task.id) else {
                let syncs = self.lanes.iter().find(|l| l.id == task.lane_id).is_none_or(|l| l.sync);
                if syncs {
                    plan.create_remote.push(task.key.clone());
                }
                continue;
            };
            if mapping.sync_state == SyncState::Deleted {
                continue;
            }
            let Some(item) = items.get(mapping.external_id.as_str()) else {
                plan.deleted_remotely.push(task.key.clone());
                continue;
            };
            let base: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
            let local = local_fields(task, &module_ids);
            let remote = remote_fields(item, None, &base);
            let clocks = Clocks { local: task.updated_at, remote: item.updated_at };
            let merged = merge::merge(TASK_FIELDS, &base, &local, &remote, self, self.policy, clocks);
            if !merged.push.is_empty() {
                plan.push.push((task.key.clone(), merged.push.keys().cloned().collect()));
            }
            if !merged.pull.is_empty() {
                plan.pull.push((task.key.clone(), merged.pull.keys().cloned().collect()));
            }
            if !merged.conflicts.is_empty() {
                plan.conflicts.push((task.key.clone(), merged.conflicts.iter().map(|c| c.field.clone()).collect()));
            }
        }
        let import_states =
            self.connection.config.get("import_states").and_then(serde_json::Value::as_bool) != Some(false);
        if import_states && self.load_cursor().await?.work_items.is_none() {
            plan.lanes_to_create =
                self.states_without_lane().iter().map(|s| format!("{} ({})", s.name.trim(), s.group)).collect();
        }
        let mapped: HashSet<&str> = mappings.iter().map(|m| m.external_id.as_str()).collect();
        for item in &listing.items {
            if !mapped.contains(item.id.as_str()) {
                let key = self.item_key(item.sequence_id).unwrap_or_else(|| item.id.clone());
                plan.create_local.push(format!("{key} {}", super::clean_title(&item.name)));
            }
        }
        Ok(plan)
    }
}
