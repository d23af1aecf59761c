//! The frame: tab bar, the current screen, the audit drawer, the input line,
//! the status line, toasts and the open overlay. Pure: reads the state only.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Clear, Paragraph};

use super::layout;
use super::panes::{self, board, detail, drawer, list, popups, status};
use super::state::{AppState, Overlay, Screen};

pub fn draw(frame: &mut Frame<'_>, state: &AppState) {
    let area = frame.area();
    if layout::too_small(area.width, area.height) {
        let message = format!(
            "mctl needs at least {}×{} (this is {}×{})",
            layout::MIN_WIDTH,
            layout::MIN_HEIGHT,
            area.width,
            area.height
        );
        frame.render_widget(Paragraph::new(panes::fit(&message, area.width as usize)), area);
        return;
    }
    let areas = layout::areas(area.width, area.height, state.drawer.open, state.input.is_some());
    tabs(frame, state, areas.tabs);
    match state.screen {
        Screen::Work => board::draw(frame, state, areas.body),
        _ => list::draw(frame, state, areas.body),
    }
    if let Some(drawer_area) = areas.drawer {
        drawer::draw(frame, state, drawer_area);
    }
    if let Some(input_area) = areas.input {
        status::input_line(frame, state, input_area);
    }
    status::status_line(frame, state, areas.status);
    if let Some(overlay) = &state.overlay {
        let body = Rect { y: areas.body.y, height: area.height.saturating_sub(areas.body.y + 1), ..area };
        match overlay {
            Overlay::Detail(d) => detail::draw(frame, state, d, body),
            Overlay::Help(help) => popups::help(frame, state, help, body),
            Overlay::Form(form) => popups::form(frame, state, form, body),
            Overlay::Picker(picker) => popups::picker(frame, state, picker, body),
            Overlay::Confirm(confirm) => popups::confirm(frame, state, confirm, body),
            Overlay::Page(view) => popups::page(frame, state, view, body),
            Overlay::Diff(entry) => popups::diff(frame, state, entry, body),
            Overlay::SnapshotDiff(view) => popups::snapshot_diff(frame, state, view, body),
            Overlay::RestoreConfirm(confirm) => popups::restore_confirm(frame, state, confirm, body),
        }
    }
    status::toasts(frame, state, areas.body);
}

fn tabs(frame: &mut Frame<'_>, state: &AppState, area: Rect) {
    let theme = &state.theme;
    frame.render_widget(Clear, area);
    let buf = frame.buffer_mut();
    let mut x = area.x;
    let right = format!(" {} ", state.project.key);
    let limit = area.x + area.width.saturating_sub(right.len() as u16);
    for screen in Screen::ALL {
        // Narrow terminals get numbers and initials only.
        let label = if area.width >= 100 {
            format!(" {} {} ", screen.number(), screen.title())
        } else if area.width >= 70 {
            format!(" {}:{} ", screen.number(), &screen.title()[..3])
        } else {
            format!(" {} ", screen.number())
        };
        let width = label.chars().count() as u16;
        if x + width > limit {
            break;
        }
        let style = if screen == state.screen { theme.tab_active } else { theme.muted };
        buf.set_string(x, area.y, &label, style);
        x += width;
    }
    buf.set_string(limit, area.y, &right, theme.accent);
}
