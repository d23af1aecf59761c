//! The closed vocabularies of the domain. Each is stored as text in PostgreSQL
//! (with a CHECK constraint listing the same values) and spelled the same way
//! in the CLI, JSON output and the audit log.

use super::InvalidInput;

/// Defines a string-backed enum with `as_str`, `ALL`, `Display`, `FromStr`
/// (case-insensitive, with an error that lists the allowed values) and serde.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored form; anything else is a corrupt row, reported as such.
            pub fn from_db(value: &str) -> Result<Self, InvalidInput> {
                value.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidInput;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                let wanted = value.trim().to_ascii_lowercase().replace('_', "-");
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().replace('_', "-") == wanted)
                    .ok_or_else(|| {
                        let allowed: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        InvalidInput(format!(
                            "invalid {} {:?}: use one of {}",
                            $what,
                            crate::domain::text::clip(value, 40),
                            allowed.join(", ")
                        ))
                    })
            }
        }
    };
}

string_enum!(
    /// Task priority, the same five values Plane uses.
    Priority, "priority" {
        Urgent => "urgent",
        High => "high",
        Medium => "medium",
        Low => "low",
        None => "none",
    }
);

impl Priority {
    /// Sort weight: urgent first.
    pub fn weight(self) -> u8 {
        match self {
            Priority::Urgent => 0,
            Priority::High => 1,
            Priority::Medium => 2,
            Priority::Low => 3,
            Priority::None => 4,
        }
    }
}

string_enum!(
    /// What a lane means for the work in it. Also how lanes map to Plane state
    /// groups and to open/closed issues in repo providers.
    LaneCategory, "lane category" {
        Backlog => "backlog",
        Unstarted => "unstarted",
        Started => "started",
        Completed => "completed",
        Cancelled => "cancelled",
    }
);

impl LaneCategory {
    /// Work in these lanes is finished, one way or another.
    pub fn is_closed(self) -> bool {
        matches!(self, LaneCategory::Completed | LaneCategory::Cancelled)
    }
}

string_enum!(
    /// A lane's special purpose beyond its category.
    LaneRole, "lane role" {
        Normal => "normal",
        Review => "review",
        Blocked => "blocked",
    }
);

string_enum!(
    AgentKind, "agent kind" {
        Human => "human",
        Ai => "ai",
        Service => "service",
    }
);

string_enum!(
    AgentStatus, "agent status" {
        Available => "available",
        Busy => "busy",
        Away => "away",
        Offline => "offline",
    }
);

string_enum!(
    HandoffKind, "handoff kind" {
        Transfer => "transfer",
        Blocked => "blocked",
    }
);

string_enum!(
    /// `open → accepted | rejected → resolved`, or `cancelled` from any live state.
    HandoffState, "handoff state" {
        Open => "open",
        Accepted => "accepted",
        Rejected => "rejected",
        Resolved => "resolved",
        Cancelled => "cancelled",
    }
);

impl HandoffState {
    /// Still needs someone's attention.
    pub fn is_active(self) -> bool {
        matches!(self, HandoffState::Open | HandoffState::Accepted)
    }

    pub fn can_become(self, next: HandoffState) -> bool {
        use HandoffState::*;
        matches!(
            (self, next),
            (Open, Accepted)
                | (Open, Rejected)
                | (Open, Cancelled)
                | (Accepted, Resolved)
                | (Accepted, Cancelled)
                | (Rejected, Resolved)
        )
    }
}

string_enum!(
    ModuleStatus, "module status" {
        Backlog => "backlog",
        Planned => "planned",
        InProgress => "in-progress",
        Paused => "paused",
        Completed => "completed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    EnvironmentKind, "environment kind" {
        Production => "production",
        Staging => "staging",
        Development => "development",
        Preview => "preview",
        Other => "other",
    }
);

string_enum!(
    PipelineStatus, "pipeline status" {
        Queued => "queued",
        Running => "running",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
        Skipped => "skipped",
    }
);

string_enum!(
    DeploymentStatus, "deployment status" {
        Pending => "pending",
        InProgress => "in_progress",
        Success => "success",
        Failed => "failed",
        Cancelled => "cancelled",
        Inactive => "inactive",
    }
);

string_enum!(
    ReleaseStatus, "release status" {
        Planned => "planned",
        Draft => "draft",
        Released => "released",
        Cancelled => "cancelled",
    }
);

string_enum!(
    Provider, "provider" {
        Plane => "plane",
        Github => "github",
        Gitea => "gitea",
        Gitlab => "gitlab",
        N8n => "n8n",
    }
);

string_enum!(
    /// Where a change came from, recorded on every audit entry.
    Source, "source" {
        Console => "console",
        Cli => "cli",
        Sync => "sync",
        Recovery => "recovery",
        Agent => "agent",
        // Commands from n8n workflows (`POST /automation/{connection}`).
        Automation => "automation",
    }
);

string_enum!(
    SyncState, "sync state" {
        InSync => "in_sync",
        Pending => "pending",
        Conflict => "conflict",
        Error => "error",
        // The remote copy was deleted; the mapping stays so the object is not pushed again as new.
        Deleted => "deleted",
    }
);

string_enum!(
    /// The kinds of local object an external mapping can point at.
    LocalKind, "object kind" {
        Task => "task",
        Lane => "lane",
        Agent => "agent",
        Cycle => "cycle",
        Module => "module",
        Page => "page",
        Environment => "environment",
        Pipeline => "pipeline",
        Deployment => "deployment",
        Release => "release",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_lists_choices_on_error() {
        assert_eq!("HIGH".parse::<Priority>().unwrap(), Priority::High);
        assert_eq!(" in_progress ".parse::<ModuleStatus>().unwrap(), ModuleStatus::InProgress);
        assert_eq!("in-progress".parse::<DeploymentStatus>().unwrap(), DeploymentStatus::InProgress);
        let err = "critical".parse::<Priority>().unwrap_err();
        assert!(err.0.contains("urgent, high, medium, low, none"), "{err}");
    }

    #[test]
    fn handoff_state_machine() {
        use HandoffState::*;
        assert!(Open.can_become(Accepted));
        assert!(Accepted.can_become(Resolved));
        assert!(Rejected.can_become(Resolved));
        assert!(!Resolved.can_become(Open));
        assert!(!Cancelled.can_become(Accepted));
        assert!(!Open.can_become(Resolved));
    }
}
