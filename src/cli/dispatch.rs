//! `mctl dispatch next`: an agent claims its next task.

use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::output;
use crate::error::{Error, Result};
use crate::store::dispatch::DispatchOutcome;

#[derive(Debug, Subcommand)]
pub enum DispatchCommand {
    /// Claim the highest-priority ready task the agent can take: it moves to
    /// the first started lane, assigned to the agent. Exits 5 when nothing
    /// was claimed (nothing ready, at capacity, agent away or offline).
    Next {
        /// The claiming agent's handle.
        #[arg(long, value_name = "HANDLE")]
        agent: String,
    },
}

pub async fn run(ctx: &Context, command: DispatchCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        DispatchCommand::Next { agent } => {
            let handle = crate::domain::agent_handle(&agent)?;
            let project = ctx.project(&store).await?;
            let outcome = store.dispatch_next(&ctx.actor(), project.id, &handle).await?;
            let (answer, line) = match &outcome {
                DispatchOutcome::Claimed(task) => {
                    let line = format!(
                        "claimed {} [{}] {} (now in {}, version {})",
                        task.key,
                        task.priority,
                        output::cell(&task.title, 80),
                        task.lane,
                        task.version
                    );
                    (json!({ "outcome": "claimed", "task": task }), line)
                }
                DispatchOutcome::NothingReady => {
                    (json!({ "outcome": "nothing_ready" }), format!("nothing ready for @{handle} in {}", project.key))
                }
                DispatchOutcome::AtCapacity { in_progress, capacity } => (
                    json!({ "outcome": "at_capacity", "in_progress": in_progress, "capacity": capacity }),
                    format!("@{handle} is at capacity ({in_progress}/{capacity}): nothing claimed"),
                ),
                DispatchOutcome::Unavailable { status } => (
                    json!({ "outcome": "unavailable", "status": status }),
                    format!("@{handle} is {status}: nothing claimed"),
                ),
            };
            if ctx.json {
                output::json(&answer)?;
            } else {
                output::line(line);
            }
            if !matches!(outcome, DispatchOutcome::Claimed(_)) {
                return Err(Error::NothingClaimed);
            }
        }
    }
    Ok(())
}
