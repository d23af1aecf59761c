//! Two-way sync of tasks with a repository's issues (GitHub, Gitea, GitLab),
//! and delivery state pulled from it, generic over [`RepoProvider`].
//!
//! Shared fields: title, description (markdown both sides; our hidden marker
//! is stripped locally), lane ↔ open/closed, assignee ↔ logins (by agent
//! mapping, else an agent's handle equals the login), labels. A closed issue
//! lands in the first syncing completed lane; an open one (imported or
//! reopened) in the project's default open lane: the first visible syncing
//! lane that is not completed or cancelled (Inbox for the default lanes).

pub mod pass;
pub mod tasks;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::error::{SyncError, SyncResult};
use super::fields::{clean_title, local_label};
use super::merge::{Convert, Policy};
use super::providers::http::{ProviderError, RateLimiter};
use super::providers::repo::RepoProvider;
use super::report::{ObjectOutcome, PassReport, SyncPlan};
use crate::domain::{Connection, Lane, LaneCategory, LocalKind, Source};
use crate::store::{Actor, Store};

/// The shared fields of a task with an issue, in merge order.
pub const ISSUE_FIELDS: &[&str] = &["title", "description", "lane", "assignee", "labels"];

/// One repository connection's context.
pub struct RepoSync<P: RepoProvider> {
    pub store: Store,
    pub connection: Connection,
    pub provider: P,
    pub actor: Actor,
    pub policy: Policy,
    pub lanes: Vec<Lane>,
    /// Agent id ↔ login (lowercase).
    pub login_of_agent: HashMap<i64, String>,
    pub agent_of_login: HashMap<String, i64>,
    pub hook: Option<crate::sync::worker::Hook>,
    /// How long an object's transient failure is retried (the worker's setting).
    pub retry_for: std::time::Duration,
    /// Remote label names by the local label they show as (`help wanted` is
    /// `help-wanted` here): a push writes the remote's own names back.
    pub labels: LabelNames,
}

/// Remote label names by local label, learnt from every issue read and, for
/// a label no issue showed, from the repository's label list (read once).
#[derive(Debug, Default)]
pub struct LabelNames {
    names: std::sync::Mutex<HashMap<String, String>>,
    listed: std::sync::atomic::AtomicBool,
}

impl LabelNames {
    /// Learns remote names; the first name seen for a local label stays.
    pub fn learn<'a>(&self, remote: impl IntoIterator<Item = &'a str>) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for name in remote {
            let local = local_label(name);
            if !local.is_empty() {
                names.entry(local).or_insert_with(|| name.to_string());
            }
        }
    }

    /// Learns remote names, these taking precedence (the issue being merged).
    pub fn prefer<'a>(&self, remote: impl IntoIterator<Item = &'a str>) {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        for name in remote {
            let local = local_label(name);
            if !local.is_empty() {
                names.insert(local, name.to_string());
            }
        }
    }

    /// The remote name of a local label (the label itself when none is known).
    pub fn remote(&self, local: &str) -> String {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).get(local).cloned().unwrap_or_else(|| local.to_string())
    }

    pub fn knows(&self, local: &str) -> bool {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).contains_key(local)
    }
}

impl<P: RepoProvider> RepoSync<P> {
    pub async fn load(store: &Store, connection: Connection, limiter: Arc<RateLimiter>) -> SyncResult<RepoSync<P>> {
        let secret = super::secret::resolve(connection.secret_ref.as_deref()).map_err(ProviderError::Secret)?;
        let provider = P::new(&connection, secret, limiter)?;
        provider.etags().load(super::cursor::etags(store, connection.id).await?);
        let policy = connection
            .config
            .get("conflict_policy")
            .and_then(Value::as_str)
            .and_then(Policy::parse)
            .unwrap_or_default();
        let mut sync = RepoSync {
            store: store.clone(),
            actor: Actor::new(format!("sync:{}", connection.key), Source::Sync),
            connection,
            provider,
            policy,
            lanes: Vec::new(),
            login_of_agent: HashMap::new(),
            agent_of_login: HashMap::new(),
            hook: None,
            retry_for: crate::sync::retry::DEFAULT_RETRY_FOR,
            labels: LabelNames::default(),
        };
        sync.refresh().await?;
        Ok(sync)
    }

    /// Re-reads the local reference data: lanes and agent links.
    pub async fn refresh(&mut self) -> SyncResult<()> {
        self.lanes = self.store.list_lanes(self.connection.project_id).await?;
        let mapped: HashMap<i64, String> = self
            .store
            .sync_mappings(self.connection.id, LocalKind::Agent)
            .await?
            .into_iter()
            .map(|m| (m.local_id, m.external_id.to_lowercase()))
            .collect();
        self.login_of_agent.clear();
        self.agent_of_login.clear();
        for agent in self.store.list_agents().await? {
            let login = mapped.get(&agent.agent.id).cloned().unwrap_or_else(|| agent.agent.handle.to_lowercase());
            self.agent_of_login.entry(login.clone()).or_insert(agent.agent.id);
            self.login_of_agent.insert(agent.agent.id, login);
        }
        Ok(())
    }

    /// Records a rename the provider followed: the connection names the
    /// repository as it is called now, and every mapping stays (issue
    /// numbers do not change with the repository's name).
    pub async fn record_rename(&mut self) -> SyncResult<()> {
        let Some(full_name) = self.provider.renamed() else { return Ok(()) };
        let update = crate::store::integrations::ConnectionUpdate {
            config: Some(json!({ "repo": full_name })),
            ..Default::default()
        };
        self.connection = self.store.update_connection(&self.actor, &self.connection.key, update).await?;
        tracing::info!(connection = %self.connection.key, repo = %full_name, "sync: the repository was renamed; followed");
        Ok(())
    }

    /// Before a push of `labels` (local names): a label no issue showed is
    /// looked up in the repository's labels, once, so an existing label is
    /// written by its own name, never created again under ours.
    pub async fn know_labels(&self, labels: &[String]) -> SyncResult<()> {
        use std::sync::atomic::Ordering;
        if labels.iter().all(|l| self.labels.knows(l)) || self.labels.listed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        match self.provider.label_names().await {
            Ok(names) => self.labels.learn(names.iter().map(String::as_str)),
            Err(e) => {
                self.labels.listed.store(false, Ordering::SeqCst);
                return Err(e.into());
            }
        }
        Ok(())
    }

    pub async fn step(&self, name: &'static str) {
        if let Some(hook) = &self.hook {
            hook(name).await;
        }
    }

    /// The lane an open issue goes to: the first visible syncing lane that
    /// is not completed or cancelled.
    pub fn open_lane(&self) -> Option<&Lane> {
        self.syncing_lanes().into_iter().find(|l| !closed_category(l.category))
    }

    /// The lane a closed issue goes to: the first syncing completed lane,
    /// else a cancelled one.
    pub fn closed_lane(&self) -> Option<&Lane> {
        let lanes = self.syncing_lanes();
        lanes
            .iter()
            .find(|l| l.category == LaneCategory::Completed)
            .or_else(|| lanes.iter().find(|l| l.category == LaneCategory::Cancelled))
            .copied()
    }

    fn syncing_lanes(&self) -> Vec<&Lane> {
        let mut lanes: Vec<&Lane> = self.lanes.iter().filter(|l| l.sync).collect();
        lanes.sort_by_key(|l| (!l.visible, l.position));
        lanes
    }
}

fn closed_category(category: LaneCategory) -> bool {
    matches!(category, LaneCategory::Completed | LaneCategory::Cancelled)
}

/// Field conversions for tasks ↔ issues. Remote values: title and body
/// (marker stripped) as text, lane as `open`/`closed`, assignees and labels
/// as sorted name lists.
impl<P: RepoProvider> Convert for RepoSync<P> {
    fn to_local(&self, field: &str, remote: &Value) -> Option<Value> {
        match field {
            "title" => Some(json!(clean_title(remote.as_str().unwrap_or("")))),
            "description" => Some(json!(crate::domain::text::clip(
                remote.as_str().unwrap_or(""),
                crate::domain::text::MAX_DESCRIPTION_CHARS
            ))),
            "lane" => match remote.as_str()? {
                "closed" => self.closed_lane().map(|l| json!(l.id)),
                _ => self.open_lane().map(|l| json!(l.id)),
            },
            "assignee" => {
                let logins = remote.as_array()?;
                if logins.is_empty() {
                    return Some(Value::Null);
                }
                logins
                    .iter()
                    .filter_map(Value::as_str)
                    .find_map(|l| self.agent_of_login.get(&l.to_lowercase()))
                    .map(|a| json!(a))
            }
            "labels" => {
                let mut names: Vec<String> = remote
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .map(local_label)
                    .filter(|l| !l.is_empty())
                    .collect();
                names.sort();
                names.dedup();
                names.truncate(20);
                Some(json!(names))
            }
            _ => None,
        }
    }

    fn to_remote(&self, field: &str, local: &Value) -> Option<Value> {
        match field {
            "title" | "description" => Some(local.clone()),
            "lane" => {
                let lane = self.lanes.iter().find(|l| Some(l.id) == local.as_i64())?;
                Some(json!(if closed_category(lane.category) { "closed" } else { "open" }))
            }
            "assignee" => match local {
                Value::Null => Some(json!([])),
                agent => self.login_of_agent.get(&agent.as_i64()?).map(|l| json!([l])),
            },
            "labels" => {
                let mut names: Vec<String> =
                    local.as_array()?.iter().filter_map(Value::as_str).map(|l| self.labels.remote(l)).collect();
                names.sort();
                names.dedup();
                Some(json!(names))
            }
            _ => None,
        }
    }
}

/// A repository connection's context, by provider (the worker's dispatch).
pub enum AnyRepo {
    GitHub(RepoSync<super::providers::github::GitHub>),
    Gitea(RepoSync<super::providers::gitea::Gitea>),
    GitLab(RepoSync<super::providers::gitlab::GitLab>),
}

macro_rules! each {
    ($self:expr, $sync:ident => $body:expr) => {
        match $self {
            AnyRepo::GitHub($sync) => $body,
            AnyRepo::Gitea($sync) => $body,
            AnyRepo::GitLab($sync) => $body,
        }
    };
}

impl AnyRepo {
    pub async fn load(store: &Store, connection: Connection, limiter: Arc<RateLimiter>) -> SyncResult<AnyRepo> {
        use crate::domain::Provider;
        Ok(match connection.provider {
            Provider::Github => AnyRepo::GitHub(RepoSync::load(store, connection, limiter).await?),
            Provider::Gitea => AnyRepo::Gitea(RepoSync::load(store, connection, limiter).await?),
            Provider::Gitlab => AnyRepo::GitLab(RepoSync::load(store, connection, limiter).await?),
            other => {
                return Err(SyncError::Provider(ProviderError::Config(format!(
                    "{other} is not a repository provider"
                ))));
            }
        })
    }

    pub fn set_hook(&mut self, hook: Option<crate::sync::worker::Hook>) {
        each!(self, sync => sync.hook = hook)
    }

    pub fn set_retry_for(&mut self, retry_for: std::time::Duration) {
        each!(self, sync => sync.retry_for = retry_for)
    }

    pub async fn reconcile_task(&mut self, task_id: i64, remote_changed: bool) -> SyncResult<ObjectOutcome> {
        each!(self, sync => {
            let outcome = sync.reconcile_task(task_id, remote_changed).await;
            sync.record_rename().await?;
            outcome
        })
    }

    pub async fn reconcile_remote(&mut self, key: &str) -> SyncResult<()> {
        each!(self, sync => {
            let outcome = sync.reconcile_remote(key).await;
            sync.record_rename().await?;
            outcome
        })
    }

    pub async fn pull(&mut self, full: bool) -> SyncResult<PassReport> {
        each!(self, sync => {
            let report = sync.pull(full).await;
            sync.record_rename().await?;
            report
        })
    }

    pub async fn plan(&self) -> SyncResult<SyncPlan> {
        each!(self, sync => sync.plan().await)
    }
}
