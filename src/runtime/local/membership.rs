//! Membership of the peerset: a raft peer added by scale-up joins through a running member and
//! is recorded as a member once it lists itself; a peer removed by scale-down leaves the peerset
//! through a remaining peer (`DELETE /peers/<id>`) before its daemons stop.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::LocalError;
use super::lifecycle::START_TIMEOUT;
use super::logs::log_tail;
use super::process;
use super::state::{DaemonKind, PeerRecord, save_state};
use super::supervisor::Supervisor;
use crate::probe::Endpoint;

/// How long a remaining peer may take to remove a departing one (it re-allocates its pins).
const REMOVE_PEER_TIMEOUT: Duration = Duration::from_secs(30);

impl Supervisor {
    /// The cluster address of a running member of the raft peerset, for `peer` to join through.
    pub(super) fn raft_member_addr(&self, peer: &str) -> Result<String, LocalError> {
        self.state
            .peers
            .iter()
            .find(|p| {
                p.name != peer
                    && !p.raft_join
                    && self.daemons.is_running(&p.name, DaemonKind::Cluster)
            })
            .map(PeerRecord::cluster_addr)
            .ok_or_else(|| LocalError::NoRaftMember {
                peer: peer.to_owned(),
            })
    }

    /// Waits until a joining raft peer lists itself in the peerset (the leader took it in and
    /// replicated the configuration to it), then records it as a member: its later starts keep
    /// their raft state.
    pub(super) async fn wait_joined(&mut self, peer: &str, pid: i32) -> Result<(), LocalError> {
        let log = self.peer_paths(peer).log(DaemonKind::Cluster);
        let started = Instant::now();
        let Some(record) = self.state.peer(peer).cloned() else {
            return Ok(());
        };
        loop {
            if self.lists_itself(&record).await {
                break;
            }
            if !process::is_alive(pid) {
                self.daemons.forget(peer, DaemonKind::Cluster);
                return Err(LocalError::ExitedDuringStart {
                    peer: peer.to_owned(),
                    daemon: DaemonKind::Cluster,
                    log_tail: log_tail(&log, 15),
                });
            }
            if started.elapsed() >= START_TIMEOUT {
                return Err(LocalError::RaftJoinTimeout {
                    peer: peer.to_owned(),
                    waited: START_TIMEOUT,
                    log,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        info!(
            peer,
            "joined the raft peerset in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        self.joined(peer)
    }

    /// Whether a raft peer lists itself in the peerset it reports (`GET /id` `cluster_peers`).
    pub(super) async fn lists_itself(&self, record: &PeerRecord) -> bool {
        let api = Endpoint::new(record.cluster_api_url());
        let status = self.prober.cluster(&api).await;
        status.is_ok_and(|s| s.cluster_peers.contains(&record.cluster_peer_id))
    }

    /// Records a raft peer as a member of the peerset (it never bootstraps again).
    pub(super) fn joined(&mut self, peer: &str) -> Result<(), LocalError> {
        if let Some(p) = self.state.peers.iter_mut().find(|p| p.name == peer) {
            p.raft_join = false;
        }
        save_state(&self.paths, &self.state)
    }

    /// Scale down: removes a peer from the cluster through a remaining peer's REST API, then
    /// stops its daemons. Its data stays on disk.
    pub(super) async fn remove_peer(&mut self, peer: &PeerRecord) {
        let remaining = self
            .state
            .peers
            .iter()
            .find(|p| p.name != peer.name && self.daemons.is_running(&p.name, DaemonKind::Cluster))
            .cloned();
        if let Some(via) = remaining {
            let id = &peer.cluster_peer_id;
            info!(peer = %peer.name, via = %via.name, "removing the peer from the cluster (DELETE /peers/{id})");
            let api = Endpoint::new(via.cluster_api_url());
            let client = self.prober.client();
            if let Err(f) = client.remove_peer(&api, id, REMOVE_PEER_TIMEOUT).await {
                warn!(peer = %peer.name, "{}", f.message);
            }
        }
        self.daemons.stop(&peer.name, DaemonKind::Cluster).await;
        self.daemons.stop(&peer.name, DaemonKind::Kubo).await;
        self.state.peers.retain(|p| p.name != peer.name);
        info!(peer = %peer.name, "removed; its data stays in {}", self.peer_paths(&peer.name).dir.display());
    }
}
