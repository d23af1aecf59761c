//! Dispatch: agents claim ready work, report that they are alive, and are
//! marked offline when they fall silent. See `docs/agents.md`.

use crate::store::sql::Sql;
use std::time::Duration;

use super::agents::lock_agent;
use super::audit::{self, Change};
use super::rows::{self, AGENT_COLUMNS};
use super::tasks::RANK_STEP;
use super::{Actor, Store, StoreError, StoreResult, with_retry};
use crate::domain::{self, Agent, AgentStatus, Task};

/// What [`Store::dispatch_next`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum DispatchOutcome {
    /// The task, now in the project's first started lane and assigned to the agent.
    Claimed(Box<Task>),
    /// No ready task the agent may take.
    NothingReady,
    /// The agent already holds `capacity` tasks in started lanes.
    AtCapacity { in_progress: i64, capacity: i32 },
    /// Away and offline agents do not claim; nothing was written.
    Unavailable { status: AgentStatus },
}

impl Store {
    /// Atomically claims the highest-priority ready task `handle` can take in the project.
    ///
    /// Ready: not archived, in an `unstarted`-category lane, unassigned or
    /// already assigned to this agent, and no open or accepted `blocked`
    /// handoff on it. Best first: priority (urgent … none), then due date
    /// (undated last), then the oldest.
    ///
    /// Skills: an agent without skills takes any task, and a task without
    /// labels goes to anyone; otherwise the task's labels must share at least
    /// one entry with the agent's skills. A task already assigned to the agent
    /// is its own whatever its labels.
    ///
    /// Capacity: the agent's tasks in `started`-category lanes of every
    /// project; it claims only while that is below its capacity. Claims of one
    /// agent are serialised on its row, so concurrent claims never overshoot.
    ///
    /// The claim moves the task to the bottom of the project's first started
    /// lane (lowest position), assigns it, bumps its version, and writes one
    /// `task.claim` audit entry and the change notification, in one
    /// transaction. Concurrent claimers never get the same task. Any call by an
    /// available or busy agent counts as a heartbeat (`last_seen_at`); away
    /// and offline agents get [`DispatchOutcome::Unavailable`] and nothing is
    /// written.
    pub async fn dispatch_next(&self, actor: &Actor, project_id: i64, handle: &str) -> StoreResult<DispatchOutcome> {
        self.refuse_if_read_only()?;
        let handle = domain::agent_handle(handle)?;
        with_retry(|| self.dispatch_once(actor, project_id, &handle)).await
    }

    /// One claim: the `dispatch_claim` function of `sql/V10__claims_without_lane_locks.sql`,
    /// one statement committed on its own, then its change notification.
    async fn dispatch_once(&self, actor: &Actor, project_id: i64, handle: &str) -> StoreResult<DispatchOutcome> {
        let client = self.client().await?;
        let statement = "SELECT outcome, agent_status, in_progress, capacity, task, audit_id
                 FROM dispatch_claim($1, $2, $3, $4, $5, $6, $7)";
        let row = client
            .fetch_one(
                statement,
                &[
                    &project_id,
                    &handle,
                    &actor.name,
                    &actor.source.as_str(),
                    &actor.correlation_id,
                    &actor.reason,
                    &RANK_STEP,
                ],
            )
            .await?;
        if let Some(audit_id) = row.try_get::<_, Option<i64>>("audit_id")? {
            // The claim has committed: a lost notification must not turn it
            // into an error (a retry would claim a second task).
            if let Err(e) = audit::announce_committed(&client, audit_id).await {
                tracing::warn!("claim {audit_id} committed but its change notification was not sent: {e}");
            }
        }
        let outcome: String = row.try_get("outcome")?;
        match outcome.as_str() {
            "claimed" => {
                let json: serde_json::Value = row.try_get("task")?;
                let task: Task = serde_json::from_value(json)
                    .map_err(|e| StoreError::Database(format!("reading the claimed task: {e}")))?;
                Ok(DispatchOutcome::Claimed(Box::new(task)))
            }
            "nothing_ready" => Ok(DispatchOutcome::NothingReady),
            "at_capacity" => Ok(DispatchOutcome::AtCapacity {
                in_progress: row.try_get("in_progress")?,
                capacity: row.try_get("capacity")?,
            }),
            "unavailable" => {
                Ok(DispatchOutcome::Unavailable { status: AgentStatus::from_db(row.try_get("agent_status")?)? })
            }
            "unknown_agent" => Err(StoreError::not_found("agent", format!("@{handle}"))),
            "unknown_project" => Err(StoreError::not_found("project", project_id)),
            "no_started_lane" => Err(StoreError::invalid(
                "the project has no started lane to put a claimed task in: create one with \
                 `mctl lane create NAME --category started`",
            )),
            other => Err(StoreError::Database(format!("unexpected dispatch outcome {other:?}"))),
        }
    }

    /// Records that the agent is alive (last_seen_at = now); optionally sets
    /// its status. An offline agent that heartbeats becomes available. Only a
    /// status change is audited (action `agent.status`), not every beat.
    pub async fn heartbeat(&self, actor: &Actor, handle: &str, status: Option<AgentStatus>) -> StoreResult<Agent> {
        self.refuse_if_read_only()?;
        let handle = domain::agent_handle(handle)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = lock_agent(&tx, &handle).await?;
        let status = status.unwrap_or(match before.status {
            AgentStatus::Offline => AgentStatus::Available,
            current => current,
        });
        let changed = status != before.status;
        // A beat alone leaves version and updated_at alone: it is not an edit.
        let beat = &format!(
            "UPDATE agent a SET last_seen_at = now(), status = $2,
                        version = a.version + CASE WHEN $3 THEN 1 ELSE 0 END,
                        updated_at = CASE WHEN $3 THEN now() ELSE a.updated_at END
                 WHERE a.id = $1 RETURNING {AGENT_COLUMNS}"
        );
        let after = rows::agent(&tx.fetch_one(beat, &[&before.id, &status.as_str(), &changed]).await?)?;
        if changed {
            audit::record(
                &tx,
                actor,
                Change::new("agent", "status", None).entity(after.id, &after.handle).before(&before).after(&after),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    /// Marks agents whose last heartbeat is older than `after` offline
    /// (audited, action `agent.offline`, source of `actor`); returns them.
    /// Agents that never heartbeat (last_seen_at NULL, typically humans) are
    /// left alone.
    pub async fn expire_silent_agents(&self, actor: &Actor, after: Duration) -> StoreResult<Vec<Agent>> {
        let seconds = after.as_secs_f64();
        let mut client = self.client().await?;
        // Almost always nobody is silent: one read answers that, without a transaction.
        let any = "SELECT EXISTS (SELECT 1 FROM agent
                                WHERE status <> 'offline' AND last_seen_at < now() - make_interval(secs => $1))";
        if !client.fetch_one(any, &[&seconds]).await?.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        self.refuse_if_read_only()?;
        let tx = client.transaction().await?;
        // An agent whose row is locked is beating or claiming right now: not silent.
        let silent = &format!(
            "SELECT {AGENT_COLUMNS} FROM agent a
                 WHERE a.status <> 'offline' AND a.last_seen_at < now() - make_interval(secs => $1)
                 ORDER BY a.id FOR NO KEY UPDATE SKIP LOCKED"
        );
        let offline = &format!(
            "UPDATE agent a SET status = 'offline', version = a.version + 1, updated_at = now()
                 WHERE a.id = $1 RETURNING {AGENT_COLUMNS}"
        );
        let mut expired = Vec::new();
        for row in tx.fetch(silent, &[&seconds]).await? {
            let before = rows::agent(&row)?;
            let after = rows::agent(&tx.fetch_one(offline, &[&before.id]).await?)?;
            audit::record(
                &tx,
                actor,
                Change::new("agent", "offline", None).entity(after.id, &after.handle).before(&before).after(&after),
            )
            .await?;
            expired.push(after);
        }
        tx.commit().await?;
        Ok(expired)
    }
}
