//! `mctl sync plan`: what a full pass would do on each side, computed from a
//! full read of both sides without writing anything.

use std::collections::{HashMap, HashSet};

use super::planning::{Cycles, Modules};
use super::tasks::{local_fields, remote_fields};
use super::{PlaneSync, TASK_FIELDS};
use crate::domain::{LocalKind, SyncState};
use crate::store::tasks::TaskFilter;
use crate::sync::error::SyncResult;
use crate::sync::fields::{clean_title, mirrored};
use crate::sync::merge::{self, Base, Clocks};
use crate::sync::report::SyncPlan;

impl PlaneSync {
    pub async fn plan(&self) -> SyncResult<SyncPlan> {
        let mut plan = SyncPlan::default();
        let listing = self.plane.work_items_since(None).await?;
        plan.requests = listing.requests;
        let filter = TaskFilter {
            project_id: self.connection.project_id,
            limit: 1_000_000,
            include_archived: true,
            ..TaskFilter::default()
        };
        let tasks = self.store.list_tasks(&filter).await?;
        let modules: HashMap<String, i64> =
            self.store.list_modules(self.connection.project_id).await?.into_iter().map(|m| (m.name, m.id)).collect();
        let mappings = self.store.sync_mappings(self.connection.id, LocalKind::Task).await?;
        let by_local: HashMap<i64, _> = mappings.iter().map(|m| (m.local_id, m)).collect();
        let items: HashMap<&str, _> = listing.items.iter().map(|i| (i.id.as_str(), i)).collect();
        for task in &tasks {
            let module_ids: Vec<i64> = task.modules.iter().filter_map(|m| modules.get(m)).copied().collect();
            let Some(mapping) = by_local.get(&task.id) else {
                if mirrored(task, &self.lanes) {
                    plan.tasks.create_remote.push(format!("{} {}", task.key, task.title));
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
            let stored: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
            let local = local_fields(task, &module_ids);
            let remote = remote_fields(item, None, &stored);
            let base = stored.settled(&remote);
            let clocks = Clocks { local: task.updated_at, remote: item.updated_at };
            let merged = merge::merge(TASK_FIELDS, &base, &local, &remote, self, self.policy, clocks);
            if !merged.push.is_empty() {
                plan.tasks.push.push((task.key.clone(), merged.push.keys().cloned().collect()));
            }
            if !merged.pull.is_empty() {
                plan.tasks.pull.push((task.key.clone(), merged.pull.keys().cloned().collect()));
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
                plan.tasks.create_local.push(format!("{key} {}", clean_title(&item.name)));
            }
        }
        let cycles = self.list_cycles().await?;
        let modules = self.plane.modules().await?;
        plan.requests += cycles.requests + modules.requests;
        plan.cycles = self.plan_kind::<Cycles>(&cycles.items).await?;
        plan.modules = self.plan_kind::<Modules>(&modules.items).await?;
        Ok(plan)
    }
}
