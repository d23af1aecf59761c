//! The zero-configuration default: with no database URL anywhere, mctl
//! creates a private PostgreSQL cluster in its data directory, and reuses it.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Run, run_from};

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        // Readable by others: when the tests run as root, the cluster runs as `postgres`.
        let dir = tempfile::Builder::new()
            .prefix("mctl-home")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .unwrap();
        Home { dir }
    }

    fn cluster(&self) -> PathBuf {
        self.dir.path().join("data/postgres")
    }

    fn mctl(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_mctl"))
            .args(args)
            .env_remove("MC_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .env_remove("MC_PROJECT")
            .env_remove("MC_PG_BIN")
            .env("MC_CONFIG_DIR", self.dir.path().join("config"))
            .env("MC_DATA_DIR", self.dir.path().join("data"))
            .env("MC_STATE_DIR", self.dir.path().join("state"))
            .output()
            .unwrap();
        run_from(output)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        // Never leave a postgres running behind a failed test.
        let _ = self.mctl(&["db", "stop"]);
    }
}

fn postmaster_pid(cluster: &Path) -> Option<String> {
    std::fs::read_to_string(cluster.join("data/postmaster.pid")).ok().and_then(|s| s.lines().next().map(str::to_string))
}

#[test]
fn first_run_creates_the_cluster_and_later_runs_reuse_it() {
    let home = Home::new();
    assert!(!home.cluster().exists());

    let first = home.mctl(&["--json", "project", "list"]).ok();
    assert_eq!(first.json(), serde_json::json!([]));
    assert!(home.cluster().join("data/PG_VERSION").is_file(), "the cluster was initialised");
    let pid = postmaster_pid(&home.cluster()).expect("the server is running");
    let conf = std::fs::read_to_string(home.cluster().join("data/postgresql.conf")).unwrap();
    assert!(conf.contains("listen_addresses = ''"), "socket only, no TCP listener");

    home.mctl(&["project", "create", "OPS", "--name", "Operations"]).ok();
    let second = home.mctl(&["--json", "project", "list"]).ok().json();
    assert_eq!(second[0]["key"], "OPS");
    assert_eq!(postmaster_pid(&home.cluster()).as_deref(), Some(pid.as_str()), "the running server is reused");

    let status = home.mctl(&["--json", "db", "status"]).ok().json();
    assert_eq!(status["source"], "embedded");
    assert_eq!(status["embedded"]["state"], "running");
    assert_eq!(status["reachable"], true);

    home.mctl(&["db", "stop"]).ok();
    let status = home.mctl(&["--json", "db", "status"]).ok().json();
    assert_eq!(status["embedded"]["state"], "stopped");
    assert_eq!(postmaster_pid(&home.cluster()), None, "the server is gone");

    // `db start` brings it back on the same data; a second start changes nothing.
    let started = home.mctl(&["--json", "db", "start"]).ok().json();
    assert_eq!(started["state"], "running");
    let restarted = postmaster_pid(&home.cluster()).expect("the server is running again");
    let status = home.mctl(&["--json", "db", "status"]).ok().json();
    assert_eq!(status["embedded"]["state"], "running");
    assert_eq!(status["reachable"], true);
    let said = home.mctl(&["db", "start"]).ok().stdout;
    assert!(said.contains("embedded cluster running in"), "{said}");
    assert_eq!(postmaster_pid(&home.cluster()).as_deref(), Some(restarted.as_str()), "already running: kept");
    let after_start = home.mctl(&["--json", "project", "list"]).ok().json();
    assert_eq!(after_start[0]["key"], "OPS");

    home.mctl(&["db", "stop"]).ok();
    // The next command starts it again, on the same data.
    let again = home.mctl(&["--json", "project", "list"]).ok().json();
    assert_eq!(again[0]["key"], "OPS");
}

#[test]
fn a_missing_server_binary_is_one_clear_line() {
    let home = Home::new();
    let output = Command::new(env!("CARGO_BIN_EXE_mctl"))
        .args(["project", "list"])
        .env_remove("MC_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env("MC_PG_BIN", home.dir.path().join("no-postgres-here"))
        .env("MC_CONFIG_DIR", home.dir.path().join("config"))
        .env("MC_DATA_DIR", home.dir.path().join("data"))
        .env("MC_STATE_DIR", home.dir.path().join("state"))
        .output()
        .unwrap();
    let run = run_from(output);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim_end().lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("no initdb and pg_ctl in"), "{}", run.stderr);
    assert!(!home.cluster().join("data").exists(), "nothing was initialised");
}
