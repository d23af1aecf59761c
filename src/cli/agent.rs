//! `mctl agent create|list|show|update|heartbeat`.

use clap::Subcommand;

use super::Context;
use super::delivery::age;
use super::output::{self, Table};
use crate::domain::{AgentKind, AgentStatus};
use crate::error::Result;
use crate::store::agents::{AgentUpdate, NewAgent};

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Register a person, AI agent or service.
    Create {
        /// Lowercase handle, like ana or ci-bot.
        handle: String,
        #[arg(long)]
        name: String,
        /// human, ai or service.
        #[arg(long)]
        kind: AgentKind,
        /// How many started tasks the agent takes at once.
        #[arg(long)]
        capacity: Option<i32>,
        /// A skill or label the agent handles (repeatable).
        #[arg(long = "skill")]
        skills: Vec<String>,
    },
    /// List agents with their status, when they were last seen, and their
    /// load (tasks in started lanes of every project) against capacity.
    List,
    /// Show one agent.
    Show { handle: String },
    /// Change an agent.
    Update {
        handle: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        kind: Option<AgentKind>,
        /// available, busy, away or offline.
        #[arg(long)]
        status: Option<AgentStatus>,
        #[arg(long)]
        capacity: Option<i32>,
        /// Replace the skills (repeatable).
        #[arg(long = "skill")]
        skills: Vec<String>,
    },
    /// Record that the agent is alive, optionally setting its status. An
    /// offline agent that heartbeats becomes available.
    Heartbeat {
        handle: String,
        /// available, busy, away or offline.
        #[arg(long)]
        status: Option<AgentStatus>,
    },
}

pub async fn run(ctx: &Context, command: AgentCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        AgentCommand::Create { handle, name, kind, capacity, skills } => {
            let agent = store
                .create_agent(&ctx.actor(), NewAgent { handle, display_name: name, kind, capacity, skills })
                .await?;
            if ctx.json {
                return output::json(&agent);
            }
            output::line(format!("created agent @{} ({})", agent.handle, agent.kind));
        }
        AgentCommand::List => {
            let agents = store.list_agents().await?;
            if ctx.json {
                return output::json(&agents);
            }
            let now = time::OffsetDateTime::now_utc();
            let mut table = Table::new(&["HANDLE", "NAME", "KIND", "STATUS", "LAST SEEN", "LOAD"]);
            for a in &agents {
                table.row([
                    format!("@{}", a.agent.handle),
                    a.agent.display_name.clone(),
                    a.agent.kind.to_string(),
                    a.agent.status.to_string(),
                    a.agent.last_seen_at.map_or_else(|| "never".to_string(), |t| format!("{} ago", age(now, t))),
                    format!("{}/{}", a.in_progress, a.agent.capacity),
                ]);
            }
            table.print();
        }
        AgentCommand::Show { handle } => {
            let agent = store.agent_by_handle(&handle).await?;
            if ctx.json {
                return output::json(&agent);
            }
            output::line(format!("@{}  {}", agent.handle, output::cell(&agent.display_name, 80)));
            output::line(format!("kind: {}  status: {}  capacity: {}", agent.kind, agent.status, agent.capacity));
            if let Some(seen) = agent.last_seen_at {
                output::line(format!("last seen: {} ago", age(time::OffsetDateTime::now_utc(), seen)));
            }
            if !agent.skills.is_empty() {
                output::line(format!("skills: {}", output::cell(&agent.skills.join(", "), 200)));
            }
        }
        AgentCommand::Update { handle, name, kind, status, capacity, skills } => {
            let update = AgentUpdate {
                display_name: name,
                kind,
                status,
                capacity,
                skills: (!skills.is_empty()).then_some(skills),
            };
            let agent = store.update_agent(&ctx.actor(), &handle, update).await?;
            if ctx.json {
                return output::json(&agent);
            }
            output::line(format!("updated agent @{}", agent.handle));
        }
        AgentCommand::Heartbeat { handle, status } => {
            let agent = store.heartbeat(&ctx.actor(), &handle, status).await?;
            if ctx.json {
                return output::json(&agent);
            }
            output::line(format!("@{} is {}, seen now", agent.handle, agent.status));
        }
    }
    Ok(())
}
