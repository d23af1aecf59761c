//! `mctl snapshot create|list|show|verify|export|import|diff|restore|prune|auto`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration as StdDuration;

use clap::Subcommand;
use time::OffsetDateTime;

use super::Context;
use super::output::{self, Table};
use super::parse;
use crate::error::{Error, Result};
use crate::snapshot::diff::{self, Diff};
use crate::snapshot::retention::{self, Retention};
use crate::snapshot::{Reason, RestoreOptions, RestoreReport};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Capture the project now.
    Create {
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The project's snapshots, newest first.
    List,
    /// One snapshot's details.
    Show { id: i64 },
    /// Recompute the checksum: a corrupted snapshot is reported, never restored.
    Verify { id: i64 },
    /// Write a snapshot to a self-describing file (gzip; see docs/recovery.md).
    Export {
        id: i64,
        #[arg(long, value_name = "FILE")]
        out: String,
    },
    /// Read an export file into this database, checked before anything is written.
    Import { file: String },
    /// What changed between a snapshot and now (or another snapshot).
    Diff {
        id: i64,
        /// Another snapshot id, or `current` (the default).
        against: Option<String>,
        /// Rows listed per kind (the counts are always complete).
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Put the project back as the snapshot has it, in one transaction.
    Restore {
        id: i64,
        /// Show what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Restore only these tasks (comma-separated keys).
        #[arg(long, value_delimiter = ',', value_name = "KEY,KEY")]
        only: Vec<String>,
        /// Restore only these kinds (comma-separated: project, lanes, tasks, handoffs, pages…).
        #[arg(long, value_delimiter = ',', value_name = "KIND,KIND")]
        kinds: Vec<String>,
        /// Delete what was created after the snapshot instead of archiving it.
        #[arg(long)]
        exact: bool,
        /// Do not ask for the project key (for scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Delete snapshots the retention policy no longer keeps.
    Prune {
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
        /// Keep the newest snapshot of each of the last H hours.
        #[arg(long, default_value_t = 24)]
        hourly: i64,
        /// Keep the newest snapshot of each of the last D days.
        #[arg(long, default_value_t = 30)]
        daily: i64,
        #[arg(long)]
        dry_run: bool,
    },
    /// Take scheduled snapshots (and prune) until stopped.
    Auto {
        /// Interval between snapshots, like 30m, 1h or 1d.
        #[arg(long, default_value = "1h", value_parser = parse::duration)]
        every: time::Duration,
        /// Every project, not just the selected one.
        #[arg(long)]
        all_projects: bool,
    },
}

pub async fn run(ctx: &Context, command: SnapshotCommand) -> Result<()> {
    let store = ctx.store().await?;
    let actor = ctx.actor();
    match command {
        SnapshotCommand::Create { label } => {
            let project = ctx.project(&store).await?;
            let snapshot = store.create_snapshot(&actor, project.id, &label, Reason::Manual).await?;
            if ctx.json {
                return output::json(&snapshot);
            }
            output::line(format!(
                "snapshot #{} of {}: {} tasks, {} KB, sha256 {}",
                snapshot.id,
                project.key,
                snapshot.counts["tasks"],
                snapshot.size_bytes / 1024,
                &snapshot.checksum[..12]
            ));
        }
        SnapshotCommand::List => {
            let project = ctx.project(&store).await?;
            let snapshots = store.list_snapshots(project.id).await?;
            if ctx.json {
                return output::json(&snapshots);
            }
            let now = OffsetDateTime::now_utc();
            let mut table = Table::new(&["ID", "AGE", "BY", "REASON", "TASKS", "SIZE", "LABEL"]);
            for s in &snapshots {
                table.row([
                    format!("#{}", s.id),
                    super::delivery::age(now, s.created_at),
                    s.created_by.clone(),
                    s.reason.clone(),
                    s.counts["tasks"].to_string(),
                    format!("{} KB", s.size_bytes / 1024),
                    s.label.clone(),
                ]);
            }
            table.print();
        }
        SnapshotCommand::Show { id } => {
            let s = store.snapshot_meta(id).await?;
            if ctx.json {
                return output::json(&s);
            }
            output::line(format!("snapshot #{} of project {} ({})", s.id, s.project_id, s.reason));
            output::line(format!(
                "taken {} by {}",
                super::audit::short_time(s.created_at),
                output::cell(&s.created_by, 40)
            ));
            if !s.label.is_empty() {
                output::line(format!("label: {}", output::cell(&s.label, 200)));
            }
            output::line(format!("format {}, {} bytes, sha256 {}", s.format_version, s.size_bytes, s.checksum));
            output::line(format!("counts: {}", s.counts));
        }
        SnapshotCommand::Verify { id } => {
            let report = store.verify_snapshot(id).await?;
            if ctx.json {
                output::json(&report)?;
            } else if report.ok {
                output::line(format!("snapshot #{id} is intact (sha256 {})", report.checksum));
            }
            if let Some(problem) = report.problem {
                return Err(Error::Database(problem));
            }
        }
        SnapshotCommand::Export { id, out } => {
            let bytes = store.export_snapshot(id).await?;
            write_file(&out, &bytes)?;
            if ctx.json {
                return output::json(&serde_json::json!({"snapshot": id, "file": out, "bytes": bytes.len()}));
            }
            output::line(format!("wrote snapshot #{id} to {out} ({} KB)", bytes.len() / 1024));
        }
        SnapshotCommand::Import { file } => {
            let bytes = std::fs::read(&file).map_err(|e| Error::Usage(format!("cannot read {file}: {e}")))?;
            let snapshot = store.import_snapshot(&actor, bytes).await?;
            if ctx.json {
                return output::json(&snapshot);
            }
            output::line(format!(
                "imported as snapshot #{}: restore it with `mctl snapshot restore {}`",
                snapshot.id, snapshot.id
            ));
        }
        SnapshotCommand::Diff { id, against, limit } => {
            let (meta, from) = store.load_snapshot(id).await?;
            let to = match against.as_deref() {
                None | Some("current") | Some("now") => store.capture(meta.project_id).await?,
                Some(other) => {
                    let other: i64 = other
                        .trim_start_matches('#')
                        .parse()
                        .map_err(|_| Error::usage(format!("compare with a snapshot id or `current`, not {other:?}")))?;
                    let (other_meta, data) = store.load_snapshot(other).await?;
                    if other_meta.project_id != meta.project_id {
                        return Err(Error::usage("those snapshots belong to different projects"));
                    }
                    data
                }
            };
            let changes = diff::diff(&from, &to);
            if ctx.json {
                return output::json(&changes);
            }
            print_diff(&changes, limit);
        }
        SnapshotCommand::Restore { id, dry_run, only, kinds, exact, yes } => {
            let options = RestoreOptions { dry_run: true, only: only.clone(), kinds: kinds.clone(), exact };
            let preview = store.restore_snapshot(&actor, id, &options, &|_| {}).await?;
            if dry_run {
                if ctx.json {
                    return output::json(&preview);
                }
                print_restore(&preview);
                return Ok(());
            }
            if preview.is_noop() {
                output::line(format!("{} already matches snapshot #{id}: nothing to restore", preview.project));
                return Ok(());
            }
            if !yes {
                confirm(&preview)?;
            }
            let options = RestoreOptions { dry_run: false, ..options };
            let show_progress = !ctx.json && std::io::stderr().is_terminal();
            let report = store
                .restore_snapshot(&actor, id, &options, &move |step| {
                    if show_progress {
                        eprintln!("… {step}");
                    }
                })
                .await?;
            if ctx.json {
                return output::json(&report);
            }
            print_restore(&report);
        }
        SnapshotCommand::Prune { keep_last, hourly, daily, dry_run } => {
            let project = ctx.project(&store).await?;
            let policy = Retention { keep_last, hourly, daily };
            let ids = prune(&store, &actor, project.id, policy, dry_run).await?;
            if ctx.json {
                return output::json(&serde_json::json!({"pruned": ids, "dry_run": dry_run}));
            }
            let verb = if dry_run { "would prune" } else { "pruned" };
            output::line(format!("{verb} {} snapshot(s) of {}", ids.len(), project.key));
        }
        SnapshotCommand::Auto { every, all_projects } => {
            let interval = StdDuration::from_secs(every.whole_seconds().max(60) as u64);
            output::line(format!("taking a snapshot every {}s; stop with ctrl+c", interval.as_secs()));
            loop {
                let projects =
                    if all_projects { store.list_projects(false).await? } else { vec![ctx.project(&store).await?] };
                for project in projects {
                    match store
                        .create_snapshot(&actor.next_operation(), project.id, "scheduled", Reason::Scheduled)
                        .await
                    {
                        Ok(s) => {
                            let pruned = prune(&store, &actor, project.id, Retention::default(), false).await?;
                            output::line(format!(
                                "{} snapshot #{} of {} ({} tasks); pruned {}",
                                super::audit::short_time(s.created_at),
                                s.id,
                                project.key,
                                s.counts["tasks"],
                                pruned.len()
                            ));
                        }
                        // Keep going: the next round may find the database back.
                        Err(e) => eprintln!("snapshot of {} failed: {e}", project.key),
                    }
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
    Ok(())
}

async fn prune(
    store: &Store,
    actor: &crate::store::Actor,
    project_id: i64,
    policy: Retention,
    dry_run: bool,
) -> Result<Vec<i64>> {
    let snapshots = store.list_snapshots(project_id).await?;
    let ids = retention::to_prune(&snapshots, OffsetDateTime::now_utc(), policy);
    if !dry_run {
        store.delete_snapshots(actor, project_id, &ids).await?;
    }
    Ok(ids)
}

fn write_file(path: &str, bytes: &[u8]) -> Result<()> {
    // Write beside, then rename: a failed export never leaves half a file.
    let temp = format!("{path}.partial");
    let result = std::fs::File::create(&temp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match result.and_then(|_| std::fs::rename(&temp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&temp);
            Err(Error::Io(format!("cannot write {path}: {e}")))
        }
    }
}

/// Asks for the project key before a restore; refuses without a terminal.
fn confirm(preview: &RestoreReport) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::usage("a restore needs confirmation: run it in a terminal or pass --yes"));
    }
    print_restore(preview);
    eprint!("Type the project key ({}) to restore: ", preview.project);
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).map_err(|e| Error::Io(e.to_string()))?;
    if answer.trim() != preview.project {
        return Err(Error::usage("the key did not match: nothing was restored"));
    }
    Ok(())
}

fn print_restore(report: &RestoreReport) {
    let verb = if report.dry_run { "would restore" } else { "restored" };
    output::line(format!("{verb} {} from snapshot #{}", report.project, report.snapshot_id));
    if !report.project_fields.is_empty() {
        output::line(format!("  project: {}", report.project_fields.join(", ")));
    }
    let mut table = Table::new(&["KIND", "RESTORED", "RE-CREATED", "SET ASIDE", "RENAMED", "DELETED"]);
    for (kind, c) in &report.kinds {
        if c.restored + c.created + c.set_aside + c.renamed + c.deleted > 0 {
            table.row([
                kind.clone(),
                c.restored.to_string(),
                c.created.to_string(),
                c.set_aside.to_string(),
                c.renamed.to_string(),
                c.deleted.to_string(),
            ]);
        }
    }
    table.print();
    for rename in &report.renames {
        let verb = if report.dry_run { "would be renamed" } else { "renamed" };
        output::line(format!("  {} {:?} made since the snapshot: {verb} {:?}", rename.kind, rename.from, rename.to));
    }
    if !report.dry_run {
        output::line(format!("mappings flagged for the sync worker: {}", report.flagged_mappings));
        if let Some(pre) = report.pre_restore_snapshot {
            output::line(format!(
                "the state before the restore is snapshot #{pre} (undo: mctl snapshot restore {pre})"
            ));
        }
        output::line(format!("audit: mctl audit list --correlation {}", report.correlation_id));
    }
}

fn print_diff(changes: &Diff, limit: usize) {
    if changes.is_empty() {
        output::line("no differences");
        return;
    }
    if !changes.project.is_empty() {
        output::line(format!("project: {}", changes.project.join(", ")));
    }
    for kind in &changes.kinds {
        output::line(format!(
            "{}: {} added, {} removed, {} changed",
            kind.kind,
            kind.added.len(),
            kind.removed.len(),
            kind.changed.len()
        ));
        for (_, key) in kind.added.iter().take(limit) {
            output::line(format!("  + {}", output::cell(key, 60)));
        }
        for (_, key) in kind.removed.iter().take(limit) {
            output::line(format!("  - {}", output::cell(key, 60)));
        }
        for c in kind.changed.iter().take(limit) {
            output::line(format!("  ~ {}: {}", output::cell(&c.key, 40), c.fields.join(", ")));
        }
        let shown = kind.added.len().min(limit) + kind.removed.len().min(limit) + kind.changed.len().min(limit);
        let total = kind.added.len() + kind.removed.len() + kind.changed.len();
        if total > shown {
            output::line(format!("  … {} more (--limit, or --json for all)", total - shown));
        }
    }
}
