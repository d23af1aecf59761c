//! Integration connections (provider metadata plus a secret *reference*) and
//! the external mappings that link local objects to their remote copies.

use crate::store::sql::Sql;
use serde_json::Value;

use super::audit::{self, Change};
use super::rows::{self, CONNECTION_COLUMNS, MAPPING_COLUMNS};
use super::{Actor, Store, StoreError, StoreResult};
use crate::domain::{self, Connection, LocalKind, Mapping, Provider, SecretRef, text};

#[derive(Debug, Clone)]
pub struct NewConnection {
    pub key: String,
    pub provider: Provider,
    pub base_url: String,
    /// Non-secret settings (workspace, repository, project id...).
    pub config: Value,
    pub secret_ref: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub base_url: Option<String>,
    /// `Some(None)` removes the reference.
    pub secret_ref: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// Merged into the stored settings (top-level keys replaced).
    pub config: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct NewMapping {
    pub connection: String,
    pub local_kind: LocalKind,
    pub local_id: i64,
    pub external_id: String,
    pub external_key: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct MappingFilter {
    pub project_id: i64,
    pub connection: Option<String>,
    pub local_key: Option<String>,
}

/// Settings keys that would hold a secret. Those belong behind `secret_ref`.
const SECRET_WORDS: &[&str] =
    &["token", "secret", "password", "passwd", "apikey", "api_key", "private_key", "credential"];

fn check_base_url(raw: &str) -> StoreResult<String> {
    let base_url = raw.trim().trim_end_matches('/').to_string();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://"))
        || base_url.len() > 2000
        || base_url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(StoreError::invalid(format!(
            "invalid base URL {:?}: use the server's http(s):// address",
            text::clip(&base_url, 70)
        )));
    }
    if base_url.contains('@') {
        return Err(StoreError::invalid("the base URL carries credentials: remove them and use --token-ref"));
    }
    Ok(base_url)
}

fn check_secret_ref(raw: &str) -> StoreResult<String> {
    Ok(raw.parse::<SecretRef>()?.to_string())
}

fn check_config(config: &Value) -> StoreResult<()> {
    let Some(object) = config.as_object() else {
        return Err(StoreError::invalid("connection settings must be key=value pairs"));
    };
    for (key, value) in object {
        let lower = key.to_ascii_lowercase().replace('-', "_");
        // Automation subscriptions are a list of event names.
        if lower == "events" && !value.as_array().is_some_and(|events| events.iter().all(Value::is_string)) {
            return Err(StoreError::invalid(
                "setting \"events\" is a list of event names: use `mctl automation subscribe KEY EVENT...`",
            ));
        }
        // `*_ref` settings point at a secret (env:NAME or file:/path), like secret_ref.
        if lower.ends_with("_ref") {
            match value.as_str() {
                Some(reference) => {
                    reference.parse::<SecretRef>()?;
                }
                None => {
                    return Err(StoreError::invalid(format!(
                        "setting {key:?} must be a secret reference: env:NAME or file:/path"
                    )));
                }
            }
            continue;
        }
        if SECRET_WORDS.iter().any(|word| lower.contains(word)) {
            return Err(StoreError::invalid(format!(
                "setting {key:?} looks like a secret: keep secrets out of the database and pass --token-ref env:NAME or file:/path"
            )));
        }
    }
    Ok(())
}

/// A repository connection's `repo`: `OWNER/NAME` (GitLab: `GROUP/…/NAME`).
fn check_repo(provider: Provider, config: &Value) -> StoreResult<()> {
    let nested = match provider {
        Provider::Github | Provider::Gitea => false,
        Provider::Gitlab => true,
        _ => return Ok(()),
    };
    let repo = config.get("repo").and_then(Value::as_str).unwrap_or("");
    let parts: Vec<&str> = repo.trim().trim_matches('/').split('/').collect();
    let valid = parts.iter().all(|p| {
        !p.is_empty()
            && p.len() <= 100
            && !p.starts_with('.')
            && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    }) && (parts.len() == 2 || (nested && (2..=20).contains(&parts.len())));
    if valid {
        return Ok(());
    }
    Err(StoreError::invalid(format!(
        "a {provider} connection needs --repo OWNER/NAME{}",
        if nested { " (or GROUP/SUBGROUP/NAME)" } else { "" }
    )))
}

impl Store {
    pub async fn add_connection(&self, actor: &Actor, project_id: i64, new: NewConnection) -> StoreResult<Connection> {
        self.refuse_if_read_only()?;
        let key = domain::connection_key(&new.key)?;
        let base_url = check_base_url(&new.base_url)?;
        check_config(&new.config)?;
        let secret_ref = new.secret_ref.as_deref().map(check_secret_ref).transpose()?;
        check_repo(new.provider, &new.config)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO integration_connection AS ic (project_id, connection_key, provider, base_url, config, secret_ref)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {CONNECTION_COLUMNS}"
                ),
                &[&project_id, &key, &new.provider.as_str(), &base_url, &new.config, &secret_ref],
            )
            .await?;
        let connection = rows::connection(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("connection", "create", Some(project_id))
                .entity(connection.id, &connection.key)
                .after(&connection),
        )
        .await?;
        tx.commit().await?;
        Ok(connection)
    }

    pub async fn list_connections(&self, project_id: i64) -> StoreResult<Vec<Connection>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM integration_connection ic WHERE ic.project_id = $1 ORDER BY ic.connection_key"
                ),
                &[&project_id],
            )
            .await?;
        rows.iter().map(rows::connection).collect()
    }

    /// Enabled connections of one provider, of one project or of all.
    pub async fn enabled_connections(
        &self,
        provider: Provider,
        project_id: Option<i64>,
    ) -> StoreResult<Vec<Connection>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM integration_connection ic
                     WHERE ic.enabled AND ic.provider = $1 AND ($2::bigint IS NULL OR ic.project_id = $2)
                     ORDER BY ic.id"
                ),
                &[&provider.as_str(), &project_id],
            )
            .await?;
        rows.iter().map(rows::connection).collect()
    }

    pub async fn connection_by_id(&self, id: i64) -> StoreResult<Connection> {
        let client = self.client().await?;
        let row = client
            .fetch_opt(&format!("SELECT {CONNECTION_COLUMNS} FROM integration_connection ic WHERE ic.id = $1"), &[&id])
            .await?
            .ok_or_else(|| StoreError::not_found("connection", format!("#{id}")))?;
        rows::connection(&row)
    }

    pub async fn connection_by_key(&self, key: &str) -> StoreResult<Connection> {
        let key = domain::connection_key(key)?;
        let client = self.client().await?;
        let row = client
            .fetch_opt(
                &format!("SELECT {CONNECTION_COLUMNS} FROM integration_connection ic WHERE ic.connection_key = $1"),
                &[&key],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("connection", &key))?;
        rows::connection(&row)
    }

    pub async fn update_connection(
        &self,
        actor: &Actor,
        key: &str,
        update: ConnectionUpdate,
    ) -> StoreResult<Connection> {
        self.refuse_if_read_only()?;
        let key = domain::connection_key(key)?;
        let base_url = update.base_url.as_deref().map(check_base_url).transpose()?;
        let secret_ref = match &update.secret_ref {
            Some(Some(raw)) => Some(Some(check_secret_ref(raw)?)),
            Some(None) => Some(None),
            None => None,
        };
        if let Some(config) = &update.config {
            check_config(config)?;
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = tx
            .fetch_opt(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM integration_connection ic WHERE ic.connection_key = $1 FOR UPDATE"
                ),
                &[&key],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("connection", &key))?;
        let before = rows::connection(&before)?;
        if let Some(config) = update.config.as_ref().filter(|c| c.get("repo").is_some()) {
            check_repo(before.provider, config)?;
        }
        let row = tx
            .fetch_one(
                &format!(
                    "UPDATE integration_connection ic SET base_url = coalesce($2, base_url),
                            secret_ref = CASE WHEN $3 THEN $4 ELSE secret_ref END,
                            enabled = coalesce($5, enabled), config = config || coalesce($6, '{{}}'::jsonb),
                            updated_at = now()
                     WHERE ic.id = $1 RETURNING {CONNECTION_COLUMNS}"
                ),
                &[&before.id, &base_url, &secret_ref.is_some(), &secret_ref.flatten(), &update.enabled, &update.config],
            )
            .await?;
        let after = rows::connection(&row)?;
        if after == before {
            return Ok(after);
        }
        audit::record(
            &tx,
            actor,
            Change::new("connection", "update", Some(after.project_id))
                .entity(after.id, &after.key)
                .before(&before)
                .after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Removes a connection. One that still has mappings is only removed with
    /// `force`, which removes its mappings in the same transaction.
    pub async fn remove_connection(&self, actor: &Actor, key: &str, force: bool) -> StoreResult<Connection> {
        self.refuse_if_read_only()?;
        let key = domain::connection_key(key)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_opt(
                &format!(
                    "SELECT {CONNECTION_COLUMNS} FROM integration_connection ic WHERE ic.connection_key = $1 FOR UPDATE"
                ),
                &[&key],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("connection", &key))?;
        let connection = rows::connection(&row)?;
        let mappings: i64 = tx
            .fetch_one("SELECT count(*) FROM external_mapping WHERE connection_id = $1", &[&connection.id])
            .await?
            .get(0);
        if mappings > 0 && !force {
            return Err(StoreError::invalid(format!(
                "connection {key} still maps {mappings} object(s): pass --force to remove it and its mappings"
            )));
        }
        tx.exec("DELETE FROM external_mapping WHERE connection_id = $1", &[&connection.id]).await?;
        tx.exec("DELETE FROM integration_connection WHERE id = $1", &[&connection.id]).await?;
        let mut before = serde_json::to_value(&connection).unwrap_or_default();
        before["mappings"] = mappings.into();
        let mut change = Change::new("connection", "remove", Some(connection.project_id)).entity(connection.id, &key);
        change.before = Some(before);
        audit::record(&tx, actor, change).await?;
        tx.commit().await?;
        Ok(connection)
    }

    /// Links a local object to its copy on a connection.
    pub async fn create_mapping(&self, actor: &Actor, project_id: i64, new: NewMapping) -> StoreResult<Mapping> {
        self.refuse_if_read_only()?;
        let external_id = new.external_id.trim();
        if external_id.is_empty() || external_id.len() > 200 || external_id.chars().any(char::is_control) {
            return Err(StoreError::invalid("invalid external id: 1-200 characters on one line"));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let connection_id: i64 = tx
            .fetch_opt(
                "SELECT id FROM integration_connection WHERE connection_key = $1 AND project_id = $2",
                &[&new.connection, &project_id],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("connection", &new.connection))?
            .get(0);
        let id: i64 = tx
            .fetch_one(
                "INSERT INTO external_mapping (project_id, connection_id, local_kind, local_id, external_id, external_key, url)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&project_id, &connection_id, &new.local_kind.as_str(), &new.local_id, &external_id, &new.external_key, &new.url],
            )
            .await?
            .get(0);
        let mapping = read_mapping(&tx, id).await?;
        let key = mapping.local_key.clone().unwrap_or_else(|| format!("{}:{}", mapping.local_kind, mapping.local_id));
        audit::record(&tx, actor, Change::new("mapping", "create", Some(project_id)).entity(id, key).after(&mapping))
            .await?;
        tx.commit().await?;
        Ok(mapping)
    }

    pub async fn list_mappings(&self, filter: &MappingFilter) -> StoreResult<Vec<Mapping>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT * FROM (
                        SELECT {MAPPING_COLUMNS} FROM external_mapping em
                        JOIN integration_connection ic ON ic.id = em.connection_id
                        WHERE em.project_id = $1 AND ($2::text IS NULL OR ic.connection_key = $2)) m
                     WHERE $3::text IS NULL OR m.local_key = $3
                     ORDER BY m.connection, m.local_kind, m.local_id"
                ),
                &[&filter.project_id, &filter.connection, &filter.local_key],
            )
            .await?;
        rows.iter().map(rows::mapping).collect()
    }
}

async fn read_mapping(client: &impl Sql, id: i64) -> StoreResult<Mapping> {
    let row = client
        .fetch_one(
            &format!(
                "SELECT {MAPPING_COLUMNS} FROM external_mapping em
                 JOIN integration_connection ic ON ic.id = em.connection_id WHERE em.id = $1"
            ),
            &[&id],
        )
        .await?;
    rows::mapping(&row)
}
