//! Tests of the peer and cluster scores.

use super::*;
use crate::probe::report::{FailureKind, PinCounts};
use crate::reconcile::connectivity::tests::{cluster_id, failure, kubo_id, mesh, peer};
use crate::reconcile::policy::Consensus;

fn policy(replicas: u32) -> HealthPolicy {
    HealthPolicy::new(replicas, Consensus::Crdt)
}

fn scores(policy: &HealthPolicy, reports: &[PeerReport]) -> ClusterHealth {
    let view = ConnectivityView::from_reports(reports);
    score_cluster(policy, reports, &view, &BTreeMap::new())
}

fn score_of(policy: &HealthPolicy, reports: &[PeerReport], peer: &str) -> PeerScore {
    let view = ConnectivityView::from_reports(reports);
    let report = reports
        .iter()
        .find(|r| r.peer == peer)
        .expect("peer in reports");
    score_peer(policy, &view, report, 0)
}

#[test]
fn levels_change_exactly_at_the_thresholds() {
    assert_eq!(HealthLevel::from_score(100), HealthLevel::Healthy);
    assert_eq!(HealthLevel::from_score(80), HealthLevel::Healthy);
    assert_eq!(HealthLevel::from_score(79), HealthLevel::Degraded);
    assert_eq!(HealthLevel::from_score(50), HealthLevel::Degraded);
    assert_eq!(HealthLevel::from_score(49), HealthLevel::Unhealthy);
    assert_eq!(HealthLevel::from_score(0), HealthLevel::Unhealthy);
    assert_eq!(HealthLevel::Degraded.as_str(), "degraded");
}

#[test]
fn everything_up_scores_100() {
    let health = scores(&policy(3), &mesh(3));
    assert_eq!(health.score, 100);
    assert_eq!(health.level, HealthLevel::Healthy);
    for p in &health.peers {
        assert_eq!(p.score, 100, "{p:?}");
        assert!(p.findings.is_empty());
    }
    assert_eq!(health.reason, "3 peers: 3 healthy");
}

#[test]
fn a_single_peer_cluster_needs_no_connections() {
    let health = scores(&policy(1), &mesh(1));
    assert_eq!(health.score, 100);
}

#[test]
fn everything_down_scores_0() {
    let mut reports = mesh(3);
    for r in &mut reports {
        r.kubo = Err(failure(FailureKind::Unreachable));
        r.cluster = Err(failure(FailureKind::Timeout));
    }
    let health = scores(&policy(3), &reports);
    assert_eq!(health.score, 0);
    assert_eq!(health.level, HealthLevel::Unhealthy);
    assert!(health.peers.iter().all(|p| p.score == 0));
    assert_eq!(
        health.peers[0].findings,
        vec![
            "Kubo API down: unreachable: POST /api/v0/id: timed out after 5s",
            "IPFS Cluster API down: timeout: POST /api/v0/id: timed out after 5s",
        ]
    );
}

#[test]
fn exited_processes_count_as_down_even_with_a_stale_answer() {
    let mut reports = mesh(1);
    reports[0].kubo_process = ProcessState::Exited;
    reports[0].cluster_process = ProcessState::Exited;
    let p = score_of(&policy(1), &reports, "p0");
    assert_eq!(p.score, 0);
    assert_eq!(
        p.findings,
        vec!["Kubo process exited", "IPFS Cluster process exited"]
    );
}

#[test]
fn losing_either_api_makes_a_peer_unhealthy() {
    let mut reports = mesh(3);
    reports[0].kubo = Err(failure(FailureKind::Timeout));
    let p = score_of(&policy(3), &reports, "p0");
    // Kubo, swarm and link lost; cluster, membership and pins kept.
    assert_eq!(p.score, 45);
    assert_eq!(p.level, HealthLevel::Unhealthy);

    let mut reports = mesh(3);
    reports[0].cluster = Err(failure(FailureKind::Timeout));
    let p = score_of(&policy(3), &reports, "p0");
    // Cluster, link, membership and pins lost; Kubo and swarm kept.
    assert_eq!(p.score, 45);
    assert_eq!(p.level, HealthLevel::Unhealthy);
}

#[test]
fn cluster_not_reaching_its_kubo_costs_the_link() {
    let mut reports = mesh(3);
    if let Ok(c) = &mut reports[0].cluster {
        c.ipfs_error = Some("dial tcp 127.0.0.1:5001: connection refused".to_owned());
    }
    let p = score_of(&policy(3), &reports, "p0");
    assert_eq!(p.score, 100 - WEIGHT_KUBO_LINK as u8);
    assert_eq!(p.breakdown.kubo_link, 0);
    // An empty error string is no error.
    if let Ok(c) = &mut reports[0].cluster {
        c.ipfs_error = Some(String::new());
    }
    assert_eq!(score_of(&policy(3), &reports, "p0").score, 100);
}

#[test]
fn membership_is_the_share_of_other_answering_peers_listing_the_peer() {
    let mut reports = mesh(3);
    // p1 no longer lists p0 in /peers: p0 seen by 1 of 2.
    if let Ok(c) = &mut reports[1].cluster {
        c.peers_seen.retain(|id| *id != cluster_id("p0"));
    }
    let p = score_of(&policy(3), &reports, "p0");
    assert_eq!(p.breakdown.membership, WEIGHT_MEMBERSHIP / 2);
    assert_eq!(p.score, 87);
    assert_eq!(
        p.findings,
        vec!["cluster peer listed by 1 of 2 other answering peers"]
    );

    // Nobody lists it: exactly 75, degraded.
    if let Ok(c) = &mut reports[2].cluster {
        c.peers_seen.retain(|id| *id != cluster_id("p0"));
    }
    let p = score_of(&policy(3), &reports, "p0");
    assert_eq!(p.score, 75);
    assert_eq!(p.level, HealthLevel::Degraded);
}

#[test]
fn membership_is_not_judged_without_witnesses() {
    let mut reports = mesh(3);
    for r in &mut reports[1..] {
        r.cluster = Err(failure(FailureKind::Unreachable));
    }
    let p = score_of(&policy(3), &reports, "p0");
    assert_eq!(p.breakdown.membership, WEIGHT_MEMBERSHIP);
}

#[test]
fn swarm_points_scale_with_connections_to_required_minimum() {
    let mut pol = policy(5);
    pol.min_peer_connections = 4;
    let mut reports = mesh(5);
    if let Ok(k) = &mut reports[0].kubo {
        k.swarm_peers = vec![kubo_id("p1")];
    }
    // Others still list p0, but p0's own view counts: 1 of 4.
    let p = score_of(&pol, &reports, "p0");
    assert_eq!(p.breakdown.swarm, WEIGHT_SWARM / 4);
    assert_eq!(
        p.findings,
        vec![
            "Kubo swarm connected to 1 of the 4 other peers required \
             (minPeerConnections 4, 4 other peers answering)"
        ]
    );
    // With no swarm connection to any sibling the points alone would leave it healthy (80):
    // it is capped below the threshold, degraded, and the finding names why.
    if let Ok(k) = &mut reports[0].kubo {
        k.swarm_peers.clear();
    }
    let p = score_of(&pol, &reports, "p0");
    assert_eq!(p.breakdown.total(), HEALTHY_MIN_SCORE);
    assert_eq!(p.score, HEALTHY_MIN_SCORE - 1);
    assert_eq!(p.level, HealthLevel::Degraded);
    assert!(
        p.findings[0].starts_with("Kubo swarm connected to 0 of the 4 other peers"),
        "{:?}",
        p.findings
    );
}

#[test]
fn the_swarm_minimum_shrinks_to_the_peers_that_answer() {
    let mut pol = policy(3);
    pol.min_peer_connections = 2;
    let mut reports = mesh(3);
    reports[2].kubo = Err(failure(FailureKind::Unreachable));
    // p0 sees only p1 now; p2's Kubo is down, so 1 connection is all that can be asked.
    let p = score_of(&pol, &reports, "p0");
    assert_eq!(p.breakdown.swarm, WEIGHT_SWARM);
    assert_eq!(swarm_required(&pol, 1), 1);
    assert_eq!(swarm_required(&pol, 0), 0);
    pol.min_peer_connections = 0;
    assert_eq!(swarm_required(&pol, 7), 0);
}

#[test]
fn pin_errors_cost_half_then_all_of_the_pin_points() {
    let mut reports = mesh(1);
    let set_pins = |r: &mut PeerReport, pins| {
        if let Ok(c) = &mut r.cluster {
            c.pins = pins;
        }
    };
    set_pins(
        &mut reports[0],
        Ok(PinCounts {
            pinned: 9,
            error: 1,
            ..PinCounts::default()
        }),
    );
    let p = score_of(&policy(1), &reports, "p0");
    assert_eq!(p.breakdown.pins, WEIGHT_PINS / 2);
    assert_eq!(p.findings, vec!["1 of 10 pins in error"]);

    set_pins(
        &mut reports[0],
        Ok(PinCounts {
            error: 3,
            ..PinCounts::default()
        }),
    );
    assert_eq!(score_of(&policy(1), &reports, "p0").breakdown.pins, 0);

    set_pins(&mut reports[0], Ok(PinCounts::default()));
    assert_eq!(
        score_of(&policy(1), &reports, "p0").breakdown.pins,
        WEIGHT_PINS
    );

    set_pins(&mut reports[0], Err(failure(FailureKind::HttpStatus)));
    let p = score_of(&policy(1), &reports, "p0");
    assert_eq!(p.breakdown.pins, 0);
    assert_eq!(p.score, 90);
}

#[test]
fn restarts_cost_points_up_to_a_cap_and_never_below_zero() {
    let reports = mesh(1);
    let view = ConnectivityView::from_reports(&reports);
    let at = |restarts| score_peer(&policy(1), &view, &reports[0], restarts).score;
    assert_eq!(at(0), 100);
    assert_eq!(at(1), 95);
    assert_eq!(at(4), 80);
    assert_eq!(at(5), 75);
    assert_eq!(at(50), 100 - MAX_RESTART_PENALTY as u8);

    let mut down = mesh(1);
    down[0].kubo = Err(failure(FailureKind::Timeout));
    down[0].cluster = Err(failure(FailureKind::Timeout));
    let view = ConnectivityView::from_reports(&down);
    assert_eq!(score_peer(&policy(1), &view, &down[0], 5).score, 0);
}

#[test]
fn cluster_score_is_the_mean_with_missing_peers_as_zero() {
    let mut reports = mesh(3);
    reports[2].kubo = Err(failure(FailureKind::Timeout));
    reports[2].cluster = Err(failure(FailureKind::Timeout));
    let health = scores(&policy(3), &reports);
    // p0 and p1 keep full points: p2's Kubo is down, so no swarm connection to it is
    // required, and p2 is no membership witness. (100 + 100 + 0) / 3, rounded down.
    assert_eq!(health.score, 66);
    assert_eq!(health.level, HealthLevel::Degraded);
    assert_eq!(health.reason, "3 peers: 2 healthy, 1 unhealthy (p2: 0)");

    // Only two of three desired peers reported at all.
    let health = scores(&policy(3), &mesh(2));
    assert_eq!(health.score, 66);
    assert_eq!(health.missing, 1);
    assert_eq!(health.reason, "3 peers: 2 healthy, 1 not reported");
}

#[test]
fn an_unhealthy_peer_caps_a_large_cluster_at_degraded() {
    let mut reports = mesh(10);
    reports[9].kubo_process = ProcessState::Exited;
    reports[9].cluster_process = ProcessState::Exited;
    let health = scores(&policy(10), &reports);
    assert_eq!(health.score, 90);
    assert_eq!(health.level, HealthLevel::Degraded);
}

#[test]
fn a_partition_caps_the_cluster_at_degraded() {
    let mut pol = policy(4);
    pol.min_peer_connections = 1;
    let reports = vec![
        peer("p0", &["p1"]),
        peer("p1", &["p0"]),
        peer("p2", &["p3"]),
        peer("p3", &["p2"]),
    ];
    let health = scores(&pol, &reports);
    // Every peer: swarm fine (1 >= 1), membership 1 of 3 -> 8 of 25.
    assert!(health.peers.iter().all(|p| p.score == 83), "{health:?}");
    assert_eq!(health.score, 83);
    assert_eq!(health.level, HealthLevel::Degraded);
    assert!(health.partition.is_some());
    assert!(health.reason.contains("split into [p0, p1] | [p2, p3]"));
}

#[test]
fn no_peers_and_no_replicas_scores_zero() {
    let health = scores(&policy(0), &[]);
    assert_eq!(health.score, 0);
    assert_eq!(health.level, HealthLevel::Unhealthy);
}
