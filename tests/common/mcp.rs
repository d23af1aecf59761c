//! An MCP client session against an in-process `McpServer` over a pipe, the
//! way `mctl mcp` serves one over stdio. Shared with the benches, which use
//! only part of it.
#![allow(dead_code)]

use mission_control::domain::Project;
use mission_control::mcp::McpServer;
use mission_control::mcp::policy::AgentPolicy;
use mission_control::store::Store;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceError, ServiceExt};
use serde_json::Value;

pub type Client = RunningService<RoleClient, ()>;

/// Starts a server for `handle` in `project` and connects a client to it.
pub async fn connect(store: &Store, project: &Project, handle: &str, policy: AgentPolicy) -> Client {
    let server = McpServer::new(store.clone(), project.clone(), handle, policy).await.expect("the agent exists");
    let (server_end, client_end) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let _ = server.serve(server_end).await;
    });
    ().serve(client_end).await.expect("the session starts")
}

/// Calls a tool with JSON arguments.
pub async fn call(client: &Client, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
    let Value::Object(arguments) = args else { panic!("arguments are an object") };
    client.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments)).await
}

/// A successful call's structured answer.
#[track_caller]
pub fn answer(result: Result<CallToolResult, ServiceError>) -> Value {
    let result = result.expect("the call is answered");
    assert_ne!(result.is_error, Some(true), "the tool failed: {:?}", result.content);
    result.structured_content.expect("a structured answer")
}

/// A tool-level failure's message.
#[track_caller]
pub fn tool_error(result: Result<CallToolResult, ServiceError>) -> String {
    let result = result.expect("the call is answered");
    assert_eq!(result.is_error, Some(true), "expected a tool error: {:?}", result.structured_content);
    result.structured_content.expect("a structured error")["error"].as_str().unwrap_or_default().to_string()
}
