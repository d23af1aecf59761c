//! The `mctl` binary end to end: the command forms scripts depend on, their
//! JSON output parsed back, exit codes, and bad input that must change nothing.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::{Cli, TestDb};
use serde_json::Value;

/// Rows in every table a bad command could have touched.
async fn snapshot_counts(db: &TestDb) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["project", "lane", "task", "agent", "handoff", "audit_entry", "page", "integration_connection"] {
        counts.push(db.count(table).await);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_forms_work_and_speak_json() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    let project = cli.run(&["--json", "project", "create", "MC", "--name", "Mission Control"]).ok().json();
    assert_eq!(project["key"], "MC");
    let projects = cli.run(&["--json", "project", "list"]).ok().json();
    assert_eq!(projects.as_array().unwrap().len(), 1);

    cli.run(&["agent", "create", "ana", "--name", "Ana Lima", "--kind", "human"]).ok();
    cli.run(&["agent", "create", "bo", "--name", "Bo", "--kind", "ai", "--capacity", "2"]).ok();
    let agents = cli.run(&["--json", "agent", "list"]).ok().json();
    assert_eq!(agents[1]["handle"], "bo");
    assert_eq!(agents[1]["capacity"], 2);

    cli.run(&["lane", "create", "QA", "--category", "started", "--position", "4", "--wip", "2"]).ok();
    cli.run(&["lane", "update", "QA", "--name", "Quality", "--no-wip", "--role", "review"]).ok();
    let lanes = cli.run(&["--json", "lane", "list"]).ok().json();
    assert_eq!(lanes[3]["name"], "Quality");
    assert_eq!(lanes[3]["wip_limit"], Value::Null);
    assert_eq!(lanes[3]["role"], "review");

    // `task create` prints the new key, and only the key.
    let key = cli
        .run(&[
            "task",
            "create",
            "--title",
            "Fix checkout",
            "--priority",
            "high",
            "--label",
            "bug",
            "--assignee",
            "ana",
            "--due",
            "+2d",
        ])
        .ok()
        .stdout;
    assert_eq!(key.trim(), "MC-1");
    cli.run(&["task", "create", "--title", "Second", "--lane", "Ready"]).ok();
    let listed = cli.run(&["--json", "task", "list", "--assignee", "ana"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["key"], "MC-1");
    assert_eq!(listed[0]["priority"], "high");
    let unassigned = cli.run(&["--json", "task", "list", "--assignee", "none"]).ok().json();
    assert_eq!(unassigned[0]["key"], "MC-2");

    let moved = cli.run(&["--json", "task", "move", "MC-1", "quality", "--expect-version", "1"]).ok().json();
    assert_eq!(moved["lane"], "Quality");
    assert_eq!(moved["version"], 2);
    let conflict = cli.run(&["task", "move", "MC-1", "Done", "--expect-version", "1"]);
    assert_eq!(conflict.code, 3, "a stale version exits 3: {}", conflict.stderr);
    assert!(conflict.stderr.contains("changed by someone else"), "{}", conflict.stderr);

    cli.run(&["task", "edit", "MC-1", "--title", "Fix checkout on Safari", "--add-label", "web"]).ok();
    cli.run(&["task", "assign", "MC-2", "bo"]).ok();
    let show = cli.run(&["--json", "task", "show", "MC-1"]).ok().json();
    assert_eq!(show["task"]["title"], "Fix checkout on Safari");
    assert_eq!(show["task"]["labels"], serde_json::json!(["bug", "web"]));
    let actions: Vec<&str> =
        show["history"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["task.create", "task.move", "task.update"]);
    assert!(show["history"].as_array().unwrap().iter().all(|e| e["actor"] == "tester" && e["source"] == "cli"));

    let handoff = cli
        .run(&[
            "--json",
            "handoff",
            "open",
            "MC-1",
            "--to",
            "bo",
            "--kind",
            "blocked",
            "--reason",
            "waiting for creds",
            "--due",
            "4h",
        ])
        .ok()
        .json();
    let id = handoff["id"].as_i64().unwrap().to_string();
    assert_eq!(handoff["state"], "open");
    let accepted = cli.run(&["--json", "handoff", "accept", &id]).ok().json();
    assert_eq!(accepted["state"], "accepted");
    let bad = cli.run(&["handoff", "reject", &id]);
    assert_eq!(bad.code, 3, "an impossible transition is refused: {}", bad.stderr);
    cli.run(&["handoff", "resolve", &id, "--note", "creds arrived"]).ok();
    let handoffs = cli.run(&["--json", "handoff", "list", "--all"]).ok().json();
    assert_eq!(handoffs[0]["state"], "resolved");

    cli.run(&["cycle", "create", "Sprint 1", "--start", "today", "--end", "+14d"]).ok();
    cli.run(&["cycle", "add", "Sprint 1", "MC-1", "MC-2"]).ok();
    let cycles = cli.run(&["--json", "cycle", "list"]).ok().json();
    assert_eq!(cycles[0]["task_count"], 2);
    cli.run(&["module", "create", "Billing", "--status", "in-progress", "--lead", "ana"]).ok();
    cli.run(&["module", "add", "Billing", "MC-2"]).ok();
    let modules = cli.run(&["--json", "module", "list"]).ok().json();
    assert_eq!(modules[0]["task_count"], 1);
    assert_eq!(modules[0]["lead"], "ana");

    cli.run(&["page", "create", "deploy-runbook", "--title", "Deploy", "--body", "# Deploy\n1. ship"]).ok();
    let page = cli.run(&["--json", "page", "show", "deploy-runbook"]).ok().json();
    assert_eq!(page["body"], "# Deploy\n1. ship");
    let stale = cli.run(&["page", "edit", "deploy-runbook", "--body", "x", "--expect-version", "7"]);
    assert_eq!(stale.code, 3);

    cli.run(&["env", "create", "production", "--kind", "production"]).ok();
    cli.run(&[
        "pipeline", "report", "--id", "run-1", "--name", "ci", "--status", "failed", "--ref", "main", "--commit",
        "abc1234",
    ])
    .ok();
    cli.run(&[
        "deploy",
        "report",
        "--env",
        "production",
        "--id",
        "d-1",
        "--status",
        "success",
        "--ref",
        "v1",
        "--commit",
        "abc1234",
    ])
    .ok();
    let pipelines = cli.run(&["--json", "pipeline", "list", "--failed"]).ok().json();
    assert_eq!(pipelines[0]["external_id"], "run-1");
    assert!(pipelines[0]["finished_at"].is_string(), "a final status stamps the finish time");
    let envs = cli.run(&["--json", "env", "list"]).ok().json();
    assert_eq!(envs[0]["latest_deployment"]["status"], "success");

    cli.run(&["release", "create", "v1.0", "--commit", "abc1234"]).ok();
    cli.run(&["release", "link", "v1.0", "MC-1"]).ok();
    let release = cli.run(&["--json", "release", "show", "v1.0"]).ok().json();
    assert_eq!(release["readiness"]["ready"], false);
    assert_eq!(release["readiness"]["open_tasks"], serde_json::json!(["MC-1"]));

    cli.run(&[
        "connection",
        "add",
        "github",
        "--key",
        "gh",
        "--url",
        "https://api.github.com",
        "--repo",
        "acme/shop",
        "--token-ref",
        "env:GH_TOKEN",
    ])
    .ok();
    let connections = cli.run(&["--json", "connection", "list"]).ok().json();
    assert_eq!(connections[0]["secret_ref"], "env:GH_TOKEN");
    assert_eq!(connections[0]["config"]["repo"], "acme/shop");
    let mappings = cli.run(&["--json", "mapping", "list"]).ok().json();
    assert_eq!(mappings, serde_json::json!([]));

    cli.run(&["task", "archive", "MC-2"]).ok();
    let audit = cli.run(&["--json", "audit", "list", "--entity", "MC-2", "--limit", "5"]).ok().json();
    assert_eq!(audit[0]["action"], "task.archive", "newest first");
    let tail = cli.run(&["--json", "audit", "tail", "-n", "3"]).ok().stdout;
    let lines: Vec<Value> = tail.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["id"].as_i64() < lines[2]["id"].as_i64(), "tail is oldest first");

    let paths = cli.run(&["--json", "config", "path"]).ok().json();
    assert!(paths["config_file"].as_str().unwrap().ends_with("config/config.toml"));
}

/// One row of `sql` with `param`, as the CLI's work left it in the database.
async fn row(db: &TestDb, sql: &str, param: &(dyn tokio_postgres::types::ToSql + Sync)) -> tokio_postgres::Row {
    db.client().await.query_one(sql, &[param]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lane_lists_handoff_rejects_and_cancels_connection_removal_and_audit_since() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "MC", "--name", "Mission Control"]).ok();
    cli.run(&["agent", "create", "ana", "--name", "Ana Lima", "--kind", "human"]).ok();
    cli.run(&["agent", "create", "bo", "--name", "Bo", "--kind", "ai"]).ok();
    for (title, lane) in [("first", "Ready"), ("second", "Inbox"), ("third", "Ready"), ("fourth", "Done")] {
        cli.run(&["task", "create", "--title", title, "--lane", lane, "--assignee", "ana"]).ok();
    }

    // `task list --lane`: the lane's tasks in board order, the name matched case-insensitively.
    let ready = cli.run(&["--json", "task", "list", "--lane", "ready"]).ok().json();
    let keys: Vec<&str> = ready.as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
    let in_db: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT t.task_key FROM task t JOIN lane l ON l.id = t.lane_id WHERE l.name = 'Ready' ORDER BY t.rank",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, in_db);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(ready.as_array().unwrap().iter().all(|t| t["lane"] == "Ready"));
    let plain = cli.run(&["task", "list", "--lane", "Done"]).ok().stdout;
    assert!(plain.contains("MC-4") && !plain.contains("MC-1"), "{plain}");
    let nowhere = cli.run(&["task", "list", "--lane", "Nowhere"]);
    assert_eq!(nowhere.code, 4, "an unknown lane is not found: {}", nowhere.stderr);

    // A handoff rejected with a note: still on record, not closed.
    let open = |key: &str| {
        let handoff = cli
            .run(&["--json", "handoff", "open", key, "--to", "bo", "--kind", "transfer", "--reason", "take it"])
            .ok()
            .json();
        handoff["id"].as_i64().unwrap()
    };
    let rejected = open("MC-1");
    let answer = cli.run(&["--json", "handoff", "reject", &rejected.to_string(), "--note", "not mine"]).ok().json();
    assert_eq!((answer["state"].as_str(), answer["resolution"].as_str()), (Some("rejected"), Some("not mine")));
    let stored =
        row(&db, "SELECT state, resolution, closed_at IS NULL, version FROM handoff WHERE id = $1", &rejected).await;
    assert_eq!(stored.get::<_, String>(0), "rejected");
    assert_eq!(stored.get::<_, String>(1), "not mine");
    assert!(stored.get::<_, bool>(2), "a rejected handoff can still be resolved: it is not closed");
    assert_eq!(stored.get::<_, i32>(3), 2);
    let task = cli.run(&["--json", "task", "show", "MC-1"]).ok().json();
    assert_eq!(task["task"]["assignee"], "ana", "a rejected transfer leaves the assignee");

    // A handoff cancelled by the sender: closed, and listed only with --all.
    let cancelled = open("MC-3");
    let answer = cli.run(&["--json", "handoff", "cancel", &cancelled.to_string()]).ok().json();
    assert_eq!(answer["state"], "cancelled");
    assert!(answer["closed_at"].is_string());
    let stored = row(&db, "SELECT state, closed_at IS NOT NULL FROM handoff WHERE id = $1", &cancelled).await;
    assert_eq!(stored.get::<_, String>(0), "cancelled");
    assert!(stored.get::<_, bool>(1), "cancelling closes it");
    let ids = |args: &[&str]| -> Vec<i64> {
        let listed = cli.run(args).ok().json();
        listed.as_array().unwrap().iter().map(|h| h["id"].as_i64().unwrap()).collect()
    };
    assert!(ids(&["--json", "handoff", "list"]).is_empty(), "by default only open and accepted ones");
    assert_eq!(ids(&["--json", "handoff", "list", "--state", "rejected"]), [rejected]);
    assert_eq!(ids(&["--json", "handoff", "list", "--all"]), [rejected, cancelled]);
    let again = cli.run(&["handoff", "cancel", &cancelled.to_string()]);
    assert_eq!(again.code, 3, "a cancelled handoff stays cancelled: {}", again.stderr);
    let verbs: Vec<String> = db
        .client()
        .await
        .query("SELECT action FROM audit_entry WHERE entity_kind = 'handoff' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(verbs, ["handoff.open", "handoff.reject", "handoff.open", "handoff.cancel"]);

    // `audit list --since`: exactly the entries at or after that time.
    let all = cli.run(&["--json", "audit", "list", "--limit", "1000"]).ok().json();
    let all = all.as_array().unwrap();
    let reject_entry = all.iter().find(|e| e["action"] == "handoff.reject").expect("the reject is audited");
    let since = reject_entry["at"].as_str().unwrap();
    let recent = cli.run(&["--json", "audit", "list", "--since", since, "--limit", "1000"]).ok().json();
    let recent: Vec<i64> = recent.as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let at = time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).unwrap();
    let expected: Vec<i64> = db
        .client()
        .await
        .query(
            "SELECT id FROM audit_entry WHERE project_id = (SELECT id FROM project WHERE key = 'MC') AND at >= $1
             ORDER BY id DESC",
            &[&at],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(recent, expected);
    assert!(recent.contains(&reject_entry["id"].as_i64().unwrap()));
    assert!(recent.len() >= 3 && recent.len() < all.len(), "{} of {}", recent.len(), all.len());
    let spans = cli.run(&["--json", "audit", "list", "--since", "1h", "--limit", "1000"]).ok().json();
    assert_eq!(spans.as_array().unwrap().len(), all.len(), "a span counts back from now");
    let future = cli.run(&["--json", "audit", "list", "--since", "2999-01-01"]).ok().json();
    assert_eq!(future, serde_json::json!([]));
    let bad = cli.run(&["audit", "list", "--since", "last tuesday"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);

    // `connection remove`: refused while it maps objects, unless forced.
    cli.run(&["connection", "add", "github", "--key", "gh", "--url", "https://api.github.com", "--repo", "acme/shop"])
        .ok();
    cli.run(&["connection", "add", "gitlab", "--key", "gl", "--url", "https://gitlab.com", "--repo", "acme/shop"]).ok();
    let store = db.store().await;
    let task_id = store.task_by_key("MC-1").await.unwrap().id;
    let project_id = store.project_by_key("MC").await.unwrap().id;
    let mapping = mission_control::store::integrations::NewMapping {
        connection: "gh".into(),
        local_kind: mission_control::domain::LocalKind::Task,
        local_id: task_id,
        external_id: "4711".into(),
        external_key: Some("#12".into()),
        url: None,
    };
    store.create_mapping(&common::actor("sync"), project_id, mapping).await.unwrap();
    let refused = cli.run(&["connection", "remove", "gh"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("still maps 1 object"), "{}", refused.stderr);
    assert_eq!(db.count("integration_connection").await, 2, "nothing removed");

    let removed = cli.run(&["--json", "connection", "remove", "gl"]).ok().json();
    assert_eq!((removed["key"].as_str(), removed["provider"].as_str()), (Some("gl"), Some("gitlab")));
    let said = cli.run(&["connection", "remove", "gh", "--force"]).ok().stdout;
    assert_eq!(said.trim(), "removed connection gh");
    assert_eq!(db.count("integration_connection").await, 0);
    assert_eq!(db.count("external_mapping").await, 0, "--force takes the mappings with it");
    assert_eq!(cli.run(&["--json", "connection", "list"]).ok().json(), serde_json::json!([]));
    let entry = row(
        &db,
        "SELECT actor, before->>'mappings' FROM audit_entry WHERE action = 'connection.remove' AND entity_key = $1",
        &"gh",
    )
    .await;
    assert_eq!(entry.get::<_, String>(0), "tester");
    assert_eq!(entry.get::<_, Option<String>>(1).as_deref(), Some("1"), "the audit says what went with it");
    let gone = cli.run(&["connection", "remove", "gh"]);
    assert_eq!(gone.code, 4, "{}", gone.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "MC", "--name", "Mission"]).ok();
    cli.run(&["task", "create", "--title", "existing"]).ok();
    let before = snapshot_counts(&db).await;

    let long_title = "x".repeat(100_000);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["task", "create", "--title", ""], 2, "title is empty"),
        (vec!["task", "create", "--title", "   "], 2, "title is empty"),
        (vec!["task", "create", "--title", &long_title], 2, "limit is 500"),
        (vec!["task", "create", "--title", "x", "--lane", "Nowhere"], 4, "lane Nowhere not found"),
        (vec!["--project", "NOPE", "task", "create", "--title", "x"], 4, "project NOPE not found"),
        (vec!["--project", "n0pe!", "task", "list"], 2, "invalid project key"),
        (vec!["task", "create", "--title", "x", "--priority", "critical"], 2, "invalid priority"),
        (vec!["task", "move", "MC-", "Done"], 2, "invalid task key"),
        (vec!["task", "move", "-1", "Done"], 2, "invalid task key"),
        (vec!["task", "move", "mc-1'; drop table task; --", "Done"], 2, "invalid task key"),
        (vec!["task", "move", "MC-99", "Done"], 4, "task MC-99 not found"),
        (vec!["task", "show", "MC-0"], 2, "invalid task key"),
        (vec!["task", "create", "--title", "x", "--due", "someday"], 2, "invalid date"),
        (vec!["agent", "create", "Bad Handle", "--name", "x", "--kind", "human"], 2, "invalid agent handle"),
        (vec!["agent", "create", "ok", "--name", "x", "--kind", "robot"], 2, "invalid agent kind"),
        (
            vec!["handoff", "open", "MC-1", "--to", "ghost", "--kind", "blocked", "--reason", "r"],
            4,
            "agent @ghost not found",
        ),
        (vec!["page", "create", "Not A Slug", "--title", "x"], 2, "invalid page slug"),
        (
            vec!["connection", "add", "github", "--key", "gh", "--url", "https://x", "--token-ref", "ghp_secret123456"],
            2,
            "invalid secret reference",
        ),
        (vec!["connection", "add", "github", "--key", "gh", "--url", "ftp://x"], 2, "invalid base URL"),
        (vec!["task", "frobnicate"], 2, ""),
    ];
    for (args, code, message) in &cases {
        let run = cli.run(args);
        let shown: Vec<&str> = args.iter().map(|a| if a.len() > 40 { "<long>" } else { a }).collect();
        assert_eq!(run.code, *code, "{shown:?}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{shown:?}: stderr was {:?}", run.stderr);
        assert!(run.stdout.is_empty(), "{shown:?}: nothing on stdout");
        if *code != 2 || !message.is_empty() {
            let first_line = run.stderr.lines().next().unwrap_or("");
            assert!(first_line.starts_with("error"), "{shown:?}: {:?}", run.stderr);
        }
        assert!(!run.stderr.contains("ghp_secret"), "secrets are never echoed");
    }
    // Errors from mctl itself are one line.
    let one = cli.run(&["task", "move", "MC-99", "Done"]);
    assert_eq!(one.stderr.trim_end().lines().count(), 1, "{}", one.stderr);

    // A config file with a syntax error.
    std::fs::create_dir_all(cli.home.path().join("config")).unwrap();
    std::fs::write(cli.home.path().join("config/config.toml"), "project = \"MC\"\ndatabase_url = [\n").unwrap();
    let run = cli.run(&["task", "create", "--title", "x"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("config.toml: line 2"), "{}", run.stderr);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    std::fs::write(cli.home.path().join("config/config.toml"), "projcet = \"MC\"\n").unwrap();
    let run = cli.run(&["task", "list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("projcet"), "unknown keys are named: {}", run.stderr);
    std::fs::remove_file(cli.home.path().join("config/config.toml")).unwrap();

    assert_eq!(snapshot_counts(&db).await, before, "the database is unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_megabyte_title_is_refused_by_the_repository() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&common::actor("ana"), "MC", "Mission", "").await.unwrap();
    let before = snapshot_counts(&db).await;
    let huge = mission_control::store::tasks::NewTask { title: "é".repeat(5 * 1024 * 1024), ..Default::default() };
    let err = store.create_task(&common::actor("ana"), project.id, huge).await.unwrap_err();
    assert!(err.to_string().contains("limit is 500"), "{err}");
    assert_eq!(snapshot_counts(&db).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_selection_and_seeding() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    let none = cli.run(&["task", "list"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no projects yet"), "{}", none.stderr);
    cli.run(&["seed", "demo"]).ok();
    // With one project, it is the default.
    let tasks = cli.run(&["--json", "task", "list"]).ok().json();
    assert!(tasks.as_array().unwrap().len() >= 60);
    let again = cli.run(&["seed", "demo"]).ok();
    assert!(again.stdout.contains("already there"));
    let load = cli.run(&["--json", "--project", "LOAD", "seed", "load", "--tasks", "2000"]).ok().json();
    assert_eq!(load["first_key"], "LOAD-1");
    assert_eq!(load["last_key"], "LOAD-2000");
    let several = cli.run(&["task", "list"]);
    assert_eq!(several.code, 2);
    assert!(several.stderr.contains("DEMO, LOAD"), "{}", several.stderr);
    let lanes = cli.run(&["--json", "--project", "LOAD", "lane", "list"]).ok().json();
    let total: i64 = lanes.as_array().unwrap().iter().map(|l| l["open_count"].as_i64().unwrap()).sum();
    assert_eq!(total, 2000, "the bulk load keeps lane counts exact");
    // Keys continue after a load.
    let next = cli.run(&["--project", "LOAD", "task", "create", "--title", "after the load"]).ok().stdout;
    assert_eq!(next.trim(), "LOAD-2001");
    let board = cli.run(&["--json", "demo"]).ok().json();
    assert_eq!(board["project"]["key"], "DEMO");
    assert_eq!(board["board"].as_array().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tail_follow_prints_changes_as_they_happen() {
    use std::io::{BufRead, BufReader};
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["project", "create", "MC", "--name", "Mission"]).ok();
    let mut child = cli
        .command()
        .args(["--json", "audit", "tail", "-n", "1", "--follow"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["action"], "project.create");
    // Changes made elsewhere arrive through LISTEN/NOTIFY.
    cli.run(&["task", "create", "--title", "watched"]).ok();
    cli.run(&["task", "move", "MC-1", "Done"]).ok();
    let reader = std::thread::spawn(move || {
        let a: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let b: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        (a, b)
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    let (a, b) = reader.join().expect("the tail printed both changes within 10 s");
    assert_eq!(a["action"], "task.create");
    assert_eq!(b["action"], "task.move");
    assert_eq!(b["entity_key"], "MC-1");
}
