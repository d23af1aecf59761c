//! The sync worker: keeps tasks, cycles and modules converged with their
//! copies in external tools (Plane; GitHub, Gitea and GitLab issues, plus
//! their delivery state) through external mappings.
//!
//! Local changes queue a reconcile key in the same transaction (the outbox,
//! see `sql/V5__sync.sql`); workers claim keys from PostgreSQL with a lease,
//! read both sides now, merge field by field against the last agreed copy,
//! and write each side through its own door: the repository (source `sync`,
//! audited) or the provider's API.
//!
//! The engine is shared by every provider: [`error`] (what a failure is and
//! what the queue does with it), [`contain`] (one object's failure stays its
//! own), [`report`] (what passes and drains did), [`fields`] (remote values
//! made to fit), [`queue`], [`retry`] and [`registry`] (the running workers).
//! A provider's reconcile (`plane/`, `repo/`, `n8n/`) depends on the engine,
//! never on another provider.

pub mod check;
pub mod contain;
pub mod cursor;
pub mod error;
pub mod fields;
pub mod markup;
pub mod merge;
pub mod n8n;
pub mod plane;
pub mod providers;
pub mod queue;
pub mod registry;
pub mod repo;
pub mod report;
pub mod retry;
pub mod secret;
pub mod webhook;
pub mod worker;
