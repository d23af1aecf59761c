//! Snapshot export files: a self-describing, versioned file an operator can
//! keep off the database and import elsewhere.
//!
//! Layout (the whole file gzip-compressed):
//!
//! ```text
//! {"format":"mission-control-snapshot","format_version":2,"checksum":"<sha256 hex>", … metadata …}\n
//! <the snapshot's canonical JSON, byte for byte>
//! ```
//!
//! The first line is a JSON header; everything after the first newline is the
//! payload the checksum (SHA-256, hex) covers. Import checks the format name,
//! the version, the checksum and the references inside before writing anything.

use crate::store::sql::Sql;
use std::collections::BTreeSet;
use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::format;
use super::model::{FORMAT_NAME, SnapshotData, checksum};
use super::storage::{self, Encoded, Reason};
use crate::domain::SnapshotMeta;
use crate::store::audit::{self, Change};
use crate::store::{Actor, Store, StoreError, StoreResult};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub format: String,
    pub format_version: i32,
    /// SHA-256 (hex) of the payload: the bytes after the first newline.
    pub checksum: String,
    pub project_key: String,
    pub project_name: String,
    pub snapshot_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub created_by: String,
    pub label: String,
    pub reason: String,
    pub counts: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: OffsetDateTime,
    pub layout: String,
}

const LAYOUT: &str =
    "gzip of: this JSON header line, a newline, then the snapshot's canonical JSON (the checksum covers it)";

/// Builds the export file for a stored snapshot.
pub fn export_bytes(meta: &SnapshotMeta, data: &SnapshotData) -> Result<Vec<u8>, String> {
    let canonical = data.canonical();
    let header = ExportHeader {
        format: FORMAT_NAME.to_string(),
        format_version: super::model::FORMAT_VERSION,
        checksum: checksum(&canonical),
        project_key: data.project.key.clone(),
        project_name: data.project.name.clone(),
        snapshot_id: meta.id,
        created_at: meta.created_at,
        created_by: meta.created_by.clone(),
        label: meta.label.clone(),
        reason: meta.reason.clone(),
        counts: data.counts(),
        exported_at: OffsetDateTime::now_utc(),
        layout: LAYOUT.to_string(),
    };
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    encoder.write_all(&header).map_err(|e| e.to_string())?;
    encoder.write_all(b"\n").map_err(|e| e.to_string())?;
    encoder.write_all(&canonical).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

/// Reads and checks an export file: header, version, checksum and the
/// references between rows. Writes nothing.
pub fn read_export(file: &[u8]) -> Result<(ExportHeader, Vec<u8>, SnapshotData), String> {
    let bytes = storage::decompress(file).map_err(|e| format!("not a snapshot export: {e}"))?;
    let newline = bytes.iter().position(|b| *b == b'\n').ok_or("not a snapshot export: no header line")?;
    let header: ExportHeader =
        serde_json::from_slice(&bytes[..newline]).map_err(|e| format!("not a snapshot export: bad header ({e})"))?;
    if header.format != FORMAT_NAME {
        return Err(format!("not a snapshot export: format is {:?}", header.format));
    }
    let canonical = bytes[newline + 1..].to_vec();
    let actual = checksum(&canonical);
    if actual != header.checksum {
        return Err(format!(
            "the file is corrupted: checksum mismatch (header {}, contents {actual})",
            header.checksum
        ));
    }
    let data = format::decode(header.format_version, &canonical)?;
    validate(&data)?;
    if data.project.key != header.project_key {
        return Err("the file is inconsistent: the header names another project".into());
    }
    Ok((header, canonical, data))
}

/// Every reference inside the snapshot points at a row it holds.
pub fn validate(data: &SnapshotData) -> Result<(), String> {
    crate::domain::project_key(&data.project.key).map_err(|e| e.0)?;
    let ids = |v: Vec<i64>| v.into_iter().collect::<BTreeSet<i64>>();
    let lanes = ids(data.lanes.iter().map(|r| r.id).collect());
    let agents = ids(data.agents.iter().map(|r| r.id).collect());
    let cycles = ids(data.cycles.iter().map(|r| r.id).collect());
    let modules = ids(data.modules.iter().map(|r| r.id).collect());
    let tasks = ids(data.tasks.iter().map(|r| r.id).collect());
    let environments = ids(data.environments.iter().map(|r| r.id).collect());
    let releases = ids(data.releases.iter().map(|r| r.id).collect());
    let connections = ids(data.connections.iter().map(|r| r.id).collect());
    let missing =
        |what: &str, owner: &str| Err(format!("the snapshot is inconsistent: {owner} refers to a missing {what}"));
    for t in &data.tasks {
        if !lanes.contains(&t.lane_id) {
            return missing("lane", &t.key);
        }
        if t.assignee_id.is_some_and(|a| !agents.contains(&a)) {
            return missing("agent", &t.key);
        }
        if t.cycle_id.is_some_and(|c| !cycles.contains(&c)) {
            return missing("cycle", &t.key);
        }
        if t.module_ids.iter().any(|m| !modules.contains(m)) {
            return missing("module", &t.key);
        }
        let expected = format!("{}-{}", data.project.key, t.number);
        if t.key != expected || t.number > data.project.last_task_number {
            return Err(format!("the snapshot is inconsistent: task key {} does not match its number", t.key));
        }
    }
    for h in &data.handoffs {
        if !tasks.contains(&h.task_id)
            || !agents.contains(&h.to_agent_id)
            || h.from_agent_id.is_some_and(|a| !agents.contains(&a))
        {
            return missing("task or agent", &format!("handoff #{}", h.id));
        }
    }
    for m in &data.modules {
        if m.lead_agent_id.is_some_and(|a| !agents.contains(&a)) {
            return missing("agent", &m.name);
        }
    }
    for r in &data.releases {
        if r.task_ids.iter().any(|t| !tasks.contains(t)) {
            return missing("task", &r.name);
        }
    }
    for d in &data.deployments {
        if !environments.contains(&d.environment_id) || d.release_id.is_some_and(|r| !releases.contains(&r)) {
            return missing("environment or release", &d.external_id);
        }
    }
    for m in &data.mappings {
        if !connections.contains(&m.connection_id) {
            return missing("connection", &format!("mapping #{}", m.id));
        }
    }
    Ok(())
}

impl Store {
    pub async fn export_snapshot(&self, id: i64) -> StoreResult<Vec<u8>> {
        let (meta, data) = self.load_snapshot(id).await?;
        tokio::task::spawn_blocking(move || export_bytes(&meta, &data))
            .await
            .map_err(|e| StoreError::Database(format!("export failed: {e}")))?
            .map_err(StoreError::Database)
    }

    /// Imports an export file as a stored snapshot of its project (creating
    /// an empty project shell when the database has none with that key), ready
    /// to restore. Nothing is written unless the whole file checks out.
    pub async fn import_snapshot(&self, actor: &Actor, file: Vec<u8>) -> StoreResult<SnapshotMeta> {
        self.refuse_if_read_only()?;
        let (header, canonical, data) = tokio::task::spawn_blocking(move || read_export(&file))
            .await
            .map_err(|e| StoreError::Database(format!("import failed: {e}")))?
            .map_err(StoreError::Invalid)?;
        let project = &data.project;
        match self.project_by_key(&project.key).await {
            Ok(existing) if existing.id != project.id => {
                return Err(StoreError::invalid(format!(
                    "project {} here is not the one the file was taken from (id {} here, {} in the file): import into that database or an empty one",
                    project.key, existing.id, project.id
                )));
            }
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                let mut client = self.client().await?;
                let tx = client.transaction().await?;
                tx.exec(
                    "INSERT INTO project (id, key, name, description, settings, dashboard, last_task_number, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &project.id,
                        &project.key,
                        &project.name,
                        &project.description,
                        &project.settings,
                        &project.dashboard,
                        &project.last_task_number,
                        &project.created_at,
                    ],
                )
                .await?;
                tx.exec(
                    "SELECT setval(pg_get_serial_sequence('project', 'id'),
                                   greatest((SELECT max(id) FROM project), nextval(pg_get_serial_sequence('project', 'id'))))",
                    &[],
                )
                .await?;
                let mut change = Change::new("project", "import", Some(project.id)).entity(project.id, &project.key);
                change.after = Some(
                    serde_json::json!({ "key": project.key, "name": project.name, "from_snapshot": header.snapshot_id }),
                );
                audit::record(&tx, actor, change).await?;
                tx.commit().await?;
            }
            Err(other) => return Err(other),
        }
        let encoded = tokio::task::spawn_blocking(move || {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::new(6));
            encoder.write_all(&canonical).expect("writing to memory");
            let compressed = encoder.finish().expect("writing to memory");
            Encoded { checksum: checksum(&canonical), canonical, compressed }
        })
        .await
        .map_err(|e| StoreError::Database(format!("import failed: {e}")))?;
        let label =
            format!("import of #{} from {}", header.snapshot_id, crate::domain::text::utc_time(header.created_at));
        self.store_snapshot(actor, project.id, header.format_version, &encoded, &data, &label, Reason::Import).await
    }
}
