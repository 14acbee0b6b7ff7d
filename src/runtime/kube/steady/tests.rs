use super::*;
use crate::api::IpfsClusterSpec;
use crate::probe::Endpoint;
use crate::probe::report::{PinCounts, ProcessState};
use crate::reconcile::connectivity::tests::mesh;
use crate::reconcile::{ClusterHistory, HealthPolicy, assess};

const NOW: UnixMillis = 1_000_000_000;

fn policy(auto_heal: bool) -> HealthPolicy {
    let mut spec = IpfsClusterSpec::default();
    spec.health.auto_heal = auto_heal;
    HealthPolicy::from_spec(&spec, 1).expect("policy")
}

fn settled_round(assessment: &Assessment) -> Round<'_> {
    Round::new(assessment, NOW)
}

/// A healthy cluster goes steady; so does one whose failing peer is only reported (autoHeal off),
/// in its start grace (until its end) and once its restart is withheld; with healing on, a
/// failing peer keeps its reconciles.
#[test]
fn only_a_round_with_nothing_pending_hands_its_cluster_over() {
    let healthy = assess(&policy(true), &mesh(3), &ClusterHistory::default(), NOW);
    assert_eq!(why_not(&settled_round(&healthy)), None);

    let mut down = mesh(3);
    down[1].kubo = Err(crate::probe::report::ProbeFailure {
        kind: FailureKind::Unreachable,
        message: "POST /api/v0/id: tcp connect error: Connection refused (os error 111)".into(),
    });
    // Healing on: a new peer that does not answer counts towards a restart.
    let healing = assess(&policy(true), &down, &ClusterHistory::default(), NOW);
    let grace = policy(true).restart_timeout;
    let round = Round {
        grace_ends: grace_ends(&healing, &[], grace, NOW),
        ..settled_round(&healing)
    };
    assert_eq!(why_not(&round), Some("a peer is not settled"));
    // Report only: settled in its start grace (requeued for its end), and once its restart is
    // withheld.
    let report_only = policy(false);
    let mut history = ClusterHistory::default();
    let mut now = NOW;
    for round in 0..40 {
        let a = assess(&report_only, &down, &history, now);
        let ends = grace_ends(&a, &[], grace, now);
        let starting = a.decision.peers[1].state == HealingState::Starting;
        assert_eq!(ends.is_some(), starting, "round {round}");
        if starting {
            assert_eq!(ends, Some(NOW + 300_000));
            let unknown = Round {
                now,
                ..settled_round(&a)
            };
            assert_eq!(why_not(&unknown), Some("a peer's start grace ends"));
        }
        let r = Round {
            now,
            grace_ends: ends,
            ..settled_round(&a)
        };
        assert_eq!(
            why_not(&r),
            None,
            "round {round}: {:?}",
            a.decision.peers[1]
        );
        history = a.decision.history;
        now += 20_000;
    }
}

/// Each thing a later round would change without a probe answering differently keeps the
/// cluster with its reconciles, and says why.
#[test]
fn what_is_pending_is_named() {
    let healthy = assess(&policy(true), &mesh(3), &ClusterHistory::default(), NOW);
    type Change = fn(&mut Round<'_>);
    let cases: [(Change, &str); 6] = [
        (|r| r.requested = true, "a request asked for the round"),
        (|r| r.written = true, "the status changed"),
        (|r| r.rolling = true, "a rollout is under way"),
        (|r| r.hung = true, "a daemon is hung"),
        (|r| r.alert_fires = Some(NOW), "an alert fires"),
        (|r| r.collecting = true, "a garbage collection runs"),
    ];
    for (change, why) in cases {
        let mut round = settled_round(&healthy);
        change(&mut round);
        assert_eq!(why_not(&round), Some(why));
    }
    // An alert waiting for its `for` duration: steady until it fires, the earlier deadline.
    let waiting = Round {
        alert_fires: Some(NOW + 60_000),
        grace_ends: Some(NOW + 300_000),
        ..settled_round(&healthy)
    };
    assert_eq!(why_not(&waiting), None);
    assert_eq!(waiting.deadline(), Some(NOW + 60_000));
    let problems = ["pod web-0 is Pending: 0/1 nodes are available".to_owned()];
    let round = Round {
        problems: &problems,
        ..settled_round(&healthy)
    };
    assert_eq!(why_not(&round), Some("the pods have problems"));
    let mut restarted = healthy.clone();
    restarted
        .decision
        .history
        .peers
        .entry("p0".into())
        .or_default()
        .restarts
        .push(NOW - 30 * 60_000);
    assert_eq!(
        why_not(&settled_round(&restarted)),
        Some("a restart is inside the budget's hour")
    );
}

/// Traffic moves the figures a steady round keeps to itself; a daemon's answer, a peer list, a
/// repository near its StorageMax or past the collection's watermark, every pin in error, do not.
#[test]
fn the_signature_leaves_out_the_volatile_figures_only() {
    let gc = GcSettings::from_spec(&IpfsClusterSpec::default().kubo);
    let base = mesh(2);
    let same = signature(&base, &gc);
    let mut busy = base.clone();
    if let Ok(k) = busy[0].kubo.as_mut() {
        k.total_in += 1 << 20;
        k.total_out += 1 << 10;
        k.repo_size += 4096;
    }
    if let Ok(c) = busy[1].cluster.as_mut() {
        c.pins = Ok(PinCounts {
            pinned: 40,
            queued: 2,
            pinning: 1,
            error: 0,
        });
    }
    assert_eq!(signature(&busy, &gc), same);
    assert_ne!(volatile(&busy), volatile(&base));

    let mut full = base.clone();
    if let Ok(k) = full[0].kubo.as_mut() {
        k.repo_size = k.storage_max;
    }
    assert_ne!(signature(&full, &gc), same, "near StorageMax");
    let mut errors = base.clone();
    if let Ok(c) = errors[1].cluster.as_mut() {
        c.pins = Ok(PinCounts {
            error: 3,
            ..PinCounts::default()
        });
    }
    assert_ne!(signature(&errors, &gc), same, "pins in error");
    let mut lonely = base.clone();
    if let Ok(k) = lonely[0].kubo.as_mut() {
        k.swarm_peers.clear();
    }
    assert_ne!(signature(&lonely, &gc), same, "swarm peers");
}

/// A port nobody listens on (bound, then closed).
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("address").port()
}

/// A steady cluster whose daemons refuse is dialled bare every interval and asks for nothing;
/// once one of them accepts connections it is probed in full, its cluster is reconciled at once,
/// and the round that saw it is the last round a reconcile reuses.
#[tokio::test]
async fn refusing_daemons_stay_quiet_until_one_accepts() {
    let (kubo_port, cluster_port) = (closed_port().await, closed_port().await);
    let target = PeerTarget {
        peer: "web-0".into(),
        kubo: Endpoint::new(format!("http://127.0.0.1:{kubo_port}")),
        cluster: Endpoint::new(format!("http://127.0.0.1:{cluster_port}")),
        kubo_process: ProcessState::Running,
        cluster_process: ProcessState::Running,
    };
    let ipfs = IpfsClient::new().expect("client");
    let timeout = Duration::from_secs(1);
    let first = ipfs.prober(timeout).peer(&target).await;
    assert!(refused(&first.kubo) && refused(&first.cluster), "{first:?}");

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rounds = Arc::new(Rounds::default());
    let metrics = Arc::new(Metrics::default());
    let steady = Steady::new(ipfs, metrics.clone(), Latest::default(), rounds.clone(), tx);
    let key = Key::new("web").within("ns");
    let interval = Duration::from_millis(50);
    steady.start(
        key.clone(),
        Handoff {
            targets: vec![target],
            reports: vec![first.clone()],
            interval,
            timeout,
            refresh: Duration::from_secs(60),
            gc: GcSettings::from_spec(&IpfsClusterSpec::default().kubo),
        },
    );
    let exported = || {
        metrics.encode().lines().find_map(|l| {
            l.strip_prefix("ipfs_kit_steady_clusters ")
                .map(str::to_owned)
        })
    };
    assert_eq!(exported().as_deref(), Some("1"));
    tokio::time::sleep(interval * 8).await;
    assert!(rx.try_recv().is_err(), "nothing changed: no reconcile");
    assert!(
        rounds.last(&key).is_none(),
        "a round of refusals leaves nothing for a reconcile to reuse"
    );

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", kubo_port))
        .await
        .expect("bind the Kubo port again");
    let answered = tokio::time::timeout(interval * 80, rx.recv()).await;
    assert_eq!(answered.ok().flatten(), Some(key.clone()));
    let last = rounds.last(&key).expect("recorded");
    assert_ne!(last.reports[0].1.kubo, first.kubo, "{:?}", last.reports[0]);
    drop(listener);
    steady.stop(&key);
    assert_eq!(exported().as_deref(), Some("0"), "stopped: not steady");
}
