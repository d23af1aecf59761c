//! Storing snapshots in PostgreSQL: canonical encoding, SHA-256, gzip; and
//! reading them back with the checksum verified.

use crate::store::sql::Sql;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::Serialize;

use super::format;
use super::model::{FORMAT_VERSION, SnapshotData, checksum};
use deadpool_postgres::GenericClient;

use crate::domain::SnapshotMeta;
use crate::store::audit::{self, Change};
use crate::store::{Actor, Store, StoreError, StoreResult};

/// Snapshot JSON is repetitive: the fastest level already shrinks it about
/// tenfold, and taking a snapshot quickly matters more than the last megabyte.
const GZIP_LEVEL: u32 = 1;

/// Payloads larger than this when decompressed are refused (a bomb, not a project).
const MAX_PAYLOAD: u64 = 4 << 30;

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    Manual,
    PreRestore,
    PreBulk,
    Scheduled,
    Import,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Manual => "manual",
            Reason::PreRestore => "pre-restore",
            Reason::PreBulk => "pre-bulk",
            Reason::Scheduled => "scheduled",
            Reason::Import => "import",
        }
    }
}

/// An encoded snapshot ready to store or export.
pub struct Encoded {
    pub canonical: Vec<u8>,
    pub compressed: Vec<u8>,
    pub checksum: String,
}

pub fn encode(data: &SnapshotData) -> Encoded {
    let canonical = data.canonical();
    // Hashing and compressing are independent: one on another thread.
    let (checksum, compressed) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| checksum(&canonical));
        let mut encoder = GzEncoder::new(Vec::with_capacity(canonical.len() / 6), Compression::new(GZIP_LEVEL));
        encoder.write_all(&canonical).expect("writing to memory");
        let compressed = encoder.finish().expect("writing to memory");
        match hashing.join() {
            Ok(checksum) => (checksum, compressed),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    });
    Encoded { canonical, compressed, checksum }
}

pub fn decompress(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(compressed)
        .take(MAX_PAYLOAD)
        .read_to_end(&mut out)
        .map_err(|e| format!("the payload does not decompress ({e})"))?;
    Ok(out)
}

/// Decompresses, checks the checksum, and decodes. Any mismatch is an error:
/// a corrupted snapshot is never restored.
pub fn open(version: i32, compressed: &[u8], expected_checksum: &str) -> Result<SnapshotData, String> {
    let canonical = decompress(compressed)?;
    // Hashing and decoding run side by side; a decoded payload is used only
    // once its checksum matched.
    let (actual, decoded) = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| checksum(&canonical));
        let decoded = format::decode(version, &canonical);
        (hashing.join(), decoded)
    });
    let actual = actual.map_err(|_| "the checksum could not be computed".to_string())?;
    if actual != expected_checksum {
        return Err(format!("checksum mismatch (stored {expected_checksum}, computed {actual})"));
    }
    decoded
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub snapshot_id: i64,
    pub ok: bool,
    pub checksum: String,
    pub problem: Option<String>,
}

const META_COLUMNS: &str =
    "id, project_id, format_version, created_at, created_by, label, reason, counts, size_bytes, checksum";

fn meta(row: &tokio_postgres::Row) -> StoreResult<SnapshotMeta> {
    Ok(SnapshotMeta {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        format_version: row.try_get("format_version")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        label: row.try_get("label")?,
        reason: row.try_get("reason")?,
        counts: row.try_get("counts")?,
        size_bytes: row.try_get("size_bytes")?,
        checksum: row.try_get("checksum")?,
    })
}

impl Store {
    /// Captures the project now and stores the snapshot.
    pub async fn create_snapshot(
        &self,
        actor: &Actor,
        project_id: i64,
        label: &str,
        reason: Reason,
    ) -> StoreResult<SnapshotMeta> {
        self.refuse_if_read_only()?;
        let label = crate::domain::text::long_text("label", label.trim(), 200)?;
        if label.contains(['\n', '\r']) {
            return Err(StoreError::invalid("the label must be one line"));
        }
        let data = self.capture(project_id).await?;
        // Encoding and compressing 100,000 tasks takes a moment: off the async threads.
        let (encoded, data) = tokio::task::spawn_blocking(move || (encode(&data), data))
            .await
            .map_err(|e| StoreError::Database(format!("encoding the snapshot failed: {e}")))?;
        self.store_snapshot(actor, project_id, FORMAT_VERSION, &encoded, &data, &label, reason).await
    }

    /// Stores an already encoded snapshot (also used by import).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store_snapshot(
        &self,
        actor: &Actor,
        project_id: i64,
        format_version: i32,
        encoded: &Encoded,
        data: &SnapshotData,
        label: &str,
        reason: Reason,
    ) -> StoreResult<SnapshotMeta> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let snapshot = insert_snapshot(&tx, actor, project_id, format_version, encoded, data, label, reason).await?;
        tx.commit().await?;
        Ok(snapshot)
    }

    pub async fn snapshot_meta(&self, id: i64) -> StoreResult<SnapshotMeta> {
        let client = self.client().await?;
        let row = client
            .fetch_opt(&format!("SELECT {META_COLUMNS} FROM snapshot WHERE id = $1"), &[&id])
            .await?
            .ok_or_else(|| StoreError::not_found("snapshot", format!("#{id}")))?;
        meta(&row)
    }

    /// Loads and verifies a snapshot. A corrupted one is an error, never data.
    pub async fn load_snapshot(&self, id: i64) -> StoreResult<(SnapshotMeta, SnapshotData)> {
        let client = self.client().await?;
        let (snapshot, payload) = fetch_snapshot(&client, id).await?;
        let data = open_in_background(&snapshot, payload).await?;
        Ok((snapshot, data))
    }

    pub async fn verify_snapshot(&self, id: i64) -> StoreResult<Verification> {
        let checksum = self.snapshot_meta(id).await?.checksum;
        Ok(match self.load_snapshot(id).await {
            Ok(_) => Verification { snapshot_id: id, ok: true, checksum, problem: None },
            Err(StoreError::Invalid(problem)) => {
                Verification { snapshot_id: id, ok: false, checksum, problem: Some(problem) }
            }
            Err(other) => return Err(other),
        })
    }

    /// Deletes snapshots (retention). Audited as one entry listing the ids.
    pub async fn delete_snapshots(&self, actor: &Actor, project_id: i64, ids: &[i64]) -> StoreResult<u64> {
        self.refuse_if_read_only()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let deleted =
            tx.exec("DELETE FROM snapshot WHERE project_id = $1 AND id = ANY ($2)", &[&project_id, &ids]).await?;
        let mut change = Change::new("snapshot", "prune", Some(project_id));
        change.before = Some(serde_json::json!({ "ids": ids }));
        audit::record(&tx, actor, change).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Inserts a snapshot row and its audit entry through the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_snapshot(
    client: &impl Sql,
    actor: &Actor,
    project_id: i64,
    format_version: i32,
    encoded: &Encoded,
    data: &SnapshotData,
    label: &str,
    reason: Reason,
) -> StoreResult<SnapshotMeta> {
    let row = client
        .fetch_one(
            &format!(
                "INSERT INTO snapshot (project_id, format_version, created_by, label, reason, counts, size_bytes, checksum, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {META_COLUMNS}"
            ),
            &[
                &project_id,
                &format_version,
                &actor.name,
                &label,
                &reason.as_str(),
                &data.counts(),
                &(encoded.compressed.len() as i64),
                &encoded.checksum,
                &encoded.compressed,
            ],
        )
        .await?;
    let snapshot = meta(&row)?;
    audit::record(
        client,
        actor,
        Change::new("snapshot", "create", Some(project_id))
            .entity(snapshot.id, format!("#{}", snapshot.id))
            .after(&snapshot),
    )
    .await?;
    Ok(snapshot)
}

/// A snapshot's metadata and its still compressed, unverified payload.
pub(crate) async fn fetch_snapshot(client: &impl Sql, id: i64) -> StoreResult<(SnapshotMeta, Vec<u8>)> {
    let row = client
        .fetch_opt(&format!("SELECT {META_COLUMNS}, payload FROM snapshot WHERE id = $1"), &[&id])
        .await?
        .ok_or_else(|| StoreError::not_found("snapshot", format!("#{id}")))?;
    Ok((meta(&row)?, row.try_get("payload")?))
}

/// Decompresses, verifies and decodes a fetched payload on a blocking thread
/// (it takes a moment for a large project, and can run beside other work).
pub(crate) async fn open_in_background(snapshot: &SnapshotMeta, payload: Vec<u8>) -> StoreResult<SnapshotData> {
    let (id, version, checksum) = (snapshot.id, snapshot.format_version, snapshot.checksum.clone());
    tokio::task::spawn_blocking(move || open(version, &payload, &checksum))
        .await
        .map_err(|e| StoreError::Database(format!("reading the snapshot failed: {e}")))?
        .map_err(|problem| {
            StoreError::Invalid(format!("snapshot #{id} is corrupted: {problem}; it will not be restored"))
        })
}
