//! Restoring a project from a snapshot: one transaction, all or nothing,
//! after an automatic pre-restore snapshot of the state being replaced.
//!
//! Rows are matched by id. Rows the snapshot has are put back as they were
//! (with their task keys); rows created since are archived, hidden or
//! cancelled (or, with `exact`, deleted). The task-key counter never moves
//! backwards. Every restored object gets an audit entry with source
//! `recovery` and the restore's correlation id; mappings of restored objects
//! are flagged for the sync worker.
//!
//! Locking follows the repository's rule (lanes before tasks), so a console
//! edit racing a restore waits for it, then fails its version check cleanly.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use deadpool_postgres::{GenericClient, Transaction};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::capture::read_project;
use super::diff::{self, Rows};
use super::model::SnapshotData;
use super::storage::Reason;
use crate::domain::Source;
use crate::store::audit::CHANGE_CHANNEL;
use crate::store::tasks::RANK_STEP;
use crate::store::{Actor, Store, StoreError, StoreResult};

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Report what would change; write nothing.
    pub dry_run: bool,
    /// Restore only these tasks (by key), nothing else.
    pub only: Vec<String>,
    /// Restore only these kinds (`tasks`, `handoffs`…); empty means all.
    pub kinds: Vec<String>,
    /// Delete rows created after the snapshot instead of archiving them.
    pub exact: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    pub restored: usize,
    pub created: usize,
    /// Rows made since the snapshot, archived / hidden / cancelled.
    pub set_aside: usize,
    pub deleted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    pub snapshot_id: i64,
    pub project: String,
    pub dry_run: bool,
    pub pre_restore_snapshot: Option<i64>,
    pub correlation_id: Uuid,
    pub project_fields: Vec<String>,
    pub kinds: BTreeMap<String, KindCounts>,
    pub flagged_mappings: u64,
}

impl RestoreReport {
    pub fn is_noop(&self) -> bool {
        self.project_fields.is_empty() && self.kinds.values().all(|c| *c == KindCounts::default())
    }
}

/// How a table is written back.
struct Spec {
    kind: &'static str,
    singular: &'static str,
    table: &'static str,
    /// Columns written on insert (besides id and project_id).
    columns: &'static [&'static str],
    /// Of those, the ones an update leaves alone.
    insert_only: &'static [&'static str],
    versioned: bool,
    /// Moves a unique column out of the way before rows swap values.
    park: Option<&'static str>,
    /// The snapshot fields that unique constraints cover: only rows where one
    /// of them changes need parking.
    unique: &'static [&'static str],
    extra: Extra,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Extra {
    Keep,
    Hide,
    Archive,
    Cancel,
}

const SPECS: &[Spec] = &[
    Spec {
        kind: "lanes",
        singular: "lane",
        table: "lane",
        columns: &["name", "position", "wip_limit", "category", "role", "visible", "sync"],
        insert_only: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &["name"],
        extra: Extra::Hide,
    },
    Spec {
        kind: "cycles",
        singular: "cycle",
        table: "cycle",
        columns: &["name", "description", "starts_on", "ends_on"],
        insert_only: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &["name"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "modules",
        singular: "module",
        table: "module",
        columns: &["name", "description", "status", "lead_agent_id", "target_on"],
        insert_only: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &["name"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "tasks",
        singular: "task",
        table: "task",
        columns: &[
            "number",
            "task_key",
            "title",
            "description",
            "lane_id",
            "rank",
            "priority",
            "assignee_id",
            "labels",
            "due_on",
            "cycle_id",
            "archived",
            "version",
            "created_by",
            "created_at",
        ],
        insert_only: &["version"],
        versioned: true,
        // Ranks are unique per lane: park the rows far below any real rank first.
        park: Some("rank = -id - 1125899906842624"),
        unique: &["lane_id", "rank", "archived"],
        extra: Extra::Archive,
    },
    Spec {
        kind: "handoffs",
        singular: "handoff",
        table: "handoff",
        columns: &[
            "task_id",
            "kind",
            "from_agent_id",
            "to_agent_id",
            "reason",
            "needs",
            "due_at",
            "state",
            "resolution",
            "opened_by",
            "version",
            "created_at",
            "closed_at",
        ],
        insert_only: &["version"],
        versioned: true,
        park: None,
        unique: &[],
        extra: Extra::Cancel,
    },
    Spec {
        kind: "pages",
        singular: "page",
        table: "page",
        columns: &["slug", "title", "body", "archived", "version", "created_by", "updated_by"],
        insert_only: &["version"],
        versioned: true,
        park: Some("slug = 'zz-restore-tmp-' || id"),
        unique: &["slug"],
        extra: Extra::Archive,
    },
    Spec {
        kind: "environments",
        singular: "environment",
        table: "environment",
        columns: &["name", "kind", "url", "position"],
        insert_only: &[],
        versioned: false,
        park: Some("name = 'restore.tmp.' || id"),
        unique: &["name"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "releases",
        singular: "release",
        table: "release",
        columns: &[
            "name",
            "tag",
            "provider",
            "external_id",
            "status",
            "ref",
            "commit_sha",
            "target_on",
            "released_at",
            "url",
            "notes",
        ],
        insert_only: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &["name"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "pipelines",
        singular: "pipeline",
        table: "pipeline",
        columns: &[
            "provider",
            "external_id",
            "name",
            "ref",
            "commit_sha",
            "status",
            "url",
            "started_at",
            "finished_at",
        ],
        insert_only: &[],
        versioned: false,
        park: Some("external_id = '~restore~' || id"),
        unique: &["provider", "external_id"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "deployments",
        singular: "deployment",
        table: "deployment",
        columns: &[
            "environment_id",
            "provider",
            "external_id",
            "ref",
            "commit_sha",
            "status",
            "url",
            "release_id",
            "started_at",
            "finished_at",
        ],
        insert_only: &[],
        versioned: false,
        park: Some("external_id = '~restore~' || id"),
        unique: &["provider", "external_id"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "connections",
        singular: "connection",
        table: "integration_connection",
        columns: &["connection_key", "provider", "base_url", "config", "secret_ref", "enabled"],
        insert_only: &[],
        versioned: false,
        park: Some("connection_key = 'restore-tmp-' || id"),
        unique: &["key"],
        extra: Extra::Keep,
    },
    Spec {
        kind: "mappings",
        singular: "mapping",
        table: "external_mapping",
        columns: &[
            "connection_id",
            "local_kind",
            "local_id",
            "external_id",
            "external_key",
            "url",
            "base",
            "remote_version",
            "sync_state",
        ],
        insert_only: &[],
        versioned: false,
        park: Some("external_id = '~restore~' || id"),
        unique: &["connection_id", "local_kind", "local_id", "external_id"],
        extra: Extra::Keep,
    },
];

/// Snapshot field names that differ from the column names.
fn column_name<'a>(kind: &str, field: &'a str) -> &'a str {
    match (kind, field) {
        ("tasks", "key") => "task_key",
        ("connections", "key") => "connection_key",
        (_, "git_ref") => "ref",
        _ => field,
    }
}

/// A row as a JSON object of its fields.
type Row = Map<String, Value>;

/// One kind's work: rows to write back (with what is there now), and rows
/// that appeared since the snapshot.
struct KindPlan {
    spec: &'static Spec,
    upsert: Vec<(i64, Option<Row>, Row)>,
    extras: Vec<(i64, Map<String, Value>)>,
}

struct Plan {
    project_fields: Vec<String>,
    kinds: Vec<KindPlan>,
}

fn selected(options: &RestoreOptions, kind: &str) -> bool {
    if !options.only.is_empty() {
        return kind == "tasks";
    }
    options.kinds.is_empty() || options.kinds.iter().any(|k| k == kind)
}

fn plan(current: &SnapshotData, target: &SnapshotData, options: &RestoreOptions) -> Plan {
    let only: BTreeSet<&str> = options.only.iter().map(String::as_str).collect();
    // The task-key counter only ever moves forward, so it is never "restored".
    let mut project_fields = if selected(options, "project") && options.only.is_empty() {
        diff::project_fields(&current.project, &target.project)
    } else {
        Vec::new()
    };
    project_fields.retain(|f| f != "last_task_number");
    let mut kinds = Vec::new();
    for spec in SPECS {
        if !selected(options, spec.kind) {
            continue;
        }
        let (now, then): (Rows, Rows) = (diff::rows(current, spec.kind), diff::rows(target, spec.kind));
        let wanted = |row: &Map<String, Value>| {
            only.is_empty() || row.get("key").and_then(Value::as_str).is_some_and(|k| only.contains(k))
        };
        let mut upsert = Vec::new();
        for (id, row) in &then {
            if !wanted(row) {
                continue;
            }
            match now.get(id) {
                Some(existing) if diff::changed_fields(existing, row).is_empty() => {}
                existing => upsert.push((*id, existing.cloned(), row.clone())),
            }
        }
        let extras = if only.is_empty() {
            now.iter().filter(|(id, _)| !then.contains_key(id)).map(|(id, row)| (*id, row.clone())).collect()
        } else {
            Vec::new()
        };
        kinds.push(KindPlan { spec, upsert, extras });
    }
    Plan { project_fields, kinds }
}

fn counts_of(plan: &Plan, exact: bool) -> BTreeMap<String, KindCounts> {
    plan.kinds
        .iter()
        .map(|k| {
            let created = k.upsert.iter().filter(|(_, before, _)| before.is_none()).count();
            let extras = if exact || k.spec.extra != Extra::Keep { k.extras.len() } else { 0 };
            let counts = KindCounts {
                restored: k.upsert.len() - created,
                created,
                set_aside: if exact { 0 } else { extras },
                deleted: if exact { extras } else { 0 },
            };
            (k.spec.kind.to_string(), counts)
        })
        .collect()
}

/// A restore step, for progress display.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

impl Store {
    pub async fn restore_snapshot(
        &self,
        actor: &Actor,
        snapshot_id: i64,
        options: &RestoreOptions,
        progress: Progress<'_>,
    ) -> StoreResult<RestoreReport> {
        for kind in &options.kinds {
            if kind != "project" && !diff::ROW_KINDS.contains(&kind.as_str()) {
                return Err(StoreError::invalid(format!(
                    "unknown kind {kind:?}: use project, {}",
                    diff::ROW_KINDS.join(", ")
                )));
            }
        }
        let only: Vec<String> = options
            .only
            .iter()
            .map(|k| k.parse::<crate::domain::TaskKey>().map(|k| k.to_string()))
            .collect::<Result<_, _>>()?;
        let options = RestoreOptions { only, ..options.clone() };
        if !options.dry_run {
            self.refuse_if_read_only()?;
        }
        progress("verifying the snapshot");
        let (meta, mut snapshot) = self.load_snapshot(snapshot_id).await?;
        let project_id = meta.project_id;
        if snapshot.project.id != project_id {
            return Err(StoreError::invalid(format!("snapshot #{snapshot_id} does not belong to its project row")));
        }
        let actor = Actor {
            source: Source::Recovery,
            reason: Some(format!("restore of snapshot #{snapshot_id}")),
            ..actor.next_operation()
        };
        let mut report = RestoreReport {
            snapshot_id,
            project: snapshot.project.key.clone(),
            dry_run: options.dry_run,
            pre_restore_snapshot: None,
            correlation_id: actor.correlation_id,
            project_fields: Vec::new(),
            kinds: BTreeMap::new(),
            flagged_mappings: 0,
        };
        if options.dry_run {
            progress("comparing with the current state");
            let current = self.capture(project_id).await?;
            let plan = plan(&current, &snapshot, &options);
            report.project_fields = plan.project_fields.clone();
            report.kinds = counts_of(&plan, options.exact);
            return Ok(report);
        }
        for key in &options.only {
            if !snapshot.tasks.iter().any(|t| &t.key == key) {
                return Err(StoreError::not_found("task in the snapshot", key));
            }
        }
        progress("saving a pre-restore snapshot");
        let pre = self
            .create_snapshot(&actor, project_id, &format!("before restoring #{snapshot_id}"), Reason::PreRestore)
            .await?;
        report.pre_restore_snapshot = Some(pre.id);

        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Wait for edits in flight, but not forever: a stuck lock fails the restore cleanly.
        tx.batch_execute("SET LOCAL lock_timeout = '20s'").await?;
        progress("locking the project");
        lock(&tx, project_id, &options).await?;
        progress("reading the current state");
        let current = read_project(&tx, project_id).await?;
        remap_agents(&tx, &actor, &mut snapshot).await?;
        progress("comparing");
        let plan = plan(&current, &snapshot, &options);
        report.project_fields = plan.project_fields.clone();
        report.kinds = counts_of(&plan, options.exact);
        let mut audit = AuditBatch::default();
        check_ids_are_ours(&tx, project_id, &plan).await?;

        if !plan.project_fields.is_empty() {
            restore_project(&tx, &current, &snapshot, &plan.project_fields, &mut audit).await?;
        } else if current.project.last_task_number < snapshot.project.last_task_number {
            // Rows reinserted from the snapshot carry numbers up to its counter.
            tx.execute(
                "UPDATE project SET last_task_number = greatest(last_task_number, $2) WHERE id = $1",
                &[&project_id, &snapshot.project.last_task_number],
            )
            .await?;
        }
        if options.exact {
            // Dependents first: mappings, delivery records, handoffs, tasks, then what they point at.
            for kind in plan.kinds.iter().rev() {
                delete_extras(&tx, project_id, kind, &mut audit).await?;
            }
        } else {
            for kind in &plan.kinds {
                set_aside_extras(&tx, kind, snapshot_id, &mut audit).await?;
            }
        }
        let names = Names::of(&current, &snapshot);
        let mut touched: HashMap<&'static str, Vec<i64>> = HashMap::new();
        for kind in &plan.kinds {
            if kind.upsert.is_empty() {
                continue;
            }
            progress(&format!("restoring {} {}", kind.upsert.len(), kind.spec.kind));
            write_back(&tx, project_id, kind, &options, &names, &mut audit).await?;
            touched.insert(kind.spec.singular, kind.upsert.iter().map(|(id, _, _)| *id).collect());
        }
        restore_memberships(&tx, &snapshot, &touched).await?;
        report.flagged_mappings = flag_mappings(&tx, project_id, &touched).await?;
        progress("writing the audit log");
        let summary = serde_json::json!({
            "snapshot": snapshot_id,
            "pre_restore_snapshot": pre.id,
            "kinds": report.kinds,
            "project_fields": report.project_fields,
            "flagged_mappings": report.flagged_mappings,
            "only": options.only,
            "exact": options.exact,
        });
        audit.push("snapshot", "snapshot.restore", Some(snapshot_id), format!("#{snapshot_id}"), None, Some(summary));
        let last_audit_id = audit.write(&tx, project_id, &actor).await?;
        tx.execute(
            "SELECT pg_notify($1, json_build_object('project_id', $2::bigint, 'kind', 'snapshot', 'id', $3::bigint,
                                                    'action', 'snapshot.restore', 'audit_id', $4::bigint)::text)",
            &[&CHANGE_CHANNEL, &project_id, &snapshot_id, &last_audit_id],
        )
        .await?;
        progress("committing");
        tx.commit().await?;
        Ok(report)
    }
}

/// Locks in the repository's order: project, lanes (by id), then tasks (by id).
async fn lock(tx: &Transaction<'_>, project_id: i64, options: &RestoreOptions) -> StoreResult<()> {
    tx.query("SELECT id FROM project WHERE id = $1 FOR UPDATE", &[&project_id]).await?;
    tx.query("SELECT id FROM lane WHERE project_id = $1 ORDER BY id FOR UPDATE", &[&project_id]).await?;
    if options.only.is_empty() {
        if selected(options, "tasks") {
            tx.query("SELECT id FROM task WHERE project_id = $1 ORDER BY id FOR UPDATE", &[&project_id]).await?;
        }
    } else {
        tx.query(
            "SELECT id FROM task WHERE project_id = $1 AND task_key = ANY ($2) ORDER BY id FOR UPDATE",
            &[&project_id, &options.only],
        )
        .await?;
    }
    Ok(())
}

/// Agents are global: match the snapshot's by handle, create missing ones,
/// and point the snapshot's references at the ids they have here.
async fn remap_agents(tx: &Transaction<'_>, actor: &Actor, snapshot: &mut SnapshotData) -> StoreResult<()> {
    let mut ids: HashMap<i64, i64> = HashMap::new();
    for agent in &snapshot.agents {
        let existing: Option<i64> =
            tx.query_opt("SELECT id FROM agent WHERE handle = $1", &[&agent.handle]).await?.map(|r| r.get(0));
        let id = match existing {
            Some(id) => id,
            None => {
                let taken = tx.query_opt("SELECT 1 FROM agent WHERE id = $1", &[&agent.id]).await?.is_some();
                let row = if taken {
                    tx.query_one(
                        "INSERT INTO agent (handle, display_name, kind, capacity, skills) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        &[&agent.handle, &agent.display_name, &agent.kind, &agent.capacity, &agent.skills],
                    )
                    .await?
                } else {
                    tx.query_one(
                        "INSERT INTO agent (id, handle, display_name, kind, capacity, skills) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[&agent.id, &agent.handle, &agent.display_name, &agent.kind, &agent.capacity, &agent.skills],
                    )
                    .await?
                };
                let id: i64 = row.get(0);
                crate::store::audit::record(
                    tx,
                    actor,
                    crate::store::audit::Change::new("agent", "restore", None).entity(id, &agent.handle).after(agent),
                )
                .await?;
                id
            }
        };
        ids.insert(agent.id, id);
    }
    bump_sequence(tx, "agent").await?;
    let map = |id: &mut Option<i64>| {
        if let Some(old) = id {
            *old = ids.get(old).copied().unwrap_or(*old);
        }
    };
    for task in &mut snapshot.tasks {
        map(&mut task.assignee_id);
    }
    for handoff in &mut snapshot.handoffs {
        map(&mut handoff.from_agent_id);
        handoff.to_agent_id = ids.get(&handoff.to_agent_id).copied().unwrap_or(handoff.to_agent_id);
    }
    for module in &mut snapshot.modules {
        map(&mut module.lead_agent_id);
    }
    for agent in &mut snapshot.agents {
        agent.id = ids.get(&agent.id).copied().unwrap_or(agent.id);
    }
    Ok(())
}

/// Refuses to write rows whose ids another project uses (a snapshot imported
/// into a database that already holds other data under those ids).
async fn check_ids_are_ours(tx: &Transaction<'_>, project_id: i64, plan: &Plan) -> StoreResult<()> {
    for kind in &plan.kinds {
        let missing: Vec<i64> =
            kind.upsert.iter().filter(|(_, before, _)| before.is_none()).map(|(id, _, _)| *id).collect();
        if missing.is_empty() {
            continue;
        }
        let clash = tx
            .query_opt(
                &format!("SELECT id FROM {} WHERE id = ANY ($1) AND project_id <> $2 LIMIT 1", kind.spec.table),
                &[&missing, &project_id],
            )
            .await?;
        if let Some(row) = clash {
            return Err(StoreError::invalid(format!(
                "{} id {} belongs to another project here: restore this snapshot into the database it came from, or an empty one",
                kind.spec.singular,
                row.get::<_, i64>(0)
            )));
        }
    }
    Ok(())
}

async fn restore_project(
    tx: &Transaction<'_>,
    current: &SnapshotData,
    snapshot: &SnapshotData,
    fields: &[String],
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let p = &snapshot.project;
    tx.execute(
        "UPDATE project SET name = $2, description = $3, settings = $4, dashboard = $5, archived = $6,
                last_task_number = greatest(last_task_number, $7), version = version + 1, updated_at = now()
         WHERE id = $1",
        &[&p.id, &p.name, &p.description, &p.settings, &p.dashboard, &p.archived, &p.last_task_number],
    )
    .await?;
    let pick = |row: &super::model::ProjectRow| {
        let Ok(Value::Object(map)) = serde_json::to_value(row) else { return Value::Null };
        Value::Object(map.into_iter().filter(|(k, _)| fields.contains(k)).collect())
    };
    audit.push("project", "project.restore", Some(p.id), p.key.clone(), Some(pick(&current.project)), Some(pick(p)));
    Ok(())
}

/// Rows made since the snapshot: archived, hidden or cancelled, never destroyed.
async fn set_aside_extras(
    tx: &Transaction<'_>,
    kind: &KindPlan,
    snapshot_id: i64,
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let ids: Vec<i64> = kind.extras.iter().map(|(id, _)| *id).collect();
    if ids.is_empty() || kind.spec.extra == Extra::Keep {
        return Ok(());
    }
    let (sql, verb, field, value) = match kind.spec.extra {
        Extra::Hide => (
            "UPDATE lane SET visible = false, updated_at = now() WHERE id = ANY ($1)",
            "hide",
            "visible",
            Value::Bool(false),
        ),
        Extra::Archive => (
            if kind.spec.table == "task" {
                "UPDATE task SET archived = true, version = version + 1, updated_at = now() WHERE id = ANY ($1) AND NOT archived"
            } else {
                "UPDATE page SET archived = true, version = version + 1, updated_at = now() WHERE id = ANY ($1) AND NOT archived"
            },
            "archive",
            "archived",
            Value::Bool(true),
        ),
        Extra::Cancel => (
            "UPDATE handoff SET state = 'cancelled', resolution = 'cancelled by a restore', closed_at = now(),
                    version = version + 1, updated_at = now()
             WHERE id = ANY ($1) AND state IN ('open', 'accepted')",
            "cancel",
            "state",
            Value::from("cancelled"),
        ),
        Extra::Keep => unreachable!(),
    };
    tx.execute(sql, &[&ids]).await?;
    for (id, row) in &kind.extras {
        let before = row.get(field).cloned().unwrap_or(Value::Null);
        if before == value {
            continue;
        }
        audit.push(
            kind.spec.singular,
            &format!("{}.{verb}", kind.spec.singular),
            Some(*id),
            diff::label(kind.spec.kind, row),
            Some(serde_json::json!({ field: before })),
            Some(serde_json::json!({ field: value, "reason": format!("created after snapshot #{snapshot_id}") })),
        );
    }
    Ok(())
}

async fn delete_extras(
    tx: &Transaction<'_>,
    project_id: i64,
    kind: &KindPlan,
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let ids: Vec<i64> = kind.extras.iter().map(|(id, _)| *id).collect();
    if ids.is_empty() {
        return Ok(());
    }
    if kind.spec.table == "task" {
        // Their handoffs and mappings go first (handoffs would block the delete).
        tx.execute("DELETE FROM handoff WHERE project_id = $1 AND task_id = ANY ($2)", &[&project_id, &ids]).await?;
        tx.execute(
            "DELETE FROM external_mapping WHERE project_id = $1 AND local_kind = 'task' AND local_id = ANY ($2)",
            &[&project_id, &ids],
        )
        .await?;
    }
    tx.execute(
        &format!("DELETE FROM {} WHERE project_id = $1 AND id = ANY ($2)", kind.spec.table),
        &[&project_id, &ids],
    )
    .await?;
    for (id, row) in &kind.extras {
        audit.push(
            kind.spec.singular,
            &format!("{}.delete", kind.spec.singular),
            Some(*id),
            diff::label(kind.spec.kind, row),
            Some(Value::Object(row.clone())),
            None,
        );
    }
    Ok(())
}

/// Writes the snapshot's rows back in one statement per kind.
/// Lane names and agent handles by id, so audit entries read "lane: Done →
/// Ready" rather than ids.
struct Names {
    lanes: HashMap<i64, String>,
    agents: HashMap<i64, String>,
}

impl Names {
    fn of(current: &SnapshotData, snapshot: &SnapshotData) -> Names {
        let lanes = current.lanes.iter().chain(&snapshot.lanes).map(|l| (l.id, l.name.clone())).collect();
        let agents = current.agents.iter().chain(&snapshot.agents).map(|a| (a.id, a.handle.clone())).collect();
        Names { lanes, agents }
    }

    /// Adds `lane` / `assignee` beside their ids in an audit before/after object.
    fn annotate(&self, object: &mut Map<String, Value>) {
        let name = |map: &HashMap<i64, String>, id: Option<&Value>| {
            id.and_then(Value::as_i64)
                .and_then(|id| map.get(&id))
                .map(|n| Value::from(n.as_str()))
                .unwrap_or(Value::Null)
        };
        if object.contains_key("lane_id") {
            let lane = name(&self.lanes, object.get("lane_id"));
            object.insert("lane".into(), lane);
        }
        if object.contains_key("assignee_id") {
            let assignee = name(&self.agents, object.get("assignee_id"));
            object.insert("assignee".into(), assignee);
        }
    }
}

async fn write_back(
    tx: &Transaction<'_>,
    project_id: i64,
    kind: &KindPlan,
    options: &RestoreOptions,
    names: &Names,
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let spec = kind.spec;
    // Only rows whose unique fields change can collide while rows swap values.
    let parked: Vec<i64> = kind
        .upsert
        .iter()
        .filter(|(_, before, after)| {
            before.as_ref().is_some_and(|b| spec.unique.iter().any(|f| b.get(*f) != after.get(*f)))
        })
        .map(|(id, _, _)| *id)
        .collect();
    if let Some(park) = spec.park
        && !parked.is_empty()
    {
        tx.execute(&format!("UPDATE {} SET {park} WHERE id = ANY ($1)", spec.table), &[&parked]).await?;
    }
    let as_columns = |row: &Row| {
        let mut columns = Map::new();
        for (field, value) in row {
            columns.insert(column_name(spec.kind, field).to_string(), value.clone());
        }
        if spec.table == "external_mapping" {
            // The restored copy may differ from the remote one: let the sync worker look.
            columns.insert("sync_state".into(), Value::from("pending"));
        }
        Value::Object(columns)
    };
    let mut updates: Vec<Value> =
        kind.upsert.iter().filter(|(_, b, _)| b.is_some()).map(|(_, _, a)| as_columns(a)).collect();
    let mut inserts: Vec<Value> =
        kind.upsert.iter().filter(|(_, b, _)| b.is_none()).map(|(_, _, a)| as_columns(a)).collect();
    if spec.table == "task" && !options.only.is_empty() {
        free_ranks(tx, project_id, &mut updates).await?;
        free_ranks(tx, project_id, &mut inserts).await?;
    }
    if !updates.is_empty() {
        let mut assignments: Vec<String> =
            spec.columns.iter().filter(|c| !spec.insert_only.contains(c)).map(|c| format!("{c} = r.{c}")).collect();
        if spec.versioned {
            assignments.push("version = t.version + 1".into());
        }
        assignments.push("updated_at = now()".into());
        let sql = format!(
            "UPDATE {table} t SET {assignments} FROM jsonb_populate_recordset(NULL::{table}, $1) r
             WHERE t.id = r.id AND t.project_id = $2",
            table = spec.table,
            assignments = assignments.join(", "),
        );
        tx.execute(&sql, &[&Value::Array(updates), &project_id]).await?;
    }
    if !inserts.is_empty() {
        let selected: Vec<String> = spec.columns.iter().map(|c| format!("r.{c}")).collect();
        let sql = format!(
            "INSERT INTO {table} (id, project_id, {columns})
             SELECT r.id, $2, {selected} FROM jsonb_populate_recordset(NULL::{table}, $1) r",
            table = spec.table,
            columns = spec.columns.join(", "),
            selected = selected.join(", "),
        );
        tx.execute(&sql, &[&Value::Array(inserts), &project_id]).await?;
    }
    if kind.upsert.iter().any(|(_, before, _)| before.is_none()) {
        bump_sequence(tx, spec.table).await?;
    }
    for (id, before, after) in &kind.upsert {
        let key = diff::label(spec.kind, after);
        match before {
            Some(before) => {
                let fields: Vec<&String> =
                    after.keys().filter(|k| k.as_str() != "version" && before.get(*k) != after.get(*k)).collect();
                let pick = |row: &Map<String, Value>| {
                    let mut object: Map<String, Value> =
                        fields.iter().map(|k| ((*k).clone(), row.get(*k).cloned().unwrap_or(Value::Null))).collect();
                    names.annotate(&mut object);
                    Value::Object(object)
                };
                audit.push(
                    spec.singular,
                    &format!("{}.restore", spec.singular),
                    Some(*id),
                    key,
                    Some(pick(before)),
                    Some(pick(after)),
                );
            }
            None => audit.push(
                spec.singular,
                &format!("{}.restore", spec.singular),
                Some(*id),
                key,
                None,
                Some(Value::Object(after.clone())),
            ),
        }
    }
    Ok(())
}

/// For a partial restore: a task whose old slot in its lane is taken now goes
/// to the bottom of the lane instead.
async fn free_ranks(tx: &Transaction<'_>, project_id: i64, rows: &mut [Value]) -> StoreResult<()> {
    let ids: Vec<i64> = rows.iter().filter_map(|r| r["id"].as_i64()).collect();
    for row in rows.iter_mut() {
        if row["archived"].as_bool() == Some(true) {
            continue;
        }
        let (Some(lane), Some(rank)) = (row["lane_id"].as_i64(), row["rank"].as_i64()) else { continue };
        let taken = tx
            .query_opt(
                "SELECT 1 FROM task WHERE project_id = $1 AND lane_id = $2 AND rank = $3 AND NOT archived AND NOT (id = ANY ($4))",
                &[&project_id, &lane, &rank, &ids],
            )
            .await?
            .is_some();
        if taken {
            let bottom: i64 = tx
                .query_one(
                    "SELECT coalesce(max(rank), 0) + $3 FROM task WHERE project_id = $1 AND lane_id = $2 AND NOT archived",
                    &[&project_id, &lane, &RANK_STEP],
                )
                .await?
                .get(0);
            row["rank"] = Value::from(bottom);
        }
    }
    Ok(())
}

/// Task modules and release tasks of the restored rows, as in the snapshot.
async fn restore_memberships(
    tx: &Transaction<'_>,
    snapshot: &SnapshotData,
    touched: &HashMap<&'static str, Vec<i64>>,
) -> StoreResult<()> {
    if let Some(tasks) = touched.get("task") {
        tx.execute("DELETE FROM task_module WHERE task_id = ANY ($1)", &[tasks]).await?;
        let wanted: BTreeSet<i64> = tasks.iter().copied().collect();
        let (mut task_ids, mut module_ids) = (Vec::new(), Vec::new());
        for task in snapshot.tasks.iter().filter(|t| wanted.contains(&t.id)) {
            for module in &task.module_ids {
                task_ids.push(task.id);
                module_ids.push(*module);
            }
        }
        tx.execute(
            "INSERT INTO task_module (task_id, module_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            &[&task_ids, &module_ids],
        )
        .await?;
    }
    if let Some(releases) = touched.get("release") {
        tx.execute("DELETE FROM release_task WHERE release_id = ANY ($1)", &[releases]).await?;
        let wanted: BTreeSet<i64> = releases.iter().copied().collect();
        let (mut release_ids, mut task_ids) = (Vec::new(), Vec::new());
        for release in snapshot.releases.iter().filter(|r| wanted.contains(&r.id)) {
            for task in &release.task_ids {
                release_ids.push(release.id);
                task_ids.push(*task);
            }
        }
        tx.execute(
            "INSERT INTO release_task (release_id, task_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            &[&release_ids, &task_ids],
        )
        .await?;
    }
    Ok(())
}

/// Mappings of objects the restore changed go back to `pending`, so the sync
/// worker reconciles them with their remote copies.
async fn flag_mappings(
    tx: &Transaction<'_>,
    project_id: i64,
    touched: &HashMap<&'static str, Vec<i64>>,
) -> StoreResult<u64> {
    let mut flagged = 0;
    for (kind, ids) in touched {
        if *kind == "mapping" {
            flagged += ids.len() as u64;
            continue;
        }
        flagged += tx
            .execute(
                "UPDATE external_mapping SET sync_state = 'pending', updated_at = now()
                 WHERE project_id = $1 AND local_kind = $2 AND local_id = ANY ($3) AND sync_state <> 'pending'",
                &[&project_id, kind, ids],
            )
            .await?;
    }
    Ok(flagged)
}

/// Moves an identity sequence past rows inserted with explicit ids.
async fn bump_sequence(client: &impl GenericClient, table: &str) -> StoreResult<()> {
    client
        .execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               greatest((SELECT coalesce(max(id), 1) FROM {table}), nextval(pg_get_serial_sequence('{table}', 'id'))))"
            ),
            &[],
        )
        .await?;
    Ok(())
}

/// Audit entries collected during a restore and written in bulk.
#[derive(Default)]
struct AuditBatch {
    kinds: Vec<String>,
    actions: Vec<String>,
    ids: Vec<Option<i64>>,
    keys: Vec<String>,
    before: Vec<Option<Value>>,
    after: Vec<Option<Value>>,
}

impl AuditBatch {
    fn push(
        &mut self,
        kind: &str,
        action: &str,
        id: Option<i64>,
        key: String,
        before: Option<Value>,
        after: Option<Value>,
    ) {
        self.kinds.push(kind.to_string());
        self.actions.push(action.to_string());
        self.ids.push(id);
        self.keys.push(key);
        self.before.push(before);
        self.after.push(after);
    }

    /// Inserts every entry; returns the last id.
    async fn write(self, tx: &Transaction<'_>, project_id: i64, actor: &Actor) -> StoreResult<i64> {
        let mut last = 0;
        const CHUNK: usize = 5000;
        for start in (0..self.kinds.len()).step_by(CHUNK) {
            let end = (start + CHUNK).min(self.kinds.len());
            let row = tx
                .query_one(
                    "WITH inserted AS (
                         INSERT INTO audit_entry (project_id, actor, source, action, entity_kind, entity_id, entity_key,
                                                  before, after, correlation_id, reason)
                         SELECT $1, $2, $3, a, k, i, key, b, af, $4, $5
                         FROM unnest($6::text[], $7::text[], $8::bigint[], $9::text[], $10::jsonb[], $11::jsonb[])
                              WITH ORDINALITY AS u(a, k, i, key, b, af, n)
                         ORDER BY n
                         RETURNING id)
                     SELECT coalesce(max(id), 0) FROM inserted",
                    &[
                        &project_id,
                        &actor.name,
                        &actor.source.as_str(),
                        &actor.correlation_id,
                        &actor.reason,
                        &&self.actions[start..end],
                        &&self.kinds[start..end],
                        &&self.ids[start..end],
                        &&self.keys[start..end],
                        &&self.before[start..end],
                        &&self.after[start..end],
                    ],
                )
                .await?;
            last = row.get(0);
        }
        Ok(last)
    }
}
