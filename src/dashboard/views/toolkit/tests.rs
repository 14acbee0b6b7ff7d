use serde_json::json;

use super::*;
use crate::api::IpfsClusterStatus;
use crate::dashboard::{PeerProcesses, ProcessPorts};

/// A peer whose Kubo and IPFS Cluster answered (`up`) or not, probed, in `state`.
fn peer(name: &str, state: &str, kubo_up: bool, cluster_up: bool) -> serde_json::Value {
    let mut p = json!({"name": name, "state": state, "score": 90, "restarts": 0,
        "lastProbe": "2026-11-30T10:00:00Z", "swarmPeers": 1, "clusterPeersSeen": 2});
    if kubo_up {
        p["kuboVersion"] = json!("0.42.0");
    } else {
        p["lastError"] = json!("Kubo RPC: unreachable: connection refused");
        p["swarmPeers"] = json!(null);
    }
    if cluster_up {
        p["clusterVersion"] = json!("1.1.6");
    }
    p
}

fn entry(namespace: Option<&str>, score: i32, peers: Vec<serde_json::Value>) -> ClusterEntry {
    let status: IpfsClusterStatus =
        serde_json::from_value(json!({"healthScore": score, "peers": peers})).expect("status");
    ClusterEntry {
        namespace: namespace.map(str::to_string),
        name: "demo".into(),
        replicas: 2,
        paused: false,
        status,
        uid: None,
        resource_version: None,
        processes: Vec::new(),
    }
}

fn local_processes(peer: &str, kubo_pid: Option<i32>) -> PeerProcesses {
    PeerProcesses {
        peer: peer.into(),
        kubo_pid,
        cluster_pid: Some(200),
        ports: Some(ProcessPorts {
            kubo_api: 5011,
            kubo_gateway: 8090,
            kubo_swarm: 4011,
            cluster_api: 9104,
            cluster_proxy: 9105,
            cluster_swarm: 9106,
            cluster_pinsvc: 9107,
        }),
    }
}

#[test]
fn a_stopped_local_kubo_is_stopped_and_unhealthy_with_why_and_its_cluster_daemon_runs() {
    let mut c = entry(None, 45, vec![peer("demo-0", "Unhealthy", false, true)]);
    c.processes = vec![local_processes("demo-0", None)];
    let p = &c.status.peers[0];
    let kubo = backend_health(&c, p, Daemon::Ipfs);
    assert_eq!(kubo.name, "demo/demo-0/ipfs");
    assert_eq!(
        (kubo.status, kubo.health),
        (DaemonStatus::Stopped, Health::Unhealthy)
    );
    assert_eq!(
        (kubo.daemon_pid, kubo.port, kubo.api_responsive),
        (None, Some(5011), false)
    );
    let errors: Vec<&str> = kubo.errors.iter().map(|e| e.error.as_str()).collect();
    assert_eq!(
        errors,
        [
            "Kubo RPC: unreachable: connection refused",
            "its ipfs process does not run"
        ]
    );
    let cluster = backend_health(&c, p, Daemon::Cluster);
    assert_eq!(
        (cluster.status, cluster.health),
        (DaemonStatus::Running, Health::Degraded)
    );
    assert_eq!((cluster.daemon_pid, cluster.port), (Some(200), Some(9104)));
    assert!(
        cluster.errors.is_empty(),
        "Kubo's error is not the cluster daemon's"
    );

    let snapshot = Snapshot {
        clusters: vec![c],
        ..Snapshot::default()
    };
    assert_eq!(overall_health(&snapshot), Health::Unhealthy);
    let all = daemons(&snapshot);
    let map = backends(&all);
    assert_eq!(
        map["ipfs"].status,
        DaemonStatus::Stopped,
        "the one Kubo under its short name"
    );
    assert_eq!(map["ipfs_cluster"].daemon_pid, Some(200));
    assert_eq!(map.len(), 4);
    let service = cluster_service(&snapshot.clusters);
    assert_eq!(
        (service.running, service.pid, service.peer_count),
        (true, Some(200), 2)
    );
    assert_eq!(service.port_status.proxy.port, Some(9105));
    assert_eq!(service.port_status.api.in_use, Some(true));
    let libp2p = libp2p(&snapshot, Some(45));
    assert_eq!(libp2p.status, Libp2pStatus::Stopped);
    assert_eq!(
        libp2p.connectivity_issues,
        ["demo/demo-0: Kubo RPC did not answer the last probe"]
    );
}

#[test]
fn in_kubernetes_ports_are_the_container_ports_and_a_silent_daemon_is_unresponsive() {
    let c = entry(
        Some("prod"),
        70,
        vec![
            peer("demo-0", "Unhealthy", false, false),
            peer("demo-1", "Healthy", true, true),
        ],
    );
    let down = backend_health(&c, &c.status.peers[0], Daemon::Cluster);
    assert_eq!(down.name, "prod/demo/demo-0/cluster");
    assert_eq!(
        (down.status, down.port, down.daemon_pid),
        (DaemonStatus::Unresponsive, Some(9094), None)
    );
    assert_eq!(
        down.errors[0].error,
        "IPFS Cluster REST did not answer the last probe"
    );
    assert_eq!(
        down.errors[0].timestamp.as_deref(),
        Some("2026-11-30T10:00:00Z")
    );
    let snapshot = Snapshot {
        clusters: vec![c],
        ..Snapshot::default()
    };
    let all = daemons(&snapshot);
    let map = backends(&all);
    let ipfs = &map["ipfs"];
    assert_eq!(
        (ipfs.status, ipfs.health),
        (DaemonStatus::Partial, Health::Degraded)
    );
    assert_eq!(
        ipfs.members,
        ["prod/demo/demo-0/ipfs", "prod/demo/demo-1/ipfs"]
    );
    assert!(
        ipfs.errors[0]
            .error
            .starts_with("prod/demo/demo-0/ipfs: Kubo RPC"),
        "{:?}",
        ipfs.errors
    );
    assert_eq!(overall_health(&snapshot), Health::Degraded);
    let service = cluster_service(&snapshot.clusters);
    assert_eq!(
        (service.running, service.responsive, service.daemons),
        (false, 1, 2)
    );
    assert_eq!(
        (service.port_status.api.port, service.port_status.api.in_use),
        (Some(9094), None)
    );
    assert_eq!(service.config_valid, None);
    assert_eq!(service.version.as_deref(), Some("1.1.6"));
    let metrics = status_metrics(&all, &service, &libp2p(&snapshot, Some(70)), &[]);
    assert_eq!((metrics.healthy_backends, metrics.total_backends), (2, 4));
    assert_eq!(metrics.health_percentage, 50.0);
}

#[test]
fn short_names_and_the_words_of_nothing_known_yet() {
    assert_eq!(short_name("ipfs"), Some(Daemon::Ipfs));
    assert_eq!(short_name("ipfs_cluster"), Some(Daemon::Cluster));
    assert_eq!(short_name("ipfs-cluster"), Some(Daemon::Cluster));
    assert_eq!(short_name("demo/demo-0/ipfs"), None);
    assert_eq!(overall_health(&Snapshot::default()), Health::Unknown);
    assert!(backends(&[]).is_empty(), "no short names without daemons");
    let c = entry(None, 0, vec![json!({"name": "demo-0"})]);
    let fresh = backend_health(&c, &c.status.peers[0], Daemon::Ipfs);
    assert_eq!(
        (fresh.status, fresh.health),
        (DaemonStatus::Unknown, Health::Unknown)
    );
    assert!(fresh.errors.is_empty());
    let empty = cluster_service(std::iter::empty());
    assert_eq!(
        (empty.running, empty.api_responsive, empty.config_valid),
        (false, false, None)
    );
    assert_eq!(percent(1, 3), 33.3);
    assert_eq!(percent(0, 0), 0.0);
}
