//! `ipfs-kit-operator kubo-metrics` (the peer pods' `kubo-metrics` container) against a real
//! Kubo: its metrics come through, nothing else of the RPC API does.

use std::process::Command;
use std::time::Duration;

use crate::support::ipfs::IpfsWorld;
use crate::support::process::{Daemon, free_port};
use crate::support::wait_for;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_metrics_serves_kubos_metrics_and_nothing_else_of_the_rpc_api() {
    let mut world = IpfsWorld::start(1).await;
    let port = free_port();
    let logs = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipfs-kit-operator"));
    cmd.args([
        "kubo-metrics",
        &format!("--listen=127.0.0.1:{port}"),
        &format!("--kubo={}", world.peers[0].kubo_api),
    ]);
    let mut exporter = Daemon::spawn("kubo-metrics", cmd, logs.path()).expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let http = world.http.clone();
    let body = wait_for(
        "the metrics to be served",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || async {
            let answer = http.get(format!("{base}/metrics")).send().await.ok()?;
            (answer.status() == 200).then_some(())?;
            answer.text().await.ok()
        },
    )
    .await;
    // Kubo's own series, as Kubo's RPC port serves them.
    let direct = http
        .get(format!(
            "{}/debug/metrics/prometheus",
            world.peers[0].kubo_api
        ))
        .send()
        .await
        .expect("Kubo's metrics")
        .text()
        .await
        .expect("body");
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter(|l| l.starts_with("# TYPE "))
            .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
            .collect()
    };
    let served = names(&body);
    assert!(
        served.iter().any(|n| n.starts_with("ipfs_")),
        "Kubo's ipfs_* series: {served:?}"
    );
    assert_eq!(served, names(&direct), "the same series as Kubo's endpoint");

    // Nothing else of the RPC API: no commands, no profiling, no debug vars.
    for (method, path) in [
        ("POST", "/api/v0/id"),
        ("POST", "/api/v0/shutdown"),
        ("GET", "/debug/pprof/heap"),
        ("GET", "/debug/vars"),
        ("GET", "/debug/metrics/prometheus"),
    ] {
        let answer = http
            .request(method.parse().expect("method"), format!("{base}{path}"))
            .send()
            .await
            .expect("answer");
        assert!(
            answer.status() == 404 || answer.status() == 405,
            "{method} {path}: {}",
            answer.status()
        );
    }
    world.peers[0].kubo.assert_running();

    // Kubo gone: the scrape fails clearly, the exporter stays up.
    world.peers[0].kubo.stop(Duration::from_secs(10));
    let answer = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 502);
    let text = answer.text().await.unwrap_or_default();
    assert!(text.contains("Kubo's RPC API"), "{text}");
    exporter.assert_running();
}
