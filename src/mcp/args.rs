//! The arguments of each MCP tool. Their JSON schemas are what clients see
//! in `tools/list`; unknown fields are refused so a misspelt argument is an
//! error, not a silently ignored filter.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadBoard {
    /// Only this lane (by name).
    pub lane: Option<String>,
    /// Text in the title or key.
    pub text: Option<String>,
    /// Assignee handle.
    pub assignee: Option<String>,
    /// Only tasks with this label.
    pub label: Option<String>,
    /// urgent, high, medium, low or none.
    #[schemars(extend("enum" = ["urgent", "high", "medium", "low", "none", null]))]
    pub priority: Option<String>,
    /// Tasks listed per lane, 1 to 200 (default 20); counts are always complete.
    #[schemars(range(min = 1, max = 200))]
    pub limit_per_lane: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    /// Task key, e.g. OPS-12.
    pub key: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// One line, at most 500 characters.
    pub title: String,
    /// Markdown.
    pub description: Option<String>,
    /// Lane name (default: the project's first backlog lane).
    pub lane: Option<String>,
    /// urgent, high, medium, low or none.
    #[schemars(extend("enum" = ["urgent", "high", "medium", "low", "none", null]))]
    pub priority: Option<String>,
    /// Labels, e.g. ["bug", "ci"].
    pub labels: Option<Vec<String>>,
    /// Due date, YYYY-MM-DD.
    pub due_on: Option<String>,
    /// Assignee handle.
    pub assignee: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTask {
    /// Task key, e.g. OPS-12.
    pub key: String,
    /// Destination lane name.
    pub lane: String,
    /// The version read with the task; the move is refused if it changed since.
    #[schemars(range(min = 1))]
    pub expected_version: i32,
    /// top or bottom of the lane (default bottom).
    #[schemars(extend("enum" = ["top", "bottom", null]))]
    pub position: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDescription {
    /// Task key, e.g. OPS-12.
    pub key: String,
    /// The new description (markdown); replaces the old one.
    pub description: String,
    /// The version read with the task; the update is refused if it changed since.
    #[schemars(range(min = 1))]
    pub expected_version: i32,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentTask {
    /// Task key, e.g. OPS-12.
    pub key: String,
    /// The comment; it goes into the task's history.
    pub text: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenHandoff {
    /// Task key, e.g. OPS-12.
    pub key: String,
    /// Handle of the agent the work goes to.
    pub to: String,
    /// transfer or blocked.
    #[schemars(extend("enum" = ["transfer", "blocked"]))]
    pub kind: String,
    /// Why the work changes hands, in a sentence.
    pub reason: String,
    /// What the receiver needs to know or do.
    pub needs: Option<String>,
    /// When it is due, RFC 3339 (e.g. 2026-12-01T09:00:00Z).
    pub due_at: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateHandoff {
    /// Handoff id, as read_task lists them.
    #[schemars(range(min = 1))]
    pub id: i64,
    /// accepted or rejected (by the receiver), resolved (by either side), or
    /// cancelled (withdrawn by the agent that opened it).
    #[schemars(extend("enum" = ["accepted", "resolved", "rejected", "cancelled"]))]
    pub state: String,
    /// A note recorded with the answer.
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportPipeline {
    /// The pipeline's name, e.g. "ci" or "nightly".
    pub name: String,
    /// Branch or tag.
    pub git_ref: String,
    /// queued, running, success, failed, cancelled or skipped.
    #[schemars(extend("enum" = ["queued", "running", "success", "failed", "cancelled", "skipped"]))]
    pub status: String,
    /// The run's id in the reporting system (default: name@ref@commit).
    pub external_id: Option<String>,
    /// The commit the run built.
    pub commit_sha: Option<String>,
    /// A link to the run.
    pub url: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportDeployment {
    /// Environment name, e.g. production (made if new).
    pub environment: String,
    /// Branch or tag deployed.
    pub git_ref: String,
    /// pending, in_progress, success, failed, cancelled or inactive.
    #[schemars(extend("enum" = ["pending", "in_progress", "success", "failed", "cancelled", "inactive"]))]
    pub status: String,
    /// The deployment's id in the reporting system (default: environment@ref@commit).
    pub external_id: Option<String>,
    /// The commit deployed.
    pub commit_sha: Option<String>,
    /// A link to the deployment.
    pub url: Option<String>,
    /// Release name it ships, if any.
    pub release: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRef {
    /// Release name.
    pub release: String,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineRef {
    /// Pipeline run id, as read_pipelines lists it.
    #[schemars(range(min = 1))]
    pub pipeline_id: i64,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadPipelines {
    /// Only the failing ones: the latest run of each pipeline and ref, when it failed.
    pub failed_only: Option<bool>,
    /// At most this many, 1 to 200 (default 50).
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageRef {
    /// The page's slug, as resources/list names it.
    pub slug: String,
}

#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}
