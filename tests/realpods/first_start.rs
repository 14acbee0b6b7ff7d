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
    // Two clusters at a time: ten first starts in about half the time.
    for pair in 0..ROUNDS / 2 {
        let a = Cluster::new(&client, &ns, &format!("start-{}", 2 * pair));
        let b = Cluster::new(&client, &ns, &format!("start-{}", 2 * pair + 1));
        let (ta, tb) = tokio::join!(first_start(&a), first_start(&b));
        took.extend([ta, tb]);
    }
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    let max = took.iter().copied().fold(0.0, f64::max);
    report(&format!(
        "{ROUNDS} five-peer clusters (two at a time), each one cluster: created -> every IPFS \
         Cluster listing all five in {mean:.1} s on average, at most {max:.1} s"
    ));
    kubectl(node, &["delete", "namespace", &ns, "--wait=false"]);
}

/// Creates the cluster, checks that it formed one cluster, deletes it; returns how long it took
/// from creation to one cluster.
async fn first_start(c: &Cluster) -> f64 {
    let started = Instant::now();
    create(c).await;
    one_cluster(c).await;
    let took = started.elapsed().as_secs_f64();
    started_in_order(c);
    c.api
        .delete(&c.name, &DeleteParams::default())
        .await
        .expect("delete the IpfsCluster");
    took
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
    let mut ips = Vec::new();
    for i in 0..PEERS {
        let ip = wait_for(
            &format!("{} running with an IP", c.peer(i)),
            Duration::from_secs(240),
            Duration::from_millis(500),
            || async {
                let pod = c.pods.get_opt(&c.peer(i)).await.ok()??;
                pod.status?.pod_ip
            },
        )
        .await;
        ips.push(ip);
    }
    let mut all = BTreeSet::new();
    for (i, ip) in ips.iter().enumerate() {
        let id = wait_for(
            &format!("{}'s IPFS Cluster answering /id", c.peer(i)),
            Duration::from_secs(240),
            Duration::from_millis(500),
            || async { c.rest(ip, "id").await?["id"].as_str().map(str::to_owned) },
        )
        .await;
        all.insert(id);
    }
    assert_eq!(all.len(), PEERS, "{all:?}");
    for (i, ip) in ips.iter().enumerate() {
        wait_for(
            &format!("{} listing the {PEERS} cluster peers", c.peer(i)),
            Duration::from_secs(90),
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
