//! `mctl audit list|tail|verify`.

use std::time::Duration;

use clap::Subcommand;
use time::OffsetDateTime;

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::domain::{AuditEntry, Source};
use crate::error::{Error, Result};
use crate::store::audit::{AuditQuery, CHANGE_CHANNEL};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recent audit entries of the project, newest first.
    List {
        /// Only entries since then: RFC 3339, a date, or a span like 2h (ago).
        #[arg(long, value_parser = |s: &str| parse::when(s, -1))]
        since: Option<OffsetDateTime>,
        /// Only entries about this task key, page slug, lane name or handle.
        #[arg(long)]
        entity: Option<String>,
        /// console, cli, sync, recovery, agent or automation (n8n commands).
        #[arg(long)]
        source: Option<Source>,
        /// Only entries of one operation.
        #[arg(long)]
        correlation: Option<uuid::Uuid>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Entries of every project, and of global objects such as agents.
        #[arg(long)]
        all_projects: bool,
    },
    /// Recompute the audit log's hash chain and name the first broken link
    /// (an entry changed or removed after it was written). Exits 1 when broken.
    Verify {
        /// Every project's chain, and that of entries about no project.
        #[arg(long)]
        all_projects: bool,
    },
    /// The latest entries, oldest first; with --follow, keep printing new ones.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: i64,
        #[arg(short, long)]
        follow: bool,
    },
}

pub async fn run(ctx: &Context, command: AuditCommand) -> Result<()> {
    let store = ctx.store().await?;
    match command {
        AuditCommand::Verify { all_projects } => {
            let project_id = if all_projects { None } else { Some(ctx.project(&store).await?.id) };
            super::audit_verify::run(ctx, &store, project_id).await?;
        }
        AuditCommand::List { since, entity, source, correlation, limit, all_projects } => {
            let project_id = if all_projects { None } else { Some(ctx.project(&store).await?.id) };
            let entries = store
                .list_audit(&AuditQuery {
                    project_id,
                    since,
                    entity_key: entity.map(|e| e.trim().to_string()),
                    source,
                    correlation_id: correlation,
                    limit,
                    ..Default::default()
                })
                .await?;
            if ctx.json {
                return output::json(&entries);
            }
            print_entries(&entries);
        }
        AuditCommand::Tail { lines, follow } => {
            let project = ctx.project(&store).await?;
            let mut entries = store
                .list_audit(&AuditQuery { project_id: Some(project.id), limit: lines, ..Default::default() })
                .await?;
            entries.reverse();
            let mut last_id = entries.last().map(|e| e.id).unwrap_or(0);
            emit(ctx, &entries)?;
            if !follow {
                return Ok(());
            }
            // LISTEN on a dedicated connection; notifications only say "something
            // changed", the entries themselves are read back by id. With
            // `listen_url = poll` the two-second poll alone.
            let mut listener = if store.can_listen() { Some(store.listen(CHANGE_CHANNEL).await?) } else { None };
            loop {
                // A notification wakes us at once; the timeout is the fallback poll.
                let woke = match &mut listener {
                    Some(l) => tokio::time::timeout(Duration::from_secs(2), l.notifications.recv()).await.ok(),
                    None => {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        None
                    }
                };
                if woke == Some(None)
                    && let Some(lost) = listener.take()
                {
                    return Err(Error::Database(format!("lost the database connection: {}", lost.ended().await)));
                }
                let fresh = store
                    .list_audit(&AuditQuery {
                        project_id: Some(project.id),
                        after_id: Some(last_id),
                        limit: 500,
                        ..Default::default()
                    })
                    .await?;
                if let Some(last) = fresh.last() {
                    last_id = last.id;
                    emit(ctx, &fresh)?;
                }
            }
        }
    }
    Ok(())
}

/// Tail output: one JSON object per line with --json, else one text line each.
fn emit(ctx: &Context, entries: &[AuditEntry]) -> Result<()> {
    for entry in entries {
        if ctx.json {
            output::line(serde_json::to_string(entry).map_err(|e| Error::Io(e.to_string()))?);
        } else {
            output::line(format!(
                "{}  {:<18} {:<10} {:<14} {} ({})",
                short_time(entry.at),
                entry.action,
                output::cell(entry.entity_key.as_deref().unwrap_or("-"), 10),
                output::cell(&entry.actor, 14),
                summary(entry),
                entry.source
            ));
        }
    }
    Ok(())
}

fn print_entries(entries: &[AuditEntry]) {
    let mut table = Table::new(&["ID", "TIME", "ACTOR", "SOURCE", "ACTION", "ENTITY", "CHANGE"]);
    for e in entries {
        table.row([
            e.id.to_string(),
            short_time(e.at),
            e.actor.clone(),
            e.source.to_string(),
            e.action.clone(),
            output::or_dash(e.entity_key.as_deref()),
            summary(e),
        ]);
    }
    table.print();
}

/// What changed, then why when the entry says (an undo, an n8n delivery id).
pub fn summary(entry: &AuditEntry) -> String {
    let change = entry.summary();
    match entry.reason.as_deref() {
        Some(reason) if change.is_empty() => output::cell(&format!("({reason})"), 120),
        Some(reason) => output::cell(&format!("{change} ({reason})"), 120),
        None => output::cell(&change, 120),
    }
}

/// `2026-11-27 14:05:09` in UTC, for tables and tails.
pub fn short_time(at: OffsetDateTime) -> String {
    crate::domain::text::utc_time(at)
}
