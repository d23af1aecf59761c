//! The status line (always visible: project, operator, database state, last
//! refresh, sync health), the input line and toasts.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use unicode_width::UnicodeWidthStr;

use super::{fit, put};
use crate::console::keymap::{Command, Context};
use crate::console::rows::{age, ago};
use crate::console::state::{AppState, DbHealth, InputKind, ToastLevel};
use crate::console::sync;

pub fn status_line(frame: &mut Frame<'_>, state: &AppState, area: Rect) {
    let theme = &state.theme;
    let buf = frame.buffer_mut();
    put(buf, area.x, area.y, area.width, "", theme.base);
    let (db, db_style) = match &state.conn.db {
        DbHealth::Connecting => ("○ connecting".to_string(), theme.warn),
        DbHealth::Connected if state.conn.live => ("● live".to_string(), theme.ok),
        // Reads work; others' changes arrive with the 5 s poll until notifications are back.
        DbHealth::Connected => ("● connected".to_string(), theme.ok),
        DbHealth::Reconnecting { since, reason } => {
            (format!("◌ reconnecting {} ({})", age(state.now, *since), fit(reason, 30)), theme.danger)
        }
    };
    let refreshed = match state.conn.last_refresh {
        Some(at) => format!("refreshed {}", ago(state.now, at)),
        None => "not loaded yet".to_string(),
    };
    let mut parts: Vec<(String, ratatui::style::Style)> = vec![
        (format!(" {} ", state.project.key), theme.accent),
        (format!("@{} ", fit(&state.operator, 16)), theme.base),
        (db, db_style),
    ];
    if state.read_only {
        parts.push((" READ-ONLY".to_string(), theme.warn));
    }
    parts.push((format!(" · {refreshed}"), theme.muted));
    let help = format!("{} help ", state.key_hint(Context::Global, Command::Help));
    // Sync gets what is left before the help hint: the long form, the short
    // one, or the short one clipped.
    let used: usize = parts.iter().map(|(text, _)| text.width()).sum();
    let room = (area.width as usize).saturating_sub(used + help.width() + 1 + " · ".len());
    let summary = sync::summary(&state.conn.sync, state.now);
    let text = if summary.long.width() <= room {
        summary.long
    } else if summary.short.width() <= room {
        summary.short
    } else {
        fit(&summary.short, room.max(6))
    };
    parts.push((format!(" · {}", fit(&text, text.width())), super::list::tone(theme, summary.tone)));
    if !state.board.marked.is_empty() {
        parts.push((format!(" · {} marked", state.board.marked.len()), theme.marked));
    }
    if let Some(step) = &state.progress {
        parts.push((format!(" · ⟳ {}", fit(step, 40)), theme.warn));
    }
    let mut x = area.x;
    let end = area.x + area.width;
    for (text, style) in parts {
        if x >= end {
            break;
        }
        let (next, _) = buf.set_stringn(x, area.y, &text, (end - x) as usize, style);
        x = next;
    }
    let help_x = end.saturating_sub(help.width() as u16);
    if help_x > x + 1 {
        buf.set_string(help_x, area.y, &help, theme.key);
    }
}

pub fn input_line(frame: &mut Frame<'_>, state: &AppState, area: Rect) {
    let Some(line) = &state.input else { return };
    let theme = &state.theme;
    let prompt = match line.kind {
        InputKind::Command => ":",
        InputKind::Filter => "/",
        InputKind::SnapshotLabel => "snapshot label: ",
    };
    let buf = frame.buffer_mut();
    put(buf, area.x, area.y, area.width, "", theme.base);
    buf.set_string(area.x, area.y, prompt, theme.accent);
    let area = Rect {
        x: area.x + prompt.width() as u16 - 1,
        width: area.width.saturating_sub(prompt.width() as u16 - 1),
        ..area
    };
    let text = super::safe(&line.text);
    // Keep the cursor in view on long lines.
    let before: String = text.chars().take(line.cursor).collect();
    let room = area.width.saturating_sub(2) as usize;
    let skip = before.width().saturating_sub(room.saturating_sub(1));
    let shown: String = {
        let mut skipped = 0;
        text.chars()
            .skip_while(|c| {
                let w = unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0);
                let skip_it = skipped < skip;
                skipped += w;
                skip_it
            })
            .collect()
    };
    put(buf, area.x + 1, area.y, area.width.saturating_sub(1), &shown, theme.base);
    let hint = if line.kind == InputKind::SnapshotLabel {
        " enter takes the snapshot · esc cancels ".to_string()
    } else if !line.completions.is_empty() {
        format!(" tab {}/{} ", line.completion + 1, line.completions.len())
    } else if line.kind == InputKind::Filter {
        " text @agent #label !priority · enter ".to_string()
    } else {
        " tab completes · ↑ history · enter runs ".to_string()
    };
    let hint_x = (area.x + area.width).saturating_sub(hint.width() as u16);
    if hint_x > area.x + 2 + shown.width() as u16 {
        buf.set_string(hint_x, area.y, &hint, theme.muted);
    }
    let cursor_x = area.x + 1 + (before.width() - skip) as u16;
    frame.set_cursor_position(Position { x: cursor_x.min(area.x + area.width - 1), y: area.y });
}

pub fn toasts(frame: &mut Frame<'_>, state: &AppState, body: Rect) {
    let theme = &state.theme;
    for (i, toast) in state.toasts.iter().rev().take(3).enumerate() {
        let text = format!(" {} ", fit(&toast.text, (body.width as usize).saturating_sub(4).min(70)));
        let width = text.width() as u16;
        let area = Rect {
            x: body.x + body.width.saturating_sub(width + 1),
            y: body.y + i as u16,
            width: width.min(body.width),
            height: 1,
        };
        if area.y >= body.y + body.height {
            break;
        }
        let style = match toast.level {
            ToastLevel::Info => theme.base.patch(theme.selected),
            ToastLevel::Success => theme.ok.patch(theme.selected),
            ToastLevel::Error => theme.danger.patch(theme.selected),
        };
        super::clear(frame, area);
        put(frame.buffer_mut(), area.x, area.y, area.width, &text, style);
    }
}
