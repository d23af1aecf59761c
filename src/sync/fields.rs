//! Remote values as the store keeps them, shared by every provider: titles
//! and label names from another tool, made to fit local rules.

/// A remote title as the store keeps it: one line, trimmed, at most 500
/// characters, never empty.
pub fn clean_title(name: &str) -> String {
    let one_line: String = name.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let clipped: String = one_line.trim().chars().take(crate::domain::text::MAX_TITLE_CHARS).collect();
    let trimmed = clipped.trim();
    if trimmed.is_empty() { "(untitled)".into() } else { trimmed.to_string() }
}

/// A remote label name as a local label: lowercase, one word (spaces become
/// dashes), at most 40 characters.
pub fn local_label(name: &str) -> String {
    let word: String = name
        .trim()
        .trim_start_matches('#')
        .to_lowercase()
        .chars()
        .map(|c| if c.is_whitespace() { '-' } else { c })
        .filter(|c| !c.is_control() && *c != ',')
        .take(40)
        .collect();
    word
}

/// Whether a task is mirrored to a connection: not archived, and in a lane
/// that syncs (a lane the connection does not know syncs). The initial push
/// and `sync plan` use this one rule, so they agree.
pub fn mirrored(task: &crate::domain::Task, lanes: &[crate::domain::Lane]) -> bool {
    !task.archived && lanes.iter().find(|l| l.id == task.lane_id).is_none_or(|l| l.sync)
}
