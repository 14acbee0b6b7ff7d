//! What status says when peers cannot run or cannot reach each other on a real node: a claim
//! that cannot bind, an image that cannot be pulled, Kubo peers without swarm connections.

use std::time::Duration;

use ipfs_kit_operator::api::{ClusterPhase, IpfsCluster, PeerState};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::clusters::wait_status_within;
use crate::support::real_node::real_node;
use crate::{report, restricted_namespace};

async fn create(api: &Api<IpfsCluster>, name: &str, spec: serde_json::Value) {
    let cluster: IpfsCluster = serde_json::from_value(json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": name},
        "spec": spec
    }))
    .expect("cluster json");
    api.create(&PostParams::default(), &cluster)
        .await
        .unwrap_or_else(|e| panic!("create IpfsCluster {name}: {e}"));
}

/// The Ready condition's message and the first peer's `lastError`.
fn explained(c: &IpfsCluster) -> (String, String) {
    let Some(s) = &c.status else {
        return (String::new(), String::new());
    };
    let ready = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let peer = s
        .peers
        .first()
        .and_then(|p| p.last_error.clone())
        .unwrap_or_default();
    (ready, peer)
}

pub async fn pods_that_cannot_run_say_why() {
    let node = real_node();
    let client = node.admin_client().await;
    let ns = format!("explained-{}", crate::support::control_plane::random_hex(3));
    restricted_namespace(&client, &ns).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);

    create(
        &api,
        "nostorage",
        json!({"replicas": 1, "kubo": {"storage": {"size": "1Gi", "storageClassName": "no-such-class"}}}),
    )
    .await;
    create(
        &api,
        "noimage",
        json!({"replicas": 1, "kubo": {"image": "ipfs/kubo:v0.0.1-not-built"}}),
    )
    .await;
    let unscheduled = wait_status_within(
        &api,
        "nostorage",
        "the unschedulable pod explained",
        Duration::from_secs(90),
        |c| {
            let (ready, peer) = explained(c);
            peer.contains("cannot be scheduled") && ready.contains("cannot be scheduled")
        },
    )
    .await;
    report(&format!(
        "a claim of a missing StorageClass: lastError {:?}",
        explained(&unscheduled).1
    ));
    let unpulled = wait_status_within(
        &api,
        "noimage",
        "the image that cannot be pulled explained",
        Duration::from_secs(90),
        |c| {
            let (ready, peer) = explained(c);
            let pull = |t: &str| t.contains("ErrImagePull") || t.contains("ImagePullBackOff");
            pull(&peer) && pull(&ready) && peer.contains("ipfs/kubo:v0.0.1-not-built")
        },
    )
    .await;
    report(&format!(
        "an image that cannot be pulled: lastError {:?}",
        explained(&unpulled).1
    ));
    for c in [&unscheduled, &unpulled] {
        let phase = c.status.as_ref().and_then(|s| s.phase);
        assert_ne!(phase, Some(ClusterPhase::Healthy), "{:?}", c.status);
    }
    crate::kubectl(node, &["delete", "namespace", &ns, "--wait=false"]);
}

/// Two peers whose Kubo are not connected (self-healing off, so the operator does not connect
/// them; IPFS Cluster itself connects its Kubo daemons only after its `connect_swarms_delay`,
/// 30 s): while they are apart, each is Degraded, not Healthy (it was, at 80), and says why.
pub async fn peers_without_swarm_connections_are_degraded() {
    let node = real_node();
    let client = node.admin_client().await;
    let ns = format!("lonely-{}", crate::support::control_plane::random_hex(3));
    restricted_namespace(&client, &ns).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    create(
        &api,
        "lonely",
        json!({"replicas": 2, "health": {"autoHeal": false}}),
    )
    .await;
    let cluster = wait_status_within(
        &api,
        "lonely",
        "both peers answering, Degraded for their swarm",
        Duration::from_secs(180),
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.peers.len() == 2
                    && s.peers.iter().all(|p| {
                        p.peer_id.is_some()
                            && p.cluster_peer_id.is_some()
                            && p.state == PeerState::Degraded
                            // Until the IPFS Cluster peers meet, a split is the first reason.
                            && p.last_error
                                .as_deref()
                                .is_some_and(|e| e.contains("swarm connected to 0"))
                    })
            })
        },
    )
    .await;
    let status = cluster.status.expect("status");
    assert_ne!(status.phase, Some(ClusterPhase::Healthy), "{status:?}");
    let reason = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    report(&format!(
        "two peers without swarm connections: Degraded condition {reason:?}; lastError {:?}",
        status.peers[0].last_error
    ));
    assert!(reason.contains("degraded"), "{reason}");
    for peer in &status.peers {
        assert!(peer.score.is_some_and(|s| s < 80), "{peer:?}");
        assert_eq!(peer.swarm_peers, Some(0), "{peer:?}");
        let why = peer.last_error.as_deref().unwrap_or_default();
        assert!(why.contains("swarm connected to 0"), "{peer:?}");
    }
    crate::kubectl(node, &["delete", "namespace", &ns, "--wait=false"]);
}

/// Kubernetes reconciles on every change of a cluster's pods. A hung Kubo (SIGSTOPped: its
/// sockets stay open, so kubelet sees nothing) while its pod changes several times a second is
/// still restarted only after `failureThreshold` failed rounds a probe interval apart, not after
/// three reconciles: with 3 failures 10 s apart, no sooner than 20 s after the first.
pub async fn a_hung_peer_is_judged_per_interval_not_per_reconcile() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};

    let node = real_node();
    let client = node.admin_client().await;
    let ns = format!("paced-{}", crate::support::control_plane::random_hex(3));
    restricted_namespace(&client, &ns).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    create(&api, "paced", json!({"replicas": 1})).await;
    let c = crate::steps::Cluster::new(&client, &ns, "paced");
    c.wait_healthy(1, Duration::from_secs(120)).await;
    let pid = crate::steps::process_of("paced-0", &crate::steps::KUBO_ARGV)
        .expect("Kubo's process in the pod");
    let restarts = |cl: &IpfsCluster| {
        cl.status.as_ref().map_or(0, |s| {
            s.healing
                .iter()
                .filter(|h| h.action == ipfs_kit_operator::api::HealingAction::RestartPeer)
                .count()
        })
    };
    let stopped = std::time::Instant::now();
    crate::steps::signal(pid, "STOP");
    // A change of the pod every 300 ms: each one is a reconcile.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let storm = async {
        for i in 0u32.. {
            let touch =
                json!({"metadata": {"annotations": {"test.ipfskit.io/touch": i.to_string()}}});
            let _ = pods
                .patch("paced-0", &PatchParams::default(), &Patch::Merge(&touch))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let decided = async {
        wait_status_within(
            &api,
            "paced",
            "a restart of the hung peer decided",
            Duration::from_secs(90),
            |cl| restarts(cl) > 0,
        )
        .await;
        stopped.elapsed()
    };
    let took = tokio::select! {
        took = decided => took,
        () = storm => unreachable!("the storm never ends"),
    };
    report(&format!(
        "SIGSTOP of Kubo with its pod changed every 300 ms: restart decided after {:.1} s",
        took.as_secs_f64()
    ));
    assert!(
        took >= Duration::from_secs(20),
        "restart decided {took:?} after the hang: failures counted per reconcile, not per interval"
    );
    // The stopped Kubo goes with its namespace (its pod may have been replaced already).
    crate::kubectl(node, &["delete", "namespace", &ns, "--wait=false"]);
}
