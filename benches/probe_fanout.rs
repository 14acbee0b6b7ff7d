//! Probe fan-out: how long one probe round takes for 3 real Kubo + Cluster peers, and for 100
//! simulated endpoints that each answer after a delay (or never). A concurrent round should cost
//! about one delay (or one timeout), not their sum. Prints figures; asserts nothing about time.
//!
//! Run with `make bench` (it needs the test world and a loopback-only network namespace).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ipfs_kit_operator::probe::report::ProcessState;
use ipfs_kit_operator::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};

const ROUNDS: usize = 5;

/// A loopback HTTP server answering every Kubo and Cluster probe route after `delay`
/// (`None`: never answers).
async fn simulated_peer(delay: Option<Duration>) -> String {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let handler = move |uri: axum::http::Uri| async move {
        match delay {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending::<()>().await,
        }
        let body = match uri.path() {
            "/api/v0/id" => r#"{"ID":"12D3KooWsim","AgentVersion":"kubo/sim"}"#,
            "/api/v0/version" => r#"{"Version":"0.0.0"}"#,
            "/api/v0/swarm/peers" => r#"{"Peers":[]}"#,
            "/api/v0/repo/stat" => r#"{"RepoSize":1}"#,
            "/api/v0/stats/bw" => r#"{"TotalIn":1,"TotalOut":1}"#,
            "/health" => return StatusCode::NO_CONTENT.into_response(),
            "/id" => {
                r#"{"id":"12D3KooWsim","peername":"sim","version":"0.0.0","ipfs":{"error":""}}"#
            }
            "/peers" => "{\"id\":\"12D3KooWsim\"}\n",
            "/pins" => return StatusCode::NO_CONTENT.into_response(),
            _ => return StatusCode::NOT_FOUND.into_response(),
        };
        body.into_response()
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn target(name: String, kubo: &str, cluster: &str) -> PeerTarget {
    PeerTarget {
        peer: name,
        kubo: Endpoint::new(kubo),
        cluster: Endpoint::new(cluster),
        kubo_process: ProcessState::Running,
        cluster_process: ProcessState::Running,
    }
}

/// Runs `ROUNDS` rounds and prints min / median / max wall time.
async fn measure(label: &str, prober: &Prober, targets: &[PeerTarget], concurrency: usize) {
    let mut times = Vec::new();
    let mut ok = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let reports = prober.round(targets, concurrency).await;
        times.push(started.elapsed());
        ok = reports
            .iter()
            .filter(|r| r.kubo.is_ok() && r.cluster.is_ok())
            .count();
    }
    times.sort();
    println!(
        "{label:<58} {:>4} peers  conc {concurrency:>3}  min {:>8.1} ms  median {:>8.1} ms  max {:>8.1} ms  ok {ok}/{}",
        targets.len(),
        times[0].as_secs_f64() * 1e3,
        times[ROUNDS / 2].as_secs_f64() * 1e3,
        times[ROUNDS - 1].as_secs_f64() * 1e3,
        targets.len(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let delay = Duration::from_millis(200);
    let timeout = Duration::from_secs(1);
    let prober = Prober::new(timeout).expect("prober");
    println!("probe fan-out, {ROUNDS} rounds each, per-call timeout {timeout:?}");

    let mut slow = Vec::new();
    for i in 0..100 {
        let base = simulated_peer(Some(delay)).await;
        slow.push(target(format!("sim-{i}"), &base, &base));
    }
    let label = format!("100 simulated endpoints answering after {delay:?}");
    measure(&label, &prober, &slow, DEFAULT_CONCURRENCY).await;
    measure(&label, &prober, &slow, 10).await;

    let mut hung = Vec::new();
    for i in 0..100 {
        let base = simulated_peer(None).await;
        hung.push(target(format!("hung-{i}"), &base, &base));
    }
    measure(
        "100 simulated endpoints that never answer",
        &prober,
        &hung,
        DEFAULT_CONCURRENCY,
    )
    .await;

    let world = support::ipfs::IpfsWorld::start(3).await;
    let real: Vec<PeerTarget> = world
        .peers
        .iter()
        .map(|p| target(format!("peer-{}", p.index), &p.kubo_api, &p.cluster_api))
        .collect();
    measure(
        "3 real Kubo + IPFS Cluster peers",
        &prober,
        &real,
        DEFAULT_CONCURRENCY,
    )
    .await;
    measure("3 real Kubo + IPFS Cluster peers", &prober, &real, 1).await;
}
