//! The test world: a loopback Kubernetes control plane (etcd, kube-apiserver, controller-manager,
//! scheduler, kwok), a real node that runs real pods (`real_node`: kubelet, containerd, CNI,
//! CoreDNS) and real Kubo + IPFS Cluster peers, built by `scripts/test-world.sh`.
//!
//! Every process started here dies with the test process (`PR_SET_PDEATHSIG`), and `make test`
//! runs the tests in a network namespace with only loopback, inside a PID namespace, so nothing
//! survives a run and nothing can reach past that namespace (the real node's bridges and pods
//! live inside it).
#![allow(dead_code)]

pub mod bad_requests;
pub mod clusters;
pub mod control_plane;
pub mod forward;
pub mod ipfs;
pub mod openapi;
pub mod process;
pub mod prometheus;
pub mod real_node;
pub mod tools;
pub mod webhook;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every `interval` until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls a dashboard's `GET {base}/api/dashboard/status` (up to 60 s) until `check` accepts its
/// answer; returns what `check` returned.
pub async fn dashboard_status_until<T>(
    base: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> Option<T>,
) -> T {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let url = format!("{base}/api/dashboard/status");
    wait_for(
        what,
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let body: serde_json::Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            check(&body)
        },
    )
    .await
}

/// POSTs a dashboard restart `url`: refused (401) without the token, accepted (202) with it.
pub async fn restart_with_token(url: &str, token: &str) {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client");
    let refused = http.post(url).send().await.expect("POST");
    assert_eq!(refused.status().as_u16(), 401, "no token, no restart");
    let accepted = http
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("POST");
    assert_eq!(accepted.status().as_u16(), 202);
}
