//! The page's configuration view and IpfsPins against the real apiserver: the sidecar shows an
//! IpfsCluster's spec, changes its safe fields by a merge patch of the IpfsCluster with the
//! caller's rights (the dashboard token, or with --kube-auth a ServiceAccount that may `patch`
//! it; one that may only read is refused, naming it), refuses every other field naming it, and
//! the page shows the IpfsPins with their state on each peer and saves a change in Chromium.
//! Screenshot: `<target>/browser/k8s-config.png`.

use std::time::Duration;

use ipfs_kit_operator::api::{IpfsCluster, IpfsPin};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::cdp::Browser;
use crate::support::control_plane::control_plane;
use crate::support::{dashboard_status_until, wait_for};

const TOKEN: &str = "page-test-token-0123456789";
const WAIT: Duration = Duration::from_secs(60);

/// The test binary's target directory (`<target>/debug/deps/k8s-*` -> `<target>`).
fn target_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("target directory above the test executable")
        .to_path_buf()
}

async fn serve(client: &kube::Client, ns: &str) -> String {
    crate::dashboard::serve_sidecar_with(client, ns, TOKEN).await
}

/// A cluster `store` of 3 peers with a status, and an IpfsPin `docs` pinned on one peer, in
/// error on another.
async fn objects(admin: &kube::Client, ns: &str) {
    let ssa = PatchParams::apply("page-test").force();
    let clusters: Api<IpfsCluster> = Api::namespaced(admin.clone(), ns);
    let object = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
        "metadata": {"name": "store"},
        "spec": {"replicas": 3, "cluster": {"replicationFactorMin": 2}}});
    clusters
        .patch("store", &ssa, &Patch::Apply(&object))
        .await
        .expect("create cluster");
    let status = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
        "status": {"phase": "Degraded", "healthScore": 70, "peers": [
            {"name": "store-0", "state": "Healthy", "score": 100, "restarts": 0, "pinsPinned": 1},
            {"name": "store-1", "state": "Degraded", "score": 40, "restarts": 1, "pinsError": 1,
             "lastError": "1 pin in error"}]}});
    clusters
        .patch_status("store", &ssa, &Patch::Apply(&status))
        .await
        .expect("status");
    let pins: Api<IpfsPin> = Api::namespaced(admin.clone(), ns);
    let pin = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
        "metadata": {"name": "docs"},
        "spec": {"clusterRef": {"name": "store"},
                 "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"}});
    pins.patch("docs", &ssa, &Patch::Apply(&pin))
        .await
        .expect("create pin");
    let pin_status = json!({"apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
        "status": {"phase": "Degraded", "pinned": 1, "allocated": 2, "pinnedSummary": "1/2",
            "peers": [{"peer": "store-0", "state": "Pinned"},
                      {"peer": "store-1", "state": "Error", "error": "context deadline exceeded"}]}});
    pins.patch_status("docs", &ssa, &Patch::Apply(&pin_status))
        .await
        .expect("pin status");
}

#[tokio::test]
async fn the_configuration_view_patches_the_ipfs_cluster_with_the_callers_rights() {
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("page").await;
    let admin = cp.admin_client().await;
    // The sidecar's rights for this view (deploy/rbac.yaml): read and patch IpfsClusters.
    let rules = json!([
        {"apiGroups": ["ipfskit.io"], "resources": ["ipfsclusters"], "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": ["ipfskit.io"], "resources": ["ipfspins"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch", "create"]}]);
    cp.grant(&ns, "dashboard", "dashboard", rules, false).await;
    let review_rules = json!([
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]);
    cp.grant(&ns, "dashboard", "dashboard-review", review_rules, true)
        .await;
    for (who, verbs) in [
        ("writer", json!(["get", "patch"])),
        ("reader", json!(["get", "list"])),
    ] {
        let rules =
            json!([{"apiGroups": ["ipfskit.io"], "resources": ["ipfsclusters"], "verbs": verbs}]);
        cp.grant(&ns, who, who, rules, false).await;
    }
    let writer = cp.service_account_token(&ns, "writer").await;
    let reader = cp.service_account_token(&ns, "reader").await;
    objects(&admin, &ns).await;
    let base = serve(&cp.service_account_client(&ns, "dashboard").await, &ns).await;
    let key = format!("{ns}/store");
    dashboard_status_until(&base, "the cluster in the sidecar's status", |b| {
        (b["data"]["clusters"][0]["cluster"] == json!(key)).then_some(())
    })
    .await;
    let clusters: Api<IpfsCluster> = Api::namespaced(admin.clone(), &ns);
    through_the_api(&base, &key, &clusters, &writer, &reader, &ns).await;
    in_the_page(&base, &ns, &clusters).await;
}

async fn patch(
    base: &str,
    key: &str,
    bearer: &str,
    body: Value,
    if_match: Option<&str>,
) -> (u16, Value) {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let mut req = http
        .patch(format!("{base}/api/dashboard/clusters/{key}/spec"))
        .bearer_auth(bearer)
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string());
    if let Some(generation) = if_match {
        req = req.header("if-match", generation);
    }
    let resp = req.send().await.expect("PATCH");
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn through_the_api(
    base: &str,
    key: &str,
    clusters: &Api<IpfsCluster>,
    writer: &str,
    reader: &str,
    ns: &str,
) {
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let resp = http
        .get(format!("{base}/api/dashboard/clusters/{key}/spec"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let view: Value = resp.json().await.expect("json");
    assert_eq!(view["data"]["spec"]["replicas"], 3, "{view}");
    assert_eq!(
        view["data"]["spec"]["cluster"]["replicationFactorMin"], 2,
        "{view}"
    );

    // A ServiceAccount that may only read is refused, naming it; nothing changes.
    let (code, body) = wait_for(
        "the reader's refusal",
        WAIT,
        Duration::from_millis(300),
        || async {
            let (code, body) = patch(base, key, reader, json!({"paused": true}), None).await;
            (code == 403).then_some((code, body))
        },
    )
    .await;
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        code == 403 && message.contains(&format!("system:serviceaccount:{ns}:reader")),
        "{body}"
    );
    assert!(!clusters.get("store").await.expect("get").spec.paused);

    // Every other field is refused, naming it, whoever asks.
    let (code, body) = patch(
        base,
        key,
        TOKEN,
        json!({"cluster": {"consensus": "raft"}}),
        None,
    )
    .await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (422, &json!("read_only_field")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("spec.cluster.consensus: ")),
        "{body}"
    );
    // The rules across fields: fewer peers than replicationFactorMin.
    let (code, body) = patch(base, key, TOKEN, json!({"replicas": 1}), None).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (422, &json!("invalid_spec")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.cluster.replicationFactorMin")),
        "{body}"
    );

    // A ServiceAccount that may patch it changes it with its own token: a merge patch of the
    // IpfsCluster, by the dashboard's field manager.
    let (code, body) = wait_for(
        "the writer's change",
        WAIT,
        Duration::from_millis(300),
        || async {
            let (code, body) = patch(
                base,
                key,
                writer,
                json!({"health": {"autoHeal": false}}),
                Some("\"1\""),
            )
            .await;
            (code == 200).then_some((code, body))
        },
    )
    .await;
    assert_eq!(
        body["data"]["changed"],
        json!(["spec.health.autoHeal"]),
        "{code} {body}"
    );
    assert_eq!(body["data"]["generation"], 2);
    let object = clusters.get("store").await.expect("get");
    assert!(!object.spec.health.auto_heal);
    assert_eq!(object.metadata.generation, Some(2));
    let managers: Vec<String> = object
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some(format!("{}/{}", m.manager?, m.operation?)))
        .collect();
    assert!(
        managers.contains(&"ipfs-kit-operator-dashboard/Update".to_owned()),
        "{managers:?}"
    );
    // A change made on a generation that is gone.
    let (code, body) = patch(base, key, TOKEN, json!({"paused": true}), Some("\"1\"")).await;
    assert_eq!(
        (code, &body["error"]["code"]),
        (412, &json!("spec_changed")),
        "{body}"
    );
}

async fn in_the_page(base: &str, ns: &str, clusters: &Api<IpfsCluster>) {
    let out = target_dir().join("browser");
    let browser = Browser::launch("chromium-k8s", &out);
    let page = browser.new_page(1280, 1000).await;
    page.navigate(&format!("{base}/")).await;
    let section = format!("#cluster-{ns}-store");
    let pins = page
        .wait_until(
            "the IpfsPin with its state on each peer",
            WAIT,
            &format!(
                "(() => {{ const r = document.querySelector('{section} tr[data-pin=\"docs\"]'); \
                 return r && [...r.querySelectorAll('li')].map((l) => l.textContent); }})()"
            ),
        )
        .await;
    assert_eq!(
        pins,
        json!([
            "store-0: Pinned",
            "store-1: Error (context deadline exceeded)"
        ])
    );
    // This sidecar keeps no history (no controller runs here): the page says so.
    let note = page
        .wait_until(
            "the history's empty state",
            WAIT,
            &format!("document.querySelector('{section}-score .chart-note').textContent"),
        )
        .await;
    assert!(
        note.as_str()
            .is_some_and(|n| n.starts_with("No samples yet")),
        "{note}"
    );

    page.click(&format!("{section}-config > summary")).await;
    let replicas = format!("{section}-config input[data-field=\"spec.replicas\"]");
    page.wait_until(
        "the configuration form",
        WAIT,
        &format!("(document.querySelector('{replicas}') || {{}}).value === '3'"),
    )
    .await;
    page.type_into("#token", TOKEN).await;
    page.click("#token-form button[type=submit]").await;
    page.eval(&format!("document.querySelector('{replicas}').value = ''"))
        .await;
    page.type_into(&replicas, "5").await;
    page.click(&format!("{section}-config button[type=submit]"))
        .await;
    let saved = page
        .wait_until(
            "the change saved",
            WAIT,
            &format!(
                "(() => {{ const t = document.querySelector('{section}-config .config-result').textContent; \
                 return t.startsWith('Saved') && t; }})()"
            ),
        )
        .await;
    assert_eq!(saved, "Saved as generation 3: spec.replicas 3 → 5.");
    assert_eq!(clusters.get("store").await.expect("get").spec.replicas, 5);
    page.screenshot_of(&format!("{section}-config"), &out.join("k8s-config.png"))
        .await;
    let unexpected: Vec<String> = page
        .problems()
        .into_iter()
        .filter(|p| !(p.contains("/api/dashboard/history/") && p.contains("404")))
        .collect();
    assert_eq!(unexpected, Vec::<String>::new());
}
