//! Pulls: what changed in Plane since the last pass.
//!
//! An incremental pass lists work items newest first and stops at the
//! watermark (less an overlap window, so items committed out of order are not
//! missed; re-reading them is a no-op). A full pass lists everything,
//! including cycle and module membership, infers remote deletions — but only
//! when every page was read — and queues a create for every local task that
//! should be mirrored and has no work item yet (the initial push).
//!
//! One object that fails is recorded on its own key and the pass goes on
//! (see [`crate::sync::contain`]); only a listing or the reference data
//! failing is the pass's failure.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use super::PlaneSync;
use super::tasks::{Membership, remote_fields};
use crate::domain::{LocalKind, Priority, SyncState};
use crate::store::StoreResult;
use crate::store::sync::{ImportedTask, MappingUpdate, SyncMapping, SyncedTask};
use crate::sync::contain::{Containment, Import, stops_pass};
use crate::sync::error::SyncResult;
use crate::sync::merge::{Base, Convert};
use crate::sync::providers::plane::{EXTERNAL_SOURCE, WorkItem};
use crate::sync::queue;
use crate::sync::report::{ObjectOutcome, PassReport};

/// Items changed up to this long before the watermark are read again.
pub const OVERLAP: time::Duration = time::Duration::minutes(2);

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
        let error = match &result {
            Err(e) => Some(e.to_string()),
            Ok(()) => report.listing_error().map(str::to_string),
        };
        if !matches!(&result, Err(e) if e.is_database_outage()) {
            self.save_pass(report.full, error.is_none(), error.as_deref()).await?;
        }
        result.map(|()| report)
    }

    async fn pull_inner(&mut self, full: bool, report: &mut PassReport) -> SyncResult<()> {
        let cursor = self.load_cursor().await?;
        // The first pass of a connection reads everything.
        let full = full || cursor.work_items.is_none();
        report.full = full;
        if full {
            self.refresh_if_stale().await?;
            if cursor.work_items.is_none() {
                report.lanes_created = self.import_states_as_lanes().await?;
            }
            let capabilities = self.plane.capabilities().await?;
            self.identifier = capabilities.identifier.clone();
            self.timezone = capabilities.timezone.clone();
            self.save_capabilities(&serde_json::to_value(&capabilities).unwrap_or_default()).await?;
        }
        let mut contain = Containment::new(&self.store, self.connection.id, self.retry_for);
        match self.reconcile_planning(report, &mut contain).await {
            Ok(requests) => report.requests += requests,
            Err(e) if stops_pass(&e) => return Err(e),
            Err(e) => report.listing_failed("cycles and modules", &e),
        }

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
        let mut new_items = Vec::new();
        for item in &items {
            let member =
                membership.as_ref().map(|m: &HashMap<String, Membership>| m.get(&item.id).cloned().unwrap_or_default());
            let (key, outcome) = match mappings.get(&item.id) {
                Some(mapping) => (remote_key(mapping), self.reconcile_item(mapping, item, member.as_ref()).await),
                None => match self.adopt(item, member.as_ref()).await {
                    Ok(Some(outcome)) => (queue::import_key(&item.id), Ok(outcome)),
                    Ok(None) => {
                        new_items.push((item.clone(), member));
                        watermark = watermark.max(Some(item.updated_at));
                        continue;
                    }
                    Err(e) => (queue::import_key(&item.id), Err(e)),
                },
            };
            match outcome {
                Ok(outcome) => {
                    report.count(outcome);
                    contain.synced(key);
                }
                Err(e) => contain.failed(report, &key, &self.item_label(item), e).await?,
            }
            // A failure waits on the object's own key, so the pass can move past it.
            watermark = watermark.max(Some(item.updated_at));
        }
        if !new_items.is_empty() {
            report.created_local += self.import(&new_items, report, &contain).await?;
        }
        if full && listing.complete {
            let listed: HashSet<&str> = items.iter().map(|i| i.id.as_str()).collect();
            for mapping in mappings.values() {
                if mapping.sync_state == SyncState::Deleted || listed.contains(mapping.external_id.as_str()) {
                    continue;
                }
                // Confirm before acting: a listing is offset paging and can skip a row.
                match self.confirm_deleted(mapping).await {
                    Ok(true) => report.objects.deleted_remotely += 1,
                    Ok(false) => {}
                    Err(e) => {
                        let label = mapping.external_key.clone().unwrap_or_else(|| mapping.external_id.clone());
                        contain.failed(report, &remote_key(mapping), &label, e).await?;
                    }
                }
            }
        }
        if full {
            report.queued_creates =
                crate::sync::queue::queue_unmapped_tasks(&self.store, self.connection.id, self.connection.project_id)
                    .await?;
        }
        contain.finish().await?;
        self.save_watermark(watermark).await?;
        Ok(())
    }

    /// A mapped item missing from a complete listing: gone, if a read of it
    /// says so.
    async fn confirm_deleted(&mut self, mapping: &SyncMapping) -> SyncResult<bool> {
        if self.plane.work_item(&mapping.external_id).await?.is_some() {
            return Ok(false);
        }
        self.store.sync_remote_deleted(&self.actor, mapping).await?;
        Ok(true)
    }

    /// `FAKE-12 "title"`, as an operator reads a work item.
    fn item_label(&self, item: &WorkItem) -> String {
        self.item_key(item.sequence_id).unwrap_or_else(|| item.id.clone())
    }

    /// `import:ID` and Plane's planning objects (`import:cycle:ID`): a
    /// remote object a pass could not bring in, tried again on its own.
    pub async fn reconcile_remote(&mut self, key: &str) -> SyncResult<()> {
        let Some(rest) = key.strip_prefix(queue::IMPORT_PREFIX) else { return Ok(()) };
        if let Some((kind @ ("cycle" | "module"), id)) = rest.split_once(':') {
            return self.import_planning_object(kind, id).await;
        }
        let Some(item) = self.plane.work_item(rest).await? else { return Ok(()) };
        let mapped = self.store.sync_mappings_for(self.connection.id, LocalKind::Task, &[item.id.as_str()]).await?;
        if let Some(mapping) = mapped.first() {
            return self.reconcile_item(mapping, &item, None).await.map(drop);
        }
        if self.adopt(&item, None).await?.is_some() {
            return Ok(());
        }
        let Some(imported) = self.imported(&item, None) else { return Ok(()) };
        let (project_id, connection_id) = (self.connection.project_id, self.connection.id);
        self.store.sync_import_tasks(&self.actor, project_id, connection_id, &[imported]).await?;
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
    async fn adopt(&mut self, item: &WorkItem, membership: Option<&Membership>) -> SyncResult<Option<ObjectOutcome>> {
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
        self.adopt_item(task, modules, item, membership).await.map(Some)
    }

    /// Creates local tasks for work items made in Plane (see [`Containment::import`]).
    async fn import(
        &mut self,
        items: &[(WorkItem, Option<Membership>)],
        report: &mut PassReport,
        contain: &Containment,
    ) -> SyncResult<usize> {
        let imports = items
            .iter()
            .filter_map(|(item, membership)| {
                let task = self.imported(item, membership.as_ref())?;
                Some(Import { task, key: queue::import_key(&item.id), label: self.item_label(item) })
            })
            .collect();
        contain.import(&self.actor, self.connection.project_id, imports, report).await
    }

    /// A work item as a new local task with its mapping; `None` when no lane
    /// can hold it.
    fn imported(&self, item: &WorkItem, membership: Option<&Membership>) -> Option<ImportedTask> {
        let fallback = self.lanes.iter().filter(|l| l.sync).min_by_key(|l| l.position).map(|l| l.id);
        let remote = remote_fields(item, membership, &Base::default());
        let mut local = crate::sync::merge::Fields::new();
        for (field, value) in &remote {
            if let Some(converted) = self.to_local(field, value) {
                local.insert(field.clone(), converted);
            }
        }
        let lane_id = local.get("lane").and_then(Value::as_i64).or(fallback)?;
        local.insert("lane".into(), Value::from(lane_id));
        let fields =
            SyncedTask {
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
        let base = Base::new(local, remote);
        Some(ImportedTask {
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
        })
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

/// The key a mapped task's remote change is retried on.
fn remote_key(mapping: &SyncMapping) -> String {
    queue::remote_key(LocalKind::Task, mapping.local_id)
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
