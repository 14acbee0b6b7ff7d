//! A steady cluster on real pods: once a one-peer IpfsCluster is Healthy and nothing changes, the
//! leader hands its probe rounds to a task of their own (`ipfs_kit_steady_clusters` 1) and stops
//! reconciling it every probe interval: over four intervals, at most the minute's refresh of its
//! traffic figures (a reconcile, and the one its status write starts) and no health change; a
//! Kubo stopped then is still shown within 5 s (the liveness pings end the steady rounds).

use std::time::{Duration, Instant};

use ipfs_kit_operator::api::{IpfsCluster, PeerState};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::steps::{Cluster, KUBO_ARGV, process_of, signal};
use crate::support::clusters::wait_status_within;
use crate::support::real_node::real_node;
use crate::support::wait_for;
use crate::{helm_operator_ips, http, kubectl, report};

const NAME: &str = "steady";
/// The default `spec.health.probeInterval`.
const INTERVAL: Duration = Duration::from_secs(10);

/// The value of the unlabelled series `name` in `text`.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `ipfs_kit_reconciles_total` and `ipfs_kit_steady_clusters` of the leader (the replica that
/// says `ipfs_kit_leader 1`).
async fn leader_figures(c: &Cluster) -> Option<(f64, f64)> {
    let http = http();
    for ip in helm_operator_ips(&c.client).await {
        let Ok(answer) = http.get(format!("http://{ip}:9090/metrics")).send().await else {
            continue;
        };
        let text = answer.text().await.unwrap_or_default();
        if value(&text, "ipfs_kit_leader") == Some(1.0) {
            return Some((
                value(&text, "ipfs_kit_reconciles_total")?,
                value(&text, "ipfs_kit_steady_clusters")?,
            ));
        }
    }
    None
}

/// Waits until the leader reports the cluster steady; returns its reconcile count then.
async fn until_steady(c: &Cluster, timeout: Duration) -> f64 {
    let (reconciles, _) = wait_for(
        "the leader reporting the cluster steady",
        timeout,
        Duration::from_secs(1),
        || async { leader_figures(c).await.filter(|(_, steady)| *steady == 1.0) },
    )
    .await;
    reconciles
}

/// Waits until no IpfsCluster but this test's exists (the other tests' are deleted with their
/// namespaces), so that the leader's reconcile count is this cluster's.
async fn alone(c: &Cluster) {
    let all: Api<IpfsCluster> = Api::all(c.client.clone());
    wait_for(
        "the other tests' IpfsClusters gone",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || async {
            let list = all.list(&ListParams::default()).await.ok()?;
            let others: Vec<_> = list
                .items
                .iter()
                .filter(|o| o.metadata.namespace.as_deref() != Some(c.ns.as_str()))
                .collect();
            others.is_empty().then_some(())
        },
    )
    .await;
}

/// Waits until kubelet has nothing left to change of the peer's pod: every container started
/// (IPFS Cluster's startup probe runs every 30 s) and ready. Each change of the pod is a
/// reconcile, and so are the StatefulSet's and the PodDisruptionBudget's status updates after it.
async fn settled(c: &Cluster) {
    wait_for(
        "every container of the peer's pod started and ready",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || async {
            let pod = c.pods.get(&c.peer(0)).await.ok()?;
            let statuses = pod.status?.container_statuses?;
            statuses
                .iter()
                .all(|s| s.ready && s.started == Some(true))
                .then_some(())
        },
    )
    .await;
}

pub async fn a_steady_cluster_is_probed_without_reconciles() {
    let node = real_node();
    let c = Cluster::in_new_namespace(NAME).await;
    let ns = c.ns.clone();
    let cluster: IpfsCluster = serde_json::from_value(json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": NAME},
        "spec": {"replicas": 1}
    }))
    .expect("cluster json");
    c.api
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create the IpfsCluster");
    c.wait_healthy(1, Duration::from_secs(180)).await;
    settled(&c).await;
    alone(&c).await;
    let steady_since = Instant::now();
    let reconciles_before = until_steady(&c, Duration::from_secs(90)).await;
    report(&format!(
        "one Healthy peer: steady (ipfs_kit_steady_clusters 1) {:.1} s after it was alone",
        steady_since.elapsed().as_secs_f64()
    ));
    // A reconcile that wrote the minute's figures ends the task until its echo finds nothing to
    // do: count from a moment the cluster is steady, and see it steady again at the end.
    let before = c.api.get(NAME).await.expect("get");
    tokio::time::sleep(INTERVAL * 4).await;
    let reconciles = until_steady(&c, Duration::from_secs(30)).await - reconciles_before;
    let now = c.api.get(NAME).await.expect("get");
    report(&format!(
        "steady for 4 probe intervals: {reconciles} reconciles, resourceVersion {:?} -> {:?}",
        before.metadata.resource_version, now.metadata.resource_version
    ));
    assert!(
        reconciles <= 2.0,
        "{reconciles} reconciles in 4 probe intervals of a steady cluster"
    );
    let health = |c: &IpfsCluster| c.status.as_ref().map(|s| (s.health_score, s.phase));
    assert_eq!(health(&now), health(&before), "{:?}", now.status);

    // A hung Kubo of a steady cluster: reconciled and shown at once.
    let pid = process_of(&c.peer(0), &KUBO_ARGV).expect("Kubo's process in the pod");
    let stopped = Instant::now();
    signal(pid, "STOP");
    wait_status_within(
        &c.api,
        NAME,
        "the stopped Kubo shown",
        Duration::from_secs(30),
        |cl| {
            cl.status
                .as_ref()
                .and_then(|s| s.peers.first())
                .is_some_and(|p| p.state != PeerState::Healthy)
        },
    )
    .await;
    let seen = stopped.elapsed();
    signal(pid, "CONT");
    report(&format!(
        "Kubo of a steady cluster stopped: shown not healthy after {:.1} s",
        seen.as_secs_f64()
    ));
    assert!(seen <= Duration::from_secs(5), "{seen:?}");
    kubectl(node, &["delete", "namespace", &ns, "--wait=false"]);
}
