//! `mctl mcp`: the Model Context Protocol over stdio, so AI agents take part
//! in the board the way operators do in the console, under an agent identity
//! and its policy ([`policy`]).
//!
//! Every tool call is audited with source `agent` and the agent's handle:
//! changes through the repository layer like any other change, reads as an
//! `mcp.<tool>` entry, refusals as `mcp.denied`. Everything about a call's
//! arguments or the state it meets (wrong types, missing fields, text over
//! its limit, denied by policy, a stale version, a task that does not
//! exist, a pipeline that has not failed) is a tool result with
//! `isError: true` and a one-line message saying what to do, as the
//! protocol asks, so the model can read it and correct the call; protocol
//! errors are kept for protocol faults (an unknown tool, a malformed
//! request). Every string that goes out is sanitized ([`views::sanitize`]).

pub mod args;
pub mod policy;
mod tools;
mod validate;
mod views;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult,
    Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool_handler};
use serde_json::{Value, json};

use self::policy::{Access, AgentPolicy};
use self::tools::Effect;
use crate::domain::{Agent, Project, Source, text};
use crate::store::audit::Change;
use crate::store::{Actor, Store, StoreError};

/// How often a busy session refreshes the agent's heartbeat.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// Arguments recorded in an audit entry are clipped to this many characters each.
const AUDITED_ARG_CHARS: usize = 200;

/// One MCP session: an agent working in one project under its policy.
#[derive(Clone)]
pub struct McpServer {
    store: Store,
    project: Project,
    agent: Agent,
    policy: Arc<AgentPolicy>,
    last_heartbeat: Arc<Mutex<Option<Instant>>>,
    tool_router: ToolRouter<McpServer>,
}

impl McpServer {
    /// The session for `handle` in `project`; the agent must exist and its
    /// policy must name only tools that exist.
    pub async fn new(
        store: Store,
        project: Project,
        handle: &str,
        policy: AgentPolicy,
    ) -> Result<McpServer, crate::error::Error> {
        let agent = match store.agent_by_handle(handle).await {
            Ok(agent) => agent,
            Err(StoreError::NotFound { .. }) => {
                return Err(crate::error::Error::usage(format!(
                    "no agent {:?}: create it with `mctl agent create {} --name NAME --kind ai` first",
                    text::clip(handle, 40),
                    text::clip(handle, 40)
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let tool_router = Self::tool_router();
        let names: Vec<String> = tool_router.list_all().into_iter().map(|t| t.name.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        policy.validate(&agent.handle, &names).map_err(crate::error::Error::Config)?;
        Ok(McpServer {
            store,
            project,
            agent,
            policy: Arc::new(policy),
            last_heartbeat: Arc::new(Mutex::new(None)),
            tool_router,
        })
    }

    /// Serves on `transport` (stdin/stdout for `mctl mcp`) until the client
    /// closes it.
    pub async fn serve<T, E, A>(self, transport: T) -> Result<(), crate::error::Error>
    where
        T: rmcp::transport::IntoTransport<RoleServer, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        let running = match ServiceExt::serve(self, transport).await {
            Ok(running) => running,
            // A client that goes away before (or instead of) starting a
            // session, as a probe does, is not a failure of mctl.
            Err(
                rmcp::service::ServerInitializeError::ConnectionClosed(_)
                | rmcp::service::ServerInitializeError::ExpectedInitializeRequest(_),
            ) => {
                tracing::info!("mcp: the client left without starting a session");
                return Ok(());
            }
            Err(e) => {
                return Err(crate::error::Error::usage(format!("the MCP client did not start a session: {e}")));
            }
        };
        running.waiting().await.map_err(|e| crate::error::Error::usage(format!("the MCP session failed: {e}")))?;
        Ok(())
    }

    fn actor(&self) -> Actor {
        Actor::new(self.agent.handle.clone(), Source::Agent)
    }

    /// The policy check every tool starts with: the tool itself, then the
    /// lane its effect puts a task into. A refusal is audited and answered as
    /// a tool error. A tool's effect must match its entry in
    /// [`tools::EFFECTS`], so a write tool cannot pass as a read.
    async fn admit(&self, tool: &str, effect: Effect<'_>, args: &Value) -> Result<Actor, CallToolResult> {
        let access = effect.access();
        if tools::declared_access(tool) != Some(access) {
            // A programming error, refused rather than let through.
            tracing::error!(tool, "mcp: a tool's effect does not match tools::EFFECTS");
            return Err(self.deny(tool, "this tool is not declared with what it does", args).await);
        }
        if let Err(reason) = self.policy.allows_tool(tool, access) {
            return Err(self.deny(tool, &reason, args).await);
        }
        let lane = match effect {
            Effect::Reads | Effect::Writes => None,
            Effect::IntoLane(name) => Some(self.store.lane_by_name(self.project.id, name).await),
            Effect::IntoDefaultLane => Some(self.store.default_lane(self.project.id).await),
            Effect::IntoFirstStartedLane => Some(self.first_started_lane().await),
        };
        match lane {
            None => {}
            Some(Ok(lane)) => {
                if let Err(reason) = self.policy.allows_lane(&lane) {
                    return Err(self.deny(tool, &reason, args).await);
                }
            }
            Some(Err(e)) => return Err(tool_error(&e.to_string())),
        }
        self.heartbeat().await;
        Ok(self.actor())
    }

    /// Where a claim puts its task: the project's first started lane.
    async fn first_started_lane(&self) -> Result<crate::domain::Lane, StoreError> {
        let lanes = self.store.list_lanes(self.project.id).await?;
        lanes
            .into_iter()
            .filter(|l| l.category == crate::domain::LaneCategory::Started)
            .min_by_key(|l| l.position)
            .ok_or_else(|| StoreError::WrongState(format!("{} has no started lane to claim into", self.project.key)))
    }

    /// Refuses a call: an `mcp.denied` audit entry, and the tool error.
    async fn deny(&self, tool: &str, reason: &str, args: &Value) -> CallToolResult {
        let change = Change {
            action: "mcp.denied".into(),
            after: Some(json!({ "tool": tool, "reason": reason, "arguments": audited(args) })),
            ..Change::new("agent", "denied", Some(self.project.id)).entity(self.agent.id, &self.agent.handle)
        };
        if let Err(e) = self.store.record_entry(&self.actor(), change).await {
            tracing::warn!("mcp: auditing a refused call failed: {e}");
        }
        CallToolResult::structured_error(json!({ "error": format!("denied: {reason}"), "denied": true }))
    }

    /// Audits a read: `mcp.<tool>` with the (clipped) arguments.
    async fn audit_read(&self, actor: &Actor, tool: &str, args: &Value) -> Result<(), ErrorData> {
        let change = Change {
            action: format!("mcp.{tool}"),
            after: Some(json!({ "tool": tool, "arguments": audited(args) })),
            ..Change::new("agent", "read", Some(self.project.id)).entity(self.agent.id, &self.agent.handle)
        };
        self.store.record_entry(actor, change).await.map(drop).map_err(internal)
    }

    /// A tool call counts as a heartbeat, at most every [`HEARTBEAT_EVERY`].
    async fn heartbeat(&self) {
        {
            let mut last = self.last_heartbeat.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < HEARTBEAT_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = self.store.heartbeat(&self.actor(), &self.agent.handle, None).await {
            tracing::warn!("mcp: recording the heartbeat failed: {e}");
        }
    }

    fn page_uri(&self, slug: &str) -> String {
        format!("mctl://{}/pages/{slug}", self.project.key)
    }
}

/// Arguments as the audit log keeps them: every string clipped.
fn audited(args: &Value) -> Value {
    match args {
        Value::String(s) => Value::String(text::clip(s, AUDITED_ARG_CHARS).into_owned()),
        Value::Array(items) => Value::Array(items.iter().take(50).map(audited).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), audited(v))).collect()),
        other => other.clone(),
    }
}

/// A failure of the database itself: the call may be retried.
fn internal(e: StoreError) -> ErrorData {
    ErrorData::internal_error(views::sanitize(&e.to_string()), None)
}

/// A tool result saying what was wrong with the call, for the model to read
/// (sanitized with every other result in `call_tool`).
fn tool_error(message: &str) -> CallToolResult {
    CallToolResult::structured_error(json!({ "error": text::clip(message, 500) }))
}

/// Maps a repository error (see the module docs): anything about the
/// arguments or the state is the tool's answer; the database failing is an
/// internal error the client may retry.
fn failed(e: StoreError) -> Result<CallToolResult, ErrorData> {
    match e {
        StoreError::Invalid(_)
        | StoreError::NotFound { .. }
        | StoreError::Conflict { .. }
        | StoreError::AlreadyExists(_)
        | StoreError::WrongState(_)
        | StoreError::Busy(_)
        | StoreError::ReadOnly => Ok(tool_error(&e.to_string())),
        other => Err(internal(other)),
    }
}

/// Every string of a result made safe to print; the text content is
/// rebuilt from the structure only when sanitizing changed it.
fn sanitized(mut result: CallToolResult) -> CallToolResult {
    if let Some(structured) = result.structured_content.as_mut() {
        if views::sanitize_value(structured)
            && let Ok(text) = serde_json::to_string(structured)
        {
            result.content = vec![rmcp::model::ContentBlock::text(text)];
        }
    } else {
        for block in &mut result.content {
            if let Some(text) = block.as_text() {
                *block = rmcp::model::ContentBlock::text(views::sanitize(&text.text));
            }
        }
    }
    result
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    /// Routes a call to its tool after checking its arguments against the
    /// tool's schema (coercing numbers and booleans sent as text). An unknown
    /// tool is a protocol error; everything else is the tool's answer.
    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(tool) = self.tool_router.get(&request.name) else {
            let name = views::sanitize(&request.name);
            return Err(ErrorData::invalid_params(
                format!("unknown tool {:?}: tools/list names them", text::clip(&name, 60)),
                None,
            ));
        };
        let mut args = request.arguments.take().unwrap_or_default();
        let answer = match validate::check(&tool.input_schema, &mut args) {
            Err(message) => Ok(CallToolResponse::Complete(tool_error(&format!("{}: {message}", request.name)))),
            Ok(()) => {
                request.arguments = Some(args);
                let call = ToolCallContext::new(self, request, context);
                match self.tool_router.call(call).await {
                    // What a tool refuses about its arguments is its answer too.
                    Err(e) if e.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
                        Ok(CallToolResponse::Complete(tool_error(&e.message)))
                    }
                    other => other,
                }
            }
        };
        // The one place every answer leaves by: no string goes out unsanitized.
        match answer {
            Ok(CallToolResponse::Complete(result)) => Ok(CallToolResponse::Complete(sanitized(result))),
            Ok(other) => Ok(other),
            Err(mut e) => {
                e.message = views::sanitize(&e.message).into();
                Err(e)
            }
        }
    }

    /// The tools this agent's policy lets it call; the rest are never offered.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        let tools = self
            .tool_router
            .list_all()
            .into_iter()
            .filter(|t| tools::declared_access(&t.name).is_some_and(|a| self.policy.allows_tool(&t.name, a).is_ok()))
            .collect();
        Ok(rmcp::model::ListToolsResult::with_all_items(tools))
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(Implementation::new("mctl", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Mission Control project {} ({}), acting as agent {}. Read the board before moving tasks; \
                 moves and description updates take the task version you read. Knowledge pages are resources \
                 mctl://{}/pages/SLUG.",
                self.project.key, self.project.name, self.agent.handle, self.project.key
            ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        if self.policy.allows_tool("read_page", Access::Read).is_err() {
            return Ok(ListResourcesResult::with_all_items(Vec::new()));
        }
        let pages = self.store.list_pages(self.project.id).await.map_err(internal)?;
        let resources = pages
            .iter()
            .filter(|p| !p.archived)
            .map(|p| {
                Resource::new(self.page_uri(&p.slug), p.slug.clone())
                    .with_title(p.title.clone())
                    .with_mime_type("text/markdown")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(self.page_uri("{slug}"), "page")
            .with_description("A knowledge page of this project, by slug")
            .with_mime_type("text/markdown");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let prefix = self.page_uri("");
        let Some(slug) = request.uri.strip_prefix(&prefix) else {
            return Err(ErrorData::resource_not_found(
                format!("unknown resource {:?}: pages are {prefix}SLUG", text::clip(&request.uri, 100)),
                None,
            ));
        };
        let args = json!({ "uri": request.uri });
        if let Err(reason) = self.policy.allows_tool("read_page", Access::Read) {
            self.deny("read_page", &reason, &args).await;
            return Err(ErrorData::invalid_request(format!("denied: {reason}"), None));
        }
        let actor = self.actor();
        let page = match self.store.page_by_slug(self.project.id, slug).await {
            Ok(page) if !page.archived => page,
            Ok(_) | Err(StoreError::NotFound { .. }) => {
                return Err(ErrorData::resource_not_found(
                    format!("no page {:?} in {}", text::clip(slug, 80), self.project.key),
                    None,
                ));
            }
            Err(StoreError::Invalid(message)) => return Err(ErrorData::invalid_params(message, None)),
            Err(e) => return Err(internal(e)),
        };
        self.audit_read(&actor, "read_resource", &args).await?;
        let contents = ResourceContents::TextResourceContents {
            uri: request.uri.clone(),
            mime_type: Some("text/markdown".into()),
            text: page.body,
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}
