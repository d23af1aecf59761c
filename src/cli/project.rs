//! `mctl project create|list|show|edit`.

use clap::Subcommand;

use super::Context;
use super::output::{self, Table};
use crate::error::Result;
use crate::store::projects::ProjectUpdate;

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create a project with the default lanes.
    Create {
        /// 2-10 letters or digits, like MC or OPS.
        key: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List projects.
    List {
        /// Include archived projects.
        #[arg(long)]
        all: bool,
    },
    /// Show one project (default: the current one).
    Show { key: Option<String> },
    /// Change a project's name, description or settings.
    Edit {
        key: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// A setting as key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = super::parse::key_value)]
        settings: Vec<(String, String)>,
    },
}

pub async fn run(ctx: &Context, command: ProjectCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        ProjectCommand::Create { key, name, description } => {
            let project = store.create_project(&ctx.actor(), &key, &name, &description).await?;
            if ctx.json {
                return output::json(&project);
            }
            output::line(format!("created project {} ({})", project.key, output::cell(&project.name, 80)));
        }
        ProjectCommand::List { all } => {
            let projects = store.list_projects(all).await?;
            if ctx.json {
                return output::json(&projects);
            }
            let mut table = Table::new(&["KEY", "NAME", "TASKS", "CREATED"]);
            for p in &projects {
                table.row([
                    p.key.clone(),
                    p.name.clone(),
                    p.last_task_number.to_string(),
                    p.created_at.date().to_string(),
                ]);
            }
            table.print();
        }
        ProjectCommand::Show { key } => {
            let project = match key {
                Some(key) => store.project_by_key(&key).await?,
                None => ctx.project(&store).await?,
            };
            if ctx.json {
                return output::json(&project);
            }
            output::line(format!("{}  {}", project.key, output::cell(&project.name, 100)));
            if !project.description.is_empty() {
                output::line(output::block(&project.description));
            }
            output::line(format!("tasks created: {}", project.last_task_number));
            output::line(format!("settings: {}", output::cell(&project.settings.to_string(), 200)));
        }
        ProjectCommand::Edit { key, name, description, settings } => {
            let key = match key {
                Some(key) => key,
                None => ctx.project(&store).await?.key,
            };
            let settings = (!settings.is_empty()).then(|| {
                serde_json::Value::Object(
                    settings.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect(),
                )
            });
            let project =
                store.update_project(&ctx.actor(), &key, ProjectUpdate { name, description, settings }).await?;
            if ctx.json {
                return output::json(&project);
            }
            output::line(format!("updated project {}", project.key));
        }
    }
    Ok(())
}
