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

/// Replicas started at the same instant (a Deployment's first rollout) on a Lease that does not
/// exist yet: one leads, never two (each takes the Lease under its own field manager, so that a
/// second taker's apply conflicts instead of silently overwriting the holder).
#[tokio::test]
async fn replicas_started_at_once_never_both_lead() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("race").await;
    let dir = std::env::temp_dir();
    // Three Leases, three replicas each, all started at once.
    let groups: Vec<Vec<(u16, Child)>> = (0..3)
        .map(|group| {
            (0..3)
                .map(|who| {
                    let port = free_port();
                    let log = dir.join(format!("ipfs-kit-operator-{ns}-{group}-{who}.log"));
                    let child = crate::support::clusters::operator_command(
                        cp,
                        &ns,
                        &format!("race-{group}-{who}"),
                        &format!("127.0.0.1:{port}"),
                        &log,
                    )
                    .args(["--lease-name", &format!("race-{group}")])
                    .spawn()
                    .expect("start ipfs-kit-operator run");
                    (port, child)
                })
                .collect()
        })
        .collect();
    let leaders = |group: &[(u16, Child)]| {
        group
            .iter()
            .filter(|(port, _)| metrics(*port).is_some_and(|t| t.contains("\nipfs_kit_leader 1\n")))
            .count()
    };
    let mut led = [false; 3];
    // Longer than the Lease (15 s) less its renewal grace (5 s): a replica that wrongly took
    // the lead has tried to renew and noticed by then.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        for (i, group) in groups.iter().enumerate() {
            let n = leaders(group);
            assert!(n <= 1, "Lease race-{i}: {n} replicas lead at once");
            led[i] |= n == 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(led, [true; 3], "each Lease has a leader");
    // What keeps the second taker out: its apply of the holder, under its own field manager,
    // conflicts with the first one's.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cp.admin_client().await, &ns);
    let holder = leases
        .get("race-0")
        .await
        .expect("Lease race-0")
        .spec
        .and_then(|s| s.holder_identity)
        .expect("a holder");
    let other = if holder == "race-0-0" {
        "race-0-1"
    } else {
        "race-0-0"
    };
    let take = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "spec": {"holderIdentity": other}});
    let manager = ipfs_kit_operator::runtime::kube::lease::field_manager(other);
    let err = leases
        .patch(
            "race-0",
            &PatchParams::apply(&manager),
            &Patch::Apply(&take),
        )
        .await
        .expect_err("a second taker conflicts");
    assert!(
        matches!(&err, kube::Error::Api(e) if e.code == 409),
        "{err}"
    );
    for (_, child) in &mut groups.into_iter().flatten().collect::<Vec<_>>() {
        let status = stop_operator(child).await;
        assert!(status.success(), "operator exit {status:?}");
    }
}
