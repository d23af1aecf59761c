//! The Work board: lanes as columns, cards as two lines. Only the cards on
//! screen are built, whatever the size of the lane.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;

use super::{fit, put};
use crate::console::layout::{self, CARD_HEIGHT};
use crate::console::state::{AppState, Focus, LaneColumn, Screen};
use crate::domain::{Priority, SyncState};
use crate::store::board::Card;

pub fn draw(frame: &mut Frame<'_>, state: &AppState, area: Rect) {
    let theme = &state.theme;
    let board = &state.board;
    let buf = frame.buffer_mut();
    if board.columns.is_empty() {
        let message = if board.loaded { "This project has no visible lanes." } else { "Loading the board…" };
        put(buf, area.x + 1, area.y + 1, area.width.saturating_sub(2), message, theme.muted);
        return;
    }
    let (visible, width, rows) = layout::board_geometry(area, board.columns.len());
    let focused = state.focus == Focus::Screen && state.overlay.is_none();
    for (slot, (index, column)) in board.columns.iter().enumerate().skip(board.first_column).take(visible).enumerate() {
        let x = area.x + slot as u16 * width;
        let is_current = index == board.lane;
        let inner = width.saturating_sub(1);
        header(buf, state, column, x, area.y, inner, is_current && focused);
        let more_left = board.first_column > 0 && slot == 0;
        let more_right = board.first_column + visible < board.columns.len() && slot + 1 == visible;
        let rule = format!(
            "{}{}{}",
            if more_left { "◀" } else { "─" },
            "─".repeat(inner.saturating_sub(2) as usize),
            if more_right { "▶" } else { "─" }
        );
        buf.set_stringn(x, area.y + 1, &rule, inner as usize, theme.border);
        for row in 0..rows {
            let index_in_lane = column.scroll + row;
            if index_in_lane >= column.total {
                break;
            }
            let y = area.y + 2 + row as u16 * CARD_HEIGHT;
            if y + 1 >= area.y + area.height {
                break;
            }
            let selected = is_current && index_in_lane == column.cursor;
            match column.card_at(index_in_lane) {
                Some(card) => draw_card(buf, state, card, x, y, inner, selected, focused),
                None => put(buf, x, y, inner, "  …", theme.muted),
            }
        }
        // Column separator.
        for y in area.y..area.y + area.height {
            buf.set_string(x + inner, y, "│", theme.border);
        }
    }
    if let Some(filter) = state.filter(Screen::Work) {
        let text = format!(" filter: {} (esc clears) ", fit(&filter.raw, 40));
        let x = area.x + area.width.saturating_sub(text.chars().count() as u16 + 1);
        buf.set_string(x, area.y + area.height.saturating_sub(1), &text, theme.accent);
    }
}

fn header(
    buf: &mut ratatui::buffer::Buffer,
    state: &AppState,
    column: &LaneColumn,
    x: u16,
    y: u16,
    width: u16,
    focused: bool,
) {
    let theme = &state.theme;
    let lane = &column.lane;
    let count = match lane.wip_limit {
        Some(limit) => format!("{}/{limit}", column.total),
        None => column.total.to_string(),
    };
    let over = lane.wip_limit.is_some_and(|limit| column.total > limit as i64);
    let name_width = (width as usize).saturating_sub(count.len() + 2);
    let name = fit(&lane.name, name_width);
    let style = if focused { theme.accent } else { theme.header };
    put(buf, x, y, width, &format!(" {name}"), style);
    let count_style = if over { theme.danger } else { theme.muted };
    let count_x = x + width.saturating_sub(count.len() as u16 + 1);
    buf.set_string(count_x, y, &count, count_style);
}

fn priority_mark(priority: Priority) -> &'static str {
    match priority {
        Priority::Urgent => "!!",
        Priority::High => "! ",
        Priority::Medium => "· ",
        Priority::Low | Priority::None => "  ",
    }
}

fn sync_mark(state: Option<SyncState>) -> &'static str {
    match state {
        Some(SyncState::InSync) => " ✓",
        Some(SyncState::Pending) => " ~",
        Some(SyncState::Conflict) => " ✗",
        Some(SyncState::Error) => " !",
        Some(SyncState::Deleted) => " ⊘",
        None => "",
    }
}

#[allow(clippy::too_many_arguments)]
fn draw_card(
    buf: &mut ratatui::buffer::Buffer,
    state: &AppState,
    card: &Card,
    x: u16,
    y: u16,
    width: u16,
    selected: bool,
    focused: bool,
) {
    let theme = &state.theme;
    let marked = state.board.marked.contains(&card.key);
    let base = if selected && focused {
        theme.selected
    } else if selected {
        theme.selected.patch(theme.muted)
    } else {
        Style::default()
    };
    let mark = if marked { "●" } else { " " };
    let handoffs = if card.open_handoffs > 0 { format!(" ⇄{}", card.open_handoffs) } else { String::new() };
    let assignee = card.assignee.as_ref().map(|a| format!(" @{a}")).unwrap_or_default();
    let due = match card.due_on {
        Some(due) if due < state.now.date() => " overdue",
        Some(due) if due == state.now.date() => " today",
        _ => "",
    };
    // Line one: mark, key, priority, assignee, badges.
    put(buf, x, y, width, "", base);
    let mut cursor = x;
    let mut write = |text: &str, style: Style, buf: &mut ratatui::buffer::Buffer| {
        let room = (x + width).saturating_sub(cursor);
        if room == 0 {
            return;
        }
        let text = fit(text, room as usize);
        let (next, _) = buf.set_stringn(cursor, y, &text, room as usize, base.patch(style));
        cursor = next;
    };
    write(mark, if marked { theme.marked } else { Style::default() }, buf);
    write(&card.key, theme.accent, buf);
    write(" ", Style::default(), buf);
    write(priority_mark(card.priority), theme.priority(card.priority), buf);
    write(&assignee, Style::default(), buf);
    write(&handoffs, theme.warn, buf);
    write(due, theme.danger, buf);
    write(sync_mark(card.sync_state), theme.muted, buf);
    // Line two: the title.
    put(buf, x, y + 1, width, &format!("  {}", fit(&card.title, width.saturating_sub(2) as usize)), base);
}
