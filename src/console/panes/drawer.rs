//! The audit drawer: the project's live audit tail.

use ratatui::Frame;
use ratatui::layout::Rect;

use super::{fit, pad, put};
use crate::console::rows::age;
use crate::console::state::{AppState, Focus};

pub fn draw(frame: &mut Frame<'_>, state: &AppState, area: Rect) {
    let theme = &state.theme;
    let drawer = &state.drawer;
    let focused = state.focus == Focus::Drawer && state.overlay.is_none();
    let visible = drawer.visible();
    let buf = frame.buffer_mut();
    let mode = if drawer.follow { "following" } else { "paused" };
    let filter =
        if drawer.filter.is_empty() { String::new() } else { format!(" · filter: {}", fit(&drawer.filter, 20)) };
    let title = format!(
        "── Audit · {mode}{filter} · {} entries{} ",
        visible.len(),
        if focused { " · enter: diff · f: follow · tab: back" } else { " · tab to focus" }
    );
    let border = if focused { theme.focus_border } else { theme.border };
    put(buf, area.x, area.y, area.width, &format!("{title}{}", "─".repeat(area.width as usize)), border);
    let rows = area.height.saturating_sub(1) as usize;
    let offset = drawer.selected.saturating_sub(rows.saturating_sub(1));
    for (i, entry) in visible.iter().skip(offset).take(rows).enumerate() {
        let y = area.y + 1 + i as u16;
        let index = offset + i;
        let style = if index == drawer.selected && focused { theme.selected } else { ratatui::style::Style::default() };
        put(buf, area.x, y, area.width, "", style);
        let summary = entry.summary();
        let reason = entry.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        let line = format!(
            " {:>4} {} {:<8} {} {} {summary}{reason}",
            age(state.now, entry.at),
            pad(&entry.actor, 12),
            entry.source.as_str(),
            pad(&entry.action, 16),
            pad(entry.entity_key.as_deref().unwrap_or("-"), 9),
        );
        put(buf, area.x, y, area.width, &line, style);
    }
    if visible.is_empty() {
        put(buf, area.x + 1, area.y + 1, area.width.saturating_sub(2), "no audit entries yet", theme.muted);
    }
}
