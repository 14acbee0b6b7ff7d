//! Restarts: failure threshold, which daemons, one at a time, backoff, budget, raft quorum, and
//! the mapping from spec to policy.

use super::*;

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

/// Kubernetes: kubelet restarts an exited container itself. The operator leaves it alone (a pod
/// deletion would restart the other daemon too and change the address), however many rounds it
/// takes, and counts failures only from when the container runs and is ready again.
#[test]
fn what_the_runtime_restarts_is_not_restarted_again() {
    let mut sim = Sim::new(crdt(3));
    let ds = sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (1, &[Up, KuboRestarting, Up], NONE),
        (1, &[Up, KuboRestarting, Up], NONE),
        (1, &[Up, KuboRestarting, Up], NONE),
        (1, &[Up, KuboStarting, Up], NONE),
        (1, &[Up, KuboStarting, Up], NONE),
        (1, &[Up, KuboHung, Up], NONE),
        (10, &[Up, Up, Up], NONE),
    ]);
    assert_eq!(sim.state(&ds[1], "p1"), HealingState::Failing);
    let reason = ds[1]
        .peer("p1")
        .map(|p| p.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("restarted by the runtime"), "{reason}");
    assert_eq!(sim.state(&ds[4], "p1"), HealingState::Starting);
    assert!(sim.log().is_empty(), "{:?}", sim.log());
    // A hang after it is back is judged as any other: failureThreshold rounds, then a restart.
    sim.run(&[
        (10, &[Up, KuboHung, Up], NONE),
        (10, &[Up, KuboHung, Up], NONE),
        (10, &[Up, KuboHung, Up], &["restart p1 kubo"]),
    ]);
}

/// Kubernetes reconciles on every pod event, so rounds can come seconds apart: a failure counts
/// once per probe interval, and `failureThreshold` failures still take that many intervals.
#[test]
fn rounds_faster_than_the_probe_interval_count_once_per_interval() {
    let mut sim = Sim::new(crdt(3));
    sim.run(&[
        (0, &[Up, Up, Up], NONE),
        (10, &[Up, Hung, Up], NONE),
        (1, &[Up, Hung, Up], NONE),
        (1, &[Up, Hung, Up], NONE),
        (1, &[Up, Hung, Up], NONE),
        (7, &[Up, Hung, Up], NONE),
        (2, &[Up, Hung, Up], NONE),
        (1, &[Up, Hung, Up], NONE),
        (6, &[Up, Hung, Up], &["restart p1 both"]),
    ]);
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
fn a_peer_split_off_the_cluster_rejoins_after_the_threshold() {
    let mut sim = Sim::new(crdt(3));
    let ds = sim.run(&[
        (0, &[Up, Up, Split], NONE),
        (10, &[Up, Up, Split], NONE),
        // Rounds more often than the interval do not count twice.
        (2, &[Up, Up, Split], NONE),
        (8, &[Up, Up, Split], NONE),
        // IPFS Cluster gets 90 s to reconnect by itself.
        (60, &[Up, Up, Split], NONE),
        (10, &[Up, Up, Split], &["restart p2 cluster"]),
        (10, &[Up, Up, Up], NONE),
    ]);
    assert_eq!(sim.state(&ds[0], "p2"), HealingState::Failing);
    assert_eq!(
        ds[1].peer("p2").map(|p| p.reason.as_str()),
        Some(
            "IPFS Cluster split off: [p2] apart from [p0, p1], the largest group of the \
             peerset; 2 of 3 rounds before it rejoins"
        )
    );
    let waiting = ds[4]
        .peer("p2")
        .map(|p| p.reason.clone())
        .unwrap_or_default();
    assert!(
        waiting.ends_with("rejoin in 10s unless it reconnects by itself"),
        "{waiting}"
    );
    assert_eq!(sim.state(&ds[5], "p2"), HealingState::Restarting);
    let reason = ds[5].actions[0].reason();
    assert!(reason.contains("for 1m30s"), "{reason}");
    assert!(reason.contains("rejoin"), "{reason}");
    assert_eq!(sim.state(&ds[6], "p2"), HealingState::Ok);
    assert_eq!(
        sim.log(),
        vec![(
            "p2".to_owned(),
            HealingAction::RestartPeer,
            HealingResult::Succeeded
        )]
    );
    // The majority's peers are not touched.
    for d in &ds {
        assert_eq!(sim.state(d, "p0"), HealingState::Ok);
    }
}

#[test]
fn a_split_that_heals_by_itself_costs_no_restart_and_pods_rejoin_whole() {
    let mut sim = Sim::new(crdt(3));
    sim.run(&[
        (0, &[Up, Up, Split], NONE),
        (10, &[Up, Up, Split], NONE),
        (10, &[Up, Up, Up], NONE),
        (10, &[Up, Up, Split], NONE),
        (10, &[Up, Up, Split], NONE),
    ]);
    let mut policy = crdt(3);
    policy.restart_unit = RestartUnit::Peer;
    let mut sim = Sim::new(policy);
    sim.run(&[
        (0, &[Split, Up, Up], NONE),
        (30, &[Split, Up, Up], NONE),
        (30, &[Split, Up, Up], NONE),
        (30, &[Split, Up, Up], &["restart p0 both"]),
    ]);
}
