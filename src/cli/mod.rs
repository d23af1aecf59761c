//! The command line. Every subcommand group has its own module; they all call
//! the same repository functions the console uses, and print a table or JSON.

mod agent;
mod audit;
mod audit_verify;
mod automation;
mod db;
mod delivery;
mod dispatch;
mod handoff;
mod integration;
mod lane;
mod mcp;
pub mod output;
pub mod parse;
mod planning;
mod project;
mod seed;
mod snapshot;
mod sync;
mod task;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Paths};
use crate::db as database;
use crate::domain::Provider;
use crate::domain::{Project, Source};
use crate::error::{Error, Result};
use crate::store::{Actor, Store, StoreOptions};

#[derive(Debug, Parser)]
#[command(
    name = "mctl",
    version,
    about = "Mission Control: the operator console for software delivery",
    long_about = "Mission Control: the operator console for software delivery.\n\n\
                  Without a command, opens the console. Every console action has a command here, \
                  with --json output for scripts.",
    disable_help_subcommand = true
)]
pub struct Cli {
    /// PostgreSQL connection string (else MC_DATABASE_URL, DATABASE_URL, the config file, or the embedded cluster).
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Project key to work in (else MC_PROJECT, the config file, or the only project there is).
    #[arg(long, global = true, value_name = "KEY", env = "MC_PROJECT")]
    pub project: Option<String>,

    /// Name recorded in the audit log (default: the OS user).
    #[arg(long, global = true, value_name = "NAME", env = "MC_OPERATOR")]
    pub operator: Option<String>,

    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,

    /// Config file to use instead of the default one.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Open the database read-only: every change is refused.
    #[arg(long, global = true)]
    pub readonly: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending schema migrations.
    Migrate,
    /// Manage the embedded local PostgreSQL cluster.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Show where mctl keeps its files.
    #[command(subcommand)]
    Config(db::ConfigCommand),
    /// Create and list projects.
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// The columns of the board.
    #[command(subcommand)]
    Lane(lane::LaneCommand),
    /// People, AI agents and services that work is assigned to.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Create, move, edit, assign and archive tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Transfer or blocked-work contracts between actors.
    #[command(subcommand)]
    Handoff(handoff::HandoffCommand),
    /// Agents claim ready work: `dispatch next --agent HANDLE`.
    #[command(subcommand)]
    Dispatch(dispatch::DispatchCommand),
    /// Dated iterations; a task is in at most one.
    #[command(subcommand)]
    Cycle(planning::CycleCommand),
    /// Feature groupings; a task can be in several.
    #[command(subcommand)]
    Module(planning::ModuleCommand),
    /// Knowledge pages (markdown).
    #[command(subcommand)]
    Page(planning::PageCommand),
    /// Deployment environments.
    #[command(subcommand)]
    Env(delivery::EnvCommand),
    /// Record and list pipeline runs.
    #[command(subcommand)]
    Pipeline(delivery::PipelineCommand),
    /// Record and list deployments.
    #[command(subcommand)]
    Deploy(delivery::DeployCommand),
    /// Releases and their readiness.
    #[command(subcommand)]
    Release(delivery::ReleaseCommand),
    /// Provider connections (metadata and a secret reference only).
    #[command(subcommand)]
    Connection(integration::ConnectionCommand),
    /// Links between local objects and their provider copies.
    #[command(subcommand)]
    Mapping(integration::MappingCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Capture, compare and restore project snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Two-way sync with Plane: run workers, inspect, settle conflicts.
    #[command(subcommand)]
    Sync(sync::SyncCommand),
    /// Events sent to n8n workflows: subscribe, unsubscribe, list, deliveries.
    #[command(subcommand)]
    Automation(automation::AutomationCommand),
    /// Serve the Model Context Protocol on stdio for an AI agent (`--agent HANDLE`).
    Mcp(mcp::McpArgs),
    /// Load demo or benchmark data.
    #[command(subcommand)]
    Seed(seed::SeedCommand),
    /// Seed the demo project if it is missing and open it.
    Demo,
}

/// What every command needs: paths, config, who is acting, output format.
pub struct Context {
    pub paths: Paths,
    pub config: Config,
    pub json: bool,
    pub operator: String,
    pub project_key: Option<String>,
    pub database_url: Option<String>,
    pub read_only: bool,
    /// `connection add plane --project ID`: the Plane project, not a local key.
    pub plane_project: Option<String>,
}

impl Context {
    pub fn new(cli: &Cli) -> Result<Context> {
        let mut paths = Paths::from_env(cli.config.as_deref())?;
        if cli.config.is_some() && !paths.config_file.exists() {
            return Err(Error::Config(format!("config file {} does not exist", paths.config_file.display())));
        }
        let config = Config::load(&paths.config_file)?;
        paths.apply_config(&config);
        let operator =
            cli.operator.clone().or_else(|| config.operator.clone()).unwrap_or_else(config::default_operator);
        let operator = operator.trim().to_string();
        if operator.is_empty() || operator.len() > 200 || operator.chars().any(char::is_control) {
            return Err(Error::usage("invalid operator name: one line of at most 200 characters"));
        }
        // `mctl connection add plane --project ID` names the Plane project (an
        // id, never a valid project key); the local project then comes from
        // MC_PROJECT or the config file.
        let plane_project = match &cli.command {
            Some(Command::Connection(integration::ConnectionCommand::Add { provider: Provider::Plane, .. })) => {
                cli.project.clone().filter(|p| crate::domain::project_key(p).is_err())
            }
            _ => None,
        };
        let project_key = if plane_project.is_some() {
            std::env::var("MC_PROJECT").ok().filter(|p| Some(p) != plane_project.as_ref()).or(config.project.clone())
        } else {
            cli.project.clone().or_else(|| config.project.clone())
        };
        Ok(Context {
            project_key,
            plane_project,
            read_only: cli.readonly || config.read_only,
            database_url: cli.database_url.clone(),
            json: cli.json,
            operator,
            paths,
            config,
        })
    }

    /// Console settings: config, keymap and theme files, `NO_COLOR`, `--readonly`.
    pub fn console_options(&self) -> crate::console::state::ConsoleOptions {
        use crate::console::keymap::Keymap;
        use crate::console::theme::Theme;
        let read = |path: &std::path::Path| std::fs::read_to_string(path).ok();
        let (keymap, mut warnings) = Keymap::load(read(&self.paths.keymap_file).as_deref());
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let theme_name = self.config.console.theme.clone().unwrap_or_else(|| "dark".into());
        let (theme, theme_warnings) = Theme::load(&theme_name, read(&self.paths.theme_file).as_deref(), no_color);
        warnings.extend(theme_warnings);
        crate::console::state::ConsoleOptions {
            read_only: self.read_only,
            mouse: self.config.console.mouse,
            stale_after: time::Duration::days(self.config.console.stale_days.unwrap_or(7).clamp(1, 365)),
            // Checked when the config is read: 1 minute to MAX_OFFLINE_AFTER_MINUTES.
            offline_after: time::Duration::seconds(self.config.dispatch.offline_after().as_secs() as i64),
            keymap: std::sync::Arc::new(keymap),
            theme: std::sync::Arc::new(theme),
            warnings,
            snapshot_before_bulk: self.config.console.snapshot_before_bulk.unwrap_or(20),
            sync_retry_for: self.config.sync.retry_for(),
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::new(self.operator.clone(), Source::Cli)
    }

    pub fn target(&self) -> Result<database::Target> {
        database::resolve(self.database_url.as_deref(), &self.config, &self.paths)
    }

    /// Connects, starting the embedded cluster and migrating as needed.
    pub async fn store(&self) -> Result<Store> {
        let options = StoreOptions {
            read_only: self.read_only,
            max_connections: self.config.pool_size.unwrap_or(8),
            ..StoreOptions::default()
        };
        database::open(&self.target()?, options).await
    }

    /// The project this command works in: `--project`, `MC_PROJECT`, the
    /// config file, or the only project in the database.
    pub async fn project(&self, store: &Store) -> Result<Project> {
        if let Some(key) = &self.project_key {
            return Ok(store.project_by_key(key).await?);
        }
        let mut projects = store.list_projects(false).await?;
        match projects.len() {
            1 => Ok(projects.remove(0)),
            0 => Err(Error::usage(
                "there are no projects yet: create one with `mctl project create KEY --name NAME` or run `mctl demo`",
            )),
            _ => {
                let keys: Vec<&str> = projects.iter().map(|p| p.key.as_str()).collect();
                Err(Error::usage(format!(
                    "several projects exist ({}): pass --project KEY or set MC_PROJECT",
                    keys.join(", ")
                )))
            }
        }
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::new(&cli)?;
    let _log_guard = crate::logging::init(&ctx.paths.log_dir);
    tracing::debug!(command = ?cli.command, "starting");
    let Some(command) = cli.command else {
        return seed::open_console(&ctx, None).await;
    };
    match command {
        Command::Migrate => db::migrate(&ctx).await,
        Command::Db(command) => db::run(&ctx, command).await,
        Command::Config(command) => db::config(&ctx, command),
        Command::Project(command) => project::run(&ctx, command).await,
        Command::Lane(command) => lane::run(&ctx, command).await,
        Command::Agent(command) => agent::run(&ctx, command).await,
        Command::Task(command) => task::run(&ctx, command).await,
        Command::Handoff(command) => handoff::run(&ctx, command).await,
        Command::Dispatch(command) => dispatch::run(&ctx, command).await,
        Command::Cycle(command) => planning::run_cycle(&ctx, command).await,
        Command::Module(command) => planning::run_module(&ctx, command).await,
        Command::Page(command) => planning::run_page(&ctx, command).await,
        Command::Env(command) => delivery::run_env(&ctx, command).await,
        Command::Pipeline(command) => delivery::run_pipeline(&ctx, command).await,
        Command::Deploy(command) => delivery::run_deploy(&ctx, command).await,
        Command::Release(command) => delivery::run_release(&ctx, command).await,
        Command::Connection(command) => integration::run_connection(&ctx, command).await,
        Command::Mapping(command) => integration::run_mapping(&ctx, command).await,
        Command::Audit(command) => audit::run(&ctx, command).await,
        Command::Snapshot(command) => snapshot::run(&ctx, command).await,
        Command::Sync(command) => sync::run(&ctx, command).await,
        Command::Automation(command) => automation::run(&ctx, command).await,
        Command::Mcp(args) => mcp::run(&ctx, args).await,
        Command::Seed(command) => seed::run(&ctx, command).await,
        Command::Demo => seed::demo(&ctx).await,
    }
}
