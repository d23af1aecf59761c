//! The `/` filter: free text plus `@agent`, `#label`, `!priority` and task keys.

use crate::domain::{Priority, Task, TaskKey};
use crate::store::board::CardFilter;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterQuery {
    /// What the operator typed, shown back in the filter bar.
    pub raw: String,
    pub text: Option<String>,
    pub agent: Option<String>,
    pub label: Option<String>,
    pub priority: Option<Priority>,
}

impl FilterQuery {
    /// Parses a filter line. Unknown priorities are an error, so a typo does
    /// not silently match everything.
    pub fn parse(raw: &str) -> Result<FilterQuery, String> {
        let mut query = FilterQuery { raw: raw.trim().to_string(), ..Default::default() };
        let mut words = Vec::new();
        for word in raw.split_whitespace() {
            if let Some(agent) = word.strip_prefix('@') {
                query.agent = Some(agent.to_lowercase()).filter(|a| !a.is_empty());
            } else if let Some(label) = word.strip_prefix('#') {
                query.label = Some(label.to_lowercase()).filter(|l| !l.is_empty());
            } else if let Some(priority) = word.strip_prefix('!') {
                query.priority = Some(priority.parse::<Priority>().map_err(|e| e.0)?);
            } else {
                words.push(word);
            }
        }
        if !words.is_empty() {
            query.text = Some(words.join(" "));
        }
        Ok(query)
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_none() && self.agent.is_none() && self.label.is_none() && self.priority.is_none()
    }

    /// For list screens, matched in memory.
    pub fn matches(
        &self,
        key: &str,
        title: &str,
        assignee: Option<&str>,
        labels: &[String],
        priority: Priority,
    ) -> bool {
        if let Some(agent) = &self.agent
            && assignee != Some(agent.as_str())
        {
            return false;
        }
        if let Some(label) = &self.label
            && !labels.contains(label)
        {
            return false;
        }
        if let Some(wanted) = self.priority
            && wanted != priority
        {
            return false;
        }
        match &self.text {
            Some(text) => {
                let text = text.to_lowercase();
                key.to_lowercase().contains(&text) || title.to_lowercase().contains(&text)
            }
            None => true,
        }
    }

    pub fn matches_task(&self, task: &Task) -> bool {
        self.matches(&task.key, &task.title, task.assignee.as_deref(), &task.labels, task.priority)
    }

    /// Free text that matches nothing but a task key, e.g. `MC-12`.
    pub fn as_task_key(&self) -> Option<String> {
        self.text.as_deref().and_then(|t| t.parse::<TaskKey>().ok()).map(|k| k.to_string())
    }

    /// The same filter for the board query, which runs in the database.
    pub fn to_card_filter(&self) -> CardFilter {
        CardFilter {
            text: self.text.clone(),
            assignee: self.agent.clone(),
            label: self.label.clone(),
            priority: self.priority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_term() {
        let q = FilterQuery::parse("login @Ana #Bug !high").unwrap();
        assert_eq!(q.text.as_deref(), Some("login"));
        assert_eq!(q.agent.as_deref(), Some("ana"));
        assert_eq!(q.label.as_deref(), Some("bug"));
        assert_eq!(q.priority, Some(Priority::High));
        assert!(FilterQuery::parse("!critical").is_err());
        assert!(FilterQuery::parse("   ").unwrap().is_empty());
        assert_eq!(FilterQuery::parse("mc-12").unwrap().as_task_key().as_deref(), Some("MC-12"));
    }

    #[test]
    fn matching() {
        let q = FilterQuery::parse("safari @ana").unwrap();
        assert!(q.matches("MC-1", "Fix Safari login", Some("ana"), &[], Priority::High));
        assert!(!q.matches("MC-1", "Fix Safari login", Some("bo"), &[], Priority::High));
        assert!(!q.matches("MC-1", "Fix Chrome login", Some("ana"), &[], Priority::High));
        let key = FilterQuery::parse("MC-1").unwrap();
        assert!(key.matches("MC-1", "anything", None, &[], Priority::None));
    }
}
