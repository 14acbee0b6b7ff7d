use super::*;

fn target(peer: &str, api: DaemonApi, ip: &str, answered: bool) -> PingTarget {
    PingTarget {
        peer: peer.into(),
        api,
        endpoint: Endpoint::at(ip, 5001),
        answered,
    }
}

fn timeout() -> ProbeResult<()> {
    Err(ProbeFailure {
        kind: FailureKind::Timeout,
        message: "POST /api/v0/version: operation timed out".into(),
    })
}

/// Two misses are not enough; the third makes the daemon hung (once), one answer clears it.
#[test]
fn three_missed_pings_in_a_row_make_a_daemon_hung_one_answer_clears_it() {
    let mut m = Misses::new(Duration::from_secs(1), 3);
    let kubo = target("web-0", DaemonApi::Kubo, "10.0.0.1", true);
    assert!(!m.record(&kubo, timeout()));
    assert!(!m.record(&kubo, Ok(())), "an answer in between starts over");
    assert!(!m.record(&kubo, timeout()));
    assert!(!m.record(&kubo, timeout()));
    assert!(m.hung().is_empty());
    assert!(m.record(&kubo, timeout()), "the third miss in a row");
    let hung = m.hung();
    let why = &hung[&("web-0".to_owned(), DaemonApi::Kubo)];
    assert_eq!(why.kind, FailureKind::Timeout);
    assert!(
        why.message.starts_with(
            "hung: no answer to 3 liveness pings in a row (POST /api/v0/version, 1s timeout each)"
        ),
        "{}",
        why.message
    );
    assert!(!m.record(&kubo, timeout()), "still hung: no new verdict");
    assert!(m.record(&kubo, Ok(())), "answers again");
    assert!(m.hung().is_empty());
    // Refused connections are an exit, not a hang.
    let refused = || {
        Err(ProbeFailure {
            kind: FailureKind::Unreachable,
            message: "connection refused".into(),
        })
    };
    for _ in 0..5 {
        assert!(!m.record(&kubo, refused()));
    }
    assert!(m.hung().is_empty());
}

/// Only daemons that answered the last round are pinged, plus the hung ones until they answer
/// or move; a daemon that is gone, or at a new address, is forgotten.
#[test]
fn daemons_that_answered_or_are_hung_are_pinged_and_a_moved_one_starts_over() {
    let mut m = Misses::new(Duration::from_secs(1), 2);
    let answered = target("web-0", DaemonApi::Cluster, "10.0.0.1", true);
    let never = target("web-1", DaemonApi::Cluster, "10.0.0.2", false);
    assert!(m.wants(&answered) && !m.wants(&never));
    m.record(&answered, timeout());
    m.record(&answered, timeout());
    let hung_now = target("web-0", DaemonApi::Cluster, "10.0.0.1", false);
    assert!(m.wants(&hung_now), "hung: pinged until it answers");
    let moved = target("web-0", DaemonApi::Cluster, "10.0.0.9", false);
    assert!(!m.wants(&moved), "a new pod is the round's to judge");
    m.retain(std::slice::from_ref(&moved));
    assert!(m.hung().is_empty(), "forgotten at its old address");
    m.record(&answered, timeout());
    m.retain(&[]);
    assert!(m.entries.is_empty());
}

/// A hung Kubo fails its peer's report and leaves IPFS Cluster up but cut off from it; a hung
/// IPFS Cluster fails; the other peers keep their answers.
#[test]
fn the_overlay_marks_only_the_hung_daemons_as_not_answering() {
    let mut reports = crate::reconcile::connectivity::tests::mesh(2);
    let mut hung = HungSet::new();
    let failure = ProbeFailure {
        kind: FailureKind::Timeout,
        message: "hung: no answer".into(),
    };
    hung.insert((reports[0].peer.clone(), DaemonApi::Kubo), failure.clone());
    let untouched = reports[1].clone();
    for r in &mut reports {
        overlay(r, &hung);
    }
    assert_eq!(reports[0].kubo.as_ref().err(), Some(&failure));
    let cluster = reports[0].cluster.as_ref().expect("cluster still up");
    assert!(
        cluster
            .ipfs_error
            .as_deref()
            .is_some_and(|e| e.contains("its Kubo does not answer (hung: no answer)")),
        "{cluster:?}"
    );
    assert_eq!(reports[1], untouched);
    hung.insert(
        (reports[1].peer.clone(), DaemonApi::Cluster),
        failure.clone(),
    );
    overlay(&mut reports[1], &hung);
    assert!(reports[1].kubo.is_ok());
    assert_eq!(reports[1].cluster.as_ref().err(), Some(&failure));
    assert!(is_hung(&hung, &reports[1].peer));
}

/// A ping round of a stopped daemon (accepts connections, never answers) misses; a refused port
/// misses; an answering one does not.
#[tokio::test]
async fn a_ping_times_out_on_a_daemon_that_accepts_but_never_answers() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let client = crate::probe::IpfsClient::new().expect("client");
    let at = Endpoint::new(format!("http://{addr}"));
    let started = std::time::Instant::now();
    let failure = client
        .ping(DaemonApi::Cluster, &at, Duration::from_millis(300))
        .await
        .expect_err("no answer");
    assert_eq!(failure.kind, FailureKind::Timeout, "{failure:?}");
    assert!(failure.message.starts_with("GET /health"), "{failure:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(silent);
    let refused = client
        .ping(DaemonApi::Kubo, &at, Duration::from_millis(300))
        .await
        .expect_err("refused");
    assert_eq!(refused.kind, FailureKind::Unreachable, "{refused:?}");
}

/// The monitor pings what answered, reports a daemon that stops answering as hung within the
/// interval x misses (plus one timeout), and drops it when told the daemon is gone.
#[tokio::test]
async fn the_monitor_finds_a_silent_daemon_and_calls_back() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let settings = monitor::Settings {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(100),
        misses_to_hung: 3,
        concurrency: 4,
    };
    let monitor = Monitor::spawn(
        "test".into(),
        crate::probe::IpfsClient::new().expect("client"),
        settings,
        move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        },
    );
    let mut changes = monitor.changes();
    let t = PingTarget {
        peer: "p-0".into(),
        api: DaemonApi::Cluster,
        endpoint: Endpoint::new(format!("http://{addr}")),
        answered: true,
    };
    let started = std::time::Instant::now();
    monitor.watch(vec![t]);
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("found hung in time")
        .expect("monitor alive");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(monitor.hung().len(), 1);
    monitor.watch(Vec::new());
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("forgotten in time")
        .expect("monitor alive");
    assert!(monitor.hung().is_empty());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
