//! Cycles ↔ Plane cycles and modules ↔ Plane modules: linked by mapping (a
//! remote one carrying our external id is adopted), created on whichever side
//! lacks them, and merged field by field like tasks.

use serde_json::{Value, json};

use super::{PlaneSync, SyncResult};
use crate::domain::{LocalKind, ModuleStatus, SyncState};
use crate::store::planning::{CycleUpdate, ModuleUpdate, NewModule};
use crate::store::sync::{MappingUpdate, SyncMapping};
use crate::sync::merge::{self, Base, Clocks, Convert, Fields};
use crate::sync::providers::plane::{Cycle, Module};

const CYCLE_FIELDS: &[&str] = &["name", "description", "start", "end"];
const MODULE_FIELDS: &[&str] = &["name", "description", "status", "target"];

/// Planning fields have the same representation on both sides.
struct Same;

impl Convert for Same {
    fn to_local(&self, _: &str, remote: &Value) -> Option<Value> {
        Some(remote.clone())
    }
    fn to_remote(&self, _: &str, local: &Value) -> Option<Value> {
        Some(local.clone())
    }
}

/// What a planning pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanningReport {
    pub created_local: usize,
    pub created_remote: usize,
    pub updated: usize,
}

fn date(text: Option<&str>) -> Option<time::Date> {
    time::Date::parse(text?, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn remote_cycle(c: &Cycle) -> Fields {
    Fields::from([
        ("name".into(), json!(c.name)),
        ("description".into(), json!(c.description.clone().unwrap_or_default())),
        ("start".into(), json!(c.start_date.as_deref().and_then(|d| d.get(..10)))),
        ("end".into(), json!(c.end_date.as_deref().and_then(|d| d.get(..10)))),
    ])
}

fn remote_module(m: &Module) -> Fields {
    Fields::from([
        ("name".into(), json!(m.name)),
        ("description".into(), json!(m.description.clone().unwrap_or_default())),
        ("status".into(), json!(m.status.clone().unwrap_or_else(|| "backlog".into()))),
        ("target".into(), json!(m.target_date)),
    ])
}

fn body(fields: &Fields, kind: &str) -> Value {
    let mut body = serde_json::Map::new();
    for (field, value) in fields {
        let name = match (kind, field.as_str()) {
            (_, "name") => "name",
            (_, "description") => "description",
            ("cycles", "start") => "start_date",
            ("cycles", "end") => "end_date",
            ("modules", "status") => "status",
            ("modules", "target") => "target_date",
            _ => continue,
        };
        body.insert(name.into(), value.clone());
    }
    Value::Object(body)
}

impl PlaneSync {
    fn planning_link(&self, kind: LocalKind, id: &str, base: &Base) -> MappingUpdate {
        MappingUpdate {
            connection_id: self.connection.id,
            local_kind: kind,
            external_id: id.to_string(),
            external_key: None,
            url: None,
            base: serde_json::to_value(base).unwrap_or_default(),
            remote_version: None,
            state: SyncState::InSync,
            error: None,
        }
    }

    /// Converges cycles, then modules. Returns what changed.
    pub async fn reconcile_planning(&mut self) -> SyncResult<(PlanningReport, usize)> {
        let mut report = PlanningReport::default();
        let mut requests = 0;
        let cycles = self.plane.cycles().await?;
        requests += cycles.requests;
        self.reconcile_cycles(&cycles.items, &mut report).await?;
        let modules = self.plane.modules().await?;
        requests += modules.requests;
        self.reconcile_modules(&modules.items, &mut report).await?;
        self.refresh_links().await?;
        Ok((report, requests))
    }

    async fn reconcile_cycles(&mut self, remote: &[Cycle], report: &mut PlanningReport) -> SyncResult<()> {
        let project_id = self.connection.project_id;
        let today = time::OffsetDateTime::now_utc().date();
        let local = self.store.list_cycles(project_id, today).await?;
        let mappings = self.store.sync_mappings(self.connection.id, LocalKind::Cycle).await?;
        for cycle in &local {
            let fields = Fields::from([
                ("name".into(), json!(cycle.name)),
                ("description".into(), json!(cycle.description)),
                ("start".into(), json!(cycle.starts_on.to_string())),
                ("end".into(), json!(cycle.ends_on.to_string())),
            ]);
            let mapping = mappings.iter().find(|m| m.local_id == cycle.id);
            let found = match mapping {
                Some(m) => remote.iter().find(|r| r.id == m.external_id),
                None => remote.iter().find(|r| r.external_id.as_deref() == Some(&cycle.id.to_string())),
            };
            match (mapping, found) {
                (Some(m), None) if m.sync_state != SyncState::Deleted => {
                    self.store.sync_set_mapping_state(m.id, SyncState::Deleted, None).await?;
                }
                (Some(_), None) => {}
                (None, None) => {
                    let (created, _): (Cycle, bool) =
                        self.plane.create_planning("cycles", cycle.id, &body(&fields, "cycles")).await?;
                    let base = Base { local: fields, remote: remote_cycle(&created) };
                    self.store
                        .sync_save_link(
                            &self.actor,
                            project_id,
                            cycle.id,
                            &self.planning_link(LocalKind::Cycle, &created.id, &base),
                        )
                        .await?;
                    report.created_remote += 1;
                }
                (mapping, Some(found)) => {
                    let base: Base =
                        mapping.and_then(|m| serde_json::from_value(m.base.clone()).ok()).unwrap_or_default();
                    let remote_fields = remote_cycle(found);
                    let clocks = Clocks {
                        local: time::OffsetDateTime::UNIX_EPOCH,
                        remote: found.updated_at.unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                    };
                    let plan = merge::merge(CYCLE_FIELDS, &base, &fields, &remote_fields, &Same, self.policy, clocks);
                    let mut base = plan.base.clone();
                    if !plan.push.is_empty() {
                        let updated: Cycle =
                            self.plane.update_planning("cycles", &found.id, &body(&plan.push, "cycles")).await?;
                        base.remote = remote_cycle(&updated);
                    }
                    if !plan.pull.is_empty() {
                        let update = CycleUpdate {
                            name: plan.pull.get("name").and_then(Value::as_str).map(str::to_string),
                            description: plan.pull.get("description").and_then(Value::as_str).map(str::to_string),
                            starts_on: date(plan.pull.get("start").and_then(Value::as_str)),
                            ends_on: date(plan.pull.get("end").and_then(Value::as_str)),
                        };
                        self.store.update_cycle(&self.actor, project_id, &cycle.name, update).await?;
                    }
                    if mapping.is_none_or(|m| base_of(m) != base) {
                        self.store
                            .sync_save_link(
                                &self.actor,
                                project_id,
                                cycle.id,
                                &self.planning_link(LocalKind::Cycle, &found.id, &base),
                            )
                            .await?;
                    }
                    if !plan.is_noop() {
                        report.updated += 1;
                    }
                }
            }
        }
        // Remote cycles nobody here knows: made in Plane, so made here too.
        for found in remote {
            let known = mappings.iter().any(|m| m.external_id == found.id)
                || found.external_id.as_deref().is_some_and(|e| local.iter().any(|c| c.id.to_string() == e));
            if known {
                continue;
            }
            let (Some(start), Some(end)) = (
                date(found.start_date.as_deref().and_then(|d| d.get(..10))),
                date(found.end_date.as_deref().and_then(|d| d.get(..10))),
            ) else {
                // A draft cycle without dates has no local counterpart yet.
                continue;
            };
            let name = unique_name(&found.name, local.iter().map(|c| c.name.as_str()));
            let created = self
                .store
                .create_cycle(&self.actor, project_id, &name, start, end, found.description.as_deref().unwrap_or(""))
                .await?;
            let local_fields = Fields::from([
                ("name".into(), json!(created.name)),
                ("description".into(), json!(created.description)),
                ("start".into(), json!(created.starts_on.to_string())),
                ("end".into(), json!(created.ends_on.to_string())),
            ]);
            let base = Base { local: local_fields, remote: remote_cycle(found) };
            self.store
                .sync_save_link(
                    &self.actor,
                    project_id,
                    created.id,
                    &self.planning_link(LocalKind::Cycle, &found.id, &base),
                )
                .await?;
            report.created_local += 1;
        }
        Ok(())
    }

    async fn reconcile_modules(&mut self, remote: &[Module], report: &mut PlanningReport) -> SyncResult<()> {
        let project_id = self.connection.project_id;
        let local = self.store.list_modules(project_id).await?;
        let mappings = self.store.sync_mappings(self.connection.id, LocalKind::Module).await?;
        for module in &local {
            let fields = Fields::from([
                ("name".into(), json!(module.name)),
                ("description".into(), json!(module.description)),
                ("status".into(), json!(module.status.as_str())),
                ("target".into(), json!(module.target_on.map(|d| d.to_string()))),
            ]);
            let mapping = mappings.iter().find(|m| m.local_id == module.id);
            let found = match mapping {
                Some(m) => remote.iter().find(|r| r.id == m.external_id),
                None => remote.iter().find(|r| r.external_id.as_deref() == Some(&module.id.to_string())),
            };
            match (mapping, found) {
                (Some(m), None) if m.sync_state != SyncState::Deleted => {
                    self.store.sync_set_mapping_state(m.id, SyncState::Deleted, None).await?;
                }
                (Some(_), None) => {}
                (None, None) => {
                    let (created, _): (Module, bool) =
                        self.plane.create_planning("modules", module.id, &body(&fields, "modules")).await?;
                    let base = Base { local: fields, remote: remote_module(&created) };
                    self.store
                        .sync_save_link(
                            &self.actor,
                            project_id,
                            module.id,
                            &self.planning_link(LocalKind::Module, &created.id, &base),
                        )
                        .await?;
                    report.created_remote += 1;
                }
                (mapping, Some(found)) => {
                    let base: Base =
                        mapping.and_then(|m| serde_json::from_value(m.base.clone()).ok()).unwrap_or_default();
                    let remote_fields = remote_module(found);
                    let clocks = Clocks {
                        local: time::OffsetDateTime::UNIX_EPOCH,
                        remote: found.updated_at.unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
                    };
                    let plan = merge::merge(MODULE_FIELDS, &base, &fields, &remote_fields, &Same, self.policy, clocks);
                    let mut base = plan.base.clone();
                    if !plan.push.is_empty() {
                        let updated: Module =
                            self.plane.update_planning("modules", &found.id, &body(&plan.push, "modules")).await?;
                        base.remote = remote_module(&updated);
                    }
                    if !plan.pull.is_empty() {
                        let update = ModuleUpdate {
                            name: plan.pull.get("name").and_then(Value::as_str).map(str::to_string),
                            description: plan.pull.get("description").and_then(Value::as_str).map(str::to_string),
                            status: plan
                                .pull
                                .get("status")
                                .and_then(Value::as_str)
                                .and_then(|s| s.parse::<ModuleStatus>().ok()),
                            lead: None,
                            target_on: plan.pull.get("target").map(|t| date(t.as_str())),
                        };
                        self.store.update_module(&self.actor, project_id, &module.name, update).await?;
                    }
                    if mapping.is_none_or(|m| base_of(m) != base) {
                        self.store
                            .sync_save_link(
                                &self.actor,
                                project_id,
                                module.id,
                                &self.planning_link(LocalKind::Module, &found.id, &base),
                            )
                            .await?;
                    }
                    if !plan.is_noop() {
                        report.updated += 1;
                    }
                }
            }
        }
        for found in remote {
            let known = mappings.iter().any(|m| m.external_id == found.id)
                || found.external_id.as_deref().is_some_and(|e| local.iter().any(|m| m.id.to_string() == e));
            if known {
                continue;
            }
            let name = unique_name(&found.name, local.iter().map(|m| m.name.as_str()));
            let new = NewModule {
                name,
                description: found.description.clone().unwrap_or_default(),
                status: found.status.as_deref().and_then(|s| s.parse().ok()).unwrap_or(ModuleStatus::Backlog),
                lead: None,
                target_on: date(found.target_date.as_deref()),
            };
            let created = self.store.create_module(&self.actor, project_id, new).await?;
            let local_fields = Fields::from([
                ("name".into(), json!(created.name)),
                ("description".into(), json!(created.description)),
                ("status".into(), json!(created.status.as_str())),
                ("target".into(), json!(created.target_on.map(|d| d.to_string()))),
            ]);
            let base = Base { local: local_fields, remote: remote_module(found) };
            self.store
                .sync_save_link(
                    &self.actor,
                    project_id,
                    created.id,
                    &self.planning_link(LocalKind::Module, &found.id, &base),
                )
                .await?;
            report.created_local += 1;
        }
        Ok(())
    }
}

fn base_of(mapping: &SyncMapping) -> Base {
    serde_json::from_value(mapping.base.clone()).unwrap_or_default()
}

/// A remote name that collides with a local one (names are unique per
/// project here, not in Plane) gets a suffix.
fn unique_name<'a>(wanted: &str, taken: impl Iterator<Item = &'a str> + Clone) -> String {
    let wanted = if wanted.trim().is_empty() { "Untitled" } else { wanted.trim() };
    let free = |name: &str| !taken.clone().any(|t| t.eq_ignore_ascii_case(name));
    if free(wanted) {
        return wanted.to_string();
    }
    (2..).map(|n| format!("{wanted} ({n})")).find(|n| free(n)).unwrap_or_else(|| wanted.to_string())
}
