//! The board read model: lanes with their counts and the first cards of each,
//! in one round trip. Cards carry only what a board card shows.

use crate::store::sql::Sql;
use serde::Serialize;
use time::{Date, OffsetDateTime};
use tokio_postgres::Row;

use super::rows::{self, LANE_COLUMNS};
use super::{Store, StoreResult};
use crate::domain::{Lane, Priority, SyncState};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Card {
    pub id: i64,
    pub key: String,
    pub title: String,
    pub priority: Priority,
    pub assignee: Option<String>,
    pub labels: Vec<String>,
    pub due_on: Option<Date>,
    pub rank: i64,
    pub version: i32,
    /// Open or accepted handoffs on the task.
    pub open_handoffs: i64,
    /// The worst state among the task's external mappings, if it has any.
    pub sync_state: Option<SyncState>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoardLane {
    #[serde(flatten)]
    pub lane: Lane,
    /// The first cards in rank order; `lane.open_count` says how many there are in all.
    pub cards: Vec<Card>,
}

/// Narrows the board to matching cards (the console's `/` filter). Every set
/// field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardFilter {
    /// Case-insensitive substring of the title or key.
    pub text: Option<String>,
    pub assignee: Option<String>,
    pub label: Option<String>,
    pub priority: Option<Priority>,
}

impl CardFilter {
    pub fn is_empty(&self) -> bool {
        *self == CardFilter::default()
    }

    fn like(&self) -> Option<String> {
        self.text.as_deref().map(|t| format!("%{}%", super::tasks::like_escape(t)))
    }
}

/// The filter conditions, with parameters $3..$6 (text, assignee, label, priority).
const FILTER_CONDITIONS: &str = "($3::text IS NULL OR t.title ILIKE $3 OR t.task_key ILIKE $3) \
     AND ($4::text IS NULL OR t.assignee_id = (SELECT id FROM agent WHERE handle = $4)) \
     AND ($5::text IS NULL OR $5 = ANY (t.labels)) \
     AND ($6::text IS NULL OR t.priority = $6)";

const CARD_COLUMNS: &str = "t.id, t.task_key, t.title, t.priority, a.handle AS assignee, t.labels, t.due_on, t.rank, \
     t.version, t.updated_at, \
     (SELECT count(*) FROM handoff h WHERE h.task_id = t.id AND h.state IN ('open', 'accepted')) AS open_handoffs, \
     (SELECT em.sync_state FROM external_mapping em WHERE em.local_kind = 'task' AND em.local_id = t.id \
      ORDER BY CASE em.sync_state WHEN 'conflict' THEN 0 WHEN 'error' THEN 1 WHEN 'pending' THEN 2 ELSE 3 END \
      LIMIT 1) AS sync_state";

fn card(row: &Row) -> StoreResult<Card> {
    Ok(Card {
        id: row.try_get("id")?,
        key: row.try_get("task_key")?,
        title: row.try_get("title")?,
        priority: Priority::from_db(row.try_get("priority")?)?,
        assignee: row.try_get("assignee")?,
        labels: row.try_get("labels")?,
        due_on: row.try_get("due_on")?,
        rank: row.try_get("rank")?,
        version: row.try_get("version")?,
        open_handoffs: row.try_get("open_handoffs")?,
        sync_state: row.try_get::<_, Option<&str>>("sync_state")?.map(SyncState::from_db).transpose()?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// All lanes of a project in order, each with up to `cards_per_lane` cards.
    pub async fn load_board(&self, project_id: i64, cards_per_lane: i64) -> StoreResult<Vec<BoardLane>> {
        let client = self.client().await?;
        let lanes_statement = &format!("SELECT {LANE_COLUMNS} FROM lane l WHERE l.project_id = $1 ORDER BY l.position");
        let cards_statement = &format!(
            "SELECT l.id AS lane_id, {CARD_COLUMNS}
                 FROM lane l
                 CROSS JOIN LATERAL (
                     SELECT * FROM task t WHERE t.project_id = $1 AND t.lane_id = l.id AND NOT t.archived
                     ORDER BY t.rank LIMIT $2) t
                 LEFT JOIN agent a ON a.id = t.assignee_id
                 WHERE l.project_id = $1
                 ORDER BY l.position, t.rank"
        );
        // Both queries go out together on the one connection (pipelined).
        let limit = cards_per_lane.clamp(0, 10_000);
        let (lane_rows, card_rows) = futures_util::future::try_join(
            client.fetch(lanes_statement, &[&project_id]),
            client.fetch(cards_statement, &[&project_id, &limit]),
        )
        .await?;
        let mut board: Vec<BoardLane> = lane_rows
            .iter()
            .map(|row| Ok(BoardLane { lane: rows::lane(row)?, cards: Vec::new() }))
            .collect::<StoreResult<_>>()?;
        for row in &card_rows {
            let lane_id: i64 = row.try_get("lane_id")?;
            if let Some(lane) = board.iter_mut().find(|l| l.lane.id == lane_id) {
                lane.cards.push(card(row)?);
            }
        }
        Ok(board)
    }

    /// The board narrowed by a filter: each lane's count is the number of
    /// matching cards, and its cards are the first matching ones.
    pub async fn load_board_filtered(
        &self,
        project_id: i64,
        filter: &CardFilter,
        cards_per_lane: i64,
    ) -> StoreResult<Vec<BoardLane>> {
        if filter.is_empty() {
            return self.load_board(project_id, cards_per_lane).await;
        }
        let client = self.client().await?;
        let lanes_statement = &format!(
            "SELECT {LANE_COLUMNS_FILTERED} FROM lane l WHERE l.project_id = $1 ORDER BY l.position",
            LANE_COLUMNS_FILTERED = LANE_COLUMNS.replace(
                rows::LANE_OPEN_COUNT,
                &format!(
                    "(SELECT count(*)::int FROM task t WHERE t.project_id = $1 AND t.lane_id = l.id \
                          AND NOT t.archived AND {FILTER_CONDITIONS} AND $2::bigint >= 0)"
                )
            )
        );
        let cards_statement = &format!(
            "SELECT l.id AS lane_id, {CARD_COLUMNS}
                 FROM lane l
                 CROSS JOIN LATERAL (
                     SELECT * FROM task t WHERE t.project_id = $1 AND t.lane_id = l.id AND NOT t.archived
                       AND {FILTER_CONDITIONS}
                     ORDER BY t.rank LIMIT $2) t
                 LEFT JOIN agent a ON a.id = t.assignee_id
                 WHERE l.project_id = $1
                 ORDER BY l.position, t.rank"
        );
        let limit = cards_per_lane.clamp(0, 10_000);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &project_id,
            &limit,
            &filter.like(),
            &filter.assignee,
            &filter.label,
            &filter.priority.map(|p| p.as_str()),
        ];
        let (lane_rows, card_rows) = futures_util::future::try_join(
            client.fetch(lanes_statement, &params),
            client.fetch(cards_statement, &params),
        )
        .await?;
        let mut board: Vec<BoardLane> = lane_rows
            .iter()
            .map(|row| Ok(BoardLane { lane: rows::lane(row)?, cards: Vec::new() }))
            .collect::<StoreResult<_>>()?;
        for row in &card_rows {
            let lane_id: i64 = row.try_get("lane_id")?;
            if let Some(lane) = board.iter_mut().find(|l| l.lane.id == lane_id) {
                lane.cards.push(card(row)?);
            }
        }
        Ok(board)
    }

    /// A window of one lane's cards, for scrolling past the first page.
    pub async fn lane_cards(
        &self,
        project_id: i64,
        lane_id: i64,
        filter: &CardFilter,
        offset: i64,
        limit: i64,
    ) -> StoreResult<Vec<Card>> {
        let client = self.client().await?;
        // $2 is the lane here; the filter keeps its $3..$6.
        let statement = &format!(
            "SELECT {CARD_COLUMNS} FROM task t LEFT JOIN agent a ON a.id = t.assignee_id
                 WHERE t.project_id = $1 AND t.lane_id = $2 AND NOT t.archived AND {FILTER_CONDITIONS}
                 ORDER BY t.rank OFFSET $7 LIMIT $8"
        );
        let rows = client
            .fetch(
                statement,
                &[
                    &project_id,
                    &lane_id,
                    &filter.like(),
                    &filter.assignee,
                    &filter.label,
                    &filter.priority.map(|p| p.as_str()),
                    &offset.max(0),
                    &limit.clamp(0, 10_000),
                ],
            )
            .await?;
        rows.iter().map(card).collect()
    }
}
