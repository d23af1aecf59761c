//! List screens: sections of rows with aligned cells; only visible lines are built.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;

use super::{fit, put};
use crate::console::layout;
use crate::console::rows::{self, Line, Tone};
use crate::console::state::{AppState, Focus};
use crate::console::theme::Theme;

pub fn tone(theme: &Theme, tone: Tone) -> Style {
    match tone {
        Tone::Normal => Style::default(),
        Tone::Muted => theme.muted,
        Tone::Accent => theme.accent,
        Tone::Ok => theme.ok,
        Tone::Warn => theme.warn,
        Tone::Danger => theme.danger,
        Tone::Priority(p) => theme.priority(p),
    }
}

pub fn draw(frame: &mut Frame<'_>, state: &AppState, area: Rect) {
    let theme = &state.theme;
    let screen = state.screen;
    let sections = rows::sections(state, screen);
    let lines = rows::lines(&sections);
    let selected = state.cursor(screen).selected;
    let height = layout::list_capacity(area);
    let offset = rows::scroll_offset(&lines, selected, height);
    let buf = frame.buffer_mut();
    let count = rows::flat(&sections).len();
    let mut header = format!(" {} — {} ", screen.title(), state.project.name);
    if let Some(filter) = state.filter(screen) {
        header.push_str(&format!(" filter: {} (esc clears)", filter.raw));
    }
    put(buf, area.x, area.y, area.width, &header, theme.header);
    let position = if count > 0 { format!(" {}/{count} ", selected.min(count - 1) + 1) } else { String::new() };
    buf.set_string(area.x + area.width.saturating_sub(position.len() as u16), area.y, &position, theme.muted);
    let focused = state.focus == Focus::Screen && state.overlay.is_none();
    for (i, line) in lines.iter().skip(offset).take(height).enumerate() {
        let y = area.y + 1 + i as u16;
        match line {
            Line::Title(s) => put(buf, area.x, y, area.width, &format!(" {}", sections[*s].title), theme.accent),
            Line::Empty(s) => put(buf, area.x, y, area.width, &format!("   {}", sections[*s].empty), theme.muted),
            Line::Row(index) => {
                let Some((_, row)) = rows::flat(&sections).get(*index).copied() else { continue };
                let row_style = if *index == selected && focused {
                    theme.selected
                } else if *index == selected {
                    theme.selected.patch(theme.muted)
                } else {
                    Style::default()
                };
                put(buf, area.x, y, area.width, "", row_style);
                let mut x = area.x + 3;
                let end = area.x + area.width;
                for cell in &row.cells {
                    if x >= end {
                        break;
                    }
                    let width = if cell.width == 0 { end - x } else { cell.width.min(end - x) };
                    let text = fit(&cell.text, width as usize);
                    buf.set_stringn(x, y, &text, width as usize, row_style.patch(tone(theme, cell.tone)));
                    x = x.saturating_add(width + 1);
                }
            }
        }
    }
}
