//! libpq's connection conventions: a connection string in either form
//! (`postgres://…` or `host=… dbname=…`), then a service file, then the `PG*`
//! environment variables, then `~/.pgpass` for the password — each filling
//! only what the earlier ones left unset, as libpq's `conninfo_add_defaults`
//! does. The result is one set of keyword parameters: the TLS ones are mctl's
//! to act on ([`super::tls`]); the rest go to tokio-postgres.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Parameters as libpq names them, and where each came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnInfo {
    params: BTreeMap<String, (String, Origin)>,
}

/// Where a parameter's value came from (`db status` says, never the value of a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The connection string mctl was given.
    Given,
    /// A `[service]` section of this file.
    Service(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// A matching line of this password file.
    PassFile(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Given => write!(f, "the connection string"),
            Origin::Service(file) => write!(f, "service file {}", file.display()),
            Origin::Env(name) => write!(f, "{name}"),
            Origin::PassFile(file) => write!(f, "{}", file.display()),
        }
    }
}

/// The environment variables libpq reads, and the parameter each stands for.
const ENV: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("service", "PGSERVICE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("channel_binding", "PGCHANNELBINDING"),
];

/// The parameters that decide where to connect: without one of these from
/// the environment, there is nothing libpq-style to use.
const LOCATING: &[&str] = &["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE"];

/// What the caller's environment holds (a seam for tests).
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
    fn home(&self) -> Option<PathBuf>;
}

/// The process's own environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn home(&self) -> Option<PathBuf> {
        directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf())
    }
}

/// Whether the environment names a server the libpq way (`PGHOST`,
/// `PGSERVICE`, …), so mctl uses it rather than its embedded cluster.
pub fn environment_names_a_server(env: &dyn Environment) -> bool {
    LOCATING.iter().any(|name| env.var(name).is_some())
}

impl ConnInfo {
    /// Parses a connection string in URI or keyword form.
    pub fn parse(text: &str) -> Result<ConnInfo, String> {
        let text = text.trim();
        let pairs = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            parse_uri(text)?
        } else {
            parse_keywords(text)?
        };
        let mut info = ConnInfo::default();
        for (key, value) in pairs {
            info.params.insert(key, (value, Origin::Given));
        }
        Ok(info)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(|(v, _)| v.as_str())
    }

    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.params.get(key).map(|(_, o)| o)
    }

    fn fill(&mut self, key: &str, value: String, origin: Origin) {
        self.params.entry(key.to_string()).or_insert((value, origin));
    }

    /// Fills what is unset from the service file, the environment and the
    /// password file, in libpq's order.
    pub fn complete(&mut self, env: &dyn Environment) -> Result<(), String> {
        let service = self.get("service").map(str::to_string).or_else(|| env.var("PGSERVICE"));
        if let Some(service) = service {
            let (file, section) = find_service(&service, env)?;
            for (key, value) in section {
                self.fill(&key, value, Origin::Service(file.clone()));
            }
        }
        for (key, var) in ENV {
            if let Some(value) = env.var(var) {
                self.fill(key, value, Origin::Env(var));
            }
        }
        if self.get("password").is_none()
            && let Some((file, password)) = self.password_from_file(env)?
        {
            self.fill("password", password, Origin::PassFile(file));
        }
        Ok(())
    }

    /// The password of the first `~/.pgpass` line matching this connection
    /// (`host:port:dbname:user:password`, `*` matches anything). A file
    /// others may read is ignored, as libpq does, with a warning.
    fn password_from_file(&self, env: &dyn Environment) -> Result<Option<(PathBuf, String)>, String> {
        let file = match self.get("passfile") {
            Some(path) => PathBuf::from(path),
            None => match env.home() {
                Some(home) => home.join(".pgpass"),
                None => return Ok(None),
            },
        };
        let Ok(metadata) = std::fs::metadata(&file) else { return Ok(None) };
        if !metadata.is_file() {
            return Ok(None);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    "password file {} has group or world access; it is ignored (run chmod 0600 on it)",
                    file.display()
                );
                return Ok(None);
            }
        }
        let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let host = self.get("host").unwrap_or("localhost");
        // A socket directory is `localhost` to the password file.
        let host = if host.starts_with('/') { "localhost" } else { host.split(',').next().unwrap_or(host) };
        let port = self.get("port").map(|p| p.split(',').next().unwrap_or(p)).unwrap_or("5432");
        let user = self.get("user").map(str::to_string).unwrap_or_else(|| os_user(env));
        let dbname = self.get("dbname").map(str::to_string).unwrap_or_else(|| user.clone());
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let fields = split_pgpass(line);
            if fields.len() < 5 {
                continue;
            }
            let matches = |field: &str, value: &str| field == "*" || field == value;
            if matches(&fields[0], host)
                && matches(&fields[1], port)
                && matches(&fields[2], &dbname)
                && matches(&fields[3], &user)
            {
                return Ok(Some((file, fields[4].clone())));
            }
        }
        Ok(None)
    }

    /// The parameters tokio-postgres understands, as a keyword string; the
    /// ones mctl handles itself (TLS, service, password file) are left out.
    pub fn for_tokio_postgres(&self) -> String {
        const OURS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "service", "passfile"];
        self.params
            .iter()
            .filter(|(k, _)| !OURS.contains(&k.as_str()))
            .map(|(k, (v, _))| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Where each set parameter came from, for `db status` (no values).
    pub fn origins(&self) -> Vec<(String, String)> {
        self.params.iter().map(|(k, (_, o))| (k.clone(), o.to_string())).collect()
    }
}

/// The OS user name, libpq's default user.
pub fn os_user(env: &dyn Environment) -> String {
    env.var("USER").or_else(|| env.var("LOGNAME")).unwrap_or_else(|| "postgres".into())
}

/// One `.pgpass` line's five fields (`\:` and `\\` are escapes).
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

/// The section `[service]` of the first service file that has it:
/// `PGSERVICEFILE` or `~/.pg_service.conf`, then `PGSYSCONFDIR/pg_service.conf`
/// (or the system's, `/etc/postgresql-common/pg_service.conf` on Debian).
fn find_service(service: &str, env: &dyn Environment) -> Result<(PathBuf, Vec<(String, String)>), String> {
    let mut files = Vec::new();
    match env.var("PGSERVICEFILE") {
        Some(file) => files.push(PathBuf::from(file)),
        None => files.extend(env.home().map(|h| h.join(".pg_service.conf"))),
    }
    match env.var("PGSYSCONFDIR") {
        Some(dir) => files.push(Path::new(&dir).join("pg_service.conf")),
        None => {
            files.push(PathBuf::from("/etc/postgresql-common/pg_service.conf"));
            files.push(PathBuf::from("/etc/pg_service.conf"));
        }
    }
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        if let Some(section) = service_section(&text, service) {
            return Ok((file.clone(), section));
        }
    }
    Err(format!(
        "service {service:?} is not defined in {}: add a [{service}] section or fix PGSERVICE",
        files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" or ")
    ))
}

/// The `key=value` lines of `[name]` in an INI-style service file.
fn service_section(text: &str, name: &str) -> Option<Vec<(String, String)>> {
    let mut inside = false;
    let mut found = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            if inside {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if inside && let Some((key, value)) = line.split_once('=') {
            found.get_or_insert_with(Vec::new).push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    found
}

/// `key=value key2='quoted \' value'`.
fn parse_keywords(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("`{key}` has no value (write {key}=VALUE)"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of `{key}` has no closing quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `postgresql://[user[:password]@][host[:port][,…]][/dbname][?key=value&…]`,
/// percent-decoded; several hosts become comma lists, as in keyword form.
fn parse_uri(text: &str) -> Result<Vec<(String, String)>, String> {
    let rest = text.split_once("://").map(|(_, r)| r).unwrap_or(text);
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, dbname) = match rest.split_once('/') {
        Some((a, d)) => (a, Some(d)),
        None => (rest, None),
    };
    let mut pairs = Vec::new();
    let hosts = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                pairs.push(("user".into(), decode(user)?));
            }
            if let Some(password) = password {
                pairs.push(("password".into(), decode(password)?));
            }
            hosts
        }
        None => authority,
    };
    if !hosts.is_empty() {
        let (mut names, mut ports) = (Vec::new(), Vec::new());
        for host in hosts.split(',') {
            let (name, port) = if let Some(v6) = host.strip_prefix('[') {
                let (name, after) = v6.split_once(']').ok_or("an IPv6 host lacks its closing `]`")?;
                (name.to_string(), after.strip_prefix(':').unwrap_or(""))
            } else {
                match host.rsplit_once(':') {
                    Some((name, port)) => (decode(name)?, port),
                    None => (decode(host)?, ""),
                }
            };
            names.push(name);
            ports.push(port.to_string());
        }
        if names.iter().any(|n| !n.is_empty()) {
            pairs.push(("host".into(), names.join(",")));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            pairs.push(("port".into(), ports.join(",")));
        }
    }
    if let Some(dbname) = dbname.filter(|d| !d.is_empty()) {
        pairs.push(("dbname".into(), decode(dbname)?));
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("`{pair}` has no value (write KEY=VALUE)"))?;
        pairs.push((decode(key)?, decode(value)?));
    }
    Ok(pairs)
}

fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut k = 0;
    while k < bytes.len() {
        if bytes[k] == b'%' {
            let hex = text.get(k + 1..k + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("a `%` escape in the URL is not two hex digits")?);
            k += 3;
        } else {
            out.push(bytes[k]);
            k += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the URL decodes to text that is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeEnv {
        vars: Vec<(&'static str, String)>,
        home: Option<PathBuf>,
    }

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
        }
        fn home(&self) -> Option<PathBuf> {
            self.home.clone()
        }
    }

    #[test]
    fn a_uri_and_keywords_say_the_same_things() {
        let uri = ConnInfo::parse(
            "postgresql://ops:p%40ss@db1:5433,db2/mission%20control?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(uri.get("user"), Some("ops"));
        assert_eq!(uri.get("password"), Some("p@ss"));
        assert_eq!(uri.get("host"), Some("db1,db2"));
        assert_eq!(uri.get("port"), Some("5433,"));
        assert_eq!(uri.get("dbname"), Some("mission control"));
        assert_eq!(uri.get("sslmode"), Some("verify-full"));
        let socket = ConnInfo::parse("postgres://%2Fvar%2Frun%2Fpostgresql/mc").unwrap();
        assert_eq!(socket.get("host"), Some("/var/run/postgresql"));
        let keywords = ConnInfo::parse("host=/tmp dbname='my db' password='it\\'s' sslmode = require").unwrap();
        assert_eq!(keywords.get("host"), Some("/tmp"));
        assert_eq!(keywords.get("dbname"), Some("my db"));
        assert_eq!(keywords.get("password"), Some("it's"));
        assert_eq!(keywords.get("sslmode"), Some("require"));
        assert!(ConnInfo::parse("host").is_err());
        assert!(ConnInfo::parse("password='open").is_err());
        assert!(ConnInfo::parse("postgres://h/db?x=%zz").is_err());
    }

    #[test]
    fn the_string_wins_over_the_service_which_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let services = dir.path().join("services.conf");
        std::fs::write(&services, "[other]\nhost=nowhere\n[ops]\nhost=db.internal\nport=6432\ndbname=mc\n").unwrap();
        let env = FakeEnv {
            vars: vec![
                ("PGSERVICEFILE", services.display().to_string()),
                ("PGSERVICE", "ops".into()),
                ("PGPORT", "7777".into()),
                ("PGUSER", "alice".into()),
                ("PGSSLMODE", "verify-full".into()),
            ],
            home: None,
        };
        let mut info = ConnInfo::parse("dbname=mission").unwrap();
        info.complete(&env).unwrap();
        assert_eq!(info.get("dbname"), Some("mission"));
        assert_eq!(info.origin("dbname"), Some(&Origin::Given));
        assert_eq!(info.get("host"), Some("db.internal"));
        assert_eq!(info.get("port"), Some("6432"), "the service file wins over PGPORT");
        assert_eq!(info.get("user"), Some("alice"));
        assert_eq!(info.origin("user"), Some(&Origin::Env("PGUSER")));
        assert_eq!(info.get("sslmode"), Some("verify-full"));
        let kept = info.for_tokio_postgres();
        assert!(!kept.contains("sslmode") && !kept.contains("service"), "{kept}");

        let missing = FakeEnv { vars: vec![("PGSERVICEFILE", services.display().to_string())], home: None };
        let error = ConnInfo::parse("service=nope").unwrap().complete(&missing).unwrap_err();
        assert!(error.contains("\"nope\"") && error.contains("services.conf"), "{error}");
    }

    #[test]
    fn the_password_file_is_read_only_when_nobody_else_can_read_it() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join(".pgpass");
        std::fs::write(&file, "# comment\nother:*:*:*:wrong\ndb.internal:5432:*:alice:s3cr\\:et\n*:*:*:*:fallback\n")
            .unwrap();
        let env = FakeEnv { vars: vec![], home: Some(home.path().to_path_buf()) };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut open = ConnInfo::parse("host=db.internal user=alice").unwrap();
            open.complete(&env).unwrap();
            assert_eq!(open.get("password"), None, "a readable .pgpass is ignored");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let mut info = ConnInfo::parse("host=db.internal user=alice dbname=mc").unwrap();
        info.complete(&env).unwrap();
        assert_eq!(info.get("password"), Some("s3cr:et"));
        assert_eq!(info.origin("password"), Some(&Origin::PassFile(file.clone())));
        let mut other = ConnInfo::parse("host=elsewhere user=bob").unwrap();
        other.complete(&env).unwrap();
        assert_eq!(other.get("password"), Some("fallback"));
        let mut given = ConnInfo::parse("host=db.internal user=alice password=mine").unwrap();
        given.complete(&env).unwrap();
        assert_eq!(given.get("password"), Some("mine"));
    }
}
