//! The sync commands as an operator types them: a Plane connection added and
//! tested, a pass run, status, plan, conflicts and dead letters — against the
//! fake Plane server and a real database.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

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
    assert_eq!(status["connections"][0]["connection"], "plane");
    assert_eq!(status["connections"][0]["last_pass_ok"], true);
    assert_eq!(status["connections"][0]["queued"], 0);

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

/// A Plane connection `plane` added from the CLI to project SYN.
fn connect_plane(cli: &Cli, plane: &FakePlane, extra: &[&str]) {
    let token = cli.home.path().join("plane-token");
    std::fs::write(&token, plane.token()).unwrap();
    let token_ref = format!("file:{}", token.display());
    let url = plane.url();
    let mut args = vec![
        "connection",
        "add",
        "plane",
        "--key",
        "plane",
        "--url",
        &url,
        "--workspace",
        plane.workspace(),
        "--project",
        plane.project_id(),
        "--token-ref",
        &token_ref,
    ];
    args.extend_from_slice(extra);
    run_in(cli, &args).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_fails_and_says_why_when_work_is_left_behind_a_rate_limit() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    for n in 0..8 {
        run_in(&cli, &["task", "create", "--title", &format!("Waiting {n}")]).ok();
    }
    let plane = FakePlane::start().await;
    // Ten requests a minute: the first pass fits, then one create, and the rest wait.
    connect_plane(&cli, &plane, &["--set", "requests_per_minute=10"]);
    let once = run_in(&cli, &["sync", "once"]);
    assert_ne!(once.code, 0, "work left queued is not a success: {}{}", once.stdout, once.stderr);
    let said = format!("{}{}", once.stdout, once.stderr);
    assert!(said.contains("left queued"), "{said}");
    assert!(said.contains("rate limit") && said.contains("until"), "{said}");
    let json = run_in(&cli, &["--json", "sync", "once"]).json();
    assert!(json["left_queued"].as_u64().unwrap() > 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_shows_a_passs_per_item_errors_and_counts_what_was_unchanged() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    let plane = FakePlane::start().await;
    plane.seed_items(25);
    connect_plane(&cli, &plane, &["--set", "requests_per_minute=0"]);
    run_in(&cli, &["sync", "once"]).ok();
    let idle = run_in(&cli, &["sync", "once", "--full"]).ok();
    assert!(idle.stdout.contains("25 unchanged"), "{}", idle.stdout);

    // Both sides edited, and Plane refuses our half: the pass names the item and the answer.
    let tasks = run_in(&cli, &["--json", "task", "list"]).ok().json();
    let key = tasks[0]["key"].as_str().unwrap().to_string();
    run_in(&cli, &["task", "edit", &key, "--title", "Ours"]).ok();
    let mapped = run_in(&cli, &["--json", "mapping", "list", "--task", &key]).ok().json();
    let item = mapped[0]["external_id"].as_str().unwrap().to_string();
    let item_key = mapped[0]["external_key"].as_str().unwrap().to_string();
    plane.edit_item(&item, serde_json::json!({"description_html": "<p>theirs</p>"}));
    plane.fail_times(("PATCH", "work-items/*"), Fault::Status(400), 2);
    let failed = run_in(&cli, &["sync", "once"]);
    assert_eq!(failed.code, 1, "{}", failed.stdout);
    assert!(failed.stdout.contains(&format!("{item_key}:")) && failed.stdout.contains("PATCH"), "{}", failed.stdout);
}

/// A private PostgreSQL cluster in a temporary directory, stopped when dropped.
struct PrivateCluster {
    cluster: mission_control::db::EmbeddedCluster,
    _dir: tempfile::TempDir,
}

impl PrivateCluster {
    async fn start() -> PrivateCluster {
        use std::os::unix::fs::PermissionsExt;
        // Readable by others: when the tests run as root, the cluster runs as `postgres`.
        let dir = tempfile::Builder::new()
            .prefix("mctl-restart")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .unwrap();
        let cluster = mission_control::db::EmbeddedCluster::new(&dir.path().join("pg"), None);
        let private = PrivateCluster { cluster, _dir: dir };
        private.up().await;
        mission_control::db::embedded::ensure_database(&private.cluster.pg_config()).await.unwrap();
        private
    }

    async fn up(&self) {
        let cluster = mission_control::db::EmbeddedCluster::new(self.cluster.root(), None);
        tokio::task::spawn_blocking(move || cluster.ensure_running()).await.unwrap().expect("start the cluster");
    }

    async fn down(&self) {
        let cluster = mission_control::db::EmbeddedCluster::new(self.cluster.root(), None);
        tokio::task::spawn_blocking(move || cluster.stop()).await.unwrap().expect("stop the cluster");
    }

    fn url(&self) -> String {
        let config = self.cluster.pg_config();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
        };
        format!(
            "host={host} port={} user={} dbname={}",
            config.get_ports()[0],
            config.get_user().unwrap(),
            config.get_dbname().unwrap()
        )
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

/// Runs `mctl` until it succeeds (the database may still be starting).
fn run_until_ok(cli: &Cli, args: &[&str]) -> Run {
    for _ in 0..60 {
        let run = run_in(cli, args);
        if run.code == 0 {
            return run;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    run_in(cli, args).ok()
}

fn wait_for(limit: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_run_survives_a_database_restart_and_pushes_an_edit_made_after_it() {
    let cluster = PrivateCluster::start().await;
    let cli = Cli { url: cluster.url(), home: tempfile::tempdir().unwrap() };
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    let plane = FakePlane::start().await;
    connect_plane(&cli, &plane, &["--set", "requests_per_minute=0"]);
    let mut worker = cli
        .command()
        .env("MC_PROJECT", "SYN")
        .args(["sync", "run", "--pull-every", "2s"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let key = run_in(&cli, &["task", "create", "--title", "Before the restart"]).ok().stdout.trim().to_string();
    assert!(
        wait_for(std::time::Duration::from_secs(30), || plane
            .items()
            .iter()
            .any(|i| i["name"] == "Before the restart")),
        "the worker pushes before the restart"
    );

    // Down for longer than the worker's poll, so it meets the outage.
    cluster.down().await;
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    cluster.up().await;
    run_until_ok(&cli, &["task", "edit", &key, "--title", "After the restart"]);
    let pushed =
        wait_for(std::time::Duration::from_secs(60), || plane.items().iter().any(|i| i["name"] == "After the restart"));
    assert!(worker.try_wait().unwrap().is_none(), "the worker process is still running");
    assert!(pushed, "an edit made after the restart is pushed by the same process");
    let status = run_in(&cli, &["--json", "sync", "status"]).ok().json();
    let workers = status["workers"].as_array().expect("sync status lists the workers");
    assert!(workers.iter().any(|w| w["state"] != "gone"), "{status}");

    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let ended = worker.wait().unwrap();
    assert_eq!(ended.code(), Some(0), "a stop asked for is a clean exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_run_exits_non_zero_when_its_workers_cannot_go_on() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "SYN", "--name", "Sync"]).ok();
    let plane = FakePlane::start().await;
    connect_plane(&cli, &plane, &["--set", "requests_per_minute=0"]);
    let mut worker = cli
        .command()
        .env("MC_PROJECT", "SYN")
        .args(["sync", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(std::time::Duration::from_secs(20), || db_has_worker(&db)), "the workers report themselves");
    // A newer mctl migrates the database while the queue is away for a moment.
    let client = db.client().await;
    client
        .batch_execute("ALTER TABLE sync_job RENAME TO sync_job_away; SELECT pg_notify('mc_sync', '')")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    client
        .batch_execute(
            "INSERT INTO mctl_schema_history (version, name, applied_on, checksum) VALUES (9999, 'future', '', '0');
             ALTER TABLE sync_job_away RENAME TO sync_job",
        )
        .await
        .unwrap();
    let exited = wait_for(std::time::Duration::from_secs(60), || worker.try_wait().unwrap().is_some());
    if !exited {
        let _ = worker.kill();
    }
    let output = worker.wait_with_output().unwrap();
    assert!(exited, "the process ends when its workers cannot go on");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upgrade mctl") && stderr.lines().count() == 1, "{stderr}");
}

/// Whether a worker has written its row (a blocking check, for `wait_for`).
fn db_has_worker(db: &TestDb) -> bool {
    let config = db.config.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let Ok((client, connection)) = config.connect(tokio_postgres::NoTls).await else { return false };
            tokio::spawn(connection);
            client.query_one("SELECT count(*) FROM sync_worker", &[]).await.is_ok_and(|r| r.get::<_, i64>(0) > 0)
        })
    })
    .join()
    .unwrap()
}
