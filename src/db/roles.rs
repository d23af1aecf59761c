//! Database roles as permissions and identity: the group roles of
//! `roles.sql` (`mctl db setup-roles`), granting one to an operator's own
//! login role (`mctl db grant`), and telling which kind of set-up a session
//! is in (`db status`).

use crate::store::sql::Sql;
use serde::Serialize;

use crate::store::{Actor, Store, StoreError, StoreResult};

/// The statements of `mctl db setup-roles`.
const SETUP: &str = include_str!("roles.sql");

/// What a login role may do, as one of mctl's group roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Viewer,
    Operator,
    Agent,
    Sync,
    Admin,
}

impl Level {
    pub const ALL: [Level; 5] = [Level::Viewer, Level::Operator, Level::Agent, Level::Sync, Level::Admin];

    pub fn group(self) -> &'static str {
        match self {
            Level::Viewer => "mctl_viewer",
            Level::Operator => "mctl_operator",
            Level::Agent => "mctl_agent",
            Level::Sync => "mctl_sync",
            Level::Admin => "mctl_admin",
        }
    }
}

/// Who this session is to the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// `session_user`: what the audit log records as `db_role`.
    pub role: String,
    /// The mctl group roles it is a member of.
    pub groups: Vec<String>,
    /// Whether the roles are set up in this database at all.
    pub roles_set_up: bool,
}

impl Identity {
    /// One line for `db status`.
    pub fn describe(&self) -> String {
        if !self.roles_set_up {
            return format!(
                "shared role {}: the audit log records {} and the --operator name each client gives (run `mctl db setup-roles` for per-operator roles)",
                self.role, self.role
            );
        }
        match self.groups.as_slice() {
            [] => format!(
                "role {} is in no mctl group: grant one with `mctl db grant {} --as operator`",
                self.role, self.role
            ),
            groups => format!(
                "role {} ({}): the audit log records this role, set by the database",
                self.role,
                groups.join(", ")
            ),
        }
    }
}

/// Creates the group roles and hands every object to `mctl_owner`, with
/// each group's grants. Idempotent; one transaction.
pub async fn setup(store: &Store, actor: &Actor) -> StoreResult<()> {
    store.refuse_if_read_only()?;
    let client = store.client().await?;
    client.batch_execute(&format!("BEGIN; {SETUP}; COMMIT;")).await.map_err(|e| {
        StoreError::Database(format!(
            "setting up the roles failed: {}: run it as a superuser, or as the role that owns mctl's tables and may create roles",
            e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
        ))
    })?;
    store.record_role_change(actor, "setup", None, None).await
}

/// Makes `role` a member of exactly one mctl group (`level`).
pub async fn grant(store: &Store, actor: &Actor, role: &str, level: Level) -> StoreResult<()> {
    store.refuse_if_read_only()?;
    let client = store.client().await?;
    let exists: bool =
        client.fetch_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&role]).await?.get(0);
    if !exists {
        return Err(StoreError::invalid(format!(
            "role {role:?} does not exist: create its login first (CREATE ROLE \"{role}\" LOGIN …), then grant it"
        )));
    }
    let set_up: bool =
        client.fetch_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mctl_viewer')", &[]).await?.get(0);
    if !set_up {
        return Err(StoreError::invalid("the mctl roles are not set up here: run `mctl db setup-roles` first"));
    }
    let quoted = format!("\"{}\"", role.replace('"', "\"\""));
    let mut sql = String::from("BEGIN;");
    for other in Level::ALL.iter().filter(|l| **l != level) {
        sql.push_str(&format!("REVOKE {} FROM {quoted};", other.group()));
    }
    sql.push_str(&format!("GRANT {} TO {quoted}; COMMIT;", level.group()));
    client.batch_execute(&sql).await.map_err(|e| {
        StoreError::Database(format!(
            "granting {} to {role} failed: {}: run it as an mctl admin or a superuser",
            level.group(),
            e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
        ))
    })?;
    store.record_role_change(actor, "grant", Some(role), Some(level)).await
}

/// This session's role and groups.
pub async fn identity(store: &Store) -> StoreResult<Identity> {
    let client = store.client().await?;
    let row = client
        .fetch_one(
            "SELECT session_user::text,
                    coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname)
                                FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                               WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = session_user)
                                 AND g.rolname IN ('mctl_admin', 'mctl_operator', 'mctl_agent', 'mctl_sync', 'mctl_viewer')),
                             '{}'),
                    EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mctl_viewer')",
            &[],
        )
        .await?;
    Ok(Identity { role: row.get(0), groups: row.get(1), roles_set_up: row.get(2) })
}

impl Store {
    async fn record_role_change(
        &self,
        actor: &Actor,
        verb: &str,
        role: Option<&str>,
        level: Option<Level>,
    ) -> StoreResult<()> {
        let mut change = crate::store::audit::Change::new("role", verb, None)
            .after(&serde_json::json!({ "role": role, "level": level }));
        change.entity_key = role.map(str::to_string);
        self.record_entry(actor, change).await.map(drop)
    }
}
