//! The sync worker: keeps tasks, cycles and modules converged with their
//! copies in external tools (Plane; GitHub, Gitea and GitLab issues, plus
//! their delivery state) through external mappings.
//!
//! Local changes queue a reconcile key in the same transaction (the outbox,
//! see `sql/V5__sync.sql`); workers claim keys from PostgreSQL with a lease,
//! read both sides now, merge field by field against the last agreed copy,
//! and write each side through its own door: the repository (source `sync`,
//! audited) or the provider's API.

pub mod check;
pub mod cursor;
pub mod markup;
pub mod merge;
pub mod n8n;
pub mod plane;
pub mod providers;
pub mod queue;
pub mod repo;
pub mod retry;
pub mod secret;
pub mod webhook;
pub mod worker;
