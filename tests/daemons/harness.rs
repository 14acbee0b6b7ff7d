//! The peers of the test world: three real Kubo + Cluster peers form one cluster and replicate.

use serde_json::Value;
use std::collections::BTreeSet;

use crate::support::control_plane::random_hex;
use crate::support::ipfs::IpfsWorld;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_form_one_cluster_and_replicate_a_pin() {
    let world = IpfsWorld::start(3).await;

    // Every cluster peer lists the same three peers, and each sees its Kubo.
    let expected: BTreeSet<String> = world
        .peers
        .iter()
        .map(|p| p.cluster_peer_id.clone())
        .collect();
    for i in 0..3 {
        let peers = world.cluster_lines(i, "/peers").await.expect("GET /peers");
        let ids: BTreeSet<String> = peers
            .iter()
            .filter_map(|p| p["id"].as_str().map(String::from))
            .collect();
        assert_eq!(ids, expected, "GET /peers on cluster peer {i}");
        let id = world.cluster_lines(i, "/id").await.expect("GET /id");
        assert_eq!(
            id[0]["ipfs"]["id"],
            Value::from(world.peers[i].kubo_peer_id.clone())
        );
        assert_eq!(
            id[0]["ipfs"]["error"].as_str().unwrap_or(""),
            "",
            "peer {i} reaches its Kubo"
        );
    }

    // Kubo swarms are connected over loopback only.
    let swarm = world.kubo(2, "swarm/peers", &[]).await;
    let addrs: Vec<&str> = swarm["Peers"]
        .as_array()
        .expect("Peers")
        .iter()
        .filter_map(|p| p["Addr"].as_str())
        .collect();
    assert!(addrs.len() >= 2, "peer 2 swarm peers: {swarm}");
    assert!(
        addrs.iter().all(|a| a.starts_with("/ip4/127.")),
        "non-loopback swarm address: {addrs:?}"
    );

    // Add content to Kubo 0 only, pin it through cluster peer 0, and watch it reach every peer.
    let content = format!("ipfs-kit-operator test content {}", random_hex(16));
    let cid = world.put_block(0, content.as_bytes()).await;
    world.pin(0, &cid).await;
    let pin = world.wait_pinned_everywhere(&cid).await;
    assert_eq!(pin.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // Kubo on peer 2 really holds the pin.
    let pins = world
        .kubo(2, "pin/ls", &[("arg", &cid), ("type", "recursive")])
        .await;
    assert!(pins["Keys"][&cid].is_object(), "Kubo 2 pin/ls: {pins}");
}
