//! Planning objects: cycles (dated, one per task), modules (many per task) and
//! knowledge pages (markdown, versioned).

use crate::store::sql::Sql;
use deadpool_postgres::GenericClient;
use time::Date;

use super::audit::{self, Change};
use super::rows::{self, CYCLE_COLUMNS, MODULE_COLUMNS, PAGE_COLUMNS};
use super::{Actor, Store, StoreError, StoreResult, check_version};
use crate::domain::{self, Cycle, Module, ModuleStatus, Page, text};

const MAX_PAGE_CHARS: usize = 1_000_000;

#[derive(Debug, Clone, Default)]
pub struct CycleUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub starts_on: Option<Date>,
    pub ends_on: Option<Date>,
}

#[derive(Debug, Clone)]
pub struct NewModule {
    pub name: String,
    pub description: String,
    pub status: ModuleStatus,
    pub lead: Option<String>,
    pub target_on: Option<Date>,
}

#[derive(Debug, Clone, Default)]
pub struct ModuleUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub status: Option<ModuleStatus>,
    /// `Some(None)` removes the lead.
    pub lead: Option<Option<String>>,
    pub target_on: Option<Option<Date>>,
}

fn check_dates(starts_on: Date, ends_on: Date) -> StoreResult<()> {
    if ends_on < starts_on {
        Err(StoreError::invalid(format!("the cycle ends ({ends_on}) before it starts ({starts_on})")))
    } else {
        Ok(())
    }
}

impl Store {
    pub async fn create_cycle(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        starts_on: Date,
        ends_on: Date,
        description: &str,
    ) -> StoreResult<Cycle> {
        self.refuse_if_read_only()?;
        let name = text::name("cycle name", name, 120)?;
        let description = text::long_text("description", description, 20_000)?;
        check_dates(starts_on, ends_on)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .fetch_one(
                "INSERT INTO cycle (project_id, name, description, starts_on, ends_on) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&project_id, &name, &description, &starts_on, &ends_on],
            )
            .await?
            .get(0);
        let cycle = read_cycle(&tx, id).await?;
        audit::record(
            &tx,
            actor,
            Change::new("cycle", "create", Some(project_id)).entity(id, &cycle.name).after(&cycle),
        )
        .await?;
        tx.commit().await?;
        Ok(cycle)
    }

    /// Cycles of a project as of `today`: the current one(s) first, then
    /// upcoming, then finished.
    pub async fn list_cycles(&self, project_id: i64, today: Date) -> StoreResult<Vec<Cycle>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {CYCLE_COLUMNS} FROM cycle c WHERE c.project_id = $1
                     ORDER BY CASE WHEN $2 BETWEEN c.starts_on AND c.ends_on THEN 0
                                   WHEN c.starts_on > $2 THEN 1 ELSE 2 END,
                              CASE WHEN c.starts_on > $2 THEN c.starts_on END,
                              c.ends_on DESC"
                ),
                &[&project_id, &today],
            )
            .await?;
        rows.iter().map(rows::cycle).collect()
    }

    pub async fn cycle_by_name(&self, project_id: i64, name: &str) -> StoreResult<Cycle> {
        let client = self.client().await?;
        let id = cycle_id_by_name(&client, project_id, name).await?;
        read_cycle(&client, id).await
    }

    pub async fn update_cycle(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        update: CycleUpdate,
    ) -> StoreResult<Cycle> {
        self.refuse_if_read_only()?;
        let new_name = update.name.as_deref().map(|n| text::name("cycle name", n, 120)).transpose()?;
        let description =
            update.description.as_deref().map(|d| text::long_text("description", d, 20_000)).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = cycle_id_by_name(&tx, project_id, name).await?;
        tx.exec("SELECT 1 FROM cycle WHERE id = $1 FOR UPDATE", &[&id]).await?;
        let before = read_cycle(&tx, id).await?;
        check_dates(update.starts_on.unwrap_or(before.starts_on), update.ends_on.unwrap_or(before.ends_on))?;
        tx.exec(
            "UPDATE cycle SET name = coalesce($2, name), description = coalesce($3, description),
                    starts_on = coalesce($4, starts_on), ends_on = coalesce($5, ends_on), updated_at = now()
             WHERE id = $1",
            &[&id, &new_name, &description, &update.starts_on, &update.ends_on],
        )
        .await?;
        let after = read_cycle(&tx, id).await?;
        audit::record(
            &tx,
            actor,
            Change::new("cycle", "update", Some(project_id)).entity(id, &after.name).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn create_module(&self, actor: &Actor, project_id: i64, new: NewModule) -> StoreResult<Module> {
        self.refuse_if_read_only()?;
        let name = text::name("module name", &new.name, 120)?;
        let description = text::long_text("description", &new.description, 20_000)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let lead_id = match &new.lead {
            Some(handle) => Some(super::agents::agent_by_handle(&tx, handle).await?.id),
            None => None,
        };
        let id: i64 = tx
            .fetch_one(
                "INSERT INTO module (project_id, name, description, status, lead_agent_id, target_on)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&project_id, &name, &description, &new.status.as_str(), &lead_id, &new.target_on],
            )
            .await?
            .get(0);
        let module = read_module(&tx, id).await?;
        audit::record(
            &tx,
            actor,
            Change::new("module", "create", Some(project_id)).entity(id, &module.name).after(&module),
        )
        .await?;
        tx.commit().await?;
        Ok(module)
    }

    pub async fn list_modules(&self, project_id: i64) -> StoreResult<Vec<Module>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {MODULE_COLUMNS} FROM module m LEFT JOIN agent la ON la.id = m.lead_agent_id
                     WHERE m.project_id = $1 ORDER BY m.name"
                ),
                &[&project_id],
            )
            .await?;
        rows.iter().map(rows::module).collect()
    }

    pub async fn module_by_name(&self, project_id: i64, name: &str) -> StoreResult<Module> {
        let client = self.client().await?;
        let id = module_id_by_name(&client, project_id, name).await?;
        read_module(&client, id).await
    }

    pub async fn update_module(
        &self,
        actor: &Actor,
        project_id: i64,
        name: &str,
        update: ModuleUpdate,
    ) -> StoreResult<Module> {
        self.refuse_if_read_only()?;
        let new_name = update.name.as_deref().map(|n| text::name("module name", n, 120)).transpose()?;
        let description =
            update.description.as_deref().map(|d| text::long_text("description", d, 20_000)).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = module_id_by_name(&tx, project_id, name).await?;
        tx.exec("SELECT 1 FROM module WHERE id = $1 FOR UPDATE", &[&id]).await?;
        let before = read_module(&tx, id).await?;
        let lead_id = match &update.lead {
            Some(Some(handle)) => Some(Some(super::agents::agent_by_handle(&tx, handle).await?.id)),
            Some(None) => Some(None),
            None => None,
        };
        tx.exec(
            "UPDATE module SET name = coalesce($2, name), description = coalesce($3, description),
                    status = coalesce($4, status),
                    lead_agent_id = CASE WHEN $5 THEN $6 ELSE lead_agent_id END,
                    target_on = CASE WHEN $7 THEN $8 ELSE target_on END, updated_at = now()
             WHERE id = $1",
            &[
                &id,
                &new_name,
                &description,
                &update.status.map(|s| s.as_str()),
                &lead_id.is_some(),
                &lead_id.flatten(),
                &update.target_on.is_some(),
                &update.target_on.flatten(),
            ],
        )
        .await?;
        let after = read_module(&tx, id).await?;
        audit::record(
            &tx,
            actor,
            Change::new("module", "update", Some(project_id)).entity(id, &after.name).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn create_page(
        &self,
        actor: &Actor,
        project_id: i64,
        slug: &str,
        title: &str,
        body: &str,
    ) -> StoreResult<Page> {
        self.refuse_if_read_only()?;
        let slug = domain::page_slug(slug)?;
        let title = text::name("page title", title, 200)?;
        let body = text::long_text("page body", body, MAX_PAGE_CHARS)?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .fetch_one(
                &format!(
                    "INSERT INTO page AS pg (project_id, slug, title, body, created_by, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $5) RETURNING {PAGE_COLUMNS}"
                ),
                &[&project_id, &slug, &title, &body, &actor.name],
            )
            .await?;
        let page = rows::page(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("page", "create", Some(project_id)).entity(page.id, &page.slug).after(&page),
        )
        .await?;
        tx.commit().await?;
        Ok(page)
    }

    pub async fn list_pages(&self, project_id: i64) -> StoreResult<Vec<Page>> {
        let client = self.client().await?;
        let rows = client
            .fetch(
                &format!(
                    "SELECT {PAGE_COLUMNS} FROM page pg WHERE pg.project_id = $1 AND NOT pg.archived ORDER BY pg.slug"
                ),
                &[&project_id],
            )
            .await?;
        rows.iter().map(rows::page).collect()
    }

    pub async fn page_by_slug(&self, project_id: i64, slug: &str) -> StoreResult<Page> {
        let slug = domain::page_slug(slug)?;
        let client = self.client().await?;
        let statement = &format!("SELECT {PAGE_COLUMNS} FROM page pg WHERE pg.project_id = $1 AND pg.slug = $2");
        let row = client
            .fetch_opt(statement, &[&project_id, &slug])
            .await?
            .ok_or_else(|| StoreError::not_found("page", &slug))?;
        rows::page(&row)
    }

    /// Saves a new title and/or body. With `expect_version` the save is refused
    /// if the page changed since the editor loaded it.
    pub async fn edit_page(
        &self,
        actor: &Actor,
        project_id: i64,
        slug: &str,
        title: Option<&str>,
        body: Option<&str>,
        expect_version: Option<i32>,
    ) -> StoreResult<Page> {
        self.refuse_if_read_only()?;
        let slug = domain::page_slug(slug)?;
        let title = title.map(|t| text::name("page title", t, 200)).transpose()?;
        let body = body.map(|b| text::long_text("page body", b, MAX_PAGE_CHARS)).transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let before = tx
            .fetch_opt(
                &format!("SELECT {PAGE_COLUMNS} FROM page pg WHERE pg.project_id = $1 AND pg.slug = $2 FOR UPDATE"),
                &[&project_id, &slug],
            )
            .await?
            .ok_or_else(|| StoreError::not_found("page", &slug))?;
        let before = rows::page(&before)?;
        check_version("page", &slug, expect_version, before.version)?;
        if title.as_ref().is_none_or(|t| *t == before.title) && body.as_ref().is_none_or(|b| *b == before.body) {
            return Ok(before);
        }
        let row = tx
            .fetch_one(
                &format!(
                    "UPDATE page pg SET title = coalesce($2, title), body = coalesce($3, body), updated_by = $4,
                            version = version + 1, updated_at = now()
                     WHERE pg.id = $1 RETURNING {PAGE_COLUMNS}"
                ),
                &[&before.id, &title, &body, &actor.name],
            )
            .await?;
        let after = rows::page(&row)?;
        audit::record(
            &tx,
            actor,
            Change::new("page", "update", Some(project_id)).entity(after.id, &after.slug).before(&before).after(&after),
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}

pub(crate) async fn cycle_id_by_name(client: &impl Sql, project_id: i64, name: &str) -> StoreResult<i64> {
    let row = client
        .fetch_opt(
            "SELECT id FROM cycle WHERE project_id = $1 AND lower(name) = lower($2)",
            &[&project_id, &name.trim()],
        )
        .await?
        .ok_or_else(|| StoreError::not_found("cycle", name.trim()))?;
    Ok(row.get(0))
}

async fn read_cycle(client: &impl Sql, id: i64) -> StoreResult<Cycle> {
    let row = client.fetch_one(&format!("SELECT {CYCLE_COLUMNS} FROM cycle c WHERE c.id = $1"), &[&id]).await?;
    rows::cycle(&row)
}

pub(crate) async fn module_id_by_name(client: &impl Sql, project_id: i64, name: &str) -> StoreResult<i64> {
    let row = client
        .fetch_opt(
            "SELECT id FROM module WHERE project_id = $1 AND lower(name) = lower($2)",
            &[&project_id, &name.trim()],
        )
        .await?
        .ok_or_else(|| StoreError::not_found("module", name.trim()))?;
    Ok(row.get(0))
}

async fn read_module(client: &impl Sql, id: i64) -> StoreResult<Module> {
    let row = client
        .fetch_one(
            &format!(
                "SELECT {MODULE_COLUMNS} FROM module m LEFT JOIN agent la ON la.id = m.lead_agent_id WHERE m.id = $1"
            ),
            &[&id],
        )
        .await?;
    rows::module(&row)
}
