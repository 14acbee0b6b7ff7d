//! Tests of the healing policy: tables of observations over time and the actions they yield,
//! plus property tests over random observation sequences.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::connectivity::apis_up;
use super::connectivity::tests::{failure, kubo_id, mesh, peer};
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
}
use Obs::{ClusterHung, Exited, Hung, KuboExited, KuboHung, Lonely, Up};

fn reports(obs: &[Obs]) -> Vec<PeerReport> {
    let mut reports = mesh(obs.len());
    let lonely: Vec<String> = reports
        .iter()
        .zip(obs)
        .filter(|(_, o)| **o == Lonely)
        .map(|(r, _)| kubo_id(&r.peer))
        .collect();
    for (report, o) in reports.iter_mut().zip(obs) {
        if let Ok(kubo) = &mut report.kubo {
            kubo.swarm_peers.retain(|id| !lonely.contains(id));
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

#[test]
fn defaults_are_documented_values() {
    let p = crdt(3);
    assert_eq!(p.probe_interval, Duration::from_secs(10));
    assert_eq!(p.probe_timeout, Duration::from_secs(5));
    assert_eq!(p.failure_threshold, 3);
    assert!(p.auto_heal && !p.paused);
    assert_eq!(p.max_restarts_per_hour, 5);
    assert_eq!(p.min_peer_connections, 1);
    assert_eq!(p.restart_timeout, Duration::from_secs(300));
    assert_eq!(p.backoff_cap, Duration::from_secs(300));
    assert_eq!(p.report_only_reason(), None);
    assert_eq!(
        HealthPolicy {
            failure_threshold: 0,
            ..crdt(1)
        }
        .effective_failure_threshold(),
        1
    );
}

#[test]
fn backoff_doubles_from_the_probe_interval_up_to_the_cap() {
    let p = crdt(3);
    let secs: Vec<u64> = (0..8).map(|n| p.backoff_after(n).as_secs()).collect();
    assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    assert_eq!(p.backoff_after(200), Duration::from_secs(300));
}

#[test]
fn quorum_is_a_majority() {
    assert_eq!([1, 2, 3, 4, 5, 7].map(raft_quorum), [1, 2, 2, 3, 3, 4]);
    assert_eq!(human_duration(500), "500ms");
    assert_eq!(human_duration(45_000), "45s");
    assert_eq!(human_duration(150_000), "2m30s");
    assert_eq!(human_duration(3_900_000), "1h5m");
}

#[test]
fn a_healthy_cluster_needs_nothing() {
    let mut sim = Sim::new(crdt(3));
    for d in sim.run(&[(0, &[Up, Up, Up], NONE), (10, &[Up, Up, Up], NONE)]) {
        assert!(d.peers.iter().all(|p| p.state == HealingState::Ok));
        assert_eq!(d.summary(), "no healing action");
    }
    assert!(sim.history.log.is_empty());
}

#[test]
fn a_hung_peer_is_restarted_after_failure_threshold_probes() {
    let mut sim = Sim::new(crdt(3));
    let ds = sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Hung, Up], NONE),
        (10, &[Up, Hung, Up], NONE),
        (10, &[Up, Hung, Up], &["restart p1 both"]),
        (10, &[Up, Hung, Up], NONE),
        (10, &[Up, Up, Up], NONE),
    ]);
    assert_eq!(sim.state(&ds[1], "p1"), HealingState::Failing);
    assert!(
        ds[2]
            .peer("p1")
            .expect("p1")
            .reason
            .contains("2 of 3 failed probes"),
        "{:?}",
        ds[2].peers
    );
    let reason = ds[3].actions[0].reason();
    assert!(
        reason.contains("Kubo API timeout: POST /api/v0/id")
            && reason.contains("no healthy probe in 3 consecutive rounds (failureThreshold 3)"),
        "{reason}"
    );
    assert_eq!(ds[3].actions[0].label(), "restart_peer");
    assert_eq!(sim.state(&ds[4], "p1"), HealingState::Restarting);
    assert_eq!(sim.state(&ds[5], "p1"), HealingState::Ok);
    let entry = sim.history.log.entries().next().expect("logged");
    assert_eq!(entry.result, HealingResult::Succeeded);
    assert_eq!(entry.time, 30_000);
    assert_eq!(entry.detail.as_deref(), Some("answering again after 20s"));
    assert_eq!(sim.history.peers["p1"].restarts_total, 1);
}

#[test]
fn a_threshold_of_one_restarts_on_the_first_failed_probe() {
    let mut policy = crdt(2);
    policy.failure_threshold = 1;
    Sim::new(policy).run(&[
        (0, &[Up, Up], NONE),
        (10, &[Hung, Up], &["restart p0 both"]),
    ]);
}

#[test]
fn flapping_never_restarts() {
    let mut sim = Sim::new(crdt(3));
    sim.step(0, &[Up, Up, Up]);
    // One failed probe between good ones, then two in a row, never three.
    let pattern = [Hung, Up, Hung, Hung, Up, KuboHung, ClusterHung, Up];
    for i in 0..60 {
        let d = sim.step(10, &[Up, pattern[i % pattern.len()], Up]);
        assert!(d.actions.is_empty(), "round {i}: {:?}", d.actions);
    }
    assert!(sim.history.log.is_empty());
}

#[test]
fn an_exited_process_is_restarted_at_once() {
    let mut sim = Sim::new(crdt(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Up, Exited], &["restart p2 both"]),
    ]);
    // Even a peer never seen healthy (no start grace for an exit).
    Sim::new(crdt(2)).run(&[(0, &[Exited, Up], &["restart p0 both"])]);
}

#[test]
fn only_the_failed_daemon_is_restarted() {
    Sim::new(crdt(2)).run(&[
        (0, &[Up, Up], NONE),
        (10, &[KuboExited, Up], &["restart p0 kubo"]),
    ]);
    Sim::new(crdt(2)).run(&[
        (0, &[Up, Up], NONE),
        (10, &[Up, ClusterHung], NONE),
        (10, &[Up, ClusterHung], NONE),
        (10, &[Up, ClusterHung], &["restart p1 cluster"]),
    ]);
    Sim::new(crdt(2)).run(&[
        (0, &[Up, Up], NONE),
        (10, &[KuboHung, Up], NONE),
        (10, &[KuboHung, Up], NONE),
        (10, &[KuboHung, Up], &["restart p0 kubo"]),
    ]);
}

#[test]
fn a_new_peer_gets_the_restart_timeout_to_answer_first() {
    let mut sim = Sim::new(crdt(2));
    let ds = sim.run(&[
        (0, &[Hung, Up], NONE),
        (60, &[Hung, Up], NONE),
        (60, &[Hung, Up], NONE),
        (60, &[Hung, Up], NONE),
        (60, &[Hung, Up], NONE),
        (60, &[Hung, Up], &["restart p0 both"]),
    ]);
    assert_eq!(sim.state(&ds[4], "p0"), HealingState::Starting);
    assert!(
        ds[4].peers[0]
            .reason
            .contains("new peer, not answering yet (4m of 5m start grace)")
    );
}

#[test]
fn two_peers_failing_at_once_restart_one_after_the_other() {
    let mut sim = Sim::new(crdt(3));
    let ds = sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Exited, Exited], &["restart p1 both"]),
        (10, &[Up, Exited, Exited], NONE),
        (10, &[Up, Hung, Exited], NONE),
        (10, &[Up, Up, Exited], &["restart p2 both"]),
        (10, &[Up, Up, Up], NONE),
    ]);
    assert_eq!(sim.state(&ds[1], "p2"), HealingState::Waiting);
    assert!(ds[1].peers[2].reason.contains("p1 restarts first"));
    assert_eq!(sim.state(&ds[2], "p1"), HealingState::Restarting);
    assert!(ds[2].peers[2].reason.contains("p1 is restarting"));
    assert_eq!(
        sim.log(),
        vec![
            (
                "p1".to_owned(),
                HealingAction::RestartPeer,
                HealingResult::Succeeded
            ),
            (
                "p2".to_owned(),
                HealingAction::RestartPeer,
                HealingResult::Succeeded
            ),
        ]
    );
}

#[test]
fn the_longest_failing_peer_restarts_first() {
    Sim::new(crdt(3)).run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Up, Hung], NONE),
        (10, &[Up, Hung, Hung], NONE),
        (10, &[Up, Hung, Hung], &["restart p2 both"]),
    ]);
}

#[test]
fn a_restart_that_never_answers_times_out_and_may_be_retried() {
    let mut sim = Sim::new(crdt(2));
    sim.run(&[
        (0, &[Up, Up], NONE),
        (10, &[Exited, Up], &["restart p0 both"]),
    ]);
    for _ in 0..29 {
        let d = sim.step(10, &[Exited, Up]);
        assert!(d.actions.is_empty());
    }
    // 300 s after the restart: it failed; the backoff (10 s) has long passed.
    let d = sim.step(10, &[Exited, Up]);
    assert_eq!(describe(&d.actions), vec!["restart p0 both"]);
    let first = sim.history.log.entries().next().expect("logged");
    assert_eq!(first.result, HealingResult::Failed);
    assert_eq!(
        first.detail.as_deref(),
        Some("not answering 5m after the restart")
    );
}

#[test]
fn a_crash_loop_backs_off_then_spends_the_budget_and_is_left_alone() {
    let mut sim = Sim::new(crdt(2));
    sim.step(0, &[Up, Up]);
    // The peer answers in the round after each restart, then crashes again.
    let mut restarted = false;
    let mut restart_times = Vec::new();
    let mut given_up_at = None;
    while sim.now < 3_700_000 {
        let obs = if restarted { Up } else { Exited };
        let d = sim.step(10, &[obs, Up]);
        restarted = !d.actions.is_empty();
        if restarted {
            assert_eq!(describe(&d.actions), vec!["restart p0 both"]);
            restart_times.push(sim.now / 1000);
        }
        if given_up_at.is_none() && sim.state(&d, "p0") == HealingState::GivenUp {
            given_up_at = Some(sim.now / 1000);
            let reason = &d.peers[0].reason;
            assert!(
                reason.contains(
                    "given up: 5 restarts in the last hour (maxRestartsPerHour 5), \
                     next restart possible in 57m"
                ),
                "{reason}"
            );
        }
        if sim.now == 80_000 {
            assert_eq!(sim.state(&d, "p0"), HealingState::BackingOff);
            assert!(
                d.peers[0].reason.contains("next restart in 10s"),
                "{:?}",
                d.peers
            );
        }
    }
    // Backoff 10, 20, 40, 80 s between restarts; five in the first hour; the sixth when the
    // first leaves the window.
    assert_eq!(restart_times, vec![10, 30, 50, 90, 170, 3610]);
    assert_eq!(given_up_at, Some(190));
    let give_ups = sim
        .history
        .log
        .entries()
        .filter(|e| e.action == HealingAction::GiveUp)
        .count();
    assert_eq!(give_ups, 1, "a lasting give-up is logged once");
}

#[test]
fn a_spec_change_gives_a_given_up_peer_a_fresh_budget() {
    let mut policy = crdt(2);
    policy.max_restarts_per_hour = 1;
    let mut sim = Sim::new(policy);
    let ds = sim.run(&[
        (0, &[Up, Up], NONE),
        (10, &[Exited, Up], &["restart p0 both"]),
        (10, &[Up, Up], NONE),
        (10, &[Exited, Up], NONE),
    ]);
    assert_eq!(sim.state(&ds[3], "p0"), HealingState::GivenUp);
    sim.policy.spec_generation = 2;
    sim.run(&[(10, &[Exited, Up], &["restart p0 both"])]);
}

#[test]
fn a_zero_budget_never_restarts() {
    let mut policy = crdt(2);
    policy.max_restarts_per_hour = 0;
    let mut sim = Sim::new(policy);
    let ds = sim.run(&[(0, &[Up, Up], NONE), (10, &[Exited, Up], NONE)]);
    assert_eq!(sim.state(&ds[1], "p0"), HealingState::GivenUp);
    assert!(ds[1].peers[0].reason.contains("restarts are disabled"));
}

#[test]
fn raft_never_restarts_a_running_peer_without_a_quorum_of_others() {
    let mut sim = Sim::new(raft(3));
    let mut table: Vec<(u64, &[Obs], &[&str])> = vec![
        (0, &[Up, Up, Up], NONE),
        (10, &[Hung, Up, Up], NONE),
        (10, &[Hung, Up, Up], NONE),
        // Two others answer: quorum (2 of 3) holds without p0.
        (10, &[Hung, Up, Up], &["restart p0 both"]),
    ];
    // p0 stays down while restarting; p1 hangs too and must wait.
    table.extend(std::iter::repeat_n((10, &[Hung, Hung, Up][..], NONE), 29));
    let ds = sim.run(&table);
    assert_eq!(
        sim.state(ds.last().expect("rounds"), "p1"),
        HealingState::Waiting
    );

    // The restart of p0 times out at 330 s; now neither may restart: only p2 answers.
    let ds = sim.run(&[(10, &[Hung, Hung, Up], NONE), (10, &[Hung, Hung, Up], NONE)]);
    for d in &ds {
        assert_eq!(sim.state(d, "p0"), HealingState::QuorumProtected);
        assert_eq!(sim.state(d, "p1"), HealingState::QuorumProtected);
    }
    assert!(
        ds[0].peers[1]
            .reason
            .contains("raft needs 2 of 3 peers and only 1 other peer(s) answer"),
        "{:?}",
        ds[0].peers
    );
    assert_eq!(
        sim.log(),
        vec![
            (
                "p0".to_owned(),
                HealingAction::RestartPeer,
                HealingResult::Failed
            ),
            (
                "p0".to_owned(),
                HealingAction::RestartPeer,
                HealingResult::Skipped
            ),
            (
                "p1".to_owned(),
                HealingAction::RestartPeer,
                HealingResult::Skipped
            ),
        ],
        "a lasting quorum hold is logged once per peer"
    );
}

#[test]
fn crdt_has_no_quorum_to_protect() {
    let mut sim = Sim::new(crdt(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Hung, Hung, Up], NONE),
        (10, &[Hung, Hung, Up], NONE),
        (10, &[Hung, Hung, Up], &["restart p0 both"]),
    ]);
}

#[test]
fn raft_restarts_an_exited_peer_since_it_holds_no_vote() {
    let mut sim = Sim::new(raft(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Exited, Exited, Up], &["restart p0 both"]),
        (10, &[Up, Exited, Up], &["restart p1 both"]),
    ]);
    // A Kubo-only restart does not touch raft either.
    let mut sim = Sim::new(raft(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[KuboHung, Hung, Hung], NONE),
        (10, &[KuboHung, Hung, Hung], NONE),
        (10, &[KuboHung, Hung, Hung], &["restart p0 kubo"]),
    ]);
}

#[test]
fn where_restarts_are_whole_pods_a_hung_kubo_counts_as_a_raft_member_restart() {
    // Kubernetes restarts a peer by deleting its pod, which also restarts its raft member: a
    // Kubo-only failure must not take the cluster below quorum.
    let mut policy = raft(3);
    policy.restart_unit = RestartUnit::Peer;
    let ds = Sim::new(policy).run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[KuboHung, Hung, Hung], NONE),
        (10, &[KuboHung, Hung, Hung], NONE),
        (10, &[KuboHung, Hung, Hung], NONE),
    ]);
    let last = ds.last().expect("rounds");
    let p0 = last.peer("p0").expect("p0 decided");
    assert_eq!(p0.state, HealingState::QuorumProtected, "{}", p0.reason);
    // With enough other members answering, the same peer is restarted, as a whole pod.
    let mut policy = raft(3);
    policy.restart_unit = RestartUnit::Peer;
    Sim::new(policy).run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[KuboExited, Up, Up], &["restart p0 both"]),
    ]);
}

#[test]
fn one_mapping_from_spec_to_policy() {
    use crate::api::IpfsClusterSpec;
    let mut spec = IpfsClusterSpec {
        replicas: 4,
        ..IpfsClusterSpec::default()
    };
    spec.health.probe_interval = "2s".into();
    spec.health.probe_timeout = "1s".into();
    spec.health.failure_threshold = 2;
    spec.health.auto_heal = false;
    spec.health.max_restarts_per_hour = 7;
    spec.health.min_peer_connections = 3;
    spec.cluster.consensus = Consensus::Raft;
    spec.paused = true;
    let p = HealthPolicy::from_spec(&spec, 9).expect("policy");
    assert_eq!(p.replicas, 4);
    assert_eq!(p.consensus, Consensus::Raft);
    assert_eq!(p.probe_interval, Duration::from_secs(2));
    assert_eq!(p.probe_timeout, Duration::from_secs(1));
    assert_eq!(p.failure_threshold, 2);
    assert!(!p.auto_heal);
    assert!(p.paused);
    assert_eq!(p.max_restarts_per_hour, 7);
    assert_eq!(p.min_peer_connections, 3);
    assert_eq!(p.spec_generation, 9);
    assert_eq!(
        p.restart_unit,
        RestartUnit::Daemon,
        "the runtime sets its own unit"
    );
    // A spec that did not pass the API server's validation still yields at least one peer.
    spec.replicas = 0;
    assert_eq!(
        HealthPolicy::from_spec(&spec, 9).expect("policy").replicas,
        1
    );
    spec.health.probe_timeout = "later".into();
    let err = HealthPolicy::from_spec(&spec, 9).expect_err("bad duration");
    assert_eq!(err.field, "spec.health.probeTimeout");
}

#[test]
fn paused_reports_what_it_would_do_and_does_nothing() {
    let mut policy = crdt(3);
    policy.paused = true;
    let mut sim = Sim::new(policy);
    let ds = sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Exited, Up], NONE),
        (10, &[Up, Exited, Up], NONE),
    ]);
    for d in &ds[1..] {
        assert_eq!(describe(&d.withheld), vec!["restart p1 both"]);
        assert_eq!(
            d.report_only.as_deref(),
            Some("report only: spec.paused is true")
        );
        assert_eq!(sim.state(d, "p1"), HealingState::Withheld);
        assert!(
            d.peers[1]
                .reason
                .starts_with("would restart (both): Kubo process exited; IPFS")
        );
        assert_eq!(
            d.summary(),
            "report only: spec.paused is true; would restart_peer p1: Kubo process exited; \
             IPFS Cluster process exited"
        );
    }
    assert_eq!(
        sim.log(),
        vec![(
            "p1".to_owned(),
            HealingAction::RestartPeer,
            HealingResult::Skipped
        )]
    );
    assert_eq!(sim.history.restarts_in_window("p1", sim.now), 0);
    assert_eq!(sim.history.restart_in_progress, None);

    // Unpaused: the restart happens at once, with its full budget.
    sim.policy.paused = false;
    sim.run(&[(10, &[Up, Exited, Up], &["restart p1 both"])]);
}

#[test]
fn auto_heal_off_reports_reconnects_and_restarts_without_acting() {
    let mut policy = crdt(3);
    policy.auto_heal = false;
    let mut sim = Sim::new(policy);
    let ds = sim.run(&[
        (0, &[Lonely, Up, Up], NONE),
        (10, &[Lonely, Up, Exited], NONE),
    ]);
    assert_eq!(describe(&ds[0].withheld), vec!["connect p0 -> p1,p2"]);
    assert_eq!(
        describe(&ds[1].withheld),
        vec!["restart p2 both", "connect p0 -> p1"]
    );
    assert_eq!(
        ds[1].report_only.as_deref(),
        Some("report only: spec.health.autoHeal is false")
    );
    assert_eq!(sim.history.peers["p0"].reconnects, 0);
}

#[test]
fn a_poorly_connected_peer_is_reconnected_with_backoff() {
    let mut policy = crdt(3);
    policy.min_peer_connections = 2;
    let mut sim = Sim::new(policy);
    let ds = sim.run(&[
        (0, &[Lonely, Up, Up], &["connect p0 -> p1,p2"]),
        (10, &[Lonely, Up, Up], &["connect p0 -> p1,p2"]),
        (10, &[Lonely, Up, Up], NONE),
        (10, &[Lonely, Up, Up], &["connect p0 -> p1,p2"]),
        (10, &[Up, Up, Up], NONE),
        (10, &[Lonely, Up, Up], &["connect p0 -> p1,p2"]),
    ]);
    match &ds[0].actions[0] {
        Action::SwarmConnect {
            targets, reason, ..
        } => {
            assert_eq!(targets[0].peer_id, kubo_id("p1"));
            assert_eq!(
                reason,
                "Kubo swarm connected to 0 of the 2 other peers required \
                 (minPeerConnections 2); connecting to p1, p2"
            );
        }
        other => panic!("expected a reconnect, got {other:?}"),
    }
    // p1 and p2 miss p0 too, but the link is dialed from one side only.
    assert_eq!(sim.state(&ds[0], "p1"), HealingState::Reconnecting);
    assert!(
        ds[0].peers[1].reason.ends_with("left to p0 to connect"),
        "{:?}",
        ds[0].peers
    );
    assert_eq!(sim.state(&ds[2], "p0"), HealingState::Reconnecting);
    assert!(ds[2].peers[0].reason.ends_with("next reconnect in 10s"));
    assert_eq!(sim.state(&ds[4], "p0"), HealingState::Ok);
    let results: Vec<HealingResult> = sim.log().into_iter().map(|(_, _, r)| r).collect();
    assert_eq!(
        results,
        vec![
            HealingResult::Failed,
            HealingResult::Failed,
            HealingResult::Succeeded,
            HealingResult::Pending,
        ]
    );
}

#[test]
fn no_reconnect_to_peers_that_are_down_or_for_a_restarting_peer() {
    let mut sim = Sim::new(crdt(3));
    // p2's Kubo is down: p0 needs (and gets) only p1.
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (
            10,
            &[Lonely, Up, KuboExited],
            &["restart p2 kubo", "connect p0 -> p1"],
        ),
    ]);
}

#[test]
fn the_cut_off_side_of_a_swarm_partition_reconnects() {
    let policy = crdt(4);
    let reports = vec![
        peer("p0", &["p1"]),
        peer("p1", &["p0"]),
        peer("p2", &["p3"]),
        peer("p3", &["p2"]),
    ];
    let d = decide(&policy, &reports, &ClusterHistory::default(), 0);
    assert_eq!(
        describe(&d.actions),
        vec!["connect p2 -> p0,p1", "connect p3 -> p0,p1"]
    );
    assert!(
        d.actions[0]
            .reason()
            .starts_with("Kubo swarm partitioned: group [p2, p3] is cut off from the other peers")
    );
}

#[test]
fn a_peer_removed_while_restarting_ends_its_restart() {
    let mut sim = Sim::new(crdt(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Up, Exited], &["restart p2 both"]),
        (10, &[Up, Up], NONE),
    ]);
    assert_eq!(sim.history.restart_in_progress, None);
    assert!(!sim.history.peers.contains_key("p2"));
    assert_eq!(
        sim.log(),
        vec![(
            "p2".to_owned(),
            HealingAction::RestartPeer,
            HealingResult::Failed
        )]
    );
}

#[test]
fn the_healing_log_keeps_the_newest_entries() {
    let mut log = HealingLog::default();
    for i in 0..25u64 {
        log.push(HealingEntry {
            time: i,
            peer: "p0".to_owned(),
            action: HealingAction::SwarmConnect,
            reason: String::new(),
            result: HealingResult::Pending,
            detail: None,
        });
    }
    assert_eq!(log.len(), HEALING_LOG_LIMIT);
    assert_eq!(log.entries().next().map(|e| e.time), Some(5));
    assert_eq!(log.entries().next_back().map(|e| e.time), Some(24));
}

#[test]
fn history_round_trips_through_json() {
    let mut sim = Sim::new(crdt(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (
            10,
            &[Lonely, Exited, Up],
            &["restart p1 both", "connect p0 -> p2"],
        ),
    ]);
    let json = serde_json::to_value(&sim.history).expect("serialize");
    assert_eq!(
        json["log"][0]["action"], "RestartPeer",
        "as in status.healing"
    );
    assert_eq!(json["log"][0]["result"], "Pending");
    assert_eq!(json["restartInProgress"]["peer"], "p1");
    let back: ClusterHistory = serde_json::from_value(json).expect("deserialize");
    assert_eq!(back, sim.history);
}

#[test]
fn assess_scores_with_this_rounds_restart_penalty() {
    let policy = crdt(3);
    let first = assess(
        &policy,
        &reports(&[Up, Up, Up]),
        &ClusterHistory::default(),
        0,
    );
    assert_eq!(first.health.score, 100);
    let second = assess(
        &policy,
        &reports(&[Up, Up, Exited]),
        &first.decision.history,
        10_000,
    );
    assert_eq!(describe(&second.decision.actions), vec!["restart p2 both"]);
    assert_eq!(second.health.peers[2].breakdown.restart_penalty, 5);
    assert_eq!(second.health.peers[2].score, 0);
    assert_eq!(second.health.level, HealthLevel::Degraded);
    assert!(!second.connectivity.partitioned());
}

// ---------------------------------------------------------------------------------------------
// Properties

fn obs() -> impl Strategy<Value = Obs> {
    prop_oneof![
        6 => Just(Up),
        2 => Just(Hung),
        1 => Just(KuboHung),
        1 => Just(ClusterHung),
        2 => Just(Exited),
        1 => Just(KuboExited),
        1 => Just(Lonely),
    ]
}

/// Rounds: (seconds since the previous round, observations of up to 5 peers).
fn rounds() -> impl Strategy<Value = Vec<(u64, Vec<Obs>)>> {
    prop::collection::vec((1u64..=150, prop::collection::vec(obs(), 5)), 1..250)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// No sequence of observations yields two restarts at once: at most one per round, and a
    /// new one only after the previous peer answered again or the restart timeout passed.
    /// Restarts of any one peer within any rolling hour never exceed the budget.
    #[test]
    fn one_restart_at_a_time_and_never_over_budget(
        n in 1usize..=5,
        use_raft in any::<bool>(),
        threshold in 1u32..=4,
        budget in 0u32..=4,
        timeout_secs in prop::sample::select(vec![30u64, 120, 300]),
        rounds in rounds(),
    ) {
        let mut policy = if use_raft { raft(n as u32) } else { crdt(n as u32) };
        policy.failure_threshold = threshold;
        policy.max_restarts_per_hour = budget;
        policy.restart_timeout = Duration::from_secs(timeout_secs);
        let mut history = ClusterHistory::default();
        let mut now: UnixMillis = 0;
        // The restart in progress as the model sees it: (peer, since, answered again since).
        let mut running: Option<(String, UnixMillis, bool)> = None;
        let mut restarts: BTreeMap<String, Vec<UnixMillis>> = BTreeMap::new();

        for (secs, obs) in &rounds {
            now += secs * 1000;
            let round = reports(&obs[..n]);
            if let Some((peer, _, answered)) = &mut running
                && round.iter().any(|r| r.peer == *peer && apis_up(r))
            {
                *answered = true;
            }
            let d = decide(&policy, &round, &history, now);
            let restarted: Vec<&Action> = d
                .actions
                .iter()
                .filter(|a| a.kind() == HealingAction::RestartPeer)
                .collect();
            prop_assert!(restarted.len() <= 1, "two restarts in one round: {restarted:?}");
            if let Some(action) = restarted.first() {
                if let Some((peer, since, answered)) = &running {
                    let timed_out = now - since >= timeout_secs * 1000;
                    prop_assert!(
                        *answered || timed_out,
                        "restart of {} at {now} while {peer} (since {since}) still restarting",
                        action.peer()
                    );
                }
                running = Some((action.peer().to_owned(), now, false));
                restarts.entry(action.peer().to_owned()).or_default().push(now);
            }
            prop_assert!(d.withheld.is_empty());
            history = d.history;
        }

        let window = BUDGET_WINDOW.as_millis() as u64;
        for (peer, times) in &restarts {
            prop_assert!(budget > 0, "{peer} restarted with a zero budget");
            for (i, t) in times.iter().enumerate() {
                if let Some(later) = times.get(i + budget as usize) {
                    prop_assert!(
                        later - t >= window,
                        "{peer}: {} restarts within an hour: {times:?}",
                        budget + 1
                    );
                }
            }
        }
    }

    /// Report only never acts, and deciding is deterministic.
    #[test]
    fn report_only_never_acts_and_decisions_replay(
        n in 1usize..=5,
        paused in any::<bool>(),
        rounds in rounds(),
    ) {
        let mut policy = crdt(n as u32);
        policy.paused = paused;
        policy.auto_heal = false;
        let mut history = ClusterHistory::default();
        let mut now = 0;
        for (secs, obs) in rounds.iter().take(60) {
            now += secs * 1000;
            let round = reports(&obs[..n]);
            let d = decide(&policy, &round, &history, now);
            prop_assert!(d.actions.is_empty());
            prop_assert!(d.history.restart_in_progress.is_none());
            prop_assert_eq!(&d, &decide(&policy, &round, &history, now));
            history = d.history;
        }
    }
}
