//! Local mode at parity with Kubernetes: raft consensus (first start with an initial peerset,
//! restarts that keep it, scale-up by a join, scale-down through the peerset) and CRDT peers added
//! by scale-up that the older peers trust at once.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{Local, http, pin_block, pin_block_via};
use crate::support::process::log_tail;
use crate::support::wait_for;
use ipfs_kit_operator::runtime::local::LocalStatus;

impl Local {
    /// A spec of `replicas` raft peers, probing every 2 s.
    fn write_raft_spec(&self, replicas: u32) {
        let yaml = format!(
            "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: {}\nspec:\n  \
             replicas: {replicas}\n  cluster:\n    consensus: raft\n  health:\n    \
             probeInterval: 2s\n    probeTimeout: 1s\n",
            self.name
        );
        std::fs::write(self.spec_file(), yaml).expect("write spec");
    }

    /// Peer `peer`'s IPFS Cluster log file.
    fn cluster_log_file(&self, peer: &str) -> PathBuf {
        self.cluster_dir().join(peer).join("logs/cluster.log")
    }

    /// Peer `peer`'s IPFS Cluster log.
    fn cluster_log(&self, peer: &str) -> String {
        std::fs::read_to_string(self.cluster_log_file(peer)).unwrap_or_default()
    }

    /// Peer `peer`'s rendered `service.json`.
    fn service_json(&self, peer: &str) -> Value {
        let file = self.cluster_dir().join(peer).join("cluster/service.json");
        let text = std::fs::read_to_string(&file).expect("service.json");
        serde_json::from_str(&text).expect("service.json is JSON")
    }
}

/// The cluster peer ids of every peer.
fn cluster_ids(status: &LocalStatus) -> BTreeSet<String> {
    status
        .peers
        .iter()
        .map(|p| p.cluster_peer_id.clone())
        .collect()
}

/// The peerset peer `index` reports (`GET /id` `cluster_peers`), asked again for up to 90 s. A
/// just-restarted raft peer answers `GET /id` from its raft state on disk before it has heard
/// from the leader; on a busy machine the leader's retries to it may be slow enough that it gives
/// up (IPFS Cluster waits 15 s for a leader, then shuts down 30 s after its start) and is
/// restarted once more, its API away meanwhile.
async fn peerset_of(local: &Local, status: &LocalStatus, index: usize) -> BTreeSet<String> {
    let peer = &status.peers[index];
    let rest = peer.ports.expect("ports").cluster_rest;
    let deadline = Instant::now() + Duration::from_secs(90);
    let id = loop {
        let asked = async {
            http()
                .get(format!("http://127.0.0.1:{rest}/id"))
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        };
        if let Some(id) = asked.await {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "{}'s GET /id (port {rest}) did not answer within 90 s; supervisor:\n{}\n\
             its IPFS Cluster log:\n{}",
            peer.name,
            log_tail(&local.supervisor_log, 60),
            log_tail(&local.cluster_log_file(&peer.name), 60)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    id["cluster_peers"]
        .as_array()
        .expect("cluster_peers")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect()
}

/// Every peer reports the same peerset: all of `status`'s peers.
async fn assert_one_peerset(local: &Local, status: &LocalStatus) {
    let ids = cluster_ids(status);
    for (i, p) in status.peers.iter().enumerate() {
        assert_eq!(
            peerset_of(local, status, i).await,
            ids,
            "{}'s peerset",
            p.name
        );
    }
}

/// How many times `needle` occurs in peer `peer`'s cluster log.
fn log_count(local: &Local, peer: &str, needle: &str) -> usize {
    local.cluster_log(peer).matches(needle).count()
}

/// What IPFS Cluster logs when it initialises a raft peerset, and when it finds one on disk.
const RAFT_INIT: &str = "initializing raft cluster with the following voters";
const RAFT_KEPT: &str = "existing Raft state found";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_cluster_keeps_its_peerset_and_pins_across_restarts() {
    let mut local = Local::new("raft", 3).await;
    local.write_raft_spec(3);
    let started = Instant::now();
    local.up_foreground();
    let first = local.wait_converged(3).await;
    eprintln!(
        "raft: 3 peers up and seeing each other after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let ids = cluster_ids(&first);
    assert_eq!(ids.len(), 3);
    assert_one_peerset(&local, &first).await;
    for p in &first.peers {
        let init: BTreeSet<String> = serde_json::from_value(
            local.service_json(&p.name)["consensus"]["raft"]["init_peerset"].clone(),
        )
        .expect("init_peerset");
        assert_eq!(init, ids, "{}'s init_peerset", p.name);
        assert_eq!(log_count(&local, &p.name, RAFT_INIT), 1, "{}", p.name);
    }
    let cid = pin_block(&first, b"raft: kept across restarts").await;
    local.wait_pinned(&cid, 3).await;

    // One IPFS Cluster daemon killed: healed with its raft state (not initialised again).
    let victim = first.peers[1].cluster_pid.expect("cluster pid");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");
    let log = local.supervisor_log.clone();
    let healed = tokio::time::timeout(
        Duration::from_secs(90),
        wait_for(
            "peer-1's IPFS Cluster to be restarted",
            Duration::from_secs(90),
            Duration::from_millis(250),
            || async {
                let s = local.try_status().await?;
                s.peers[1]
                    .cluster_pid
                    .is_some_and(|pid| pid != victim)
                    .then_some(())
            },
        ),
    )
    .await;
    assert!(
        healed.is_ok(),
        "not healed; supervisor:\n{}",
        log_tail(&log, 60)
    );
    let healed = local.wait_converged(3).await;
    assert_eq!(healed.peers[0].cluster_pid, first.peers[0].cluster_pid);
    assert_eq!(healed.peers[2].cluster_pid, first.peers[2].cluster_pid);
    assert_one_peerset(&local, &healed).await;
    // Started from its raft state (once, or again if it gave up waiting for the leader; see
    // `peerset_of`), never initialised again.
    assert!(log_count(&local, "peer-1", RAFT_KEPT) >= 1);
    assert_eq!(
        log_count(&local, "peer-1", RAFT_INIT),
        1,
        "not re-initialised"
    );

    // The supervisor restarted (every daemon stopped and started again): same peerset, the pin
    // kept, and the cluster still takes new pins.
    local.stop_supervisor().await;
    assert!(local.daemons_on_host().is_empty());
    let restarted_at = Instant::now();
    local.up_foreground();
    let again = local.wait_converged(3).await;
    eprintln!(
        "raft: restarted from disk and converged after {:.1}s",
        restarted_at.elapsed().as_secs_f64()
    );
    assert_eq!(cluster_ids(&again), ids);
    assert_one_peerset(&local, &again).await;
    for p in &again.peers {
        assert_eq!(log_count(&local, &p.name, RAFT_INIT), 1, "{}", p.name);
        assert!(log_count(&local, &p.name, RAFT_KEPT) >= 1, "{}", p.name);
    }
    local.wait_pinned(&cid, 3).await;
    let second = pin_block_via(&again, 2, b"raft: pinned after the restart").await;
    local.wait_pinned(&second, 3).await;
    local.stop_supervisor().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_cluster_scales_three_to_five_by_joins_and_back_through_its_peerset() {
    let local = Local::new("raftscale", 3).await;
    local.write_raft_spec(3);
    local.up_detached().await;
    let three = local.wait_converged(3).await;
    let cid = pin_block(&three, b"raft: kept across scaling").await;
    local.wait_pinned(&cid, 3).await;

    local.write_raft_spec(5);
    let started = Instant::now();
    let output = local.up_detached().await;
    let five = local.wait_converged(5).await;
    eprintln!(
        "raft: scaled 3 -> 5 in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        output.matches("joining the raft peerset").count(),
        2,
        "{output}"
    );
    assert!(output.contains("joined the raft peerset"), "{output}");
    for (a, b) in three.peers.iter().zip(&five.peers) {
        assert_eq!(a.cluster_pid, b.cluster_pid, "{} kept running", a.name);
        assert_eq!(a.kubo_pid, b.kubo_pid, "{} kept running", a.name);
    }
    assert_one_peerset(&local, &five).await;
    // The new peers learnt the pinset from the log and pin what every peer pins.
    local
        .wait_pinned_within(&cid, 5, Duration::from_secs(120))
        .await;
    for joined in ["peer-3", "peer-4"] {
        assert_eq!(log_count(&local, joined, RAFT_INIT), 0, "{joined} joined");
    }

    // `local up` again: nothing joins twice, nothing restarts.
    let output = local.up_detached().await;
    assert!(!output.contains("joining the raft peerset"), "{output}");
    assert_eq!(Local::pids(&local.status().await), Local::pids(&five));

    local.write_raft_spec(3);
    let output = local.up_detached().await;
    assert_eq!(output.matches("DELETE /peers/").count(), 2, "{output}");
    let back = local.wait_converged(3).await;
    assert_eq!(Local::pids(&back), Local::pids(&three));
    assert_eq!(local.daemons_on_host(), Local::pids(&three));
    assert_one_peerset(&local, &back).await;
    local.wait_pinned(&cid, 3).await;
    let after = pin_block_via(&back, 1, b"raft: pinned after scaling down").await;
    local.wait_pinned(&after, 3).await;
    local.run(&["local", "down", "raftscale"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crdt_peer_added_by_scale_up_is_trusted_by_the_older_peers_at_once() {
    let local = Local::new("trust", 2).await;
    local.up_detached().await;
    let two = local.wait_converged(2).await;

    local.write_spec(3);
    local.up_detached().await;
    let three = local.wait_converged(3).await;
    for (a, b) in two.peers.iter().zip(&three.peers) {
        assert_eq!(a.cluster_pid, b.cluster_pid, "{} not restarted", a.name);
    }
    // A pin made through the new peer: the older peers take it into the pinset and pin it.
    let started = Instant::now();
    let cid = pin_block_via(&three, 2, b"pinned through the newest peer").await;
    local.wait_pinned(&cid, 3).await;
    eprintln!(
        "crdt: a pin through the new peer was pinned on all 3 after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let after = local.status().await;
    assert_eq!(
        Local::pids(&after),
        Local::pids(&three),
        "no daemon restarted"
    );
    for (a, b) in two.peers.iter().zip(&after.peers) {
        assert_eq!(a.cluster_pid, b.cluster_pid, "{} not restarted", a.name);
        assert_eq!(a.kubo_pid, b.kubo_pid, "{} not restarted", a.name);
    }
    local.run(&["local", "down", "trust"]).await;
}
