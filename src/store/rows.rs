//! How each entity is selected and read back from a row. Keeping the column
//! list next to its mapper means a new column is added in one place.

use tokio_postgres::Row;

use super::StoreResult;
use crate::domain::*;

pub const PROJECT_COLUMNS: &str = "p.id, p.key, p.name, p.description, p.settings, p.dashboard, \
     p.last_task_number, p.archived, p.version, p.created_at, p.updated_at";

pub fn project(row: &Row) -> StoreResult<Project> {
    Ok(Project {
        id: row.try_get("id")?,
        key: row.try_get("key")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        settings: row.try_get("settings")?,
        dashboard: row.try_get("dashboard")?,
        last_task_number: row.try_get("last_task_number")?,
        archived: row.try_get("archived")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A lane's open cards: the folded count plus the deltas not folded yet
/// (`sql/V10__claims_without_lane_locks.sql`). For a lane aliased `l`.
macro_rules! lane_open_count {
    () => {
        "(l.open_count + coalesce((SELECT sum(d.delta) FROM lane_count_delta d WHERE d.lane_id = l.id), 0))::integer"
    };
}
pub const LANE_OPEN_COUNT: &str = lane_open_count!();

pub const LANE_COLUMNS: &str = concat!(
    "l.id, l.project_id, l.name, l.position, l.wip_limit, l.category, l.role, l.visible, l.sync, ",
    lane_open_count!(),
    " AS open_count"
);

pub fn lane(row: &Row) -> StoreResult<Lane> {
    Ok(Lane {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        position: row.try_get("position")?,
        wip_limit: row.try_get("wip_limit")?,
        category: LaneCategory::from_db(row.try_get("category")?)?,
        role: LaneRole::from_db(row.try_get("role")?)?,
        visible: row.try_get("visible")?,
        sync: row.try_get("sync")?,
        open_count: row.try_get("open_count")?,
    })
}

pub const AGENT_COLUMNS: &str =
    "a.id, a.handle, a.display_name, a.kind, a.status, a.capacity, a.skills, a.last_seen_at, a.version";

pub fn agent(row: &Row) -> StoreResult<Agent> {
    Ok(Agent {
        id: row.try_get("id")?,
        handle: row.try_get("handle")?,
        display_name: row.try_get("display_name")?,
        kind: AgentKind::from_db(row.try_get("kind")?)?,
        status: AgentStatus::from_db(row.try_get("status")?)?,
        capacity: row.try_get("capacity")?,
        skills: row.try_get("skills")?,
        last_seen_at: row.try_get("last_seen_at")?,
        version: row.try_get("version")?,
    })
}

/// Task columns with the names of its lane, assignee, cycle and modules joined in.
/// Use with `FROM task t` followed by [`TASK_JOINS`].
pub const TASK_COLUMNS: &str = "t.id, t.project_id, t.task_key, t.number, t.title, t.description, t.lane_id, \
     l.name AS lane, l.category AS lane_category, t.rank, t.priority, t.assignee_id, a.handle AS assignee, \
     t.labels, t.due_on, t.cycle_id, c.name AS cycle, \
     ARRAY(SELECT m.name FROM task_module tm JOIN module m ON m.id = tm.module_id \
           WHERE tm.task_id = t.id ORDER BY m.name) AS modules, \
     t.archived, t.version, t.created_by, t.created_at, t.updated_at";

pub const TASK_JOINS: &str = "JOIN lane l ON l.id = t.lane_id \
     LEFT JOIN agent a ON a.id = t.assignee_id \
     LEFT JOIN cycle c ON c.id = t.cycle_id";

pub fn task(row: &Row) -> StoreResult<Task> {
    Ok(Task {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        key: row.try_get("task_key")?,
        number: row.try_get("number")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        lane_id: row.try_get("lane_id")?,
        lane: row.try_get("lane")?,
        lane_category: LaneCategory::from_db(row.try_get("lane_category")?)?,
        rank: row.try_get("rank")?,
        priority: Priority::from_db(row.try_get("priority")?)?,
        assignee_id: row.try_get("assignee_id")?,
        assignee: row.try_get("assignee")?,
        labels: row.try_get("labels")?,
        due_on: row.try_get("due_on")?,
        cycle_id: row.try_get("cycle_id")?,
        cycle: row.try_get("cycle")?,
        modules: row.try_get("modules")?,
        archived: row.try_get("archived")?,
        version: row.try_get("version")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Use with `FROM handoff h` followed by [`HANDOFF_JOINS`].
pub const HANDOFF_COLUMNS: &str = "h.id, h.project_id, h.task_id, t.task_key, h.kind, fa.handle AS from_agent, \
     ta.handle AS to_agent, h.reason, h.needs, h.due_at, h.state, h.resolution, h.opened_by, h.version, \
     h.created_at, h.updated_at, h.closed_at";

pub const HANDOFF_JOINS: &str = "JOIN task t ON t.id = h.task_id \
     JOIN agent ta ON ta.id = h.to_agent_id \
     LEFT JOIN agent fa ON fa.id = h.from_agent_id";

pub fn handoff(row: &Row) -> StoreResult<Handoff> {
    Ok(Handoff {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        task_id: row.try_get("task_id")?,
        task_key: row.try_get("task_key")?,
        kind: HandoffKind::from_db(row.try_get("kind")?)?,
        from_agent: row.try_get("from_agent")?,
        to_agent: row.try_get("to_agent")?,
        reason: row.try_get("reason")?,
        needs: row.try_get("needs")?,
        due_at: row.try_get("due_at")?,
        state: HandoffState::from_db(row.try_get("state")?)?,
        resolution: row.try_get("resolution")?,
        opened_by: row.try_get("opened_by")?,
        version: row.try_get("version")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        closed_at: row.try_get("closed_at")?,
    })
}

/// Progress counts for a planning object whose member tasks are selected by `$membership`.
macro_rules! progress_columns {
    ($membership:literal) => {
        concat!(
            "(SELECT count(*) FROM task t JOIN lane tl ON tl.id = t.lane_id WHERE NOT t.archived AND ",
            $membership,
            ") AS task_count, ",
            "(SELECT count(*) FROM task t JOIN lane tl ON tl.id = t.lane_id WHERE NOT t.archived AND ",
            $membership,
            " AND tl.category IN ('completed', 'cancelled')) AS done_count"
        )
    };
}

pub const CYCLE_COLUMNS: &str = concat!(
    "c.id, c.project_id, c.name, c.description, c.starts_on, c.ends_on, ",
    progress_columns!("t.cycle_id = c.id")
);

pub fn cycle(row: &Row) -> StoreResult<Cycle> {
    Ok(Cycle {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        starts_on: row.try_get("starts_on")?,
        ends_on: row.try_get("ends_on")?,
        task_count: row.try_get("task_count")?,
        done_count: row.try_get("done_count")?,
    })
}

pub const MODULE_COLUMNS: &str = concat!(
    "m.id, m.project_id, m.name, m.description, m.status, la.handle AS lead, m.target_on, ",
    progress_columns!("t.id IN (SELECT task_id FROM task_module WHERE module_id = m.id)")
);

pub fn module(row: &Row) -> StoreResult<Module> {
    Ok(Module {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        status: ModuleStatus::from_db(row.try_get("status")?)?,
        lead: row.try_get("lead")?,
        target_on: row.try_get("target_on")?,
        task_count: row.try_get("task_count")?,
        done_count: row.try_get("done_count")?,
    })
}

pub const PAGE_COLUMNS: &str = "pg.id, pg.project_id, pg.slug, pg.title, pg.body, pg.archived, pg.version, \
     pg.created_by, pg.updated_by, pg.updated_at";

pub fn page(row: &Row) -> StoreResult<Page> {
    Ok(Page {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        slug: row.try_get("slug")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        archived: row.try_get("archived")?,
        version: row.try_get("version")?,
        created_by: row.try_get("created_by")?,
        updated_by: row.try_get("updated_by")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub const ENVIRONMENT_COLUMNS: &str = "e.id, e.project_id, e.name, e.kind, e.url, e.position";

pub fn environment(row: &Row) -> StoreResult<Environment> {
    Ok(Environment {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        kind: EnvironmentKind::from_db(row.try_get("kind")?)?,
        url: row.try_get("url")?,
        position: row.try_get("position")?,
    })
}

pub const PIPELINE_COLUMNS: &str = "pl.id, pl.project_id, pl.provider, pl.external_id, pl.name, pl.ref, \
     pl.commit_sha, pl.status, pl.url, pl.started_at, pl.finished_at, pl.updated_at";

pub fn pipeline(row: &Row) -> StoreResult<Pipeline> {
    Ok(Pipeline {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        provider: row.try_get("provider")?,
        external_id: row.try_get("external_id")?,
        name: row.try_get("name")?,
        git_ref: row.try_get("ref")?,
        commit_sha: row.try_get("commit_sha")?,
        status: PipelineStatus::from_db(row.try_get("status")?)?,
        url: row.try_get("url")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Use with `FROM deployment d JOIN environment e ON e.id = d.environment_id LEFT JOIN release r ON r.id = d.release_id`.
pub const DEPLOYMENT_COLUMNS: &str = "d.id, d.project_id, e.name AS environment, d.provider, d.external_id, d.ref, \
     d.commit_sha, d.status, d.url, r.name AS release, d.started_at, d.finished_at, d.created_at";

pub fn deployment(row: &Row) -> StoreResult<Deployment> {
    Ok(Deployment {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        environment: row.try_get("environment")?,
        provider: row.try_get("provider")?,
        external_id: row.try_get("external_id")?,
        git_ref: row.try_get("ref")?,
        commit_sha: row.try_get("commit_sha")?,
        status: DeploymentStatus::from_db(row.try_get("status")?)?,
        url: row.try_get("url")?,
        release: row.try_get("release")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        created_at: row.try_get("created_at")?,
    })
}

pub const RELEASE_COLUMNS: &str = "r.id, r.project_id, r.name, r.tag, r.status, r.ref, r.commit_sha, r.target_on, \
     r.released_at, r.url, r.notes, \
     ARRAY(SELECT t.task_key FROM release_task rt JOIN task t ON t.id = rt.task_id \
           WHERE rt.release_id = r.id ORDER BY t.number) AS task_keys";

pub fn release(row: &Row) -> StoreResult<Release> {
    Ok(Release {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        tag: row.try_get("tag")?,
        status: ReleaseStatus::from_db(row.try_get("status")?)?,
        git_ref: row.try_get("ref")?,
        commit_sha: row.try_get("commit_sha")?,
        target_on: row.try_get("target_on")?,
        released_at: row.try_get("released_at")?,
        url: row.try_get("url")?,
        notes: row.try_get("notes")?,
        task_keys: row.try_get("task_keys")?,
    })
}

pub const CONNECTION_COLUMNS: &str =
    "ic.id, ic.project_id, ic.connection_key, ic.provider, ic.base_url, ic.config, ic.secret_ref, ic.enabled";

pub fn connection(row: &Row) -> StoreResult<Connection> {
    Ok(Connection {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        key: row.try_get("connection_key")?,
        provider: Provider::from_db(row.try_get("provider")?)?,
        base_url: row.try_get("base_url")?,
        config: row.try_get("config")?,
        secret_ref: row.try_get("secret_ref")?,
        enabled: row.try_get("enabled")?,
    })
}

/// Use with `FROM external_mapping em JOIN integration_connection ic ON ic.id = em.connection_id`.
pub const MAPPING_COLUMNS: &str = "em.id, em.project_id, ic.connection_key AS connection, em.local_kind, em.local_id, \
     CASE em.local_kind WHEN 'task' THEN (SELECT task_key FROM task WHERE id = em.local_id) \
                        WHEN 'page' THEN (SELECT slug FROM page WHERE id = em.local_id) \
                        WHEN 'lane' THEN (SELECT name FROM lane WHERE id = em.local_id) \
                        WHEN 'cycle' THEN (SELECT name FROM cycle WHERE id = em.local_id) \
                        WHEN 'module' THEN (SELECT name FROM module WHERE id = em.local_id) \
                        WHEN 'agent' THEN (SELECT handle FROM agent WHERE id = em.local_id) END AS local_key, \
     em.external_id, em.external_key, em.url, em.sync_state, em.last_error, em.last_synced_at";

pub fn mapping(row: &Row) -> StoreResult<Mapping> {
    Ok(Mapping {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        connection: row.try_get("connection")?,
        local_kind: LocalKind::from_db(row.try_get("local_kind")?)?,
        local_id: row.try_get("local_id")?,
        local_key: row.try_get("local_key")?,
        external_id: row.try_get("external_id")?,
        external_key: row.try_get("external_key")?,
        url: row.try_get("url")?,
        sync_state: SyncState::from_db(row.try_get("sync_state")?)?,
        last_error: row.try_get("last_error")?,
        last_synced_at: row.try_get("last_synced_at")?,
    })
}
