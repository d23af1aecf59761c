//! Pulls: what changed in Plane since the last pass.
//!
//! An incremental pass lists work items newest first and stops at the
//! watermark (less an overlap window, so items committed out of order are not
//! missed; re-reading them is a no-op). A full pass lists everything,
//! including cycle and module membership, and infers remote deletions — but
//! only when every page was read.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::tasks::{Membership, TaskOutcome, local_fields, remote_fields};
use super::{PlaneSync, SyncError, SyncResult};
use crate::domain::{LocalKind, Priority, SyncState};
use crate::store::StoreResult;
use crate::store::sync::{ImportedTask, MappingUpdate, SyncMapping, SyncedTask};
use crate::sync::merge::{Base, Convert};
use crate::sync::providers::plane::{EXTERNAL_SOURCE, WorkItem};

/// Items changed up to this long before the watermark are read again.
pub const OVERLAP: time::Duration = time::Duration::minutes(2);

/// New remote items are created locally in batches of this many.
const IMPORT_BATCH: usize = 500;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassReport {
    pub full: bool,
    /// HTTP requests the listings took.
    pub requests: usize,
    /// Listing requests answered 304 (unchanged since last read).
    pub not_modified: usize,
    pub listed: usize,
    pub unchanged: usize,
    pub created_local: usize,
    pub created_remote: usize,
    pub pulled: usize,
    pub pushed: usize,
    pub conflicts: usize,
    pub deleted_remotely: usize,
    pub planning_changes: usize,
    /// Lanes made for Plane states on a connection's first pass.
    pub lanes_created: usize,
    /// Pipelines, deployments and releases read (repository providers).
    pub delivery: usize,
    pub errors: Vec<String>,
}

/// The pass's resting point: the newest `updated_at` fully handled.
#[derive(Debug, Clone, Default, serde::Deserialize, Serialize)]
pub(super) struct Watermarks {
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(super) work_items: Option<OffsetDateTime>,
}

impl PlaneSync {
    /// One pass: planning objects, then work items (all of them when `full`).
    pub async fn pull(&mut self, full: bool) -> SyncResult<PassReport> {
        let mut report = PassReport { full, ..PassReport::default() };
        let result = self.pull_inner(full, &mut report).await;
        let ok = result.is_ok() && report.errors.is_empty();
        let error = match &result {
            Err(e) => Some(e.to_string()),
            Ok(()) => report.errors.first().cloned(),
        };
        self.save_pass(full, ok, error.as_deref()).await?;
        result.map(|()| report)
    }

    async fn pull_inner(&mut self, full: bool, report: &mut PassReport) -> SyncResult<()> {
        let cursor = self.load_cursor().await?;
        // The first pass of a connection reads everything.
        let full = full || cursor.work_items.is_none();
        report.full = full;
        if full {
            self.refresh().await?;
            if cursor.work_items.is_none() {
                report.lanes_created = self.import_states_as_lanes().await?;
            }
            let capabilities = self.plane.capabilities().await?;
            self.identifier = capabilities.identifier.clone();
            self.save_capabilities(&serde_json::to_value(&capabilities).unwrap_or_default()).await?;
        }
        let (planning, requests) = self.reconcile_planning().await?;
        report.requests += requests;
        report.planning_changes = planning.created_local + planning.created_remote + planning.updated;

        let since = if full { None } else { cursor.work_items.map(|w| w - OVERLAP) };
        let listing = self.plane.work_items_since(since).await?;
        report.requests += listing.requests;
        report.listed = listing.items.len();
        let membership = if full { Some(self.membership(report).await?) } else { None };

        // A full pass needs every mapping (to see what was not listed); an incremental one only the listed items'.
        let mappings = if full {
            self.store.sync_mappings(self.connection.id, LocalKind::Task).await?
        } else {
            let listed: Vec<&str> = listing.items.iter().map(|i| i.id.as_str()).collect();
            self.store.sync_mappings_for(self.connection.id, LocalKind::Task, &listed).await?
        };
        let mappings: HashMap<String, SyncMapping> = mappings.into_iter().map(|m| (m.external_id.clone(), m)).collect();
        // Oldest first, so the watermark only moves past what was handled.
        let mut items = listing.items;
        items.sort_by_key(|i| i.updated_at);
        let mut watermark = cursor.work_items;
        let mut blocked = false;
        let mut new_items = Vec::new();
        for item in &items {
            let member =
                membership.as_ref().map(|m: &HashMap<String, Membership>| m.get(&item.id).cloned().unwrap_or_default());
            let outcome = match mappings.get(&item.id) {
                Some(mapping) => self.reconcile_item(mapping, item, member.as_ref()).await,
                None => match self.adopt(item, member.as_ref()).await {
                    Ok(Some(outcome)) => Ok(outcome),
                    Ok(None) => {
                        new_items.push((item.clone(), member));
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(outcome) => count(report, outcome),
                Err(e) => {
                    report
                        .errors
                        .push(format!("{}: {e}", self.item_key(item.sequence_id).unwrap_or_else(|| item.id.clone())));
                    blocked |= e.is_transient();
                    if matches!(e, SyncError::Provider(ref p) if p.not_before().is_some()) {
                        return Err(e);
                    }
                }
            }
            if !blocked {
                watermark = watermark.max(Some(item.updated_at));
            }
        }
        if !new_items.is_empty() {
            report.created_local += self.import(&new_items).await?;
        }
        if full && listing.complete {
            let listed: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
            for mapping in mappings.values() {
                if mapping.sync_state == SyncState::Deleted || listed.contains(mapping.external_id.as_str()) {
                    continue;
                }
                // Confirm before acting: a listing is offset paging and can skip a row.
                if self.plane.work_item(&mapping.external_id).await?.is_none() {
                    self.store.sync_remote_deleted(&self.actor, mapping).await?;
                    report.deleted_remotely += 1;
                }
            }
        }
        self.save_watermark(watermark).await?;
        Ok(())
    }

    /// Which cycle and modules each work item is in (full passes only:
    /// membership changes do not move an item's `updated_at`).
    async fn membership(&mut self, report: &mut PassReport) -> SyncResult<HashMap<String, Membership>> {
        let mut membership: HashMap<String, Membership> = HashMap::new();
        let cycles: Vec<String> = self.cycles.local_of.keys().cloned().collect();
        for cycle in cycles {
            let listing = self.plane.members_of("cycles", &cycle).await?;
            report.requests += listing.requests;
            for item in listing.items {
                membership.entry(item).or_default().cycle = Some(cycle.clone());
            }
        }
        let modules: Vec<String> = self.modules.local_of.keys().cloned().collect();
        for module in modules {
            let listing = self.plane.members_of("modules", &module).await?;
            report.requests += listing.requests;
            for item in listing.items {
                membership.entry(item).or_default().modules.push(module.clone());
            }
        }
        Ok(membership)
    }

    /// An unmapped item that we created (its external id is one of our
    /// tasks): the create's answer was lost before the mapping was saved.
    /// Link it and converge.
    async fn adopt(&mut self, item: &WorkItem, membership: Option<&Membership>) -> SyncResult<Option<TaskOutcome>> {
        if item.external_source.as_deref() != Some(EXTERNAL_SOURCE) {
            return Ok(None);
        }
        let Some(task_id) = item.external_id.as_deref().and_then(|e| e.parse::<i64>().ok()) else { return Ok(None) };
        let Ok((task, modules)) = self.store.sync_read_task(task_id).await else { return Ok(None) };
        if task.project_id != self.connection.project_id
            || self.store.sync_mapping(self.connection.id, LocalKind::Task, task_id).await?.is_some()
        {
            return Ok(None);
        }
        // Linked with the item as the base: both sides are taken as agreeing,
        // then local fields that differ are pushed on the next reconcile.
        let base =
            Base { local: local_fields(&task, &modules), remote: remote_fields(item, membership, &Base::default()) };
        let link = MappingUpdate {
            connection_id: self.connection.id,
            local_kind: LocalKind::Task,
            external_id: item.id.clone(),
            external_key: self.item_key(item.sequence_id),
            url: Some(self.plane.item_url(&item.id)),
            base: serde_json::to_value(&base).unwrap_or_default(),
            remote_version: Some(item.updated_at.to_string()),
            state: SyncState::Pending,
            error: None,
        };
        self.store.sync_save_link(&self.actor, task.project_id, task.id, &link).await?;
        crate::sync::queue::enqueue(&self.store, self.connection.id, &format!("task:{task_id}")).await?;
        Ok(Some(TaskOutcome::Adopted))
    }

    /// Creates local tasks for work items made in Plane, in batches.
    async fn import(&mut self, items: &[(WorkItem, Option<Membership>)]) -> SyncResult<usize> {
        let mut created = 0;
        let fallback = self.lanes.iter().filter(|l| l.sync).min_by_key(|l| l.position).map(|l| l.id);
        for chunk in items.chunks(IMPORT_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for (item, membership) in chunk {
                let remote = remote_fields(item, membership.as_ref(), &Base::default());
                let mut local = crate::sync::merge::Fields::new();
                for (field, value) in &remote {
                    if let Some(converted) = self.to_local(field, value) {
                        local.insert(field.clone(), converted);
                    }
                }
                let Some(lane_id) = local.get("lane").and_then(Value::as_i64).or(fallback) else { continue };
                local.insert("lane".into(), Value::from(lane_id));
                let fields = SyncedTask {
                    description: local.get("description").and_then(Value::as_str).map(str::to_string),
                    priority: local.get("priority").and_then(Value::as_str).and_then(|p| p.parse::<Priority>().ok()),
                    assignee_id: Some(local.get("assignee").and_then(Value::as_i64)),
                    labels: local
                        .get("labels")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()),
                    due_on: Some(local.get("due").and_then(Value::as_str).and_then(|d| {
                        time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).ok()
                    })),
                    cycle_id: Some(local.get("cycle").and_then(Value::as_i64)),
                    module_ids: local
                        .get("modules")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_i64).collect()),
                    ..SyncedTask::default()
                };
                let title = local.get("title").and_then(Value::as_str).unwrap_or("(untitled)").to_string();
                normalise_local(&mut local, &fields);
                let base = Base { local, remote };
                batch.push(ImportedTask {
                    title,
                    lane_id,
                    fields,
                    link: MappingUpdate {
                        connection_id: self.connection.id,
                        local_kind: LocalKind::Task,
                        external_id: item.id.clone(),
                        external_key: self.item_key(item.sequence_id),
                        url: Some(self.plane.item_url(&item.id)),
                        base: serde_json::to_value(&base).unwrap_or_default(),
                        remote_version: Some(item.updated_at.to_string()),
                        state: SyncState::InSync,
                        error: None,
                    },
                });
            }
            created += self
                .store
                .sync_import_tasks(&self.actor, self.connection.project_id, self.connection.id, &batch)
                .await?;
        }
        Ok(created)
    }

    pub(super) async fn load_cursor(&self) -> StoreResult<Watermarks> {
        let value = crate::sync::cursor::watermarks(&self.store, self.connection.id).await?;
        Ok(serde_json::from_value(value).unwrap_or_default())
    }

    async fn save_watermark(&self, watermark: Option<OffsetDateTime>) -> StoreResult<()> {
        let value = serde_json::to_value(Watermarks { work_items: watermark }).unwrap_or_default();
        crate::sync::cursor::save_watermarks(&self.store, self.connection.id, &value).await
    }

    async fn save_pass(&self, full: bool, ok: bool, error: Option<&str>) -> StoreResult<()> {
        crate::sync::cursor::save_pass(&self.store, self.connection.id, full, ok, error).await
    }

    async fn save_capabilities(&self, capabilities: &Value) -> StoreResult<()> {
        crate::sync::cursor::save_capabilities(&self.store, self.connection.id, capabilities).await
    }

    /// Pauses the connection's queue until `until` (a provider rate limit).
    pub async fn pause(&self, until: OffsetDateTime) -> StoreResult<()> {
        crate::sync::cursor::pause(&self.store, self.connection.id, until).await
    }
}

fn count(report: &mut PassReport, outcome: TaskOutcome) {
    match outcome {
        TaskOutcome::Unchanged | TaskOutcome::Skipped => report.unchanged += 1,
        TaskOutcome::Created | TaskOutcome::Adopted => report.created_remote += 1,
        TaskOutcome::Pushed => report.pushed += 1,
        TaskOutcome::Pulled => report.pulled += 1,
        TaskOutcome::PushedAndPulled => {
            report.pushed += 1;
            report.pulled += 1;
        }
        TaskOutcome::Conflict => report.conflicts += 1,
        TaskOutcome::RemoteDeleted => report.deleted_remotely += 1,
    }
}

/// Fills the local base with what the import writes for fields the
/// conversion left out (an unmapped assignee is stored as none).
fn normalise_local(local: &mut crate::sync::merge::Fields, fields: &SyncedTask) {
    local.entry("assignee".into()).or_insert(Value::Null);
    local.entry("cycle".into()).or_insert(Value::Null);
    local.entry("modules".into()).or_insert_with(|| Value::Array(vec![]));
    local.entry("labels".into()).or_insert_with(|| Value::Array(vec![]));
    local.entry("description".into()).or_insert_with(|| Value::from(""));
    local.entry("due".into()).or_insert(Value::Null);
    if fields.priority.is_none() {
        local.insert("priority".into(), Value::from("none"));
    }
}
