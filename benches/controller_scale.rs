//! Controller scale: creates 1, 100 and 1000 IpfsClusters (1 peer each) on the loopback control
//! plane and prints the time until all converged (status.observedGeneration == generation and the
//! StatefulSet created), the process's peak RSS, and its CPU seconds while idle for 60 s
//! afterwards. The controller runs in this process, so the figures include the benchmark's own
//! client (small next to the controller's watch caches). Prints figures; asserts nothing.
//!
//! Run with `scripts/run-bench.sh --bench controller_scale`; `IPFS_KIT_BENCH_SIZES=1,100` picks
//! the sizes, `IPFS_KIT_BENCH_IDLE_SECS` the idle period.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipfs_kit_operator::api::IpfsCluster;
use ipfs_kit_operator::runtime::kube::{Metrics, Settings, run};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

/// Peak resident set size of this process, in MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

async fn bench(size: usize, idle: Duration) {
    let cp = support::control_plane::control_plane();
    let ns = cp.namespace("bench").await;
    let client = cp.admin_client().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let settings = Settings {
        namespace: Some(ns.clone()),
        instance: "bench".into(),
        concurrency: 16,
        ..Settings::default()
    };
    let controller = tokio::spawn(run(
        client.clone(),
        settings,
        Arc::new(Metrics::default()),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    futures::stream::iter(0..size)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let c: IpfsCluster = serde_json::from_value(json!({
                    "apiVersion": "ipfskit.io/v1alpha1",
                    "kind": "IpfsCluster",
                    "metadata": {"name": format!("c{i}")},
                    "spec": {"replicas": 1, "health": {"probeInterval": "60s"}}
                }))
                .expect("cluster json");
                if let Err(e) = api.create(&PostParams::default(), &c).await {
                    eprintln!("creating c{i}: {e}");
                }
            }
        })
        .await;
    let created = started.elapsed();
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    loop {
        let clusters = api.list(&ListParams::default()).await.map(|l| l.items);
        let converged = clusters.map_or(0, |items| {
            items
                .iter()
                .filter(|c| {
                    c.status.as_ref().and_then(|s| s.observed_generation) == c.metadata.generation
                })
                .count()
        });
        // Metadata only: the benchmark's own polling should cost the API server little.
        let children = sts
            .list_metadata(&ListParams::default())
            .await
            .map_or(0, |l| l.items.len());
        if converged == size && children == size {
            break;
        }
        if started.elapsed() > Duration::from_secs(1800) {
            println!(
                "{size:>5} clusters: NOT converged after 30 min ({converged} status, {children} StatefulSets)"
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converged = started.elapsed();
    let rss = peak_rss_mib();
    let cpu_before = cpu_seconds();
    tokio::time::sleep(idle).await;
    let idle_cpu = cpu_seconds() - cpu_before;
    println!(
        "{size:>5} clusters: created in {:>6.1} s, all converged in {:>6.1} s; peak RSS {rss:>6.1} MiB; \
         CPU while idle {} s: {idle_cpu:.2} s",
        created.as_secs_f64(),
        converged.as_secs_f64(),
        idle.as_secs()
    );
    let _ = stop_tx.send(());
    let _ = controller.await;
}

fn main() {
    let sizes: Vec<usize> = std::env::var("IPFS_KIT_BENCH_SIZES")
        .unwrap_or_else(|_| "1,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let idle = Duration::from_secs(
        std::env::var("IPFS_KIT_BENCH_IDLE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        support::control_plane::control_plane().install_crds().await;
        for size in sizes {
            bench(size, idle).await;
        }
    });
}
