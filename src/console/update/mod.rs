//! `update`: the single place the console's state changes. It takes one
//! action and returns the effects (queries, changes) to run; it never does I/O.

mod board;
mod data;
mod input;
mod lists;
mod overlays;
mod sync;
mod undo;

use crossterm::event::{KeyEvent, KeyEventKind, MouseEvent, MouseEventKind};

use super::action::{Action, Effect, Mutation, MutationRequest};
use super::data::Query;
use super::keymap::{Command, Context, Key};
use super::state::{AppState, Focus, InputKind, InputLine, Overlay, Screen, ToastLevel};

pub use data::refresh;

pub fn update(state: &mut AppState, action: Action) -> Vec<Effect> {
    match action {
        Action::Key(key) => on_key(state, key),
        Action::Mouse(mouse) => on_mouse(state, mouse),
        Action::Paste(text) => input::paste(state, &text),
        Action::Resize(width, height) => {
            state.width = width;
            state.height = height;
            board::keep_cursor_visible(state)
        }
        Action::Run(command) => run(state, command),
        Action::SyncWorkerStopped { run, error } => sync::worker_stopped(state, run, error),
        Action::Quit => {
            state.should_quit = true;
            Vec::new()
        }
        other => data::on_data(state, other),
    }
}

/// The effects that fill the console when it opens.
pub fn start(state: &mut AppState) -> Vec<Effect> {
    let mut effects = load_screen(state, state.screen);
    effects.push(query(state, Query::Agents));
    effects.push(query(state, Query::AuditTail { after_id: 0 }));
    effects.push(query(state, Query::SyncHealth));
    effects
}

/// Issues a query, registering it as the newest of its kind.
pub(crate) fn query(state: &mut AppState, query: Query) -> Effect {
    let id = state.requests.issue(query.key());
    Effect::Query { id, query }
}

/// Sends a change, unless the session cannot make changes right now; then says why.
pub(crate) fn mutate(state: &mut AppState, request: MutationRequest) -> Vec<Effect> {
    if state.read_only {
        state.toast(ToastLevel::Error, "read-only session: nothing was changed");
        return Vec::new();
    }
    if !state.is_connected() {
        state.toast(ToastLevel::Error, "the database is unreachable: nothing was changed; try again once reconnected");
        return Vec::new();
    }
    state.requests.mutations_in_flight += 1;
    let id = state.requests.next_id();
    vec![Effect::Mutate { id, request: Box::new(request) }]
}

/// A plain change with its undo.
pub(crate) fn change(mutation: Mutation, undo: Option<super::action::UndoRecipe>) -> MutationRequest {
    let label = mutation.describe();
    MutationRequest { mutation, reason: None, undo, label }
}

/// The query that loads a screen's data.
pub(crate) fn load_screen(state: &mut AppState, screen: Screen) -> Vec<Effect> {
    let q = match screen {
        Screen::Work => {
            Query::Board { filter: state.filter(Screen::Work).map(|f| f.to_card_filter()).unwrap_or_default() }
        }
        Screen::Inbox => Query::Inbox { operator: state.operator.clone() },
        Screen::Today => Query::Today { today: state.now.date(), offline_after: state.offline_after },
        Screen::Planning => Query::Planning { today: state.now.date() },
        Screen::Delivery => Query::Delivery,
        Screen::Risks => {
            Query::Risks { now: state.now, stale_after: state.stale_after, offline_after: state.offline_after }
        }
        Screen::Recovery => Query::Recovery,
        Screen::Settings => Query::Settings,
    };
    vec![query(state, q)]
}

fn context(state: &AppState) -> Context {
    match (&state.overlay, state.focus, state.screen) {
        (Some(Overlay::Detail(_)), _, _) => Context::Detail,
        (_, Focus::Drawer, _) if state.drawer.open => Context::Drawer,
        (_, _, Screen::Work) => Context::Board,
        (_, _, Screen::Recovery) => Context::Recovery,
        _ => Context::List,
    }
}

fn on_key(state: &mut AppState, event: KeyEvent) -> Vec<Effect> {
    if event.kind == KeyEventKind::Release {
        return Vec::new();
    }
    if state.input.is_some() {
        return input::key(state, event);
    }
    if let Some(effects) = overlays::key(state, event) {
        return effects;
    }
    match state.keymap.lookup(context(state), Key::from_event(&event)) {
        Some(command) => run(state, command),
        None => Vec::new(),
    }
}

fn on_mouse(state: &mut AppState, mouse: MouseEvent) -> Vec<Effect> {
    if !state.mouse || state.overlay.is_some() || state.input.is_some() {
        return Vec::new();
    }
    match mouse.kind {
        MouseEventKind::ScrollDown => (0..3).flat_map(|_| run(state, Command::Down)).collect(),
        MouseEventKind::ScrollUp => (0..3).flat_map(|_| run(state, Command::Up)).collect(),
        MouseEventKind::Down(_) => {
            let areas = super::layout::for_state(state);
            if let Some(drawer) = areas.drawer
                && mouse.row >= drawer.y
            {
                state.focus = Focus::Drawer;
                return Vec::new();
            }
            state.focus = Focus::Screen;
            if mouse.row < areas.body.y || mouse.row >= areas.body.y + areas.body.height {
                return Vec::new();
            }
            if state.screen == Screen::Work {
                board::click(state, mouse.column, mouse.row)
            } else {
                lists::click(state, mouse.row)
            }
        }
        _ => Vec::new(),
    }
}

/// Runs a command in the current context.
pub fn run(state: &mut AppState, command: Command) -> Vec<Effect> {
    if command.mutates() && state.read_only {
        state.toast(ToastLevel::Error, format!("read-only session: {} is disabled", command.name()));
        return Vec::new();
    }
    match command {
        Command::Quit => {
            state.should_quit = true;
            Vec::new()
        }
        Command::Help => {
            state.overlay = Some(Overlay::Help(super::state::HelpState { query: String::new(), selected: 0 }));
            Vec::new()
        }
        Command::CommandLine => {
            state.input = Some(InputLine::new(InputKind::Command, ""));
            Vec::new()
        }
        Command::Filter => {
            let current = if state.focus == Focus::Drawer && state.drawer.open {
                state.drawer.filter.clone()
            } else {
                state.filters.get(&state.screen).map(|f| f.raw.clone()).unwrap_or_default()
            };
            state.input = Some(InputLine::new(InputKind::Filter, &current));
            Vec::new()
        }
        Command::GoInbox => switch(state, Screen::Inbox),
        Command::GoToday => switch(state, Screen::Today),
        Command::GoWork => switch(state, Screen::Work),
        Command::GoPlanning => switch(state, Screen::Planning),
        Command::GoDelivery => switch(state, Screen::Delivery),
        Command::GoRisks => switch(state, Screen::Risks),
        Command::GoRecovery => switch(state, Screen::Recovery),
        Command::GoSettings => switch(state, Screen::Settings),
        Command::NextScreen | Command::PrevScreen => {
            let n = Screen::ALL.len();
            let i = state.screen.number() - 1;
            let next = if command == Command::NextScreen { (i + 1) % n } else { (i + n - 1) % n };
            switch(state, Screen::ALL[next])
        }
        Command::ToggleAudit => {
            state.drawer.open = !state.drawer.open;
            state.focus = if state.drawer.open { Focus::Drawer } else { Focus::Screen };
            board::keep_cursor_visible(state)
        }
        Command::FocusNext => {
            state.focus = match state.focus {
                Focus::Screen if state.drawer.open => Focus::Drawer,
                _ => Focus::Screen,
            };
            Vec::new()
        }
        Command::Undo => undo::undo(state),
        Command::Refresh => {
            state.toast(ToastLevel::Info, "reloading");
            refresh(state)
        }
        Command::Follow => {
            state.drawer.follow = !state.drawer.follow;
            if state.drawer.follow {
                state.drawer.selected = state.drawer.visible().len().saturating_sub(1);
            }
            Vec::new()
        }
        _ if state.focus == Focus::Drawer && state.drawer.open => data::drawer_command(state, command),
        _ if state.screen == Screen::Work => board::command(state, command),
        _ => lists::command(state, command),
    }
}

pub(crate) fn switch(state: &mut AppState, screen: Screen) -> Vec<Effect> {
    state.screen = screen;
    state.focus = Focus::Screen;
    load_screen(state, screen)
}

/// The task key a command acts on in the current screen, if any.
pub(crate) fn current_task_key(state: &AppState) -> Option<String> {
    if state.screen == Screen::Work {
        state.board.selected().map(|c| c.key.clone())
    } else {
        super::rows::selected_target(state, state.screen).task_key().map(str::to_string)
    }
}
