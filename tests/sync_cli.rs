//! The sync commands as an operator types them: a Plane connection added and
//! tested, a pass run, status, plan, conflicts and dead letters — against the
//! fake Plane server and a real database.

mod common;

use common::plane::{FakePlane, Fault};
use common::{Cli, Run, TestDb};

fn run_in(cli: &Cli, args: &[&str]) -> Run {
    let output = cli.command().env("MC_PROJECT", "SYN").args(args).output().expect("run mctl");
    common::run_from(output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_connects_plane_syncs_and_reads_the_state() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    let plane = FakePlane::builder().member("tester", "tester@example.com").start().await;
    plane.seed_items(25);
    let token = cli.home.path().join("plane-token");
    std::fs::write(&token, plane.token()).unwrap();
    let token_ref = format!("file:{}", token.display());

    // `--project` here is the Plane project's id; the local project comes from MC_PROJECT.
    let added = run_in(
        &cli,
        &[
            "--json",
            "connection",
            "add",
            "plane",
            "--key",
            "plane",
            "--url",
            &plane.url(),
            "--workspace",
            plane.workspace(),
            "--project",
            plane.project_id(),
            "--token-ref",
            &token_ref,
            "--set",
            "requests_per_minute=0",
            "--lane-state",
            "Review=In Progress",
        ],
    )
    .ok()
    .json();
    assert_eq!(added["config"]["project"], plane.project_id());
    assert_eq!(added["config"]["requests_per_minute"], 0);
    assert_eq!(added["config"]["lane_states"]["Review"], "In Progress");
    assert!(!added.to_string().contains(plane.token()), "the token is never stored");

    let tested = run_in(&cli, &["connection", "test", "plane"]).ok();
    assert!(
        tested.stdout.contains("auth         ok") && tested.stdout.contains("project      FAKE"),
        "{}",
        tested.stdout
    );
    assert!(tested.stdout.contains("pages        unavailable"), "{}", tested.stdout);
    assert!(!tested.stdout.contains(plane.token()));

    let plan = run_in(&cli, &["--json", "sync", "plan", "plane"]).ok().json();
    assert_eq!(plan["create_local"].as_array().unwrap().len(), 25);
    assert_eq!(run_in(&cli, &["--json", "task", "list"]).ok().json(), serde_json::json!([]), "a plan writes nothing");

    let once = run_in(&cli, &["--json", "sync", "once"]).ok().json();
    assert_eq!(once["failed"], 0);
    assert_eq!(once["passes"][0]["created_local"], 25);
    let tasks = run_in(&cli, &["--json", "task", "list"]).ok().json();
    assert_eq!(tasks.as_array().unwrap().len(), 25);

    let status = run_in(&cli, &["--json", "sync", "status"]).ok().json();
    assert_eq!(status[0]["connection"], "plane");
    assert_eq!(status[0]["last_pass_ok"], true);
    assert_eq!(status[0]["queued"], 0);

    // A push that Plane refuses for good becomes a dead letter, listed and retried.
    let key = tasks[0]["key"].as_str().unwrap().to_string();
    run_in(&cli, &["task", "edit", &key, "--title", "Refused once"]).ok();
    plane.fail_next(("PATCH", "work-items/*"), Fault::Status(422));
    let failed = run_in(&cli, &["sync", "once"]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stderr.contains("sync dead-letters"), "{}", failed.stderr);
    let letters = run_in(&cli, &["--json", "sync", "dead-letters"]).ok().json();
    assert_eq!(letters.as_array().unwrap().len(), 1);
    assert!(letters[0]["last_error"].as_str().unwrap().contains("422"));
    let id = letters[0]["id"].as_i64().unwrap().to_string();
    assert_eq!(run_in(&cli, &["--json", "sync", "dead-letters", "--retry", &id]).ok().json()["retried"], 1);
    run_in(&cli, &["sync", "once"]).ok();
    assert!(plane.items().iter().any(|i| i["name"] == "Refused once"));
    assert_eq!(run_in(&cli, &["--json", "sync", "dead-letters"]).ok().json().as_array().unwrap().len(), 0);

    // A conflict under the manual policy, listed and resolved by taking Plane's value.
    run_in(&cli, &["connection", "update", "plane", "--set", "conflict_policy=manual"]).ok();
    run_in(&cli, &["task", "edit", &key, "--title", "Ours"]).ok();
    let item = plane.items().into_iter().find(|i| i["name"] == "Refused once").unwrap();
    plane.edit_item(item["id"].as_str().unwrap(), serde_json::json!({"name": "Theirs"}));
    run_in(&cli, &["sync", "once"]).ok();
    let conflicts = run_in(&cli, &["--json", "sync", "conflicts"]).ok().json();
    assert_eq!(conflicts.as_array().unwrap().len(), 1, "{conflicts}");
    assert_eq!(conflicts[0]["field"], "title");
    let id = conflicts[0]["id"].as_i64().unwrap().to_string();
    run_in(&cli, &["sync", "resolve", &id, "--take", "remote"]).ok();
    run_in(&cli, &["sync", "once"]).ok();
    let task = run_in(&cli, &["--json", "task", "show", &key]).ok().json();
    assert_eq!(task["task"]["title"], "Theirs");
    assert_eq!(task["mappings"][0]["sync_state"], "in_sync");
    assert_eq!(run_in(&cli, &["--json", "sync", "conflicts"]).ok().json().as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connection_settings_get_one_line_errors() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    let missing = run_in(&cli, &["connection", "add", "plane", "--key", "plane", "--url", "http://127.0.0.1:9"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("--workspace") && missing.stderr.lines().count() == 1, "{}", missing.stderr);

    run_in(
        &cli,
        &[
            "connection",
            "add",
            "plane",
            "--key",
            "plane",
            "--url",
            "http://127.0.0.1:9",
            "--workspace",
            "acme",
            "--project",
            "0b5a8f3e-1d2c-4e5f-8a9b-0c1d2e3f4a5b",
            "--token-ref",
            "env:MCTL_TEST_UNSET_PLANE_TOKEN",
        ],
    )
    .ok();
    let tested = run_in(&cli, &["connection", "test", "plane"]);
    assert_eq!(tested.code, 1);
    assert!(tested.stdout.contains("MCTL_TEST_UNSET_PLANE_TOKEN is not set"), "{}", tested.stdout);
    let refused = run_in(&cli, &["sync", "resolve", "999", "--take", "local"]);
    assert_eq!(refused.code, 4, "{}", refused.stderr);
}
