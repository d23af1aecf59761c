//! Connecting as a team's server wants it: a real PostgreSQL started by the
//! test with `ssl = on` and a CA the test makes (openssl), reached through
//! mctl's own resolution (`db::resolve_in`, `db::connect`) with libpq's
//! sslmodes, a client certificate login, and a password from `.pgpass`.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

use std::path::{Path, PathBuf};
use std::process::Command;

use mission_control::config::{Config, Paths};
use mission_control::db::{self, conninfo::Environment};
use mission_control::store::StoreOptions;

/// A private cluster listening on 127.0.0.1 with TLS, and its certificates.
struct TlsServer {
    _dir: tempfile::TempDir,
    cluster: db::EmbeddedCluster,
    port: u16,
    certs: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.cluster.stop();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA, a server certificate for `db.example.test`, a client certificate
/// for role `certuser`, and a second CA that signed nothing here.
fn make_certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for ca in ["ca", "other-ca"] {
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (key, pem, subject) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN=mctl test {ca}"));
        args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subject]);
        args.extend([
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(dir, &args);
    }
    for (name, subject, ext) in [
        ("server", "/CN=db.example.test", "subjectAltName=DNS:db.example.test\nextendedKeyUsage=serverAuth\n"),
        ("client", "/CN=certuser", "extendedKeyUsage=clientAuth\n"),
    ] {
        let mut args = vec!["req"];
        args.extend(ec);
        let (key, csr, crt, extfile) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
        args.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(dir, &args);
        std::fs::write(dir.join(&extfile), ext).unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ],
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TlsServer {
    async fn start() -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        make_certificates(&certs);
        let cluster = db::EmbeddedCluster::new(&dir.path().join("cluster"), None);
        let port = free_port();
        let (c, certs_dir) = (cluster.clone(), certs.clone());
        tokio::task::spawn_blocking(move || -> mission_control::error::Result<()> {
            c.ensure_running()?;
            c.stop()?;
            // The server reads its key as the cluster's owner, and only if nobody else can.
            let owner = std::fs::metadata(c.data_dir()).unwrap();
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            for file in ["server.crt", "server.key", "ca.pem"] {
                let path = certs_dir.join(file);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
            }
            std::os::unix::fs::chown(&certs_dir, Some(owner.uid()), Some(owner.gid())).unwrap();
            let conf = c.data_dir().join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(&format!(
                "\nlisten_addresses = '127.0.0.1'\nport = {port}\nssl = on\nssl_cert_file = '{0}/server.crt'\nssl_key_file = '{0}/server.key'\nssl_ca_file = '{0}/ca.pem'\npassword_encryption = 'scram-sha-256'\n",
                certs_dir.display()
            ));
            std::fs::write(&conf, text).unwrap();
            let hba = c.data_dir().join("pg_hba.conf");
            let mut rules = String::from(
                "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all pwuser 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            );
            rules.push_str(&std::fs::read_to_string(&hba).unwrap_or_default().replace("local", "#local"));
            std::fs::write(&hba, rules).unwrap();
            c.ensure_running()
        })
        .await
        .unwrap()
        .expect("start a PostgreSQL with TLS");
        let server = TlsServer { _dir: dir, cluster, port, certs };
        // Its socket is named after the port too.
        let mut admin = tokio_postgres::Config::new();
        admin.host_path(server.cluster.socket_dir()).port(port).user("mctl").dbname("mctl");
        db::embedded::ensure_database(&admin).await.unwrap();
        let (admin, connection) = admin.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        admin
            .batch_execute("CREATE ROLE certuser LOGIN; CREATE ROLE pwuser LOGIN PASSWORD 'horse battery'; GRANT ALL ON SCHEMA public TO certuser, pwuser")
            .await
            .unwrap();
        server
    }

    fn cert(&self, name: &str) -> String {
        self.certs.join(name).display().to_string()
    }

    /// `host=db.example.test hostaddr=127.0.0.1 port=… dbname=mctl` and `extra`.
    fn conninfo(&self, host: &str, extra: &str) -> String {
        format!("host={host} hostaddr=127.0.0.1 port={} dbname=mctl user=mctl {extra}", self.port)
    }
}

struct Env {
    vars: Vec<(&'static str, String)>,
    home: PathBuf,
}

impl Environment for Env {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
    }
    fn home(&self) -> Option<PathBuf> {
        Some(self.home.clone())
    }
}

fn paths(dir: &Path) -> Paths {
    Paths {
        config_file: dir.join("config.toml"),
        keymap_file: dir.join("keymap.toml"),
        theme_file: dir.join("theme.toml"),
        data_dir: dir.join("data"),
        state_dir: dir.join("state"),
        log_dir: dir.join("logs"),
        cluster_dir: dir.join("cluster"),
    }
}

/// Resolves `conninfo` as mctl would and connects; the error text on failure.
async fn try_connect(conninfo: &str, env: &Env) -> Result<String, String> {
    let target =
        db::resolve_in(Some(conninfo), &Config::default(), &paths(&env.home), env).map_err(|e| e.to_string())?;
    let store = db::connect(&target, StoreOptions { max_connections: 1, ..StoreOptions::default() })
        .await
        .map_err(|e| e.to_string())?;
    let client = store.client().await.map_err(|e| e.to_string())?;
    let row = client
        .query_one("SELECT session_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .map_err(|e| e.to_string())?;
    let (user, ssl): (String, bool) = (row.get(0), row.get(1));
    Ok(format!("{user} ssl={ssl}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_check_what_libpq_checks() {
    let server = TlsServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let env = Env { vars: vec![], home: home.path().to_path_buf() };
    let ca = server.cert("ca.pem");

    let full = format!("sslmode=verify-full sslrootcert={ca}");
    assert_eq!(try_connect(&server.conninfo("db.example.test", &full), &env).await.unwrap(), "mctl ssl=true");
    let wrong_name = try_connect(&server.conninfo("localhost", &full), &env).await.unwrap_err();
    assert!(wrong_name.contains("not for this host name"), "{wrong_name}");
    assert_eq!(wrong_name.lines().count(), 1, "{wrong_name}");
    // verify-ca trusts the chain and does not look at the name.
    let ca_only = format!("sslmode=verify-ca sslrootcert={ca}");
    assert_eq!(try_connect(&server.conninfo("localhost", &ca_only), &env).await.unwrap(), "mctl ssl=true");
    // Another CA: not trusted.
    let other = format!("sslmode=verify-full sslrootcert={}", server.cert("other-ca.pem"));
    let untrusted = try_connect(&server.conninfo("db.example.test", &other), &env).await.unwrap_err();
    assert!(untrusted.contains("not signed by a trusted CA"), "{untrusted}");
    // require encrypts without checking; the URL form says the same.
    assert_eq!(try_connect(&server.conninfo("localhost", "sslmode=require"), &env).await.unwrap(), "mctl ssl=true");
    let url = format!(
        "postgresql://mctl@db.example.test:{}/mctl?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}",
        server.port
    );
    assert_eq!(try_connect(&url, &env).await.unwrap(), "mctl ssl=true");
    // The server refuses plain connections here: disable fails, prefer (the default) upgrades.
    assert!(try_connect(&server.conninfo("localhost", "sslmode=disable"), &env).await.is_err());
    assert_eq!(try_connect(&server.conninfo("localhost", ""), &env).await.unwrap(), "mctl ssl=true");
    // verify-full without a CA says how to give one.
    let no_ca = try_connect(&server.conninfo("db.example.test", "sslmode=verify-full"), &env).await.unwrap_err();
    assert!(no_ca.contains("sslrootcert"), "{no_ca}");
    // ~/.postgresql/root.crt is the default CA, as for libpq.
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::copy(&ca, home.path().join(".postgresql/root.crt")).unwrap();
    assert_eq!(
        try_connect(&server.conninfo("db.example.test", "sslmode=verify-full"), &env).await.unwrap(),
        "mctl ssl=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_as_its_role() {
    let server = TlsServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let env = Env { vars: vec![], home: home.path().to_path_buf() };
    let base = format!("host=db.example.test hostaddr=127.0.0.1 port={} dbname=mctl user=certuser", server.port);
    let without = try_connect(&format!("{base} sslmode=verify-full sslrootcert={}", server.cert("ca.pem")), &env)
        .await
        .unwrap_err();
    assert!(!without.is_empty());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(server.certs.join("client.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let with = format!(
        "{base} sslmode=verify-full sslrootcert={} sslcert={} sslkey={}",
        server.cert("ca.pem"),
        server.cert("client.crt"),
        server.cert("client.key")
    );
    assert_eq!(try_connect(&with, &env).await.unwrap(), "certuser ssl=true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_comes_from_pgpass_and_the_rest_from_pg_variables() {
    let server = TlsServer::start().await;
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("db.example.test:{}:mctl:pwuser:horse battery\n", server.port)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = Env {
        vars: vec![
            ("PGHOST", "db.example.test".into()),
            ("PGHOSTADDR", "127.0.0.1".into()),
            ("PGPORT", server.port.to_string()),
            ("PGDATABASE", "mctl".into()),
            ("PGUSER", "pwuser".into()),
            ("PGSSLMODE", "verify-full".into()),
            ("PGSSLROOTCERT", server.cert("ca.pem")),
        ],
        home: home.path().to_path_buf(),
    };
    // No URL at all: the PG* variables name the server.
    let target = db::resolve_in(None, &Config::default(), &paths(home.path()), &env).unwrap();
    assert_eq!(target.source, db::TargetSource::Libpq);
    let origins: Vec<String> = target.origins.iter().map(|(k, o)| format!("{k}:{o}")).collect();
    assert!(origins.contains(&format!("password:{}", pgpass.display())), "{origins:?}");
    assert!(origins.contains(&"user:PGUSER".to_string()), "{origins:?}");
    let store = db::connect(&target, StoreOptions { max_connections: 1, ..StoreOptions::default() }).await.unwrap();
    let user: String = store.client().await.unwrap().query_one("SELECT session_user::text", &[]).await.unwrap().get(0);
    assert_eq!(user, "pwuser");
    // A password file others can read is ignored, as libpq does: the login then fails.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let target = db::resolve_in(None, &Config::default(), &paths(home.path()), &env).unwrap();
    assert!(db::connect(&target, StoreOptions::default()).await.is_err());
}

#[test]
fn listen_url_comes_from_the_environment_then_the_config_and_is_completed_the_libpq_way() {
    let home = tempfile::tempdir().unwrap();
    let env = |listen: Option<&str>| Env {
        vars: [("PGPASSWORD", Some("secret".to_string())), ("MC_LISTEN_URL", listen.map(str::to_string))]
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect(),
        home: home.path().to_path_buf(),
    };
    let pooler = "host=127.0.0.1 port=6432 dbname=mctl user=ana";
    let config =
        Config { listen_url: Some("host=db.internal port=5432 dbname=mctl user=ana".into()), ..Config::default() };
    // Not set: LISTEN on the database URL.
    let target = db::resolve_in(Some(pooler), &Config::default(), &paths(home.path()), &env(None)).unwrap();
    assert!(matches!(target.listen, db::Listen::Same));
    // From the config file, with the password from PGPASSWORD, never shown.
    let target = db::resolve_in(Some(pooler), &config, &paths(home.path()), &env(None)).unwrap();
    let db::Listen::Session(session) = &target.listen else { panic!("expected a session URL: {:?}", target.listen) };
    assert_eq!(session.from, "listen_url in the config file");
    assert_eq!(session.pg.get_password(), Some(&b"secret"[..]));
    let shown = target.listen.describe();
    assert!(shown.contains("db.internal:5432/mctl") && !shown.contains("secret"), "{shown}");
    // The environment wins over the file; `poll` means no LISTEN connection.
    let target = db::resolve_in(Some(pooler), &config, &paths(home.path()), &env(Some("poll"))).unwrap();
    assert!(matches!(target.listen, db::Listen::Poll));
    // A bad one is a usage error naming where it came from.
    let bad = db::resolve_in(Some(pooler), &config, &paths(home.path()), &env(Some("postgres://[::1"))).unwrap_err();
    assert!(bad.to_string().contains("MC_LISTEN_URL"), "{bad}");
}
