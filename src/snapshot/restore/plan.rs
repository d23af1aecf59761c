//! What a restore will do: for each kind, the rows to write back (with what
//! is there now) and the rows that appeared since the snapshot.
//!
//! Rows are compared as typed records first; only rows that differ are turned
//! into JSON objects, so a restore that puts back 10,000 of 100,000 tasks
//! spends its time on those 10,000.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

use super::clash::{self, Clash, Naming, Rename, TakenElsewhere};
use super::{KindCounts, RestoreOptions};
use crate::snapshot::diff;
use crate::snapshot::model::*;

/// How a table is written back.
pub(super) struct Spec {
    pub kind: &'static str,
    pub singular: &'static str,
    pub table: &'static str,
    /// Columns written on insert (besides id and project_id).
    pub columns: &'static [&'static str],
    /// Of those, the ones an update leaves alone.
    pub insert_only: &'static [&'static str],
    /// Of those, the jsonb ones (an array there is JSON, not a PostgreSQL array).
    pub json: &'static [&'static str],
    pub versioned: bool,
    /// Moves a unique column out of the way before rows swap values.
    pub park: Option<&'static str>,
    /// The unique constraints, each as the snapshot fields it covers: only
    /// rows where one of them changes need parking, and a row made since
    /// that matches a restored one on any of them clashes with it.
    pub unique: &'static [&'static [&'static str]],
    pub extra: Extra,
    /// How a row made since gives up a unique value a restored row needs.
    pub clash: Clash,
}

/// What happens to a row created after the snapshot (unless `exact`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Extra {
    Keep,
    Hide,
    Archive,
    Cancel,
}

/// In restore order: what a row points at comes before the row.
pub(super) const SPECS: &[Spec] = &[
    Spec {
        kind: "lanes",
        singular: "lane",
        table: "lane",
        columns: &["name", "position", "wip_limit", "category", "role", "visible", "sync"],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &[&["name"]],
        extra: Extra::Hide,
        clash: Clash::Rename(Naming { column: "name", token: false, max: 60, global: false }),
    },
    Spec {
        kind: "cycles",
        singular: "cycle",
        table: "cycle",
        columns: &["name", "description", "starts_on", "ends_on"],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &[&["name"]],
        extra: Extra::Keep,
        clash: Clash::Rename(Naming { column: "name", token: false, max: 120, global: false }),
    },
    Spec {
        kind: "modules",
        singular: "module",
        table: "module",
        columns: &["name", "description", "status", "lead_agent_id", "target_on"],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &[&["name"]],
        extra: Extra::Keep,
        clash: Clash::Rename(Naming { column: "name", token: false, max: 120, global: false }),
    },
    Spec {
        kind: "tasks",
        singular: "task",
        table: "task",
        columns: &[
            "number",
            "task_key",
            "title",
            "description",
            "lane_id",
            "rank",
            "priority",
            "assignee_id",
            "labels",
            "due_on",
            "cycle_id",
            "archived",
            "version",
            "created_by",
            "created_at",
        ],
        insert_only: &["version"],
        json: &[],
        versioned: true,
        // Ranks are unique per lane: park the rows far below any real rank first.
        park: Some("rank = -id - 1125899906842624"),
        unique: &[&["lane_id", "rank", "archived"]],
        extra: Extra::Archive,
        clash: Clash::Never,
    },
    Spec {
        kind: "handoffs",
        singular: "handoff",
        table: "handoff",
        columns: &[
            "task_id",
            "kind",
            "from_agent_id",
            "to_agent_id",
            "reason",
            "needs",
            "due_at",
            "state",
            "resolution",
            "opened_by",
            "version",
            "created_at",
            "closed_at",
        ],
        insert_only: &["version"],
        json: &[],
        versioned: true,
        park: None,
        unique: &[],
        extra: Extra::Cancel,
        clash: Clash::Never,
    },
    Spec {
        kind: "pages",
        singular: "page",
        table: "page",
        columns: &["slug", "title", "body", "archived", "version", "created_by", "updated_by"],
        insert_only: &["version"],
        json: &[],
        versioned: true,
        park: Some("slug = 'zz-restore-tmp-' || id"),
        unique: &[&["slug"]],
        extra: Extra::Archive,
        clash: Clash::Rename(Naming { column: "slug", token: true, max: 100, global: false }),
    },
    Spec {
        kind: "environments",
        singular: "environment",
        table: "environment",
        columns: &["name", "kind", "url", "position"],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("name = 'restore.tmp.' || id"),
        unique: &[&["name"]],
        extra: Extra::Keep,
        clash: Clash::Rename(Naming { column: "name", token: true, max: 60, global: false }),
    },
    Spec {
        kind: "releases",
        singular: "release",
        table: "release",
        columns: &[
            "name",
            "tag",
            "provider",
            "external_id",
            "status",
            "ref",
            "commit_sha",
            "target_on",
            "released_at",
            "url",
            "notes",
        ],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("name = '~restore~' || id"),
        unique: &[&["name"]],
        extra: Extra::Keep,
        clash: Clash::Rename(Naming { column: "name", token: false, max: 120, global: false }),
    },
    Spec {
        kind: "pipelines",
        singular: "pipeline",
        table: "pipeline",
        columns: &[
            "provider",
            "external_id",
            "name",
            "ref",
            "commit_sha",
            "status",
            "url",
            "started_at",
            "finished_at",
        ],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("external_id = '~restore~' || id"),
        unique: &[&["provider", "external_id"]],
        extra: Extra::Keep,
        clash: Clash::Replace,
    },
    Spec {
        kind: "deployments",
        singular: "deployment",
        table: "deployment",
        columns: &[
            "environment_id",
            "provider",
            "external_id",
            "ref",
            "commit_sha",
            "status",
            "url",
            "release_id",
            "started_at",
            "finished_at",
        ],
        insert_only: &[],
        json: &[],
        versioned: false,
        park: Some("external_id = '~restore~' || id"),
        unique: &[&["provider", "external_id"]],
        extra: Extra::Keep,
        clash: Clash::Replace,
    },
    Spec {
        kind: "connections",
        singular: "connection",
        table: "integration_connection",
        columns: &["connection_key", "provider", "base_url", "config", "secret_ref", "enabled"],
        insert_only: &[],
        json: &["config"],
        versioned: false,
        park: Some("connection_key = 'restore-tmp-' || id"),
        unique: &[&["key"]],
        extra: Extra::Keep,
        clash: Clash::Rename(Naming { column: "connection_key", token: true, max: 40, global: true }),
    },
    Spec {
        kind: "mappings",
        singular: "mapping",
        table: "external_mapping",
        columns: &[
            "connection_id",
            "local_kind",
            "local_id",
            "external_id",
            "external_key",
            "url",
            "base",
            "remote_version",
            "sync_state",
        ],
        insert_only: &[],
        json: &["base"],
        versioned: false,
        park: Some("external_id = '~restore~' || id"),
        unique: &[&["connection_id", "local_kind", "local_id"], &["connection_id", "local_kind", "external_id"]],
        extra: Extra::Keep,
        clash: Clash::Replace,
    },
];

/// The snapshot field a column is filled from.
pub(super) fn field_name(kind: &str, column: &'static str) -> &'static str {
    match (kind, column) {
        ("tasks", "task_key") | ("connections", "connection_key") => "key",
        (_, "ref") => "git_ref",
        _ => column,
    }
}

/// A row as a JSON object of its snapshot fields.
pub(super) type Row = Map<String, Value>;

/// A row to write back: its id, the row there now (none: re-create it), and
/// the row as the snapshot has it.
pub(super) struct Upsert {
    pub id: i64,
    pub now: Option<Row>,
    pub then: Row,
}

/// One kind's work.
pub(super) struct KindPlan {
    pub spec: &'static Spec,
    pub upsert: Vec<Upsert>,
    /// Rows that appeared since the snapshot (and are kept, set aside or deleted).
    pub extras: Vec<(i64, Row)>,
    /// Of the rows that appeared since, those that move to a new name.
    pub renames: Vec<Rename>,
    /// Rows that appeared since as another copy of a remote object the snapshot has.
    pub replaced: Vec<(i64, Row)>,
}

pub(super) struct Plan {
    pub project_fields: Vec<String>,
    pub kinds: Vec<KindPlan>,
}

pub(super) fn selected(options: &RestoreOptions, kind: &str) -> bool {
    if !options.only.is_empty() {
        return kind == "tasks";
    }
    options.kinds.is_empty() || options.kinds.iter().any(|k| k == kind)
}

pub(super) fn plan(
    current: &SnapshotData,
    target: &SnapshotData,
    snapshot_id: i64,
    elsewhere: &TakenElsewhere,
    options: &RestoreOptions,
) -> Plan {
    let only: BTreeSet<&str> = options.only.iter().map(String::as_str).collect();
    // The task-key counter only ever moves forward, so it is never "restored".
    let mut project_fields = if selected(options, "project") && options.only.is_empty() {
        diff::project_fields(&current.project, &target.project)
    } else {
        Vec::new()
    };
    project_fields.retain(|f| f != "last_task_number");
    let mut kinds: Vec<KindPlan> = SPECS
        .iter()
        .filter(|spec| selected(options, spec.kind))
        .map(|spec| {
            let (upsert, extras) = compare_kind(current, target, spec.kind, &only);
            let mut kind = KindPlan { spec, upsert, extras, renames: Vec::new(), replaced: Vec::new() };
            // An exact restore deletes rows made since, whatever they hold.
            if !options.exact {
                clash::resolve(&mut kind, current, target, snapshot_id, elsewhere);
            }
            kind
        })
        .collect();
    clash::replace_mappings_of_replaced(&mut kinds);
    Plan { project_fields, kinds }
}

type Compared = (Vec<Upsert>, Vec<(i64, Row)>);

fn compare_kind(current: &SnapshotData, target: &SnapshotData, kind: &str, only: &BTreeSet<&str>) -> Compared {
    match kind {
        "lanes" => compare(&current.lanes, &target.lanes, |r| r.id, only),
        "cycles" => compare(&current.cycles, &target.cycles, |r| r.id, only),
        "modules" => compare(&current.modules, &target.modules, |r| r.id, only),
        "tasks" => compare(&current.tasks, &target.tasks, |r| r.id, only),
        "handoffs" => compare(&current.handoffs, &target.handoffs, |r| r.id, only),
        "pages" => compare(&current.pages, &target.pages, |r| r.id, only),
        "environments" => compare(&current.environments, &target.environments, |r| r.id, only),
        "releases" => compare(&current.releases, &target.releases, |r| r.id, only),
        "pipelines" => compare(&current.pipelines, &target.pipelines, |r| r.id, only),
        "deployments" => compare(&current.deployments, &target.deployments, |r| r.id, only),
        "connections" => compare(&current.connections, &target.connections, |r| r.id, only),
        "mappings" => compare(&current.mappings, &target.mappings, |r| r.id, only),
        _ => (Vec::new(), Vec::new()),
    }
}

fn object<T: Serialize>(row: &T) -> Row {
    match serde_json::to_value(row) {
        Ok(Value::Object(map)) => map,
        _ => Row::new(),
    }
}

/// Rows per thread above which comparing is split across two threads.
const PARALLEL_ABOVE: usize = 20_000;

/// Compares one kind's rows: `then` rows missing or different now are written
/// back (with `only`, just the tasks of those keys); `now` rows the snapshot
/// does not have are extras.
fn compare<T>(now: &[T], then: &[T], id: fn(&T) -> i64, only: &BTreeSet<&str>) -> Compared
where
    T: Serialize + PartialEq + Sync,
{
    let by_id: HashMap<i64, &T> = now.iter().map(|row| (id(row), row)).collect();
    let upserts_of = |rows: &[T]| -> Vec<Upsert> {
        let mut upsert = Vec::new();
        for row in rows {
            let existing = by_id.get(&id(row)).copied();
            if existing == Some(row) {
                continue;
            }
            let then = object(row);
            if !only.is_empty() && !then.get("key").and_then(Value::as_str).is_some_and(|k| only.contains(k)) {
                continue;
            }
            let now = existing.map(object);
            // Rows that differ only in bookkeeping (a version bump) are left alone.
            if now.as_ref().is_some_and(|now| diff::changed_fields(now, &then).is_empty()) {
                continue;
            }
            upsert.push(Upsert { id: id(row), now, then });
        }
        upsert
    };
    let upsert = if then.len() > PARALLEL_ABOVE {
        let (first, second) = then.split_at(then.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| upserts_of(second));
            let mut upsert = upserts_of(first);
            match other.join() {
                Ok(rest) => upsert.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            }
            upsert
        })
    } else {
        upserts_of(then)
    };
    let extras = if only.is_empty() {
        let in_snapshot: BTreeSet<i64> = then.iter().map(id).collect();
        now.iter().filter(|row| !in_snapshot.contains(&id(row))).map(|row| (id(row), object(row))).collect()
    } else {
        Vec::new()
    };
    (upsert, extras)
}

pub(super) fn counts_of(plan: &Plan, exact: bool) -> BTreeMap<String, KindCounts> {
    plan.kinds
        .iter()
        .map(|k| {
            let created = k.upsert.iter().filter(|u| u.now.is_none()).count();
            let extras = if exact || k.spec.extra != Extra::Keep { k.extras.len() } else { 0 };
            let counts = KindCounts {
                restored: k.upsert.len() - created,
                created,
                set_aside: if exact { 0 } else { extras },
                renamed: k.renames.len(),
                deleted: if exact { extras } else { k.replaced.len() },
            };
            (k.spec.kind.to_string(), counts)
        })
        .collect()
}
