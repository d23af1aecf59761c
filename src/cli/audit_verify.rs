//! `mctl audit verify`: the hash chain, link by link.

use serde_json::json;

use super::Context;
use super::output;
use crate::error::{Error, Result};
use crate::store::Store;

pub async fn run(ctx: &Context, store: &Store, project_id: Option<i64>) -> Result<()> {
    let reports = store.verify_audit(project_id).await?;
    let projects = store.list_projects(true).await?;
    let name = |id: Option<i64>| match id {
        Some(id) => projects.iter().find(|p| p.id == id).map_or_else(|| format!("project #{id}"), |p| p.key.clone()),
        None => "entries about no project".to_string(),
    };
    let broken = reports.iter().filter(|r| r.broken.is_some()).count();
    if ctx.json {
        let chains: Vec<_> = reports
            .iter()
            .map(|r| json!({ "chain": name(r.project_id), "entries": r.entries, "head": r.head, "broken": r.broken }))
            .collect();
        output::json(&json!({ "intact": broken == 0, "chains": chains }))?;
    } else {
        for report in &reports {
            let head = report.head.get(..16).unwrap_or(&report.head);
            match &report.broken {
                None => output::line(format!(
                    "{}: {} entries, intact (head {head})",
                    name(report.project_id),
                    report.entries
                )),
                Some(link) => output::line(format!(
                    "{}: BROKEN at link {}: {}",
                    name(report.project_id),
                    link.chain_seq,
                    link.reason
                )),
            }
        }
    }
    if broken > 0 {
        return Err(Error::Failed(format!(
            "the audit log was changed after it was written ({broken} chain(s) broken): keep a copy of the database and find out who"
        )));
    }
    Ok(())
}
