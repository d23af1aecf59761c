//! Snapshots: consistent captures of one project's state, stored in
//! PostgreSQL; verify, diff, export/import and restore.

pub mod capture;
pub mod diff;
pub mod export;
pub mod format;
pub mod model;
pub mod restore;
pub mod retention;
pub mod storage;

pub use model::{FORMAT_VERSION, SnapshotData};
pub use restore::{RestoreOptions, RestoreReport};
pub use storage::Reason;
