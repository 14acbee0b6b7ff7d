//! Per-peer reachability against the real API server: one p2p Service per peer, the addresses
//! they get rendered into the announce ConfigMap, and only the peer whose address changed
//! restarted. No load balancer controller runs here: the test writes a Service's
//! `status.loadBalancer` as one would (loopback addresses; nothing is dialled).

use std::collections::BTreeMap;
use std::time::Duration;

use ipfs_kit_operator::api::IpfsCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::controller::start_controller;
use crate::support::clusters::{
    apply_cluster, cluster_json, node_port, owned_by, provide_volumes, running_pods, wait_status,
};
use crate::support::control_plane::control_plane;
use crate::support::wait_for;

/// The Services named `<name>-<ordinal>-p2p`, once exactly `count` exist with the `type_` asked
/// for (and node ports allocated), by name.
async fn peer_services(
    api: &Api<Service>,
    name: &str,
    type_: &str,
    count: usize,
) -> BTreeMap<String, Service> {
    wait_for(
        &format!("{count} {type_} p2p Services of {name}"),
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let all = api.list(&Default::default()).await.ok()?.items;
            let peers: BTreeMap<String, Service> = all
                .into_iter()
                .filter(|s| s.name_any().starts_with(&format!("{name}-")))
                .filter(|s| s.name_any().ends_with("-p2p"))
                .map(|s| (s.name_any(), s))
                .collect();
            let typed = peers.values().all(|s| {
                s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(type_)
                    && s.metadata.deletion_timestamp.is_none()
            });
            (peers.len() == count && typed).then_some(peers)
        },
    )
    .await
}

/// `(port, protocol)` of a Service's ports.
fn ports(service: &Service) -> Vec<(i32, String)> {
    let spec = service.spec.as_ref().expect("spec");
    spec.ports
        .iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone().unwrap_or_default()))
        .collect()
}

/// Waits until the announce ConfigMap of `name` satisfies `ok`.
async fn announce_data(
    api: &Api<ConfigMap>,
    name: &str,
    what: &str,
    ok: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let cm = format!("{name}-announce");
    wait_for(
        what,
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let data = api.get_opt(&cm).await.ok()??.data.unwrap_or_default();
            ok(&data).then_some(data)
        },
    )
    .await
}

/// The uid of each pod of cluster `name`, by pod name.
async fn pod_uids(client: &Client, ns: &str, name: &str, count: usize) -> BTreeMap<String, String> {
    running_pods(client, ns, name, count)
        .await
        .into_iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}

/// Writes `ip` as the load balancer address of Service `name` (as a load balancer controller).
async fn assign_load_balancer(api: &Api<Service>, name: &str, ip: &str) {
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("patch the Service's load balancer status");
}

/// Waits until pod `peer` has another uid than `old` (the StatefulSet recreated it) and Runs.
async fn recreated(client: &Client, ns: &str, peer: &str, old: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("pod {peer} recreated"),
        Duration::from_secs(90),
        Duration::from_millis(300),
        || async {
            let p = pods.get_opt(peer).await.ok()??;
            let running = p.status.as_ref()?.phase.as_deref() == Some("Running");
            (p.uid().as_deref() != Some(old) && running).then_some(())
        },
    )
    .await;
}

/// The status conditions' messages of the cluster, joined.
fn condition_messages(c: &IpfsCluster) -> String {
    let conditions = c
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions
        .iter()
        .map(|c| c.message.clone())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test]
async fn exposed_peers_get_a_service_each_and_announce_its_address() {
    control_plane().install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("reach").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 6).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);

    // NodePort, 3 peers: one Service each, 4001 TCP+UDP and 9096 TCP, never an API port.
    let mut object = cluster_json("web", &class, 3);
    // kwok runs no daemon: healing would restart pods for their silence, not for the announce.
    object["spec"]["health"]["autoHeal"] = json!(false);
    object["spec"]["networking"] = json!({"p2p": {"exposure": "NodePort"}});
    let uid = apply_cluster(&client, &ns, &object)
        .await
        .uid()
        .expect("uid");
    let by_name = peer_services(&services, "web", "NodePort", 3).await;
    let expected_ports = [(4001, "TCP"), (4001, "UDP"), (9096, "TCP")].map(|(p, t)| (p, t.into()));
    for (i, (name, svc)) in by_name.iter().enumerate() {
        assert_eq!(name, &format!("web-{i}-p2p"));
        assert!(
            owned_by(&svc.metadata, &uid),
            "{name} is owned by the IpfsCluster"
        );
        assert_eq!(ports(svc), expected_ports, "{name}");
        let selector = svc
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let pod_name = selector.get("statefulset.kubernetes.io/pod-name").cloned();
        assert_eq!(
            pod_name,
            Some(format!("web-{i}")),
            "{name} selects its peer alone"
        );
    }
    // Each peer's entry carries its own Service's node ports (on its node's address, filled in
    // by the pod: kwok nodes have no ExternalIP).
    let svc1 = &by_name["web-1-p2p"];
    let kubo1 = format!(
        "[\"/@HOST@/tcp/{}\",\"/@HOST@/udp/{}/quic-v1\"]",
        node_port(svc1, 4001, "TCP"),
        node_port(svc1, 4001, "UDP")
    );
    let data = announce_data(&config_maps, "web", "three NodePort entries", |d| {
        d.len() == 6
    })
    .await;
    assert_eq!(data["web-1.kubo"], kubo1);
    assert_eq!(
        data["web-1.cluster"],
        format!("/@HOST@/tcp/{}", node_port(svc1, 9096, "TCP"))
    );

    // Scale-in removes the departing peer's Service.
    object["spec"]["replicas"] = json!(2);
    apply_cluster(&client, &ns, &object).await;
    peer_services(&services, "web", "NodePort", 2).await;

    // LoadBalancer: no address yet, so nothing announced, and status names the Service.
    object["spec"]["networking"] = json!({"p2p": {"exposure": "LoadBalancer"}});
    apply_cluster(&client, &ns, &object).await;
    peer_services(&services, "web", "LoadBalancer", 2).await;
    announce_data(
        &config_maps,
        "web",
        "no entry while the LBs are pending",
        BTreeMap::is_empty,
    )
    .await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    wait_status(&api, "web", "the pending Services named in status", |c| {
        let text = condition_messages(c);
        text.contains("Service web-1-p2p (LoadBalancer) has no external address yet")
            && text.contains("Service web-0-p2p (LoadBalancer)")
    })
    .await;
    settle(&client, &ns).await;
    let before = pod_uids(&client, &ns, "web", 2).await;

    // A load balancer address for peer 1: rendered into its entry, and peer 1 alone restarts.
    assign_load_balancer(&services, "web-1-p2p", "127.0.0.50").await;
    let data = announce_data(&config_maps, "web", "peer 1's load balancer address", |d| {
        d.contains_key("web-1.kubo")
    })
    .await;
    assert_eq!(
        data,
        BTreeMap::from([
            (
                "web-1.kubo".to_owned(),
                "[\"/ip4/127.0.0.50/tcp/4001\",\"/ip4/127.0.0.50/udp/4001/quic-v1\"]".to_owned()
            ),
            (
                "web-1.cluster".to_owned(),
                "/ip4/127.0.0.50/tcp/9096".to_owned()
            ),
        ])
    );
    recreated(&client, &ns, "web-1", &before["web-1"]).await;
    let after = pod_uids(&client, &ns, "web", 2).await;
    assert_eq!(after["web-0"], before["web-0"], "peer 0 is left running");

    // A changed address: re-rendered, and again only peer 1 restarts.
    assign_load_balancer(&services, "web-1-p2p", "127.0.0.51").await;
    announce_data(&config_maps, "web", "peer 1's new address", |d| {
        d.get("web-1.cluster").map(String::as_str) == Some("/ip4/127.0.0.51/tcp/9096")
    })
    .await;
    recreated(&client, &ns, "web-1", &after["web-1"]).await;
    let last = pod_uids(&client, &ns, "web", 2).await;
    assert_eq!(
        last["web-0"], before["web-0"],
        "peer 0 is still left running"
    );

    // Exposure back to None: the per-peer Services and the announce ConfigMap go.
    object["spec"]["networking"] = json!({"p2p": {"exposure": "None"}});
    apply_cluster(&client, &ns, &object).await;
    peer_services(&services, "web", "LoadBalancer", 0).await;
    wait_for(
        "the announce ConfigMap deleted",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            config_maps
                .get_opt("web-announce")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let _ = stop.send(());
}

/// Waits until the StatefulSet `web` has rolled out its current template to every pod (the
/// exposure change rolls the pods) and the operator has nothing left to restart.
async fn settle(client: &Client, ns: &str) {
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(client.clone(), ns);
    wait_for(
        "the StatefulSet rolled out",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let s = sts.get("web").await.ok()?;
            let status = s.status?;
            let done = status.update_revision.is_some()
                && status.current_revision == status.update_revision
                && status.ready_replicas == Some(2)
                && status.updated_replicas == Some(2);
            done.then_some(())
        },
    )
    .await;
}
