//! `mctl cycle …`, `mctl module …` and `mctl page …`.

use clap::Subcommand;
use time::{Date, OffsetDateTime};

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::{Cycle, Module, ModuleStatus};
use crate::error::{Error, Result};
use crate::store::planning::{CycleUpdate, ModuleUpdate, NewModule};
use crate::store::tasks::TaskEdit;

#[derive(Debug, Subcommand)]
pub enum CycleCommand {
    /// Create a cycle.
    Create {
        name: String,
        #[arg(long, value_parser = parse::date)]
        start: Date,
        #[arg(long, value_parser = parse::date)]
        end: Date,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List cycles, the current one first, with progress.
    List,
    /// Show a cycle and its tasks.
    Show { name: String },
    /// Change a cycle.
    Edit {
        name: String,
        #[arg(long = "name", value_name = "NEW_NAME")]
        rename: Option<String>,
        #[arg(long, value_parser = parse::date)]
        start: Option<Date>,
        #[arg(long, value_parser = parse::date)]
        end: Option<Date>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Put tasks in a cycle (a task is in at most one).
    Add {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Take tasks out of their cycle.
    Remove {
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Create a module.
    Create {
        name: String,
        /// backlog, planned, in-progress, paused, completed or cancelled.
        #[arg(long, default_value = "planned")]
        status: ModuleStatus,
        /// Agent handle of the lead.
        #[arg(long)]
        lead: Option<String>,
        #[arg(long, value_parser = parse::date)]
        target: Option<Date>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List modules with progress.
    List,
    /// Show a module and its tasks.
    Show { name: String },
    /// Change a module.
    Edit {
        name: String,
        #[arg(long = "name", value_name = "NEW_NAME")]
        rename: Option<String>,
        #[arg(long)]
        status: Option<ModuleStatus>,
        #[arg(long, conflicts_with = "no_lead")]
        lead: Option<String>,
        #[arg(long)]
        no_lead: bool,
        #[arg(long, value_parser = parse::date)]
        target: Option<Date>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Add tasks to a module.
    Add {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Remove tasks from a module.
    Remove {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PageCommand {
    /// Create a knowledge page.
    Create {
        slug: String,
        #[arg(long)]
        title: String,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        /// Read the body from a file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        body_file: Option<String>,
    },
    /// List pages.
    List,
    /// Print a page.
    Show { slug: String },
    /// Change a page's title or body.
    Edit {
        slug: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long, conflicts_with = "body_file")]
        body: Option<String>,
        #[arg(long, value_name = "FILE")]
        body_file: Option<String>,
        /// Refuse the save if the page changed since this version.
        #[arg(long)]
        expect_version: Option<i32>,
    },
}

fn body(inline: Option<String>, file: Option<String>) -> Result<Option<String>> {
    match file {
        Some(path) => parse::text_file(&path).map(Some).map_err(Error::Usage),
        None => Ok(inline),
    }
}

pub async fn run_cycle(ctx: &Context, command: CycleCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    let actor = ctx.actor();
    match command {
        CycleCommand::Create { name, start, end, description } => {
            let cycle = store.create_cycle(&actor, project.id, &name, start, end, &description).await?;
            if ctx.json {
                return output::json(&cycle);
            }
            output::line(format!(
                "created cycle {} ({} to {})",
                output::cell(&cycle.name, 60),
                cycle.starts_on,
                cycle.ends_on
            ));
        }
        CycleCommand::List => {
            let cycles = store.list_cycles(project.id, OffsetDateTime::now_utc().date()).await?;
            if ctx.json {
                return output::json(&cycles);
            }
            print_cycles(&cycles);
        }
        CycleCommand::Show { name } => {
            let cycle = store.cycle_by_name(project.id, &name).await?;
            let tasks: Vec<_> = store
                .list_tasks(&crate::store::tasks::TaskFilter {
                    project_id: project.id,
                    limit: 10_000,
                    ..Default::default()
                })
                .await?
                .into_iter()
                .filter(|t| t.cycle_id == Some(cycle.id))
                .collect();
            if ctx.json {
                return output::json(&serde_json::json!({"cycle": cycle, "tasks": tasks}));
            }
            print_cycles(std::slice::from_ref(&cycle));
            if !cycle.description.is_empty() {
                output::line(output::block(&cycle.description));
            }
            output::line("");
            super::task::print_tasks(&tasks);
        }
        CycleCommand::Edit { name, rename, start, end, description } => {
            let cycle = store
                .update_cycle(
                    &actor,
                    project.id,
                    &name,
                    CycleUpdate { name: rename, description, starts_on: start, ends_on: end },
                )
                .await?;
            if ctx.json {
                return output::json(&cycle);
            }
            output::line(format!("updated cycle {}", output::cell(&cycle.name, 60)));
        }
        CycleCommand::Add { name, keys } => {
            let cycle = store.cycle_by_name(project.id, &name).await?;
            for key in &keys {
                let edit = TaskEdit { cycle: Some(Some(cycle.name.clone())), ..Default::default() };
                store.edit_task(&actor, key, edit, None).await?;
            }
            output::line(format!("{} task(s) in cycle {}", keys.len(), output::cell(&cycle.name, 60)));
        }
        CycleCommand::Remove { keys } => {
            for key in &keys {
                store.edit_task(&actor, key, TaskEdit { cycle: Some(None), ..Default::default() }, None).await?;
            }
            output::line(format!("{} task(s) out of their cycle", keys.len()));
        }
    }
    Ok(())
}

fn print_cycles(cycles: &[Cycle]) {
    let today = OffsetDateTime::now_utc().date();
    let mut table = Table::new(&["CYCLE", "PHASE", "START", "END", "DONE"]);
    for c in cycles {
        table.row([
            c.name.clone(),
            c.phase(today).to_string(),
            c.starts_on.to_string(),
            c.ends_on.to_string(),
            format!("{}/{}", c.done_count, c.task_count),
        ]);
    }
    table.print();
}

pub async fn run_module(ctx: &Context, command: ModuleCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    let actor = ctx.actor();
    match command {
        ModuleCommand::Create { name, status, lead, target, description } => {
            let module = store
                .create_module(&actor, project.id, NewModule { name, description, status, lead, target_on: target })
                .await?;
            if ctx.json {
                return output::json(&module);
            }
            output::line(format!("created module {}", output::cell(&module.name, 60)));
        }
        ModuleCommand::List => {
            let modules = store.list_modules(project.id).await?;
            if ctx.json {
                return output::json(&modules);
            }
            print_modules(&modules);
        }
        ModuleCommand::Show { name } => {
            let module = store.module_by_name(project.id, &name).await?;
            let tasks: Vec<_> = store
                .list_tasks(&crate::store::tasks::TaskFilter {
                    project_id: project.id,
                    limit: 10_000,
                    ..Default::default()
                })
                .await?
                .into_iter()
                .filter(|t| t.modules.contains(&module.name))
                .collect();
            if ctx.json {
                return output::json(&serde_json::json!({"module": module, "tasks": tasks}));
            }
            print_modules(std::slice::from_ref(&module));
            if !module.description.is_empty() {
                output::line(output::block(&module.description));
            }
            output::line("");
            super::task::print_tasks(&tasks);
        }
        ModuleCommand::Edit { name, rename, status, lead, no_lead, target, description } => {
            let update = ModuleUpdate {
                name: rename,
                description,
                status,
                lead: if no_lead { Some(None) } else { lead.map(Some) },
                target_on: target.map(Some),
            };
            let module = store.update_module(&actor, project.id, &name, update).await?;
            if ctx.json {
                return output::json(&module);
            }
            output::line(format!("updated module {}", output::cell(&module.name, 60)));
        }
        ModuleCommand::Add { name, keys } => {
            for key in &keys {
                store
                    .edit_task(&actor, key, TaskEdit { add_modules: vec![name.clone()], ..Default::default() }, None)
                    .await?;
            }
            output::line(format!("{} task(s) in module {}", keys.len(), output::cell(&name, 60)));
        }
        ModuleCommand::Remove { name, keys } => {
            for key in &keys {
                store
                    .edit_task(&actor, key, TaskEdit { remove_modules: vec![name.clone()], ..Default::default() }, None)
                    .await?;
            }
            output::line(format!("{} task(s) out of module {}", keys.len(), output::cell(&name, 60)));
        }
    }
    Ok(())
}

fn print_modules(modules: &[Module]) {
    let mut table = Table::new(&["MODULE", "STATUS", "LEAD", "TARGET", "DONE"]);
    for m in modules {
        table.row([
            m.name.clone(),
            m.status.to_string(),
            output::or_dash(m.lead.as_ref().map(|l| format!("@{l}"))),
            output::or_dash(m.target_on.map(|d| d.to_string())),
            format!("{}/{}", m.done_count, m.task_count),
        ]);
    }
    table.print();
}

pub async fn run_page(ctx: &Context, command: PageCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    let actor = ctx.actor();
    match command {
        PageCommand::Create { slug, title, body: inline, body_file } => {
            let text = body(inline, body_file)?.unwrap_or_default();
            let page = store.create_page(&actor, project.id, &slug, &title, &text).await?;
            if ctx.json {
                return output::json(&page);
            }
            output::line(format!("created page {}", page.slug));
        }
        PageCommand::List => {
            let pages = store.list_pages(project.id).await?;
            if ctx.json {
                return output::json(&pages);
            }
            let mut table = Table::new(&["SLUG", "TITLE", "VERSION", "UPDATED", "BY"]);
            for p in &pages {
                table.row([
                    p.slug.clone(),
                    p.title.clone(),
                    p.version.to_string(),
                    super::audit::short_time(p.updated_at),
                    p.updated_by.clone(),
                ]);
            }
            table.print();
        }
        PageCommand::Show { slug } => {
            let page = store.page_by_slug(project.id, &slug).await?;
            if ctx.json {
                return output::json(&page);
            }
            output::line(format!("{}  (version {}, {})", output::cell(&page.title, 100), page.version, page.slug));
            output::line("");
            output::line(output::block(&page.body));
        }
        PageCommand::Edit { slug, title, body: inline, body_file, expect_version } => {
            let text = body(inline, body_file)?;
            if title.is_none() && text.is_none() {
                return Err(Error::usage("nothing to change: pass --title, --body or --body-file"));
            }
            let page =
                store.edit_page(&actor, project.id, &slug, title.as_deref(), text.as_deref(), expect_version).await?;
            if ctx.json {
                return output::json(&page);
            }
            output::line(format!("saved page {} (version {})", page.slug, page.version));
        }
    }
    Ok(())
}
