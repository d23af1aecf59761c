//! `mctl sync run|once|status|plan|conflicts|resolve|dead-letters`.

use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use futures_util::StreamExt;

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::Provider;
use crate::error::{Error, Result};
use crate::sync::plane::PlaneSync;
use crate::sync::providers::http::RateLimiter;
use crate::sync::queue;
use crate::sync::repo::AnyRepo;
use crate::sync::report::DrainReport;
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
            let mut running = futures_util::stream::FuturesUnordered::new();
            for n in 0..workers.clamp(1, 32) {
                let options = WorkerOptions {
                    id: format!("{}#{n}", WorkerOptions::default().id),
                    project_id,
                    pull_every: std_duration(pull_every),
                    full_every: std_duration(full_every),
                    // One worker is enough to keep agent status honest.
                    offline_after: (n == 0).then(|| ctx.config.dispatch.offline_after()),
                    retry_for: ctx.config.sync.retry_for(),
                    ..WorkerOptions::default()
                };
                let mut worker = Worker::new(store.clone(), options, limiters.clone());
                let mut stop = stop_rx.clone();
                running.push(tokio::spawn(async move {
                    worker
                        .run(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await
                }));
            }
            output::line(format!("sync running with {} worker(s); stop with ctrl+c", running.len()));
            // A worker ends on its own only when it cannot go on: then the
            // process stops too, non-zero, so a supervisor restarts it.
            let ended = tokio::select! {
                _ = wait_for_stop() => None,
                ended = running.next() => ended,
            };
            let _ = stop_tx.send(true);
            let mut failure = ended.map(|ended| why_ended(&ended));
            while let Some(ended) = running.next().await {
                if failure.is_none() && !matches!(ended, Ok(Ok(()))) {
                    failure = Some(why_ended(&ended));
                }
            }
            if let Some(failure) = failure {
                return Err(Error::Failed(format!("sync stopped: {failure}")));
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
            let options =
                WorkerOptions { project_id, retry_for: ctx.config.sync.retry_for(), ..WorkerOptions::default() };
            let mut worker = Worker::new(store.clone(), options, Limiters::default());
            let mut connections = Vec::new();
            for provider in crate::sync::worker::SYNCED {
                connections.extend(store.enabled_connections(provider, project_id).await?);
            }
            for connection in connections {
                queue::enqueue(&store, connection.id, if full { queue::FULL } else { queue::PULL }).await?;
            }
            let mut report = worker.drain().await?;
            worker.leftovers(&mut report).await?;
            if ctx.json {
                output::json(&report)?;
            } else {
                print_drain(&report);
            }
            if !report.complete() {
                return Err(Error::Failed(unfinished(&report)));
            }
        }
        SyncCommand::Status => {
            let project = ctx.project(&store).await?;
            let health = store.sync_health(project.id).await?;
            let workers = crate::sync::registry::workers(&store, Some(project.id)).await?;
            if ctx.json {
                return output::json(&serde_json::json!({ "connections": health, "workers": workers }));
            }
            let mut table = Table::new(&["CONNECTION", "LAST PASS", "QUEUED", "LAG", "CONFLICTS", "DEAD", "STATE"]);
            let now = time::OffsetDateTime::now_utc();
            for h in &health {
                table.row([
                    h.connection.clone(),
                    h.last_pass_at.map(super::audit::short_time).unwrap_or_else(|| "-".into()),
                    h.queued.to_string(),
                    h.lag_seconds.map(|s| format!("{s}s")).unwrap_or_else(|| "-".into()),
                    h.conflicts.to_string(),
                    h.dead_letters.to_string(),
                    connection_state(h, now),
                ]);
            }
            table.print();
            print_workers(&workers);
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
            let objects = |indent: &str, objects: &crate::sync::report::ObjectPlan| {
                list(&format!("{indent}create in {remote}"), &objects.create_remote);
                list(&format!("{indent}create here"), &objects.create_local);
                list(&format!("{indent}send to {remote}"), &fields(&objects.push));
                list(&format!("{indent}take from {remote}"), &fields(&objects.pull));
            };
            if !plan.lanes_to_create.is_empty() {
                list(&format!("lanes for {remote} states"), &plan.lanes_to_create);
            }
            objects("", &plan.tasks);
            list("conflicts", &fields(&plan.conflicts));
            list(&format!("deleted in {remote}"), &plan.deleted_remotely);
            for (kind, plan) in [("cycles", &plan.cycles), ("modules", &plan.modules), ("releases", &plan.releases)] {
                if !plan.is_empty() {
                    output::line(format!("{kind}:"));
                    objects("  ", plan);
                }
            }
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

/// Why a worker task ended, in one line.
fn why_ended(ended: &std::result::Result<crate::store::StoreResult<()>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Ok(())) => "a worker stopped on its own".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) if e.is_panic() => "a worker crashed (see the log); start `mctl sync run` again".into(),
        Err(e) => format!("a worker ended: {e}"),
    }
}

/// One pass in a line, then its objects' failures.
fn print_drain(report: &DrainReport) {
    for pass in &report.passes {
        let mut extra = String::new();
        if pass.lanes_created > 0 {
            extra.push_str(&format!(", {} lanes made for states", pass.lanes_created));
        }
        if pass.queued_creates > 0 {
            extra.push_str(&format!(", {} queued to be created remotely", pass.queued_creates));
        }
        if pass.delivery > 0 {
            extra.push_str(&format!(", {} delivery records", pass.delivery));
        }
        output::line(format!(
            "{} pass: {} listed, {} unchanged, {} pulled, {} pushed, {} created here, {} created remotely, {} conflicts, {} deleted remotely{extra} ({} requests, {} answered 304)",
            if pass.full { "full" } else { "incremental" },
            pass.listed,
            pass.objects.unchanged,
            pass.objects.pulled,
            pass.objects.pushed,
            pass.created_local,
            pass.objects.created_remote,
            pass.objects.conflicts,
            pass.objects.deleted_remotely,
            pass.requests,
            pass.not_modified
        ));
    }
    let o = &report.objects;
    if o.created_remote + o.pushed + o.pulled + o.conflicts > 0 {
        output::line(format!(
            "objects: {} created remotely, {} pushed, {} pulled, {} conflicts",
            o.created_remote, o.pushed, o.pulled, o.conflicts
        ));
    }
    let objects: usize = report.passes.iter().map(|p| p.failed_objects).sum();
    let inside = if objects > 0 { format!(", {objects} object(s) failed inside passes") } else { String::new() };
    output::line(format!("{} key(s) processed, {} failed{inside}", report.jobs, report.failed));
    for error in &report.errors {
        output::line(format!("  {error}"));
    }
    if report.deferred_passes > 0 {
        output::line(format!("the pass was put off: {}", waiting_for(report)));
    }
    if report.left_queued > 0 {
        output::line(format!("{} key(s) left queued: {}", report.left_queued, waiting_for(report)));
    }
    if report.dead_letters > 0 {
        output::line(format!("{} dead letter(s) wait for an operator: `mctl sync dead-letters`", report.dead_letters));
    }
}

/// What the keys left queued wait for.
fn waiting_for(report: &DrainReport) -> String {
    match (report.rate_limited_until, report.next_due) {
        (Some(until), _) => format!("rate limited by the provider until {}", super::audit::short_time(until)),
        (None, Some(due)) => format!("retrying, the next at {}", super::audit::short_time(due)),
        (None, None) => "waiting".into(),
    }
}

/// The one-line verdict of a `sync once` that did not finish everything.
fn unfinished(report: &DrainReport) -> String {
    let mut parts = Vec::new();
    if report.failed > 0 {
        parts.push(format!("{} key(s) failed", report.failed));
    }
    let objects: usize = report.passes.iter().map(|p| p.failed_objects).sum();
    if objects > 0 {
        parts.push(format!("{objects} object(s) failed inside a pass"));
    }
    let listings: usize = report.passes.iter().map(|p| p.failed_listings.len()).sum();
    if listings > 0 {
        parts.push(format!("{listings} listing(s) failed"));
    }
    if report.deferred_passes > 0 {
        parts.push(format!("the pass was put off ({})", waiting_for(report)));
    }
    if report.left_queued > 0 {
        parts.push(format!("{} key(s) left queued ({})", report.left_queued, waiting_for(report)));
    }
    format!(
        "sync is not done: {}; see `mctl sync status` and `mctl sync dead-letters`, then run it again",
        parts.join(", ")
    )
}

/// A connection's state in `sync status`.
fn connection_state(h: &crate::store::sync::SyncHealth, now: time::OffsetDateTime) -> String {
    let retrying = if h.retrying > 0 { format!(", {} retrying", h.retrying) } else { String::new() };
    if !h.enabled {
        return "disabled".into();
    }
    if let Some(until) = h.paused_until.filter(|until| *until > now) {
        return format!("paused until {} (rate limit){retrying}", super::audit::short_time(until));
    }
    if let (Some(false), Some(error)) = (h.last_pass_ok, &h.last_error) {
        return format!("failing: {error}");
    }
    if let Some(d) = &h.deliveries {
        let last = d.last_delivered_at.map(|at| format!(", last {}", super::audit::short_time(at))).unwrap_or_default();
        let error = match (&d.last_error, d.failing) {
            (Some(error), failing) if failing > 0 => format!(": {error}"),
            _ => String::new(),
        };
        return format!(
            "{} delivered, {} failing, {} waiting (7d){last}{retrying}{error}",
            d.delivered, d.failing, d.waiting
        );
    }
    match h.last_pass_ok {
        None => "never ran".into(),
        _ => format!("ok{retrying}"),
    }
}

/// The running workers, or how to start one.
fn print_workers(workers: &[crate::sync::registry::WorkerView]) {
    use crate::sync::registry::WorkerState;
    let live: Vec<_> = workers.iter().filter(|w| !matches!(w.state, WorkerState::Stopped)).collect();
    if live.iter().all(|w| w.state == WorkerState::Gone) {
        output::line("no sync worker is running: start one with `mctl sync run` (or `:sync start` in the console)");
    }
    if live.is_empty() {
        return;
    }
    output::line("workers:");
    let now = time::OffsetDateTime::now_utc();
    for w in live {
        let detail = w.detail.as_deref().map(|d| format!("  {d}")).unwrap_or_default();
        output::line(format!("  {}  {}  seen {} ago{detail}", w.id, w.state, super::delivery::age(now, w.seen_at)));
    }
}

fn sync_error(e: crate::sync::error::SyncError) -> Error {
    match e {
        crate::sync::error::SyncError::Store(e) => e.into(),
        crate::sync::error::SyncError::Provider(e) => Error::Failed(e.to_string()),
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
