//! Bulk writes for a restore through `COPY … FROM STDIN` (text format): far
//! less work for the server than binding 100,000 rows as one JSON parameter,
//! and the restore's time is spent in the server.

use crate::store::sql::Sql;
use deadpool_postgres::Transaction;
use futures_util::SinkExt;
use serde_json::Value;

use crate::store::{Actor, StoreResult};

/// Rows are sent in pieces of about this many bytes.
const CHUNK_BYTES: usize = 1 << 20;

/// Streams text-format COPY lines into `target` (`table (columns)`).
pub(super) async fn copy_lines(tx: &Transaction<'_>, target: &str, lines: &[String]) -> StoreResult<u64> {
    let sink = tx.copy_in::<_, std::io::Cursor<Vec<u8>>>(&format!("COPY {target} FROM STDIN")).await?;
    futures_util::pin_mut!(sink);
    let mut chunk = Vec::with_capacity(CHUNK_BYTES);
    for line in lines {
        chunk.extend_from_slice(line.as_bytes());
        if chunk.len() >= CHUNK_BYTES {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_BYTES));
            sink.send(std::io::Cursor::new(full)).await?;
        }
    }
    if !chunk.is_empty() {
        sink.send(std::io::Cursor::new(chunk)).await?;
    }
    Ok(sink.finish().await?)
}

/// A line of tab-separated fields, ended by a newline.
#[derive(Default)]
pub(super) struct Line(String);

impl Line {
    pub fn text(&mut self, text: &str) -> &mut Self {
        self.separate();
        escape_into(&mut self.0, text);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.separate();
        self.0.push_str("\\N");
        self
    }

    pub fn optional(&mut self, text: Option<&str>) -> &mut Self {
        match text {
            Some(text) => self.text(text),
            None => self.null(),
        }
    }

    /// A JSON value bound for a column: `json` says the column is jsonb (so
    /// an array is JSON text), otherwise arrays become PostgreSQL arrays.
    pub fn value(&mut self, value: &Value, json: bool) -> &mut Self {
        match value {
            Value::Null => self.null(),
            Value::Bool(b) => self.text(if *b { "t" } else { "f" }),
            Value::Number(n) => self.text(&n.to_string()),
            Value::String(s) if !json => self.text(s),
            Value::Array(items) if !json => self.text(&pg_array(items)),
            other => self.text(&other.to_string()),
        }
    }

    pub fn finish(mut self) -> String {
        self.0.push('\n');
        self.0
    }

    fn separate(&mut self) {
        if !self.0.is_empty() {
            self.0.push('\t');
        }
    }
}

/// COPY text format: backslash, tab, newline and carriage return are escaped.
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// A one-dimensional array literal, every element quoted.
fn pg_array(items: &[Value]) -> String {
    let mut out = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => out.push_str("NULL"),
            Value::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out.push('}');
    out
}

/// Audit entries collected during a restore and written with one COPY.
pub(super) struct AuditBatch {
    lines: Vec<String>,
    /// The fields every entry shares, already encoded.
    common_head: String,
    common_tail: String,
}

impl AuditBatch {
    pub fn new(project_id: i64, actor: &Actor) -> AuditBatch {
        let mut head = Line::default();
        head.text(&project_id.to_string()).text(&actor.name).text(actor.source.as_str());
        let mut tail = Line::default();
        tail.text(&actor.correlation_id.to_string()).optional(actor.reason.as_deref());
        AuditBatch { lines: Vec::new(), common_head: head.0, common_tail: tail.0 }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// An empty batch for the same project and actor, to fill elsewhere.
    pub fn fork(&self) -> AuditBatch {
        AuditBatch { lines: Vec::new(), common_head: self.common_head.clone(), common_tail: self.common_tail.clone() }
    }

    pub fn append(&mut self, other: AuditBatch) {
        self.lines.extend(other.lines);
    }

    pub fn push(
        &mut self,
        kind: &str,
        action: &str,
        id: Option<i64>,
        key: &str,
        before: Option<&Value>,
        after: Option<&Value>,
    ) {
        let mut line = Line(self.common_head.clone());
        line.text(action).text(kind);
        match id {
            Some(id) => line.text(&id.to_string()),
            None => line.null(),
        };
        line.text(key);
        for value in [before, after] {
            match value {
                Some(value) => line.text(&value.to_string()),
                None => line.null(),
            };
        }
        line.separate();
        line.0.push_str(&self.common_tail);
        self.lines.push(line.finish());
    }

    /// Inserts every entry; returns the last id.
    pub async fn write(self, tx: &Transaction<'_>) -> StoreResult<i64> {
        copy_lines(
            tx,
            "audit_entry (project_id, actor, source, action, entity_kind, entity_id, entity_key, before, after, correlation_id, reason)",
            &self.lines,
        )
        .await?;
        // The ids came from this session's calls to the sequence, the last one last.
        let row = tx.fetch_one("SELECT currval(pg_get_serial_sequence('audit_entry', 'id'))", &[]).await?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_copy() {
        let mut line = Line::default();
        line.text("a\tb\nc\\d\re").null().value(&Value::Bool(true), false);
        assert_eq!(line.finish(), "a\\tb\\nc\\\\d\\re\t\\N\tt\n");
    }

    #[test]
    fn arrays_become_postgres_arrays_unless_the_column_is_jsonb() {
        let labels = serde_json::json!(["plain", "with \"quote\"", "back\\slash", "comma,brace}"]);
        let mut line = Line::default();
        line.value(&labels, false);
        assert_eq!(line.finish(), "{\"plain\",\"with \\\\\"quote\\\\\"\",\"back\\\\\\\\slash\",\"comma,brace}\"}\n");
        let mut line = Line::default();
        line.value(&serde_json::json!([1, "x"]), true);
        assert_eq!(line.finish(), "[1,\"x\"]\n");
    }
}
