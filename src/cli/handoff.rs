//! `mctl handoff open|list|show|accept|reject|resolve|cancel`.

use clap::Subcommand;
use time::OffsetDateTime;

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::{Handoff, HandoffKind, HandoffState};
use crate::error::Result;
use crate::store::handoffs::{HandoffFilter, NewHandoff};

#[derive(Debug, Subcommand)]
pub enum HandoffCommand {
    /// Hand a task to someone, or say it is blocked on them.
    Open {
        key: String,
        /// Agent handle of the receiver.
        #[arg(long)]
        to: String,
        /// transfer or blocked.
        #[arg(long)]
        kind: HandoffKind,
        #[arg(long)]
        reason: String,
        /// What is needed to unblock or to take over.
        #[arg(long, default_value = "")]
        needs: String,
        /// When it is due: RFC 3339, a date, or a span like 4h or 2d.
        #[arg(long, value_parser = |s: &str| parse::when(s, 1))]
        due: Option<OffsetDateTime>,
        /// Agent handle of the sender (default: the operator's agent, else the assignee).
        #[arg(long)]
        from: Option<String>,
    },
    /// List handoffs (default: open and accepted ones).
    List {
        #[arg(long, conflicts_with = "all")]
        state: Option<HandoffState>,
        /// Every state, including resolved and cancelled.
        #[arg(long)]
        all: bool,
        /// Only those addressed to this agent.
        #[arg(long)]
        to: Option<String>,
        /// Only those addressed to the operator's agent.
        #[arg(long, conflicts_with = "to")]
        mine: bool,
        #[arg(long)]
        task: Option<String>,
    },
    /// Show one handoff.
    Show { id: i64 },
    /// Accept a handoff (a transfer also reassigns the task).
    Accept(Transition),
    /// Reject a handoff.
    Reject(Transition),
    /// Mark an accepted or rejected handoff as resolved.
    Resolve(Transition),
    /// Withdraw a handoff.
    Cancel(Transition),
}

#[derive(Debug, clap::Args)]
pub struct Transition {
    id: i64,
    #[arg(long, default_value = "")]
    note: String,
    #[arg(long)]
    expect_version: Option<i32>,
}

pub async fn run(ctx: &Context, command: HandoffCommand) -> Result<()> {
    let store = ctx.store().await?;
    let actor = ctx.actor();
    let (transition, next) = match command {
        HandoffCommand::Open { key, to, kind, reason, needs, due, from } => {
            let handoff = store
                .open_handoff(&actor, NewHandoff { task_key: key, kind, from, to, reason, needs, due_at: due })
                .await?;
            if ctx.json {
                return output::json(&handoff);
            }
            output::line(format!("opened handoff #{} on {} to @{}", handoff.id, handoff.task_key, handoff.to_agent));
            return Ok(());
        }
        HandoffCommand::List { state, all, to, mine, task } => {
            let project = ctx.project(&store).await?;
            let to = if mine { Some(ctx.operator.clone()) } else { to };
            let handoffs = store
                .list_handoffs(&HandoffFilter { project_id: project.id, state, all_states: all, to, task_key: task })
                .await?;
            if ctx.json {
                return output::json(&handoffs);
            }
            print_handoffs(&handoffs);
            return Ok(());
        }
        HandoffCommand::Show { id } => {
            let h = store.handoff_by_id(id).await?;
            if ctx.json {
                return output::json(&h);
            }
            output::line(format!("handoff #{} on {}: {} [{}]", h.id, h.task_key, h.kind, h.state));
            output::line(format!(
                "from {} to @{}, opened by {} at {}",
                output::or_dash(h.from_agent.as_ref().map(|a| format!("@{a}"))),
                h.to_agent,
                output::cell(&h.opened_by, 40),
                super::audit::short_time(h.created_at)
            ));
            output::line(format!("reason: {}", output::cell(&h.reason, 300)));
            if !h.needs.is_empty() {
                output::line(format!("needs:  {}", output::cell(&h.needs, 300)));
            }
            if let Some(due) = h.due_at {
                let overdue = if h.is_overdue(OffsetDateTime::now_utc()) { " (overdue)" } else { "" };
                output::line(format!("due:    {}{overdue}", super::audit::short_time(due)));
            }
            if !h.resolution.is_empty() {
                output::line(format!("note:   {}", output::cell(&h.resolution, 300)));
            }
            return Ok(());
        }
        HandoffCommand::Accept(t) => (t, HandoffState::Accepted),
        HandoffCommand::Reject(t) => (t, HandoffState::Rejected),
        HandoffCommand::Resolve(t) => (t, HandoffState::Resolved),
        HandoffCommand::Cancel(t) => (t, HandoffState::Cancelled),
    };
    let handoff =
        store.transition_handoff(&actor, transition.id, next, &transition.note, transition.expect_version).await?;
    if ctx.json {
        return output::json(&handoff);
    }
    output::line(format!("handoff #{} on {} is {}", handoff.id, handoff.task_key, handoff.state));
    Ok(())
}

fn print_handoffs(handoffs: &[Handoff]) {
    let now = OffsetDateTime::now_utc();
    let mut table = Table::new(&["ID", "TASK", "KIND", "FROM", "TO", "STATE", "DUE", "REASON"]);
    for h in handoffs {
        let due = match h.due_at {
            Some(due) if h.is_overdue(now) => format!("{} overdue", super::audit::short_time(due)),
            Some(due) => super::audit::short_time(due),
            None => "-".into(),
        };
        table.row([
            format!("#{}", h.id),
            h.task_key.clone(),
            h.kind.to_string(),
            output::or_dash(h.from_agent.as_ref().map(|a| format!("@{a}"))),
            format!("@{}", h.to_agent),
            h.state.to_string(),
            due,
            h.reason.clone(),
        ]);
    }
    table.print();
}
