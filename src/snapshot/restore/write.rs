//! Writing a restore plan back: rows put back as the snapshot has them, rows
//! made since set aside (or deleted), memberships, and mappings flagged for
//! the sync worker. Every statement runs in the restore's transaction.

use crate::store::sql::Sql;
use std::collections::{BTreeSet, HashMap};

use deadpool_postgres::{GenericClient, Transaction};
use serde_json::{Map, Value};

use super::clash::Clash;
use super::copy::{AuditBatch, Line, copy_lines};
use super::plan::{Extra, KindPlan, Row, field_name};
use crate::snapshot::diff;
use crate::snapshot::model::SnapshotData;
use crate::store::StoreResult;
use crate::store::tasks::RANK_STEP;

/// Rows made since the snapshot give up the unique values restored rows need:
/// renamed, or (another copy of the same remote object) replaced.
pub(super) async fn give_way(
    tx: &Transaction<'_>,
    project_id: i64,
    kind: &KindPlan,
    snapshot_id: i64,
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let spec = kind.spec;
    if let (Clash::Rename(naming), false) = (spec.clash, kind.renames.is_empty()) {
        let field = field_name(spec.kind, naming.column);
        let ids: Vec<i64> = kind.renames.iter().map(|r| r.id).collect();
        let names: Vec<&str> = kind.renames.iter().map(|r| r.to.as_str()).collect();
        tx.exec(
            &format!(
                "UPDATE {table} t SET {column} = v.name, updated_at = now()
                 FROM unnest($2::bigint[], $3::text[]) AS v(id, name) WHERE t.id = v.id AND t.project_id = $1",
                table = spec.table,
                column = naming.column,
            ),
            &[&project_id, &ids, &names],
        )
        .await?;
        let reason = format!("its name belongs to a row restored from snapshot #{snapshot_id}");
        for rename in &kind.renames {
            audit.push(
                spec.singular,
                &format!("{}.rename", spec.singular),
                Some(rename.id),
                &rename.from,
                Some(&serde_json::json!({ field: rename.from })),
                Some(&serde_json::json!({ field: rename.to, "reason": reason })),
            );
        }
    }
    if !kind.replaced.is_empty() {
        let ids: Vec<i64> = kind.replaced.iter().map(|(id, _)| *id).collect();
        tx.exec(&format!("DELETE FROM {} WHERE project_id = $1 AND id = ANY ($2)", spec.table), &[&project_id, &ids])
            .await?;
        let reason = format!("the same remote object is restored from snapshot #{snapshot_id}");
        for (id, row) in &kind.replaced {
            audit.push(
                spec.singular,
                &format!("{}.replace", spec.singular),
                Some(*id),
                &diff::label(spec.kind, row),
                Some(&Value::Object(row.clone())),
                Some(&serde_json::json!({ "reason": reason })),
            );
        }
    }
    Ok(())
}

/// Rows made since the snapshot: archived, hidden or cancelled, never destroyed.
pub(super) async fn set_aside_extras(
    tx: &Transaction<'_>,
    kind: &KindPlan,
    snapshot: &SnapshotData,
    snapshot_id: i64,
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let ids: Vec<i64> = kind.extras.iter().map(|(id, _)| *id).collect();
    if ids.is_empty() || kind.spec.extra == Extra::Keep {
        return Ok(());
    }
    let reason = format!("created after snapshot #{snapshot_id}");
    let (sql, verb, field, value) = match kind.spec.extra {
        Extra::Hide => {
            let last = snapshot.lanes.iter().map(|l| l.position).max().unwrap_or(0);
            return hide_lanes(tx, kind, last, &reason, audit).await;
        }
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
        Extra::Keep => return Ok(()),
    };
    tx.exec(sql, &[&ids]).await?;
    for (id, row) in &kind.extras {
        let before = row.get(field).cloned().unwrap_or(Value::Null);
        if before == value {
            continue;
        }
        audit.push(
            kind.spec.singular,
            &format!("{}.{verb}", kind.spec.singular),
            Some(*id),
            &diff::label(kind.spec.kind, row),
            Some(&serde_json::json!({ field: before })),
            Some(&serde_json::json!({ field: value.clone(), "reason": reason })),
        );
    }
    Ok(())
}

/// Lanes made since are hidden, and moved after the snapshot's lanes: one
/// inserted among them holds a position a restored lane takes back.
async fn hide_lanes(
    tx: &Transaction<'_>,
    kind: &KindPlan,
    last_position: i32,
    reason: &str,
    audit: &mut AuditBatch,
) -> StoreResult<()> {
    let position = |row: &Row| row.get("position").and_then(Value::as_i64).unwrap_or(0);
    let mut lanes: Vec<&(i64, Row)> = kind.extras.iter().collect();
    lanes.sort_by_key(|(id, row)| (position(row), *id));
    let ids: Vec<i64> = lanes.iter().map(|(id, _)| *id).collect();
    let positions: Vec<i32> = (1..=lanes.len() as i32).map(|n| last_position + n).collect();
    tx.exec(
        "UPDATE lane l SET visible = false, position = v.position, updated_at = now()
         FROM unnest($1::bigint[], $2::int[]) AS v(id, position) WHERE l.id = v.id",
        &[&ids, &positions],
    )
    .await?;
    for ((id, row), new_position) in lanes.into_iter().zip(positions) {
        let visible = row.get("visible").cloned().unwrap_or(Value::Null);
        if visible == Value::Bool(false) && position(row) == i64::from(new_position) {
            continue;
        }
        audit.push(
            kind.spec.singular,
            "lane.hide",
            Some(*id),
            &diff::label(kind.spec.kind, row),
            Some(&serde_json::json!({ "visible": visible, "position": position(row) })),
            Some(&serde_json::json!({ "visible": false, "position": new_position, "reason": reason })),
        );
    }
    Ok(())
}

/// With `exact`, before the snapshot's rows go back: rows made since give up
/// the unique values (names, slots) those rows may need.
pub(super) async fn park_extras(tx: &Transaction<'_>, kind: &KindPlan) -> StoreResult<()> {
    let ids: Vec<i64> = kind.extras.iter().map(|(id, _)| *id).collect();
    park(tx, kind, &ids).await
}

/// Moves rows' unique values (names, slots) out of the way with the kind's
/// `park` assignment, if it has one.
async fn park(tx: &Transaction<'_>, kind: &KindPlan, ids: &[i64]) -> StoreResult<()> {
    if let Some(park) = kind.spec.park
        && !ids.is_empty()
    {
        tx.exec(&format!("UPDATE {} SET {park} WHERE id = ANY ($1)", kind.spec.table), &[&ids]).await?;
    }
    Ok(())
}

/// With `exact`, after the snapshot's rows are back: rows made since the
/// snapshot are deleted.
pub(super) async fn delete_extras(
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
        tx.exec("DELETE FROM handoff WHERE project_id = $1 AND task_id = ANY ($2)", &[&project_id, &ids]).await?;
        tx.exec(
            "DELETE FROM external_mapping WHERE project_id = $1 AND local_kind = 'task' AND local_id = ANY ($2)",
            &[&project_id, &ids],
        )
        .await?;
    }
    tx.exec(&format!("DELETE FROM {} WHERE project_id = $1 AND id = ANY ($2)", kind.spec.table), &[&project_id, &ids])
        .await?;
    for (id, row) in &kind.extras {
        audit.push(
            kind.spec.singular,
            &format!("{}.delete", kind.spec.singular),
            Some(*id),
            &diff::label(kind.spec.kind, row),
            Some(&Value::Object(row.clone())),
            None,
        );
    }
    Ok(())
}

/// Lane names and agent handles by id, so audit entries read "lane: Done →
/// Ready" rather than ids.
pub(super) struct Names {
    lanes: HashMap<i64, String>,
    agents: HashMap<i64, String>,
}

impl Names {
    pub fn of(current: &SnapshotData, snapshot: &SnapshotData) -> Names {
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

/// The text-format COPY lines of one kind's rows as the snapshot has them, in
/// the order `id, spec.columns…`. `ranks` overrides ranks (partial restores).
pub(super) fn copy_lines_of(kind: &KindPlan, ranks: &HashMap<i64, i64>) -> Vec<String> {
    let spec = kind.spec;
    kind.upsert
        .iter()
        .map(|upsert| {
            let mut line = Line::default();
            line.value(&Value::from(upsert.id), false);
            for column in spec.columns {
                let value = match *column {
                    "rank" if ranks.contains_key(&upsert.id) => Value::from(ranks[&upsert.id]),
                    // The restored copy may differ from the remote one: let the sync worker look.
                    "sync_state" if spec.table == "external_mapping" => Value::from("pending"),
                    column => upsert.then.get(field_name(spec.kind, column)).cloned().unwrap_or(Value::Null),
                };
                line.value(&value, spec.json.contains(column));
            }
            line.finish()
        })
        .collect()
}

/// Writes one kind's rows back from their COPY lines: they go into a
/// temporary table, then existing rows are updated from it and missing ones
/// inserted.
pub(super) async fn write_back(
    tx: &Transaction<'_>,
    project_id: i64,
    kind: &KindPlan,
    lines: &[String],
) -> StoreResult<()> {
    let spec = kind.spec;
    // Only rows whose unique fields change can collide while rows swap values.
    let parked: Vec<i64> = kind
        .upsert
        .iter()
        .filter(|u| {
            u.now
                .as_ref()
                .is_some_and(|now| spec.unique.iter().flat_map(|key| key.iter()).any(|f| now.get(*f) != u.then.get(*f)))
        })
        .map(|u| u.id)
        .collect();
    park(tx, kind, &parked).await?;
    let staging = format!("restore_{}", spec.table);
    let columns = spec.columns.join(", ");
    tx.batch_execute(&format!(
        "CREATE TEMP TABLE {staging} ON COMMIT DROP AS SELECT id, {columns} FROM {table} WITH NO DATA",
        table = spec.table
    ))
    .await?;
    copy_lines(tx, &format!("{staging} (id, {columns})"), lines).await?;

    if kind.upsert.iter().any(|u| u.now.is_some()) {
        let mut assignments: Vec<String> =
            spec.columns.iter().filter(|c| !spec.insert_only.contains(c)).map(|c| format!("{c} = r.{c}")).collect();
        if spec.versioned {
            assignments.push("version = t.version + 1".into());
        }
        assignments.push("updated_at = now()".into());
        tx.exec(
            &format!(
                "UPDATE {table} t SET {assignments} FROM {staging} r WHERE t.id = r.id AND t.project_id = $1",
                table = spec.table,
                assignments = assignments.join(", "),
            ),
            &[&project_id],
        )
        .await?;
    }
    let created: Vec<i64> = kind.upsert.iter().filter(|u| u.now.is_none()).map(|u| u.id).collect();
    if !created.is_empty() {
        let selected: Vec<String> = spec.columns.iter().map(|c| format!("r.{c}")).collect();
        tx.exec(
            &format!(
                "INSERT INTO {table} (id, project_id, {columns})
                 SELECT r.id, $1, {selected} FROM {staging} r WHERE r.id = ANY ($2)",
                table = spec.table,
                selected = selected.join(", "),
            ),
            &[&project_id, &created],
        )
        .await?;
        bump_sequence(tx, spec.table).await?;
    }
    Ok(())
}

/// One `restore` audit entry per row written back: the fields that changed,
/// before and after (lanes and assignees by name too), or the whole row for
/// one brought back.
pub(super) fn restore_entries(kinds: &[KindPlan], names: &Names, audit: &mut AuditBatch) {
    for kind in kinds {
        let spec = kind.spec;
        let action = format!("{}.restore", spec.singular);
        for upsert in &kind.upsert {
            let key = diff::label(spec.kind, &upsert.then);
            match &upsert.now {
                Some(now) => {
                    let fields: Vec<&String> = upsert
                        .then
                        .keys()
                        .filter(|k| k.as_str() != "version" && now.get(*k) != upsert.then.get(*k))
                        .collect();
                    let pick = |row: &Row| {
                        let mut object: Row = fields
                            .iter()
                            .map(|k| ((*k).clone(), row.get(*k).cloned().unwrap_or(Value::Null)))
                            .collect();
                        names.annotate(&mut object);
                        Value::Object(object)
                    };
                    audit.push(
                        spec.singular,
                        &action,
                        Some(upsert.id),
                        &key,
                        Some(&pick(now)),
                        Some(&pick(&upsert.then)),
                    );
                }
                None => {
                    let after = Value::Object(upsert.then.clone());
                    audit.push(spec.singular, &action, Some(upsert.id), &key, None, Some(&after));
                }
            }
        }
    }
}

/// For a partial restore: tasks whose old slot in their lane is taken now go
/// to the bottom of the lane instead. Returns the new ranks by task id.
pub(super) async fn free_ranks(
    tx: &Transaction<'_>,
    project_id: i64,
    kind: &KindPlan,
) -> StoreResult<HashMap<i64, i64>> {
    let ids: Vec<i64> = kind.upsert.iter().map(|u| u.id).collect();
    let mut ranks = HashMap::new();
    // The last rank handed out per lane: those rows are not written yet.
    let mut bottoms: HashMap<i64, i64> = HashMap::new();
    for upsert in &kind.upsert {
        let row = &upsert.then;
        if row.get("archived").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let lane = row.get("lane_id").and_then(Value::as_i64);
        let rank = row.get("rank").and_then(Value::as_i64);
        let (Some(lane), Some(rank)) = (lane, rank) else { continue };
        let taken = tx
            .fetch_opt(
                "SELECT 1 FROM task WHERE project_id = $1 AND lane_id = $2 AND rank = $3 AND NOT archived AND NOT (id = ANY ($4))",
                &[&project_id, &lane, &rank, &ids],
            )
            .await?
            .is_some();
        if taken {
            // Below the lane's last card, and below any task this restore already moved there.
            let bottom: i64 = tx
                .fetch_one(
                    "SELECT coalesce(max(rank), 0) + $3 FROM task WHERE project_id = $1 AND lane_id = $2 AND NOT archived",
                    &[&project_id, &lane, &RANK_STEP],
                )
                .await?
                .get(0);
            let placed = match bottoms.get(&lane) {
                Some(last) if *last >= bottom => last + RANK_STEP,
                _ => bottom,
            };
            bottoms.insert(lane, placed);
            ranks.insert(upsert.id, placed);
        }
    }
    Ok(ranks)
}

/// Task modules and release tasks of the restored rows, as in the snapshot.
pub(super) async fn restore_memberships(
    tx: &Transaction<'_>,
    snapshot: &SnapshotData,
    touched: &HashMap<&'static str, Vec<i64>>,
) -> StoreResult<()> {
    if let Some(tasks) = touched.get("task") {
        tx.exec("DELETE FROM task_module WHERE task_id = ANY ($1)", &[tasks]).await?;
        let wanted: BTreeSet<i64> = tasks.iter().copied().collect();
        let (mut task_ids, mut module_ids) = (Vec::new(), Vec::new());
        for task in snapshot.tasks.iter().filter(|t| wanted.contains(&t.id)) {
            for module in &task.module_ids {
                task_ids.push(task.id);
                module_ids.push(*module);
            }
        }
        tx.exec(
            "INSERT INTO task_module (task_id, module_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            &[&task_ids, &module_ids],
        )
        .await?;
    }
    if let Some(releases) = touched.get("release") {
        tx.exec("DELETE FROM release_task WHERE release_id = ANY ($1)", &[releases]).await?;
        let wanted: BTreeSet<i64> = releases.iter().copied().collect();
        let (mut release_ids, mut task_ids) = (Vec::new(), Vec::new());
        for release in snapshot.releases.iter().filter(|r| wanted.contains(&r.id)) {
            for task in &release.task_ids {
                release_ids.push(release.id);
                task_ids.push(*task);
            }
        }
        tx.exec(
            "INSERT INTO release_task (release_id, task_id) SELECT * FROM unnest($1::bigint[], $2::bigint[])",
            &[&release_ids, &task_ids],
        )
        .await?;
    }
    Ok(())
}

/// Mappings of objects the restore changed go back to `pending`, so the sync
/// worker reconciles them with their remote copies.
pub(super) async fn flag_mappings(
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
            .exec(
                "UPDATE external_mapping SET sync_state = 'pending', updated_at = now()
                 WHERE project_id = $1 AND local_kind = $2 AND local_id = ANY ($3) AND sync_state <> 'pending'",
                &[&project_id, kind, ids],
            )
            .await?;
    }
    Ok(flagged)
}

/// Moves an identity sequence past rows inserted with explicit ids.
pub(super) async fn bump_sequence(client: &impl Sql, table: &str) -> StoreResult<()> {
    client
        .exec(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                               greatest((SELECT coalesce(max(id), 1) FROM {table}), nextval(pg_get_serial_sequence('{table}', 'id'))))"
            ),
            &[],
        )
        .await?;
    Ok(())
}
