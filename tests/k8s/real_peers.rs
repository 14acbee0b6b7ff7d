//! IpfsCluster pods backed by real daemons: kwok runs no containers, so each pod's Kubo RPC (5001)
//! and IPFS Cluster REST (9094) ports at its pod IP are forwarded to a real Kubo + IPFS Cluster
//! peer of the test world. The operator then probes real daemons through the pod IPs, exactly as
//! in a cluster, and its scale-in goes through the real cluster's peerset.

use std::net::SocketAddr;
use std::time::Duration;

use ipfs_kit_operator::api::{ClusterPhase, IpfsCluster, PeerState};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use serde_json::json;

use crate::controller::start_controller;
use crate::support::clusters::{
    apply_cluster, cluster_json, event_note, provide_volumes, running_pods, wait_status_within,
};
use crate::support::control_plane::control_plane;
use crate::support::forward::forward;
use crate::support::ipfs::IpfsWorld;
use crate::support::wait_for;

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_backed_by_real_daemons_are_reported_healthy_and_scale_in_moves_their_pins_first() {
    let world = IpfsWorld::start(2).await;
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("real").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 4).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    let mut cluster = cluster_json("real", &class, 2);
    // Pod IPs must stay put for the forwarders: report only, never delete a pod.
    cluster["spec"]["health"]["autoHeal"] = json!(false);
    apply_cluster(&client, &ns, &cluster).await;

    let mut forwarders = Vec::new();
    for pod in running_pods(&client, &ns, "real", 2).await {
        let name = pod.metadata.name.clone().expect("pod name");
        let i: usize = name.trim_start_matches("real-").parse().expect("ordinal");
        let ip = pod
            .status
            .and_then(|s| s.pod_ip)
            .expect("kwok gave the pod an IP");
        let peer = &world.peers[i];
        for (port, to) in [(5001, &peer.kubo_api), (9094, &peer.cluster_api)] {
            let listen: SocketAddr = format!("{ip}:{port}").parse().expect("address");
            forwarders.push(forward(listen, addr(to)).await);
        }
    }

    // The operator probes the real daemons through the pod IPs.
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let healthy = wait_status_within(
        &api,
        "real",
        "both peers Healthy with the real daemons' identities",
        Duration::from_secs(120),
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.phase == Some(ClusterPhase::Healthy)
                    && s.peers.len() == 2
                    && s.peers.iter().all(|p| p.state == PeerState::Healthy)
            })
        },
    )
    .await;
    let status = healthy.status.expect("status");
    for (i, peer) in status.peers.iter().enumerate() {
        assert_eq!(
            peer.peer_id.as_deref(),
            Some(world.peers[i].kubo_peer_id.as_str())
        );
        assert_eq!(
            peer.cluster_peer_id.as_deref(),
            Some(world.peers[i].cluster_peer_id.as_str())
        );
        assert_eq!(peer.cluster_peers_seen, Some(2), "{peer:?}");
        assert!(
            peer.kubo_version
                .as_deref()
                .is_some_and(|v| v.starts_with("0.")),
            "{peer:?}"
        );
        assert!(peer.repo_size.is_some_and(|s| s > 0), "{peer:?}");
    }
    assert!(status.health_score.is_some_and(|s| s >= 80), "{status:?}");

    // Scale in: the remaining peer is asked to remove the departing one (DELETE /peers/<id>),
    // then the StatefulSet shrinks.
    apply_cluster(&client, &ns, &cluster_json_with(&cluster, 1)).await;
    let departing = world.peers[1].cluster_peer_id.clone();
    let note = event_note(&client, &ns, "ScaleIn", "real-1").await;
    // Under CRDT consensus (the default) the cluster moves the peer's pins to the remaining peers
    // and then answers that it keeps no peerset to remove it from; the Event says just that.
    assert!(
        note.contains(&format!("re-allocated the pins of real-1 ({departing})")),
        "{note}"
    );
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the StatefulSet scaled in to 1",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { (sts.get("real").await.ok()?.spec.replicas == Some(1)).then_some(()) },
    )
    .await;
    let _ = stop.send(());
    for f in forwarders {
        f.abort();
    }
}

fn cluster_json_with(base: &serde_json::Value, replicas: i32) -> serde_json::Value {
    let mut object = base.clone();
    object["spec"]["replicas"] = json!(replicas);
    object
}
