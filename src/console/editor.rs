//! Editing text in `$VISUAL` / `$EDITOR` (default `vi`) through a private
//! temporary file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

/// Opens `text` in the operator's editor. `Ok(None)` when it came back unchanged.
pub fn edit(text: &str, name_hint: &str) -> Result<Option<String>, String> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    edit_with(&editor, text, name_hint)
}

/// Opens `text` in `editor` (a shell command; the file name is appended).
pub fn edit_with(editor: &str, text: &str, name_hint: &str) -> Result<Option<String>, String> {
    let safe_hint: String = name_hint.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let path = std::env::temp_dir().join(format!("mctl-{}-{}-{safe_hint}.md", std::process::id(), fastrand::u64(..)));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create a file to edit in: {e}"))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write the file to edit: {e}"))?;
    drop(file);
    // Through the shell, so EDITOR may carry arguments ("code --wait").
    let status = Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&path).status();
    let result = match status {
        Ok(status) if status.success() => std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read the edited file: {e}"))
            .map(|new| (new != text).then_some(new)),
        Ok(status) => Err(format!("{editor} exited with {status}: the page was not saved")),
        Err(e) => Err(format!("cannot run {editor}: {e}; set $EDITOR")),
    };
    let _ = std::fs::remove_file(&path);
    result
}
