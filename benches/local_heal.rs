//! Local runtime healing: how long after `kill -9` of a Kubo daemon its API answers again (the
//! supervisor notices the exit, the health engine decides, the daemon restarts), next to the
//! cold start of the same daemon started by hand; and how long a hung (SIGSTOPped) Kubo takes to
//! be detected by probes and restarted. Prints figures; asserts nothing about time.
//!
//! Run with `scripts/run-bench.sh --bench local_heal` (test world, loopback-only namespace).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipfs_kit_operator::runtime::local::LocalStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const OPERATOR: &str = env!("CARGO_BIN_EXE_ipfs-kit-operator");
const PEERS: usize = 4;

fn snapshot(dir: &Path) -> Option<LocalStatus> {
    let text = std::fs::read_to_string(dir.join("state/bench/status.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// Polls `check` every 20 ms for up to `limit`; the time it took, or `None`.
async fn time_until(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

async fn kubo_answers(http: &reqwest::Client, port: u16) -> bool {
    http.post(format!("http://127.0.0.1:{port}/api/v0/id"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn show(what: &str, d: Option<Duration>) {
    match d {
        Some(d) => println!("{what:<58} {:>8.0} ms", d.as_secs_f64() * 1000.0),
        None => println!("{what:<58} {:>8}", "timeout"),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("bench.yaml");
    std::fs::write(
        &spec,
        format!(
            "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: bench\n\
             spec:\n  replicas: {PEERS}\n  health:\n    probeInterval: 1s\n    probeTimeout: \
             500ms\n    failureThreshold: 2\n"
        ),
    )
    .expect("spec");
    let ipfs = support::tools::binary("kubo", "ipfs");
    let mut supervisor = Command::new(OPERATOR)
        .args(["local", "up", "--dashboard-listen", "127.0.0.1:0", "-f"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("IPFS_KIT_IPFS_BIN", &ipfs)
        .env(
            "IPFS_KIT_CLUSTER_BIN",
            support::tools::binary("ipfs-cluster", "ipfs-cluster-service"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("local up");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .no_proxy()
        .build()
        .expect("http");

    let started = Instant::now();
    let up = time_until(Duration::from_secs(120), async || {
        snapshot(dir.path()).is_some_and(|s| {
            s.peers.len() == PEERS && s.status.peers.iter().all(|p| p.kubo_version.is_some())
        })
    })
    .await;
    show(
        &format!("local up: {PEERS} peers answering (cold, incl. init)"),
        up.map(|_| started.elapsed()),
    );
    let Some(status) = snapshot(dir.path()) else {
        let _ = supervisor.kill();
        let _ = supervisor.wait();
        return;
    };

    // kill -9 of one Kubo per peer (peers 0..PEERS-1), one after the other.
    for peer in status.peers.iter().take(PEERS - 1) {
        let (Some(pid), Some(ports)) = (peer.kubo_pid, peer.ports) else {
            continue;
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let healed = time_until(Duration::from_secs(60), async || {
            kubo_answers(&http, ports.kubo_api).await
        })
        .await;
        show(
            &format!("kill -9 {}: Kubo API answering again", peer.name),
            healed,
        );
        // Let the engine settle the restart before the next one (one at a time).
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    // SIGSTOP: alive but silent; detected by probes after failureThreshold rounds.
    if let Some(peer) = status.peers.last()
        && let (Some(pid), Some(ports)) = (peer.kubo_pid, peer.ports)
    {
        let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
        let name = peer.name.clone();
        let detected = time_until(Duration::from_secs(60), async || {
            snapshot(dir.path()).is_some_and(|s| {
                s.status
                    .peers
                    .iter()
                    .any(|p| p.name == name && p.restarts >= 1)
            })
        })
        .await;
        show(
            &format!("SIGSTOP {name}: detected by probes and restarted"),
            detected,
        );
        let healed = time_until(Duration::from_secs(60), async || {
            kubo_answers(&http, ports.kubo_api).await
        })
        .await;
        show(
            &format!("SIGSTOP {name}: Kubo API answering after that"),
            healed,
        );
    }

    // The daemon's own cold start, measured the same way: stop the cluster, start one Kubo by
    // hand on its repository, time until its API answers.
    let _ = kill(Pid::from_raw(supervisor.id() as i32), Signal::SIGTERM);
    let _ = supervisor.wait();
    if let Some(peer) = status.peers.first()
        && let Some(ports) = peer.ports
    {
        let repo = dir.path().join("state/bench").join(&peer.name).join("ipfs");
        for round in 1..=3 {
            let t0 = Instant::now();
            let mut kubo = Command::new(&ipfs)
                .arg("--repo-dir")
                .arg(&repo)
                .args(["daemon", "--migrate=false"])
                .env("IPFS_PATH", &repo)
                .env("IPFS_TELEMETRY", "off")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("ipfs daemon");
            let cold = time_until(Duration::from_secs(60), async || {
                kubo_answers(&http, ports.kubo_api).await
            })
            .await
            .map(|_| t0.elapsed());
            show(&format!("Kubo cold start by hand, round {round}"), cold);
            let _ = kill(Pid::from_raw(kubo.id() as i32), Signal::SIGTERM);
            let _ = kubo.wait();
        }
    }
}
