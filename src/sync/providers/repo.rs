//! What the repository providers (GitHub, Gitea, GitLab) share: one issue
//! shape, the [`RepoProvider`] trait the reconcile in [`crate::sync::repo`]
//! is generic over, delivery-state feeds, and a cache of listing ETags.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::http::{Answer, Http, ProviderError, ProviderResult};
use crate::domain::{Connection, EnvironmentKind};
use crate::store::delivery::{DeploymentReport, PipelineReport, ReleaseReport};

/// The hidden marker every issue body we write carries, so an issue whose
/// create answer was lost is found (and adopted) instead of duplicated.
pub fn marker(task_id: i64) -> String {
    format!("<!-- mission-control:task:{task_id} -->")
}

/// The task id a body's marker names, if any.
pub fn marked_task(body: &str) -> Option<i64> {
    let start = body.find("<!-- mission-control:task:")? + "<!-- mission-control:task:".len();
    let rest = &body[start..];
    let end = rest.find(" -->")?;
    rest[..end].trim().parse().ok()
}

/// A body as shown locally: without our marker, trailing space trimmed.
pub fn strip_marker(body: &str) -> String {
    let mut text = body.to_string();
    while let Some(start) = text.find("<!-- mission-control:task:") {
        let end = text[start..].find("-->").map_or(text.len(), |e| start + e + 3);
        text.replace_range(start..end, "");
    }
    text.trim_end().to_string()
}

/// A body as written remotely: the text, then the marker.
pub fn with_marker(text: &str, task_id: i64) -> String {
    let text = text.trim_end();
    if text.is_empty() { marker(task_id) } else { format!("{text}\n\n{}", marker(task_id)) }
}

/// An issue, in the same shape for every provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Issue {
    /// The human number (`#12`; GitLab's `iid`), also the API handle.
    pub number: i64,
    pub title: String,
    /// Markdown, with our marker when we wrote it.
    pub body: String,
    pub closed: bool,
    pub labels: Vec<String>,
    /// Logins (usernames).
    pub assignees: Vec<String>,
    pub updated_at: OffsetDateTime,
    pub url: Option<String>,
}

/// Fields to write; `None` leaves one alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IssueWrite {
    pub title: Option<String>,
    pub body: Option<String>,
    pub closed: Option<bool>,
    pub labels: Option<Vec<String>>,
    pub assignees: Option<Vec<String>>,
    /// With `closed: Some(true)`: closed as not planned (a cancelled lane)
    /// rather than completed, where the provider records why (GitHub's
    /// `state_reason`).
    pub not_planned: bool,
}

impl IssueWrite {
    pub fn is_empty(&self) -> bool {
        *self == IssueWrite::default()
    }
}

/// Issues a listing read.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Issues on pages that changed (pull requests left out).
    pub issues: Vec<Issue>,
    /// Numbers on pages the server answered 304 for: as last read.
    pub unchanged: Vec<i64>,
    /// Whether every page was read.
    pub complete: bool,
    pub requests: usize,
    pub not_modified: usize,
}

/// A delivery listing: the server has none, nothing changed, or these.
#[derive(Debug, Clone, PartialEq)]
pub enum Feed<T> {
    Unavailable,
    /// The server has it, but the token may not read it (a fine-grained
    /// token without that permission): why, in one line. The rest syncs.
    Denied(String),
    Unchanged,
    Items(Vec<T>),
}

impl<T> Feed<T> {
    /// A feed from a conditional read ([`read_feed`]): a 304 is unchanged, a
    /// 404 means the server does not offer it, a 403 (not a rate limit) that
    /// the token may not read it, a body is parsed into items.
    pub fn from_read(
        read: ProviderResult<Option<serde_json::Value>>,
        parse: impl FnOnce(&serde_json::Value) -> ProviderResult<Vec<T>>,
    ) -> ProviderResult<Feed<T>> {
        match read {
            Ok(Some(body)) => Ok(Feed::Items(parse(&body)?)),
            Ok(None) => Ok(Feed::Unchanged),
            Err(ProviderError::NotFound { .. }) => Ok(Feed::Unavailable),
            Err(e @ ProviderError::Forbidden { .. }) => Ok(Feed::Denied(e.to_string())),
            Err(e) => Err(e),
        }
    }
}

/// A repository as GitHub and Gitea describe it (`full_name`); GitLab names
/// the same thing `path_with_namespace`.
pub fn repo_info_of(body: &serde_json::Value, name_field: &str) -> RepoInfo {
    RepoInfo {
        full_name: line_of(body.get(name_field), 200),
        default_branch: body.get("default_branch").and_then(serde_json::Value::as_str).map(str::to_string),
    }
}

/// An environment a deployment went to.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentInfo {
    pub name: String,
    pub kind: EnvironmentKind,
    pub url: Option<String>,
}

/// A deployment with its environment.
#[derive(Debug, Clone)]
pub struct DeploymentInfo {
    pub environment: EnvironmentInfo,
    pub report: DeploymentReport,
}

/// What `connection test` shows about a repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RepoInfo {
    pub full_name: String,
    pub default_branch: Option<String>,
}

/// A page we read before: its validator, the issues on it, and where the
/// listing went next, so a 304 stands for the whole page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PageMemo {
    pub etag: String,
    #[serde(default)]
    pub numbers: Vec<i64>,
    #[serde(default)]
    pub next: Option<String>,
}

/// Listing validators by URL: those loaded from the store, and those seen
/// since (kept only when the pass that read them went through cleanly).
#[derive(Debug, Default)]
pub struct EtagCache {
    known: Mutex<HashMap<String, PageMemo>>,
    seen: Mutex<HashMap<String, PageMemo>>,
}

/// Validators are kept for at most this many URLs.
const MAX_MEMOS: usize = 20_000;

impl EtagCache {
    pub fn load(&self, memos: HashMap<String, PageMemo>) {
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = memos;
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn get(&self, url: &str) -> Option<PageMemo> {
        self.known.lock().unwrap_or_else(|e| e.into_inner()).get(url).cloned()
    }

    pub fn remember(&self, url: &str, memo: PageMemo) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(url.to_string(), memo);
    }

    /// Folds what was seen into what is known; returns the whole map to store.
    /// After an incremental pass (`incremental`), other incremental listings
    /// (their URL names a time) are dropped: the watermark has moved on and
    /// they are never asked again.
    pub fn commit(&self, incremental: bool) -> HashMap<String, PageMemo> {
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()));
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if incremental {
            known
                .retain(|url, _| seen.contains_key(url) || !(url.contains("since=") || url.contains("updated_after=")));
        }
        known.extend(seen);
        if known.len() > MAX_MEMOS {
            known.clear();
        }
        known.clone()
    }

    /// Forgets what was seen (a pass that failed part-way).
    pub fn discard(&self) {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Pages one listing may read.
const MAX_PAGES: usize = 2000;

/// Reads a listing page by page from `first`, asking each page with the
/// ETag it last had: a 304 stands for the page as last read (its issue
/// numbers and its next page). `next` finds the next page's URL in an
/// answer; `each` reads a page's issues and returns their numbers.
pub async fn read_pages(
    http: &Http,
    etags: &EtagCache,
    first: String,
    next: impl Fn(&Answer, &str) -> Option<String>,
    mut each: impl FnMut(&serde_json::Value) -> ProviderResult<Vec<i64>>,
) -> ProviderResult<Listing> {
    let mut listing = Listing::default();
    let mut url = Some(first);
    while let Some(current) = url.take() {
        if listing.requests >= MAX_PAGES {
            return Ok(listing);
        }
        let memo = etags.get(&current);
        let answer =
            http.exchange(reqwest::Method::GET, &current, None, memo.as_ref().map(|m| m.etag.as_str())).await?;
        listing.requests += 1;
        if answer.not_modified() {
            let Some(memo) = memo else {
                return Err(ProviderError::Malformed("a 304 for a page never read".into()));
            };
            listing.not_modified += 1;
            listing.unchanged.extend(&memo.numbers);
            url = memo.next.clone();
            etags.remember(&current, memo);
            continue;
        }
        let numbers = each(&answer.body)?;
        let following = next(&answer, &current);
        if let Some(etag) = answer.header("etag") {
            etags.remember(&current, PageMemo { etag: etag.to_string(), numbers, next: following.clone() });
        }
        url = following;
    }
    listing.complete = true;
    Ok(listing)
}

/// Every item of a small listing (labels), page by page from `first`.
pub async fn read_all(
    http: &Http,
    first: String,
    next: impl Fn(&Answer, &str) -> Option<String>,
) -> ProviderResult<Vec<serde_json::Value>> {
    let mut items = Vec::new();
    let mut url = Some(first);
    let mut pages = 0;
    while let Some(current) = url.take() {
        pages += 1;
        if pages > 100 {
            break;
        }
        let answer = http.exchange(reqwest::Method::GET, &current, None, None).await?;
        items.extend(array(&answer.body, None)?.iter().cloned());
        url = next(&answer, &current);
    }
    Ok(items)
}

/// The `name` of each item.
pub fn names_of(items: &[serde_json::Value]) -> Vec<String> {
    items.iter().filter_map(|l| l.get("name").and_then(serde_json::Value::as_str)).map(str::to_string).collect()
}

/// Reads one delivery listing, asking with its last ETag: `None` on a 304.
pub async fn read_feed(http: &Http, etags: &EtagCache, url: &str) -> ProviderResult<Option<serde_json::Value>> {
    let memo = etags.get(url);
    let answer = http.exchange(reqwest::Method::GET, url, None, memo.as_ref().map(|m| m.etag.as_str())).await?;
    if answer.not_modified() {
        if let Some(memo) = memo {
            etags.remember(url, memo);
        }
        return Ok(None);
    }
    if let Some(etag) = answer.header("etag") {
        etags.remember(url, PageMemo { etag: etag.to_string(), numbers: vec![], next: None });
    }
    Ok(Some(answer.body))
}

/// A list in a JSON answer (`field` of an object, or the answer itself).
pub fn array<'a>(value: &'a serde_json::Value, field: Option<&str>) -> ProviderResult<&'a Vec<serde_json::Value>> {
    let list = match field {
        Some(field) => value.get(field),
        None => Some(value),
    };
    list.and_then(serde_json::Value::as_array)
        .ok_or_else(|| ProviderError::Malformed("a list that is not a list".into()))
}

/// A repository's issues and delivery state, as the reconcile needs them.
#[allow(async_fn_in_trait)]
pub trait RepoProvider: Sized {
    /// The provider's name in delivery rows (`github`, `gitea`, `gitlab`).
    const NAME: &'static str;

    fn new(
        connection: &Connection,
        secret: String,
        limiter: std::sync::Arc<super::http::RateLimiter>,
    ) -> ProviderResult<Self>;

    fn etags(&self) -> &EtagCache;

    /// Issues updated at or after `since` (all of them without), oldest change
    /// first where the server can sort so; pull requests left out.
    async fn issues(&self, since: Option<OffsetDateTime>) -> ProviderResult<Listing>;

    /// One issue; `None` when it is gone (deleted, transferred, or now a pull request).
    async fn issue(&self, number: i64) -> ProviderResult<Option<Issue>>;

    /// The most recently created issues (one page), where a create whose
    /// answer was lost is looked for before creating again.
    async fn recent_issues(&self) -> ProviderResult<Vec<Issue>>;

    async fn create_issue(&self, write: &IssueWrite) -> ProviderResult<Issue>;

    async fn update_issue(&self, number: i64, write: &IssueWrite) -> ProviderResult<Issue>;

    async fn pipelines(&self) -> ProviderResult<Feed<PipelineReport>>;

    async fn deployments(&self) -> ProviderResult<Feed<DeploymentInfo>>;

    async fn releases(&self) -> ProviderResult<Feed<ReleaseReport>>;

    /// The repository itself (auth and reachability).
    async fn repository(&self) -> ProviderResult<RepoInfo>;

    /// Every label name the repository has.
    async fn label_names(&self) -> ProviderResult<Vec<String>>;

    /// A rename of the repository the provider saw and followed since last
    /// asked (`owner/new-name`), for the connection to record.
    fn renamed(&self) -> Option<String> {
        None
    }
}

/// The environment kind a name suggests.
pub fn environment_kind(name: &str) -> EnvironmentKind {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("prod") || lower == "live" {
        EnvironmentKind::Production
    } else if lower.starts_with("stag") || lower == "uat" {
        EnvironmentKind::Staging
    } else if lower.starts_with("dev") || lower.starts_with("test") {
        EnvironmentKind::Development
    } else if lower.starts_with("preview") || lower.starts_with("review") || lower.starts_with("pr-") {
        EnvironmentKind::Preview
    } else {
        EnvironmentKind::Other
    }
}

/// An environment name the store accepts: other characters become `-`.
pub fn environment_name(raw: &str) -> String {
    let name: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .take(60)
        .collect();
    let name = name.trim_start_matches(['.', '_', '-']).to_string();
    if name.is_empty() { "default".into() } else { name }
}

/// `owner/name` (GitLab: `group/sub/name`), checked so it is safe in a path.
pub fn repo_path(connection: &Connection, nested: bool) -> ProviderResult<Vec<String>> {
    let raw = connection.config.get("repo").and_then(serde_json::Value::as_str).unwrap_or("");
    let parts: Vec<String> = raw.trim().trim_matches('/').split('/').map(str::to_string).collect();
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && !s.starts_with('.')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    let count_ok = if nested { parts.len() >= 2 && parts.len() <= 20 } else { parts.len() == 2 };
    if !count_ok || !parts.iter().all(|p| safe(p)) {
        return Err(ProviderError::Config(format!(
            "connection {} needs its repository as OWNER/NAME: set it with `mctl connection update {} --set repo=OWNER/NAME`",
            connection.key, connection.key
        )));
    }
    Ok(parts)
}

/// A time for a query string: RFC 3339 in UTC, whole seconds (`…Z`).
pub fn query_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Parses an RFC 3339 time from a JSON field.
pub fn time_of(value: Option<&serde_json::Value>) -> Option<OffsetDateTime> {
    value
        .and_then(serde_json::Value::as_str)
        .and_then(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
}

/// A commit id the store accepts, or none.
pub fn commit_of(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(serde_json::Value::as_str)
        .map(str::to_ascii_lowercase)
        .filter(|s| (4..=64).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A URL the store accepts, or none.
pub fn url_of(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(serde_json::Value::as_str)
        .filter(|u| (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 2000)
        .filter(|u| !u.chars().any(|c| c.is_whitespace() || c.is_control()))
        .map(str::to_string)
}

/// One line of text from a JSON field, clipped.
pub fn line_of(value: Option<&serde_json::Value>, max: usize) -> String {
    let text = value.and_then(serde_json::Value::as_str).unwrap_or("");
    let one: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max).collect();
    one.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_round_trips_and_is_hidden_locally() {
        let body = with_marker("Fix the thing.\n", 42);
        assert_eq!(body, "Fix the thing.\n\n<!-- mission-control:task:42 -->");
        assert_eq!(marked_task(&body), Some(42));
        assert_eq!(strip_marker(&body), "Fix the thing.");
        assert_eq!(with_marker("", 7), "<!-- mission-control:task:7 -->");
        assert_eq!(strip_marker(&with_marker("", 7)), "");
        assert_eq!(marked_task("<!-- mission-control:task:x -->"), None);
        assert_eq!(marked_task("no marker"), None);
        // A broken marker never panics.
        assert_eq!(strip_marker("a <!-- mission-control:task:9"), "a");
    }

    #[test]
    fn validators_of_old_incremental_listings_are_dropped() {
        let cache = EtagCache::default();
        let memo = |etag: &str| PageMemo { etag: etag.into(), ..PageMemo::default() };
        cache.load(HashMap::from([
            ("https://h/issues?since=2026-01-01T00:00:00Z".to_string(), memo("a")),
            ("https://h/issues?sort=created&page=2".to_string(), memo("b")),
        ]));
        cache.remember("https://h/issues?since=2026-01-02T00:00:00Z", memo("c"));
        let kept = cache.commit(true);
        assert_eq!(kept.len(), 2, "{kept:?}");
        assert!(kept.contains_key("https://h/issues?sort=created&page=2"));
        assert!(kept.contains_key("https://h/issues?since=2026-01-02T00:00:00Z"));
        // What a failed pass saw is not kept.
        cache.remember("https://h/releases", memo("d"));
        cache.discard();
        assert!(!cache.commit(false).contains_key("https://h/releases"));
        // A full pass keeps the incremental listing's validator.
        cache.remember("https://h/issues?sort=created&page=1", memo("e"));
        assert!(cache.commit(false).contains_key("https://h/issues?since=2026-01-02T00:00:00Z"));
    }

    #[test]
    fn environment_names_and_kinds() {
        assert_eq!(environment_kind("Production"), EnvironmentKind::Production);
        assert_eq!(environment_kind("staging-eu"), EnvironmentKind::Staging);
        assert_eq!(environment_kind("review/feature-x"), EnvironmentKind::Preview);
        assert_eq!(environment_kind("qa"), EnvironmentKind::Other);
        assert_eq!(environment_name("review/feature x"), "review-feature-x");
        assert_eq!(environment_name("///"), "default");
    }
}
