//! Commands from n8n workflows (`POST /automation/{connection}`), applied
//! through the repository like the CLI's, audited with source `automation`,
//! the connection's identity (its `agent` setting, else its key) and the
//! delivery id as the entry's reason. A command is
//! applied once per delivery: a repeat answers what the first one did.

use crate::store::sql::Sql;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::domain::{Connection, DeploymentStatus, HandoffKind, PipelineStatus, Priority, Source};
use crate::store::delivery::{DeploymentReport, PipelineReport};
use crate::store::handoffs::NewHandoff;
use crate::store::tasks::{NewTask, Position};
use crate::store::{Actor, Store, StoreError, StoreResult};

#[derive(Debug, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    CreateTask {
        title: String,
        lane: Option<String>,
        #[serde(default)]
        description: String,
        priority: Option<String>,
        assignee: Option<String>,
        #[serde(default)]
        labels: Vec<String>,
    },
    MoveTask {
        key: String,
        lane: String,
        version: Option<i32>,
    },
    OpenHandoff {
        key: String,
        to: String,
        kind: Option<String>,
        reason: String,
        #[serde(default)]
        needs: String,
        from: Option<String>,
        due_at: Option<String>,
    },
    ReportPipeline {
        provider: Option<String>,
        id: String,
        name: String,
        #[serde(rename = "ref", default)]
        git_ref: String,
        commit: Option<String>,
        status: String,
        url: Option<String>,
        started_at: Option<String>,
        finished_at: Option<String>,
    },
    ReportDeployment {
        environment: String,
        provider: Option<String>,
        id: String,
        #[serde(rename = "ref", default)]
        git_ref: String,
        commit: Option<String>,
        status: String,
        url: Option<String>,
        release: Option<String>,
        started_at: Option<String>,
        finished_at: Option<String>,
    },
}

/// A command that could not be applied: the HTTP status and one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> Refused {
    Refused { status: 400, message: message.into() }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Refused {
        let status = match &e {
            StoreError::NotFound { .. } => 404,
            StoreError::Conflict { .. } | StoreError::AlreadyExists(_) | StoreError::WrongState(_) => 409,
            StoreError::Invalid(_) => 422,
            StoreError::ReadOnly => 403,
            _ => 503,
        };
        Refused { status, message: e.to_string() }
    }
}

/// The identity commands of this connection are applied as.
pub fn identity(connection: &Connection) -> String {
    connection.config.get("agent").and_then(Value::as_str).unwrap_or(&connection.key).to_string()
}

/// Applies a verified command once per delivery key. Returns the HTTP status
/// and the answer's JSON; errors only when the database fails.
pub async fn handle(
    store: &Store,
    connection: &Connection,
    delivery: &str,
    payload: &Value,
    bytes: usize,
) -> StoreResult<(u16, Value)> {
    let name = payload.get("command").and_then(Value::as_str).map(|c| crate::domain::text::clip(c, 100).into_owned());
    let client = store.client().await?;
    let claimed = client
        .fetch_opt(
            "INSERT INTO webhook_inbox (connection_id, delivery_key, event, payload, payload_bytes)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (connection_id, delivery_key) DO NOTHING RETURNING id",
            &[&connection.id, &delivery, &name, payload, &(bytes.min(i32::MAX as usize) as i32)],
        )
        .await?;
    let Some(row) = claimed else {
        let earlier = client
            .fetch_opt(
                "SELECT result FROM webhook_inbox WHERE connection_id = $1 AND delivery_key = $2",
                &[&connection.id, &delivery],
            )
            .await?
            .and_then(|r| r.get::<_, Option<Value>>(0));
        return Ok((200, json!({ "delivery": delivery, "duplicate": true, "result": earlier })));
    };
    let inbox_id: i64 = row.get(0);
    // The delivery id on every entry the command writes: `mctl audit list --source automation` shows it.
    let actor = Actor::new(identity(connection), Source::Automation).because(format!("n8n delivery {delivery}"));
    match apply(store, connection, &actor, payload).await {
        Ok(result) => {
            client.exec("UPDATE webhook_inbox SET result = $2 WHERE id = $1", &[&inbox_id, &result]).await?;
            Ok((200, json!({ "delivery": delivery, "result": result })))
        }
        Err(refused) => {
            // Not applied: the same delivery may be sent again once fixed.
            client.exec("DELETE FROM webhook_inbox WHERE id = $1", &[&inbox_id]).await?;
            Ok((refused.status, json!({ "error": refused.message })))
        }
    }
}

fn timestamp(what: &str, raw: Option<&str>) -> Result<Option<OffsetDateTime>, Refused> {
    raw.map(|value| {
        OffsetDateTime::parse(value.trim(), &Rfc3339).map_err(|_| {
            invalid(format!(
                "invalid {what} {:?}: use an RFC 3339 time like 2026-05-01T12:00:00Z",
                crate::domain::text::clip(value, 40)
            ))
        })
    })
    .transpose()
}

fn parsed<T: std::str::FromStr<Err = crate::domain::InvalidInput>>(raw: &str) -> Result<T, Refused> {
    raw.parse().map_err(|e: crate::domain::InvalidInput| invalid(e.0))
}

/// Parses and applies one command as `actor`.
pub async fn apply(store: &Store, connection: &Connection, actor: &Actor, payload: &Value) -> Result<Value, Refused> {
    if payload.get("command").and_then(Value::as_str).is_none() {
        return Err(invalid("the body names no command: send {\"command\": \"create_task\", ...}"));
    }
    let command: Command = serde_json::from_value(payload.clone()).map_err(|e| {
        let text = e.to_string();
        invalid(format!("invalid command: {}", crate::domain::text::clip(text.trim(), 300)))
    })?;
    let project_id = connection.project_id;
    let own_task = |key: String| async move {
        let task = store.task_by_key(&key).await?;
        if task.project_id != project_id {
            return Err(Refused {
                status: 404,
                message: format!("task {} is not in this connection's project", task.key),
            });
        }
        Ok::<_, Refused>(task)
    };
    let value = match command {
        Command::CreateTask { title, lane, description, priority, assignee, labels } => {
            let priority = priority.as_deref().map(parsed::<Priority>).transpose()?;
            let task = store
                .create_task(
                    actor,
                    project_id,
                    NewTask { title, description, lane, priority, assignee, labels, ..NewTask::default() },
                )
                .await?;
            json!({ "task": task.key, "id": task.id, "lane": task.lane, "version": task.version })
        }
        Command::MoveTask { key, lane, version } => {
            let task = own_task(key).await?;
            let moved = store.move_task(actor, &task.key, Some(&lane), Position::Bottom, version).await?;
            json!({ "task": moved.key, "lane": moved.lane, "version": moved.version })
        }
        Command::OpenHandoff { key, to, kind, reason, needs, from, due_at } => {
            let task = own_task(key).await?;
            let kind = kind.as_deref().map(parsed::<HandoffKind>).transpose()?.unwrap_or(HandoffKind::Transfer);
            let due_at = timestamp("due_at", due_at.as_deref())?;
            let handoff = store
                .open_handoff(actor, NewHandoff { task_key: task.key, kind, from, to, reason, needs, due_at })
                .await?;
            json!({ "handoff": handoff.id, "task": handoff.task_key, "to": handoff.to_agent, "state": handoff.state })
        }
        Command::ReportPipeline { provider, id, name, git_ref, commit, status, url, started_at, finished_at } => {
            let report = PipelineReport {
                provider: provider.unwrap_or_else(|| "n8n".into()),
                external_id: id,
                name,
                git_ref,
                commit_sha: commit,
                status: parsed::<PipelineStatus>(&status)?,
                url,
                started_at: timestamp("started_at", started_at.as_deref())?,
                finished_at: timestamp("finished_at", finished_at.as_deref())?,
            };
            let pipeline = store.report_pipeline(actor, project_id, report).await?;
            json!({ "pipeline": pipeline.id, "external_id": pipeline.external_id, "status": pipeline.status })
        }
        Command::ReportDeployment {
            environment,
            provider,
            id,
            git_ref,
            commit,
            status,
            url,
            release,
            started_at,
            finished_at,
        } => {
            let report = DeploymentReport {
                environment,
                provider: provider.unwrap_or_else(|| "n8n".into()),
                external_id: id,
                git_ref,
                commit_sha: commit,
                status: parsed::<DeploymentStatus>(&status)?,
                url,
                release,
                started_at: timestamp("started_at", started_at.as_deref())?,
                finished_at: timestamp("finished_at", finished_at.as_deref())?,
            };
            let deployment = store.report_deployment(actor, project_id, report).await?;
            json!({ "deployment": deployment.id, "external_id": deployment.external_id, "status": deployment.status })
        }
    };
    Ok(value)
}
