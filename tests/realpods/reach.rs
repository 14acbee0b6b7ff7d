//! Per-peer reachability on real pods: a 2-peer cluster exposed by NodePort. Each Kubo and IPFS
//! Cluster announces the node's address with its own Service's node ports from its first start
//! (no restart); a Kubo on the test's side dialling a peer's node port (kube-proxy, iptables
//! mode) reaches that peer and no other. Then the Services become LoadBalancers, and the test
//! writes the node's address as peer 1's load balancer address (there is no load balancer
//! controller; kube-proxy forwards a Service's load balancer address): peer 1 alone restarts and
//! announces it, and is reached there.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::private::Outsider;
use crate::steps::Cluster;
use crate::support::clusters::node_port;
use crate::support::clusters::wait_status_within;
use crate::support::real_node::{NODE_IP, real_node};
use crate::support::wait_for;
use crate::{kubectl, report};
use ipfs_kit_operator::api::PeerState;

const NAME: &str = "reach";

pub async fn exposed_peers_are_reached_at_their_announced_address() {
    let node = real_node();
    let c = Cluster::in_new_namespace(NAME).await;
    let (client, ns) = (c.client.clone(), c.ns.clone());
    let started = Instant::now();
    let mut spec = json!({"replicas": 2, "networking": {"p2p": {"exposure": "NodePort"}}});
    apply(&c, &spec).await;
    c.wait_healthy(2, Duration::from_secs(240)).await;
    report(&format!(
        "NodePort cluster: created -> Healthy with 2 real peers: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // A Service forwards to Ready pods only (Healthy counts peers whose daemons answer the
    // operator's probes, which may come first).
    let selector = format!("app.kubernetes.io/instance={NAME}");
    crate::ready_pods(&client, &ns, &selector, 2).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let ips = c.ips(2).await;
    let mut ids = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let svc = services
            .get(&format!("{NAME}-{i}-p2p"))
            .await
            .expect("p2p Service");
        let tcp = format!("/ip4/{NODE_IP}/tcp/{}", node_port(&svc, 4001, "TCP"));
        let quic = format!(
            "/ip4/{NODE_IP}/udp/{}/quic-v1",
            node_port(&svc, 4001, "UDP")
        );
        let cluster = format!("/ip4/{NODE_IP}/tcp/{}", node_port(&svc, 9096, "TCP"));
        ids.push(announced(&c, ip, &[&tcp, &quic], &cluster).await);
    }
    let table = kubectl(node, &["get", "svc", "-n", &ns]);
    report(&format!("kubectl get svc -n {ns}:\n{table}"));
    let dir = crate::scratch(&ns).join("outsider");
    for i in 0..ids.len() {
        let svc = services
            .get(&format!("{NAME}-{i}-p2p"))
            .await
            .expect("p2p Service");
        let port = node_port(&svc, 4001, "TCP");
        reaches_that_peer_alone(&dir, &format!("/ip4/{NODE_IP}/tcp/{port}"), &ids, i).await;
    }
    let restarts = crate::restarts(&c.live_pods().await);
    assert!(restarts.iter().all(|(_, _, n)| *n == 0), "{restarts:?}");
    assert!(
        !restarted_for_announce(&client, &ns).await,
        "NodePort peers announce from their first start"
    );

    // LoadBalancer: no address yet, so the peers stop announcing their node ports (each restarts,
    // one at a time). Then peer 1's Service gets the node's address (as a load balancer
    // controller would write it), and peer 1 alone restarts to announce it.
    let switched = Instant::now();
    let before = [c.pod(0).await.uid(), c.pod(1).await.uid()];
    spec["networking"]["p2p"]["exposure"] = json!("LoadBalancer");
    apply(&c, &spec).await;
    for (i, old) in before.iter().enumerate() {
        recreated(&c, i, old).await;
    }
    // Degraded, not Healthy, while a Service has no address: status names it.
    peers_healthy(
        &c,
        "Service reach-1-p2p (LoadBalancer) has no external address yet",
    )
    .await;
    report(&format!(
        "NodePort -> LoadBalancer (pending): both peers restarted without the announce, Healthy: \
         {:.1} s",
        switched.elapsed().as_secs_f64()
    ));
    let uid0 = c.pod(0).await.uid();
    let uid1 = c.pod(1).await.uid();
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": NODE_IP}]}}});
    let changed = Instant::now();
    services
        .patch_status(
            &format!("{NAME}-1-p2p"),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("write the load balancer address");
    let lb = format!("/ip4/{NODE_IP}/tcp/4001");
    recreated(&c, 1, &uid1).await;
    peers_healthy(
        &c,
        "Service reach-0-p2p (LoadBalancer) has no external address yet",
    )
    .await;
    crate::ready_pods(&client, &ns, &selector, 2).await;
    let ip1 = c.ips(2).await.remove(1);
    let quic = format!("/ip4/{NODE_IP}/udp/4001/quic-v1");
    announced(&c, &ip1, &[&lb, &quic], &format!("/ip4/{NODE_IP}/tcp/9096")).await;
    report(&format!(
        "load balancer address written -> peer 1 announces it, Healthy again: {:.1} s",
        changed.elapsed().as_secs_f64()
    ));
    assert_eq!(c.pod(0).await.uid(), uid0, "peer 0 was left running");
    reaches_that_peer_alone(&dir, &lb, &ids, 1).await;
    kubectl(node, &["delete", "ipfscluster", NAME, "-n", &ns, "--wait"]);
}

/// Waits until both peers are Healthy, with `pending` (a Service without an address) named in
/// the Ready condition.
async fn peers_healthy(c: &Cluster, pending: &str) {
    wait_status_within(
        &c.api,
        NAME,
        &format!("2 healthy peers, status naming {pending:?}"),
        Duration::from_secs(240),
        |cl| {
            let Some(s) = &cl.status else { return false };
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready");
            s.observed_generation == cl.metadata.generation
                && s.ready_replicas == Some(2)
                && s.peers.iter().all(|p| p.state == PeerState::Healthy)
                && ready.is_some_and(|r| r.message.contains(pending))
        },
    )
    .await;
}

/// Creates or updates the cluster with `spec`.
async fn apply(c: &Cluster, spec: &Value) {
    let object = json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": NAME},
        "spec": spec
    });
    let params = PatchParams::apply("realpods-reach").force();
    c.api
        .patch(NAME, &params, &Patch::Apply(&object))
        .await
        .expect("apply the IpfsCluster");
}

/// Waits until the pod of peer `ordinal` has another uid than `old` (the StatefulSet recreated
/// it).
async fn recreated(c: &Cluster, ordinal: usize, old: &Option<String>) {
    let peer = c.peer(ordinal);
    wait_for(
        &format!("pod {peer} recreated"),
        Duration::from_secs(180),
        Duration::from_millis(500),
        || async { (c.pods.get(&peer).await.ok()?.uid() != *old).then_some(()) },
    )
    .await;
}

/// Waits until the Kubo at `ip` lists each of `kubo` among its addresses (`POST /api/v0/id`)
/// and its IPFS Cluster lists `cluster` (`GET /id`); returns Kubo's peer id.
async fn announced(c: &Cluster, ip: &str, kubo: &[&str], cluster: &str) -> String {
    let id = wait_for(
        &format!("Kubo at {ip} announcing {kubo:?}"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let id = c.kubo(ip, "id").await?;
            let addresses: Vec<&str> = id["Addresses"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            kubo.iter()
                .all(|a| {
                    addresses
                        .iter()
                        .any(|x| x.starts_with(&format!("{a}/p2p/")))
                })
                .then(|| id["ID"].as_str().map(str::to_owned))?
        },
    )
    .await;
    wait_for(
        &format!("IPFS Cluster at {ip} announcing {cluster}"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let id = c.rest(ip, "id").await?;
            let addresses = id["addresses"].as_array()?;
            addresses
                .iter()
                .filter_map(Value::as_str)
                .any(|a| a.starts_with(&format!("{cluster}/p2p/")))
                .then_some(())
        },
    )
    .await;
    id
}

/// Dialling `address` with peer `ordinal`'s id connects (once kube-proxy forwards it: it
/// follows the Service's endpoints within a second or so); dialling it with the other peer's id
/// fails because the remote key is peer `ordinal`'s: the address reaches that peer and no other.
/// The Kubo on the test's side is started afresh in `dir` for each dial (connected to no one, so
/// that a dial is a dial).
async fn reaches_that_peer_alone(dir: &Path, address: &str, ids: &[String], ordinal: usize) {
    let mut outsider = Outsider::start(dir, None).await;
    let right = format!("{address}/p2p/{}", ids[ordinal]);
    let mut last = String::new();
    for _ in 0..60 {
        match outsider.connect(&right).await {
            Ok(()) => {
                last.clear();
                break;
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        last.is_empty(),
        "swarm/connect to peer {ordinal} at {address}: {last}"
    );
    outsider.daemon.stop(Duration::from_secs(5));
    let mut outsider = Outsider::start(dir, None).await;
    let other = &ids[1 - ordinal];
    let wrong = outsider.connect(&format!("{address}/p2p/{other}")).await;
    outsider.daemon.stop(Duration::from_secs(5));
    let refusal = wrong.expect_err(&format!(
        "{address} reached peer {other}, not peer {ordinal}"
    ));
    assert!(
        refusal.contains(&ids[ordinal]),
        "dialling peer {other} at {address} did not meet peer {ordinal}'s key: {refusal}"
    );
    report(&format!(
        "{address} reaches peer {ordinal} ({}) only",
        ids[ordinal]
    ));
}

/// Whether the operator restarted a peer for its announce (a `RestartingPeer` Event about it).
async fn restarted_for_announce(client: &Client, ns: &str) -> bool {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let events = api
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items;
    events.iter().any(|e| {
        e.reason.as_deref() == Some("RestartingPeer")
            && e.note
                .as_deref()
                .is_some_and(|n| n.contains("announces an older address"))
    })
}
