//! The alerts of one cluster between rounds: a condition that holds becomes pending, fires once
//! it has held for its `for` duration (as a Prometheus rule does), and resolves in the first
//! round it no longer holds. Each round returns the transitions (alerts that started firing or
//! resolved in it), which the runtimes deliver. Pure: the clock is an input.

use std::collections::{BTreeMap, VecDeque};

use super::rules::Condition;
use super::{AlertName, Timings};
use crate::api::cluster::RESOLVED_ALERTS_LIMIT;
use crate::api::{AlertState, ClusterAlert};
use crate::reconcile::UnixMillis;
use crate::reconcile::status::time;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// An alert of a cluster: its name and, for a peer's alert, the peer.
type AlertKey = (AlertName, Option<String>);

/// What the engine remembers about one cluster between rounds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterAlerts {
    /// Conditions that hold but have not held long enough yet, and since when.
    pending: BTreeMap<AlertKey, UnixMillis>,
    /// Alerts firing.
    firing: BTreeMap<AlertKey, ClusterAlert>,
    /// The most recently resolved alerts, oldest first.
    resolved: VecDeque<ClusterAlert>,
}

impl ClusterAlerts {
    /// The alerts a status carried (`status.alerts`, written by an earlier leader or
    /// supervisor): the firing ones go on firing from their start, and resolve when their
    /// condition no longer holds. Names this version does not evaluate are dropped.
    pub fn from_status(alerts: &[ClusterAlert]) -> ClusterAlerts {
        let mut state = ClusterAlerts::default();
        for alert in alerts {
            let Some(name) = AlertName::parse(&alert.name) else {
                continue;
            };
            if alert.is_firing() {
                state
                    .firing
                    .insert((name, alert.peer.clone()), alert.clone());
            } else {
                state.resolved.push_back(alert.clone());
            }
        }
        state.trim_resolved();
        state
    }

    /// The alerts for `status.alerts`: the firing ones (by start, then name and peer), then the
    /// recently resolved ones (oldest first).
    pub fn list(&self) -> Vec<ClusterAlert> {
        let mut firing: Vec<&ClusterAlert> = self.firing.values().collect();
        firing.sort_by_key(|a| (millis(&a.starts_at), a.name.clone(), a.peer.clone()));
        firing
            .into_iter()
            .chain(self.resolved.iter())
            .cloned()
            .collect()
    }

    /// When the first alert whose condition holds fires, if its condition still holds then.
    pub fn fires_at(&self, timings: &Timings) -> Option<UnixMillis> {
        self.pending
            .iter()
            .map(|((alert, _), since)| {
                let wait = u64::try_from(timings.of(*alert).as_millis()).unwrap_or(u64::MAX);
                since.saturating_add(wait)
            })
            .min()
    }

    /// Whether anything fires.
    pub fn any_firing(&self) -> bool {
        !self.firing.is_empty()
    }

    /// One round: `conditions` hold at `now`. Returns the alerts that started firing and the
    /// ones that resolved in this round, firing ones first.
    pub fn evaluate(
        &mut self,
        conditions: Vec<Condition>,
        timings: &Timings,
        now: UnixMillis,
    ) -> Vec<ClusterAlert> {
        let mut holding: BTreeMap<AlertKey, Condition> = BTreeMap::new();
        for c in conditions {
            holding.entry((c.alert, c.peer.clone())).or_insert(c);
        }
        self.pending.retain(|key, _| holding.contains_key(key));
        let holding_keys: Vec<AlertKey> = holding.keys().cloned().collect();
        let mut started = Vec::new();
        for (key, condition) in holding {
            if self.firing.contains_key(&key) {
                continue;
            }
            let since = *self.pending.entry(key.clone()).or_insert(now);
            let wait = u64::try_from(timings.of(key.0).as_millis()).unwrap_or(u64::MAX);
            if now.saturating_sub(since) < wait {
                continue;
            }
            self.pending.remove(&key);
            let alert = ClusterAlert {
                name: key.0.as_str().to_owned(),
                severity: key.0.severity(),
                peer: key.1.clone(),
                state: AlertState::Firing,
                starts_at: whole_seconds(now),
                ends_at: None,
                summary: condition.summary,
                description: condition.description,
            };
            self.firing.insert(key, alert.clone());
            started.push(alert);
        }
        let gone: Vec<AlertKey> = self
            .firing
            .keys()
            .filter(|k| !holding_keys.contains(*k))
            .cloned()
            .collect();
        let resolved = gone.iter().filter_map(|k| self.resolve(k, now));
        started.extend(resolved.collect::<Vec<_>>());
        started
    }

    /// Resolves every firing alert (the cluster is gone); returns them.
    pub fn resolve_all(&mut self, now: UnixMillis) -> Vec<ClusterAlert> {
        let keys: Vec<AlertKey> = self.firing.keys().cloned().collect();
        keys.into_iter()
            .filter_map(|k| self.resolve(&k, now))
            .collect()
    }

    fn resolve(&mut self, key: &AlertKey, now: UnixMillis) -> Option<ClusterAlert> {
        let mut alert = self.firing.remove(key)?;
        alert.state = AlertState::Resolved;
        alert.ends_at = Some(whole_seconds(now));
        self.resolved.push_back(alert.clone());
        self.trim_resolved();
        Some(alert)
    }

    fn trim_resolved(&mut self) {
        while self.resolved.len() > RESOLVED_ALERTS_LIMIT {
            self.resolved.pop_front();
        }
    }
}

/// `now` as a Kubernetes time in whole seconds: the API server keeps `status` times to the
/// second, so a finer one would differ from what it stored and rewrite the status every round.
fn whole_seconds(now: UnixMillis) -> Time {
    time(now - now % 1000)
}

/// A Kubernetes time in milliseconds since the epoch.
pub fn millis(t: &Time) -> i64 {
    t.0.as_millisecond()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIN: UnixMillis = 60_000;

    fn condition(alert: AlertName, peer: Option<&str>) -> Condition {
        Condition {
            alert,
            peer: peer.map(Into::into),
            summary: format!("{alert} {peer:?}"),
            description: "seen".into(),
        }
    }

    fn states(t: &[ClusterAlert]) -> Vec<(String, Option<String>, AlertState)> {
        t.iter()
            .map(|a| (a.name.clone(), a.peer.clone(), a.state))
            .collect()
    }

    #[test]
    fn each_alert_fires_only_after_its_duration_and_resolves_when_its_condition_ends() {
        let timings = Timings::default();
        for alert in AlertName::ALL {
            let wait = u64::try_from(alert.default_for().as_millis()).expect("ms");
            let peer = (alert.severity() == crate::api::AlertSeverity::Critical).then_some("p-1");
            let mut state = ClusterAlerts::default();
            let t0 = 1_000 * MIN;
            let holds = || vec![condition(alert, peer)];
            // Rounds every 10 s while the condition holds: nothing before `for` has passed.
            let mut now = t0;
            while now < t0 + wait {
                let t = state.evaluate(holds(), &timings, now);
                assert_eq!(t, [], "{alert} fired after {} ms", now - t0);
                assert_eq!(state.fires_at(&timings), Some(t0 + wait), "{alert}");
                now += 10_000;
            }
            let fired = state.evaluate(holds(), &timings, t0 + wait);
            assert_eq!(
                states(&fired),
                [(
                    alert.as_str().into(),
                    peer.map(Into::into),
                    AlertState::Firing
                )],
                "{alert} fires once its `for` has passed"
            );
            assert_eq!(fired[0].starts_at, time(t0 + wait));
            assert_eq!(fired[0].severity, alert.severity());
            assert_eq!(state.fires_at(&timings), None, "nothing waits to fire");
            // Firing goes on without a new transition.
            assert_eq!(state.evaluate(holds(), &timings, t0 + wait + MIN), []);
            assert!(state.any_firing());
            // The first round without the condition resolves it.
            let end = t0 + wait + 2 * MIN;
            let resolved = state.evaluate(Vec::new(), &timings, end);
            assert_eq!(
                states(&resolved),
                [(
                    alert.as_str().into(),
                    peer.map(Into::into),
                    AlertState::Resolved
                )]
            );
            assert_eq!(resolved[0].ends_at, Some(time(end)));
            assert_eq!(resolved[0].starts_at, time(t0 + wait), "its start is kept");
            assert!(!state.any_firing());
            assert_eq!(state.list(), resolved, "resolved alerts stay listed");
        }
    }

    #[test]
    fn a_condition_that_stops_before_its_duration_starts_over() {
        let timings = Timings::default();
        let mut state = ClusterAlerts::default();
        let down = || vec![condition(AlertName::PeerDown, Some("p-0"))];
        assert_eq!(state.evaluate(down(), &timings, 0), []);
        assert_eq!(state.evaluate(down(), &timings, MIN), []);
        assert_eq!(state.evaluate(Vec::new(), &timings, MIN + 10_000), []);
        // Down again: the two minutes count from now.
        assert_eq!(state.evaluate(down(), &timings, 2 * MIN), []);
        assert_eq!(state.evaluate(down(), &timings, 3 * MIN + 59_000), []);
        assert_eq!(state.evaluate(down(), &timings, 4 * MIN).len(), 1);
    }

    #[test]
    fn alerts_of_different_peers_are_separate_and_overridden_timings_apply() {
        let mut timings = Timings::default();
        timings.set(AlertName::PeerDown, Duration::from_secs(1));
        let mut state = ClusterAlerts::default();
        let both = vec![
            condition(AlertName::PeerDown, Some("p-0")),
            condition(AlertName::PeerDown, Some("p-1")),
        ];
        assert_eq!(state.evaluate(both.clone(), &timings, 0), []);
        assert_eq!(state.evaluate(both, &timings, 1_000).len(), 2);
        let one = vec![condition(AlertName::PeerDown, Some("p-1"))];
        let t = state.evaluate(one, &timings, 2_000);
        assert_eq!(
            states(&t),
            [(
                "IpfsKitPeerDown".into(),
                Some("p-0".into()),
                AlertState::Resolved
            )]
        );
        let list = state.list();
        assert_eq!(
            states(&list),
            [
                (
                    "IpfsKitPeerDown".into(),
                    Some("p-1".into()),
                    AlertState::Firing
                ),
                (
                    "IpfsKitPeerDown".into(),
                    Some("p-0".into()),
                    AlertState::Resolved
                ),
            ]
        );
    }

    #[test]
    fn a_status_written_earlier_is_taken_over_and_resolved_alerts_are_bounded() {
        let timings = Timings::default();
        let mut first = ClusterAlerts::default();
        let zero = {
            let mut t = Timings::default();
            t.set(AlertName::PeerDown, Duration::ZERO);
            t
        };
        for i in 0..(RESOLVED_ALERTS_LIMIT as u64 + 3) {
            let c = vec![condition(AlertName::PeerDown, Some("p-0"))];
            assert_eq!(first.evaluate(c, &zero, i * MIN).len(), 1);
            assert_eq!(first.evaluate(Vec::new(), &zero, i * MIN + 1).len(), 1);
        }
        let c = vec![condition(AlertName::ClusterUnhealthy, None)];
        first.evaluate(c.clone(), &timings, 100 * MIN);
        first.evaluate(c.clone(), &timings, 106 * MIN);
        let mut list = first.list();
        assert_eq!(list.len(), 1 + RESOLVED_ALERTS_LIMIT);
        assert!(list[0].is_firing() && list[1..].iter().all(|a| !a.is_firing()));
        // A later version's alert in the status is dropped, not misread.
        let mut unknown = list[0].clone();
        unknown.name = "IpfsKitSomethingNew".into();
        list.push(unknown);

        // A new leader (or supervisor) goes on from the status: no second firing, and it
        // resolves what the earlier one fired.
        let mut next = ClusterAlerts::from_status(&list);
        assert_eq!(next.list(), first.list());
        assert_eq!(next.evaluate(c, &timings, 107 * MIN), []);
        let t = next.evaluate(Vec::new(), &timings, 108 * MIN);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].starts_at, time(106 * MIN));
        assert_eq!(next.resolve_all(109 * MIN), []);
    }

    #[test]
    fn a_deleted_cluster_resolves_everything_firing() {
        let zero = Timings::with_overrides(&["all=0s".into()], "--x").expect("timings");
        let mut state = ClusterAlerts::default();
        let c = vec![
            condition(AlertName::ClusterDegraded, None),
            condition(AlertName::PinsInError, Some("p-2")),
        ];
        assert_eq!(state.evaluate(c, &zero, 5).len(), 2);
        let gone = state.resolve_all(9);
        assert_eq!(gone.len(), 2);
        assert!(
            gone.iter().all(|a| a.ends_at == Some(time(0))),
            "whole seconds"
        );
        // As the API server stores them: a status read back is the same status.
        let fired = state.evaluate(
            vec![condition(AlertName::PeerDown, Some("p"))],
            &zero,
            61_789,
        );
        assert_eq!(fired[0].starts_at, time(61_000));
        let json = serde_json::to_string(&fired[0]).expect("json");
        let back: ClusterAlert = serde_json::from_str(&json).expect("back");
        assert_eq!(back, fired[0]);
    }
}
