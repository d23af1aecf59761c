//! The list screens (everything but the board) as sections of rows. `update`
//! uses the same rows to know what is selected, `draw` to paint them, so the
//! two never disagree.

use time::OffsetDateTime;

use super::state::{AppState, Screen};
use crate::domain::{
    AgentStatus, DeploymentStatus, Handoff, HandoffState, LaneCategory, PipelineStatus, Priority, ReleaseStatus, Task,
};
use crate::store::agents::AgentLoad;
use crate::store::views::Risk;

/// What a row is about: what Enter opens and the task keys act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Task(String),
    Handoff {
        id: i64,
        task: String,
        state: HandoffState,
    },
    Page(String),
    Pipeline(i64),
    Snapshot(i64),
    /// An open sync conflict; `task` when it is about a task.
    Conflict {
        id: i64,
        task: Option<String>,
    },
    DeadLetter(i64),
}

impl Target {
    /// The task a row is about, if any.
    pub fn task_key(&self) -> Option<&str> {
        match self {
            Target::Task(key) | Target::Handoff { task: key, .. } => Some(key),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Normal,
    Muted,
    Accent,
    Ok,
    Warn,
    Danger,
    Priority(Priority),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
    /// Display width; `0` takes what is left.
    pub width: u16,
}

fn cell(text: impl Into<String>, width: u16, tone: Tone) -> Cell {
    Cell { text: text.into(), tone, width }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    /// What to say when there are no rows.
    pub empty: &'static str,
}

/// `5m`, `3h`, `2d`.
pub fn age(now: OffsetDateTime, then: OffsetDateTime) -> String {
    let seconds = (now - then).whole_seconds();
    let (sign, seconds) = if seconds < 0 { ("in ", -seconds) } else { ("", seconds) };
    let text = match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    format!("{sign}{text}")
}

/// `5m ago`; a time ahead of the clock (skew between hosts) reads `in 5m`,
/// never `in 5m ago`.
pub fn ago(now: OffsetDateTime, then: OffsetDateTime) -> String {
    if then > now { age(now, then) } else { format!("{} ago", age(now, then)) }
}

fn task_row(task: &Task, now: OffsetDateTime, show_lane: bool) -> Row {
    let today = now.date();
    let short = |d: time::Date| format!("{:02}-{:02}", u8::from(d.month()), d.day());
    let due = match task.due_on {
        Some(d) if d < today && !task.lane_category.is_closed() => {
            cell(format!("overdue {}", short(d)), 13, Tone::Danger)
        }
        Some(d) if d == today => cell("due today", 13, Tone::Warn),
        Some(d) => cell(format!("due {}", short(d)), 13, Tone::Muted),
        None => cell("", 13, Tone::Muted),
    };
    let mut cells =
        vec![cell(&task.key, 9, Tone::Accent), cell(task.priority.to_string(), 6, Tone::Priority(task.priority))];
    if show_lane {
        cells.push(cell(&task.lane, 11, Tone::Muted));
    }
    cells.push(cell(task.assignee.as_ref().map(|a| format!("@{a}")).unwrap_or_default(), 9, Tone::Normal));
    cells.push(due);
    cells.push(cell(&task.title, 0, Tone::Normal));
    Row { cells, target: Target::Task(task.key.clone()) }
}

/// A handoff; `to_operator` rows (the Inbox) leave out the receiver.
fn handoff_row(h: &Handoff, now: OffsetDateTime, to_operator: bool) -> Row {
    let due = match h.due_at {
        Some(due) if h.is_overdue(now) => cell(format!("overdue {}", age(now, due)), 13, Tone::Danger),
        Some(due) => cell(format!("due {}", age(now, due)), 13, Tone::Muted),
        None => cell("", 13, Tone::Muted),
    };
    Row {
        cells: vec![
            cell(format!("#{}", h.id), 4, Tone::Muted),
            cell(&h.task_key, 9, Tone::Accent),
            cell(h.kind.to_string(), 8, if h.kind.as_str() == "blocked" { Tone::Warn } else { Tone::Normal }),
            if to_operator {
                cell(h.from_agent.as_ref().map(|a| format!("from @{a}")).unwrap_or_default(), 12, Tone::Normal)
            } else {
                cell(
                    format!("{}→@{}", h.from_agent.as_ref().map(|a| format!("@{a}")).unwrap_or_default(), h.to_agent),
                    18,
                    Tone::Normal,
                )
            },
            cell(h.state.to_string(), 8, Tone::Muted),
            due,
            cell(&h.reason, 0, Tone::Normal),
        ],
        target: Target::Handoff { id: h.id, task: h.task_key.clone(), state: h.state },
    }
}

/// An agent's load against its capacity, as dispatch sees it (started
/// lanes of every project): at capacity is a warning, over it a danger.
fn agent_row(load: &AgentLoad, now: OffsetDateTime) -> Row {
    let agent = &load.agent;
    let capacity = i64::from(agent.capacity);
    let load_tone = match load.in_progress {
        n if n > capacity => Tone::Danger,
        n if n == capacity => Tone::Warn,
        _ => Tone::Normal,
    };
    let status_tone = match agent.status {
        AgentStatus::Available => Tone::Ok,
        AgentStatus::Busy => Tone::Warn,
        AgentStatus::Away => Tone::Muted,
        AgentStatus::Offline => Tone::Danger,
    };
    Row {
        cells: vec![
            cell(format!("@{}", agent.handle), 12, Tone::Accent),
            cell(format!("{}/{}", load.in_progress, agent.capacity), 7, load_tone),
            cell(agent.status.to_string(), 10, status_tone),
            cell(
                match agent.last_seen_at {
                    // The database clock may run a little ahead of this one.
                    Some(t) if t >= now => "seen now".to_string(),
                    Some(t) => format!("seen {}", ago(now, t)),
                    None => String::new(),
                },
                14,
                Tone::Muted,
            ),
            cell(&agent.display_name, 0, Tone::Normal),
        ],
        target: Target::None,
    }
}

fn progress(done: i64, total: i64) -> String {
    let width = 10;
    let filled = if total > 0 { (done * width / total) as usize } else { 0 };
    format!("{}{} {done}/{total}", "█".repeat(filled), "░".repeat(width as usize - filled))
}

/// Keeps rows that match the screen's filter (task rows by the task fields,
/// others by their text).
fn filtered(state: &AppState, screen: Screen, mut sections: Vec<Section>, tasks: &[&Task]) -> Vec<Section> {
    let Some(filter) = state.filter(screen) else { return sections };
    for section in &mut sections {
        section.rows.retain(|row| match row.target.task_key().and_then(|k| tasks.iter().find(|t| t.key == k)) {
            Some(task) => filter.matches_task(task),
            None => {
                let text = filter.text.clone().unwrap_or_default().to_lowercase();
                filter.agent.is_none()
                    && filter.label.is_none()
                    && filter.priority.is_none()
                    && row.cells.iter().any(|c| c.text.to_lowercase().contains(&text))
            }
        });
    }
    sections
}

pub fn sections(state: &AppState, screen: Screen) -> Vec<Section> {
    let now = state.now;
    match screen {
        Screen::Work => Vec::new(),
        Screen::Inbox => {
            let Some(inbox) = &state.inbox else { return loading() };
            let handoffs = Section {
                title: format!("Handoffs to @{} ({})", state.operator, inbox.handoffs.len()),
                rows: inbox.handoffs.iter().map(|h| handoff_row(h, now, true)).collect(),
                empty: "nothing handed to you",
            };
            let untriaged = Section {
                title: format!("Untriaged ({})", inbox.tasks.len()),
                rows: inbox
                    .tasks
                    .iter()
                    .map(|t| {
                        let mut row = task_row(t, now, false);
                        row.cells.insert(1, cell(age(now, t.created_at), 4, Tone::Muted));
                        row
                    })
                    .collect(),
                empty: "inbox zero",
            };
            let tasks: Vec<&Task> = inbox.tasks.iter().collect();
            filtered(state, screen, vec![handoffs, untriaged], &tasks)
        }
        Screen::Today => {
            let Some(today) = &state.today else { return loading() };
            let mut sections = vec![Section {
                title: "Agents (in progress/capacity)".into(),
                rows: state.agents.iter().map(|a| agent_row(a, now)).collect(),
                empty: "no agents",
            }];
            for task in today {
                let title = match &task.assignee {
                    Some(handle) => format!("@{handle}"),
                    None => "Unassigned".to_string(),
                };
                if sections.last().is_none_or(|s| s.title != title) {
                    sections.push(Section { title, rows: Vec::new(), empty: "" });
                }
                if let Some(section) = sections.last_mut() {
                    section.rows.push(task_row(task, now, true));
                }
            }
            if today.is_empty() {
                sections.push(Section { title: "Today".into(), rows: Vec::new(), empty: "nothing in progress or due" });
            }
            let tasks: Vec<&Task> = today.iter().collect();
            filtered(state, screen, sections, &tasks)
        }
        Screen::Planning => {
            let Some(planning) = &state.planning else { return loading() };
            let today = now.date();
            let cycles = Section {
                title: "Cycles".into(),
                rows: planning
                    .cycles
                    .iter()
                    .map(|c| Row {
                        cells: vec![
                            cell(&c.name, 16, Tone::Accent),
                            cell(c.phase(today), 9, if c.phase(today) == "current" { Tone::Ok } else { Tone::Muted }),
                            cell(format!("{} → {}", c.starts_on, c.ends_on), 25, Tone::Muted),
                            cell(progress(c.done_count, c.task_count), 0, Tone::Normal),
                        ],
                        target: Target::None,
                    })
                    .collect(),
                empty: "no cycles",
            };
            let modules = Section {
                title: "Modules".into(),
                rows: planning
                    .modules
                    .iter()
                    .map(|m| Row {
                        cells: vec![
                            cell(&m.name, 24, Tone::Accent),
                            cell(m.status.to_string(), 12, Tone::Muted),
                            cell(m.lead.as_ref().map(|l| format!("@{l}")).unwrap_or_default(), 10, Tone::Normal),
                            cell(progress(m.done_count, m.task_count), 0, Tone::Normal),
                        ],
                        target: Target::None,
                    })
                    .collect(),
                empty: "no modules",
            };
            let pages = Section {
                title: "Knowledge pages (enter reads, e edits)".into(),
                rows: planning
                    .pages
                    .iter()
                    .map(|p| Row {
                        cells: vec![
                            cell(&p.slug, 24, Tone::Accent),
                            cell(format!("v{}", p.version), 5, Tone::Muted),
                            cell(age(now, p.updated_at), 5, Tone::Muted),
                            cell(&p.title, 0, Tone::Normal),
                        ],
                        target: Target::Page(p.slug.clone()),
                    })
                    .collect(),
                empty: "no pages",
            };
            filtered(state, screen, vec![cycles, modules, pages], &[])
        }
        Screen::Delivery => {
            let Some(delivery) = &state.delivery else { return loading() };
            let environments = Section {
                title: "Environments".into(),
                rows: delivery
                    .environments
                    .iter()
                    .map(|e| {
                        let latest = delivery.deployments.iter().find(|d| d.environment == e.name);
                        let (status, tone) = match latest.map(|d| d.status) {
                            Some(DeploymentStatus::Success) => ("success".to_string(), Tone::Ok),
                            Some(DeploymentStatus::Failed) => ("failed".to_string(), Tone::Danger),
                            Some(s) => (s.to_string(), Tone::Warn),
                            None => ("never deployed".to_string(), Tone::Muted),
                        };
                        Row {
                            cells: vec![
                                cell(&e.name, 14, Tone::Accent),
                                cell(status, 15, tone),
                                cell(latest.map(|d| d.git_ref.clone()).unwrap_or_default(), 16, Tone::Normal),
                                cell(latest.and_then(|d| d.commit_sha.clone()).unwrap_or_default(), 9, Tone::Muted),
                                cell(
                                    latest.map(|d| age(now, d.started_at.unwrap_or(d.created_at))).unwrap_or_default(),
                                    0,
                                    Tone::Muted,
                                ),
                            ],
                            target: Target::None,
                        }
                    })
                    .collect(),
                empty: "no environments",
            };
            let mut pipelines: Vec<_> = delivery.pipelines.iter().collect();
            // Failed first, then most recent.
            pipelines.sort_by_key(|p| {
                (p.status != PipelineStatus::Failed, std::cmp::Reverse(p.started_at.unwrap_or(p.updated_at)))
            });
            let pipelines = Section {
                title: "Pipelines (failed first; f makes a follow-up task)".into(),
                rows: pipelines
                    .into_iter()
                    .map(|p| {
                        let tone = match p.status {
                            PipelineStatus::Failed => Tone::Danger,
                            PipelineStatus::Success => Tone::Ok,
                            PipelineStatus::Running | PipelineStatus::Queued => Tone::Warn,
                            _ => Tone::Muted,
                        };
                        Row {
                            cells: vec![
                                cell(&p.name, 10, Tone::Accent),
                                cell(p.status.to_string(), 10, tone),
                                cell(&p.git_ref, 24, Tone::Normal),
                                cell(p.commit_sha.clone().unwrap_or_default(), 9, Tone::Muted),
                                cell(age(now, p.started_at.unwrap_or(p.updated_at)), 0, Tone::Muted),
                            ],
                            target: Target::Pipeline(p.id),
                        }
                    })
                    .collect(),
                empty: "no pipeline runs",
            };
            let releases = Section {
                title: "Releases".into(),
                rows: delivery
                    .releases
                    .iter()
                    .map(|(r, ready)| {
                        let (verdict, tone) = if r.status == ReleaseStatus::Released {
                            ("released".to_string(), Tone::Muted)
                        } else if ready.ready {
                            ("ready".to_string(), Tone::Ok)
                        } else {
                            ("not ready".to_string(), Tone::Warn)
                        };
                        Row {
                            cells: vec![
                                cell(&r.name, 12, Tone::Accent),
                                cell(verdict, 10, tone),
                                cell(r.target_on.map(|d| format!("target {d}")).unwrap_or_default(), 18, Tone::Muted),
                                cell(format!("tasks {}/{}", ready.tasks_done, ready.tasks_total), 12, Tone::Normal),
                                cell(
                                    format!("pipelines {}/{} green", ready.pipelines_green, ready.pipelines_total),
                                    0,
                                    Tone::Normal,
                                ),
                            ],
                            target: Target::None,
                        }
                    })
                    .collect(),
                empty: "no releases",
            };
            let review = Section {
                title: format!("Review queue ({})", delivery.review.len()),
                rows: delivery.review.iter().map(|t| task_row(t, now, false)).collect(),
                empty: "nothing waiting for review",
            };
            let tasks: Vec<&Task> = delivery.review.iter().collect();
            filtered(state, screen, vec![environments, pipelines, releases, review], &tasks)
        }
        Screen::Risks => {
            let Some(risks) = &state.risks else { return loading() };
            let rows = risks.iter().map(|risk| risk_row(risk, now)).collect();
            let tasks: Vec<&Task> = risks
                .iter()
                .filter_map(|r| match r {
                    Risk::StaleTask { task } => Some(task),
                    _ => None,
                })
                .collect();
            let mut sections =
                vec![Section { title: format!("Needs an operator ({})", risks.len()), rows, empty: "all clear" }];
            sections.extend(super::sync::risk_sections(state));
            filtered(state, screen, sections, &tasks)
        }
        Screen::Recovery => {
            let Some(snapshots) = &state.recovery else { return loading() };
            let rows = snapshots.iter().map(|s| super::recovery::snapshot_row(s, now, state.width)).collect();
            filtered(
                state,
                screen,
                vec![Section {
                    title: format!(
                        "Snapshots ({}) — c takes one, d shows what changed since, r restores",
                        snapshots.len()
                    ),
                    rows,
                    empty: "no snapshots yet: press c to take one",
                }],
                &[],
            )
        }
        Screen::Settings => {
            let Some(settings) = &state.settings else { return loading() };
            let project = Section {
                title: "Project".into(),
                rows: vec![Row {
                    cells: vec![
                        cell(&state.project.key, 8, Tone::Accent),
                        cell(format!("{} tasks created", state.project.last_task_number), 20, Tone::Muted),
                        cell(&state.project.name, 0, Tone::Normal),
                    ],
                    target: Target::None,
                }],
                empty: "",
            };
            let lanes = Section {
                title: "Lanes (order, WIP, category)".into(),
                rows: settings
                    .lanes
                    .iter()
                    .map(|l| Row {
                        cells: vec![
                            cell(l.position.to_string(), 3, Tone::Muted),
                            cell(&l.name, 14, Tone::Accent),
                            cell(
                                l.category.to_string(),
                                10,
                                if l.category == LaneCategory::Completed { Tone::Ok } else { Tone::Normal },
                            ),
                            cell(l.role.to_string(), 8, Tone::Muted),
                            cell(
                                match l.wip_limit {
                                    Some(w) => format!("{}/{w}", l.open_count),
                                    None => l.open_count.to_string(),
                                },
                                9,
                                if l.over_wip_limit() { Tone::Danger } else { Tone::Normal },
                            ),
                            cell(if l.visible { "" } else { "hidden" }, 0, Tone::Muted),
                        ],
                        target: Target::None,
                    })
                    .collect(),
                empty: "no lanes",
            };
            let agents = Section {
                title: "Agents".into(),
                rows: settings
                    .agents
                    .iter()
                    .map(|a| Row {
                        cells: vec![
                            cell(format!("@{}", a.agent.handle), 12, Tone::Accent),
                            cell(a.agent.kind.to_string(), 8, Tone::Muted),
                            cell(a.agent.status.to_string(), 10, Tone::Normal),
                            cell(
                                format!("{}/{}", a.in_progress, a.agent.capacity),
                                6,
                                if a.in_progress > a.agent.capacity as i64 { Tone::Danger } else { Tone::Normal },
                            ),
                            cell(&a.agent.display_name, 0, Tone::Normal),
                        ],
                        target: Target::None,
                    })
                    .collect(),
                empty: "no agents",
            };
            let connections = Section {
                title: "Connections (secrets as references) — :sync start syncs from here".into(),
                rows: settings
                    .connections
                    .iter()
                    .map(|c| Row {
                        cells: vec![
                            cell(&c.key, 14, Tone::Accent),
                            cell(c.provider.to_string(), 8, Tone::Muted),
                            cell(c.secret_ref.clone().unwrap_or_else(|| "no secret".into()), 22, Tone::Normal),
                            cell(if c.enabled { "" } else { "disabled" }, 9, Tone::Warn),
                            cell(&c.base_url, 0, Tone::Muted),
                        ],
                        target: Target::None,
                    })
                    .collect(),
                empty: "no connections",
            };
            filtered(state, screen, vec![project, lanes, agents, connections], &[])
        }
    }
}

fn risk_row(risk: &Risk, now: OffsetDateTime) -> Row {
    let (what, tone, detail, target) = match risk {
        Risk::OverdueHandoff { handoff } => (
            "overdue handoff",
            Tone::Danger,
            format!(
                "{} #{} to @{} ({} overdue): {}",
                handoff.task_key,
                handoff.id,
                handoff.to_agent,
                handoff.due_at.map(|d| age(now, d)).unwrap_or_default(),
                handoff.reason
            ),
            Target::Handoff { id: handoff.id, task: handoff.task_key.clone(), state: handoff.state },
        ),
        Risk::BlockedHandoff { handoff } => (
            "blocked",
            Tone::Warn,
            format!("{} waits on @{}: {}", handoff.task_key, handoff.to_agent, handoff.reason),
            Target::Handoff { id: handoff.id, task: handoff.task_key.clone(), state: handoff.state },
        ),
        Risk::OfflineAgentWithWork { agent, tasks } => {
            let seen = match agent.last_seen_at {
                Some(t) => format!("last seen {}", ago(now, t)),
                None => "never seen".to_string(),
            };
            // Silent: not heard from for longer than the threshold, not marked yet.
            let (what, state) = match agent.status {
                AgentStatus::Offline => ("agent offline", "offline"),
                _ => ("agent silent", "silent"),
            };
            let plural = if *tasks == 1 { "" } else { "s" };
            (
                what,
                Tone::Danger,
                format!("@{} is {state} ({seen}) and holds {tasks} task{plural} in progress", agent.handle),
                Target::None,
            )
        }
        Risk::LaneOverLimit { lane } => (
            "over WIP limit",
            Tone::Warn,
            format!("{} holds {} of {}", lane.name, lane.open_count, lane.wip_limit.unwrap_or(0)),
            Target::None,
        ),
        Risk::FailingPipeline { pipeline } => (
            "pipeline failing",
            Tone::Danger,
            format!(
                "{} on {} ({}) {}",
                pipeline.name,
                pipeline.git_ref,
                pipeline.commit_sha.clone().unwrap_or_default(),
                ago(now, pipeline.started_at.unwrap_or(pipeline.updated_at))
            ),
            Target::Pipeline(pipeline.id),
        ),
        Risk::FailingDeployment { deployment } => (
            "deploy failed",
            Tone::Danger,
            format!(
                "{} to {} ({}) {}",
                deployment.git_ref,
                deployment.environment,
                deployment.external_id,
                ago(now, deployment.started_at.unwrap_or(deployment.created_at))
            ),
            Target::None,
        ),
        Risk::StaleTask { task } => (
            "stale",
            Tone::Warn,
            format!(
                "{} in {} untouched for {} ({}): {}",
                task.key,
                task.lane,
                age(now, task.updated_at),
                task.assignee.as_ref().map(|a| format!("@{a}")).unwrap_or_else(|| "unassigned".into()),
                task.title
            ),
            Target::Task(task.key.clone()),
        ),
    };
    Row { cells: vec![cell(what, 17, tone), cell(detail, 0, Tone::Normal)], target }
}

fn loading() -> Vec<Section> {
    vec![Section { title: "Loading…".into(), rows: Vec::new(), empty: "loading" }]
}

/// The rows of a screen in display order, each with its section index.
pub fn flat(sections: &[Section]) -> Vec<(usize, &Row)> {
    sections.iter().enumerate().flat_map(|(i, s)| s.rows.iter().map(move |r| (i, r))).collect()
}

/// One line of a list pane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    Title(usize),
    /// A row, by its index among all rows of the screen.
    Row(usize),
    /// The "nothing here" line of an empty section.
    Empty(usize),
}

pub fn lines(sections: &[Section]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut index = 0;
    for (s, section) in sections.iter().enumerate() {
        lines.push(Line::Title(s));
        if section.rows.is_empty() {
            lines.push(Line::Empty(s));
        }
        for _ in &section.rows {
            lines.push(Line::Row(index));
            index += 1;
        }
    }
    lines
}

/// The first line shown: the selected row stays visible, with as much above
/// it as fits. Stateless, so `update` and `draw` always agree.
pub fn scroll_offset(lines: &[Line], selected: usize, height: usize) -> usize {
    let at = lines.iter().position(|l| *l == Line::Row(selected)).unwrap_or(0);
    at.saturating_sub(height.saturating_sub(1))
}

/// The target of the selected row of a list screen.
pub fn selected_target(state: &AppState, screen: Screen) -> Target {
    let sections = sections(state, screen);
    let rows = flat(&sections);
    let cursor = state.cursor(screen);
    rows.get(cursor.selected).map(|(_, r)| r.target.clone()).unwrap_or(Target::None)
}

/// Tasks a list screen holds, for opening forms without another query.
pub fn task_in_lists<'a>(state: &'a AppState, key: &str) -> Option<&'a Task> {
    let from_inbox = state.inbox.as_ref().and_then(|i| i.tasks.iter().find(|t| t.key == key));
    let from_today = state.today.as_ref().and_then(|t| t.iter().find(|t| t.key == key));
    let from_review = state.delivery.as_ref().and_then(|d| d.review.iter().find(|t| t.key == key));
    let from_risks = state.risks.as_ref().and_then(|r| {
        r.iter().find_map(|risk| match risk {
            Risk::StaleTask { task } if task.key == key => Some(task),
            _ => None,
        })
    });
    from_inbox.or(from_today).or(from_review).or(from_risks)
}

/// The agents the assign picker offers for a query, best match first; the
/// last entry (`None`) unassigns.
pub fn picker_items(state: &AppState, query: &str) -> Vec<(Option<String>, String)> {
    let mut scored: Vec<(i64, &crate::store::agents::AgentLoad)> = state
        .agents
        .iter()
        .filter_map(|a| {
            let haystack = format!("{} {}", a.agent.handle, a.agent.display_name);
            fuzzy_score(query, &haystack).map(|score| (score, a))
        })
        .collect();
    scored.sort_by_key(|(score, a)| (std::cmp::Reverse(*score), a.agent.handle.clone()));
    let mut items: Vec<(Option<String>, String)> = scored
        .into_iter()
        .map(|(_, a)| {
            (
                Some(a.agent.handle.clone()),
                // Clipped and padded by display width, so the load column lines up.
                format!(
                    "{} {} {}/{}",
                    super::panes::pad(&format!("@{}", a.agent.handle), 13),
                    super::panes::pad(&a.agent.display_name, 24),
                    a.in_progress,
                    a.agent.capacity
                ),
            )
        })
        .collect();
    if query.is_empty() || "nobody".contains(&query.to_lowercase()) {
        items.push((None, "nobody (unassign)".to_string()));
    }
    items
}

/// Subsequence match: every character of `query` appears in order. Higher is
/// better: consecutive runs and an early start score more. `None`: no match.
pub fn fuzzy_score(query: &str, haystack: &str) -> Option<i64> {
    let query = query.trim().to_lowercase();
    if query.is_empty() {
        return Some(0);
    }
    let haystack: Vec<char> = haystack.to_lowercase().chars().collect();
    let mut score = 0i64;
    let mut position = 0usize;
    let mut previous: Option<usize> = None;
    for wanted in query.chars() {
        let found = haystack[position..].iter().position(|c| *c == wanted)? + position;
        score += if previous == Some(found.wrapping_sub(1)) { 8 } else { 1 };
        if found == 0 {
            score += 4;
        }
        previous = Some(found);
        position = found + 1;
    }
    Some(score - position as i64 / 4)
}

/// The help palette: commands reachable where the operator is, with their
/// keys, narrowed by what was typed.
pub fn help_items(state: &AppState, query: &str) -> Vec<(super::keymap::Command, String)> {
    let context = match (state.focus, state.screen) {
        (super::state::Focus::Drawer, _) if state.drawer.open => super::keymap::Context::Drawer,
        (_, Screen::Work) => super::keymap::Context::Board,
        (_, Screen::Recovery) => super::keymap::Context::Recovery,
        _ => super::keymap::Context::List,
    };
    let query = query.trim().to_lowercase();
    state
        .keymap
        .entries(context)
        .into_iter()
        .filter(|(command, keys)| {
            query.is_empty()
                || command.name().contains(&query)
                || command.help().contains(&query)
                || keys.iter().any(|k| k.to_string() == query)
        })
        .map(|(command, keys)| (command, keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(" ")))
        .collect()
}

/// One line of a snapshot diff view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffLine {
    pub text: String,
    pub tone: Tone,
    /// Set on task lines: what marking the line selects for a partial restore.
    pub task_key: Option<String>,
}

/// A snapshot's differences from now, grouped by kind. `+` rows exist now but
/// not in the snapshot (a restore sets them aside); `-` rows the snapshot has
/// and a restore brings back; `~` rows a restore puts back as they were.
pub fn diff_lines(diff: &crate::snapshot::diff::Diff) -> Vec<DiffLine> {
    let line = |text: String, tone: Tone, task_key: Option<String>| DiffLine { text, tone, task_key };
    let mut lines = Vec::new();
    if diff.is_empty() {
        lines.push(line("No differences: the project is as the snapshot has it.".into(), Tone::Ok, None));
        return lines;
    }
    if !diff.project.is_empty() {
        lines.push(line(format!("project: {}", diff.project.join(", ")), Tone::Accent, None));
    }
    for kind in &diff.kinds {
        let tasks = kind.kind == "tasks";
        lines.push(line(
            format!(
                "{} — {} new since, {} gone since, {} changed",
                kind.kind,
                kind.added.len(),
                kind.removed.len(),
                kind.changed.len()
            ),
            Tone::Accent,
            None,
        ));
        for c in &kind.changed {
            lines.push(line(
                format!("  ~ {}  {}", c.key, c.fields.join(", ")),
                Tone::Warn,
                tasks.then(|| c.key.clone()),
            ));
        }
        for (_, key) in &kind.removed {
            lines.push(line(
                format!("  - {key}  (gone; a restore brings it back)"),
                Tone::Danger,
                tasks.then(|| key.clone()),
            ));
        }
        for (_, key) in &kind.added {
            lines.push(line(format!("  + {key}  (new since; a restore sets it aside)"), Tone::Muted, None));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::{age, ago};

    #[test]
    fn times_ahead_of_the_clock_read_in_not_ago() {
        let now = datetime!(2026-11-28 12:00 UTC);
        assert_eq!(ago(now, datetime!(2026-11-28 11:55 UTC)), "5m ago");
        assert_eq!(ago(now, datetime!(2026-11-28 15:00 UTC)), "in 3h");
        assert_eq!(age(now, datetime!(2026-11-26 12:00 UTC)), "2d");
    }
}
