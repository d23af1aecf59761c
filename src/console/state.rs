//! The one state of the console. Only `update` changes it; `draw` only reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::action::{MutationRequest, RequestId};
use super::data::{DeliveryData, DetailData, InboxData, PlanningData, QueryKey, SettingsData};
use super::filter::FilterQuery;
use super::keymap::{Command, Keymap};
use super::sync::{SyncIssues, SyncView};
use super::theme::Theme;
use crate::domain::{AuditEntry, HandoffKind, Lane, Page, Priority, Project, SnapshotMeta, Task};
use crate::store::agents::AgentLoad;
use crate::store::board::Card;
use crate::store::views::Risk;

/// The eight screens, in number-key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Screen {
    Inbox,
    Today,
    Work,
    Planning,
    Delivery,
    Risks,
    Recovery,
    Settings,
}

impl Screen {
    pub const ALL: [Screen; 8] = [
        Screen::Inbox,
        Screen::Today,
        Screen::Work,
        Screen::Planning,
        Screen::Delivery,
        Screen::Risks,
        Screen::Recovery,
        Screen::Settings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Screen::Inbox => "inbox",
            Screen::Today => "today",
            Screen::Work => "work",
            Screen::Planning => "planning",
            Screen::Delivery => "delivery",
            Screen::Risks => "risks",
            Screen::Recovery => "recovery",
            Screen::Settings => "settings",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Screen::Inbox => "Inbox",
            Screen::Today => "Today",
            Screen::Work => "Work",
            Screen::Planning => "Planning",
            Screen::Delivery => "Delivery",
            Screen::Risks => "Risks",
            Screen::Recovery => "Recovery",
            Screen::Settings => "Settings",
        }
    }

    pub fn number(self) -> usize {
        Screen::ALL.iter().position(|s| *s == self).unwrap_or(0) + 1
    }

    pub fn from_name(name: &str) -> Option<Screen> {
        let name = name.to_ascii_lowercase();
        if name == "board" {
            return Some(Screen::Work);
        }
        Screen::ALL.iter().copied().find(|s| s.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Screen,
    Drawer,
}

/// One board column: the lane, a loaded window of its cards, and where the
/// cursor and the scroll are (absolute positions in the lane).
#[derive(Debug, Clone, PartialEq)]
pub struct LaneColumn {
    pub lane: Lane,
    /// Cards `offset .. offset + cards.len()` of the lane.
    pub cards: Vec<Card>,
    pub offset: i64,
    /// Cards in the lane (matching the filter, when there is one).
    pub total: i64,
    pub cursor: i64,
    pub scroll: i64,
    pub window_requested: Option<i64>,
}

impl LaneColumn {
    pub fn card_at(&self, index: i64) -> Option<&Card> {
        if index < self.offset {
            return None;
        }
        self.cards.get((index - self.offset) as usize)
    }

    pub fn selected(&self) -> Option<&Card> {
        self.card_at(self.cursor)
    }

    pub fn position_of(&self, key: &str) -> Option<i64> {
        self.cards.iter().position(|c| c.key == key).map(|i| self.offset + i as i64)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoardView {
    pub columns: Vec<LaneColumn>,
    /// The selected column.
    pub lane: usize,
    /// The first column on screen (horizontal scroll).
    pub first_column: usize,
    pub loaded: bool,
    /// Keys marked for a bulk action.
    pub marked: BTreeSet<String>,
    /// Where the last mark was set, for range marking: (column, position).
    pub anchor: Option<(usize, i64)>,
    /// The task the cursor should stay on across reloads.
    pub follow_key: Option<String>,
}

impl BoardView {
    pub fn column(&self) -> Option<&LaneColumn> {
        self.columns.get(self.lane)
    }

    pub fn selected(&self) -> Option<&Card> {
        self.column().and_then(LaneColumn::selected)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListCursor {
    pub selected: usize,
}

/// The task detail overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct DetailState {
    pub key: String,
    pub data: Option<DetailData>,
    pub scroll: u16,
    /// Which of the task's handoffs the handoff keys act on.
    pub handoff: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HelpState {
    pub query: String,
    pub selected: usize,
}

/// A small form: create/edit a task, open a handoff.
#[derive(Debug, Clone, PartialEq)]
pub struct Form {
    pub kind: FormKind,
    pub fields: Vec<Field>,
    pub focus: usize,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FormKind {
    NewTask,
    EditTask { key: String, version: i32, before: EditableFields },
    Handoff { key: String },
}

impl FormKind {
    pub fn title(&self) -> String {
        match self {
            FormKind::NewTask => "New task".into(),
            FormKind::EditTask { key, .. } => format!("Edit {key}"),
            FormKind::Handoff { key } => format!("Handoff for {key}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    /// Fixed choices cycled with left/right; empty for free text.
    pub choices: Vec<String>,
    pub hint: &'static str,
}

impl Field {
    pub fn text(label: &'static str, value: impl Into<String>, hint: &'static str) -> Field {
        Field { label, value: value.into(), choices: Vec::new(), hint }
    }

    pub fn choice(label: &'static str, value: impl Into<String>, choices: Vec<String>) -> Field {
        Field { label, value: value.into(), choices, hint: "←/→ to change" }
    }
}

/// Picking an agent with fuzzy search.
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub keys: Vec<String>,
    pub query: String,
    pub selected: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub message: String,
    pub request: MutationRequest,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageView {
    pub page: Page,
    pub scroll: u16,
}

/// A snapshot's differences from now, with tasks marked for a partial restore.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffView {
    pub snapshot_id: i64,
    pub diff: Option<crate::snapshot::diff::Diff>,
    /// The selected line.
    pub selected: usize,
    pub marked: BTreeSet<String>,
}

/// The dry-run summary of a restore, waiting for the project key to be typed.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreConfirm {
    pub report: crate::snapshot::RestoreReport,
    pub only: Vec<String>,
    pub typed: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    Detail(Box<DetailState>),
    Help(HelpState),
    Form(Form),
    Picker(Picker),
    Confirm(Box<Confirm>),
    Page(PageView),
    Diff(Box<AuditEntry>),
    SnapshotDiff(Box<DiffView>),
    RestoreConfirm(Box<RestoreConfirm>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Command,
    Filter,
    /// The label of a snapshot about to be taken.
    SnapshotLabel,
}

/// The `:` or `/` line at the bottom.
#[derive(Debug, Clone, PartialEq)]
pub struct InputLine {
    pub kind: InputKind,
    pub text: String,
    /// Cursor position in characters.
    pub cursor: usize,
    /// Tab completion in progress: the choices and which one is shown.
    pub completions: Vec<String>,
    pub completion: usize,
    /// Position in the command history while browsing it with up/down.
    pub history: Option<usize>,
}

impl InputLine {
    pub fn new(kind: InputKind, text: &str) -> InputLine {
        InputLine {
            kind,
            text: text.to_string(),
            cursor: text.chars().count(),
            completions: Vec::new(),
            completion: 0,
            history: None,
        }
    }
}

/// The live audit tail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDrawer {
    pub open: bool,
    /// Oldest first, at most [`AuditDrawer::CAPACITY`] entries.
    pub entries: VecDeque<AuditEntry>,
    pub follow: bool,
    pub selected: usize,
    pub filter: String,
    /// No older entries in the database.
    pub exhausted: bool,
    pub loading_older: bool,
}

impl AuditDrawer {
    pub const CAPACITY: usize = 2000;

    pub fn last_id(&self) -> i64 {
        self.entries.back().map_or(0, |e| e.id)
    }

    /// Entries that pass the drawer's filter, oldest first.
    pub fn visible(&self) -> Vec<&AuditEntry> {
        let filter = self.filter.to_lowercase();
        self.entries
            .iter()
            .filter(|e| {
                filter.is_empty()
                    || e.action.contains(&filter)
                    || e.actor.to_lowercase().contains(&filter)
                    || e.entity_key.as_deref().is_some_and(|k| k.to_lowercase().contains(&filter))
            })
            .collect()
    }
}

impl Default for AuditDrawer {
    fn default() -> Self {
        AuditDrawer {
            open: false,
            entries: VecDeque::new(),
            follow: true,
            selected: 0,
            filter: String::new(),
            exhausted: false,
            loading_older: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToastLevel {
    Info,
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Toast {
    pub text: String,
    pub level: ToastLevel,
    pub until: OffsetDateTime,
}

/// One change of this session that `u` can reverse.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoStep {
    pub label: String,
    pub request: MutationRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbHealth {
    Connecting,
    Connected,
    Reconnecting { since: OffsetDateTime, reason: String },
}

/// Connection state and freshness, always shown in the status line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnState {
    pub db: DbHealth,
    pub last_refresh: Option<OffsetDateTime>,
    /// The newest audit id seen: what the fallback poll compares against.
    pub last_audit_id: i64,
    /// Change notifications are flowing (the LISTEN connection is up).
    pub live: bool,
    pub sync: SyncView,
}

/// Request bookkeeping: the newest id per query kind wins, older results are dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests {
    pub counter: RequestId,
    pub latest: HashMap<QueryKey, RequestId>,
    pub mutations_in_flight: usize,
}

impl Requests {
    pub fn issue(&mut self, key: QueryKey) -> RequestId {
        self.counter += 1;
        self.latest.insert(key, self.counter);
        self.counter
    }

    pub fn next_id(&mut self) -> RequestId {
        self.counter += 1;
        self.counter
    }

    /// True when `id` is still the newest request of its kind (and retires it).
    pub fn accept(&mut self, key: QueryKey, id: RequestId) -> bool {
        match self.latest.get(&key) {
            Some(latest) if *latest == id => {
                self.latest.remove(&key);
                true
            }
            _ => false,
        }
    }

    pub fn pending(&self, key: QueryKey) -> bool {
        self.latest.contains_key(&key)
    }
}

/// Settings the console starts with.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub read_only: bool,
    pub mouse: bool,
    /// Tasks in started lanes untouched for this long are risks.
    pub stale_after: Duration,
    /// Agents silent for this long are marked offline (`[dispatch] offline_after_minutes`).
    pub offline_after: Duration,
    pub keymap: Arc<Keymap>,
    pub theme: Arc<Theme>,
    /// Problems found in the keymap or theme, shown when the console opens.
    pub warnings: Vec<String>,
    /// Bulk actions over this many tasks take a snapshot first (0: never).
    pub snapshot_before_bulk: usize,
    /// How long the console's sync worker retries a failing key (`[sync] retry_for`).
    pub sync_retry_for: std::time::Duration,
}

impl ConsoleOptions {
    /// Defaults: shipped keymap, dark theme (mono with `no_color`).
    pub fn defaults(no_color: bool) -> ConsoleOptions {
        let (keymap, mut warnings) = Keymap::load(None);
        let (theme, theme_warnings) = Theme::load("dark", None, no_color);
        warnings.extend(theme_warnings);
        ConsoleOptions {
            read_only: false,
            mouse: false,
            stale_after: Duration::days(7),
            offline_after: Duration::minutes(15),
            keymap: Arc::new(keymap),
            theme: Arc::new(theme),
            warnings,
            snapshot_before_bulk: 20,
            sync_retry_for: crate::sync::retry::DEFAULT_RETRY_FOR,
        }
    }
}

pub struct AppState {
    pub project: Project,
    pub operator: String,
    pub read_only: bool,
    pub mouse: bool,
    pub now: OffsetDateTime,
    pub width: u16,
    pub height: u16,
    pub screen: Screen,
    pub focus: Focus,
    pub board: BoardView,
    pub cursors: BTreeMap<Screen, ListCursor>,
    pub inbox: Option<InboxData>,
    pub today: Option<Vec<Task>>,
    pub planning: Option<PlanningData>,
    pub delivery: Option<DeliveryData>,
    pub risks: Option<Vec<Risk>>,
    /// Open sync conflicts and dead letters, loaded with the Risks screen.
    pub sync_issues: Option<SyncIssues>,
    pub recovery: Option<Vec<SnapshotMeta>>,
    pub settings: Option<SettingsData>,
    pub agents: Vec<AgentLoad>,
    pub filters: BTreeMap<Screen, FilterQuery>,
    pub overlay: Option<Overlay>,
    pub input: Option<InputLine>,
    pub drawer: AuditDrawer,
    pub toasts: Vec<Toast>,
    pub undo: Vec<UndoStep>,
    pub conn: ConnState,
    pub requests: Requests,
    pub keymap: Arc<Keymap>,
    pub theme: Arc<Theme>,
    pub history: Vec<String>,
    pub refresh_scheduled: bool,
    /// A change arrived while a refresh was in flight: refresh once more when it lands.
    pub refresh_again: bool,
    pub stale_after: Duration,
    pub offline_after: Duration,
    pub should_quit: bool,
    /// Ticks since start, for the fallback poll's rhythm.
    pub ticks: u64,
    /// The current step of a long operation (a restore) while it runs.
    pub progress: Option<String>,
}

impl AppState {
    pub fn new(project: Project, operator: &str, options: &ConsoleOptions, now: OffsetDateTime) -> AppState {
        let mut state = AppState {
            project,
            operator: operator.to_string(),
            read_only: options.read_only,
            mouse: options.mouse,
            now,
            width: 80,
            height: 24,
            screen: Screen::Work,
            focus: Focus::Screen,
            board: BoardView::default(),
            cursors: BTreeMap::new(),
            inbox: None,
            today: None,
            planning: None,
            delivery: None,
            risks: None,
            sync_issues: None,
            recovery: None,
            settings: None,
            agents: Vec::new(),
            filters: BTreeMap::new(),
            overlay: None,
            input: None,
            drawer: AuditDrawer::default(),
            toasts: Vec::new(),
            undo: Vec::new(),
            conn: ConnState {
                db: DbHealth::Connecting,
                last_refresh: None,
                last_audit_id: 0,
                live: false,
                sync: SyncView::default(),
            },
            requests: Requests::default(),
            keymap: options.keymap.clone(),
            theme: options.theme.clone(),
            history: Vec::new(),
            refresh_scheduled: false,
            refresh_again: false,
            stale_after: options.stale_after,
            offline_after: options.offline_after,
            should_quit: false,
            ticks: 0,
            progress: None,
        };
        for warning in &options.warnings {
            state.toast(ToastLevel::Error, warning.clone());
        }
        state
    }

    pub fn toast(&mut self, level: ToastLevel, text: impl Into<String>) {
        let seconds = if level == ToastLevel::Error { 8 } else { 3 };
        self.toasts.push(Toast { text: text.into(), level, until: self.now + Duration::seconds(seconds) });
        if self.toasts.len() > 4 {
            self.toasts.remove(0);
        }
    }

    pub fn cursor(&self, screen: Screen) -> ListCursor {
        self.cursors.get(&screen).copied().unwrap_or_default()
    }

    pub fn filter(&self, screen: Screen) -> Option<&FilterQuery> {
        self.filters.get(&screen).filter(|f| !f.is_empty())
    }

    pub fn is_connected(&self) -> bool {
        self.conn.db == DbHealth::Connected
    }

    /// A command name for the key hint of a command in a context.
    pub fn key_hint(&self, context: super::keymap::Context, command: Command) -> String {
        self.keymap
            .keys_for(context, command)
            .first()
            .map(|k| k.to_string())
            .unwrap_or_else(|| format!(":{}", command.name()))
    }
}

/// The task fields the edit form changes, as they were when it opened (the
/// undo of an edit puts them back).
#[derive(Debug, Clone, PartialEq)]
pub struct EditableFields {
    pub title: String,
    pub priority: Priority,
    pub labels: Vec<String>,
    pub due_on: Option<time::Date>,
}

/// Values the new-task form starts with.
pub fn new_task_form(lane: &str, lanes: &[String]) -> Form {
    let priorities: Vec<String> = Priority::ALL.iter().map(|p| p.to_string()).collect();
    Form {
        kind: FormKind::NewTask,
        fields: vec![
            Field::text("Title", "", "required, one line"),
            Field::choice("Lane", lane, lanes.to_vec()),
            Field::choice("Priority", "none", priorities),
            Field::text("Assignee", "", "@handle, optional"),
            Field::text("Labels", "", "space separated"),
            Field::text("Due", "", "YYYY-MM-DD, today, +3d"),
        ],
        focus: 0,
        error: None,
    }
}

pub fn edit_task_form(key: &str, version: i32, before: EditableFields) -> Form {
    let priorities: Vec<String> = Priority::ALL.iter().map(|p| p.to_string()).collect();
    Form {
        fields: vec![
            Field::text("Title", before.title.clone(), "required, one line"),
            Field::choice("Priority", before.priority.to_string(), priorities),
            Field::text("Labels", before.labels.join(" "), "space separated"),
            Field::text(
                "Due",
                before.due_on.map(|d| d.to_string()).unwrap_or_default(),
                "YYYY-MM-DD, today, +3d, empty",
            ),
        ],
        kind: FormKind::EditTask { key: key.to_string(), version, before },
        focus: 0,
        error: None,
    }
}

pub fn handoff_form(key: &str) -> Form {
    Form {
        kind: FormKind::Handoff { key: key.to_string() },
        fields: vec![
            Field::choice("Kind", HandoffKind::Transfer.to_string(), vec!["transfer".into(), "blocked".into()]),
            Field::text("To", "", "@handle"),
            Field::text("Reason", "", "required"),
            Field::text("Needs", "", "what would unblock it, optional"),
            Field::text("Due", "", "a span like 4h or 2d, optional"),
        ],
        focus: 0,
        error: None,
    }
}
