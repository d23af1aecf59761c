//! The MCP tools. Each one checks the agent's policy first ([`McpServer::admit`],
//! with the [`Effect`] it has on the board), validates its input like the CLI
//! does, goes through the repository layer under the agent's identity, and
//! answers JSON (see [`super::views`]).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{ErrorData, tool, tool_router};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::args::*;
use super::policy::Access;
use super::views::{self, sanitize};
use super::{McpServer, failed, internal};
use crate::domain::{DeploymentStatus, HandoffKind, HandoffState, PipelineStatus, Priority, Task, text};
use crate::store::board::CardFilter;
use crate::store::delivery::{DeploymentReport, PipelineReport};
use crate::store::dispatch::DispatchOutcome;
use crate::store::handoffs::{HandoffFilter, NewHandoff};
use crate::store::integrations::MappingFilter;
use crate::store::tasks::{NewTask, Position, TaskEdit};
use crate::store::{Actor, StoreError};

type Answer = Result<CallToolResult, ErrorData>;

/// Most history entries `read_task` returns.
const HISTORY_LIMIT: i64 = 50;

fn invalid(message: impl std::fmt::Display) -> ErrorData {
    ErrorData::invalid_params(message.to_string(), None)
}

fn parse<T: std::str::FromStr>(raw: Option<&str>) -> Result<Option<T>, ErrorData>
where
    T::Err: std::fmt::Display,
{
    raw.map(|r| r.parse::<T>().map_err(invalid)).transpose()
}

/// A report's id: the one given, else `what@ref@commit`, so reporting the
/// same run twice updates it instead of adding another.
fn report_id(given: &Option<String>, what: &str, git_ref: &str, commit: &Option<String>) -> String {
    given.clone().unwrap_or_else(|| format!("{}@{}@{}", what.trim(), git_ref.trim(), commit.as_deref().unwrap_or("")))
}

fn ok(value: impl Serialize) -> Answer {
    Ok(CallToolResult::structured(
        serde_json::to_value(value).map_err(|e| internal(StoreError::Database(e.to_string())))?,
    ))
}

fn as_value(args: &impl Serialize) -> Value {
    serde_json::to_value(args).unwrap_or(Value::Null)
}

/// Runs a write under the agent's identity; repository errors become MCP errors.
macro_rules! attempt {
    ($call:expr) => {
        match $call.await {
            Ok(value) => value,
            Err(e) => return failed(e),
        }
    };
}

/// Checks the policy; a refusal is the tool's answer.
macro_rules! admit {
    ($self:ident, $tool:literal, $effect:expr, $args:expr) => {
        match $self.admit($tool, $effect, &as_value($args)).await {
            Ok(actor) => actor,
            Err(refusal) => return Ok(refusal),
        }
    };
}

/// What a tool does to the board, declared where it is admitted: the policy
/// checks the tool and, for an effect that puts a task into a lane, that lane.
#[derive(Debug, Clone, Copy)]
pub(super) enum Effect<'a> {
    Reads,
    /// Writes that put no task into a lane (comments, handoffs, reports).
    Writes,
    /// Puts a task into this lane (by name).
    IntoLane(&'a str),
    /// Creates a task in the project's default lane.
    IntoDefaultLane,
    /// Moves a task into the project's first started lane (a claim).
    IntoFirstStartedLane,
}

impl Effect<'_> {
    pub(super) fn access(self) -> Access {
        match self {
            Effect::Reads => Access::Read,
            _ => Access::Write,
        }
    }
}

/// Every tool and whether it writes: what `tools/list` filters by and what
/// [`McpServer::admit`] holds each call to. A tool missing here is refused
/// (and a test fails), so a new tool cannot skip the policy.
pub(super) const EFFECTS: &[(&str, Access)] = &[
    ("read_board", Access::Read),
    ("read_task", Access::Read),
    ("read_pipelines", Access::Read),
    ("release_readiness", Access::Read),
    ("review_queue", Access::Read),
    ("read_page", Access::Read),
    ("create_task", Access::Write),
    ("move_task", Access::Write),
    ("update_description", Access::Write),
    ("comment_task", Access::Write),
    ("open_handoff", Access::Write),
    ("update_handoff", Access::Write),
    ("claim_next_task", Access::Write),
    ("report_pipeline", Access::Write),
    ("report_deployment", Access::Write),
    ("create_follow_up", Access::Write),
];

pub(super) fn declared_access(tool: &str) -> Option<Access> {
    EFFECTS.iter().find(|(name, _)| *name == tool).map(|(_, access)| *access)
}

impl McpServer {
    /// A task of this session's project (others are "not found").
    async fn project_task(&self, key: &str) -> Result<Task, StoreError> {
        let task = self.store.task_by_key(key).await?;
        if task.project_id != self.project.id {
            return Err(StoreError::not_found("task", key));
        }
        Ok(task)
    }

    async fn read(&self, actor: &Actor, tool: &str, args: &impl Serialize) -> Result<(), ErrorData> {
        self.audit_read(actor, tool, &as_value(args)).await
    }
}

#[tool_router(router = tool_router, vis = "pub(super)")]
impl McpServer {
    #[tool(
        description = "The board: lanes with task counts and WIP limits, and the first tasks of each lane \
                       (filter by lane, text, assignee, label, priority).",
        annotations(read_only_hint = true)
    )]
    async fn read_board(&self, Parameters(args): Parameters<ReadBoard>) -> Answer {
        let actor = admit!(self, "read_board", Effect::Reads, &args);
        let filter = CardFilter {
            text: args.text.clone().map(|t| text::clip(&t, 200).into_owned()),
            assignee: args.assignee.clone(),
            label: args.label.clone(),
            priority: parse::<Priority>(args.priority.as_deref())?,
        };
        let limit = i64::from(args.limit_per_lane.unwrap_or(20).clamp(1, 200));
        let mut lanes = attempt!(self.store.load_board_filtered(self.project.id, &filter, limit));
        if let Some(only) = &args.lane {
            lanes.retain(|l| l.lane.name.eq_ignore_ascii_case(only.trim()));
            if lanes.is_empty() {
                return failed(StoreError::not_found("lane", only));
            }
        }
        self.read(&actor, "read_board", &args).await?;
        ok(views::board(&lanes))
    }

    #[tool(
        description = "One task in full: fields, version, handoffs, links to provider copies, and its history \
                       (changes and comments).",
        annotations(read_only_hint = true)
    )]
    async fn read_task(&self, Parameters(args): Parameters<TaskRef>) -> Answer {
        let actor = admit!(self, "read_task", Effect::Reads, &args);
        let task = attempt!(self.project_task(&args.key));
        let handoffs = HandoffFilter {
            project_id: self.project.id,
            all_states: true,
            task_key: Some(task.key.clone()),
            ..HandoffFilter::default()
        };
        let mappings =
            MappingFilter { project_id: self.project.id, connection: None, local_key: Some(task.key.clone()) };
        let (handoffs, mappings, history) = tokio::try_join!(
            self.store.list_handoffs(&handoffs),
            self.store.list_mappings(&mappings),
            self.store.task_history(&task.key, HISTORY_LIMIT),
        )
        .map_err(internal)?;
        self.read(&actor, "read_task", &args).await?;
        ok(views::task(&task, &handoffs, &mappings, &history))
    }

    #[tool(description = "Creates a task (in the first backlog lane unless a lane is given).")]
    async fn create_task(&self, Parameters(args): Parameters<CreateTask>) -> Answer {
        // Without a lane the task goes to the default one: the policy applies to that too.
        let effect = args.lane.as_deref().map_or(Effect::IntoDefaultLane, Effect::IntoLane);
        let actor = admit!(self, "create_task", effect, &args);
        let lane = match &args.lane {
            Some(lane) => lane.clone(),
            None => attempt!(self.store.default_lane(self.project.id)).name,
        };
        let due_on = match args.due_on.as_deref() {
            Some(raw) => Some(crate::cli::parse::date(raw).map_err(invalid)?),
            None => None,
        };
        let new = NewTask {
            title: sanitize(&args.title),
            description: sanitize(args.description.as_deref().unwrap_or_default()),
            lane: Some(lane),
            priority: parse::<Priority>(args.priority.as_deref())?,
            assignee: args.assignee.clone(),
            labels: args.labels.clone().unwrap_or_default(),
            due_on,
            ..NewTask::default()
        };
        ok(attempt!(self.store.create_task(&actor, self.project.id, new)))
    }

    #[tool(description = "Moves a task to a lane (top or bottom), if its version is still the one you read.")]
    async fn move_task(&self, Parameters(args): Parameters<MoveTask>) -> Answer {
        let actor = admit!(self, "move_task", Effect::IntoLane(&args.lane), &args);
        let position = match args.position.as_deref().map(|p| p.trim().to_ascii_lowercase()) {
            None => Position::Bottom,
            Some(p) if p == "bottom" => Position::Bottom,
            Some(p) if p == "top" => Position::Top,
            Some(_) => return Err(invalid("invalid position: use top or bottom")),
        };
        let task = attempt!(self.project_task(&args.key));
        let moved = self.store.move_task(&actor, &task.key, Some(&args.lane), position, Some(args.expected_version));
        ok(attempt!(moved))
    }

    #[tool(description = "Replaces a task's description (markdown), if its version is still the one you read.")]
    async fn update_description(&self, Parameters(args): Parameters<UpdateDescription>) -> Answer {
        let actor = admit!(self, "update_description", Effect::Writes, &args);
        let task = attempt!(self.project_task(&args.key));
        let edit = TaskEdit { description: Some(sanitize(&args.description)), ..TaskEdit::default() };
        ok(attempt!(self.store.edit_task(&actor, &task.key, edit, Some(args.expected_version))))
    }

    #[tool(description = "Adds a comment to a task's history (the task itself is not changed).")]
    async fn comment_task(&self, Parameters(args): Parameters<CommentTask>) -> Answer {
        let actor = admit!(self, "comment_task", Effect::Writes, &args);
        let task = attempt!(self.project_task(&args.key));
        let entry = attempt!(self.store.comment_task(&actor, &task.key, &sanitize(&args.text)));
        ok(json!({ "task": task.key, "audit_id": entry }))
    }

    #[tool(description = "Opens a handoff on a task: a transfer of the work, or blocked work waiting on someone.")]
    async fn open_handoff(&self, Parameters(args): Parameters<OpenHandoff>) -> Answer {
        let actor = admit!(self, "open_handoff", Effect::Writes, &args);
        let kind = args.kind.parse::<HandoffKind>().map_err(invalid)?;
        let due_at = args
            .due_at
            .as_deref()
            .map(|raw| {
                OffsetDateTime::parse(raw.trim(), &Rfc3339)
                    .map_err(|_| invalid("invalid due_at: use RFC 3339, e.g. 2026-12-01T09:00:00Z"))
            })
            .transpose()?;
        let task = attempt!(self.project_task(&args.key));
        let new = NewHandoff {
            task_key: task.key,
            kind,
            from: Some(self.agent.handle.clone()),
            to: args.to.clone(),
            reason: sanitize(&args.reason),
            needs: sanitize(args.needs.as_deref().unwrap_or_default()),
            due_at,
        };
        ok(attempt!(self.store.open_handoff(&actor, new)))
    }

    #[tool(description = "Answers a handoff (by id, as read_task lists them): the receiver accepts or rejects it, \
                       either side resolves it, and the agent that opened it may cancel (withdraw) it.")]
    async fn update_handoff(&self, Parameters(args): Parameters<UpdateHandoff>) -> Answer {
        let actor = admit!(self, "update_handoff", Effect::Writes, &args);
        let state = args.state.parse::<HandoffState>().map_err(invalid)?;
        let handoff = attempt!(self.store.handoff_by_id(args.id));
        if handoff.project_id != self.project.id {
            return failed(StoreError::not_found("handoff", args.id));
        }
        let me = self.agent.handle.as_str();
        let receiver = me == handoff.to_agent;
        let opener = handoff.from_agent.as_deref() == Some(me);
        let allowed = match state {
            HandoffState::Accepted | HandoffState::Rejected => receiver,
            HandoffState::Resolved => receiver || opener,
            HandoffState::Cancelled => opener,
            HandoffState::Open => return Err(invalid("invalid state: use accepted, rejected, resolved or cancelled")),
        };
        if !allowed {
            let reason = match state {
                HandoffState::Cancelled => {
                    format!("handoff {} was opened by someone else: only they can cancel it", handoff.id)
                }
                _ => format!(
                    "handoff {} is addressed to {}: only they can {} it",
                    handoff.id,
                    handoff.to_agent,
                    if state == HandoffState::Resolved { "resolve (with its opener)" } else { "answer" }
                ),
            };
            return Ok(self.deny("update_handoff", &reason, &as_value(&args)).await);
        }
        let note = sanitize(args.note.as_deref().unwrap_or_default());
        ok(attempt!(self.store.transition_handoff(&actor, args.id, state, &note, None)))
    }

    #[tool(description = "Claims the highest-priority ready task this agent can take (its skills, its capacity): \
                       the task moves to the first in-progress lane, assigned to this agent. Concurrent claims \
                       never get the same task.")]
    async fn claim_next_task(&self, Parameters(args): Parameters<NoArgs>) -> Answer {
        let actor = admit!(self, "claim_next_task", Effect::IntoFirstStartedLane, &args);
        let outcome = attempt!(self.store.dispatch_next(&actor, self.project.id, &self.agent.handle));
        ok(match outcome {
            DispatchOutcome::Claimed(task) => json!({ "claimed": true, "task": task }),
            DispatchOutcome::NothingReady => {
                json!({ "claimed": false, "reason": "nothing is ready that this agent can take" })
            }
            DispatchOutcome::AtCapacity { in_progress, capacity } => json!({
                "claimed": false,
                "reason": format!("at capacity ({in_progress}/{capacity}): finish or hand off work first"),
            }),
            DispatchOutcome::Unavailable { status } => json!({
                "claimed": false,
                "reason": format!("the agent is {status}: an operator sets it available with `mctl agent heartbeat`"),
            }),
        })
    }

    #[tool(description = "Reports a pipeline run's state (upserted by its id: reporting twice changes nothing).")]
    async fn report_pipeline(&self, Parameters(args): Parameters<ReportPipeline>) -> Answer {
        let actor = admit!(self, "report_pipeline", Effect::Writes, &args);
        let status = args.status.parse::<PipelineStatus>().map_err(invalid)?;
        // Names are shown in the console and to other agents: no control or bidi characters.
        let (name, git_ref) = (sanitize(&args.name), sanitize(&args.git_ref));
        let external_id = report_id(&args.external_id, &name, &git_ref, &args.commit_sha);
        let report = PipelineReport {
            provider: "agent".into(),
            external_id,
            name,
            git_ref,
            commit_sha: args.commit_sha.clone(),
            status,
            url: args.url.clone(),
            started_at: None,
            finished_at: None,
        };
        ok(attempt!(self.store.report_pipeline(&actor, self.project.id, report)))
    }

    #[tool(description = "Reports a deployment's state to an environment (upserted by its id).")]
    async fn report_deployment(&self, Parameters(args): Parameters<ReportDeployment>) -> Answer {
        let actor = admit!(self, "report_deployment", Effect::Writes, &args);
        let status = args.status.parse::<DeploymentStatus>().map_err(invalid)?;
        let (environment, git_ref) = (sanitize(&args.environment), sanitize(&args.git_ref));
        let external_id = report_id(&args.external_id, &environment, &git_ref, &args.commit_sha);
        let report = DeploymentReport {
            environment,
            provider: "agent".into(),
            external_id,
            git_ref,
            commit_sha: args.commit_sha.clone(),
            status,
            url: args.url.clone(),
            release: args.release.as_deref().map(sanitize),
            started_at: None,
            finished_at: None,
        };
        ok(attempt!(self.store.report_deployment(&actor, self.project.id, report)))
    }

    #[tool(
        description = "Recent pipeline runs, newest first, or only the failing ones.",
        annotations(read_only_hint = true)
    )]
    async fn read_pipelines(&self, Parameters(args): Parameters<ReadPipelines>) -> Answer {
        let actor = admit!(self, "read_pipelines", Effect::Reads, &args);
        let limit = i64::from(args.limit.unwrap_or(50).clamp(1, 200));
        let pipelines = if args.failed_only.unwrap_or(false) {
            // The latest run of each pipeline and ref, when it failed: a
            // failure a later run fixed is not failing any more.
            attempt!(self.store.failing_pipelines(self.project.id, limit))
        } else {
            attempt!(self.store.list_pipelines(self.project.id, limit))
        };
        self.read(&actor, "read_pipelines", &args).await?;
        ok(json!({ "pipelines": pipelines }))
    }

    #[tool(
        description = "Whether a release is ready: its linked tasks done and its pipelines green.",
        annotations(read_only_hint = true)
    )]
    async fn release_readiness(&self, Parameters(args): Parameters<ReleaseRef>) -> Answer {
        let actor = admit!(self, "release_readiness", Effect::Reads, &args);
        let readiness = attempt!(self.store.release_readiness(self.project.id, &args.release));
        self.read(&actor, "release_readiness", &args).await?;
        ok(readiness)
    }

    #[tool(
        description = "Tasks waiting for review (in review lanes), oldest first.",
        annotations(read_only_hint = true)
    )]
    async fn review_queue(&self, Parameters(args): Parameters<NoArgs>) -> Answer {
        let actor = admit!(self, "review_queue", Effect::Reads, &args);
        let tasks = attempt!(self.store.review_queue(self.project.id));
        self.read(&actor, "review_queue", &args).await?;
        ok(json!({ "tasks": tasks }))
    }

    #[tool(description = "Creates a high-priority follow-up task from a failed pipeline run.")]
    async fn create_follow_up(&self, Parameters(args): Parameters<PipelineRef>) -> Answer {
        let actor = admit!(self, "create_follow_up", Effect::IntoDefaultLane, &args);
        ok(attempt!(self.store.create_follow_up(&actor, self.project.id, args.pipeline_id)))
    }

    #[tool(description = "A knowledge page (markdown) by its slug.", annotations(read_only_hint = true))]
    async fn read_page(&self, Parameters(args): Parameters<PageRef>) -> Answer {
        let actor = admit!(self, "read_page", Effect::Reads, &args);
        let page = attempt!(self.store.page_by_slug(self.project.id, &args.slug));
        if page.archived {
            return failed(StoreError::not_found("page", &args.slug));
        }
        self.read(&actor, "read_page", &args).await?;
        ok(json!({ "slug": page.slug, "title": page.title, "version": page.version, "body": page.body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tool the router serves is declared in [`EFFECTS`] and the other
    /// way round: a new tool cannot be served without saying whether it
    /// writes, which is what its policy check and `tools/list` go by.
    #[test]
    fn every_tool_declares_its_effect() {
        let mut served: Vec<String> = McpServer::tool_router().list_all().into_iter().map(|t| t.name.into()).collect();
        let mut declared: Vec<String> = EFFECTS.iter().map(|(name, _)| name.to_string()).collect();
        served.sort();
        declared.sort();
        assert_eq!(served, declared);
    }

    /// The annotations clients see agree with the declared effect.
    #[test]
    fn read_only_hints_match_the_declared_effects() {
        for tool in McpServer::tool_router().list_all() {
            let hinted = tool.annotations.as_ref().and_then(|a| a.read_only_hint).unwrap_or(false);
            assert_eq!(hinted, declared_access(&tool.name) == Some(Access::Read), "{}", tool.name);
        }
    }
}
