//! Keys while an overlay is open: task detail, help palette, forms, the agent
//! picker, confirmations, the page reader and an audit entry's diff.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{change, lists, mutate, run};
use crate::cli::parse;
use crate::console::action::{Effect, Mutation, UndoRecipe};
use crate::console::keymap::{Command, Context, Key};
use crate::console::rows::{self, Target};
use crate::console::state::{
    AppState, EditableFields, Form, FormKind, Overlay, Picker, ToastLevel, edit_task_form, handoff_form,
};
use crate::domain::{HandoffKind, HandoffState, Priority, text};
use crate::store::handoffs::NewHandoff;
use crate::store::tasks::{NewTask, TaskEdit};

/// Handles a key if an overlay is open; `None` lets the screen have it.
pub fn key(state: &mut AppState, event: KeyEvent) -> Option<Vec<Effect>> {
    let overlay = state.overlay.take()?;
    let effects = match overlay {
        Overlay::Detail(detail) => {
            state.overlay = Some(Overlay::Detail(detail));
            detail_key(state, event)
        }
        Overlay::Help(mut help) => match event.code {
            KeyCode::Esc => Vec::new(),
            KeyCode::Enter => {
                let items = rows::help_items(state, &help.query);
                match items.get(help.selected) {
                    Some((command, _)) => run(state, *command),
                    None => Vec::new(),
                }
            }
            code => {
                let count = rows::help_items(state, &help.query).len();
                match code {
                    KeyCode::Up => help.selected = help.selected.saturating_sub(1),
                    KeyCode::Down => help.selected = (help.selected + 1).min(count.saturating_sub(1)),
                    KeyCode::Backspace => {
                        help.query.pop();
                        help.selected = 0;
                    }
                    KeyCode::Char(c) if !event.modifiers.contains(KeyModifiers::CONTROL) => {
                        help.query.push(c);
                        help.selected = 0;
                    }
                    _ => {}
                }
                state.overlay = Some(Overlay::Help(help));
                Vec::new()
            }
        },
        Overlay::Form(form) => form_key(state, form, event),
        Overlay::Picker(picker) => picker_key(state, picker, event),
        Overlay::Confirm(confirm) => match event.code {
            KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => mutate(state, confirm.request),
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                state.toast(ToastLevel::Info, "cancelled: nothing was changed");
                Vec::new()
            }
            _ => {
                state.overlay = Some(Overlay::Confirm(confirm));
                Vec::new()
            }
        },
        Overlay::Page(mut view) => match state.keymap.lookup(Context::List, Key::from_event(&event)) {
            Some(Command::Back | Command::Quit) => Vec::new(),
            Some(Command::Edit) => {
                if state.read_only {
                    state.toast(ToastLevel::Error, "read-only session: pages cannot be edited");
                    state.overlay = Some(Overlay::Page(view));
                    return Some(Vec::new());
                }
                let effect = Effect::OpenEditor {
                    slug: view.page.slug.clone(),
                    version: view.page.version,
                    body: view.page.body.clone(),
                };
                state.overlay = Some(Overlay::Page(view));
                vec![effect]
            }
            Some(command) => {
                view.scroll = scroll(view.scroll, command);
                state.overlay = Some(Overlay::Page(view));
                Vec::new()
            }
            None => {
                state.overlay = Some(Overlay::Page(view));
                Vec::new()
            }
        },
        Overlay::SnapshotDiff(mut view) => {
            let lines = view.diff.as_ref().map(rows::diff_lines).unwrap_or_default();
            let last = lines.len().saturating_sub(1);
            match state.keymap.lookup(Context::Recovery, Key::from_event(&event)) {
                Some(Command::Back | Command::Quit) => return Some(Vec::new()),
                Some(Command::Up) => view.selected = view.selected.saturating_sub(1),
                Some(Command::Down) => view.selected = (view.selected + 1).min(last),
                Some(Command::PageUp) => view.selected = view.selected.saturating_sub(10),
                Some(Command::PageDown) => view.selected = (view.selected + 10).min(last),
                Some(Command::Top) => view.selected = 0,
                Some(Command::Bottom) => view.selected = last,
                Some(Command::ToggleMark) => {
                    if let Some(key) = lines.get(view.selected).and_then(|l| l.task_key.clone())
                        && !view.marked.remove(&key)
                    {
                        view.marked.insert(key);
                    }
                }
                Some(Command::RestoreSnapshot) => {
                    let (id, only) = (view.snapshot_id, view.marked.iter().cloned().collect());
                    state.overlay = Some(Overlay::SnapshotDiff(view));
                    return Some(super::lists::plan_restore(state, id, only));
                }
                _ => {}
            }
            state.overlay = Some(Overlay::SnapshotDiff(view));
            Vec::new()
        }
        Overlay::RestoreConfirm(mut confirm) => match event.code {
            KeyCode::Esc => {
                state.toast(ToastLevel::Info, "restore cancelled: nothing was changed");
                Vec::new()
            }
            KeyCode::Enter if confirm.typed.trim() == state.project.key => {
                let mutation =
                    Mutation::Restore { snapshot_id: confirm.report.snapshot_id, only: confirm.only.clone() };
                state.progress = Some("starting the restore".into());
                mutate(state, change(mutation, None))
            }
            KeyCode::Enter => {
                state.toast(ToastLevel::Error, format!("type {} to confirm the restore", state.project.key));
                state.overlay = Some(Overlay::RestoreConfirm(confirm));
                Vec::new()
            }
            KeyCode::Backspace => {
                confirm.typed.pop();
                state.overlay = Some(Overlay::RestoreConfirm(confirm));
                Vec::new()
            }
            KeyCode::Char(c) if !event.modifiers.contains(KeyModifiers::CONTROL) && confirm.typed.len() < 20 => {
                confirm.typed.push(c);
                state.overlay = Some(Overlay::RestoreConfirm(confirm));
                Vec::new()
            }
            _ => {
                state.overlay = Some(Overlay::RestoreConfirm(confirm));
                Vec::new()
            }
        },
        Overlay::Diff(entry) => match state.keymap.lookup(Context::List, Key::from_event(&event)) {
            Some(Command::Back | Command::Quit | Command::Open) => Vec::new(),
            _ => {
                state.overlay = Some(Overlay::Diff(entry));
                Vec::new()
            }
        },
    };
    Some(effects)
}

fn scroll(current: u16, command: Command) -> u16 {
    match command {
        Command::Up => current.saturating_sub(1),
        Command::Down => current.saturating_add(1),
        Command::PageUp => current.saturating_sub(10),
        Command::PageDown => current.saturating_add(10),
        Command::Top => 0,
        _ => current,
    }
}

fn detail_key(state: &mut AppState, event: KeyEvent) -> Vec<Effect> {
    let Some(command) = state.keymap.lookup(Context::Detail, Key::from_event(&event)) else { return Vec::new() };
    let Some(Overlay::Detail(detail)) = &mut state.overlay else { return Vec::new() };
    match command {
        Command::Back | Command::Quit => {
            state.overlay = None;
            Vec::new()
        }
        Command::Up | Command::Down | Command::PageUp | Command::PageDown | Command::Top => {
            detail.scroll = scroll(detail.scroll, command);
            Vec::new()
        }
        Command::Left | Command::Right => {
            let count = detail.data.as_ref().map_or(0, |d| d.handoffs.len());
            if count > 0 {
                detail.handoff = if command == Command::Left {
                    detail.handoff.saturating_sub(1)
                } else {
                    (detail.handoff + 1).min(count - 1)
                };
            }
            Vec::new()
        }
        Command::AcceptHandoff | Command::RejectHandoff | Command::ResolveHandoff | Command::CancelHandoff => {
            let next = match command {
                Command::AcceptHandoff => HandoffState::Accepted,
                Command::RejectHandoff => HandoffState::Rejected,
                Command::ResolveHandoff => HandoffState::Resolved,
                _ => HandoffState::Cancelled,
            };
            let target = detail.data.as_ref().and_then(|d| d.handoffs.get(detail.handoff)).map(|h| Target::Handoff {
                id: h.id,
                task: h.task_key.clone(),
                state: h.state,
            });
            match target {
                Some(target) => lists::transition(state, &target, next),
                None => {
                    state.toast(ToastLevel::Info, "this task has no handoffs");
                    Vec::new()
                }
            }
        }
        Command::Edit | Command::Assign | Command::Archive | Command::Handoff
            if command.mutates() && state.read_only =>
        {
            state.toast(ToastLevel::Error, format!("read-only session: {} is disabled", command.name()));
            Vec::new()
        }
        Command::Edit => {
            if let Some(task) = detail.data.as_ref().map(|d| d.task.clone()) {
                let before = EditableFields {
                    title: task.title,
                    priority: task.priority,
                    labels: task.labels,
                    due_on: task.due_on,
                };
                state.overlay = Some(Overlay::Form(edit_task_form(&task.key, task.version, before)));
            }
            Vec::new()
        }
        Command::Assign => {
            let key = detail.key.clone();
            state.overlay = Some(Overlay::Picker(Picker { keys: vec![key], query: String::new(), selected: 0 }));
            vec![super::query(state, crate::console::data::Query::Agents)]
        }
        Command::Archive => {
            let key = detail.key.clone();
            super::board::confirm_archive(state, vec![key]);
            Vec::new()
        }
        Command::Handoff => {
            let key = detail.key.clone();
            state.overlay = Some(Overlay::Form(handoff_form(&key)));
            Vec::new()
        }
        Command::Open => Vec::new(),
        other => run(state, other),
    }
}

fn picker_key(state: &mut AppState, mut picker: Picker, event: KeyEvent) -> Vec<Effect> {
    let items = rows::picker_items(state, &picker.query);
    match event.code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Enter => {
            let Some((handle, _)) = items.get(picker.selected) else {
                state.overlay = Some(Overlay::Picker(picker));
                return Vec::new();
            };
            return assign(state, &picker.keys, handle.clone());
        }
        KeyCode::Up => picker.selected = picker.selected.saturating_sub(1),
        KeyCode::Down => picker.selected = (picker.selected + 1).min(items.len().saturating_sub(1)),
        KeyCode::Backspace => {
            picker.query.pop();
            picker.selected = 0;
        }
        KeyCode::Char(c) if !event.modifiers.contains(KeyModifiers::CONTROL) => {
            picker.query.push(c);
            picker.selected = 0;
        }
        _ => {}
    }
    state.overlay = Some(Overlay::Picker(picker));
    Vec::new()
}

/// The assignee a task has now, as far as the console knows.
fn current_assignee(state: &AppState, key: &str) -> Option<String> {
    let on_board =
        state.board.columns.iter().flat_map(|c| c.cards.iter()).find(|c| c.key == key).map(|c| c.assignee.clone());
    let in_detail = match &state.overlay {
        Some(Overlay::Detail(d)) => d.data.as_ref().filter(|d| d.task.key == key).map(|d| d.task.assignee.clone()),
        _ => None,
    };
    on_board.or(in_detail).or_else(|| rows::task_in_lists(state, key).map(|t| t.assignee.clone())).flatten()
}

pub(crate) fn assign(state: &mut AppState, keys: &[String], handle: Option<String>) -> Vec<Effect> {
    let mut mutations = Vec::new();
    let mut undo = Vec::new();
    for key in keys {
        undo.push(UndoRecipe::Reassign { key: key.clone(), handle: current_assignee(state, key) });
        mutations.push(Mutation::Assign { key: key.clone(), handle: handle.clone(), expect_version: None });
    }
    let request = if mutations.len() == 1 {
        change(mutations.remove(0), undo.pop())
    } else {
        let who = handle.as_ref().map(|h| format!("@{h}")).unwrap_or_else(|| "nobody".into());
        let mut request = change(Mutation::Bulk(mutations), Some(UndoRecipe::Many(undo)));
        request.label = format!("assign {} tasks to {who}", keys.len());
        request.reason = Some(format!("bulk assign of {} tasks", keys.len()));
        state.board.marked.clear();
        request
    };
    mutate(state, request)
}

fn form_key(state: &mut AppState, mut form: Form, event: KeyEvent) -> Vec<Effect> {
    let count = form.fields.len();
    match event.code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Enter => {
            return match submit(state, &form) {
                Ok(effects) => effects,
                Err(message) => {
                    form.error = Some(message);
                    state.overlay = Some(Overlay::Form(form));
                    Vec::new()
                }
            };
        }
        KeyCode::Tab | KeyCode::Down => form.focus = (form.focus + 1) % count,
        KeyCode::BackTab | KeyCode::Up => form.focus = (form.focus + count - 1) % count,
        KeyCode::Left | KeyCode::Right => {
            let field = &mut form.fields[form.focus];
            if !field.choices.is_empty() {
                let at = field.choices.iter().position(|c| *c == field.value).unwrap_or(0);
                let n = field.choices.len();
                let next = if event.code == KeyCode::Left { (at + n - 1) % n } else { (at + 1) % n };
                field.value = field.choices[next].clone();
            }
        }
        KeyCode::Backspace => {
            let field = &mut form.fields[form.focus];
            if field.choices.is_empty() {
                field.value.pop();
            }
        }
        KeyCode::Char(c) if !event.modifiers.contains(KeyModifiers::CONTROL) => {
            let field = &mut form.fields[form.focus];
            if field.choices.is_empty() && field.value.chars().count() < 2000 {
                field.value.push(c);
            }
        }
        _ => {}
    }
    state.overlay = Some(Overlay::Form(form));
    Vec::new()
}

fn value<'a>(form: &'a Form, label: &str) -> &'a str {
    form.fields.iter().find(|f| f.label == label).map(|f| f.value.trim()).unwrap_or("")
}

fn optional_handle(raw: &str) -> Result<Option<String>, String> {
    if raw.is_empty() {
        return Ok(None);
    }
    crate::domain::agent_handle(raw).map(Some).map_err(|e| e.0)
}

fn submit(state: &mut AppState, form: &Form) -> Result<Vec<Effect>, String> {
    match &form.kind {
        FormKind::NewTask => {
            let title = text::task_title(value(form, "Title")).map_err(|e| e.0)?;
            let priority: Priority = value(form, "Priority").parse().map_err(|e: crate::domain::InvalidInput| e.0)?;
            let assignee = optional_handle(value(form, "Assignee"))?;
            let labels = text::labels(value(form, "Labels").split_whitespace()).map_err(|e| e.0)?;
            let due = match value(form, "Due") {
                "" => None,
                raw => Some(parse::date(raw)?),
            };
            let lane = Some(value(form, "Lane").to_string()).filter(|l| !l.is_empty());
            let new =
                NewTask { title, lane, priority: Some(priority), assignee, labels, due_on: due, ..Default::default() };
            Ok(mutate(state, change(Mutation::Create(new), Some(UndoRecipe::ArchiveCreated))))
        }
        FormKind::EditTask { key, version, before } => {
            let title = text::task_title(value(form, "Title")).map_err(|e| e.0)?;
            let priority: Priority = value(form, "Priority").parse().map_err(|e: crate::domain::InvalidInput| e.0)?;
            let labels = text::labels(value(form, "Labels").split_whitespace()).map_err(|e| e.0)?;
            let due = match value(form, "Due") {
                "" => None,
                raw => Some(parse::date(raw)?),
            };
            let mut edit = TaskEdit::default();
            let mut back = TaskEdit::default();
            if title != before.title {
                edit.title = Some(title);
                back.title = Some(before.title.clone());
            }
            if priority != before.priority {
                edit.priority = Some(priority);
                back.priority = Some(before.priority);
            }
            if labels != before.labels {
                edit.set_labels = Some(labels);
                back.set_labels = Some(before.labels.clone());
            }
            if due != before.due_on {
                edit.due_on = Some(due);
                back.due_on = Some(before.due_on);
            }
            if edit == TaskEdit::default() {
                state.toast(ToastLevel::Info, "nothing changed");
                return Ok(Vec::new());
            }
            let mutation = Mutation::Edit { key: key.clone(), edit, expect_version: Some(*version) };
            Ok(mutate(state, change(mutation, Some(UndoRecipe::EditBack { key: key.clone(), edit: back }))))
        }
        FormKind::Handoff { key } => {
            let kind: HandoffKind = value(form, "Kind").parse().map_err(|e: crate::domain::InvalidInput| e.0)?;
            let to = optional_handle(value(form, "To"))?.ok_or("say who it goes to: @handle")?;
            let reason = value(form, "Reason");
            if reason.is_empty() {
                return Err("give a reason".into());
            }
            let due = match value(form, "Due") {
                "" => None,
                raw => Some(parse::when(raw, 1)?),
            };
            let new = NewHandoff {
                task_key: key.clone(),
                kind,
                from: None,
                to,
                reason: reason.to_string(),
                needs: value(form, "Needs").to_string(),
                due_at: due,
            };
            Ok(mutate(state, change(Mutation::OpenHandoff(new), Some(UndoRecipe::CancelCreatedHandoff))))
        }
    }
}
