//! GitHub's REST API (github.com or GitHub Enterprise Server):
//! `{api}/repos/{owner}/{repo}/…`, `Authorization: Bearer`, API version
//! `2022-11-28`.
//!
//! Lists follow the `Link` header's `rel="next"`. Every listing page is
//! asked with the `ETag` it last had, so an unchanged page costs a 304 (which
//! GitHub does not count against the primary rate limit). Mutations are
//! paced (one per `write_interval_ms`, 1 s by default, as GitHub asks).
//! `/issues` also lists pull requests: items with a `pull_request` field are
//! left out.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{Http, ProviderError, ProviderResult, RateLimiter};
use super::repo::{
    self, DeploymentInfo, EnvironmentInfo, EtagCache, Feed, Issue, IssueWrite, Listing, RepoInfo, RepoProvider,
};
use crate::domain::{Connection, DeploymentStatus, PipelineStatus, ReleaseStatus};
use crate::store::delivery::{DeploymentReport, PipelineReport, ReleaseReport};

const PER_PAGE: u32 = 100;
/// Deployments whose latest status is read on each pass.
const DEPLOYMENTS: usize = 20;

/// GitHub's API root for a configured URL: `https://github.com` (or the API
/// host itself) means `https://api.github.com`; anything else is a GitHub
/// Enterprise Server API root such as `https://ghe.example.com/api/v3`.
pub fn api_root(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    match base {
        "https://github.com" | "https://www.github.com" | "https://api.github.com" => "https://api.github.com".into(),
        other => other.to_string(),
    }
}

/// Paces mutations: at least `interval` between two.
#[derive(Debug)]
pub struct WritePacer {
    interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl WritePacer {
    pub fn new(interval: Duration) -> WritePacer {
        WritePacer { interval, last: Mutex::new(None) }
    }

    pub fn of(connection: &Connection, default_ms: u64) -> WritePacer {
        let ms = connection.config.get("write_interval_ms").and_then(Value::as_u64).unwrap_or(default_ms);
        WritePacer::new(Duration::from_millis(ms.min(60_000)))
    }

    pub async fn wait(&self) {
        let mut last = self.last.lock().await;
        if let Some(at) = *last {
            let due = at + self.interval;
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        *last = Some(Instant::now());
    }
}

pub struct GitHub {
    http: Http,
    /// The API root (`https://api.github.com`).
    root: String,
    /// `{root}/repos/{owner}/{name}`; moves when the repository is renamed.
    repo: std::sync::Mutex<String>,
    /// A rename seen and followed, not yet recorded on the connection.
    renamed: std::sync::Mutex<Option<String>>,
    pacer: WritePacer,
    etags: EtagCache,
}

impl GitHub {
    fn repo(&self) -> String {
        self.repo.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.repo())
    }

    /// Whether an issue whose `repository_url` is `home` is still ours.
    /// GitHub answers a renamed repository's old name with a redirect to
    /// `/repositories/{id}` and names the new one in every answer; the
    /// repository read through the old name then has that new name. Then the
    /// rename is followed (and kept for the connection); otherwise the issue
    /// was transferred.
    async fn follow_rename(&self, home: &str) -> ProviderResult<bool> {
        let body = self.http.send(Method::GET, &self.repo(), None).await?;
        let Some(full_name) = body.get("full_name").and_then(Value::as_str) else { return Ok(false) };
        let home = home.trim_end_matches('/').to_ascii_lowercase();
        if !home.ends_with(&format!("/repos/{}", full_name.to_ascii_lowercase())) {
            return Ok(false);
        }
        let safe = full_name.split('/').count() == 2
            && full_name.split('/').all(|p| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !safe {
            return Ok(false);
        }
        let moved = format!("{}/repos/{full_name}", self.root);
        if !moved.eq_ignore_ascii_case(&self.repo()) {
            *self.repo.lock().unwrap_or_else(|e| e.into_inner()) = moved;
            *self.renamed.lock().unwrap_or_else(|e| e.into_inner()) = Some(full_name.to_string());
        }
        Ok(true)
    }

    /// The repository `field` names (`repository_url` of an issue, `url` of
    /// the repository itself) when it is not the one we use.
    fn foreign(&self, value: &Value, field: &str) -> Option<String> {
        let home = value.get(field).and_then(Value::as_str)?.trim_end_matches('/');
        (!home.eq_ignore_ascii_case(&self.repo())).then(|| home.to_string())
    }

    async fn feed(&self, url: &str) -> ProviderResult<Option<Value>> {
        repo::read_feed(&self.http, &self.etags, url).await
    }

    async fn write(&self, method: Method, url: &str, body: &Value) -> ProviderResult<Issue> {
        self.pacer.wait().await;
        let answer = self.http.send(method, url, Some(body)).await?;
        issue_of(&answer)?.ok_or_else(|| ProviderError::Malformed("a pull request where an issue was written".into()))
    }
}

/// An issue from GitHub's JSON; `None` for a pull request.
pub fn issue_of(value: &Value) -> ProviderResult<Option<Issue>> {
    if value.get("pull_request").is_some_and(|p| !p.is_null()) {
        return Ok(None);
    }
    let malformed = |what: &str| ProviderError::Malformed(format!("an issue without {what}"));
    let number = value.get("number").and_then(Value::as_i64).ok_or_else(|| malformed("a number"))?;
    let title = value.get("title").and_then(Value::as_str).ok_or_else(|| malformed("a title"))?;
    let updated_at = repo::time_of(value.get("updated_at")).ok_or_else(|| malformed("updated_at"))?;
    let names = |field: &str, key: &str| -> Vec<String> {
        let mut names: Vec<String> = value
            .get(field)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().or_else(|| v.get(key).and_then(Value::as_str)))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        names
    };
    Ok(Some(Issue {
        number,
        title: title.to_string(),
        body: value.get("body").and_then(Value::as_str).unwrap_or("").to_string(),
        closed: value.get("state").and_then(Value::as_str) == Some("closed"),
        labels: names("labels", "name"),
        assignees: names("assignees", "login"),
        updated_at,
        url: repo::url_of(value.get("html_url")),
    }))
}

fn write_body(write: &IssueWrite) -> Value {
    let mut body = Map::new();
    if let Some(title) = &write.title {
        body.insert("title".into(), json!(title));
    }
    if let Some(text) = &write.body {
        body.insert("body".into(), json!(text));
    }
    if let Some(closed) = write.closed {
        body.insert("state".into(), json!(if closed { "closed" } else { "open" }));
        // rest-api-description issues/update: `state_reason` (completed,
        // not_planned, reopened), ignored unless `state` changes.
        if closed {
            body.insert("state_reason".into(), json!(if write.not_planned { "not_planned" } else { "completed" }));
        }
    }
    if let Some(labels) = &write.labels {
        body.insert("labels".into(), json!(labels));
    }
    if let Some(assignees) = &write.assignees {
        body.insert("assignees".into(), json!(assignees));
    }
    Value::Object(body)
}

use repo::array;

/// A workflow run's status and conclusion as a pipeline status.
pub fn run_status(status: Option<&str>, conclusion: Option<&str>) -> PipelineStatus {
    match (status, conclusion) {
        (Some("completed"), Some("success" | "neutral")) => PipelineStatus::Success,
        (Some("completed"), Some("cancelled")) => PipelineStatus::Cancelled,
        (Some("completed"), Some("skipped" | "stale")) => PipelineStatus::Skipped,
        // Waiting for someone to approve it: not run yet, not failed.
        (Some("completed"), Some("action_required")) => PipelineStatus::Queued,
        (Some("completed"), _) => PipelineStatus::Failed,
        (Some("in_progress"), _) => PipelineStatus::Running,
        _ => PipelineStatus::Queued,
    }
}

/// Workflow runs (GitHub and Gitea Actions share the shape).
pub fn runs_of(provider: &str, body: &Value) -> ProviderResult<Vec<PipelineReport>> {
    let mut runs = Vec::new();
    for run in array(body, Some("workflow_runs"))? {
        let Some(id) = run.get("id").and_then(Value::as_i64) else { continue };
        // GitHub may send `name: ""`; Gitea sends no `name` at all
        // (modules/structs/repo_actions.go ActionWorkflowRun: display_title).
        let name = ["name", "display_title", "title"]
            .iter()
            .map(|field| repo::line_of(run.get(*field), 200))
            .find(|name| !name.is_empty())
            .unwrap_or_default();
        let status =
            run_status(run.get("status").and_then(Value::as_str), run.get("conclusion").and_then(Value::as_str));
        // GitHub: `run_started_at` and `updated_at`; Gitea: `started_at` and
        // `completed_at` (a zero time, the Unix epoch, until then).
        let at = |field: &str| repo::time_of(run.get(field)).filter(|t| t.unix_timestamp() > 0);
        let finished = matches!(status, PipelineStatus::Queued | PipelineStatus::Running)
            .then_some(None)
            .unwrap_or_else(|| at("completed_at").or_else(|| at("updated_at")));
        runs.push(PipelineReport {
            provider: provider.into(),
            external_id: id.to_string(),
            name: if name.is_empty() { format!("run {id}") } else { name },
            git_ref: repo::line_of(run.get("head_branch"), 255),
            commit_sha: repo::commit_of(run.get("head_sha")),
            status,
            url: repo::url_of(run.get("html_url")),
            started_at: at("run_started_at").or_else(|| at("started_at")).or_else(|| at("created_at")),
            finished_at: finished,
        });
    }
    Ok(runs)
}

/// Releases (GitHub and Gitea share the shape).
pub fn releases_of(provider: &str, body: &Value) -> ProviderResult<Vec<ReleaseReport>> {
    let mut releases = Vec::new();
    for release in array(body, None)? {
        let Some(id) = release.get("id").and_then(Value::as_i64) else { continue };
        let tag = repo::line_of(release.get("tag_name"), 200);
        let name = repo::line_of(release.get("name"), 120);
        let name = if !name.is_empty() {
            name
        } else if !tag.is_empty() {
            tag.clone()
        } else {
            format!("release {id}")
        };
        let draft = release.get("draft").and_then(Value::as_bool).unwrap_or(false);
        releases.push(ReleaseReport {
            provider: provider.into(),
            external_id: id.to_string(),
            name,
            tag: (!tag.is_empty()).then_some(tag),
            commit_sha: repo::commit_of(release.get("target_commitish")),
            status: if draft { ReleaseStatus::Draft } else { ReleaseStatus::Released },
            released_at: if draft { None } else { repo::time_of(release.get("published_at")) },
            url: repo::url_of(release.get("html_url")),
            notes: crate::domain::text::clip(release.get("body").and_then(Value::as_str).unwrap_or(""), 100_000)
                .into_owned(),
        });
    }
    Ok(releases)
}

fn deployment_status(state: Option<&str>) -> DeploymentStatus {
    match state {
        Some("success") => DeploymentStatus::Success,
        Some("failure" | "error") => DeploymentStatus::Failed,
        Some("inactive") => DeploymentStatus::Inactive,
        Some("in_progress") => DeploymentStatus::InProgress,
        _ => DeploymentStatus::Pending,
    }
}

impl RepoProvider for GitHub {
    const NAME: &'static str = "github";

    fn new(connection: &Connection, secret: String, limiter: Arc<RateLimiter>) -> ProviderResult<GitHub> {
        let parts = repo::repo_path(connection, false)?;
        let http = Http::new(limiter, "Authorization", format!("Bearer {secret}"))?
            .with_header("Accept", "application/vnd.github+json")
            .with_header("X-GitHub-Api-Version", "2022-11-28");
        let root = api_root(&connection.base_url);
        Ok(GitHub {
            http,
            repo: std::sync::Mutex::new(format!("{root}/repos/{}/{}", parts[0], parts[1])),
            root,
            renamed: std::sync::Mutex::new(None),
            pacer: WritePacer::of(connection, 1000),
            etags: EtagCache::default(),
        })
    }

    fn etags(&self) -> &EtagCache {
        &self.etags
    }

    async fn issues(&self, since: Option<OffsetDateTime>) -> ProviderResult<Listing> {
        let first = match since {
            // Incremental: what changed since, oldest change first.
            Some(since) => {
                let since = repo::query_time(since);
                self.url(&format!("issues?state=all&sort=updated&direction=asc&per_page={PER_PAGE}&since={since}"))
            }
            // Complete: by creation, which an edit does not reorder.
            None => self.url(&format!("issues?state=all&sort=created&direction=asc&per_page={PER_PAGE}")),
        };
        let mut issues = Vec::new();
        let mut foreign = None;
        let mut listing = repo::read_pages(
            &self.http,
            &self.etags,
            first,
            |answer, _| answer.next_link(),
            |body| {
                let mut numbers = Vec::new();
                for item in array(body, None)? {
                    if foreign.is_none() {
                        foreign = self.foreign(item, "repository_url");
                    }
                    if let Some(issue) = issue_of(item)? {
                        numbers.push(issue.number);
                        issues.push(issue);
                    }
                }
                Ok(numbers)
            },
        )
        .await?;
        // The listing was answered through a redirect: the repository was renamed.
        if let Some(home) = foreign {
            self.follow_rename(&home).await?;
        }
        listing.issues = issues;
        Ok(listing)
    }

    async fn issue(&self, number: i64) -> ProviderResult<Option<Issue>> {
        match self.http.send(Method::GET, &self.url(&format!("issues/{number}")), None).await {
            // Another repository: ours renamed (followed), or the issue
            // transferred (gone from this one).
            Ok(value) => match self.foreign(&value, "repository_url") {
                Some(home) if !self.follow_rename(&home).await? => Ok(None),
                _ => issue_of(&value),
            },
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn recent_issues(&self) -> ProviderResult<Vec<Issue>> {
        let url = self.url(&format!("issues?state=all&sort=created&direction=desc&per_page={PER_PAGE}"));
        let body = self.http.send(Method::GET, &url, None).await?;
        let mut issues = Vec::new();
        for item in array(&body, None)? {
            if let Some(issue) = issue_of(item)? {
                issues.push(issue);
            }
        }
        Ok(issues)
    }

    async fn create_issue(&self, write: &IssueWrite) -> ProviderResult<Issue> {
        let mut first = write.clone();
        // An issue is created open; closing it is a second request.
        first.closed = None;
        let issue = self.write(Method::POST, &self.url("issues"), &write_body(&first)).await?;
        if write.closed == Some(true) {
            let close = IssueWrite { closed: Some(true), not_planned: write.not_planned, ..IssueWrite::default() };
            return self.update_issue(issue.number, &close).await;
        }
        Ok(issue)
    }

    async fn update_issue(&self, number: i64, write: &IssueWrite) -> ProviderResult<Issue> {
        self.write(Method::PATCH, &self.url(&format!("issues/{number}")), &write_body(write)).await
    }

    async fn pipelines(&self) -> ProviderResult<Feed<PipelineReport>> {
        Feed::from_read(self.feed(&self.url(&format!("actions/runs?per_page={PER_PAGE}"))).await, |body| {
            runs_of(Self::NAME, body)
        })
    }

    async fn deployments(&self) -> ProviderResult<Feed<DeploymentInfo>> {
        let body = match self.feed(&self.url(&format!("deployments?per_page={DEPLOYMENTS}"))).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(Feed::Unchanged),
            Err(ProviderError::NotFound { .. }) => return Ok(Feed::Unavailable),
            Err(e @ ProviderError::Forbidden { .. }) => return Ok(Feed::Denied(e.to_string())),
            Err(e) => return Err(e),
        };
        let mut deployments = Vec::new();
        for deployment in array(&body, None)?.iter().take(DEPLOYMENTS) {
            let Some(id) = deployment.get("id").and_then(Value::as_i64) else { continue };
            let statuses =
                self.http.send(Method::GET, &self.url(&format!("deployments/{id}/statuses?per_page=1")), None).await?;
            let latest = array(&statuses, None)?.first().cloned().unwrap_or(Value::Null);
            let status = deployment_status(latest.get("state").and_then(Value::as_str));
            let environment = repo::line_of(deployment.get("environment"), 200);
            let name = repo::environment_name(&environment);
            let finished =
                matches!(status, DeploymentStatus::Success | DeploymentStatus::Failed | DeploymentStatus::Inactive)
                    .then(|| repo::time_of(latest.get("created_at")))
                    .flatten();
            deployments.push(DeploymentInfo {
                environment: EnvironmentInfo {
                    kind: repo::environment_kind(&name),
                    url: repo::url_of(latest.get("environment_url")),
                    name: name.clone(),
                },
                report: DeploymentReport {
                    environment: name,
                    provider: Self::NAME.into(),
                    external_id: id.to_string(),
                    git_ref: repo::line_of(deployment.get("ref"), 255),
                    commit_sha: repo::commit_of(deployment.get("sha")),
                    status,
                    url: repo::url_of(latest.get("log_url")).or_else(|| repo::url_of(latest.get("target_url"))),
                    release: None,
                    started_at: repo::time_of(deployment.get("created_at")),
                    finished_at: finished,
                },
            });
        }
        Ok(Feed::Items(deployments))
    }

    async fn releases(&self) -> ProviderResult<Feed<ReleaseReport>> {
        Feed::from_read(self.feed(&self.url(&format!("releases?per_page={PER_PAGE}"))).await, |body| {
            releases_of(Self::NAME, body)
        })
    }

    async fn repository(&self) -> ProviderResult<RepoInfo> {
        let body = self.http.send(Method::GET, &self.repo(), None).await?;
        if let Some(home) = self.foreign(&body, "url") {
            self.follow_rename(&home).await?;
        }
        Ok(repo::repo_info_of(&body, "full_name"))
    }

    async fn label_names(&self) -> ProviderResult<Vec<String>> {
        let first = self.url(&format!("labels?per_page={PER_PAGE}"));
        Ok(repo::names_of(&repo::read_all(&self.http, first, |answer, _| answer.next_link()).await?))
    }

    fn renamed(&self) -> Option<String> {
        self.renamed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_requests_are_not_issues_and_bad_items_are_errors() {
        let pr = json!({"number": 1, "title": "x", "updated_at": "2026-01-01T00:00:00Z", "pull_request": {"url": "u"}});
        assert_eq!(issue_of(&pr).unwrap(), None);
        let issue = json!({"number": 2, "title": "t", "body": null, "state": "closed", "updated_at": "2026-01-01T00:00:00Z",
            "labels": [{"name": "bug"}, "ops"], "assignees": [{"login": "ana"}]});
        let issue = issue_of(&issue).unwrap().unwrap();
        assert!(issue.closed);
        assert_eq!(issue.labels, vec!["bug", "ops"]);
        assert_eq!(issue.assignees, vec!["ana"]);
        assert!(issue_of(&json!({"number": "x"})).is_err());
        assert!(issue_of(&json!([1, 2])).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn mutations_are_paced_apart() {
        let pacer = WritePacer::new(Duration::from_secs(1));
        let started = Instant::now();
        for _ in 0..4 {
            pacer.wait().await;
        }
        // The first goes at once, each next one a second after the last.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_secs(3) && elapsed < Duration::from_millis(3100), "{elapsed:?}");
        let unpaced = WritePacer::new(Duration::ZERO);
        let started = Instant::now();
        for _ in 0..4 {
            unpaced.wait().await;
        }
        assert!(started.elapsed() < Duration::from_millis(1));
    }

    #[test]
    fn run_states_map_to_pipeline_statuses() {
        assert_eq!(run_status(Some("completed"), Some("success")), PipelineStatus::Success);
        assert_eq!(run_status(Some("completed"), Some("timed_out")), PipelineStatus::Failed);
        assert_eq!(run_status(Some("in_progress"), None), PipelineStatus::Running);
        assert_eq!(run_status(Some("waiting"), None), PipelineStatus::Queued);
        assert_eq!(api_root("https://github.com/"), "https://api.github.com");
        assert_eq!(api_root("https://ghe.example.com/api/v3"), "https://ghe.example.com/api/v3");
    }
}
