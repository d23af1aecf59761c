//! What MCP tools answer: compact JSON shaped for an agent to read, with the
//! versions it needs for the next write.

use serde_json::{Value, json};

use crate::domain::{AuditEntry, Handoff, Mapping, Task};
use crate::store::board::BoardLane;

/// The board: every lane with its full count, and the first tasks of each.
pub fn board(lanes: &[BoardLane]) -> Value {
    let lanes: Vec<Value> = lanes
        .iter()
        .map(|l| {
            json!({
                "lane": l.lane.name,
                "category": l.lane.category,
                "wip_limit": l.lane.wip_limit,
                "count": l.lane.open_count,
                "over_limit": l.lane.wip_limit.is_some_and(|w| l.lane.open_count > w),
                "tasks": l.cards.iter().map(|c| json!({
                    "key": c.key,
                    "title": c.title,
                    "priority": c.priority,
                    "assignee": c.assignee,
                    "labels": c.labels,
                    "due_on": c.due_on.map(|d| d.to_string()),
                    "version": c.version,
                    "open_handoffs": c.open_handoffs,
                    "sync_state": c.sync_state,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "lanes": lanes })
}

/// A task with what an agent needs to act on it.
pub fn task(task: &Task, handoffs: &[Handoff], mappings: &[Mapping], history: &[AuditEntry]) -> Value {
    json!({
        "task": task,
        "handoffs": handoffs,
        "mappings": mappings.iter().map(|m| json!({
            "connection": m.connection,
            "external_key": m.external_key,
            "url": m.url,
            "sync_state": m.sync_state,
        })).collect::<Vec<_>>(),
        "history": history.iter().map(history_entry).collect::<Vec<_>>(),
    })
}

/// One history line: who did what, which fields changed, and a comment's text.
fn history_entry(entry: &AuditEntry) -> Value {
    let mut line = json!({
        "at": crate::domain::text::utc_time(entry.at),
        "actor": entry.actor,
        "source": entry.source,
        "action": entry.action,
    });
    if let (Some(Value::Object(before)), Some(Value::Object(after))) = (&entry.before, &entry.after) {
        let changed: Vec<&String> = after
            .iter()
            .filter(|(k, v)| !matches!(k.as_str(), "version" | "updated_at") && before.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .collect();
        line["changed"] = json!(changed);
    }
    if let Some(comment) = entry.after.as_ref().and_then(|a| a.get("comment")) {
        line["comment"] = comment.clone();
    }
    if let Some(reason) = &entry.reason {
        line["reason"] = json!(reason);
    }
    line
}

/// Untrusted free text made safe to store and show: control characters
/// other than newline and tab (escape sequences, NUL, C1) and bidi
/// overrides are removed.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            c == '\n'
                || c == '\t'
                || !(c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        })
        .collect()
}

/// [`sanitize`] on every string of a JSON value, object keys included;
/// whether anything changed.
pub fn sanitize_value(value: &mut Value) -> bool {
    match value {
        Value::String(text) => {
            let clean = sanitize(text);
            let changed = clean.len() != text.len();
            if changed {
                *text = clean;
            }
            changed
        }
        Value::Array(items) => items.iter_mut().fold(false, |changed, item| sanitize_value(item) | changed),
        Value::Object(map) => {
            let mut changed = false;
            for (key, mut item) in std::mem::take(map) {
                changed |= sanitize_value(&mut item);
                let clean = sanitize(&key);
                changed |= clean.len() != key.len();
                map.insert(clean, item);
            }
            changed
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_escape_sequences_and_bidi_overrides_but_keeps_lines() {
        assert_eq!(sanitize("ok\x1b[31mred\x1b[0m\n\tnext\u{202E}lre\u{0}\u{9b}"), "ok[31mred[0m\n\tnextlre");
        assert_eq!(sanitize("plain — text"), "plain — text");
    }
}
