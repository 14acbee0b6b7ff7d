//! What a probe round saw of each peer: plain data, produced by the probe clients and consumed by
//! the pure health scoring and healing policy.

use serde::{Deserialize, Serialize};

/// Why a probe of one API failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeFailure {
    pub kind: FailureKind,
    /// Human-readable detail, e.g. `POST /api/v0/id: connection refused`.
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureKind {
    /// No answer within the probe timeout (a hung or overloaded daemon).
    Timeout,
    /// Nothing listening, or the connection was reset.
    Unreachable,
    /// The API answered with an error status.
    HttpStatus,
    /// The API answered something we could not parse.
    InvalidResponse,
}

/// The outcome of probing one API of one peer.
pub type ProbeResult<T> = Result<T, ProbeFailure>;

/// Kubo's view of itself (`id`, `version`, `swarm/peers`, `repo/stat?size-only`, `stats/bw`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KuboStatus {
    pub peer_id: String,
    pub agent_version: String,
    pub version: String,
    /// Peer ids this Kubo has swarm connections to.
    pub swarm_peers: Vec<String>,
    /// Repository size in bytes (`repo/stat?size-only=true`).
    pub repo_size: u64,
    /// The most the repository may hold, in bytes (`Datastore.StorageMax`, same call).
    #[serde(default)]
    pub storage_max: u64,
    /// Bytes received and sent since start (`stats/bw`).
    pub total_in: u64,
    pub total_out: u64,
}

/// Pin counts of one cluster peer by status (`GET /pins?local=true` grouped by status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PinCounts {
    pub queued: u64,
    pub pinning: u64,
    pub pinned: u64,
    pub error: u64,
}

/// IPFS Cluster's view of itself (`/health`, `/id`, `/peers`, `/pins`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub peer_id: String,
    pub peername: String,
    pub version: String,
    /// Cluster peer ids this peer knows (`/id` `cluster_peers`).
    pub cluster_peers: Vec<String>,
    /// Cluster peer ids `GET /peers` lists (peers this peer currently sees in the peerset).
    pub peers_seen: Vec<String>,
    /// Non-empty when the cluster peer cannot reach its Kubo (`/id` `ipfs.error`).
    pub ipfs_error: Option<String>,
    /// Local pin counts, or why they could not be read (e.g. Kubo is down: the cluster peer
    /// answers, but cannot list its pins).
    pub pins: ProbeResult<PinCounts>,
}

/// Whether the daemon process (local) or container (Kubernetes) exists, as the runtime sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProcessState {
    /// Running as far as the runtime knows.
    Running,
    /// The process exited or the pod/container is gone, and nothing restarts it but us.
    Exited,
    /// It exited and the runtime restarts it by itself (kubelet, for the containers of a pod
    /// whose restart policy is Always): its restart is not ours to make.
    Restarting,
    /// (Re)started recently and not ready yet in the runtime's own check (kubelet's readiness
    /// probe): failed probes are expected and not counted.
    Starting,
    /// The runtime cannot tell (e.g. not started by us yet).
    #[default]
    Unknown,
}

impl ProcessState {
    /// Whether the runtime itself is (re)starting the process: its failed probes are not the
    /// operator's to act on.
    pub const fn in_runtime_hands(self) -> bool {
        matches!(self, ProcessState::Restarting | ProcessState::Starting)
    }
}

/// One probe round's result for one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerReport {
    /// The peer's name in the spec, e.g. `demo-0`.
    pub peer: String,
    pub kubo_process: ProcessState,
    pub cluster_process: ProcessState,
    pub kubo: ProbeResult<KuboStatus>,
    pub cluster: ProbeResult<ClusterStatus>,
}
