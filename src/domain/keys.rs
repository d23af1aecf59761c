//! The human keys operators type: project keys, task keys, agent handles,
//! page slugs and connection keys.

use std::fmt;
use std::str::FromStr;

use super::InvalidInput;
use super::text::clip;

/// `MC`, `OPS`: 2–10 characters, uppercase letters and digits, starting with a letter.
pub fn project_key(raw: &str) -> Result<String, InvalidInput> {
    let key = raw.trim().to_ascii_uppercase();
    let valid = (2..=10).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_uppercase())
        && key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if valid {
        Ok(key)
    } else {
        Err(InvalidInput::new(format!(
            "invalid project key {:?}: use 2-10 letters or digits starting with a letter, like MC or OPS2",
            clip(raw, 40)
        )))
    }
}

/// A task key such as `MC-12`: the project key and the task's number in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskKey {
    pub project: String,
    pub number: i64,
}

impl TaskKey {
    pub fn new(project: &str, number: i64) -> Self {
        TaskKey { project: project.to_string(), number }
    }
}

impl fmt::Display for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.project, self.number)
    }
}

impl FromStr for TaskKey {
    type Err = InvalidInput;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidInput::new(format!("invalid task key {:?}: use PROJECT-NUMBER, like MC-12", clip(raw, 40)));
        let (project, number) = raw.trim().rsplit_once('-').ok_or_else(bad)?;
        let project = project_key(project).map_err(|_| bad())?;
        if number.is_empty() || number.len() > 15 || !number.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let number: i64 = number.parse().map_err(|_| bad())?;
        if number < 1 {
            return Err(bad());
        }
        Ok(TaskKey { project, number })
    }
}

/// `ana`, `ci-bot`: lowercase letters, digits, `.`, `_`, `-`; up to 40 characters.
/// A leading `@` (as typed in the console) is accepted and dropped.
pub fn agent_handle(raw: &str) -> Result<String, InvalidInput> {
    let handle = raw.trim().trim_start_matches('@').to_lowercase();
    let valid = (1..=40).contains(&handle.len())
        && handle.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && handle.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(handle)
    } else {
        Err(InvalidInput::new(format!(
            "invalid agent handle {:?}: use lowercase letters, digits, '.', '_' or '-' (at most 40)",
            clip(raw, 40)
        )))
    }
}

/// `deploy-runbook`: lowercase words joined by single hyphens, at most 100 characters.
pub fn page_slug(raw: &str) -> Result<String, InvalidInput> {
    let slug = raw.trim();
    let valid = !slug.is_empty()
        && slug.len() <= 100
        && slug
            .split('-')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    if valid {
        Ok(slug.to_string())
    } else {
        Err(InvalidInput::new(format!(
            "invalid page slug {:?}: use lowercase words joined by hyphens, like deploy-runbook",
            clip(raw, 40)
        )))
    }
}

/// Turns a title into a slug candidate: `"Deploy Runbook!"` → `deploy-runbook`.
pub fn slugify(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    slug.chars().take(100).collect::<String>().trim_end_matches('-').to_string()
}

/// `github-main`, `plane`: lowercase letters, digits, `_`, `-`; up to 40 characters.
pub fn connection_key(raw: &str) -> Result<String, InvalidInput> {
    let key = raw.trim();
    let valid = (1..=40).contains(&key.len())
        && key.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if valid {
        Ok(key.to_string())
    } else {
        Err(InvalidInput::new(format!(
            "invalid connection key {:?}: use lowercase letters, digits, '_' or '-' (at most 40)",
            clip(raw, 40)
        )))
    }
}

/// Where a provider secret lives. Only the reference is ever stored or shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(std::path::PathBuf),
}

impl FromStr for SecretRef {
    type Err = InvalidInput;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if let Some(name) = raw.strip_prefix("env:") {
            let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if valid {
                return Ok(SecretRef::Env(name.to_string()));
            }
        } else if let Some(path) = raw.strip_prefix("file:")
            && path.starts_with('/')
            && path.len() > 1
            && !path.contains('\0')
        {
            return Ok(SecretRef::File(path.into()));
        }
        // Never echo the value: someone may have pasted the token itself.
        Err(InvalidInput::new(
            "invalid secret reference: use env:VARIABLE_NAME or file:/absolute/path (never the secret itself)",
        ))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys() {
        let key: TaskKey = "mc-12".parse().unwrap();
        assert_eq!(key, TaskKey::new("MC", 12));
        assert_eq!(key.to_string(), "MC-12");
        for bad in ["MC-", "-1", "mc-1'; drop table", "MC-0", "MC--1", "M-1", "MC-1.5", "", "MC-99999999999999999999"] {
            assert!(bad.parse::<TaskKey>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn handles_and_slugs() {
        assert_eq!(agent_handle("@Ana").unwrap(), "ana");
        assert!(agent_handle("a b").is_err());
        assert!(page_slug("deploy-runbook").is_ok());
        assert!(page_slug("Deploy").is_err());
        assert!(page_slug("a--b").is_err());
        assert_eq!(slugify("  Deploy Runbook: v2!"), "deploy-runbook-v2");
    }

    #[test]
    fn secret_refs_never_echo_the_value() {
        assert_eq!("env:PLANE_API_KEY".parse::<SecretRef>().unwrap(), SecretRef::Env("PLANE_API_KEY".into()));
        assert!("file:/run/secrets/x".parse::<SecretRef>().is_ok());
        let err = "ghp_abcdefabcdefabcdefabcdef".parse::<SecretRef>().unwrap_err();
        assert!(!err.0.contains("ghp_"));
    }
}
