//! Delivery state: environments, pipelines, deployments and releases, as a CI
//! job, n8n or a provider sync reports them. Reports are upserts keyed by
//! (provider, external id), so sending the same report twice changes nothing.

use crate::store::sql::Sql;
use deadpool_postgres::GenericClient;
use time::{Date, OffsetDateTime};

use super::audit::{self, Change};
use super::rows::{self, DEPLOYMENT_COLUMNS, ENVIRONMENT_COLUMNS, PIPELINE_COLUMNS, RELEASE_COLUMNS};
use super::tasks::NewTask;
use super::{Actor, Store, StoreError, StoreResult};
use crate::domain::{
    Deployment, DeploymentStatus, Environment, EnvironmentKind, LaneCategory, Pipeline, PipelineStatus, Priority,
    Release, ReleaseReadiness, ReleaseStatus, Task, TaskKey, text,
};

#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub provider: String,
    pub external_id: String,
    pub name: String,
    pub git_ref: String,
    pub commit_sha: Option<String>,
    pub status: PipelineStatus,
    pub url: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone)]
pub struct DeploymentReport {
    pub environment: String,
    pub provider: String,
    pub external_id: String,
    pub git_ref: String,
    pub commit_sha: Option<String>,
    pub status: DeploymentStatus,
    pub url: Option<String>,
    pub release: Option<String>,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
}

/// A release as a provider lists it, upserted by (provider, external id).
#[derive(Debug, Clone)]
pub struct ReleaseReport {
    pub provider: String,
    pub external_id: String,
    pub name: String,
    pub tag: Option<String>,
    pub commit_sha: Option<String>,
    pub status: ReleaseStatus,
    pub released_at: Option<OffsetDateTime>,
    pub url: Option<String>,
    pub notes: String,
}

#[derive(Debug, Clone, Default)]
pub struct NewRelease {
    pub name: String,
    pub tag: Option<String>,
    pub git_ref: Option<String>,
    pub commit_sha: Option<String>,
    pub target_on: Option<Date>,
    pub notes: String,
}

#[derive(Debug, Clone, Default)]
pub struct EnvironmentUpdate {
    pub name: Option<String>,
    pub kind: Option<EnvironmentKind>,
    /// `Some(None)` removes the URL.
    pub url: Option<Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct ReleaseUpdate {
    pub status: Option<ReleaseStatus>,
    pub tag: Option<String>,
    pub git_ref: Option<String>,
    pub commit_sha: Option<String>,
    pub target_on: Option<Option<Date>>,
    pub notes: Option<String>,
    pub url: Option<String>,
}

fn provider_name(raw: &str) -> StoreResult<String> {
    let value = raw.trim().to_ascii_lowercase();
    if !value.is_empty() && value.len() <= 40 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(value)
    } else {
        Err(StoreError::invalid(format!(
            "invalid provider {:?}: use a short lowercase name like github or manual",
            text::clip(raw, 40)
        )))
    }
}

fn commit(raw: Option<&str>) -> StoreResult<Option<String>> {
    raw.map(|c| {
        let value = c.trim().to_ascii_lowercase();
        if (4..=64).contains(&value.len()) && value.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(value)
        } else {
            Err(StoreError::invalid(format!("invalid commit {:?}: use 4-64 hex digits", text::clip(c, 70))))
        }
    })
    .transpose()
}

fn environment_name(raw: &str) -> StoreResult<String> {
    let name = raw.trim();
    let valid = !name.is_empty()
        && name.len() <= 60
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(name.to_string())
    } else {
        Err(StoreError::invalid(format!(
            "invalid environment name {:?}: use letters, digits, '.', '_' or '-'",
            text::clip(name, 60)
        )))
    }
}

fn url(raw: Option<&str>) -> StoreResult<Option<String>> {
    raw.map(|u| {
        let value = u.trim();
        if (value.starts_with("https://") || value.starts_with("http://"))
            && value.len() <= 2000
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            Ok(value.to_string())
        } else {
            Err(StoreError::invalid(format!("invalid URL {:?}: use an http(s):// address", text::clip(u, 70))))
        }
    })
    .transpose()
}

fn short(what: &str, raw: &str, max: usize) -> StoreResult<String> {
    let value = raw.trim();
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(StoreError::invalid(format!("invalid {what}: at most {max} characters on one line")));
    }
    Ok(value.to_string())
}

impl Store {
    pub async fn create_environment(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        kind: EnvironmentKind,
        env_url: Option<&str>,
    ) -> StoreResult<Environment> {
        self.refuse_if_read_only()?;
        let name = environment_name(name)?;
        let env_url = url(env_url)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO environment AS e (project_id, name, kind, url, position)
                     VALUES ($1, $2, $3, $4, (SELECT coalesce(max(position), 0) + 1 FROM environment WHERE project_id = $1))
                     RETURNING {ENVIRONMENT_COLUMNS}"
                ),
                &[&project_id, &name, &kind.as_str(), &env_url],
            )
            .await?;
        let environment = rows::environment(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("environment", "create", Some(project_id))
                .entity(environment.id, &environment.name)
                .after(&environment),
        )
        .await?;
        tx.commit().await?;
        Ok(environment)
    }

    pub async fn update_environment(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        update: EnvironmentUpdate,
    ) -> StoreResult<Environment> {
        self.refuse_if_read_only()?;
        let new_name = update.name.as_deref().map(environment_name).transpose()?;
        let new_url = match &update.url {
            Some(value) => Some(url(value.as_deref())?),
            None => None,
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = tx
            .fetch_opt(
                &format!(
                    "SELECT {ENVIRONMENT_COLUMNS} FROM environment e
                     WHERE e.project_id = $1 AND lower(e.name) = lower($2) FOR UPDATE"
                ),
                &[&project_id, &name.trim()],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("environment", name.trim()))?;
        let before = rows::environment(&before)?;
        let row = tx
            .fetch_one(
                &format!(
                    "UPDATE environment e SET name = coalesce($2, name), kind = coalesce($3, kind),
                            url = CASE WHEN $4 THEN $5 ELSE url END, updated_at = now()
                     WHERE e.id = $1 RETURNING {ENVIRONMENT_COLUMNS}"
                ),
                &[&before.id, &new_name, &update.kind.map(|k| k.as_str()), &new_url.is_some(), &new_url.flatten()],
            )
            .await?;
        let after = rows::environment(&row)?;
        if after == before {
            return Ok(after);
        }
        audit::record(
            &tx,
            actor,
            Change::new("environment", "update", Some(project_id))
                .entity(after.id, &after.name)
                .before(&before)
                .after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn list_environments(&self, project_id: i64) -> StoreResult<Vec<Environment>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!("SELECT {ENVIRONMENT_COLUMNS} FROM environment e WHERE e.project_id = $1 ORDER BY e.position, e.name"),
                &[&project_id],
            )
            .await?;
        rows.iter().map(rows::environment).collect()
    }

    /// Records a pipeline run, creating it or updating it in place.
    pub async fn report_pipeline(
        &self,
        actor: &Actor,
        project_id: i64,
        report: PipelineReport,
    ) -> StoreResult<Pipeline> {
        self.refuse_if_read_only()?;
        let provider = provider_name(&report.provider)?;
        // The name first: a default id is made from it, and its fault is the name's.
        let name = short("pipeline name", &report.name, 200)?;
        let external_id = short("pipeline id", &report.external_id, 200)?;
        if external_id.is_empty() || name.is_empty() {
            return Err(StoreError::invalid("a pipeline report needs an id and a name"));
        }
        let git_ref = short("ref", &report.git_ref, 255)?;
        let commit_sha = commit(report.commit_sha.as_deref())?;
        let run_url = url(report.url.as_deref())?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = tx
            .fetch_opt(
                &format!(
                    "SELECT {PIPELINE_COLUMNS} FROM pipeline pl
                     WHERE pl.project_id = $1 AND pl.provider = $2 AND pl.external_id = $3 FOR UPDATE"
                ),
                &[&project_id, &provider, &external_id],
            )
            .await?
            .map(|row| rows::pipeline(&row))
            .transpose()?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO pipeline AS pl (project_id, provider, external_id, name, ref, commit_sha, status, url,
                                                 started_at, finished_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (project_id, provider, external_id) DO UPDATE
                        SET name = EXCLUDED.name, ref = EXCLUDED.ref,
                            commit_sha = coalesce(EXCLUDED.commit_sha, pl.commit_sha),
                            status = EXCLUDED.status, url = coalesce(EXCLUDED.url, pl.url),
                            started_at = coalesce(EXCLUDED.started_at, pl.started_at),
                            finished_at = coalesce(EXCLUDED.finished_at, pl.finished_at), updated_at = now()
                     RETURNING {PIPELINE_COLUMNS}"
                ),
                &[
                    &project_id,
                    &provider,
                    &external_id,
                    &name,
                    &git_ref,
                    &commit_sha,
                    &report.status.as_str(),
                    &run_url,
                    &report.started_at,
                    &report.finished_at,
                ],
            )
            .await?;
        let after = rows::pipeline(&row)?;
        let unchanged =
            before.as_ref().is_some_and(|b| Pipeline { updated_at: after.updated_at, ..b.clone() } == after);
        if unchanged {
            return Ok(before.unwrap_or(after)); // dropping the transaction rolls back the no-op update
        }
        let mut change =
            Change::new("pipeline", "report", Some(project_id)).entity(after.id, &after.external_id).after(&after);
        if let Some(before) = &before {
            change = change.before(before);
        }
        audit::record(&tx, actor, change).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Makes sure an environment a provider deploys to exists (created with
    /// `kind` and `url` when missing; an existing one is left as operators set it).
    pub async fn sync_ensure_environment(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        kind: EnvironmentKind,
        env_url: Option<&str>,
    ) -> StoreResult<()> {
        self.refuse_if_read_only()?;
        let name = environment_name(name)?;
        let env_url = url(env_url).ok().flatten();
        let client = self.client().await?;
        let exists = client
            .fetch_opt(
                "SELECT 1 FROM environment WHERE project_id = $1 AND lower(name) = lower($2)",
                &[&project_id, &name],
            )
            .await?
            .is_some();
        if exists {
            return Ok(());
        }
        drop(client);
        match self.create_environment(actor, project_id, &name, kind, env_url.as_deref()).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Upserts a provider's release by (provider, external id). A release
    /// made here with the same name and no provider id is adopted.
    pub async fn sync_report_release(
        &self,
        actor: &Actor,
        project_id: i64,
        report: ReleaseReport,
    ) -> StoreResult<Release> {
        self.refuse_if_read_only()?;
        let provider = provider_name(&report.provider)?;
        let external_id = short("release id", &report.external_id, 200)?;
        let name = text::name("release name", &report.name, 120)?;
        let tag = report.tag.as_deref().map(|t| short("tag", t, 200)).transpose()?;
        let commit_sha = commit(report.commit_sha.as_deref())?;
        let release_url = url(report.url.as_deref())?;
        let notes = text::long_text("notes", &report.notes, 100_000)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let existing: Option<i64> = tx
            .fetch_opt(
                "SELECT id FROM release WHERE project_id = $1 AND provider = $2 AND external_id = $3 FOR UPDATE",
                &[&project_id, &provider, &external_id],
            )
            .await?
            .map(|r| r.get(0));
        let existing = match existing {
            Some(id) => Some(id),
            None => tx
                .fetch_opt(
                    "SELECT id FROM release WHERE project_id = $1 AND lower(name) = lower($2) AND external_id IS NULL FOR UPDATE",
                    &[&project_id, &name],
                )
                .await?
                .map(|r| r.get(0)),
        };
        let before = match existing {
            Some(id) => Some(read_release(&tx, id).await?),
            None => None,
        };
        // The provider's id is the release's identity; the local name is only
        // unique here, so a name another release holds is told apart.
        let name = free_release_name(&tx, project_id, &name, &provider, &external_id, existing).await?;
        let id: i64 = match existing {
            Some(id) => tx
                .fetch_one(
                    "UPDATE release SET name = $2, tag = coalesce($3, tag), provider = $4, external_id = $5, status = $6,
                            commit_sha = coalesce($7, commit_sha), released_at = coalesce($8, released_at),
                            url = coalesce($9, url), notes = $10, updated_at = now()
                     WHERE id = $1 RETURNING id",
                    &[
                        &id,
                        &name,
                        &tag,
                        &provider,
                        &external_id,
                        &report.status.as_str(),
                        &commit_sha,
                        &report.released_at,
                        &release_url,
                        &notes,
                    ],
                )
                .await?
                .get(0),
            None => tx
                .fetch_one(
                    "INSERT INTO release (project_id, name, tag, provider, external_id, status, commit_sha, released_at, url, notes)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                    &[
                        &project_id,
                        &name,
                        &tag,
                        &provider,
                        &external_id,
                        &report.status.as_str(),
                        &commit_sha,
                        &report.released_at,
                        &release_url,
                        &notes,
                    ],
                )
                .await?
                .get(0),
        };
        let after = read_release(&tx, id).await?;
        if before.as_ref() == Some(&after) {
            return Ok(after); // dropping the transaction rolls back the no-op update
        }
        let mut change = Change::new("release", "report", Some(project_id)).entity(id, &after.name).after(&after);
        if let Some(before) = &before {
            change = change.before(before);
        }
        audit::record(&tx, actor, change).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Recent pipeline runs, newest first.
    pub async fn list_pipelines(&self, project_id: i64, limit: i64) -> StoreResult<Vec<Pipeline>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {PIPELINE_COLUMNS} FROM pipeline pl WHERE pl.project_id = $1
                     ORDER BY coalesce(pl.started_at, pl.updated_at) DESC, pl.id DESC LIMIT $2"
                ),
                &[&project_id, &limit.clamp(1, 10_000)],
            )
            .await?;
        rows.iter().map(rows::pipeline).collect()
    }

    /// The pipelines failing now: the latest run of each pipeline and ref,
    /// when that run failed (a failure a later run fixed is left out).
    pub async fn failing_pipelines(&self, project_id: i64, limit: i64) -> StoreResult<Vec<Pipeline>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT * FROM (
                         SELECT DISTINCT ON (pl.name, pl.ref) {PIPELINE_COLUMNS} FROM pipeline pl
                          WHERE pl.project_id = $1
                          ORDER BY pl.name, pl.ref, coalesce(pl.started_at, pl.updated_at) DESC, pl.id DESC
                     ) latest
                     WHERE latest.status = 'failed'
                     ORDER BY coalesce(latest.started_at, latest.updated_at) DESC, latest.id DESC LIMIT $2"
                ),
                &[&project_id, &limit.clamp(1, 10_000)],
            )
            .await?;
        rows.iter().map(rows::pipeline).collect()
    }

    /// Creates a follow-up task from a failed pipeline run of the project: a
    /// high-priority `ci` task that names the pipeline, its ref, commit and run.
    pub async fn create_follow_up(&self, actor: &Actor, project_id: i64, pipeline_id: i64) -> StoreResult<Task> {
        let pipeline = {
            let client = self.client().await?;
            let row = client
                .fetch_opt(
                    &format!("SELECT {PIPELINE_COLUMNS} FROM pipeline pl WHERE pl.id = $1 AND pl.project_id = $2"),
                    &[&pipeline_id, &project_id],
                )
                .await?
                .ok_or_else(|| StoreError::not_found("pipeline", pipeline_id.to_string()))?;
            rows::pipeline(&row)?
        };
        if pipeline.status != PipelineStatus::Failed {
            return Err(StoreError::invalid(format!(
                "pipeline {} ({}) has not failed: follow-up tasks are for failed runs",
                pipeline.id, pipeline.name
            )));
        }
        let mut description = format!(
            "Pipeline **{}** failed on `{}`{}.",
            pipeline.name,
            pipeline.git_ref,
            pipeline.commit_sha.as_ref().map(|c| format!(" at `{c}`")).unwrap_or_default()
        );
        if let Some(url) = &pipeline.url {
            description.push_str(&format!("\n\nRun: {url}"));
        }
        let git_ref = if pipeline.git_ref.is_empty() { "?" } else { &pipeline.git_ref };
        let new = NewTask {
            title: text::clip(&format!("Fix failing {} on {git_ref}", pipeline.name), text::MAX_TITLE_CHARS)
                .into_owned(),
            description,
            priority: Some(Priority::High),
            labels: vec!["ci".into()],
            ..Default::default()
        };
        self.create_task(actor, project_id, new).await
    }

    pub async fn report_deployment(
        &self,
        actor: &Actor,
        project_id: i64,
        report: DeploymentReport,
    ) -> StoreResult<Deployment> {
        self.refuse_if_read_only()?;
        let provider = provider_name(&report.provider)?;
        let external_id = short("deployment id", &report.external_id, 200)?;
        if external_id.is_empty() {
            return Err(StoreError::invalid("a deployment report needs an id"));
        }
        let git_ref = short("ref", &report.git_ref, 255)?;
        let commit_sha = commit(report.commit_sha.as_deref())?;
        let deploy_url = url(report.url.as_deref())?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let environment_id: i64 = tx
            .fetch_opt(
                "SELECT id FROM environment WHERE project_id = $1 AND lower(name) = lower($2)",
                &[&project_id, &report.environment.trim()],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("environment", report.environment.trim()))?
            .get(0);
        let release_id: Option<i64> = match &report.release {
            Some(name) => Some(release_id_by_name(&tx, project_id, name).await?),
            None => None,
        };
        let before = tx
            .fetch_opt(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployment d JOIN environment e ON e.id = d.environment_id
                     LEFT JOIN release r ON r.id = d.release_id
                     WHERE d.project_id = $1 AND d.provider = $2 AND d.external_id = $3 FOR UPDATE OF d"
                ),
                &[&project_id, &provider, &external_id],
            )
            .await?
            .map(|row| rows::deployment(&row))
            .transpose()?;
        let id: i64 = tx
            .fetch_one(
                "INSERT INTO deployment AS d (project_id, environment_id, provider, external_id, ref, commit_sha, status,
                                              url, release_id, started_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                 ON CONFLICT (project_id, provider, external_id) DO UPDATE
                    SET environment_id = EXCLUDED.environment_id, ref = EXCLUDED.ref,
                        commit_sha = coalesce(EXCLUDED.commit_sha, d.commit_sha), status = EXCLUDED.status,
                        url = coalesce(EXCLUDED.url, d.url), release_id = coalesce(EXCLUDED.release_id, d.release_id),
                        started_at = coalesce(EXCLUDED.started_at, d.started_at),
                        finished_at = coalesce(EXCLUDED.finished_at, d.finished_at), updated_at = now()
                 RETURNING id",
                &[
                    &project_id,
                    &environment_id,
                    &provider,
                    &external_id,
                    &git_ref,
                    &commit_sha,
                    &report.status.as_str(),
                    &deploy_url,
                    &release_id,
                    &report.started_at,
                    &report.finished_at,
                ],
            )
            .await?
            .get(0);
        let after = read_deployment(&tx, id).await?;
        if before.as_ref() == Some(&after) {
            return Ok(after);
        }
        let mut change =
            Change::new("deployment", "report", Some(project_id)).entity(id, &after.external_id).after(&after);
        if let Some(before) = &before {
            change = change.before(before);
        }
        audit::record(&tx, actor, change).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deployments, newest first, optionally for one environment.
    pub async fn list_deployments(
        &self,
        project_id: i64,
        environment: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<Deployment>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM deployment d JOIN environment e ON e.id = d.environment_id
                     LEFT JOIN release r ON r.id = d.release_id
                     WHERE d.project_id = $1 AND ($2::text IS NULL OR lower(e.name) = lower($2))
                     ORDER BY coalesce(d.started_at, d.created_at) DESC, d.id DESC LIMIT $3"
                ),
                &[&project_id, &environment, &limit.clamp(1, 10_000)],
            )
            .await?;
        rows.iter().map(rows::deployment).collect()
    }

    pub async fn create_release(&self, actor: &Actor, project_id: i64, new: NewRelease) -> StoreResult<Release> {
        self.refuse_if_read_only()?;
        let name = text::name("release name", &new.name, 120)?;
        let tag = new.tag.as_deref().map(|t| short("tag", t, 200)).transpose()?;
        let git_ref = new.git_ref.as_deref().map(|r| short("ref", r, 255)).transpose()?;
        let commit_sha = commit(new.commit_sha.as_deref())?;
        let notes = text::long_text("notes", &new.notes, 100_000)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .fetch_one(
                "INSERT INTO release (project_id, name, tag, ref, commit_sha, target_on, notes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&project_id, &name, &tag, &git_ref, &commit_sha, &new.target_on, &notes],
            )
            .await?
            .get(0);
        let release = read_release(&tx, id).await?;
        audit::record(
            &tx,
            actor,
            Change::new("release", "create", Some(project_id)).entity(id, &release.name).after(&release),
        )
        .await?;
        tx.commit().await?;
        Ok(release)
    }

    pub async fn update_release(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        update: ReleaseUpdate,
    ) -> StoreResult<Release> {
        self.refuse_if_read_only()?;
        let tag = update.tag.as_deref().map(|t| short("tag", t, 200)).transpose()?;
        let git_ref = update.git_ref.as_deref().map(|r| short("ref", r, 255)).transpose()?;
        let commit_sha = commit(update.commit_sha.as_deref())?;
        let notes = update.notes.as_deref().map(|n| text::long_text("notes", n, 100_000)).transpose()?;
        let release_url = url(update.url.as_deref())?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = release_id_by_name(&tx, project_id, name).await?;
        tx.exec("SELECT 1 FROM release WHERE id = $1 FOR UPDATE", &[&id]).await?;
        let before = read_release(&tx, id).await?;
        tx.exec(
            "UPDATE release SET status = coalesce($2, status), tag = coalesce($3, tag), ref = coalesce($4, ref),
                    commit_sha = coalesce($5, commit_sha), target_on = CASE WHEN $6 THEN $7 ELSE target_on END,
                    notes = coalesce($8, notes), url = coalesce($9, url),
                    released_at = CASE WHEN $2 = 'released' AND released_at IS NULL THEN now() ELSE released_at END,
                    updated_at = now()
             WHERE id = $1",
            &[
                &id,
                &update.status.map(|s| s.as_str()),
                &tag,
                &git_ref,
                &commit_sha,
                &update.target_on.is_some(),
                &update.target_on.flatten(),
                &notes,
                &release_url,
            ],
        )
        .await?;
        let after = read_release(&tx, id).await?;
        if after == before {
            return Ok(after);
        }
        audit::record(
            &tx,
            actor,
            Change::new("release", "update", Some(project_id)).entity(id, &after.name).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Links (or with `link = false` unlinks) tasks to a release.
    pub async fn link_release_tasks(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        task_keys: &[String],
        link: bool,
    ) -> StoreResult<Release> {
        self.refuse_if_read_only()?;
        let keys: Vec<String> =
            task_keys.iter().map(|k| k.parse::<TaskKey>().map(|k| k.to_string())).collect::<Result<_, _>>()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = release_id_by_name(&tx, project_id, name).await?;
        tx.exec("SELECT 1 FROM release WHERE id = $1 FOR UPDATE", &[&id]).await?;
        let before = read_release(&tx, id).await?;
        for key in &keys {
            let task_id: i64 = tx
                .fetch_opt("SELECT id FROM task WHERE task_key = $1 AND project_id = $2", &[key, &project_id])
                .await?
                .ok_or_else(|| StoreError::not_found("task", key))?
                .get(0);
            if link {
                tx.exec(
                    "INSERT INTO release_task (release_id, task_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&id, &task_id],
                )
                .await?;
            } else {
                tx.exec("DELETE FROM release_task WHERE release_id = $1 AND task_id = $2", &[&id, &task_id]).await?;
            }
        }
        let after = read_release(&tx, id).await?;
        if after == before {
            return Ok(after);
        }
        let verb = if link { "link" } else { "unlink" };
        audit::record(
            &tx,
            actor,
            Change::new("release", verb, Some(project_id)).entity(id, &after.name).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn list_releases(&self, project_id: i64) -> StoreResult<Vec<Release>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {RELEASE_COLUMNS} FROM release r WHERE r.project_id = $1
                     ORDER BY (r.status = 'released'), coalesce(r.target_on, r.released_at::date) DESC NULLS FIRST, r.name"
                ),
                &[&project_id],
            )
            .await?;
        rows.iter().map(rows::release).collect()
    }

    /// The releases a provider reported here, by its id: `(external id,
    /// name, status, tag)` (for `sync plan`).
    pub async fn provider_releases(
        &self,
        project_id: i64,
        provider: &str,
    ) -> StoreResult<Vec<(String, String, String, Option<String>)>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                "SELECT external_id, name, status, tag FROM release
                 WHERE project_id = $1 AND provider = $2 AND external_id IS NOT NULL ORDER BY name",
                &[&project_id, &provider],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }

    pub async fn release_by_name(&self, project_id: i64, name: &str) -> StoreResult<Release> {
        let client = self.client().await?;
        let id = release_id_by_name(&client, project_id, name).await?;
        read_release(&client, id).await
    }

    /// Linked tasks done, and the latest run of each pipeline on the release's
    /// commit (or, without a commit, its ref) green.
    pub async fn release_readiness(&self, project_id: i64, name: &str) -> StoreResult<ReleaseReadiness> {
        let client = self.client().await?;
        let release = {
            let id = release_id_by_name(&client, project_id, name).await?;
            read_release(&client, id).await?
        };
        let tasks = client
            .fetch(
                "SELECT t.task_key, l.category FROM release_task rt JOIN task t ON t.id = rt.task_id
                 JOIN lane l ON l.id = t.lane_id WHERE rt.release_id = $1 AND NOT t.archived ORDER BY t.number",
                &[&release.id],
            )
            .await?;
        let mut open_tasks = Vec::new();
        for row in &tasks {
            let category = LaneCategory::from_db(row.get(1))?;
            if !category.is_closed() {
                open_tasks.push(row.get::<_, String>(0));
            }
        }
        let checks_pipelines = release.commit_sha.is_some() || release.git_ref.is_some();
        let pipelines = client
            .fetch(
                "SELECT DISTINCT ON (name) name, status FROM pipeline
                 WHERE project_id = $1 AND $4 AND (commit_sha = $2 OR ($2 IS NULL AND ref = $3))
                 ORDER BY name, coalesce(started_at, created_at) DESC, id DESC",
                &[&project_id, &release.commit_sha, &release.git_ref, &checks_pipelines],
            )
            .await?;
        let mut failing = Vec::new();
        for row in &pipelines {
            if PipelineStatus::from_db(row.get(1))? != PipelineStatus::Success {
                failing.push(format!("{} ({})", row.get::<_, String>(0), row.get::<_, String>(1)));
            }
        }
        let pipelines_ok = !checks_pipelines || (!pipelines.is_empty() && failing.is_empty());
        Ok(ReleaseReadiness {
            release: release.name,
            ready: open_tasks.is_empty() && pipelines_ok,
            tasks_total: tasks.len() as i64,
            tasks_done: (tasks.len() - open_tasks.len()) as i64,
            open_tasks,
            pipelines_total: pipelines.len() as i64,
            pipelines_green: (pipelines.len() - failing.len()) as i64,
            failing_pipelines: failing,
        })
    }
}

async fn release_id_by_name(client: &impl Sql, project_id: i64, name: &str) -> StoreResult<i64> {
    let row = client
        .fetch_opt(
            "SELECT id FROM release WHERE project_id = $1 AND lower(name) = lower($2)",
            &[&project_id, &name.trim()],
        )
        .await?
        .ok_or_else(|| StoreError::not_found("release", name.trim()))?;
    Ok(row.get(0))
}

async fn read_release(client: &impl Sql, id: i64) -> StoreResult<Release> {
    let row = client.fetch_one(&format!("SELECT {RELEASE_COLUMNS} FROM release r WHERE r.id = $1"), &[&id]).await?;
    rows::release(&row)
}

async fn read_deployment(client: &impl Sql, id: i64) -> StoreResult<Deployment> {
    let row = client
        .fetch_one(
            &format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployment d JOIN environment e ON e.id = d.environment_id
                 LEFT JOIN release r ON r.id = d.release_id WHERE d.id = $1"
            ),
            &[&id],
        )
        .await?;
    rows::deployment(&row)
}

/// A name for a provider's release that no other release of the project
/// holds: its own name, else `NAME (provider)`, else `NAME (provider ID)`
/// (then a counter). Deterministic, so a release keeps the name it got.
async fn free_release_name(
    client: &impl Sql,
    project_id: i64,
    name: &str,
    provider: &str,
    external_id: &str,
    existing: Option<i64>,
) -> StoreResult<String> {
    let id = text::clip(external_id, 40);
    let room = |extra: usize| 120usize.saturating_sub(provider.len() + id.chars().count() + extra).max(1);
    let mut candidates = vec![
        name.to_string(),
        format!("{} ({provider})", text::clip(name, 100)),
        format!("{} ({provider} {id})", text::clip(name, room(4))),
    ];
    candidates.extend((2..=20).map(|n| format!("{} ({provider} {id}-{n})", text::clip(name, room(8)))));
    for candidate in candidates {
        let taken: bool = client
            .fetch_one(
                "SELECT EXISTS (SELECT 1 FROM release WHERE project_id = $1 AND lower(name) = lower($2) AND id <> coalesce($3::bigint, 0))",
                &[&project_id, &candidate, &existing],
            )
            .await?
            .get(0);
        if !taken {
            return Ok(candidate);
        }
    }
    Err(StoreError::invalid(format!(
        "every name for {provider} release {external_id} is taken here: rename the local release called {name:?}"
    )))
}
