//! Lanes ↔ Plane states. A lane maps to the state its `lane_states` override
//! names, else to the state with its name, else to the first state of its
//! category's group. Importing a project brings Plane's workflow along: a
//! state no lane stands for becomes a lane of its own.

use super::{PlaneSync, SyncResult};
use crate::domain::{Lane, LaneCategory, LaneRole};
use crate::store::lanes::NewLane;
use crate::sync::providers::plane::State;

/// Names compare trimmed and case-insensitively ("In progress" is "In Progress").
fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Group order, for where a new lane goes.
fn group_rank(category: LaneCategory) -> u8 {
    match category {
        LaneCategory::Backlog => 0,
        LaneCategory::Unstarted => 1,
        LaneCategory::Started => 2,
        LaneCategory::Completed => 3,
        LaneCategory::Cancelled => 4,
    }
}

impl PlaneSync {
    /// The state a task in `lane` has remotely.
    pub fn state_for_lane(&self, lane_id: i64) -> Option<&State> {
        if let Some(state) = self.lane_overrides.get(&lane_id) {
            return self.states.iter().find(|s| &s.id == state);
        }
        let lane = self.lanes.iter().find(|l| l.id == lane_id)?;
        self.states
            .iter()
            .find(|s| same_name(&s.name, &lane.name) && s.group == lane.category.as_str())
            .or_else(|| self.states.iter().find(|s| s.group == lane.category.as_str()))
    }

    /// The lane a task in remote `state` belongs in.
    pub fn lane_for_state(&self, state_id: &str) -> Option<&Lane> {
        let mut candidates: Vec<&Lane> = self.lanes.iter().filter(|l| l.sync).collect();
        candidates.sort_by_key(|l| (!l.visible, l.position));
        if let Some(lane) = candidates.iter().find(|l| self.lane_overrides.get(&l.id).is_some_and(|s| s == state_id)) {
            return Some(lane);
        }
        let state = self.states.iter().find(|s| s.id == state_id)?;
        let free: Vec<&Lane> = candidates.into_iter().filter(|l| !self.lane_overrides.contains_key(&l.id)).collect();
        free.iter()
            .find(|l| same_name(&l.name, &state.name) && l.category.as_str() == state.group)
            .or_else(|| free.iter().find(|l| l.category.as_str() == state.group))
            .copied()
    }

    /// The states no lane stands for: not named by an override or by a lane
    /// of its group, and either the only state of a group with no lane, or
    /// one of several states of its group (one lane per state then); in
    /// workflow order.
    pub fn states_without_lane(&self) -> Vec<&State> {
        let mut states: Vec<&State> = self
            .states
            .iter()
            .filter(|state| {
                let Ok(category) = state.group.parse::<LaneCategory>() else { return false };
                let overridden = self.lane_overrides.values().any(|s| s == &state.id);
                let named = self.lanes.iter().any(|l| l.category == category && same_name(&l.name, &state.name));
                let group_has_lane = self.lanes.iter().any(|l| l.category == category && l.sync);
                let siblings = self.states.iter().filter(|s| s.group == state.group).count();
                !overridden && !named && (!group_has_lane || siblings > 1)
            })
            .collect();
        // In workflow order (group, then Plane's own order), as the lanes will be made.
        states.sort_by_key(|s| s.group.parse::<LaneCategory>().map_or(u8::MAX, group_rank));
        states
    }

    /// On a connection's first pass: a lane for each state no lane stands
    /// for, placed after the lanes of its group, named after the state.
    pub async fn import_states_as_lanes(&mut self) -> SyncResult<usize> {
        if self.connection.config.get("import_states").and_then(serde_json::Value::as_bool) == Some(false) {
            return Ok(0);
        }
        let wanted: Vec<(String, LaneCategory)> = self
            .states_without_lane()
            .into_iter()
            .filter_map(|s| Some((crate::domain::text::clip(s.name.trim(), 60).into_owned(), s.group.parse().ok()?)))
            .collect();
        let mut created = 0;
        for (name, category) in wanted {
            if name.is_empty() || self.lanes.iter().any(|l| same_name(&l.name, &name)) {
                continue; // a lane of another category has the name; the group fallback maps it
            }
            let position = self
                .lanes
                .iter()
                .filter(|l| group_rank(l.category) <= group_rank(category))
                .map(|l| l.position)
                .max()
                .unwrap_or(0)
                + 1;
            let lane = NewLane { name, category, role: LaneRole::Normal, position: Some(position), wip_limit: None };
            self.store.create_lane(&self.actor, self.connection.project_id, lane).await?;
            self.lanes = self.store.list_lanes(self.connection.project_id).await?;
            created += 1;
        }
        Ok(created)
    }
}
