//! The sync worker's door into the local side: tasks changed or created from
//! a remote copy, and the mapping's new base, written in one transaction with
//! the audit entry (source `sync`).
//!
//! Each transaction names its connection in `mctl.sync_connection`, so the
//! outbox trigger does not queue the change to be pushed straight back to
//! where it came from (other connections still see it).

use crate::store::sql::Sql;
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::audit::{self, Change};
use super::tasks::{TaskPatch, apply_patch, bottom_rank, lock_lanes, lock_task, read_task};
use super::{Actor, Store, StoreError, StoreResult, check_version};
use crate::domain::{LocalKind, Priority, SyncState, Task, TaskKey, text};

/// Task fields a remote copy can change; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncedTask {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub lane_id: Option<i64>,
    pub assignee_id: Option<Option<i64>>,
    pub labels: Option<Vec<String>>,
    pub due_on: Option<Option<Date>>,
    pub cycle_id: Option<Option<i64>>,
    pub module_ids: Option<Vec<i64>>,
}

impl SyncedTask {
    pub fn is_empty(&self) -> bool {
        *self == SyncedTask::default()
    }
}

/// A mapping as the sync worker keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncMapping {
    pub id: i64,
    pub project_id: i64,
    pub connection_id: i64,
    pub local_kind: LocalKind,
    pub local_id: i64,
    pub external_id: String,
    pub external_key: Option<String>,
    pub url: Option<String>,
    pub base: Value,
    pub remote_version: Option<String>,
    pub sync_state: SyncState,
    pub last_synced_at: Option<OffsetDateTime>,
}

/// What a reconcile learned about the link, saved with the change.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingUpdate {
    pub connection_id: i64,
    pub local_kind: LocalKind,
    pub external_id: String,
    pub external_key: Option<String>,
    pub url: Option<String>,
    pub base: Value,
    pub remote_version: Option<String>,
    pub state: SyncState,
    pub error: Option<String>,
}

impl MappingUpdate {
    /// The link of an object the provider refused part of (`reason`): in
    /// error, with the reason for the operator, until a later sync clears it.
    pub fn refused(mut self, reason: Option<&str>) -> MappingUpdate {
        if let Some(reason) = reason {
            if self.state == SyncState::InSync {
                self.state = SyncState::Error;
            }
            self.error = Some(reason.to_string());
        }
        self
    }
}

const MAPPING_COLUMNS: &str = "id, project_id, connection_id, local_kind, local_id, external_id, external_key, url, \
     coalesce(base, '{}'::jsonb) AS base, remote_version, sync_state, last_synced_at";

fn mapping(row: &tokio_postgres::Row) -> StoreResult<SyncMapping> {
    Ok(SyncMapping {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        connection_id: row.try_get("connection_id")?,
        local_kind: LocalKind::from_db(row.try_get("local_kind")?)?,
        local_id: row.try_get("local_id")?,
        external_id: row.try_get("external_id")?,
        external_key: row.try_get("external_key")?,
        url: row.try_get("url")?,
        base: row.try_get("base")?,
        remote_version: row.try_get("remote_version")?,
        sync_state: SyncState::from_db(row.try_get("sync_state")?)?,
        last_synced_at: row.try_get("last_synced_at")?,
    })
}

impl Store {
    /// Opens a transaction whose changes are the sync worker's for `connection_id`.
    async fn sync_transaction<'c>(
        client: &'c mut deadpool_postgres::Client,
        connection_id: i64,
    ) -> StoreResult<Transaction<'c>> {
        let tx = client.transaction().await?;
        tx.exec("SELECT set_config('mctl.sync_connection', $1, true)", &[&connection_id.to_string()]).await?;
        Ok(tx)
    }

    pub async fn sync_mapping(
        &self,
        connection_id: i64,
        local_kind: LocalKind,
        local_id: i64,
    ) -> StoreResult<Option<SyncMapping>> {
        let client = self.client().await?;
        let row = client
            .fetch_opt(
                &format!(
                    "SELECT {MAPPING_COLUMNS} FROM external_mapping
                     WHERE connection_id = $1 AND local_kind = $2 AND local_id = $3"
                ),
                &[&connection_id, &local_kind.as_str(), &local_id],
            )
            .await?;
        row.as_ref().map(mapping).transpose()
    }

    /// Every mapping of one kind on a connection, by external id.
    pub async fn sync_mappings(&self, connection_id: i64, local_kind: LocalKind) -> StoreResult<Vec<SyncMapping>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!("SELECT {MAPPING_COLUMNS} FROM external_mapping WHERE connection_id = $1 AND local_kind = $2"),
                &[&connection_id, &local_kind.as_str()],
            )
            .await?;
        rows.iter().map(mapping).collect()
    }

    /// The mappings of one kind on a connection for these external ids (an
    /// incremental pass reads only what it listed).
    pub async fn sync_mappings_for(
        &self,
        connection_id: i64,
        local_kind: LocalKind,
        external_ids: &[&str],
    ) -> StoreResult<Vec<SyncMapping>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {MAPPING_COLUMNS} FROM external_mapping
                     WHERE connection_id = $1 AND local_kind = $2 AND external_id = ANY($3)"
                ),
                &[&connection_id, &local_kind.as_str(), &external_ids],
            )
            .await?;
        rows.iter().map(mapping).collect()
    }

    /// A task and its module ids, as the reconcile compares them.
    pub async fn sync_read_task(&self, task_id: i64) -> StoreResult<(Task, Vec<i64>)> {
        let client = self.client().await?;
        let task = read_task(&client, task_id).await?;
        let modules = module_ids_of(&client, task_id).await?;
        Ok((task, modules))
    }

    /// Writes a remote copy's changes to a task and the mapping's new base.
    /// Fails with a conflict if the task changed since it was read.
    pub async fn sync_update_task(
        &self,
        actor: &Actor,
        task_id: i64,
        expect_version: i32,
        changes: &SyncedTask,
        link: &MappingUpdate,
    ) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let title = changes.title.as_deref().map(text::task_title).transpose()?;
        let description = changes
            .description
            .as_deref()
            .map(|d| text::long_text("description", d, text::MAX_DESCRIPTION_CHARS))
            .transpose()?;
        let labels = changes.labels.as_ref().map(text::labels).transpose()?;
        let mut client = self.client().await?;
        let tx = Self::sync_transaction(&mut client, link.connection_id).await?;
        let current_lane: i64 = tx
            .fetch_opt("SELECT lane_id FROM task WHERE id = $1", &[&task_id])
            .await?
            .ok_or_else(|| StoreError::not_found("task", task_id))?
            .get(0);
        let lanes: Vec<i64> = std::iter::once(current_lane).chain(changes.lane_id).collect();
        lock_lanes(&tx, &lanes).await?;
        let before = lock_task(&tx, task_id, current_lane).await?;
        check_version("task", &before.key, Some(expect_version), before.version)?;
        let lane_id = changes.lane_id.filter(|l| *l != before.lane_id);
        if let Some(lane) = lane_id {
            check_lane(&tx, before.project_id, lane).await?;
        }
        let rank = match lane_id {
            Some(lane) => Some(bottom_rank(&tx, before.project_id, lane, Some(task_id)).await?),
            None => None,
        };
        let patch = TaskPatch {
            title: title.filter(|t| *t != before.title),
            description: description.filter(|d| *d != before.description),
            priority: changes.priority.filter(|p| *p != before.priority),
            assignee_id: changes.assignee_id.filter(|a| *a != before.assignee_id),
            labels: labels.filter(|l| *l != before.labels),
            due_on: changes.due_on.filter(|d| *d != before.due_on),
            cycle_id: changes.cycle_id.filter(|c| *c != before.cycle_id),
            lane_id,
            rank,
            archived: None,
        };
        let modules_changed = match &changes.module_ids {
            Some(ids) => set_modules(&tx, before.project_id, task_id, ids).await?,
            None => false,
        };
        let after = if patch.is_empty() && !modules_changed {
            before.clone()
        } else {
            let after = apply_patch(&tx, &before, &patch).await?;
            audit::record(
                &tx,
                actor,
                Change::new("task", "sync", Some(before.project_id))
                    .entity(after.id, &after.key)
                    .before(&before)
                    .after(&after),
            )
            .await?;
            after
        };
        save_link(&tx, actor, before.project_id, task_id, link).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Creates a task from a remote copy (import, or an item made remotely)
    /// with its mapping.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync_create_task(
        &self,
        actor: &Actor,
        project_id: i64,
        title: &str,
        lane_id: i64,
        fields: &SyncedTask,
        link: &MappingUpdate,
    ) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let title = text::task_title(title)?;
        let description =
            text::long_text("description", fields.description.as_deref().unwrap_or(""), text::MAX_DESCRIPTION_CHARS)?;
        let labels = text::labels(fields.labels.as_deref().unwrap_or(&[]))?;
        let mut client = self.client().await?;
        let tx = Self::sync_transaction(&mut client, link.connection_id).await?;
        // Another worker may have made it already.
        let existing = tx
            .fetch_opt(
                "SELECT local_id FROM external_mapping WHERE connection_id = $1 AND local_kind = $2 AND external_id = $3",
                &[&link.connection_id, &link.local_kind.as_str(), &link.external_id],
            )
            .await?;
        if let Some(row) = existing {
            return read_task(&tx, row.get(0)).await;
        }
        check_lane(&tx, project_id, lane_id).await?;
        lock_lanes(&tx, &[lane_id]).await?;
        let row = tx
            .fetch_one(
                "UPDATE project SET last_task_number = last_task_number + 1 WHERE id = $1 RETURNING key, last_task_number",
                &[&project_id],
            )
            .await?;
        let key = TaskKey::new(row.get(0), row.get(1));
        let rank = bottom_rank(&tx, project_id, lane_id, None).await?;
        let id: i64 = tx
            .fetch_one(
                "INSERT INTO task (project_id, number, task_key, title, description, lane_id, rank, priority,
                                   assignee_id, labels, due_on, cycle_id, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
                &[
                    &project_id,
                    &key.number,
                    &key.to_string(),
                    &title,
                    &description,
                    &lane_id,
                    &rank,
                    &fields.priority.unwrap_or(Priority::None).as_str(),
                    &fields.assignee_id.flatten(),
                    &labels,
                    &fields.due_on.flatten(),
                    &fields.cycle_id.flatten(),
                    &actor.name,
                ],
            )
            .await?
            .get(0);
        if let Some(ids) = &fields.module_ids {
            set_modules(&tx, project_id, id, ids).await?;
        }
        let task = read_task(&tx, id).await?;
        audit::record(
            &tx,
            actor,
            Change::new("task", "sync_create", Some(project_id)).entity(id, &task.key).after(&task),
        )
        .await?;
        save_link(&tx, actor, project_id, id, link).await?;
        tx.commit().await?;
        Ok(task)
    }

    /// The remote copy is gone (deleted, or archived: Plane's API shows an
    /// archived work item to nobody): the task is archived (never deleted)
    /// and the mapping marked, so the task is not pushed again as new.
    pub async fn sync_remote_deleted(&self, actor: &Actor, mapping: &SyncMapping) -> StoreResult<()> {
        self.sync_remote_presence(actor, mapping, false).await
    }

    /// The remote copy is back (un-archived in Plane): the task that went
    /// with it is un-archived and the same mapping syncs again.
    pub async fn sync_remote_restored(&self, actor: &Actor, mapping: &SyncMapping) -> StoreResult<()> {
        self.sync_remote_presence(actor, mapping, true).await
    }

    async fn sync_remote_presence(&self, actor: &Actor, mapping: &SyncMapping, present: bool) -> StoreResult<()> {
        self.refuse_if_read_only()?;
        let mut client = self.client().await?;
        let tx = Self::sync_transaction(&mut client, mapping.connection_id).await?;
        if mapping.local_kind == LocalKind::Task {
            let lane: Option<i64> =
                tx.fetch_opt("SELECT lane_id FROM task WHERE id = $1", &[&mapping.local_id]).await?.map(|r| r.get(0));
            if let Some(lane) = lane {
                lock_lanes(&tx, &[lane]).await?;
                let before = lock_task(&tx, mapping.local_id, lane).await?;
                if before.archived == present {
                    let patch = TaskPatch { archived: Some(!present), ..Default::default() };
                    let after = apply_patch(&tx, &before, &patch).await?;
                    let verb = if present { "unarchive" } else { "archive" };
                    audit::record(
                        &tx,
                        actor,
                        Change::new("task", verb, Some(before.project_id))
                            .entity(after.id, &after.key)
                            .before(&before)
                            .after(&after),
                    )
                    .await?;
                }
            }
        }
        let (state, verb) = if present { ("pending", "remote_restored") } else { ("deleted", "remote_deleted") };
        tx.exec(
            "UPDATE external_mapping SET sync_state = $2, last_error = NULL, last_synced_at = now(), updated_at = now()
             WHERE id = $1",
            &[&mapping.id, &state],
        )
        .await?;
        audit::record(
            &tx,
            actor,
            Change::new("mapping", verb, Some(mapping.project_id))
                .entity(mapping.id, &mapping.external_id)
                .before(&serde_json::json!({ "local_kind": mapping.local_kind, "local_id": mapping.local_id })),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records what a reconcile learned without a local change (after a push,
    /// or to note an error).
    pub async fn sync_save_link(
        &self,
        actor: &Actor,
        project_id: i64,
        local_id: i64,
        link: &MappingUpdate,
    ) -> StoreResult<()> {
        self.refuse_if_read_only()?;
        let mut client = self.client().await?;
        let tx = Self::sync_transaction(&mut client, link.connection_id).await?;
        save_link(&tx, actor, project_id, local_id, link).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes down a push about to be sent: the mapping's base with the
    /// push's intent (see `merge::Base::pushing`). One statement, committed
    /// without waiting for the disk: a push is on the path of every local
    /// edit, and losing the intent to a crash of the database itself (not
    /// of mctl) costs at most a conflict to settle, never data.
    pub async fn sync_save_intent(&self, mapping_id: i64, base: &Value) -> StoreResult<()> {
        self.refuse_if_read_only()?;
        let client = self.client().await?;
        client
            .exec(
                "WITH unflushed AS (SELECT set_config('synchronous_commit', 'off', true))
                 UPDATE external_mapping SET base = $2, updated_at = now() FROM unflushed WHERE id = $1",
                &[&mapping_id, base],
            )
            .await?;
        Ok(())
    }

    pub async fn sync_set_mapping_state(
        &self,
        mapping_id: i64,
        state: SyncState,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        let error = error.map(|e| text::clip(e, 500).into_owned());
        client
            .exec(
                "UPDATE external_mapping SET sync_state = $2, last_error = $3, updated_at = now() WHERE id = $1",
                &[&mapping_id, &state.as_str(), &error],
            )
            .await?;
        Ok(())
    }
}

/// Upserts the mapping of `local_id`; a new link is audited.
async fn save_link(
    tx: &Transaction<'_>,
    actor: &Actor,
    project_id: i64,
    local_id: i64,
    link: &MappingUpdate,
) -> StoreResult<()> {
    let error = link.error.as_deref().map(|e| text::clip(e, 500).into_owned());
    let row = tx
        .fetch_one(
            "INSERT INTO external_mapping (project_id, connection_id, local_kind, local_id, external_id, external_key, url,
                                           base, remote_version, sync_state, last_error, last_synced_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, now())
             ON CONFLICT (connection_id, local_kind, local_id) DO UPDATE
                 SET external_id = EXCLUDED.external_id, external_key = EXCLUDED.external_key, url = EXCLUDED.url,
                     base = EXCLUDED.base, remote_version = EXCLUDED.remote_version,
                     sync_state = EXCLUDED.sync_state, last_error = EXCLUDED.last_error,
                     last_synced_at = now(), updated_at = now()
             RETURNING id, (xmax = 0) AS inserted",
            &[
                &project_id,
                &link.connection_id,
                &link.local_kind.as_str(),
                &local_id,
                &link.external_id,
                &link.external_key,
                &link.url,
                &link.base,
                &link.remote_version,
                &link.state.as_str(),
                &error,
            ],
        )
        .await?;
    let (id, inserted): (i64, bool) = (row.get(0), row.get(1));
    if inserted {
        audit::record(
            tx,
            actor,
            Change::new("mapping", "link", Some(project_id)).entity(id, &link.external_id).after(&serde_json::json!({
                "local_kind": link.local_kind,
                "local_id": local_id,
                "external_id": link.external_id,
                "external_key": link.external_key,
                "url": link.url,
            })),
        )
        .await?;
    }
    Ok(())
}

async fn check_lane(client: &impl Sql, project_id: i64, lane_id: i64) -> StoreResult<()> {
    let found =
        client.fetch_opt("SELECT 1 FROM lane WHERE id = $1 AND project_id = $2", &[&lane_id, &project_id]).await?;
    found.map(|_| ()).ok_or_else(|| StoreError::not_found("lane", lane_id))
}

pub(crate) async fn module_ids_of(client: &impl Sql, task_id: i64) -> StoreResult<Vec<i64>> {
    let rows =
        client.fetch("SELECT module_id FROM task_module WHERE task_id = $1 ORDER BY module_id", &[&task_id]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Makes the task's modules exactly `ids` (of this project); whether anything changed.
async fn set_modules(tx: &Transaction<'_>, project_id: i64, task_id: i64, ids: &[i64]) -> StoreResult<bool> {
    let removed =
        tx.exec("DELETE FROM task_module WHERE task_id = $1 AND NOT (module_id = ANY ($2))", &[&task_id, &ids]).await?;
    let added = tx
        .exec(
            "INSERT INTO task_module (task_id, module_id)
             SELECT $1, m.id FROM module m WHERE m.project_id = $2 AND m.id = ANY ($3)
             ON CONFLICT DO NOTHING",
            &[&task_id, &project_id, &ids],
        )
        .await?;
    Ok(removed + added > 0)
}

/// A conflict as the reconcile found it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConflict {
    pub field: String,
    pub base: Option<Value>,
    pub local: Value,
    pub remote: Value,
    /// `local`/`remote` when the policy settled it; `None` leaves it open.
    pub resolution: Option<&'static str>,
}

/// A conflict as operators see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConflictView {
    pub id: i64,
    pub connection: String,
    pub entity_key: Option<String>,
    pub local_kind: String,
    pub local_id: i64,
    pub field: String,
    pub base_value: Option<Value>,
    pub local_value: Option<Value>,
    pub remote_value: Option<Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub detected_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
}

impl Store {
    /// Records the conflicts of one reconcile: settled ones as history, open
    /// ones (one per field) kept current; open conflicts on fields that no
    /// longer conflict are closed.
    pub async fn sync_record_conflicts(
        &self,
        actor: &Actor,
        mapping: &SyncMapping,
        entity_key: &str,
        conflicts: &[NewConflict],
    ) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let open: Vec<&str> = conflicts.iter().filter(|c| c.resolution.is_none()).map(|c| c.field.as_str()).collect();
        tx.exec(
            "UPDATE sync_conflict SET resolved_at = now(), resolved_by = 'converged'
             WHERE mapping_id = $1 AND resolved_at IS NULL AND NOT (field = ANY ($2))",
            &[&mapping.id, &open],
        )
        .await?;
        for conflict in conflicts {
            let policy = conflict.resolution.map(|_| format!("policy:{}", actor.name));
            tx.exec(
                "INSERT INTO sync_conflict (project_id, connection_id, mapping_id, local_kind, local_id, entity_key, field,
                                            base_value, local_value, remote_value, resolved_at, resolution, resolved_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $11::text IS NULL THEN NULL ELSE now() END, $11, $12)
                 ON CONFLICT (mapping_id, field) WHERE resolved_at IS NULL DO UPDATE
                     SET local_value = EXCLUDED.local_value, remote_value = EXCLUDED.remote_value,
                         base_value = EXCLUDED.base_value, resolved_at = EXCLUDED.resolved_at,
                         resolution = EXCLUDED.resolution, resolved_by = EXCLUDED.resolved_by",
                &[
                    &mapping.project_id,
                    &mapping.connection_id,
                    &mapping.id,
                    &mapping.local_kind.as_str(),
                    &mapping.local_id,
                    &entity_key,
                    &conflict.field,
                    &conflict.base,
                    &conflict.local,
                    &conflict.remote,
                    &conflict.resolution,
                    &policy,
                ],
            )
            .await?;
            audit::record(
                &tx,
                actor,
                Change::new("mapping", "conflict", Some(mapping.project_id)).entity(mapping.id, entity_key).after(
                    &serde_json::json!({
                        "field": conflict.field,
                        "local": conflict.local,
                        "remote": conflict.remote,
                        "settled": conflict.resolution,
                    }),
                ),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn sync_conflicts(&self, project_id: i64, include_resolved: bool) -> StoreResult<Vec<ConflictView>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                "SELECT s.id, c.connection_key, s.entity_key, s.local_kind, s.local_id, s.field, s.base_value,
                        s.local_value, s.remote_value, s.detected_at, s.resolved_at, s.resolution, s.resolved_by
                 FROM sync_conflict s JOIN integration_connection c ON c.id = s.connection_id
                 WHERE s.project_id = $1 AND ($2 OR s.resolved_at IS NULL)
                 ORDER BY s.detected_at DESC, s.id DESC LIMIT 500",
                &[&project_id, &include_resolved],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ConflictView {
                id: r.get(0),
                connection: r.get(1),
                entity_key: r.get(2),
                local_kind: r.get(3),
                local_id: r.get(4),
                field: r.get(5),
                base_value: r.get(6),
                local_value: r.get(7),
                remote_value: r.get(8),
                detected_at: r.get(9),
                resolved_at: r.get(10),
                resolution: r.get(11),
                resolved_by: r.get(12),
            })
            .collect())
    }

    /// An operator settles an open conflict: the base of that field is moved
    /// so that the chosen side's value looks like the only change, and the
    /// object is queued; the next reconcile carries the value across.
    /// Returns the connection id and the reconcile key.
    pub async fn sync_resolve_conflict(
        &self,
        actor: &Actor,
        project_id: i64,
        id: i64,
        take_local: bool,
    ) -> StoreResult<(i64, String)> {
        self.refuse_if_read_only()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_opt(
                "SELECT s.mapping_id, s.field, s.local_value, s.remote_value, s.local_kind, s.local_id, s.connection_id,
                        s.entity_key
                 FROM sync_conflict s WHERE s.id = $1 AND s.project_id = $2 AND s.resolved_at IS NULL FOR UPDATE",
                &[&id, &project_id],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("open conflict", format!("#{id}")))?;
        let (mapping_id, field, local, remote): (i64, String, Option<Value>, Option<Value>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let (kind, local_id, connection_id, key): (String, i64, i64, Option<String>) =
            (row.get(4), row.get(5), row.get(6), row.get(7));
        // Taking local: the remote value becomes the base, so only the local side "changed".
        let (half, value) = if take_local { ("remote", remote) } else { ("local", local) };
        tx.exec(
            "UPDATE external_mapping SET base = jsonb_set(coalesce(base, '{}'::jsonb) || jsonb_build_object($2::text,
                        coalesce(base -> $2::text, '{}'::jsonb)), ARRAY[$2::text, $3::text], coalesce($4, 'null'::jsonb)),
                    sync_state = 'pending', updated_at = now()
             WHERE id = $1",
            &[&mapping_id, &half, &field, &value],
        )
        .await?;
        let side = if take_local { "local" } else { "remote" };
        tx.exec(
            "UPDATE sync_conflict SET resolved_at = now(), resolution = $2, resolved_by = $3 WHERE id = $1",
            &[&id, &side, &actor.name],
        )
        .await?;
        let job_key = format!("{kind}:{local_id}");
        tx.exec(
            "INSERT INTO sync_job (connection_id, key) VALUES ($1, $2)
             ON CONFLICT (connection_id, key) DO UPDATE
                 SET generation = sync_job.generation + 1, available_at = now(), dead = false, attempts = 0",
            &[&connection_id, &job_key],
        )
        .await?;
        tx.exec("SELECT pg_notify('mc_sync', '')", &[]).await?;
        audit::record(
            &tx,
            actor,
            Change::new("mapping", "resolve", Some(project_id))
                .entity(mapping_id, key.unwrap_or_else(|| job_key.clone()))
                .after(&serde_json::json!({ "conflict": id, "field": field, "take": side })),
        )
        .await?;
        tx.commit().await?;
        Ok((connection_id, job_key))
    }
}

/// A task to create from a remote copy in a bulk import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedTask {
    pub title: String,
    pub lane_id: i64,
    pub fields: SyncedTask,
    pub link: MappingUpdate,
}

impl Store {
    /// Creates many tasks from remote copies in one transaction: keys in
    /// order, each at the bottom of its lane, with module memberships, the
    /// mapping and one audit entry per task. Items already mapped (by another
    /// worker) are skipped. Returns the tasks created.
    pub async fn sync_import_tasks(
        &self,
        actor: &Actor,
        project_id: i64,
        connection_id: i64,
        items: &[ImportedTask],
    ) -> StoreResult<usize> {
        self.refuse_if_read_only()?;
        if items.is_empty() {
            return Ok(0);
        }
        let mut titles = Vec::with_capacity(items.len());
        let mut descriptions = Vec::with_capacity(items.len());
        for item in items {
            titles.push(text::task_title(&item.title)?);
            descriptions.push(text::long_text(
                "description",
                item.fields.description.as_deref().unwrap_or(""),
                text::MAX_DESCRIPTION_CHARS,
            )?);
        }
        let mut client = self.client().await?;
        let tx = Self::sync_transaction(&mut client, connection_id).await?;
        let external: Vec<&str> = items.iter().map(|i| i.link.external_id.as_str()).collect();
        let taken: std::collections::HashSet<String> = tx
            .fetch(
                "SELECT external_id FROM external_mapping WHERE connection_id = $1 AND local_kind = 'task'
                 AND external_id = ANY ($2)",
                &[&connection_id, &external],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let fresh: Vec<usize> = (0..items.len()).filter(|i| !taken.contains(&items[*i].link.external_id)).collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut lanes: Vec<i64> = fresh.iter().map(|i| items[*i].lane_id).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let known: i64 = tx
            .fetch_one("SELECT count(*) FROM lane WHERE project_id = $1 AND id = ANY ($2)", &[&project_id, &lanes])
            .await?
            .get(0);
        if known != lanes.len() as i64 {
            return Err(StoreError::invalid("an imported task names a lane of another project"));
        }
        lock_lanes(&tx, &lanes).await?;
        let count = fresh.len() as i64;
        let row = tx
            .fetch_one(
                "UPDATE project SET last_task_number = last_task_number + $2 WHERE id = $1 RETURNING key, last_task_number",
                &[&project_id, &count],
            )
            .await?;
        let (project_key, last): (String, i64) = (row.get(0), row.get(1));
        let mut bottoms: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
        for lane in &lanes {
            bottoms.insert(*lane, bottom_rank(&tx, project_id, *lane, None).await? - super::tasks::RANK_STEP);
        }
        let (mut numbers, mut keys, mut lane_ids, mut ranks, mut priorities) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut assignees, mut labels, mut dues, mut cycles) = (vec![], vec![], vec![], vec![]);
        let (mut item_titles, mut item_descriptions) = (vec![], vec![]);
        for (n, index) in fresh.iter().enumerate() {
            let item = &items[*index];
            let number = last - count + 1 + n as i64;
            numbers.push(number);
            keys.push(TaskKey::new(&project_key, number).to_string());
            lane_ids.push(item.lane_id);
            let rank = bottoms.get_mut(&item.lane_id).expect("every lane has a bottom");
            *rank += super::tasks::RANK_STEP;
            ranks.push(*rank);
            priorities.push(item.fields.priority.unwrap_or(Priority::None).as_str());
            assignees.push(item.fields.assignee_id.flatten());
            labels.push(serde_json::json!(text::labels(item.fields.labels.as_deref().unwrap_or(&[]))?));
            dues.push(item.fields.due_on.flatten());
            cycles.push(item.fields.cycle_id.flatten());
            item_titles.push(titles[*index].clone());
            item_descriptions.push(descriptions[*index].clone());
        }
        let ids: Vec<i64> = tx
            .fetch(
                "INSERT INTO task (project_id, number, task_key, title, description, lane_id, rank, priority,
                                   assignee_id, labels, due_on, cycle_id, created_by)
                 SELECT $1, n, k, t, d, l, r, p, a, ARRAY(SELECT jsonb_array_elements_text(lb)), du, c, $13
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[],
                             $9::bigint[], $10::jsonb[], $11::date[], $12::bigint[])
                      WITH ORDINALITY AS u(n, k, t, d, l, r, p, a, lb, du, c, o)
                 ORDER BY o
                 RETURNING id",
                &[
                    &project_id,
                    &numbers,
                    &keys,
                    &item_titles,
                    &item_descriptions,
                    &lane_ids,
                    &ranks,
                    &priorities,
                    &assignees,
                    &labels,
                    &dues,
                    &cycles,
                    &actor.name,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // RETURNING follows the insert order, which follows the ordinality.
        let (mut member_tasks, mut member_modules) = (vec![], vec![]);
        for (id, index) in ids.iter().zip(&fresh) {
            for module in items[*index].fields.module_ids.iter().flatten() {
                member_tasks.push(*id);
                member_modules.push(*module);
            }
        }
        tx.exec(
            "INSERT INTO task_module (task_id, module_id)
             SELECT u.t, u.m FROM unnest($1::bigint[], $2::bigint[]) AS u(t, m)
             JOIN module ON module.id = u.m AND module.project_id = $3
             ON CONFLICT DO NOTHING",
            &[&member_tasks, &member_modules, &project_id],
        )
        .await?;
        let links: Vec<&MappingUpdate> = fresh.iter().map(|i| &items[*i].link).collect();
        let external_ids: Vec<&str> = links.iter().map(|l| l.external_id.as_str()).collect();
        let external_keys: Vec<Option<&str>> = links.iter().map(|l| l.external_key.as_deref()).collect();
        tx.exec(
            "INSERT INTO external_mapping (project_id, connection_id, local_kind, local_id, external_id, external_key, url,
                                           base, remote_version, sync_state, last_synced_at)
             SELECT $1, $2, 'task', u.id, u.e, u.k, u.url, u.b, u.v, 'in_sync', now()
             FROM unnest($3::bigint[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::text[]) AS u(id, e, k, url, b, v)",
            &[
                &project_id,
                &connection_id,
                &ids,
                &external_ids,
                &external_keys,
                &links.iter().map(|l| l.url.as_deref()).collect::<Vec<_>>(),
                &links.iter().map(|l| &l.base).collect::<Vec<_>>(),
                &links.iter().map(|l| l.remote_version.as_deref()).collect::<Vec<_>>(),
            ],
        )
        .await?;
        // One audit entry per task (the task as created), one notification for the batch. Built from
        // the arrays in hand rather than a join, so the plan cannot go wrong on a table without statistics.
        tx.exec(
            "INSERT INTO audit_entry (project_id, actor, source, action, entity_kind, entity_id, entity_key, after,
                                      correlation_id, reason)
             SELECT $1, $2, $3, 'task.sync_create', 'task', u.id, u.k,
                    jsonb_build_object('key', u.k, 'title', u.t, 'lane_id', u.l, 'priority', u.p,
                                       'external_id', u.e, 'external_key', u.ek),
                    $4, $5
             FROM unnest($6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[], $12::text[])
                  WITH ORDINALITY AS u(id, k, t, l, p, e, ek, o)
             ORDER BY u.o",
            &[
                &project_id,
                &actor.name,
                &actor.source.as_str(),
                &actor.correlation_id,
                &actor.reason,
                &ids,
                &keys,
                &item_titles,
                &lane_ids,
                &priorities,
                &external_ids,
                &external_keys,
            ],
        )
        .await?;
        tx.exec(
            "SELECT pg_notify($1, change_payload($2, 'task', NULL, 'task.sync_create',
                                                 (SELECT max(id) FROM audit_entry WHERE correlation_id = $3)))",
            &[&super::audit::CHANGE_CHANNEL, &project_id, &actor.correlation_id],
        )
        .await?;
        tx.commit().await?;
        Ok(ids.len())
    }
}

/// One connection's sync health, for `mctl sync status` and the console.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SyncHealth {
    pub connection: String,
    pub provider: String,
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_pass_at: Option<OffsetDateTime>,
    pub last_pass_ok: Option<bool>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_full_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub paused_until: Option<OffsetDateTime>,
    /// Keys waiting (not counting the recurring passes).
    pub queued: i64,
    /// Seconds the oldest waiting key has waited.
    pub lag_seconds: Option<i64>,
    pub conflicts: i64,
    pub dead_letters: i64,
    /// Keys that failed and wait to be tried again (not dead yet).
    pub retrying: i64,
    /// An n8n connection's deliveries of the last week.
    pub deliveries: Option<DeliveryHealth>,
}

/// How an n8n connection's deliveries went over the last week.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DeliveryHealth {
    pub delivered: i64,
    /// Tried and not delivered yet (retried, or dead letters).
    pub failing: i64,
    /// Not tried yet.
    pub waiting: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_delivered_at: Option<OffsetDateTime>,
    /// What the last failed attempt got.
    pub last_error: Option<String>,
}

impl Store {
    pub async fn sync_health(&self, project_id: i64) -> StoreResult<Vec<SyncHealth>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                "SELECT c.connection_key, c.provider, c.enabled, s.last_pass_at, s.last_pass_ok, s.last_full_at,
                        s.last_error, s.paused_until,
                        (SELECT count(*) FROM sync_job j WHERE j.connection_id = c.id AND NOT j.dead
                                AND j.key NOT IN ('pull', 'full')) AS queued,
                        (SELECT extract(epoch FROM now() - min(j.created_at))::bigint FROM sync_job j
                          WHERE j.connection_id = c.id AND NOT j.dead AND j.key NOT IN ('pull', 'full')) AS lag,
                        (SELECT count(*) FROM sync_conflict x WHERE x.connection_id = c.id AND x.resolved_at IS NULL)
                            AS conflicts,
                        (SELECT count(*) FROM sync_job j WHERE j.connection_id = c.id AND j.dead) AS dead,
                        (SELECT count(*) FROM sync_job j WHERE j.connection_id = c.id AND NOT j.dead
                                AND j.attempts > 0) AS retrying,
                        d.delivered, d.failing, d.waiting, d.last_delivered_at, d.last_error
                 FROM integration_connection c LEFT JOIN sync_cursor s ON s.connection_id = c.id
                 LEFT JOIN LATERAL (
                     SELECT count(*) FILTER (WHERE a.delivered_at IS NOT NULL) AS delivered,
                            count(*) FILTER (WHERE a.delivered_at IS NULL AND a.attempts > 0) AS failing,
                            count(*) FILTER (WHERE a.delivered_at IS NULL AND a.attempts = 0) AS waiting,
                            max(a.delivered_at) AS last_delivered_at,
                            (SELECT b.last_error FROM automation_delivery b
                              WHERE b.connection_id = c.id AND b.delivered_at IS NULL AND b.last_error IS NOT NULL
                              ORDER BY b.created_at DESC LIMIT 1) AS last_error
                     FROM automation_delivery a
                     WHERE a.connection_id = c.id AND a.created_at > now() - interval '7 days') d
                   ON c.provider = 'n8n'
                 WHERE c.project_id = $1 ORDER BY c.connection_key",
                &[&project_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SyncHealth {
                connection: r.get(0),
                provider: r.get(1),
                enabled: r.get(2),
                last_pass_at: r.get(3),
                last_pass_ok: r.get(4),
                last_full_at: r.get(5),
                last_error: r.get(6),
                paused_until: r.get(7),
                queued: r.get(8),
                lag_seconds: r.get(9),
                conflicts: r.get(10),
                dead_letters: r.get(11),
                retrying: r.get(12),
                deliveries: r.get::<_, Option<i64>>(13).map(|delivered| DeliveryHealth {
                    delivered,
                    failing: r.get(14),
                    waiting: r.get(15),
                    last_delivered_at: r.get(16),
                    last_error: r.get(17),
                }),
            })
            .collect())
    }
}
