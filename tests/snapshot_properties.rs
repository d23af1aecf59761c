//! Property: for generated project states (unicode, empty and maximal
//! fields), snapshot → random damage → restore gives back exactly the
//! snapshot's state, entity by entity.

mod common;

use common::snapshots::assert_restored;
use common::{TestDb, actor};
use mission_control::domain::{AgentKind, HandoffKind, HandoffState, ModuleStatus, Priority};
use mission_control::snapshot::{Reason, RestoreOptions};
use mission_control::store::Store;
use mission_control::store::agents::NewAgent;
use mission_control::store::handoffs::NewHandoff;
use mission_control::store::planning::NewModule;
use mission_control::store::tasks::{NewTask, Position, TaskEdit};
use proptest::prelude::*;
use time::macros::date;

const LANES: &[&str] = &["Inbox", "Ready", "In Progress", "Review", "Blocked", "Done"];
const LABELS: &[&str] = &["bug", "ops", "日本", "ünïcödé", "perf"];
const AGENTS: &[&str] = &["ana", "bo", "chen"];

#[derive(Debug, Clone)]
struct TaskSpec {
    title: String,
    description: String,
    lane: usize,
    priority: usize,
    labels: Vec<usize>,
    assignee: Option<usize>,
    due: Option<i64>,
    in_cycle: bool,
    modules: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Damage {
    Move(usize, usize),
    Retitle(usize, String),
    Describe(usize, String),
    Archive(usize),
    Unassign(usize),
    Create(String),
    CancelHandoff(usize),
    EditPage(String),
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::string::string_regex(&format!("[a-zA-Z0-9 .,:!-]{{1,{max}}}")).unwrap(),
        2 => proptest::string::string_regex(&format!("\\PC{{1,{max}}}")).unwrap(),
        1 => Just("é".repeat(max)),
    ]
}

/// A title the repository accepts: trimmed, non-empty, at most 500 characters.
fn title() -> impl Strategy<Value = String> {
    text(500).prop_map(|t| {
        let t: String = t.trim().chars().take(500).collect();
        if t.is_empty() { "untitled".to_string() } else { t }
    })
}

fn description() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), proptest::string::string_regex("[\\PC\n]{0,300}").unwrap(), Just("ß".repeat(5000))]
}

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        title(),
        description(),
        0..LANES.len(),
        0..5usize,
        proptest::collection::vec(0..LABELS.len(), 0..3),
        proptest::option::of(0..AGENTS.len()),
        proptest::option::of(-30i64..30),
        any::<bool>(),
        proptest::collection::vec(0..2usize, 0..3),
    )
        .prop_map(|(title, description, lane, priority, labels, assignee, due, in_cycle, modules)| TaskSpec {
            title,
            description,
            lane,
            priority,
            labels,
            assignee,
            due,
            in_cycle,
            modules,
        })
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0..40usize, 0..LANES.len()).prop_map(|(t, l)| Damage::Move(t, l)),
        (0..40usize, title()).prop_map(|(t, s)| Damage::Retitle(t, s)),
        (0..40usize, description()).prop_map(|(t, s)| Damage::Describe(t, s)),
        (0..40usize).prop_map(Damage::Archive),
        (0..40usize).prop_map(Damage::Unassign),
        title().prop_map(Damage::Create),
        (0..5usize).prop_map(Damage::CancelHandoff),
        description().prop_map(Damage::EditPage),
    ]
}

async fn build(store: &Store, tasks: &[TaskSpec]) -> i64 {
    let a = actor("builder");
    let project = store.create_project(&a, "PT", "Property test · ∑ ünïcödé", "").await.unwrap();
    for handle in AGENTS {
        let new = NewAgent {
            handle: handle.to_string(),
            display_name: handle.to_uppercase(),
            kind: AgentKind::Human,
            capacity: None,
            skills: vec![],
        };
        store.create_agent(&a, new).await.unwrap();
    }
    store.create_cycle(&a, project.id, "Cycle ✓", date!(2026 - 11 - 01), date!(2026 - 11 - 30), "").await.unwrap();
    for name in ["Módulo A", "模块 B"] {
        let new = NewModule {
            name: name.into(),
            description: "d".into(),
            status: ModuleStatus::Planned,
            lead: Some("ana".into()),
            target_on: None,
        };
        store.create_module(&a, project.id, new).await.unwrap();
    }
    for spec in tasks {
        let mut modules: Vec<String> = spec.modules.iter().map(|m| ["Módulo A", "模块 B"][*m].to_string()).collect();
        modules.dedup();
        let new = NewTask {
            title: spec.title.clone(),
            description: spec.description.clone(),
            lane: Some(LANES[spec.lane].into()),
            priority: Some(Priority::ALL[spec.priority]),
            assignee: spec.assignee.map(|i| AGENTS[i].into()),
            labels: spec.labels.iter().map(|i| LABELS[*i].to_string()).collect(),
            due_on: spec.due.map(|d| date!(2026 - 11 - 27) + time::Duration::days(d)),
            cycle: spec.in_cycle.then(|| "Cycle ✓".to_string()),
            modules: {
                modules.sort();
                modules.dedup();
                modules
            },
        };
        store.create_task(&a, project.id, new).await.unwrap();
    }
    for (i, _) in tasks.iter().enumerate().take(3) {
        let new = NewHandoff {
            task_key: format!("PT-{}", i + 1),
            kind: if i % 2 == 0 { HandoffKind::Blocked } else { HandoffKind::Transfer },
            from: Some("ana".into()),
            to: "bo".into(),
            reason: format!("reason {i} — ✓"),
            needs: String::new(),
            due_at: None,
        };
        store.open_handoff(&a, new).await.unwrap();
    }
    store.create_page(&a, project.id, "notes", "Notes 📝", "# Über\n\n- ✓ item").await.unwrap();
    project.id
}

async fn apply(store: &Store, project_id: i64, count: usize, damage: &Damage) {
    let a = actor("vandal");
    let key = |i: usize| format!("PT-{}", i % count + 1);
    // Some damage is refused (an archived task cannot move); that is fine.
    let _ = match damage {
        Damage::Move(t, l) => store.move_task(&a, &key(*t), Some(LANES[*l]), Position::Top, None).await.map(|_| ()),
        Damage::Retitle(t, s) => store
            .edit_task(&a, &key(*t), TaskEdit { title: Some(s.clone()), ..Default::default() }, None)
            .await
            .map(|_| ()),
        Damage::Describe(t, s) => store
            .edit_task(&a, &key(*t), TaskEdit { description: Some(s.clone()), ..Default::default() }, None)
            .await
            .map(|_| ()),
        Damage::Archive(t) => store.set_task_archived(&a, &key(*t), true, None).await.map(|_| ()),
        Damage::Unassign(t) => store.assign_task(&a, &key(*t), None, None).await.map(|_| ()),
        Damage::Create(s) => {
            store.create_task(&a, project_id, NewTask { title: s.clone(), ..Default::default() }).await.map(|_| ())
        }
        Damage::CancelHandoff(h) => {
            store.transition_handoff(&a, (*h % 3) as i64 + 1, HandoffState::Cancelled, "", None).await.map(|_| ())
        }
        Damage::EditPage(s) => store.edit_page(&a, project_id, "notes", None, Some(s), None).await.map(|_| ()),
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn restore_brings_back_exactly_the_snapshot(
        tasks in proptest::collection::vec(task_spec(), 1..25),
        damages in proptest::collection::vec(damage(), 1..30),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let db = TestDb::new().await;
            let store = db.store().await;
            let project_id = build(&store, &tasks).await;
            let snapshot = store.create_snapshot(&actor("ana"), project_id, "", Reason::Manual).await.unwrap();
            let expected = store.capture(project_id).await.unwrap();
            for damage in &damages {
                apply(&store, project_id, tasks.len(), damage).await;
            }
            store.restore_snapshot(&actor("ana"), snapshot.id, &RestoreOptions::default(), &|_| {}).await.unwrap();
            let actual = store.capture(project_id).await.unwrap();
            assert_restored(&expected, &actual);
            // And the stored payload still verifies.
            assert!(store.verify_snapshot(snapshot.id).await.unwrap().ok);
        });
    }
}
