//! Reading a connection's secret from where its reference points, at the
//! moment of use. The value lives only in memory: errors name the reference,
//! never the value.

use crate::domain::SecretRef;

/// Secrets larger than this are not tokens.
const MAX_SECRET: u64 = 16 * 1024;

pub fn resolve(reference: Option<&str>) -> Result<String, String> {
    let reference = reference.ok_or(
        "the connection has no secret reference: set one with `mctl connection update KEY --token-ref env:NAME`",
    )?;
    let parsed: SecretRef = reference.parse().map_err(|e: crate::domain::InvalidInput| e.0)?;
    let value = match &parsed {
        SecretRef::Env(name) => std::env::var(name)
            .map_err(|_| format!("the secret {parsed} is not set: export {name} for the sync worker"))?,
        SecretRef::File(path) => {
            let metadata =
                std::fs::metadata(path).map_err(|e| format!("cannot read the secret {parsed}: {}", e.kind()))?;
            if metadata.len() > MAX_SECRET {
                return Err(format!("the secret file {parsed} is too large to be a token"));
            }
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the secret {parsed}: {}", e.kind()))?
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() || value.chars().any(|c| c.is_control()) {
        return Err(format!("the secret {parsed} is empty or not a single-line token"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_secret_is_read_and_trimmed_and_errors_never_show_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "plane_api_s3cret\n").unwrap();
        assert_eq!(resolve(Some(&format!("file:{}", path.display()))).unwrap(), "plane_api_s3cret");
        std::fs::write(&path, "two\nlines").unwrap();
        let err = resolve(Some(&format!("file:{}", path.display()))).unwrap_err();
        assert!(!err.contains("two") && err.contains("file:"), "{err}");
        let err = resolve(Some("env:MCTL_TEST_SURELY_UNSET_VARIABLE")).unwrap_err();
        assert!(err.contains("MCTL_TEST_SURELY_UNSET_VARIABLE"), "{err}");
        assert!(resolve(None).is_err());
        let err = resolve(Some("plane_api_pasted_token")).unwrap_err();
        assert!(!err.contains("pasted"), "{err}");
    }
}
