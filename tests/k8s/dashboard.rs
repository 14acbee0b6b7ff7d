//! The dashboard sidecar against the real apiserver: it serves IpfsCluster status from its watch
//! cache and records action requests on the object, with only the RBAC rights it documents.

use std::sync::Arc;
use std::time::Duration;

use ipfs_kit_operator::api::{ACTION_REQUEST_ANNOTATION, IpfsCluster, IpfsPin};
use ipfs_kit_operator::dashboard::{Token, kube as sidecar, router};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::support::control_plane::control_plane;
use crate::support::{dashboard_status_until, wait_for};

const TOKEN: &str = "dashboard-test-token-0123456789";

#[tokio::test]
async fn the_sidecar_serves_status_from_its_watch_cache_and_records_requests() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("dashboard").await;
    let admin = cp.admin_client().await;

    // The rights the sidecar needs: read IpfsClusters (and their pins), annotate them with
    // requests, read the peers' logs.
    let sidecar_rules = json!([
        {"apiGroups": ["ipfskit.io"], "resources": ["ipfsclusters"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["ipfskit.io"], "resources": ["ipfspins"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]);
    cp.grant(&ns, "dashboard", "dashboard", sidecar_rules, false)
        .await;
    // --kube-auth: the sidecar reviews other callers' tokens with the API server.
    let review_rules = json!([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]);
    cp.grant(&ns, "dashboard", "dashboard-review", review_rules, true)
        .await;
    // Two in-cluster clients: one may patch IpfsClusters, one may only read them.
    for (who, verbs) in [
        ("writer", json!(["get", "patch"])),
        ("reader", json!(["get", "list"])),
    ] {
        let rules =
            json!([{"apiGroups": ["ipfskit.io"], "resources": ["ipfsclusters"], "verbs": verbs}]);
        cp.grant(&ns, who, who, rules, false).await;
    }
    let writer_token = cp.service_account_token(&ns, "writer").await;
    let reader_token = cp.service_account_token(&ns, "reader").await;
    let sidecar_client = cp.service_account_client(&ns, "dashboard").await;

    // An IpfsCluster whose status says what a controller saw.
    let clusters: Api<IpfsCluster> = Api::namespaced(admin.clone(), &ns);
    let ssa = PatchParams::apply("dashboard-test").force();
    let object = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
        "metadata": {"name": "store"}, "spec": {"replicas": 3}});
    clusters
        .patch("store", &ssa, &Patch::Apply(&object))
        .await
        .expect("create cluster");
    let status = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
        "status": {"phase": "Degraded", "healthScore": 42, "peers": [
            {"name": "store-0", "state": "Unhealthy", "score": 10, "restarts": 1,
             "lastError": "Kubo API unreachable"},
            {"name": "store-1", "state": "Healthy", "score": 100, "restarts": 0}]}});
    clusters
        .patch_status("store", &ssa, &Patch::Apply(&status))
        .await
        .expect("status");

    // And a pin on it, with the status the pin reconciler wrote.
    let pins: Api<IpfsPin> = Api::namespaced(admin.clone(), &ns);
    let pin = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
        "metadata": {"name": "docs"},
        "spec": {"clusterRef": {"name": "store"},
                 "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"}});
    pins.patch("docs", &ssa, &Patch::Apply(&pin))
        .await
        .expect("create pin");
    let pin_status = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
        "status": {"phase": "Degraded", "pinnedSummary": "1/2", "pinned": 1, "allocated": 2}});
    pins.patch_status("docs", &ssa, &Patch::Apply(&pin_status))
        .await
        .expect("pin status");

    let (dashboard, publisher, requests) =
        sidecar::dashboard(&sidecar_client, Token::new(TOKEN), false, true);
    let publisher = Arc::new(publisher);
    let watch_ns = ns.clone();
    let watch_client = sidecar_client.clone();
    tokio::spawn(async move {
        sidecar::follow_clusters(watch_client, Some(&watch_ns), publisher).await
    });
    tokio::spawn(sidecar::record_requests(sidecar_client, requests));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router(dashboard)).await });
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().expect("http");

    let key = format!("{ns}/store");
    let body = dashboard_status_until(&base, "the sidecar to serve the cluster's status", |body| {
        (body["data"]["clusters"][0]["cluster"] == json!(key)).then(|| body.clone())
    })
    .await;
    let cluster = &body["data"]["clusters"][0];
    assert_eq!(cluster["healthScore"], 42);
    assert_eq!(cluster["phase"], "Degraded");
    assert_eq!(cluster["peers"][0]["lastError"], "Kubo API unreachable");
    let pin = dashboard_status_until(&base, "the pin in the cluster's status", |body| {
        let pin = &body["data"]["clusters"][0]["pins"][0];
        (!pin.is_null()).then(|| pin.clone())
    })
    .await;
    assert_eq!(
        (&pin["name"], &pin["phase"], &pin["pinned"]),
        (&json!("docs"), &json!("Degraded"), &json!("1/2"))
    );

    let backend = format!("{base}/api/dashboard/backends/{ns}/store/store-0/ipfs");
    let peer: Value = http
        .get(format!("{backend}/status"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(peer["data"]["restarts"], 1);
    // Reads record nothing.
    let fresh = clusters.get("store").await.expect("get");
    assert!(
        !fresh
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ACTION_REQUEST_ANNOTATION)
    );

    every_route_answers_from_the_kubernetes_status(&base, &ns, &admin).await;

    // The bad-input table: refused with reasons, nothing recorded on the IpfsCluster.
    let table = crate::support::bad_requests::table(&key, "store-0");
    let failures = crate::support::bad_requests::check_all(&base, TOKEN, &table).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fresh = clusters.get("store").await.expect("get");
    assert!(
        !fresh
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key(ACTION_REQUEST_ANNOTATION),
        "a refused request was recorded"
    );

    let resp = http
        .post(format!("{backend}/restart"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 202);
    let recorded = wait_for(
        "the request annotation on the IpfsCluster",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let obj = clusters.get("store").await.ok()?;
            obj.metadata
                .annotations?
                .get(ACTION_REQUEST_ANNOTATION)
                .cloned()
        },
    )
    .await;
    let recorded: Value = serde_json::from_str(&recorded).expect("annotation json");
    assert_eq!(recorded["action"], "restart");
    assert_eq!(recorded["peer"], "store-0");
    assert_eq!(recorded["daemon"], "ipfs");

    // A ServiceAccount that may only read IpfsClusters is refused, naming who and what.
    let other = format!("{base}/api/dashboard/backends/{ns}/store/store-1/cluster/restart");
    let (code, body) = wait_for(
        "the reader's RBAC to be in force",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let resp = http
                .post(&other)
                .bearer_auth(&reader_token)
                .send()
                .await
                .ok()?;
            let code = resp.status().as_u16();
            let body: Value = resp.json().await.ok()?;
            (code == 403).then_some((code, body))
        },
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        code == 403 && message.contains(&format!("system:serviceaccount:{ns}:reader")),
        "{body}"
    );
    // One that may patch them acts with its own token.
    wait_for(
        "the writer's request to be accepted",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let resp = http
                .post(&other)
                .bearer_auth(&writer_token)
                .send()
                .await
                .ok()?;
            (resp.status().as_u16() == 202).then_some(())
        },
    )
    .await;
    let recorded = wait_for(
        "the writer's request on the IpfsCluster",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let obj = clusters.get("store").await.ok()?;
            let text = obj
                .metadata
                .annotations?
                .get(ACTION_REQUEST_ANNOTATION)
                .cloned()?;
            let value: Value = serde_json::from_str(&text).ok()?;
            (value["peer"] == "store-1").then_some(value)
        },
    )
    .await;
    assert_eq!(recorded["daemon"], "cluster");
}

/// The read routes on a status that came from the apiserver; logs through the pods/log API.
async fn every_route_answers_from_the_kubernetes_status(
    base: &str,
    ns: &str,
    admin: &kube::Client,
) {
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let resp = http.get(&url).send().await.expect("GET");
            let code = resp.status().as_u16();
            (code, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, body) = get("/api/dashboard/metrics/realtime".into()).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["peers"][1]["peer"], "store-1");
    assert_eq!(body["data"]["peers"][1]["score"], 100);
    // The history is not made from watch events: the leader controller samples it (see
    // history.rs).
    let (code, body) = get(format!(
        "/api/dashboard/backends/{ns}/store/store-1/cluster/status"
    ))
    .await;
    assert_eq!(
        (code, &body["data"]["state"]),
        (200, &json!("Healthy")),
        "{body}"
    );

    // No pod store-1 exists: its log is not found, and the answer says which pod was asked for.
    let (code, body) = get(format!(
        "/api/dashboard/logs/{ns}/store/store-1/ipfs?lines=10"
    ))
    .await;
    assert_eq!(code, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("{ns}/store-1")), "{message}");

    // A pod store-0 on a kwok node: the API server asks the node's kubelet API for the container
    // log, which kwok serves from the test world's log files.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "store-0"},
        "spec": {"containers": [
            {"name": "kubo", "image": "ipfs/kubo:v0.42.0"},
            {"name": "cluster", "image": "ipfs/ipfs-cluster:v1.1.6"}]}
    }))
    .expect("pod");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    wait_for(
        "pod store-0 Running on a kwok node",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let p = pods.get("store-0").await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        },
    )
    .await;
    let marker = format!("peer store-0 of {ns} is ready");
    control_plane().append_pod_log("cluster", &marker);
    let (code, body) = get(format!(
        "/api/dashboard/logs/{ns}/store/store-0/cluster?lines=1"
    ))
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["data"]["lines"],
        json!([marker]),
        "the last line, through the API server"
    );
    let (code, body) = get(format!("/api/dashboard/logs/{ns}/store/store-0/ipfs")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["data"]["lines"],
        json!(["kubo started"]),
        "the kubo container's own log"
    );
}
