//! The in-process dashboard of `local up`: the supervisor's status as the dashboard's snapshot,
//! and the dashboard's bearer token kept in the cluster's state directory.

use std::path::Path;

use futures::future::BoxFuture;

use crate::dashboard::logs::LogTarget;
use crate::dashboard::{
    ClusterEntry, Daemon, LogError, LogSource, PeerProcesses, ProcessPorts, Snapshot, Token,
};

use super::LocalError;
use super::state::{ClusterPaths, DaemonKind};
use super::status::{LocalPeer, LocalStatus};

/// The name of the token file in a cluster's state directory (mode 0600).
pub const TOKEN_FILE: &str = "dashboard-token";

/// The dashboard snapshot of one local cluster.
pub fn snapshot(status: &LocalStatus, spec: &crate::api::IpfsClusterSpec) -> Snapshot {
    Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: status.name.clone(),
            replicas: spec.replicas,
            paused: spec.paused,
            status: status.status.clone(),
            uid: None,
            resource_version: None,
            processes: status.peers.iter().map(processes).collect(),
        }],
        pins: Vec::new(),
        updated_at: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
    }
}

/// What the supervisor knows of a peer's processes, for the dashboard.
fn processes(peer: &LocalPeer) -> PeerProcesses {
    PeerProcesses {
        peer: peer.name.clone(),
        kubo_pid: peer.kubo_pid,
        cluster_pid: peer.cluster_pid,
        ports: peer.ports.map(|ports| ProcessPorts {
            kubo_api: ports.kubo_api,
            kubo_gateway: ports.kubo_gateway,
            kubo_swarm: ports.kubo_swarm,
            cluster_api: ports.cluster_rest,
            cluster_proxy: ports.cluster_proxy,
            cluster_swarm: ports.cluster_swarm,
            cluster_pinsvc: ports.cluster_pinsvc,
        }),
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
