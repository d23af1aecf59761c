//! What differs between two project states (a snapshot and now, or two
//! snapshots): per kind, what was added, removed and changed, and which fields.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::model::SnapshotData;

/// Rows of one kind as JSON objects by id, in the snapshot's field names.
pub type Rows = BTreeMap<i64, Map<String, Value>>;

/// The per-row kinds (the project row is compared on its own).
pub const ROW_KINDS: &[&str] = &[
    "lanes",
    "agents",
    "cycles",
    "modules",
    "tasks",
    "handoffs",
    "pages",
    "environments",
    "releases",
    "pipelines",
    "deployments",
    "connections",
    "mappings",
];

fn objects<T: Serialize>(rows: &[T]) -> Rows {
    rows.iter()
        .filter_map(|row| match serde_json::to_value(row) {
            Ok(Value::Object(map)) => Some((map.get("id")?.as_i64()?, map)),
            _ => None,
        })
        .collect()
}

pub fn rows(data: &SnapshotData, kind: &str) -> Rows {
    match kind {
        "lanes" => objects(&data.lanes),
        "agents" => objects(&data.agents),
        "cycles" => objects(&data.cycles),
        "modules" => objects(&data.modules),
        "tasks" => objects(&data.tasks),
        "handoffs" => objects(&data.handoffs),
        "pages" => objects(&data.pages),
        "environments" => objects(&data.environments),
        "releases" => objects(&data.releases),
        "pipelines" => objects(&data.pipelines),
        "deployments" => objects(&data.deployments),
        "connections" => objects(&data.connections),
        "mappings" => objects(&data.mappings),
        _ => Rows::new(),
    }
}

/// How a person recognises a row of `kind`.
pub fn label(kind: &str, row: &Map<String, Value>) -> String {
    let text = |field: &str| row.get(field).and_then(Value::as_str).map(str::to_string);
    let id = row.get("id").and_then(Value::as_i64).unwrap_or(0);
    match kind {
        "tasks" | "connections" => text("key"),
        "lanes" | "cycles" | "modules" | "environments" | "releases" => text("name"),
        "agents" => text("handle").map(|h| format!("@{h}")),
        "pages" => text("slug"),
        "pipelines" => text("name").zip(text("external_id")).map(|(n, e)| format!("{n} {e}")),
        "deployments" => text("external_id"),
        "mappings" => text("external_id").map(|e| format!("{} {e}", text("local_kind").unwrap_or_default())),
        _ => None,
    }
    .unwrap_or_else(|| format!("#{id}"))
}

/// Field names as operators read them (`lane`, not `lane_id`).
fn display(field: &str) -> &str {
    match field {
        "lane_id" => "lane",
        "assignee_id" => "assignee",
        "cycle_id" => "cycle",
        "module_ids" => "modules",
        "task_ids" => "tasks",
        "from_agent_id" => "from",
        "to_agent_id" => "to",
        "lead_agent_id" => "lead",
        "environment_id" => "environment",
        "release_id" => "release",
        "connection_id" => "connection",
        "git_ref" => "ref",
        other => other,
    }
}

/// Fields that change on every edit or sync pass and say nothing about what
/// changed: versions, and a mapping's sync state (the sync worker's business).
const BOOKKEEPING: &[&str] = &["version", "sync_state"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub id: i64,
    pub key: String,
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindDiff {
    pub kind: String,
    /// In the later state only.
    pub added: Vec<(i64, String)>,
    /// In the earlier state only.
    pub removed: Vec<(i64, String)>,
    pub changed: Vec<Changed>,
}

impl KindDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Project fields that differ.
    pub project: Vec<String>,
    /// Only kinds with differences, in restore order.
    pub kinds: Vec<KindDiff>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.project.is_empty() && self.kinds.is_empty()
    }

    pub fn kind(&self, kind: &str) -> Option<&KindDiff> {
        self.kinds.iter().find(|k| k.kind == kind)
    }
}

/// Fields (in display names) where two rows differ.
pub fn changed_fields(from: &Map<String, Value>, to: &Map<String, Value>) -> Vec<String> {
    let mut fields: Vec<String> = to
        .iter()
        .filter(|(k, v)| !BOOKKEEPING.contains(&k.as_str()) && from.get(*k) != Some(*v))
        .map(|(k, _)| display(k).to_string())
        .collect();
    fields.extend(from.keys().filter(|k| !to.contains_key(*k)).map(|k| display(k).to_string()));
    fields.sort();
    fields.dedup();
    fields
}

/// Project fields that differ.
pub fn project_fields(from: &super::model::ProjectRow, to: &super::model::ProjectRow) -> Vec<String> {
    match (serde_json::to_value(from), serde_json::to_value(to)) {
        (Ok(Value::Object(a)), Ok(Value::Object(b))) => changed_fields(&a, &b),
        _ => Vec::new(),
    }
}

/// What changed going from `from` to `to`.
pub fn diff(from: &SnapshotData, to: &SnapshotData) -> Diff {
    let project = project_fields(&from.project, &to.project);
    let mut kinds = Vec::new();
    for kind in ROW_KINDS {
        let (a, b) = (rows(from, kind), rows(to, kind));
        let mut result =
            KindDiff { kind: kind.to_string(), added: Vec::new(), removed: Vec::new(), changed: Vec::new() };
        for (id, row) in &b {
            match a.get(id) {
                None => result.added.push((*id, label(kind, row))),
                Some(old) => {
                    let fields = changed_fields(old, row);
                    if !fields.is_empty() {
                        result.changed.push(Changed { id: *id, key: label(kind, row), fields });
                    }
                }
            }
        }
        for (id, row) in &a {
            if !b.contains_key(id) {
                result.removed.push((*id, label(kind, row)));
            }
        }
        if !result.is_empty() {
            kinds.push(result);
        }
    }
    Diff { project, kinds }
}
