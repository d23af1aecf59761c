//! Passes over a repository: delivery state (pull only), then issues.
//!
//! An incremental pass lists issues changed since the watermark less an
//! overlap; a full pass (and a connection's first) lists all of them, imports
//! the open ones it has never seen, infers remote deletions only from a
//! complete listing, confirming each with a `GET`, and queues a create for
//! every local task that has no issue yet (the initial push). Listing pages
//! carry their last ETag, so an idle pass is answered with 304s.
//!
//! One issue, pipeline, deployment or release that fails is that object's
//! failure, recorded on its own key (see [`crate::sync::contain`]); the pass
//! goes on.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::RepoSync;
use super::tasks::{local_changes, local_fields, remote_fields};
use crate::domain::{LocalKind, SyncState};
use crate::store::StoreError;
use crate::store::sync::{ImportedTask, SyncMapping, SyncedTask};
use crate::store::tasks::TaskFilter;
use crate::sync::contain::{Containment, Import, stops_pass};
use crate::sync::error::{SyncError, SyncResult};
use crate::sync::fields::mirrored;
use crate::sync::merge::{self, Base, Clocks, Convert, Fields};
use crate::sync::providers::http::ProviderError;
use crate::sync::providers::repo::{self, Feed, Issue, RepoProvider};
use crate::sync::queue;
use crate::sync::report::{ObjectOutcome, ObjectPlan, PassReport, SyncPlan};

/// Issues changed up to this long before the watermark are read again.
pub const OVERLAP: time::Duration = time::Duration::minutes(2);

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
    /// Listings the token may not read, each with why (`actions: …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// One delivery object's upsert: its key (`release:ID`), how an operator
/// reads it, and how it went.
type DeliveryResult = (String, String, SyncResult<()>);

impl<P: RepoProvider> RepoSync<P> {
    /// One pass: delivery state, then issues (all of them when `full`).
    pub async fn pull(&mut self, full: bool) -> SyncResult<PassReport> {
        let mut report = PassReport { full, ..PassReport::default() };
        let result = self.pull_inner(full, &mut report).await;
        if result.is_ok() && report.errors.is_empty() {
            let memos = self.provider.etags().commit(!report.full);
            crate::sync::cursor::save_etags(&self.store, self.connection.id, &memos).await?;
        } else {
            // Something failed: read it all again next time rather than trust a 304.
            self.provider.etags().discard();
        }
        let error = match &result {
            Err(e) => Some(e.to_string()),
            Ok(()) => report.listing_error().map(str::to_string),
        };
        if !matches!(&result, Err(e) if e.is_database_outage()) {
            let (id, full) = (self.connection.id, report.full);
            crate::sync::cursor::save_pass(&self.store, id, full, error.is_none(), error.as_deref()).await?;
        }
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
        let mut contain = Containment::new(&self.store, self.connection.id, self.retry_for);
        for (key, label, result) in self.pull_delivery(report).await? {
            match result {
                Ok(()) => contain.synced(key),
                Err(e) => contain.failed(report, &key, &label, e).await?,
            }
        }

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
        let mut new_issues = Vec::new();
        for issue in &issues {
            let (key, outcome) = match mappings.get(&issue.number.to_string()) {
                Some(mapping) => (remote_key(mapping), self.reconcile_issue(mapping, issue).await),
                None => {
                    let marked = self.adopt_marked(issue).await;
                    let outcome = match marked {
                        Ok(Marked::Adopted) => Ok(ObjectOutcome::Adopted),
                        // A copy of one of our tasks' issues: never imported as a second task.
                        Ok(Marked::Known) => Ok(ObjectOutcome::Skipped),
                        Ok(Marked::No) => {
                            // Closed issues never seen are history, not work.
                            if !issue.closed {
                                new_issues.push(issue.clone());
                            }
                            Ok(ObjectOutcome::Skipped)
                        }
                        Err(e) => Err(e),
                    };
                    (queue::import_key(issue.number), outcome)
                }
            };
            match outcome {
                Ok(outcome) => {
                    report.count(outcome);
                    contain.synced(key);
                }
                Err(e) => contain.failed(report, &key, &format!("#{}", issue.number), e).await?,
            }
            // A failure waits on the object's own key, so the pass can move past it.
            watermark = watermark.max(Some(issue.updated_at));
        }
        if !new_issues.is_empty() {
            report.created_local += self.import(&new_issues, report, &contain).await?;
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
                match self.confirm_deleted(mapping, number).await {
                    Ok(true) => report.objects.deleted_remotely += 1,
                    Ok(false) => {}
                    Err(e) => contain.failed(report, &remote_key(mapping), &format!("#{number}"), e).await?,
                }
            }
        }
        if full {
            report.queued_creates =
                crate::sync::queue::queue_unmapped_tasks(&self.store, self.connection.id, self.connection.project_id)
                    .await?;
        }
        contain.finish().await?;
        let value = serde_json::to_value(Watermarks { issues: watermark }).unwrap_or_default();
        crate::sync::cursor::save_watermarks(&self.store, self.connection.id, &value).await?;
        Ok(())
    }

    /// A mapped issue missing from a complete listing: gone, if a read of it
    /// says so.
    async fn confirm_deleted(&mut self, mapping: &SyncMapping, number: i64) -> SyncResult<bool> {
        if self.provider.issue(number).await?.is_some() {
            return Ok(false);
        }
        self.store.sync_remote_deleted(&self.actor, mapping).await?;
        Ok(true)
    }

    /// A remote object a pass could not bring in, tried on its own:
    /// `import:NUMBER` (an issue with no task yet) or a delivery object
    /// (`release:ID`, `pipeline:ID`, `deployment:ID`, read with its feed).
    pub async fn reconcile_remote(&mut self, key: &str) -> SyncResult<()> {
        if let Some(text) = key.strip_prefix(queue::IMPORT_PREFIX) {
            let Ok(number) = text.parse::<i64>() else { return Ok(()) };
            let Some(issue) = self.provider.issue(number).await? else { return Ok(()) };
            let mapped = self.store.sync_mappings_for(self.connection.id, LocalKind::Task, &[text]).await?;
            if let Some(mapping) = mapped.first() {
                return self.reconcile_issue(mapping, &issue).await.map(drop);
            }
            if !matches!(self.adopt_marked(&issue).await?, Marked::No) || issue.closed {
                return Ok(());
            }
            let Some(imported) = self.imported(&issue) else { return Ok(()) };
            let (project_id, connection_id) = (self.connection.project_id, self.connection.id);
            self.store.sync_import_tasks(&self.actor, project_id, connection_id, &[imported]).await?;
            return Ok(());
        }
        let mut report = PassReport::default();
        let results = self.pull_delivery(&mut report).await;
        // Validators seen here are not a pass's: the next pass reads afresh.
        self.provider.etags().discard();
        if let Some(listing) = report.listing_error() {
            return Err(ProviderError::Malformed(listing.to_string()).into());
        }
        results?.into_iter().filter(|(k, _, _)| k == key).try_for_each(|(_, _, result)| result)
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

    /// Creates local tasks for open issues made in the repository (see
    /// [`Containment::import`]).
    async fn import(&mut self, issues: &[Issue], report: &mut PassReport, contain: &Containment) -> SyncResult<usize> {
        let imports = issues
            .iter()
            .filter_map(|issue| {
                let task = self.imported(issue)?;
                Some(Import { task, key: queue::import_key(issue.number), label: format!("#{}", issue.number) })
            })
            .collect();
        contain.import(&self.actor, self.connection.project_id, imports, report).await
    }

    /// An open issue as a new local task with its mapping; `None` when no
    /// lane can hold it.
    fn imported(&self, issue: &Issue) -> Option<ImportedTask> {
        self.labels.learn(issue.labels.iter().map(String::as_str));
        let remote = remote_fields(issue);
        let mut local = Fields::new();
        for (field, value) in &remote {
            if let Some(converted) = self.to_local(field, value) {
                local.insert(field.clone(), converted);
            }
        }
        let lane_id = local.get("lane").and_then(Value::as_i64)?;
        local.entry("assignee".into()).or_insert(Value::Null);
        let changes = local_changes(&local);
        let title = local.get("title").and_then(Value::as_str).unwrap_or("(untitled)").to_string();
        let base = Base::new(local, remote);
        Some(ImportedTask {
            title,
            lane_id,
            fields: SyncedTask {
                description: changes.description,
                assignee_id: Some(changes.assignee_id.flatten()),
                labels: changes.labels,
                ..SyncedTask::default()
            },
            link: self.link(issue, &base, SyncState::InSync),
        })
    }

    /// Pipelines, deployments and releases, upserted with source `sync`, one
    /// result per object. A listing the server does not offer is a
    /// capability, not a failure; one that fails is the pass's (recorded in
    /// `report`), and the others still come; a rate limit stops the pass.
    async fn pull_delivery(&mut self, report: &mut PassReport) -> SyncResult<Vec<DeliveryResult>> {
        let project = self.connection.project_id;
        let mut results = Vec::new();
        let mut capabilities = Capabilities { provider: P::NAME.into(), ..Capabilities::default() };
        let pipelines = self.provider.pipelines().await;
        capabilities.actions = match feed(pipelines, "pipelines", report)? {
            None => None,
            Some(Feed::Unavailable) => Some(false),
            Some(Feed::Denied(why)) => {
                capabilities.missing.push(format!("pipelines: {why}"));
                Some(false)
            }
            Some(Feed::Unchanged) => Some(true),
            Some(Feed::Items(runs)) => {
                for run in runs {
                    let (key, label) =
                        (queue::object_key("pipeline", &run.external_id), format!("pipeline run {}", run.name));
                    let result = self.store.report_pipeline(&self.actor, project, run).await.map(drop);
                    results.push(delivered(key, label, result, report)?);
                }
                Some(true)
            }
        };
        let deployments = self.provider.deployments().await;
        capabilities.deployments = match feed(deployments, "deployments", report)? {
            None => None,
            Some(Feed::Unavailable) => Some(false),
            Some(Feed::Denied(why)) => {
                capabilities.missing.push(format!("deployments: {why}"));
                Some(false)
            }
            Some(Feed::Unchanged) => Some(true),
            Some(Feed::Items(deployments)) => {
                for deployment in deployments {
                    let env = &deployment.environment;
                    let key = queue::object_key("deployment", &deployment.report.external_id);
                    let label = format!("deployment to {}", env.name);
                    let ensured = self
                        .store
                        .sync_ensure_environment(&self.actor, project, &env.name, env.kind, env.url.as_deref())
                        .await;
                    let result = match ensured {
                        Ok(()) => self.store.report_deployment(&self.actor, project, deployment.report).await.map(drop),
                        Err(e) => Err(e),
                    };
                    results.push(delivered(key, label, result, report)?);
                }
                Some(true)
            }
        };
        let releases = self.provider.releases().await;
        capabilities.releases = match feed(releases, "releases", report)? {
            None => None,
            Some(Feed::Unavailable) => Some(false),
            Some(Feed::Denied(why)) => {
                capabilities.missing.push(format!("releases: {why}"));
                Some(false)
            }
            Some(Feed::Unchanged) => Some(true),
            Some(Feed::Items(releases)) => {
                for release in releases {
                    let (key, label) =
                        (queue::object_key("release", &release.external_id), format!("release {:?}", release.name));
                    let result = self.store.sync_report_release(&self.actor, project, release).await.map(drop);
                    results.push(delivered(key, label, result, report)?);
                }
                Some(true)
            }
        };
        let value = serde_json::to_value(&capabilities).unwrap_or_default();
        crate::sync::cursor::save_capabilities(&self.store, self.connection.id, &value).await?;
        Ok(results)
    }

    /// What a full pass would do, reading both sides and writing nothing.
    pub async fn plan(&self) -> SyncResult<SyncPlan> {
        let mut plan = SyncPlan::default();
        let listing = self.provider.issues(None).await?;
        plan.requests = listing.requests;
        let filter = TaskFilter {
            project_id: self.connection.project_id,
            limit: 1_000_000,
            include_archived: true,
            ..TaskFilter::default()
        };
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
            self.labels.learn(issue.labels.iter().map(String::as_str));
        }
        for issue in &listing.issues {
            match by_remote.get(issue.number.to_string().as_str()) {
                None if !issue.closed && repo::marked_task(&issue.body).is_none() => {
                    plan.tasks.create_local.push(format!("#{} {}", issue.number, issue.title))
                }
                None => {}
                Some(mapping) if mapping.sync_state == SyncState::Deleted => {}
                Some(mapping) => {
                    let Some(task) = tasks.iter().find(|t| t.id == mapping.local_id) else { continue };
                    let stored: Base = serde_json::from_value(mapping.base.clone()).unwrap_or_default();
                    let remote = remote_fields(issue);
                    let base = stored.settled(&remote);
                    let clocks = Clocks { local: task.updated_at, remote: issue.updated_at };
                    let merged = merge::merge(
                        super::ISSUE_FIELDS,
                        &base,
                        &local_fields(task),
                        &remote,
                        self,
                        self.policy,
                        clocks,
                    );
                    let names = |f: &Fields| f.keys().cloned().collect::<Vec<_>>();
                    if !merged.push.is_empty() {
                        plan.tasks.push.push((task.key.clone(), names(&merged.push)));
                    }
                    if !merged.pull.is_empty() {
                        plan.tasks.pull.push((task.key.clone(), names(&merged.pull)));
                    }
                    if !merged.conflicts.is_empty() {
                        plan.conflicts
                            .push((task.key.clone(), merged.conflicts.iter().map(|c| c.field.clone()).collect()));
                    }
                }
            }
        }
        for task in &tasks {
            match by_local.get(&task.id) {
                None if mirrored(task, &self.lanes) => {
                    plan.tasks.create_remote.push(format!("{} {}", task.key, task.title))
                }
                Some(m)
                    if m.sync_state != SyncState::Deleted && listing.complete && !listed.contains(&m.external_id) =>
                {
                    plan.deleted_remotely.push(task.key.clone())
                }
                _ => {}
            }
        }
        plan.releases = self.plan_releases().await?;
        Ok(plan)
    }

    /// The provider's releases against those recorded here.
    async fn plan_releases(&self) -> SyncResult<ObjectPlan> {
        let mut plan = ObjectPlan::default();
        let Feed::Items(releases) = self.provider.releases().await? else { return Ok(plan) };
        let known = self.store.provider_releases(self.connection.project_id, P::NAME).await?;
        for release in releases {
            match known.iter().find(|(id, ..)| *id == release.external_id) {
                None => plan.create_local.push(release.name.clone()),
                Some((_, name, status, tag)) => {
                    let mut fields = Vec::new();
                    // A release whose name another holds is kept as `NAME (provider …)`.
                    let told_apart = name.starts_with(&format!("{} ({}", release.name, P::NAME));
                    if *name != release.name && !told_apart {
                        fields.push("name".to_string());
                    }
                    if status != release.status.as_str() {
                        fields.push("status".to_string());
                    }
                    if release.tag.is_some() && *tag != release.tag {
                        fields.push("tag".to_string());
                    }
                    if !fields.is_empty() {
                        plan.pull.push((release.name.clone(), fields));
                    }
                }
            }
        }
        Ok(plan)
    }
}

/// A delivery listing that failed does not stop the pass (issues still
/// sync); it is the pass's error, so the connection shows it. A rate limit
/// stops the pass.
fn feed<T>(result: Result<Feed<T>, ProviderError>, what: &str, report: &mut PassReport) -> SyncResult<Option<Feed<T>>> {
    match result {
        Ok(feed) => Ok(Some(feed)),
        Err(e) if e.not_before().is_some() => Err(e.into()),
        Err(e) => {
            report.listing_failed(what, &e);
            Ok(None)
        }
    }
}

/// One delivery object's result; the database going away ends the pass.
fn delivered(
    key: String,
    label: String,
    result: Result<(), StoreError>,
    report: &mut PassReport,
) -> SyncResult<DeliveryResult> {
    match result.map_err(SyncError::from) {
        Err(e) if stops_pass(&e) => Err(e),
        Ok(()) => {
            report.delivery += 1;
            Ok((key, label, Ok(())))
        }
        failed => Ok((key, label, failed)),
    }
}

/// The key a mapped task's remote change is retried on.
fn remote_key(mapping: &SyncMapping) -> String {
    queue::remote_key(LocalKind::Task, mapping.local_id)
}
