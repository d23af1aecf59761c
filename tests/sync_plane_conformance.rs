//! What Plane's API server answers, and that the sync copes: each test is a
//! request or reading mctl once got wrong against a real Plane. The fake
//! (tests/common/plane.rs) answers these cases as Plane's own code does; the
//! source file of each answer is named beside it there.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::actor;
use common::plane::FakePlane;
use common::sync::{Setup, mapping_of, setup, sync, tasks, unconnected_on};
use mission_control::domain::LocalKind;
use mission_control::store::planning::NewModule;
use mission_control::store::tasks::{NewTask, TaskEdit};
use serde_json::{Value, json};

/// The work item mapped to task `key`.
async fn item_of(s: &Setup, key: &str) -> Value {
    let mapping = mapping_of(s, key).await;
    s.plane.item(&mapping.external_id).expect("the work item exists")
}

/// Keys waiting or dead on the connection's queue, other than the passes.
async fn stuck_keys(s: &Setup) -> Vec<(String, bool, Option<String>)> {
    let client = s.db.client().await;
    let rows = client
        .query(
            "SELECT key, dead, last_error FROM sync_job
              WHERE connection_id = $1 AND key NOT IN ('pull', 'full') AND (dead OR attempts > 0) ORDER BY key",
            &[&s.connection_id],
        )
        .await
        .unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
}

async fn mapping_state(s: &Setup, key: &str) -> (String, Option<String>) {
    let mapping = mapping_of(s, key).await;
    let client = s.db.client().await;
    let row = client
        .query_one("SELECT sync_state, last_error FROM external_mapping WHERE id = $1", &[&mapping.id])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_a_description_goes_out_and_a_cleared_one_is_pushed() {
    let s = setup(0).await;
    sync(&s).await;
    let task = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: "No words".into(), ..NewTask::default() })
        .await
        .unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(stuck_keys(&s).await, []);
    // Plane's own empty description; `""` is a 400 "Invalid HTML passed".
    assert_eq!(item_of(&s, &task.key).await["description_html"], "<p></p>");

    let edit = |description: &str| TaskEdit { description: Some(description.into()), ..TaskEdit::default() };
    s.store.edit_task(&actor("bo"), &task.key, edit("Some words"), None).await.unwrap();
    sync(&s).await;
    assert_eq!(item_of(&s, &task.key).await["description_html"], "<p>Some words</p>");
    s.store.edit_task(&actor("bo"), &task.key, edit(""), None).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(stuck_keys(&s).await, []);
    assert_eq!(item_of(&s, &task.key).await["description_html"], "<p></p>");
    // And it reads back as no description, not as a change.
    s.plane.reset_log();
    sync(&s).await;
    assert_eq!(s.plane.count("PATCH", "work-items"), 0);
    assert_eq!(tasks(&s).await[0].description, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cycle_is_created_in_plane() {
    let s = setup(0).await;
    let today = time::OffsetDateTime::now_utc().date();
    let (start, end) = (today + time::Duration::days(1), today + time::Duration::days(14));
    s.store.create_cycle(&actor("bo"), s.project_id, "Sprint 9", start, end, "").await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(stuck_keys(&s).await, []);
    let cycles = s.plane.cycles();
    assert_eq!(cycles.len(), 1, "Plane wants project_id in the body: {:?}", report.errors);
    assert_eq!(cycles[0]["name"], "Sprint 9");
    assert_eq!(cycles[0]["external_id"], s.store.list_cycles(s.project_id, today).await.unwrap()[0].id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_module_whose_name_plane_has_is_adopted() {
    let s = setup(0).await;
    let theirs = s.plane.create_module(json!({"name": "Billing", "status": "in-progress"}));
    let module = NewModule {
        name: "Billing".into(),
        description: String::new(),
        status: mission_control::domain::ModuleStatus::Planned,
        lead: None,
        target_on: None,
    };
    let ours = s.store.create_module(&actor("bo"), s.project_id, module).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(stuck_keys(&s).await, []);
    assert_eq!(s.plane.modules().len(), 1, "no second module");
    let mapping = s.store.sync_mapping(s.connection_id, LocalKind::Module, ours.id).await.unwrap().expect("linked");
    assert_eq!(mapping.external_id, theirs["id"].as_str().unwrap());
    assert_eq!(s.store.list_modules(s.project_id).await.unwrap().len(), 1, "no `Billing (2)` here either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_longer_than_plane_takes_goes_out_cut_and_stays_whole_here() {
    let s = setup(0).await;
    sync(&s).await;
    let title = "word ".repeat(80).trim_end().to_string(); // 399 characters
    let task = s
        .store
        .create_task(&actor("bo"), s.project_id, NewTask { title: title.clone(), ..NewTask::default() })
        .await
        .unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(stuck_keys(&s).await, []);
    let name = item_of(&s, &task.key).await["name"].as_str().unwrap().to_string();
    assert_eq!(name.chars().count(), 255);
    assert!(name.ends_with('…') && title.starts_with(name.trim_end_matches('…')), "{name}");
    // The full title stays here, and neither side looks changed afterwards.
    s.plane.reset_log();
    sync(&s).await;
    assert_eq!(s.plane.count("PATCH", "work-items"), 0);
    assert_eq!(tasks(&s).await[0].title, title);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cycle_days_are_the_projects_days_in_whatever_zone_plane_renders_them() {
    // (project zone, token user's zone): Plane stores the project's midnight
    // and 23:59 as instants and renders them in the user's zone.
    for (project_zone, user_zone) in
        [("Asia/Kolkata", "UTC"), ("Pacific/Pago_Pago", "Pacific/Kiritimati"), ("Asia/Tokyo", "America/Sao_Paulo")]
    {
        let plane = FakePlane::builder().time_zones(project_zone, user_zone);
        let s = unconnected_on(0, plane).await.connect("newest").await;
        let today = time::OffsetDateTime::now_utc().date();
        let day = |n: i64| (today + time::Duration::days(n)).to_string();
        let cycle = s.plane.create_cycle(json!({"name": "Sprint", "start_date": day(3), "end_date": day(16)}));
        assert_ne!(cycle["start_date"].as_str().unwrap().get(..10), Some(day(3).as_str()), "the zones disagree");
        let report = sync(&s).await;
        assert_eq!(report.failed, 0, "{:?}", report.errors);
        let cycles = s.store.list_cycles(s.project_id, today).await.unwrap();
        assert_eq!(
            (cycles[0].starts_on.to_string(), cycles[0].ends_on.to_string()),
            (day(3), day(16)),
            "{project_zone} read in {user_zone}"
        );
        // A local cycle goes out and comes back as the same days: no change either way.
        s.store
            .create_cycle(
                &actor("bo"),
                s.project_id,
                "Ours",
                today + time::Duration::days(20),
                today + time::Duration::days(30),
                "",
            )
            .await
            .unwrap();
        sync(&s).await;
        s.plane.reset_log();
        let report = sync(&s).await;
        assert_eq!(report.failed, 0, "{:?}", report.errors);
        assert_eq!(s.plane.count("PATCH", "cycles"), 0, "{project_zone} read in {user_zone}");
        let ours =
            s.store.list_cycles(s.project_id, today).await.unwrap().into_iter().find(|c| c.name == "Ours").unwrap();
        assert_eq!(ours.starts_on.to_string(), day(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_cycle_that_refuses_a_task_is_that_tasks_note_not_a_dead_key() {
    let s = setup(1).await;
    let today = time::OffsetDateTime::now_utc().date();
    let day = |n: i64| (today + time::Duration::days(n)).to_string();
    s.plane.create_cycle(json!({"name": "Old sprint", "start_date": day(-20), "end_date": day(-7)}));
    assert_eq!(sync(&s).await.failed, 0);
    let task = tasks(&s).await.remove(0);
    let edit =
        TaskEdit { title: Some("Still pushed".into()), cycle: Some(Some("Old sprint".into())), ..TaskEdit::default() };
    s.store.edit_task(&actor("bo"), &task.key, edit, None).await.unwrap();
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    assert_eq!(stuck_keys(&s).await, [], "no dead letter, no retry loop");
    let item = item_of(&s, &task.key).await;
    assert_eq!(item["name"], "Still pushed", "the rest of the edit went out");
    let (state, error) = mapping_state(&s, &task.key).await;
    assert_eq!(state, "error");
    let error = error.expect("the operator is told");
    assert!(error.contains("Old sprint") && error.contains(&task.key) && error.contains("open cycle"), "{error}");
    // It stands through later passes, and goes once the task leaves the cycle.
    sync(&s).await;
    assert_eq!(mapping_state(&s, &task.key).await.0, "error");
    let out = TaskEdit { cycle: Some(None), ..TaskEdit::default() };
    s.store.edit_task(&actor("bo"), &task.key, out, None).await.unwrap();
    sync(&s).await;
    assert_eq!(mapping_state(&s, &task.key).await, ("in_sync".to_string(), None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_archived_in_plane_is_archived_here_and_comes_back_with_its_mapping() {
    let s = setup(2).await;
    assert_eq!(sync(&s).await.failed, 0);
    let task = tasks(&s).await.remove(0);
    let mapping = mapping_of(&s, &task.key).await;
    s.plane.archive_item(&mapping.external_id);
    // Plane's API shows an archived item to nobody: a full pass finds it gone.
    let client = s.db.client().await;
    client
        .execute("UPDATE sync_cursor SET watermarks = '{}' WHERE connection_id = $1", &[&s.connection_id])
        .await
        .unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    let archived = s.store.sync_read_task(task.id).await.unwrap().0;
    assert!(archived.archived);

    s.plane.unarchive_item(&mapping.external_id);
    s.plane.edit_item(&mapping.external_id, json!({"name": "Back again"}));
    let report = sync(&s).await;
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    let back = s.store.sync_read_task(task.id).await.unwrap().0;
    assert!(!back.archived, "un-archived with its work item");
    assert_eq!(back.title, "Back again");
    let again = mapping_of(&s, &task.key).await;
    assert_eq!((again.id, again.external_id.as_str()), (mapping.id, mapping.external_id.as_str()), "the same mapping");
    assert_eq!(mapping_state(&s, &task.key).await.0, "in_sync");
    assert_eq!(s.plane.item_count(), 2, "not created again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassigning_here_keeps_the_assignees_only_plane_has() {
    let s = setup(0).await;
    let ana = s.plane.members().into_iter().find(|m| m["display_name"] == "ana").unwrap()["id"].clone();
    let zed = s.plane.members().into_iter().find(|m| m["display_name"] == "zed").unwrap()["id"].clone();
    let item = s.plane.create_item(json!({"name": "Pair work", "assignees": [ana, zed]}));
    assert_eq!(sync(&s).await.failed, 0);
    let task = tasks(&s).await.remove(0);
    assert_eq!(task.assignee.as_deref(), Some("ana"), "the member mapped to an agent is the task's assignee");
    let assignees = |s: &Setup| {
        let mut list: Vec<String> = s.plane.item(item["id"].as_str().unwrap()).unwrap()["assignees"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        list.sort();
        list
    };
    s.store.assign_task(&actor("bo"), &task.key, None, None).await.unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    assert_eq!(assignees(&s), [zed.as_str().unwrap()], "only ana left; zed, who has no agent here, stays");
    s.store.assign_task(&actor("bo"), &task.key, Some("ana"), None).await.unwrap();
    assert_eq!(sync(&s).await.failed, 0);
    let mut both = vec![ana.as_str().unwrap().to_string(), zed.as_str().unwrap().to_string()];
    both.sort();
    assert_eq!(assignees(&s), both);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_ask_for_plane_s_largest_page() {
    let s = setup(2500).await;
    assert_eq!(sync(&s).await.failed, 0);
    let pages =
        s.plane.requests().into_iter().filter(|r| r.method == "GET" && r.path.ends_with("/work-items/")).count();
    assert_eq!(pages, 3, "2,500 items in pages of 1,000");
    assert_eq!(tasks(&s).await.len(), 2500);
}
