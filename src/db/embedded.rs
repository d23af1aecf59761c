//! The embedded local cluster: a private PostgreSQL that mctl initialises and
//! starts from the installed server binaries, so the first run needs no set-up.
//!
//! Layout under the cluster directory: `data/` (the cluster), `run/` (its Unix
//! socket; no TCP listener), `server.log`, and `.lock` (held while starting).
//! When mctl runs as root the cluster belongs to, and runs as, the `postgres`
//! OS user, since PostgreSQL refuses to run as root.

use crate::store::sql::Sql;
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Serialize;

use crate::error::{Error, Result};

const SUPERUSER: &str = "mctl";
const DATABASE: &str = "mctl";
const PORT: u16 = 5432;
const MIN_MAJOR: u32 = 14;
/// Unix socket paths are limited to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, Clone)]
pub struct EmbeddedCluster {
    root: PathBuf,
    bin_override: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ClusterState {
    NotInitialized,
    Stopped,
    Running { pid: Option<u32> },
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub directory: PathBuf,
    pub socket_dir: PathBuf,
    pub log_file: PathBuf,
    #[serde(flatten)]
    pub state: ClusterState,
    pub server_binaries: Option<PathBuf>,
    pub server_version: Option<String>,
}

/// The PostgreSQL server programs found on this machine.
#[derive(Debug, Clone)]
pub struct ServerBinaries {
    pub dir: PathBuf,
    pub version: String,
}

/// The OS account that owns the cluster when mctl runs as root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl EmbeddedCluster {
    pub fn new(root: &Path, bin_override: Option<PathBuf>) -> Self {
        let bin_override =
            bin_override.or_else(|| std::env::var_os("MC_PG_BIN").filter(|v| !v.is_empty()).map(PathBuf::from));
        EmbeddedCluster { root: absolute(root), bin_override }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// How to reach the cluster's `mctl` database over its socket.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config.host_path(self.socket_dir()).port(PORT).user(SUPERUSER).dbname(DATABASE);
        config
    }

    pub fn status(&self) -> Result<ClusterStatus> {
        let binaries = find_binaries(self.bin_override.as_deref()).ok();
        let state = if !self.data_dir().join("PG_VERSION").exists() {
            ClusterState::NotInitialized
        } else {
            match &binaries {
                Some(bin) => self.server_state(bin)?,
                None => match fs::read_to_string(self.data_dir().join("postmaster.pid")) {
                    Ok(pid) => ClusterState::Running { pid: pid.lines().next().and_then(|l| l.trim().parse().ok()) },
                    Err(_) => ClusterState::Stopped,
                },
            }
        };
        Ok(ClusterStatus {
            directory: self.root.clone(),
            socket_dir: self.socket_dir(),
            log_file: self.log_file(),
            state,
            server_binaries: binaries.as_ref().map(|b| b.dir.clone()),
            server_version: binaries.map(|b| b.version),
        })
    }

    /// Initialises the cluster if needed and starts it if it is not running.
    /// Several mctl processes may call this at once: a lock file serialises them.
    pub fn ensure_running(&self) -> Result<()> {
        let binaries = find_binaries(self.bin_override.as_deref())?;
        let run_as = run_as()?;
        self.prepare_directories(run_as)?;
        let _lock = self.lock()?;
        if !self.data_dir().join("PG_VERSION").exists() {
            self.initialise(&binaries, run_as)?;
        }
        if !matches!(self.server_state(&binaries)?, ClusterState::Running { .. }) {
            self.start_server(&binaries, run_as)?;
        }
        Ok(())
    }

    /// Stops the cluster. Returns false when it was not running.
    pub fn stop(&self) -> Result<bool> {
        let binaries = find_binaries(self.bin_override.as_deref())?;
        if !matches!(self.server_state(&binaries)?, ClusterState::Running { .. }) {
            return Ok(false);
        }
        let run_as = run_as()?;
        let output = self
            .command(&binaries.dir.join("pg_ctl"), run_as)
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .map_err(|e| Error::Database(format!("cannot run pg_ctl: {e}")))?;
        if !output.status.success() {
            return Err(Error::Database(format!("stopping the embedded cluster failed: {}", last_line(&output))));
        }
        Ok(true)
    }

    fn server_state(&self, binaries: &ServerBinaries) -> Result<ClusterState> {
        // pg_ctl refuses to run as root, even for `status`.
        let output = self
            .command(&binaries.dir.join("pg_ctl"), run_as()?)
            .arg("-D")
            .arg(self.data_dir())
            .arg("status")
            .output()
            .map_err(|e| Error::Database(format!("cannot run pg_ctl: {e}")))?;
        Ok(match output.status.code() {
            Some(0) => {
                let text = String::from_utf8_lossy(&output.stdout);
                let pid = text
                    .split("PID: ")
                    .nth(1)
                    .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().and_then(|n| n.parse().ok()));
                ClusterState::Running { pid }
            }
            Some(4) => ClusterState::NotInitialized,
            _ => ClusterState::Stopped,
        })
    }

    fn prepare_directories(&self, run_as: Option<RunAs>) -> Result<()> {
        let socket_path_len = self.socket_dir().join(format!(".s.PGSQL.{PORT}")).as_os_str().len();
        if socket_path_len > MAX_SOCKET_PATH {
            return Err(Error::Database(format!(
                "the embedded cluster directory {} is too deep for a Unix socket: set MC_DATA_DIR to a shorter path",
                self.root.display()
            )));
        }
        let cannot = |what: &Path, e: std::io::Error| {
            Error::Database(format!("cannot create {}: {e}; set MC_DATA_DIR to a writable directory", what.display()))
        };
        fs::create_dir_all(&self.root).map_err(|e| cannot(&self.root, e))?;
        fs::create_dir_all(self.socket_dir()).map_err(|e| cannot(&self.socket_dir(), e))?;
        for dir in [self.root.clone(), self.socket_dir()] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| cannot(&dir, e))?;
        }
        if let Some(owner) = run_as {
            for dir in [self.root.clone(), self.socket_dir()] {
                std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid)).map_err(|e| cannot(&dir, e))?;
            }
            // The postgres user must be able to walk down to the cluster directory.
            for ancestor in self.root.ancestors().skip(1) {
                let meta = fs::metadata(ancestor).map_err(|e| cannot(ancestor, e))?;
                let mode = meta.permissions().mode();
                use std::os::unix::fs::MetadataExt;
                let reachable = mode & 0o001 != 0
                    || (meta.uid() == owner.uid && mode & 0o100 != 0)
                    || (meta.gid() == owner.gid && mode & 0o010 != 0);
                if !reachable {
                    return Err(Error::Database(format!(
                        "the postgres user cannot enter {}: set MC_DATA_DIR to a directory it can reach, such as /var/lib/mission-control",
                        ancestor.display()
                    )));
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<fs::File> {
        let path = self.root.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::Database(format!("cannot open {}: {e}", path.display())))?;
        file.lock().map_err(|e| Error::Database(format!("cannot lock {}: {e}", path.display())))?;
        Ok(file)
    }

    fn initialise(&self, binaries: &ServerBinaries, run_as: Option<RunAs>) -> Result<()> {
        // initdb into a scratch directory and rename: an interrupted first run
        // never leaves a half-made cluster behind.
        let scratch = self.root.join("data.init");
        if scratch.exists() {
            fs::remove_dir_all(&scratch)
                .map_err(|e| Error::Database(format!("cannot clear {}: {e}", scratch.display())))?;
        }
        let output = self
            .command(&binaries.dir.join("initdb"), run_as)
            .arg("-D")
            .arg(&scratch)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-instructions"])
            .output()
            .map_err(|e| Error::Database(format!("cannot run initdb: {e}")))?;
        if !output.status.success() {
            let _ = fs::remove_dir_all(&scratch);
            return Err(Error::Database(format!("initdb failed: {}", last_line(&output))));
        }
        let settings = format!(
            "\n# Written by mctl: a private cluster reachable only through its socket.\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n\
             max_connections = 100\n",
            self.socket_dir().display().to_string().replace('\'', "''")
        );
        let conf = scratch.join("postgresql.conf");
        let mut text =
            fs::read_to_string(&conf).map_err(|e| Error::Database(format!("cannot read {}: {e}", conf.display())))?;
        text.push_str(&settings);
        fs::write(&conf, text).map_err(|e| Error::Database(format!("cannot write {}: {e}", conf.display())))?;
        fs::rename(&scratch, self.data_dir())
            .map_err(|e| Error::Database(format!("cannot move the new cluster into place: {e}")))?;
        tracing::info!(dir = %self.data_dir().display(), version = %binaries.version, "initialised the embedded cluster");
        Ok(())
    }

    fn start_server(&self, binaries: &ServerBinaries, run_as: Option<RunAs>) -> Result<()> {
        if let Some(owner) = run_as {
            // pg_ctl writes the server log as the postgres user.
            if !self.log_file().exists() {
                fs::write(self.log_file(), b"")?;
            }
            std::os::unix::fs::chown(self.log_file(), Some(owner.uid), Some(owner.gid))?;
        }
        let output = self
            .command(&binaries.dir.join("pg_ctl"), run_as)
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|e| Error::Database(format!("cannot run pg_ctl: {e}")))?;
        if !output.status.success() {
            let log = fs::read_to_string(self.log_file()).unwrap_or_default();
            let reason = log
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| last_line(&output));
            return Err(Error::Database(format!(
                "the embedded cluster did not start: {reason} (log: {})",
                self.log_file().display()
            )));
        }
        tracing::info!(dir = %self.data_dir().display(), "started the embedded cluster");
        Ok(())
    }

    fn command(&self, program: &Path, run_as: Option<RunAs>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.root).env("LC_ALL", "C");
        if let Some(owner) = run_as {
            command.uid(owner.uid).gid(owner.gid);
        }
        command
    }
}

/// Creates the `mctl` database inside a freshly started cluster.
pub async fn ensure_database(pg: &tokio_postgres::Config) -> Result<()> {
    let mut admin = pg.clone();
    admin.dbname("postgres");
    let (client, connection) = admin
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::Database(format!("cannot reach the embedded cluster: {e}")))?;
    let driver = tokio::spawn(connection);
    let name = pg.get_dbname().unwrap_or(DATABASE).to_string();
    let exists = client
        .fetch_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(crate::store::StoreError::from)?
        .is_some();
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        if let Err(e) = client.batch_execute(&format!("CREATE DATABASE {quoted}")).await {
            // Another mctl may have created it a moment ago.
            if e.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(crate::store::StoreError::from(e).into());
            }
        }
    }
    drop(client);
    let _ = driver.await;
    Ok(())
}

/// Finds `initdb` and `pg_ctl` (PostgreSQL 14 or newer): the configured
/// directory, then `PATH`, then the usual install locations.
pub fn find_binaries(configured: Option<&Path>) -> Result<ServerBinaries> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = configured {
        if !has_both(dir) {
            return Err(Error::Database(format!(
                "no initdb and pg_ctl in {}: point pg_bin_dir (or MC_PG_BIN) at PostgreSQL's bin directory",
                dir.display()
            )));
        }
        candidates.push(dir.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    for pattern in ["/usr/lib/postgresql", "/usr/local/opt", "/opt/homebrew/opt"] {
        let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir(pattern)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().to_string();
                let version = name.trim_start_matches("postgresql@").split('.').next()?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    }
    candidates.push(PathBuf::from("/usr/local/pgsql/bin"));
    let mut too_old = None;
    for dir in candidates.iter().filter(|d| has_both(d)) {
        let Some((version, major)) = server_version(dir) else { continue };
        if major >= MIN_MAJOR {
            return Ok(ServerBinaries { dir: dir.clone(), version });
        }
        too_old.get_or_insert(version);
    }
    Err(Error::Database(match too_old {
        Some(version) => format!(
            "the PostgreSQL server binaries found are version {version}: install PostgreSQL {MIN_MAJOR} or newer, or pass --database-url"
        ),
        None => format!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL {MIN_MAJOR}+ (e.g. `apt install postgresql`) or pass --database-url"
        ),
    }))
}

fn server_version(dir: &Path) -> Option<(String, u32)> {
    let output = Command::new(dir.join("pg_ctl")).arg("--version").output().ok()?;
    // "pg_ctl (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split("(PostgreSQL)").nth(1)?.split_whitespace().next()?.to_string();
    let major = version.split(['.', 'b', 'r']).next()?.parse().ok()?;
    Some((version, major))
}

/// Root hands the cluster to the `postgres` OS user; anyone else runs it as themselves.
fn run_as() -> Result<Option<RunAs>> {
    if !super::running_as_root() {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("static name");
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the
    // two integers out immediately and never keep the pointer.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(Error::Database(
            "running as root needs a `postgres` OS user to own the embedded cluster: create it, run mctl as another user, or pass --database-url".into(),
        ));
    }
    // SAFETY: checked for null above.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

fn last_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_string());
    last(&stderr).or_else(|| last(&stdout)).unwrap_or_else(|| "no output".to_string())
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
    }
}
