//! The Kubernetes runtime end to end on real pods (the test world's real node,
//! tests/support/real_node.rs): the chart installed with helm and `deploy/` applied with kubectl,
//! both running the locally built operator image in namespaces that enforce the restricted Pod
//! Security Standard; `examples/minimal-cluster.yaml` and `examples/pin.yaml` applied unchanged
//! (but for the CID) and checked the way a user checks them: kubectl, the daemons' own APIs at
//! the pod IPs, the dashboard sidecar at its pod IP. Exposed peers (`reach`) are dialled through
//! kube-proxy at their node ports and load balancer address.
//!
//! The tests run one at a time (`SERIAL`): each runs several real Kubo and IPFS Cluster daemons,
//! and `deploy/`'s operator must not reconcile next to the chart's. The figures are printed
//! (uncaptured) to standard error.

#[path = "../support/mod.rs"]
mod support;

mod deploy;
mod explained;
mod first_start;
mod private;
mod reach;
mod scenario;
mod steady;
mod steps;
mod upgrade;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use support::real_node::{OPERATOR_IMAGE, RealNode, real_node};
use support::{tools, wait_for};

/// The helm release (its objects are then named `ipfs-kit-operator`) and its namespace.
const RELEASE: &str = "ipfs-kit-operator";
const HELM_NAMESPACE: &str = "ipfs-kit-helm";

static SERIAL: Mutex<()> = Mutex::const_new(());
static HELM_INSTALL: OnceCell<Result<Duration, String>> = OnceCell::const_new();

/// Writes a line to standard error past the test harness' capture (figures for the run's log).
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "[realpods] {line}");
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `kubectl` with the node's admin kubeconfig; fails the test with its output unless it
/// succeeds.
pub fn kubectl(node: &RealNode, args: &[&str]) -> String {
    let out = node
        .kubectl()
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run kubectl");
    succeeded("kubectl", args, out)
}

fn succeeded(program: &str, args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {}: {}\n{stdout}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Creates a namespace labelled to enforce the restricted Pod Security Standard; waits for its
/// `default` ServiceAccount.
pub async fn restricted_namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"
        }}
    }))
    .expect("namespace json");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), name);
    wait_for(
        "the namespace's default ServiceAccount",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async { accounts.get_opt("default").await.ok()?.map(|_| ()) },
    )
    .await;
}

/// The pods of a Deployment (by its selector), once `want` of them are Ready.
pub async fn ready_pods(client: &Client, ns: &str, selector: &str, want: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("{want} Ready pods {selector} in {ns}"),
        Duration::from_secs(120),
        Duration::from_millis(250),
        || async {
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            let ready: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c.ready))
                })
                .collect();
            (ready.len() == want).then_some(ready)
        },
    )
    .await
}

/// The restart counts of every container of `pods`.
pub fn restarts(pods: &[Pod]) -> Vec<(String, String, i32)> {
    pods.iter()
        .flat_map(|p| {
            let pod = p.name_any();
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
                .map(move |c| (pod.clone(), c.name.clone(), c.restart_count))
        })
        .collect()
}

/// The holder of a Lease, once it has one.
async fn lease_holder(client: &Client, ns: &str, name: &str) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("the Lease {ns}/{name} held"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            leases
                .get_opt(name)
                .await
                .ok()??
                .spec?
                .holder_identity
                .filter(|h| !h.is_empty())
        },
    )
    .await
}

/// The test world's helm with its own (empty) cache, config and data directories.
fn helm(node: &RealNode, home: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(tools::binary("helm", "helm"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env("KUBECONFIG", &node.kubeconfig)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run helm");
    succeeded("helm", args, out)
}

/// Installs the chart once per run (the operator the cluster tests rely on): `helm install`
/// into a restricted namespace, the locally built image (the chart's default name), `--wait`.
/// Returns how long the install took to Ready.
async fn helm_install() -> Duration {
    let result = HELM_INSTALL
        .get_or_init(|| async {
            let node = real_node();
            let client = node.admin_client().await;
            node.install_crds().await;
            restricted_namespace(&client, HELM_NAMESPACE).await;
            let home = tempfile::tempdir().map_err(|e| e.to_string())?;
            let started = Instant::now();
            helm(
                node,
                home.path(),
                &[
                    "install",
                    RELEASE,
                    "charts/ipfs-kit-operator",
                    "--namespace",
                    HELM_NAMESPACE,
                    "--set",
                    "log.level=info\\,ipfs_kit_operator=debug",
                    "--wait",
                    "--timeout",
                    "3m",
                ],
            );
            Ok(started.elapsed())
        })
        .await;
    match result {
        Ok(took) => *took,
        Err(e) => panic!("helm install: {e}"),
    }
}

/// The dashboard token the chart generated.
pub async fn helm_dashboard_token(client: &Client) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), HELM_NAMESPACE)
        .get(&format!("{RELEASE}-dashboard-token"))
        .await
        .expect("the chart's dashboard token Secret");
    let bytes = secret
        .data
        .and_then(|d| d.get("token").cloned())
        .expect("token key");
    String::from_utf8(bytes.0).expect("utf-8 token")
}

/// The IP of a Ready pod of the chart's operator (its dashboard sidecar answers there).
/// The pod IPs of the chart's operator replicas.
pub async fn helm_operator_ips(client: &Client) -> Vec<String> {
    ready_pods(
        client,
        HELM_NAMESPACE,
        &format!("app.kubernetes.io/instance={RELEASE}"),
        2,
    )
    .await
    .iter()
    .filter_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
    .collect()
}

pub async fn helm_operator_ip(client: &Client) -> String {
    let pods = ready_pods(
        client,
        HELM_NAMESPACE,
        &format!("app.kubernetes.io/instance={RELEASE}"),
        2,
    )
    .await;
    pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("operator pod IP")
}

/// Serialises the tests and makes sure the chart's operator runs.
async fn serial() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().await;
    helm_install().await;
    guard
}

pub fn http() -> reqwest::Client {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// `helm install` of the chart with the locally built image into a namespace that enforces the
/// restricted standard: both replicas Running and Ready without a restart, one of them holds the
/// leader Lease, the CRDs come with it.
#[tokio::test]
async fn helm_installs_the_operator_into_a_restricted_namespace() {
    let _serial = serial().await;
    let took = helm_install().await;
    report(&format!(
        "helm install --wait (2 operator replicas Ready): {:.1} s",
        took.as_secs_f64()
    ));
    let node = real_node();
    let client = node.admin_client().await;
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let pods = ready_pods(&client, HELM_NAMESPACE, &selector, 2).await;
    for pod in &pods {
        let spec = pod.spec.as_ref().expect("pod spec");
        let images: Vec<&str> = spec
            .containers
            .iter()
            .filter_map(|c| c.image.as_deref())
            .collect();
        assert_eq!(images, [OPERATOR_IMAGE, OPERATOR_IMAGE], "{images:?}");
    }
    let counts = restarts(&pods);
    assert!(counts.iter().all(|(_, _, n)| *n == 0), "{counts:?}");
    let holder = lease_holder(&client, HELM_NAMESPACE, RELEASE).await;
    let names: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
    assert!(
        names.contains(&holder),
        "leader {holder} not one of {names:?}"
    );
    let deployment = Api::<Deployment>::namespaced(client.clone(), HELM_NAMESPACE)
        .get(RELEASE)
        .await
        .expect("deployment");
    let status = deployment.status.expect("deployment status");
    assert_eq!(status.ready_replicas, Some(2), "{status:?}");
    let table = kubectl(node, &["get", "pods", "-n", HELM_NAMESPACE, "-o", "wide"]);
    report(&format!("kubectl get pods -n {HELM_NAMESPACE}:\n{table}"));
}

/// `examples/minimal-cluster.yaml` as a user applies it, then pins, failures, dashboard
/// actions, scaling and a configuration change on its three real peers (see `scenario`).
#[tokio::test]
async fn minimal_cluster_on_real_pods() {
    let _serial = serial().await;
    scenario::minimal_cluster().await;
}

/// An IpfsCluster on a private network (`spec.swarmKeyRef`) whose pods leave their ids to the
/// platform: the missing Secret explained, then the peers formed, an outside Kubo kept out.
#[tokio::test]
async fn a_private_network_cluster_with_ids_left_to_the_platform() {
    let _serial = serial().await;
    private::private_network_with_platform_ids().await;
}

/// Five peers started together form one cluster, ten times in a row.
#[tokio::test]
async fn five_peers_started_together_form_one_cluster_every_time() {
    let _serial = serial().await;
    first_start::five_peers_form_one_cluster_every_time().await;
}

/// A NodePort cluster whose peers announce, and are reached at, their own node port; a load
/// balancer address written into one peer's Service restarts that peer alone to announce it.
#[tokio::test]
async fn exposed_peers_are_reached_at_the_address_they_announce() {
    let _serial = serial().await;
    reach::exposed_peers_are_reached_at_their_announced_address().await;
}

/// Peers whose pods cannot run say why in status: a claim of a StorageClass that does not
/// exist (the scheduler's message), an image that cannot be pulled (kubelet's reason).
#[tokio::test]
async fn pods_that_cannot_run_say_why_in_status() {
    let _serial = serial().await;
    explained::pods_that_cannot_run_say_why().await;
}

/// Peers whose Kubo have no swarm connection to each other are Degraded, not Healthy.
#[tokio::test]
async fn peers_without_swarm_connections_are_degraded() {
    let _serial = serial().await;
    explained::peers_without_swarm_connections_are_degraded().await;
}

/// A hung peer whose pod changes all the time is judged once per probe interval.
#[tokio::test]
async fn a_hung_peer_is_judged_per_interval_not_per_reconcile() {
    let _serial = serial().await;
    explained::a_hung_peer_is_judged_per_interval_not_per_reconcile().await;
}

/// A Healthy cluster with nothing to do is probed without a reconcile every probe interval
/// (`ipfs_kit_steady_clusters`), and a hung Kubo of it is still shown within 5 s.
#[tokio::test]
async fn a_steady_cluster_is_probed_without_reconciles() {
    let _serial = serial().await;
    steady::a_steady_cluster_is_probed_without_reconciles().await;
}

/// `kubectl apply -k deploy/` as written: the namespace (restricted), CRDs, RBAC and the
/// Deployment come up with the locally built image; the dashboard starts without a token Secret
/// and refuses changes, then takes the token once the Secret is created, without a restart.
/// Ends by deleting the Deployment, so that only the chart's operator reconciles.
#[tokio::test]
async fn kubectl_apply_k_deploy_works_as_written() {
    let _serial = serial().await;
    deploy::works_as_written().await;
}

/// Where a test's own files go (kept with the node's logs on failure).
pub fn scratch(name: &str) -> PathBuf {
    let dir = real_node().dir.join("scratch").join(name);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
