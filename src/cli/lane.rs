//! `mctl lane list|create|update`.

use clap::Subcommand;

use super::Context;
use super::output::{self, Table};
use crate::domain::{LaneCategory, LaneRole};
use crate::error::Result;
use crate::store::lanes::{LaneUpdate, NewLane};

#[derive(Debug, Subcommand)]
pub enum LaneCommand {
    /// List the project's lanes in board order, with counts and WIP limits.
    List,
    /// Add a lane.
    Create {
        name: String,
        /// backlog, unstarted, started, completed or cancelled.
        #[arg(long, default_value = "unstarted")]
        category: LaneCategory,
        /// normal, review (feeds the review queue) or blocked.
        #[arg(long, default_value = "normal")]
        role: LaneRole,
        /// 1-based position on the board (default: last).
        #[arg(long)]
        position: Option<i32>,
        /// Work-in-progress limit.
        #[arg(long)]
        wip: Option<i32>,
    },
    /// Change a lane.
    Update {
        name: String,
        /// New name.
        #[arg(long = "name", value_name = "NEW_NAME")]
        rename: Option<String>,
        #[arg(long)]
        position: Option<i32>,
        #[arg(long, conflicts_with = "no_wip")]
        wip: Option<i32>,
        /// Remove the WIP limit.
        #[arg(long)]
        no_wip: bool,
        #[arg(long)]
        category: Option<LaneCategory>,
        #[arg(long)]
        role: Option<LaneRole>,
        /// Hide the lane from the board.
        #[arg(long, conflicts_with = "show")]
        hide: bool,
        /// Show a hidden lane again.
        #[arg(long)]
        show: bool,
        /// Whether the sync worker mirrors this lane (on or off).
        #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
        sync: Option<bool>,
    },
}

pub async fn run(ctx: &Context, command: LaneCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    match command {
        LaneCommand::List => {
            let lanes = store.list_lanes(project.id).await?;
            if ctx.json {
                return output::json(&lanes);
            }
            let mut table = Table::new(&["POS", "LANE", "CATEGORY", "ROLE", "TASKS", "WIP", "FLAGS"]);
            for lane in &lanes {
                let mut flags = Vec::new();
                if lane.over_wip_limit() {
                    flags.push("over-limit");
                }
                if !lane.visible {
                    flags.push("hidden");
                }
                if !lane.sync {
                    flags.push("no-sync");
                }
                table.row([
                    lane.position.to_string(),
                    lane.name.clone(),
                    lane.category.to_string(),
                    lane.role.to_string(),
                    lane.open_count.to_string(),
                    output::or_dash(lane.wip_limit.map(|w| w.to_string())),
                    flags.join(","),
                ]);
            }
            table.print();
        }
        LaneCommand::Create { name, category, role, position, wip } => {
            let lane = store
                .create_lane(&ctx.actor(), project.id, NewLane { name, category, role, position, wip_limit: wip })
                .await?;
            if ctx.json {
                return output::json(&lane);
            }
            output::line(format!("created lane {} at position {}", output::cell(&lane.name, 60), lane.position));
        }
        LaneCommand::Update { name, rename, position, wip, no_wip, category, role, hide, show, sync } => {
            let update = LaneUpdate {
                name: rename,
                position,
                wip_limit: if no_wip { Some(None) } else { wip.map(Some) },
                category,
                role,
                visible: if hide {
                    Some(false)
                } else if show {
                    Some(true)
                } else {
                    None
                },
                sync,
            };
            let lane = store.update_lane(&ctx.actor(), project.id, &name, update).await?;
            if ctx.json {
                return output::json(&lane);
            }
            output::line(format!("updated lane {}", output::cell(&lane.name, 60)));
        }
    }
    Ok(())
}
