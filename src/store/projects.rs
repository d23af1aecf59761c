//! Projects: the operator's scope boundary. Creating one also creates its default lanes.

use crate::store::sql::Sql;
use serde_json::json;

use super::audit::{self, Change};
use super::rows::{self, PROJECT_COLUMNS};
use super::{Actor, Store, StoreError, StoreResult};
use crate::domain::{self, LaneCategory, LaneRole, Project, text};

/// The lanes every new project starts with: name, category, role, WIP limit.
pub const DEFAULT_LANES: &[(&str, LaneCategory, LaneRole, Option<i32>)] = &[
    ("Inbox", LaneCategory::Backlog, LaneRole::Normal, None),
    ("Ready", LaneCategory::Unstarted, LaneRole::Normal, None),
    ("In Progress", LaneCategory::Started, LaneRole::Normal, Some(6)),
    ("Review", LaneCategory::Started, LaneRole::Review, Some(4)),
    ("Blocked", LaneCategory::Started, LaneRole::Blocked, None),
    ("Done", LaneCategory::Completed, LaneRole::Normal, None),
];

#[derive(Debug, Clone, Default)]
pub struct ProjectUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Merged into the stored settings object (top-level keys replaced).
    pub settings: Option<serde_json::Value>,
}

impl Store {
    pub async fn create_project(
        &self,
        actor: &Actor,
        key: &str,
        name: &str,
        description: &str,
    ) -> StoreResult<Project> {
        self.refuse_if_read_only()?;
        let key = domain::project_key(key)?;
        let name = text::name("project name", name, 200)?;
        let description = text::long_text("description", description, 20_000)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO project AS p (key, name, description) VALUES ($1, $2, $3) RETURNING {PROJECT_COLUMNS}"
                ),
                &[&key, &name, &description],
            )
            .await?;
        let project = rows::project(&row)?;
        let mut lanes = Vec::new();
        for (position, (lane, category, role, wip)) in DEFAULT_LANES.iter().enumerate() {
            tx.exec(
                "INSERT INTO lane (project_id, name, position, category, role, wip_limit)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&project.id, lane, &(position as i32 + 1), &category.as_str(), &role.as_str(), wip],
            )
            .await?;
            lanes.push(json!({"name": lane, "category": category, "role": role, "wip_limit": wip}));
        }
        let mut after = serde_json::to_value(&project).unwrap_or_default();
        after["lanes"] = json!(lanes);
        let mut change = Change::new("project", "create", Some(project.id)).entity(project.id, &project.key);
        change.after = Some(after);
        audit::record(&tx, actor, change).await?;
        tx.commit().await?;
        Ok(project)
    }

    pub async fn list_projects(&self, include_archived: bool) -> StoreResult<Vec<Project>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!("SELECT {PROJECT_COLUMNS} FROM project p WHERE $1 OR NOT p.archived ORDER BY p.key"),
                &[&include_archived],
            )
            .await?;
        rows.iter().map(rows::project).collect()
    }

    pub async fn project_by_key(&self, key: &str) -> StoreResult<Project> {
        let key = domain::project_key(key)?;
        let client = self.client().await?;
        let statement = &format!("SELECT {PROJECT_COLUMNS} FROM project p WHERE p.key = $1");
        let row = client.fetch_opt(statement, &[&key]).await?.ok_or_else(|| StoreError::not_found("project", &key))?;
        rows::project(&row)
    }

    pub async fn update_project(&self, actor: &Actor, key: &str, update: ProjectUpdate) -> StoreResult<Project> {
        self.refuse_if_read_only()?;
        let key = domain::project_key(key)?;
        let name = update.name.as_deref().map(|n| text::name("project name", n, 200)).transpose()?;
        let description =
            update.description.as_deref().map(|d| text::long_text("description", d, 20_000)).transpose()?;
        if let Some(settings) = &update.settings
            && !settings.is_object()
        {
            return Err(StoreError::invalid("project settings must be a JSON object"));
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = tx
            .fetch_opt(&format!("SELECT {PROJECT_COLUMNS} FROM project p WHERE p.key = $1 FOR UPDATE"), &[&key])
            .await?
            .ok_or_else(|| StoreError::not_found("project", &key))?;
        let before = rows::project(&before)?;
        let row = tx
            .fetch_one(
                &format!(
                    "UPDATE project p SET name = coalesce($2, name), description = coalesce($3, description),
                            settings = settings || coalesce($4, '{{}}'::jsonb),
                            version = version + 1, updated_at = now()
                     WHERE p.id = $1 RETURNING {PROJECT_COLUMNS}"
                ),
                &[&before.id, &name, &description, &update.settings],
            )
            .await?;
        let after = rows::project(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("project", "update", Some(after.id)).entity(after.id, &after.key).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}
