//! The operator against an API server that goes away. A control plane of this test's own (the
//! shared one of the `k8s` tests is left alone) whose kube-apiserver is killed for 10 s while
//! `ipfs-kit-operator run` manages an IpfsCluster, then started again on the same address with the
//! same etcd data: the operator process must live through the outage and converge afterwards.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ipfs_kit_operator::api::IpfsCluster;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use serde_json::json;

use support::clusters::{
    apply_cluster, cluster_json, http_get, owned, provide_volumes, spawn_operator, stop_operator,
    wait_status, wait_status_within,
};
use support::control_plane::ControlPlane;
use support::wait_for;

/// How long the apiserver stays down.
const OUTAGE: Duration = Duration::from_secs(10);
/// How soon after the apiserver is back the operator must have converged (its watches reconnect
/// with a backoff of up to 30 s; the machine may be busy).
const CONVERGE_WITHIN: Duration = Duration::from_secs(150);

fn config_hash(sts: &StatefulSet) -> String {
    sts.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get("ipfskit.io/config-hash").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_survives_an_apiserver_outage_and_converges_after_it_returns() {
    let cp = tokio::task::block_in_place(ControlPlane::start_private);
    cp.install_crds().await;
    let ns = cp.namespace("outage").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 6).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = cp.dir.join("operator.log");
    let mut operator = spawn_operator(&cp, &ns, "outage-operator", port, &log);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Running and converged before the outage.
    let created = apply_cluster(&client, &ns, &cluster_json("survivor", &class, 1)).await;
    let uid = created.uid().expect("uid");
    let sts_before: StatefulSet = owned(&client, &ns, "survivor", &uid).await;
    let api_service: Service = owned(&client, &ns, "survivor-api", &uid).await;
    let clusters: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    wait_status(&clusters, "survivor", "generation 1 observed", |c| {
        c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
    })
    .await;

    // The outage: the apiserver is gone for 10 s; the operator keeps running and serving.
    tokio::task::block_in_place(|| cp.stop_apiserver());
    let down_since = Instant::now();
    assert!(
        client.apiserver_version().await.is_err(),
        "the apiserver must be unreachable during the outage"
    );
    while down_since.elapsed() < OUTAGE {
        if let Some(status) = operator.try_wait().expect("wait for the operator") {
            panic!(
                "the operator exited during the apiserver outage ({status}); log:\n{}",
                log_text()
            );
        }
        let health = http_get(port, "/healthz").unwrap_or_default();
        assert!(
            health.contains("200 OK"),
            "the operator's /healthz must answer during the outage, got {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::task::block_in_place(|| cp.start_apiserver());
    let returned = Instant::now();
    eprintln!(
        "apiserver down for {:.1} s, ready again",
        down_since.elapsed().as_secs_f64()
    );

    // Right after it returns: a spec change (scale out and a Kubo config value) and an owned
    // Service deleted by hand.
    let mut changed = cluster_json("survivor", &class, 2);
    changed["spec"]["kubo"]["config"] = json!({"Swarm": {"ConnMgr": {"HighWater": 300}}});
    let applied = apply_cluster(&client, &ns, &changed).await;
    let generation = applied.metadata.generation.expect("generation");
    assert!(generation > created.metadata.generation.expect("generation"));
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services
        .delete("survivor-api", &DeleteParams::default())
        .await
        .expect("delete the owned Service");

    let converged = wait_status_within(
        &clusters,
        "survivor",
        "the changed spec observed with 2 peers",
        CONVERGE_WITHIN,
        |c| {
            c.status.as_ref().is_some_and(|s| {
                s.observed_generation == Some(generation)
                    && s.replicas == Some(2)
                    && s.peers.len() == 2
            })
        },
    )
    .await;
    assert_eq!(converged.metadata.generation, Some(generation));
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let sts = wait_for(
        "the StatefulSet scaled to 2 with a new config hash",
        CONVERGE_WITHIN.saturating_sub(returned.elapsed()),
        Duration::from_millis(500),
        || async {
            let sts = statefulsets.get("survivor").await.ok()?;
            (sts.spec.replicas == Some(2) && config_hash(&sts) != config_hash(&sts_before))
                .then_some(sts)
        },
    )
    .await;
    assert_eq!(sts.spec.replicas, Some(2));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let script = config_maps
        .get("survivor-config")
        .await
        .expect("ConfigMap")
        .data
        .expect("data")["kubo-init.sh"]
        .clone();
    assert!(
        script.contains("'Swarm.ConnMgr.HighWater' '300'"),
        "the Kubo config value reaches the start script: {script}"
    );
    let recreated = wait_for(
        "the deleted Service recreated",
        CONVERGE_WITHIN.saturating_sub(returned.elapsed()),
        Duration::from_millis(500),
        || async {
            services
                .get_opt("survivor-api")
                .await
                .ok()
                .flatten()
                .filter(|s| s.uid() != api_service.uid())
        },
    )
    .await;
    assert!(support::clusters::owned_by(&recreated.metadata, &uid));
    eprintln!(
        "converged {:.1} s after the apiserver returned (spec change observed, Service recreated)",
        returned.elapsed().as_secs_f64()
    );

    // Still the same process, and it stops cleanly.
    assert!(
        operator.try_wait().expect("wait").is_none(),
        "the operator must still be running; log:\n{}",
        log_text()
    );
    let status = stop_operator(&mut operator).await;
    let output = log_text();
    assert!(status.success(), "exit {status:?}; log:\n{output}");
    assert!(
        !output.contains("panicked"),
        "no panic in the log:\n{output}"
    );
}
