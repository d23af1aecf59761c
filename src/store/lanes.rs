//! Lanes: the ordered columns of a project's board.

use super::audit::{self, Change};
use super::rows::{self, LANE_COLUMNS};
use super::{Actor, Store, StoreError, StoreResult};
use crate::domain::{Lane, LaneCategory, LaneRole, text};
use crate::store::sql::Sql;

#[derive(Debug, Clone)]
pub struct NewLane {
    pub name: String,
    pub category: LaneCategory,
    pub role: LaneRole,
    /// 1-based; `None` appends after the last lane.
    pub position: Option<i32>,
    pub wip_limit: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct LaneUpdate {
    pub name: Option<String>,
    pub position: Option<i32>,
    /// `Some(None)` removes the limit.
    pub wip_limit: Option<Option<i32>>,
    pub category: Option<LaneCategory>,
    pub role: Option<LaneRole>,
    pub visible: Option<bool>,
    pub sync: Option<bool>,
}

fn check_wip(limit: Option<i32>) -> StoreResult<()> {
    match limit {
        Some(n) if !(1..=10_000).contains(&n) => {
            Err(StoreError::invalid(format!("invalid WIP limit {n}: use a number from 1 to 10000, or none")))
        }
        _ => Ok(()),
    }
}

impl Store {
    pub async fn list_lanes(&self, project_id: i64) -> StoreResult<Vec<Lane>> {
        let client = self.client().await?;
        let statement = &format!("SELECT {LANE_COLUMNS} FROM lane l WHERE l.project_id = $1 ORDER BY l.position");
        let rows = client.fetch(statement, &[&project_id]).await?;
        rows.iter().map(rows::lane).collect()
    }

    /// Finds a lane by name, case-insensitively.
    pub async fn lane_by_name(&self, project_id: i64, name: &str) -> StoreResult<Lane> {
        let client = self.client().await?;
        lane_by_name(&client, project_id, name).await
    }

    /// The lane a task created without one goes to: the project's first
    /// backlog lane, or its first lane if it has none.
    pub async fn default_lane(&self, project_id: i64) -> StoreResult<Lane> {
        let client = self.client().await?;
        super::tasks::default_lane(&client, project_id).await
    }

    pub async fn create_lane(&self, actor: &Actor, project_id: i64, lane: NewLane) -> StoreResult<Lane> {
        self.refuse_if_read_only()?;
        let name = text::name("lane name", &lane.name, 60)?;
        check_wip(lane.wip_limit)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // Lock the project's lanes so concurrent lane edits renumber positions one at a time.
        let count: i64 = tx
            .fetch_one(
                "SELECT count(*) FROM (SELECT id FROM lane WHERE project_id = $1 ORDER BY id FOR UPDATE) locked",
                &[&project_id],
            )
            .await?
            .get(0);
        let last = count as i32 + 1;
        let position = lane.position.unwrap_or(last);
        if !(1..=last).contains(&position) {
            return Err(StoreError::invalid(format!("invalid position {position}: use 1 to {last}")));
        }
        tx.exec(
            "UPDATE lane SET position = position + 1 WHERE project_id = $1 AND position >= $2",
            &[&project_id, &position],
        )
        .await?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO lane AS l (project_id, name, position, category, role, wip_limit)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {LANE_COLUMNS}"
                ),
                &[&project_id, &name, &position, &lane.category.as_str(), &lane.role.as_str(), &lane.wip_limit],
            )
            .await?;
        let created = rows::lane(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("lane", "create", Some(project_id)).entity(created.id, &created.name).after(&created),
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_lane(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        update: LaneUpdate,
    ) -> StoreResult<Lane> {
        self.refuse_if_read_only()?;
        let new_name = update.name.as_deref().map(|n| text::name("lane name", n, 60)).transpose()?;
        if let Some(limit) = update.wip_limit {
            check_wip(limit)?;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lanes: Vec<Lane> = tx
            .fetch(
                &format!("SELECT {LANE_COLUMNS} FROM lane l WHERE l.project_id = $1 ORDER BY l.id FOR UPDATE"),
                &[&project_id],
            )
            .await?
            .iter()
            .map(rows::lane)
            .collect::<StoreResult<_>>()?;
        let before = lanes
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name.trim()))
            .cloned()
            .ok_or_else(|| StoreError::not_found("lane", name))?;
        if let Some(position) = update.position {
            let last = lanes.len() as i32;
            if !(1..=last).contains(&position) {
                return Err(StoreError::invalid(format!("invalid position {position}: use 1 to {last}")));
            }
            // Re-number every lane so positions stay 1..n without gaps.
            let mut order: Vec<&Lane> = lanes.iter().filter(|l| l.id != before.id).collect();
            order.sort_by_key(|l| l.position);
            order.insert(position as usize - 1, &before);
            for (index, lane) in order.iter().enumerate() {
                tx.exec("UPDATE lane SET position = $2 WHERE id = $1", &[&lane.id, &(index as i32 + 1)]).await?;
            }
        }
        let row = tx
            .fetch_one(
                &format!(
                    "UPDATE lane l SET name = coalesce($2, name),
                            wip_limit = CASE WHEN $3 THEN $4 ELSE wip_limit END,
                            category = coalesce($5, category), role = coalesce($6, role),
                            visible = coalesce($7, visible), sync = coalesce($8, sync), updated_at = now()
                     WHERE l.id = $1 RETURNING {LANE_COLUMNS}"
                ),
                &[
                    &before.id,
                    &new_name,
                    &update.wip_limit.is_some(),
                    &update.wip_limit.flatten(),
                    &update.category.map(|c| c.as_str()),
                    &update.role.map(|r| r.as_str()),
                    &update.visible,
                    &update.sync,
                ],
            )
            .await?;
        let after = rows::lane(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("lane", "update", Some(project_id)).entity(after.id, &after.name).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}

pub(crate) async fn lane_by_name(client: &impl Sql, project_id: i64, name: &str) -> StoreResult<Lane> {
    let statement = &format!("SELECT {LANE_COLUMNS} FROM lane l WHERE l.project_id = $1 AND lower(l.name) = lower($2)");
    let row = client
        .fetch_opt(statement, &[&project_id, &name.trim()])
        .await?
        .ok_or_else(|| StoreError::not_found("lane", name.trim()))?;
    rows::lane(&row)
}
