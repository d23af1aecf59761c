//! What an agent may do through `mctl mcp`: the `[agents.HANDLE]` tables of
//! `config.toml`. Without a table an agent gets the default policy: every
//! tool, and moves into any lane except completed and cancelled ones, so an
//! agent cannot close work without a human.
//!
//! ```toml
//! [agents.triage-bot]
//! read_only = false
//! tools = ["read_board", "read_task", "claim_next_task", "move_task"]  # only these (default: all)
//! deny_tools = ["report_deployment"]                                  # never these
//! lanes = ["In Progress", "Review"]                                   # moves only into these (default: any...)
//! deny_lane_categories = ["completed", "cancelled"]                   # ...except lanes of these categories
//! ```

use serde::Deserialize;

use crate::domain::{Lane, LaneCategory};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicy {
    /// Reading tools only.
    #[serde(default)]
    pub read_only: bool,
    /// The tools the agent may call; `None` means all of them.
    pub tools: Option<Vec<String>>,
    /// Tools refused even when `tools` allows them.
    #[serde(default)]
    pub deny_tools: Vec<String>,
    /// Lane names (any case) tasks may be moved or created into; `None` means any.
    pub lanes: Option<Vec<String>>,
    /// Lane categories tasks may never be moved or created into.
    #[serde(default = "closed_categories")]
    pub deny_lane_categories: Vec<LaneCategory>,
}

fn closed_categories() -> Vec<LaneCategory> {
    vec![LaneCategory::Completed, LaneCategory::Cancelled]
}

impl Default for AgentPolicy {
    fn default() -> Self {
        AgentPolicy {
            read_only: false,
            tools: None,
            deny_tools: Vec::new(),
            lanes: None,
            deny_lane_categories: closed_categories(),
        }
    }
}

/// Whether a tool only reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl AgentPolicy {
    /// Checks a policy's tool names against the tools there are, so a typo
    /// in the config is reported instead of silently allowing or denying.
    pub fn validate(&self, handle: &str, known: &[&str]) -> Result<(), String> {
        let named = self.tools.iter().flatten().chain(&self.deny_tools);
        for tool in named {
            if !known.contains(&tool.as_str()) {
                return Err(format!(
                    "config [agents.{handle}] names an unknown tool {tool:?}: use one of {}",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// `Err(reason)` when the agent may not call `tool`.
    pub fn allows_tool(&self, tool: &str, access: Access) -> Result<(), String> {
        if self.read_only && access == Access::Write {
            return Err(format!("{tool} changes the board and this agent is read-only"));
        }
        if self.deny_tools.iter().any(|t| t == tool) {
            return Err(format!("{tool} is denied to this agent by its policy"));
        }
        if let Some(tools) = &self.tools
            && !tools.iter().any(|t| t == tool)
        {
            return Err(format!("{tool} is not among the tools this agent's policy allows"));
        }
        Ok(())
    }

    /// `Err(reason)` when the agent may not put a task into `lane`.
    pub fn allows_lane(&self, lane: &Lane) -> Result<(), String> {
        if let Some(lanes) = &self.lanes
            && !lanes.iter().any(|name| name.trim().eq_ignore_ascii_case(&lane.name))
        {
            return Err(format!("this agent's policy does not allow moving tasks into {:?}", lane.name));
        }
        if self.deny_lane_categories.contains(&lane.category) {
            return Err(format!(
                "this agent's policy does not allow moving tasks into {} lanes like {:?}: a human has to",
                lane.category, lane.name
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(name: &str, category: LaneCategory) -> Lane {
        Lane {
            id: 1,
            project_id: 1,
            name: name.into(),
            position: 1,
            wip_limit: None,
            category,
            role: crate::domain::LaneRole::Normal,
            visible: true,
            sync: true,
            open_count: 0,
        }
    }

    #[test]
    fn the_default_policy_keeps_closing_work_for_humans() {
        let policy = AgentPolicy::default();
        assert!(policy.allows_tool("move_task", Access::Write).is_ok());
        assert!(policy.allows_lane(&lane("In Progress", LaneCategory::Started)).is_ok());
        let refused = policy.allows_lane(&lane("Done", LaneCategory::Completed)).unwrap_err();
        assert!(refused.contains("a human has to"), "{refused}");
    }

    #[test]
    fn read_only_allow_and_deny_lists_are_applied_in_that_order() {
        let policy: AgentPolicy = toml::from_str(
            r#"read_only = true
               tools = ["read_board", "move_task"]
               deny_tools = ["read_board"]"#,
        )
        .unwrap();
        assert!(policy.allows_tool("move_task", Access::Write).unwrap_err().contains("read-only"));
        assert!(policy.allows_tool("read_board", Access::Read).unwrap_err().contains("denied"));
        assert!(policy.allows_tool("read_task", Access::Read).unwrap_err().contains("not among"));
    }

    #[test]
    fn lane_lists_match_names_in_any_case_and_categories_still_apply() {
        let policy: AgentPolicy = toml::from_str(r#"lanes = ["review", "Done"]"#).unwrap();
        assert!(policy.allows_lane(&lane("Review", LaneCategory::Started)).is_ok());
        assert!(policy.allows_lane(&lane("In Progress", LaneCategory::Started)).is_err());
        assert!(policy.allows_lane(&lane("Done", LaneCategory::Completed)).is_err());
        let open: AgentPolicy = toml::from_str("deny_lane_categories = []").unwrap();
        assert!(open.allows_lane(&lane("Done", LaneCategory::Completed)).is_ok());
    }

    #[test]
    fn unknown_tool_names_and_keys_are_reported() {
        let policy: AgentPolicy = toml::from_str(r#"tools = ["read_bord"]"#).unwrap();
        let error = policy.validate("bot", &["read_board", "read_task"]).unwrap_err();
        assert!(error.contains("read_bord") && error.contains("read_board"), "{error}");
        assert!(toml::from_str::<AgentPolicy>("readonly = true").is_err());
    }
}
