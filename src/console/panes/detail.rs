//! The task detail: description, handoffs, external mappings, cycle and
//! modules, and the task's history from the audit log.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

use super::{centered, fit, safe};
use crate::console::keymap::{Command, Context};
use crate::console::rows::{age, ago};
use crate::console::state::{AppState, DetailState};

pub fn draw(frame: &mut Frame<'_>, state: &AppState, detail: &DetailState, area: Rect) {
    let theme = &state.theme;
    let popup = centered(area, 92, area.height);
    super::clear(frame, popup);
    let hint = |c: Command| state.key_hint(Context::Detail, c);
    let footer = format!(
        " {} edit · {} assign · {} handoff · {} archive · ←→ pick handoff · {}/{}/{}/{} accept/reject/resolve/cancel · esc close ",
        hint(Command::Edit),
        hint(Command::Assign),
        hint(Command::Handoff),
        hint(Command::Archive),
        hint(Command::AcceptHandoff),
        hint(Command::RejectHandoff),
        hint(Command::ResolveHandoff),
        hint(Command::CancelHandoff),
    );
    let Some(data) = &detail.data else {
        let block =
            Block::default().borders(Borders::ALL).border_style(theme.focus_border).title(format!(" {} ", detail.key));
        frame.render_widget(Paragraph::new("Loading…").style(theme.muted).block(block), popup);
        return;
    };
    let task = &data.task;
    let title = format!(
        " {} · {} · v{}{} ",
        task.key,
        fit(&task.lane, 20),
        task.version,
        if task.archived { " · archived" } else { "" }
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.focus_border)
        .title(Span::styled(title, theme.accent))
        .title_bottom(Span::styled(fit(&footer, popup.width.saturating_sub(2) as usize), theme.muted));
    let mut lines: Vec<Line<'_>> = Vec::new();
    lines.push(Line::from(Span::styled(safe(&task.title).into_owned(), theme.header)));
    let mut meta = vec![
        Span::styled(format!("{} ", task.priority), theme.priority(task.priority)),
        Span::raw(task.assignee.as_ref().map(|a| format!("@{a} ")).unwrap_or_else(|| "unassigned ".into())),
    ];
    if let Some(due) = task.due_on {
        let style = if due < state.now.date() && !task.lane_category.is_closed() { theme.danger } else { theme.muted };
        meta.push(Span::styled(format!("due {due} "), style));
    }
    if !task.labels.is_empty() {
        meta.push(Span::styled(format!("#{} ", task.labels.join(" #")), theme.muted));
    }
    lines.push(Line::from(meta));
    let planning = format!(
        "cycle: {}   modules: {}   created {} by {}",
        task.cycle.as_deref().unwrap_or("-"),
        if task.modules.is_empty() { "-".to_string() } else { task.modules.join(", ") },
        ago(state.now, task.created_at),
        task.created_by
    );
    lines.push(Line::from(Span::styled(safe(&planning).into_owned(), theme.muted)));
    lines.push(Line::default());
    if task.description.trim().is_empty() {
        lines.push(Line::from(Span::styled("(no description)", theme.muted)));
    } else {
        for text in task.description.lines().take(500) {
            lines.push(Line::from(safe(text).into_owned()));
        }
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(format!("Handoffs ({})", data.handoffs.len()), theme.accent)));
    if data.handoffs.is_empty() {
        lines.push(Line::from(Span::styled("  none", theme.muted)));
    }
    for (i, h) in data.handoffs.iter().enumerate() {
        let marker = if i == detail.handoff { "▶ " } else { "  " };
        let style = if h.is_overdue(state.now) {
            theme.danger
        } else if h.state.is_active() {
            Style::default()
        } else {
            theme.muted
        };
        let due = h.due_at.map(|d| format!(" due {}", ago(state.now, d))).unwrap_or_default();
        let text = format!(
            "{marker}#{} {} {}→@{} [{}]{due}: {}{}",
            h.id,
            h.kind,
            h.from_agent.as_ref().map(|a| format!("@{a}")).unwrap_or_default(),
            h.to_agent,
            h.state,
            h.reason,
            if h.needs.is_empty() { String::new() } else { format!(" — needs: {}", h.needs) }
        );
        lines.push(Line::from(Span::styled(safe(&text).into_owned(), style)));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(format!("External mappings ({})", data.mappings.len()), theme.accent)));
    if data.mappings.is_empty() {
        lines.push(Line::from(Span::styled("  none", theme.muted)));
    }
    for m in &data.mappings {
        let text = format!(
            "  {} {} [{}] {}{}",
            m.connection,
            m.external_key.as_deref().unwrap_or(&m.external_id),
            m.sync_state,
            m.url.as_deref().unwrap_or(""),
            m.last_synced_at.map(|t| format!(" · synced {}", ago(state.now, t))).unwrap_or_default()
        );
        lines.push(Line::from(safe(&text).into_owned()));
    }
    lines.push(Line::default());
    lines.push(Line::from(Span::styled(format!("History ({})", data.history.len()), theme.accent)));
    for entry in data.history.iter().rev() {
        let summary = entry.summary();
        let text = format!(
            "  {:>4} {} ({}) {}{}{}",
            age(state.now, entry.at),
            entry.actor,
            entry.source,
            entry.action,
            if summary.is_empty() { String::new() } else { format!(": {summary}") },
            entry.reason.as_deref().map(|r| format!(" [{r}]")).unwrap_or_default()
        );
        lines.push(Line::from(Span::styled(safe(&text).into_owned(), theme.muted)));
    }
    let paragraph = Paragraph::new(lines).block(block).wrap(Wrap { trim: false }).scroll((detail.scroll, 0));
    frame.render_widget(paragraph, popup);
}
