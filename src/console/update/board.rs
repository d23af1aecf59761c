//! The Work board: cursor and scrolling, moves (optimistic, confirmed by the
//! database), marks for bulk actions.

use super::{change, current_task_key, mutate, query};
use crate::console::action::{Effect, Mutation, UndoRecipe};
use crate::console::data::{Query, WINDOW};
use crate::console::keymap::Command;
use crate::console::layout::{self, CARD_HEIGHT};
use crate::console::state::{
    AppState, BoardView, Confirm, DetailState, EditableFields, LaneColumn, Overlay, Picker, Screen, ToastLevel,
    edit_task_form, handoff_form, new_task_form,
};
use crate::store::board::BoardLane;
use crate::store::tasks::Position;

fn capacity(state: &AppState) -> (usize, i64) {
    let areas = layout::for_state(state);
    let (visible, _, cards) = layout::board_geometry(areas.body, state.board.columns.len());
    (visible, cards)
}

pub fn command(state: &mut AppState, command: Command) -> Vec<Effect> {
    let (_, page) = capacity(state);
    match command {
        Command::Up => step(state, -1),
        Command::Down => step(state, 1),
        Command::PageUp => step(state, -page),
        Command::PageDown => step(state, page),
        Command::Top => step(state, i64::MIN / 2),
        Command::Bottom => step(state, i64::MAX / 2),
        Command::Left | Command::Right => {
            let count = state.board.columns.len();
            if count > 0 {
                let lane = state.board.lane as i64 + if command == Command::Left { -1 } else { 1 };
                state.board.lane = lane.clamp(0, count as i64 - 1) as usize;
                state.board.follow_key = state.board.selected().map(|c| c.key.clone());
            }
            keep_cursor_visible(state)
        }
        Command::Open => match state.board.selected() {
            Some(card) => open_detail(state, card.key.clone()),
            None => Vec::new(),
        },
        Command::MoveLeft => move_sideways(state, -1),
        Command::MoveRight => move_sideways(state, 1),
        Command::MoveUp => reorder(state, -1),
        Command::MoveDown => reorder(state, 1),
        Command::NewTask => {
            let lanes: Vec<String> = state.board.columns.iter().map(|c| c.lane.name.clone()).collect();
            let lane = state.board.column().map(|c| c.lane.name.clone()).unwrap_or_default();
            state.overlay = Some(Overlay::Form(new_task_form(&lane, &lanes)));
            Vec::new()
        }
        Command::Edit => {
            if let Some(card) = state.board.selected() {
                let before = EditableFields {
                    title: card.title.clone(),
                    priority: card.priority,
                    labels: card.labels.clone(),
                    due_on: card.due_on,
                };
                state.overlay = Some(Overlay::Form(edit_task_form(&card.key, card.version, before)));
            }
            Vec::new()
        }
        Command::Assign => {
            let keys = targets(state);
            if !keys.is_empty() {
                state.overlay = Some(Overlay::Picker(Picker { keys, query: String::new(), selected: 0 }));
                return vec![query(state, Query::Agents)];
            }
            Vec::new()
        }
        Command::Archive => {
            let keys = targets(state);
            confirm_archive(state, keys);
            Vec::new()
        }
        Command::Handoff => {
            if let Some(key) = current_task_key(state) {
                state.overlay = Some(Overlay::Form(handoff_form(&key)));
            }
            Vec::new()
        }
        Command::ToggleMark => {
            if let Some(key) = state.board.selected().map(|c| c.key.clone()) {
                if !state.board.marked.remove(&key) {
                    state.board.marked.insert(key);
                }
                let column = state.board.lane;
                let cursor = state.board.column().map_or(0, |c| c.cursor);
                state.board.anchor = Some((column, cursor));
            }
            Vec::new()
        }
        Command::MarkRange => {
            let column = state.board.lane;
            if let Some(col) = state.board.columns.get(column) {
                let (from, to) = match state.board.anchor {
                    Some((c, position)) if c == column => (position.min(col.cursor), position.max(col.cursor)),
                    _ => (col.cursor, col.cursor),
                };
                let keys: Vec<String> = (from..=to).filter_map(|i| col.card_at(i).map(|c| c.key.clone())).collect();
                state.board.marked.extend(keys);
                state.board.anchor = Some((column, col.cursor));
            }
            Vec::new()
        }
        Command::Back => {
            if !state.board.marked.is_empty() {
                state.board.marked.clear();
                state.board.anchor = None;
                Vec::new()
            } else if state.filters.remove(&Screen::Work).is_some() {
                super::load_screen(state, Screen::Work)
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

/// The tasks a bulk-capable command acts on: the marked ones, else the selected one.
fn targets(state: &AppState) -> Vec<String> {
    if state.board.marked.is_empty() {
        state.board.selected().map(|c| vec![c.key.clone()]).unwrap_or_default()
    } else {
        state.board.marked.iter().cloned().collect()
    }
}

pub(crate) fn confirm_archive(state: &mut AppState, keys: Vec<String>) {
    if keys.is_empty() {
        return;
    }
    let (mutation, undo, message) = if keys.len() == 1 {
        let key = keys[0].clone();
        (
            Mutation::SetArchived { key: key.clone(), archived: true, expect_version: None },
            UndoRecipe::SetArchived { key: key.clone(), archived: false },
            format!("Archive {key}? It leaves the board; its key and history stay."),
        )
    } else {
        (
            Mutation::Bulk(
                keys.iter()
                    .map(|k| Mutation::SetArchived { key: k.clone(), archived: true, expect_version: None })
                    .collect(),
            ),
            UndoRecipe::Many(
                keys.iter().map(|k| UndoRecipe::SetArchived { key: k.clone(), archived: false }).collect(),
            ),
            format!("Archive {} marked tasks? They leave the board; keys and history stay.", keys.len()),
        )
    };
    let mut request = change(mutation, Some(undo));
    if keys.len() > 1 {
        request.reason = Some(format!("bulk archive of {} tasks", keys.len()));
    }
    state.overlay = Some(Overlay::Confirm(Box::new(Confirm { message, request })));
}

pub(crate) fn open_detail(state: &mut AppState, key: String) -> Vec<Effect> {
    state.overlay = Some(Overlay::Detail(Box::new(DetailState {
        key: key.clone(),
        data: None,
        scroll: 0,
        handoff: 0,
        error: None,
    })));
    vec![query(state, Query::Detail { key })]
}

fn step(state: &mut AppState, delta: i64) -> Vec<Effect> {
    if let Some(column) = state.board.columns.get_mut(state.board.lane) {
        let last = (column.total - 1).max(0);
        column.cursor = column.cursor.saturating_add(delta).clamp(0, last);
    }
    state.board.follow_key = state.board.selected().map(|c| c.key.clone());
    keep_cursor_visible(state)
}

/// Scrolls so the cursor is on screen, and asks for the cards a scroll needs.
pub fn keep_cursor_visible(state: &mut AppState) -> Vec<Effect> {
    if state.screen != Screen::Work || state.board.columns.is_empty() {
        return Vec::new();
    }
    let (visible, page) = capacity(state);
    let board = &mut state.board;
    board.lane = board.lane.min(board.columns.len() - 1);
    if board.lane < board.first_column {
        board.first_column = board.lane;
    } else if board.lane >= board.first_column + visible {
        board.first_column = board.lane + 1 - visible;
    }
    board.first_column = board.first_column.min(board.columns.len().saturating_sub(visible));
    let mut wanted = Vec::new();
    for (index, column) in board.columns.iter_mut().enumerate() {
        if index == board.lane {
            if column.cursor < column.scroll {
                column.scroll = column.cursor;
            } else if column.cursor >= column.scroll + page {
                column.scroll = column.cursor - page + 1;
            }
        }
        column.scroll = column.scroll.clamp(0, (column.total - page).max(0));
        let shown = index >= board.first_column && index < board.first_column + visible;
        let needed_end = (column.scroll + page).min(column.total);
        let loaded_end = column.offset + column.cards.len() as i64;
        // Fetch a new window before the cursor runs off the loaded one, unless
        // a window already on its way covers what is needed.
        let margin = page;
        let needs =
            column.total > 0 && (column.scroll < column.offset || (needed_end + margin).min(column.total) > loaded_end);
        let covered = column.window_requested.is_some_and(|requested| {
            requested <= column.scroll && requested + WINDOW >= (needed_end + margin).min(column.total)
        });
        if shown && needs && !covered {
            let offset = (column.scroll - WINDOW / 3).max(0);
            column.window_requested = Some(offset);
            wanted.push((column.lane.id, offset));
        }
    }
    let filter = state.filter(Screen::Work).map(|f| f.to_card_filter()).unwrap_or_default();
    wanted
        .into_iter()
        .map(|(lane_id, offset)| query(state, Query::LaneWindow { lane_id, filter: filter.clone(), offset }))
        .collect()
}

/// Replaces the board with fresh data, keeping the cursor on the same task.
pub fn apply_board(state: &mut AppState, lanes: Vec<BoardLane>) -> Vec<Effect> {
    let old = std::mem::take(&mut state.board.columns);
    let follow = state
        .board
        .follow_key
        .clone()
        .or_else(|| old.get(state.board.lane).and_then(|c| c.selected()).map(|c| c.key.clone()));
    let old_lane_id = old.get(state.board.lane).map(|c| c.lane.id);
    state.board.columns = lanes
        .into_iter()
        .filter(|l| l.lane.visible)
        .map(|l| {
            let previous = old.iter().find(|c| c.lane.id == l.lane.id);
            let total = l.lane.open_count as i64;
            let (cursor, scroll) = previous.map_or((0, 0), |p| (p.cursor.min((total - 1).max(0)), p.scroll));
            LaneColumn { cards: l.cards, offset: 0, total, cursor, scroll, window_requested: None, lane: l.lane }
        })
        .collect();
    state.board.loaded = true;
    // Follow the task wherever it went; else stay in the same lane.
    let found = follow
        .as_deref()
        .and_then(|key| state.board.columns.iter().enumerate().find_map(|(i, c)| c.position_of(key).map(|p| (i, p))));
    if let Some((lane, position)) = found {
        state.board.lane = lane;
        state.board.columns[lane].cursor = position;
    } else if let Some(index) = old_lane_id.and_then(|id| state.board.columns.iter().position(|c| c.lane.id == id)) {
        state.board.lane = index;
    }
    let present: std::collections::BTreeSet<String> =
        state.board.columns.iter().flat_map(|c| c.cards.iter().map(|card| card.key.clone())).collect();
    // Marks on tasks that left the loaded cards are kept only if still somewhere on the board.
    let BoardView { marked, .. } = &mut state.board;
    marked.retain(|k| present.contains(k));
    keep_cursor_visible(state)
}

pub fn apply_window(state: &mut AppState, lane_id: i64, offset: i64, cards: Vec<crate::store::board::Card>) {
    if let Some(column) = state.board.columns.iter_mut().find(|c| c.lane.id == lane_id) {
        column.cards = cards;
        column.offset = offset;
        column.window_requested = None;
    }
}

fn move_sideways(state: &mut AppState, direction: i64) -> Vec<Effect> {
    let from = state.board.lane;
    let to = from as i64 + direction;
    if to < 0 || to >= state.board.columns.len() as i64 {
        state.toast(ToastLevel::Info, "no lane that way");
        return Vec::new();
    }
    let to = to as usize;
    let lane_name = state.board.columns[to].lane.name.clone();
    if !state.board.marked.is_empty() {
        let keys: Vec<String> = state.board.marked.iter().cloned().collect();
        let mut moves = Vec::new();
        let mut undo = Vec::new();
        for key in &keys {
            let origin = state.board.columns.iter().find(|c| c.position_of(key).is_some()).map(|c| c.lane.name.clone());
            moves.push(Mutation::Move {
                key: key.clone(),
                lane: Some(lane_name.clone()),
                position: Position::Bottom,
                expect_version: None,
            });
            if let Some(origin) = origin {
                undo.push(UndoRecipe::MoveBack { key: key.clone(), lane: origin, before: None });
            }
        }
        let mut request = change(Mutation::Bulk(moves), Some(UndoRecipe::Many(undo)));
        request.label = format!("move {} tasks to {lane_name}", keys.len());
        request.reason = Some(format!("bulk move of {} tasks", keys.len()));
        state.board.marked.clear();
        return mutate(state, request);
    }
    let Some(card) = state.board.selected().cloned() else { return Vec::new() };
    let source = &state.board.columns[from];
    let origin = source.lane.name.clone();
    let next_below = source.card_at(source.cursor + 1).map(|c| c.key.clone());
    let request = change(
        Mutation::Move {
            key: card.key.clone(),
            lane: Some(lane_name),
            position: Position::Top,
            expect_version: Some(card.version),
        },
        Some(UndoRecipe::MoveBack { key: card.key.clone(), lane: origin, before: next_below }),
    );
    let effects = mutate(state, request);
    if effects.is_empty() {
        return effects;
    }
    // Show the move at once; the reload after the database confirms corrects anything.
    let column = &mut state.board.columns[from];
    if let Some(index) = column.cards.iter().position(|c| c.key == card.key) {
        column.cards.remove(index);
    }
    column.total = (column.total - 1).max(0);
    column.lane.open_count = column.total as i32;
    column.cursor = column.cursor.min((column.total - 1).max(0));
    let target = &mut state.board.columns[to];
    if target.offset == 0 {
        target.cards.insert(0, card.clone());
    }
    target.total += 1;
    target.lane.open_count = target.total as i32;
    target.cursor = 0;
    state.board.lane = to;
    state.board.follow_key = Some(card.key);
    let mut all = effects;
    all.extend(keep_cursor_visible(state));
    all
}

fn reorder(state: &mut AppState, direction: i64) -> Vec<Effect> {
    let Some(column) = state.board.column() else { return Vec::new() };
    let Some(card) = column.selected().cloned() else { return Vec::new() };
    let neighbour = column.cursor + direction;
    if neighbour < 0 || neighbour >= column.total {
        return Vec::new();
    }
    let lane = column.lane.name.clone();
    let next_below = column.card_at(column.cursor + 1).map(|c| c.key.clone());
    let position = if direction < 0 { Position::Up } else { Position::Down };
    let request = change(
        Mutation::Move { key: card.key.clone(), lane: None, position, expect_version: Some(card.version) },
        Some(UndoRecipe::MoveBack { key: card.key.clone(), lane, before: next_below }),
    );
    let effects = mutate(state, request);
    if effects.is_empty() {
        return effects;
    }
    let column = &mut state.board.columns[state.board.lane];
    let (a, b) = ((column.cursor - column.offset) as usize, (neighbour - column.offset) as usize);
    if a < column.cards.len() && b < column.cards.len() {
        column.cards.swap(a, b);
    }
    column.cursor = neighbour;
    state.board.follow_key = Some(card.key);
    let mut all = effects;
    all.extend(keep_cursor_visible(state));
    all
}

pub fn click(state: &mut AppState, x: u16, y: u16) -> Vec<Effect> {
    let areas = layout::for_state(state);
    let (_, width, _) = layout::board_geometry(areas.body, state.board.columns.len());
    let column = state.board.first_column + (x / width.max(1)) as usize;
    if column >= state.board.columns.len() {
        return Vec::new();
    }
    state.board.lane = column;
    let row = y.saturating_sub(areas.body.y + 2);
    let col = &mut state.board.columns[column];
    let index = col.scroll + (row / CARD_HEIGHT) as i64;
    if index < col.total {
        col.cursor = index;
    }
    state.board.follow_key = state.board.selected().map(|c| c.key.clone());
    keep_cursor_visible(state)
}
