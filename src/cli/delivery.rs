//! `mctl env …`, `mctl pipeline …`, `mctl deploy …` and `mctl release …`:
//! recording delivery state the way a CI job or an n8n workflow would.

use clap::Subcommand;
use time::{Date, OffsetDateTime};

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::{DeploymentStatus, EnvironmentKind, PipelineStatus, Release, ReleaseStatus};
use crate::error::Result;
use crate::store::delivery::{DeploymentReport, EnvironmentUpdate, NewRelease, PipelineReport, ReleaseUpdate};

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Add an environment.
    Create {
        name: String,
        /// production, staging, development, preview or other.
        #[arg(long, default_value = "other")]
        kind: EnvironmentKind,
        #[arg(long)]
        url: Option<String>,
    },
    /// Change an environment.
    Update {
        name: String,
        #[arg(long = "name", value_name = "NEW_NAME")]
        rename: Option<String>,
        #[arg(long)]
        kind: Option<EnvironmentKind>,
        #[arg(long, conflicts_with = "no_url")]
        url: Option<String>,
        /// Remove the URL.
        #[arg(long)]
        no_url: bool,
    },
    /// Environments with their latest deployment.
    List,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Record a pipeline run (creates it, or updates it when the id is known).
    Report {
        /// The run's id at the provider (unique per provider).
        #[arg(long)]
        id: String,
        /// Workflow or pipeline name, like ci or e2e.
        #[arg(long)]
        name: String,
        /// queued, running, success, failed, cancelled or skipped.
        #[arg(long)]
        status: PipelineStatus,
        #[arg(long = "ref", default_value = "")]
        git_ref: String,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value = "manual")]
        provider: String,
        #[arg(long, value_parser = |s: &str| parse::when(s, -1))]
        started: Option<OffsetDateTime>,
        #[arg(long, value_parser = |s: &str| parse::when(s, -1))]
        finished: Option<OffsetDateTime>,
    },
    /// Recent pipeline runs, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Only failed runs.
        #[arg(long)]
        failed: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Record a deployment (creates it, or updates it when the id is known).
    Report {
        /// Environment name.
        #[arg(long)]
        env: String,
        #[arg(long)]
        id: String,
        /// pending, in_progress, success, failed, cancelled or inactive.
        #[arg(long)]
        status: DeploymentStatus,
        #[arg(long = "ref", default_value = "")]
        git_ref: String,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, default_value = "manual")]
        provider: String,
        /// Release being deployed.
        #[arg(long)]
        release: Option<String>,
        #[arg(long, value_parser = |s: &str| parse::when(s, -1))]
        started: Option<OffsetDateTime>,
        #[arg(long, value_parser = |s: &str| parse::when(s, -1))]
        finished: Option<OffsetDateTime>,
    },
    /// Deployments, newest first.
    List {
        #[arg(long)]
        env: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Plan a release.
    Create {
        name: String,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long = "ref")]
        git_ref: Option<String>,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long, value_parser = parse::date)]
        target: Option<Date>,
        #[arg(long, default_value = "")]
        notes: String,
    },
    /// List releases with readiness.
    List,
    /// Show a release, its tasks and why it is (not) ready.
    Show { name: String },
    /// Change a release (status released stamps the release time).
    Update {
        name: String,
        /// planned, draft, released or cancelled.
        #[arg(long)]
        status: Option<ReleaseStatus>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long = "ref")]
        git_ref: Option<String>,
        #[arg(long)]
        commit: Option<String>,
        #[arg(long, value_parser = parse::date)]
        target: Option<Date>,
        #[arg(long)]
        notes: Option<String>,
        #[arg(long)]
        url: Option<String>,
    },
    /// Link tasks to a release.
    Link {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Unlink tasks from a release.
    Unlink {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

pub async fn run_env(ctx: &Context, command: EnvCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    match command {
        EnvCommand::Create { name, kind, url } => {
            let env = store.create_environment(&ctx.actor(), project.id, &name, kind, url.as_deref()).await?;
            if ctx.json {
                return output::json(&env);
            }
            output::line(format!("created environment {}", env.name));
        }
        EnvCommand::Update { name, rename, kind, url, no_url } => {
            let update = EnvironmentUpdate { name: rename, kind, url: if no_url { Some(None) } else { url.map(Some) } };
            let env = store.update_environment(&ctx.actor(), project.id, &name, update).await?;
            if ctx.json {
                return output::json(&env);
            }
            output::line(format!("updated environment {}", env.name));
        }
        EnvCommand::List => {
            let environments = store.list_environments(project.id).await?;
            let deployments = store.list_deployments(project.id, None, 10_000).await?;
            let latest = |name: &str| deployments.iter().find(|d| d.environment == name);
            if ctx.json {
                let rows: Vec<_> = environments
                    .iter()
                    .map(|e| serde_json::json!({"environment": e, "latest_deployment": latest(&e.name)}))
                    .collect();
                return output::json(&rows);
            }
            let now = OffsetDateTime::now_utc();
            let mut table = Table::new(&["ENV", "KIND", "STATUS", "REF", "COMMIT", "AGE"]);
            for e in &environments {
                let d = latest(&e.name);
                table.row([
                    e.name.clone(),
                    e.kind.to_string(),
                    output::or_dash(d.map(|d| d.status.to_string())),
                    output::or_dash(d.map(|d| d.git_ref.clone())),
                    output::or_dash(d.and_then(|d| d.commit_sha.clone())),
                    output::or_dash(d.map(|d| age(now, d.started_at.unwrap_or(d.created_at)))),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

pub async fn run_pipeline(ctx: &Context, command: PipelineCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    match command {
        PipelineCommand::Report { id, name, status, git_ref, commit, url, provider, started, finished } => {
            let finished = finished.or_else(|| is_final_pipeline(status).then(OffsetDateTime::now_utc));
            let report = PipelineReport {
                provider,
                external_id: id,
                name,
                git_ref,
                commit_sha: commit,
                status,
                url,
                started_at: started,
                finished_at: finished,
            };
            let pipeline = store.report_pipeline(&ctx.actor(), project.id, report).await?;
            if ctx.json {
                return output::json(&pipeline);
            }
            output::line(format!("pipeline {} {} is {}", pipeline.name, pipeline.external_id, pipeline.status));
        }
        PipelineCommand::List { limit, failed } => {
            let mut pipelines = store.list_pipelines(project.id, limit).await?;
            if failed {
                pipelines.retain(|p| p.status == PipelineStatus::Failed);
            }
            if ctx.json {
                return output::json(&pipelines);
            }
            let now = OffsetDateTime::now_utc();
            let mut table = Table::new(&["ID", "NAME", "STATUS", "REF", "COMMIT", "AGE"]);
            for p in &pipelines {
                table.row([
                    p.external_id.clone(),
                    p.name.clone(),
                    p.status.to_string(),
                    p.git_ref.clone(),
                    output::or_dash(p.commit_sha.as_deref()),
                    age(now, p.started_at.unwrap_or(p.updated_at)),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

fn is_final_pipeline(status: PipelineStatus) -> bool {
    matches!(
        status,
        PipelineStatus::Success | PipelineStatus::Failed | PipelineStatus::Cancelled | PipelineStatus::Skipped
    )
}

pub async fn run_deploy(ctx: &Context, command: DeployCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    match command {
        DeployCommand::Report { env, id, status, git_ref, commit, url, provider, release, started, finished } => {
            let done = matches!(
                status,
                DeploymentStatus::Success
                    | DeploymentStatus::Failed
                    | DeploymentStatus::Cancelled
                    | DeploymentStatus::Inactive
            );
            let report = DeploymentReport {
                environment: env,
                provider,
                external_id: id,
                git_ref,
                commit_sha: commit,
                status,
                url,
                release,
                started_at: started,
                finished_at: finished.or_else(|| done.then(OffsetDateTime::now_utc)),
            };
            let deployment = store.report_deployment(&ctx.actor(), project.id, report).await?;
            if ctx.json {
                return output::json(&deployment);
            }
            output::line(format!(
                "deployment {} to {} is {}",
                deployment.external_id, deployment.environment, deployment.status
            ));
        }
        DeployCommand::List { env, limit } => {
            let deployments = store.list_deployments(project.id, env.as_deref(), limit).await?;
            if ctx.json {
                return output::json(&deployments);
            }
            let now = OffsetDateTime::now_utc();
            let mut table = Table::new(&["ID", "ENV", "STATUS", "REF", "COMMIT", "RELEASE", "AGE"]);
            for d in &deployments {
                table.row([
                    d.external_id.clone(),
                    d.environment.clone(),
                    d.status.to_string(),
                    d.git_ref.clone(),
                    output::or_dash(d.commit_sha.as_deref()),
                    output::or_dash(d.release.as_deref()),
                    age(now, d.started_at.unwrap_or(d.created_at)),
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

pub async fn run_release(ctx: &Context, command: ReleaseCommand) -> Result<()> {
    let store = ctx.store().await?;
    let project = ctx.project(&store).await?;
    let actor = ctx.actor();
    let release = match command {
        ReleaseCommand::Create { name, tag, git_ref, commit, target, notes } => {
            store
                .create_release(
                    &actor,
                    project.id,
                    NewRelease { name, tag, git_ref, commit_sha: commit, target_on: target, notes },
                )
                .await?
        }
        ReleaseCommand::Update { name, status, tag, git_ref, commit, target, notes, url } => {
            let update =
                ReleaseUpdate { status, tag, git_ref, commit_sha: commit, target_on: target.map(Some), notes, url };
            store.update_release(&actor, project.id, &name, update).await?
        }
        ReleaseCommand::Link { name, keys } => store.link_release_tasks(&actor, project.id, &name, &keys, true).await?,
        ReleaseCommand::Unlink { name, keys } => {
            store.link_release_tasks(&actor, project.id, &name, &keys, false).await?
        }
        ReleaseCommand::List => {
            let releases = store.list_releases(project.id).await?;
            let mut rows = Vec::new();
            for r in &releases {
                rows.push((r, store.release_readiness(project.id, &r.name).await?));
            }
            if ctx.json {
                let json: Vec<_> =
                    rows.iter().map(|(r, ready)| serde_json::json!({"release": r, "readiness": ready})).collect();
                return output::json(&json);
            }
            let mut table = Table::new(&["RELEASE", "STATUS", "TARGET", "TASKS", "PIPELINES", "READY"]);
            for (r, ready) in &rows {
                table.row([
                    r.name.clone(),
                    r.status.to_string(),
                    output::or_dash(r.target_on.map(|d| d.to_string())),
                    format!("{}/{}", ready.tasks_done, ready.tasks_total),
                    format!("{}/{}", ready.pipelines_green, ready.pipelines_total),
                    if ready.ready { "yes".into() } else { "no".into() },
                ]);
            }
            table.print();
            return Ok(());
        }
        ReleaseCommand::Show { name } => {
            let release = store.release_by_name(project.id, &name).await?;
            let ready = store.release_readiness(project.id, &name).await?;
            if ctx.json {
                return output::json(&serde_json::json!({"release": release, "readiness": ready}));
            }
            print_release(&release);
            output::line(format!(
                "ready: {}  (tasks done {}/{}, pipelines green {}/{})",
                if ready.ready { "yes" } else { "no" },
                ready.tasks_done,
                ready.tasks_total,
                ready.pipelines_green,
                ready.pipelines_total
            ));
            if !ready.open_tasks.is_empty() {
                output::line(format!("open tasks: {}", ready.open_tasks.join(", ")));
            }
            if !ready.failing_pipelines.is_empty() {
                output::line(format!("not green: {}", output::cell(&ready.failing_pipelines.join(", "), 200)));
            }
            return Ok(());
        }
    };
    if ctx.json {
        return output::json(&release);
    }
    print_release(&release);
    Ok(())
}

fn print_release(r: &Release) {
    output::line(format!(
        "release {} [{}]  tag: {}  ref: {}  commit: {}  target: {}",
        output::cell(&r.name, 60),
        r.status,
        output::or_dash(r.tag.as_deref()),
        output::or_dash(r.git_ref.as_deref()),
        output::or_dash(r.commit_sha.as_deref()),
        output::or_dash(r.target_on.map(|d| d.to_string()))
    ));
    if !r.task_keys.is_empty() {
        output::line(format!("tasks: {}", r.task_keys.join(", ")));
    }
}

/// `5m`, `3h`, `2d`: how long ago, for tables.
pub fn age(now: OffsetDateTime, then: OffsetDateTime) -> String {
    let seconds = (now - then).whole_seconds().max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
