//! `mctl connection test`: can the worker use this connection? Reads the
//! secret, authenticates, and asks what the server offers. Never prints the
//! secret.

use serde::Serialize;

use super::providers::http::RateLimiter;
use super::providers::plane::Plane;
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
        if let Some(problem) = &self.problem {
            lines.push(format!("  problem      {problem}"));
        }
        lines.push(if self.ok { "  ready".into() } else { "  not ready".into() });
        lines
    }
}

pub async fn check(connection: &Connection) -> CheckReport {
    let mut report = CheckReport { connection: connection.key.clone(), ..CheckReport::default() };
    if connection.provider != Provider::Plane {
        report.problem = Some(format!("{} connections are not synced yet", connection.provider));
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
