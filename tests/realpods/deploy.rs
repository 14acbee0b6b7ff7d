//! `kubectl apply -k deploy/` as written, on the real node: what it installs comes up with the
//! locally built image, and the dashboard's token Secret, which `deploy/` does not create, can be
//! created afterwards.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::support::real_node::{RealNode, real_node};
use crate::support::wait_for;
use crate::{http, kubectl, lease_holder, ready_pods, report, restarts};

const NS: &str = "ipfs-kit-system";
const SELECTOR: &str = "app.kubernetes.io/name=ipfs-kit-operator";

pub async fn works_as_written() {
    let node = real_node();
    let client = node.admin_client().await;
    let pods = comes_up(node, &client).await;
    let ip = pods[0]
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    dashboard_takes_a_token_created_later(node, &client, &ip).await;
    removed(node, &client).await;
}

/// The namespace enforces the restricted standard; both replicas Ready without a restart, one
/// holds the Lease. Returns the Ready pods.
async fn comes_up(node: &RealNode, client: &Client) -> Vec<Pod> {
    let started = Instant::now();
    kubectl(node, &["apply", "-k", "deploy/"]);
    let ns = NS;
    let labels = Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .expect("namespace")
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "{labels:?}"
    );
    let selector = SELECTOR;
    let pods = ready_pods(client, ns, selector, 2).await;
    report(&format!(
        "kubectl apply -k deploy/ -> 2 operator pods Ready: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let counts = restarts(&pods);
    assert!(counts.iter().all(|(_, _, n)| *n == 0), "{counts:?}");
    let holder = lease_holder(client, ns, "ipfs-kit-operator").await;
    assert!(pods.iter().any(|p| p.name_any() == holder), "{holder}");
    pods
}

/// Without its token Secret the dashboard serves reads and refuses changes, naming the token
/// file; once the Secret is created it takes the token without a restart.
async fn dashboard_takes_a_token_created_later(node: &RealNode, client: &Client, ip: &str) {
    let ns = NS;
    let http = http();
    let base = format!("http://{ip}:8080/api/dashboard");
    let status: Value = http
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("GET status")
        .json()
        .await
        .expect("status json");
    assert_eq!(status["success"], json!(true), "{status}");
    let token = crate::support::control_plane::random_hex(20);
    let check = |token: String| {
        let http = http.clone();
        let url = format!("{base}/health/check");
        async move {
            http.post(&url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .expect("POST health/check")
        }
    };
    let refused = check(token.clone()).await;
    assert_eq!(refused.status().as_u16(), 403);
    let body: Value = refused.json().await.expect("error json");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/var/run/ipfs-kit/dashboard/token"),
        "{body}"
    );
    kubectl(
        node,
        &[
            "create",
            "secret",
            "generic",
            "ipfs-kit-dashboard-token",
            "-n",
            ns,
            &format!("--from-literal=token={token}"),
        ],
    );
    // kubelet refreshes the optional Secret volume on its next sync of the pod (up to a minute
    // plus its cache TTL).
    let waited = Instant::now();
    wait_for(
        "the dashboard accepting the new token",
        Duration::from_secs(150),
        Duration::from_secs(1),
        || {
            let check = check(token.clone());
            // Past the token check: any answer but 401/403 (the check itself may find no
            // cluster to probe).
            async move {
                let status = check.await.status().as_u16();
                (status != 401 && status != 403).then_some(())
            }
        },
    )
    .await;
    report(&format!(
        "deploy/ dashboard: token Secret created -> accepted {:.1} s (no restart)",
        waited.elapsed().as_secs_f64()
    ));
    let after = ready_pods(client, ns, SELECTOR, 2).await;
    let counts = restarts(&after);
    assert!(counts.iter().all(|(_, _, n)| *n == 0), "{counts:?}");
}

/// Deleting the Deployment removes its pods, so that only the chart's operator reconciles.
async fn removed(node: &RealNode, client: &Client) {
    let ns = NS;
    kubectl(
        node,
        &[
            "delete",
            "deployment",
            "ipfs-kit-operator",
            "-n",
            ns,
            "--wait",
        ],
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    wait_for(
        "deploy/'s operator pods gone",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let list = pods
                .list(&ListParams::default().labels(SELECTOR))
                .await
                .ok()?;
            list.items.is_empty().then_some(())
        },
    )
    .await;
}
