//! Change requests are never lost, with the binaries as they run in the pods: two controllers
//! (`ipfs-kit-operator run`, leader election) and two dashboard sidecars
//! (`ipfs-kit-operator dashboard`). Twenty restart requests for twenty different daemons, sent
//! at once through both sidecars, are each recorded before `202`, carried out exactly once, and
//! reported done on their watch URLs; Kubo restarts reach real Kubo daemons behind the kwok pods'
//! IPs, IPFS Cluster restarts replace the pods.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use futures::StreamExt;
use ipfs_kit_operator::api::request::{REQUEST_LABEL, request_record};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use crate::support::clusters::{
    apply_cluster, cluster_json, provide_volumes, running_pods, spawn_operator,
};
use crate::support::control_plane::{ControlPlane, control_plane};
use crate::support::forward::forward;
use crate::support::ipfs::start_kubo;
use crate::support::process::free_port;
use crate::support::wait_for;

const TOKEN: &str = "requests-test-token-0123456789";
const PEERS: usize = 20;
/// Peers 0..KUBO get their Kubo restarted (real daemons behind their pod IPs); the others their
/// IPFS Cluster daemon (the pod is replaced).
const KUBO: usize = 10;

struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn log_file(ns: &str, what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ipfs-kit-{ns}-{what}.log"))
}

/// `ipfs-kit-operator dashboard` for `ns` with the token in `token_file`, on `port`.
fn spawn_sidecar(cp: &ControlPlane, ns: &str, token_file: &std::path::Path, port: u16) -> Child {
    let log = log_file(ns, &format!("sidecar-{port}"));
    crate::support::clusters::sidecar_command(cp, ns, port, &log)
        .arg("--token-file")
        .arg(token_file)
        .spawn()
        .expect("start ipfs-kit-operator dashboard")
}

/// Every pod deletion in `ns` by pod name, counted from now until the task is aborted.
fn count_deletions(
    pods: Api<Pod>,
) -> (
    std::sync::Arc<std::sync::Mutex<BTreeMap<String, usize>>>,
    tokio::task::JoinHandle<()>,
) {
    let counts = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let seen = counts.clone();
    let task = tokio::spawn(async move {
        let events = watcher(pods, watcher::Config::default());
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Delete(pod)) = event {
                let name = pod.metadata.name.unwrap_or_default();
                *seen.lock().expect("counts").entry(name).or_insert(0) += 1;
            }
        }
    });
    (counts, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_restart_requests_are_each_carried_out_exactly_once() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("requests").await;
    let client = cp.admin_client().await;
    // Two volumes per peer (Kubo, IPFS Cluster).
    let class = provide_volumes(&client, &ns, 2 * PEERS).await;
    let mut cluster = cluster_json("req", &class, PEERS as i32);
    // Only the requests restart anything (no healing of the peers without daemons).
    cluster["spec"]["health"]["autoHeal"] = json!(false);
    apply_cluster(&client, &ns, &cluster).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let (ctl_a, ctl_b) = (free_port(), free_port());
    let (dash_a, dash_b) = (free_port(), free_port());
    let _processes = Processes(vec![
        spawn_operator(cp, &ns, "operator-a", ctl_a, &log_file(&ns, "a")),
        spawn_operator(cp, &ns, "operator-b", ctl_b, &log_file(&ns, "b")),
        spawn_sidecar(cp, &ns, &token_file, dash_a),
        spawn_sidecar(cp, &ns, &token_file, dash_b),
    ]);

    // Real Kubo daemons behind the first pods' IPs.
    let pods = running_pods(&client, &ns, "req", PEERS).await;
    let mut kubos = Vec::new();
    let mut forwarders = Vec::new();
    for i in 0..KUBO {
        let pod = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&format!("req-{i}")))
            .expect("pod");
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("pod IP");
        let (kubo, api) = start_kubo(&dir.path().join(format!("kubo-{i}"))).await;
        let listen: SocketAddr = format!("{ip}:5001").parse().expect("address");
        forwarders.push(forward(listen, api).await);
        kubos.push(kubo);
    }
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http");
    for port in [dash_a, dash_b] {
        crate::support::dashboard_status_until(
            &format!("http://127.0.0.1:{port}"),
            "the sidecar to serve every peer",
            |b| (b["data"]["clusters"][0]["peers"].as_array()?.len() == PEERS).then_some(()),
        )
        .await;
    }

    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let (deletions, deletions_task) = count_deletions(pod_api.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Twenty requests at once, half through each sidecar.
    let sends = (0..PEERS).map(|i| {
        let daemon = if i < KUBO { "ipfs" } else { "cluster" };
        let port = if i % 2 == 0 { dash_a } else { dash_b };
        let url = format!(
            "http://127.0.0.1:{port}/api/dashboard/backends/{ns}/req/req-{i}/{daemon}/restart"
        );
        let http = http.clone();
        async move {
            let resp = http
                .post(&url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("POST");
            let code = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            assert_eq!(code, 202, "{url}: {body}");
            (i, port, body)
        }
    });
    let accepted = futures::future::join_all(sends).await;
    // Recorded before the answers: all twenty are there now, each its own.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let recorded = config_maps
        .list(&ListParams::default().labels(REQUEST_LABEL))
        .await
        .expect("list requests");
    let mut ids: Vec<u64> = accepted
        .iter()
        .map(|(_, _, b)| b["data"]["requested"]["id"].as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), PEERS, "ids are unique across both sidecars");
    assert_eq!(
        recorded.items.len(),
        PEERS,
        "every request recorded before its 202"
    );

    // Every watch URL ends done, through the sidecar that accepted it.
    for (i, port, body) in &accepted {
        let watch = body["data"]["watch"].as_str().expect("watch URL");
        let url = format!("http://127.0.0.1:{port}{watch}");
        let done = wait_for(
            &format!("request for peer {i} done"),
            Duration::from_secs(120),
            Duration::from_millis(300),
            || async {
                let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                let state = body["data"]["state"].as_str()?.to_owned();
                assert_ne!(state, "failed", "peer {i}: {body}");
                (state == "done").then_some(body)
            },
        )
        .await;
        let reason = done["data"]["reason"].as_str().unwrap_or_default();
        let expected = if *i < KUBO {
            "asked Kubo"
        } else {
            "asked the IPFS Cluster daemon"
        };
        assert!(reason.contains(expected), "peer {i}: {done}");
    }

    // Carried out exactly once: each Kubo got its shutdown (and exited); no pod was deleted
    // (a daemon's restart keeps its pod); one Event per request.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (i, kubo) in kubos.iter_mut().enumerate() {
        while kubo.is_running() {
            assert!(
                std::time::Instant::now() < deadline,
                "Kubo of req-{i} still runs"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    deletions_task.abort();
    let deletions = deletions.lock().expect("counts").clone();
    for i in 0..PEERS {
        let n = deletions.get(&format!("req-{i}")).copied().unwrap_or(0);
        assert_eq!(n, 0, "pod req-{i} deleted {n} times: {deletions:?}");
    }
    // Each IPFS Cluster restart is its request's id on its pod (read by the cluster container).
    for (i, _, body) in accepted.iter().filter(|(i, _, _)| *i >= KUBO) {
        let id = body["data"]["requested"]["id"].as_u64().expect("id");
        let pod = pod_api.get(&format!("req-{i}")).await.expect("pod");
        let asked = pod
            .metadata
            .annotations
            .unwrap_or_default()
            .remove(ipfs_kit_operator::runtime::kube::build::RESTART_CLUSTER_ANNOTATION);
        assert_eq!(asked, Some(id.to_string()), "pod req-{i}");
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let events = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    for id in &ids {
        let about: Vec<_> = events
            .iter()
            .filter(|e| {
                e.note
                    .as_deref()
                    .is_some_and(|n| n.starts_with(&format!("request {id}:")))
            })
            .collect();
        assert_eq!(about.len(), 1, "request {id}: {about:?}");
        let repeats = about[0].series.as_ref().map_or(1, |s| s.count);
        assert_eq!(repeats, 1, "request {id} reported twice: {:?}", about[0]);
    }

    // A request that cannot be carried out ends failed, with the reason: req-0's Kubo is gone
    // (no kubelet restarts it here).
    let url =
        format!("http://127.0.0.1:{dash_a}/api/dashboard/backends/{ns}/req/req-0/ipfs/restart");
    let body: Value = http
        .post(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("json");
    let watch = format!(
        "http://127.0.0.1:{dash_a}{}",
        body["data"]["watch"].as_str().expect("watch")
    );
    let failed = wait_for(
        "the request for the stopped Kubo failed",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let body: Value = http.get(&watch).send().await.ok()?.json().await.ok()?;
            (body["data"]["state"] == "failed").then_some(body)
        },
    )
    .await;
    let reason = failed["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("restarting Kubo of req-0"), "{failed}");

    // A health check answers once its round is done, with that round's probe times.
    let before = k8s_openapi::jiff::Timestamp::now();
    let resp = http
        .post(format!(
            "http://127.0.0.1:{dash_b}/api/dashboard/health/check"
        ))
        .bearer_auth(TOKEN)
        .json(&json!({"backend_name": format!("{ns}/req/req-5/ipfs")}))
        .send()
        .await
        .expect("health check");
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code, 200, "{body}");
    let probed = body["data"]["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .find(|p| p["name"] == "req-5")
        .and_then(|p| p["lastProbe"].as_str())
        .expect("req-5 probed")
        .parse::<k8s_openapi::jiff::Timestamp>()
        .expect("time");
    // lastProbe has whole seconds.
    assert!(probed.as_second() >= before.as_second(), "{body}");
    let id = body["data"]["requested"]["id"].as_u64().expect("id");
    let cm = config_maps
        .get(&format!("req-request-{id}"))
        .await
        .expect("the probe request");
    let record = request_record(&cm).expect("record");
    assert_eq!(
        record.state,
        ipfs_kit_operator::api::RequestState::Done,
        "{record:?}"
    );
    // With the version its status write left (a round in the same second as the one before
    // writes the same probe times: the version tells the dashboard the round is there).
    assert!(record.status_version.is_some(), "{record:?}");
    drop(forwarders);
}
