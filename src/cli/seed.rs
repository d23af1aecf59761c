//! `mctl seed demo|load` and `mctl demo`.

use clap::Subcommand;
use time::OffsetDateTime;

use super::Context;
use super::output;
use crate::domain::Project;
use crate::error::Result;
use crate::seed::{self, DEMO_PROJECT_KEY, DemoOutcome};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum SeedCommand {
    /// Create the demo project (DEMO) if it is not there yet.
    Demo,
    /// Append generated tasks to a project (created if missing), fast.
    Load {
        #[arg(long)]
        tasks: i64,
        /// Random seed, for repeatable data.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

pub async fn run(ctx: &Context, command: SeedCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        SeedCommand::Demo => {
            let project = seed_demo(ctx, &store).await?;
            if ctx.json {
                return output::json(&project);
            }
        }
        SeedCommand::Load { tasks, seed } => {
            let key = ctx
                .project_key
                .clone()
                .ok_or_else(|| crate::error::Error::usage("name the project to load into with --project KEY"))?;
            let started = std::time::Instant::now();
            let report = seed::load_tasks(&store, &ctx.actor(), &key, tasks, seed).await?;
            if ctx.json {
                return output::json(&report);
            }
            output::line(format!(
                "loaded {} tasks into {} ({} .. {}) in {:.2} s",
                report.tasks,
                report.project,
                report.first_key,
                report.last_key,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    Ok(())
}

async fn seed_demo(ctx: &Context, store: &Store) -> Result<Project> {
    match seed::seed_demo(store, &ctx.actor(), OffsetDateTime::now_utc()).await? {
        DemoOutcome::Created(project) => {
            if !ctx.json {
                output::line(format!("created the demo project {}", project.key));
            }
            Ok(project)
        }
        DemoOutcome::AlreadyThere(project) => {
            if !ctx.json {
                output::line(format!("the demo project {} is already there", project.key));
            }
            Ok(project)
        }
    }
}

/// `mctl demo`: seeds the demo project if needed and opens it.
pub async fn demo(ctx: &Context) -> Result<()> {
    let store = ctx.store().await?;
    let project = match store.project_by_key(DEMO_PROJECT_KEY).await {
        Ok(project) => project,
        Err(crate::store::StoreError::NotFound { .. }) => seed_demo(ctx, &store).await?,
        Err(e) => return Err(e.into()),
    };
    open_console(ctx, Some(project)).await
}

/// Opens the operator console on a project. Without a terminal (a pipe, a
/// script) or with `--json`, prints the board the console would open on.
pub async fn open_console(ctx: &Context, project: Option<Project>) -> Result<()> {
    let store = ctx.store().await?;
    let project = match project {
        Some(project) => project,
        None => ctx.project(&store).await?,
    };
    use std::io::IsTerminal;
    if !ctx.json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        let options = ctx.console_options();
        return crate::console::run(store, project, &ctx.operator, options).await;
    }
    let board = store.load_board(project.id, 5).await?;
    if ctx.json {
        return output::json(&serde_json::json!({"project": project, "board": board}));
    }
    output::line(format!("{}  {}", project.key, output::cell(&project.name, 70)));
    for lane in &board {
        let wip = match lane.lane.wip_limit {
            Some(limit) if lane.lane.over_wip_limit() => format!(" / {limit} OVER LIMIT"),
            Some(limit) => format!(" / {limit}"),
            None => String::new(),
        };
        output::line(format!("\n{} ({}{wip})", lane.lane.name, lane.lane.open_count));
        for card in &lane.cards {
            output::line(format!(
                "  {:<9} {:<7} {:<10} {}",
                card.key,
                card.priority.to_string(),
                output::or_dash(card.assignee.as_ref().map(|a| format!("@{a}"))),
                output::cell(&card.title, 50)
            ));
        }
        if lane.lane.open_count as usize > lane.cards.len() {
            output::line(format!("  … {} more", lane.lane.open_count as usize - lane.cards.len()));
        }
    }
    Ok(())
}
