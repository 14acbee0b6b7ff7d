//! What the dashboard answers and accepts, as types: one view per answer, each made by a small
//! pure function from the published [`Snapshot`]; the request bodies of the action routes. The
//! OpenAPI document is generated from these types (see `openapi`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod alerts;

pub use alerts::{Alert, alerts};

use super::{ActionRequest, ClusterEntry, Daemon, HealthSample, HostMetrics, PeerRates, Snapshot};
use crate::api::{ClusterPhase, PeerState, PeerStatus, PinPhase};

/// A successful answer: `{"success": true, "data": ...}`.
#[derive(Clone, Debug, Serialize)]
pub struct Envelope<T> {
    /// Always `true` (errors answer with [`ErrorBody`]).
    pub success: bool,
    pub data: T,
}

impl<T> Envelope<T> {
    pub fn new(data: T) -> Envelope<T> {
        Envelope {
            success: true,
            data,
        }
    }
}

/// A refused or failed request: `{"success": false, "error": {"code", "message"}}`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[schemars(rename = "Error")]
pub struct ErrorBody {
    /// Always `false`.
    #[schemars(extend("const" = false))]
    pub success: bool,
    pub error: ErrorDetail,
}

/// What went wrong, for a program (`code`) and for a person (`message`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ErrorDetail {
    /// A stable code, e.g. `not_found`, `unauthorized`, `invalid_body`.
    #[schemars(extend("examples" = ["not_found", "unauthorized", "invalid_body"]))]
    pub code: String,
    /// The reason, and what to do about it.
    pub message: String,
}

/// The figures of all clusters at once.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overall {
    /// The mean health score of the clusters that have one.
    pub score: Option<i32>,
    /// Number of clusters.
    pub clusters: usize,
    /// Number of peers, all clusters together.
    pub peers: usize,
    /// RFC 3339 time of the round that produced this status.
    pub updated_at: Option<String>,
}

/// `GET /api/dashboard/status`: overall health, clusters with their peers, pins and libp2p view,
/// and the alerts (the operator's alerts and the healing steps).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StatusView {
    pub overall: Overall,
    pub clusters: Vec<ClusterView>,
    /// The alerts of every cluster (firing and recently resolved) and its recent healing steps,
    /// oldest first.
    pub alerts: Vec<Alert>,
}

/// One cluster in `GET /status`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    /// `namespace/name` in Kubernetes, `name` locally.
    pub cluster: String,
    /// `spec.replicas`.
    pub replicas: i32,
    pub paused: bool,
    pub phase: Option<ClusterPhase>,
    pub health_score: Option<i32>,
    pub ready_replicas: Option<i32>,
    pub conditions: Vec<Condition>,
    pub peers: Vec<PeerStatus>,
    /// The IpfsPins of this cluster (Kubernetes only).
    pub pins: Vec<PinView>,
    pub libp2p: Libp2pView,
}

/// One IpfsPin of a cluster.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PinView {
    pub name: String,
    pub cid: String,
    pub phase: Option<PinPhase>,
    /// `pinned/allocated`, e.g. `2/3`.
    pub pinned: Option<String>,
    pub conditions: Vec<Condition>,
}

/// How the peers of a cluster see each other.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Libp2pView {
    /// Number of peers.
    pub peers: usize,
    /// Kubo swarm connections, by peer.
    pub swarm_peers: BTreeMap<String, Option<i32>>,
    /// Cluster peers each peer sees, by peer.
    pub cluster_peers_seen: BTreeMap<String, Option<i32>>,
}

/// The data of one `status` event of `GET /api/dashboard/events`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StatusEvent {
    pub overall: Overall,
    pub clusters: Vec<ClusterScore>,
}

/// A cluster's phase and score in the event stream.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterScore {
    pub cluster: String,
    pub phase: Option<ClusterPhase>,
    pub health_score: Option<i32>,
}

/// `POST /cluster/action` with `status`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    pub cluster: String,
    pub phase: Option<ClusterPhase>,
    pub health_score: Option<i32>,
    pub ready_replicas: Option<i32>,
}

/// The reads of `POST /cluster/action`: `status` or `peers`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ClusterRead {
    Health(ClusterHealth),
    Peers(ClusterPeers),
}

/// `POST /cluster/action` with `peers`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ClusterPeers {
    pub cluster: String,
    pub peers: Vec<PeerStatus>,
}

/// `GET /api/dashboard/metrics/realtime`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeView {
    /// `null` until the host was sampled once.
    pub host: Option<HostMetrics>,
    pub peers: Vec<PeerFigures>,
    pub updated_at: Option<String>,
}

/// One peer's figures from the latest round.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerFigures {
    pub cluster: String,
    pub peer: String,
    pub state: PeerState,
    pub score: Option<i32>,
    pub swarm_peers: Option<i32>,
    pub repo_size: Option<i64>,
    pub bandwidth: Bandwidth,
    pub last_probe: Option<Time>,
}

/// Kubo's traffic of a peer.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Bytes received since the daemon started.
    pub total_in: Option<i64>,
    /// Bytes sent since the daemon started.
    pub total_out: Option<i64>,
    /// Bytes/s received between the last two rounds.
    pub rate_in: Option<f64>,
    /// Bytes/s sent between the last two rounds.
    pub rate_out: Option<f64>,
}

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

/// `GET /api/dashboard/logs/{backend}`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct LogsView {
    /// The backend name as asked for.
    pub backend: String,
    pub cluster: String,
    pub peer: String,
    pub daemon: Daemon,
    /// Number of lines.
    pub count: usize,
    /// Oldest first.
    pub lines: Vec<String>,
}

/// `GET /api/dashboard/history/{name}?since=&step=`: one sample per probe interval (or per
/// `stepSeconds` when downsampled), oldest first.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    pub name: String,
    /// Oldest first.
    pub samples: Vec<HealthSample>,
    /// Seconds between two samples as taken: the cluster's `spec.health.probeInterval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// Seconds per point when downsampled: `step`, or the step chosen to keep a long range
    /// under 2000 points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<f64>,
    /// Start of the range (RFC 3339), when `since` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// How long samples are kept, in seconds (at most 17280 samples per series).
    pub retention_seconds: u64,
    /// Where the samples come from: `recorded` (the operator's own history) or `prometheus`
    /// (`--prometheus-url`, for a `since` older than the recorded history).
    pub source: String,
    /// Why the answer is not from where it should be (Prometheus did not answer: the recorded
    /// samples instead).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The answer (202) to a request for a change.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Accepted {
    pub requested: ActionRequest,
    /// Where to follow the outcome: `GET /api/dashboard/requests/{id}` answers queued, running,
    /// done or failed with the reason.
    pub watch: String,
    pub message: String,
}

/// `POST /api/dashboard/health/check`: the request and the cluster after the probe round.
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckView {
    pub requested: ActionRequest,
    pub cluster: String,
    pub phase: Option<ClusterPhase>,
    pub health_score: Option<i32>,
    pub peers: Vec<PeerStatus>,
}

/// `POST /api/dashboard/daemon/action` body. The other fields are what the old toolkit's clients
/// send: accepted and ignored.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonAction {
    /// A backend name.
    pub daemon_name: String,
    /// `restart` or `status`; `start` and `stop` are refused with 422 unsupported_action: the
    /// reconciler keeps every declared peer running.
    #[schemars(extend("enum" = ["start", "stop", "restart", "status"]))]
    pub action: String,
    /// Sent by the old toolkit's clients; accepted and ignored.
    #[serde(default, rename = "force")]
    pub _force: Option<Value>,
    /// Accepted and ignored (healing follows spec.health.autoHeal).
    #[serde(default, rename = "auto_heal")]
    pub _auto_heal: Option<Value>,
    /// Accepted and ignored.
    #[serde(default, rename = "force_restart")]
    pub _force_restart: Option<Value>,
    /// Accepted and ignored (every check is a fresh probe round).
    #[serde(default, rename = "force_check")]
    pub _force_check: Option<Value>,
    /// Accepted and ignored (results always include the peer figures).
    #[serde(default, rename = "include_metrics")]
    pub _include_metrics: Option<Value>,
}

/// `POST /api/dashboard/cluster/action` body.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterAction {
    /// `restart`, `status` or `peers`; `start` and `stop` are refused with 422
    /// unsupported_action: the reconciler keeps every declared peer running.
    #[schemars(extend("enum" = ["start", "stop", "restart", "status", "peers"]))]
    pub action: String,
    /// Needed when the dashboard serves more than one cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Sent by the old toolkit's clients; accepted and ignored.
    #[serde(default, rename = "force")]
    pub _force: Option<Value>,
    /// Accepted and ignored.
    #[serde(default, rename = "force_restart")]
    pub _force_restart: Option<Value>,
}

/// `POST /api/dashboard/health/check` body.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// One backend to probe; without it, the only cluster.
    #[serde(default)]
    pub backend_name: Option<String>,
    /// Accepted and ignored (every check is a fresh probe round).
    #[serde(default, rename = "force_check")]
    pub _force_check: Option<Value>,
    /// Accepted and ignored (results always include the peer figures).
    #[serde(default, rename = "include_metrics")]
    pub _include_metrics: Option<Value>,
}

/// The figures of all clusters at once.
pub fn overall(snapshot: &Snapshot) -> Overall {
    let scores: Vec<i32> = snapshot
        .clusters
        .iter()
        .filter_map(|c| c.status.health_score)
        .collect();
    let score = (!scores.is_empty()).then(|| scores.iter().sum::<i32>() / scores.len() as i32);
    Overall {
        score,
        clusters: snapshot.clusters.len(),
        peers: snapshot.clusters.iter().map(|c| c.status.peers.len()).sum(),
        updated_at: snapshot.updated_at.clone(),
    }
}

pub fn status(snapshot: &Snapshot) -> StatusView {
    StatusView {
        overall: overall(snapshot),
        clusters: snapshot
            .clusters
            .iter()
            .map(|c| cluster(snapshot, c))
            .collect(),
        alerts: alerts(snapshot),
    }
}

fn cluster(snapshot: &Snapshot, c: &ClusterEntry) -> ClusterView {
    let by_peer = |figure: fn(&PeerStatus) -> Option<i32>| {
        c.status
            .peers
            .iter()
            .map(|p| (p.name.clone(), figure(p)))
            .collect()
    };
    ClusterView {
        cluster: c.key(),
        replicas: c.replicas,
        paused: c.paused,
        phase: c.status.phase,
        health_score: c.status.health_score,
        ready_replicas: c.status.ready_replicas,
        conditions: c.status.conditions.clone(),
        peers: c.status.peers.clone(),
        pins: snapshot
            .pins
            .iter()
            .filter(|p| c.namespace.as_deref() == Some(p.namespace.as_str()) && p.cluster == c.name)
            .map(|p| PinView {
                name: p.name.clone(),
                cid: p.cid.clone(),
                phase: p.status.phase,
                pinned: p.status.pinned_summary.clone(),
                conditions: p.status.conditions.clone(),
            })
            .collect(),
        libp2p: Libp2pView {
            peers: c.status.peers.len(),
            swarm_peers: by_peer(|p| p.swarm_peers),
            cluster_peers_seen: by_peer(|p| p.cluster_peers_seen),
        },
    }
}

pub fn status_event(snapshot: &Snapshot) -> StatusEvent {
    StatusEvent {
        overall: overall(snapshot),
        clusters: snapshot
            .clusters
            .iter()
            .map(|c| ClusterScore {
                cluster: c.key(),
                phase: c.status.phase,
                health_score: c.status.health_score,
            })
            .collect(),
    }
}

pub fn cluster_health(c: &ClusterEntry) -> ClusterHealth {
    ClusterHealth {
        cluster: c.key(),
        phase: c.status.phase,
        health_score: c.status.health_score,
        ready_replicas: c.status.ready_replicas,
    }
}

pub fn cluster_peers(c: &ClusterEntry) -> ClusterPeers {
    ClusterPeers {
        cluster: c.key(),
        peers: c.status.peers.clone(),
    }
}

/// Each peer's figures; `rates` by `cluster/peer`.
pub fn realtime(
    snapshot: &Snapshot,
    host: Option<HostMetrics>,
    rates: &BTreeMap<String, PeerRates>,
) -> RealtimeView {
    let peers = snapshot.clusters.iter().flat_map(|c| {
        c.status.peers.iter().map(move |p| {
            let rate = rates.get(&format!("{}/{}", c.key(), p.name));
            PeerFigures {
                cluster: c.key(),
                peer: p.name.clone(),
                state: p.state,
                score: p.score,
                swarm_peers: p.swarm_peers,
                repo_size: p.repo_size,
                bandwidth: Bandwidth {
                    total_in: p.bytes_in,
                    total_out: p.bytes_out,
                    rate_in: rate.map(|r| r.bytes_in_per_second),
                    rate_out: rate.map(|r| r.bytes_out_per_second),
                },
                last_probe: p.last_probe.clone(),
            }
        })
    });
    RealtimeView {
        host,
        peers: peers.collect(),
        updated_at: snapshot.updated_at.clone(),
    }
}

pub fn backend(cluster: &ClusterEntry, peer: &PeerStatus, daemon: Daemon) -> BackendView {
    let daemon = match daemon {
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
    }
}

/// The last `lines` lines of `text`, the log of `daemon` of `peer`.
pub fn logs(
    backend: String,
    cluster: &ClusterEntry,
    peer: &PeerStatus,
    daemon: Daemon,
    text: &str,
    lines: usize,
) -> LogsView {
    let all: Vec<&str> = text.lines().collect();
    let kept: Vec<String> = all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    LogsView {
        backend,
        cluster: cluster.key(),
        peer: peer.name.clone(),
        daemon,
        count: kept.len(),
        lines: kept,
    }
}

pub fn accepted(request: ActionRequest) -> Accepted {
    Accepted {
        watch: format!("/api/dashboard/requests/{}", request.id),
        message: "recorded; the reconciler carries it out and the watch URL tells its state".into(),
        requested: request,
    }
}

pub fn health_check(request: ActionRequest, cluster: &ClusterEntry) -> HealthCheckView {
    HealthCheckView {
        requested: request,
        cluster: cluster.key(),
        phase: cluster.status.phase,
        health_score: cluster.status.health_score,
        peers: cluster.status.peers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::IpfsClusterStatus;

    fn entry(name: &str, score: Option<i32>, peers: &[&str]) -> ClusterEntry {
        ClusterEntry {
            namespace: None,
            name: name.into(),
            replicas: 1,
            paused: false,
            uid: None,
            status: IpfsClusterStatus {
                health_score: score,
                peers: peers
                    .iter()
                    .map(|p| PeerStatus {
                        name: p.to_string(),
                        swarm_peers: Some(2),
                        ..PeerStatus::default()
                    })
                    .collect(),
                ..IpfsClusterStatus::default()
            },
        }
    }

    #[test]
    fn the_overall_score_is_the_mean_of_the_clusters_that_have_one() {
        let snapshot = Snapshot {
            clusters: vec![
                entry("a", Some(90), &["a-0", "a-1"]),
                entry("b", Some(61), &["b-0"]),
                entry("c", None, &[]),
            ],
            ..Snapshot::default()
        };
        let overall = overall(&snapshot);
        assert_eq!(
            (overall.score, overall.clusters, overall.peers),
            (Some(75), 3, 3)
        );
        assert_eq!(super::overall(&Snapshot::default()).score, None);
    }

    #[test]
    fn a_backend_view_names_its_daemon_beside_the_peer_fields() {
        let cluster = entry("demo", Some(90), &["demo-0"]);
        let peer = &cluster.status.peers[0];
        let kubo = serde_json::to_value(backend(&cluster, peer, Daemon::Ipfs)).expect("json");
        assert_eq!(kubo["daemon"], "ipfs");
        assert_eq!(kubo["swarmPeers"], 2);
        assert_eq!(
            kubo["lastError"],
            json!(null),
            "absent figures are null, not left out"
        );
        let cluster_daemon =
            serde_json::to_value(backend(&cluster, peer, Daemon::Cluster)).expect("json");
        assert_eq!(cluster_daemon["daemon"], "cluster");
        assert!(cluster_daemon.get("swarmPeers").is_none());
        assert_eq!(cluster_daemon["pinsError"], json!(null));
    }
}
