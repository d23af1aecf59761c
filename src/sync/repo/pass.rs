//! Passes over a repository: delivery state (pull only), then issues.
//!
//! An incremental pass lists issues changed since the watermark less an
//! overlap; a full pass (and a connection's first) lists all of them, imports
//! the open ones it has never seen, and infers remote deletions only from a
//! complete listing, confirming each with a `GET`. Listing pages carry their
//! last ETag, so an idle pass is answered with 304s.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::RepoSync;
use super::tasks::{IssueOutcome, local_changes, local_fields, remote_fields};
use crate::domain::{LocalKind, SyncState};
use crate::store::StoreError;
use crate::store::sync::{ImportedTask, SyncMapping, SyncedTask};
use crate::store::tasks::TaskFilter;
use crate::sync::merge::{self, Base, Clocks, Convert, Fields};
use crate::sync::plane::pass::PassReport;
use crate::sync::plane::plan::SyncPlan;
use crate::sync::plane::{SyncError, SyncResult};
use crate::sync::providers::repo::{self, Feed, Issue, RepoProvider};

/// Issues changed up to this long before the watermark are read again.
pub const OVERLAP: time::Duration = time::Duration::minutes(2);

const IMPORT_BATCH: usize = 500;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct Watermarks {
    #[serde(default, with = "time::serde::rfc3339::option")]
    issues: Option<OffsetDateTime>,
}

/// What an unmapped issue's marker says.
enum Marked {
    /// It names an unmapped task of this project: linked now.
    Adopted,
    /// It names a task of this project that has its issue already.
    Known,
    No,
}

/// What the repository offers, recorded in `sync_cursor.capabilities`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub provider: String,
    pub actions: Option<bool>,
    pub deployments: Option<bool>,
    pub releases: Option<bool>,
}

impl<P: RepoProvider> RepoSync<P> {
    /// One pass: delivery state, then issues (all of them when `full`).
    pub async fn pull(&mut self, full: bool) -> SyncResult<PassReport> {
        let mut report = PassReport { full, ..PassReport::default() };
        let result = self.pull_inner(full, &mut report).await;
        let ok = result.is_ok() && report.errors.is_empty();
        if ok {
            let memos = self.provider.etags().commit(!report.full);
            crate::sync::cursor::save_etags(&self.store, self.connection.id, &memos).await?;
        } else {
            self.provider.etags().discard();
        }
        let error = match &result {
            Err(e) => Some(e.to_string()),
            Ok(()) => report.errors.first().cloned(),
        };
        crate::sync::cursor::save_pass(&self.store, self.connection.id, report.full, ok, error.as_deref()).await?;
        result.map(|()| report)
    }

    async fn pull_inner(&mut self, full: bool, report: &mut PassReport) -> SyncResult<()> {
        let cursor: Watermarks =
            serde_json::from_value(crate::sync::cursor::watermarks(&self.store, self.connection.id).await?)
                .unwrap_or_default();
        let full = full || cursor.issues.is_none();
        report.full = full;
        if full {
            self.refresh().await?;
        }
        self.pull_delivery(report).await?;

        let since = if full { None } else { cursor.issues.map(|w| w - OVERLAP) };
        let listing = self.provider.issues(since).await?;
        report.requests += listing.requests;
        report.not_modified += listing.not_modified;
        report.listed = listing.issues.len() + listing.unchanged.len();
        let mappings: HashMap<String, SyncMapping> = self
            .store
            .sync_mappings(self.connection.id, LocalKind::Task)
            .await?
            .into_iter()
            .map(|m| (m.external_id.clone(), m))
            .collect();
        let mut issues = listing.issues.clone();
        issues.sort_by_key(|i| i.updated_at);
        let mut watermark = cursor.issues;
        let mut blocked = false;
        let mut new_issues = Vec::new();
        for issue in &issues {
            let outcome = match mappings.get(&issue.number.to_string()) {
                Some(mapping) => self.reconcile_issue(mapping, issue).await,
                None => match self.adopt_marked(issue).await {
                    Ok(Marked::Adopted) => Ok(IssueOutcome::Adopted),
                    // A copy of one of our tasks' issues: never imported as a second task.
                    Ok(Marked::Known) => Ok(IssueOutcome::Skipped),
                    Ok(Marked::No) => {
                        // Closed issues never seen are history, not work.
                        if !issue.closed {
                            new_issues.push(issue.clone());
                        }
                        Ok(IssueOutcome::Skipped)
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Ok(outcome) => count(report, outcome),
                Err(e) => {
                    report.errors.push(format!("#{}: {e}", issue.number));
                    blocked |= e.is_transient();
                    if e.not_before().is_some() {
                        return Err(e);
                    }
                }
            }
            if !blocked {
                watermark = watermark.max(Some(issue.updated_at));
            }
        }
        if !new_issues.is_empty() {
            report.created_local += self.import(&new_issues).await?;
        }
        if full && listing.complete {
            let listed: HashSet<String> = issues
                .iter()
                .map(|i| i.number.to_string())
                .chain(listing.unchanged.iter().map(i64::to_string))
                .collect();
            for mapping in mappings.values() {
                if mapping.sync_state == SyncState::Deleted || listed.contains(&mapping.external_id) {
                    continue;
                }
                let Ok(number) = mapping.external_id.parse::<i64>() else { continue };
                // Confirm before acting: a listing can skip a row when another moves.
                if self.provider.issue(number).await?.is_none() {
                    self.store.sync_remote_deleted(&self.actor, mapping).await?;
                    report.deleted_remotely += 1;
                }
            }
        }
        let value = serde_json::to_value(Watermarks { issues: watermark }).unwrap_or_default();
        crate::sync::cursor::save_watermarks(&self.store, self.connection.id, &value).await?;
        Ok(())
    }

    /// An unmapped issue with our marker for a task of this project that has
    /// no issue yet: its create's answer was lost. Links it.
    async fn adopt_marked(&mut self, issue: &Issue) -> SyncResult<Marked> {
        let Some(task_id) = repo::marked_task(&issue.body) else { return Ok(Marked::No) };
        let task = match self.store.sync_read_task(task_id).await {
            Ok((task, _)) => task,
            Err(StoreError::NotFound { .. }) => return Ok(Marked::No),
            Err(e) => return Err(e.into()),
        };
        if task.project_id != self.connection.project_id {
            return Ok(Marked::No);
        }
        if self.store.sync_mapping(self.connection.id, LocalKind::Task, task_id).await?.is_some() {
            return Ok(Marked::Known);
        }
        self.adopt(&task, issue).await?;
        Ok(Marked::Adopted)
    }

    /// Creates local tasks for open issues made in the repository.
    async fn import(&mut self, issues: &[Issue]) -> SyncResult<usize> {
        let mut created = 0;
        for chunk in issues.chunks(IMPORT_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for issue in chunk {
                let remote = remote_fields(issue);
                let mut local = Fields::new();
                for (field, value) in &remote {
                    if let Some(converted) = self.to_local(field, value) {
                        local.insert(field.clone(), converted);
                    }
                }
                let Some(lane_id) = local.get("lane").and_then(Value::as_i64) else { continue };
                local.entry("assignee".into()).or_insert(Value::Null);
                let changes = local_changes(&local);
                let title = local.get("title").and_then(Value::as_str).unwrap_or("(untitled)").to_string();
                let base = Base { local, remote };
                batch.push(ImportedTask {
                    title,
                    lane_id,
                    fields: SyncedTask {
                        description: changes.description,
                        assignee_id: Some(changes.assignee_id.flatten()),
                        labels: changes.labels,
                        ..SyncedTask::default()
                    },
                    link: self.link(issue, &base, SyncState::InSync),
                });
            }
            created += self
                .store
                .sync_import_tasks(&self.actor, self.connection.project_id, self.connection.id, &batch)
                .await?;
        }
        Ok(created)
    }

    /// Pipelines, deployments and releases, upserted with source `sync`.
    /// A listing the server does not offer is a capability, not a failure.
    async fn pull_delivery(&mut self, report: &mut PassReport) -> SyncResult<()> {
        let project = self.connection.project_id;
        let mut capabilities = Capabilities { provider: P::NAME.into(), ..Capabilities::default() };
        let pipelines = self.provider.pipelines().await;
        match feed(pipelines, "pipelines", report)? {
            None => {}
            Some(Feed::Unavailable) => capabilities.actions = Some(false),
            Some(Feed::Unchanged) => capabilities.actions = Some(true),
            Some(Feed::Items(runs)) => {
                capabilities.actions = Some(true);
                for run in runs {
                    let id = run.external_id.clone();
                    skip_invalid(self.store.report_pipeline(&self.actor, project, run).await, "pipeline", &id)?;
                    report.delivery += 1;
                }
            }
        }
        let deployments = self.provider.deployments().await;
        match feed(deployments, "deployments", report)? {
            None => {}
            Some(Feed::Unavailable) => capabilities.deployments = Some(false),
            Some(Feed::Unchanged) => capabilities.deployments = Some(true),
            Some(Feed::Items(deployments)) => {
                capabilities.deployments = Some(true);
                for deployment in deployments {
                    let env = &deployment.environment;
                    let ensured = self
                        .store
                        .sync_ensure_environment(&self.actor, project, &env.name, env.kind, env.url.as_deref())
                        .await;
                    let id = deployment.report.external_id.clone();
                    skip_invalid(ensured, "environment", &env.name)?;
                    skip_invalid(
                        self.store.report_deployment(&self.actor, project, deployment.report).await,
                        "deployment",
                        &id,
                    )?;
                    report.delivery += 1;
                }
            }
        }
        let releases = self.provider.releases().await;
        match feed(releases, "releases", report)? {
            None => {}
            Some(Feed::Unavailable) => capabilities.releases = Some(false),
            Some(Feed::Unchanged) => capabilities.releases = Some(true),
            Some(Feed::Items(releases)) => {
                capabilities.releases = Some(true);
                for release in releases {
                    let id = release.external_id.clone();
                    skip_invalid(self.store.sync_report_release(&self.actor, project, release).await, "release", &id)?;
                    report.delivery += 1;
                }
            }
        }
        let value = serde_json::to_value(&capabilities).unwrap_or_default();
        crate::sync::cursor::save_capabilities(&self.store, self.connection.id, &value).await?;
        Ok(())
    }

    /// What a full pass would do, reading both sides and writing nothing.
    pub async fn plan(&self) -> SyncResult<SyncPlan> {
        let mut plan = SyncPlan::default();
        let listing = self.provider.issues(None).await?;
        plan.requests = listing.requests;
        let filter = TaskFilter { project_id: self.connection.project_id, limit: 1_000_000, ..TaskFilter::default() };
        let tasks = self.store.list_tasks(&filter).await?;
        let mappings = self.store.sync_mappings(self.connection.id, LocalKind::Task).await?;
        let by_local: HashMap<i64, &SyncMapping> = mappings.iter().map(|m| (m.local_id, m)).collect();
        let by_remote: HashMap<&str, &SyncMapping> = mappings.iter().map(|m| (m.external_id.as_str(), m)).collect();
        let listed: HashSet<String> = listing
            .issues
            .iter()
            .map(|i| i.number.to_string())
            .chain(listing.unchanged.iter().map(i64::to_string))
            .collect();
        for issue in &listing.issues {
            match by_remote.get(issue.number.to_string().as_str()) {
                None if !issue.closed && repo::marked_task(&issue.body).is_none() => {
                    plan.create_local.push(format!("#{} {}", issue.number, issue.title))
                }
                None => {}
                Some(mapping) if mapping.sync_state == SyncState::Deleted => {}
                Some(mapping) => {
                    let Some(task) = tasks.iter().find(|t| t.id == mapping.local_id) else { continue };
                    let base: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
                    let clocks = Clocks { local: task.updated_at, remote: issue.updated_at };
                    let merged = merge::merge(
                        super::ISSUE_FIELDS,
                        &base,
                        &local_fields(task),
                        &remote_fields(issue),
                        self,
                        self.policy,
                        clocks,
                    );
                    let names = |f: &Fields| f.keys().cloned().collect::<Vec<_>>();
                    if !merged.push.is_empty() {
                        plan.push.push((task.key.clone(), names(&merged.push)));
                    }
                    if !merged.pull.is_empty() {
                        plan.pull.push((task.key.clone(), names(&merged.pull)));
                    }
                    if !merged.conflicts.is_empty() {
                        plan.conflicts
                            .push((task.key.clone(), merged.conflicts.iter().map(|c| c.field.clone()).collect()));
                    }
                }
            }
        }
        for task in &tasks {
            let lane_syncs = self.lanes.iter().find(|l| l.id == task.lane_id).is_none_or(|l| l.sync);
            match by_local.get(&task.id) {
                None if !task.archived && lane_syncs => plan.create_remote.push(format!("{} {}", task.key, task.title)),
                Some(m)
                    if m.sync_state != SyncState::Deleted && listing.complete && !listed.contains(&m.external_id) =>
                {
                    plan.deleted_remotely.push(task.key.clone())
                }
                _ => {}
            }
        }
        Ok(plan)
    }
}

/// A delivery listing that failed does not stop the pass (issues still
/// sync); it is an error of the pass, so it is retried. A rate limit stops it.
fn feed<T>(
    result: Result<Feed<T>, crate::sync::providers::http::ProviderError>,
    what: &str,
    report: &mut PassReport,
) -> SyncResult<Option<Feed<T>>> {
    match result {
        Ok(feed) => Ok(Some(feed)),
        Err(e) if e.not_before().is_some() => Err(e.into()),
        Err(e) => {
            report.errors.push(format!("{what}: {e}"));
            Ok(None)
        }
    }
}

/// A delivery row the store refuses (a provider's odd value) is skipped and
/// logged; anything else stops the pass.
fn skip_invalid<T>(result: Result<T, StoreError>, what: &str, id: &str) -> SyncResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(StoreError::Invalid(message)) => {
            tracing::warn!("sync: skipped {what} {id}: {message}");
            Ok(())
        }
        Err(e) => Err(SyncError::Store(e)),
    }
}

fn count(report: &mut PassReport, outcome: IssueOutcome) {
    match outcome {
        IssueOutcome::Unchanged | IssueOutcome::Skipped => report.unchanged += 1,
        IssueOutcome::Created | IssueOutcome::Adopted => report.created_remote += 1,
        IssueOutcome::Pushed => report.pushed += 1,
        IssueOutcome::Pulled => report.pulled += 1,
        IssueOutcome::PushedAndPulled => {
            report.pushed += 1;
            report.pulled += 1;
        }
        IssueOutcome::Conflict => report.conflicts += 1,
        IssueOutcome::RemoteDeleted => report.deleted_remotely += 1,
    }
}
