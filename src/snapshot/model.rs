//! What a snapshot holds: every row that belongs to one project, as plain
//! records independent of the domain types (so the format only changes on
//! purpose), and its canonical encoding.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Date, OffsetDateTime};

/// The format written today. Older payloads are upgraded on read (see [`super::format`]).
pub const FORMAT_VERSION: i32 = 2;
pub const FORMAT_NAME: &str = "mission-control-snapshot";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotData {
    pub project: ProjectRow,
    pub lanes: Vec<LaneRow>,
    /// Agents referenced by the project's tasks, handoffs and modules.
    pub agents: Vec<AgentRow>,
    pub cycles: Vec<CycleRow>,
    pub modules: Vec<ModuleRow>,
    pub tasks: Vec<TaskRow>,
    pub handoffs: Vec<HandoffRow>,
    pub pages: Vec<PageRow>,
    pub environments: Vec<EnvironmentRow>,
    pub releases: Vec<ReleaseRow>,
    pub pipelines: Vec<PipelineRow>,
    pub deployments: Vec<DeploymentRow>,
    /// Connection metadata and secret *references* only.
    pub connections: Vec<ConnectionRow>,
    pub mappings: Vec<MappingRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub description: String,
    pub settings: serde_json::Value,
    pub dashboard: serde_json::Value,
    pub last_task_number: i64,
    pub archived: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneRow {
    pub id: i64,
    pub name: String,
    pub position: i32,
    pub wip_limit: Option<i32>,
    pub category: String,
    pub role: String,
    pub visible: bool,
    pub sync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentRow {
    pub id: i64,
    pub handle: String,
    pub display_name: String,
    pub kind: String,
    pub capacity: i32,
    pub skills: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub starts_on: Date,
    pub ends_on: Date,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub status: String,
    pub lead_agent_id: Option<i64>,
    pub target_on: Option<Date>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRow {
    pub id: i64,
    pub number: i64,
    pub key: String,
    pub title: String,
    pub description: String,
    pub lane_id: i64,
    pub rank: i64,
    pub priority: String,
    pub assignee_id: Option<i64>,
    pub labels: Vec<String>,
    pub due_on: Option<Date>,
    pub cycle_id: Option<i64>,
    /// Module memberships, ascending.
    pub module_ids: Vec<i64>,
    pub archived: bool,
    pub version: i32,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffRow {
    pub id: i64,
    pub task_id: i64,
    pub kind: String,
    pub from_agent_id: Option<i64>,
    pub to_agent_id: i64,
    pub reason: String,
    pub needs: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
    pub state: String,
    pub resolution: String,
    pub opened_by: String,
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageRow {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub body: String,
    pub archived: bool,
    pub version: i32,
    pub created_by: String,
    pub updated_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRow {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    pub position: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRow {
    pub id: i64,
    pub name: String,
    pub tag: Option<String>,
    pub provider: String,
    pub external_id: Option<String>,
    pub status: String,
    pub git_ref: Option<String>,
    pub commit_sha: Option<String>,
    pub target_on: Option<Date>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub released_at: Option<OffsetDateTime>,
    pub url: Option<String>,
    pub notes: String,
    /// Linked tasks, ascending.
    pub task_ids: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineRow {
    pub id: i64,
    pub provider: String,
    pub external_id: String,
    pub name: String,
    pub git_ref: String,
    pub commit_sha: Option<String>,
    pub status: String,
    pub url: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRow {
    pub id: i64,
    pub environment_id: i64,
    pub provider: String,
    pub external_id: String,
    pub git_ref: String,
    pub commit_sha: Option<String>,
    pub status: String,
    pub url: Option<String>,
    pub release_id: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRow {
    pub id: i64,
    pub key: String,
    pub provider: String,
    pub base_url: String,
    pub config: serde_json::Value,
    pub secret_ref: Option<String>,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRow {
    pub id: i64,
    pub connection_id: i64,
    pub local_kind: String,
    pub local_id: i64,
    pub external_id: String,
    pub external_key: Option<String>,
    pub url: Option<String>,
    pub base: Option<serde_json::Value>,
    pub remote_version: Option<String>,
    pub sync_state: String,
}

/// The kinds a snapshot holds, in restore order (parents before children).
pub const KINDS: &[&str] = &[
    "project",
    "agents",
    "lanes",
    "cycles",
    "modules",
    "tasks",
    "handoffs",
    "pages",
    "environments",
    "releases",
    "pipelines",
    "deployments",
    "connections",
    "mappings",
];

impl SnapshotData {
    /// Rows per kind, as stored in the snapshot's `counts`.
    pub fn counts(&self) -> serde_json::Value {
        serde_json::json!({
            "lanes": self.lanes.len(),
            "agents": self.agents.len(),
            "cycles": self.cycles.len(),
            "modules": self.modules.len(),
            "tasks": self.tasks.len(),
            "handoffs": self.handoffs.len(),
            "pages": self.pages.len(),
            "environments": self.environments.len(),
            "releases": self.releases.len(),
            "pipelines": self.pipelines.len(),
            "deployments": self.deployments.len(),
            "connections": self.connections.len(),
            "mappings": self.mappings.len(),
        })
    }

    /// The canonical encoding: compact JSON, fields in declaration order, rows
    /// by id. The same data always encodes to the same bytes.
    pub fn canonical(&self) -> Vec<u8> {
        // Captures and decoded payloads are already in order: skip the copy.
        if self.is_sorted() {
            return serde_json::to_vec(self).expect("snapshot data always encodes");
        }
        let mut data = self.clone();
        data.sort();
        serde_json::to_vec(&data).expect("snapshot data always encodes")
    }

    fn is_sorted(&self) -> bool {
        fn by_id<T>(rows: &[T], id: impl Fn(&T) -> i64) -> bool {
            rows.windows(2).all(|w| id(&w[0]) <= id(&w[1]))
        }
        by_id(&self.lanes, |r| r.id)
            && by_id(&self.agents, |r| r.id)
            && by_id(&self.cycles, |r| r.id)
            && by_id(&self.modules, |r| r.id)
            && by_id(&self.tasks, |r| r.id)
            && self.tasks.iter().all(|t| t.module_ids.is_sorted())
            && by_id(&self.handoffs, |r| r.id)
            && by_id(&self.pages, |r| r.id)
            && by_id(&self.environments, |r| r.id)
            && by_id(&self.releases, |r| r.id)
            && self.releases.iter().all(|r| r.task_ids.is_sorted())
            && by_id(&self.pipelines, |r| r.id)
            && by_id(&self.deployments, |r| r.id)
            && by_id(&self.connections, |r| r.id)
            && by_id(&self.mappings, |r| r.id)
    }

    pub fn sort(&mut self) {
        self.lanes.sort_by_key(|r| r.id);
        self.agents.sort_by_key(|r| r.id);
        self.cycles.sort_by_key(|r| r.id);
        self.modules.sort_by_key(|r| r.id);
        self.tasks.sort_by_key(|r| r.id);
        for task in &mut self.tasks {
            task.module_ids.sort_unstable();
        }
        self.handoffs.sort_by_key(|r| r.id);
        self.pages.sort_by_key(|r| r.id);
        self.environments.sort_by_key(|r| r.id);
        self.releases.sort_by_key(|r| r.id);
        for release in &mut self.releases {
            release.task_ids.sort_unstable();
        }
        self.pipelines.sort_by_key(|r| r.id);
        self.deployments.sort_by_key(|r| r.id);
        self.connections.sort_by_key(|r| r.id);
        self.mappings.sort_by_key(|r| r.id);
    }
}

/// SHA-256 of the canonical encoding, as lowercase hex.
pub fn checksum(canonical: &[u8]) -> String {
    let digest = Sha256::digest(canonical);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
