//! `mctl task create|list|show|move|edit|assign|unassign|archive|unarchive`.

use clap::{Args, Subcommand};
use time::Date;

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::{Priority, Task};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::tasks::{NewTask, Position, TaskEdit, TaskFilter};

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task and print its key.
    Create {
        #[arg(long)]
        title: String,
        /// Lane name (default: the first backlog lane).
        #[arg(long)]
        lane: Option<String>,
        /// urgent, high, medium, low or none.
        #[arg(long)]
        priority: Option<Priority>,
        /// Agent handle.
        #[arg(long)]
        assignee: Option<String>,
        /// Label (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Due date: YYYY-MM-DD, today, tomorrow or +3d.
        #[arg(long, value_parser = parse::date)]
        due: Option<Date>,
        #[arg(long, conflicts_with = "description_file")]
        description: Option<String>,
        /// Read the description from a file (`-` for stdin).
        #[arg(long, value_name = "FILE")]
        description_file: Option<String>,
        #[arg(long)]
        cycle: Option<String>,
        /// Module name (repeatable).
        #[arg(long = "module")]
        modules: Vec<String>,
    },
    /// List tasks in board order.
    List {
        #[arg(long)]
        lane: Option<String>,
        /// Agent handle, or `none` for unassigned tasks.
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// Text in the title or key.
        #[arg(long)]
        search: Option<String>,
        /// Include archived tasks.
        #[arg(long)]
        archived: bool,
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Show a task with its handoffs, mappings and history.
    Show {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Move a task to a lane (or to another place in its lane).
    Move {
        #[arg(allow_hyphen_values = true)]
        key: String,
        lane: String,
        /// Refuse the move if the task is no longer at this version.
        #[arg(long)]
        expect_version: Option<i32>,
        #[command(flatten)]
        place: Place,
    },
    /// Change a task's fields.
    Edit {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        edit: EditArgs,
        #[arg(long)]
        expect_version: Option<i32>,
    },
    /// Assign a task to an agent (`none` unassigns).
    Assign {
        #[arg(allow_hyphen_values = true)]
        key: String,
        agent: String,
        #[arg(long)]
        expect_version: Option<i32>,
    },
    /// Remove a task's assignee.
    Unassign {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(long)]
        expect_version: Option<i32>,
    },
    /// Archive a task: it leaves the board, keeps its key and history.
    Archive {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(long)]
        expect_version: Option<i32>,
    },
    /// Bring an archived task back to the bottom of its lane.
    Unarchive {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct Place {
    /// Put it at the top of the lane.
    #[arg(long)]
    top: bool,
    /// Put it at the bottom of the lane (the default).
    #[arg(long)]
    bottom: bool,
    /// Put it just above this task.
    #[arg(long, value_name = "KEY")]
    before: Option<String>,
    /// Put it just below this task.
    #[arg(long, value_name = "KEY")]
    after: Option<String>,
    /// One place up within its lane.
    #[arg(long)]
    up: bool,
    /// One place down within its lane.
    #[arg(long)]
    down: bool,
}

impl Place {
    fn position(self) -> Position {
        match self {
            Place { top: true, .. } => Position::Top,
            Place { before: Some(key), .. } => Position::Before(key),
            Place { after: Some(key), .. } => Position::After(key),
            Place { up: true, .. } => Position::Up,
            Place { down: true, .. } => Position::Down,
            _ => Position::Bottom,
        }
    }
}

#[derive(Debug, Args)]
pub struct EditArgs {
    #[arg(long)]
    title: Option<String>,
    #[arg(long, conflicts_with = "description_file")]
    description: Option<String>,
    #[arg(long, value_name = "FILE")]
    description_file: Option<String>,
    #[arg(long)]
    priority: Option<Priority>,
    #[arg(long, value_parser = parse::date, conflicts_with = "no_due")]
    due: Option<Date>,
    /// Clear the due date.
    #[arg(long)]
    no_due: bool,
    /// Replace all labels with these (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    #[arg(long = "add-label")]
    add_labels: Vec<String>,
    #[arg(long = "remove-label")]
    remove_labels: Vec<String>,
    #[arg(long, conflicts_with = "no_cycle")]
    cycle: Option<String>,
    /// Take the task out of its cycle.
    #[arg(long)]
    no_cycle: bool,
    #[arg(long = "add-module")]
    add_modules: Vec<String>,
    #[arg(long = "remove-module")]
    remove_modules: Vec<String>,
}

fn description(inline: Option<String>, file: Option<String>) -> Result<Option<String>> {
    match file {
        Some(path) => parse::text_file(&path).map(Some).map_err(Error::Usage),
        None => Ok(inline),
    }
}

pub async fn run(ctx: &Context, command: TaskCommand) -> Result<()> {
    let store = ctx.store().await?;
    let actor = ctx.actor();
    match command {
        TaskCommand::Create {
            title,
            lane,
            priority,
            assignee,
            labels,
            due,
            description: text,
            description_file,
            cycle,
            modules,
        } => {
            let project = ctx.project(&store).await?;
            let new = NewTask {
                title,
                description: description(text, description_file)?.unwrap_or_default(),
                lane,
                priority,
                assignee,
                labels,
                due_on: due,
                cycle,
                modules,
            };
            let task = store.create_task(&actor, project.id, new).await?;
            if ctx.json {
                return output::json(&task);
            }
            output::line(&task.key);
        }
        TaskCommand::List { lane, assignee, label, search, archived, limit } => {
            let project = ctx.project(&store).await?;
            let filter = TaskFilter {
                project_id: project.id,
                lane,
                assignee,
                label,
                text: search,
                include_archived: archived,
                limit,
            };
            let tasks = store.list_tasks(&filter).await?;
            if ctx.json {
                return output::json(&tasks);
            }
            print_tasks(&tasks);
        }
        TaskCommand::Show { key } => show(ctx, &store, &key).await?,
        TaskCommand::Move { key, lane, expect_version, place } => {
            let task = store.move_task(&actor, &key, Some(&lane), place.position(), expect_version).await?;
            report(ctx, &task, &format!("{} is in {} (version {})", task.key, task.lane, task.version))?;
        }
        TaskCommand::Edit { key, edit, expect_version } => {
            let e = edit;
            let edit = TaskEdit {
                title: e.title,
                description: description(e.description, e.description_file)?,
                priority: e.priority,
                due_on: if e.no_due { Some(None) } else { e.due.map(Some) },
                set_labels: (!e.labels.is_empty()).then_some(e.labels),
                add_labels: e.add_labels,
                remove_labels: e.remove_labels,
                cycle: if e.no_cycle { Some(None) } else { e.cycle.map(Some) },
                add_modules: e.add_modules,
                remove_modules: e.remove_modules,
            };
            let task = store.edit_task(&actor, &key, edit, expect_version).await?;
            report(ctx, &task, &format!("updated {} (version {})", task.key, task.version))?;
        }
        TaskCommand::Assign { key, agent, expect_version } => {
            let handle = (!matches!(agent.trim(), "none" | "-")).then_some(agent.as_str());
            let task = store.assign_task(&actor, &key, handle, expect_version).await?;
            let who = task.assignee.as_deref().map(|a| format!("@{a}")).unwrap_or_else(|| "nobody".into());
            report(ctx, &task, &format!("{} is assigned to {who}", task.key))?;
        }
        TaskCommand::Unassign { key, expect_version } => {
            let task = store.assign_task(&actor, &key, None, expect_version).await?;
            report(ctx, &task, &format!("{} is unassigned", task.key))?;
        }
        TaskCommand::Archive { key, expect_version } => {
            let task = store.set_task_archived(&actor, &key, true, expect_version).await?;
            report(ctx, &task, &format!("archived {}", task.key))?;
        }
        TaskCommand::Unarchive { key } => {
            let task = store.set_task_archived(&actor, &key, false, None).await?;
            report(ctx, &task, &format!("{} is back in {}", task.key, task.lane))?;
        }
    }
    Ok(())
}

fn report(ctx: &Context, task: &Task, message: &str) -> Result<()> {
    if ctx.json {
        return output::json(task);
    }
    output::line(message);
    Ok(())
}

pub fn print_tasks(tasks: &[Task]) {
    let mut table = Table::new(&["KEY", "LANE", "PRI", "ASSIGNEE", "DUE", "TITLE"]);
    for t in tasks {
        table.row([
            t.key.clone(),
            t.lane.clone(),
            t.priority.to_string(),
            output::or_dash(t.assignee.as_ref().map(|a| format!("@{a}"))),
            output::or_dash(t.due_on.map(|d| d.to_string())),
            if t.archived { format!("[archived] {}", t.title) } else { t.title.clone() },
        ]);
    }
    table.print();
}

async fn show(ctx: &Context, store: &Store, key: &str) -> Result<()> {
    let task = store.task_by_key(key).await?;
    let handoffs = store
        .list_handoffs(&crate::store::handoffs::HandoffFilter {
            project_id: task.project_id,
            all_states: true,
            task_key: Some(task.key.clone()),
            ..Default::default()
        })
        .await?;
    let mappings = store
        .list_mappings(&crate::store::integrations::MappingFilter {
            project_id: task.project_id,
            local_key: Some(task.key.clone()),
            ..Default::default()
        })
        .await?;
    let history = store.task_history(&task.key, 50).await?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "task": task, "handoffs": handoffs, "mappings": mappings, "history": history,
        }));
    }
    output::line(format!("{}  {}", task.key, output::cell(&task.title, 200)));
    output::line(format!(
        "lane: {}  priority: {}  assignee: {}  due: {}  version: {}{}",
        task.lane,
        task.priority,
        output::or_dash(task.assignee.as_ref().map(|a| format!("@{a}"))),
        output::or_dash(task.due_on.map(|d| d.to_string())),
        task.version,
        if task.archived { "  [archived]" } else { "" }
    ));
    if !task.labels.is_empty() {
        output::line(format!("labels: {}", output::cell(&task.labels.join(", "), 200)));
    }
    if task.cycle.is_some() || !task.modules.is_empty() {
        output::line(format!(
            "cycle: {}  modules: {}",
            output::or_dash(task.cycle.as_deref()),
            output::or_dash(Some(task.modules.join(", ")))
        ));
    }
    if !task.description.is_empty() {
        output::line("");
        output::line(output::block(&task.description));
    }
    if !handoffs.is_empty() {
        output::line("");
        output::line("handoffs:");
        for h in &handoffs {
            output::line(format!(
                "  #{} {} {} -> @{} [{}] {}",
                h.id,
                h.kind,
                output::or_dash(h.from_agent.as_ref().map(|a| format!("@{a}"))),
                h.to_agent,
                h.state,
                output::cell(&h.reason, 80)
            ));
        }
    }
    if !mappings.is_empty() {
        output::line("");
        output::line("mappings:");
        for m in &mappings {
            output::line(format!(
                "  {} {} [{}] {}",
                m.connection,
                output::cell(m.external_key.as_deref().unwrap_or(&m.external_id), 40),
                m.sync_state,
                output::or_dash(m.url.as_deref().map(|u| output::cell(u, 100)))
            ));
        }
    }
    if !history.is_empty() {
        output::line("");
        output::line("history:");
        for entry in &history {
            output::line(format!(
                "  {}  {:<16} {} ({})",
                super::audit::short_time(entry.at),
                entry.action,
                output::cell(&entry.actor, 30),
                entry.source
            ));
        }
    }
    Ok(())
}
