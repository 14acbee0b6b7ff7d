//! The probe clients against real Kubo and IPFS Cluster daemons.

use std::time::{Duration, Instant};

use ipfs_kit_operator::probe::report::{FailureKind, ProcessState};
use ipfs_kit_operator::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
use nix::sys::signal::Signal;

use crate::support::ipfs::IpfsWorld;
use crate::support::wait_for;

fn targets(world: &IpfsWorld) -> Vec<PeerTarget> {
    world
        .peers
        .iter()
        .map(|p| PeerTarget {
            peer: format!("peer-{}", p.index),
            kubo: Endpoint::new(&p.kubo_api),
            cluster: Endpoint::new(&p.cluster_api),
            kubo_process: ProcessState::Running,
            cluster_process: ProcessState::Running,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_report_what_the_daemons_really_say() {
    let world = IpfsWorld::start(3).await;
    let cid = world.put_block(0, b"probe test block").await;
    world.pin(0, &cid).await;
    world.wait_pinned_everywhere(&cid).await;

    let prober = Prober::new(Duration::from_secs(5)).expect("prober");
    let targets = targets(&world);
    // Swarm connections and cluster metrics settle within a few seconds of start.
    let reports = wait_for(
        "every probe to succeed",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let reports = prober.round(&targets, DEFAULT_CONCURRENCY).await;
            reports
                .iter()
                .all(|r| r.kubo.is_ok() && r.cluster.is_ok())
                .then_some(reports)
        },
    )
    .await;
    for (report, peer) in reports.iter().zip(&world.peers) {
        assert_eq!(report.peer, format!("peer-{}", peer.index));
        let kubo = report.kubo.as_ref().expect("kubo");
        assert_eq!(kubo.peer_id, peer.kubo_peer_id);
        assert_eq!(
            format!("v{}", kubo.version),
            crate::support::tools::version("kubo")
        );
        assert!(
            kubo.agent_version.starts_with("kubo/"),
            "{}",
            kubo.agent_version
        );
        for other in world.peers.iter().filter(|o| o.index != peer.index) {
            assert!(kubo.swarm_peers.contains(&other.kubo_peer_id), "{kubo:?}");
        }
        assert!(kubo.repo_size > 0, "{kubo:?}");
        assert!(kubo.total_in > 0 && kubo.total_out > 0, "{kubo:?}");

        let cluster = report.cluster.as_ref().expect("cluster");
        assert_eq!(cluster.peer_id, peer.cluster_peer_id);
        assert_eq!(cluster.peername, format!("peer-{}", peer.index));
        assert!(cluster.version.starts_with("1.1.6"), "{}", cluster.version);
        assert_eq!(cluster.peers_seen.len(), 3, "{cluster:?}");
        assert_eq!(cluster.cluster_peers.len(), 3, "{cluster:?}");
        assert_eq!(cluster.ipfs_error, None);
        let pins = cluster.pins.as_ref().expect("pin counts");
        assert_eq!(pins.pinned, 1, "{cluster:?}");
        assert_eq!(pins.error + pins.queued + pins.pinning, 0, "{cluster:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_daemons_time_out_without_delaying_the_others() {
    let world = IpfsWorld::start(3).await;
    let timeout = Duration::from_secs(2);
    let prober = Prober::new(timeout).expect("prober");
    let targets = targets(&world);

    // Two daemons hang: alive, but their APIs never answer.
    world.peers[1].kubo.signal(Signal::SIGSTOP);
    world.peers[2]
        .cluster
        .as_ref()
        .expect("cluster")
        .signal(Signal::SIGSTOP);

    let started = Instant::now();
    let reports = prober.round(&targets, DEFAULT_CONCURRENCY).await;
    let took = started.elapsed();

    world.peers[1].kubo.signal(Signal::SIGCONT);
    world.peers[2]
        .cluster
        .as_ref()
        .expect("cluster")
        .signal(Signal::SIGCONT);

    assert!(reports[0].kubo.is_ok(), "{:?}", reports[0].kubo);
    // Peer 0's cluster answers; its peerset stream shows who answered in time: not peer 2.
    let seen = &reports[0]
        .cluster
        .as_ref()
        .expect("cluster peer 0")
        .peers_seen;
    assert!(!seen.contains(&world.peers[2].cluster_peer_id), "{seen:?}");
    assert!(seen.contains(&world.peers[0].cluster_peer_id), "{seen:?}");
    let hung_kubo = reports[1]
        .kubo
        .as_ref()
        .expect_err("peer 1 Kubo is stopped");
    assert_eq!(hung_kubo.kind, FailureKind::Timeout, "{hung_kubo:?}");
    // Peer 1's cluster daemon is alive and says it is waiting on its Kubo.
    let stalled = reports[1]
        .cluster
        .as_ref()
        .expect("cluster peer 1 is alive");
    assert!(stalled.ipfs_error.is_some(), "{stalled:?}");
    assert!(reports[2].kubo.is_ok(), "{:?}", reports[2].kubo);
    let hung_cluster = reports[2]
        .cluster
        .as_ref()
        .expect_err("peer 2 Cluster is stopped");
    assert_eq!(hung_cluster.kind, FailureKind::Timeout, "{hung_cluster:?}");
    // Probed one after the other, two hung daemons would cost two timeouts.
    assert!(
        took < 2 * timeout,
        "the round took {took:?}, timeout {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_daemon_is_reported_unreachable() {
    let mut world = IpfsWorld::start(2).await;
    let prober = Prober::new(Duration::from_secs(2)).expect("prober");
    world.peers[1].kubo.stop(Duration::from_secs(10));
    let reports = prober.round(&targets(&world), DEFAULT_CONCURRENCY).await;
    assert!(reports[0].kubo.is_ok(), "{:?}", reports[0].kubo);
    let down = reports[1]
        .kubo
        .as_ref()
        .expect_err("peer 1 Kubo is stopped");
    assert_eq!(down.kind, FailureKind::Unreachable, "{down:?}");
    // Its cluster peer is up and says it cannot reach its Kubo.
    let cluster = reports[1].cluster.as_ref().expect("cluster peer 1 answers");
    assert!(cluster.ipfs_error.is_some(), "{cluster:?}");
    assert!(
        cluster.pins.is_err(),
        "pins cannot be counted without Kubo: {cluster:?}"
    );
}
