//! Concurrent writers against one database: key allocation, optimistic
//! concurrency on moves, and lane counts and ranks under contention.

mod common;

use std::collections::HashSet;

use common::{TestDb, actor};
use futures_util::future::join_all;
use mission_control::store::StoreError;
use mission_control::store::audit::AuditQuery;
use mission_control::store::tasks::{NewTask, Position, TaskFilter};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_creates_get_sixteen_consecutive_keys() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ana"), "MC", "Mission", "").await.unwrap();
    let creates = (0..16).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .create_task(
                    &actor(&format!("op{n}")),
                    project.id,
                    NewTask { title: format!("task {n}"), ..Default::default() },
                )
                .await
                .unwrap()
                .number
        })
    });
    let mut numbers: Vec<i64> = join_all(creates).await.into_iter().map(Result::unwrap).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=16).collect::<Vec<_>>());
    assert_eq!(store.project_by_key("MC").await.unwrap().last_task_number, 16);
    let inbox = store.lane_by_name(project.id, "Inbox").await.unwrap();
    assert_eq!(inbox.open_count, 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_moves_at_the_same_version_one_wins() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ana"), "MC", "Mission", "").await.unwrap();
    let task = store
        .create_task(&actor("ana"), project.id, NewTask { title: "contested".into(), ..Default::default() })
        .await
        .unwrap();
    for round in 0..10 {
        let version = store.task_by_key("MC-1").await.unwrap().version;
        let (ana, bo) = (actor("ana"), actor("bo"));
        let first_lane = if round % 2 == 0 { "Ready" } else { "Inbox" };
        let (a, b) = tokio::join!(
            store.move_task(&ana, &task.key, Some(first_lane), Position::Bottom, Some(version)),
            store.move_task(&bo, &task.key, Some("Review"), Position::Bottom, Some(version)),
        );
        let loser = match (a, b) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
            (a, b) => panic!("round {round}: exactly one move must win, got {a:?} and {b:?}"),
        };
        assert!(
            matches!(loser, StoreError::Conflict { expected, .. } if expected == version),
            "round {round}: {loser}"
        );
        let after = store.task_by_key("MC-1").await.unwrap();
        assert_eq!(after.version, version + 1);
        let moves = store
            .list_audit(&AuditQuery { entity_key: Some("MC-1".into()), limit: 100, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "task.move" && e.before.as_ref().unwrap()["version"] == version)
            .count();
        assert_eq!(moves, 1, "round {round}: the audit log shows one move");
        // Put it somewhere the next round's moves both change.
        store.move_task(&actor("ana"), &task.key, Some("Blocked"), Position::Bottom, None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_moves_across_lanes_keep_counts_and_ranks_consistent() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ana"), "MC", "Mission", "").await.unwrap();
    for n in 0..40 {
        store
            .create_task(&actor("ana"), project.id, NewTask { title: format!("t{n}"), ..Default::default() })
            .await
            .unwrap();
    }
    let lanes = ["Inbox", "Ready", "In Progress", "Review", "Blocked", "Done"];
    let workers = (0..8).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(w);
            for _ in 0..40 {
                let key = format!("MC-{}", rng.u32(1..=40));
                let lane = lanes[rng.usize(..lanes.len())];
                let position = match rng.u8(..4) {
                    0 => Position::Top,
                    1 => Position::Bottom,
                    2 => Position::Up,
                    _ => Position::Down,
                };
                match store.move_task(&actor(&format!("w{w}")), &key, Some(lane), position, None).await {
                    Ok(_) => {}
                    // A neighbour moving away mid-flight is fine to lose; deadlocks are not.
                    Err(StoreError::Retry(reason)) => panic!("retries exhausted: {reason}"),
                    Err(e) => panic!("move failed: {e}"),
                }
            }
        })
    });
    for result in join_all(workers).await {
        result.unwrap();
    }
    let tasks = store.list_tasks(&TaskFilter { project_id: project.id, ..Default::default() }).await.unwrap();
    assert_eq!(tasks.len(), 40);
    for lane in store.list_lanes(project.id).await.unwrap() {
        let in_lane: Vec<_> = tasks.iter().filter(|t| t.lane_id == lane.id).collect();
        assert_eq!(lane.open_count as usize, in_lane.len(), "count of {}", lane.name);
        let ranks: HashSet<i64> = in_lane.iter().map(|t| t.rank).collect();
        assert_eq!(ranks.len(), in_lane.len(), "ranks in {} are distinct", lane.name);
    }
}
