//! The control plane itself: it answers, runs workloads on kwok nodes, and enforces RBAC.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::support::control_plane::{POD_CIDR, control_plane};
use crate::support::tools;
use crate::support::wait_for;

#[tokio::test]
async fn apiserver_answers_readyz_and_reports_its_real_version() {
    let cp = control_plane();
    let client = cp.admin_client().await;
    let req = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("request");
    let body = client.request_text(req).await.expect("GET /readyz");
    assert_eq!(body.trim(), "ok");

    let expected = tools::version("kubernetes");
    let info = client.apiserver_version().await.expect("GET /version");
    assert_eq!(info.git_version, expected, "apiserver /version");
    let out = cp
        .kubectl()
        .args(["version", "-o", "json"])
        .output()
        .expect("kubectl version");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("kubectl json");
    assert_eq!(
        v["clientVersion"]["gitVersion"],
        json!(expected),
        "kubectl client version"
    );
    assert_eq!(
        v["serverVersion"]["gitVersion"],
        json!(expected),
        "kubectl server version"
    );
}

#[tokio::test]
async fn deployment_pods_are_scheduled_on_kwok_nodes_and_become_running() {
    let cp = control_plane();
    let ns = cp.namespace("deploy").await;
    let client = cp.admin_client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example.invalid/web:1"}]}
            }
        }
    }))
    .expect("deployment json");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create deployment");

    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let running = wait_for(
        "2 Running pods of deployment web",
        Duration::from_secs(90),
        Duration::from_millis(300),
        || async {
            let list = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .ok()?;
            let running: Vec<Pod> = list
                .items
                .into_iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .collect();
            (running.len() == 2).then_some(running)
        },
    )
    .await;
    let prefix = POD_CIDR
        .rsplit_once('.')
        .map(|(p, _)| format!("{p}."))
        .expect("cidr");
    for pod in running {
        let spec = pod.spec.expect("spec");
        let node = spec.node_name.expect("scheduled to a node");
        assert!(node.starts_with("kwok-node-"), "pod on {node}");
        let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
        assert!(
            ip.starts_with(&prefix),
            "pod IP {ip} must be inside {POD_CIDR}"
        );
    }
}

#[tokio::test]
async fn service_account_needs_rbac_rights() {
    let cp = control_plane();
    let ns = cp.namespace("rbac").await;
    let sa_client = cp.service_account_client(&ns, "reader").await;
    let pods: Api<Pod> = Api::namespaced(sa_client, &ns);

    let err = pods
        .list(&ListParams::default())
        .await
        .expect_err("no RBAC yet");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other}"),
    }

    // With a Role that allows it, the same account may list pods: the 403 above was RBAC.
    let admin = cp.admin_client().await;
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pod-reader", "namespace": ns},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "pod-reader", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]
    });
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), &ns);
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(role).expect("role"),
        )
        .await
        .expect("create role");
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin, &ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding).expect("binding"),
        )
        .await
        .expect("create binding");
    wait_for(
        "the RoleBinding to take effect",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { pods.list(&ListParams::default()).await.ok() },
    )
    .await;
}

#[tokio::test]
async fn helm_reports_its_pinned_version_and_reaches_the_apiserver() {
    let cp = control_plane();
    let helm = tools::binary("helm", "helm");
    let out = std::process::Command::new(&helm)
        .args(["version", "--template", "{{.Version}}"])
        .output()
        .expect("helm version");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), tools::version("helm"));

    let ns = cp.namespace("helm").await;
    let home = tempfile::tempdir().expect("helm home");
    let out = std::process::Command::new(&helm)
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .args([
            "list",
            "--namespace",
            &ns,
            "--output",
            "json",
            "--kubeconfig",
        ])
        .arg(&cp.kubeconfig)
        .output()
        .expect("helm list");
    assert!(
        out.status.success(),
        "helm list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
}
