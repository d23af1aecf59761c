//! Plane's public REST API v1 (self-hosted Community Edition):
//! `{url}/api/v1/workspaces/{slug}/projects/{project}/…`, header `X-API-Key`.
//!
//! Lists are offset pages in cursor form (`per_page:page:0`), read until
//! `next_page_results` is false. Creates carry `external_source` and
//! `external_id`, so a create whose answer was lost is adopted from the 409
//! instead of duplicated.

use std::sync::Arc;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::http::{Http, ProviderError, ProviderResult, RateLimiter};
use crate::domain::Connection;

/// What Plane calls us in `external_source`.
pub const EXTERNAL_SOURCE: &str = "mission-control";

/// Plane's default budget for a personal token.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 60;

/// Plane's largest page (`per_page` above it is a 400; `plane/utils/paginator.py`).
const PAGE_SIZE: u32 = 1000;

/// Plane's names (work items, cycles, modules) are `CharField(max_length=255)`.
pub const MAX_NAME_CHARS: usize = 255;

/// A name as Plane can hold it: one longer than [`MAX_NAME_CHARS`] is cut
/// with a marker (the full one stays here).
pub fn fit_name(name: &str) -> std::borrow::Cow<'_, str> {
    if name.chars().count() <= MAX_NAME_CHARS {
        return name.into();
    }
    let mut cut: String = name.chars().take(MAX_NAME_CHARS - 1).collect();
    cut.push('…');
    cut.into()
}

/// The day of a Plane cycle boundary, as the project sees it. Plane stores
/// a cycle's start and end as instants (the project's midnight and 23:59, in
/// its time zone) and renders them in the token user's time zone, so the
/// first ten characters can be the day before or after. A bare date is
/// taken as it is; without a known zone, the day the timestamp itself shows.
pub fn cycle_day(text: &str, project_zone: Option<&str>) -> Option<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(day) = time::Date::parse(text, format) {
        return Some(day);
    }
    let instant: jiff::Timestamp = text.parse().ok()?;
    let day = match project_zone.and_then(|z| jiff::tz::TimeZone::get(z).ok()) {
        Some(zone) => zone.to_datetime(instant).date(),
        // The day the text itself shows (`2026-12-10T00:00:01+05:30`).
        None => text.get(..19)?.parse::<jiff::civil::DateTime>().ok()?.date(),
    };
    let month = time::Month::try_from(u8::try_from(day.month()).ok()?).ok()?;
    time::Date::from_calendar_date(i32::from(day.year()), month, u8::try_from(day.day()).ok()?).ok()
}

/// Whether Plane refused to add work items to a cycle because it has ended
/// (`POST cycles/{id}/cycle-issues/`: 400, `"code": "CYCLE_COMPLETED"`).
pub fn cycle_completed(error: &ProviderError) -> bool {
    matches!(error, ProviderError::Rejected { code: Some(code), .. } if code == "CYCLE_COMPLETED")
}

/// The connection settings Plane needs (`integration_connection.config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaneConfig {
    pub workspace: String,
    pub project: String,
    /// Requests per minute this connection may make; 0 for no limit.
    #[serde(default = "default_rate")]
    pub requests_per_minute: u32,
}

fn default_rate() -> u32 {
    DEFAULT_REQUESTS_PER_MINUTE
}

impl PlaneConfig {
    pub fn of(connection: &Connection) -> ProviderResult<PlaneConfig> {
        let config: PlaneConfig = serde_json::from_value(connection.config.clone()).map_err(|_| {
            ProviderError::Config(format!(
                "connection {} lacks its Plane workspace or project: set them with `mctl connection update {} --workspace SLUG --project ID`",
                connection.key, connection.key
            ))
        })?;
        let safe = |s: &str| {
            !s.is_empty() && s.len() <= 100 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        };
        if !safe(&config.workspace) || !safe(&config.project) {
            return Err(ProviderError::Config(
                "the Plane workspace slug and project id may only hold letters, digits, '-' and '_'".into(),
            ));
        }
        Ok(config)
    }
}

/// A Plane work item, as far as sync uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub id: String,
    #[serde(default)]
    pub sequence_id: Option<i64>,
    pub name: String,
    #[serde(default)]
    pub description_html: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub target_date: Option<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub external_source: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub archived_at: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub name: String,
    pub group: String,
    #[serde(default)]
    pub sequence: Option<f64>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cycle {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Module {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub target_date: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

/// What this Plane can do (Community Edition has no public pages API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    pub pages: bool,
    /// `PROJ` in `PROJ-12`.
    pub identifier: Option<String>,
    /// The project's time zone (`Asia/Kolkata`): cycle days are its days.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A list read page by page, newest first, stopping at a watermark.
#[derive(Debug, Clone, Default)]
pub struct Listing<T> {
    pub items: Vec<T>,
    /// Pages requested.
    pub requests: usize,
    /// Whether every page was read (no page failed, the end was reached or
    /// the watermark passed): only a complete listing may infer deletions.
    pub complete: bool,
}

#[derive(Deserialize)]
struct Page<T> {
    results: Vec<T>,
    #[serde(default)]
    next_page_results: bool,
}

/// A client for one Plane project.
#[derive(Debug, Clone)]
pub struct Plane {
    http: Http,
    base: String,
    web: String,
    config: PlaneConfig,
}

impl Plane {
    /// `secret` is the resolved API key (see [`crate::sync::secret`]).
    pub fn new(connection: &Connection, secret: String, limiter: Arc<RateLimiter>) -> ProviderResult<Plane> {
        let config = PlaneConfig::of(connection)?;
        let root = connection.base_url.trim_end_matches('/');
        Ok(Plane {
            http: Http::new(limiter, "X-API-Key", secret)?,
            base: format!("{root}/api/v1/workspaces/{}/projects/{}/", config.workspace, config.project),
            web: format!("{root}/{}/projects/{}/issues/", config.workspace, config.project),
            config,
        })
    }

    pub fn config(&self) -> &PlaneConfig {
        &self.config
    }

    /// Where an operator opens a work item in a browser.
    pub fn item_url(&self, id: &str) -> String {
        format!("{}{id}", self.web)
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&Value>) -> ProviderResult<T> {
        let answer = self.http.send(method, &format!("{}{path}", self.base), body).await?;
        serde_json::from_value(answer).map_err(|e| ProviderError::Malformed(format!("{path}: {e}")))
    }

    /// Reads a list; with `stop` (newest-first order), stops at the first
    /// item the predicate says was already seen.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &str,
        stop: Option<&(dyn Fn(&T) -> bool + Sync)>,
    ) -> ProviderResult<Listing<T>> {
        let mut listing = Listing { items: Vec::new(), requests: 0, complete: false };
        for page in 0.. {
            let separator = if query.is_empty() { "" } else { "&" };
            let url = format!("{path}?per_page={PAGE_SIZE}&cursor={PAGE_SIZE}:{page}:0{separator}{query}");
            let answer: Page<T> = self.call(Method::GET, &url, None).await?;
            listing.requests += 1;
            for item in answer.results {
                if stop.is_some_and(|seen| seen(&item)) {
                    listing.complete = true;
                    return Ok(listing);
                }
                listing.items.push(item);
            }
            if !answer.next_page_results {
                break;
            }
        }
        listing.complete = true;
        Ok(listing)
    }

    /// Work items changed after `watermark` (all of them without one), newest first.
    pub async fn work_items_since(&self, watermark: Option<OffsetDateTime>) -> ProviderResult<Listing<WorkItem>> {
        let stop = move |item: &WorkItem| watermark.is_some_and(|w| item.updated_at <= w);
        self.list("work-items/", "order_by=-updated_at", Some(&stop)).await
    }

    pub async fn work_item(&self, id: &str) -> ProviderResult<Option<WorkItem>> {
        match self.call(Method::GET, &format!("work-items/{}/", path_id(id)?), None).await {
            Ok(item) => Ok(Some(item)),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a work item for local object `local_id`; if one with that
    /// external id exists (an earlier create whose answer was lost), adopts it.
    pub async fn create_work_item(&self, local_id: i64, fields: &Value) -> ProviderResult<(WorkItem, bool)> {
        let mut body = fields.clone();
        body["external_source"] = json!(EXTERNAL_SOURCE);
        body["external_id"] = json!(local_id.to_string());
        match self.call(Method::POST, "work-items/", Some(&body)).await {
            Ok(item) => Ok((item, false)),
            Err(ProviderError::AlreadyExists { existing }) => {
                let item = self
                    .work_item(&existing)
                    .await?
                    .ok_or_else(|| ProviderError::not_found(format!("GET work-items/{existing}/")))?;
                Ok((item, true))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn update_work_item(&self, id: &str, patch: &Value) -> ProviderResult<WorkItem> {
        self.call(Method::PATCH, &format!("work-items/{}/", path_id(id)?), Some(patch)).await
    }

    pub async fn states(&self) -> ProviderResult<Vec<State>> {
        Ok(self.list("states/", "", None).await?.items)
    }

    pub async fn labels(&self) -> ProviderResult<Vec<Label>> {
        Ok(self.list("labels/", "", None).await?.items)
    }

    pub async fn create_label(&self, name: &str) -> ProviderResult<Label> {
        self.call(Method::POST, "labels/", Some(&json!({ "name": name }))).await
    }

    /// Project members; Plane answers with a plain list here.
    pub async fn members(&self) -> ProviderResult<Vec<Member>> {
        let answer = self.http.send(Method::GET, &format!("{}members/", self.base), None).await?;
        let list = match answer {
            Value::Object(mut map) => map.remove("results").unwrap_or(Value::Null),
            other => other,
        };
        serde_json::from_value(list).map_err(|e| ProviderError::Malformed(format!("members/: {e}")))
    }

    pub async fn cycles(&self) -> ProviderResult<Listing<Cycle>> {
        self.list("cycles/", "", None).await
    }

    pub async fn modules(&self) -> ProviderResult<Listing<Module>> {
        self.list("modules/", "", None).await
    }

    /// Creates a cycle or module (`kind` is `cycles` or `modules`), adopting
    /// an existing one with the same external id.
    pub async fn create_planning<T: DeserializeOwned>(
        &self,
        kind: &str,
        local_id: i64,
        fields: &Value,
    ) -> ProviderResult<(T, bool)> {
        let mut body = fields.clone();
        body["external_source"] = json!(EXTERNAL_SOURCE);
        body["external_id"] = json!(local_id.to_string());
        if kind == "cycles" {
            // Plane's cycle serializer reads the project from the body, not
            // the path (`CycleCreateSerializer.validate`: "Project ID is required").
            body["project_id"] = json!(self.config.project);
        }
        match self.call(Method::POST, &format!("{kind}/"), Some(&body)).await {
            Ok(created) => Ok((created, false)),
            Err(ProviderError::AlreadyExists { existing }) => {
                Ok((self.call(Method::GET, &format!("{kind}/{}/", path_id(&existing)?), None).await?, true))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn update_planning<T: DeserializeOwned>(&self, kind: &str, id: &str, patch: &Value) -> ProviderResult<T> {
        self.call(Method::PATCH, &format!("{kind}/{}/", path_id(id)?), Some(patch)).await
    }

    /// Work item ids in a cycle or module (`kind`: `cycles` / `modules`).
    pub async fn members_of(&self, kind: &str, id: &str) -> ProviderResult<Listing<String>> {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let sub = if kind == "cycles" { "cycle-issues" } else { "module-issues" };
        let listing: Listing<Id> = self.list(&format!("{kind}/{}/{sub}/", path_id(id)?), "", None).await?;
        Ok(Listing {
            items: listing.items.into_iter().map(|i| i.id).collect(),
            requests: listing.requests,
            complete: listing.complete,
        })
    }

    pub async fn add_to(&self, kind: &str, id: &str, item: &str) -> ProviderResult<()> {
        let sub = if kind == "cycles" { "cycle-issues" } else { "module-issues" };
        let body = json!({ "issues": [item] });
        self.http.send(Method::POST, &format!("{}{kind}/{}/{sub}/", self.base, path_id(id)?), Some(&body)).await?;
        Ok(())
    }

    pub async fn remove_from(&self, kind: &str, id: &str, item: &str) -> ProviderResult<()> {
        let sub = if kind == "cycles" { "cycle-issues" } else { "module-issues" };
        let url = format!("{}{kind}/{}/{sub}/{}/", self.base, path_id(id)?, path_id(item)?);
        match self.http.send(Method::DELETE, &url, None).await {
            Ok(_) | Err(ProviderError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Checks the key and what the server offers: the project (for its
    /// identifier) and whether the pages API exists.
    pub async fn capabilities(&self) -> ProviderResult<Capabilities> {
        let project: Value = self.http.send(Method::GET, &self.base, None).await?;
        let identifier = project.get("identifier").and_then(Value::as_str).map(str::to_string);
        let timezone = project.get("timezone").and_then(Value::as_str).map(str::to_string);
        let pages = match self.http.send(Method::GET, &format!("{}pages/", self.base), None).await {
            Ok(_) => true,
            Err(ProviderError::NotFound { .. }) => false,
            Err(ProviderError::Rejected { status: 405, .. }) => false,
            Err(e) => return Err(e),
        };
        Ok(Capabilities { pages, identifier, timezone })
    }
}

/// Ids go into paths: anything but a plain id is refused rather than sent.
fn path_id(id: &str) -> ProviderResult<&str> {
    if !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Ok(id)
    } else {
        Err(ProviderError::Malformed(format!("an id that is not one: {:?}", crate::domain::text::clip(id, 40))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_day_is_the_projects_day_of_the_instant() {
        let day = |text: &str, zone: Option<&str>| cycle_day(text, zone).map(|d| d.to_string());
        // Kolkata's midnight, rendered for a UTC reader: the evening before.
        assert_eq!(day("2026-12-09T18:30:01Z", Some("Asia/Kolkata")).as_deref(), Some("2026-12-10"));
        assert_eq!(day("2026-12-10T00:00:01+05:30", Some("Asia/Kolkata")).as_deref(), Some("2026-12-10"));
        // Pago Pago's 23:59, rendered in Kiritimati: two calendar days on.
        assert_eq!(day("2026-12-12T00:59:00+14:00", Some("Pacific/Pago_Pago")).as_deref(), Some("2026-12-10"));
        assert_eq!(day("2026-12-10", Some("Asia/Kolkata")).as_deref(), Some("2026-12-10"));
        // No zone known, or one the database lacks: the day the text shows.
        assert_eq!(day("2026-12-09T18:30:01Z", None).as_deref(), Some("2026-12-09"));
        assert_eq!(day("2026-12-09T18:30:01Z", Some("Mars/Olympus")).as_deref(), Some("2026-12-09"));
        assert_eq!(day("yesterday", None), None);
    }

    #[test]
    fn a_name_longer_than_plane_holds_is_cut_with_a_marker() {
        assert_eq!(fit_name("short"), "short");
        let long = "é".repeat(300);
        let fitted = fit_name(&long);
        assert_eq!(fitted.chars().count(), MAX_NAME_CHARS);
        assert!(fitted.ends_with('…'));
        assert_eq!(fit_name(&"a".repeat(255)).chars().count(), 255);
    }
}
