//! Gitea's (and Forgejo's) REST API: `{url}/api/v1/repos/{owner}/{repo}/…`,
//! `Authorization: token …`.
//!
//! Lists page with `page`/`limit` and report `X-Total-Count`; issue lists
//! take `state=all`, `type=issues` (no pull requests) and `since`. Labels
//! are written by id (missing ones are created). Actions runs are read where
//! the server offers them (a 404 means it does not); Gitea has no
//! deployments API.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::github::{WritePacer, releases_of, runs_of};
use super::http::{Answer, Http, ProviderError, ProviderResult, RateLimiter};
use super::repo::{self, DeploymentInfo, EtagCache, Feed, Issue, IssueWrite, Listing, RepoInfo, RepoProvider, array};
use crate::domain::Connection;
use crate::store::delivery::{PipelineReport, ReleaseReport};

const LIMIT: u32 = 50;

pub struct Gitea {
    http: Http,
    repo: String,
    pacer: WritePacer,
    etags: EtagCache,
    /// Label name (lowercase) → id.
    labels: Mutex<Option<Vec<(String, i64)>>>,
}

/// An issue from Gitea's JSON; `None` for a pull request.
pub fn issue_of(value: &Value) -> ProviderResult<Option<Issue>> {
    let mut issue = super::github::issue_of(value)?;
    if let Some(issue) = issue.as_mut() {
        issue.url = repo::url_of(value.get("html_url"));
    }
    Ok(issue)
}

/// The next page while `X-Total-Count` says more are left.
fn next_page(answer: &Answer, current: &str) -> Option<String> {
    let total: u64 = answer.header("x-total-count")?.trim().parse().ok()?;
    let (path, query) = current.split_once('?')?;
    let page: u64 = query.split('&').find_map(|p| p.strip_prefix("page="))?.parse().ok()?;
    let count = answer.body.as_array().map_or(0, Vec::len) as u64;
    if count == 0 || page * u64::from(LIMIT) >= total {
        return None;
    }
    let kept: Vec<String> = query
        .split('&')
        .map(|p| if p.starts_with("page=") { format!("page={}", page + 1) } else { p.to_string() })
        .collect();
    Some(format!("{path}?{}", kept.join("&")))
}

impl Gitea {
    fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.repo)
    }

    async fn label_ids(&self, names: &[String]) -> ProviderResult<Vec<i64>> {
        let known = self.labels.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut known = match known {
            Some(known) => known,
            None => self
                .all_labels()
                .await?
                .iter()
                .filter_map(|l| Some((l.get("name")?.as_str()?.to_lowercase(), l.get("id")?.as_i64()?)))
                .collect(),
        };
        let mut ids = Vec::new();
        for name in names {
            let lower = name.to_lowercase();
            let id = match known.iter().find(|(n, _)| *n == lower) {
                Some((_, id)) => *id,
                None => {
                    self.pacer.wait().await;
                    let made = self
                        .http
                        .send(Method::POST, &self.url("labels"), Some(&json!({"name": name, "color": "#ededed"})))
                        .await?;
                    let id = made
                        .get("id")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| ProviderError::Malformed("a label without an id".into()))?;
                    known.push((lower, id));
                    id
                }
            };
            ids.push(id);
        }
        *self.labels.lock().unwrap_or_else(|e| e.into_inner()) = Some(known);
        Ok(ids)
    }

    /// Every label of the repository: Gitea pages them like any list
    /// (routers/api/v1/repo/label.go ListLabels: `page`/`limit`, `X-Total-Count`).
    async fn all_labels(&self) -> ProviderResult<Vec<Value>> {
        repo::read_all(&self.http, self.url(&format!("labels?limit={LIMIT}&page=1")), next_page).await
    }

    async fn write_body(&self, write: &IssueWrite, labels_inline: bool) -> ProviderResult<Value> {
        let mut body = Map::new();
        if let Some(title) = &write.title {
            body.insert("title".into(), json!(title));
        }
        if let Some(text) = &write.body {
            body.insert("body".into(), json!(text));
        }
        if let Some(closed) = write.closed {
            body.insert("state".into(), json!(if closed { "closed" } else { "open" }));
        }
        if let Some(assignees) = &write.assignees {
            body.insert("assignees".into(), json!(assignees));
        }
        if labels_inline && let Some(labels) = &write.labels {
            body.insert("labels".into(), json!(self.label_ids(labels).await?));
        }
        Ok(Value::Object(body))
    }

    fn issue_answer(value: &Value) -> ProviderResult<Issue> {
        issue_of(value)?.ok_or_else(|| ProviderError::Malformed("a pull request where an issue was written".into()))
    }
}

impl RepoProvider for Gitea {
    const NAME: &'static str = "gitea";

    fn new(connection: &Connection, secret: String, limiter: Arc<RateLimiter>) -> ProviderResult<Gitea> {
        let parts = repo::repo_path(connection, false)?;
        let base = connection.base_url.trim_end_matches('/');
        let api = if base.ends_with("/api/v1") { base.to_string() } else { format!("{base}/api/v1") };
        Ok(Gitea {
            http: Http::new(limiter, "Authorization", format!("token {secret}"))?,
            repo: format!("{api}/repos/{}/{}", parts[0], parts[1]),
            pacer: WritePacer::of(connection, 0),
            etags: EtagCache::default(),
            labels: Mutex::new(None),
        })
    }

    fn etags(&self) -> &EtagCache {
        &self.etags
    }

    async fn issues(&self, since: Option<OffsetDateTime>) -> ProviderResult<Listing> {
        let mut first = self.url(&format!("issues?state=all&type=issues&limit={LIMIT}&page=1"));
        if let Some(since) = since {
            first.push_str(&format!("&since={}", repo::query_time(since)));
        }
        let mut issues = Vec::new();
        let mut listing = repo::read_pages(&self.http, &self.etags, first, next_page, |body| {
            let mut numbers = Vec::new();
            for item in array(body, None)? {
                if let Some(issue) = issue_of(item)? {
                    numbers.push(issue.number);
                    issues.push(issue);
                }
            }
            Ok(numbers)
        })
        .await?;
        listing.issues = issues;
        Ok(listing)
    }

    async fn issue(&self, number: i64) -> ProviderResult<Option<Issue>> {
        match self.http.send(Method::GET, &self.url(&format!("issues/{number}")), None).await {
            Ok(value) => issue_of(&value),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn recent_issues(&self) -> ProviderResult<Vec<Issue>> {
        let body = self
            .http
            .send(Method::GET, &self.url(&format!("issues?state=all&type=issues&limit={LIMIT}&page=1")), None)
            .await?;
        let mut issues = Vec::new();
        for item in array(&body, None)? {
            if let Some(issue) = issue_of(item)? {
                issues.push(issue);
            }
        }
        Ok(issues)
    }

    async fn create_issue(&self, write: &IssueWrite) -> ProviderResult<Issue> {
        let mut body = self.write_body(write, true).await?;
        if let Some(map) = body.as_object_mut()
            && let Some(state) = map.remove("state")
        {
            map.insert("closed".into(), json!(state == "closed"));
        }
        self.pacer.wait().await;
        Self::issue_answer(&self.http.send(Method::POST, &self.url("issues"), Some(&body)).await?)
    }

    async fn update_issue(&self, number: i64, write: &IssueWrite) -> ProviderResult<Issue> {
        let url = self.url(&format!("issues/{number}"));
        if let Some(labels) = &write.labels {
            let ids = self.label_ids(labels).await?;
            self.pacer.wait().await;
            self.http.send(Method::PUT, &format!("{url}/labels"), Some(&json!({ "labels": ids }))).await?;
        }
        let body = self.write_body(write, false).await?;
        if body.as_object().is_some_and(Map::is_empty) {
            return self.issue(number).await?.ok_or_else(|| ProviderError::not_found(format!("GET issues/{number}")));
        }
        self.pacer.wait().await;
        Self::issue_answer(&self.http.send(Method::PATCH, &url, Some(&body)).await?)
    }

    async fn pipelines(&self) -> ProviderResult<Feed<PipelineReport>> {
        Feed::from_read(
            repo::read_feed(&self.http, &self.etags, &self.url(&format!("actions/runs?limit={LIMIT}&page=1"))).await,
            |body| runs_of(Self::NAME, body),
        )
    }

    async fn deployments(&self) -> ProviderResult<Feed<DeploymentInfo>> {
        Ok(Feed::Unavailable)
    }

    async fn releases(&self) -> ProviderResult<Feed<ReleaseReport>> {
        Feed::from_read(
            repo::read_feed(&self.http, &self.etags, &self.url(&format!("releases?limit={LIMIT}&page=1"))).await,
            |body| releases_of(Self::NAME, body),
        )
    }

    async fn label_names(&self) -> ProviderResult<Vec<String>> {
        Ok(repo::names_of(&self.all_labels().await?))
    }

    async fn repository(&self) -> ProviderResult<RepoInfo> {
        let body = self.http.send(Method::GET, &self.repo, None).await?;
        Ok(repo::repo_info_of(&body, "full_name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_total_count() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-total-count", "120".parse().unwrap());
        let full = Answer { status: 200, body: json!(vec![json!({}); 50]), headers: headers.clone() };
        assert_eq!(
            next_page(&full, "http://h/i?state=all&limit=50&page=2").as_deref(),
            Some("http://h/i?state=all&limit=50&page=3")
        );
        assert_eq!(next_page(&full, "http://h/i?state=all&limit=50&page=3"), None);
        let empty = Answer { status: 200, body: json!([]), headers };
        assert_eq!(next_page(&empty, "http://h/i?limit=50&page=1"), None);
    }
}
