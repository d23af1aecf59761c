//! Read models for the console's screens: what needs an operator's attention,
//! computed in the database so the console never pulls whole tables.

use crate::store::sql::Sql;
use serde::Serialize;
use time::{Date, Duration, OffsetDateTime};

use super::rows::{self, AGENT_COLUMNS, DEPLOYMENT_COLUMNS, HANDOFF_COLUMNS, HANDOFF_JOINS, TASK_COLUMNS, TASK_JOINS};
use super::{Store, StoreResult};
use crate::domain::{Agent, Deployment, Handoff, Lane, Pipeline, SnapshotMeta, Task};

/// How many rows a list screen shows per section at most.
pub const LIST_LIMIT: i64 = 200;

/// Things that need an operator, in the order the Risks screen shows them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Risk {
    OverdueHandoff {
        handoff: Handoff,
    },
    BlockedHandoff {
        handoff: Handoff,
    },
    /// An agent that is offline, or silent for longer than the offline
    /// threshold, holding `tasks` of this project in started lanes.
    OfflineAgentWithWork {
        agent: Agent,
        tasks: i64,
    },
    LaneOverLimit {
        lane: Lane,
    },
    FailingPipeline {
        pipeline: Pipeline,
    },
    FailingDeployment {
        deployment: Deployment,
    },
    StaleTask {
        task: Task,
    },
}

impl Store {
    /// Untriaged tasks (backlog-category lanes), oldest first.
    pub async fn inbox_tasks(&self, project_id: i64) -> StoreResult<Vec<Task>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS}
                     WHERE t.project_id = $1 AND NOT t.archived AND l.category = 'backlog'
                     ORDER BY t.created_at, t.id LIMIT $2"
                ),
                &[&project_id, &LIST_LIMIT],
            )
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Open or accepted handoffs addressed to an agent, oldest first.
    pub async fn handoffs_to(&self, project_id: i64, handle: &str) -> StoreResult<Vec<Handoff>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {HANDOFF_COLUMNS} FROM handoff h {HANDOFF_JOINS}
                     WHERE h.project_id = $1 AND ta.handle = $2 AND h.state IN ('open', 'accepted')
                     ORDER BY h.created_at, h.id LIMIT $3"
                ),
                &[&project_id, &handle, &LIST_LIMIT],
            )
            .await?;
        rows.iter().map(rows::handoff).collect()
    }

    /// Work for today: tasks in started lanes, and open tasks due today or
    /// earlier; by assignee, most urgent first.
    pub async fn today_tasks(&self, project_id: i64, today: Date) -> StoreResult<Vec<Task>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS}
                     WHERE t.project_id = $1 AND NOT t.archived
                       AND (l.category = 'started' OR (t.due_on <= $2 AND l.category NOT IN ('completed', 'cancelled')))
                     ORDER BY a.handle NULLS LAST,
                              array_position(ARRAY['urgent','high','medium','low','none'], t.priority),
                              t.due_on NULLS LAST, t.id
                     LIMIT $3"
                ),
                &[&project_id, &today, &(LIST_LIMIT * 5)],
            )
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// Tasks waiting in review lanes, oldest first.
    pub async fn review_queue(&self, project_id: i64) -> StoreResult<Vec<Task>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS}
                     WHERE t.project_id = $1 AND NOT t.archived AND l.role = 'review'
                     ORDER BY t.updated_at, t.id LIMIT $2"
                ),
                &[&project_id, &LIST_LIMIT],
            )
            .await?;
        rows.iter().map(rows::task).collect()
    }

    /// The latest deployment of every environment that has one.
    pub async fn latest_deployments(&self, project_id: i64) -> StoreResult<Vec<Deployment>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT DISTINCT ON (d.environment_id) {DEPLOYMENT_COLUMNS}
                     FROM deployment d JOIN environment e ON e.id = d.environment_id
                     LEFT JOIN release r ON r.id = d.release_id
                     WHERE d.project_id = $1
                     ORDER BY d.environment_id, coalesce(d.started_at, d.created_at) DESC, d.id DESC"
                ),
                &[&project_id],
            )
            .await?;
        rows.iter().map(rows::deployment).collect()
    }

    /// Everything that needs an operator now. A task is stale when it sits in
    /// a started lane without any change for `stale_after`; an agent that has
    /// not been seen for `offline_after` (by the database clock) counts as
    /// offline even before anything marked it so.
    pub async fn risks(
        &self,
        project_id: i64,
        now: OffsetDateTime,
        stale_after: Duration,
        offline_after: Duration,
    ) -> StoreResult<Vec<Risk>> {
        let client = self.client().await?;
        let handoffs = client
            .fetch(
                &format!(
                    "SELECT {HANDOFF_COLUMNS} FROM handoff h {HANDOFF_JOINS}
                     WHERE h.project_id = $1 AND h.state IN ('open', 'accepted')
                       AND ((h.due_at IS NOT NULL AND h.due_at < $2) OR h.kind = 'blocked')
                     ORDER BY h.due_at NULLS LAST, h.id LIMIT $3"
                ),
                &[&project_id, &now, &LIST_LIMIT],
            )
            .await?;
        // Silence is measured on the database clock, which wrote last_seen_at
        // and which expiry uses too.
        let offline = client
            .fetch(
                &format!(
                    "SELECT {AGENT_COLUMNS}, held.n FROM agent a CROSS JOIN LATERAL (
                         SELECT count(*) AS n FROM lane l JOIN task t ON t.lane_id = l.id
                         WHERE l.project_id = $1 AND l.category = 'started'
                           AND t.assignee_id = a.id AND NOT t.archived) held
                     WHERE (a.status = 'offline' OR a.last_seen_at < now() - make_interval(secs => $2))
                       AND held.n > 0
                     ORDER BY a.handle LIMIT $3"
                ),
                &[&project_id, &offline_after.as_seconds_f64(), &LIST_LIMIT],
            )
            .await?;
        let lanes = client
            .fetch(
                &format!(
                    "SELECT {} FROM lane l WHERE l.project_id = $1 AND l.wip_limit IS NOT NULL
                     AND {} > l.wip_limit ORDER BY l.position",
                    rows::LANE_COLUMNS,
                    rows::LANE_OPEN_COUNT
                ),
                &[&project_id],
            )
            .await?;
        // The latest run of each pipeline on each ref: a failure fixed by a later green run is no risk.
        let pipelines = client
            .fetch(
                &format!(
                    "SELECT * FROM (
                        SELECT DISTINCT ON (pl.name, pl.ref) {}
                        FROM pipeline pl WHERE pl.project_id = $1
                        ORDER BY pl.name, pl.ref, coalesce(pl.started_at, pl.created_at) DESC, pl.id DESC) latest
                     WHERE status = 'failed' ORDER BY updated_at DESC LIMIT $2",
                    rows::PIPELINE_COLUMNS
                ),
                &[&project_id, &LIST_LIMIT],
            )
            .await?;
        let deployments: Vec<Deployment> =
            self.latest_deployments(project_id).await?.into_iter().filter(|d| d.status.as_str() == "failed").collect();
        let stale = client
            .fetch(
                &format!(
                    "SELECT {TASK_COLUMNS} FROM task t {TASK_JOINS}
                     WHERE t.project_id = $1 AND NOT t.archived AND l.category = 'started' AND t.updated_at < $2
                     ORDER BY t.updated_at LIMIT $3"
                ),
                &[&project_id, &(now - stale_after), &LIST_LIMIT],
            )
            .await?;
        let mut risks = Vec::new();
        for row in &handoffs {
            let handoff = rows::handoff(row)?;
            risks.push(if handoff.is_overdue(now) {
                Risk::OverdueHandoff { handoff }
            } else {
                Risk::BlockedHandoff { handoff }
            });
        }
        // Overdue first, then blocked.
        risks.sort_by_key(|r| !matches!(r, Risk::OverdueHandoff { .. }));
        for row in &offline {
            risks.push(Risk::OfflineAgentWithWork { agent: rows::agent(row)?, tasks: row.try_get("n")? });
        }
        for row in &lanes {
            risks.push(Risk::LaneOverLimit { lane: rows::lane(row)? });
        }
        for row in &pipelines {
            risks.push(Risk::FailingPipeline { pipeline: rows::pipeline(row)? });
        }
        risks.extend(deployments.into_iter().map(|deployment| Risk::FailingDeployment { deployment }));
        for row in &stale {
            risks.push(Risk::StaleTask { task: rows::task(row)? });
        }
        Ok(risks)
    }

    /// Snapshots of a project, newest first, without their payloads.
    pub async fn list_snapshots(&self, project_id: i64) -> StoreResult<Vec<SnapshotMeta>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                "SELECT id, project_id, format_version, created_at, created_by, label, reason, counts, size_bytes, checksum
                 FROM snapshot WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                &[&project_id, &LIST_LIMIT],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(SnapshotMeta {
                    id: row.try_get("id")?,
                    project_id: row.try_get("project_id")?,
                    format_version: row.try_get("format_version")?,
                    created_at: row.try_get("created_at")?,
                    created_by: row.try_get("created_by")?,
                    label: row.try_get("label")?,
                    reason: row.try_get("reason")?,
                    counts: row.try_get("counts")?,
                    size_bytes: row.try_get("size_bytes")?,
                    checksum: row.try_get("checksum")?,
                })
            })
            .collect()
    }

    /// A number that moves on every committed audited change, in commit
    /// order (the chain heads are updated under a row lock): what a console
    /// polls when it cannot LISTEN. A max(id) would miss an entry whose
    /// transaction commits after a later one's.
    pub async fn change_mark(&self) -> StoreResult<i64> {
        let client = self.client().await?;
        Ok(client.fetch_one("SELECT coalesce(sum(seq), 0)::bigint FROM audit_chain", &[]).await?.get(0))
    }

    /// The highest audit id of a project: the console's cheap "anything new?" poll.
    pub async fn latest_audit_id(&self, project_id: i64) -> StoreResult<i64> {
        let client = self.client().await?;
        let statement = "SELECT coalesce(max(id), 0) FROM audit_entry WHERE project_id = $1";
        Ok(client.fetch_one(statement, &[&project_id]).await?.get(0))
    }
}
