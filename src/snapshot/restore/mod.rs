//! Restoring a project from a snapshot: one transaction, all or nothing,
//! with an automatic pre-restore snapshot of the state being replaced.
//!
//! Rows are matched by id. Rows the snapshot has are put back as they were
//! (with their task keys); rows created since are archived, hidden or
//! cancelled (or, with `exact`, deleted), and give up any unique name a
//! restored row needs (see `clash`). The task-key counter never moves
//! backwards. Every restored object gets an audit entry with source
//! `recovery` and the restore's correlation id; mappings of restored objects
//! are flagged for the sync worker.
//!
//! Locking follows the repository's rule (lanes before tasks), so a console
//! edit racing a restore waits for it, then fails its version check cleanly.

mod clash;
mod copy;
mod plan;
mod write;

use crate::store::sql::Sql;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deadpool_postgres::Transaction;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

pub use self::clash::Rename;
use self::clash::TakenElsewhere;
use self::copy::AuditBatch;
use self::plan::Plan;
use super::capture::read_project;
use super::diff;
use super::model::{FORMAT_VERSION, SnapshotData};
use super::storage::{self, Reason, fetch_snapshot, open_in_background};
use crate::domain::{SnapshotMeta, Source};
use crate::store::audit::CHANGE_CHANNEL;
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
    /// Rows made since that moved to a new name, giving theirs back.
    pub renamed: usize,
    /// With `exact`, rows made since; otherwise rows made since as another
    /// copy of a remote object the snapshot has.
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
    /// Rows made since that gave their name back to a restored row.
    pub renames: Vec<Rename>,
    pub flagged_mappings: u64,
}

impl RestoreReport {
    pub fn is_noop(&self) -> bool {
        self.project_fields.is_empty() && self.kinds.values().all(|c| *c == KindCounts::default())
    }
}

/// A restore step, for progress display.
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// How often a restore that lost a race with a concurrent writer is retried.
const ATTEMPTS: usize = 3;

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
        let actor = Actor {
            source: Source::Recovery,
            reason: Some(format!("restore of snapshot #{snapshot_id}")),
            ..actor.next_operation()
        };
        if options.dry_run {
            return self.preview_restore(&actor, snapshot_id, &options, progress).await;
        }
        self.refuse_if_read_only()?;
        let mut attempt = 1;
        loop {
            match self.restore_once(&actor, snapshot_id, &options, progress).await {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    attempt += 1;
                    progress(&format!("another change got in the way; trying again ({attempt} of {ATTEMPTS})"));
                }
                outcome => return outcome,
            }
        }
    }

    /// What a restore would do, read in one consistent snapshot; writes nothing.
    async fn preview_restore(
        &self,
        actor: &Actor,
        snapshot_id: i64,
        options: &RestoreOptions,
        progress: Progress<'_>,
    ) -> StoreResult<RestoreReport> {
        progress("verifying the snapshot and reading the current state");
        let mut client = self.client().await?;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let (meta, payload) = fetch_snapshot(&tx, snapshot_id).await?;
        let (snapshot, current) =
            futures_util::future::try_join(open_in_background(&meta, payload), read_project(&tx, meta.project_id))
                .await?;
        let elsewhere = TakenElsewhere::read(&tx, meta.project_id).await?;
        tx.commit().await?;
        check_belongs(&meta, &snapshot)?;
        progress("comparing");
        let plan = plan::plan(&current, &snapshot, snapshot_id, &elsewhere, options);
        let report = RestoreReport::new(snapshot_id, &snapshot, actor, true, &plan, options);
        Ok(report)
    }

    /// One attempt: everything in one REPEATABLE READ transaction, so the
    /// pre-restore snapshot is exactly the state the restore replaces. A
    /// concurrent writer that commits first makes it fail with a retryable
    /// error and roll back.
    async fn restore_once(
        &self,
        actor: &Actor,
        snapshot_id: i64,
        options: &RestoreOptions,
        progress: Progress<'_>,
    ) -> StoreResult<RestoreReport> {
        progress("verifying the snapshot and locking the project");
        let mut client = self.client().await?;
        let tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().await?;
        // Wait for edits in flight, but not forever: a stuck lock fails the restore cleanly.
        tx.batch_execute("SET LOCAL lock_timeout = '20s'").await?;
        let (meta, payload) = fetch_snapshot(&tx, snapshot_id).await?;
        let project_id = meta.project_id;
        // The payload is checked and decoded on another thread while the project is locked and read.
        let read_current = async {
            lock(&tx, project_id, options).await?;
            read_project(&tx, project_id).await
        };
        let (mut snapshot, current) =
            futures_util::future::try_join(open_in_background(&meta, payload), read_current).await?;
        check_belongs(&meta, &snapshot)?;
        for key in &options.only {
            if !snapshot.tasks.iter().any(|t| &t.key == key) {
                return Err(StoreError::not_found("task in the snapshot", key));
            }
        }
        let current = Arc::new(current);
        remap_agents(&tx, actor, &mut snapshot).await?;
        progress("comparing");
        let elsewhere = TakenElsewhere::read(&tx, project_id).await?;
        let plan = Arc::new(plan::plan(&current, &snapshot, snapshot_id, &elsewhere, options));
        let mut report = RestoreReport::new(snapshot_id, &snapshot, actor, false, &plan, options);
        let mut audit = AuditBatch::new(project_id, actor);
        check_ids_are_ours(&tx, project_id, &plan).await?;

        // Rows go back through COPY; their lines are encoded on another thread
        // while rows made since the snapshot are set aside.
        let ranks = match plan.kinds.iter().find(|k| k.spec.table == "task") {
            Some(tasks) if !options.only.is_empty() => write::free_ranks(&tx, project_id, tasks).await?,
            _ => HashMap::new(),
        };
        let lines = {
            let plan = Arc::clone(&plan);
            tokio::task::spawn_blocking(move || {
                plan.kinds.iter().map(|kind| write::copy_lines_of(kind, &ranks)).collect::<Vec<_>>()
            })
        };
        if !plan.project_fields.is_empty() {
            restore_project(&tx, &current, &snapshot, &plan.project_fields, &mut audit).await?;
        } else if current.project.last_task_number < snapshot.project.last_task_number {
            // Rows reinserted from the snapshot carry numbers up to its counter.
            tx.exec(
                "UPDATE project SET last_task_number = greatest(last_task_number, $2) WHERE id = $1",
                &[&project_id, &snapshot.project.last_task_number],
            )
            .await?;
        }
        if options.exact {
            // Rows made since are deleted once the snapshot's rows are back (a
            // restored task may still sit in a lane made since); until then
            // their unique values are moved out of the way.
            for kind in &plan.kinds {
                write::park_extras(&tx, kind).await?;
            }
        } else {
            for kind in &plan.kinds {
                write::give_way(&tx, project_id, kind, snapshot_id, &mut audit).await?;
                write::set_aside_extras(&tx, kind, &snapshot, snapshot_id, &mut audit).await?;
            }
        }
        let lines = lines.await.map_err(background_failed)?;
        // While the server writes the rows: the audit entries and the
        // pre-restore snapshot are encoded on other threads.
        let restore_entries = {
            let (plan, names, mut entries) = (Arc::clone(&plan), write::Names::of(&current, &snapshot), audit.fork());
            tokio::task::spawn_blocking(move || {
                write::restore_entries(&plan.kinds, &names, &mut entries);
                entries
            })
        };
        let pre_restore = {
            let current = Arc::clone(&current);
            tokio::task::spawn_blocking(move || storage::encode(&current))
        };
        let mut touched: HashMap<&'static str, Vec<i64>> = HashMap::new();
        for (kind, lines) in plan.kinds.iter().zip(&lines) {
            if kind.upsert.is_empty() {
                continue;
            }
            progress(&format!("restoring {} {}", kind.upsert.len(), kind.spec.kind));
            write::write_back(&tx, project_id, kind, lines).await?;
            touched.insert(kind.spec.singular, kind.upsert.iter().map(|u| u.id).collect());
        }
        drop(lines);
        write::restore_memberships(&tx, &snapshot, &touched).await?;
        if options.exact {
            // Dependents first: mappings, delivery records, handoffs, tasks, then what they point at.
            for kind in plan.kinds.iter().rev() {
                write::delete_extras(&tx, project_id, kind, &mut audit).await?;
            }
        }
        report.flagged_mappings = write::flag_mappings(&tx, project_id, &touched).await?;

        progress("saving the pre-restore snapshot");
        let encoded = pre_restore.await.map_err(background_failed)?;
        let label = format!("before restoring #{snapshot_id}");
        let pre = storage::insert_snapshot(
            &tx,
            actor,
            project_id,
            FORMAT_VERSION,
            &encoded,
            &current,
            &label,
            Reason::PreRestore,
        )
        .await?;
        report.pre_restore_snapshot = Some(pre.id);
        audit.append(restore_entries.await.map_err(background_failed)?);

        progress(&format!("writing {} audit entries", audit.len() + 1));
        let summary = serde_json::json!({
            "snapshot": snapshot_id,
            "pre_restore_snapshot": pre.id,
            "kinds": report.kinds,
            "project_fields": report.project_fields,
            "flagged_mappings": report.flagged_mappings,
            "only": options.only,
            "exact": options.exact,
        });
        audit.push("snapshot", "snapshot.restore", Some(snapshot_id), &format!("#{snapshot_id}"), None, Some(&summary));
        let last_audit_id = audit.write(&tx).await?;
        tx.exec(
            "SELECT pg_notify($1, change_payload($2, 'snapshot', $3, 'snapshot.restore', $4))",
            &[&CHANGE_CHANNEL, &project_id, &snapshot_id, &last_audit_id],
        )
        .await?;
        progress("committing");
        tx.commit().await?;
        Ok(report)
    }
}

impl RestoreReport {
    fn new(
        snapshot_id: i64,
        snapshot: &SnapshotData,
        actor: &Actor,
        dry_run: bool,
        plan: &Plan,
        options: &RestoreOptions,
    ) -> RestoreReport {
        RestoreReport {
            snapshot_id,
            project: snapshot.project.key.clone(),
            dry_run,
            pre_restore_snapshot: None,
            correlation_id: actor.correlation_id,
            project_fields: plan.project_fields.clone(),
            kinds: plan::counts_of(plan, options.exact),
            renames: plan.kinds.iter().flat_map(|k| k.renames.iter().cloned()).collect(),
            flagged_mappings: 0,
        }
    }
}

fn background_failed(e: tokio::task::JoinError) -> StoreError {
    StoreError::Database(format!("preparing the restore failed: {e}"))
}

/// A payload whose project row is not the snapshot's project is refused.
fn check_belongs(meta: &SnapshotMeta, snapshot: &SnapshotData) -> StoreResult<()> {
    if snapshot.project.id != meta.project_id {
        return Err(StoreError::invalid(format!("snapshot #{} does not belong to its project row", meta.id)));
    }
    Ok(())
}

/// Locks in the repository's order: project, lanes (by id), then tasks (by id).
async fn lock(tx: &Transaction<'_>, project_id: i64, options: &RestoreOptions) -> StoreResult<()> {
    tx.fetch("SELECT id FROM project WHERE id = $1 FOR UPDATE", &[&project_id]).await?;
    tx.fetch("SELECT id FROM lane WHERE project_id = $1 ORDER BY id FOR UPDATE", &[&project_id]).await?;
    if options.only.is_empty() {
        if plan::selected(options, "tasks") {
            tx.fetch("SELECT id FROM task WHERE project_id = $1 ORDER BY id FOR UPDATE", &[&project_id]).await?;
        }
    } else {
        tx.fetch(
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
            tx.fetch_opt("SELECT id FROM agent WHERE handle = $1", &[&agent.handle]).await?.map(|r| r.get(0));
        let id = match existing {
            Some(id) => id,
            None => {
                let taken = tx.fetch_opt("SELECT 1 FROM agent WHERE id = $1", &[&agent.id]).await?.is_some();
                let row = if taken {
                    tx.fetch_one(
                        "INSERT INTO agent (handle, display_name, kind, capacity, skills) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        &[&agent.handle, &agent.display_name, &agent.kind, &agent.capacity, &agent.skills],
                    )
                    .await?
                } else {
                    tx.fetch_one(
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
    write::bump_sequence(tx, "agent").await?;
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
        let missing: Vec<i64> = kind.upsert.iter().filter(|u| u.now.is_none()).map(|u| u.id).collect();
        if missing.is_empty() {
            continue;
        }
        let clash = tx
            .fetch_opt(
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
    tx.exec(
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
    audit.push("project", "project.restore", Some(p.id), &p.key, Some(&pick(&current.project)), Some(&pick(p)));
    Ok(())
}
