//! Where mctl keeps things, and the optional `config.toml`.
//!
//! Every path can be moved with an environment variable, which is how tests
//! and packagers keep runs apart: `MC_CONFIG` (the file), `MC_CONFIG_DIR`,
//! `MC_DATA_DIR` (the embedded cluster lives under it) and `MC_STATE_DIR` (logs).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The settings `config.toml` may carry. Unknown keys are refused so a typo
/// is reported instead of silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PostgreSQL connection string (URL or key=value form).
    pub database_url: Option<String>,
    /// Default project key for commands and the console.
    pub project: Option<String>,
    /// Name recorded as the actor in the audit log (default: the OS user).
    pub operator: Option<String>,
    /// Open every session read-only.
    #[serde(default)]
    pub read_only: bool,
    /// Where the embedded PostgreSQL cluster and other data live.
    pub data_dir: Option<PathBuf>,
    /// Directory holding `initdb` and `pg_ctl`, when they are not found on their own.
    pub pg_bin_dir: Option<PathBuf>,
    /// Connections in the pool (default 8).
    pub pool_size: Option<usize>,
    /// Where LISTEN and migrations go when `database_url` is a transaction
    /// pooler: a direct or session-pooled URL, or `poll` for none at all.
    pub listen_url: Option<String>,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub dispatch: DispatchConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    /// `[agents.HANDLE]`: what each agent may do through `mctl mcp`.
    #[serde(default)]
    pub agents: std::collections::BTreeMap<String, crate::mcp::policy::AgentPolicy>,
}

/// The `[console]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Mouse support (click to select, wheel to scroll). Off by default so
    /// the terminal's own text selection keeps working.
    #[serde(default)]
    pub mouse: bool,
    /// `dark` (default), `light` or `mono`. `NO_COLOR` always means mono.
    pub theme: Option<String>,
    /// Days without a change after which an in-progress task is a risk (default 7).
    pub stale_days: Option<i64>,
    /// Bulk actions over this many tasks take a snapshot first (default 20; 0 never).
    pub snapshot_before_bulk: Option<usize>,
}

/// The `[dispatch]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Minutes without a heartbeat after which an agent is marked offline
    /// (default 15, at most a week).
    pub offline_after_minutes: Option<u64>,
}

impl DispatchConfig {
    pub const DEFAULT_OFFLINE_AFTER_MINUTES: u64 = 15;
    const MAX_OFFLINE_AFTER_MINUTES: u64 = 7 * 24 * 60;

    /// How long an agent may stay silent before it is marked offline.
    pub fn offline_after(&self) -> std::time::Duration {
        let minutes = self.offline_after_minutes.unwrap_or(Self::DEFAULT_OFFLINE_AFTER_MINUTES);
        std::time::Duration::from_secs(minutes * 60)
    }

    fn check(&self) -> std::result::Result<(), String> {
        match self.offline_after_minutes {
            Some(m) if !(1..=Self::MAX_OFFLINE_AFTER_MINUTES).contains(&m) => Err(format!(
                "[dispatch] offline_after_minutes = {m}: use a number of minutes from 1 to {}; fix the file",
                Self::MAX_OFFLINE_AFTER_MINUTES
            )),
            _ => Ok(()),
        }
    }
}

/// The `[sync]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// How long a key that keeps failing transiently (a provider down, the
    /// network away) is retried before it becomes a dead letter: `24h`
    /// (the default), `90m`, `3d`; from 10 minutes to 30 days.
    pub retry_for: Option<String>,
}

impl SyncConfig {
    const MIN_RETRY_FOR: u64 = 10 * 60;
    const MAX_RETRY_FOR: u64 = 30 * 24 * 3600;

    pub fn retry_for(&self) -> std::time::Duration {
        self.parsed_retry_for().ok().flatten().unwrap_or(crate::sync::retry::DEFAULT_RETRY_FOR)
    }

    fn parsed_retry_for(&self) -> std::result::Result<Option<std::time::Duration>, String> {
        let Some(text) = &self.retry_for else { return Ok(None) };
        let bad = || {
            format!(
                "[sync] retry_for = {:?}: use a span from 10m to 30d, like \"24h\"; fix the file",
                crate::domain::text::clip(text, 40)
            )
        };
        let span = crate::cli::parse::duration(text).map_err(|_| bad())?;
        let seconds = u64::try_from(span.whole_seconds()).map_err(|_| bad())?;
        if !(Self::MIN_RETRY_FOR..=Self::MAX_RETRY_FOR).contains(&seconds) {
            return Err(bad());
        }
        Ok(Some(std::time::Duration::from_secs(seconds)))
    }

    fn check(&self) -> std::result::Result<(), String> {
        self.parsed_retry_for().map(drop)
    }
}

impl Config {
    /// Reads the file if it exists; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(Error::Config(format!("cannot read config file {}: {e}", path.display()))),
        };
        Config::parse(&text).map_err(|reason| Error::Config(format!("config file {}: {reason}", path.display())))
    }

    /// Parses config text; the error is one line with the position of the problem.
    pub fn parse(text: &str) -> std::result::Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!("line {line}, column {column}: {message}; fix the file or move it away")
                }
                None => format!("{message}; fix the file or move it away"),
            }
        })?;
        config.dispatch.check()?;
        config.sync.check()?;
        Ok(config)
    }
}

/// Every path mctl uses. `mctl config path` prints them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paths {
    pub config_file: PathBuf,
    /// Key binding overrides for the console.
    pub keymap_file: PathBuf,
    /// Style overrides for the console.
    pub theme_file: PathBuf,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The embedded PostgreSQL cluster (data, socket, server log).
    pub cluster_dir: PathBuf,
}

impl Paths {
    /// Resolves paths from the environment and the platform defaults. The
    /// config file may move the data directory, so it is applied afterwards
    /// with [`Paths::apply_config`].
    pub fn from_env(config_file_flag: Option<&Path>) -> Result<Paths> {
        let env_path = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dirs = directories::ProjectDirs::from("", "", "mission-control");
        let home_missing =
            || Error::Config("cannot find a home directory: set MC_CONFIG_DIR, MC_DATA_DIR and MC_STATE_DIR".into());

        let config_dir = match env_path("MC_CONFIG_DIR") {
            Some(dir) => dir,
            None => dirs.as_ref().ok_or_else(home_missing)?.config_dir().to_path_buf(),
        };
        let config_file = config_file_flag
            .map(Path::to_path_buf)
            .or_else(|| env_path("MC_CONFIG"))
            .unwrap_or_else(|| config_dir.join("config.toml"));
        let explicit_data = env_path("MC_DATA_DIR");
        let data_dir = match &explicit_data {
            Some(dir) => dir.clone(),
            None => dirs.as_ref().ok_or_else(home_missing)?.data_local_dir().to_path_buf(),
        };
        let state_dir = match env_path("MC_STATE_DIR") {
            Some(dir) => dir,
            None => {
                let dirs = dirs.as_ref().ok_or_else(home_missing)?;
                dirs.state_dir().map(Path::to_path_buf).unwrap_or_else(|| dirs.data_local_dir().join("state"))
            }
        };
        let cluster_dir = default_cluster_dir(&data_dir, explicit_data.is_some());
        Ok(Paths {
            log_dir: state_dir.join("logs"),
            keymap_file: config_dir.join("keymap.toml"),
            theme_file: config_dir.join("theme.toml"),
            config_file,
            data_dir,
            state_dir,
            cluster_dir,
        })
    }

    /// Applies `data_dir` from the config file (the environment still wins).
    pub fn apply_config(&mut self, config: &Config) {
        if std::env::var_os("MC_DATA_DIR").is_some_and(|v| !v.is_empty()) {
            return;
        }
        if let Some(dir) = &config.data_dir {
            self.data_dir = dir.clone();
            self.cluster_dir = default_cluster_dir(dir, true);
        }
    }
}

/// The embedded cluster lives in `<data dir>/postgres`. When root runs mctl
/// without choosing a data directory, the cluster goes to
/// `/var/lib/mission-control/postgres` instead: it runs as the `postgres` user,
/// which cannot enter root's home.
fn default_cluster_dir(data_dir: &Path, explicit: bool) -> PathBuf {
    if !explicit && crate::db::running_as_root() {
        PathBuf::from("/var/lib/mission-control/postgres")
    } else {
        data_dir.join("postgres")
    }
}

/// The name changes are recorded under: flag, `MC_OPERATOR`, config, then the OS user.
pub fn default_operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "operator".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_one_line_with_a_position() {
        let err = Config::parse("project = \"MC\"\ndatabase_url = \n").unwrap_err();
        assert!(err.starts_with("line 2, column"), "{err}");
        assert!(!err.contains('\n'));
        let err = Config::parse("projcet = \"MC\"").unwrap_err();
        assert!(err.contains("projcet"), "{err}");
    }

    #[test]
    fn reads_known_keys() {
        let config =
            Config::parse("project = \"OPS\"\nread_only = true\npool_size = 4\n[console]\nmouse = true").unwrap();
        assert!(config.console.mouse);
        assert_eq!(config.project.as_deref(), Some("OPS"));
        assert!(config.read_only);
        assert_eq!(config.pool_size, Some(4));
    }

    #[test]
    fn sync_retry_for_defaults_and_bounds() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.sync.retry_for(), crate::sync::retry::DEFAULT_RETRY_FOR);
        let config = Config::parse("[sync]\nretry_for = \"36h\"").unwrap();
        assert_eq!(config.sync.retry_for(), std::time::Duration::from_secs(36 * 3600));
        for bad in ["\"1m\"", "\"60d\"", "\"soon\""] {
            let err = Config::parse(&format!("[sync]\nretry_for = {bad}")).unwrap_err();
            assert!(err.contains("retry_for") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn dispatch_offline_after_defaults_and_bounds() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.dispatch.offline_after(), std::time::Duration::from_secs(15 * 60));
        let config = Config::parse("[dispatch]\noffline_after_minutes = 5").unwrap();
        assert_eq!(config.dispatch.offline_after(), std::time::Duration::from_secs(300));
        let err = Config::parse("[dispatch]\noffline_after_minutes = 0").unwrap_err();
        assert!(err.contains("offline_after_minutes") && !err.contains('\n'), "{err}");
        let err = Config::parse("[dispatch]\noffline_after = 5").unwrap_err();
        assert!(err.contains("offline_after"), "{err}");
    }
}
