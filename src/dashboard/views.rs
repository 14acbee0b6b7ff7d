//! What the dashboard answers and accepts, as types: one view per answer, each made by a small
//! pure function from the published [`Snapshot`]; the request bodies of the action routes. The
//! OpenAPI document is generated from these types (see `openapi`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::Serialize;

mod alerts;
mod backend;
mod bodies;
pub mod figures;
pub mod log_entries;
pub mod toolkit;

pub use alerts::{Alert, alerts};
pub use backend::{
    BackendGroupView, BackendStatus, BackendView, ClusterDaemonView, DaemonStatusRead, DaemonView,
    KuboView, backend, backend_group,
};
pub use bodies::{ClusterAction, DaemonAction, HealthCheck};
pub use toolkit::{BackendHealth, ClusterService, Health, Libp2pSummary, StatusMetrics};

use super::{
    ActionRequest, ClusterEntry, Daemon, HealthSample, HostMetrics, PeerProcesses, PeerRates,
    Snapshot,
};
use crate::api::RequestState;
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
/// and the alerts (the operator's alerts and the healing steps); with the old toolkit's fields
/// (`timestamp`, `overall_health`, `backends`, `cluster`, `libp2p`, `metrics`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StatusView {
    pub overall: Overall,
    pub clusters: Vec<ClusterView>,
    /// The alerts of every cluster (firing and recently resolved) and its recent healing steps,
    /// oldest first.
    pub alerts: Vec<Alert>,
    /// RFC 3339 time of the round this status shows.
    pub timestamp: String,
    /// The worst of the clusters' health levels (from their scores); `unknown` while no cluster
    /// has a score.
    pub overall_health: Health,
    /// Every daemon under its full backend name; under `ipfs` and `ipfs_cluster` the one Kubo /
    /// IPFS Cluster daemon, or all of them taken together (with `members`).
    pub backends: BTreeMap<String, BackendHealth>,
    /// The IPFS Cluster daemons, as the toolkit described its one daemon.
    pub cluster: ClusterService,
    /// The Kubo peers as libp2p nodes.
    pub libp2p: Libp2pSummary,
    pub metrics: StatusMetrics,
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
    /// Local clusters: each peer's daemon PIDs and ports, as the supervisor knows them (empty
    /// in Kubernetes).
    pub processes: Vec<PeerProcesses>,
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

/// `GET /api/dashboard/metrics/realtime`; with the old toolkit's fields (`timestamp`, `system`,
/// `backends`, `network`, `performance`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RealtimeView {
    /// `null` until the host was sampled once.
    pub host: Option<HostMetrics>,
    pub peers: Vec<PeerFigures>,
    pub updated_at: Option<String>,
    /// RFC 3339 time of the answer.
    pub timestamp: String,
    /// The host in percent; `null` until it was sampled once.
    pub system: Option<figures::SystemFigures>,
    /// The daemons by health.
    pub backends: figures::BackendCounts,
    pub network: figures::NetworkFigures,
    pub performance: figures::Performance,
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

/// `POST /cluster/action` with `status` or `peers`, with the toolkit's action fields.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ClusterActionRead {
    #[serde(flatten)]
    pub read: ClusterRead,
    /// `status` or `peers`.
    pub action: String,
    /// RFC 3339 time of the answer.
    pub timestamp: String,
    /// The cluster's IPFS Cluster daemons, as the toolkit described its daemon.
    pub details: ClusterService,
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
    /// The same lines as the old toolkit's log entries, newest first.
    pub logs: Vec<log_entries::LogEntry>,
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
    /// The backend name as sent (daemon actions and restarts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_name: Option<String>,
    /// `restart`.
    pub action: String,
    /// RFC 3339 time the request was recorded.
    pub timestamp: String,
    pub details: AcceptedDetails,
}

/// `details` of a 202 answer: the request's id and state.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct AcceptedDetails {
    pub request_id: u64,
    /// `queued` when answered.
    pub state: RequestState,
    /// As `watch`.
    pub watch: String,
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
    /// RFC 3339 time of the answer.
    pub timestamp: String,
    /// The daemons probed, by full backend name (the one named by `backend_name`, else every
    /// daemon of the cluster).
    pub results: BTreeMap<String, BackendHealth>,
    pub metrics: figures::CheckMetrics,
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

/// `GET /status`; `now` stands for the round's time before the first one.
pub fn status(snapshot: &Snapshot, now: &str) -> StatusView {
    let overall = overall(snapshot);
    let daemons = toolkit::daemons(snapshot);
    let cluster_service = toolkit::cluster_service(&snapshot.clusters);
    let libp2p = toolkit::libp2p(snapshot, overall.score);
    let alerts = alerts(snapshot);
    StatusView {
        timestamp: snapshot
            .updated_at
            .clone()
            .unwrap_or_else(|| now.to_string()),
        overall_health: toolkit::overall_health(snapshot),
        backends: toolkit::backends(&daemons),
        metrics: toolkit::status_metrics(&daemons, &cluster_service, &libp2p, &alerts),
        cluster: cluster_service,
        libp2p,
        overall,
        clusters: snapshot
            .clusters
            .iter()
            .map(|c| cluster(snapshot, c))
            .collect(),
        alerts,
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
        processes: c.processes.clone(),
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

/// Each peer's figures; `rates` by `cluster/peer`; `now` is the time of the answer.
pub fn realtime(
    snapshot: &Snapshot,
    host: Option<HostMetrics>,
    rates: &BTreeMap<String, PeerRates>,
    now: &str,
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
    let score = overall(snapshot).score;
    let daemons = toolkit::daemons(snapshot);
    let libp2p = toolkit::libp2p(snapshot, score);
    let system = host.as_ref().map(figures::system);
    RealtimeView {
        timestamp: now.to_string(),
        backends: figures::backend_counts(&daemons),
        network: figures::network(&toolkit::cluster_service(&snapshot.clusters), &libp2p),
        performance: figures::performance(score, &libp2p, system.as_ref()),
        system,
        host,
        peers: peers.collect(),
        updated_at: snapshot.updated_at.clone(),
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
        logs: log_entries::entries(&backend, &kept),
        backend,
        cluster: cluster.key(),
        peer: peer.name.clone(),
        daemon,
        count: kept.len(),
        lines: kept,
    }
}

/// The 202 answer to `request`, recorded at `now`; `daemon_name` as the client sent it.
pub fn accepted(request: ActionRequest, daemon_name: Option<String>, now: &str) -> Accepted {
    let watch = format!("/api/dashboard/requests/{}", request.id);
    Accepted {
        daemon_name,
        action: request.action.as_str().to_string(),
        timestamp: now.to_string(),
        details: AcceptedDetails {
            request_id: request.id,
            state: RequestState::Queued,
            watch: watch.clone(),
        },
        watch,
        message: "recorded; the reconciler carries it out and the watch URL tells its state".into(),
        requested: request,
    }
}

/// The cluster after the probe round of `request`, which took `seconds`; `results` has the
/// daemon `daemon` of the peer asked for, or every daemon of the cluster.
pub fn health_check(
    request: ActionRequest,
    cluster: &ClusterEntry,
    daemon: Option<Daemon>,
    seconds: f64,
    now: &str,
) -> HealthCheckView {
    let kinds = match daemon {
        Some(d) => vec![d],
        None => vec![Daemon::Ipfs, Daemon::Cluster],
    };
    let results: Vec<BackendHealth> = cluster
        .status
        .peers
        .iter()
        .filter(|p| request.peer.as_ref().is_none_or(|name| &p.name == name))
        .flat_map(|p| {
            kinds
                .iter()
                .map(|d| toolkit::backend_health(cluster, p, *d))
        })
        .collect();
    HealthCheckView {
        cluster: cluster.key(),
        phase: cluster.status.phase,
        health_score: cluster.status.health_score,
        peers: cluster.status.peers.clone(),
        timestamp: now.to_string(),
        metrics: figures::check_metrics(&results, seconds),
        results: results.into_iter().map(|r| (r.name.clone(), r)).collect(),
        requested: request,
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
            resource_version: None,
            processes: Vec::new(),
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
