//! The snapshots, history, identities and logs the recorded answers are made from.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::api::{IpfsClusterStatus, IpfsPinStatus};
use crate::dashboard::access::{AccessReview, AccessTarget, ReviewedUser};
use crate::dashboard::logs::{LogError, LogSource, LogTarget};
use crate::dashboard::{ClusterEntry, PinEntry, Snapshot};

pub fn status(score: i32, peers: &[&str]) -> IpfsClusterStatus {
    let peers: Vec<Value> = peers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "name": name, "state": if i == 2 { "Degraded" } else { "Healthy" },
                "score": score - i as i32, "restarts": i, "swarmPeers": 2 + i,
                "peerId": format!("12D3KooW{name}"), "clusterPeerId": format!("12D3KooWc{name}"),
                "kuboVersion": "0.42.0", "clusterVersion": "1.1.6", "clusterPeersSeen": 3,
                "repoSize": 1234 * (i + 1), "bytesIn": 1000, "bytesOut": 500,
                "pinsQueued": 0, "pinsPinning": 1, "pinsError": i,
                "lastProbe": "2026-11-27T21:00:00Z",
                "lastError": if i == 2 { Value::from("swarm peers 0 < 1") } else { Value::Null },
            })
        })
        .collect();
    serde_json::from_value(json!({
        "phase": "Healthy", "healthScore": score, "readyReplicas": 3, "replicas": 3,
        "observedGeneration": 4,
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllPeersReady",
            "message": "3/3 peers ready", "lastTransitionTime": "2026-11-27T20:00:00Z",
            "observedGeneration": 4}],
        "peers": peers,
        "healing": [{"time": "2026-11-27T20:30:00Z", "peer": "demo-2", "action": "SwarmConnect",
            "reason": "swarm peers 0 < 1", "result": "Succeeded"}],
        "alerts": [
            {"name": "IpfsKitPeerDown", "severity": "critical", "peer": peers[0]["name"],
                "state": "firing", "startsAt": "2026-11-27T20:40:00Z",
                "summary": format!("Peer {} is down", peers[0]["name"].as_str().unwrap_or_default()),
                "description": "its Kubo RPC and IPFS Cluster REST APIs do not both answer"},
            {"name": "IpfsKitClusterDegraded", "severity": "warning", "state": "resolved",
                "startsAt": "2026-11-27T20:10:00Z", "endsAt": "2026-11-27T20:25:00Z",
                "summary": "the cluster is degraded", "description": "health score 61"},
        ],
    }))
    .expect("cluster status")
}

pub fn local_snapshot(score: i32) -> Snapshot {
    Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: "demo".into(),
            replicas: 3,
            paused: false,
            status: status(score, &["demo-0", "demo-1", "demo-2"]),
            uid: None,
            resource_version: None,
            processes: Vec::new(),
        }],
        pins: Vec::new(),
        updated_at: Some(format!("2026-11-27T21:00:{:02}Z", score % 60)),
    }
}

/// A local cluster of one peer whose Kubo is down (its process gone), as the supervisor
/// publishes it: the IPFS Cluster daemon runs, with its PID and ports.
pub fn solo_snapshot() -> Snapshot {
    let mut status = status(45, &["solo-0"]);
    status.phase = Some(crate::api::ClusterPhase::Unhealthy);
    let peer = &mut status.peers[0];
    peer.state = crate::api::PeerState::Unhealthy;
    (peer.kubo_version, peer.peer_id, peer.swarm_peers) = (None, None, None);
    (peer.repo_size, peer.bytes_in, peer.bytes_out) = (None, None, None);
    peer.last_error = Some("Kubo RPC: unreachable: connection refused".into());
    peer.restarts = 2;
    let ports = crate::dashboard::ProcessPorts {
        kubo_api: 5001,
        kubo_gateway: 8080,
        kubo_swarm: 4001,
        cluster_api: 9094,
        cluster_proxy: 9095,
        cluster_swarm: 9096,
        cluster_pinsvc: 9097,
    };
    Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: "solo".into(),
            replicas: 1,
            paused: false,
            status,
            uid: None,
            resource_version: None,
            processes: vec![crate::dashboard::PeerProcesses {
                peer: "solo-0".into(),
                kubo_pid: None,
                cluster_pid: Some(4242),
                ports: Some(ports),
            }],
        }],
        pins: Vec::new(),
        updated_at: Some("2026-11-27T21:00:20Z".into()),
    }
}

pub fn recorded_history() -> crate::history::History {
    let history = crate::history::History::in_memory();
    let start = 1_795_813_200_000; // 2026-11-27T21:00:00Z
    for i in 0..6 {
        let score = 90 - 10 * i;
        let mut status = status(score, &["demo-0", "demo-1", "demo-2"]);
        for p in &mut status.peers {
            p.pins_pinned = Some(4);
            p.pins_error = Some(i64::from(i / 3));
        }
        let t = start + i64::from(i) * 10_000;
        history.record("demo", Duration::from_secs(10), &status, t);
    }
    history
}

pub fn kube_snapshot() -> Snapshot {
    let pin_status: IpfsPinStatus = serde_json::from_value(json!({
        "phase": "Pinned", "pinned": 2, "allocated": 2, "pinnedSummary": "2/2",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Pinned",
            "message": "2/2", "lastTransitionTime": "2026-11-27T20:00:00Z"}],
        "peers": [{"peer": "store-0", "state": "Pinned"}],
    }))
    .expect("pin status");
    let pin = |namespace: &str, name: &str, cluster: &str| PinEntry {
        namespace: namespace.into(),
        name: name.into(),
        cluster: cluster.into(),
        cid: format!("bafy{name}"),
        status: pin_status.clone(),
    };
    Snapshot {
        clusters: vec![
            ClusterEntry {
                namespace: Some("prod".into()),
                name: "other".into(),
                replicas: 1,
                paused: true,
                status: IpfsClusterStatus::default(),
                uid: None,
                resource_version: None,
                processes: Vec::new(),
            },
            ClusterEntry {
                namespace: Some("prod".into()),
                name: "store".into(),
                replicas: 2,
                paused: false,
                status: status(80, &["store-0", "store-1"]),
                uid: None,
                resource_version: None,
                processes: Vec::new(),
            },
        ],
        pins: vec![
            pin("prod", "data", "store"),
            pin("prod", "more", "other"),
            pin("test", "elsewhere", "store"),
        ],
        updated_at: Some("2026-11-27T21:00:00Z".into()),
    }
}

/// Kubernetes identities by token: `kube-allowed` may do anything, `kube-denied` nothing,
/// `kube-broken` cannot be reviewed.
pub struct FakeReview;

impl AccessReview for FakeReview {
    fn authenticate(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<ReviewedUser>, String>> {
        Box::pin(async move {
            let user = |name: &str| ReviewedUser {
                username: name.into(),
                uid: None,
                groups: Vec::new(),
                extra: Default::default(),
            };
            match token.as_str() {
                "kube-allowed" => Ok(Some(user("alice"))),
                "kube-denied" => Ok(Some(user("bob"))),
                "kube-broken" => Err("the API server is away".into()),
                _ => Ok(None),
            }
        })
    }

    fn permits(
        &self,
        user: ReviewedUser,
        _target: AccessTarget,
    ) -> BoxFuture<'static, Result<Result<(), String>, String>> {
        Box::pin(async move {
            if user.username == "alice" {
                Ok(Ok(()))
            } else {
                Ok(Err("RBAC says no".into()))
            }
        })
    }
}

pub struct NumberedLines;

impl LogSource for NumberedLines {
    fn tail(
        &self,
        target: LogTarget,
        lines: usize,
    ) -> BoxFuture<'static, Result<String, LogError>> {
        Box::pin(async move {
            match target.peer.as_str() {
                "demo-2" => Err(LogError::Unavailable("disk on fire".into())),
                "demo-1" => Err(LogError::NotFound("no log yet".into())),
                _ => Ok((1..=lines + 2)
                    .map(|i| format!("{} line {i}", target.peer))
                    .collect::<Vec<_>>()
                    .join("\n")),
            }
        })
    }
}
