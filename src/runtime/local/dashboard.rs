//! The in-process dashboard of `local up`: the supervisor's status as the dashboard's snapshot,
//! and the dashboard's bearer token kept in the cluster's state directory.

use std::path::Path;

use futures::future::BoxFuture;

use crate::api::{ClusterPhase, IpfsClusterStatus, PeerState, PeerStatus};
use crate::dashboard::logs::LogTarget;
use crate::dashboard::{ClusterEntry, Daemon, LogError, LogSource, Snapshot, Token};

use super::LocalError;
use super::state::{ClusterPaths, DaemonKind};
use super::status::{LocalStatus, PeerRow};

/// The name of the token file in a cluster's state directory (mode 0600).
pub const TOKEN_FILE: &str = "dashboard-token";

fn peer_state(row: &PeerRow) -> PeerState {
    match row.state.as_str() {
        "healthy" => PeerState::Healthy,
        "degraded" => PeerState::Degraded,
        "unhealthy" | "given up" | "failing" | "quorum protected" => PeerState::Unhealthy,
        "restarting" | "backing off" | "waiting" => PeerState::Restarting,
        "starting" => PeerState::Starting,
        "stopped" => PeerState::Unhealthy,
        _ => PeerState::Unknown,
    }
}

fn count(n: Option<usize>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

fn count64(n: u64) -> Option<i64> {
    Some(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The supervisor's status in the shape both runtimes report (`IpfsClusterStatus`).
pub fn cluster_status(status: &LocalStatus) -> IpfsClusterStatus {
    let peers: Vec<PeerStatus> = status
        .peers
        .iter()
        .map(|row| PeerStatus {
            name: row.name.clone(),
            peer_id: (!row.kubo_peer_id.is_empty()).then(|| row.kubo_peer_id.clone()),
            cluster_peer_id: (!row.cluster_peer_id.is_empty()).then(|| row.cluster_peer_id.clone()),
            kubo_version: row.kubo_version.clone(),
            cluster_version: row.cluster_version.clone(),
            swarm_peers: count(row.swarm_peers),
            cluster_peers_seen: count(row.cluster_peers),
            repo_size: row.repo_size.and_then(count64),
            bytes_in: row.bytes_in.and_then(count64),
            bytes_out: row.bytes_out.and_then(count64),
            pins_queued: row.pins.and_then(|p| count64(p.queued)),
            pins_pinning: row.pins.and_then(|p| count64(p.pinning)),
            pins_error: row.pins.and_then(|p| count64(p.error)),
            score: row.score.map(i32::from),
            state: peer_state(row),
            restarts: i32::try_from(row.restarts).unwrap_or(i32::MAX),
            last_error: row.last_error.clone(),
            ..PeerStatus::default()
        })
        .collect();
    let ready = peers
        .iter()
        .filter(|p| matches!(p.state, PeerState::Healthy | PeerState::Degraded));
    let phase = match status.health.as_deref() {
        Some("healthy") => ClusterPhase::Healthy,
        Some("degraded") => ClusterPhase::Degraded,
        Some("unhealthy") => ClusterPhase::Unhealthy,
        _ => ClusterPhase::Progressing,
    };
    IpfsClusterStatus {
        phase: Some(phase),
        replicas: Some(status.replicas),
        ready_replicas: Some(i32::try_from(ready.count()).unwrap_or(i32::MAX)),
        health_score: status.health_score.map(i32::from),
        peers,
        ..IpfsClusterStatus::default()
    }
}

/// The dashboard snapshot of one local cluster.
pub fn snapshot(status: &LocalStatus, paused: bool) -> Snapshot {
    Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: status.name.clone(),
            replicas: status.replicas,
            paused,
            status: cluster_status(status),
        }],
        pins: Vec::new(),
        updated_at: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
    }
}

/// Reads the cluster's dashboard token, creating one (32 random bytes, hex, mode 0600) the first
/// time. The token never appears in logs; the file's path does.
pub fn token(cluster_root: &Path) -> Result<Token, LocalError> {
    let path = cluster_root.join(TOKEN_FILE);
    let text = super::state::secret_file(&path, || super::state::random_hex(32))?;
    Token::new(&text).ok_or(LocalError::BadToken { path })
}

/// The daemons' captured log files (`peer-N/logs/kubo.log`, `cluster.log`) of one cluster.
pub struct LocalLogs {
    paths: ClusterPaths,
}

impl LocalLogs {
    pub fn new(paths: ClusterPaths) -> LocalLogs {
        LocalLogs { paths }
    }
}

impl LogSource for LocalLogs {
    fn tail(
        &self,
        target: LogTarget,
        lines: usize,
    ) -> BoxFuture<'static, Result<String, LogError>> {
        let kind = match target.daemon {
            Daemon::Ipfs => DaemonKind::Kubo,
            Daemon::Cluster => DaemonKind::Cluster,
        };
        // The peer name comes from the supervisor's own status (`peer-N`), never from a request.
        let path = self.paths.peer(&target.peer).log(kind);
        Box::pin(async move {
            if !path.is_file() {
                return Err(LogError::NotFound(format!(
                    "{} of {} has not written a log yet",
                    kind, target.peer
                )));
            }
            tokio::task::spawn_blocking(move || super::logs::log_tail(&path, lines))
                .await
                .map_err(|e| LogError::Unavailable(format!("reading the log: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::report::PinCounts;

    #[test]
    fn local_rows_become_peer_statuses() {
        let status = LocalStatus {
            name: "demo".into(),
            replicas: 2,
            health_score: Some(55),
            health: Some("degraded".into()),
            peers: vec![
                PeerRow {
                    name: "peer-0".into(),
                    kubo_peer_id: "12D3KooWa".into(),
                    swarm_peers: Some(1),
                    pins: Some(PinCounts {
                        queued: 1,
                        pinning: 0,
                        pinned: 3,
                        error: 2,
                    }),
                    score: Some(100),
                    state: "healthy".into(),
                    ..PeerRow::default()
                },
                PeerRow {
                    name: "peer-1".into(),
                    state: "restarting".into(),
                    restarts: 2,
                    last_error: Some("Kubo: connection refused".into()),
                    ..PeerRow::default()
                },
            ],
            ..LocalStatus::default()
        };
        let s = cluster_status(&status);
        assert_eq!(s.phase, Some(ClusterPhase::Degraded));
        assert_eq!(
            (s.health_score, s.ready_replicas, s.replicas),
            (Some(55), Some(1), Some(2))
        );
        assert_eq!(s.peers[0].peer_id.as_deref(), Some("12D3KooWa"));
        assert_eq!(
            (s.peers[0].pins_queued, s.peers[0].pins_error),
            (Some(1), Some(2))
        );
        assert_eq!(s.peers[1].state, PeerState::Restarting);
        assert_eq!(s.peers[1].peer_id, None);
        assert_eq!(s.peers[1].restarts, 2);
    }
}
