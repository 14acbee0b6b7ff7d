//! The IpfsPin reconciler on the real apiserver: against a real IPFS Cluster (reached at the pod
//! IP kwok gave the cluster's pod, where a forwarder puts three real peers' REST API) and against
//! pods that run nothing (kwok), where it must say so.

use std::net::SocketAddr;
use std::time::Duration;

use ipfs_kit_operator::api::{IpfsPin, PinPhase};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::controller::{events, start_controller};
use crate::support::clusters::{apply_cluster, cluster_json, provide_volumes, running_pods};
use crate::support::control_plane::control_plane;
use crate::support::forward::forward;
use crate::support::ipfs::IpfsWorld;
use crate::support::wait_for;

fn pin_json(name: &str, cluster: &str, cid: &str) -> Value {
    json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsPin",
        "metadata": {"name": name},
        "spec": {"clusterRef": {"name": cluster}, "cid": cid}
    })
}

async fn apply_pin(api: &Api<IpfsPin>, object: &Value) {
    let name = object["metadata"]["name"].as_str().expect("name");
    api.patch(
        name,
        &PatchParams::apply("ipfs-kit-operator-pin-tests").force(),
        &Patch::Apply(object),
    )
    .await
    .expect("apply IpfsPin");
}

/// Waits up to 120 s for the IpfsPin to satisfy `ok`; fails showing its status.
async fn wait_pin(
    api: &Api<IpfsPin>,
    name: &str,
    what: &str,
    ok: impl Fn(&IpfsPin) -> bool,
) -> IpfsPin {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut last = None;
    loop {
        if let Ok(p) = api.get(name).await {
            if ok(&p) {
                return p;
            }
            last = Some(p);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for IpfsPin {name}: {what}; last seen: {:?}",
            last.map(|p| p.status)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ready_reason(pin: &IpfsPin) -> Option<String> {
    pin.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_reaches_every_peer_of_a_real_cluster_and_is_unpinned_on_delete() {
    let world = IpfsWorld::start(3).await;
    let cid = world.put_block(0, b"ipfs-kit-operator IpfsPin test").await;

    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("pin").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    let mut cluster = cluster_json("store", &class, 1);
    // Its Kubo API is not behind the pod IP: report, do not restart the pod (its IP would change).
    cluster["spec"]["health"]["autoHeal"] = json!(false);
    apply_cluster(&client, &ns, &cluster).await;
    let pods = running_pods(&client, &ns, "store", 1).await;
    let ip = pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("kwok gave the pod an IP");
    // The real cluster's REST API, at the pod's IP and the port the operator uses.
    let target: SocketAddr = world.peers[0]
        .cluster_api
        .trim_start_matches("http://")
        .parse()
        .expect("cluster API address");
    let listen: SocketAddr = format!("{ip}:9094").parse().expect("pod address");
    let _forwarder = forward(listen, target).await;

    let pins: Api<IpfsPin> = Api::namespaced(client.clone(), &ns);
    apply_pin(&pins, &pin_json("site", "store", &cid)).await;
    let pinned = wait_pin(&pins, "site", "Pinned on all 3 peers", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(PinPhase::Pinned) && s.pinned == Some(3))
    })
    .await;
    let status = pinned.status.expect("status");
    assert_eq!(status.pinned_summary.as_deref(), Some("3/3"));
    assert_eq!(status.observed_generation, pinned.metadata.generation);
    let mut ids: Vec<String> = status
        .peers
        .iter()
        .filter_map(|p| p.peer_id.clone())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = world
        .peers
        .iter()
        .map(|p| p.cluster_peer_id.clone())
        .collect();
    expected.sort();
    assert_eq!(ids, expected, "one entry per real cluster peer");
    assert!(
        pinned
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "ipfskit.io/unpin"),
        "{:?}",
        pinned.metadata.finalizers
    );
    // The real cluster holds it under the IpfsPin's `<namespace>/<name>`.
    let allocation = world
        .cluster_lines(1, &format!("/allocations/{cid}"))
        .await
        .expect("the cluster has the pin");
    assert_eq!(allocation[0]["name"], json!(format!("{ns}/site")));

    // A new name in the spec is carried to the cluster.
    let mut renamed = pin_json("site", "store", &cid);
    renamed["spec"]["name"] = json!("website");
    apply_pin(&pins, &renamed).await;
    wait_for(
        "the cluster to hold the pin under its new name",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let a = world
                .cluster_lines(2, &format!("/allocations/{cid}"))
                .await?;
            (a.first()?["name"] == "website").then_some(())
        },
    )
    .await;

    // Deleting the IpfsPin unpins the CID from the cluster before the object goes.
    pins.delete("site", &DeleteParams::default())
        .await
        .expect("delete IpfsPin");
    wait_for(
        "the IpfsPin to be gone",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async { pins.get_opt("site").await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(
        world
            .cluster_lines(0, &format!("/allocations/{cid}"))
            .await
            .is_none(),
        "the CID is no longer in the cluster's pinset"
    );
    let reasons: Vec<String> = events(&client, &ns)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "PinRequested") && reasons.iter().any(|r| r == "Unpinned"),
        "{reasons:?}"
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn a_pin_on_an_unreachable_or_missing_cluster_says_so_and_can_still_be_deleted() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("pin-kwok").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    apply_cluster(&client, &ns, &cluster_json("empty", &class, 1)).await;
    running_pods(&client, &ns, "empty", 1).await;

    let cid = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let pins: Api<IpfsPin> = Api::namespaced(client.clone(), &ns);
    apply_pin(&pins, &pin_json("nowhere", "empty", cid)).await;
    apply_pin(&pins, &pin_json("orphan", "missing", cid)).await;
    let unreachable = wait_pin(&pins, "nowhere", "Ready False: ClusterUnreachable", |p| {
        ready_reason(p).as_deref() == Some("ClusterUnreachable")
    })
    .await;
    let status = unreachable.status.expect("status");
    assert_eq!(status.phase, Some(PinPhase::Pending));
    let message = &status.conditions[0].message;
    assert!(
        message.contains("no peer of IpfsCluster empty answered"),
        "{message}"
    );
    wait_pin(&pins, "orphan", "Ready False: ClusterNotFound", |p| {
        ready_reason(p).as_deref() == Some("ClusterNotFound")
    })
    .await;

    // Without its cluster there is nothing to unpin: the IpfsPin goes at once.
    pins.delete("orphan", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "the orphan IpfsPin to be gone",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async { pins.get_opt("orphan").await.ok()?.is_none().then_some(()) },
    )
    .await;
    // With a cluster that does not answer, the unpin is retried and the finalizer holds it.
    pins.delete("nowhere", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = pins.get("nowhere").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    let warned = events(&client, &ns).await.into_iter().any(|e| {
        e.reason.as_deref() == Some("UnpinFailed")
            && e.note.unwrap_or_default().contains("ipfskit.io/unpin")
    });
    assert!(warned, "an UnpinFailed Event says how to force it");
    let _ = stop.send(());
}
