//! The IpfsCluster controller against the real API server of the test world: it creates the owned
//! objects with owner references, kwok runs the pods, and the status tells the truth about peers
//! whose daemons do not exist (kwok runs no containers: every probe of a pod IP is refused).
//! Storage for the peers' claims: see `support::clusters`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ipfs_kit_operator::api::request::REQUEST_LABEL;
use ipfs_kit_operator::api::{ClusterPhase, IpfsCluster};
use ipfs_kit_operator::runtime::kube::{Metrics, Settings, run};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::clusters::{
    apply_cluster, cluster_json, event_note, http_get, owned, provide_volumes, running_pods,
    spawn_operator, stop_operator, wait_restart_carried_out, wait_status,
};
use crate::support::control_plane::control_plane;
use crate::support::wait_for;

async fn install_crds() {
    control_plane().install_crds().await;
}

/// Runs the controller in this process for namespace `ns` with `client`; it stops when the
/// returned sender is dropped or fired.
pub(crate) fn start_controller(
    client: Client,
    ns: &str,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    start_controller_into(client, ns, Arc::new(Metrics::default()))
}

/// Runs the controller in this process for namespace `ns`, exporting its metrics into `metrics`.
pub(crate) fn start_controller_into(
    client: Client,
    ns: &str,
    metrics: Arc<Metrics>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let settings = Settings {
        namespace: Some(ns.to_owned()),
        instance: format!("test-{ns}"),
        ..Settings::default()
    };
    start_controller_exporting(client, settings, metrics)
}

/// Runs the controller in this process with `settings`.
fn start_controller_with(
    client: Client,
    settings: Settings,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    start_controller_exporting(client, settings, Arc::new(Metrics::default()))
}

fn start_controller_exporting(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        run(client, settings, metrics, async move {
            let _ = rx.await;
        })
        .await
        .expect("the controller starts");
    });
    (tx, handle)
}

pub(crate) async fn events(client: &Client, ns: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
}

async fn has_event(client: &Client, ns: &str, reason: &str) -> bool {
    events(client, ns)
        .await
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason))
}

#[tokio::test]
async fn an_ipfs_cluster_gets_its_objects_running_pods_and_an_honest_status() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 6).await;
    let (stop, controller) = start_controller(client.clone(), &ns);

    let created = apply_cluster(&client, &ns, &cluster_json("demo", &class, 3)).await;
    let uid = created.uid().expect("uid");

    let sts: StatefulSet = owned(&client, &ns, "demo", &uid).await;
    assert_eq!(sts.spec.replicas, Some(3));
    let headless: Service = owned(&client, &ns, "demo-peers", &uid).await;
    assert_eq!(
        headless.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()),
        Some("None")
    );
    let _: Service = owned(&client, &ns, "demo-api", &uid).await;
    let config: ConfigMap = owned(&client, &ns, "demo-config", &uid).await;
    let secret: Secret = owned(&client, &ns, "demo-cluster-secret", &uid).await;
    let _: PodDisruptionBudget = owned(&client, &ns, "demo", &uid).await;
    let _: NetworkPolicy = owned(&client, &ns, "demo", &uid).await;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get("secret"))
        .expect("secret key");
    assert_eq!(value.0.len(), 64, "32 bytes as hex");
    assert!(value.0.iter().all(u8::is_ascii_hexdigit));
    let secret_text = String::from_utf8_lossy(&value.0).into_owned();
    for (_, v) in config.data.iter().flatten() {
        assert!(
            !v.contains(&secret_text),
            "the cluster secret must never be in a ConfigMap"
        );
    }

    running_pods(&client, &ns, "demo", 3).await;

    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let cluster = wait_status(
        &api,
        "demo",
        "observedGeneration, 3 peers whose pod IPs were probed, phase Unhealthy",
        |c| {
            let Some(s) = c.status.as_ref() else {
                return false;
            };
            s.observed_generation == c.metadata.generation
                && s.peers.len() == 3
                && s.replicas == Some(3)
                && s.phase == Some(ClusterPhase::Unhealthy)
                && s.peers.iter().all(|p| {
                    p.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("127.0.100."))
                })
        },
    )
    .await;
    let status = cluster.status.as_ref().expect("status");
    assert!(
        cluster
            .finalizers()
            .iter()
            .any(|f| f == "ipfskit.io/cleanup")
    );
    assert_eq!(status.ready_replicas, Some(0));
    assert_eq!(status.health_score, Some(0));
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=demo,app.kubernetes.io/name=ipfs-cluster")
    );
    for peer in &status.peers {
        let err = peer.last_error.as_deref().unwrap_or_default();
        assert!(
            err.contains("Kubo RPC: unreachable") && err.contains("127.0.100."),
            "peer {} must report the refused probe of its pod IP, got {err:?}",
            peer.name
        );
        assert!(peer.last_probe.is_some());
    }
    let by_type: BTreeMap<&str, &str> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(by_type.get("Ready"), Some(&"False"), "{by_type:?}");
    assert_eq!(by_type.get("Available"), Some(&"False"), "{by_type:?}");
    assert_eq!(by_type.get("Degraded"), Some(&"True"), "{by_type:?}");
    assert!(has_event(&client, &ns, "SecretGenerated").await);
    event_note(&client, &ns, "Applied", "generation 1").await;
    // A later generation gets an Event of its own (kube's recorder alone would count it in the
    // first one's series and keep saying "generation 1").
    let clusters: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let change = json!({"spec": {"health": {"failureThreshold": 4}}});
    clusters
        .patch("demo", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect("patch spec");
    event_note(&client, &ns, "Applied", "generation 2").await;

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), controller)
        .await
        .expect("the controller stops within 30 s of the shutdown signal")
        .expect("controller task");
}

#[tokio::test]
async fn spec_changes_rewrite_only_what_they_change_and_deletion_collects_everything() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-change").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 8).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);

    let mut web = cluster_json("web", &class, 2);
    web["spec"]["kubo"]["storageMax"] = json!("900Mi");
    let created = apply_cluster(&client, &ns, &web).await;
    let uid = created.uid().expect("uid");
    let _: StatefulSet = owned(&client, &ns, "web", &uid).await;
    running_pods(&client, &ns, "web", 2).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "status of generation 1",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let c = api.get("web").await.ok()?;
            (c.status.as_ref()?.observed_generation == c.metadata.generation).then_some(())
        },
    )
    .await;
    // Once the StatefulSet controller reports the first rollout settled, the upgrade gate parks
    // the partition at `replicas` (the one spec change of its own): wait for it.
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the StatefulSet's partition parked at 2",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let sts = sts_api.get("web").await.ok()?;
            let partition = sts.spec.update_strategy?.rolling_update?.partition?;
            (partition == 2).then_some(())
        },
    )
    .await;

    let versions = |client: Client, ns: String| async move {
        let svc: Api<Service> = Api::namespaced(client.clone(), &ns);
        let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let sec: Api<Secret> = Api::namespaced(client.clone(), &ns);
        let rv = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.resource_version.clone().unwrap_or_default()
        };
        BTreeMap::from([
            (
                "svc/web-peers",
                rv(&svc.get("web-peers").await.expect("svc").metadata),
            ),
            (
                "svc/web-api",
                rv(&svc.get("web-api").await.expect("svc").metadata),
            ),
            (
                "cm/web-config",
                rv(&cm.get("web-config").await.expect("cm").metadata),
            ),
            (
                "secret",
                rv(&sec
                    .get("web-cluster-secret")
                    .await
                    .expect("secret")
                    .metadata),
            ),
            // The StatefulSet controller writes its status: compare the spec's generation.
            (
                "sts/web generation",
                format!(
                    "{:?}",
                    sts.get("web").await.expect("sts").metadata.generation
                ),
            ),
        ])
    };
    let before = versions(client.clone(), ns.clone()).await;
    // A few reconciles (probe rounds every 2 s) later, nothing was rewritten.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = versions(client.clone(), ns.clone()).await;
    assert_eq!(
        before, idle,
        "periodic reconciles must not rewrite unchanged objects"
    );
    // Nor the status: probe rounds that see the same thing write nothing.
    let cluster_version = || async {
        api.get("web")
            .await
            .expect("get IpfsCluster")
            .metadata
            .resource_version
    };
    let status_before = cluster_version().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        status_before,
        cluster_version().await,
        "probe rounds with the same results must not rewrite the status"
    );

    // Scale out: the StatefulSet changes, the ConfigMap and Services do not (a bigger volume
    // changes no start script when storageMax is set; unset, Kubo's limit follows the volume).
    let mut scaled = cluster_json("web", &class, 3);
    scaled["spec"]["kubo"]["storage"]["size"] = json!("2Gi");
    scaled["spec"]["kubo"]["storageMax"] = json!("900Mi");
    apply_cluster(&client, &ns, &scaled).await;
    wait_for(
        "StatefulSet scaled to 3",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { (sts_api.get("web").await.ok()?.spec.replicas == Some(3)).then_some(()) },
    )
    .await;
    running_pods(&client, &ns, "web", 3).await;
    let after = versions(client.clone(), ns.clone()).await;
    for key in ["svc/web-peers", "svc/web-api", "cm/web-config", "secret"] {
        assert_eq!(
            before[key], after[key],
            "{key} must not be rewritten by a scale-out"
        );
    }
    // The bigger Kubo volume is applied to the existing claims.
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns);
    wait_for(
        "kubo-data-web-0 requests 2Gi",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let pvc = pvcs.get("kubo-data-web-0").await.ok()?;
            let size = pvc.spec?.resources?.requests?.get("storage")?.0.clone();
            (size == "2Gi").then_some(())
        },
    )
    .await;

    // A kubo config change rolls the pods through a new config hash; the Services stay.
    let hash = |s: &StatefulSet| {
        s.spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("ipfskit.io/config-hash").cloned())
            .unwrap_or_default()
    };
    let old_hash = hash(&sts_api.get("web").await.expect("sts"));
    let mut configured = scaled.clone();
    configured["spec"]["kubo"]["config"] = json!({"Swarm": {"ConnMgr": {"HighWater": 300}}});
    apply_cluster(&client, &ns, &configured).await;
    wait_for(
        "a new config hash on the pod template",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { (hash(&sts_api.get("web").await.ok()?) != old_hash).then_some(()) },
    )
    .await;
    let cm: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let script =
        cm.get("web-config").await.expect("cm").data.expect("data")["kubo-init.sh"].clone();
    assert!(
        script.contains("'Swarm.ConnMgr.HighWater' '300'"),
        "{script}"
    );
    let after_config = versions(client.clone(), ns.clone()).await;
    assert_eq!(before["svc/web-peers"], after_config["svc/web-peers"]);

    // An owned Service deleted by hand comes back.
    let svc: Api<Service> = Api::namespaced(client.clone(), &ns);
    svc.delete("web-api", &DeleteParams::default())
        .await
        .expect("delete svc");
    owned::<Service>(&client, &ns, "web-api", &uid).await;
    wait_for(
        "web-api recreated",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let s = svc.get_opt("web-api").await.ok().flatten()?;
            (s.metadata.resource_version.as_deref() != Some(before["svc/web-api"].as_str()))
                .then_some(())
        },
    )
    .await;
    // The generated Secret deleted by hand comes back (at the next periodic reconcile).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .delete("web-cluster-secret", &DeleteParams::default())
        .await
        .expect("delete secret");
    owned::<Secret>(&client, &ns, "web-cluster-secret", &uid).await;

    // The gateway turned on gets its Service; turned off again, that Service is an orphan and
    // is deleted.
    let mut with_gateway = configured.clone();
    with_gateway["spec"]["networking"] = json!({"gateway": {"enabled": true}});
    apply_cluster(&client, &ns, &with_gateway).await;
    owned::<Service>(&client, &ns, "web-gateway", &uid).await;
    apply_cluster(&client, &ns, &configured).await;
    wait_for(
        "the gateway Service deleted as an orphan",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let gone = svc.get_opt("web-gateway").await.ok()?.is_none();
            (gone && has_event(&client, &ns, "DeletedOrphan").await).then_some(())
        },
    )
    .await;

    // Deleting the IpfsCluster: the finalizer is removed, children are garbage-collected.
    api.delete("web", &DeleteParams::foreground())
        .await
        .expect("delete");
    wait_for(
        "the IpfsCluster gone",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async { api.get_opt("web").await.ok()?.is_none().then_some(()) },
    )
    .await;
    wait_for(
        "owned objects garbage-collected",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || async {
            let gone = sts_api.get_opt("web").await.ok()?.is_none()
                && svc.get_opt("web-peers").await.ok()?.is_none()
                && cm.get_opt("web-config").await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
    assert!(has_event(&client, &ns, "Deleting").await);
    let _ = stop.send(());
}

/// The ClusterRole of `deploy/rbac.yaml`, renamed for namespace `ns` and without the rules on
/// `without` (a resource name), bound to ServiceAccount `ns/ipfs-kit-operator`; returns a client
/// authenticating as that ServiceAccount.
async fn operator_with_deployed_rights(admin: &Client, ns: &str, without: Option<&str>) -> Client {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    let path = format!("{}/deploy/rbac.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read deploy/rbac.yaml");
    let mut role: Option<ClusterRole> = None;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(doc).expect("yaml document");
        if value.get("kind").and_then(|k| k.as_str()) == Some("ClusterRole") {
            role = Some(serde_yaml::from_value(value).expect("ClusterRole"));
        }
    }
    let mut role = role.expect("deploy/rbac.yaml has a ClusterRole");
    let name = format!("{ns}-operator");
    role.metadata.name = Some(name.clone());
    if let Some(resource) = without {
        let rules = role.rules.take().unwrap_or_default();
        let before = rules.len();
        let kept: Vec<_> = rules
            .into_iter()
            .filter(|r| !r.resources.iter().flatten().any(|x| x == resource))
            .collect();
        assert!(
            kept.len() < before,
            "deploy/rbac.yaml has no rule on {resource}"
        );
        role.rules = Some(kept);
    }
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create ClusterRole");
    let sa_client = control_plane()
        .service_account_client(ns, "ipfs-kit-operator")
        .await;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": "ipfs-kit-operator", "namespace": ns}]
    }))
    .expect("binding json");
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create ClusterRoleBinding");
    // RBAC reaches the authorizer through a watch: wait until the binding is in force.
    let probe: Api<IpfsCluster> = Api::namespaced(sa_client.clone(), ns);
    wait_for(
        "the ClusterRoleBinding to take effect",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { probe.list(&Default::default()).await.ok() },
    )
    .await;
    sa_client
}

async fn warnings(client: &Client, ns: &str) -> Vec<String> {
    events(client, ns)
        .await
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test]
async fn the_operator_does_its_whole_job_with_exactly_the_rights_in_deploy() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-rbac").await;
    let admin = cp.admin_client().await;
    let class = provide_volumes(&admin, &ns, 6).await;
    let operator = operator_with_deployed_rights(&admin, &ns, None).await;
    let (stop, _controller) = start_controller(operator, &ns);

    let mut object = cluster_json("rbac", &class, 2);
    object["spec"]["networking"] = json!({"p2p": {"exposure": "NodePort"}});
    let created = apply_cluster(&admin, &ns, &object).await;
    let uid = created.uid().expect("uid");
    for name in ["rbac-peers", "rbac-api", "rbac-0-p2p", "rbac-1-p2p"] {
        let _: Service = owned(&admin, &ns, name, &uid).await;
    }
    let _: StatefulSet = owned(&admin, &ns, "rbac", &uid).await;
    let _: Secret = owned(&admin, &ns, "rbac-cluster-secret", &uid).await;
    let _: ConfigMap = owned(&admin, &ns, "rbac-config", &uid).await;
    let _: PodDisruptionBudget = owned(&admin, &ns, "rbac", &uid).await;
    let _: NetworkPolicy = owned(&admin, &ns, "rbac", &uid).await;
    running_pods(&admin, &ns, "rbac", 2).await;
    let api: Api<IpfsCluster> = Api::namespaced(admin.clone(), &ns);
    wait_status(&api, "rbac", "a status with 2 probed peers", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.observed_generation == c.metadata.generation
                && s.peers.len() == 2
                && s.peers.iter().all(|p| {
                    p.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("127.0.100."))
                })
        })
    })
    .await;

    // Orphan cleanup (delete on services) works with these rights.
    object["spec"]["networking"] = json!({"p2p": {"exposure": "None"}});
    apply_cluster(&admin, &ns, &object).await;
    let services: Api<Service> = Api::namespaced(admin.clone(), &ns);
    wait_for(
        "the peers' p2p Services deleted once the spec no longer exposes p2p",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let gone = services.get_opt("rbac-0-p2p").await.ok()?.is_none()
                && services.get_opt("rbac-1-p2p").await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;

    // Deletion: the finalizer is removed with these rights.
    api.delete("rbac", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "the IpfsCluster gone",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { api.get_opt("rbac").await.ok()?.is_none().then_some(()) },
    )
    .await;
    let warnings = warnings(&admin, &ns).await;
    assert!(
        warnings
            .iter()
            .all(|w| !w.to_lowercase().contains("forbidden")),
        "the operator was refused something with the rights of deploy/rbac.yaml: {warnings:#?}"
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn a_missing_rbac_rule_is_noticed_and_reported() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-norbac").await;
    let admin = cp.admin_client().await;
    let class = provide_volumes(&admin, &ns, 2).await;
    let operator = operator_with_deployed_rights(&admin, &ns, Some("statefulsets")).await;
    let (stop, _controller) = start_controller(operator, &ns);
    apply_cluster(&admin, &ns, &cluster_json("norbac", &class, 1)).await;
    let refused = wait_for(
        "a Warning Event saying the StatefulSet was forbidden",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            warnings(&admin, &ns)
                .await
                .into_iter()
                .find(|w| w.contains("ReconcileFailed") && w.contains("StatefulSet"))
        },
    )
    .await;
    assert!(refused.contains("forbidden"), "{refused}");
    assert!(
        refused.contains("IpfsCluster norbac"),
        "names the cluster: {refused}"
    );
    let sts: Api<StatefulSet> = Api::namespaced(admin.clone(), &ns);
    assert!(sts.get_opt("norbac").await.expect("get").is_none());
    let _ = stop.send(());
}

#[tokio::test]
async fn paused_clusters_are_reported_but_not_changed() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-paused").await;
    let client = cp.admin_client().await;
    // Two clusters of one peer, two claims each.
    let class = provide_volumes(&client, &ns, 4).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    let created = apply_cluster(&client, &ns, &cluster_json("calm", &class, 1)).await;
    let uid = created.uid().expect("uid");
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let _: StatefulSet = owned(&client, &ns, "calm", &uid).await;

    let mut paused = cluster_json("calm", &class, 2);
    paused["spec"]["paused"] = json!(true);
    apply_cluster(&client, &ns, &paused).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let c = wait_status(&api, "calm", "phase Paused for the new generation", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.phase == Some(ClusterPhase::Paused) && s.observed_generation == c.metadata.generation
        })
    })
    .await;
    let ready = c
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .expect("Ready condition");
    assert_eq!(ready.reason, "Paused");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        sts_api.get("calm").await.expect("sts").spec.replicas,
        Some(1),
        "a paused cluster is not scaled"
    );

    let mut resumed = paused.clone();
    resumed["spec"]["paused"] = json!(false);
    apply_cluster(&client, &ns, &resumed).await;
    wait_for(
        "the StatefulSet scaled to 2 after resuming",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { (sts_api.get("calm").await.ok()?.spec.replicas == Some(2)).then_some(()) },
    )
    .await;
    let _ = stop.send(());
}

#[tokio::test]
async fn a_peer_that_never_answers_is_restarted_within_its_budget_then_left_alone() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-heal").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    // A short start grace so that the test does not wait the default 5 minutes.
    let (stop, _controller) = start_controller_with(
        client.clone(),
        Settings {
            namespace: Some(ns.clone()),
            instance: format!("test-{ns}"),
            start_grace: Some(Duration::from_secs(3)),
            ..Settings::default()
        },
    );
    let mut object = cluster_json("stuck", &class, 1);
    object["spec"]["health"] = json!({
        "probeInterval": "1s", "probeTimeout": "500ms",
        "failureThreshold": 1, "maxRestartsPerHour": 2
    });
    apply_cluster(&client, &ns, &object).await;
    running_pods(&client, &ns, "stuck", 1).await;

    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let c = wait_status(
        &api,
        "stuck",
        "2 restarts recorded, then the restart budget given up",
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.healing
                    .iter()
                    .any(|h| h.action == ipfs_kit_operator::api::HealingAction::GiveUp)
            })
        },
    )
    .await;
    let status = c.status.expect("status");
    let restarts = status
        .healing
        .iter()
        .filter(|h| h.action == ipfs_kit_operator::api::HealingAction::RestartPeer)
        .count();
    assert_eq!(restarts, 2, "exactly the budget: {:#?}", status.healing);
    assert_eq!(status.peers[0].restarts, 2);
    assert_eq!(
        status.peers[0].state,
        ipfs_kit_operator::api::PeerState::Unhealthy
    );
    assert!(has_event(&client, &ns, "RestartingPeer").await);
    assert!(has_event(&client, &ns, "HealingGivenUp").await);

    // Over budget, the pod is left alone: no more deletions.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let uid = pods.get("stuck-0").await.ok().and_then(|p| p.metadata.uid);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = pods.get("stuck-0").await.ok().and_then(|p| p.metadata.uid);
    assert_eq!(
        uid, later,
        "a peer over its restart budget must not be restarted"
    );
    let _ = stop.send(());
}

/// The peers admitted to the API ports (5001, 9094, 9095) by the NetworkPolicy `name` in `ns`.
async fn api_peers(
    client: &Client,
    ns: &str,
    name: &str,
    uid: &str,
) -> Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer> {
    let policy: NetworkPolicy = owned(client, ns, name, uid).await;
    let rules = policy.spec.and_then(|s| s.ingress).expect("ingress rules");
    let api = rules
        .into_iter()
        .find(|r| {
            r.ports.iter().flatten().any(|p| {
                p.port == Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5001))
            })
        })
        .expect("the rule of the API ports");
    api.from.expect("the API ports are restricted")
}

#[tokio::test]
async fn the_apis_admit_the_operator_label_only_in_the_operator_namespace() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-np").await;
    let operator_ns = cp.namespace("ctrl-np-op").await;
    let other_ns = cp.namespace("ctrl-np-other").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let (stop, _controller) = start_controller_with(
        client.clone(),
        Settings {
            namespace: Some(ns.clone()),
            instance: format!("test-{ns}"),
            operator_namespace: Some(operator_ns.clone()),
            ..Settings::default()
        },
    );
    let created = apply_cluster(&client, &ns, &cluster_json("guarded", &class, 1)).await;
    let uid = created.uid().expect("uid");
    let from = api_peers(&client, &ns, "guarded", &uid).await;

    let operator_label = json!({"ipfskit.io/api-access": "operator"});
    let by_label: Vec<_> = from
        .iter()
        .filter(|p| {
            p.pod_selector.as_ref().map(|s| json!(s.match_labels)) == Some(operator_label.clone())
        })
        .collect();
    assert_eq!(by_label.len(), 1, "{from:#?}");
    let selector = by_label[0]
        .namespace_selector
        .as_ref()
        .expect("a namespace selector");
    assert!(
        selector.match_expressions.is_none(),
        "matched by labels only: {selector:?}"
    );
    let labels = selector.match_labels.clone().unwrap_or_default();
    assert_eq!(
        labels,
        BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            operator_ns.clone()
        )])
    );
    // Every other admitted peer is of the cluster's own namespace: no namespace selector, so no
    // empty one (which would select every namespace).
    for peer in from.iter().filter(|p| !std::ptr::eq(*p, by_label[0])) {
        assert!(peer.namespace_selector.is_none(), "{peer:?}");
    }
    // What the selector selects, asked of the API server: the operator's namespace, and not the
    // cluster's nor any other one where a pod could carry the label.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let query = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let selected: Vec<String> = namespaces
        .list(&ListParams::default().labels(&query))
        .await
        .expect("list namespaces")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(selected, std::slice::from_ref(&operator_ns));
    assert!(!selected.contains(&other_ns) && !selected.contains(&ns));
    let _ = stop.send(());
}

#[tokio::test]
async fn a_controller_given_a_cluster_domain_names_the_peers_in_it() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-dns").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let (stop, _controller) = start_controller_with(
        client.clone(),
        Settings {
            namespace: Some(ns.clone()),
            instance: format!("test-{ns}"),
            cluster_domain: "k8s.example.org".into(),
            ..Settings::default()
        },
    );
    let created = apply_cluster(&client, &ns, &cluster_json("named", &class, 1)).await;
    let uid = created.uid().expect("uid");
    let config: ConfigMap = owned(&client, &ns, "named-config", &uid).await;
    let script = config
        .data
        .as_ref()
        .and_then(|d| d.get("cluster-start.sh"))
        .expect("the start script");
    assert!(
        script.contains(&format!(
            "host=\"named-$i.named-peers.{ns}.svc.k8s.example.org\""
        )),
        "{script}"
    );
    assert!(!script.contains("cluster.local"), "{script}");
    // Without a known operator namespace, the operator's label counts in the cluster's namespace
    // only.
    let from = api_peers(&client, &ns, "named", &uid).await;
    assert!(
        from.iter().all(|p| p.namespace_selector.is_none()),
        "{from:#?}"
    );
    let _ = stop.send(());
}

/// One operator instance with leader election on Lease `ns/ipfs-kit-operator` (4 s).
fn start_elected(
    client: Client,
    ns: &str,
    instance: &str,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    use ipfs_kit_operator::runtime::kube::lease::{LeaseSettings, run_with_leader_election};
    let (tx, rx) = oneshot::channel::<()>();
    let settings = Settings {
        namespace: Some(ns.to_owned()),
        instance: instance.to_owned(),
        ..Settings::default()
    };
    let lease = LeaseSettings {
        duration_seconds: 4,
        grace_seconds: 1,
        ..LeaseSettings::in_namespace(ns)
    };
    let handle = tokio::spawn(async move {
        run_with_leader_election(
            client,
            settings,
            lease,
            Arc::new(Metrics::default()),
            async move {
                let _ = rx.await;
            },
        )
        .await
        .expect("leader election runs");
    });
    (tx, handle)
}

/// The `reportingInstance` of the Events about IpfsCluster `name`.
async fn reporting_instances(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = events(client, ns)
        .await
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reporting_instance)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[tokio::test]
async fn two_operators_only_the_leader_writes_and_the_follower_takes_over() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-lease").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 6).await;
    let (stop_a, leader_a) = start_elected(client.clone(), &ns, "operator-a");
    // Let `a` take the Lease first.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &ns);
    let holder = |leases: Api<k8s_openapi::api::coordination::v1::Lease>| async move {
        leases
            .get_opt("ipfs-kit-operator")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    wait_for(
        "operator-a holding the Lease",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (holder(leases.clone()).await.as_deref() == Some("operator-a")).then_some(()) },
    )
    .await;
    let (stop_b, _follower_b) = start_elected(client.clone(), &ns, "operator-b");

    let created = apply_cluster(&client, &ns, &cluster_json("ha", &class, 1)).await;
    let uid = created.uid().expect("uid");
    let _: StatefulSet = owned(&client, &ns, "ha", &uid).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    wait_status(&api, "ha", "a status", |c| c.status.is_some()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reporting_instances(&client, &ns, "ha").await,
        ["operator-a"],
        "only the leader publishes Events"
    );
    assert_eq!(holder(leases.clone()).await.as_deref(), Some("operator-a"));

    // The leader stops: the follower takes the Lease and carries on.
    let _ = stop_a.send(());
    tokio::time::timeout(Duration::from_secs(30), leader_a)
        .await
        .expect("operator-a stops")
        .expect("operator-a task");
    wait_for(
        "operator-b holding the Lease",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { (holder(leases.clone()).await.as_deref() == Some("operator-b")).then_some(()) },
    )
    .await;
    apply_cluster(&client, &ns, &cluster_json("ha", &class, 2)).await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "operator-b scaling the StatefulSet to 2",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { (sts_api.get("ha").await.ok()?.spec.replicas == Some(2)).then_some(()) },
    )
    .await;
    wait_for(
        "Events from operator-b",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            reporting_instances(&client, &ns, "ha")
                .await
                .contains(&"operator-b".to_owned())
                .then_some(())
        },
    )
    .await;
    let _ = stop_b.send(());
}

#[tokio::test]
async fn the_peer_pods_are_admitted_in_a_namespace_that_enforces_the_restricted_standard() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-restricted").await;
    let client = cp.admin_client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}});
    namespaces
        .patch(&ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label the namespace");
    let class = provide_volumes(&client, &ns, 4).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    apply_cluster(&client, &ns, &cluster_json("strict", &class, 1)).await;
    // The API server's PodSecurity admission refuses a pod that breaks the standard: the
    // StatefulSet's pod exists only if it complies.
    let pods = running_pods(&client, &ns, "strict", 1).await;
    let security = pods[0]
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.seccomp_profile.as_ref())
        .map(|p| p.type_.clone());
    assert_eq!(security.as_deref(), Some("RuntimeDefault"));
    // Ids left to the platform, on a private network whose Secret holds no swarm key: the pods
    // are admitted all the same, and status says what is wrong with the Secret, never quoting it.
    let bare_hex = "5a".repeat(32);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "pnet"}, "stringData": {"swarm.key": bare_hex}
    }))
    .expect("secret json");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret pnet");
    let mut platform = cluster_json("platform", &class, 1);
    platform["spec"]["podSecurityContext"] = json!({"omitIds": true});
    platform["spec"]["swarmKeyRef"] = json!({"name": "pnet"});
    apply_cluster(&client, &ns, &platform).await;
    let pods = running_pods(&client, &ns, "platform", 1).await;
    let spec = pods[0].spec.as_ref().expect("pod spec");
    assert_eq!(
        spec.security_context.as_ref().and_then(|c| c.fs_group),
        None
    );
    assert!(spec.containers.iter().all(|c| {
        c.security_context
            .as_ref()
            .is_some_and(|s| s.run_as_user.is_none() && s.run_as_non_root == Some(true))
    }));
    let expected = "spec.swarmKeyRef: Secret pnet key `swarm.key` does not start with the line";
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let cluster = wait_status(&api, "platform", "the swarm key problem in status", |c| {
        c.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|k| k.type_ == "Ready" && k.message.contains(expected))
        })
    })
    .await;
    assert!(!format!("{:?}", cluster.status).contains(&bare_hex));
    let note = event_note(&client, &ns, "SwarmKeyInvalid", "spec.swarmKeyRef").await;
    assert!(
        note.contains(expected) && !note.contains(&bare_hex),
        "{note}"
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn a_dashboard_restart_request_is_carried_out_once_by_the_controller() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-request").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    apply_cluster(&client, &ns, &cluster_json("req", &class, 1)).await;
    let before = running_pods(&client, &ns, "req", 1).await[0].uid();

    // A request as a client records it: a ConfigMap of its own, labelled for the cluster.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let record = |id: u64, raw: Value| {
        let config_maps = config_maps.clone();
        async move {
            let object: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("req-request-{id}"),
                             "labels": {REQUEST_LABEL: "req"}},
                "data": {"request": raw.to_string(), "state": "queued"}}))
            .expect("ConfigMap");
            config_maps
                .create(&PostParams::default(), &object)
                .await
                .expect("record the request");
        }
    };
    let state_of = |id: u64| {
        let config_maps = config_maps.clone();
        async move {
            let cm = config_maps.get(&format!("req-request-{id}")).await.ok()?;
            let data = cm.data.unwrap_or_default();
            Some((
                data.get("state")?.clone(),
                data.get("reason").cloned().unwrap_or_default(),
            ))
        }
    };
    record(7, json!({"id": 7, "action": "restart", "peer": "req-0"})).await;
    let before = before.expect("pod uid");
    wait_restart_carried_out(&client, &ns, "req", "req-0", &before).await;
    assert!(has_event(&client, &ns, "RestartRequested").await);

    // A request naming Kubo restarts Kubo only (its RPC `shutdown`, then kubelet restarts the
    // container), never the pod: here nothing listens at the kwok pod's IP, and the request
    // ends failed saying so in the client's own words while the pod stays.
    let pod = running_pods(&client, &ns, "req", 1).await[0].uid();
    record(
        9,
        json!({"id": 9, "action": "restart", "peer": "req-0", "daemon": "ipfs"}),
    )
    .await;
    let note = event_note(&client, &ns, "RestartFailed", "request 9").await;
    assert!(
        note.contains("restarting Kubo of req-0: POST /api/v0/shutdown"),
        "{note}"
    );
    let (state, reason) = state_of(9).await.expect("request 9");
    assert_eq!((state.as_str(), reason), ("failed", note));
    assert_eq!(running_pods(&client, &ns, "req", 1).await[0].uid(), pod);

    // What is not a request ends failed with the reason, and is never carried out.
    record(8, json!({"id": 8, "action": "stop", "peer": "req-0"})).await;
    let (state, reason) = wait_for(
        "request 8 refused",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async { state_of(8).await.filter(|(s, _)| s == "failed") },
    )
    .await;
    assert!(
        reason.contains("is not an action request"),
        "{state}: {reason}"
    );
    assert_eq!(running_pods(&client, &ns, "req", 1).await[0].uid(), pod);
    let _ = stop.send(());
}

#[tokio::test]
async fn scaling_in_handles_the_departing_peers_before_the_statefulset_shrinks() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-scalein").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 4).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    apply_cluster(&client, &ns, &cluster_json("shrink", &class, 2)).await;
    running_pods(&client, &ns, "shrink", 2).await;
    apply_cluster(&client, &ns, &cluster_json("shrink", &class, 1)).await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    wait_for(
        "the StatefulSet scaled in to 1",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async { (sts_api.get("shrink").await.ok()?.spec.replicas == Some(1)).then_some(()) },
    )
    .await;
    // kwok peers never reported a cluster peer id: the Event says there was nothing to remove
    // from the peerset (with real daemons it is `DELETE /peers/<id>` on a remaining peer).
    let note = event_note(&client, &ns, "ScaleIn", "shrink-1").await;
    assert!(note.contains("peerset"), "{note}");
    running_pods(&client, &ns, "shrink", 1).await;
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    wait_status(&api, "shrink", "one peer in status", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.peers.len() == 1 && s.observed_generation == c.metadata.generation)
    })
    .await;
    let _ = stop.send(());
}

#[tokio::test]
async fn the_run_subcommand_reconciles_serves_metrics_and_stops_cleanly_on_sigterm() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-bin").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = std::env::temp_dir().join(format!("ipfs-kit-operator-{ns}.log"));
    let mut child = spawn_operator(cp, &ns, "bin-operator", port, &log);

    let created = apply_cluster(&client, &ns, &cluster_json("bin", &class, 1)).await;
    let _: StatefulSet = owned(&client, &ns, "bin", &created.uid().expect("uid")).await;
    let metrics = wait_for(
        "the metrics endpoint counting reconciles",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            http_get(port, "/metrics").filter(|body| body.contains("ipfs_kit_reconciles_total"))
        },
    )
    .await;
    assert!(metrics.contains("200 OK"), "{metrics}");

    let status = stop_operator(&mut child).await;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; log:\n{output}");
    // (Not a bare "403": the log's timestamps may contain it.)
    let refused = output.contains("Forbidden") || output.contains("code: 403");
    assert!(!refused, "no refusal in the log:\n{output}");
}

#[tokio::test]
async fn startup_without_rights_says_how_to_grant_them() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-norights").await;
    let nobody = cp.service_account_client(&ns, "nobody").await;
    let err = ipfs_kit_operator::runtime::kube::watches::check_crd(&nobody, Some(&ns))
        .await
        .expect_err("a ServiceAccount without rights cannot list IpfsClusters");
    let text = err.to_string();
    assert!(
        text.contains("not allowed to list IpfsClusters") && text.contains("deploy/rbac.yaml"),
        "{text}"
    );
    let admin = cp.admin_client().await;
    ipfs_kit_operator::runtime::kube::watches::check_crd(&admin, Some(&ns))
        .await
        .expect("the CRD is installed");
}

/// `spec.kubo.storage.size` grows: the existing claims grow (the claim templates are
/// immutable), and with `storageMax` unset Kubo's limit follows the volume (90 %): the start
/// script carries the new limit and the pod template changes, so the pods roll to apply it.
#[tokio::test]
async fn growing_the_kubo_volume_grows_the_claims_and_raises_storage_max() {
    install_crds().await;
    let cp = control_plane();
    let ns = cp.namespace("ctrl-grow").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 4).await;
    let (stop, _controller) = start_controller(client.clone(), &ns);
    let mut cluster = cluster_json("grow", &class, 2);
    apply_cluster(&client, &ns, &cluster).await;
    running_pods(&client, &ns, "grow", 2).await;
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns);
    let bound = |name: String| {
        let claims = claims.clone();
        async move {
            let c = claims.get_opt(&name).await.ok()??;
            (c.status?.phase.as_deref() == Some("Bound")).then_some(())
        }
    };
    for i in 0..2 {
        wait_for(
            "the Kubo claims bound",
            Duration::from_secs(60),
            Duration::from_millis(300),
            || bound(format!("kubo-data-grow-{i}")),
        )
        .await;
    }
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let script = |cm: ConfigMap| {
        cm.data
            .and_then(|d| d.get("kubo-init.sh").cloned())
            .unwrap_or_default()
    };
    let before = script(configs.get("grow-config").await.expect("config map"));
    assert!(
        before.contains("ipfs config Datastore.StorageMax 966367641\n"),
        "90 % of 1Gi: {before}"
    );
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let template_hash = |s: StatefulSet| {
        s.spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get("ipfskit.io/config-hash").cloned())
    };
    let old_hash = template_hash(sts.get("grow").await.expect("sts"));
    assert!(old_hash.is_some());

    cluster["spec"]["kubo"]["storage"]["size"] = json!("2Gi");
    apply_cluster(&client, &ns, &cluster).await;
    for i in 0..2 {
        let claim = format!("kubo-data-grow-{i}");
        let note = event_note(&client, &ns, "VolumeGrown", &claim).await;
        assert!(note.contains("1Gi -> 2Gi"), "{note}");
        let grown = claims.get(&claim).await.expect("claim");
        let size = grown
            .spec
            .and_then(|s| s.resources)
            .and_then(|r| r.requests)
            .and_then(|r| r.get("storage").cloned());
        assert_eq!(size.map(|q| q.0), Some("2Gi".to_owned()));
    }
    let after = wait_for(
        "the start script to carry the new limit",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let s = script(configs.get("grow-config").await.ok()?);
            s.contains("ipfs config Datastore.StorageMax 1932735283\n")
                .then_some(s)
        },
    )
    .await;
    assert!(!after.contains("966367641"), "{after}");
    let new_hash = template_hash(sts.get("grow").await.expect("sts"));
    assert_ne!(new_hash, old_hash, "the pods roll to apply the new limit");
    let _ = stop.send(());
}
