//! The dashboard sidecar against the real apiserver: it serves IpfsCluster status from its watch
//! cache and records each action request as a ConfigMap of its own, with only the RBAC rights it
//! documents; without the right to record, a request is answered 500, never 202.

use std::sync::Arc;
use std::time::Duration;

use ipfs_kit_operator::api::request::{REQUEST_LABEL, request_record};
use ipfs_kit_operator::api::{IpfsCluster, IpfsPin, RequestRecord, RequestState};
use ipfs_kit_operator::dashboard::{Token, kube as sidecar, router};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
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

    // The rights the sidecar needs: read IpfsClusters (and their pins), record requests as
    // ConfigMaps and follow them, read the peers' logs.
    let read_rules = json!([
        {"apiGroups": ["ipfskit.io"], "resources": ["ipfsclusters"], "verbs": ["list", "watch"]},
        {"apiGroups": ["ipfskit.io"], "resources": ["ipfspins"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]);
    let mut sidecar_rules = read_rules.clone();
    sidecar_rules
        .as_array_mut()
        .expect("rules")
        .push(json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}));
    cp.grant(&ns, "dashboard", "dashboard", sidecar_rules, false)
        .await;
    // A sidecar whose ServiceAccount may not create ConfigMaps cannot record a request.
    cp.grant(&ns, "no-record", "no-record", read_rules, false)
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
    let no_record_client = cp.service_account_client(&ns, "no-record").await;

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
            {"name": "store-1", "state": "Healthy", "score": 100, "restarts": 0,
             "kuboVersion": "0.42.0", "clusterVersion": "1.1.6", "swarmPeers": 1,
             "clusterPeersSeen": 1, "lastProbe": "2026-11-30T10:00:00Z"}]}});
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

    let base = serve_sidecar(&sidecar_client, &ns).await;
    let no_record = serve_sidecar(&no_record_client, &ns).await;
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
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), &ns);
    assert!(recorded(&config_maps).await.is_empty());

    every_route_answers_from_the_kubernetes_status(&base, &ns, &admin).await;

    // The bad-input table: refused with reasons, nothing recorded on the IpfsCluster.
    let table = crate::support::bad_requests::table(&key, "store-0");
    let failures = crate::support::bad_requests::check_all(&base, TOKEN, &table).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        recorded(&config_maps).await.is_empty(),
        "a refused request was recorded"
    );

    // Recorded before the answer: the ConfigMap exists when 202 comes, and the watch URL says
    // queued (no controller runs here).
    let resp = http
        .post(format!("{backend}/restart"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 202);
    let accepted: Value = resp.json().await.expect("json");
    let id = accepted["data"]["requested"]["id"].as_u64().expect("id");
    let now = recorded(&config_maps).await;
    assert_eq!(now.len(), 1, "{now:?}");
    let request = &now[0].request;
    assert_eq!((request.id, request.peer.as_deref()), (id, Some("store-0")));
    assert_eq!(request.daemon, Some(ipfs_kit_operator::api::Daemon::Ipfs));
    assert_eq!(now[0].state, RequestState::Queued);
    let owner = config_maps
        .get(&format!("store-request-{id}"))
        .await
        .expect("the request's ConfigMap")
        .metadata
        .owner_references
        .unwrap_or_default();
    assert_eq!(
        owner[0].uid,
        clusters
            .get("store")
            .await
            .expect("get")
            .metadata
            .uid
            .expect("uid")
    );
    let watch = accepted["data"]["watch"].as_str().expect("watch URL");
    let state: Value = http
        .get(format!("{base}{watch}"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(state["data"]["state"], "queued", "{state}");

    // A sidecar that may not create ConfigMaps answers 500 saying why; nothing is recorded.
    let refused = dashboard_status_until(&no_record, "the second sidecar's status", |b| {
        (b["data"]["clusters"][0]["cluster"] == json!(key)).then_some(())
    });
    refused.await;
    let resp = http
        .post(format!(
            "{no_record}/api/dashboard/backends/{ns}/store/store-1/ipfs/restart"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("POST");
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"]["code"], "request_not_recorded", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("configmaps") && message.contains("forbidden"),
        "{message}"
    );
    assert_eq!(recorded(&config_maps).await.len(), 1);

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
    let all = recorded(&config_maps).await;
    let writer = all
        .iter()
        .find(|r| r.request.peer.as_deref() == Some("store-1"))
        .expect("the writer's request recorded");
    assert_eq!(
        writer.request.daemon,
        Some(ipfs_kit_operator::api::Daemon::Cluster)
    );
}

/// A sidecar for namespace `ns` acting with `client`, served on a free port: its base URL.
async fn serve_sidecar(client: &kube::Client, ns: &str) -> String {
    serve_sidecar_with(client, ns, TOKEN).await
}

/// [`serve_sidecar`] with its write token `token`.
pub(crate) async fn serve_sidecar_with(client: &kube::Client, ns: &str, token: &str) -> String {
    let (dashboard, publisher, board) = sidecar::dashboard(client, Token::new(token), false, true);
    let publisher = Arc::new(publisher);
    let (watch_ns, watch_client) = (ns.to_owned(), client.clone());
    tokio::spawn(async move {
        sidecar::follow_clusters(watch_client, Some(&watch_ns), publisher).await
    });
    tokio::spawn(sidecar::follow_requests(
        client.clone(),
        Some(ns.to_owned()),
        board,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router(dashboard)).await });
    base
}

/// The requests recorded in `config_maps`' namespace, oldest first.
async fn recorded(config_maps: &Api<ConfigMap>) -> Vec<RequestRecord> {
    let list = config_maps
        .list(&ListParams::default().labels(REQUEST_LABEL))
        .await
        .expect("list request ConfigMaps");
    let mut records: Vec<RequestRecord> = list
        .items
        .iter()
        .map(|cm| request_record(cm).expect("a request"))
        .collect();
    records.sort_by_key(|r| r.request.id);
    records
}

/// The read routes on a status that came from the apiserver; logs through the pods/log API.
/// Every answer is checked against the OpenAPI document.
async fn every_route_answers_from_the_kubernetes_status(
    base: &str,
    ns: &str,
    admin: &kube::Client,
) {
    let http = crate::support::openapi::http();
    let get = |path: String| {
        let http = http.clone();
        async move { crate::support::openapi::get(&http, base, &path).await }
    };
    toolkit_fields_of_the_kubernetes_status(&http, base, ns).await;
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

/// The old toolkit's fields from the status the controller wrote: store-0 unhealthy (its Kubo
/// does not answer), store-1 healthy; the container ports; the short names standing for both
/// peers' daemons.
async fn toolkit_fields_of_the_kubernetes_status(http: &reqwest::Client, base: &str, ns: &str) {
    use crate::support::openapi::{get, post};
    let (code, body) = get(http, base, "/api/dashboard/status").await;
    assert_eq!(code, 200, "{body}");
    let status = &body["data"];
    assert_eq!(
        status["overall_health"], "unhealthy",
        "score 42: {status:#}"
    );
    let down = &status["backends"][format!("{ns}/store/store-0/ipfs")];
    assert_eq!(
        (
            &down["status"],
            &down["health"],
            &down["port"],
            &down["daemon_pid"]
        ),
        (
            &json!("unresponsive"),
            &json!("unhealthy"),
            &json!(5001),
            &Value::Null
        ),
        "{down}"
    );
    assert_eq!(down["errors"][0]["error"], "Kubo API unreachable");
    let up = &status["backends"][format!("{ns}/store/store-1/cluster")];
    assert_eq!(
        (&up["status"], &up["health"], &up["port"]),
        (&json!("running"), &json!("healthy"), &json!(9094))
    );
    let ipfs = &status["backends"]["ipfs"];
    assert_eq!(
        (&ipfs["status"], &ipfs["health"]),
        (&json!("partial"), &json!("degraded")),
        "{ipfs}"
    );
    let cluster = &status["cluster"];
    assert_eq!(cluster["port_status"]["api"]["port"], 9094);
    assert_eq!(cluster["port_status"]["proxy"]["port"], 9095);
    assert_eq!(
        cluster["port_status"]["api"]["in_use"],
        Value::Null,
        "not known in Kubernetes"
    );
    assert_eq!(
        (&cluster["running"], &cluster["responsive"]),
        (&json!(false), &json!(1))
    );
    assert_eq!(status["libp2p"]["peer_count"], 2);
    assert_eq!(status["metrics"]["healthy_backends"], 2);
    assert_eq!(status["metrics"]["health_percentage"], 50.0);
    assert_eq!(
        status["clusters"][0]["processes"],
        json!([]),
        "no processes in Kubernetes"
    );

    let (code, body) = get(http, base, "/api/dashboard/metrics/realtime").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["backends"]["unhealthy"], 2, "{body}");
    assert_eq!(body["data"]["network"]["libp2p_peers"], 2);

    let (code, group) = get(http, base, "/api/dashboard/backends/ipfs-cluster/status").await;
    assert_eq!(code, 200, "{group}");
    assert_eq!(
        group["data"]["members"].as_array().map(Vec::len),
        Some(2),
        "{group}"
    );
    let (code, refused) = post(
        http,
        base,
        "/api/dashboard/backends/ipfs/restart",
        Some(TOKEN),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 409, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{ns}/store/store-0/ipfs")),
        "{message}"
    );
}
