//! The demo project: a realistic team board (assets/demo.toml) loaded through
//! the normal repository path, so it carries a real audit trail.

use crate::store::sql::Sql;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use crate::domain::*;
use crate::store::delivery::{DeploymentReport, NewRelease, PipelineReport, ReleaseUpdate};
use crate::store::handoffs::NewHandoff;
use crate::store::planning::NewModule;
use crate::store::tasks::NewTask;
use crate::store::{Actor, Store, StoreError, StoreResult, agents::NewAgent};

pub const DEMO_PROJECT_KEY: &str = "DEMO";
const DATA: &str = include_str!("../../assets/demo.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoData {
    project: DemoProject,
    agents: Vec<DemoAgent>,
    cycles: Vec<DemoCycle>,
    modules: Vec<DemoModule>,
    tasks: Vec<DemoTask>,
    handoffs: Vec<DemoHandoff>,
    pages: Vec<DemoPage>,
    environments: Vec<DemoEnvironment>,
    pipelines: Vec<DemoPipeline>,
    deployments: Vec<DemoDeployment>,
    releases: Vec<DemoRelease>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoProject {
    key: String,
    name: String,
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoAgent {
    handle: String,
    name: String,
    kind: AgentKind,
    capacity: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoCycle {
    name: String,
    start_offset_days: i64,
    end_offset_days: i64,
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoModule {
    name: String,
    status: ModuleStatus,
    lead: Option<String>,
    target_offset_days: Option<i64>,
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoTask {
    title: String,
    lane: String,
    priority: Priority,
    assignee: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
    due_offset_days: Option<i64>,
    age_hours: i64,
    cycle: Option<String>,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoHandoff {
    task: usize,
    kind: HandoffKind,
    from: String,
    to: String,
    reason: String,
    #[serde(default)]
    needs: String,
    due_offset_hours: Option<i64>,
    state: HandoffState,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoPage {
    slug: String,
    title: String,
    body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoEnvironment {
    name: String,
    kind: EnvironmentKind,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoPipeline {
    id: String,
    name: String,
    #[serde(rename = "ref")]
    git_ref: String,
    commit: String,
    status: PipelineStatus,
    age_minutes: i64,
    duration_minutes: Option<i64>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoDeployment {
    environment: String,
    id: String,
    #[serde(rename = "ref")]
    git_ref: String,
    commit: String,
    status: DeploymentStatus,
    age_minutes: i64,
    duration_minutes: Option<i64>,
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DemoRelease {
    name: String,
    tag: String,
    status: ReleaseStatus,
    #[serde(rename = "ref")]
    git_ref: String,
    commit: Option<String>,
    target_offset_days: Option<i64>,
    released_offset_days: Option<i64>,
    #[serde(default)]
    tasks: Vec<usize>,
    #[serde(default)]
    notes: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DemoOutcome {
    Created(Project),
    AlreadyThere(Project),
}

/// Creates the demo project unless it exists. Times in the data set are
/// offsets from `now`, so the board always looks mid-sprint.
pub async fn seed_demo(store: &Store, actor: &Actor, now: OffsetDateTime) -> StoreResult<DemoOutcome> {
    match store.project_by_key(DEMO_PROJECT_KEY).await {
        Ok(project) => return Ok(DemoOutcome::AlreadyThere(project)),
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let data: DemoData =
        toml::from_str(DATA).map_err(|e| StoreError::Database(format!("the demo data set is invalid: {e}")))?;
    let today = now.date();
    let project = store.create_project(actor, &data.project.key, &data.project.name, &data.project.description).await?;
    let pid = project.id;

    for agent in &data.agents {
        match store.agent_by_handle(&agent.handle).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                let new = NewAgent {
                    handle: agent.handle.clone(),
                    display_name: agent.name.clone(),
                    kind: agent.kind,
                    capacity: Some(agent.capacity),
                    skills: Vec::new(),
                };
                store.create_agent(actor, new).await?;
            }
            Err(e) => return Err(e),
        }
    }
    for cycle in &data.cycles {
        let start = today + Duration::days(cycle.start_offset_days);
        let end = today + Duration::days(cycle.end_offset_days);
        store.create_cycle(actor, pid, &cycle.name, start, end, &cycle.description).await?;
    }
    for module in &data.modules {
        let new = NewModule {
            name: module.name.clone(),
            description: module.description.clone(),
            status: module.status,
            lead: module.lead.clone(),
            target_on: module.target_offset_days.map(|d| today + Duration::days(d)),
        };
        store.create_module(actor, pid, new).await?;
    }
    let mut keys = Vec::with_capacity(data.tasks.len());
    for task in &data.tasks {
        let new = NewTask {
            title: task.title.clone(),
            description: task.description.clone(),
            lane: Some(task.lane.clone()),
            priority: Some(task.priority),
            assignee: task.assignee.clone(),
            labels: task.labels.clone(),
            due_on: task.due_offset_days.map(|d| today + Duration::days(d)),
            cycle: task.cycle.clone(),
            modules: task.modules.clone(),
        };
        keys.push(store.create_task(actor, pid, new).await?.key);
    }
    let key_of = |index: usize| {
        keys.get(index.wrapping_sub(1))
            .cloned()
            .ok_or_else(|| StoreError::Database(format!("the demo data set refers to task {index}, which it lacks")))
    };
    for handoff in &data.handoffs {
        let opened = store
            .open_handoff(
                actor,
                NewHandoff {
                    task_key: key_of(handoff.task)?,
                    kind: handoff.kind,
                    from: Some(handoff.from.clone()),
                    to: handoff.to.clone(),
                    reason: handoff.reason.clone(),
                    needs: handoff.needs.clone(),
                    due_at: handoff.due_offset_hours.map(|h| now + Duration::hours(h)),
                },
            )
            .await?;
        if handoff.state == HandoffState::Accepted {
            store.transition_handoff(actor, opened.id, HandoffState::Accepted, "", None).await?;
        }
    }
    for page in &data.pages {
        store.create_page(actor, pid, &page.slug, &page.title, &page.body).await?;
    }
    for env in &data.environments {
        store.create_environment(actor, pid, &env.name, env.kind, env.url.as_deref()).await?;
    }
    for release in &data.releases {
        let new = NewRelease {
            name: release.name.clone(),
            tag: Some(release.tag.clone()),
            git_ref: Some(release.git_ref.clone()),
            commit_sha: release.commit.clone(),
            target_on: release.target_offset_days.map(|d| today + Duration::days(d)),
            notes: release.notes.clone(),
        };
        store.create_release(actor, pid, new).await?;
        let linked: Vec<String> = release.tasks.iter().map(|i| key_of(*i)).collect::<StoreResult<_>>()?;
        if !linked.is_empty() {
            store.link_release_tasks(actor, pid, &release.name, &linked, true).await?;
        }
        if release.status != ReleaseStatus::Planned {
            store
                .update_release(
                    actor,
                    pid,
                    &release.name,
                    ReleaseUpdate { status: Some(release.status), ..Default::default() },
                )
                .await?;
        }
    }
    for pipeline in &data.pipelines {
        let started = now - Duration::minutes(pipeline.age_minutes);
        let report = PipelineReport {
            provider: "github".into(),
            external_id: pipeline.id.clone(),
            name: pipeline.name.clone(),
            git_ref: pipeline.git_ref.clone(),
            commit_sha: Some(pipeline.commit.clone()),
            status: pipeline.status,
            url: pipeline.url.clone(),
            started_at: Some(started),
            finished_at: pipeline.duration_minutes.map(|m| started + Duration::minutes(m)),
        };
        store.report_pipeline(actor, pid, report).await?;
    }
    for deployment in &data.deployments {
        let started = now - Duration::minutes(deployment.age_minutes);
        let report = DeploymentReport {
            environment: deployment.environment.clone(),
            provider: "github".into(),
            external_id: deployment.id.clone(),
            git_ref: deployment.git_ref.clone(),
            commit_sha: Some(deployment.commit.clone()),
            status: deployment.status,
            url: deployment.url.clone(),
            release: None,
            started_at: Some(started),
            finished_at: deployment.duration_minutes.map(|m| started + Duration::minutes(m)),
        };
        store.report_deployment(actor, pid, report).await?;
    }
    backdate(store, pid, &data, &keys, now).await?;
    let project = store.project_by_key(DEMO_PROJECT_KEY).await?;
    Ok(DemoOutcome::Created(project))
}

/// Gives the demo rows the ages the data set describes (they were all just
/// created). A plain data fix-up of a brand-new project, so it is not audited.
async fn backdate(
    store: &Store,
    project_id: i64,
    data: &DemoData,
    keys: &[String],
    now: OffsetDateTime,
) -> StoreResult<()> {
    let client = store.client().await?;
    let ages: Vec<OffsetDateTime> = data.tasks.iter().map(|t| now - Duration::hours(t.age_hours)).collect();
    client
        .exec(
            "UPDATE task t SET created_at = v.at, updated_at = v.at
             FROM unnest($2::text[], $3::timestamptz[]) AS v(key, at)
             WHERE t.project_id = $1 AND t.task_key = v.key",
            &[&project_id, &keys, &ages],
        )
        .await?;
    // Handoffs were opened when their task was last touched, or a few hours ago.
    client
        .exec(
            "UPDATE handoff h SET created_at = greatest(t.created_at, $2::timestamptz - interval '30 hours'),
                                  updated_at = greatest(t.created_at, $2::timestamptz - interval '30 hours')
             FROM task t WHERE t.id = h.task_id AND h.project_id = $1",
            &[&project_id, &now],
        )
        .await?;
    client
        .exec(
            "UPDATE pipeline SET created_at = coalesce(started_at, created_at), updated_at = coalesce(finished_at, started_at, updated_at)
             WHERE project_id = $1",
            &[&project_id],
        )
        .await?;
    client
        .exec(
            "UPDATE deployment SET created_at = coalesce(started_at, created_at), updated_at = coalesce(finished_at, started_at, updated_at)
             WHERE project_id = $1",
            &[&project_id],
        )
        .await?;
    for release in &data.releases {
        if let Some(days) = release.released_offset_days {
            client
                .exec(
                    "UPDATE release SET released_at = $3 WHERE project_id = $1 AND name = $2",
                    &[&project_id, &release.name, &(now + Duration::days(days))],
                )
                .await?;
        }
    }
    Ok(())
}
