//! Restart planning: which peers need a restart and which daemons, then at most one restart in
//! the cluster, held back by the restart in progress, the budget, the backoff or the raft quorum.

use std::fmt::Write as _;

use super::history::count_in_window;
use super::round::Round;
use super::{
    Action, BUDGET_WINDOW, Consensus, HealingAction, HealingEntry, HealingResult, HealingState,
    HealthPolicy, PeerHistory, RestartInProgress, RestartScope, RestartUnit, UnixMillis,
    human_duration, ms, raft_quorum,
};
use crate::probe::report::{PeerReport, ProcessState};
use crate::reconcile::connectivity::{ConnectivityView, cluster_status, kubo_status};
use crate::reconcile::score::failure_text;

/// How long a peer stays split off before it is restarted to rejoin: IPFS Cluster re-dials the
/// peers it knows every 30 s by itself, which heals most splits; three of those rounds failed
/// means it cannot (stale addresses, dial backoff after a long partition).
pub const SPLIT_GRACE: std::time::Duration = std::time::Duration::from_secs(90);

/// A peer that needs a restart this round.
struct RestartNeed<'a> {
    report: &'a PeerReport,
    scope: RestartScope,
    exited: bool,
    streak: u32,
    reason: String,
}

impl<'a> Round<'a> {
    /// Step 3: at most one restart, most urgent first (exited, then longest failing, then by
    /// name); every other peer that needs one learns why it waits.
    pub(super) fn plan_restart(&mut self) {
        let needs = self.restart_needs();
        if let Some((action, scope)) = self.choose_restart(&needs) {
            self.restart(action, scope);
        }
        self.mark_restart_in_progress();
    }

    /// The peers that need a restart, most urgent first; the others that are starting or
    /// failing get that state.
    fn restart_needs(&mut self) -> Vec<RestartNeed<'a>> {
        let (policy, now) = (self.policy, self.now);
        let threshold = policy.effective_failure_threshold();
        let mut needs: Vec<RestartNeed> = Vec::new();
        for report in self.reports {
            let Some(p) = self.h.peers.get(&report.peer) else {
                continue;
            };
            let check = match restart_need(policy, report, p, threshold, now) {
                NeedCheck::Fine => split_need(policy, report, p, threshold, self.view, now),
                other => other,
            };
            let state = match check {
                NeedCheck::Restart(need) => {
                    needs.push(need);
                    continue;
                }
                NeedCheck::Starting(reason) => (HealingState::Starting, reason),
                NeedCheck::Failing(reason) => (HealingState::Failing, reason),
                NeedCheck::Fine => continue,
            };
            self.states.insert(report.peer.clone(), state);
        }
        needs.sort_by(|a, b| {
            b.exited
                .cmp(&a.exited)
                .then(b.streak.cmp(&a.streak))
                .then_with(|| a.report.peer.cmp(&b.report.peer))
        });
        needs
    }

    /// Gives every peer in `needs` its state: the first one nothing holds back is chosen (and
    /// returned, with its scope), the others learn why they wait.
    fn choose_restart(&mut self, needs: &[RestartNeed]) -> Option<(Action, RestartScope)> {
        let members = self.reports.len().max(self.policy.replicas as usize);
        let mut chosen: Option<(Action, RestartScope)> = None;
        for need in needs {
            let name = need.report.peer.as_str();
            let Some(p) = self.h.peers.get(name) else {
                continue;
            };
            let first = chosen.as_ref().map(|(action, _)| action);
            let state = match self.restart_held_back(need, p, members, first) {
                Some(state) => state,
                None => {
                    chosen = Some((
                        Action::RestartPeer {
                            peer: name.to_owned(),
                            scope: need.scope,
                            reason: need.reason.clone(),
                        },
                        need.scope,
                    ));
                    self.chosen_state(need)
                }
            };
            self.states.insert(name.to_owned(), state);
        }
        chosen
    }

    /// What holds back a restart of the peer in `need` (history `p`), if anything, in order:
    /// the restart in progress, the budget, the backoff, the raft quorum, then the restart
    /// already `chosen` this round.
    fn restart_held_back(
        &self,
        need: &RestartNeed,
        p: &PeerHistory,
        members: usize,
        chosen: Option<&Action>,
    ) -> Option<(HealingState, String)> {
        let (policy, now) = (self.policy, self.now);
        let (name, why) = (need.report.peer.as_str(), &need.reason);
        if let Some(run) = &self.h.restart_in_progress {
            return Some(if run.peer == name {
                (
                    HealingState::Restarting,
                    format!("{why}; {}", self.restart_wait(run)),
                )
            } else {
                (
                    HealingState::Waiting,
                    format!(
                        "{why}; waiting: {} is restarting and peers restart one at a time",
                        run.peer
                    ),
                )
            });
        }
        if count_in_window(&p.restarts, now) >= policy.max_restarts_per_hour {
            return Some((HealingState::GivenUp, given_up_reason(policy, p, why, now)));
        }
        let backoff_until = p
            .last_restart
            .map(|t| t.saturating_add(ms(policy.backoff_after(p.backoff_level))));
        if let Some(until) = backoff_until.filter(|&until| now < until) {
            return Some((
                HealingState::BackingOff,
                format!(
                    "{why}; backing off after {} restart(s): next restart in {}",
                    p.backoff_level,
                    human_duration(until - now)
                ),
            ));
        }
        if let Some(block) = quorum_block(policy, self.reports, need, members) {
            return Some((HealingState::QuorumProtected, format!("{why}; {block}")));
        }
        chosen.map(|first| {
            (
                HealingState::Waiting,
                format!(
                    "{why}; waiting: {} restarts first and peers restart one at a time",
                    first.peer()
                ),
            )
        })
    }

    /// The state of the peer chosen to restart: restarting, or withheld when reporting only.
    fn chosen_state(&self, need: &RestartNeed) -> (HealingState, String) {
        let why = &need.reason;
        match self.report_only {
            Some(ro) => (
                HealingState::Withheld,
                format!("would restart ({}): {why}; {ro}", need.scope.label()),
            ),
            None => (HealingState::Restarting, why.clone()),
        }
    }

    /// The peer of the restart in progress is restarting, whether or not it still needs one.
    fn mark_restart_in_progress(&mut self) {
        if let Some(run) = &self.h.restart_in_progress
            && !self.states.contains_key(&run.peer)
        {
            let state = (HealingState::Restarting, self.restart_wait(run));
            self.states.insert(run.peer.clone(), state);
        }
    }

    /// `restart asked 20s ago, waiting up to 5m for it to answer`.
    fn restart_wait(&self, run: &RestartInProgress) -> String {
        format!(
            "restart asked {} ago, waiting up to {} for it to answer",
            human_duration(self.now.saturating_sub(run.since)),
            human_duration(ms(self.policy.restart_timeout))
        )
    }

    /// Asks for a restart (or withholds it) and records it.
    fn restart(&mut self, action: Action, scope: RestartScope) {
        let now = self.now;
        if self.report_only.is_some() {
            self.withheld.push(action);
            return;
        }
        let Some(p) = self.h.peers.get_mut(action.peer()) else {
            return;
        };
        p.restarts.push(now);
        p.restarts_total = p.restarts_total.saturating_add(1);
        p.backoff_level = p.backoff_level.saturating_add(1);
        p.last_restart = Some(now);
        p.healthy_since = None;
        self.h.restart_in_progress = Some(RestartInProgress {
            peer: action.peer().to_owned(),
            since: now,
            scope,
        });
        self.h.log.push(HealingEntry {
            time: now,
            peer: action.peer().to_owned(),
            action: HealingAction::RestartPeer,
            reason: action.reason().to_owned(),
            result: HealingResult::Pending,
            detail: None,
        });
        self.actions.push(action);
    }

    /// Whether a restart of `peer` is in progress or was just asked for (or withheld).
    pub(super) fn restarting(&self, peer: &str) -> bool {
        matches!(
            self.states.get(peer),
            Some((HealingState::Restarting | HealingState::Withheld, _))
        )
    }
}

enum NeedCheck<'a> {
    Fine,
    Starting(String),
    Failing(String),
    Restart(RestartNeed<'a>),
}

/// Whether a peer needs a restart now, and which daemons.
fn restart_need<'a>(
    policy: &HealthPolicy,
    report: &'a PeerReport,
    p: &PeerHistory,
    threshold: u32,
    now: UnixMillis,
) -> NeedCheck<'a> {
    let kubo_bad = kubo_status(report).is_none();
    let cluster_bad = cluster_status(report).is_none();
    if !kubo_bad && !cluster_bad {
        return NeedCheck::Fine;
    }
    let exited = report.kubo_process == ProcessState::Exited
        || report.cluster_process == ProcessState::Exited;
    let problems = problems(report);
    // What the runtime restarts by itself (kubelet restarts an exited container) is not
    // restarted again: deleting the pod would restart the other daemon and change its address.
    if !exited {
        let processes = [report.kubo_process, report.cluster_process];
        if processes.contains(&ProcessState::Restarting) {
            return NeedCheck::Failing(format!("{problems}; left to the runtime"));
        }
        if processes.contains(&ProcessState::Starting) {
            return NeedCheck::Starting(format!("{problems}; not ready yet"));
        }
    }
    let streak = p.failure_streak;
    if !exited {
        let first_seen = p.first_seen.unwrap_or(now);
        let age = now.saturating_sub(first_seen);
        if !p.ever_healthy && age < ms(policy.restart_timeout) {
            return NeedCheck::Starting(format!(
                "{problems}; new peer, not answering yet ({} of {} start grace)",
                human_duration(age),
                human_duration(ms(policy.restart_timeout))
            ));
        }
        if streak < threshold {
            return NeedCheck::Failing(format!(
                "{problems}; {streak} of {threshold} failed probes before a restart"
            ));
        }
    }
    let scope = match (kubo_bad, cluster_bad, policy.restart_unit) {
        // The runtime restarts whole peers only (Kubernetes deletes the pod): say so, so that
        // the raft quorum guard counts the IPFS Cluster member it also restarts.
        (_, _, RestartUnit::Peer) | (true, true, _) => RestartScope::Both,
        (true, false, _) => RestartScope::Kubo,
        _ => RestartScope::Cluster,
    };
    let reason = if exited {
        problems
    } else {
        format!(
            "{problems}; no healthy probe in {streak} consecutive rounds (failureThreshold {threshold})"
        )
    };
    NeedCheck::Restart(RestartNeed {
        report,
        scope,
        exited,
        streak,
        reason,
    })
}

/// Whether a peer whose APIs answer but whose IPFS Cluster is split off from the largest group
/// of the peerset needs to rejoin: after `threshold` such rounds, and at least [`SPLIT_GRACE`],
/// its IPFS Cluster restarts and bootstraps again to the other peers (Kubernetes: every peer by
/// DNS name; local: the configured peer addresses), which joins it to the largest group.
fn split_need<'a>(
    policy: &HealthPolicy,
    report: &'a PeerReport,
    p: &PeerHistory,
    threshold: u32,
    view: &ConnectivityView,
    now: UnixMillis,
) -> NeedCheck<'a> {
    let (streak, Some(since)) = (p.split_streak, p.split_since) else {
        return NeedCheck::Fine;
    };
    if streak == 0 {
        return NeedCheck::Fine;
    }
    let elapsed = now.saturating_sub(since);
    let layer = &view.cluster;
    let list = |group: Option<&[String]>| group.map(|g| g.join(", ")).unwrap_or_default();
    let split = format!(
        "IPFS Cluster split off: [{}] apart from [{}], the largest group of the peerset",
        list(layer.group_of(&report.peer)),
        list(layer.groups.first().map(Vec::as_slice)),
    );
    if streak < threshold {
        return NeedCheck::Failing(format!(
            "{split}; {streak} of {threshold} rounds before it rejoins"
        ));
    }
    if elapsed < ms(SPLIT_GRACE) {
        return NeedCheck::Failing(format!(
            "{split}; IPFS Cluster re-dials its known peers every 30 s: rejoin in {} unless it \
             reconnects by itself",
            human_duration(ms(SPLIT_GRACE) - elapsed)
        ));
    }
    let scope = match policy.restart_unit {
        RestartUnit::Peer => RestartScope::Both,
        RestartUnit::Daemon => RestartScope::Cluster,
    };
    NeedCheck::Restart(RestartNeed {
        report,
        scope,
        exited: false,
        streak,
        reason: format!(
            "{split} for {} ({streak} rounds): rejoin, IPFS Cluster restarts and bootstraps to \
             the other peers",
            human_duration(elapsed)
        ),
    })
}

/// What is wrong with a peer's daemons, e.g. `Kubo process exited; IPFS Cluster API: timeout: ...`.
fn problems(report: &PeerReport) -> String {
    let mut out = Vec::new();
    for (daemon, process, failure) in [
        ("Kubo", report.kubo_process, report.kubo.as_ref().err()),
        (
            "IPFS Cluster",
            report.cluster_process,
            report.cluster.as_ref().err(),
        ),
    ] {
        if process == ProcessState::Exited {
            out.push(format!("{daemon} process exited"));
        } else if process == ProcessState::Restarting {
            out.push(format!(
                "{daemon} exited and is being restarted by the runtime"
            ));
        } else if process == ProcessState::Starting {
            out.push(format!("{daemon} (re)starting"));
        } else if let Some(failure) = failure {
            out.push(format!("{daemon} API {}", failure_text(failure)));
        }
    }
    out.join("; ")
}

fn given_up_reason(policy: &HealthPolicy, p: &PeerHistory, why: &str, now: UnixMillis) -> String {
    let max = policy.max_restarts_per_hour;
    if max == 0 {
        return format!("{why}; not restarted: restarts are disabled (maxRestartsPerHour 0)");
    }
    let mut times: Vec<UnixMillis> = p.restarts.clone();
    times.sort_unstable();
    // The slot frees when the restart that keeps the count at the budget leaves the window.
    let excess = times.len().saturating_sub(max as usize);
    let next_slot = times
        .get(excess)
        .map(|t| t.saturating_add(ms(BUDGET_WINDOW)).saturating_sub(now));
    let mut reason = format!(
        "{why}; given up: {} restarts in the last hour (maxRestartsPerHour {max})",
        times.len()
    );
    if let Some(wait) = next_slot {
        let _ = write!(
            reason,
            ", next restart possible in {}",
            human_duration(wait)
        );
    }
    reason.push_str(" or after a spec change");
    reason
}

/// With raft, why restarting this peer could break the quorum, if it could. A peer whose
/// IPFS Cluster process exited is no working member, so restarting it costs no vote; a running
/// one that does not answer may still vote, so it is restarted only if the other peers whose
/// Cluster answers make a quorum on their own.
fn quorum_block(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    need: &RestartNeed,
    members: usize,
) -> Option<String> {
    if policy.consensus != Consensus::Raft
        || !need.scope.includes_cluster()
        || need.report.cluster_process == ProcessState::Exited
        || members <= 1
    {
        return None;
    }
    let quorum = raft_quorum(members);
    let others_up = reports
        .iter()
        .filter(|r| r.peer != need.report.peer && cluster_status(r).is_some())
        .count();
    (others_up < quorum).then(|| {
        format!(
            "not restarted: raft needs {quorum} of {members} peers and only {others_up} other \
             peer(s) answer, so restarting this still-running peer could break quorum"
        )
    })
}
