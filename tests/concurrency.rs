//! Concurrent writers against one database: key allocation, optimistic
//! concurrency on moves, lane counts and ranks under contention, and the
//! server connections a busy then idle session holds.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

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

/// The lane counts read back exactly, whatever part of them is still a
/// pending delta (sql/V10): writers append deltas, and every 64th folds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lane_counts_stay_exact_while_their_deltas_are_folded() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ana"), "MC", "Mission", "").await.unwrap();
    let creates = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..50 {
                let task = NewTask { title: format!("w{w} t{n}"), ..Default::default() };
                store.create_task(&actor("ana"), project.id, task).await.unwrap();
            }
        })
    });
    for result in join_all(creates).await {
        result.unwrap();
    }
    let movers = (0..4).map(|w| {
        let store = store.clone();
        tokio::spawn(async move {
            for n in (w * 50 + 1..=w * 50 + 50).step_by(2) {
                let key = format!("MC-{n}");
                store.move_task(&actor("op"), &key, Some("Ready"), Position::Bottom, None).await.unwrap();
                if n % 5 == 0 {
                    store.set_task_archived(&actor("op"), &key, true, None).await.unwrap();
                }
            }
        })
    });
    for result in join_all(movers).await {
        result.unwrap();
    }

    let client = db.client().await;
    let tasks = store.list_tasks(&TaskFilter { project_id: project.id, ..Default::default() }).await.unwrap();
    assert_eq!(tasks.len(), 180, "200 created, 20 archived");
    for lane in store.list_lanes(project.id).await.unwrap() {
        let in_lane = tasks.iter().filter(|t| t.lane_id == lane.id).count();
        assert_eq!(lane.open_count as usize, in_lane, "count of {}", lane.name);
    }
    // 200 creates, 100 moves (two deltas each) and 20 archives appended 420
    // delta rows; the folds left fewer than one fold's worth pending.
    let pending: i64 = client.query_one("SELECT count(*) FROM lane_count_delta", &[]).await.unwrap().get(0);
    assert!(pending < 64, "{pending} deltas pending");
    let folded: i64 = client
        .query_one("SELECT sum(open_count) FROM lane WHERE project_id = $1", &[&project.id])
        .await
        .unwrap()
        .get(0);
    assert!(folded > 100, "the folded part holds most of the count: {folded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_store_gives_its_pooled_connections_back() {
    let db = TestDb::new().await;
    let name = format!("mctl-idle-{}", fastrand::u32(..));
    let options = mission_control::store::StoreOptions {
        application_name: name.clone(),
        idle_timeout: Some(std::time::Duration::from_millis(600)),
        ..Default::default()
    };
    let store = mission_control::store::Store::connect(db.config.clone(), options).await.unwrap();
    let admin = db.client().await;
    let open = || {
        let (admin, name) = (&admin, name.clone());
        async move {
            let row = admin
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&name])
                .await
                .unwrap();
            row.get::<_, i64>(0)
        }
    };
    // Five queries at once need five connections.
    let busy = (0..5).map(|_| {
        let store = store.clone();
        async move { store.client().await.unwrap().query_one("SELECT pg_sleep(0.3)::text", &[]).await.unwrap() }
    });
    join_all(busy).await;
    assert_eq!(open().await, 5);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(open().await, 0, "idle connections are closed");
    // And the store still works, on one connection again.
    store.client().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
    assert_eq!(open().await, 1);
}
