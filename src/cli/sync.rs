//! `mctl sync run|once|status|plan|conflicts|resolve|dead-letters`.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::Provider;
use crate::error::{Error, Result};
use crate::sync::plane::PlaneSync;
use crate::sync::providers::http::RateLimiter;
use crate::sync::queue;
use crate::sync::repo::AnyRepo;
use crate::sync::worker::{Limiters, Worker, WorkerOptions};

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Run sync workers until stopped (several processes may run at once).
    Run {
        /// Worker tasks in this process.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Serve every project's connections, not just the selected project's.
        #[arg(long)]
        all_projects: bool,
        /// Incremental pull interval.
        #[arg(long, default_value = "1m", value_parser = parse::duration)]
        pull_every: time::Duration,
        /// Full reconcile interval (detects remote deletions).
        #[arg(long, default_value = "1h", value_parser = parse::duration)]
        full_every: time::Duration,
    },
    /// Receive provider webhooks and n8n automation commands until stopped
    /// (POST /hooks/CONNECTION, POST /automation/CONNECTION, GET /healthz, /readyz).
    Serve {
        /// Address to listen on (plain HTTP: put TLS in front of it).
        #[arg(long, default_value = crate::sync::webhook::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Largest body accepted, in bytes (larger ones get 413).
        #[arg(long, default_value_t = crate::sync::webhook::DEFAULT_MAX_BODY)]
        max_body: usize,
    },
    /// One pass and everything queued, then exit (for cron and scripts).
    Once {
        /// A full reconcile instead of an incremental pull.
        #[arg(long)]
        full: bool,
        #[arg(long)]
        all_projects: bool,
    },
    /// Per connection: last pass, lag, queued keys, conflicts, dead letters.
    Status,
    /// What a full pass would create and update on each side (writes nothing).
    Plan { connection: String },
    /// Fields changed differently on both sides.
    Conflicts {
        /// Include the ones already settled.
        #[arg(long)]
        all: bool,
    },
    /// Settle an open conflict by taking one side's value.
    Resolve {
        id: i64,
        #[arg(long, value_enum)]
        take: Take,
    },
    /// Keys that failed for good; retry one or all.
    DeadLetters {
        #[arg(long, conflicts_with = "all")]
        retry: Option<i64>,
        /// Retry every dead letter of the project.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Take {
    Local,
    Remote,
}

fn std_duration(d: time::Duration) -> Duration {
    Duration::from_secs(d.whole_seconds().max(1) as u64)
}

pub async fn run(ctx: &Context, command: SyncCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        SyncCommand::Run { workers, all_projects, pull_every, full_every } => {
            let project_id = if all_projects { None } else { Some(ctx.project(&store).await?.id) };
            let limiters = Limiters::default();
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let mut handles = Vec::new();
            for n in 0..workers.clamp(1, 32) {
                let options = WorkerOptions {
                    id: format!("{}#{n}", WorkerOptions::default().id),
                    project_id,
                    pull_every: std_duration(pull_every),
                    full_every: std_duration(full_every),
                    // One worker is enough to keep agent status honest.
                    offline_after: (n == 0).then(|| ctx.config.dispatch.offline_after()),
                    ..WorkerOptions::default()
                };
                let mut worker = Worker::new(store.clone(), options, limiters.clone());
                let mut stop = stop_rx.clone();
                handles.push(tokio::spawn(async move {
                    worker
                        .run(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await
                }));
            }
            output::line(format!("sync running with {} worker(s); stop with ctrl+c", handles.len()));
            wait_for_stop().await;
            let _ = stop_tx.send(true);
            for handle in handles {
                if let Ok(Err(e)) = handle.await {
                    return Err(e.into());
                }
            }
        }
        SyncCommand::Serve { listen, max_body } => {
            use crate::sync::webhook::{ServeOptions, Server};
            let server = Server::bind(store.clone(), ServeOptions { listen, max_body, ..ServeOptions::default() })
                .await
                .map_err(|e| Error::Failed(format!("cannot listen on {listen}: {e}: pick another --listen address")))?;
            let address = server.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| listen.to_string());
            output::line(format!(
                "receiving webhooks on http://{address} (POST /hooks/KEY, /automation/KEY); stop with ctrl+c"
            ));
            server.run(wait_for_stop()).await;
        }
        SyncCommand::Once { full, all_projects } => {
            let project_id = if all_projects { None } else { Some(ctx.project(&store).await?.id) };
            let options = WorkerOptions { project_id, ..WorkerOptions::default() };
            let mut worker = Worker::new(store.clone(), options, Limiters::default());
            let mut connections = Vec::new();
            for provider in crate::sync::worker::SYNCED {
                connections.extend(store.enabled_connections(provider, project_id).await?);
            }
            for connection in connections {
                queue::enqueue(&store, connection.id, if full { queue::FULL } else { queue::PULL }).await?;
            }
            let report = worker.drain().await?;
            if ctx.json {
                output::json(&report)?;
            } else {
                for pass in &report.passes {
                    output::line(format!(
                        "{} pass: {} listed, {} pulled, {} pushed, {} created here, {} created remotely, {} conflicts, {} deleted remotely, {} lanes made for states ({} requests, {} unchanged)",
                        if pass.full { "full" } else { "incremental" },
                        pass.listed,
                        pass.pulled,
                        pass.pushed,
                        pass.created_local,
                        pass.created_remote,
                        pass.conflicts,
                        pass.deleted_remotely,
                        pass.lanes_created,
                        pass.requests,
                        pass.not_modified
                    ));
                }
                output::line(format!("{} key(s) processed, {} failed", report.jobs, report.failed));
                for error in &report.errors {
                    output::line(format!("  {error}"));
                }
            }
            if report.failed > 0 {
                return Err(Error::Failed(format!(
                    "{} sync key(s) failed: see `mctl sync status` and `mctl sync dead-letters`",
                    report.failed
                )));
            }
        }
        SyncCommand::Status => {
            let project = ctx.project(&store).await?;
            let health = store.sync_health(project.id).await?;
            if ctx.json {
                return output::json(&health);
            }
            let mut table = Table::new(&["CONNECTION", "LAST PASS", "QUEUED", "LAG", "CONFLICTS", "DEAD", "STATE"]);
            for h in &health {
                let state = match (&h.paused_until, h.last_pass_ok, &h.last_error) {
                    _ if !h.enabled => "disabled".to_string(),
                    (Some(until), _, _) if *until > time::OffsetDateTime::now_utc() => {
                        format!("paused until {}", super::audit::short_time(*until))
                    }
                    (_, Some(false), Some(error)) => format!("failing: {error}"),
                    (_, None, _) => "never ran".into(),
                    _ => "ok".into(),
                };
                table.row([
                    h.connection.clone(),
                    h.last_pass_at.map(super::audit::short_time).unwrap_or_else(|| "-".into()),
                    h.queued.to_string(),
                    h.lag_seconds.map(|s| format!("{s}s")).unwrap_or_else(|| "-".into()),
                    h.conflicts.to_string(),
                    h.dead_letters.to_string(),
                    state,
                ]);
            }
            table.print();
        }
        SyncCommand::Plan { connection } => {
            let connection = store.connection_by_key(&connection).await?;
            let remote = match connection.provider {
                Provider::Plane => "Plane",
                Provider::Github => "GitHub",
                Provider::Gitea => "Gitea",
                Provider::Gitlab => "GitLab",
                other => return Err(Error::usage(format!("{other} connections are not synced by the sync worker"))),
            };
            let plan = if connection.provider == Provider::Plane {
                let sync =
                    PlaneSync::load_with(&store, connection, RateLimiter::new(0), false).await.map_err(sync_error)?;
                sync.plan().await.map_err(sync_error)?
            } else {
                let sync = AnyRepo::load(&store, connection, RateLimiter::new(0)).await.map_err(sync_error)?;
                sync.plan().await.map_err(sync_error)?
            };
            if ctx.json {
                return output::json(&plan);
            }
            let list = |title: &str, items: &[String]| {
                output::line(format!("{title}: {}", items.len()));
                for item in items.iter().take(20) {
                    output::line(format!("  {item}"));
                }
            };
            let fields = |pairs: &[(String, Vec<String>)]| -> Vec<String> {
                pairs.iter().map(|(key, f)| format!("{key}  {}", f.join(", "))).collect()
            };
            if !plan.lanes_to_create.is_empty() {
                list(&format!("lanes for {remote} states"), &plan.lanes_to_create);
            }
            list(&format!("create in {remote}"), &plan.create_remote);
            list("create here", &plan.create_local);
            list(&format!("send to {remote}"), &fields(&plan.push));
            list(&format!("take from {remote}"), &fields(&plan.pull));
            list("conflicts", &fields(&plan.conflicts));
            list(&format!("deleted in {remote}"), &plan.deleted_remotely);
        }
        SyncCommand::Conflicts { all } => {
            let project = ctx.project(&store).await?;
            let conflicts = store.sync_conflicts(project.id, all).await?;
            if ctx.json {
                return output::json(&conflicts);
            }
            let mut table = Table::new(&["ID", "OBJECT", "FIELD", "LOCAL", "REMOTE", "DETECTED", "SETTLED"]);
            for c in &conflicts {
                let show = |v: &Option<serde_json::Value>| {
                    output::cell(
                        &v.as_ref()
                            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
                            .unwrap_or_default(),
                        30,
                    )
                };
                table.row([
                    c.id.to_string(),
                    c.entity_key.clone().unwrap_or_else(|| format!("{} {}", c.local_kind, c.local_id)),
                    c.field.clone(),
                    show(&c.local_value),
                    show(&c.remote_value),
                    super::audit::short_time(c.detected_at),
                    match (&c.resolution, &c.resolved_by) {
                        (Some(side), Some(by)) => format!("{side} ({by})"),
                        (None, Some(by)) => by.clone(),
                        _ => "open".into(),
                    },
                ]);
            }
            table.print();
        }
        SyncCommand::Resolve { id, take } => {
            let project = ctx.project(&store).await?;
            let (_, key) = store.sync_resolve_conflict(&ctx.actor(), project.id, id, take == Take::Local).await?;
            if ctx.json {
                return output::json(&serde_json::json!({ "conflict": id, "queued": key }));
            }
            output::line(format!(
                "conflict #{id} settled ({} wins); {key} is queued for the next sync pass",
                if take == Take::Local { "local" } else { "remote" }
            ));
        }
        SyncCommand::DeadLetters { retry, all } => {
            let project = ctx.project(&store).await?;
            if retry.is_some() || all {
                let revived = queue::retry_dead(&store, project.id, retry).await?;
                if retry.is_some() && revived == 0 {
                    return Err(
                        crate::store::StoreError::not_found("dead letter", format!("#{}", retry.unwrap_or(0))).into()
                    );
                }
                if ctx.json {
                    return output::json(&serde_json::json!({ "retried": revived }));
                }
                output::line(format!("{revived} dead letter(s) queued again"));
                return Ok(());
            }
            let letters = queue::dead_letters(&store, project.id).await?;
            if ctx.json {
                return output::json(&letters);
            }
            let mut table = Table::new(&["ID", "CONNECTION", "KEY", "ATTEMPTS", "FAILED", "LAST ERROR"]);
            for d in &letters {
                table.row([
                    d.id.to_string(),
                    d.connection.clone(),
                    d.key.clone(),
                    d.attempts.to_string(),
                    super::audit::short_time(d.failed_at),
                    d.last_error.clone().unwrap_or_default(),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

fn sync_error(e: crate::sync::plane::SyncError) -> Error {
    match e {
        crate::sync::plane::SyncError::Store(e) => e.into(),
        crate::sync::plane::SyncError::Provider(e) => Error::Failed(e.to_string()),
    }
}

/// Ctrl+C or SIGTERM.
async fn wait_for_stop() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
