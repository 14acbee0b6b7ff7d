//! `spec.kubo.storageMax` with real Kubo daemons: the limit reaches Kubo, status shows the
//! repository against it, and the supervisor's garbage collection (on by default, started when
//! a probe round finds the repository past Kubo's watermark) frees unpinned blocks while keeping
//! pinned ones, and says so in its log.

use std::time::Duration;

use serde_json::Value;

use super::{Local, http, put_block};
use crate::support::wait_for;

const STORAGE_MAX: i64 = 4 << 20;

/// Kubo RPC `path` (POST) on `port`, its JSON answer.
async fn kubo(port: u16, path: &str) -> Value {
    let resp = http()
        .post(format!("http://127.0.0.1:{port}/api/v0/{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The CIDs of the blocks Kubo holds (`refs/local`: one JSON object a line).
async fn local_refs(port: u16) -> Vec<String> {
    let text = http()
        .post(format!("http://127.0.0.1:{port}/api/v0/refs/local"))
        .send()
        .await
        .expect("refs/local")
        .text()
        .await
        .expect("refs/local body");
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["Ref"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_keeps_its_repository_under_storage_max_and_keeps_pinned_blocks() {
    let mut local = Local::new("gc", 1).await;
    let yaml = "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: gc\nspec:\n  \
         replicas: 1\n  health:\n    probeInterval: 2s\n    probeTimeout: 1s\n  kubo:\n    \
         storage:\n      size: 64Mi\n    storageMax: 4Mi\n    config:\n      Datastore:\n        \
         GCPeriod: 2s\n";
    std::fs::write(local.spec_file(), yaml).expect("write spec");
    local.up_foreground();
    let status = local.wait_converged(1).await;
    let name = status.peers[0].name.clone();
    let peer = status.peer(&name).expect("the peer in status");
    assert_eq!(peer.storage_max, Some(STORAGE_MAX), "{peer:?}");
    let port = status.peers[0].ports.expect("ports").kubo_api;
    let config = kubo(port, "config/show").await;
    assert_eq!(config["Datastore"]["StorageMax"], "4194304");

    // A pinned block, then 6 MiB of blocks nothing pins: past the 90 % watermark of 4 MiB.
    let kept = put_block(port, b"pinned: garbage collection keeps it", true).await;
    let mut garbage = Vec::new();
    for i in 0..6u8 {
        let block: Vec<u8> = (0..(1 << 20) - 1024)
            .map(|j: u32| (j.wrapping_mul(31) as u8) ^ i)
            .collect();
        garbage.push(put_block(port, &block, false).await);
    }
    // A probe round (every 2 s) finds the repository past 90 % of storageMax and, at most once
    // per GCPeriod, asks Kubo to collect; the status shows the repository back under the limit.
    let size = wait_for(
        "the unpinned blocks to be collected",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let refs = local_refs(port).await;
            let gone = garbage.iter().all(|c| !refs.iter().any(|r| r == c));
            let s = local.try_status().await?;
            let size = s.peer(&name)?.repo_size?;
            (gone && size < STORAGE_MAX).then_some(size)
        },
    )
    .await;
    let refs = local_refs(port).await;
    assert!(
        refs.contains(&kept),
        "the pinned block was collected: {refs:?}"
    );
    eprintln!("repository after collection: {size} bytes (storageMax {STORAGE_MAX})");
    let log = local.supervisor_output();
    assert!(
        log.contains("past the 90 % watermark, collecting the blocks no pin holds"),
        "{log}"
    );
    assert!(
        log.contains("removed ") && log.contains(" blocks in "),
        "{log}"
    );
    local.stop_supervisor().await;
}
