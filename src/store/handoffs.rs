//! Handoffs: explicit transfer or blocked-work contracts between actors on a task.

use crate::store::sql::Sql;
use time::OffsetDateTime;

use super::agents::agent_by_handle;
use super::audit::{self, Change};
use super::rows::{self, HANDOFF_COLUMNS, HANDOFF_JOINS};
use super::tasks::read_task;
use super::{Actor, Store, StoreError, StoreResult, check_version};
use crate::domain::{Handoff, HandoffKind, HandoffState, TaskKey, text};

#[derive(Debug, Clone, PartialEq)]
pub struct NewHandoff {
    pub task_key: String,
    pub kind: HandoffKind,
    /// Agent handle; `None` means the operator's own agent if there is one,
    /// otherwise the task's assignee.
    pub from: Option<String>,
    pub to: String,
    pub reason: String,
    pub needs: String,
    pub due_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Default)]
pub struct HandoffFilter {
    pub project_id: i64,
    /// `None` lists the active ones (open and accepted).
    pub state: Option<HandoffState>,
    pub all_states: bool,
    pub to: Option<String>,
    pub task_key: Option<String>,
}

impl Store {
    pub async fn open_handoff(&self, actor: &Actor, new: NewHandoff) -> StoreResult<Handoff> {
        self.refuse_if_read_only()?;
        let key: TaskKey = new.task_key.parse()?;
        let reason = text::name("reason", &new.reason, 2000)
            .map_err(|_| StoreError::invalid("give a reason for the handoff (one line, at most 2000 characters)"))?;
        let needs = text::long_text("what is needed", new.needs.trim(), 2000)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let task_row = tx
            .fetch_opt(
                "SELECT id, project_id, assignee_id, archived FROM task WHERE task_key = $1 FOR SHARE",
                &[&key.to_string()],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("task", &key))?;
        let (task_id, project_id, assignee_id, archived): (i64, i64, Option<i64>, bool) =
            (task_row.get(0), task_row.get(1), task_row.get(2), task_row.get(3));
        if archived {
            return Err(StoreError::invalid(format!("{key} is archived: unarchive it before handing it off")));
        }
        let to = agent_by_handle(&tx, &new.to).await?;
        let from_id = match &new.from {
            Some(handle) => Some(agent_by_handle(&tx, handle).await?.id),
            None => match agent_by_handle(&tx, &actor.name).await {
                Ok(agent) => Some(agent.id),
                Err(_) => assignee_id,
            },
        }
        .filter(|id| *id != to.id);
        let row = tx
            .fetch_one(
                "INSERT INTO handoff (project_id, task_id, kind, from_agent_id, to_agent_id, reason, needs, due_at, opened_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                &[&project_id, &task_id, &new.kind.as_str(), &from_id, &to.id, &reason, &needs, &new.due_at, &actor.name],
            )
            .await?;
        let handoff = read_handoff(&tx, row.get(0)).await?;
        audit::record(
            &tx,
            actor,
            Change::new("handoff", "open", Some(project_id)).entity(handoff.id, &handoff.task_key).after(&handoff),
        )
        .await?;
        tx.commit().await?;
        Ok(handoff)
    }

    pub async fn handoff_by_id(&self, id: i64) -> StoreResult<Handoff> {
        let client = self.client().await?;
        read_handoff(&client, id).await
    }

    pub async fn list_handoffs(&self, filter: &HandoffFilter) -> StoreResult<Vec<Handoff>> {
        let client = self.client().await?;
        let to_id = match &filter.to {
            Some(handle) => Some(agent_by_handle(&client, handle).await?.id),
            None => None,
        };
        let task_key = filter.task_key.as_deref().map(|k| k.parse::<TaskKey>()).transpose()?.map(|k| k.to_string());
        let rows = client
            .fetch(
                &format!(
                    "SELECT {HANDOFF_COLUMNS} FROM handoff h {HANDOFF_JOINS}
                     WHERE h.project_id = $1
                       AND ($2 OR ($3::text IS NULL AND h.state IN ('open', 'accepted')) OR h.state = $3)
                       AND ($4::bigint IS NULL OR h.to_agent_id = $4)
                       AND ($5::text IS NULL OR t.task_key = $5)
                     ORDER BY h.created_at, h.id"
                ),
                &[&filter.project_id, &filter.all_states, &filter.state.map(|s| s.as_str()), &to_id, &task_key],
            )
            .await?;
        rows.iter().map(rows::handoff).collect()
    }

    /// Moves a handoff along `open → accepted | rejected → resolved`, or to
    /// `cancelled`. Accepting a transfer also assigns the task to the receiver.
    pub async fn transition_handoff(
        &self,
        actor: &Actor,
        id: i64,
        next: HandoffState,
        note: &str,
        expect_version: Option<i32>,
    ) -> StoreResult<Handoff> {
        self.refuse_if_read_only()?;
        let note = text::long_text("note", note.trim(), 2000)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = tx
            .fetch_opt(
                &format!("SELECT {HANDOFF_COLUMNS} FROM handoff h {HANDOFF_JOINS} WHERE h.id = $1 FOR UPDATE OF h"),
                &[&id],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("handoff", format!("#{id}")))?;
        let before = rows::handoff(&before)?;
        check_version("handoff", &format!("#{id}"), expect_version, before.version)?;
        if !before.state.can_become(next) {
            return Err(StoreError::WrongState(format!("handoff #{id} is {}: it cannot become {next}", before.state)));
        }
        let closes = matches!(next, HandoffState::Resolved | HandoffState::Cancelled);
        tx.exec(
            "UPDATE handoff SET state = $2, resolution = CASE WHEN $3 = '' THEN resolution ELSE $3 END,
                    closed_at = CASE WHEN $4 THEN now() ELSE closed_at END,
                    version = version + 1, updated_at = now()
             WHERE id = $1",
            &[&id, &next.as_str(), &note, &closes],
        )
        .await?;
        let after = read_handoff(&tx, id).await?;
        let verb = match next {
            HandoffState::Accepted => "accept",
            HandoffState::Rejected => "reject",
            HandoffState::Resolved => "resolve",
            HandoffState::Cancelled => "cancel",
            HandoffState::Open => "reopen",
        };
        audit::record(
            &tx,
            actor,
            Change::new("handoff", verb, Some(after.project_id))
                .entity(id, &after.task_key)
                .before(&before)
                .after(&after),
        )
        .await?;
        if next == HandoffState::Accepted && before.kind == HandoffKind::Transfer {
            reassign_on_transfer(&tx, actor, &after).await?;
        }
        tx.commit().await?;
        Ok(after)
    }
}

/// The receiver of an accepted transfer becomes the task's assignee.
async fn reassign_on_transfer(
    tx: &deadpool_postgres::Transaction<'_>,
    actor: &Actor,
    handoff: &Handoff,
) -> StoreResult<()> {
    let before = read_task(tx, handoff.task_id).await?;
    if before.assignee.as_deref() == Some(handoff.to_agent.as_str()) {
        return Ok(());
    }
    tx.exec(
        "UPDATE task SET assignee_id = (SELECT id FROM agent WHERE handle = $2), version = version + 1, updated_at = now()
         WHERE id = $1",
        &[&handoff.task_id, &handoff.to_agent],
    )
    .await?;
    let after = read_task(tx, handoff.task_id).await?;
    audit::record(
        tx,
        actor,
        Change::new("task", "assign", Some(after.project_id))
            .entity(after.id, &after.key)
            .before(&before)
            .after(&after),
    )
    .await?;
    Ok(())
}

async fn read_handoff(client: &impl Sql, id: i64) -> StoreResult<Handoff> {
    let statement = &format!("SELECT {HANDOFF_COLUMNS} FROM handoff h {HANDOFF_JOINS} WHERE h.id = $1");
    let row =
        client.fetch_opt(statement, &[&id]).await?.ok_or_else(|| StoreError::not_found("handoff", format!("#{id}")))?;
    rows::handoff(&row)
}
