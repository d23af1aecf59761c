//! Rows made since the snapshot that hold a unique value a restored row needs
//! back: a lane renamed, then a new lane under the old name; a page slug
//! reused; a pipeline deleted and synced in again under a new id.
//!
//! A default restore keeps rows made since, so they have to give the value
//! up: a name moves aside to "<name> (since #N)" (or "<name>-since-N" where
//! names are tokens), and a second copy of the same remote object (same
//! external id) is replaced by the snapshot's copy. `--exact` deletes rows
//! made since anyway and needs none of this.

use crate::store::sql::Sql;
use std::collections::{BTreeSet, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::plan::{KindPlan, Row, field_name};
use crate::snapshot::model::SnapshotData;
use crate::store::StoreResult;

/// How a row made since gives up a unique value a restored row needs.
#[derive(Clone, Copy)]
pub(super) enum Clash {
    /// It cannot hold one (archived tasks leave the board index; handoffs have none).
    Never,
    /// It keeps going under a new name.
    Rename(Naming),
    /// It is another copy of the same remote object (it matches a restored
    /// row on one of the kind's unique keys): the snapshot's copy replaces it.
    Replace,
}

/// A unique name column and the shape its values must have.
#[derive(Clone, Copy)]
pub(super) struct Naming {
    pub column: &'static str,
    /// Free text ("Review (since #12)") or a token ("runbook-since-12").
    pub token: bool,
    /// The column's length limit, in characters.
    pub max: usize,
    /// Unique across projects (connection keys), not within one.
    pub global: bool,
}

/// Names held outside the project that a new name must not take.
#[derive(Debug)]
pub(super) struct TakenElsewhere {
    /// Connection keys of other projects, lower-cased.
    pub connection_keys: HashSet<String>,
}

impl TakenElsewhere {
    pub async fn read(client: &impl Sql, project_id: i64) -> StoreResult<TakenElsewhere> {
        let rows = client
            .fetch("SELECT lower(connection_key) FROM integration_connection WHERE project_id <> $1", &[&project_id])
            .await?;
        Ok(TakenElsewhere { connection_keys: rows.iter().map(|r| r.get(0)).collect() })
    }
}

/// A row made since that moves to a new name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rename {
    /// `lane`, `page`…
    pub kind: String,
    pub id: i64,
    pub from: String,
    pub to: String,
}

/// Resolves one kind's clashes: fills `kind.renames` and moves the extras the
/// snapshot's copies replace from `kind.extras` to `kind.replaced`.
pub(super) fn resolve(
    kind: &mut KindPlan,
    current: &SnapshotData,
    target: &SnapshotData,
    snapshot_id: i64,
    elsewhere: &TakenElsewhere,
) {
    if kind.extras.is_empty() || kind.upsert.is_empty() {
        return;
    }
    match kind.spec.clash {
        Clash::Never => {}
        Clash::Rename(naming) => {
            let field = field_name(kind.spec.kind, naming.column);
            let needed: HashSet<String> =
                kind.upsert.iter().filter_map(|u| text(&u.then, field)).map(|n| n.to_lowercase()).collect();
            let mut taken: HashSet<String> = names(current, kind.spec.kind)
                .into_iter()
                .chain(names(target, kind.spec.kind))
                .map(str::to_lowercase)
                .collect();
            if naming.global {
                taken.extend(elsewhere.connection_keys.iter().cloned());
            }
            for (id, row) in &kind.extras {
                let Some(from) = text(row, field) else { continue };
                if !needed.contains(&from.to_lowercase()) {
                    continue;
                }
                let to = free_name(from, snapshot_id, naming, &taken);
                taken.insert(to.to_lowercase());
                kind.renames.push(Rename { kind: kind.spec.singular.to_string(), id: *id, from: from.to_string(), to });
            }
        }
        Clash::Replace => {
            let keys = kind.spec.unique;
            let needed: Vec<BTreeSet<Vec<String>>> =
                keys.iter().map(|key| kind.upsert.iter().map(|u| key_of(&u.then, key)).collect()).collect();
            let (replaced, kept) = std::mem::take(&mut kind.extras)
                .into_iter()
                .partition(|(_, row)| keys.iter().zip(&needed).any(|(key, needed)| needed.contains(&key_of(row, key))));
            kind.replaced = replaced;
            kind.extras = kept;
        }
    }
}

/// A replaced pipeline or deployment takes its mappings with it: they point
/// at a row that is gone.
pub(super) fn replace_mappings_of_replaced(kinds: &mut [KindPlan]) {
    let gone: BTreeSet<(String, i64)> =
        kinds.iter().flat_map(|k| k.replaced.iter().map(move |(id, _)| (k.spec.singular.to_string(), *id))).collect();
    if gone.is_empty() {
        return;
    }
    let Some(mappings) = kinds.iter_mut().find(|k| k.spec.table == "external_mapping") else { return };
    let (replaced, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut mappings.extras).into_iter().partition(|(_, row)| {
        let local = (text(row, "local_kind").unwrap_or_default().to_string(), row["local_id"].as_i64().unwrap_or(0));
        gone.contains(&local)
    });
    mappings.replaced.extend(replaced);
    mappings.extras = kept;
}

fn text<'a>(row: &'a Row, field: &str) -> Option<&'a str> {
    row.get(field).and_then(Value::as_str)
}

/// A row's values of one unique key, as JSON text (comparable and orderable).
fn key_of(row: &Row, key: &[&str]) -> Vec<String> {
    key.iter().map(|f| row.get(*f).unwrap_or(&Value::Null).to_string()).collect()
}

/// Every name one kind's rows hold in `data`.
fn names<'a>(data: &'a SnapshotData, kind: &str) -> Vec<&'a str> {
    match kind {
        "lanes" => data.lanes.iter().map(|r| r.name.as_str()).collect(),
        "cycles" => data.cycles.iter().map(|r| r.name.as_str()).collect(),
        "modules" => data.modules.iter().map(|r| r.name.as_str()).collect(),
        "pages" => data.pages.iter().map(|r| r.slug.as_str()).collect(),
        "environments" => data.environments.iter().map(|r| r.name.as_str()).collect(),
        "releases" => data.releases.iter().map(|r| r.name.as_str()).collect(),
        "connections" => data.connections.iter().map(|r| r.key.as_str()).collect(),
        _ => Vec::new(),
    }
}

/// The first of "<name> (since #N)", "<name> (since #N, 2)"… (or
/// "<name>-since-N", "<name>-since-N-2"… for tokens) that no row holds,
/// shortened to fit the column.
fn free_name(name: &str, snapshot_id: i64, naming: Naming, taken: &HashSet<String>) -> String {
    (1..)
        .map(|n| {
            let suffix = match (naming.token, n) {
                (false, 1) => format!(" (since #{snapshot_id})"),
                (false, n) => format!(" (since #{snapshot_id}, {n})"),
                (true, 1) => format!("-since-{snapshot_id}"),
                (true, n) => format!("-since-{snapshot_id}-{n}"),
            };
            let room = naming.max.saturating_sub(suffix.chars().count());
            let base: String = name.chars().take(room).collect();
            // Names are trimmed; tokens join their parts with single separators.
            let base = if naming.token {
                base.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            } else {
                base.trim_end()
            };
            format!("{base}{suffix}")
        })
        .find(|candidate| !taken.contains(&candidate.to_lowercase()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANE: Naming = Naming { column: "name", token: false, max: 60, global: false };
    const SLUG: Naming = Naming { column: "slug", token: true, max: 100, global: false };

    #[test]
    fn a_name_moves_aside_with_the_snapshot_number() {
        let taken = HashSet::new();
        assert_eq!(free_name("Review", 12, LANE, &taken), "Review (since #12)");
        assert_eq!(free_name("runbook", 12, SLUG, &taken), "runbook-since-12");
    }

    #[test]
    fn a_taken_candidate_is_skipped_case_insensitively() {
        let taken: HashSet<String> = ["review (since #12)".to_string()].into();
        assert_eq!(free_name("REVIEW", 12, LANE, &taken), "REVIEW (since #12, 2)");
        let taken: HashSet<String> = ["runbook-since-12".to_string()].into();
        assert_eq!(free_name("runbook", 12, SLUG, &taken), "runbook-since-12-2");
    }

    #[test]
    fn a_long_name_is_shortened_to_fit_its_column_and_stays_valid() {
        let name = format!("{} tail", "x".repeat(58));
        let renamed = free_name(&name, 123, LANE, &HashSet::new());
        assert_eq!(renamed.chars().count(), 60);
        assert!(renamed.ends_with(" (since #123)"));
        // A cut that ends in a separator would make an invalid slug ("a--since-1").
        let slug = format!("{}-{}", "a".repeat(91), "b".repeat(8));
        let renamed = free_name(&slug, 7, SLUG, &HashSet::new());
        assert_eq!(renamed, format!("{}-since-7", "a".repeat(91)));
        // Wide characters count once each, as PostgreSQL's length() counts them.
        let wide = "審".repeat(60);
        assert_eq!(free_name(&wide, 1, LANE, &HashSet::new()).chars().count(), 60);
    }
}
