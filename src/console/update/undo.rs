//! `u`: reversing the operator's last change of the session, through the same
//! repository path, with the audit entries saying it was an undo.

use super::mutate;
use crate::console::action::{Effect, Mutation, MutationRequest, Outcome, UndoRecipe};
use crate::console::state::{AppState, ToastLevel, UndoStep};
use crate::domain::{HandoffState, Task};
use crate::store::tasks::Position;

const DEPTH: usize = 50;

pub fn undo(state: &mut AppState) -> Vec<Effect> {
    let Some(step) = state.undo.pop() else {
        state.toast(ToastLevel::Info, "nothing to undo in this session");
        return Vec::new();
    };
    let effects = mutate(state, step.request.clone());
    if effects.is_empty() {
        state.undo.push(step); // refused (read-only or offline): keep it for later
    }
    effects
}

/// After a change succeeded: remember how to reverse it, pinned to the
/// versions it produced so an undo never overwrites someone else's later edit.
pub fn remember(state: &mut AppState, request: &MutationRequest, outcome: &Outcome) {
    let Some(recipe) = &request.undo else { return };
    let Some(mutation) = reverse(recipe, outcome) else { return };
    let label = request.label.clone();
    let undo_request = MutationRequest {
        mutation,
        reason: Some(format!("undo of: {label}")),
        undo: None,
        label: format!("undo {label}"),
    };
    state.undo.push(UndoStep { label, request: undo_request });
    if state.undo.len() > DEPTH {
        state.undo.remove(0);
    }
}

fn tasks(outcome: &Outcome) -> Vec<&Task> {
    match outcome {
        Outcome::Task(task) => vec![task],
        Outcome::Tasks(tasks) | Outcome::Partial { tasks, .. } => tasks.iter().collect(),
        _ => Vec::new(),
    }
}

fn reverse(recipe: &UndoRecipe, outcome: &Outcome) -> Option<Mutation> {
    let version_of = |key: &str| tasks(outcome).into_iter().find(|t| t.key == key).map(|t| t.version);
    Some(match recipe {
        UndoRecipe::MoveBack { key, lane, before } => Mutation::Move {
            key: key.clone(),
            lane: Some(lane.clone()),
            position: before.clone().map_or(Position::Bottom, Position::Before),
            expect_version: Some(version_of(key)?),
        },
        UndoRecipe::Reassign { key, handle } => {
            Mutation::Assign { key: key.clone(), handle: handle.clone(), expect_version: Some(version_of(key)?) }
        }
        UndoRecipe::EditBack { key, edit } => {
            Mutation::Edit { key: key.clone(), edit: edit.clone(), expect_version: Some(version_of(key)?) }
        }
        UndoRecipe::SetArchived { key, archived } => {
            Mutation::SetArchived { key: key.clone(), archived: *archived, expect_version: Some(version_of(key)?) }
        }
        UndoRecipe::ArchiveCreated => {
            let task = tasks(outcome).into_iter().next()?;
            Mutation::SetArchived { key: task.key.clone(), archived: true, expect_version: Some(task.version) }
        }
        UndoRecipe::CancelCreatedHandoff => match outcome {
            Outcome::Handoff(h) => Mutation::TransitionHandoff { id: h.id, state: HandoffState::Cancelled },
            _ => return None,
        },
        UndoRecipe::Many(recipes) => {
            // Only the parts that happened are reversed.
            let steps: Vec<Mutation> = recipes.iter().filter_map(|r| reverse(r, outcome)).collect();
            if steps.is_empty() {
                return None;
            }
            Mutation::Bulk(steps)
        }
    })
}
