//! Cycles ↔ Plane cycles and modules ↔ Plane modules: linked by mapping (a
//! remote one carrying our external id is adopted), created on whichever side
//! lacks them, and merged field by field like tasks.
//!
//! Both kinds go through one [`Planning`] description, and each object is
//! reconciled on its own: a cycle Plane refuses is that cycle's failure
//! (recorded on its key `cycle:ID`, or `import:cycle:ID` for one made in
//! Plane), never the pass's. `sync plan` pairs the objects the same way.

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::PlaneSync;
use crate::domain::{LocalKind, ModuleStatus, SyncState};
use crate::store::planning::{CycleUpdate, ModuleUpdate, NewModule};
use crate::store::sync::{MappingUpdate, SyncMapping};
use crate::sync::contain::Containment;
use crate::sync::error::SyncResult;
use crate::sync::merge::{self, Base, Clocks, Convert, Fields};
use crate::sync::providers::plane::{Cycle, Module, cycle_day};
use crate::sync::queue;
use crate::sync::report::{ObjectPlan, PassReport};

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

/// What one planning object's reconcile did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanningChange {
    Unchanged,
    CreatedRemote,
    CreatedLocal,
    Updated,
}

fn date(text: Option<&str>) -> Option<time::Date> {
    time::Date::parse(text?, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// A remote object as the sync reads it.
pub(super) trait RemoteObject: DeserializeOwned + Clone {
    fn id(&self) -> &str;
    fn name(&self) -> &str;
    fn external_id(&self) -> Option<&str>;
    fn updated_at(&self) -> Option<OffsetDateTime>;
}

impl RemoteObject for Cycle {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn external_id(&self) -> Option<&str> {
        self.external_id.as_deref()
    }
    fn updated_at(&self) -> Option<OffsetDateTime> {
        self.updated_at
    }
}

impl RemoteObject for Module {
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn external_id(&self) -> Option<&str> {
        self.external_id.as_deref()
    }
    fn updated_at(&self) -> Option<OffsetDateTime> {
        self.updated_at
    }
}

/// One kind of planning object on both sides.
pub(super) trait Planning {
    /// `cycle`, `module`: the local kind and the queue key's prefix.
    const KIND: LocalKind;
    /// `cycles`, `modules`: Plane's path.
    const PATH: &'static str;
    const FIELDS: &'static [&'static str];
    type Local: Clone;
    type Remote: RemoteObject;

    fn local_id(local: &Self::Local) -> i64;
    /// Puts an object Plane answered with into the form its fields are read
    /// from (cycle days in the project's time zone).
    fn settle(_sync: &PlaneSync, _remote: &mut Self::Remote) {}
    fn local_name(local: &Self::Local) -> &str;
    fn local_fields(local: &Self::Local) -> Fields;
    fn remote_fields(remote: &Self::Remote) -> Fields;
    /// Plane's body for these fields.
    fn body(fields: &Fields) -> Value;
    async fn list_local(sync: &PlaneSync) -> SyncResult<Vec<Self::Local>>;
    /// Whether a remote object can have a local copy yet.
    fn importable(_remote: &Self::Remote) -> bool {
        true
    }
    /// Makes the local copy of a remote object named `name`; `None` when it
    /// has no local counterpart yet (a draft cycle without dates).
    async fn create_local(sync: &PlaneSync, remote: &Self::Remote, name: &str) -> SyncResult<Option<Self::Local>>;
    async fn update_local(sync: &PlaneSync, local: &Self::Local, pull: &Fields) -> SyncResult<()>;
}

pub(super) struct Cycles;
pub(super) struct Modules;

impl Planning for Cycles {
    const KIND: LocalKind = LocalKind::Cycle;
    const PATH: &'static str = "cycles";
    const FIELDS: &'static [&'static str] = &["name", "description", "start", "end"];
    type Local = crate::domain::Cycle;
    type Remote = Cycle;

    fn local_id(local: &Self::Local) -> i64 {
        local.id
    }
    fn settle(sync: &PlaneSync, cycle: &mut Cycle) {
        let zone = sync.timezone.as_deref();
        let day = |text: &Option<String>| text.as_deref().and_then(|t| cycle_day(t, zone)).map(|d| d.to_string());
        (cycle.start_date, cycle.end_date) = (day(&cycle.start_date), day(&cycle.end_date));
    }
    fn local_name(local: &Self::Local) -> &str {
        &local.name
    }
    fn local_fields(cycle: &Self::Local) -> Fields {
        Fields::from([
            ("name".into(), json!(cycle.name)),
            ("description".into(), json!(cycle.description)),
            ("start".into(), json!(cycle.starts_on.to_string())),
            ("end".into(), json!(cycle.ends_on.to_string())),
        ])
    }
    fn remote_fields(c: &Cycle) -> Fields {
        Fields::from([
            ("name".into(), json!(c.name)),
            ("description".into(), json!(c.description.clone().unwrap_or_default())),
            ("start".into(), json!(c.start_date)),
            ("end".into(), json!(c.end_date)),
        ])
    }
    fn body(fields: &Fields) -> Value {
        body(fields, &[("name", "name"), ("description", "description"), ("start", "start_date"), ("end", "end_date")])
    }
    async fn list_local(sync: &PlaneSync) -> SyncResult<Vec<Self::Local>> {
        let today = OffsetDateTime::now_utc().date();
        Ok(sync.store.list_cycles(sync.connection.project_id, today).await?)
    }
    /// A draft cycle without dates has no local counterpart yet.
    fn importable(found: &Cycle) -> bool {
        cycle_dates(found).is_some()
    }
    async fn create_local(sync: &PlaneSync, found: &Cycle, name: &str) -> SyncResult<Option<Self::Local>> {
        let Some((start, end)) = cycle_dates(found) else { return Ok(None) };
        let description = found.description.as_deref().unwrap_or("");
        let project_id = sync.connection.project_id;
        Ok(Some(sync.store.create_cycle(&sync.actor, project_id, name, start, end, description).await?))
    }
    async fn update_local(sync: &PlaneSync, cycle: &Self::Local, pull: &Fields) -> SyncResult<()> {
        let update = CycleUpdate {
            name: pull.get("name").and_then(Value::as_str).map(str::to_string),
            description: pull.get("description").and_then(Value::as_str).map(str::to_string),
            starts_on: date(pull.get("start").and_then(Value::as_str)),
            ends_on: date(pull.get("end").and_then(Value::as_str)),
        };
        sync.store.update_cycle(&sync.actor, sync.connection.project_id, &cycle.name, update).await?;
        Ok(())
    }
}

impl Planning for Modules {
    const KIND: LocalKind = LocalKind::Module;
    const PATH: &'static str = "modules";
    const FIELDS: &'static [&'static str] = &["name", "description", "status", "target"];
    type Local = crate::domain::Module;
    type Remote = Module;

    fn local_id(local: &Self::Local) -> i64 {
        local.id
    }
    fn local_name(local: &Self::Local) -> &str {
        &local.name
    }
    fn local_fields(module: &Self::Local) -> Fields {
        Fields::from([
            ("name".into(), json!(module.name)),
            ("description".into(), json!(module.description)),
            ("status".into(), json!(module.status.as_str())),
            ("target".into(), json!(module.target_on.map(|d| d.to_string()))),
        ])
    }
    fn remote_fields(m: &Module) -> Fields {
        Fields::from([
            ("name".into(), json!(m.name)),
            ("description".into(), json!(m.description.clone().unwrap_or_default())),
            ("status".into(), json!(m.status.clone().unwrap_or_else(|| "backlog".into()))),
            ("target".into(), json!(m.target_date)),
        ])
    }
    fn body(fields: &Fields) -> Value {
        body(
            fields,
            &[("name", "name"), ("description", "description"), ("status", "status"), ("target", "target_date")],
        )
    }
    async fn list_local(sync: &PlaneSync) -> SyncResult<Vec<Self::Local>> {
        Ok(sync.store.list_modules(sync.connection.project_id).await?)
    }
    async fn create_local(sync: &PlaneSync, found: &Module, name: &str) -> SyncResult<Option<Self::Local>> {
        let new = NewModule {
            name: name.to_string(),
            description: found.description.clone().unwrap_or_default(),
            status: found.status.as_deref().and_then(|s| s.parse().ok()).unwrap_or(ModuleStatus::Backlog),
            lead: None,
            target_on: date(found.target_date.as_deref()),
        };
        Ok(Some(sync.store.create_module(&sync.actor, sync.connection.project_id, new).await?))
    }
    async fn update_local(sync: &PlaneSync, module: &Self::Local, pull: &Fields) -> SyncResult<()> {
        let update = ModuleUpdate {
            name: pull.get("name").and_then(Value::as_str).map(str::to_string),
            description: pull.get("description").and_then(Value::as_str).map(str::to_string),
            status: pull.get("status").and_then(Value::as_str).and_then(|s| s.parse::<ModuleStatus>().ok()),
            lead: None,
            target_on: pull.get("target").map(|t| date(t.as_str())),
        };
        sync.store.update_module(&sync.actor, sync.connection.project_id, &module.name, update).await?;
        Ok(())
    }
}

/// A listed cycle's days (see [`PlaneSync::list_cycles`]).
fn cycle_dates(found: &Cycle) -> Option<(time::Date, time::Date)> {
    Some((date(found.start_date.as_deref())?, date(found.end_date.as_deref())?))
}

/// Local fields → Plane's body, by `(field, Plane name)`.
fn body(fields: &Fields, names: &[(&str, &str)]) -> Value {
    let mut body = serde_json::Map::new();
    for (field, value) in fields {
        if let Some((_, name)) = names.iter().find(|(f, _)| f == field) {
            body.insert((*name).into(), value.clone());
        }
    }
    Value::Object(body)
}

/// One object, as the two sides hold it.
pub(super) enum Pair<K: Planning> {
    /// A local object; its mapping and remote copy when there are any.
    Local { local: K::Local, mapping: Option<SyncMapping>, remote: Option<K::Remote> },
    /// A remote object nothing here knows: made in Plane.
    Remote(K::Remote),
}

impl<K: Planning> Pair<K> {
    /// The object's queue key: `cycle:ID`, or `import:cycle:ID` for a remote one.
    pub fn key(&self) -> String {
        match self {
            Pair::Local { local, .. } => queue::object_key(K::KIND, K::local_id(local)),
            Pair::Remote(remote) => queue::import_key(queue::object_key(K::KIND, remote.id())),
        }
    }

    /// How an operator reads it: `cycle "Sprint 9"`, `Plane module "Auth"`.
    pub fn label(&self) -> String {
        match self {
            Pair::Local { local, .. } => format!("{} {:?}", K::KIND, K::local_name(local)),
            Pair::Remote(remote) => format!("Plane {} {:?}", K::KIND, remote.name()),
        }
    }
}

/// Pairs local and remote objects by mapping, or by our external id on the
/// remote one (an interrupted create).
fn pair<K: Planning>(local: Vec<K::Local>, mappings: &[SyncMapping], remote: &[K::Remote]) -> Vec<Pair<K>> {
    let mut pairs = Vec::new();
    for object in &local {
        let id = K::local_id(object);
        let mapping = mappings.iter().find(|m| m.local_id == id).cloned();
        let found = match &mapping {
            Some(m) => remote.iter().find(|r| r.id() == m.external_id),
            None => remote.iter().find(|r| r.external_id() == Some(id.to_string().as_str())),
        };
        pairs.push(Pair::Local { local: object.clone(), mapping, remote: found.cloned() });
    }
    for found in remote {
        let known = mappings.iter().any(|m| m.external_id == found.id())
            || found.external_id().is_some_and(|e| local.iter().any(|l| K::local_id(l).to_string() == e));
        if !known && K::importable(found) {
            pairs.push(Pair::Remote(found.clone()));
        }
    }
    pairs
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

/// Which objects a reconcile covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    All,
    Local(i64),
    Remote(&'a str),
}

impl Scope<'_> {
    fn covers<K: Planning>(&self, pair: &Pair<K>) -> bool {
        match (self, pair) {
            (Scope::All, _) => true,
            (Scope::Local(id), Pair::Local { local, .. }) => K::local_id(local) == *id,
            (Scope::Remote(id), Pair::Remote(remote)) => remote.id() == *id,
            _ => false,
        }
    }
}

impl PlaneSync {
    /// Plane's cycles with their start and end as the project's days
    /// (`YYYY-MM-DD`), however Plane rendered the instants.
    pub(super) async fn list_cycles(&self) -> SyncResult<crate::sync::providers::plane::Listing<Cycle>> {
        let mut listing = self.plane.cycles().await?;
        for cycle in &mut listing.items {
            Cycles::settle(self, cycle);
        }
        Ok(listing)
    }

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

    /// A pass's share: cycles, then modules, each object on its own. A
    /// listing that fails is the pass's error (returned); an object that
    /// fails is recorded on its key and counted in `report`. Returns the
    /// number of requests the listings took.
    pub async fn reconcile_planning(
        &mut self,
        report: &mut PassReport,
        contain: &mut Containment,
    ) -> SyncResult<usize> {
        let cycles = self.list_cycles().await?;
        let modules = self.plane.modules().await?;
        let requests = cycles.requests + modules.requests;
        let mut results = self.reconcile_kind::<Cycles>(&cycles.items, cycles.complete, Scope::All).await?;
        results.extend(self.reconcile_kind::<Modules>(&modules.items, modules.complete, Scope::All).await?);
        for (key, label, result) in results {
            match result {
                Ok(change) => {
                    if change != PlanningChange::Unchanged {
                        report.planning_changes += 1;
                    }
                    contain.synced(key);
                }
                Err(e) => contain.failed(report, &key, &label, e).await?,
            }
        }
        self.refresh_links().await?;
        Ok(requests)
    }

    /// The key of one planning object: `cycle:ID` or `module:ID` for a local
    /// one; its own failure is returned.
    pub async fn reconcile_planning_object(&mut self, kind: &str, id: i64) -> SyncResult<()> {
        self.reconcile_one(kind, Scope::Local(id)).await
    }

    /// `import:cycle:ID`, `import:module:ID`: a Plane object a pass could not
    /// bring in.
    pub(super) async fn import_planning_object(&mut self, kind: &str, remote_id: &str) -> SyncResult<()> {
        self.reconcile_one(kind, Scope::Remote(remote_id)).await
    }

    async fn reconcile_one(&mut self, kind: &str, scope: Scope<'_>) -> SyncResult<()> {
        let results = if kind == LocalKind::Cycle.as_str() {
            let listing = self.list_cycles().await?;
            self.reconcile_kind::<Cycles>(&listing.items, listing.complete, scope).await?
        } else {
            let listing = self.plane.modules().await?;
            self.reconcile_kind::<Modules>(&listing.items, listing.complete, scope).await?
        };
        self.refresh_links().await?;
        results.into_iter().try_for_each(|(_, _, result)| result.map(drop))
    }

    /// Reconciles the objects of one kind in `scope`: `(key, label, result)`
    /// for each. `complete`: whether the listing had every remote object (a
    /// missing one is then gone).
    async fn reconcile_kind<K: Planning>(
        &mut self,
        remote: &[K::Remote],
        complete: bool,
        scope: Scope<'_>,
    ) -> SyncResult<Vec<(String, String, SyncResult<PlanningChange>)>> {
        let local = K::list_local(self).await?;
        let mut taken: Vec<String> = local.iter().map(|l| K::local_name(l).to_string()).collect();
        let mappings = self.store.sync_mappings(self.connection.id, K::KIND).await?;
        let mut results = Vec::new();
        for pair in pair::<K>(local, &mappings, remote) {
            if !scope.covers(&pair) {
                continue;
            }
            let (key, label) = (pair.key(), pair.label());
            let result = match pair {
                Pair::Local { local, mapping, remote } => {
                    self.reconcile_local::<K>(&local, mapping.as_ref(), remote.as_ref(), complete).await
                }
                Pair::Remote(remote) => {
                    let name = unique_name(remote.name(), taken.iter().map(String::as_str));
                    let created = self.create_local::<K>(&remote, &name).await;
                    if matches!(created, Ok(PlanningChange::CreatedLocal)) {
                        taken.push(name);
                    }
                    created
                }
            };
            let result = match result {
                Err(e) if crate::sync::contain::stops_pass(&e) => return Err(e),
                other => other,
            };
            results.push((key, label, result));
        }
        Ok(results)
    }

    async fn reconcile_local<K: Planning>(
        &mut self,
        local: &K::Local,
        mapping: Option<&SyncMapping>,
        found: Option<&K::Remote>,
        complete: bool,
    ) -> SyncResult<PlanningChange> {
        let project_id = self.connection.project_id;
        let id = K::local_id(local);
        let fields = K::local_fields(local);
        match (mapping, found) {
            (Some(m), None) if m.sync_state != SyncState::Deleted && complete => {
                self.store.sync_set_mapping_state(m.id, SyncState::Deleted, None).await?;
                Ok(PlanningChange::Updated)
            }
            (Some(_), None) => Ok(PlanningChange::Unchanged),
            (None, None) => {
                let (mut created, adopted): (K::Remote, bool) =
                    self.plane.create_planning(K::PATH, id, &K::body(&fields)).await?;
                K::settle(self, &mut created);
                // Adopted by name (Plane's modules): only one not linked to another object here.
                let mappings = self.store.sync_mappings(self.connection.id, K::KIND).await?;
                if adopted
                    && let Some(other) = mappings.iter().find(|m| m.external_id == created.id() && m.local_id != id)
                {
                    return Err(crate::store::StoreError::invalid(format!(
                        "Plane already has a {} named {:?}, linked to another {} here (#{}): rename one of them",
                        K::KIND,
                        K::local_name(local),
                        K::KIND,
                        other.local_id
                    ))
                    .into());
                }
                let base = Base::new(fields, K::remote_fields(&created));
                self.store
                    .sync_save_link(&self.actor, project_id, id, &self.planning_link(K::KIND, created.id(), &base))
                    .await?;
                Ok(PlanningChange::CreatedRemote)
            }
            (mapping, Some(found)) => {
                let base: Base = mapping.map(base_of).unwrap_or_default();
                let remote_fields = K::remote_fields(found);
                let clocks = Clocks {
                    local: OffsetDateTime::UNIX_EPOCH,
                    remote: found.updated_at().unwrap_or(OffsetDateTime::UNIX_EPOCH),
                };
                let plan = merge::merge(K::FIELDS, &base, &fields, &remote_fields, &Same, self.policy, clocks);
                let mut base = plan.base.clone();
                if !plan.push.is_empty() {
                    let mut updated: K::Remote =
                        self.plane.update_planning(K::PATH, found.id(), &K::body(&plan.push)).await?;
                    K::settle(self, &mut updated);
                    base.remote = K::remote_fields(&updated);
                }
                if !plan.pull.is_empty() {
                    K::update_local(self, local, &plan.pull).await?;
                }
                if mapping.is_none_or(|m| base_of(m) != base) {
                    self.store
                        .sync_save_link(&self.actor, project_id, id, &self.planning_link(K::KIND, found.id(), &base))
                        .await?;
                }
                Ok(if plan.is_noop() { PlanningChange::Unchanged } else { PlanningChange::Updated })
            }
        }
    }

    /// Makes here a remote object made in Plane, and links it.
    async fn create_local<K: Planning>(&mut self, found: &K::Remote, name: &str) -> SyncResult<PlanningChange> {
        let Some(created) = K::create_local(self, found, name).await? else {
            return Ok(PlanningChange::Unchanged);
        };
        let base = Base::new(K::local_fields(&created), K::remote_fields(found));
        let link = self.planning_link(K::KIND, found.id(), &base);
        self.store.sync_save_link(&self.actor, self.connection.project_id, K::local_id(&created), &link).await?;
        Ok(PlanningChange::CreatedLocal)
    }

    /// What a pass would do with the objects of one kind (`sync plan`).
    pub(super) async fn plan_kind<K: Planning>(&self, remote: &[K::Remote]) -> SyncResult<ObjectPlan> {
        let local = K::list_local(self).await?;
        let mappings = self.store.sync_mappings(self.connection.id, K::KIND).await?;
        let mut plan = ObjectPlan::default();
        for pair in pair::<K>(local, &mappings, remote) {
            match pair {
                Pair::Local { local, mapping: _, remote: None } => {
                    // A mapped object whose remote copy went is marked, not re-created.
                    let mapped = mappings.iter().any(|m| m.local_id == K::local_id(&local));
                    if !mapped {
                        plan.create_remote.push(K::local_name(&local).to_string());
                    }
                }
                Pair::Local { local, mapping, remote: Some(found) } => {
                    let base: Base = mapping.as_ref().map(base_of).unwrap_or_default();
                    let clocks = Clocks {
                        local: OffsetDateTime::UNIX_EPOCH,
                        remote: found.updated_at().unwrap_or(OffsetDateTime::UNIX_EPOCH),
                    };
                    let fields = K::local_fields(&local);
                    let merged =
                        merge::merge(K::FIELDS, &base, &fields, &K::remote_fields(&found), &Same, self.policy, clocks);
                    let name = K::local_name(&local).to_string();
                    if !merged.push.is_empty() {
                        plan.push.push((name.clone(), merged.push.keys().cloned().collect()));
                    }
                    if !merged.pull.is_empty() {
                        plan.pull.push((name, merged.pull.keys().cloned().collect()));
                    }
                }
                Pair::Remote(found) => plan.create_local.push(found.name().trim().to_string()),
            }
        }
        Ok(plan)
    }
}
