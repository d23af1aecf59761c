//! The `:` command line and the `/` filter line.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{board, change, load_screen, mutate, overlays, run, switch};
use crate::console::action::{Effect, Mutation, UndoRecipe};
use crate::console::command_line::{self, Candidates, Parsed};
use crate::console::filter::FilterQuery;
use crate::console::state::{AppState, Focus, InputKind, InputLine, ListCursor, Screen, ToastLevel};
use crate::store::handoffs::NewHandoff;
use crate::store::tasks::Position;

const HISTORY: usize = 100;

pub fn key(state: &mut AppState, event: KeyEvent) -> Vec<Effect> {
    let Some(mut line) = state.input.take() else { return Vec::new() };
    let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
    match event.code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Char('c') if ctrl => return Vec::new(),
        KeyCode::Enter => return submit(state, line),
        KeyCode::Tab if line.kind == InputKind::Command => complete(state, &mut line),
        KeyCode::Up | KeyCode::Down if line.kind == InputKind::Command => browse_history(state, &mut line, event.code),
        KeyCode::Left => line.cursor = line.cursor.saturating_sub(1),
        KeyCode::Right => line.cursor = (line.cursor + 1).min(line.text.chars().count()),
        KeyCode::Home => line.cursor = 0,
        KeyCode::End => line.cursor = line.text.chars().count(),
        KeyCode::Backspace => {
            if line.cursor > 0 {
                let at = line.cursor - 1;
                remove_char(&mut line, at);
                line.cursor = at;
            } else if line.text.is_empty() {
                return Vec::new(); // backspace on an empty line closes it
            }
            line.completions.clear();
        }
        KeyCode::Delete => {
            let at = line.cursor;
            if at < line.text.chars().count() {
                remove_char(&mut line, at);
            }
        }
        KeyCode::Char(c) if !ctrl => {
            if line.text.chars().count() < 500 {
                insert_char(&mut line, c);
            }
            line.completions.clear();
        }
        _ => {}
    }
    let live = line.kind == InputKind::Filter && state.screen != Screen::Work;
    let text = line.text.clone();
    state.input = Some(line);
    // List screens filter as you type; the board asks the database on enter.
    if live {
        apply_filter(state, &text);
    }
    Vec::new()
}

pub fn paste(state: &mut AppState, text: &str) -> Vec<Effect> {
    if let Some(line) = &mut state.input {
        for c in text.chars().filter(|c| !c.is_control()).take(500) {
            insert_char(line, c);
        }
    }
    Vec::new()
}

fn byte_index(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(i, _)| i)
}

fn insert_char(line: &mut InputLine, c: char) {
    let at = byte_index(&line.text, line.cursor);
    line.text.insert(at, c);
    line.cursor += 1;
}

fn remove_char(line: &mut InputLine, position: usize) {
    let at = byte_index(&line.text, position);
    if at < line.text.len() {
        line.text.remove(at);
    }
}

fn complete(state: &AppState, line: &mut InputLine) {
    if line.completions.is_empty() {
        let keys: Vec<&str> =
            state.board.columns.iter().flat_map(|c| c.cards.iter().map(|card| card.key.as_str())).collect();
        let lanes: Vec<&str> = state.board.columns.iter().map(|c| c.lane.name.as_str()).collect();
        let agents: Vec<&str> = state.agents.iter().map(|a| a.agent.handle.as_str()).collect();
        let candidates = Candidates { task_keys: keys, lanes, agents, projects: vec![state.project.key.as_str()] };
        line.completions = command_line::complete(&line.text, &candidates);
        line.completion = 0;
    } else {
        line.completion = (line.completion + 1) % line.completions.len();
    }
    if let Some(choice) = line.completions.get(line.completion) {
        line.text = choice.clone();
        line.cursor = line.text.chars().count();
    }
}

fn browse_history(state: &AppState, line: &mut InputLine, code: KeyCode) {
    if state.history.is_empty() {
        return;
    }
    let last = state.history.len() - 1;
    let index = match (line.history, code) {
        (None, KeyCode::Up) => Some(last),
        (Some(i), KeyCode::Up) => Some(i.saturating_sub(1)),
        (Some(i), KeyCode::Down) if i < last => Some(i + 1),
        _ => None,
    };
    line.history = index;
    line.text = index.map(|i| state.history[i].clone()).unwrap_or_default();
    line.cursor = line.text.chars().count();
}

fn apply_filter(state: &mut AppState, text: &str) -> bool {
    if state.focus == Focus::Drawer && state.drawer.open {
        state.drawer.filter = text.trim().to_string();
        state.drawer.selected = state.drawer.visible().len().saturating_sub(1);
        return true;
    }
    match FilterQuery::parse(text) {
        Ok(filter) => {
            let screen = state.screen;
            if filter.is_empty() {
                state.filters.remove(&screen);
            } else {
                state.filters.insert(screen, filter);
            }
            state.cursors.insert(screen, ListCursor::default());
            true
        }
        Err(message) => {
            state.toast(ToastLevel::Error, message);
            false
        }
    }
}

fn submit(state: &mut AppState, line: InputLine) -> Vec<Effect> {
    match line.kind {
        InputKind::Filter => {
            if !apply_filter(state, &line.text) {
                state.input = Some(line);
                return Vec::new();
            }
            if state.screen == Screen::Work && state.focus == Focus::Screen {
                // A key alone jumps to that task.
                if let Some(key) = state.filters.get(&Screen::Work).and_then(|f| f.as_task_key()) {
                    state.filters.remove(&Screen::Work);
                    return board::open_detail(state, key);
                }
                state.board.follow_key = None;
                for column in &mut state.board.columns {
                    column.cursor = 0;
                    column.scroll = 0;
                }
                return load_screen(state, Screen::Work);
            }
            Vec::new()
        }
        InputKind::SnapshotLabel => {
            mutate(state, change(Mutation::CreateSnapshot { label: line.text.trim().to_string() }, None))
        }
        InputKind::Command => {
            let text = line.text.trim().to_string();
            if text.is_empty() {
                return Vec::new();
            }
            if state.history.last() != Some(&text) {
                state.history.push(text.clone());
                if state.history.len() > HISTORY {
                    state.history.remove(0);
                }
            }
            match command_line::parse(&text) {
                Ok(parsed) => execute(state, parsed),
                Err(message) => {
                    state.toast(ToastLevel::Error, message);
                    state.input = Some(line);
                    Vec::new()
                }
            }
        }
    }
}

fn execute(state: &mut AppState, parsed: Parsed) -> Vec<Effect> {
    match parsed {
        Parsed::Run(command) => run(state, command),
        Parsed::Screen(screen) => switch(state, screen),
        Parsed::Jump(key) => board::open_detail(state, key),
        Parsed::Move { key, lane } => {
            let request = change(
                Mutation::Move { key: key.clone(), lane: Some(lane), position: Position::Bottom, expect_version: None },
                origin(state, &key),
            );
            mutate(state, request)
        }
        Parsed::Assign { key, handle } => overlays::assign(state, &[key], handle),
        Parsed::Handoff { key, to, kind, reason } => {
            let new = NewHandoff { task_key: key, kind, from: None, to, reason, needs: String::new(), due_at: None };
            mutate(state, change(Mutation::OpenHandoff(new), Some(UndoRecipe::CancelCreatedHandoff)))
        }
        Parsed::Archive { key } => {
            board::confirm_archive(state, vec![key]);
            Vec::new()
        }
        Parsed::Sync(verb) => super::sync::worker_command(state, verb),
        Parsed::Project(key) => {
            if key == state.project.key {
                state.toast(ToastLevel::Info, format!("already in {key}"));
                return Vec::new();
            }
            vec![Effect::LoadProject(key)]
        }
    }
}

/// Where a task is on the board now, so a `:move` can be undone.
fn origin(state: &AppState, key: &str) -> Option<UndoRecipe> {
    state.board.columns.iter().find_map(|column| {
        column.position_of(key).map(|position| UndoRecipe::MoveBack {
            key: key.to_string(),
            lane: column.lane.name.clone(),
            before: column.card_at(position + 1).map(|c| c.key.clone()),
        })
    })
}
