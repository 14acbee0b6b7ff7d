//! A hung daemon (SIGSTOP: its port still accepts connections, nothing answers) is shown not
//! healthy within 5 s with the default health settings (probe every 10 s, 5 s timeout, restart
//! after 3 failed rounds): the liveness pings between rounds find it, and the supervisor judges
//! it at once. SIGCONT brings the peer back to healthy, before any restart.

use std::time::{Duration, Instant};

use ipfs_kit_operator::api::PeerState;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::Local;
use crate::support::process::log_tail;
use crate::support::wait_for;

/// The longest a hung daemon may go unseen in the status.
const DETECTION: Duration = Duration::from_secs(5);

/// Polls `local status` until `peer` is in a state `want` accepts; returns how long it took.
async fn time_until(
    local: &Local,
    peer: &str,
    what: &str,
    want: fn(PeerState) -> bool,
) -> Duration {
    let started = Instant::now();
    let log = local.supervisor_log.clone();
    tokio::time::timeout(
        Duration::from_secs(30),
        wait_for(
            what,
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let s = local.try_status().await?;
                want(s.peer(peer)?.state).then_some(())
            },
        ),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{what}: not within 30 s; supervisor:\n{}",
            log_tail(&log, 60)
        )
    });
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_kubo_or_cluster_daemon_shows_unhealthy_within_five_seconds_by_default() {
    let mut local = Local::new("stopped", 2).await;
    local.write_spec_default(2);
    local.up_foreground();
    let before = local.wait_converged(2).await;
    let healthy = |s: PeerState| s == PeerState::Healthy;
    time_until(&local, "peer-0", "peer-0 healthy", healthy).await;

    for (daemon, pid) in [
        ("Kubo", before.peers[0].kubo_pid.expect("kubo pid")),
        (
            "IPFS Cluster",
            before.peers[0].cluster_pid.expect("cluster pid"),
        ),
    ] {
        kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("SIGSTOP");
        let seen = time_until(
            &local,
            "peer-0",
            &format!("peer-0 not healthy after its {daemon} stopped"),
            |s| s != PeerState::Healthy,
        )
        .await;
        println!(
            "{daemon} stopped: peer-0 shown not healthy after {:.1} s",
            seen.as_secs_f64()
        );
        let status = local.status().await;
        let peer = status.peer("peer-0").expect("peer-0");
        assert_eq!(peer.state, PeerState::Unhealthy, "{peer:?}");
        assert!(
            peer.last_error
                .as_deref()
                .is_some_and(|e| e.contains("hung: no answer to 3 liveness pings")),
            "{peer:?}"
        );
        assert!(seen <= DETECTION, "{daemon}: {seen:?}");

        kill(Pid::from_raw(pid), Signal::SIGCONT).expect("SIGCONT");
        let back = time_until(
            &local,
            "peer-0",
            &format!("peer-0 healthy after SIGCONT of {daemon}"),
            healthy,
        )
        .await;
        println!(
            "{daemon} continued: peer-0 healthy again after {:.1} s",
            back.as_secs_f64()
        );
        let status = local.status().await;
        assert_eq!(
            status.peer("peer-0").map(|p| p.restarts),
            Some(0),
            "detection only: no restart yet"
        );
        assert_eq!(status.peers[0].kubo_pid, before.peers[0].kubo_pid);
        assert_eq!(status.peers[0].cluster_pid, before.peers[0].cluster_pid);
    }
    local.stop_supervisor().await;
}
