//! Swarm reconnects: a peer short of connections to the other peers (or cut off from the
//! largest group) dials the peers it misses, with backoff; a missing link is dialed from one side.

use std::collections::{BTreeMap, BTreeSet};

use super::round::Round;
use super::{
    Action, HealingAction, HealingEntry, HealingResult, HealingState, HealthPolicy, SwarmTarget,
    human_duration, ms,
};
use crate::probe::report::PeerReport;
use crate::reconcile::connectivity::{ConnectivityView, kubo_status};
use crate::reconcile::score::swarm_required;

impl Round<'_> {
    /// Step 4: reconnects, for peers whose Kubo answers and that are not restarting. A missing
    /// link between two short peers is dialed from one side only: the name that sorts first.
    pub(super) fn plan_reconnects(&mut self) {
        let (policy, reports, now) = (self.policy, self.reports, self.now);
        let shortfalls: BTreeMap<&str, (Vec<SwarmTarget>, String)> = reports
            .iter()
            .filter(|r| kubo_status(r).is_some())
            .filter_map(|r| {
                swarm_shortfall(policy, self.view, reports, r).map(|short| (r.peer.as_str(), short))
            })
            .collect();
        for report in reports {
            let name = report.peer.as_str();
            if kubo_status(report).is_none() {
                continue;
            }
            let shortfall = shortfalls.get(name);
            self.judge_reconnect(name, shortfall.map(|(_, why)| why.as_str()));
            let Some((targets, why)) = shortfall else {
                if let Some(p) = self.h.peers.get_mut(name) {
                    p.reconnects = 0;
                    p.last_reconnect = None;
                }
                continue;
            };
            if self.restarting(name) {
                continue;
            }
            let (targets, dialed_by_others): (Vec<SwarmTarget>, Vec<SwarmTarget>) =
                targets.iter().cloned().partition(|t| {
                    let other_dials = t.peer.as_str() < name
                        && !self.restarting(&t.peer)
                        && shortfalls
                            .get(t.peer.as_str())
                            .is_some_and(|(theirs, _)| theirs.iter().any(|x| x.peer == name));
                    !other_dials
                });
            if targets.is_empty() {
                if !dialed_by_others.is_empty() {
                    let names: Vec<&str> =
                        dialed_by_others.iter().map(|t| t.peer.as_str()).collect();
                    let reason = format!("{why}; left to {} to connect", names.join(", "));
                    self.swarm_states
                        .insert(name.to_owned(), (HealingState::Reconnecting, reason));
                }
                continue;
            }
            let Some(p) = self.h.peers.get(name) else {
                continue;
            };
            let until = p
                .last_reconnect
                .map(|t| t.saturating_add(ms(policy.backoff_after(p.reconnects))));
            let state = match until.filter(|&until| now < until) {
                Some(until) => (
                    HealingState::Reconnecting,
                    format!("{why}; next reconnect in {}", human_duration(until - now)),
                ),
                None => self.reconnect(name, targets, why),
            };
            self.swarm_states.insert(name.to_owned(), state);
        }
    }

    /// Judges the outcome of the previous reconnect of `peer`, if one is pending; `shortfall`
    /// is why it is still short of connections, if it is.
    fn judge_reconnect(&mut self, peer: &str, shortfall: Option<&str>) {
        let Some(p) = self.h.peers.get_mut(peer) else {
            return;
        };
        if !std::mem::take(&mut p.reconnect_pending) {
            return;
        }
        let (result, detail) = match shortfall {
            None => (
                HealingResult::Succeeded,
                "swarm connected enough".to_owned(),
            ),
            Some(why) => (HealingResult::Failed, format!("still: {why}")),
        };
        self.h
            .log
            .resolve(peer, HealingAction::SwarmConnect, result, detail);
    }

    /// Asks for a reconnect (or withholds it) and records it; returns the peer's state.
    fn reconnect(
        &mut self,
        peer: &str,
        targets: Vec<SwarmTarget>,
        why: &str,
    ) -> (HealingState, String) {
        let names: Vec<&str> = targets.iter().map(|t| t.peer.as_str()).collect();
        let reason = format!("{why}; connecting to {}", names.join(", "));
        let action = Action::SwarmConnect {
            peer: peer.to_owned(),
            targets,
            reason: reason.clone(),
        };
        if let Some(ro) = self.report_only {
            self.withheld.push(action);
            return (
                HealingState::Withheld,
                format!("would reconnect: {reason}; {ro}"),
            );
        }
        if let Some(p) = self.h.peers.get_mut(peer) {
            p.reconnects = p.reconnects.saturating_add(1);
            p.last_reconnect = Some(self.now);
            p.reconnect_pending = true;
        }
        self.h.log.push(HealingEntry {
            time: self.now,
            peer: peer.to_owned(),
            action: HealingAction::SwarmConnect,
            reason: reason.clone(),
            result: HealingResult::Pending,
            detail: None,
        });
        self.actions.push(action);
        (HealingState::Reconnecting, reason)
    }
}

/// If a peer's swarm is short of connections to the other peers (or cut off from the largest
/// group), the peers to connect to and why.
fn swarm_shortfall(
    policy: &HealthPolicy,
    view: &ConnectivityView,
    reports: &[PeerReport],
    report: &PeerReport,
) -> Option<(Vec<SwarmTarget>, String)> {
    let name = report.peer.as_str();
    let others = view.swarm.others_observed(name);
    let required = swarm_required(policy, others);
    let connected = view.swarm.sees_count(name);
    let low = connected < required;
    let split = view.swarm.is_split_off(name);
    if !low && !split {
        return None;
    }
    let seen: BTreeSet<&str> = view
        .swarm
        .sees
        .get(name)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut targets: Vec<SwarmTarget> = reports
        .iter()
        .filter(|r| r.peer != name && !seen.contains(r.peer.as_str()))
        .filter_map(|r| {
            kubo_status(r).map(|k| SwarmTarget {
                peer: r.peer.clone(),
                peer_id: k.peer_id.clone(),
            })
        })
        .collect();
    targets.sort();
    targets.dedup();
    let why = if low {
        format!(
            "Kubo swarm connected to {connected} of the {required} other peers required \
             (minPeerConnections {})",
            policy.min_peer_connections
        )
    } else {
        let group = view.swarm.group_of(name).unwrap_or_default().join(", ");
        format!("Kubo swarm partitioned: group [{group}] is cut off from the other peers")
    };
    Some((targets, why))
}
