//! Reading a project's rows in one consistent read (REPEATABLE READ, read
//! only): concurrent writers never produce a torn snapshot.

use crate::store::sql::Sql;
use std::collections::BTreeMap;

use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;

use super::model::*;
use crate::store::{Store, StoreError, StoreResult};

impl Store {
    pub async fn capture(&self, project_id: i64) -> StoreResult<SnapshotData> {
        let mut client = self.client().await?;
        let tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start().await?;
        let data = read_project(&tx, project_id).await?;
        tx.commit().await?;
        Ok(data)
    }
}

/// Reads everything of one project through `client` (the caller's transaction).
pub async fn read_project(client: &impl Sql, project_id: i64) -> StoreResult<SnapshotData> {
    let project = client
        .fetch_opt(
            "SELECT id, key, name, description, settings, dashboard, last_task_number, archived, created_at
             FROM project WHERE id = $1",
            &[&project_id],
        )
        .await?
        .ok_or_else(|| StoreError::not_found("project", project_id))?;
    let project = ProjectRow {
        id: project.try_get("id")?,
        key: project.try_get("key")?,
        name: project.try_get("name")?,
        description: project.try_get("description")?,
        settings: project.try_get("settings")?,
        dashboard: project.try_get("dashboard")?,
        last_task_number: project.try_get("last_task_number")?,
        archived: project.try_get("archived")?,
        created_at: project.try_get("created_at")?,
    };
    let p = &[&project_id as &(dyn tokio_postgres::types::ToSql + Sync)];
    let lanes = rows(
        client,
        "SELECT id, name, position, wip_limit, category, role, visible, sync FROM lane WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(LaneRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                position: r.try_get("position")?,
                wip_limit: r.try_get("wip_limit")?,
                category: r.try_get("category")?,
                role: r.try_get("role")?,
                visible: r.try_get("visible")?,
                sync: r.try_get("sync")?,
            })
        },
    )
    .await?;
    let agents = rows(
        client,
        "SELECT id, handle, display_name, kind, capacity, skills FROM agent WHERE id IN (
             SELECT assignee_id FROM task WHERE project_id = $1
             UNION SELECT from_agent_id FROM handoff WHERE project_id = $1
             UNION SELECT to_agent_id FROM handoff WHERE project_id = $1
             UNION SELECT lead_agent_id FROM module WHERE project_id = $1)
         ORDER BY id",
        p,
        |r| {
            Ok(AgentRow {
                id: r.try_get("id")?,
                handle: r.try_get("handle")?,
                display_name: r.try_get("display_name")?,
                kind: r.try_get("kind")?,
                capacity: r.try_get("capacity")?,
                skills: r.try_get("skills")?,
            })
        },
    )
    .await?;
    let cycles = rows(
        client,
        "SELECT id, name, description, starts_on, ends_on FROM cycle WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(CycleRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                starts_on: r.try_get("starts_on")?,
                ends_on: r.try_get("ends_on")?,
            })
        },
    )
    .await?;
    let modules = rows(
        client,
        "SELECT id, name, description, status, lead_agent_id, target_on FROM module WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(ModuleRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                description: r.try_get("description")?,
                status: r.try_get("status")?,
                lead_agent_id: r.try_get("lead_agent_id")?,
                target_on: r.try_get("target_on")?,
            })
        },
    )
    .await?;
    let mut memberships: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in client
        .fetch(
            "SELECT tm.task_id, tm.module_id FROM task_module tm JOIN task t ON t.id = tm.task_id
             WHERE t.project_id = $1 ORDER BY tm.task_id, tm.module_id",
            p,
        )
        .await?
    {
        memberships.entry(row.get(0)).or_default().push(row.get(1));
    }
    let tasks = rows(
        client,
        "SELECT id, number, task_key, title, description, lane_id, rank, priority, assignee_id, labels, due_on,
                cycle_id, archived, version, created_by, created_at
         FROM task WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            let id: i64 = r.try_get("id")?;
            Ok(TaskRow {
                id,
                number: r.try_get("number")?,
                key: r.try_get("task_key")?,
                title: r.try_get("title")?,
                description: r.try_get("description")?,
                lane_id: r.try_get("lane_id")?,
                rank: r.try_get("rank")?,
                priority: r.try_get("priority")?,
                assignee_id: r.try_get("assignee_id")?,
                labels: r.try_get("labels")?,
                due_on: r.try_get("due_on")?,
                cycle_id: r.try_get("cycle_id")?,
                module_ids: memberships.remove(&id).unwrap_or_default(),
                archived: r.try_get("archived")?,
                version: r.try_get("version")?,
                created_by: r.try_get("created_by")?,
                created_at: r.try_get("created_at")?,
            })
        },
    )
    .await?;
    let handoffs = rows(
        client,
        "SELECT id, task_id, kind, from_agent_id, to_agent_id, reason, needs, due_at, state, resolution, opened_by,
                version, created_at, closed_at
         FROM handoff WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(HandoffRow {
                id: r.try_get("id")?,
                task_id: r.try_get("task_id")?,
                kind: r.try_get("kind")?,
                from_agent_id: r.try_get("from_agent_id")?,
                to_agent_id: r.try_get("to_agent_id")?,
                reason: r.try_get("reason")?,
                needs: r.try_get("needs")?,
                due_at: r.try_get("due_at")?,
                state: r.try_get("state")?,
                resolution: r.try_get("resolution")?,
                opened_by: r.try_get("opened_by")?,
                version: r.try_get("version")?,
                created_at: r.try_get("created_at")?,
                closed_at: r.try_get("closed_at")?,
            })
        },
    )
    .await?;
    let pages = rows(
        client,
        "SELECT id, slug, title, body, archived, version, created_by, updated_by FROM page WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(PageRow {
                id: r.try_get("id")?,
                slug: r.try_get("slug")?,
                title: r.try_get("title")?,
                body: r.try_get("body")?,
                archived: r.try_get("archived")?,
                version: r.try_get("version")?,
                created_by: r.try_get("created_by")?,
                updated_by: r.try_get("updated_by")?,
            })
        },
    )
    .await?;
    let environments = rows(
        client,
        "SELECT id, name, kind, url, position FROM environment WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(EnvironmentRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                kind: r.try_get("kind")?,
                url: r.try_get("url")?,
                position: r.try_get("position")?,
            })
        },
    )
    .await?;
    let releases = rows(
        client,
        "SELECT r.id, r.name, r.tag, r.provider, r.external_id, r.status, r.ref, r.commit_sha, r.target_on,
                r.released_at, r.url, r.notes,
                ARRAY(SELECT task_id FROM release_task WHERE release_id = r.id ORDER BY task_id) AS task_ids
         FROM release r WHERE r.project_id = $1 ORDER BY r.id",
        p,
        |r| {
            Ok(ReleaseRow {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                tag: r.try_get("tag")?,
                provider: r.try_get("provider")?,
                external_id: r.try_get("external_id")?,
                status: r.try_get("status")?,
                git_ref: r.try_get("ref")?,
                commit_sha: r.try_get("commit_sha")?,
                target_on: r.try_get("target_on")?,
                released_at: r.try_get("released_at")?,
                url: r.try_get("url")?,
                notes: r.try_get("notes")?,
                task_ids: r.try_get("task_ids")?,
            })
        },
    )
    .await?;
    let pipelines = rows(
        client,
        "SELECT id, provider, external_id, name, ref, commit_sha, status, url, started_at, finished_at
         FROM pipeline WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(PipelineRow {
                id: r.try_get("id")?,
                provider: r.try_get("provider")?,
                external_id: r.try_get("external_id")?,
                name: r.try_get("name")?,
                git_ref: r.try_get("ref")?,
                commit_sha: r.try_get("commit_sha")?,
                status: r.try_get("status")?,
                url: r.try_get("url")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        },
    )
    .await?;
    let deployments = rows(
        client,
        "SELECT id, environment_id, provider, external_id, ref, commit_sha, status, url, release_id, started_at, finished_at
         FROM deployment WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(DeploymentRow {
                id: r.try_get("id")?,
                environment_id: r.try_get("environment_id")?,
                provider: r.try_get("provider")?,
                external_id: r.try_get("external_id")?,
                git_ref: r.try_get("ref")?,
                commit_sha: r.try_get("commit_sha")?,
                status: r.try_get("status")?,
                url: r.try_get("url")?,
                release_id: r.try_get("release_id")?,
                started_at: r.try_get("started_at")?,
                finished_at: r.try_get("finished_at")?,
            })
        },
    )
    .await?;
    let connections = rows(
        client,
        "SELECT id, connection_key, provider, base_url, config, secret_ref, enabled
         FROM integration_connection WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(ConnectionRow {
                id: r.try_get("id")?,
                key: r.try_get("connection_key")?,
                provider: r.try_get("provider")?,
                base_url: r.try_get("base_url")?,
                config: r.try_get("config")?,
                secret_ref: r.try_get("secret_ref")?,
                enabled: r.try_get("enabled")?,
            })
        },
    )
    .await?;
    let mappings = rows(
        client,
        "SELECT id, connection_id, local_kind, local_id, external_id, external_key, url, base, remote_version, sync_state
         FROM external_mapping WHERE project_id = $1 ORDER BY id",
        p,
        |r| {
            Ok(MappingRow {
                id: r.try_get("id")?,
                connection_id: r.try_get("connection_id")?,
                local_kind: r.try_get("local_kind")?,
                local_id: r.try_get("local_id")?,
                external_id: r.try_get("external_id")?,
                external_key: r.try_get("external_key")?,
                url: r.try_get("url")?,
                base: r.try_get("base")?,
                remote_version: r.try_get("remote_version")?,
                sync_state: r.try_get("sync_state")?,
            })
        },
    )
    .await?;
    Ok(SnapshotData {
        project,
        lanes,
        agents,
        cycles,
        modules,
        tasks,
        handoffs,
        pages,
        environments,
        releases,
        pipelines,
        deployments,
        connections,
        mappings,
    })
}

async fn rows<T>(
    client: &impl Sql,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    map: impl FnMut(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    client.fetch(sql, params).await?.iter().map(map).collect()
}
