//! The operator's own metrics against the real API server, with the binaries a user runs: two
//! `run` replicas with leader election and a `dashboard` sidecar. Only the leader exports the
//! cluster and peer series; a removed peer and a deleted IpfsCluster lose theirs.

use std::path::Path;
use std::process::Child;
use std::time::Duration;

use ipfs_kit_operator::api::{IpfsCluster, IpfsPin};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::support::clusters::{
    TEST_MANAGER, apply_cluster, cluster_json, http_get, provide_volumes, spawn_operator,
    stop_operator,
};
use crate::support::control_plane::{ControlPlane, control_plane};
use crate::support::process::free_port;
use crate::support::wait_for;

/// `ipfs-kit-operator dashboard` (the sidecar) for namespace `ns` on 127.0.0.1:`port`.
fn spawn_sidecar(cp: &ControlPlane, ns: &str, port: u16, log: &Path) -> Child {
    crate::support::clusters::sidecar_command(cp, ns, port, log)
        .spawn()
        .expect("start ipfs-kit-operator dashboard")
}

/// The body of `GET /metrics` on 127.0.0.1:`port`, if it answers.
fn metrics(port: u16) -> Option<String> {
    let answer = http_get(port, "/metrics")?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.lines()
        .next()?
        .contains(" 200 ")
        .then(|| body.to_owned())
}

/// The sum of the samples whose line starts with `prefix`.
fn sum(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn exports_cluster_series(text: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with("ipfs_kit_peer_") || l.starts_with("ipfs_kit_cluster_"))
}

/// Waits until one of the operators leads and exports `want`; returns (leader, follower) ports.
async fn leader_exporting(ports: [u16; 2], want: &str) -> (u16, u16) {
    wait_for(
        &format!("a leader exporting {want}"),
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            for (i, port) in ports.iter().enumerate() {
                let text = metrics(*port)?;
                if text.contains("\nipfs_kit_leader 1\n") && text.contains(want) {
                    return Some((*port, ports[1 - i]));
                }
            }
            None
        },
    )
    .await
}

#[tokio::test]
async fn only_the_leader_exports_cluster_series_and_removed_peers_and_clusters_lose_theirs() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("metrics").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 4).await;
    let ports = [free_port(), free_port()];
    let dir = std::env::temp_dir();
    let mut operators: Vec<Child> = ["a", "b"]
        .iter()
        .zip(ports)
        .map(|(who, port)| {
            let log = dir.join(format!("ipfs-kit-operator-{ns}-{who}.log"));
            spawn_operator(cp, &ns, &format!("metrics-{who}"), port, &log)
        })
        .collect();
    let sidecar_port = free_port();
    let sidecar_log = dir.join(format!("ipfs-kit-dashboard-{ns}.log"));
    let mut sidecar = spawn_sidecar(cp, &ns, sidecar_port, &sidecar_log);

    apply_cluster(&client, &ns, &cluster_json("m", &class, 2)).await;
    let pins: Api<IpfsPin> = Api::namespaced(client.clone(), &ns);
    let pin = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
        "metadata": {"name": "docs"},
        "spec": {"clusterRef": {"name": "m"},
                 "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"}});
    pins.patch(
        "docs",
        &PatchParams::apply(TEST_MANAGER),
        &Patch::Apply(&pin),
    )
    .await
    .expect("create pin");

    let peer = |name: &str| format!("{{namespace=\"{ns}\",cluster=\"m\",peer=\"{name}\"}}");
    let m1_up = format!("ipfs_kit_peer_up{}", peer("m-1"));
    let (leader, follower) = leader_exporting(ports, &m1_up).await;
    let text = metrics(leader).expect("leader metrics");
    for line in [
        format!("ipfs_kit_cluster_peers_desired{{namespace=\"{ns}\",cluster=\"m\"}} 2"),
        format!(
            "ipfs_kit_peer_volume_capacity_bytes{} 1073741824",
            peer("m-0")
        ),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    let phases = format!("ipfs_kit_cluster_phase{{namespace=\"{ns}\",cluster=\"m\",");
    assert_eq!(sum(&text, &phases), 1.0, "one phase is current:\n{text}");
    let pins_of_m = format!("ipfs_kit_ipfspins{{namespace=\"{ns}\",cluster=\"m\",");
    assert_eq!(sum(&text, &pins_of_m), 1.0, "one IpfsPin:\n{text}");

    let text = metrics(follower).expect("follower metrics");
    assert!(text.contains("\nipfs_kit_leader 0\n"), "{text}");
    assert!(
        !exports_cluster_series(&text),
        "a follower exports none:\n{text}"
    );

    // The sidecar serves the cluster (its watch works) but exports only its own metrics.
    let _ = crate::support::dashboard_status_until(
        &format!("http://127.0.0.1:{sidecar_port}"),
        "the sidecar serving cluster m",
        |body| body["data"]["clusters"].as_array()?.first().cloned(),
    )
    .await;
    let text = metrics(sidecar_port).expect("sidecar metrics");
    assert!(
        !exports_cluster_series(&text),
        "the sidecar exports none:\n{text}"
    );
    assert!(!text.contains("ipfs_kit_leader"), "{text}");
    assert!(
        text.contains("ipfs_kit_dashboard_requests_total{route=\"/api/dashboard/status\""),
        "{text}"
    );

    // Scale in: the departed peer's series go, the remaining peer's stay.
    apply_cluster(&client, &ns, &cluster_json("m", &class, 1)).await;
    wait_for(
        "m-1's series to go from the leader",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let text = metrics(leader)?;
            let gone = !text.contains("peer=\"m-1\"")
                && text.contains(&format!("ipfs_kit_peer_up{}", peer("m-0")));
            gone.then_some(())
        },
    )
    .await;

    // Delete the IpfsCluster: every series of it goes, its IpfsPins' count included.
    let clusters: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .delete("m", &DeleteParams::default())
        .await
        .expect("delete cluster");
    let text = wait_for(
        "every series of m to go",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let text = metrics(leader)?;
            (!text.contains("cluster=\"m\"")).then_some(text)
        },
    )
    .await;
    assert!(text.contains("\nipfs_kit_leader 1\n"), "{text}");
    assert!(!exports_cluster_series(&text), "{text}");

    let status = stop_operator(&mut sidecar).await;
    assert!(status.success(), "sidecar exit {status:?}");
    for operator in &mut operators {
        let status = stop_operator(operator).await;
        assert!(status.success(), "operator exit {status:?}");
    }
}
