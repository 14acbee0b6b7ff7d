//! IpfsCluster helpers shared by the controller tests: volumes for the peers' claims, applying a
//! cluster, waiting for the objects it owns, its Running pods and its status.
//!
//! Storage: the test world has no volume provisioner, so [`provide_volumes`] creates a
//! StorageClass (`kubernetes.io/no-provisioner`, immediate binding, expansion allowed) and enough
//! hostPath PersistentVolumes of that class for the claims of the peers; the PV controller binds
//! them and the scheduler can place the pods. Nothing is ever mounted (kwok runs no containers).

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use ipfs_kit_operator::api::IpfsCluster;
use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::control_plane::ControlPlane;
use super::wait_for;

pub const TEST_MANAGER: &str = "ipfs-kit-operator-controller-tests";

/// A StorageClass named after the namespace and `count` hostPath volumes of 100Gi in it, created
/// 16 at a time.
pub async fn provide_volumes(client: &Client, ns: &str, count: usize) -> String {
    let class = format!("{ns}-local");
    let classes: Api<StorageClass> = Api::all(client.clone());
    let sc: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": class},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true
    }))
    .expect("storage class json");
    classes
        .create(&PostParams::default(), &sc)
        .await
        .expect("create StorageClass");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    futures::stream::iter(0..count)
        .for_each_concurrent(16, |i| {
            let (pvs, class) = (pvs.clone(), class.clone());
            async move {
                let pv: PersistentVolume = serde_json::from_value(json!({
                    "metadata": {"name": format!("{ns}-pv-{i}")},
                    "spec": {
                        "capacity": {"storage": "100Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": class,
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": format!("/tmp/ipfs-kit-test-pv/{ns}/{i}")}
                    }
                }))
                .expect("pv json");
                pvs.create(&PostParams::default(), &pv)
                    .await
                    .expect("create PersistentVolume");
            }
        })
        .await;
    class
}

pub fn cluster_json(name: &str, class: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "ipfskit.io/v1alpha1",
        "kind": "IpfsCluster",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "kubo": {"storage": {"size": "1Gi", "storageClassName": class}},
            "cluster": {"storage": {"size": "1Gi", "storageClassName": class}},
            "health": {"probeInterval": "2s", "probeTimeout": "1s"}
        }
    })
}

pub async fn apply_cluster(client: &Client, ns: &str, object: &Value) -> IpfsCluster {
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), ns);
    let name = object["metadata"]["name"].as_str().expect("name");
    api.patch(
        name,
        &PatchParams::apply(TEST_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .expect("apply IpfsCluster")
}

pub fn owned_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.kind == "IpfsCluster" && o.controller == Some(true))
}

/// Waits until object `name` exists and is controlled by the IpfsCluster of `uid`.
pub async fn owned<K>(client: &Client, ns: &str, name: &str, uid: &str) -> K
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{} {name} owned by the IpfsCluster", K::kind(&())),
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .filter(|o| owned_by(o.meta(), uid))
        },
    )
    .await
}

/// Waits until IpfsCluster `name` has exactly `count` Running pods.
pub async fn running_pods(client: &Client, ns: &str, name: &str, count: usize) -> Vec<Pod> {
    running_pods_matching(
        client,
        ns,
        &format!("app.kubernetes.io/instance={name}"),
        count,
    )
    .await
}

/// Waits (up to 120 s) until exactly `count` pods matching label `selector` are Running.
pub async fn running_pods_matching(
    client: &Client,
    ns: &str,
    selector: &str,
    count: usize,
) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{count} Running pods ({selector}) in {ns}"),
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                })
                .collect();
            (running.len() == count).then_some(running)
        },
    )
    .await
}

/// Waits up to 90 s for the IpfsCluster to satisfy `ok`; on timeout, fails showing its status.
pub async fn wait_status(
    api: &Api<IpfsCluster>,
    name: &str,
    what: &str,
    ok: impl Fn(&IpfsCluster) -> bool,
) -> IpfsCluster {
    wait_status_within(api, name, what, Duration::from_secs(90), ok).await
}

/// Waits up to `timeout` for the IpfsCluster to satisfy `ok`; on timeout, fails showing its
/// generation and status.
pub async fn wait_status_within(
    api: &Api<IpfsCluster>,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&IpfsCluster) -> bool,
) -> IpfsCluster {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(c) = api.get(name).await {
            if ok(&c) {
                return c;
            }
            last = Some(c);
        }
        if std::time::Instant::now() > deadline {
            let shown = last.map(|c| {
                serde_json::to_string_pretty(
                    &json!({"generation": c.metadata.generation, "status": c.status}),
                )
                .unwrap_or_default()
            });
            panic!(
                "timed out after {timeout:?} waiting for IpfsCluster {name}: {what}; last seen: {shown:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `ipfs-kit-operator run` (the binary under test) against `cp` for namespace `ns`, with leader
/// election on a Lease in `ns`, metrics on `metrics_addr`, standard error to `log`: ready to
/// spawn, or to add arguments to.
pub fn operator_command(
    cp: &ControlPlane,
    ns: &str,
    instance: &str,
    metrics_addr: &str,
    log: &Path,
) -> std::process::Command {
    let mut cmd = operator_command_of(
        Path::new(env!("CARGO_BIN_EXE_ipfs-kit-operator")),
        cp,
        ns,
        instance,
        metrics_addr,
    );
    cmd.stderr(std::fs::File::create(log).expect("operator log file"));
    cmd
}

/// [`operator_command`] of the binary at `binary` (say, a release build), its output not yet
/// directed anywhere.
pub fn operator_command_of(
    binary: &Path,
    cp: &ControlPlane,
    ns: &str,
    instance: &str,
    metrics_addr: &str,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary);
    cmd.args([
        "run",
        "--namespace",
        ns,
        "--metrics-addr",
        metrics_addr,
        "--lease-namespace",
        ns,
        "--instance",
        instance,
    ])
    .env("KUBECONFIG", &cp.kubeconfig)
    .env_remove("POD_NAME")
    .env_remove("POD_NAMESPACE");
    cmd
}

/// Starts [`operator_command`] with metrics on 127.0.0.1:`metrics_port`.
pub fn spawn_operator(
    cp: &ControlPlane,
    ns: &str,
    instance: &str,
    metrics_port: u16,
    log: &Path,
) -> std::process::Child {
    operator_command(cp, ns, instance, &format!("127.0.0.1:{metrics_port}"), log)
        .spawn()
        .expect("start ipfs-kit-operator run")
}

/// `ipfs-kit-operator dashboard` (the sidecar) against `cp` for namespace `ns`, listening on
/// 127.0.0.1:`port`, standard error to `log`: ready to spawn, or to add arguments to.
pub fn sidecar_command(
    cp: &ControlPlane,
    ns: &str,
    port: u16,
    log: &Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ipfs-kit-operator"));
    cmd.args(["dashboard", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--namespace", ns])
        .env("KUBECONFIG", &cp.kubeconfig)
        .env_remove("POD_NAME")
        .env_remove("POD_NAMESPACE")
        .stderr(std::fs::File::create(log).expect("sidecar log file"));
    cmd
}

/// Sends SIGTERM to the operator and waits up to 30 s for it to exit; returns its exit status.
pub async fn stop_operator(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait for the operator") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ipfs-kit-operator run did not exit within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GET path` on 127.0.0.1:`port` over plain HTTP/1.0: the whole answer (status line, headers,
/// body), or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    conn.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// Waits up to 60 s for an Event of `reason` in `ns` whose note mentions `about`; its note.
pub async fn event_note(client: &Client, ns: &str, reason: &str, about: &str) -> String {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("a {reason} Event about {about}"),
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .find_map(|e| e.note.filter(|n| n.contains(about)))
        },
    )
    .await
}

/// Waits until the controller carried out a restart request of peer `peer` of IpfsCluster
/// `cluster`: the pod was replaced (a new uid than `before`), and every request ConfigMap of the
/// cluster is done.
pub async fn wait_restart_carried_out(
    client: &Client,
    ns: &str,
    cluster: &str,
    peer: &str,
    before: &str,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("pod {peer} recreated after the restart request"),
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let p = pods.get_opt(peer).await.ok()??;
            (p.metadata.uid.as_deref() != Some(before) && p.metadata.deletion_timestamp.is_none())
                .then_some(())
        },
    )
    .await;
    wait_requests_done(client, ns, cluster).await;
}

/// Waits until every request recorded for `cluster` is done.
pub async fn wait_requests_done(client: &Client, ns: &str, cluster: &str) {
    let requests: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "{}={cluster}",
        ipfs_kit_operator::api::request::REQUEST_LABEL
    );
    wait_for(
        "the request recorded done by the controller",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let list = requests
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            let states: Vec<_> = list
                .items
                .iter()
                .map(ipfs_kit_operator::api::request::request_record)
                .collect::<Result<_, _>>()
                .ok()?;
            (!states.is_empty()
                && states
                    .iter()
                    .all(|r| r.state == ipfs_kit_operator::api::RequestState::Done))
            .then_some(())
        },
    )
    .await;
}

/// The node port of `service` for `port`/`protocol`.
pub fn node_port(service: &k8s_openapi::api::core::v1::Service, port: i32, protocol: &str) -> i32 {
    let spec = service.spec.as_ref().expect("spec");
    spec.ports
        .iter()
        .flatten()
        .find(|p| p.port == port && p.protocol.as_deref() == Some(protocol))
        .and_then(|p| p.node_port)
        .expect("node port allocated")
}
