//! Which snapshots to keep: the last N, the newest of each hour for a day, and
//! the newest of each day for a month (all three configurable). The rest are
//! pruned.

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

use crate::domain::SnapshotMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Retention {
    pub keep_last: usize,
    /// Hours back in which the newest snapshot of every hour is kept.
    pub hourly: i64,
    /// Days back in which the newest snapshot of every day is kept.
    pub daily: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep_last: 10, hourly: 24, daily: 30 }
    }
}

/// The ids to prune from `snapshots` (any order) as of `now`.
pub fn to_prune(snapshots: &[SnapshotMeta], now: OffsetDateTime, policy: Retention) -> Vec<i64> {
    let mut newest_first: Vec<&SnapshotMeta> = snapshots.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
    let mut keep: BTreeSet<i64> = newest_first.iter().take(policy.keep_last).map(|s| s.id).collect();
    let mut seen_hours = BTreeSet::new();
    let mut seen_days = BTreeSet::new();
    for s in &newest_first {
        let age = now - s.created_at;
        if age <= Duration::hours(policy.hourly) && seen_hours.insert(s.created_at.unix_timestamp().div_euclid(3600)) {
            keep.insert(s.id);
        }
        if age <= Duration::days(policy.daily) && seen_days.insert(s.created_at.date()) {
            keep.insert(s.id);
        }
    }
    newest_first.iter().filter(|s| !keep.contains(&s.id)).map(|s| s.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn snapshot(id: i64, at: OffsetDateTime) -> SnapshotMeta {
        SnapshotMeta {
            id,
            project_id: 1,
            format_version: 2,
            created_at: at,
            created_by: "x".into(),
            label: String::new(),
            reason: "scheduled".into(),
            counts: serde_json::json!({}),
            size_bytes: 0,
            checksum: String::new(),
        }
    }

    #[test]
    fn keeps_last_n_hourly_and_daily() {
        let now = datetime!(2026-11-27 12:00 UTC);
        // One every 15 minutes for 3 days: 288 snapshots.
        let all: Vec<SnapshotMeta> = (0..288).map(|i| snapshot(i, now - Duration::minutes(15 * i))).collect();
        let policy = Retention { keep_last: 5, hourly: 24, daily: 30 };
        let pruned: BTreeSet<i64> = to_prune(&all, now, policy).into_iter().collect();
        let kept: Vec<&SnapshotMeta> = all.iter().filter(|s| !pruned.contains(&s.id)).collect();
        // The five newest.
        for id in 0..5 {
            assert!(!pruned.contains(&id), "{id} is among the last five");
        }
        // One per hour inside the last 24 hours, one per day beyond.
        let within_day = kept.iter().filter(|s| now - s.created_at <= Duration::hours(24)).count();
        assert!((24..=30).contains(&within_day), "{within_day}");
        let older_days: BTreeSet<_> =
            kept.iter().filter(|s| now - s.created_at > Duration::hours(24)).map(|s| s.created_at.date()).collect();
        let older_kept = kept.iter().filter(|s| now - s.created_at > Duration::hours(24)).count();
        assert_eq!(older_days.len(), older_kept, "at most one per day beyond the first day");
        assert!(pruned.len() > 200);
    }

    #[test]
    fn old_ones_beyond_every_window_go() {
        let now = datetime!(2026-11-27 12:00 UTC);
        let all = vec![snapshot(1, now), snapshot(2, now - Duration::days(40)), snapshot(3, now - Duration::days(41))];
        let pruned = to_prune(&all, now, Retention { keep_last: 1, hourly: 24, daily: 30 });
        assert_eq!(pruned, vec![2, 3]);
        assert!(to_prune(&all, now, Retention { keep_last: 3, hourly: 0, daily: 0 }).is_empty());
    }
}
