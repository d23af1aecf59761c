//! `mctl mcp --agent HANDLE`: serves the Model Context Protocol on stdin and
//! stdout for one agent in one project. Nothing else may write to stdout
//! here: it carries the protocol (logs go to the log file).

use clap::Args;

use super::Context;
use crate::error::{Error, Result};
use crate::mcp::McpServer;

#[derive(Debug, Args)]
pub struct McpArgs {
    /// The agent this session acts as (it must exist: `mctl agent create`).
    #[arg(long, value_name = "HANDLE")]
    pub agent: String,
}

pub async fn run(ctx: &Context, args: McpArgs) -> Result<()> {
    if ctx.read_only {
        return Err(Error::usage(
            "mctl mcp audits every call, so it cannot run read-only: give the agent `read_only = true` \
             in its [agents.HANDLE] policy instead",
        ));
    }
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    let handle = crate::domain::agent_handle(&args.agent)?;
    let policy = ctx.config.agents.get(&handle).cloned().unwrap_or_default();
    let server = McpServer::new(store, project, &handle, policy).await?;
    server.serve(rmcp::transport::stdio()).await
}
