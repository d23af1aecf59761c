//! Two-way sync with Plane: tasks ↔ work items, cycles ↔ cycles, modules ↔
//! modules, lanes ↔ states (by category ↔ state group, with per-lane
//! overrides), agents ↔ members (by mapping).
//!
//! [`PlaneSync`] holds one connection's context: the client, the remote
//! states, labels and members, and the local lanes and links they map to. It
//! converts each shared field between the two representations; the merge
//! itself is [`crate::sync::merge`].

pub mod lanes;
pub mod pass;
pub mod plan;
pub mod planning;
pub mod tasks;

use crate::store::sql::Sql;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};

use super::error::{SyncError, SyncResult};
use super::fields::{clean_title, local_label};
use super::merge::{Convert, Policy};
use super::providers::http::{ProviderError, RateLimiter};
use super::providers::plane::{Label, Member, Plane, State, fit_name};
use crate::domain::{Connection, Lane, LocalKind, Priority, Source};
use crate::store::{Actor, Store, StoreError};

/// Plane's description of a work item that has none (its model's default).
pub const EMPTY_DESCRIPTION: &str = "<p></p>";

/// The shared fields of a task, in merge order.
pub const TASK_FIELDS: &[&str] =
    &["title", "description", "priority", "lane", "assignee", "labels", "due", "cycle", "modules"];

/// One Plane connection's context.
pub struct PlaneSync {
    pub store: Store,
    pub connection: Connection,
    pub plane: Plane,
    pub actor: Actor,
    pub policy: Policy,
    pub lanes: Vec<Lane>,
    pub states: Vec<State>,
    pub labels: Vec<Label>,
    /// Lane id → state id chosen by the connection's `lane_states` setting.
    pub lane_overrides: HashMap<i64, String>,
    /// Agent id ↔ member id.
    pub member_of_agent: HashMap<i64, String>,
    pub agent_of_member: HashMap<String, i64>,
    /// Local cycle/module id ↔ remote id, from their mappings.
    pub cycles: Links,
    pub modules: Links,
    /// `PROJ` of `PROJ-12`.
    pub identifier: Option<String>,
    /// The Plane project's time zone, which cycle days are read in.
    pub timezone: Option<String>,
    /// Called at each step of a reconcile (tests stop a worker there).
    pub hook: Option<crate::sync::worker::Hook>,
    /// How long an object's transient failure is retried (the worker's setting).
    pub retry_for: std::time::Duration,
    /// When the reference data was last read (a full pass right after
    /// loading does not read it again: that budget is the provider's).
    refreshed_at: Option<std::time::Instant>,
    /// Whether members matching an agent by name are linked on sight.
    link_members: bool,
}

/// Local id ↔ remote id for one kind of linked object.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub remote_of: HashMap<i64, String>,
    pub local_of: HashMap<String, i64>,
}

impl Links {
    pub fn insert(&mut self, local: i64, remote: String) {
        self.local_of.insert(remote.clone(), local);
        self.remote_of.insert(local, remote);
    }
}

impl PlaneSync {
    /// Reads the connection's context: remote states, labels and members
    /// (three requests) and the local lanes and links.
    pub async fn load(store: &Store, connection: Connection, limiter: Arc<RateLimiter>) -> SyncResult<PlaneSync> {
        Self::load_with(store, connection, limiter, true).await
    }

    /// `link`: whether members matching an agent by name may be linked now
    /// (a dry run only reads).
    pub async fn load_with(
        store: &Store,
        connection: Connection,
        limiter: Arc<RateLimiter>,
        link: bool,
    ) -> SyncResult<PlaneSync> {
        let secret = super::secret::resolve(connection.secret_ref.as_deref()).map_err(ProviderError::Secret)?;
        let plane = Plane::new(&connection, secret, limiter)?;
        let policy = connection
            .config
            .get("conflict_policy")
            .and_then(Value::as_str)
            .and_then(Policy::parse)
            .unwrap_or_default();
        let mut sync = PlaneSync {
            store: store.clone(),
            actor: Actor::new(format!("sync:{}", connection.key), Source::Sync),
            connection,
            plane,
            policy,
            lanes: Vec::new(),
            states: Vec::new(),
            labels: Vec::new(),
            lane_overrides: HashMap::new(),
            member_of_agent: HashMap::new(),
            agent_of_member: HashMap::new(),
            cycles: Links::default(),
            modules: Links::default(),
            identifier: None,
            timezone: None,
            hook: None,
            retry_for: crate::sync::retry::DEFAULT_RETRY_FOR,
            refreshed_at: None,
            link_members: link,
        };
        sync.refresh().await?;
        let client = store.client().await.map_err(SyncError::Store)?;
        let known = client
            .fetch_opt(
                "SELECT capabilities -> 'identifier', capabilities -> 'timezone' FROM sync_cursor WHERE connection_id = $1",
                &[&sync.connection.id],
            )
            .await
            .map_err(StoreError::from)?;
        let text = |column: usize| {
            let value = known.as_ref().and_then(|r| r.get::<_, Option<Value>>(column));
            value.and_then(|v| v.as_str().map(str::to_string))
        };
        (sync.identifier, sync.timezone) = (text(0), text(1));
        Ok(sync)
    }

    /// Marks a step of a reconcile for the hook.
    pub async fn step(&self, name: &'static str) {
        if let Some(hook) = &self.hook {
            hook(name).await;
        }
    }

    /// Re-reads both sides' reference data.
    pub async fn refresh(&mut self) -> SyncResult<()> {
        let project_id = self.connection.project_id;
        self.states = self.plane.states().await?;
        self.states.sort_by(|a, b| a.sequence.unwrap_or(0.0).total_cmp(&b.sequence.unwrap_or(0.0)));
        self.labels = self.plane.labels().await?;
        let members = self.plane.members().await?;
        self.lanes = self.store.list_lanes(project_id).await?;
        self.lane_overrides = self.overrides();
        self.link_agents(&members).await?;
        self.refresh_links().await?;
        self.refreshed_at = Some(std::time::Instant::now());
        Ok(())
    }

    /// Re-reads the reference data unless it was read within the last minute.
    pub async fn refresh_if_stale(&mut self) -> SyncResult<()> {
        match self.refreshed_at {
            Some(at) if at.elapsed() < std::time::Duration::from_secs(60) => Ok(()),
            _ => self.refresh().await,
        }
    }

    /// Cycle and module links, after a pass created some.
    pub async fn refresh_links(&mut self) -> SyncResult<()> {
        let id = self.connection.id;
        self.cycles = Links::default();
        for m in self.store.sync_mappings(id, LocalKind::Cycle).await? {
            self.cycles.insert(m.local_id, m.external_id);
        }
        self.modules = Links::default();
        for m in self.store.sync_mappings(id, LocalKind::Module).await? {
            self.modules.insert(m.local_id, m.external_id);
        }
        Ok(())
    }

    /// `lane_states` in the connection settings: lane name → state name or id.
    fn overrides(&self) -> HashMap<i64, String> {
        let mut overrides = HashMap::new();
        let Some(Value::Object(map)) = self.connection.config.get("lane_states") else { return overrides };
        for (lane_name, state) in map {
            let Some(state) = state.as_str() else { continue };
            let lane = self.lanes.iter().find(|l| l.name.eq_ignore_ascii_case(lane_name));
            let state = self.states.iter().find(|s| s.id == state || s.name.eq_ignore_ascii_case(state));
            if let (Some(lane), Some(state)) = (lane, state) {
                overrides.insert(lane.id, state.id.clone());
            }
        }
        overrides
    }

    /// Agents and members are linked by mapping; a member whose display name
    /// or e-mail name equals an agent's handle is linked on first sight.
    async fn link_agents(&mut self, members: &[Member]) -> SyncResult<()> {
        let id = self.connection.id;
        let mut linked: BTreeMap<i64, String> = self
            .store
            .sync_mappings(id, LocalKind::Agent)
            .await?
            .into_iter()
            .map(|m| (m.local_id, m.external_id))
            .collect();
        let agents = self.store.list_agents().await?;
        for member in members {
            if linked.values().any(|m| *m == member.id) {
                continue;
            }
            let names: Vec<String> = [
                member.display_name.clone(),
                member.email.as_deref().and_then(|e| e.split('@').next()).map(str::to_string),
            ]
            .into_iter()
            .flatten()
            .map(|n| n.to_lowercase())
            .collect();
            let Some(agent) = agents.iter().find(|a| names.contains(&a.agent.handle.to_lowercase())) else { continue };
            if linked.contains_key(&agent.agent.id) {
                continue;
            }
            if !self.link_members {
                linked.insert(agent.agent.id, member.id.clone());
                continue;
            }
            let link = crate::store::sync::MappingUpdate {
                connection_id: id,
                local_kind: LocalKind::Agent,
                external_id: member.id.clone(),
                external_key: member.display_name.clone(),
                url: None,
                base: json!({}),
                remote_version: None,
                state: crate::domain::SyncState::InSync,
                error: None,
            };
            self.store.sync_save_link(&self.actor, self.connection.project_id, agent.agent.id, &link).await?;
            linked.insert(agent.agent.id, member.id.clone());
        }
        self.member_of_agent = linked.iter().map(|(a, m)| (*a, m.clone())).collect();
        self.agent_of_member = linked.into_iter().map(|(a, m)| (m, a)).collect();
        Ok(())
    }

    /// Makes sure every label name exists remotely (creating missing ones).
    pub async fn ensure_labels(&mut self, names: &[String]) -> SyncResult<()> {
        for name in names {
            if self.labels.iter().any(|l| local_label(&l.name) == *name) {
                continue;
            }
            let label = match self.plane.create_label(name).await {
                Ok(label) => label,
                // Made by someone else since we listed them.
                Err(ProviderError::AlreadyExists { .. } | ProviderError::Rejected { status: 400, .. }) => {
                    self.labels = self.plane.labels().await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            self.labels.push(label);
        }
        Ok(())
    }

    /// The human key of a work item: `PROJ-12`.
    pub fn item_key(&self, sequence: Option<i64>) -> Option<String> {
        let sequence = sequence?;
        Some(match &self.identifier {
            Some(identifier) => format!("{identifier}-{sequence}"),
            None => format!("#{sequence}"),
        })
    }
}

/// Field conversions for tasks ↔ work items.
impl Convert for PlaneSync {
    fn to_local(&self, field: &str, remote: &Value) -> Option<Value> {
        match field {
            "title" => Some(json!(clean_title(remote.as_str().unwrap_or("")))),
            "priority" => {
                let priority = remote.as_str().filter(|p| p.parse::<Priority>().is_ok()).unwrap_or("none");
                Some(json!(priority))
            }
            "due" => Some(remote.clone()),
            "description" => {
                let markdown = super::markup::html_to_markdown(remote.as_str().unwrap_or(""));
                Some(json!(crate::domain::text::clip(&markdown, crate::domain::text::MAX_DESCRIPTION_CHARS)))
            }
            "lane" => self.lane_for_state(remote.as_str()?).map(|l| json!(l.id)),
            "assignee" => {
                let members = remote.as_array()?;
                if members.is_empty() {
                    return Some(Value::Null);
                }
                members.iter().filter_map(Value::as_str).find_map(|m| self.agent_of_member.get(m)).map(|a| json!(a))
            }
            "labels" => {
                let mut names: Vec<String> = remote
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|id| self.labels.iter().find(|l| l.id == id))
                    .map(|l| local_label(&l.name))
                    .filter(|l| !l.is_empty())
                    .collect();
                names.sort();
                names.dedup();
                names.truncate(20);
                Some(json!(names))
            }
            "cycle" => match remote {
                Value::Null => Some(Value::Null),
                Value::String(id) => self.cycles.local_of.get(id).map(|c| json!(c)),
                _ => None,
            },
            "modules" => {
                let mut ids: Vec<i64> = remote
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(|m| self.modules.local_of.get(m))
                    .copied()
                    .collect();
                ids.sort_unstable();
                Some(json!(ids))
            }
            _ => None,
        }
    }

    fn to_remote(&self, field: &str, local: &Value) -> Option<Value> {
        match field {
            "title" => Some(json!(fit_name(local.as_str().unwrap_or("")))),
            "priority" | "due" => Some(local.clone()),
            "description" => {
                let html = super::markup::markdown_to_html(local.as_str().unwrap_or(""));
                // Plane refuses an empty description ("Invalid HTML passed"); `<p></p>` is its own empty one.
                Some(json!(if html.trim().is_empty() { EMPTY_DESCRIPTION.to_string() } else { html }))
            }
            "lane" => self.state_for_lane(local.as_i64()?).map(|s| json!(s.id)),
            "assignee" => match local {
                Value::Null => Some(json!([])),
                agent => self.member_of_agent.get(&agent.as_i64()?).map(|m| json!([m])),
            },
            "labels" => {
                let mut ids: Vec<String> = Vec::new();
                for name in local.as_array()?.iter().filter_map(Value::as_str) {
                    ids.push(self.labels.iter().find(|l| local_label(&l.name) == name)?.id.clone());
                }
                ids.sort();
                Some(json!(ids))
            }
            "cycle" => match local {
                Value::Null => Some(Value::Null),
                id => self.cycles.remote_of.get(&id.as_i64()?).map(|c| json!(c)),
            },
            "modules" => {
                let mut ids: Vec<String> = Vec::new();
                for id in local.as_array()?.iter().filter_map(Value::as_i64) {
                    ids.push(self.modules.remote_of.get(&id)?.clone());
                }
                ids.sort();
                Some(json!(ids))
            }
            _ => None,
        }
    }
}
