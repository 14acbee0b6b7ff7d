//! Owned objects changed by hand are put back after the operator has gone idle. An idle
//! reconcile builds and applies nothing when the watch caches show every owned object as the last
//! full apply left it (`src/runtime/kube/settled.rs`), so a change someone else made must still
//! reach it through those caches.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::controller::start_controller;
use crate::support::clusters::{apply_cluster, cluster_json, owned, provide_volumes, running_pods};
use crate::support::control_plane::control_plane;
use crate::support::wait_for;

const HASH: &str = "ipfskit.io/config-hash";

fn config_hash(sts: &StatefulSet) -> Option<String> {
    sts.spec
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(HASH)
        .cloned()
}

#[tokio::test]
async fn objects_changed_by_hand_after_the_operator_went_idle_are_put_back() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("drift").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let (stop, controller) = start_controller(client.clone(), &ns);
    let created = apply_cluster(&client, &ns, &cluster_json("drift", &class, 1)).await;
    let uid = created.uid().expect("uid");
    let sts: StatefulSet = owned(&client, &ns, "drift", &uid).await;
    let config: ConfigMap = owned(&client, &ns, "drift-config", &uid).await;
    running_pods(&client, &ns, "drift", 1).await;
    let hash = config_hash(&sts).expect("the operator's config hash");
    let script = config.data.as_ref().expect("data")["kubo-init.sh"].clone();
    // Idle: several probe intervals (2 s) with nothing changed.
    tokio::time::sleep(Duration::from_secs(8)).await;

    // Someone edits the rendered script and the StatefulSet's pod template.
    let by_hand = PatchParams::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let edit = json!({"data": {"kubo-init.sh": "#!/bin/sh\necho edited by hand\n"}});
    cms.patch("drift-config", &by_hand, &Patch::Merge(&edit))
        .await
        .expect("edit the ConfigMap");
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let edit = json!({"spec": {"template": {"metadata": {"annotations": {HASH: "edited"}}}}});
    sts_api
        .patch("drift", &by_hand, &Patch::Merge(&edit))
        .await
        .expect("edit the StatefulSet");

    wait_for(
        "the operator's script and config hash back",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let cm = cms.get("drift-config").await.ok()?;
            let now = cm.data.as_ref()?.get("kubo-init.sh")?.clone();
            let sts = sts_api.get("drift").await.ok()?;
            (now == script && config_hash(&sts).as_deref() == Some(hash.as_str())).then_some(())
        },
    )
    .await;
    let _ = stop.send(());
    let _ = controller.await;
}
