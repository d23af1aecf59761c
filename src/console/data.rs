//! What each screen loads, and loading it: one query kind per screen, run as a
//! tokio task by the effect runner and returned as `Action::Loaded`.

use time::{Date, Duration, OffsetDateTime};

use super::action::Failure;
use super::sync::SyncIssues;
use crate::domain::*;
use crate::store::agents::AgentLoad;
use crate::store::audit::AuditQuery;
use crate::store::board::{BoardLane, Card, CardFilter};
use crate::store::handoffs::HandoffFilter;
use crate::store::integrations::MappingFilter;
use crate::store::sync::SyncHealth;
use crate::store::views::Risk;
use crate::store::{Actor, Store};

/// Cards fetched per lane on a board load, and per window when scrolling.
pub const FIRST_PAGE: i64 = 50;
pub const WINDOW: i64 = 120;
/// Audit entries fetched per page in the drawer.
pub const AUDIT_PAGE: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueryKey {
    Board,
    LaneWindow(i64),
    Inbox,
    Today,
    Planning,
    Delivery,
    Risks,
    Recovery,
    Settings,
    Agents,
    AuditTail,
    AuditOlder,
    Detail,
    Page,
    Latest,
    SnapshotDiff,
    RestorePlan,
    SyncHealth,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Board {
        filter: CardFilter,
    },
    LaneWindow {
        lane_id: i64,
        filter: CardFilter,
        offset: i64,
    },
    Inbox {
        operator: String,
    },
    /// Also marks agents silent for `offline_after` offline.
    Today {
        today: Date,
        offline_after: Duration,
    },
    Planning {
        today: Date,
    },
    Delivery,
    /// Also marks agents silent for `offline_after` offline.
    Risks {
        now: OffsetDateTime,
        stale_after: Duration,
        offline_after: Duration,
    },
    Recovery,
    Settings,
    Agents,
    /// Entries newer than `after_id` (0: the latest page).
    AuditTail {
        after_id: i64,
    },
    /// A page of entries older than `before_id`.
    AuditOlder {
        before_id: i64,
    },
    Detail {
        key: String,
    },
    Page {
        slug: String,
    },
    /// The newest audit id: the fallback poll for missed notifications.
    Latest,
    /// What changed since a snapshot.
    SnapshotDiff {
        id: i64,
    },
    /// A dry run of a restore, for the confirmation.
    RestorePlan {
        id: i64,
        only: Vec<String>,
    },
    /// Each connection's sync health, for the status line.
    SyncHealth,
}

impl Query {
    pub fn key(&self) -> QueryKey {
        match self {
            Query::Board { .. } => QueryKey::Board,
            Query::LaneWindow { lane_id, .. } => QueryKey::LaneWindow(*lane_id),
            Query::Inbox { .. } => QueryKey::Inbox,
            Query::Today { .. } => QueryKey::Today,
            Query::Planning { .. } => QueryKey::Planning,
            Query::Delivery => QueryKey::Delivery,
            Query::Risks { .. } => QueryKey::Risks,
            Query::Recovery => QueryKey::Recovery,
            Query::Settings => QueryKey::Settings,
            Query::Agents => QueryKey::Agents,
            Query::AuditTail { .. } => QueryKey::AuditTail,
            Query::AuditOlder { .. } => QueryKey::AuditOlder,
            Query::Detail { .. } => QueryKey::Detail,
            Query::Page { .. } => QueryKey::Page,
            Query::Latest => QueryKey::Latest,
            Query::SnapshotDiff { .. } => QueryKey::SnapshotDiff,
            Query::RestorePlan { .. } => QueryKey::RestorePlan,
            Query::SyncHealth => QueryKey::SyncHealth,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboxData {
    pub tasks: Vec<Task>,
    /// Handoffs addressed to the operator's own agent.
    pub handoffs: Vec<Handoff>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TodayData {
    pub tasks: Vec<Task>,
    /// Every agent's load against its capacity, for the Agents section.
    pub agents: Vec<AgentLoad>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanningData {
    pub cycles: Vec<Cycle>,
    pub modules: Vec<Module>,
    pub pages: Vec<Page>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeliveryData {
    pub environments: Vec<Environment>,
    /// The latest deployment per environment.
    pub deployments: Vec<Deployment>,
    pub pipelines: Vec<Pipeline>,
    pub releases: Vec<(Release, ReleaseReadiness)>,
    pub review: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SettingsData {
    pub lanes: Vec<Lane>,
    pub agents: Vec<AgentLoad>,
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DetailData {
    pub task: Task,
    pub handoffs: Vec<Handoff>,
    pub mappings: Vec<Mapping>,
    /// The connections the mappings name (for their provider); empty without mappings.
    pub connections: Vec<Connection>,
    pub history: Vec<AuditEntry>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    Board(Vec<BoardLane>),
    LaneWindow {
        lane_id: i64,
        offset: i64,
        cards: Vec<Card>,
    },
    Inbox(InboxData),
    Today(TodayData),
    Planning(PlanningData),
    Delivery(DeliveryData),
    /// The Risks screen: the project's risks and its open sync problems.
    Risks {
        risks: Vec<Risk>,
        sync: SyncIssues,
    },
    Recovery(Vec<SnapshotMeta>),
    Settings(SettingsData),
    Agents(Vec<AgentLoad>),
    AuditTail(Vec<AuditEntry>),
    AuditOlder(Vec<AuditEntry>),
    Detail(Box<DetailData>),
    Page(Page),
    Latest(i64),
    SnapshotDiff {
        id: i64,
        diff: Box<crate::snapshot::diff::Diff>,
    },
    RestorePlan {
        report: Box<crate::snapshot::RestoreReport>,
        only: Vec<String>,
    },
    /// Each connection's health, and the sync workers serving the project.
    SyncHealth(Vec<SyncHealth>, Vec<crate::sync::registry::WorkerView>),
}

/// Marks silent agents offline, so the status Today and Risks show is honest
/// even when no sync worker runs. A read-only session leaves that to others,
/// and a failure here never keeps the screen from loading.
async fn expire_silent_agents(store: &Store, actor: &Actor, after: Duration) {
    if store.is_read_only() {
        return;
    }
    if let Err(e) = store.expire_silent_agents(&actor.next_operation(), after.unsigned_abs()).await {
        tracing::warn!(error = %e, "marking silent agents offline");
    }
}

/// Runs one query for project `project_id`; `actor` is the console's, for
/// the housekeeping some loads do.
pub async fn fetch(store: &Store, actor: &Actor, project_id: i64, query: Query) -> Result<Loaded, Failure> {
    Ok(match query {
        Query::Board { filter } => Loaded::Board(store.load_board_filtered(project_id, &filter, FIRST_PAGE).await?),
        Query::LaneWindow { lane_id, filter, offset } => {
            let cards = store.lane_cards(project_id, lane_id, &filter, offset, WINDOW).await?;
            Loaded::LaneWindow { lane_id, offset, cards }
        }
        Query::Inbox { operator } => {
            let tasks = store.inbox_tasks(project_id).await?;
            // Handoffs go to agents; the operator's agent shares their name.
            let handoffs = match crate::domain::agent_handle(&operator) {
                Ok(handle) => store.handoffs_to(project_id, &handle).await?,
                Err(_) => Vec::new(),
            };
            Loaded::Inbox(InboxData { tasks, handoffs })
        }
        Query::Today { today, offline_after } => {
            expire_silent_agents(store, actor, offline_after).await;
            Loaded::Today(TodayData {
                tasks: store.today_tasks(project_id, today).await?,
                agents: store.list_agents().await?,
            })
        }
        Query::Planning { today } => Loaded::Planning(PlanningData {
            cycles: store.list_cycles(project_id, today).await?,
            modules: store.list_modules(project_id).await?,
            pages: store.list_pages(project_id).await?,
        }),
        Query::Delivery => {
            let mut releases = Vec::new();
            for release in store.list_releases(project_id).await? {
                let readiness = store.release_readiness(project_id, &release.name).await?;
                releases.push((release, readiness));
            }
            Loaded::Delivery(DeliveryData {
                environments: store.list_environments(project_id).await?,
                deployments: store.latest_deployments(project_id).await?,
                pipelines: store.list_pipelines(project_id, 100).await?,
                releases,
                review: store.review_queue(project_id).await?,
            })
        }
        Query::Risks { now, stale_after, offline_after } => {
            expire_silent_agents(store, actor, offline_after).await;
            Loaded::Risks {
                risks: store.risks(project_id, now, stale_after, offline_after).await?,
                sync: SyncIssues {
                    conflicts: store.sync_conflicts(project_id, false).await?,
                    dead_letters: crate::sync::queue::dead_letters(store, project_id).await?,
                },
            }
        }
        Query::Recovery => Loaded::Recovery(store.list_snapshots(project_id).await?),
        Query::Settings => Loaded::Settings(SettingsData {
            lanes: store.list_lanes(project_id).await?,
            agents: store.list_agents().await?,
            connections: store.list_connections(project_id).await?,
        }),
        Query::Agents => Loaded::Agents(store.list_agents().await?),
        Query::AuditTail { after_id } => {
            let query = if after_id == 0 {
                AuditQuery { project_id: Some(project_id), limit: AUDIT_PAGE, ..Default::default() }
            } else {
                AuditQuery { project_id: Some(project_id), after_id: Some(after_id), limit: 1000, ..Default::default() }
            };
            let mut entries = store.list_audit(&query).await?;
            if after_id == 0 {
                entries.reverse(); // the drawer keeps entries oldest first
            }
            Loaded::AuditTail(entries)
        }
        Query::AuditOlder { before_id } => {
            let query = AuditQuery {
                project_id: Some(project_id),
                before_id: Some(before_id),
                limit: AUDIT_PAGE,
                ..Default::default()
            };
            let mut entries = store.list_audit(&query).await?;
            entries.reverse();
            Loaded::AuditOlder(entries)
        }
        Query::Detail { key } => {
            let task = store.task_by_key(&key).await?;
            let handoffs = store
                .list_handoffs(&HandoffFilter {
                    project_id: task.project_id,
                    all_states: true,
                    task_key: Some(task.key.clone()),
                    ..Default::default()
                })
                .await?;
            let mappings = store
                .list_mappings(&MappingFilter {
                    project_id: task.project_id,
                    local_key: Some(task.key.clone()),
                    ..Default::default()
                })
                .await?;
            let connections =
                if mappings.is_empty() { Vec::new() } else { store.list_connections(task.project_id).await? };
            let history = store.task_history(&task.key, 200).await?;
            Loaded::Detail(Box::new(DetailData { task, handoffs, mappings, connections, history }))
        }
        Query::Page { slug } => Loaded::Page(store.page_by_slug(project_id, &slug).await?),
        Query::Latest => Loaded::Latest(store.latest_audit_id(project_id).await?),
        Query::SnapshotDiff { id } => {
            let (meta, then) = store.load_snapshot(id).await?;
            let now = store.capture(meta.project_id).await?;
            Loaded::SnapshotDiff { id, diff: Box::new(crate::snapshot::diff::diff(&then, &now)) }
        }
        Query::RestorePlan { id, only } => {
            let options = crate::snapshot::RestoreOptions { dry_run: true, only: only.clone(), ..Default::default() };
            let actor = crate::store::Actor::new("console", crate::domain::Source::Console);
            let report = store.restore_snapshot(&actor, id, &options, &|_| {}).await?;
            Loaded::RestorePlan { report: Box::new(report), only }
        }
        Query::SyncHealth => Loaded::SyncHealth(
            store.sync_health(project_id).await?,
            crate::sync::registry::workers(store, Some(project_id)).await?,
        ),
    })
}
