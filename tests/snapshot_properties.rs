//! Property: for generated project states (unicode, empty and maximal
//! fields; delivery records, a connection and its mappings), snapshot →
//! random damage across every kind → restore (archiving or, with `exact`,
//! deleting what was made since) gives back exactly the snapshot's state,
//! entity by entity.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::snapshots::{assert_restored, normalized};
use common::{TestDb, actor};
use mission_control::domain::{
    AgentKind, DeploymentStatus, EnvironmentKind, HandoffKind, HandoffState, LaneCategory, LaneRole, LocalKind,
    ModuleStatus, PipelineStatus, Priority, Provider, ReleaseStatus,
};
use mission_control::snapshot::{Reason, RestoreOptions};
use mission_control::store::Store;
use mission_control::store::agents::NewAgent;
use mission_control::store::delivery::{
    DeploymentReport, EnvironmentUpdate, NewRelease, PipelineReport, ReleaseUpdate,
};
use mission_control::store::handoffs::NewHandoff;
use mission_control::store::integrations::{ConnectionUpdate, NewConnection, NewMapping};
use mission_control::store::lanes::{LaneUpdate, NewLane};
use mission_control::store::planning::{CycleUpdate, ModuleUpdate, NewModule};
use mission_control::store::tasks::{NewTask, Position, TaskEdit};
use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::{date, datetime};

const LANES: &[&str] = &["Inbox", "Ready", "In Progress", "Review", "Blocked", "Done"];
const LABELS: &[&str] = &["bug", "ops", "日本", "ünïcödé", "perf"];
const AGENTS: &[&str] = &["ana", "bo", "chen"];
const MODULES: &[&str] = &["Módulo A", "模块 B"];
/// Names for lanes renamed or made after the snapshot; none is a snapshot lane's name.
const NEW_LANE_NAMES: &[&str] = &["Triage ✓", "Später", "審査", "QA"];
const STARTED: OffsetDateTime = datetime!(2026-11-20 09:30 UTC);

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

/// Delivery records and sync links; indices wrap around what exists.
#[derive(Debug, Clone)]
struct DeliverySpec {
    /// Environment kind and whether it has a URL (named env-0, env-1…).
    environments: Vec<(usize, bool)>,
    /// Release notes and the tasks linked to it.
    releases: Vec<(String, Vec<usize>)>,
    /// Pipeline run status and whether it names a commit.
    pipelines: Vec<(usize, bool)>,
    /// Deployment environment, status, and the release it ships.
    deployments: Vec<(usize, usize, Option<usize>)>,
    /// Tasks mapped to issues on the project's connection.
    mapped: Vec<usize>,
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
    RenameLane(usize, usize),
    LaneWip(usize, Option<i32>),
    /// A lane made since, and a task moved into it.
    NewLane(usize, usize),
    EditCycle(String),
    EditModule(usize, usize, Option<usize>),
    EditEnvironment(usize, usize, bool),
    RerunPipeline(usize, usize),
    NewPipeline(usize),
    Redeploy(usize, usize, usize),
    EditRelease(usize, usize, String),
    LinkRelease(usize, usize, bool),
    EditConnection(bool, String),
    /// As a sync pass leaves a mapping: another key, remote version and base.
    ResyncMapping(usize, String),
    /// A lane renamed, then a new lane under its old name.
    ReuseLaneName(usize, usize),
    /// An environment renamed, then a new one under its old name.
    ReuseEnvironmentName(usize),
    /// A pipeline deleted and synced in again: the same run under a new id.
    ReimportPipeline(usize),
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

fn delivery_spec() -> impl Strategy<Value = DeliverySpec> {
    use proptest::collection::vec;
    (
        vec((0..EnvironmentKind::ALL.len(), any::<bool>()), 1..3),
        vec((description(), vec(0..25usize, 0..4)), 1..3),
        vec((0..PipelineStatus::ALL.len(), any::<bool>()), 1..4),
        vec((0..3usize, 0..DeploymentStatus::ALL.len(), proptest::option::of(0..3usize)), 1..4),
        vec(0..25usize, 1..4),
    )
        .prop_map(|(environments, releases, pipelines, deployments, mapped)| DeliverySpec {
            environments,
            releases,
            pipelines,
            deployments,
            mapped,
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
        (0..LANES.len(), 0..NEW_LANE_NAMES.len()).prop_map(|(l, n)| Damage::RenameLane(l, n)),
        (0..LANES.len(), proptest::option::of(1..20i32)).prop_map(|(l, w)| Damage::LaneWip(l, w)),
        (0..NEW_LANE_NAMES.len(), 0..40usize).prop_map(|(n, t)| Damage::NewLane(n, t)),
        description().prop_map(Damage::EditCycle),
        (0..2usize, 0..ModuleStatus::ALL.len(), proptest::option::of(0..AGENTS.len()))
            .prop_map(|(m, s, l)| Damage::EditModule(m, s, l)),
        (0..3usize, 0..EnvironmentKind::ALL.len(), any::<bool>())
            .prop_map(|(e, k, u)| Damage::EditEnvironment(e, k, u)),
        (0..4usize, 0..PipelineStatus::ALL.len()).prop_map(|(p, s)| Damage::RerunPipeline(p, s)),
        (0..PipelineStatus::ALL.len()).prop_map(Damage::NewPipeline),
        (0..4usize, 0..3usize, 0..DeploymentStatus::ALL.len()).prop_map(|(d, e, s)| Damage::Redeploy(d, e, s)),
        (0..3usize, 0..ReleaseStatus::ALL.len(), description()).prop_map(|(r, s, n)| Damage::EditRelease(r, s, n)),
        (0..3usize, 0..40usize, any::<bool>()).prop_map(|(r, t, l)| Damage::LinkRelease(r, t, l)),
        (any::<bool>(), text(40)).prop_map(|(e, n)| Damage::EditConnection(e, n)),
        (0..4usize, text(40)).prop_map(|(m, k)| Damage::ResyncMapping(m, k)),
        (0..LANES.len(), 0..NEW_LANE_NAMES.len()).prop_map(|(l, n)| Damage::ReuseLaneName(l, n)),
        (0..3usize).prop_map(Damage::ReuseEnvironmentName),
        (0..4usize).prop_map(Damage::ReimportPipeline),
    ]
}

/// How many of each delivery record `build` made, for damage to pick from.
struct Built {
    project_id: i64,
    tasks: usize,
    environments: usize,
    releases: usize,
    pipelines: usize,
    deployments: usize,
}

fn release_name(i: usize) -> String {
    format!("Release {i} — ✓")
}

fn pipeline(external_id: String, status: PipelineStatus, commit: bool) -> PipelineReport {
    PipelineReport {
        provider: "github".into(),
        external_id,
        name: "ci ✓".into(),
        git_ref: "main".into(),
        commit_sha: commit.then(|| "4f2c9a1".into()),
        status,
        url: Some("https://ci.example.com/runs/1".into()),
        started_at: Some(STARTED),
        finished_at: None,
    }
}

fn deployment(i: usize, environment: usize, status: DeploymentStatus, release: Option<String>) -> DeploymentReport {
    DeploymentReport {
        environment: format!("env-{environment}"),
        provider: "github".into(),
        external_id: format!("dep-{i}"),
        git_ref: "main".into(),
        commit_sha: None,
        status,
        url: None,
        release,
        started_at: Some(STARTED),
        finished_at: None,
    }
}

/// Environments, releases (with linked tasks), pipeline runs, deployments,
/// a connection and mappings of some tasks.
async fn build_delivery(store: &Store, project_id: i64, tasks: usize, spec: &DeliverySpec) -> Built {
    let a = actor("builder");
    for (i, (kind, with_url)) in spec.environments.iter().enumerate() {
        let url = with_url.then(|| format!("https://env-{i}.example.com/ü"));
        store
            .create_environment(&a, project_id, &format!("env-{i}"), EnvironmentKind::ALL[*kind], url.as_deref())
            .await
            .unwrap();
    }
    for (i, (notes, linked)) in spec.releases.iter().enumerate() {
        let new = NewRelease {
            name: release_name(i),
            tag: Some(format!("v1.{i}.0")),
            target_on: Some(date!(2026 - 12 - 01)),
            notes: notes.clone(),
            ..Default::default()
        };
        store.create_release(&a, project_id, new).await.unwrap();
        let keys: Vec<String> = linked.iter().map(|t| format!("PT-{}", t % tasks + 1)).collect();
        store.link_release_tasks(&a, project_id, &release_name(i), &keys, true).await.unwrap();
    }
    for (i, (status, commit)) in spec.pipelines.iter().enumerate() {
        store
            .report_pipeline(&a, project_id, pipeline(format!("run-{i}"), PipelineStatus::ALL[*status], *commit))
            .await
            .unwrap();
    }
    for (i, (environment, status, release)) in spec.deployments.iter().enumerate() {
        let report = deployment(
            i,
            environment % spec.environments.len(),
            DeploymentStatus::ALL[*status],
            release.map(|r| release_name(r % spec.releases.len())),
        );
        store.report_deployment(&a, project_id, report).await.unwrap();
    }
    let connection = NewConnection {
        key: "gh".into(),
        provider: Provider::Github,
        base_url: "https://api.github.com".into(),
        config: serde_json::json!({"repo": "northwind/checkout", "note": "∑ ünïcödé"}),
        secret_ref: Some("env:GITHUB_TOKEN".into()),
    };
    store.add_connection(&a, project_id, connection).await.unwrap();
    let mut mapped: Vec<usize> = spec.mapped.iter().map(|t| t % tasks + 1).collect();
    mapped.sort_unstable();
    mapped.dedup();
    for n in mapped {
        let task = store.task_by_key(&format!("PT-{n}")).await.unwrap();
        let mapping = NewMapping {
            connection: "gh".into(),
            local_kind: LocalKind::Task,
            local_id: task.id,
            external_id: format!("{}", 100 + n),
            external_key: Some(format!("#{n}")),
            url: Some(format!("https://github.com/northwind/checkout/issues/{n}")),
        };
        store.create_mapping(&a, project_id, mapping).await.unwrap();
    }
    Built {
        project_id,
        tasks,
        environments: spec.environments.len(),
        releases: spec.releases.len(),
        pipelines: spec.pipelines.len(),
        deployments: spec.deployments.len(),
    }
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
    for name in MODULES {
        let new = NewModule {
            name: name.to_string(),
            description: "d".into(),
            status: ModuleStatus::Planned,
            lead: Some("ana".into()),
            target_on: None,
        };
        store.create_module(&a, project.id, new).await.unwrap();
    }
    for spec in tasks {
        let mut modules: Vec<String> = spec.modules.iter().map(|m| MODULES[*m].to_string()).collect();
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

async fn apply(store: &Store, built: &Built, damage: &Damage) {
    let a = actor("vandal");
    let project_id = built.project_id;
    let key = |i: usize| format!("PT-{}", i % built.tasks + 1);
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
        Damage::RenameLane(l, n) => {
            let update = LaneUpdate { name: Some(NEW_LANE_NAMES[*n].into()), ..Default::default() };
            store.update_lane(&a, project_id, LANES[*l], update).await.map(|_| ())
        }
        Damage::LaneWip(l, w) => {
            let update = LaneUpdate { wip_limit: Some(*w), ..Default::default() };
            store.update_lane(&a, project_id, LANES[*l], update).await.map(|_| ())
        }
        Damage::NewLane(n, t) => {
            let lane = NewLane {
                name: NEW_LANE_NAMES[*n].into(),
                category: LaneCategory::Started,
                role: LaneRole::Normal,
                position: Some(1),
                wip_limit: None,
            };
            match store.create_lane(&a, project_id, lane).await {
                Ok(lane) => store.move_task(&a, &key(*t), Some(&lane.name), Position::Top, None).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        Damage::EditCycle(s) => {
            let update = CycleUpdate {
                description: Some(s.clone()),
                ends_on: Some(date!(2026 - 12 - 24)),
                ..Default::default()
            };
            store.update_cycle(&a, project_id, "Cycle ✓", update).await.map(|_| ())
        }
        Damage::EditModule(m, status, lead) => {
            let update = ModuleUpdate {
                status: Some(ModuleStatus::ALL[*status]),
                lead: Some(lead.map(|l| AGENTS[l].to_string())),
                ..Default::default()
            };
            store.update_module(&a, project_id, MODULES[*m], update).await.map(|_| ())
        }
        Damage::EditEnvironment(e, kind, with_url) => {
            let update = EnvironmentUpdate {
                kind: Some(EnvironmentKind::ALL[*kind]),
                url: Some(with_url.then(|| "https://moved.example.com".to_string())),
                ..Default::default()
            };
            let name = format!("env-{}", e % built.environments);
            store.update_environment(&a, project_id, &name, update).await.map(|_| ())
        }
        Damage::RerunPipeline(p, status) => {
            let mut report = pipeline(format!("run-{}", p % built.pipelines), PipelineStatus::ALL[*status], false);
            report.finished_at = Some(STARTED + time::Duration::minutes(7));
            store.report_pipeline(&a, project_id, report).await.map(|_| ())
        }
        Damage::NewPipeline(status) => {
            let report = pipeline("run-since".into(), PipelineStatus::ALL[*status], true);
            store.report_pipeline(&a, project_id, report).await.map(|_| ())
        }
        Damage::Redeploy(d, e, status) => {
            let report =
                deployment(d % built.deployments, e % built.environments, DeploymentStatus::ALL[*status], None);
            store.report_deployment(&a, project_id, report).await.map(|_| ())
        }
        Damage::EditRelease(r, status, notes) => {
            let update = ReleaseUpdate {
                status: Some(ReleaseStatus::ALL[*status]),
                notes: Some(notes.clone()),
                ..Default::default()
            };
            store.update_release(&a, project_id, &release_name(r % built.releases), update).await.map(|_| ())
        }
        Damage::LinkRelease(r, t, link) => store
            .link_release_tasks(&a, project_id, &release_name(r % built.releases), &[key(*t)], *link)
            .await
            .map(|_| ()),
        Damage::EditConnection(enabled, note) => {
            let update = ConnectionUpdate {
                enabled: Some(*enabled),
                config: Some(serde_json::json!({ "note": note })),
                ..Default::default()
            };
            store.update_connection(&a, "gh", update).await.map(|_| ())
        }
        Damage::ResyncMapping(m, external_key) => {
            let client = store.client().await.unwrap();
            client
                .execute(
                    "UPDATE external_mapping SET external_key = $3, remote_version = 'etag-2', base = $4, sync_state = 'in_sync'
                     WHERE id = (SELECT id FROM external_mapping WHERE project_id = $1 ORDER BY id OFFSET $2 LIMIT 1)",
                    &[&project_id, &((*m % 4) as i64), external_key, &serde_json::json!({ "title": external_key })],
                )
                .await
                .unwrap();
            Ok(())
        }
        Damage::ReuseLaneName(l, n) => {
            let update = LaneUpdate { name: Some(NEW_LANE_NAMES[*n].into()), ..Default::default() };
            let lane = NewLane {
                name: LANES[*l].into(),
                category: LaneCategory::Unstarted,
                role: LaneRole::Normal,
                position: None,
                wip_limit: None,
            };
            match store.update_lane(&a, project_id, LANES[*l], update).await {
                Ok(_) => store.create_lane(&a, project_id, lane).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        Damage::ReuseEnvironmentName(e) => {
            let name = format!("env-{}", e % built.environments);
            let update = EnvironmentUpdate { name: Some(format!("{name}-old")), ..Default::default() };
            match store.update_environment(&a, project_id, &name, update).await {
                Ok(_) => {
                    store.create_environment(&a, project_id, &name, EnvironmentKind::Other, None).await.map(|_| ())
                }
                Err(e) => Err(e),
            }
        }
        Damage::ReimportPipeline(p) => {
            let external_id = format!("run-{}", p % built.pipelines);
            let client = store.client().await.unwrap();
            client
                .execute(
                    "DELETE FROM pipeline WHERE project_id = $1 AND external_id = $2",
                    &[&project_id, &external_id],
                )
                .await
                .unwrap();
            store
                .report_pipeline(&a, project_id, pipeline(external_id, PipelineStatus::Running, true))
                .await
                .map(|_| ())
        }
    };
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn restore_brings_back_exactly_the_snapshot(
        tasks in proptest::collection::vec(task_spec(), 1..25),
        delivery in delivery_spec(),
        damages in proptest::collection::vec(damage(), 1..30),
        exact in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let db = TestDb::new().await;
            let store = db.store().await;
            let project_id = build(&store, &tasks).await;
            let built = build_delivery(&store, project_id, tasks.len(), &delivery).await;
            let snapshot = store.create_snapshot(&actor("ana"), project_id, "", Reason::Manual).await.unwrap();
            let expected = store.capture(project_id).await.unwrap();
            // Every kind is there to compare.
            for (kind, count) in expected.counts().as_object().unwrap() {
                assert!(count.as_u64().unwrap() > 0, "the generated project has no {kind}");
            }
            for damage in &damages {
                apply(&store, &built, damage).await;
            }
            let options = RestoreOptions { exact, ..Default::default() };
            store.restore_snapshot(&actor("ana"), snapshot.id, &options, &|_| {}).await.unwrap();
            let actual = store.capture(project_id).await.unwrap();
            if exact {
                // What was made since is gone, not set aside.
                assert_eq!(normalized(&actual), normalized(&expected));
            } else {
                assert_restored(&expected, &actual);
            }
            // And the stored payload still verifies.
            assert!(store.verify_snapshot(snapshot.id).await.unwrap().ok);
        });
    }
}
