//! GitLab's REST API v4: `{url}/api/v4/projects/{url-encoded path}/…`,
//! header `PRIVATE-TOKEN`.
//!
//! Issues are addressed by `iid` (`#12`); the issues endpoint has no merge
//! requests. Lists page with `x-next-page` (or a keyset `Link` where the
//! server offers one); incremental pulls use `updated_after` with
//! `order_by=updated_at&sort=asc`. Labels are a comma-separated list,
//! assignees are user ids (looked up by username), and state changes are
//! `state_event=close|reopen`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::github::WritePacer;
use super::http::{Answer, Http, ProviderError, ProviderResult, RateLimiter};
use super::repo::{
    self, DeploymentInfo, EnvironmentInfo, EtagCache, Feed, Issue, IssueWrite, Listing, RepoInfo, RepoProvider, array,
};
use crate::domain::{Connection, DeploymentStatus, EnvironmentKind, PipelineStatus, ReleaseStatus};
use crate::store::delivery::{DeploymentReport, PipelineReport, ReleaseReport};

const PER_PAGE: u32 = 100;

pub struct GitLab {
    http: Http,
    api: String,
    project: String,
    pacer: WritePacer,
    etags: EtagCache,
    user_ids: Mutex<HashMap<String, i64>>,
}

/// Percent-encodes a project path (`group/name` → `group%2Fname`).
fn encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The next page: a keyset `Link`, else `x-next-page` on the same URL.
fn next_page(answer: &Answer, current: &str) -> Option<String> {
    if let Some(link) = answer.next_link() {
        return Some(link);
    }
    let page: u32 = answer.header("x-next-page")?.trim().parse().ok()?;
    let base = match current.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("page=")).collect();
            format!("{path}?{}", kept.join("&"))
        }
        None => format!("{current}?"),
    };
    Some(format!("{base}&page={page}"))
}

/// An issue from GitLab's JSON.
pub fn issue_of(value: &Value) -> ProviderResult<Issue> {
    let malformed = |what: &str| ProviderError::Malformed(format!("an issue without {what}"));
    let number = value.get("iid").and_then(Value::as_i64).ok_or_else(|| malformed("an iid"))?;
    let title = value.get("title").and_then(Value::as_str).ok_or_else(|| malformed("a title"))?;
    let updated_at = repo::time_of(value.get("updated_at")).ok_or_else(|| malformed("updated_at"))?;
    let mut labels: Vec<String> = value
        .get("labels")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().or_else(|| l.get("name").and_then(Value::as_str)))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    labels.dedup();
    let mut assignees: Vec<String> = value
        .get("assignees")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|u| u.get("username").and_then(Value::as_str)).map(str::to_string).collect())
        .unwrap_or_default();
    assignees.sort();
    assignees.dedup();
    Ok(Issue {
        number,
        title: title.to_string(),
        body: value.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
        closed: value.get("state").and_then(Value::as_str) == Some("closed"),
        labels,
        assignees,
        updated_at,
        url: repo::url_of(value.get("web_url")),
    })
}

fn pipeline_status(status: Option<&str>) -> PipelineStatus {
    match status {
        Some("success") => PipelineStatus::Success,
        Some("failed") => PipelineStatus::Failed,
        Some("canceled" | "cancelled") => PipelineStatus::Cancelled,
        Some("skipped" | "manual") => PipelineStatus::Skipped,
        Some("running") => PipelineStatus::Running,
        _ => PipelineStatus::Queued,
    }
}

fn deployment_status(status: Option<&str>) -> DeploymentStatus {
    match status {
        Some("success") => DeploymentStatus::Success,
        Some("failed") => DeploymentStatus::Failed,
        Some("canceled" | "cancelled") => DeploymentStatus::Cancelled,
        Some("running") => DeploymentStatus::InProgress,
        _ => DeploymentStatus::Pending,
    }
}

fn tier_kind(tier: Option<&str>, name: &str) -> EnvironmentKind {
    match tier {
        Some("production") => EnvironmentKind::Production,
        Some("staging") => EnvironmentKind::Staging,
        Some("development" | "testing") => EnvironmentKind::Development,
        _ => repo::environment_kind(name),
    }
}

/// Deployments updated this many days back are read on each pass.
const DEPLOYMENT_DAYS: i64 = 30;

impl GitLab {
    fn url(&self, rest: &str) -> String {
        format!("{}/projects/{}/{rest}", self.api, self.project)
    }

    /// Environment name → tier (doc/api/environments.md); empty when the
    /// list cannot be read (the names then suggest the kind).
    async fn environment_tiers(&self) -> HashMap<String, String> {
        let first = self.url(&format!("environments?per_page={PER_PAGE}"));
        let Ok(environments) = repo::read_all(&self.http, first, next_page).await else { return HashMap::new() };
        environments
            .iter()
            .filter_map(|e| Some((e.get("name")?.as_str()?.to_string(), e.get("tier")?.as_str()?.to_string())))
            .collect()
    }

    async fn user_id(&self, username: &str) -> ProviderResult<Option<i64>> {
        if let Some(id) = self.user_ids.lock().unwrap_or_else(|e| e.into_inner()).get(username) {
            return Ok(Some(*id));
        }
        let url = format!("{}/users?username={}", self.api, encode(username));
        let body = self.http.send(Method::GET, &url, None).await?;
        let id = array(&body, None)?.first().and_then(|u| u.get("id")).and_then(Value::as_i64);
        if let Some(id) = id {
            self.user_ids.lock().unwrap_or_else(|e| e.into_inner()).insert(username.to_string(), id);
        }
        Ok(id)
    }

    async fn write_body(&self, write: &IssueWrite) -> ProviderResult<Value> {
        let mut body = Map::new();
        if let Some(title) = &write.title {
            body.insert("title".into(), json!(title));
        }
        if let Some(text) = &write.body {
            body.insert("description".into(), json!(text));
        }
        if let Some(closed) = write.closed {
            body.insert("state_event".into(), json!(if closed { "close" } else { "reopen" }));
        }
        if let Some(labels) = &write.labels {
            body.insert("labels".into(), json!(labels.join(",")));
        }
        if let Some(assignees) = &write.assignees {
            let mut ids = Vec::new();
            for username in assignees {
                if let Some(id) = self.user_id(username).await? {
                    ids.push(id);
                }
            }
            body.insert("assignee_ids".into(), json!(ids));
        }
        Ok(Value::Object(body))
    }
}

impl RepoProvider for GitLab {
    const NAME: &'static str = "gitlab";

    fn new(connection: &Connection, secret: String, limiter: Arc<RateLimiter>) -> ProviderResult<GitLab> {
        let parts = repo::repo_path(connection, true)?;
        let base = connection.base_url.trim_end_matches('/');
        let api = if base.ends_with("/api/v4") { base.to_string() } else { format!("{base}/api/v4") };
        Ok(GitLab {
            http: Http::new(limiter, "PRIVATE-TOKEN", secret)?,
            api,
            project: encode(&parts.join("/")),
            pacer: WritePacer::of(connection, 0),
            etags: EtagCache::default(),
            user_ids: Mutex::new(HashMap::new()),
        })
    }

    fn etags(&self) -> &EtagCache {
        &self.etags
    }

    async fn issues(&self, since: Option<OffsetDateTime>) -> ProviderResult<Listing> {
        let mut first = self.url(&format!("issues?scope=all&order_by=updated_at&sort=asc&per_page={PER_PAGE}"));
        if let Some(since) = since {
            first.push_str(&format!("&updated_after={}", repo::query_time(since)));
        }
        let mut issues = Vec::new();
        let mut listing = repo::read_pages(&self.http, &self.etags, first, next_page, |body| {
            let mut numbers = Vec::new();
            for item in array(body, None)? {
                let issue = issue_of(item)?;
                numbers.push(issue.number);
                issues.push(issue);
            }
            Ok(numbers)
        })
        .await?;
        listing.issues = issues;
        Ok(listing)
    }

    async fn issue(&self, number: i64) -> ProviderResult<Option<Issue>> {
        match self.http.send(Method::GET, &self.url(&format!("issues/{number}")), None).await {
            Ok(value) => issue_of(&value).map(Some),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn recent_issues(&self) -> ProviderResult<Vec<Issue>> {
        let url = self.url(&format!("issues?scope=all&order_by=created_at&sort=desc&per_page={PER_PAGE}"));
        let body = self.http.send(Method::GET, &url, None).await?;
        array(&body, None)?.iter().map(issue_of).collect()
    }

    async fn create_issue(&self, write: &IssueWrite) -> ProviderResult<Issue> {
        let mut first = write.clone();
        first.closed = None;
        let body = self.write_body(&first).await?;
        self.pacer.wait().await;
        let issue = issue_of(&self.http.send(Method::POST, &self.url("issues"), Some(&body)).await?)?;
        if write.closed == Some(true) {
            let close = IssueWrite { closed: Some(true), ..IssueWrite::default() };
            return self.update_issue(issue.number, &close).await;
        }
        Ok(issue)
    }

    async fn update_issue(&self, number: i64, write: &IssueWrite) -> ProviderResult<Issue> {
        let body = self.write_body(write).await?;
        self.pacer.wait().await;
        issue_of(&self.http.send(Method::PUT, &self.url(&format!("issues/{number}")), Some(&body)).await?)
    }

    async fn pipelines(&self) -> ProviderResult<Feed<PipelineReport>> {
        let url = self.url(&format!("pipelines?order_by=updated_at&sort=desc&per_page={PER_PAGE}"));
        let body = match repo::read_feed(&self.http, &self.etags, &url).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(Feed::Unchanged),
            Err(ProviderError::NotFound { .. } | ProviderError::Forbidden { .. }) => {
                return Ok(Feed::Unavailable);
            }
            Err(e) => return Err(e),
        };
        let mut runs = Vec::new();
        for run in array(&body, None)? {
            let Some(id) = run.get("id").and_then(Value::as_i64) else { continue };
            let status = pipeline_status(run.get("status").and_then(Value::as_str));
            let git_ref = repo::line_of(run.get("ref"), 255);
            let done = !matches!(status, PipelineStatus::Queued | PipelineStatus::Running);
            runs.push(PipelineReport {
                provider: Self::NAME.into(),
                external_id: id.to_string(),
                name: format!("pipeline {id}"),
                git_ref,
                commit_sha: repo::commit_of(run.get("sha")),
                status,
                url: repo::url_of(run.get("web_url")),
                started_at: repo::time_of(run.get("created_at")),
                finished_at: if done { repo::time_of(run.get("updated_at")) } else { None },
            });
        }
        Ok(Feed::Items(runs))
    }

    async fn deployments(&self) -> ProviderResult<Feed<DeploymentInfo>> {
        // app/finders/deployments_finder.rb: sorting by `updated_at` must be
        // paired with an `updated_at` filter (a hard error to come). The
        // window starts at a whole day, so the URL (and its ETag) holds a day.
        let today = OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT);
        let since = repo::query_time(today - time::Duration::days(DEPLOYMENT_DAYS));
        let url = self.url(&format!("deployments?order_by=updated_at&sort=desc&updated_after={since}&per_page=50"));
        let body = match repo::read_feed(&self.http, &self.etags, &url).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(Feed::Unchanged),
            Err(ProviderError::NotFound { .. } | ProviderError::Forbidden { .. }) => {
                return Ok(Feed::Unavailable);
            }
            Err(e) => return Err(e),
        };
        let listed = array(&body, None)?;
        // A deployment's environment (Entities::EnvironmentBasic) has no
        // `tier`; the environments list (Entities::Environment) has.
        let tiers = if listed.is_empty() { HashMap::new() } else { self.environment_tiers().await };
        let mut deployments = Vec::new();
        for deployment in listed {
            let Some(id) = deployment.get("id").and_then(Value::as_i64) else { continue };
            let env = deployment.get("environment").cloned().unwrap_or(Value::Null);
            let raw_name = repo::line_of(env.get("name"), 200);
            let name = repo::environment_name(&raw_name);
            let status = deployment_status(deployment.get("status").and_then(Value::as_str));
            let tier = env.get("tier").and_then(Value::as_str).or_else(|| tiers.get(&raw_name).map(String::as_str));
            // lib/api/entities/deployment.rb has no `finished_at`: the job
            // that deployed (`deployable`, Entities::Ci::Job) has, when there is
            // one; else the last update of a finished deployment.
            let job = deployment.get("deployable").filter(|d| d.is_object());
            let done =
                matches!(status, DeploymentStatus::Success | DeploymentStatus::Failed | DeploymentStatus::Cancelled);
            let finished = done
                .then(|| {
                    job.and_then(|j| repo::time_of(j.get("finished_at")))
                        .or_else(|| repo::time_of(deployment.get("updated_at")))
                })
                .flatten();
            let started = job
                .and_then(|j| repo::time_of(j.get("started_at")))
                .or_else(|| repo::time_of(deployment.get("created_at")));
            deployments.push(DeploymentInfo {
                environment: EnvironmentInfo {
                    kind: tier_kind(tier, &name),
                    url: repo::url_of(env.get("external_url")),
                    name: name.clone(),
                },
                report: DeploymentReport {
                    environment: name,
                    provider: Self::NAME.into(),
                    external_id: id.to_string(),
                    git_ref: repo::line_of(deployment.get("ref"), 255),
                    commit_sha: repo::commit_of(deployment.get("sha")),
                    status,
                    url: repo::url_of(job.and_then(|d| d.get("web_url"))),
                    release: None,
                    started_at: started,
                    finished_at: finished,
                },
            });
        }
        Ok(Feed::Items(deployments))
    }

    async fn releases(&self) -> ProviderResult<Feed<ReleaseReport>> {
        let url = self.url(&format!("releases?per_page={PER_PAGE}"));
        let body = match repo::read_feed(&self.http, &self.etags, &url).await {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(Feed::Unchanged),
            Err(ProviderError::NotFound { .. } | ProviderError::Forbidden { .. }) => {
                return Ok(Feed::Unavailable);
            }
            Err(e) => return Err(e),
        };
        let mut releases = Vec::new();
        for release in array(&body, None)? {
            let tag = repo::line_of(release.get("tag_name"), 200);
            if tag.is_empty() {
                continue;
            }
            let name = repo::line_of(release.get("name"), 120);
            let upcoming = release.get("upcoming_release").and_then(Value::as_bool).unwrap_or(false);
            releases.push(ReleaseReport {
                provider: Self::NAME.into(),
                external_id: tag.clone(),
                name: if name.is_empty() { tag.clone() } else { name },
                tag: Some(tag),
                commit_sha: repo::commit_of(release.get("commit").and_then(|c| c.get("id"))),
                status: if upcoming { ReleaseStatus::Planned } else { ReleaseStatus::Released },
                released_at: if upcoming { None } else { repo::time_of(release.get("released_at")) },
                url: repo::url_of(release.get("_links").and_then(|l| l.get("self"))),
                notes: crate::domain::text::clip(
                    release.get("description").and_then(Value::as_str).unwrap_or(""),
                    100_000,
                )
                .into_owned(),
            });
        }
        Ok(Feed::Items(releases))
    }

    async fn label_names(&self) -> ProviderResult<Vec<String>> {
        let first = self.url(&format!("labels?per_page={PER_PAGE}"));
        Ok(repo::names_of(&repo::read_all(&self.http, first, next_page).await?))
    }

    async fn repository(&self) -> ProviderResult<RepoInfo> {
        let body = self.http.send(Method::GET, &format!("{}/projects/{}", self.api, self.project), None).await?;
        Ok(repo::repo_info_of(&body, "path_with_namespace"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_and_pages_follow_x_next_page() {
        assert_eq!(encode("group/sub/app"), "group%2Fsub%2Fapp");
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-next-page", "3".parse().unwrap());
        let answer = Answer { status: 200, body: Value::Null, headers };
        assert_eq!(next_page(&answer, "http://h/x?a=1&page=2").as_deref(), Some("http://h/x?a=1&page=3"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-next-page", "".parse().unwrap());
        let answer = Answer { status: 200, body: Value::Null, headers };
        assert_eq!(next_page(&answer, "http://h/x?a=1"), None);
        assert!(issue_of(&json!({"iid": 1})).is_err());
    }
}
