//! A real PgBouncer in transaction mode in front of a server, started on a
//! free port and stopped when dropped (tests, and the scale benchmark).
//!
//! Debian's `pgbouncer` package (`.ci/run` installs it); `PGBOUNCER` names
//! another binary. PgBouncer refuses to run as root, so as root it is started
//! with `-u postgres` and its files are made readable to that user.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;

pub struct PgBouncer {
    pub port: u16,
    user: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// Where the binary is, or why the test cannot run here.
fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PGBOUNCER") {
        return Ok(path.into());
    }
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer", "/opt/homebrew/bin/pgbouncer"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| "pgbouncer is not installed (apt-get install pgbouncer, or set PGBOUNCER)".to_string())
}

impl PgBouncer {
    /// PgBouncer for `server` (host, port and user; any database) with
    /// `pool_size` server connections per database, or the reason it cannot
    /// run (printed by the caller, which then skips).
    pub fn start(server: &tokio_postgres::Config, pool_size: u32) -> Result<PgBouncer, String> {
        let binary = binary()?;
        let as_root = mission_control::db::running_as_root();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let (host, server_port) = server_of(server);
        let user = server.get_user().unwrap_or("postgres").to_string();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let ini = format!(
            "[databases]\n* = host={host} port={server_port} user={user}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {auth}\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmin_pool_size = 0\nmax_client_conn = 2000\n\
             ignore_startup_parameters = extra_float_digits\nserver_reset_query =\nserver_login_retry = 1\n\
             logfile = {log}\npidfile = {pid}\n",
            auth = path("users.txt"),
            log = path("pgbouncer.log"),
            pid = path("pgbouncer.pid"),
        );
        std::fs::write(dir.path().join("users.txt"), format!("\"{user}\" \"\"\n")).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("pgbouncer.ini"), ini).map_err(|e| e.to_string())?;
        let mut command = Command::new(&binary);
        if as_root {
            // Its own files, read and written as the user it switches to.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).map_err(|e| e.to_string())?;
            command.arg("-u").arg("postgres");
        }
        let child = command
            .arg(dir.path().join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut bouncer = PgBouncer { port, user, child, dir };
        bouncer.wait_ready()?;
        Ok(bouncer)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("pgbouncer exited ({status}): {stderr}{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("pgbouncer did not listen on {} within 10 s: {}", self.port, self.log()))
    }

    /// The log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    /// Database `dbname` through PgBouncer, in key=value form.
    pub fn url(&self, dbname: &str) -> String {
        format!("host=127.0.0.1 port={} user={} dbname={dbname} sslmode=disable", self.port, self.user)
    }

    /// The same settings as a tokio-postgres config.
    pub fn config(&self, dbname: &str) -> tokio_postgres::Config {
        self.url(dbname).parse().expect("a valid PgBouncer URL")
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Host (or socket directory) and port of the server.
fn server_of(server: &tokio_postgres::Config) -> (String, u16) {
    let host = match &server.get_hosts()[0] {
        Host::Tcp(host) => host.clone(),
        Host::Unix(path) => path.display().to_string(),
    };
    (host, server.get_ports().first().copied().unwrap_or(5432))
}
