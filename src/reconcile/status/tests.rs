use super::*;
use crate::probe::report::{FailureKind, ProcessState};
use crate::reconcile::{ClusterHistory, Consensus, HealthPolicy, assess};

const NOW: UnixMillis = 1_800_000_000_000;

fn unreachable(peer: &str) -> PeerReport {
    let f = |what: &str| ProbeFailure {
        kind: FailureKind::Unreachable,
        message: format!("{what}: connection refused"),
    };
    PeerReport {
        peer: peer.into(),
        kubo_process: ProcessState::Running,
        cluster_process: ProcessState::Running,
        kubo: Err(f("POST /api/v0/id")),
        cluster: Err(f("GET /id")),
    }
}

fn observe(
    reports: &[PeerReport],
    previous: Option<&IpfsClusterStatus>,
    now: UnixMillis,
) -> IpfsClusterStatus {
    let policy = HealthPolicy::new(3, Consensus::Crdt);
    let assessment = assess(&policy, reports, &ClusterHistory::default(), now);
    compute(&Observed {
        generation: Some(2),
        replicas: 3,
        paused: false,
        selector: "a=b".into(),
        pods: 3,
        rollout: None,
        upgrade: None,
        reports,
        assessment: &assessment,
        problems: &[],
        previous,
        now,
    })
}

#[test]
fn pods_without_daemons_are_reported_unhealthy_with_the_probe_errors() {
    let reports: Vec<_> = (0..3).map(|i| unreachable(&format!("demo-{i}"))).collect();
    let s = observe(&reports, None, NOW);
    assert_eq!(s.phase, Some(ClusterPhase::Unhealthy));
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.ready_replicas, Some(0));
    assert_eq!(s.replicas, Some(3));
    assert_eq!(s.health_score, Some(0));
    assert_eq!(s.peers.len(), 3);
    for p in &s.peers {
        let err = p.last_error.as_deref().expect("last error");
        assert!(err.contains("Kubo RPC: unreachable"), "{err}");
        assert_eq!(p.score, Some(0));
        assert!(
            matches!(p.state, PeerState::Starting | PeerState::Unhealthy),
            "{:?}",
            p.state
        );
    }
    let available =
        conditions::find_condition(&s.conditions, conditions::AVAILABLE).expect("Available");
    assert_eq!(available.status, "False");
    assert!(
        available.message.contains("connection refused"),
        "{}",
        available.message
    );
    assert!(conditions::is_true(&s.conditions, conditions::DEGRADED));
    assert!(!conditions::is_true(&s.conditions, conditions::READY));
    assert!(
        s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(2))
    );
}

#[test]
fn status_is_rewritten_for_health_at_once_for_traffic_once_a_minute_and_never_for_time_alone() {
    let reports: Vec<_> = (0..3).map(|i| unreachable(&format!("demo-{i}"))).collect();
    let first = observe(&reports, None, NOW);
    assert!(needs_write(None, &first, NOW, Duration::from_secs(60)));
    // Ten seconds later, same observations: only lastProbe moved.
    let later = NOW + 10_000;
    let second = observe(&reports, Some(&first), later);
    assert_ne!(first, second, "lastProbe moved");
    assert!(!needs_write(
        Some(&first),
        &second,
        later,
        Duration::from_secs(60)
    ));
    // Transition times are kept when nothing flips.
    assert_eq!(first.conditions, second.conditions);
    // Nor after the refresh period: unchanged health writes nothing, however long.
    let much_later = NOW + 3_600_000;
    let third = observe(&reports, Some(&first), much_later);
    assert!(!needs_write(
        Some(&first),
        &third,
        much_later,
        Duration::from_secs(60)
    ));
    // Traffic alone (bandwidth, repository size, pin counts) waits for the refresh period.
    let mut busy = second.clone();
    for p in &mut busy.peers {
        p.bytes_in = Some(1 << 30);
        p.bytes_out = Some(1 << 29);
        p.repo_size = Some(1 << 28);
        p.pins_pinned = Some(1000);
        p.pins_queued = Some(7);
        p.pins_pinning = Some(3);
    }
    assert!(!needs_write(
        Some(&first),
        &busy,
        later,
        Duration::from_secs(60)
    ));
    let mut busy_later = third.clone();
    for (p, b) in busy_later.peers.iter_mut().zip(&busy.peers) {
        p.bytes_in = b.bytes_in;
        p.repo_size = b.repo_size;
    }
    assert!(needs_write(
        Some(&first),
        &busy_later,
        much_later,
        Duration::from_secs(60)
    ));
    // A real change is written at once: an error, pins in error, a state.
    let mut errors = second.clone();
    errors.peers[1].pins_error = Some(2);
    assert!(needs_write(
        Some(&first),
        &errors,
        later,
        Duration::from_secs(60)
    ));
    let mut changed = second.clone();
    changed.peers[0].last_error = Some("other".into());
    assert!(needs_write(
        Some(&first),
        &changed,
        later,
        Duration::from_secs(60)
    ));
}

#[test]
fn paused_and_missing_pods_have_their_own_phase() {
    let policy = HealthPolicy::new(3, Consensus::Crdt);
    let assessment = assess(&policy, &[], &ClusterHistory::default(), NOW);
    let base = Observed {
        generation: Some(1),
        replicas: 3,
        paused: true,
        selector: String::new(),
        pods: 0,
        rollout: Some("0/3 peer pods exist".into()),
        upgrade: None,
        reports: &[],
        assessment: &assessment,
        problems: &[],
        previous: None,
        now: NOW,
    };
    assert_eq!(compute(&base).phase, Some(ClusterPhase::Paused));
    let pending = compute(&Observed {
        paused: false,
        ..base
    });
    assert_eq!(pending.phase, Some(ClusterPhase::Pending));
    assert!(conditions::is_true(
        &pending.conditions,
        conditions::PROGRESSING
    ));
}

#[test]
fn a_status_with_healing_steps_read_back_needs_no_write() {
    let entry = HealingEntry {
        time: NOW + 456,
        peer: "demo-1".into(),
        action: crate::api::HealingAction::RestartPeer,
        reason: "Kubo exited".into(),
        result: crate::api::HealingResult::Pending,
        detail: None,
    };
    let reports: Vec<_> = (0..3).map(|i| unreachable(&format!("demo-{i}"))).collect();
    let mut s = observe(&reports, None, NOW);
    s.healing = vec![healing_record(&entry)];
    let stored: IpfsClusterStatus =
        serde_json::from_str(&serde_json::to_string(&s).expect("json")).expect("back");
    assert!(!needs_write(
        Some(&stored),
        &s,
        NOW,
        Duration::from_secs(60)
    ));
}
