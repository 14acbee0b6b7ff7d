//! Status conditions following the Kubernetes API conventions: one condition per type, and
//! `lastTransitionTime` changes only when `status` flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The cluster serves: enough peers ready (all peers for Healthy, a quorum with raft).
pub const READY: &str = "Ready";
/// At least one peer answers on its APIs.
pub const AVAILABLE: &str = "Available";
/// The operator is creating, scaling, rolling or healing peers.
pub const PROGRESSING: &str = "Progressing";
/// Some peers are unhealthy, poorly connected or over their restart budget.
pub const DEGRADED: &str = "Degraded";

/// `True`, `False` or `Unknown`, as the `status` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// Sets the condition of `type_` in `conditions`: updates reason, message and observed
/// generation in place, and sets `lastTransitionTime` to `now` only if the condition is new or
/// its status changed. Returns whether anything changed (so a status write can be skipped).
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Time,
) -> bool {
    let status = status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            let before = existing.clone();
            if existing.status != status {
                existing.status = status.to_owned();
                existing.last_transition_time = now;
            }
            existing.reason = reason.to_owned();
            existing.message = message.to_owned();
            existing.observed_generation = observed_generation;
            *existing != before
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status: status.to_owned(),
                reason: reason.to_owned(),
                message: message.to_owned(),
                observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

/// The condition of `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("timestamp"))
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            "Starting",
            "0/3 ready",
            Some(1),
            at(10)
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(10));

        // Same status, new message: updated, time kept.
        assert!(set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            "Starting",
            "1/3 ready",
            Some(1),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "1/3 ready");

        // Nothing new: no change reported.
        assert!(!set_condition(
            &mut conditions,
            READY,
            ConditionStatus::False,
            "Starting",
            "1/3 ready",
            Some(1),
            at(30)
        ));

        // Flip: time moves.
        assert!(set_condition(
            &mut conditions,
            READY,
            ConditionStatus::True,
            "AllPeersReady",
            "3/3 ready",
            Some(2),
            at(40)
        ));
        assert_eq!(conditions[0].last_transition_time, at(40));
        assert!(is_true(&conditions, READY));

        // Another type is a separate entry.
        set_condition(
            &mut conditions,
            DEGRADED,
            false.into(),
            "Healthy",
            "",
            Some(2),
            at(50),
        );
        assert_eq!(conditions.len(), 2);
        assert!(!is_true(&conditions, DEGRADED));
        assert_eq!(
            find_condition(&conditions, DEGRADED).map(|c| c.status.as_str()),
            Some("False")
        );
    }
}
