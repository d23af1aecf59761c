//! The one action enum every event becomes, and the effects `update` asks for.

use crossterm::event::{KeyEvent, MouseEvent};
use time::OffsetDateTime;

use super::data::{Loaded, Query};
use super::keymap::Command;
use crate::domain::{Handoff, HandoffState, Page, Pipeline, Project, Task};
use crate::store::StoreError;
use crate::store::handoffs::NewHandoff;
use crate::store::tasks::{NewTask, Position, TaskEdit};

pub type RequestId = u64;

/// Everything that can happen to the console.
#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// Once a second: the clock, toast expiry, the fallback poll.
    Tick(OffsetDateTime),
    /// A command from the help palette or a test.
    Run(Command),
    Loaded {
        id: RequestId,
        result: Result<Loaded, Failure>,
    },
    Mutated {
        id: RequestId,
        request: Box<MutationRequest>,
        result: Result<Outcome, Failure>,
    },
    /// Someone (anyone) changed something in this database.
    Changed(ChangeNote),
    Db(DbEvent),
    /// The coalescing delay after change notifications is over.
    RefreshDue,
    /// `$EDITOR` returned: the new text, or `None` when nothing changed.
    EditorDone {
        slug: String,
        version: i32,
        body: Option<String>,
        error: Option<String>,
    },
    ProjectLoaded(Result<Project, Failure>),
    /// A step of a long operation (a restore), for the progress line.
    Progress(String),
    /// The sync worker this console ran has ended (stopped, or failed with `error`).
    SyncWorkerStopped {
        run: u64,
        error: Option<String>,
    },
    Quit,
}

/// The ids a change notification carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ChangeNote {
    pub project_id: Option<i64>,
    pub kind: String,
    pub id: Option<i64>,
    pub audit_id: i64,
}

impl ChangeNote {
    /// From a poll, which knows only that something committed somewhere:
    /// newer than anything seen, in every project.
    pub fn polled() -> ChangeNote {
        ChangeNote { project_id: None, kind: "poll".into(), id: None, audit_id: i64::MAX }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbEvent {
    Connected,
    Lost(String),
}

/// Work `update` hands to the runner.
#[derive(Debug, Clone)]
pub enum Effect {
    Query {
        id: RequestId,
        query: Query,
    },
    Mutate {
        id: RequestId,
        request: Box<MutationRequest>,
    },
    /// Send `Action::RefreshDue` after this many milliseconds.
    ScheduleRefresh(u64),
    /// Suspend the terminal and edit a page body in `$EDITOR`.
    OpenEditor {
        slug: String,
        version: i32,
        body: String,
    },
    LoadProject(String),
    /// Run a sync worker for the project inside this process until stopped.
    StartSyncWorker {
        run: u64,
        project_id: i64,
    },
    /// Ask that worker to stop once the key at hand is done.
    StopSyncWorker {
        run: u64,
    },
}

/// A change to make through the repository.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    Move {
        key: String,
        lane: Option<String>,
        position: Position,
        expect_version: Option<i32>,
    },
    Create(NewTask),
    Edit {
        key: String,
        edit: TaskEdit,
        expect_version: Option<i32>,
    },
    Assign {
        key: String,
        handle: Option<String>,
        expect_version: Option<i32>,
    },
    SetArchived {
        key: String,
        archived: bool,
        expect_version: Option<i32>,
    },
    OpenHandoff(NewHandoff),
    TransitionHandoff {
        id: i64,
        state: HandoffState,
    },
    EditPage {
        slug: String,
        body: String,
        expect_version: i32,
    },
    /// A task to fix a failed pipeline run.
    FollowUp {
        pipeline: Pipeline,
    },
    /// Several changes as one operation (one correlation id); each is its own
    /// transaction and failures are reported, not rolled back.
    Bulk(Vec<Mutation>),
    CreateSnapshot {
        label: String,
    },
    /// Restore a snapshot, all of it or only some tasks.
    Restore {
        snapshot_id: i64,
        only: Vec<String>,
    },
    /// Settle an open sync conflict by taking one side's value.
    ResolveConflict {
        id: i64,
        take_local: bool,
    },
    /// Queue sync dead letters again: one, or all of the project's (`None`).
    RetryDead {
        id: Option<i64>,
    },
}

impl Mutation {
    /// What the toast says on success.
    pub fn describe(&self) -> String {
        match self {
            Mutation::Move { key, lane: Some(lane), .. } => format!("moved {key} to {lane}"),
            Mutation::Move { key, .. } => format!("reordered {key}"),
            Mutation::Create(_) => "created".into(),
            Mutation::Edit { key, .. } => format!("updated {key}"),
            Mutation::Assign { key, handle: Some(h), .. } => format!("assigned {key} to @{h}"),
            Mutation::Assign { key, handle: None, .. } => format!("unassigned {key}"),
            Mutation::SetArchived { key, archived: true, .. } => format!("archived {key}"),
            Mutation::SetArchived { key, archived: false, .. } => format!("restored {key}"),
            Mutation::OpenHandoff(h) => format!("handoff on {} to @{}", h.task_key, h.to),
            Mutation::TransitionHandoff { id, state } => format!("handoff #{id} {state}"),
            Mutation::EditPage { slug, .. } => format!("saved page {slug}"),
            Mutation::FollowUp { pipeline } => format!("follow-up for {} created", pipeline.name),
            Mutation::Bulk(items) => format!("{} changes", items.len()),
            Mutation::CreateSnapshot { .. } => "snapshot taken".into(),
            Mutation::Restore { snapshot_id, only } if only.is_empty() => format!("restored snapshot #{snapshot_id}"),
            Mutation::Restore { snapshot_id, only } => {
                format!("restored {} task(s) from snapshot #{snapshot_id}", only.len())
            }
            Mutation::ResolveConflict { id, take_local: true } => format!("conflict #{id}: kept the local value"),
            Mutation::ResolveConflict { id, take_local: false } => format!("conflict #{id}: took the remote value"),
            Mutation::RetryDead { id: Some(id) } => format!("dead letter #{id} queued again"),
            Mutation::RetryDead { id: None } => "dead letters queued again".into(),
        }
    }
}

/// A mutation with what the session needs to report and undo it.
#[derive(Debug, Clone, PartialEq)]
pub struct MutationRequest {
    pub mutation: Mutation,
    /// Recorded on the audit entries ("undo of …", "bulk move").
    pub reason: Option<String>,
    /// How to reverse it, once it has succeeded.
    pub undo: Option<UndoRecipe>,
    /// The label the undo stack shows and undo's audit reason names.
    pub label: String,
}

/// The reversal of a change, completed with versions from its outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum UndoRecipe {
    /// Put the task back in `lane`, above `before` (or at the bottom).
    MoveBack {
        key: String,
        lane: String,
        before: Option<String>,
    },
    Reassign {
        key: String,
        handle: Option<String>,
    },
    EditBack {
        key: String,
        edit: TaskEdit,
    },
    SetArchived {
        key: String,
        archived: bool,
    },
    /// Undo a create by archiving the new task; a handoff by cancelling it.
    ArchiveCreated,
    CancelCreatedHandoff,
    Many(Vec<UndoRecipe>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Task(Box<Task>),
    Tasks(Vec<Task>),
    Handoff(Box<Handoff>),
    Page(Box<Page>),
    /// A bulk change: what succeeded, and one line per failure.
    Partial {
        tasks: Vec<Task>,
        failures: Vec<String>,
    },
    Snapshot(Box<crate::domain::SnapshotMeta>),
    Restored(Box<crate::snapshot::RestoreReport>),
    /// A conflict was settled; this reconcile key is queued to carry it across.
    SyncQueued {
        key: String,
    },
    /// How many dead letters went back in the queue.
    Retried(u64),
}

/// Why a query or change failed, as the console needs to tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Someone changed it first; nothing was written.
    Conflict {
        key: String,
        message: String,
    },
    ReadOnly,
    Unavailable(String),
    Invalid(String),
    NotFound(String),
    Other(String),
}

impl Failure {
    pub fn message(&self) -> String {
        match self {
            Failure::Conflict { message, .. } => message.clone(),
            Failure::ReadOnly => "this session is read-only: nothing was changed".into(),
            Failure::Unavailable(reason) => format!("database unreachable ({reason}): nothing was changed"),
            Failure::Invalid(m) | Failure::NotFound(m) | Failure::Other(m) => m.clone(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::Conflict { key, .. } => Failure::Conflict { key, message },
            StoreError::ReadOnly => Failure::ReadOnly,
            StoreError::Unavailable(reason) => Failure::Unavailable(reason),
            StoreError::Invalid(_) | StoreError::AlreadyExists(_) | StoreError::WrongState(_) => {
                Failure::Invalid(message)
            }
            StoreError::NotFound { .. } => Failure::NotFound(message),
            StoreError::Busy(_) => Failure::Other(message),
            _ => Failure::Other(message),
        }
    }
}
