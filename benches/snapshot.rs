//! Snapshot create and restore on a 100,000-task project with handoffs and
//! mappings (`cargo bench --bench snapshot`), next to pg_dump / pg_restore of
//! the same rows (every table but the audit log and the snapshots). Each figure
//! is the median of three runs.
//!
//! Restore is measured three ways: after 10,000 tasks were moved, after every
//! task title was overwritten, and into a project whose tasks, handoffs and
//! mappings were all deleted (everything re-created).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use mission_control::domain::Source;
use mission_control::snapshot::{Reason, RestoreOptions};
use mission_control::store::{Actor, Store};
use tokio_postgres::config::Host;

const HANDOFFS: i64 = 10_000;
const MAPPINGS: i64 = 30_000;

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn add_handoffs_and_mappings(store: &Store, project_id: i64) {
    let client = store.client().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO handoff (project_id, task_id, kind, from_agent_id, to_agent_id, reason, opened_by)
             SELECT t.project_id, t.id, CASE WHEN t.id % 2 = 0 THEN 'blocked' ELSE 'transfer' END,
                    (SELECT min(id) FROM agent), (SELECT max(id) FROM agent), 'bench handoff ' || t.id, 'bench'
             FROM task t WHERE t.project_id = {project_id} ORDER BY t.id LIMIT {HANDOFFS};
             INSERT INTO integration_connection (project_id, connection_key, provider, base_url, secret_ref)
             VALUES ({project_id}, 'bench-github', 'github', 'https://api.github.com', 'env:GITHUB_TOKEN');
             INSERT INTO external_mapping (project_id, connection_id, local_kind, local_id, external_id, external_key, url, sync_state)
             SELECT t.project_id, (SELECT id FROM integration_connection WHERE connection_key = 'bench-github'), 'task', t.id,
                    (100000 + t.id)::text, '#' || t.number, 'https://github.com/acme/shop/issues/' || t.number, 'in_sync'
             FROM task t WHERE t.project_id = {project_id} ORDER BY t.id LIMIT {MAPPINGS};"
        ))
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
}

fn pg_args(config: &tokio_postgres::Config) -> Vec<String> {
    let host = match &config.get_hosts()[0] {
        Host::Tcp(h) => h.clone(),
        Host::Unix(p) => p.display().to_string(),
    };
    vec![
        "-h".into(),
        host,
        "-p".into(),
        config.get_ports().first().copied().unwrap_or(5432).to_string(),
        "-U".into(),
        config.get_user().unwrap_or("postgres").to_string(),
    ]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (store, project_id) = support::project_with_tasks("mctl_bench_snapshot").await;
        add_handoffs_and_mappings(&store, project_id).await;
        let actor = Actor::new("bench", Source::Cli);
        let client = store.client().await.unwrap();

        let mut create = Vec::new();
        let mut snapshot = None;
        for _ in 0..3 {
            let started = Instant::now();
            snapshot = Some(store.create_snapshot(&actor, project_id, "bench", Reason::Manual).await.unwrap());
            create.push(started.elapsed());
        }
        let snapshot = snapshot.unwrap();
        println!(
            "snapshot create: {} (runs {:?}); size {:.2} MB compressed; counts {}",
            secs(support::median(create.clone())),
            create.iter().map(|d| secs(*d)).collect::<Vec<_>>(),
            snapshot.size_bytes as f64 / 1_048_576.0,
            snapshot.counts
        );

        let scenarios: [(&str, &str); 3] = [
            (
                "10,000 tasks moved",
                "UPDATE task SET lane_id = (SELECT id FROM lane WHERE project_id = task.project_id AND name = 'Done'),
                        rank = 100000000 + id
                 WHERE id IN (SELECT id FROM task WHERE lane_id <> (SELECT id FROM lane WHERE name = 'Done' LIMIT 1)
                              AND NOT archived ORDER BY id LIMIT 10000)",
            ),
            ("every title overwritten", "UPDATE task SET title = 'overwritten ' || id"),
            (
                "tasks, handoffs and mappings deleted",
                "DELETE FROM external_mapping; DELETE FROM handoff; DELETE FROM task_module; DELETE FROM release_task; DELETE FROM task",
            ),
        ];
        // The last scenario re-creates every row: that one compares with pg_restore.
        let mut full_restore = Duration::ZERO;
        for (name, damage) in scenarios {
            let mut runs = Vec::new();
            let mut restored = 0;
            for run in 0..3 {
                client.batch_execute(damage).await.unwrap();
                let started = Instant::now();
                let steps = std::sync::Mutex::new(Vec::new());
                let progress = |step: &str| steps.lock().unwrap().push((step.to_string(), started.elapsed()));
                let report = store.restore_snapshot(&actor, snapshot.id, &RestoreOptions::default(), &progress).await.unwrap();
                runs.push(started.elapsed());
                if run == 0 {
                    // Where the time goes: each step's start, from the restore's start.
                    let steps = steps.lock().unwrap();
                    let timeline: Vec<String> = steps.iter().map(|(s, t)| format!("{:.2}s {s}", t.as_secs_f64())).collect();
                    println!("  steps ({name}): {}", timeline.join(" | "));
                }
                restored = report.kinds.values().map(|c| c.restored + c.created).sum::<usize>();
            }
            full_restore = support::median(runs.clone());
            println!(
                "restore after {name}: {} including the pre-restore snapshot ({restored} rows written; runs {:?})",
                secs(support::median(runs.clone())),
                runs.iter().map(|d| secs(*d)).collect::<Vec<_>>()
            );
        }

        // The same rows through pg_dump and pg_restore.
        let config = store.pg_config().clone();
        let args = pg_args(&config);
        let file = std::env::temp_dir().join(format!("mctl-bench-{}.dump", std::process::id()));
        let mut dumps = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let status = Command::new("pg_dump")
                .args(&args)
                // The rows a snapshot holds: everything but the audit log and the snapshots themselves.
                .args(["-Fc", "-T", "audit_entry", "-T", "snapshot", "-d", "mctl_bench_snapshot", "-f"])
                .arg(&file)
                .status()
                .expect("pg_dump is needed for the comparison");
            assert!(status.success());
            dumps.push(started.elapsed());
        }
        let dump_size = std::fs::metadata(&file).unwrap().len();
        let admin = {
            let (c, conn) = support::server().connect(tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            c
        };
        let mut restores = Vec::new();
        for _ in 0..3 {
            admin.batch_execute("DROP DATABASE IF EXISTS mctl_bench_pgrestore WITH (FORCE)").await.unwrap();
            admin.batch_execute("CREATE DATABASE mctl_bench_pgrestore").await.unwrap();
            let started = Instant::now();
            let status = Command::new("pg_restore").args(&args).args(["-d", "mctl_bench_pgrestore"]).arg(&file).status().unwrap();
            assert!(status.success());
            restores.push(started.elapsed());
        }
        let _ = std::fs::remove_file(&file);
        println!(
            "pg_dump -Fc (all but audit and snapshots): {} ({:.2} MB); pg_restore into an empty database: {}",
            secs(support::median(dumps.clone())),
            dump_size as f64 / 1_048_576.0,
            secs(support::median(restores.clone()))
        );
        println!(
            "ratio snapshot create / pg_dump: {:.2}; restore after deletion / pg_restore: {:.2}",
            support::median(create).as_secs_f64() / support::median(dumps).as_secs_f64(),
            full_restore.as_secs_f64() / support::median(restores).as_secs_f64()
        );
    });
}
