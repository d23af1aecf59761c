//! Comparing project states for the snapshot tests.

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

/// Asserts `actual` holds what `expected` does, kind by kind. Rows `actual`
/// has beyond `expected` must be tasks or pages set aside (archived).
#[track_caller]
pub fn assert_restored(expected: &SnapshotData, actual: &SnapshotData) {
    let (e, mut a) = (normalized(expected), normalized(actual));
    let known: std::collections::BTreeSet<i64> = e.tasks.iter().map(|t| t.id).collect();
    for extra in a.tasks.iter().filter(|t| !known.contains(&t.id)) {
        assert!(extra.archived, "{} was created after the snapshot and should be archived", extra.key);
    }
    a.tasks.retain(|t| known.contains(&t.id));
    let known_pages: std::collections::BTreeSet<i64> = e.pages.iter().map(|p| p.id).collect();
    a.pages.retain(|p| known_pages.contains(&p.id));
    let known_handoffs: std::collections::BTreeSet<i64> = e.handoffs.iter().map(|h| h.id).collect();
    a.handoffs.retain(|h| known_handoffs.contains(&h.id));
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
