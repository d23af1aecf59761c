//! Sync as the console shows it: the status-line summary of the connections'
//! health, the Risks rows for failing connections, open conflicts and dead
//! letters, and how a mapping's state reads. Pure: no I/O, no drawing.

use std::cmp::Reverse;

use serde_json::Value;
use time::OffsetDateTime;

use super::keymap::{Command, Context};
use super::rows::{Cell, Row, Section, Target, Tone, age};
use super::state::AppState;
use crate::domain::{Provider, SyncState, text};
use crate::store::sync::{ConflictView, SyncHealth};
use crate::sync::queue::DeadLetter;
use crate::sync::registry::{WorkerState, WorkerView};

/// A last good pass older than this means nothing has synced for a while.
const STALE_AFTER_SECONDS: i64 = 15 * 60;
/// Longest conflict value kept for a row; the cell clips it further.
const VALUE_CHARS: usize = 300;

/// What the console knows about sync: each connection's health and the
/// worker this console runs itself, if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncView {
    /// One entry per connection of the project; `None` until first loaded.
    pub health: Option<Vec<SyncHealth>>,
    pub worker: LocalWorker,
    /// The sync workers serving the project, as they report themselves.
    pub workers: Vec<WorkerView>,
}

/// The sync worker a single-operator setup runs inside the console. `run`
/// tells one start from the next, so a late "stopped" from an old run is
/// not mistaken for the current one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocalWorker {
    #[default]
    Off,
    Running {
        run: u64,
        project_id: i64,
    },
    Stopping {
        run: u64,
    },
}

impl LocalWorker {
    pub fn run(self) -> Option<u64> {
        match self {
            LocalWorker::Off => None,
            LocalWorker::Running { run, .. } | LocalWorker::Stopping { run } => Some(run),
        }
    }
}

/// Open conflicts and dead letters, loaded with the Risks screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncIssues {
    pub conflicts: Vec<ConflictView>,
    pub dead_letters: Vec<DeadLetter>,
}

/// The status line's sync text: `long` when it fits, else `short`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub long: String,
    pub short: String,
    pub tone: Tone,
}

/// `sync: plane ✓ 2m`, `sync(here): plane ~4 queued`, `sync: plane ✗2 conflicts !1 dead`,
/// `sync: plane failing`, `sync: plane paused`, `sync: off`, `sync: no connections`.
/// With several enabled connections it names the one in the worst state and
/// counts the others (`+1`).
pub fn summary(view: &SyncView, now: OffsetDateTime) -> Summary {
    let label = match view.worker {
        LocalWorker::Off => "sync:",
        LocalWorker::Running { .. } => "sync(here):",
        LocalWorker::Stopping { .. } => "sync(stopping):",
    };
    let (long, short, tone) = match view.health.as_deref() {
        None => ("…".to_string(), "…".to_string(), Tone::Muted),
        Some([]) => ("no connections".to_string(), "none".to_string(), Tone::Muted),
        Some(all) => {
            let enabled: Vec<&SyncHealth> = all.iter().filter(|c| c.enabled).collect();
            let worst = enabled
                .iter()
                .copied()
                .max_by_key(|c| (ConnectionState::of(c, now).severity, Reverse(c.connection.as_str())));
            match worst {
                None => ("off".to_string(), "off".to_string(), Tone::Muted),
                Some(worst) => {
                    let state = ConnectionState::of(worst, now);
                    let others = if enabled.len() > 1 { format!(" +{}", enabled.len() - 1) } else { String::new() };
                    let name = text::clip(&worst.connection, 20);
                    (format!("{name} {}{others}", state.long), format!("{name} {}{others}", state.short), state.tone)
                }
            }
        }
    };
    Summary { long: format!("{label} {long}"), short: format!("{label} {short}"), tone }
}

/// One connection's state in words, and how bad it is (for picking the
/// connection the status line names).
struct ConnectionState {
    long: String,
    short: String,
    tone: Tone,
    severity: u8,
}

impl ConnectionState {
    fn of(c: &SyncHealth, now: OffsetDateTime) -> ConnectionState {
        let mut long: Vec<String> = Vec::new();
        let mut short: Vec<String> = Vec::new();
        let (mut tone, mut severity) = (Tone::Ok, 0);
        if c.last_pass_ok == Some(false) {
            long.push("failing".into());
            short.push("failing".into());
            (tone, severity) = (Tone::Danger, 5);
        } else if is_paused(c, now) {
            long.push("paused".into());
            short.push("paused".into());
            (tone, severity) = (Tone::Warn, 3);
        }
        if c.conflicts > 0 {
            long.push(format!("✗{} conflict{}", c.conflicts, if c.conflicts == 1 { "" } else { "s" }));
            short.push(format!("✗{}", c.conflicts));
        }
        if c.dead_letters > 0 {
            long.push(format!("!{} dead", c.dead_letters));
            short.push(format!("!{}", c.dead_letters));
        }
        if c.conflicts > 0 || c.dead_letters > 0 {
            tone = Tone::Danger;
            severity = severity.max(4);
        }
        if long.is_empty() && c.retrying > 0 {
            // Objects that failed and wait out a backoff: the provider is down or refusing them.
            long.push(format!("↻{} retrying", c.retrying));
            short.push(format!("↻{}", c.retrying));
            (tone, severity) = (Tone::Warn, 3);
        }
        if long.is_empty() && c.queued > 0 {
            long.push(format!("~{} queued", c.queued));
            short.push(format!("~{}", c.queued));
            (tone, severity) = (Tone::Warn, 2);
        }
        if long.is_empty() {
            match (c.last_pass_ok, c.last_pass_at) {
                (Some(true), Some(at)) => {
                    let stale = (now - at).whole_seconds() > STALE_AFTER_SECONDS;
                    long.push(format!("✓ {}", age(now, at)));
                    short.push(format!("✓ {}", age(now, at)));
                    if stale {
                        (tone, severity) = (Tone::Warn, 1);
                    }
                }
                _ => {
                    long.push("never synced".into());
                    short.push("new".into());
                    (tone, severity) = (Tone::Muted, 1);
                }
            }
        }
        ConnectionState { long: long.join(" "), short: short.join(" "), tone, severity }
    }
}

fn is_paused(c: &SyncHealth, now: OffsetDateTime) -> bool {
    c.paused_until.is_some_and(|until| until > now)
}

/// Whether the sync worker would serve any connection here: an enabled
/// Plane, repository or n8n one.
pub fn has_syncable_connection(health: &[SyncHealth]) -> bool {
    let served =
        |provider: &str| crate::sync::worker::SYNCED.iter().chain([&Provider::N8n]).any(|p| p.as_str() == provider);
    health.iter().any(|c| c.enabled && served(&c.provider))
}

/// A mapping's sync state as the task detail shows it: mark, words, tone.
pub fn mapping_state(state: SyncState) -> (&'static str, &'static str, Tone) {
    match state {
        SyncState::InSync => ("✓", "in sync", Tone::Ok),
        SyncState::Pending => ("~", "pending", Tone::Warn),
        SyncState::Conflict => ("✗", "conflict", Tone::Danger),
        SyncState::Error => ("!", "error", Tone::Danger),
        SyncState::Deleted => ("⊘", "deleted remotely", Tone::Muted),
    }
}

/// A conflict's value on one line: strings as they are, lists joined,
/// nothing as `(none)`. Clipped; the cell sanitizes and clips again.
pub fn value_text(value: Option<&Value>) -> String {
    let whole = match value {
        None | Some(Value::Null) => "(none)".to_string(),
        Some(Value::String(s)) if s.is_empty() => "(empty)".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "(none)".to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    };
    text::clip(&whole, VALUE_CHARS).into_owned()
}

fn cell(text: impl Into<String>, width: u16, tone: Tone) -> Cell {
    Cell { text: text.into(), tone, width }
}

/// The sync sections of the Risks screen, each only when it has rows:
/// failing or paused connections, open conflicts, dead letters.
pub fn risk_sections(state: &AppState) -> Vec<Section> {
    let mut sections = Vec::new();
    let now = state.now;
    let troubled: Vec<&SyncHealth> = state
        .conn
        .sync
        .health
        .iter()
        .flatten()
        .filter(|c| c.enabled && (c.last_pass_ok == Some(false) || is_paused(c, now)))
        .collect();
    if !troubled.is_empty() {
        sections.push(Section {
            title: format!("Sync connections in trouble ({})", troubled.len()),
            rows: troubled.iter().map(|c| connection_row(c, now)).collect(),
            empty: "",
        });
    }
    if let Some(section) = workers_section(&state.conn.sync, now) {
        sections.push(section);
    }
    let Some(issues) = &state.sync_issues else { return sections };
    let hint = |command| state.key_hint(Context::List, command);
    if !issues.conflicts.is_empty() {
        let several = several_connections(issues.conflicts.iter().map(|c| c.connection.as_str()));
        // Local and remote values share what the fixed cells leave, half each.
        let fixed = 3 + 11 + 13 + if several { 11 } else { 0 } + 1;
        let value_width = (state.width.saturating_sub(fixed) / 2).max(8);
        sections.push(Section {
            title: format!(
                "Sync conflicts ({}) — {} keeps local · {} takes remote · enter opens the task",
                issues.conflicts.len(),
                hint(Command::TakeLocal),
                hint(Command::TakeRemote)
            ),
            rows: issues.conflicts.iter().map(|c| conflict_row(c, several, value_width)).collect(),
            empty: "",
        });
    }
    if !issues.dead_letters.is_empty() {
        let several = several_connections(issues.dead_letters.iter().map(|d| d.connection.as_str()));
        sections.push(Section {
            title: format!(
                "Sync dead letters ({}) — {} retries · {} retries all",
                issues.dead_letters.len(),
                hint(Command::RetryDead),
                hint(Command::RetryAllDead)
            ),
            rows: issues.dead_letters.iter().map(|d| dead_letter_row(d, several, now)).collect(),
            empty: "",
        });
    }
    sections
}

/// Workers that wait for something or went silent, or — when the project
/// has connections to sync and nothing serves them — that no worker runs.
fn workers_section(view: &SyncView, now: OffsetDateTime) -> Option<Section> {
    let syncable = view.health.as_deref().is_some_and(has_syncable_connection);
    let troubled: Vec<&WorkerView> =
        view.workers.iter().filter(|w| matches!(w.state, WorkerState::Waiting | WorkerState::Gone)).collect();
    let serving = view.workers.iter().any(|w| matches!(w.state, WorkerState::Working | WorkerState::Idle))
        || view.worker != LocalWorker::Off;
    let mut rows: Vec<Row> = troubled.iter().map(|w| worker_row(w, now)).collect();
    if syncable && !serving {
        rows.insert(
            0,
            Row {
                cells: vec![cell(
                    "no sync worker is running: start `mctl sync run`, or :sync start here",
                    0,
                    Tone::Warn,
                )],
                target: Target::None,
            },
        );
    }
    (!rows.is_empty()).then(|| Section { title: format!("Sync workers ({})", rows.len()), rows, empty: "" })
}

fn worker_row(w: &WorkerView, now: OffsetDateTime) -> Row {
    let (what, tone) = match w.state {
        WorkerState::Gone => (format!("gone, seen {}", age(now, w.seen_at)), Tone::Muted),
        _ => ("waiting".to_string(), Tone::Warn),
    };
    Row {
        cells: vec![
            cell(&w.id, 18, Tone::Accent),
            cell(what, 14, tone),
            cell(w.detail.clone().unwrap_or_default(), 0, Tone::Normal),
        ],
        target: Target::None,
    }
}

fn several_connections<'a>(mut names: impl Iterator<Item = &'a str>) -> bool {
    let Some(first) = names.next() else { return false };
    names.any(|n| n != first)
}

fn connection_row(c: &SyncHealth, now: OffsetDateTime) -> Row {
    let (what, tone) = if c.last_pass_ok == Some(false) {
        ("failing".to_string(), Tone::Danger)
    } else {
        let until = c.paused_until.map(|u| age(now, u)).unwrap_or_default();
        (format!("paused, {until}"), Tone::Warn)
    };
    Row {
        cells: vec![
            cell(&c.connection, 14, Tone::Accent),
            cell(what, 14, tone),
            cell(c.last_error.clone().unwrap_or_else(|| "no error recorded".into()), 0, Tone::Normal),
        ],
        target: Target::None,
    }
}

fn conflict_row(c: &ConflictView, several: bool, value_width: u16) -> Row {
    let object = c.entity_key.clone().unwrap_or_else(|| format!("{} {}", c.local_kind, c.local_id));
    let mut cells = vec![cell(object, 10, Tone::Accent), cell(&c.field, 12, Tone::Normal)];
    if several {
        cells.push(cell(&c.connection, 10, Tone::Muted));
    }
    cells.push(cell(format!("local: {}", value_text(c.local_value.as_ref())), value_width, Tone::Normal));
    cells.push(cell(format!("remote: {}", value_text(c.remote_value.as_ref())), 0, Tone::Warn));
    let task = (c.local_kind == "task").then(|| c.entity_key.clone()).flatten();
    Row { cells, target: Target::Conflict { id: c.id, task } }
}

fn dead_letter_row(d: &DeadLetter, several: bool, now: OffsetDateTime) -> Row {
    let mut cells = vec![cell(&d.key, 12, Tone::Accent)];
    if several {
        cells.push(cell(&d.connection, 10, Tone::Muted));
    }
    cells.push(cell(format!("{} tries", d.attempts), 9, Tone::Muted));
    cells.push(cell(age(now, d.failed_at), 4, Tone::Muted));
    cells.push(cell(d.last_error.clone().unwrap_or_else(|| "no error recorded".into()), 0, Tone::Danger));
    Row { cells, target: Target::DeadLetter(d.id) }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-27 12:00 UTC);

    fn healthy(name: &str) -> SyncHealth {
        SyncHealth {
            connection: name.into(),
            provider: "plane".into(),
            enabled: true,
            last_pass_at: Some(NOW - time::Duration::minutes(2)),
            last_pass_ok: Some(true),
            last_full_at: None,
            last_error: None,
            paused_until: None,
            queued: 0,
            lag_seconds: None,
            conflicts: 0,
            dead_letters: 0,
            retrying: 0,
            deliveries: None,
        }
    }

    fn text_of(health: Vec<SyncHealth>) -> String {
        summary(&SyncView { health: Some(health), worker: LocalWorker::Off, workers: vec![] }, NOW).long
    }

    #[test]
    fn summaries_name_the_worst_state() {
        assert_eq!(summary(&SyncView::default(), NOW).long, "sync: …");
        assert_eq!(text_of(vec![]), "sync: no connections");
        assert_eq!(text_of(vec![SyncHealth { enabled: false, ..healthy("plane") }]), "sync: off");
        assert_eq!(text_of(vec![healthy("plane")]), "sync: plane ✓ 2m");
        assert_eq!(text_of(vec![SyncHealth { queued: 4, ..healthy("plane") }]), "sync: plane ~4 queued");
        assert_eq!(text_of(vec![SyncHealth { queued: 4, retrying: 3, ..healthy("plane") }]), "sync: plane ↻3 retrying");
        let troubled = SyncHealth { conflicts: 2, dead_letters: 1, queued: 3, ..healthy("plane") };
        assert_eq!(text_of(vec![troubled.clone()]), "sync: plane ✗2 conflicts !1 dead");
        assert_eq!(text_of(vec![SyncHealth { last_pass_ok: Some(false), ..healthy("plane") }]), "sync: plane failing");
        let paused = SyncHealth { paused_until: Some(NOW + time::Duration::seconds(30)), ..healthy("plane") };
        assert_eq!(text_of(vec![paused]), "sync: plane paused");
        let never = SyncHealth { last_pass_at: None, last_pass_ok: None, ..healthy("plane") };
        assert_eq!(text_of(vec![never]), "sync: plane never synced");
        assert_eq!(text_of(vec![healthy("a"), troubled, healthy("z")]), "sync: plane ✗2 conflicts !1 dead +2");
        let here = SyncView {
            health: Some(vec![healthy("plane")]),
            worker: LocalWorker::Running { run: 1, project_id: 1 },
            workers: vec![],
        };
        let here = summary(&here, NOW);
        assert_eq!((here.long.as_str(), here.short.as_str()), ("sync(here): plane ✓ 2m", "sync(here): plane ✓ 2m"));
    }

    #[test]
    fn a_stale_pass_is_a_warning() {
        let old = SyncHealth { last_pass_at: Some(NOW - time::Duration::hours(3)), ..healthy("plane") };
        let shown = summary(&SyncView { health: Some(vec![old]), worker: LocalWorker::Off, workers: vec![] }, NOW);
        assert_eq!((shown.long.as_str(), shown.tone), ("sync: plane ✓ 3h", Tone::Warn));
    }

    #[test]
    fn the_risks_say_when_no_worker_serves_the_connections_and_which_wait() {
        let worker = |state| WorkerView {
            id: "host-1#0".into(),
            project: None,
            state,
            detail: Some("waiting for the database since 12s: connection refused".into()),
            started_at: NOW - time::Duration::hours(1),
            seen_at: NOW - time::Duration::minutes(5),
        };
        let view = |workers| SyncView { health: Some(vec![healthy("plane")]), worker: LocalWorker::Off, workers };
        let section = workers_section(&view(vec![]), NOW).expect("nothing serves the connection");
        assert!(section.rows[0].cells[0].text.contains("no sync worker is running"));
        assert_eq!(workers_section(&view(vec![worker(WorkerState::Idle)]), NOW), None);
        let section = workers_section(&view(vec![worker(WorkerState::Waiting)]), NOW).unwrap();
        assert_eq!(section.rows.len(), 2, "no live worker, and the waiting one");
        assert!(section.rows[1].cells[2].text.contains("connection refused"));
        let gone = workers_section(&view(vec![worker(WorkerState::Gone), worker(WorkerState::Idle)]), NOW).unwrap();
        assert_eq!(gone.rows.len(), 1);
        assert!(gone.rows[0].cells[1].text.starts_with("gone"));
        let none = SyncView { health: Some(vec![]), worker: LocalWorker::Off, workers: vec![] };
        assert_eq!(workers_section(&none, NOW), None, "no connections, nothing to serve");
    }

    #[test]
    fn values_read_as_text() {
        assert_eq!(value_text(None), "(none)");
        assert_eq!(value_text(Some(&serde_json::json!("Fix login"))), "Fix login");
        assert_eq!(value_text(Some(&serde_json::json!(["ui", "bug"]))), "ui, bug");
        assert_eq!(value_text(Some(&serde_json::json!(3))), "3");
        assert!(value_text(Some(&serde_json::json!("x".repeat(5000)))).chars().count() <= VALUE_CHARS + 1);
    }
}
