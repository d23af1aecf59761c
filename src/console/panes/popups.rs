//! Small overlays: help palette, forms, the agent picker, confirmations, the
//! page reader and an audit entry's before/after diff.

use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use unicode_width::UnicodeWidthStr;

use super::{centered, fit, pad, put, safe};
use crate::console::rows;
use crate::console::state::{AppState, Confirm, Form, HelpState, PageView, Picker};
use crate::domain::AuditEntry;

fn frame_block<'a>(state: &AppState, title: String, footer: &'a str) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(state.theme.focus_border)
        .title(Span::styled(title, state.theme.accent))
        .title_bottom(Span::styled(footer, state.theme.muted))
}

pub fn help(frame: &mut Frame<'_>, state: &AppState, help: &HelpState, area: Rect) {
    let theme = &state.theme;
    let popup = centered(area, 80, area.height);
    super::clear(frame, popup);
    let block = frame_block(state, " Help — type to filter ".into(), " ↑↓ select · enter runs · esc closes ");
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let buf = frame.buffer_mut();
    put(buf, inner.x, inner.y, inner.width, &format!("› {}", help.query), theme.header);
    let items = rows::help_items(state, &help.query);
    let rows_shown = inner.height.saturating_sub(1) as usize;
    let offset = help.selected.saturating_sub(rows_shown.saturating_sub(1));
    for (i, (command, keys)) in items.iter().enumerate().skip(offset).take(rows_shown) {
        let y = inner.y + 1 + (i - offset) as u16;
        let style = if i == help.selected { theme.selected } else { Style::default() };
        let line = format!("{} {} {}", pad(keys, 16), pad(command.name(), 16), command.help());
        put(buf, inner.x, y, inner.width, &line, style);
    }
    if items.is_empty() {
        put(buf, inner.x, inner.y + 1, inner.width, "no command matches", theme.muted);
    }
    let verbs = " :move KEY LANE · :assign KEY @a · :handoff KEY @a blocked \"why\" · :project KEY · :KEY";
    if inner.height > items.len() as u16 + 3 {
        put(buf, inner.x, inner.y + inner.height - 1, inner.width, verbs, theme.muted);
    }
}

pub fn form(frame: &mut Frame<'_>, state: &AppState, form: &Form, area: Rect) {
    let theme = &state.theme;
    let height = form.fields.len() as u16 * 2 + 4;
    let popup = centered(area, 70, height);
    super::clear(frame, popup);
    let block =
        frame_block(state, format!(" {} ", fit(&form.kind.title(), 40)), " tab next field · enter save · esc cancel ");
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let label_width = 10u16;
    let mut cursor = None;
    {
        let buf = frame.buffer_mut();
        for (i, field) in form.fields.iter().enumerate() {
            let y = inner.y + i as u16 * 2;
            if y >= inner.y + inner.height {
                break;
            }
            let focused = i == form.focus;
            put(buf, inner.x, y, label_width, field.label, if focused { theme.accent } else { theme.muted });
            let value_width = inner.width.saturating_sub(label_width);
            let shown = if field.choices.is_empty() { field.value.clone() } else { format!("‹ {} ›", field.value) };
            let style = if focused { theme.selected } else { Style::default() };
            // Show the end of long values, where typing happens.
            let value = safe(&shown);
            let width = value.width();
            let visible: String = if width as u16 >= value_width {
                let mut tail: Vec<char> = Vec::new();
                let mut used = 0;
                for c in value.chars().rev() {
                    let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
                    if used + w + 2 > value_width as usize {
                        break;
                    }
                    used += w;
                    tail.push(c);
                }
                format!("…{}", tail.into_iter().rev().collect::<String>())
            } else {
                value.into_owned()
            };
            put(buf, inner.x + label_width, y, value_width, &visible, style);
            if focused && field.choices.is_empty() {
                cursor = Some(Position {
                    x: inner.x + label_width + (visible.width() as u16).min(value_width.saturating_sub(1)),
                    y,
                });
            }
            if y + 1 < inner.y + inner.height {
                put(buf, inner.x + label_width, y + 1, value_width, field.hint, theme.muted);
            }
        }
        if let Some(error) = &form.error {
            put(buf, inner.x, inner.y + inner.height - 1, inner.width, error, theme.danger);
        }
    }
    if let Some(position) = cursor {
        frame.set_cursor_position(position);
    }
}

pub fn picker(frame: &mut Frame<'_>, state: &AppState, picker: &Picker, area: Rect) {
    let theme = &state.theme;
    let items = rows::picker_items(state, &picker.query);
    let popup = centered(area, 60, (items.len() as u16 + 4).clamp(6, 20));
    super::clear(frame, popup);
    let what = if picker.keys.len() == 1 { picker.keys[0].clone() } else { format!("{} tasks", picker.keys.len()) };
    let block = frame_block(state, format!(" Assign {what} to… "), " type to search · enter assigns · esc cancels ");
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let buf = frame.buffer_mut();
    put(buf, inner.x, inner.y, inner.width, &format!("› {}", picker.query), theme.header);
    let shown = inner.height.saturating_sub(1) as usize;
    let offset = picker.selected.saturating_sub(shown.saturating_sub(1));
    for (i, (_, label)) in items.iter().enumerate().skip(offset).take(shown) {
        let style = if i == picker.selected { theme.selected } else { Style::default() };
        put(buf, inner.x, inner.y + 1 + (i - offset) as u16, inner.width, label, style);
    }
    if items.is_empty() {
        put(buf, inner.x, inner.y + 1, inner.width, "no agent matches", theme.muted);
    }
}

pub fn confirm(frame: &mut Frame<'_>, state: &AppState, confirm: &Confirm, area: Rect) {
    let popup = centered(area, 60, 6);
    super::clear(frame, popup);
    let block = frame_block(state, " Confirm ".into(), " y: yes · n / esc: no ");
    let text = Paragraph::new(vec![
        Line::from(safe(&confirm.message).into_owned()),
        Line::default(),
        Line::from(Span::styled("y / n", state.theme.accent)),
    ])
    .wrap(Wrap { trim: true })
    .block(block);
    frame.render_widget(text, popup);
}

pub fn page(frame: &mut Frame<'_>, state: &AppState, view: &PageView, area: Rect) {
    let theme = &state.theme;
    let popup = centered(area, 90, area.height);
    super::clear(frame, popup);
    let title = format!(" {} · {} · v{} ", fit(&view.page.title, 40), view.page.slug, view.page.version);
    let footer = if state.read_only {
        " j/k scroll · esc close (read-only) "
    } else {
        " j/k scroll · e edit in $EDITOR · esc close "
    };
    let block = frame_block(state, title, footer);
    let lines: Vec<Line<'_>> = view
        .page
        .body
        .lines()
        .map(|l| {
            let text = safe(l).into_owned();
            if l.starts_with('#') { Line::from(Span::styled(text, theme.header)) } else { Line::from(text) }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((view.scroll, 0)).block(block), popup);
}

pub fn diff(frame: &mut Frame<'_>, state: &AppState, entry: &AuditEntry, area: Rect) {
    let theme = &state.theme;
    let popup = centered(area, 90, area.height);
    super::clear(frame, popup);
    let title = format!(
        " #{} {} · {} · {} ",
        entry.id,
        entry.action,
        fit(entry.entity_key.as_deref().unwrap_or("-"), 20),
        entry.source
    );
    let block = frame_block(state, title, " esc close ");
    let mut lines: Vec<Line<'_>> = vec![
        Line::from(Span::styled(
            safe(&format!(
                "{} by {} · operation {}{}",
                crate::domain::text::utc_time(entry.at),
                entry.actor,
                entry.correlation_id,
                entry.reason.as_deref().map(|r| format!(" · {r}")).unwrap_or_default()
            ))
            .into_owned(),
            theme.muted,
        )),
        Line::default(),
    ];
    let empty = serde_json::Map::new();
    let before = entry.before.as_ref().and_then(|v| v.as_object()).unwrap_or(&empty);
    let after = entry.after.as_ref().and_then(|v| v.as_object()).unwrap_or(&empty);
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let old = before.get(key);
        let new = after.get(key);
        let show = |v: Option<&serde_json::Value>| match v {
            None => "∅".to_string(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        if old == new {
            lines.push(Line::from(Span::styled(safe(&format!("  {key}: {}", show(new))).into_owned(), theme.muted)));
        } else {
            lines.push(Line::from(vec![
                Span::styled(format!("  {key}: "), theme.header),
                Span::styled(safe(&show(old)).into_owned(), theme.danger),
                Span::raw(" → "),
                Span::styled(safe(&show(new)).into_owned(), theme.ok),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), popup);
}

pub fn snapshot_diff(frame: &mut Frame<'_>, state: &AppState, view: &crate::console::state::DiffView, area: Rect) {
    let theme = &state.theme;
    let popup = centered(area, 92, area.height);
    super::clear(frame, popup);
    let marked = if view.marked.is_empty() { String::new() } else { format!(" · {} marked", view.marked.len()) };
    let footer = format!(
        " j/k move · space marks a task · r restores{} · esc closes ",
        if view.marked.is_empty() { "" } else { " the marked" }
    );
    let block = frame_block(state, format!(" Snapshot #{} → now{marked} ", view.snapshot_id), "");
    let block = block.title_bottom(Span::styled(fit(&footer, popup.width.saturating_sub(2) as usize), theme.muted));
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    let buf = frame.buffer_mut();
    let Some(diff) = &view.diff else {
        put(buf, inner.x, inner.y, inner.width, "Comparing…", theme.muted);
        return;
    };
    let lines = rows::diff_lines(diff);
    let height = inner.height as usize;
    let offset = view.selected.saturating_sub(height.saturating_sub(1));
    for (i, line) in lines.iter().enumerate().skip(offset).take(height) {
        let y = inner.y + (i - offset) as u16;
        let is_marked = line.task_key.as_ref().is_some_and(|k| view.marked.contains(k));
        let mut style = super::list::tone(theme, line.tone);
        if is_marked {
            style = style.patch(theme.marked);
        }
        if i == view.selected {
            style = style.patch(theme.selected);
        }
        let mark = if is_marked { "●" } else { " " };
        put(buf, inner.x, y, inner.width, &format!("{mark}{}", line.text), style);
    }
}

pub fn restore_confirm(
    frame: &mut Frame<'_>,
    state: &AppState,
    confirm: &crate::console::state::RestoreConfirm,
    area: Rect,
) {
    let theme = &state.theme;
    let report = &confirm.report;
    let mut lines: Vec<Line<'_>> = Vec::new();
    let scope = if confirm.only.is_empty() {
        "the whole project".to_string()
    } else {
        format!("only {}", confirm.only.join(", "))
    };
    lines.push(Line::from(Span::styled(
        format!("Restore {scope} from snapshot #{}:", report.snapshot_id),
        theme.header,
    )));
    if !report.project_fields.is_empty() {
        lines.push(Line::from(format!("  project: {}", report.project_fields.join(", "))));
    }
    for (kind, c) in &report.kinds {
        if c.restored + c.created + c.set_aside + c.renamed + c.deleted == 0 {
            continue;
        }
        let mut line =
            format!("  {kind:<12} {} restored, {} brought back, {} set aside", c.restored, c.created, c.set_aside);
        if c.renamed > 0 {
            line.push_str(&format!(", {} renamed", c.renamed));
        }
        if c.deleted > 0 {
            line.push_str(&format!(", {} deleted", c.deleted));
        }
        lines.push(Line::from(line));
    }
    for rename in &report.renames {
        lines.push(Line::from(format!(
            "  {} {:?} (made since) becomes {:?}",
            rename.kind,
            safe(&rename.from),
            safe(&rename.to)
        )));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(
        "The current state is saved as a snapshot first, so this can be undone.",
        theme.muted,
    )));
    let prompt = Line::from(vec![
        Span::raw(format!("Type {} to restore: ", state.project.key)),
        Span::styled(safe(&confirm.typed).into_owned(), theme.selected),
    ]);
    // Size the popup for the wrapped text, a blank row and the prompt. The
    // prompt has the last row of its own, so it shows even if the text is clipped.
    let inner_width = (centered(area, 70, 1).width.saturating_sub(2)).max(1) as usize;
    let text_rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner_width)).sum();
    let height = (text_rows as u16).saturating_add(4).min(area.height);
    let popup = centered(area, 70, height);
    super::clear(frame, popup);
    let block = frame_block(state, " Restore ".into(), " enter restores · esc cancels ");
    let inner = block.inner(popup);
    frame.render_widget(block, popup);
    if inner.height == 0 {
        return;
    }
    let prompt_row = Rect { y: inner.y + inner.height - 1, height: 1, ..inner };
    let text_area = Rect { height: inner.height.saturating_sub(2), ..inner };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
    frame.render_widget(Paragraph::new(prompt), prompt_row);
}
