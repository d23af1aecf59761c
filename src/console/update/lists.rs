//! List screens: moving through rows and sections, and acting on the row's task,
//! handoff, page or pipeline.

use super::board::{confirm_archive, open_detail};
use super::{change, mutate, query};
use crate::console::action::{Effect, Mutation, UndoRecipe};
use crate::console::data::Query;
use crate::console::keymap::{Command, Context};
use crate::console::layout;
use crate::console::rows::{self, Target};
use crate::console::state::{
    AppState, EditableFields, ListCursor, Overlay, PageView, Picker, ToastLevel, edit_task_form, handoff_form,
    new_task_form,
};
use crate::domain::{HandoffState, PipelineStatus};

fn page_rows(state: &AppState) -> usize {
    layout::list_capacity(layout::for_state(state).body)
}

pub fn command(state: &mut AppState, command: Command) -> Vec<Effect> {
    let screen = state.screen;
    let sections = rows::sections(state, screen);
    let flat = rows::flat(&sections);
    let count = flat.len();
    let mut cursor = state.cursor(screen);
    let page = page_rows(state);
    let target = flat.get(cursor.selected).map(|(_, r)| r.target.clone()).unwrap_or(Target::None);
    let section_of = |i: usize| flat.get(i).map(|(s, _)| *s);
    let last = count.saturating_sub(1);
    match command {
        Command::Up => cursor.selected = cursor.selected.saturating_sub(1),
        Command::Down => cursor.selected = (cursor.selected + 1).min(last),
        Command::PageUp => cursor.selected = cursor.selected.saturating_sub(page),
        Command::PageDown => cursor.selected = (cursor.selected + page).min(last),
        Command::Top => cursor.selected = 0,
        Command::Bottom => cursor.selected = last,
        Command::Left | Command::Right => {
            // Jump to the first row of the previous / next section.
            let current = section_of(cursor.selected).unwrap_or(0);
            let wanted = if command == Command::Left { current.checked_sub(1) } else { Some(current + 1) };
            if let Some(wanted) = wanted
                && let Some(index) = flat.iter().position(|(s, _)| *s >= wanted)
            {
                cursor.selected = index;
            }
        }
        Command::Open => return open(state, target),
        Command::Edit => return edit(state, target),
        Command::NewTask => {
            let lanes: Vec<String> = state.board.columns.iter().map(|c| c.lane.name.clone()).collect();
            let lanes = if lanes.is_empty() { vec!["Inbox".to_string()] } else { lanes };
            state.overlay = Some(Overlay::Form(new_task_form(&lanes[0], &lanes)));
            return Vec::new();
        }
        Command::Assign => {
            if let Some(key) = target.task_key() {
                state.overlay =
                    Some(Overlay::Picker(Picker { keys: vec![key.to_string()], query: String::new(), selected: 0 }));
                return vec![query(state, Query::Agents)];
            }
            return Vec::new();
        }
        Command::Archive => {
            if let Some(key) = target.task_key() {
                confirm_archive(state, vec![key.to_string()]);
            }
            return Vec::new();
        }
        Command::Handoff => {
            if let Some(key) = target.task_key() {
                state.overlay = Some(Overlay::Form(handoff_form(key)));
            }
            return Vec::new();
        }
        Command::FollowUp => return follow_up(state, target),
        Command::CreateSnapshot => {
            state.input =
                Some(crate::console::state::InputLine::new(crate::console::state::InputKind::SnapshotLabel, ""));
            return Vec::new();
        }
        Command::SnapshotDiff => {
            let Target::Snapshot(id) = target else { return Vec::new() };
            state.overlay = Some(Overlay::SnapshotDiff(Box::new(crate::console::state::DiffView {
                snapshot_id: id,
                diff: None,
                selected: 0,
                marked: Default::default(),
            })));
            return vec![query(state, Query::SnapshotDiff { id })];
        }
        Command::RestoreSnapshot => {
            let Target::Snapshot(id) = target else { return Vec::new() };
            return plan_restore(state, id, Vec::new());
        }
        Command::AcceptHandoff => return transition(state, &target, HandoffState::Accepted),
        Command::RejectHandoff => return transition(state, &target, HandoffState::Rejected),
        Command::ResolveHandoff => return transition(state, &target, HandoffState::Resolved),
        Command::CancelHandoff => return transition(state, &target, HandoffState::Cancelled),
        Command::TakeLocal => return super::sync::resolve(state, &target, true),
        Command::TakeRemote => return super::sync::resolve(state, &target, false),
        Command::RetryDead => return super::sync::retry(state, &target),
        Command::RetryAllDead => return super::sync::retry_all(state),
        Command::Back => {
            if state.filters.remove(&screen).is_some() {
                state.cursors.insert(screen, ListCursor::default());
            }
            return Vec::new();
        }
        _ => return Vec::new(),
    }
    state.cursors.insert(screen, cursor);
    Vec::new()
}

fn open(state: &mut AppState, target: Target) -> Vec<Effect> {
    match target {
        Target::Task(key) | Target::Handoff { task: key, .. } | Target::Conflict { task: Some(key), .. } => {
            open_detail(state, key)
        }
        Target::Conflict { id, task: None } => {
            let keys = format!(
                "{}/{}",
                state.key_hint(Context::List, Command::TakeLocal),
                state.key_hint(Context::List, Command::TakeRemote)
            );
            state.toast(ToastLevel::Info, format!("conflict #{id}: {keys} keeps the local or takes the remote value"));
            Vec::new()
        }
        Target::DeadLetter(id) => {
            let key = state.key_hint(Context::List, Command::RetryDead);
            state.toast(ToastLevel::Info, format!("dead letter #{id}: {key} queues it again"));
            Vec::new()
        }
        Target::Page(slug) => {
            if let Some(page) = state.planning.as_ref().and_then(|p| p.pages.iter().find(|p| p.slug == slug)) {
                state.overlay = Some(Overlay::Page(PageView { page: page.clone(), scroll: 0 }));
            }
            // Read it fresh: the list may be a little behind.
            vec![query(state, Query::Page { slug })]
        }
        Target::Pipeline(_) => {
            state.toast(ToastLevel::Info, "f creates a follow-up task from a failed pipeline");
            Vec::new()
        }
        Target::Snapshot(id) => {
            state.toast(ToastLevel::Info, format!("snapshot #{id}: restore it with `mctl snapshot restore {id}`"));
            Vec::new()
        }
        Target::None => Vec::new(),
    }
}

fn edit(state: &mut AppState, target: Target) -> Vec<Effect> {
    match target {
        Target::Page(slug) => match state.planning.as_ref().and_then(|p| p.pages.iter().find(|p| p.slug == slug)) {
            Some(page) => {
                if state.read_only {
                    state.toast(ToastLevel::Error, "read-only session: pages cannot be edited");
                    return Vec::new();
                }
                vec![Effect::OpenEditor { slug, version: page.version, body: page.body.clone() }]
            }
            None => Vec::new(),
        },
        other => {
            let Some(key) = other.task_key() else { return Vec::new() };
            match rows::task_in_lists(state, key) {
                Some(task) => {
                    let before = EditableFields {
                        title: task.title.clone(),
                        priority: task.priority,
                        labels: task.labels.clone(),
                        due_on: task.due_on,
                    };
                    state.overlay = Some(Overlay::Form(edit_task_form(&task.key, task.version, before)));
                    Vec::new()
                }
                // A handoff row: edit the task from its detail view.
                None => open_detail(state, key.to_string()),
            }
        }
    }
}

fn follow_up(state: &mut AppState, target: Target) -> Vec<Effect> {
    let Target::Pipeline(id) = target else {
        state.toast(ToastLevel::Info, "select a failed pipeline first");
        return Vec::new();
    };
    let pipeline = state
        .delivery
        .as_ref()
        .and_then(|d| d.pipelines.iter().find(|p| p.id == id))
        .or_else(|| {
            state.risks.as_ref().and_then(|r| {
                r.iter().find_map(|risk| match risk {
                    crate::store::views::Risk::FailingPipeline { pipeline } if pipeline.id == id => Some(pipeline),
                    _ => None,
                })
            })
        })
        .cloned();
    match pipeline {
        Some(p) if p.status == PipelineStatus::Failed => {
            let mut request = change(Mutation::FollowUp { pipeline: p.clone() }, Some(UndoRecipe::ArchiveCreated));
            request.reason = Some(format!("follow-up of pipeline {} ({})", p.name, p.external_id));
            mutate(state, request)
        }
        Some(p) => {
            state.toast(ToastLevel::Info, format!("{} is {}, not failed", p.name, p.status));
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// Asks for the dry run a restore confirmation shows.
pub(crate) fn plan_restore(state: &mut AppState, id: i64, only: Vec<String>) -> Vec<Effect> {
    if state.read_only {
        state.toast(ToastLevel::Error, "read-only session: restore is disabled");
        return Vec::new();
    }
    state.toast(ToastLevel::Info, format!("comparing snapshot #{id} with now…"));
    vec![query(state, Query::RestorePlan { id, only })]
}

pub(crate) fn transition(state: &mut AppState, target: &Target, next: HandoffState) -> Vec<Effect> {
    let Target::Handoff { id, state: current, .. } = target else {
        state.toast(ToastLevel::Info, "select a handoff first");
        return Vec::new();
    };
    if !current.can_become(next) {
        state.toast(ToastLevel::Error, format!("handoff #{id} is {current}: it cannot become {next}"));
        return Vec::new();
    }
    mutate(state, change(Mutation::TransitionHandoff { id: *id, state: next }, None))
}

pub fn click(state: &mut AppState, y: u16) -> Vec<Effect> {
    let areas = layout::for_state(state);
    let screen = state.screen;
    let sections = rows::sections(state, screen);
    let lines = rows::lines(&sections);
    let height = layout::list_capacity(areas.body);
    let offset = rows::scroll_offset(&lines, state.cursor(screen).selected, height);
    // The pane's first line is its header.
    let clicked = (y.saturating_sub(areas.body.y + 1)) as usize + offset;
    if let Some(rows::Line::Row(index)) = lines.get(clicked) {
        state.cursors.insert(screen, ListCursor { selected: *index });
    }
    Vec::new()
}
