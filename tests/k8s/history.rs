//! The history in Kubernetes, with the binaries as they run in the pods: two controllers
//! (`ipfs-kit-operator run`, leader election on a Lease) and a dashboard sidecar next to each
//! (`ipfs-kit-operator dashboard`). Only the leader samples, once per probe interval; every sidecar
//! reads the leader's history (its own controller's on loopback, or the address the leader
//! advertised on the Lease), and after a handover the new leader's.

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::Value;

use crate::support::clusters::{
    apply_cluster, cluster_json, provide_volumes, spawn_operator, stop_operator,
};
use crate::support::control_plane::{ControlPlane, control_plane};
use crate::support::process::free_port;
use crate::support::wait_for;

fn log_file(ns: &str, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ipfs-kit-{ns}-{what}.log"))
}

/// `ipfs-kit-operator dashboard` for `ns` next to the controller `instance` whose metrics server
/// listens on `controller_port`; it listens on `port`.
fn spawn_sidecar(
    cp: &ControlPlane,
    ns: &str,
    instance: &str,
    controller_port: u16,
    port: u16,
) -> Child {
    let log = log_file(ns, &format!("sidecar-{instance}"));
    crate::support::clusters::sidecar_command(cp, ns, port, &log)
        .args([
            "--controller-url",
            &format!("http://127.0.0.1:{controller_port}"),
        ])
        .args(["--lease-namespace", ns, "--instance", instance])
        .spawn()
        .expect("start ipfs-kit-operator dashboard")
}

/// The answer of `GET http://127.0.0.1:{port}{path}`: its status and JSON body.
async fn get(port: u16, path: &str) -> Option<(u16, Value)> {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .ok()?;
    let resp = http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
        .ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.json().await.unwrap_or(Value::Null)))
}

fn times(body: &Value) -> Vec<String> {
    body["data"]["samples"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x["time"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("ipfs-kit-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

/// The history of `path` through the sidecar on `port` once it holds at least `n` samples.
async fn history_with(port: u16, path: &str, n: usize, what: &str) -> Value {
    wait_for(
        what,
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let (code, body) = get(port, path).await?;
            (code == 200 && times(&body).len() >= n).then_some(body)
        },
    )
    .await
}

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn the_leader_samples_every_interval_and_every_sidecar_serves_the_leaders_history() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("history").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let (port_a, port_b) = (free_port(), free_port());
    let mut operator_a = spawn_operator(cp, &ns, "operator-a", port_a, &log_file(&ns, "a"));
    wait_for(
        "operator-a leading",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (holder(&leases).await.as_deref() == Some("operator-a")).then_some(()) },
    )
    .await;
    let operator_b = spawn_operator(cp, &ns, "operator-b", port_b, &log_file(&ns, "b"));
    let (dash_a, dash_b) = (free_port(), free_port());
    let mut processes = Processes(vec![
        operator_b,
        spawn_sidecar(cp, &ns, "operator-a", port_a, dash_a),
        spawn_sidecar(cp, &ns, "operator-b", port_b, dash_b),
    ]);

    let mut cluster = cluster_json("hist", &class, 1);
    cluster["spec"]["health"] = serde_json::json!({"probeInterval": "1s", "probeTimeout": "500ms"});
    apply_cluster(&client, &ns, &cluster).await;
    let path = format!("/api/dashboard/history/{ns}/hist");

    // The sidecar next to the follower reads the leader's history (advertised on the Lease).
    let first = history_with(
        dash_b,
        &path,
        3,
        "the leader's samples through the follower's sidecar",
    )
    .await;
    assert_eq!(first["data"]["intervalSeconds"], 1.0, "{first}");
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (_, later) = get(dash_b, &path).await.expect("history");
    let elapsed = started.elapsed().as_secs_f64();
    let added = times(&later).len() - times(&first).len();
    assert!(
        (elapsed.floor() as usize - 1..=elapsed.ceil() as usize + 1).contains(&added),
        "{added} samples in {elapsed:.1} s at a 1 s probe interval: {later}"
    );
    // The leader's own sidecar serves the same series; the follower keeps none.
    let (code, own) = get(dash_a, &path).await.expect("history");
    assert_eq!(code, 200, "{own}");
    assert_eq!(times(&own)[..times(&later).len()], times(&later)[..]);
    let (code, body) = get(port_b, &format!("/internal/history/{ns}/hist"))
        .await
        .expect("follower");
    assert_eq!(code, 404, "the follower does not sample: {body}");
    let (code, body) = get(dash_b, &format!("{path}?step=fast"))
        .await
        .expect("bad step");
    assert_eq!(code, 400, "{body}");

    // Handover: operator-a stops; its sidecar now reads operator-b's history.
    let a_last = times(&own).pop().expect("a sample");
    let status = stop_operator(&mut operator_a).await;
    assert!(status.success(), "operator-a exit {status:?}");
    wait_for(
        "operator-b leading",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { (holder(&leases).await.as_deref() == Some("operator-b")).then_some(()) },
    )
    .await;
    let after = history_with(
        dash_a,
        &path,
        2,
        "the new leader's samples through operator-a's sidecar",
    )
    .await;
    let served = times(&after);
    assert!(
        served[0] > a_last,
        "served from operator-b, which sampled only since it leads: {served:?} (a's last {a_last})"
    );
    for child in &mut processes.0 {
        let _ = child.kill();
    }
}
