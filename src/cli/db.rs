//! `mctl migrate`, `mctl db status|start|stop` and `mctl config path`.

use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::output::{self, Table};
use crate::db::{TargetSource, embedded::ClusterState};
use crate::error::{Error, Result};
use crate::store::migrate::latest_known_version;

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Which database mctl uses, and the embedded cluster's state.
    Status,
    /// Initialise (on first use) and start the embedded cluster.
    Start,
    /// Stop the embedded cluster.
    Stop,
    /// Create mctl's group roles (mctl_owner, _admin, _operator, _viewer,
    /// _agent, _sync) and hand every table to mctl_owner, so PostgreSQL
    /// enforces what each may do. Idempotent; run as a superuser or the owner.
    SetupRoles,
    /// Make a login role a member of one mctl group.
    Grant {
        /// The PostgreSQL login role (an operator's own, for instance).
        role: String,
        /// What it may do.
        #[arg(long = "as", value_enum)]
        level: crate::db::roles::Level,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every path mctl uses.
    Path,
}

pub async fn migrate(ctx: &Context) -> Result<()> {
    if ctx.read_only {
        return Err(Error::usage("cannot migrate in a read-only session: drop --readonly"));
    }
    let target = ctx.target()?;
    let store = crate::db::connect(&target, Default::default()).await?;
    let report = store.migrate().await?;
    let current = store.schema_version().await?;
    if ctx.json {
        return output::json(
            &json!({"schema_version": current, "latest_known": latest_known_version(), "database": target.describe()}),
        );
    }
    output::line(format!(
        "schema at version {current} (this mctl knows up to {}) on {}{}",
        latest_known_version(),
        target.describe(),
        if report.applied.is_empty() { String::new() } else { format!("; applied {:?}", report.applied) }
    ));
    Ok(())
}

pub async fn run(ctx: &Context, command: DbCommand) -> Result<()> {
    let target = ctx.target()?;
    let cluster = crate::db::EmbeddedCluster::new(&ctx.paths.cluster_dir, ctx.config.pg_bin_dir.clone());
    match command {
        DbCommand::Status => {
            let status = blocking(move || cluster.status()).await?;
            let reachable =
                if target.source == TargetSource::Embedded && !matches!(status.state, ClusterState::Running { .. }) {
                    None
                } else {
                    let mut pg = target.pg.clone();
                    pg.connect_timeout(std::time::Duration::from_secs(3));
                    Some(pg.connect(target.connector.0.clone()).await.is_ok())
                };
            let identity = match reachable {
                Some(true) => {
                    let options = crate::store::StoreOptions { max_connections: 1, ..Default::default() };
                    match crate::db::connect(&target, options).await {
                        Ok(store) => crate::db::roles::identity(&store).await.ok(),
                        Err(_) => None,
                    }
                }
                _ => None,
            };
            let roots = target.tls.roots.as_ref().map(|r| r.to_string());
            let client_certificate = target.tls.client.as_ref().map(|(cert, _)| cert.display().to_string());
            if ctx.json {
                let origins: serde_json::Map<String, serde_json::Value> =
                    target.origins.iter().map(|(k, o)| (k.clone(), json!(o))).collect();
                return output::json(&json!({
                    "source": target.source,
                    "database": target.describe(),
                    "sslmode": target.tls.mode,
                    "sslrootcert": roots,
                    "client_certificate": client_certificate,
                    "parameters_from": origins,
                    "identity": identity,
                    "live": target.listen.describe(),
                    "reachable": reachable,
                    "embedded": status,
                }));
            }
            output::line(format!("database:   {} (from {})", target.describe(), target.source.describe()));
            if target.embedded.is_none() {
                let mut tls = format!("sslmode={}", target.tls.mode.as_str());
                if let Some(roots) = &roots {
                    tls.push_str(&format!(", CA from {roots}"));
                }
                if let Some(cert) = &client_certificate {
                    tls.push_str(&format!(", client certificate {cert}"));
                }
                output::line(format!("tls:        {tls}"));
                // Names and where each came from; never a value (a password among them).
                let origins: Vec<String> = target
                    .origins
                    .iter()
                    .filter(|(_, origin)| origin != "the connection string")
                    .map(|(key, origin)| format!("{key} from {origin}"))
                    .collect();
                if !origins.is_empty() {
                    output::line(format!("settings:   {}", origins.join(", ")));
                }
            }
            output::line(format!(
                "reachable:  {}",
                match reachable {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "no (cluster stopped; it starts on the next command, or run `mctl db start`)",
                }
            ));
            if let Some(identity) = &identity {
                output::line(format!("identity:   {}", identity.describe()));
            }
            output::line(format!("live:       {}", target.listen.describe()));
            let state = match &status.state {
                ClusterState::NotInitialized => "not initialised".to_string(),
                ClusterState::Stopped => "stopped".to_string(),
                ClusterState::Running { pid: Some(pid) } => format!("running (pid {pid})"),
                ClusterState::Running { pid: None } => "running".to_string(),
            };
            output::line(format!("embedded:   {state} in {}", status.directory.display()));
            output::line(format!(
                "server:     {}",
                match (&status.server_binaries, &status.server_version) {
                    (Some(dir), Some(version)) => format!("PostgreSQL {version} from {}", dir.display()),
                    _ => "no PostgreSQL server binaries found".to_string(),
                }
            ));
            Ok(())
        }
        DbCommand::SetupRoles => {
            let store = ctx.store().await?;
            crate::db::roles::setup(&store, &ctx.actor()).await?;
            let identity = crate::db::roles::identity(&store).await?;
            if ctx.json {
                return output::json(&json!({ "set_up": true, "identity": identity }));
            }
            output::line(
                "roles set up: mctl_owner owns every table; grant operators with `mctl db grant ROLE --as operator`",
            );
            Ok(())
        }
        DbCommand::Grant { role, level } => {
            let store = ctx.store().await?;
            crate::db::roles::grant(&store, &ctx.actor(), &role, level).await?;
            if ctx.json {
                return output::json(&json!({ "role": role, "group": level.group() }));
            }
            output::line(format!("{role} is now {}", level.group()));
            Ok(())
        }
        DbCommand::Start => {
            let pg = cluster.pg_config();
            let dir = cluster.root().to_path_buf();
            blocking(move || cluster.ensure_running()).await?;
            crate::db::embedded::ensure_database(&pg).await?;
            if ctx.json {
                return output::json(&json!({"state": "running", "directory": dir}));
            }
            output::line(format!("embedded cluster running in {}", dir.display()));
            Ok(())
        }
        DbCommand::Stop => {
            let dir = cluster.root().to_path_buf();
            let stopped = blocking(move || cluster.stop()).await?;
            if ctx.json {
                return output::json(&json!({"state": "stopped", "was_running": stopped, "directory": dir}));
            }
            output::line(if stopped { "embedded cluster stopped" } else { "embedded cluster was not running" });
            Ok(())
        }
    }
}

pub fn config(ctx: &Context, command: ConfigCommand) -> Result<()> {
    match command {
        ConfigCommand::Path => {
            let paths = &ctx.paths;
            if ctx.json {
                return output::json(paths);
            }
            let mut table = Table::new(&["WHAT", "PATH"]);
            let exists = if paths.config_file.exists() { "" } else { " (not present)" };
            table.row(["config file".to_string(), format!("{}{exists}", paths.config_file.display())]);
            table.row(["keymap".to_string(), paths.keymap_file.display().to_string()]);
            table.row(["theme".to_string(), paths.theme_file.display().to_string()]);
            table.row(["data".to_string(), paths.data_dir.display().to_string()]);
            table.row(["embedded cluster".to_string(), paths.cluster_dir.display().to_string()]);
            table.row(["state".to_string(), paths.state_dir.display().to_string()]);
            table.row(["logs".to_string(), paths.log_dir.display().to_string()]);
            match ctx.target() {
                Ok(target) => {
                    table.row([
                        "database".to_string(),
                        format!("{} (from {})", target.describe(), target.source.describe()),
                    ]);
                    table.row(["live updates".to_string(), target.listen.describe()]);
                }
                Err(e) => table.row(["database".to_string(), e.to_string()]),
            }
            table.print();
            Ok(())
        }
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Error::Database(format!("background task failed: {e}")))?
}
