//! Smoke tests of the test world's real node (tests/support/real_node.rs): kubelet + containerd +
//! runc + CNI + CoreDNS run real pods from the locally built images. Each test works in a
//! namespace of its own on the node shared by this binary; the start-up and pod figures are
//! printed (uncaptured) to standard error.

#[path = "../support/mod.rs"]
mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::Client;
use kube::api::{Api, LogParams, PostParams};
use serde_json::{Value, json};

use support::real_node::{NODE_IP, NODE_NAME, OPERATOR_IMAGE, real_node};
use support::wait_for;

/// Writes a line to standard error past the test harness' capture (figures for the run's log).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "[realnode] {line}");
}

fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

async fn create<K>(client: &Client, ns: &str, value: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let object: K = serde_json::from_value(value).expect("object json");
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .expect("create")
}

/// Waits until the pod's phase is one of `phases`, failing with its status and the kubelet log.
async fn wait_phase(
    client: &Client,
    ns: &str,
    name: &str,
    phases: &[&str],
    timeout: Duration,
) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + timeout;
    loop {
        // A controller's pod may not exist yet.
        let pod = pods.get_opt(name).await.expect("get pod");
        let phase = pod.as_ref().map(pod_phase).unwrap_or("");
        if let Some(pod) = &pod
            && phases.contains(&phase)
        {
            return pod.clone();
        }
        if phase == "Failed" || Instant::now() > deadline {
            panic!(
                "pod {ns}/{name} not {phases:?} (status {:#?}); kubelet log:\n{}",
                pod.and_then(|p| p.status),
                real_node().log_tail("kubelet", 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn logs(client: &Client, ns: &str, pod: &str, container: &str) -> String {
    Api::<Pod>::namespaced(client.clone(), ns)
        .logs(
            pod,
            &LogParams {
                container: Some(container.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("logs of {ns}/{pod}/{container}: {e}"))
}

fn http() -> reqwest::Client {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

#[tokio::test]
async fn node_is_ready_with_containerd_and_its_address() {
    let node = real_node();
    let f = &node.figures;
    report(&format!(
        "node start-up: control plane {:.1} s, containerd + image import {:.1} s, kubelet start -> \
         Ready {:.1} s, total {:.1} s",
        f.control_plane.as_secs_f64(),
        f.containerd_and_images.as_secs_f64(),
        f.kubelet_to_ready.as_secs_f64(),
        f.total.as_secs_f64()
    ));
    let client = node.admin_client().await;
    let n = Api::<Node>::all(client)
        .get(NODE_NAME)
        .await
        .expect("get node");
    let status = n.status.expect("node status");
    let info = status.node_info.expect("node info");
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
    assert_eq!(
        info.kubelet_version,
        support::tools::version("kubernetes"),
        "kubelet version"
    );
    let addresses = status.addresses.expect("addresses");
    assert!(
        addresses
            .iter()
            .any(|a| a.type_ == "InternalIP" && a.address == NODE_IP),
        "{addresses:?}"
    );
    assert!(
        status
            .conditions
            .expect("conditions")
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );
}

/// The Kubo image as a user runs it (its own entrypoint: `start_ipfs` initialises the repository,
/// runs `/container-init.d` scripts, drops to uid 1000 and execs `ipfs daemon`): the RPC API
/// answers at the pod IP, and the headless Service's name resolves from another pod.
#[tokio::test]
async fn kubo_image_runs_its_entrypoint_and_serves_rpc_and_dns_resolves() {
    let node = real_node();
    let client = node.admin_client().await;
    let ns = node.namespace("kubo").await;
    // Kept off every network but the namespace's own: no bootstrap peers, routing, AutoConf,
    // AutoTLS, mDNS, port mapping or telemetry (the init hook runs on every start).
    let offline = [
        "ipfs config --json Bootstrap '[]'",
        "ipfs config Routing.Type none",
        "ipfs config --json AutoConf.Enabled false",
        "ipfs config --json AutoTLS.Enabled false",
        "ipfs config --json Discovery.MDNS.Enabled false",
        "ipfs config --json Swarm.DisableNatPortMap true",
        "",
    ]
    .join("\n");
    let _: ConfigMap = create(
        &client,
        &ns,
        json!({"metadata": {"name": "offline"}, "data": {"001-offline.sh": offline}}),
    )
    .await;
    let started = Instant::now();
    let _: Pod = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "kubo", "labels": {"app": "kubo"}},
            "spec": {
                "containers": [{
                    "name": "kubo",
                    "image": "ipfs/kubo:v0.42.0",
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {"name": "IPFS_PROFILE", "value": "test"},
                        {"name": "IPFS_TELEMETRY", "value": "off"}
                    ],
                    "ports": [{"name": "rpc", "containerPort": 5001}],
                    "volumeMounts": [
                        {"name": "repo", "mountPath": "/data/ipfs"},
                        {"name": "init", "mountPath": "/container-init.d"}
                    ]
                }],
                "volumes": [
                    {"name": "repo", "emptyDir": {}},
                    {"name": "init", "configMap": {"name": "offline"}}
                ]
            }
        }),
    )
    .await;
    let pod = wait_phase(&client, &ns, "kubo", &["Running"], Duration::from_secs(120)).await;
    let running = started.elapsed();
    let ip = pod_ip(&pod).expect("pod IP");
    assert!(ip.starts_with("10.244."), "pod IP {ip}");
    let http = http();
    let url = format!("http://{ip}:5001/api/v0/id");
    let id: Value = wait_for(
        "Kubo's RPC /api/v0/id at the pod IP",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            http.post(&url)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        },
    )
    .await;
    let answering = started.elapsed();
    report(&format!(
        "kubo pod: created -> Running {:.1} s, -> RPC /api/v0/id answering at {ip} {:.1} s",
        running.as_secs_f64(),
        answering.as_secs_f64()
    ));
    assert!(id["ID"].as_str().is_some_and(|s| !s.is_empty()), "{id}");
    // `--agent-version-suffix=docker` is the image's default CMD.
    let agent = id["AgentVersion"].as_str().unwrap_or_default();
    assert!(
        agent.starts_with("kubo/0.42.0") && agent.ends_with("docker"),
        "{agent}"
    );
    let log = logs(&client, &ns, "kubo", "kubo").await;
    assert!(log.contains("Changing user to ipfs"), "{log}");
    assert!(
        log.contains("Sourcing '/container-init.d/001-offline.sh'"),
        "{log}"
    );

    // DNS: the headless Service's name resolves, from a pod, to the Kubo pod's IP.
    let _: Service = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "kubo"},
            "spec": {"clusterIP": "None", "selector": {"app": "kubo"},
                     "ports": [{"name": "rpc", "port": 5001}]}
        }),
    )
    .await;
    let fqdn = format!("kubo.{ns}.svc.cluster.local");
    let _: Pod = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "lookup"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "lookup",
                    "image": "ipfs/kubo:v0.42.0",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/sh", "-c",
                        format!("cat /etc/resolv.conf; i=0; while [ $i -lt 60 ]; do \
                                 nslookup {fqdn} | grep -q '{ip}' && nslookup {fqdn} && exit 0; \
                                 i=$((i + 1)); sleep 1; done; nslookup {fqdn}; exit 1")]
                }]
            }
        }),
    )
    .await;
    wait_phase(
        &client,
        &ns,
        "lookup",
        &["Succeeded"],
        Duration::from_secs(120),
    )
    .await;
    let log = logs(&client, &ns, "lookup", "lookup").await;
    assert!(log.contains(&format!("nameserver {NODE_IP}")), "{log}");
    assert!(log.contains(&ip), "{log}");
}

/// The IPFS Cluster image with its own entrypoint (`entrypoint.sh`: init with CRDT consensus,
/// drop to uid 1000, `ipfs-cluster-service daemon`): its REST API answers at the pod IP.
#[tokio::test]
async fn ipfs_cluster_image_starts() {
    let node = real_node();
    let client = node.admin_client().await;
    let ns = node.namespace("cluster").await;
    let started = Instant::now();
    let _: Pod = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "cluster"},
            "spec": {
                "containers": [{
                    "name": "cluster",
                    "image": "ipfs/ipfs-cluster:v1.1.6",
                    "imagePullPolicy": "IfNotPresent",
                    "env": [
                        {"name": "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS", "value": "/ip4/0.0.0.0/tcp/9094"},
                        {"name": "CLUSTER_MDNSINTERVAL", "value": "0s"}
                    ],
                    "volumeMounts": [{"name": "state", "mountPath": "/data/ipfs-cluster"}]
                }],
                "volumes": [{"name": "state", "emptyDir": {}}]
            }
        }),
    )
    .await;
    let pod = wait_phase(
        &client,
        &ns,
        "cluster",
        &["Running"],
        Duration::from_secs(120),
    )
    .await;
    let running = started.elapsed();
    let ip = pod_ip(&pod).expect("pod IP");
    let http = http();
    let url = format!("http://{ip}:9094/id");
    let id: Value = wait_for(
        "IPFS Cluster's REST /id at the pod IP",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async { http.get(&url).send().await.ok()?.json::<Value>().await.ok() },
    )
    .await;
    report(&format!(
        "ipfs-cluster pod: created -> Running {:.1} s, -> REST /id answering {:.1} s",
        running.as_secs_f64(),
        started.elapsed().as_secs_f64()
    ));
    assert!(
        id["version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.1.6")),
        "{id}"
    );
    let log = logs(&client, &ns, "cluster", "cluster").await;
    assert!(log.contains("Changing user to ipfs"), "{log}");
}

/// The operator's image runs the binary as its entrypoint, as uid 65532 under the restricted
/// Pod Security settings (non-root, read-only root file system, no capabilities).
#[tokio::test]
async fn operator_image_runs_the_binary() {
    let node = real_node();
    let client = node.admin_client().await;
    let ns = node.namespace("operator").await;
    let hardened = json!({
        "runAsNonRoot": true,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    });
    let started = Instant::now();
    let _: Pod = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "operator"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "version", "image": OPERATOR_IMAGE, "imagePullPolicy": "IfNotPresent",
                     "args": ["--version"], "securityContext": hardened},
                    {"name": "crd", "image": OPERATOR_IMAGE, "imagePullPolicy": "IfNotPresent",
                     "args": ["crd"], "securityContext": hardened}
                ]
            }
        }),
    )
    .await;
    let pod = wait_phase(
        &client,
        &ns,
        "operator",
        &["Succeeded"],
        Duration::from_secs(120),
    )
    .await;
    report(&format!(
        "operator pod (--version, crd): created -> Succeeded {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let version = logs(&client, &ns, "operator", "version").await;
    assert_eq!(
        version.trim(),
        format!("ipfs-kit-operator {}", env!("CARGO_PKG_VERSION"))
    );
    let crd = logs(&client, &ns, "operator", "crd").await;
    assert!(crd.contains("name: ipfsclusters.ipfskit.io"), "{crd}");
    let statuses = pod
        .status
        .and_then(|s| s.container_statuses)
        .expect("container statuses");
    assert!(
        statuses
            .iter()
            .all(|s| s.image.contains("ipfs-kit-operator")),
        "{statuses:?}"
    );
}

/// A StatefulSet's volume claim binds to a volume of the node (the default StorageClass,
/// provisioned by the harness), its pod writes there as uid 1000, its own DNS name in the headless
/// Service resolves; the volume goes with its claim.
#[tokio::test]
async fn statefulset_claims_bind_and_pod_names_resolve() {
    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use kube::api::DeleteParams;

    let node = real_node();
    let client = node.admin_client().await;
    let ns = node.namespace("sts").await;
    let _: Service = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "data"},
            "spec": {"clusterIP": "None", "selector": {"app": "data"},
                     "ports": [{"name": "none", "port": 1}]}
        }),
    )
    .await;
    let own_name = format!("data-0.data.{ns}.svc.cluster.local");
    let script = format!(
        "echo kept > /data/ipfs/file && i=0; while [ $i -lt 60 ]; do \
         nslookup {own_name} >/data/ipfs/lookup 2>&1 && grep -q \"$(hostname -i)\" /data/ipfs/lookup \
         && break; i=$((i + 1)); sleep 1; done; exec sleep 3600"
    );
    let started = Instant::now();
    let _: StatefulSet = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "data"},
            "spec": {
                "serviceName": "data",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "data"}},
                "template": {
                    "metadata": {"labels": {"app": "data"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "securityContext": {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100},
                        "containers": [{
                            "name": "data",
                            "image": "ipfs/kubo:v0.42.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["/bin/sh", "-c", script],
                            "volumeMounts": [{"name": "repo", "mountPath": "/data/ipfs"}]
                        }]
                    }
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "repo"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        }),
    )
    .await;
    let pod = wait_phase(
        &client,
        &ns,
        "data-0",
        &["Running"],
        Duration::from_secs(120),
    )
    .await;
    report(&format!(
        "StatefulSet pod with a volume claim: created -> Running {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let ip = pod_ip(&pod).expect("pod IP");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let claim = claims.get("repo-data-0").await.expect("claim");
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .expect("bound volume");
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&volume)
        .await
        .expect("volume");
    let path = pv
        .spec
        .and_then(|s| s.local)
        .map(|l| std::path::PathBuf::from(l.path))
        .expect("local volume");
    let lookup = wait_for(
        "the pod's own DNS name resolving to its IP",
        Duration::from_secs(90),
        Duration::from_millis(300),
        || async {
            let text = std::fs::read_to_string(path.join("lookup")).ok()?;
            text.contains(&ip).then_some(text)
        },
    )
    .await;
    assert!(lookup.contains(&own_name), "{lookup}");
    assert_eq!(
        std::fs::read_to_string(path.join("file")).expect("file written by the pod"),
        "kept\n"
    );

    Api::<StatefulSet>::namespaced(client.clone(), &ns)
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete statefulset");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the StatefulSet's pod gone",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { pods.get_opt("data-0").await.ok()?.is_none().then_some(()) },
    )
    .await;
    claims
        .delete("repo-data-0", &DeleteParams::default())
        .await
        .expect("delete claim");
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    wait_for(
        "the claim's volume deleted",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { pvs.get_opt(&volume).await.ok()?.is_none().then_some(()) },
    )
    .await;
    assert!(!path.exists(), "{} still exists", path.display());
}

/// The operator's image runs the chart's two containers in one pod, as the chart's Deployment
/// runs them (same args, environment, probes, restricted security context, the token mounted
/// from a Secret): the controller takes the leader Lease, both become Ready without a restart,
/// and the dashboard answers at the pod IP. (With cluster-admin rights: the chart's own install
/// is proven with helm elsewhere.)
#[tokio::test]
async fn operator_image_runs_controller_and_dashboard_as_the_chart_does() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;

    let node = real_node();
    let client = node.admin_client().await;
    node.install_crds().await;
    let ns = node.namespace("operator-run").await;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-operator")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}]
    }))
    .expect("binding json");
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    let token = support::control_plane::random_hex(20);
    let _: k8s_openapi::api::core::v1::Secret = create(
        &client,
        &ns,
        json!({"metadata": {"name": "dashboard-token"}, "stringData": {"token": token}}),
    )
    .await;
    // The API server through the `kubernetes` Service, as in any cluster (kube-proxy).
    let env = json!([
        {"name": "RUST_LOG", "value": "info"},
        {"name": "IPFS_KIT_LOG_FORMAT", "value": "json"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]);
    let hardened = json!({
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]}
    });
    let probes = |port: &str| {
        json!({"readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1},
               "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}}})
    };
    let mut controller = json!({
        "name": "controller", "image": OPERATOR_IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["run", "--metrics-addr", "0.0.0.0:9090", "--concurrency", "4",
                 "--lease-name", "ipfs-kit-operator"],
        "env": env, "ports": [{"name": "metrics", "containerPort": 9090}],
        "securityContext": hardened
    });
    let mut dashboard = json!({
        "name": "dashboard", "image": OPERATOR_IMAGE, "imagePullPolicy": "IfNotPresent",
        "args": ["dashboard", "--listen", "0.0.0.0:8080", "--token-file",
                 "/var/run/ipfs-kit/dashboard/token", "--kube-auth"],
        "env": env, "ports": [{"name": "dashboard", "containerPort": 8080}],
        "securityContext": hardened,
        "volumeMounts": [{"name": "dashboard-token", "mountPath": "/var/run/ipfs-kit/dashboard",
                          "readOnly": true}]
    });
    for (container, port) in [(&mut controller, "metrics"), (&mut dashboard, "dashboard")] {
        let object = container.as_object_mut().expect("container object");
        for (k, v) in probes(port).as_object().expect("probes").clone() {
            object.insert(k, v);
        }
    }
    let started = Instant::now();
    let _: Pod = create(
        &client,
        &ns,
        json!({
            "metadata": {"name": "operator"},
            "spec": {
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [controller, dashboard],
                "volumes": [{"name": "dashboard-token", "secret": {"secretName": "dashboard-token"}}]
            }
        }),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_for(
        "both operator containers Ready",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || async {
            let pod = pods.get("operator").await.ok()?;
            let statuses = pod.status.as_ref()?.container_statuses.clone()?;
            (statuses.len() == 2 && statuses.iter().all(|s| s.ready)).then_some(pod)
        },
    )
    .await;
    report(&format!(
        "operator pod (controller + dashboard): created -> both Ready {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .expect("statuses");
    assert!(
        statuses.iter().all(|s| s.restart_count == 0),
        "{statuses:?}"
    );
    let lease = wait_for(
        "the leader Lease held by the pod",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let lease = Api::<Lease>::namespaced(client.clone(), &ns)
                .get_opt("ipfs-kit-operator")
                .await
                .ok()??;
            let holder = lease.spec.as_ref()?.holder_identity.clone()?;
            (holder == "operator").then_some(holder)
        },
    )
    .await;
    assert_eq!(lease, "operator");
    let ip = pod_ip(&pod).expect("pod IP");
    let http = http();
    let status: Value = http
        .get(format!("http://{ip}:8080/api/dashboard/status"))
        .send()
        .await
        .expect("dashboard status")
        .json()
        .await
        .expect("status json");
    assert_eq!(status["success"], json!(true), "{status}");
    let refused = http
        .post(format!("http://{ip}:8080/api/dashboard/health/check"))
        .json(&json!({}))
        .send()
        .await
        .expect("dashboard POST");
    assert_eq!(refused.status().as_u16(), 401, "a change without the token");
    let metrics = http
        .get(format!("http://{ip}:9090/metrics"))
        .send()
        .await
        .expect("controller metrics");
    assert!(metrics.status().is_success());
    let log = logs(&client, &ns, "operator", "controller").await;
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "JSON log lines:\n{log}"
    );
}
