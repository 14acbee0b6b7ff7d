//! Peers started together form one cluster, never several: five-peer IpfsClusters created
//! again and again on real pods (`Parallel` pod management starts all five at once). Each time
//! peer 0 starts alone and every other peer bootstraps to peers that answer (its start log says
//! so), and every IPFS Cluster lists the same five peers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use crate::steps::Cluster;
use crate::support::real_node::real_node;
use crate::support::wait_for;
use crate::{kubectl, report, restricted_namespace};

const PEERS: usize = 5;
const ROUNDS: usize = 10;

pub async fn five_peers_form_one_cluster_every_time() {
    let node = real_node();
    let client = node.admin_client().await;
    let ns = format!("first-{}", crate::support::control_plane::random_hex(3));
    restricted_namespace(&client, &ns).await;
    let mut took = Vec::new();
    for round in 0..ROUNDS {
        let c = Cluster::new(&client, &ns, &format!("start-{round}"));
        let started = Instant::now();
        create(&c).await;
        c.wait_healthy(PEERS, Duration::from_secs(300)).await;
        one_cluster(&c).await;
        started_in_order(&c);
        took.push(started.elapsed().as_secs_f64());
        // The next round starts while this one goes away.
        c.api
            .delete(&c.name, &DeleteParams::default())
            .await
            .expect("delete the IpfsCluster");
    }
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    let max = took.iter().copied().fold(0.0, f64::max);
    report(&format!(
        "{ROUNDS} five-peer clusters, each one cluster: created -> Healthy with every peer \
         listing all five in {mean:.1} s on average, at most {max:.1} s"
    ));
    kubectl(node, &["delete", "namespace", &ns, "--wait=false"]);
}

async fn create(c: &Cluster) {
    let cluster = serde_json::from_value(json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": c.name},
        "spec": {"replicas": PEERS, "kubo": {"storage": {"size": "64Mi"}},
                 "cluster": {"storage": {"size": "16Mi"}}}
    }))
    .expect("cluster json");
    c.api
        .create(&PostParams::default(), &cluster)
        .await
        .unwrap_or_else(|e| panic!("create IpfsCluster {}: {e}", c.name));
}

/// Every IPFS Cluster lists the same five peers: the five the pods' `/id` names.
async fn one_cluster(c: &Cluster) {
    let ips = c.ips(PEERS).await;
    let mut all = BTreeSet::new();
    for ip in &ips {
        let id = c.rest(ip, "id").await.expect("cluster /id");
        all.insert(id["id"].as_str().expect("cluster id").to_owned());
    }
    assert_eq!(all.len(), PEERS, "{all:?}");
    for (i, ip) in ips.iter().enumerate() {
        wait_for(
            &format!("{} listing the {PEERS} cluster peers", c.peer(i)),
            Duration::from_secs(60),
            Duration::from_millis(500),
            || async { (c.cluster_peers(ip).await == all).then_some(()) },
        )
        .await;
    }
}

/// Peer 0 alone may start without a peer to bootstrap to; every other peer bootstrapped to
/// peers that answered (the start script's log line).
fn started_in_order(c: &Cluster) {
    let node = real_node();
    for i in 0..PEERS {
        let log = kubectl(
            node,
            &[
                "logs",
                "-n",
                &c.ns,
                &c.peer(i),
                "-c",
                "cluster",
                "--limit-bytes=200000",
            ],
        );
        let bootstrapped = log.lines().any(|l| l.starts_with("bootstrapping to "));
        assert!(
            i == 0 || bootstrapped,
            "{} started without bootstrapping to another peer:\n{log}",
            c.peer(i)
        );
    }
}
