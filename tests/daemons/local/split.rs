//! A peer whose IPFS Cluster is cut off from the others while its APIs keep answering (a split)
//! and whose own re-dials cannot reach them is restarted by the healing policy and rejoins.
//!
//! The cut: the packets the peer's IPFS Cluster process sends from its libp2p port are dropped
//! (iptables, matching the process's net_cls cgroup, in the test's own network namespace). A
//! process started afterwards, as the restart starts it, is not in that cgroup.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ipfs_kit_operator::api::HealingResult;

use super::{Local, pin_block};
use crate::support::wait_for;

const CLASSID: &str = "0x100001";

/// The cgroups of the cut process and the iptables rules that cut it; all removed on drop.
struct Cut {
    cgroups: Vec<PathBuf>,
    rules: Vec<Vec<String>>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Cut {
    /// Cuts process `pid` off the other peers (in this test's network namespace only): it sends
    /// nothing but the answers of its REST API (`api`) and its calls to its Kubo (`kubo`), and
    /// no new connection reaches its libp2p port (`swarm`). Its sockets are told apart by their
    /// cgroups: net_cls for the sockets it has, the cgroup v2 path for the ones it opens later.
    /// A process started afterwards, by the restart, is in neither and dials out freely.
    fn process(pid: i32, api: u16, kubo: u16, swarm: u16) -> Cut {
        let tag = format!("ipfs-kit-split-{}", std::process::id());
        let net_cls = Path::new("/sys/fs/cgroup/net_cls");
        if !net_cls.join("cgroup.procs").exists() {
            std::fs::create_dir_all(net_cls).expect("net_cls mount point");
            // In the test's own mount namespace (the test runs under `unshare --mount-proc`).
            run(Command::new("mount")
                .args(["-t", "cgroup", "-o", "net_cls", "net_cls"])
                .arg(net_cls));
        }
        let v1 = net_cls.join(&tag);
        let v2 = Path::new("/sys/fs/cgroup/unified").join(&tag);
        for dir in [&v1, &v2] {
            std::fs::create_dir_all(dir).expect("cgroup");
        }
        std::fs::write(v1.join("net_cls.classid"), CLASSID).expect("classid");
        for dir in [&v1, &v2] {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string()).expect("move the process");
        }
        let (api, kubo, swarm) = (api.to_string(), kubo.to_string(), swarm.to_string());
        let mut rules = Vec::new();
        for matcher in [["--cgroup", CLASSID], ["--path", tag.as_str()]] {
            let base = ["OUTPUT", "-m", "cgroup", matcher[0], matcher[1]];
            rules.push(args(
                &[&base[..], &["-p", "tcp", "--sport", &api, "-j", "ACCEPT"]].concat(),
            ));
            rules.push(args(
                &[&base[..], &["-p", "tcp", "--dport", &kubo, "-j", "ACCEPT"]].concat(),
            ));
            rules.push(args(&[&base[..], &["-j", "DROP"]].concat()));
        }
        let new_conn = ["-m", "conntrack", "--ctstate", "NEW"];
        rules.push(args(
            &[
                &["INPUT", "-p", "tcp", "--dport", &swarm][..],
                &new_conn,
                &["-j", "REJECT", "--reject-with", "tcp-reset"],
            ]
            .concat(),
        ));
        rules.push(args(
            &[
                &["INPUT", "-p", "udp", "--dport", &swarm][..],
                &new_conn,
                &["-j", "DROP"],
            ]
            .concat(),
        ));
        for r in &rules {
            run(Command::new("iptables").arg("-A").args(r));
        }
        Cut {
            cgroups: vec![v1, v2],
            rules,
        }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        for r in &self.rules {
            let _ = Command::new("iptables").arg("-D").args(r).output();
        }
        // The cut process is gone by now; a live one goes back to the root cgroups first.
        for dir in &self.cgroups {
            if let (Some(root), Ok(pids)) = (
                dir.parent(),
                std::fs::read_to_string(dir.join("cgroup.procs")),
            ) {
                for pid in pids.lines() {
                    let _ = std::fs::write(root.join("cgroup.procs"), pid);
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_split_off_the_cluster_is_restarted_and_rejoins() {
    let mut local = Local::new("split", 3).await;
    local.up_foreground();
    let before = local.wait_converged(3).await;
    let cut_peer = before.peers[2].clone();
    let (old_cluster, old_kubo) = (
        cut_peer.cluster_pid.expect("cluster pid"),
        cut_peer.kubo_pid.expect("kubo pid"),
    );
    let ports = cut_peer.ports.expect("ports");
    let cut = Cut::process(
        old_cluster,
        ports.cluster_rest,
        ports.kubo_api,
        ports.cluster_swarm,
    );
    let started = Instant::now();

    // Its APIs keep answering while it sees only itself and the others only each other.
    let name = cut_peer.name.clone();
    wait_for(
        "the split to show in status",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let s = local.try_status().await?;
            let cut = s.peer(&name)?;
            let others_see_two = s
                .status
                .peers
                .iter()
                .filter(|p| p.name != name)
                .all(|p| p.cluster_peers_seen == Some(2));
            (cut.cluster_peers_seen == Some(1) && others_see_two).then_some(())
        },
    )
    .await;
    eprintln!("split seen after {:?}", started.elapsed());

    // The policy restarts its IPFS Cluster (not its Kubo), which rejoins the others.
    let record = wait_for(
        "the split peer to be restarted and answer again",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || async {
            let s = local.try_status().await?;
            s.status
                .healing
                .iter()
                .find(|h| {
                    h.peer == name
                        && h.reason.contains("split off")
                        && h.result == HealingResult::Succeeded
                })
                .cloned()
        },
    )
    .await;
    eprintln!(
        "restarted to rejoin after {:?}: {}",
        started.elapsed(),
        record.reason
    );
    assert!(
        record.reason.contains(&format!("[{name}] apart from")),
        "{}",
        record.reason
    );
    let after = local.wait_converged(3).await;
    eprintln!("one cluster again after {:?}", started.elapsed());
    let peer = &after.peers[2];
    assert_ne!(
        peer.cluster_pid,
        Some(old_cluster),
        "IPFS Cluster restarted"
    );
    assert_eq!(peer.kubo_pid, Some(old_kubo), "Kubo untouched");
    drop(cut);

    // Back in the same CRDT cluster: a pin made through peer 0 reaches it.
    let cid = pin_block(&after, b"pinned after the split healed").await;
    local.wait_pinned(&cid, 3).await;
    local.stop_supervisor().await;
}
