//! The three-way merge of one object's shared fields.
//!
//! Each side is compared with its *own* last agreed copy (the base), in its
//! own representation: local markdown against the markdown last written or
//! read locally, remote HTML against the HTML the remote last returned. A
//! conversion that is not a perfect round trip therefore never looks like a
//! change. One-sided changes flow across; a field changed on both sides to
//! values that do not agree is a conflict, settled by the policy.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

/// Field values by shared field name, in one side's representation.
pub type Fields = BTreeMap<String, Value>;

/// The copy both sides last agreed on, one map per side.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Base {
    #[serde(default)]
    pub local: Fields,
    #[serde(default)]
    pub remote: Fields,
    /// A push written down before it was sent and not yet recorded as done.
    /// A crash between the provider's answer and that record leaves it here,
    /// so the next merge knows the remote's new values are our own push,
    /// not an edit made there (which would conflict with a later local edit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushing: Option<Pushing>,
}

/// What a push sends: the remote values, and the local values they stand for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pushing {
    #[serde(default)]
    pub local: Fields,
    #[serde(default)]
    pub remote: Fields,
}

impl Base {
    pub fn new(local: Fields, remote: Fields) -> Base {
        Base { local, remote, pushing: None }
    }

    /// This base with a push about to be sent written down: `sent` in remote
    /// representation, the local values it stands for taken from `local`.
    pub fn intending(&self, sent: &Fields, local: &Fields) -> Base {
        let local = sent.keys().filter_map(|f| Some((f.clone(), local.get(f)?.clone()))).collect();
        Base { pushing: Some(Pushing { local, remote: sent.clone() }), ..self.clone() }
    }

    /// The base to merge from, given the remote as it is now: a push left
    /// unrecorded counts as done for every field where the remote holds what
    /// was sent.
    pub fn settled(&self, remote: &Fields) -> Base {
        let mut base = Base::new(self.local.clone(), self.remote.clone());
        if let Some(pushing) = &self.pushing {
            for (field, sent) in &pushing.remote {
                if remote.get(field) == Some(sent) {
                    base.remote.insert(field.clone(), sent.clone());
                    if let Some(local) = pushing.local.get(field) {
                        base.local.insert(field.clone(), local.clone());
                    }
                }
            }
        }
        base
    }
}

/// How a both-sided conflict is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// The side edited last wins; within the clock-skew tolerance, local wins
    /// (PostgreSQL is the canonical store).
    #[default]
    Newest,
    Local,
    Remote,
    /// Left open for an operator (`mctl sync resolve`).
    Manual,
}

impl Policy {
    pub fn parse(text: &str) -> Option<Policy> {
        match text {
            "newest" => Some(Policy::Newest),
            "local" => Some(Policy::Local),
            "remote" => Some(Policy::Remote),
            "manual" => Some(Policy::Manual),
            _ => None,
        }
    }
}

/// Clocks of the two systems may disagree by this much.
pub const SKEW_TOLERANCE: time::Duration = time::Duration::seconds(5);

/// Which side a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Local,
    Remote,
}

/// A field both sides changed to values that do not agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub field: String,
    pub base: Option<Value>,
    pub local: Value,
    pub remote: Value,
    /// The side the policy picked, or none when an operator must.
    pub winner: Option<Side>,
}

/// What to do to converge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergePlan {
    /// Values to write remotely, in remote representation.
    pub push: Fields,
    /// Values to write locally, in local representation.
    pub pull: Fields,
    pub conflicts: Vec<Conflict>,
    /// The base once `push` and `pull` are written (a caller refreshes the
    /// remote half from what the remote answers).
    pub base: Base,
}

impl MergePlan {
    pub fn is_noop(&self) -> bool {
        self.push.is_empty() && self.pull.is_empty()
    }

    /// After `push` was sent: `base`'s remote half takes what the remote
    /// answered (`answered`, it may have normalised our values) for the pushed
    /// fields. Returns the base to record before anything is written locally:
    /// fields still to be pulled keep their current `local` value in it, so a
    /// failure before the pull cannot make our own push look like a remote edit.
    pub fn base_after_push(&self, base: &mut Base, answered: &Fields, local: &Fields) -> Base {
        for field in self.push.keys() {
            if let Some(value) = answered.get(field) {
                base.remote.insert(field.clone(), value.clone());
            }
        }
        let mut pushed_only = Base::new(self.base.local.clone(), base.remote.clone());
        for field in self.pull.keys() {
            if let Some(old) = local.get(field) {
                pushed_only.local.insert(field.clone(), old.clone());
            }
        }
        pushed_only
    }
}

/// Converts one field's value between the two representations. `None`: the
/// value has no counterpart (an assignee with no mapped member), and the field
/// is left alone on the other side.
pub trait Convert {
    fn to_local(&self, field: &str, remote: &Value) -> Option<Value>;
    fn to_remote(&self, field: &str, local: &Value) -> Option<Value>;
}

/// When each side last changed, for the `newest` policy.
#[derive(Debug, Clone, Copy)]
pub struct Clocks {
    pub local: OffsetDateTime,
    pub remote: OffsetDateTime,
}

/// Merges `fields` of one object.
pub fn merge(
    fields: &[&str],
    base: &Base,
    local: &Fields,
    remote: &Fields,
    convert: &dyn Convert,
    policy: Policy,
    clocks: Clocks,
) -> MergePlan {
    let mut plan = MergePlan { base: Base::new(base.local.clone(), base.remote.clone()), ..MergePlan::default() };
    for field in fields {
        let field = field.to_string();
        let (Some(local_value), Some(remote_value)) = (local.get(&field), remote.get(&field)) else { continue };
        let local_changed = base.local.get(&field) != Some(local_value);
        let remote_changed = base.remote.get(&field) != Some(remote_value);
        let take_local = |plan: &mut MergePlan| {
            if let Some(value) = convert.to_remote(&field, local_value) {
                if &value != remote_value {
                    plan.push.insert(field.clone(), value.clone());
                }
                plan.base.local.insert(field.clone(), local_value.clone());
                plan.base.remote.insert(field.clone(), value);
            }
        };
        let take_remote = |plan: &mut MergePlan| {
            if let Some(value) = convert.to_local(&field, remote_value) {
                if &value != local_value {
                    plan.pull.insert(field.clone(), value.clone());
                }
                plan.base.local.insert(field.clone(), value);
                plan.base.remote.insert(field.clone(), remote_value.clone());
            }
        };
        match (local_changed, remote_changed) {
            (false, false) => {}
            (true, false) => take_local(&mut plan),
            (false, true) => take_remote(&mut plan),
            (true, true) => {
                // Agreement is checked both ways: two lanes can map to one state.
                let agree = convert.to_local(&field, remote_value).as_ref() == Some(local_value)
                    || convert.to_remote(&field, local_value).as_ref() == Some(remote_value);
                if agree {
                    // Both sides made the same change: only the base moves.
                    plan.base.local.insert(field.clone(), local_value.clone());
                    plan.base.remote.insert(field.clone(), remote_value.clone());
                    continue;
                }
                let winner = settle(policy, clocks);
                plan.conflicts.push(Conflict {
                    field: field.clone(),
                    base: base.local.get(&field).cloned(),
                    local: local_value.clone(),
                    remote: remote_value.clone(),
                    winner,
                });
                match winner {
                    Some(Side::Local) => take_local(&mut plan),
                    Some(Side::Remote) => take_remote(&mut plan),
                    None => {}
                }
            }
        }
    }
    plan
}

/// The side a policy picks for a both-sided change.
pub fn settle(policy: Policy, clocks: Clocks) -> Option<Side> {
    match policy {
        Policy::Local => Some(Side::Local),
        Policy::Remote => Some(Side::Remote),
        Policy::Manual => None,
        Policy::Newest if clocks.remote > clocks.local + SKEW_TOLERANCE => Some(Side::Remote),
        Policy::Newest => Some(Side::Local),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Remote values are local ones wrapped: `{"r": v}`, so a test sees
    /// which representation a value is in.
    struct Wrap;

    impl Convert for Wrap {
        fn to_local(&self, _: &str, remote: &Value) -> Option<Value> {
            remote.get("r").cloned()
        }
        fn to_remote(&self, _: &str, local: &Value) -> Option<Value> {
            Some(json!({ "r": local }))
        }
    }

    fn r(v: Value) -> Value {
        json!({ "r": v })
    }

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds)
    }

    const CLOCKS: Clocks = Clocks { local: OffsetDateTime::UNIX_EPOCH, remote: OffsetDateTime::UNIX_EPOCH };

    fn base(pairs: &[(&str, Value)]) -> Base {
        Base::new(fields(pairs), pairs.iter().map(|(k, v)| (k.to_string(), r(v.clone()))).collect())
    }

    #[test]
    fn one_sided_changes_flow_across() {
        let base = base(&[("title", json!("a")), ("priority", json!("low"))]);
        let local = fields(&[("title", json!("local edit")), ("priority", json!("low"))]);
        let remote = fields(&[("title", r(json!("a"))), ("priority", r(json!("high")))]);
        let plan = merge(&["title", "priority"], &base, &local, &remote, &Wrap, Policy::Newest, CLOCKS);
        assert_eq!(plan.push, fields(&[("title", r(json!("local edit")))]));
        assert_eq!(plan.pull, fields(&[("priority", json!("high"))]));
        assert!(plan.conflicts.is_empty());
        assert_eq!(plan.base.local["title"], json!("local edit"));
        assert_eq!(plan.base.local["priority"], json!("high"));
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_conflict() {
        let base = base(&[("title", json!("a"))]);
        let plan = merge(
            &["title"],
            &base,
            &fields(&[("title", json!("b"))]),
            &fields(&[("title", r(json!("b")))]),
            &Wrap,
            Policy::Manual,
            CLOCKS,
        );
        assert!(plan.is_noop() && plan.conflicts.is_empty());
        assert_eq!(plan.base.local["title"], json!("b"));
    }

    #[test]
    fn different_changes_on_both_sides_are_a_conflict_settled_by_the_policy() {
        let base = base(&[("title", json!("a"))]);
        let local = fields(&[("title", json!("mine"))]);
        let remote = fields(&[("title", r(json!("theirs")))]);
        let newer_remote = Clocks { local: at(100), remote: at(200) };
        let plan = merge(&["title"], &base, &local, &remote, &Wrap, Policy::Newest, newer_remote);
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(plan.conflicts[0].winner, Some(Side::Remote));
        assert_eq!(plan.pull["title"], json!("theirs"));
        // Within the skew tolerance the local side wins.
        let close = Clocks { local: at(100), remote: at(103) };
        let plan = merge(&["title"], &base, &local, &remote, &Wrap, Policy::Newest, close);
        assert_eq!(plan.push["title"], r(json!("mine")));
        // Manual: nothing is written and the base stays, so the conflict stays visible.
        let plan = merge(&["title"], &base, &local, &remote, &Wrap, Policy::Manual, newer_remote);
        assert!(plan.is_noop());
        assert_eq!(plan.conflicts[0].winner, None);
        assert_eq!(plan.base, base);
    }

    #[test]
    fn a_value_without_a_counterpart_is_left_alone() {
        struct NoRemote;
        impl Convert for NoRemote {
            fn to_local(&self, _: &str, remote: &Value) -> Option<Value> {
                Some(remote.clone())
            }
            fn to_remote(&self, _: &str, _: &Value) -> Option<Value> {
                None
            }
        }
        let base = Base::new(fields(&[("assignee", json!(1))]), fields(&[("assignee", json!(1))]));
        let plan = merge(
            &["assignee"],
            &base,
            &fields(&[("assignee", json!(2))]),
            &fields(&[("assignee", json!(1))]),
            &NoRemote,
            Policy::Newest,
            CLOCKS,
        );
        assert!(plan.is_noop());
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![Just(json!("a")), Just(json!("b")), Just(json!("c")), Just(json!(null))]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Swapping the sides swaps what flows where.
        #[test]
        fn merge_is_symmetric(b in value(), l in value(), x in value()) {
            let base = base(&[("f", b.clone())]);
            let plan = merge(&["f"], &base, &fields(&[("f", l.clone())]), &fields(&[("f", r(x.clone()))]), &Wrap, Policy::Manual, CLOCKS);
            let mirrored = merge(&["f"], &base, &fields(&[("f", x.clone())]), &fields(&[("f", r(l.clone()))]), &Wrap, Policy::Manual, CLOCKS);
            prop_assert_eq!(plan.push.get("f").cloned(), mirrored.pull.get("f").map(|v| r(v.clone())));
            prop_assert_eq!(plan.pull.get("f").cloned(), mirrored.push.get("f").and_then(|v| v.get("r").cloned()));
            prop_assert_eq!(plan.conflicts.len(), mirrored.conflicts.len());
        }

        /// No change is dropped: after applying the plan both sides hold the
        /// same value, and it is a changed side's value whenever one changed.
        #[test]
        fn no_change_is_dropped(b in value(), l in value(), x in value(), policy in prop_oneof![Just(Policy::Local), Just(Policy::Remote), Just(Policy::Newest)]) {
            let base = base(&[("f", b.clone())]);
            let plan = merge(&["f"], &base, &fields(&[("f", l.clone())]), &fields(&[("f", r(x.clone()))]), &Wrap, policy, CLOCKS);
            let local_after = plan.pull.get("f").cloned().unwrap_or(l.clone());
            let remote_after = plan.push.get("f").and_then(|v| v.get("r").cloned()).unwrap_or(x.clone());
            prop_assert_eq!(&local_after, &remote_after, "converged");
            if l != b && x == b { prop_assert_eq!(&local_after, &l); }
            if x != b && l == b { prop_assert_eq!(&local_after, &x); }
            if l != b && x != b && l != x { prop_assert_eq!(plan.conflicts.len(), 1); }
            prop_assert_eq!(plan.base.local.get("f"), Some(&local_after));
        }
    }

    #[test]
    fn a_push_written_down_but_not_recorded_is_our_own_change_not_theirs() {
        let agreed = base(&[("title", json!("Old"))]);
        let local_then = fields(&[("title", json!("First"))]);
        let sent = fields(&[("title", r(json!("First")))]);
        // Written down, sent, taken by the remote; the record of it was lost.
        let written = agreed.intending(&sent, &local_then);
        let stored: Base = serde_json::from_value(serde_json::to_value(&written).unwrap()).unwrap();
        let remote_now = sent.clone();
        let local_now = fields(&[("title", json!("Second"))]);
        let plan =
            merge(&["title"], &stored.settled(&remote_now), &local_now, &remote_now, &Wrap, Policy::Manual, CLOCKS);
        assert!(plan.conflicts.is_empty(), "{plan:?}");
        assert_eq!(plan.push, fields(&[("title", r(json!("Second")))]));
        // A remote that holds something else than what was sent changed there.
        let theirs = fields(&[("title", r(json!("Theirs")))]);
        let plan = merge(&["title"], &stored.settled(&theirs), &local_now, &theirs, &Wrap, Policy::Manual, CLOCKS);
        assert_eq!(plan.conflicts.len(), 1);
        assert_eq!(stored.settled(&theirs).pushing, None);
    }
}
