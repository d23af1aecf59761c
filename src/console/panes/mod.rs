//! Pure drawing: every pane reads `&AppState` and writes to the frame. Text
//! from the database goes through [`fit`] or [`safe`] before it is drawn.

pub mod board;
pub mod detail;
pub mod drawer;
pub mod list;
pub mod popups;
pub mod status;

use std::borrow::Cow;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::domain::text;

/// Untrusted text made safe for one terminal line: control characters shown
/// as symbols, line breaks as spaces.
pub fn safe(value: &str) -> Cow<'_, str> {
    if value.contains(['\n', '\r', '\t']) {
        Cow::Owned(text::for_terminal(&value.replace(['\n', '\r', '\t'], " ")).into_owned())
    } else {
        text::for_terminal(value)
    }
}

/// Safe text clipped to `width` display columns, with `…` where it was cut.
/// Wide characters (CJK, emoji) are measured, so columns stay aligned.
pub fn fit(value: &str, width: usize) -> String {
    let value = safe(value);
    if value.width() <= width {
        return value.into_owned();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in value.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Safe text clipped or padded to exactly `width` display columns.
pub fn pad(value: &str, width: usize) -> String {
    let mut text = fit(value, width);
    let used = text.width();
    text.push_str(&" ".repeat(width.saturating_sub(used)));
    text
}

/// Writes `value` (already safe) at (x, y), clipped to `width`, padded with
/// the style so selections paint the whole cell.
pub fn put(buf: &mut Buffer, x: u16, y: u16, width: u16, value: &str, style: Style) {
    if width == 0 {
        return;
    }
    let text = fit(value, width as usize);
    let (next_x, _) = buf.set_stringn(x, y, &text, width as usize, style);
    let end = x + width;
    if next_x < end {
        buf.set_stringn(next_x, y, " ".repeat((end - next_x) as usize), (end - next_x) as usize, style);
    }
}

/// Blanks the area under a popup, including the right half of any wide
/// character that starts just left of it (otherwise it would bleed over the
/// popup's border).
pub fn clear(frame: &mut ratatui::Frame<'_>, area: Rect) {
    frame.render_widget(ratatui::widgets::Clear, area);
    if area.x == 0 {
        return;
    }
    let buf = frame.buffer_mut();
    for y in area.y..area.y + area.height {
        let cell = &mut buf[(area.x - 1, y)];
        if cell.symbol().width() > 1 {
            cell.set_symbol(" ");
        }
    }
}

/// A box centred in `area`, `percent_x` wide and `height` tall (both clamped).
pub fn centered(area: Rect, percent_x: u16, height: u16) -> Rect {
    let width = (area.width * percent_x / 100).max(30.min(area.width)).min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_measures_display_width() {
        assert_eq!(fit("abc", 5), "abc");
        assert_eq!(fit("abcdef", 4), "abc…");
        let wide = fit("日本語のテキスト", 7);
        assert!(wide.width() <= 7, "{wide}");
        assert_eq!(fit("a\x1b[2Jb", 10), "a\u{241b}[2Jb");
        assert_eq!(fit("two\nlines", 20), "two lines");
    }
}
