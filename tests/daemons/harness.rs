//! The peers of the test world: three real Kubo + Cluster peers form one cluster and replicate.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::support::control_plane::random_hex;
use crate::support::ipfs::IpfsWorld;
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_form_one_cluster_and_replicate_a_pin() {
    let world = IpfsWorld::start(3).await;

    // Every cluster peer lists the same three peers, and each sees its Kubo.
    let expected: BTreeSet<String> =
        world.peers.iter().map(|p| p.cluster_peer_id.clone()).collect();
    for i in 0..3 {
        let peers = world.cluster_lines(i, "/peers").await.expect("GET /peers");
        let ids: BTreeSet<String> =
            peers.iter().filter_map(|p| p["id"].as_str().map(String::from)).collect();
        assert_eq!(ids, expected, "GET /peers on cluster peer {i}");
        let id = world.cluster_lines(i, "/id").await.expect("GET /id");
        assert_eq!(id[0]["ipfs"]["id"], Value::from(world.peers[i].kubo_peer_id.clone()));
        assert_eq!(id[0]["ipfs"]["error"].as_str().unwrap_or(""), "", "peer {i} reaches its Kubo");
    }

    // Kubo swarms are connected over loopback only.
    let swarm = world.kubo(2, "swarm/peers", &[]).await;
    let addrs: Vec<&str> =
        swarm["Peers"].as_array().expect("Peers").iter().filter_map(|p| p["Addr"].as_str()).collect();
    assert!(addrs.len() >= 2, "peer 2 swarm peers: {swarm}");
    assert!(addrs.iter().all(|a| a.starts_with("/ip4/127.")), "non-loopback swarm address: {addrs:?}");

    // Add content to Kubo 0 only, pin it through cluster peer 0, and watch it reach every peer.
    let content = format!("ipfs-kit-operator test content {}", random_hex(16));
    let added = world
        .http
        .post(format!("{}/api/v0/block/put?cid-codec=raw", world.peers[0].kubo_api))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(content.into_bytes()).file_name("data"),
        ))
        .send()
        .await
        .expect("block/put");
    let added: Value = added.json().await.expect("block/put json");
    let cid = added["Key"].as_str().expect("Key").to_string();

    let resp = world
        .http
        .post(format!("{}/pins/{cid}?name=harness-test", world.peers[0].cluster_api))
        .send()
        .await
        .expect("POST /pins");
    assert!(resp.status().is_success(), "POST /pins/{cid}: {}", resp.status());

    let pin = wait_for(
        &format!("{cid} pinned on all 3 peers"),
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let status = world.cluster_lines(1, &format!("/pins/{cid}")).await?;
            let map = status.first()?["peer_map"].as_object()?.clone();
            (map.len() == 3 && map.values().all(|p| p["status"] == "pinned")).then_some(map)
        },
    )
    .await;
    assert_eq!(pin.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // Kubo on peer 2 really holds the pin.
    let pins = world.kubo(2, "pin/ls", &[("arg", &cid), ("type", "recursive")]).await;
    assert!(pins["Keys"][&cid].is_object(), "Kubo 2 pin/ls: {pins}");
}
