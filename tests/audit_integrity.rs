//! The database as the authority: it records who wrote each audit entry
//! (`session_user`, whatever the client claims); a hash chain it computes
//! makes an entry changed or removed afterwards — even by a superuser with
//! the triggers off — visible to `mctl audit verify`; and with `mctl db
//! setup-roles`, PostgreSQL itself refuses what a role may not do.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::{Cli, TestDb, actor};
use mission_control::store::tasks::NewTask;

fn task(title: &str) -> NewTask {
    NewTask { title: title.into(), ..NewTask::default() }
}

async fn project_with_history(db: &TestDb) -> i64 {
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "AUD", "Audited", "").await.unwrap();
    for n in 0..5 {
        store.create_task(&actor("ana"), project.id, task(&format!("Task {n}"))).await.unwrap();
    }
    project.id
}

#[tokio::test]
async fn every_entry_names_the_role_that_wrote_it_whatever_the_client_sends() {
    let db = TestDb::new().await;
    let project = project_with_history(&db).await;
    let client = db.client().await;
    let role: String = client.query_one("SELECT session_user::text", &[]).await.unwrap().get(0);
    let roles: Vec<(String, Option<String>)> = client
        .query("SELECT DISTINCT actor, db_role FROM audit_entry WHERE project_id = $1 ORDER BY 1", &[&project])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(roles, [("ana".to_string(), Some(role.clone())), ("ops".to_string(), Some(role.clone()))]);
    // A forged row claiming another role gets the real one.
    client
        .execute(
            "INSERT INTO audit_entry (project_id, actor, source, action, entity_kind, correlation_id, db_role)
             VALUES ($1, 'ceo', 'cli', 'task.delete', 'task', gen_random_uuid(), 'ceo')",
            &[&project],
        )
        .await
        .unwrap();
    let forged: String =
        client.query_one("SELECT db_role FROM audit_entry WHERE actor = 'ceo'", &[]).await.unwrap().get(0);
    assert_eq!(forged, role);
}

#[tokio::test]
async fn verify_names_an_edited_entry_a_removed_one_and_a_cut_tail() {
    let db = TestDb::new().await;
    let project = project_with_history(&db).await;
    let cli = Cli::new(&db);
    let verify = || cli.run(&["--project", "AUD", "--json", "audit", "verify"]);
    let intact = verify().ok().json();
    assert_eq!(intact["intact"], true);
    assert_eq!(intact["chains"][0]["entries"], db.count(&format!("audit_entry WHERE project_id = {project}")).await);

    let client = db.client().await;
    let ids: Vec<i64> = client
        .query("SELECT id FROM audit_entry WHERE project_id = $1 ORDER BY chain_seq", &[&project])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // A superuser turns the guard off and rewrites what an entry says.
    let tamper = |sql: String| {
        let client = &client;
        async move {
            client
                .batch_execute(&format!(
                    "ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_no_update; {sql};
                     ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_no_update;"
                ))
                .await
                .unwrap()
        }
    };
    tamper(format!("UPDATE audit_entry SET actor = 'nobody' WHERE id = {}", ids[2])).await;
    let run = verify();
    assert_eq!(run.code, 1, "{}", run.stderr);
    let chain = &run.json()["chains"][0];
    assert_eq!(chain["broken"]["entry_id"], ids[2], "{chain}");
    assert!(run.stderr.contains("changed after it was written"), "{}", run.stderr);
    let text = cli.run(&["--project", "AUD", "audit", "verify"]);
    assert!(
        text.stdout.contains(&format!("BROKEN at link 3: entry #{} does not match its hash", ids[2])),
        "{}",
        text.stdout
    );

    tamper(format!("UPDATE audit_entry SET actor = 'ana' WHERE id = {}", ids[2])).await;
    assert_eq!(verify().code, 0, "putting it back makes the chain whole again");

    // A removed entry leaves a gap named at the entry after it.
    tamper(format!("DELETE FROM audit_entry WHERE id = {}", ids[1])).await;
    let run = verify();
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["chains"][0]["broken"]["entry_id"], ids[2]);

    // The newest entry removed: the chain's head says it existed.
    let db2 = TestDb::new().await;
    let project2 = project_with_history(&db2).await;
    let client2 = db2.client().await;
    client2
        .batch_execute(&format!(
            "ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_no_update;
             DELETE FROM audit_entry WHERE id = (SELECT max(id) FROM audit_entry WHERE project_id = {project2});
             ALTER TABLE audit_entry ENABLE TRIGGER audit_entry_no_update;"
        ))
        .await
        .unwrap();
    let run = Cli::new(&db2).run(&["--project", "AUD", "--json", "audit", "verify"]);
    assert_eq!(run.code, 1);
    let broken = &run.json()["chains"][0]["broken"];
    assert_eq!(broken["entry_id"], serde_json::Value::Null);
    assert!(broken["reason"].as_str().unwrap().contains("newest entries were removed"), "{broken}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_never_fork_a_chain() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&actor("ops"), "AUD", "Audited", "").await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..15 {
                    store.create_task(&actor("ana"), project.id, task(&format!("w{w} t{n}"))).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let reports = store.verify_audit(Some(project.id)).await.unwrap();
    assert_eq!(reports[0].broken, None);
    assert_eq!(reports[0].entries, db.count(&format!("audit_entry WHERE project_id = {}", project.id)).await);
    assert!(reports[0].entries > 120);
}

/// A login role made for one test, dropped with it.
struct Login {
    name: String,
    admin: tokio_postgres::Client,
}

impl Login {
    async fn new(db: &TestDb, suffix: &str) -> Login {
        let name = format!("mctl_test_{}_{suffix}", fastrand::u32(..));
        let admin = db.client().await;
        admin.batch_execute(&format!("CREATE ROLE {name} LOGIN")).await.unwrap();
        Login { name, admin }
    }

    async fn connect(&self, db: &TestDb) -> tokio_postgres::Client {
        let mut config = db.config.clone();
        config.user(&self.name);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.expect("log in as the test role");
        tokio::spawn(connection);
        client
    }

    async fn drop_role(self) {
        self.admin.batch_execute(&format!("DROP ROLE {}", self.name)).await.unwrap();
    }
}

/// The SQLSTATE and message PostgreSQL refused `sql` with.
async fn refused(client: &tokio_postgres::Client, sql: &str) -> (String, String) {
    let error = client.batch_execute(sql).await.expect_err(sql);
    let db = error.as_db_error().unwrap_or_else(|| panic!("{sql}: {error}"));
    (db.code().code().to_string(), db.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_what_each_role_may_not_do() {
    let db = TestDb::new().await;
    let project = project_with_history(&db).await;
    let cli = Cli::new(&db);
    cli.run(&["db", "setup-roles"]).ok();
    cli.run(&["db", "setup-roles"]).ok(); // again: nothing changes, nothing fails
    let owner: String = db
        .client()
        .await
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'audit_entry'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "mctl_owner", "no login role owns the tables");

    let (viewer, operator) = (Login::new(&db, "v").await, Login::new(&db, "o").await);
    cli.run(&["db", "grant", &viewer.name, "--as", "viewer"]).ok();
    cli.run(&["db", "grant", &operator.name, "--as", "operator"]).ok();
    let missing = cli.run(&["db", "grant", "nobody_by_that_name", "--as", "viewer"]);
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(missing.stderr.contains("does not exist"), "{}", missing.stderr);

    // A viewer reads, and cannot write even with psql.
    let as_viewer = viewer.connect(&db).await;
    let tasks: i64 = as_viewer.query_one("SELECT count(*) FROM task", &[]).await.unwrap().get(0);
    assert_eq!(tasks, 5);
    assert_eq!(refused(&as_viewer, "UPDATE task SET title = 'mine'").await.0, "42501");
    assert_eq!(refused(&as_viewer, "DELETE FROM audit_entry").await.0, "42501");

    // An operator works through mctl; the log names its role, the client's name beside it.
    let operator_url = format!("{} user={}", db.url().replace("user=postgres", ""), operator.name);
    let mut command = cli.command();
    command.env("MC_DATABASE_URL", &operator_url).env("MC_OPERATOR", "ana");
    let created = common::run_from(
        command.args(["--project", "AUD", "task", "create", "--title", "Written as myself"]).output().unwrap(),
    );
    assert_eq!(created.code, 0, "{}{}", created.stderr, created.stdout);
    let status =
        common::run_from(cli.command().env("MC_DATABASE_URL", &operator_url).args(["db", "status"]).output().unwrap());
    assert!(status.stdout.contains(&format!("role {} (mctl_operator)", operator.name)), "{}", status.stdout);
    let (actor, role): (String, String) = db
        .client()
        .await
        .query_one(
            "SELECT actor, db_role FROM audit_entry WHERE project_id = $1 AND action = 'task.create' ORDER BY id DESC LIMIT 1",
            &[&project],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((actor.as_str(), role.as_str()), ("ana", operator.name.as_str()));

    // …and cannot rewrite history, switch the guard off, or move the chain's head.
    let as_operator = operator.connect(&db).await;
    let (code, message) = refused(&as_operator, "DELETE FROM audit_entry").await;
    assert_eq!(code, "42501");
    assert!(message.contains("permission denied for table audit_entry"), "{message}");
    for sql in [
        "ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_no_update",
        "DROP TABLE audit_entry",
        "CREATE OR REPLACE FUNCTION audit_entry_is_append_only() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'",
    ] {
        let (code, message) = refused(&as_operator, sql).await;
        assert_eq!(code, "42501", "{sql}: {message}");
        // Not the owner; and replacing a function first needs CREATE on the schema, which nobody got.
        assert!(
            message.contains("must be owner") || message.contains("permission denied for schema"),
            "{sql}: {message}"
        );
    }
    assert_eq!(refused(&as_operator, "UPDATE audit_chain SET seq = 0").await.0, "42501");
    assert_eq!(refused(&as_operator, "TRUNCATE audit_entry").await.0, "42501");
    // What a later migration makes (as mctl_owner) is granted like the rest.
    db.client()
        .await
        .batch_execute("SET ROLE mctl_owner; CREATE TABLE later_table (id int); RESET ROLE;")
        .await
        .unwrap();
    as_operator.batch_execute("INSERT INTO later_table VALUES (1)").await.unwrap();
    assert_eq!(refused(&as_viewer, "INSERT INTO later_table VALUES (2)").await.0, "42501");
    // The chain is whole after all of it.
    assert_eq!(cli.run(&["--project", "AUD", "audit", "verify"]).code, 0);

    drop((as_viewer, as_operator));
    viewer.drop_role().await;
    operator.drop_role().await;
}
