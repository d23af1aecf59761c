//! Agents: the people, AI agents and services work is assigned and handed to.
//! Agents are global (one identity across projects).

use super::audit::{self, Change};
use super::rows::{self, AGENT_COLUMNS};
use super::{Actor, Store, StoreError, StoreResult};
use crate::domain::{self, Agent, AgentKind, AgentStatus, text};
use crate::store::sql::Sql;

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub handle: String,
    pub display_name: String,
    pub kind: AgentKind,
    pub capacity: Option<i32>,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AgentUpdate {
    pub display_name: Option<String>,
    pub kind: Option<AgentKind>,
    pub status: Option<AgentStatus>,
    pub capacity: Option<i32>,
    pub skills: Option<Vec<String>>,
}

/// An agent with the number of tasks it currently holds in started lanes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgentLoad {
    #[serde(flatten)]
    pub agent: Agent,
    pub in_progress: i64,
}

fn check_capacity(capacity: Option<i32>) -> StoreResult<()> {
    match capacity {
        Some(n) if !(0..=1000).contains(&n) => {
            Err(StoreError::invalid(format!("invalid capacity {n}: use a number from 0 to 1000")))
        }
        _ => Ok(()),
    }
}

impl Store {
    pub async fn create_agent(&self, actor: &Actor, agent: NewAgent) -> StoreResult<Agent> {
        self.refuse_if_read_only()?;
        let handle = domain::agent_handle(&agent.handle)?;
        let display_name = text::name("agent name", &agent.display_name, 120)?;
        check_capacity(agent.capacity)?;
        let skills = text::labels(&agent.skills)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO agent AS a (handle, display_name, kind, capacity, skills)
                     VALUES ($1, $2, $3, coalesce($4, 3), $5) RETURNING {AGENT_COLUMNS}"
                ),
                &[&handle, &display_name, &agent.kind.as_str(), &agent.capacity, &skills],
            )
            .await?;
        let created = rows::agent(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("agent", "create", None).entity(created.id, &created.handle).after(&created),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn list_agents(&self) -> StoreResult<Vec<AgentLoad>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    // Counted lane by lane through the board index (which carries the
                    // assignee); OFFSET 0 keeps the planner from flattening that into a
                    // scan of every task.
                    "WITH load AS (
                     SELECT t.assignee_id, count(*) AS n
                     FROM lane l CROSS JOIN LATERAL (
                         SELECT assignee_id FROM task t
                         WHERE t.project_id = l.project_id AND t.lane_id = l.id AND NOT t.archived OFFSET 0) t
                     WHERE l.category = 'started' AND t.assignee_id IS NOT NULL
                     GROUP BY t.assignee_id)
                 SELECT {AGENT_COLUMNS}, coalesce(load.n, 0) AS in_progress
                 FROM agent a LEFT JOIN load ON load.assignee_id = a.id ORDER BY a.handle"
                ),
                &[],
            )
            .await?;
        rows.iter()
            .map(|row| Ok(AgentLoad { agent: rows::agent(row)?, in_progress: row.try_get("in_progress")? }))
            .collect()
    }

    pub async fn agent_by_handle(&self, handle: &str) -> StoreResult<Agent> {
        let client = self.client().await?;
        agent_by_handle(&client, handle).await
    }

    pub async fn update_agent(&self, actor: &Actor, handle: &str, update: AgentUpdate) -> StoreResult<Agent> {
        self.refuse_if_read_only()?;
        let display_name = update.display_name.as_deref().map(|n| text::name("agent name", n, 120)).transpose()?;
        check_capacity(update.capacity)?;
        let skills = update.skills.as_ref().map(text::labels).transpose()?;
        let handle = domain::agent_handle(handle)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = lock_agent(&tx, &handle).await?;
        let row = tx
            .fetch_one(
                &format!(
                    "UPDATE agent a SET display_name = coalesce($2, display_name), kind = coalesce($3, kind),
                            status = coalesce($4, status), capacity = coalesce($5, capacity),
                            skills = coalesce($6, skills), version = version + 1, updated_at = now()
                     WHERE a.id = $1 RETURNING {AGENT_COLUMNS}"
                ),
                &[
                    &before.id,
                    &display_name,
                    &update.kind.map(|k| k.as_str()),
                    &update.status.map(|s| s.as_str()),
                    &update.capacity,
                    &skills,
                ],
            )
            .await?;
        let after = rows::agent(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("agent", "update", None).entity(after.id, &after.handle).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}

/// Locks the agent's row for an edit in the caller's transaction and reads it.
pub(super) async fn lock_agent(client: &impl Sql, handle: &str) -> StoreResult<Agent> {
    let statement = &format!("SELECT {AGENT_COLUMNS} FROM agent a WHERE a.handle = $1 FOR NO KEY UPDATE");
    let row = client
        .fetch_opt(statement, &[&handle])
        .await?
        .ok_or_else(|| StoreError::not_found("agent", format!("@{handle}")))?;
    rows::agent(&row)
}

pub(crate) async fn agent_by_handle(client: &impl Sql, handle: &str) -> StoreResult<Agent> {
    let handle = domain::agent_handle(handle)?;
    let statement = &format!("SELECT {AGENT_COLUMNS} FROM agent a WHERE a.handle = $1");
    let row = client
        .fetch_opt(statement, &[&handle])
        .await?
        .ok_or_else(|| StoreError::not_found("agent", format!("@{handle}")))?;
    rows::agent(&row)
}
