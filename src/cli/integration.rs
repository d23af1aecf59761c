//! `mctl connection add|list|show|remove` and `mctl mapping list`.

use clap::Subcommand;
use serde_json::{Map, Value};

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::Provider;
use crate::error::Result;
use crate::store::integrations::{ConnectionUpdate, MappingFilter, NewConnection};

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Register a provider connection. Secrets are referenced, never stored.
    Add {
        /// plane, github, gitea, gitlab or n8n.
        provider: Provider,
        /// Unique connection key, like github-main.
        #[arg(long)]
        key: String,
        /// The server's base URL (self-hosted servers included); for
        /// github.com, https://api.github.com.
        #[arg(long)]
        url: String,
        /// Where the token lives: env:NAME or file:/path.
        #[arg(long, value_name = "REF")]
        token_ref: Option<String>,
        /// Where the webhook secret lives (env:NAME or file:/path): checks
        /// the provider's webhooks, and signs and checks n8n automation.
        #[arg(long, value_name = "REF")]
        webhook_secret_ref: Option<String>,
        /// Repository, for github, gitea and gitlab (OWNER/NAME).
        #[arg(long)]
        repo: Option<String>,
        /// Workspace slug, for plane. (For plane, `--project ID` names the
        /// Plane project; the local project is then MC_PROJECT or the config's.)
        #[arg(long)]
        workspace: Option<String>,
        /// For plane: the Plane state a lane maps to, overriding the match by
        /// category (repeatable), like --lane-state "Review=In Review".
        #[arg(long = "lane-state", value_name = "LANE=STATE", value_parser = parse::key_value)]
        lane_states: Vec<(String, String)>,
        /// Any other non-secret setting as key=value (repeatable):
        /// conflict_policy=newest|local|remote|manual, requests_per_minute=N;
        /// for github, gitea and gitlab also write_interval_ms=N (GitHub: 1000).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse::key_value)]
        settings: Vec<(String, String)>,
    },
    /// Change a connection: its URL, secret reference, settings, or whether it is enabled.
    Update {
        key: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_name = "REF", conflicts_with = "no_token_ref")]
        token_ref: Option<String>,
        /// Remove the secret reference.
        #[arg(long)]
        no_token_ref: bool,
        #[arg(long, value_name = "REF")]
        webhook_secret_ref: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        #[arg(long = "lane-state", value_name = "LANE=STATE", value_parser = parse::key_value)]
        lane_states: Vec<(String, String)>,
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse::key_value)]
        settings: Vec<(String, String)>,
    },
    /// Check a connection: the token, the project, and what the server can do.
    Test { key: String },
    /// List the project's connections.
    List,
    /// Show one connection.
    Show { key: String },
    /// Remove a connection (with --force, also its mappings).
    Remove {
        key: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// List external mappings.
    List {
        #[arg(long)]
        connection: Option<String>,
        /// Only the mappings of this task key (or page slug, lane name...).
        #[arg(long)]
        task: Option<String>,
    },
}

pub async fn run_connection(ctx: &Context, command: ConnectionCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        ConnectionCommand::Add {
            provider,
            key,
            url,
            token_ref,
            webhook_secret_ref,
            repo,
            workspace,
            lane_states,
            settings,
        } => {
            let project = ctx.project(&store).await?;
            let mut config = Map::new();
            if let Some(reference) = webhook_secret_ref {
                config.insert(crate::sync::webhook::SECRET_SETTING.into(), Value::String(reference));
            }
            if let Some(repo) = repo {
                config.insert("repo".into(), Value::String(repo));
            }
            if let Some(workspace) = workspace {
                config.insert("workspace".into(), Value::String(workspace));
            }
            if let Some(remote) = &ctx.plane_project {
                config.insert("project".into(), Value::String(remote.clone()));
            }
            if !lane_states.is_empty() {
                config.insert("lane_states".into(), lane_state_map(lane_states));
            }
            for (k, v) in settings {
                config.insert(k, setting_value(v));
            }
            if provider == Provider::Plane && !(config.contains_key("workspace") && config.contains_key("project")) {
                return Err(crate::error::Error::usage(
                    "a plane connection needs --workspace SLUG and --project ID (the Plane project's id)",
                ));
            }
            let connection = store
                .add_connection(
                    &ctx.actor(),
                    project.id,
                    NewConnection {
                        key,
                        provider,
                        base_url: url,
                        config: Value::Object(config),
                        secret_ref: token_ref,
                    },
                )
                .await?;
            if ctx.json {
                return output::json(&connection);
            }
            output::line(format!("added {} connection {}", connection.provider, connection.key));
        }
        ConnectionCommand::Update {
            key,
            url,
            token_ref,
            no_token_ref,
            webhook_secret_ref,
            enable,
            disable,
            lane_states,
            settings,
        } => {
            let mut config: Map<String, Value> = settings.into_iter().map(|(k, v)| (k, setting_value(v))).collect();
            if let Some(reference) = webhook_secret_ref {
                config.insert(crate::sync::webhook::SECRET_SETTING.into(), Value::String(reference));
            }
            if !lane_states.is_empty() {
                config.insert("lane_states".into(), lane_state_map(lane_states));
            }
            let update = ConnectionUpdate {
                base_url: url,
                secret_ref: if no_token_ref { Some(None) } else { token_ref.map(Some) },
                enabled: if enable {
                    Some(true)
                } else if disable {
                    Some(false)
                } else {
                    None
                },
                config: (!config.is_empty()).then_some(Value::Object(config)),
            };
            let c = store.update_connection(&ctx.actor(), &key, update).await?;
            if ctx.json {
                return output::json(&c);
            }
            output::line(format!("updated connection {}", c.key));
        }
        ConnectionCommand::Test { key } => {
            let connection = store.connection_by_key(&key).await?;
            let report = crate::sync::check::check(&connection).await;
            if ctx.json {
                return output::json(&report);
            }
            for line in report.lines() {
                output::line(line);
            }
            if !report.ok {
                return Err(crate::error::Error::Failed(format!("connection {key} is not usable: see above")));
            }
        }
        ConnectionCommand::List => {
            let project = ctx.project(&store).await?;
            let connections = store.list_connections(project.id).await?;
            if ctx.json {
                return output::json(&connections);
            }
            let mut table = Table::new(&["KEY", "PROVIDER", "URL", "SECRET", "ENABLED"]);
            for c in &connections {
                table.row([
                    c.key.clone(),
                    c.provider.to_string(),
                    c.base_url.clone(),
                    output::or_dash(c.secret_ref.as_deref()),
                    if c.enabled { "yes".into() } else { "no".into() },
                ]);
            }
            table.print();
        }
        ConnectionCommand::Show { key } => {
            let c = store.connection_by_key(&key).await?;
            if ctx.json {
                return output::json(&c);
            }
            output::line(format!("{}  {}  {}", c.key, c.provider, output::cell(&c.base_url, 200)));
            output::line(format!("secret: {}", output::or_dash(c.secret_ref.as_deref())));
            output::line(format!("settings: {}", output::cell(&c.config.to_string(), 300)));
        }
        ConnectionCommand::Remove { key, force } => {
            let c = store.remove_connection(&ctx.actor(), &key, force).await?;
            if ctx.json {
                return output::json(&c);
            }
            output::line(format!("removed connection {}", c.key));
        }
    }
    Ok(())
}

pub async fn run_mapping(ctx: &Context, command: MappingCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    match command {
        MappingCommand::List { connection, task } => {
            let mappings =
                store.list_mappings(&MappingFilter { project_id: project.id, connection, local_key: task }).await?;
            if ctx.json {
                return output::json(&mappings);
            }
            let mut table = Table::new(&["CONNECTION", "KIND", "LOCAL", "EXTERNAL", "STATE", "URL"]);
            for m in &mappings {
                table.row([
                    m.connection.clone(),
                    m.local_kind.to_string(),
                    output::or_dash(m.local_key.as_deref()),
                    m.external_key.clone().unwrap_or_else(|| m.external_id.clone()),
                    m.sync_state.to_string(),
                    output::or_dash(m.url.as_deref()),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

/// `--set` values: whole numbers and booleans as such, the rest as text.
fn setting_value(raw: String) -> Value {
    if let Ok(n) = raw.parse::<i64>() {
        return Value::from(n);
    }
    match raw.as_str() {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(raw),
    }
}

fn lane_state_map(pairs: Vec<(String, String)>) -> Value {
    Value::Object(pairs.into_iter().map(|(lane, state)| (lane, Value::String(state))).collect())
}
