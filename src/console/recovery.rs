//! The Recovery screen's list: one row per snapshot, with what it holds
//! ("120 tasks · 8 handoffs · 3 pages") fitted to the terminal's width.

use serde_json::Value;
use time::OffsetDateTime;
use unicode_width::UnicodeWidthStr;

use super::rows::{Cell, Row, Target, Tone, age};
use crate::domain::SnapshotMeta;

/// The kinds an operator recognises a snapshot by, most telling first, with
/// their singular. Lanes and agents are left out: they are the same in
/// nearly every snapshot of a project.
const KINDS: &[(&str, &str)] = &[
    ("tasks", "task"),
    ("handoffs", "handoff"),
    ("pages", "page"),
    ("releases", "release"),
    ("deployments", "deployment"),
    ("pipelines", "pipeline"),
    ("environments", "environment"),
    ("mappings", "mapping"),
    ("connections", "connection"),
    ("cycles", "cycle"),
    ("modules", "module"),
];

const SEPARATOR: &str = " · ";
/// Ends a summary that left kinds out for lack of room.
const MORE: &str = " …";

/// The counts of the kinds above that are not zero, in that order, as many as
/// fit in `width` columns; ` …` says some were left out. Never cuts a count.
pub fn counts_summary(counts: &Value, width: usize) -> String {
    let parts: Vec<String> = KINDS
        .iter()
        .filter_map(|(kind, one)| {
            let n = counts.get(kind).and_then(Value::as_i64).filter(|n| *n > 0)?;
            Some(if n == 1 { format!("1 {one}") } else { format!("{n} {kind}") })
        })
        .collect();
    let Some((first, rest)) = parts.split_first() else { return "empty".into() };
    let mut summary = first.clone();
    for (i, part) in rest.iter().enumerate() {
        // Room for the ` …` too, unless this is the last part.
        let reserve = if i + 1 < rest.len() { MORE.width() } else { 0 };
        if summary.width() + SEPARATOR.width() + part.width() + reserve > width {
            if summary.width() + MORE.width() <= width {
                summary.push_str(MORE);
            }
            return summary;
        }
        summary.push_str(SEPARATOR);
        summary.push_str(part);
    }
    summary
}

/// Fixed column widths: id, age, author, reason, size.
const ID: u16 = 6;
const AGE: u16 = 6;
const BY: u16 = 10;
/// `pre-restore`, the longest reason.
const REASON: u16 = 11;
const SIZE: u16 = 8;
/// The list's left margin; cells are one column apart.
const MARGIN: u16 = 3;
/// Narrower than this, the size gives its room to the counts and the label,
/// which say more about which snapshot to restore.
const SIZE_FROM: u16 = 100;

/// The counts column: two thirds of what the fixed columns leave, the rest
/// going to the label.
fn counts_width(screen_width: u16) -> u16 {
    let mut fixed = MARGIN + (ID + 1) + (AGE + 1) + (BY + 1) + (REASON + 1) + 1;
    if screen_width >= SIZE_FROM {
        fixed += SIZE + 1;
    }
    (screen_width.saturating_sub(fixed) * 2 / 3).clamp(12, 48)
}

fn cell(text: impl Into<String>, width: u16, tone: Tone) -> Cell {
    Cell { text: text.into(), tone, width }
}

/// A snapshot as a row of a list `screen_width` columns wide.
pub fn snapshot_row(s: &SnapshotMeta, now: OffsetDateTime, screen_width: u16) -> Row {
    let counts = counts_width(screen_width);
    let mut cells = vec![
        cell(format!("#{}", s.id), ID, Tone::Muted),
        cell(age(now, s.created_at), AGE, Tone::Normal),
        cell(&s.created_by, BY, Tone::Normal),
        cell(&s.reason, REASON, Tone::Muted),
        cell(counts_summary(&s.counts, counts as usize), counts, Tone::Normal),
    ];
    if screen_width >= SIZE_FROM {
        cells.push(cell(format!("{} KB", s.size_bytes / 1024), SIZE, Tone::Muted));
    }
    cells.push(cell(&s.label, 0, Tone::Accent));
    Row { cells, target: Target::Snapshot(s.id) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> Value {
        serde_json::json!({
            "lanes": 6, "agents": 8, "tasks": 120, "handoffs": 8, "pages": 3, "cycles": 0, "modules": 0,
            "environments": 0, "releases": 1, "pipelines": 0, "deployments": 0, "connections": 0, "mappings": 0,
        })
    }

    #[test]
    fn counts_skip_zero_kinds_lanes_and_agents() {
        assert_eq!(counts_summary(&counts(), 80), "120 tasks · 8 handoffs · 3 pages · 1 release");
    }

    #[test]
    fn counts_that_do_not_fit_are_left_out_whole() {
        // "120 tasks · 8 handoffs · 3 pages" is 32 columns; the ` …` needs 2 more.
        assert_eq!(counts_summary(&counts(), 34), "120 tasks · 8 handoffs · 3 pages …");
        assert_eq!(counts_summary(&counts(), 33), "120 tasks · 8 handoffs …");
        assert_eq!(counts_summary(&counts(), 12), "120 tasks …");
        for width in 12..60 {
            assert!(counts_summary(&counts(), width).width() <= width, "{width}");
        }
    }

    #[test]
    fn an_empty_project_says_so() {
        assert_eq!(counts_summary(&serde_json::json!({"lanes": 6, "tasks": 0}), 40), "empty");
        assert_eq!(counts_summary(&serde_json::json!({"pages": 1}), 40), "1 page");
    }

    #[test]
    fn the_row_fits_80_columns_and_gives_wide_screens_the_size() {
        let used = |row: &Row| row.cells.iter().filter(|c| c.width > 0).map(|c| c.width + 1).sum::<u16>();
        let meta = SnapshotMeta {
            id: 12,
            project_id: 1,
            format_version: 2,
            created_at: OffsetDateTime::UNIX_EPOCH,
            created_by: "ana".into(),
            label: "before the offsite".into(),
            reason: "manual".into(),
            counts: counts(),
            size_bytes: 40 * 1024,
            checksum: String::new(),
        };
        let narrow = snapshot_row(&meta, OffsetDateTime::UNIX_EPOCH, 80);
        assert!(MARGIN + used(&narrow) + 12 <= 80, "at least 12 columns left for the label");
        assert!(!narrow.cells.iter().any(|c| c.text.ends_with("KB")));
        assert!(narrow.cells.iter().any(|c| c.text == "120 tasks · 8 handoffs …"));
        let wide = snapshot_row(&meta, OffsetDateTime::UNIX_EPOCH, 160);
        assert!(wide.cells.iter().any(|c| c.text == "40 KB"));
        assert!(wide.cells.iter().any(|c| c.text == "120 tasks · 8 handoffs · 3 pages · 1 release"));
    }
}
