//! The entities of the data model as the rest of the program sees them.
//! They serialize to the JSON the CLI prints and the audit log stores, so field
//! names here are part of the scripting contract.

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: String,
    pub settings: serde_json::Value,
    pub dashboard: serde_json::Value,
    pub last_task_number: i64,
    pub archived: bool,
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub position: i32,
    pub wip_limit: Option<i32>,
    pub category: LaneCategory,
    pub role: LaneRole,
    pub visible: bool,
    pub sync: bool,
    /// Non-archived tasks in the lane.
    pub open_count: i32,
}

impl Lane {
    pub fn over_wip_limit(&self) -> bool {
        self.wip_limit.is_some_and(|limit| self.open_count > limit)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub id: i64,
    pub handle: String,
    pub display_name: String,
    pub kind: AgentKind,
    pub status: AgentStatus,
    pub capacity: i32,
    pub skills: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub version: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: i64,
    pub project_id: i64,
    pub key: String,
    pub number: i64,
    pub title: String,
    pub description: String,
    pub lane_id: i64,
    pub lane: String,
    pub lane_category: LaneCategory,
    pub rank: i64,
    pub priority: Priority,
    pub assignee_id: Option<i64>,
    pub assignee: Option<String>,
    pub labels: Vec<String>,
    pub due_on: Option<Date>,
    pub cycle_id: Option<i64>,
    pub cycle: Option<String>,
    pub modules: Vec<String>,
    pub archived: bool,
    pub version: i32,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub id: i64,
    pub project_id: i64,
    pub task_id: i64,
    pub task_key: String,
    pub kind: HandoffKind,
    pub from_agent: Option<String>,
    pub to_agent: String,
    pub reason: String,
    pub needs: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
    pub state: HandoffState,
    pub resolution: String,
    pub opened_by: String,
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

impl Handoff {
    pub fn is_overdue(&self, now: OffsetDateTime) -> bool {
        self.state.is_active() && self.due_at.is_some_and(|due| due < now)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub description: String,
    pub starts_on: Date,
    pub ends_on: Date,
    /// Tasks in the cycle (not archived) and how many of them are in closed lanes.
    pub task_count: i64,
    pub done_count: i64,
}

impl Cycle {
    pub fn phase(&self, today: Date) -> &'static str {
        if today < self.starts_on {
            "upcoming"
        } else if today > self.ends_on {
            "finished"
        } else {
            "current"
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub description: String,
    pub status: ModuleStatus,
    pub lead: Option<String>,
    pub target_on: Option<Date>,
    pub task_count: i64,
    pub done_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub id: i64,
    pub project_id: i64,
    pub slug: String,
    pub title: String,
    pub body: String,
    pub archived: bool,
    pub version: i32,
    pub created_by: String,
    pub updated_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub kind: EnvironmentKind,
    pub url: Option<String>,
    pub position: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub id: i64,
    pub project_id: i64,
    pub provider: String,
    pub external_id: String,
    pub name: String,
    pub git_ref: String,
    pub commit_sha: Option<String>,
    pub status: PipelineStatus,
    pub url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: i64,
    pub project_id: i64,
    pub environment: String,
    pub provider: String,
    pub external_id: String,
    pub git_ref: String,
    pub commit_sha: Option<String>,
    pub status: DeploymentStatus,
    pub url: Option<String>,
    pub release: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub tag: Option<String>,
    pub status: ReleaseStatus,
    pub git_ref: Option<String>,
    pub commit_sha: Option<String>,
    pub target_on: Option<Date>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub released_at: Option<OffsetDateTime>,
    pub url: Option<String>,
    pub notes: String,
    pub task_keys: Vec<String>,
}

/// Whether a release can ship: every linked task is in a completed lane and the
/// latest run of every pipeline on the release's commit (or ref) succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseReadiness {
    pub release: String,
    pub ready: bool,
    pub tasks_total: i64,
    pub tasks_done: i64,
    pub open_tasks: Vec<String>,
    pub pipelines_total: i64,
    pub pipelines_green: i64,
    pub failing_pipelines: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: i64,
    pub project_id: i64,
    pub key: String,
    pub provider: Provider,
    pub base_url: String,
    pub config: serde_json::Value,
    /// `env:NAME` or `file:/path`: where the secret is, never the secret.
    pub secret_ref: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub id: i64,
    pub project_id: i64,
    pub connection: String,
    pub local_kind: LocalKind,
    pub local_id: i64,
    /// The local object's human key (task key, slug, name) when it has one.
    pub local_key: Option<String>,
    pub external_id: String,
    pub external_key: Option<String>,
    pub url: Option<String>,
    pub sync_state: SyncState,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_synced_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub project_id: Option<i64>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub source: Source,
    pub action: String,
    pub entity_kind: String,
    pub entity_id: Option<i64>,
    pub entity_key: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub correlation_id: uuid::Uuid,
    pub reason: Option<String>,
    /// The PostgreSQL role that wrote the entry (`session_user`, recorded by
    /// the database); `actor` is the name the client gave.
    #[serde(default)]
    pub db_role: Option<String>,
}

impl AuditEntry {
    /// The fields that differ between before and after, as
    /// `field: old → new; …` (bookkeeping fields left out).
    pub fn summary(&self) -> String {
        let (Some(before), Some(after)) =
            (self.before.as_ref().and_then(|b| b.as_object()), self.after.as_ref().and_then(|a| a.as_object()))
        else {
            return String::new();
        };
        const NOISE: &[&str] =
            &["version", "updated_at", "rank", "lane_id", "assignee_id", "cycle_id", "lane_category"];
        let brief = |value: &serde_json::Value| match value {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => super::text::clip(s, 40).into_owned(),
            other => super::text::clip(&other.to_string(), 40).into_owned(),
        };
        let mut parts = Vec::new();
        for (key, new) in after {
            if NOISE.contains(&key.as_str()) {
                continue;
            }
            let old = before.get(key).unwrap_or(&serde_json::Value::Null);
            if old != new {
                parts.push(format!("{key}: {} → {}", brief(old), brief(new)));
            }
        }
        if parts.is_empty() && before.get("rank") != after.get("rank") {
            parts.push("reordered".into());
        }
        parts.join("; ")
    }
}

/// A stored snapshot, without its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub id: i64,
    pub project_id: i64,
    pub format_version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub label: String,
    pub reason: String,
    pub counts: serde_json::Value,
    pub size_bytes: i64,
    pub checksum: String,
}
