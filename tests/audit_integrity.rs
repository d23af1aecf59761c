//! The audit log as evidence: the database records who wrote each entry
//! (`session_user`, whatever the client claims), and a hash chain computed
//! in the database makes an entry changed or removed afterwards — even by a
//! superuser with the triggers off — visible to `mctl audit verify`.

mod common;

use common::{Cli, TestDb, actor};
use mission_control::store::tasks::NewTask;

fn task(title: &str) -> NewTask {
    NewTask {
        title: title.into(),
        description: String::new(),
        lane: None,
        priority: None,
        assignee: None,
        labels: vec![],
        due_on: None,
        cycle: None,
        modules: vec![],
    }
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
