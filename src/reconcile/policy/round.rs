//! One policy round: the steps of [`decide`](super::decide) in order. Observe the round, settle
//! the restart in progress, plan a restart (`restart`), plan reconnects (`reconnect`), then give
//! every peer its verdict.

use std::collections::{BTreeMap, BTreeSet};

use super::history::in_window;
use super::{
    Action, ClusterHistory, Decision, HealingAction, HealingEntry, HealingResult, HealingState,
    HealthPolicy, PeerHealing, STABLE_AFTER, UnixMillis, human_duration, ms,
};
use crate::probe::report::PeerReport;
use crate::reconcile::connectivity::{ConnectivityView, apis_up};

/// [`decide`](super::decide) with the connectivity view already built from the same reports.
pub(crate) fn decide_with_view(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    view: &ConnectivityView,
    history: &ClusterHistory,
    now: UnixMillis,
) -> Decision {
    let mut round = Round {
        policy,
        reports,
        view,
        now,
        report_only: policy.report_only_reason(),
        h: history.clone(),
        states: BTreeMap::new(),
        swarm_states: BTreeMap::new(),
        actions: Vec::new(),
        withheld: Vec::new(),
    };
    round.observe();
    round.settle_restart();
    round.plan_restart();
    round.plan_reconnects();
    round.finish()
}

/// Rounds a little early (requeue jitter) still count as the next interval's.
const COUNT_SLACK_MS: u64 = 1_000;

/// Whether a round at `now` counts again, the last one counted at `last`: once per interval.
fn once_per_interval(last: Option<UnixMillis>, now: UnixMillis, interval: u64) -> bool {
    last.is_none_or(|last| now.saturating_sub(last) + COUNT_SLACK_MS >= interval)
}

/// A state and its reason, per peer.
pub(super) type States = BTreeMap<String, (HealingState, String)>;

/// One policy round in the making: the steps below run in order and each reads what the
/// previous ones left.
pub(super) struct Round<'a> {
    pub(super) policy: &'a HealthPolicy,
    pub(super) reports: &'a [PeerReport],
    pub(super) view: &'a ConnectivityView,
    pub(super) now: UnixMillis,
    pub(super) report_only: Option<&'static str>,
    /// The history being updated.
    pub(super) h: ClusterHistory,
    /// Restart-related states (and Starting/Failing).
    pub(super) states: States,
    /// Reconnect-related states.
    pub(super) swarm_states: States,
    pub(super) actions: Vec<Action>,
    pub(super) withheld: Vec<Action>,
}

impl Round<'_> {
    /// Step 1: reset budgets on a spec change, forget removed peers, update streaks, health and
    /// budget windows.
    fn observe(&mut self) {
        let (h, now) = (&mut self.h, self.now);
        if h.spec_generation != self.policy.spec_generation {
            h.forget_budgets();
            h.spec_generation = self.policy.spec_generation;
        }
        let present: BTreeSet<&str> = self.reports.iter().map(|r| r.peer.as_str()).collect();
        h.peers.retain(|name, _| present.contains(name.as_str()));
        for report in self.reports {
            let p = h.peers.entry(report.peer.clone()).or_default();
            p.first_seen.get_or_insert(now);
            p.restarts.retain(|&t| in_window(t, now));
            let interval = ms(self.policy.probe_interval);
            // A split counts only while both APIs answer (a peer down cannot be placed).
            if apis_up(report) && self.view.cluster.is_split_off(&report.peer) {
                if once_per_interval(p.last_split_counted, now, interval) {
                    p.split_streak = p.split_streak.saturating_add(1);
                    p.last_split_counted = Some(now);
                }
                p.split_since.get_or_insert(now);
            } else {
                p.split_streak = 0;
                p.last_split_counted = None;
                p.split_since = None;
            }
            if apis_up(report) {
                p.failure_streak = 0;
                p.last_failure_counted = None;
                p.ever_healthy = true;
                let since = *p.healthy_since.get_or_insert(now);
                if now.saturating_sub(since) >= ms(STABLE_AFTER) {
                    p.backoff_level = 0;
                }
            } else if report.kubo_process.in_runtime_hands()
                || report.cluster_process.in_runtime_hands()
            {
                // The runtime is restarting it: failures count from when it says it runs.
                p.failure_streak = 0;
                p.last_failure_counted = None;
                p.healthy_since = None;
            } else {
                // Rounds may run more often than the probe interval (Kubernetes reconciles on
                // every pod event): a failure counts once per interval, so that
                // `failureThreshold` failures take `failureThreshold` intervals.
                if once_per_interval(p.last_failure_counted, now, interval) {
                    p.failure_streak = p.failure_streak.saturating_add(1);
                    p.last_failure_counted = Some(now);
                }
                p.healthy_since = None;
            }
        }
    }

    /// Step 2: end the restart in progress once the peer answers again, is gone, or the
    /// timeout passes.
    fn settle_restart(&mut self) {
        let Some(run) = self.h.restart_in_progress.clone() else {
            return;
        };
        let timeout = ms(self.policy.restart_timeout);
        let elapsed = self.now.saturating_sub(run.since);
        let outcome = match self.reports.iter().find(|r| r.peer == run.peer) {
            None => Some((
                HealingResult::Failed,
                "peer no longer part of the cluster".to_owned(),
            )),
            Some(r) if apis_up(r) => Some((
                HealingResult::Succeeded,
                format!("answering again after {}", human_duration(elapsed)),
            )),
            Some(_) if elapsed >= timeout => Some((
                HealingResult::Failed,
                format!(
                    "not answering {} after the restart",
                    human_duration(timeout)
                ),
            )),
            Some(_) => None,
        };
        if let Some((result, detail)) = outcome {
            self.h.restart_in_progress = None;
            self.h
                .log
                .resolve(&run.peer, HealingAction::RestartPeer, result, detail);
        }
    }

    /// Step 5: one verdict per peer; a lasting skip (give-up, quorum, report only) is logged
    /// once, when it starts.
    fn finish(mut self) -> Decision {
        let mut peers = Vec::with_capacity(self.reports.len());
        for report in self.reports {
            let name = &report.peer;
            let (state, reason) = match (self.states.remove(name), self.swarm_states.remove(name)) {
                // A withheld reconnect beats "failing" for the peer's state, so it is logged.
                (Some((HealingState::Failing, _)), Some(swarm))
                    if swarm.0 == HealingState::Withheld =>
                {
                    swarm
                }
                (Some(state), _) => state,
                (None, Some(swarm)) => swarm,
                (None, None) => (HealingState::Ok, "both APIs answer".to_owned()),
            };
            let skip = match state {
                HealingState::GivenUp => Some(HealingAction::GiveUp),
                HealingState::QuorumProtected => Some(HealingAction::RestartPeer),
                HealingState::Withheld => self
                    .withheld
                    .iter()
                    .find(|a| a.peer() == name)
                    .map(Action::kind),
                _ => None,
            };
            if let Some(p) = self.h.peers.get_mut(name) {
                let key = skip.map(|kind| (state, kind));
                if let Some(kind) = skip
                    && p.last_skip != key
                {
                    self.h.log.push(HealingEntry {
                        time: self.now,
                        peer: name.clone(),
                        action: kind,
                        reason: reason.clone(),
                        result: HealingResult::Skipped,
                        detail: None,
                    });
                }
                p.last_skip = key;
            }
            peers.push(PeerHealing {
                peer: name.clone(),
                state,
                reason,
            });
        }
        Decision {
            actions: self.actions,
            withheld: self.withheld,
            report_only: self.report_only.map(str::to_owned),
            peers,
            history: self.h,
        }
    }
}
