//! Sync from the console: settling conflicts and retrying dead letters from
//! the Risks screen, keeping the status line's sync health current, and the
//! sync worker this console can run itself (`:sync start|stop|status`).

use super::{change, mutate, query};
use crate::console::action::{Effect, Mutation, MutationRequest, Outcome};
use crate::console::command_line::SyncVerb;
use crate::console::data::{Query, QueryKey};
use crate::console::rows::Target;
use crate::console::state::{AppState, Screen, ToastLevel};
use crate::console::sync::{self as view, LocalWorker};
use crate::store::sync::SyncHealth;
use crate::sync::registry::WorkerView;

/// Sync health is read this often (in ticks, seconds): the worker's progress
/// sends no change notification.
const HEALTH_EVERY: u64 = 10;

/// `L` / `R` on a conflict row.
pub fn resolve(state: &mut AppState, target: &Target, take_local: bool) -> Vec<Effect> {
    let Target::Conflict { id, .. } = target else {
        state.toast(ToastLevel::Info, "select a sync conflict first (on the Risks screen)");
        return Vec::new();
    };
    let side = if take_local { "kept the local value" } else { "took the remote value" };
    let what = state
        .sync_issues
        .as_ref()
        .and_then(|issues| issues.conflicts.iter().find(|c| c.id == *id))
        .map(|c| format!("{} {}", c.entity_key.as_deref().unwrap_or(c.local_kind.as_str()), c.field))
        .unwrap_or_else(|| format!("conflict #{id}"));
    let mut request = change(Mutation::ResolveConflict { id: *id, take_local }, None);
    request.label = format!("{what}: {side}");
    mutate(state, request)
}

/// `t` on a dead-letter row.
pub fn retry(state: &mut AppState, target: &Target) -> Vec<Effect> {
    let Target::DeadLetter(id) = target else {
        state.toast(ToastLevel::Info, "select a sync dead letter first (on the Risks screen)");
        return Vec::new();
    };
    let mut request = change(Mutation::RetryDead { id: Some(*id) }, None);
    if let Some(letter) = state.sync_issues.as_ref().and_then(|i| i.dead_letters.iter().find(|d| d.id == *id)) {
        request.label = format!("{} queued again", letter.key);
    }
    mutate(state, request)
}

/// `T`: every dead letter of the project.
pub fn retry_all(state: &mut AppState) -> Vec<Effect> {
    let known = state.sync_issues.as_ref().map(|i| i.dead_letters.len());
    if known == Some(0) {
        state.toast(ToastLevel::Info, "no sync dead letters to retry");
        return Vec::new();
    }
    mutate(state, change(Mutation::RetryDead { id: None }, None))
}

/// The toast for a finished sync change.
pub fn outcome_message(request: &MutationRequest, outcome: &Outcome) -> (ToastLevel, String) {
    match (&request.mutation, outcome) {
        (Mutation::RetryDead { id: Some(id) }, Outcome::Retried(0)) => {
            (ToastLevel::Info, format!("dead letter #{id} is not dead any more: nothing to retry"))
        }
        (Mutation::RetryDead { .. }, Outcome::Retried(0)) => (ToastLevel::Info, "no sync dead letters to retry".into()),
        (Mutation::RetryDead { id: None }, Outcome::Retried(n)) => {
            (ToastLevel::Success, format!("{n} dead letter{} queued again", if *n == 1 { "" } else { "s" }))
        }
        (_, Outcome::SyncQueued { key }) => {
            (ToastLevel::Success, format!("{}; {key} is queued for the next sync pass", request.label))
        }
        _ => (ToastLevel::Success, request.label.clone()),
    }
}

/// New health: kept for the status line and the Risks screen's workers. On
/// the Risks screen, when the counts no longer match the rows shown, the
/// rows are read again.
pub fn health_loaded(state: &mut AppState, health: Vec<SyncHealth>, workers: Vec<WorkerView>) -> Vec<Effect> {
    let conflicts: i64 = health.iter().map(|h| h.conflicts).sum();
    let dead: i64 = health.iter().map(|h| h.dead_letters).sum();
    state.conn.sync.health = Some(health);
    state.conn.sync.workers = workers;
    let Some(issues) = &state.sync_issues else { return Vec::new() };
    // The conflict list stops at 500 rows.
    let shown_conflicts = issues.conflicts.len() as i64;
    let differs = conflicts.min(500) != shown_conflicts.min(500) || dead != issues.dead_letters.len() as i64;
    if state.screen == Screen::Risks && differs && !state.requests.pending(QueryKey::Risks) {
        return super::load_screen(state, Screen::Risks);
    }
    Vec::new()
}

/// The clock's share: sync health every [`HEALTH_EVERY`] seconds, one read at a time.
pub fn poll(state: &mut AppState) -> Option<Effect> {
    let due = state.ticks.is_multiple_of(HEALTH_EVERY)
        && state.is_connected()
        && !state.requests.pending(QueryKey::SyncHealth);
    due.then(|| query(state, Query::SyncHealth))
}

/// `:sync start|stop|status`.
pub fn worker_command(state: &mut AppState, verb: SyncVerb) -> Vec<Effect> {
    match verb {
        SyncVerb::Start => start(state),
        SyncVerb::Stop => stop(state, "stopping the sync worker after the key at hand"),
        SyncVerb::Status => {
            let summary = view::summary(&state.conn.sync, state.now).long;
            let worker = match state.conn.sync.worker {
                LocalWorker::Off => "no worker here (:sync start runs one)",
                LocalWorker::Running { .. } => "a worker runs here (:sync stop stops it)",
                LocalWorker::Stopping { .. } => "the worker here is stopping",
            };
            state.toast(ToastLevel::Info, format!("{summary} · {worker}"));
            vec![query(state, Query::SyncHealth)]
        }
    }
}

fn start(state: &mut AppState) -> Vec<Effect> {
    if state.read_only {
        state.toast(
            ToastLevel::Error,
            "read-only session: the sync worker writes to the database, so it cannot run here (use `mctl sync run`)",
        );
        return Vec::new();
    }
    match state.conn.sync.worker {
        LocalWorker::Running { .. } => {
            state.toast(ToastLevel::Info, "a sync worker already runs in this console (:sync stop stops it)");
            return Vec::new();
        }
        LocalWorker::Stopping { .. } => {
            state.toast(ToastLevel::Info, "the sync worker is still stopping: try again in a moment");
            return Vec::new();
        }
        LocalWorker::Off => {}
    }
    if !state.is_connected() {
        state.toast(ToastLevel::Error, "the database is unreachable: the sync worker was not started");
        return Vec::new();
    }
    if let Some(health) = &state.conn.sync.health
        && !view::has_syncable_connection(health)
    {
        let key = state.project.key.clone();
        state.toast(
            ToastLevel::Error,
            format!("nothing to sync: {key} has no enabled connection to sync (Plane, GitHub, Gitea, GitLab, n8n)"),
        );
        return Vec::new();
    }
    let run = state.requests.next_id();
    let project_id = state.project.id;
    state.conn.sync.worker = LocalWorker::Running { run, project_id };
    let key = state.project.key.clone();
    state.toast(ToastLevel::Success, format!("sync worker started here for {key}; :sync stop or quitting stops it"));
    vec![Effect::StartSyncWorker { run, project_id }, query(state, Query::SyncHealth)]
}

/// Asks the worker here to stop, saying `why`.
pub fn stop(state: &mut AppState, why: &str) -> Vec<Effect> {
    match state.conn.sync.worker {
        LocalWorker::Running { run, .. } => {
            state.conn.sync.worker = LocalWorker::Stopping { run };
            state.toast(ToastLevel::Info, why.to_string());
            vec![Effect::StopSyncWorker { run }]
        }
        LocalWorker::Stopping { .. } => {
            state.toast(ToastLevel::Info, "the sync worker is already stopping");
            Vec::new()
        }
        LocalWorker::Off => {
            state.toast(ToastLevel::Info, "no sync worker runs in this console");
            Vec::new()
        }
    }
}

/// The worker ended: asked to, or because it failed. A report from an
/// earlier run is ignored.
pub fn worker_stopped(state: &mut AppState, run: u64, error: Option<String>) -> Vec<Effect> {
    if state.conn.sync.worker.run() != Some(run) {
        return Vec::new();
    }
    state.conn.sync.worker = LocalWorker::Off;
    match error {
        Some(error) => state.toast(ToastLevel::Error, format!("the sync worker here stopped: {error}")),
        None => state.toast(ToastLevel::Info, "the sync worker here has stopped"),
    }
    if state.is_connected() { vec![query(state, Query::SyncHealth)] } else { Vec::new() }
}
