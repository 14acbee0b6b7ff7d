//! The observed state of an `IpfsCluster`, written by the operator: phase, conditions, per-peer
//! observations and the recent healing steps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::HEALING_HISTORY_LIMIT;
use super::alert::ClusterAlert;

/// Lifecycle phase of an IpfsCluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterPhase {
    /// Accepted, nothing running yet.
    #[default]
    Pending,
    /// Peers being created, scaled or rolled to a new spec.
    Progressing,
    /// All peers ready and healthy.
    Healthy,
    /// Serving, but some peers are unhealthy or poorly connected.
    Degraded,
    /// Not serving reliably: too few healthy peers, or raft without quorum.
    Unhealthy,
    /// A healing action is in progress.
    Healing,
    /// `spec.paused` is true: not reconciled.
    Paused,
}

/// Observed state of an IpfsCluster, written by the operator.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IpfsClusterStatus {
    /// Lifecycle phase: Pending, Progressing, Healthy, Degraded, Unhealthy, Healing or Paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Conditions (Kubernetes API conventions), one per type: Ready, Available, Progressing,
    /// Degraded. `lastTransitionTime` changes only when `status` flips.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// Number of peers that exist (pods, or processes in local mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Number of peers whose Kubo and IPFS Cluster daemons both answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// Label selector of the peer pods, in `kubectl get -l` syntax (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Health of the whole cluster, 0 (down) to 100 (every peer healthy): the mean of the peer
    /// scores. Healthy from 80, degraded from 50, unhealthy below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub health_score: Option<i32>,

    /// Per-peer observations from the last probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub peers: Vec<PeerStatus>,

    /// Most recent healing actions, newest last, at most 20.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub healing: Vec<HealingRecord>,

    /// The operator's own alerts about this cluster: the ones firing, and the last ten
    /// resolved. Changes only when an alert starts or stops firing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<ClusterAlert>,
}

impl IpfsClusterStatus {
    /// Appends a healing record, dropping the oldest beyond [`HEALING_HISTORY_LIMIT`].
    pub fn record_healing(&mut self, record: HealingRecord) {
        self.healing.push(record);
        let excess = self.healing.len().saturating_sub(HEALING_HISTORY_LIMIT);
        self.healing.drain(..excess);
    }
}

/// State of one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PeerState {
    /// Not probed yet, or probes inconclusive.
    #[default]
    Unknown,
    /// Daemons starting; probes not yet expected to pass.
    Starting,
    /// Both daemons answer, connected, no pin errors.
    Healthy,
    /// Answering, but poorly connected or with pin errors.
    Degraded,
    /// Not answering, or over its restart budget.
    Unhealthy,
    /// Being restarted by the operator.
    Restarting,
}

/// What the operator last saw of one peer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// Peer name: the pod name in Kubernetes (`<cluster>-<ordinal>`), `peer-<n>` locally.
    pub name: String,
    /// libp2p peer ID of the Kubo daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// libp2p peer ID of the IPFS Cluster daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_peer_id: Option<String>,
    /// Kubo version reported by `/api/v0/version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubo_version: Option<String>,
    /// IPFS Cluster version reported by `/id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_version: Option<String>,
    /// Kubo swarm connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm_peers: Option<i32>,
    /// Cluster peers (including itself) this peer sees in `/peers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_peers_seen: Option<i32>,
    /// Size of the Kubo repository in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_size: Option<i64>,
    /// The most the Kubo repository may hold in bytes, as Kubo reports it (`Datastore.StorageMax`,
    /// from `spec.kubo.storageMax`); garbage collection keeps `repoSize` under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_max: Option<i64>,
    /// Bytes Kubo received since it started (`stats/bw` TotalIn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<i64>,
    /// Bytes Kubo sent since it started (`stats/bw` TotalOut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<i64>,
    /// Pins this peer holds (pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_pinned: Option<i64>,
    /// Pins of this peer queued in IPFS Cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_queued: Option<i64>,
    /// Pins of this peer being pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_pinning: Option<i64>,
    /// Pins of this peer in error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_error: Option<i64>,
    /// Health score of the peer, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub score: Option<i32>,
    /// Unknown, Starting, Healthy, Degraded, Unhealthy or Restarting.
    #[serde(default)]
    pub state: PeerState,
    /// Restarts of this peer's daemons by the operator.
    #[serde(default)]
    pub restarts: i32,
    /// When the peer was probed for the status's last write. Unchanged health writes no status,
    /// so this stays put while nothing changes; traffic figures refresh it once a minute at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<Time>,
    /// The last probe or daemon error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A healing step.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum HealingAction {
    /// `swarm/connect` to the other peers.
    SwarmConnect,
    /// Restart the peer's daemons (delete the pod, or restart the processes).
    RestartPeer,
    /// Wait before the next restart (exponential backoff).
    Backoff,
    /// Restart budget spent: stop restarting, mark Unhealthy.
    GiveUp,
}

impl HealingAction {
    /// Stable machine label for metrics: `swarm_connect`, `restart_peer`, `backoff`, `give_up`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::SwarmConnect => "swarm_connect",
            Self::RestartPeer => "restart_peer",
            Self::Backoff => "backoff",
            Self::GiveUp => "give_up",
        }
    }
}

/// Outcome of a healing step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum HealingResult {
    /// Started, outcome not known yet.
    Pending,
    Succeeded,
    Failed,
    /// Not carried out (another peer was being healed, quorum at risk, or autoHeal off).
    Skipped,
}

/// One healing step taken (or declined) by the operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealingRecord {
    /// When the step was taken.
    pub time: Time,
    /// The peer healed.
    pub peer: String,
    /// SwarmConnect, RestartPeer, Backoff or GiveUp.
    pub action: HealingAction,
    /// Why, in words (e.g. `Kubo RPC unresponsive for 3 probes`).
    pub reason: String,
    /// Pending, Succeeded, Failed or Skipped.
    pub result: HealingResult,
}
