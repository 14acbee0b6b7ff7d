//! One daemon of one peer as the backend routes answer it (`GET /backends/{backend}/status`,
//! the `status` action of `POST /daemon/action`), and the daemons a toolkit short name stands
//! for.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::Serialize;

use super::toolkit::{self, BackendHealth};
use crate::api::{PeerState, PeerStatus};
use crate::dashboard::{ClusterEntry, Daemon};

/// One daemon of one peer: `GET /backends/{backend}/status`, `POST /daemon/action` with
/// `status`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendView {
    pub cluster: String,
    pub peer: String,
    pub state: PeerState,
    pub score: Option<i32>,
    pub restarts: i32,
    pub last_probe: Option<Time>,
    pub last_error: Option<String>,
    #[serde(flatten)]
    pub daemon: DaemonView,
    /// The toolkit's backend fields (`name`, `status`, `health`, `last_check`, `errors`,
    /// `daemon_pid`, `port`, ...).
    #[serde(flatten)]
    pub toolkit: BackendHealth,
}

/// `GET /backends/{backend}/status` of a toolkit short name (`ipfs`, `ipfs_cluster`) that names
/// several daemons: their summary, and each of them.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct BackendGroupView {
    pub daemon: Daemon,
    /// Their summary (`members` lists their full names).
    #[serde(flatten)]
    pub summary: BackendHealth,
    /// Each daemon, by its full name.
    pub backends: BTreeMap<String, BackendView>,
}

/// The answer for a backend name: one daemon, or the several a short name stands for.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum BackendStatus {
    One(Box<BackendView>),
    Group(BackendGroupView),
}

/// `POST /daemon/action` with `status`: the backend's status, with the toolkit's action fields.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct DaemonStatusRead {
    #[serde(flatten)]
    pub status: BackendStatus,
    /// The name as sent.
    pub daemon_name: String,
    /// `status`.
    pub action: String,
    /// RFC 3339 time of the answer.
    pub timestamp: String,
    /// The toolkit's backend object of the daemon (or of the daemons taken together).
    pub details: BackendHealth,
}

/// What is particular to the daemon, tagged by `daemon`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(tag = "daemon", rename_all = "lowercase")]
pub enum DaemonView {
    Ipfs(KuboView),
    Cluster(ClusterDaemonView),
}

/// Kubo's figures.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KuboView {
    pub peer_id: Option<String>,
    pub version: Option<String>,
    pub swarm_peers: Option<i32>,
    pub repo_size: Option<i64>,
}

/// ipfs-cluster-service's figures.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDaemonView {
    pub peer_id: Option<String>,
    pub version: Option<String>,
    pub cluster_peers_seen: Option<i32>,
    pub pins_queued: Option<i64>,
    pub pins_pinning: Option<i64>,
    pub pins_error: Option<i64>,
}

pub fn backend(cluster: &ClusterEntry, peer: &PeerStatus, kind: Daemon) -> BackendView {
    let daemon = match kind {
        Daemon::Ipfs => DaemonView::Ipfs(KuboView {
            peer_id: peer.peer_id.clone(),
            version: peer.kubo_version.clone(),
            swarm_peers: peer.swarm_peers,
            repo_size: peer.repo_size,
        }),
        Daemon::Cluster => DaemonView::Cluster(ClusterDaemonView {
            peer_id: peer.cluster_peer_id.clone(),
            version: peer.cluster_version.clone(),
            cluster_peers_seen: peer.cluster_peers_seen,
            pins_queued: peer.pins_queued,
            pins_pinning: peer.pins_pinning,
            pins_error: peer.pins_error,
        }),
    };
    BackendView {
        cluster: cluster.key(),
        peer: peer.name.clone(),
        state: peer.state,
        score: peer.score,
        restarts: peer.restarts,
        last_probe: peer.last_probe.clone(),
        last_error: peer.last_error.clone(),
        daemon,
        toolkit: toolkit::backend_health(cluster, peer, kind),
    }
}

/// The daemons a short name stands for, taken together: `name` is the short name.
pub fn backend_group(
    name: &str,
    daemon: Daemon,
    members: &[(&ClusterEntry, &PeerStatus)],
) -> BackendGroupView {
    let health: Vec<BackendHealth> = members
        .iter()
        .map(|(c, p)| toolkit::backend_health(c, p, daemon))
        .collect();
    BackendGroupView {
        daemon,
        summary: toolkit::aggregate(name, &health),
        backends: members
            .iter()
            .map(|(c, p)| (toolkit::full_name(c, p, daemon), backend(c, p, daemon)))
            .collect(),
    }
}
