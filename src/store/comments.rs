//! Comments on tasks. A comment changes nothing on the task: it is an entry
//! in the audit log (`task.comment`), so it shows in the task's history next
//! to the changes it talks about, and is as append-only as they are.

use serde_json::json;

use super::audit::{self, Change};
use super::{Actor, Store, StoreResult};
use crate::domain::text;

/// The longest comment accepted.
pub const MAX_COMMENT_CHARS: usize = 10_000;

impl Store {
    /// Adds a comment to a task's history; returns the audit entry id.
    pub async fn comment_task(&self, actor: &Actor, key: &str, comment: &str) -> StoreResult<i64> {
        self.refuse_if_read_only()?;
        let comment = text::long_text("comment", comment.trim(), MAX_COMMENT_CHARS)?;
        if comment.is_empty() {
            return Err(super::StoreError::invalid("the comment is empty: say something"));
        }
        let task = self.task_by_key(key).await?;
        let client = self.client().await?;
        let change = Change {
            after: Some(json!({ "comment": comment, "version": task.version })),
            ..Change::new("task", "comment", Some(task.project_id)).entity(task.id, &task.key)
        };
        audit::record(&client, actor, change).await
    }
}
