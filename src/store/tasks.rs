//! Tasks: creation with race-free keys, optimistic-concurrency edits, and moves
//! that keep lane ranks consistent.
//!
//! Locking rule (it is what keeps concurrent moves deadlock-free): a transaction
//! that changes which lane a task is in, or whether it is archived, first locks
//! every lane involved, in id order, and only then the task row. Holding the
//! lanes is what makes a rank computed from the lane's cards safe to write.
//! Claims (`sql/V10__claims_without_lane_locks.sql`) are the one exception:
//! they lock no lane, skip locked tasks, and keep their ranks apart with an
//! offset instead.

use crate::store::sql::Sql;
use deadpool_postgres::{GenericClient, Transaction};
use time::Date;

use super::audit::{self, Change};
use super::lanes::lane_by_name;
use super::planning::{cycle_id_by_name, module_id_by_name};
use super::rows::{self, TASK_COLUMNS, TASK_JOINS};
use super::{Actor, Store, StoreError, StoreResult, check_version, with_retry};
use crate::domain::{self, LaneCategory, Priority, Task, TaskKey, text};

/// Gap between neighbouring ranks after a renumbering; a card can be inserted
/// between two neighbours 16 times before the lane has to be renumbered.
pub const RANK_STEP: i64 = 1 << 16;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewTask {
    pub title: String,
    pub description: String,
    /// Lane name; `None` puts the task in the project's first backlog lane.
    pub lane: Option<String>,
    pub priority: Option<Priority>,
    pub assignee: Option<String>,
    pub labels: Vec<String>,
    pub due_on: Option<Date>,
    pub cycle: Option<String>,
    pub modules: Vec<String>,
}

/// Where a moved task lands inside its (new) lane.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Position {
    #[default]
    Bottom,
    Top,
    Before(String),
    After(String),
    /// One place up (towards the top) in its current lane.
    Up,
    /// One place down in its current lane.
    Down,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskEdit {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    /// `Some(None)` clears the due date.
    pub due_on: Option<Option<Date>>,
    pub set_labels: Option<Vec<String>>,
    pub add_labels: Vec<String>,
    pub remove_labels: Vec<String>,
    /// Cycle name; `Some(None)` takes the task out of its cycle.
    pub cycle: Option<Option<String>>,
    pub add_modules: Vec<String>,
    pub remove_modules: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub project_id: i64,
    pub lane: Option<String>,
    /// An agent handle, or `none` for unassigned tasks.
    pub assignee: Option<String>,
    pub label: Option<String>,
    /// Case-insensitive substring of the title or the key.
    pub text: Option<String>,
    pub include_archived: bool,
    pub limit: i64,
}

/// Column changes for one task UPDATE. `None` leaves a column alone.
#[derive(Debug, Default)]
pub(super) struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<Option<i64>>,
    pub labels: Option<Vec<String>>,
    pub due_on: Option<Option<Date>>,
    pub cycle_id: Option<Option<i64>>,
    pub archived: Option<bool>,
    pub lane_id: Option<i64>,
    pub rank: Option<i64>,
}

impl Store {
    pub async fn create_task(&self, actor: &Actor, project_id: i64, new: NewTask) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let title = text::task_title(&new.title)?;
        let description = text::long_text("description", &new.description, text::MAX_DESCRIPTION_CHARS)?;
        let labels = text::labels(&new.labels)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lane = match &new.lane {
            Some(name) => lane_by_name(&tx, project_id, name).await?,
            None => default_lane(&tx, project_id).await?,
        };
        let assignee_id = match &new.assignee {
            Some(handle) => Some(super::agents::agent_by_handle(&tx, handle).await?.id),
            None => None,
        };
        let cycle_id = match &new.cycle {
            Some(name) => Some(cycle_id_by_name(&tx, project_id, name).await?),
            None => None,
        };
        let module_ids = module_ids(&tx, project_id, &new.modules).await?;
        lock_lanes(&tx, &[lane.id]).await?;
        // The counter row serialises key allocation: consecutive, never reused.
        let counter =
            "UPDATE project SET last_task_number = last_task_number + 1 WHERE id = $1 RETURNING key, last_task_number";
        let row =
            tx.fetch_opt(counter, &[&project_id]).await?.ok_or_else(|| StoreError::not_found("project", project_id))?;
        let key = TaskKey::new(row.get(0), row.get(1));
        let rank = bottom_rank(&tx, project_id, lane.id, None).await?;
        let insert = "INSERT INTO task (project_id, number, task_key, title, description, lane_id, rank, priority,
                                   assignee_id, labels, due_on, cycle_id, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";
        let id: i64 = tx
            .fetch_one(
                insert,
                &[
                    &project_id,
                    &key.number,
                    &key.to_string(),
                    &title,
                    &description,
                    &lane.id,
                    &rank,
                    &new.priority.unwrap_or(Priority::None).as_str(),
                    &assignee_id,
                    &labels,
                    &new.due_on,
                    &cycle_id,
                    &actor.name,
                ],
            )
            .await?
            .get(0);
        for module_id in module_ids {
            tx.exec("INSERT INTO task_module (task_id, module_id) VALUES ($1, $2)", &[&id, &module_id]).await?;
        }
        let task = read_task(&tx, id).await?;
        audit::record(&tx, actor, Change::new("task", "create", Some(project_id)).entity(id, &task.key).after(&task))
            .await?;
        tx.commit().await?;
        Ok(task)
    }

    pub async fn task_by_key(&self, key: &str) -> StoreResult<Task> {
        let key: TaskKey = key.parse()?;
        let client = self.client().await?;
        let statement = &format!("SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS} WHERE t.task_key = $1");
        let row = client
            .fetch_opt(statement, &[&key.to_string()])
            .await?
            .ok_or_else(|| StoreError::not_found("task", &key))?;
        rows::task(&row)
    }

    pub async fn list_tasks(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        let client = self.client().await?;
        let lane_id = match &filter.lane {
            Some(name) => Some(lane_by_name(&client, filter.project_id, name).await?.id),
            None => None,
        };
        let (unassigned, assignee_id) = match filter.assignee.as_deref().map(str::trim) {
            Some("none") | Some("-") => (true, None),
            Some(handle) => (false, Some(super::agents::agent_by_handle(&client, handle).await?.id)),
            None => (false, None),
        };
        let label = filter.label.as_deref().map(|l| l.trim().trim_start_matches('#').to_lowercase());
        let text = filter.text.as_deref().map(|t| format!("%{}%", like_escape(t.trim())));
        let statement = &format!(
            "SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS}
                 WHERE t.project_id = $1
                   AND ($2 OR NOT t.archived)
                   AND ($3::bigint IS NULL OR t.lane_id = $3)
                   AND (NOT $4 OR t.assignee_id IS NULL)
                   AND ($5::bigint IS NULL OR t.assignee_id = $5)
                   AND ($6::text IS NULL OR $6 = ANY (t.labels))
                   AND ($7::text IS NULL OR t.title ILIKE $7 OR t.task_key ILIKE $7)
                 ORDER BY l.position, t.archived, t.rank
                 LIMIT $8"
        );
        let limit = if filter.limit <= 0 { 1000 } else { filter.limit };
        let rows = client
            .fetch(
                statement,
                &[
                    &filter.project_id,
                    &filter.include_archived,
                    &lane_id,
                    &unassigned,
                    &assignee_id,
                    &label,
                    &text,
                    &limit,
                ],
            )
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Moves a task to another lane (or within its lane). With `expect_version`
    /// the move only happens if nobody changed the task since that version.
    pub async fn move_task(
        &self,
        actor: &Actor,
        key: &str,
        lane: Option<&str>,
        position: Position,
        expect_version: Option<i32>,
    ) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let key: TaskKey = key.parse()?;
        let position = &position;
        with_retry(|| self.move_task_once(actor, &key, lane, position, expect_version)).await
    }

    async fn move_task_once(
        &self,
        actor: &Actor,
        key: &TaskKey,
        lane: Option<&str>,
        position: &Position,
        expect_version: Option<i32>,
    ) -> StoreResult<Task> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (task_id, project_id, current_lane) = locate_task(&tx, key).await?;
        let destination = match lane {
            Some(name) => lane_by_name(&tx, project_id, name).await?.id,
            None => current_lane,
        };
        lock_lanes(&tx, &[current_lane, destination]).await?;
        let before = lock_task(&tx, task_id, current_lane).await?;
        check_version("task", &before.key, expect_version, before.version)?;
        if before.archived {
            return Err(StoreError::invalid(format!("{} is archived: unarchive it before moving it", before.key)));
        }
        let rank = match target_rank(&tx, &before, destination, position).await? {
            Some(rank) => rank,
            None => return Ok(before), // already at the edge: nothing to do
        };
        if rank == before.rank && destination == before.lane_id {
            return Ok(before);
        }
        let patch = TaskPatch { lane_id: Some(destination), rank: Some(rank), ..Default::default() };
        let after = apply_patch(&tx, &before, &patch).await?;
        let verb = if destination == before.lane_id { "reorder" } else { "move" };
        audit::record(
            &tx,
            actor,
            Change::new("task", verb, Some(project_id)).entity(after.id, &after.key).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn edit_task(
        &self,
        actor: &Actor,
        key: &str,
        edit: TaskEdit,
        expect_version: Option<i32>,
    ) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let key: TaskKey = key.parse()?;
        let title = edit.title.as_deref().map(text::task_title).transpose()?;
        let description = edit
            .description
            .as_deref()
            .map(|d| text::long_text("description", d, text::MAX_DESCRIPTION_CHARS))
            .transpose()?;
        let set_labels = edit.set_labels.as_ref().map(text::labels).transpose()?;
        let add_labels = text::labels(&edit.add_labels)?;
        let remove_labels = text::labels(&edit.remove_labels)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (task_id, project_id, _) = locate_task(&tx, &key).await?;
        let before = lock_task(&tx, task_id, None).await?;
        check_version("task", &before.key, expect_version, before.version)?;
        let labels = if set_labels.is_some() || !add_labels.is_empty() || !remove_labels.is_empty() {
            let mut labels = set_labels.unwrap_or_else(|| before.labels.clone());
            labels.extend(add_labels.into_iter().filter(|l| !before.labels.contains(l)));
            labels.retain(|l| !remove_labels.contains(l));
            labels.dedup();
            Some(text::labels(&labels)?)
        } else {
            None
        };
        let cycle_id = match &edit.cycle {
            Some(Some(name)) => Some(Some(cycle_id_by_name(&tx, project_id, name).await?)),
            Some(None) => Some(None),
            None => None,
        };
        let patch = TaskPatch {
            title: title.filter(|t| *t != before.title),
            description: description.filter(|d| *d != before.description),
            priority: edit.priority.filter(|p| *p != before.priority),
            labels: labels.filter(|l| *l != before.labels),
            due_on: edit.due_on.filter(|d| *d != before.due_on),
            cycle_id: cycle_id.filter(|c| *c != before.cycle_id),
            ..Default::default()
        };
        let add_modules = module_ids(&tx, project_id, &edit.add_modules).await?;
        let remove_modules = module_ids(&tx, project_id, &edit.remove_modules).await?;
        let mut modules_changed = false;
        for module_id in &add_modules {
            modules_changed |= tx
                .exec(
                    "INSERT INTO task_module (task_id, module_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&task_id, module_id],
                )
                .await?
                > 0;
        }
        for module_id in &remove_modules {
            modules_changed |= tx
                .exec("DELETE FROM task_module WHERE task_id = $1 AND module_id = $2", &[&task_id, module_id])
                .await?
                > 0;
        }
        if patch.is_empty() && !modules_changed {
            return Ok(before);
        }
        let after = apply_patch(&tx, &before, &patch).await?;
        audit::record(
            &tx,
            actor,
            Change::new("task", "update", Some(project_id)).entity(after.id, &after.key).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Assigns the task to an agent, or unassigns it with `None`.
    pub async fn assign_task(
        &self,
        actor: &Actor,
        key: &str,
        handle: Option<&str>,
        expect_version: Option<i32>,
    ) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let key: TaskKey = key.parse()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (task_id, project_id, _) = locate_task(&tx, &key).await?;
        let assignee_id = match handle {
            Some(handle) => Some(super::agents::agent_by_handle(&tx, handle).await?.id),
            None => None,
        };
        let before = lock_task(&tx, task_id, None).await?;
        check_version("task", &before.key, expect_version, before.version)?;
        if before.assignee_id == assignee_id {
            return Ok(before);
        }
        let after =
            apply_patch(&tx, &before, &TaskPatch { assignee_id: Some(assignee_id), ..Default::default() }).await?;
        audit::record(
            &tx,
            actor,
            Change::new("task", "assign", Some(project_id)).entity(after.id, &after.key).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Archives (or with `archived = false` restores) a task. Tasks are never
    /// deleted: archived ones leave the board and keep their key and history.
    pub async fn set_task_archived(
        &self,
        actor: &Actor,
        key: &str,
        archived: bool,
        expect_version: Option<i32>,
    ) -> StoreResult<Task> {
        self.refuse_if_read_only()?;
        let key: TaskKey = key.parse()?;
        with_retry(|| self.set_task_archived_once(actor, &key, archived, expect_version)).await
    }

    async fn set_task_archived_once(
        &self,
        actor: &Actor,
        key: &TaskKey,
        archived: bool,
        expect_version: Option<i32>,
    ) -> StoreResult<Task> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let (task_id, project_id, lane_id) = locate_task(&tx, key).await?;
        lock_lanes(&tx, &[lane_id]).await?;
        let before = lock_task(&tx, task_id, lane_id).await?;
        check_version("task", &before.key, expect_version, before.version)?;
        if before.archived == archived {
            return Ok(before);
        }
        // A task coming back goes to the bottom of its lane: its old slot may be taken.
        let rank = if archived { None } else { Some(bottom_rank(&tx, project_id, lane_id, Some(task_id)).await?) };
        let after =
            apply_patch(&tx, &before, &TaskPatch { archived: Some(archived), rank, ..Default::default() }).await?;
        let verb = if archived { "archive" } else { "unarchive" };
        audit::record(
            &tx,
            actor,
            Change::new("task", verb, Some(project_id)).entity(after.id, &after.key).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}

impl TaskPatch {
    pub(super) fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.priority.is_none()
            && self.assignee_id.is_none()
            && self.labels.is_none()
            && self.due_on.is_none()
            && self.cycle_id.is_none()
            && self.archived.is_none()
            && self.lane_id.is_none()
            && self.rank.is_none()
    }
}

/// Escapes LIKE wildcards so user text matches literally.
pub(crate) fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Finds a task without locking it: (id, project id, lane id).
async fn locate_task(client: &impl Sql, key: &TaskKey) -> StoreResult<(i64, i64, i64)> {
    let statement = "SELECT id, project_id, lane_id FROM task WHERE task_key = $1";
    let row =
        client.fetch_opt(statement, &[&key.to_string()]).await?.ok_or_else(|| StoreError::not_found("task", key))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Locks lanes in id order (see the module comment).
pub(crate) async fn lock_lanes(client: &impl Sql, lane_ids: &[i64]) -> StoreResult<()> {
    let mut ids = lane_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let statement = "SELECT id FROM lane WHERE id = ANY ($1) ORDER BY id FOR NO KEY UPDATE";
    client.fetch(statement, &[&ids]).await?;
    Ok(())
}

/// Locks the task row and reads it. When the caller locked lanes on the
/// assumption that the task is in `expected_lane`, a task that moved in the
/// meantime makes the whole transaction retry.
pub(super) async fn lock_task(
    client: &impl Sql,
    task_id: i64,
    expected_lane: impl Into<Option<i64>>,
) -> StoreResult<Task> {
    // Lock with a plain single-table query: a FOR UPDATE over the joined view
    // would re-check the joins against the old lane row after a concurrent
    // move and silently return nothing.
    let lock = "SELECT lane_id FROM task WHERE id = $1 FOR UPDATE";
    let row = client.fetch_opt(lock, &[&task_id]).await?.ok_or_else(|| StoreError::not_found("task", task_id))?;
    let lane_id: i64 = row.get(0);
    if expected_lane.into().is_some_and(|lane| lane != lane_id) {
        return Err(StoreError::Retry("the task moved while this change was being prepared".into()));
    }
    read_task(client, task_id).await
}

pub(crate) async fn read_task(client: &impl Sql, task_id: i64) -> StoreResult<Task> {
    let statement = &format!("SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS} WHERE t.id = $1");
    let row = client.fetch_opt(statement, &[&task_id]).await?.ok_or_else(|| StoreError::not_found("task", task_id))?;
    rows::task(&row)
}

pub(super) async fn apply_patch(tx: &Transaction<'_>, before: &Task, patch: &TaskPatch) -> StoreResult<Task> {
    let statement = "UPDATE task SET title = coalesce($2, title), description = coalesce($3, description),
                    priority = coalesce($4, priority),
                    assignee_id = CASE WHEN $5 THEN $6 ELSE assignee_id END,
                    labels = coalesce($7, labels),
                    due_on = CASE WHEN $8 THEN $9 ELSE due_on END,
                    cycle_id = CASE WHEN $10 THEN $11 ELSE cycle_id END,
                    archived = coalesce($12, archived), lane_id = coalesce($13, lane_id),
                    rank = coalesce($14, rank), version = version + 1, updated_at = now()
             WHERE id = $1 AND version = $15";
    let updated = tx
        .exec(
            statement,
            &[
                &before.id,
                &patch.title,
                &patch.description,
                &patch.priority.map(|p| p.as_str()),
                &patch.assignee_id.is_some(),
                &patch.assignee_id.flatten(),
                &patch.labels,
                &patch.due_on.is_some(),
                &patch.due_on.flatten(),
                &patch.cycle_id.is_some(),
                &patch.cycle_id.flatten(),
                &patch.archived,
                &patch.lane_id,
                &patch.rank,
                &before.version,
            ],
        )
        .await?;
    if updated != 1 {
        // Cannot happen while we hold the row lock; refuse rather than guess.
        let current = read_task(tx, before.id).await?;
        return Err(StoreError::Conflict {
            kind: "task",
            key: before.key.clone(),
            expected: before.version,
            actual: current.version,
        });
    }
    read_task(tx, before.id).await
}

/// The project's first backlog lane, or its first lane if it has none.
pub(super) async fn default_lane(client: &impl Sql, project_id: i64) -> StoreResult<domain::Lane> {
    let statement = &format!(
        "SELECT {} FROM lane l WHERE l.project_id = $1 ORDER BY (l.category = $2) DESC, l.position LIMIT 1",
        rows::LANE_COLUMNS
    );
    let row = client
        .fetch_opt(statement, &[&project_id, &LaneCategory::Backlog.as_str()])
        .await?
        .ok_or_else(|| StoreError::invalid("the project has no lanes: create one with `mctl lane create`"))?;
    rows::lane(&row)
}

async fn module_ids(client: &impl Sql, project_id: i64, names: &[String]) -> StoreResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        ids.push(module_id_by_name(client, project_id, name).await?);
    }
    Ok(ids)
}

/// A rank below every other card of the lane.
pub(super) async fn bottom_rank(
    client: &impl Sql,
    project_id: i64,
    lane_id: i64,
    except: Option<i64>,
) -> StoreResult<i64> {
    let statement = "SELECT max(rank) FROM task WHERE project_id = $1 AND lane_id = $2 AND NOT archived
             AND ($3::bigint IS NULL OR id <> $3)";
    let max: Option<i64> = client.fetch_one(statement, &[&project_id, &lane_id, &except]).await?.get(0);
    Ok(max.map_or(RANK_STEP, |m| m + RANK_STEP))
}

/// The rank that puts `task` at `position` in lane `lane_id`, renumbering the
/// lane when two neighbours have no room left between them. `None` means the
/// task is already where `Up`/`Down` would take it.
async fn target_rank(tx: &Transaction<'_>, task: &Task, lane_id: i64, position: &Position) -> StoreResult<Option<i64>> {
    let project_id = task.project_id;
    let same_lane = lane_id == task.lane_id;
    let anchor = match position {
        Position::Bottom => return bottom_rank(tx, project_id, lane_id, Some(task.id)).await.map(Some),
        Position::Up | Position::Down if !same_lane => {
            return bottom_rank(tx, project_id, lane_id, Some(task.id)).await.map(Some);
        }
        Position::Top => {
            let statement =
                "SELECT min(rank) FROM task WHERE project_id = $1 AND lane_id = $2 AND NOT archived AND id <> $3";
            let min: Option<i64> = tx.fetch_one(statement, &[&project_id, &lane_id, &task.id]).await?.get(0);
            return Ok(Some(min.map_or(RANK_STEP, |m| m - RANK_STEP)));
        }
        Position::Up | Position::Down => {
            let cards = lane_cards(tx, project_id, lane_id, None).await?;
            let Some(index) = cards.iter().position(|(id, _)| *id == task.id) else {
                return Ok(None);
            };
            match position {
                Position::Up if index > 0 => Anchor::Before(cards[index - 1].0),
                Position::Down if index + 1 < cards.len() => Anchor::After(cards[index + 1].0),
                _ => return Ok(None),
            }
        }
        Position::Before(other) | Position::After(other) => {
            let other_key: TaskKey = other.parse()?;
            let statement = "SELECT id, lane_id, archived FROM task WHERE task_key = $1";
            let row = tx
                .fetch_opt(statement, &[&other_key.to_string()])
                .await?
                .ok_or_else(|| StoreError::not_found("task", &other_key))?;
            let (other_id, other_lane, archived): (i64, i64, bool) = (row.get(0), row.get(1), row.get(2));
            if other_lane != lane_id || archived || other_id == task.id {
                return Err(StoreError::invalid(format!(
                    "{other_key} is not another card in the destination lane: pick a card in that lane"
                )));
            }
            if matches!(position, Position::Before(_)) { Anchor::Before(other_id) } else { Anchor::After(other_id) }
        }
    };
    for attempt in 0..2 {
        let cards = lane_cards(tx, project_id, lane_id, Some(task.id)).await?;
        let (Anchor::Before(anchor_id) | Anchor::After(anchor_id)) = anchor;
        let index = cards
            .iter()
            .position(|(id, _)| *id == anchor_id)
            .ok_or_else(|| StoreError::Retry("the neighbouring card moved away".into()))?;
        let (low, high) = match anchor {
            Anchor::Before(_) => (index.checked_sub(1).map(|i| cards[i].1), Some(cards[index].1)),
            Anchor::After(_) => (Some(cards[index].1), cards.get(index + 1).map(|c| c.1)),
        };
        match (low, high) {
            (None, Some(high)) => return Ok(Some(high - RANK_STEP)),
            (Some(low), None) => return Ok(Some(low + RANK_STEP)),
            (Some(low), Some(high)) if high - low >= 2 => return Ok(Some(low + (high - low) / 2)),
            _ if attempt == 0 => renumber_lane(tx, project_id, lane_id, task.id).await?,
            _ => {}
        }
    }
    Err(StoreError::Database("could not find a free rank after renumbering the lane".into()))
}

/// The card to place the moved task against, by task id.
#[derive(Debug, Clone, Copy)]
enum Anchor {
    Before(i64),
    After(i64),
}

/// (id, rank) of the lane's cards in order, optionally leaving one task out.
async fn lane_cards(
    tx: &Transaction<'_>,
    project_id: i64,
    lane_id: i64,
    except: Option<i64>,
) -> StoreResult<Vec<(i64, i64)>> {
    let statement = "SELECT id, rank FROM task WHERE project_id = $1 AND lane_id = $2 AND NOT archived
             AND ($3::bigint IS NULL OR id <> $3) ORDER BY rank";
    let rows = tx.fetch(statement, &[&project_id, &lane_id, &except]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Spreads the lane's cards evenly again, keeping their order; `moving` (the
/// task about to get a new rank) is parked out of the way. Two passes so the
/// unique (lane, rank) index never sees two equal ranks: first every card to a
/// distinct negative value below all current ranks, then the others to
/// multiples of [`RANK_STEP`].
async fn renumber_lane(tx: &Transaction<'_>, project_id: i64, lane_id: i64, moving: i64) -> StoreResult<()> {
    tx.exec(
        "UPDATE task SET rank = base.floor - ordered.n
         FROM (SELECT id, row_number() OVER (ORDER BY rank) AS n FROM task
               WHERE project_id = $1 AND lane_id = $2 AND NOT archived) ordered,
              (SELECT least(min(rank), 0) AS floor FROM task
               WHERE project_id = $1 AND lane_id = $2 AND NOT archived) base
         WHERE task.id = ordered.id",
        &[&project_id, &lane_id],
    )
    .await?;
    tx.exec(
        "UPDATE task SET rank = ordered.n * $4
         FROM (SELECT id, row_number() OVER (ORDER BY rank DESC) AS n FROM task
               WHERE project_id = $1 AND lane_id = $2 AND NOT archived AND id <> $3) ordered
         WHERE task.id = ordered.id",
        &[&project_id, &lane_id, &moving, &RANK_STEP],
    )
    .await?;
    Ok(())
}
