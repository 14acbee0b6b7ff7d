//! Swarm reconnects, report-only mode (paused, autoHeal off), the healing log and history, the
//! score of an assessed round, and properties over random observation sequences.

use super::*;

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
        1 => Just(Split),
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
