//! Comparing project states for the snapshot tests.

use std::collections::BTreeSet;

use mission_control::snapshot::SnapshotData;

/// Versions and the key counter move forward on every write by design; the
/// rest must match exactly.
pub fn normalized(data: &SnapshotData) -> SnapshotData {
    let mut data = data.clone();
    data.sort();
    data.project.last_task_number = 0;
    for t in &mut data.tasks {
        t.version = 0;
    }
    for h in &mut data.handoffs {
        h.version = 0;
    }
    for p in &mut data.pages {
        p.version = 0;
    }
    for m in &mut data.mappings {
        m.sync_state = String::new();
    }
    data
}

/// Keeps the rows of `actual` whose ids `expected` has.
fn retain_known<T>(expected: &[T], actual: &mut Vec<T>, id: impl Fn(&T) -> i64) {
    let known: BTreeSet<i64> = expected.iter().map(&id).collect();
    actual.retain(|row| known.contains(&id(row)));
}

/// Asserts `actual` holds what `expected` does, kind by kind. Rows `actual`
/// has beyond `expected` were made since: tasks must be archived and lanes
/// hidden; those of other kinds are left out of the comparison.
#[track_caller]
pub fn assert_restored(expected: &SnapshotData, actual: &SnapshotData) {
    let (e, mut a) = (normalized(expected), normalized(actual));
    let known: BTreeSet<i64> = e.tasks.iter().map(|t| t.id).collect();
    for extra in a.tasks.iter().filter(|t| !known.contains(&t.id)) {
        assert!(extra.archived, "{} was created after the snapshot and should be archived", extra.key);
    }
    let known_lanes: BTreeSet<i64> = e.lanes.iter().map(|l| l.id).collect();
    for extra in a.lanes.iter().filter(|l| !known_lanes.contains(&l.id)) {
        assert!(!extra.visible, "lane {} was created after the snapshot and should be hidden", extra.name);
    }
    retain_known(&e.tasks, &mut a.tasks, |r| r.id);
    retain_known(&e.lanes, &mut a.lanes, |r| r.id);
    retain_known(&e.pages, &mut a.pages, |r| r.id);
    retain_known(&e.handoffs, &mut a.handoffs, |r| r.id);
    retain_known(&e.cycles, &mut a.cycles, |r| r.id);
    retain_known(&e.modules, &mut a.modules, |r| r.id);
    retain_known(&e.environments, &mut a.environments, |r| r.id);
    retain_known(&e.releases, &mut a.releases, |r| r.id);
    retain_known(&e.pipelines, &mut a.pipelines, |r| r.id);
    retain_known(&e.deployments, &mut a.deployments, |r| r.id);
    retain_known(&e.connections, &mut a.connections, |r| r.id);
    retain_known(&e.mappings, &mut a.mappings, |r| r.id);
    assert_eq!(e.project, a.project, "project");
    assert_eq!(e.lanes, a.lanes, "lanes");
    assert_eq!(e.cycles, a.cycles, "cycles");
    assert_eq!(e.modules, a.modules, "modules");
    for (x, y) in e.tasks.iter().zip(&a.tasks) {
        assert_eq!(x, y, "task {}", x.key);
    }
    assert_eq!(e.tasks.len(), a.tasks.len(), "tasks");
    assert_eq!(e.handoffs, a.handoffs, "handoffs");
    assert_eq!(e.pages, a.pages, "pages");
    assert_eq!(e.environments, a.environments, "environments");
    assert_eq!(e.releases, a.releases, "releases");
    assert_eq!(e.pipelines, a.pipelines, "pipelines");
    assert_eq!(e.deployments, a.deployments, "deployments");
    assert_eq!(e.connections, a.connections, "connections");
    assert_eq!(e.mappings, a.mappings, "mappings");
}
