//! `mctl connection test`: can the worker use this connection? Reads the
//! secret, authenticates, and asks what the server offers (n8n: sends a
//! signed `ping` event). Never prints the secret.

use serde::Serialize;

use super::providers::gitea::Gitea;
use super::providers::github::GitHub;
use super::providers::gitlab::GitLab;
use super::providers::http::RateLimiter;
use super::providers::plane::Plane;
use super::providers::repo::{Feed, RepoProvider};
use crate::domain::{Connection, Provider};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CheckReport {
    pub connection: String,
    pub ok: bool,
    pub secret: Option<String>,
    pub authenticated: bool,
    pub project_identifier: Option<String>,
    pub states: Option<usize>,
    pub members: Option<usize>,
    /// Whether pages can sync (Plane Community Edition has no public pages API).
    pub pages: Option<bool>,
    /// Repositories: `owner/name` and its default branch.
    pub repository: Option<String>,
    /// Repositories: whether workflow runs / pipelines can be read.
    pub actions: Option<bool>,
    /// Repositories: whether deployments can be read.
    pub deployments: Option<bool>,
    /// Repositories: listings the token may not read, each with why (the
    /// rest of the connection works).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// n8n: whether the workflow accepted a signed `ping` event.
    pub ping: Option<bool>,
    pub problem: Option<String>,
}

impl CheckReport {
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!("connection {}", self.connection)];
        if let Some(secret) = &self.secret {
            lines.push(format!("  secret       {secret} (read)"));
        }
        if self.authenticated {
            lines.push("  auth         ok".into());
        }
        if let Some(identifier) = &self.project_identifier {
            lines.push(format!("  project      {identifier}"));
        }
        if let (Some(states), Some(members)) = (self.states, self.members) {
            lines.push(format!("  states       {states}; members {members}"));
        }
        match self.pages {
            Some(true) => lines.push("  pages        available".into()),
            Some(false) => {
                lines.push("  pages        unavailable: this server has no public pages API (page sync is off)".into())
            }
            None => {}
        }
        if let Some(repository) = &self.repository {
            lines.push(format!("  repository   {repository}"));
        }
        let capability = |name: &str, available: Option<bool>| match available {
            Some(true) => Some(format!("  {name:<12} available")),
            Some(false) => Some(format!("  {name:<12} unavailable on this server (not synced)")),
            None => None,
        };
        for (name, available) in [("actions", self.actions), ("deployments", self.deployments)] {
            match self.missing.iter().find_map(|m| m.strip_prefix(&format!("{name}: "))) {
                Some(why) => lines
                    .push(format!("  {name:<12} not readable with this token (not synced; issues still sync): {why}")),
                None => lines.extend(capability(name, available)),
            }
        }
        if self.ping == Some(true) {
            lines.push("  ping         a signed ping event was accepted by the workflow".into());
        }
        if let Some(problem) = &self.problem {
            lines.push(format!("  problem      {problem}"));
        }
        lines.push(if self.ok { "  ready".into() } else { "  not ready".into() });
        lines
    }
}

pub async fn check(connection: &Connection) -> CheckReport {
    let mut report = CheckReport { connection: connection.key.clone(), ..CheckReport::default() };
    if connection.provider == Provider::N8n {
        let (signing, token) = match crate::sync::n8n::credentials(connection) {
            Ok(credentials) => credentials,
            Err(problem) => {
                report.problem = Some(problem);
                return report;
            }
        };
        report.secret = connection.secret_ref.clone();
        let answer = crate::sync::n8n::ping(connection, &signing, token.as_deref()).await;
        report.ping = Some(answer.is_ok());
        report.ok = answer.is_ok();
        report.authenticated = answer.is_ok();
        report.problem = answer.err();
        return report;
    }
    if !crate::sync::worker::SYNCED.contains(&connection.provider) {
        report.problem = Some(format!("{} connections are not synced by the sync worker", connection.provider));
        return report;
    }
    let secret = match super::secret::resolve(connection.secret_ref.as_deref()) {
        Ok(secret) => {
            report.secret = connection.secret_ref.clone();
            secret
        }
        Err(problem) => {
            report.problem = Some(problem);
            return report;
        }
    };
    match connection.provider {
        Provider::Github => return check_repo::<GitHub>(connection, secret, report).await,
        Provider::Gitea => return check_repo::<Gitea>(connection, secret, report).await,
        Provider::Gitlab => return check_repo::<GitLab>(connection, secret, report).await,
        _ => {}
    }
    let plane = match Plane::new(connection, secret, RateLimiter::new(0)) {
        Ok(plane) => plane,
        Err(e) => {
            report.problem = Some(e.to_string());
            return report;
        }
    };
    let result = async {
        let capabilities = plane.capabilities().await?;
        let states = plane.states().await?;
        let members = plane.members().await?;
        Ok::<_, super::providers::http::ProviderError>((capabilities, states.len(), members.len()))
    }
    .await;
    match result {
        Ok((capabilities, states, members)) => {
            report.authenticated = true;
            report.project_identifier = capabilities.identifier;
            report.pages = Some(capabilities.pages);
            report.states = Some(states);
            report.members = Some(members);
            report.ok = true;
        }
        Err(e) => report.problem = Some(e.to_string()),
    }
    report
}

/// A repository: the token reads the repository, and what it offers.
async fn check_repo<P: RepoProvider>(connection: &Connection, secret: String, mut report: CheckReport) -> CheckReport {
    let provider = match P::new(connection, secret, RateLimiter::new(0)) {
        Ok(provider) => provider,
        Err(e) => {
            report.problem = Some(e.to_string());
            return report;
        }
    };
    let result = async {
        let info = provider.repository().await?;
        let mut missing = Vec::new();
        let mut readable = |name: &str, feed_is: Result<(), Option<String>>| match feed_is {
            Ok(()) => true,
            Err(None) => false,
            Err(Some(why)) => {
                missing.push(format!("{name}: {why}"));
                false
            }
        };
        let actions = readable("actions", availability(provider.pipelines().await?));
        let deployments = readable("deployments", availability(provider.deployments().await?));
        Ok::<_, super::providers::http::ProviderError>((info, actions, deployments, missing))
    }
    .await;
    match result {
        Ok((info, actions, deployments, missing)) => {
            report.missing = missing;
            report.authenticated = true;
            report.repository = Some(match info.default_branch {
                Some(branch) => format!("{} (default branch {branch})", info.full_name),
                None => info.full_name,
            });
            report.actions = Some(actions);
            report.deployments = Some(deployments);
            report.ok = true;
        }
        Err(e) => report.problem = Some(e.to_string()),
    }
    report
}

/// Whether a feed can be read: `Err(None)` when the server has none,
/// `Err(Some(why))` when the token may not read it.
fn availability<T>(feed: Feed<T>) -> Result<(), Option<String>> {
    match feed {
        Feed::Unavailable => Err(None),
        Feed::Denied(why) => Err(Some(why)),
        Feed::Unchanged | Feed::Items(_) => Ok(()),
    }
}
