//! Tests of the healing policy: tables of observations over time and the actions they yield,
//! plus property tests over random observation sequences. Here the simulated cluster they share;
//! `restarts` covers restarts, backoff, budget, quorum and the spec mapping, `reconnects` the
//! swarm reconnects, report-only mode, the healing log and the properties.

mod reconnects;
mod restarts;

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::connectivity::apis_up;
use super::connectivity::tests::{cluster_id, failure, kubo_id, mesh, peer};
use super::policy::{BUDGET_WINDOW, HEALING_LOG_LIMIT, human_duration, raft_quorum};
use super::*;
use crate::probe::report::{FailureKind, PeerReport, ProcessState};

/// What one peer looks like in one round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Obs {
    /// Both APIs answer, fully connected.
    Up,
    /// Processes running, both APIs time out (a SIGSTOPped or wedged peer).
    Hung,
    /// Kubo API times out, IPFS Cluster answers (and reports it cannot reach Kubo).
    KuboHung,
    /// IPFS Cluster API times out, Kubo answers.
    ClusterHung,
    /// Both processes exited.
    Exited,
    /// Kubo exited, IPFS Cluster still answers.
    KuboExited,
    /// Both APIs answer, but Kubo has no swarm connection to the other peers.
    Lonely,
    /// Kubo exited and the runtime restarts it (kubelet; Kubernetes' restart policy Always).
    KuboRestarting,
    /// Kubo (re)started by the runtime, not ready in its check yet.
    KuboStarting,
    /// Both APIs answer and Kubo is connected, but IPFS Cluster lists only itself and no other
    /// peer lists it: split off from the cluster peerset.
    Split,
}
use Obs::{
    ClusterHung, Exited, Hung, KuboExited, KuboHung, KuboRestarting, KuboStarting, Lonely, Split,
    Up,
};

fn reports(obs: &[Obs]) -> Vec<PeerReport> {
    let mut reports = mesh(obs.len());
    let lonely: Vec<String> = reports
        .iter()
        .zip(obs)
        .filter(|(_, o)| **o == Lonely)
        .map(|(r, _)| kubo_id(&r.peer))
        .collect();
    let split: Vec<String> = reports
        .iter()
        .zip(obs)
        .filter(|(_, o)| **o == Split)
        .map(|(r, _)| cluster_id(&r.peer))
        .collect();
    for (report, o) in reports.iter_mut().zip(obs) {
        if let Ok(kubo) = &mut report.kubo {
            kubo.swarm_peers.retain(|id| !lonely.contains(id));
        }
        if let Ok(cluster) = &mut report.cluster {
            let own = cluster.peer_id.clone();
            cluster
                .peers_seen
                .retain(|id| *id == own || (*o != Split && !split.contains(id)));
        }
        match o {
            Up => {}
            Hung => {
                report.kubo = Err(failure(FailureKind::Timeout));
                report.cluster = Err(failure(FailureKind::Timeout));
            }
            KuboHung => {
                report.kubo = Err(failure(FailureKind::Timeout));
                if let Ok(cluster) = &mut report.cluster {
                    cluster.ipfs_error = Some("context deadline exceeded".to_owned());
                }
            }
            ClusterHung => report.cluster = Err(failure(FailureKind::Timeout)),
            Exited => {
                report.kubo_process = ProcessState::Exited;
                report.cluster_process = ProcessState::Exited;
                report.kubo = Err(failure(FailureKind::Unreachable));
                report.cluster = Err(failure(FailureKind::Unreachable));
            }
            KuboExited => {
                report.kubo_process = ProcessState::Exited;
                report.kubo = Err(failure(FailureKind::Unreachable));
            }
            Lonely => {
                if let Ok(kubo) = &mut report.kubo {
                    kubo.swarm_peers.clear();
                }
            }
            Split => {}
            KuboRestarting | KuboStarting => {
                report.kubo_process = if *o == KuboRestarting {
                    ProcessState::Restarting
                } else {
                    ProcessState::Starting
                };
                report.kubo = Err(failure(FailureKind::Unreachable));
            }
        }
    }
    reports
}

/// Actions as short strings: `restart p1 both`, `connect p0 -> p1,p2`.
fn describe(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::RestartPeer { peer, scope, .. } => {
                format!("restart {peer} {}", scope.label())
            }
            Action::SwarmConnect { peer, targets, .. } => {
                let names: Vec<&str> = targets.iter().map(|t| t.peer.as_str()).collect();
                format!("connect {peer} -> {}", names.join(","))
            }
        })
        .collect()
}

/// A cluster driven through rounds with a simulated clock.
struct Sim {
    policy: HealthPolicy,
    history: ClusterHistory,
    now: UnixMillis,
}

impl Sim {
    fn new(policy: HealthPolicy) -> Self {
        Self {
            policy,
            history: ClusterHistory::default(),
            now: 0,
        }
    }

    /// Advances the clock by `secs`, then runs one round.
    fn step(&mut self, secs: u64, obs: &[Obs]) -> Decision {
        self.now += secs * 1000;
        let d = decide(&self.policy, &reports(obs), &self.history, self.now);
        self.history = d.history.clone();
        d
    }

    /// Runs a table of `(seconds since the previous round, observations, expected actions)`.
    fn run(&mut self, table: &[(u64, &[Obs], &[&str])]) -> Vec<Decision> {
        table
            .iter()
            .enumerate()
            .map(|(i, (secs, obs, expected))| {
                let d = self.step(*secs, obs);
                assert_eq!(
                    describe(&d.actions),
                    *expected,
                    "round {i} at t={}s: {obs:?}\n{:#?}",
                    self.now / 1000,
                    d.peers
                );
                d
            })
            .collect()
    }

    fn state(&self, d: &Decision, peer: &str) -> HealingState {
        d.peer(peer).map(|p| p.state).expect("peer decided")
    }

    fn log(&self) -> Vec<(String, HealingAction, HealingResult)> {
        self.history
            .log
            .entries()
            .map(|e| (e.peer.clone(), e.action, e.result))
            .collect()
    }
}

fn crdt(replicas: u32) -> HealthPolicy {
    HealthPolicy::new(replicas, Consensus::Crdt)
}

fn raft(replicas: u32) -> HealthPolicy {
    HealthPolicy::new(replicas, Consensus::Raft)
}

const NONE: &[&str] = &[];
