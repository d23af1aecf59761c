//! Tamper evidence for the audit log: every entry is hashed, in the
//! database, with the previous entry of its chain (one chain per project;
//! see `sql/V16__audit_chain_and_role.sql`). Verifying recomputes each link
//! from the stored rows: an edited entry no longer matches its hash, a
//! removed one leaves a gap in `chain_seq`, and entries removed from the end
//! leave the chain's head ahead of the last entry. A superuser could rewrite
//! a whole chain from some point on; the head hash printed by `mctl audit
//! verify`, kept somewhere else, shows that too.

use crate::store::sql::Sql;
use serde::Serialize;

use super::{Store, StoreResult};

/// One chain's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChainReport {
    /// The project id; `None` for entries about no project (agents, connections).
    pub project_id: Option<i64>,
    pub entries: i64,
    /// Hex sha256 of the newest link, to keep elsewhere and compare later.
    pub head: String,
    /// The first broken link, oldest first.
    pub broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BrokenLink {
    /// The entry at which the chain stops holding (`None`: after the last entry).
    pub entry_id: Option<i64>,
    pub chain_seq: i64,
    pub reason: String,
}

impl Store {
    /// Recomputes the chains of one project, or of every project and the
    /// project-less entries when `project_id` is `None`.
    pub async fn verify_audit(&self, project_id: Option<i64>) -> StoreResult<Vec<ChainReport>> {
        let client = self.client().await?;
        let scopes: Vec<i64> = match project_id {
            Some(id) => vec![id],
            None => client
                .fetch(
                    "SELECT scope FROM audit_chain UNION SELECT DISTINCT coalesce(project_id, 0) FROM audit_entry ORDER BY 1",
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect(),
        };
        let mut reports = Vec::new();
        for scope in scopes {
            // Each link is checked against the stored hash before it, so the
            // first failing row is named even when later rows are intact.
            let first_bad = client
                .fetch_opt(
                    "SELECT id, chain_seq,
                            CASE WHEN step <> 1 THEN 'gap'
                                 ELSE 'mismatch' END
                       FROM (SELECT a.id, a.chain_seq,
                                    a.chain_seq - coalesce(lag(a.chain_seq) OVER w, 0) AS step,
                                    a.hash = audit_entry_digest(coalesce(lag(a.hash) OVER w, ''::bytea), a.chain_seq, a) AS linked
                               FROM audit_entry a WHERE coalesce(a.project_id, 0) = $1
                             WINDOW w AS (ORDER BY a.chain_seq)) links
                      WHERE step <> 1 OR NOT linked
                      ORDER BY chain_seq LIMIT 1",
                    &[&scope],
                )
                .await?;
            let tail = client
                .fetch_one(
                    "SELECT count(*), max(chain_seq), (SELECT hash FROM audit_entry WHERE coalesce(project_id, 0) = $1
                                                         ORDER BY chain_seq DESC LIMIT 1),
                            (SELECT seq FROM audit_chain WHERE scope = $1), (SELECT hash FROM audit_chain WHERE scope = $1)
                       FROM audit_entry WHERE coalesce(project_id, 0) = $1",
                    &[&scope],
                )
                .await?;
            let entries: i64 = tail.get(0);
            let last_seq: Option<i64> = tail.get(1);
            let last_hash: Option<Vec<u8>> = tail.get(2);
            let head_seq: Option<i64> = tail.get(3);
            let head_hash: Option<Vec<u8>> = tail.get(4);
            let broken = match first_bad {
                Some(row) => {
                    let (id, seq, kind): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
                    let reason = if kind == "gap" {
                        format!("the entries before #{id} in its chain are missing (removed)")
                    } else {
                        format!(
                            "entry #{id} does not match its hash: it or the entry before it was changed after it was written"
                        )
                    };
                    Some(BrokenLink { entry_id: Some(id), chain_seq: seq, reason })
                }
                None if head_seq.unwrap_or(0) != last_seq.unwrap_or(0) || head_hash != last_hash => Some(BrokenLink {
                    entry_id: None,
                    chain_seq: last_seq.unwrap_or(0) + 1,
                    reason: format!(
                        "the chain's head is at entry {} but the newest entry is {}: the newest entries were removed",
                        head_seq.unwrap_or(0),
                        last_seq.unwrap_or(0)
                    ),
                }),
                None => None,
            };
            let head = head_hash.or(last_hash).unwrap_or_default().iter().map(|b| format!("{b:02x}")).collect();
            reports.push(ChainReport { project_id: (scope != 0).then_some(scope), entries, head, broken });
        }
        Ok(reports)
    }
}
