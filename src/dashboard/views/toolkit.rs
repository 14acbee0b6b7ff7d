//! The old toolkit's fields, for the clients written against it: each daemon as a "backend"
//! (`status`, `health`, `last_check`, `errors`, `daemon_pid`, `port`), the IPFS Cluster daemons as
//! its `cluster` object, the libp2p view, the summary figures and the overall health. Pure
//! mappings from the published snapshot: nothing here probes or reads a file.
//!
//! The toolkit watched one Kubo and one IPFS Cluster daemon; the operator runs peers of clusters.
//! Each daemon is a backend under its full name (`[<namespace>/]<cluster>/<peer>/<daemon>`), and
//! the toolkit's short names `ipfs` and `ipfs_cluster` name that daemon when there is one peer,
//! else all of them taken together (see [`aggregate`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::api::cluster::{
    CLUSTER_PROXY_PORT, CLUSTER_REST_PORT, CLUSTER_SWARM_PORT, KUBO_RPC_PORT,
};
use crate::api::{PeerState, PeerStatus};
use crate::dashboard::{ClusterEntry, Daemon, Snapshot};
use crate::reconcile::HealthLevel;

/// The toolkit's short name of the Kubo daemons, as a key of `backends`.
pub const SHORT_IPFS: &str = "ipfs";
/// The toolkit's short name of the IPFS Cluster daemons, as a key of `backends`.
pub const SHORT_CLUSTER: &str = "ipfs_cluster";

/// The daemon a toolkit short name stands for: `ipfs` (Kubo), `ipfs_cluster` or `ipfs-cluster`
/// (IPFS Cluster).
pub fn short_name(name: &str) -> Option<Daemon> {
    match name {
        SHORT_IPFS => Some(Daemon::Ipfs),
        SHORT_CLUSTER | "ipfs-cluster" => Some(Daemon::Cluster),
        _ => None,
    }
}

/// A health word of the toolkit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
    /// Not probed yet, or starting (probes not expected to pass yet).
    Unknown,
}

impl From<HealthLevel> for Health {
    fn from(level: HealthLevel) -> Health {
        match level {
            HealthLevel::Healthy => Health::Healthy,
            HealthLevel::Degraded => Health::Degraded,
            HealthLevel::Unhealthy => Health::Unhealthy,
        }
    }
}

/// What a daemon is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DaemonStatus {
    /// Its API answered the last probe.
    Running,
    /// Its peer is starting; the API is not expected to answer yet.
    Starting,
    /// The operator is restarting it.
    Restarting,
    /// Its API did not answer the last probe (in Kubernetes, whether the process runs is not
    /// known; locally its process runs).
    Unresponsive,
    /// Local: its process does not run.
    Stopped,
    /// Not probed yet.
    Unknown,
    /// Of several daemons (a short name): some run, some do not.
    Partial,
}

/// One error of a backend, as the toolkit listed them.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct BackendError {
    /// RFC 3339: the probe that saw it.
    pub timestamp: Option<String>,
    pub error: String,
}

/// A daemon (or, under a short name, several) in the toolkit's terms.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct BackendHealth {
    /// The full backend name, or the short name (`ipfs`, `ipfs_cluster`) of several daemons
    /// taken together.
    pub name: String,
    pub status: DaemonStatus,
    /// Its API answered and its peer is healthy; answered but the peer is not healthy
    /// (degraded); did not answer (unhealthy); not probed yet or starting (unknown). Of several
    /// daemons: the same word when all agree, else degraded.
    pub health: Health,
    /// Its API answered the last probe (of several: all of them).
    pub api_responsive: bool,
    /// RFC 3339 time of the last probe.
    pub last_check: Option<String>,
    /// Why it is not healthy (the last probe's error).
    pub errors: Vec<BackendError>,
    /// The process ID: local daemons only, while they run.
    pub daemon_pid: Option<i32>,
    /// The API port (Kubo RPC or IPFS Cluster REST): the one the supervisor gave it locally,
    /// the container port in Kubernetes.
    pub port: Option<u16>,
    /// Under a short name: the full names of the daemons taken together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// The full backend name of a daemon: `[<namespace>/]<cluster>/<peer>/<daemon>`.
pub fn full_name(cluster: &ClusterEntry, peer: &PeerStatus, daemon: Daemon) -> String {
    format!("{}/{}/{}", cluster.key(), peer.name, daemon.as_str())
}

/// Whether the daemon's API answered the last probe (its version is known only then) and,
/// locally, its process still runs.
pub fn answered(cluster: &ClusterEntry, peer: &PeerStatus, daemon: Daemon) -> bool {
    let version = match daemon {
        Daemon::Ipfs => &peer.kubo_version,
        Daemon::Cluster => &peer.cluster_version,
    };
    version.is_some() && pid(cluster, peer, daemon) != Some(None)
}

/// The daemon's PID as the local supervisor knows it: `None` in Kubernetes (not known),
/// `Some(None)` for a local daemon that does not run.
fn pid(cluster: &ClusterEntry, peer: &PeerStatus, daemon: Daemon) -> Option<Option<i32>> {
    let local = cluster.processes.iter().find(|p| p.peer == peer.name)?;
    Some(match daemon {
        Daemon::Ipfs => local.kubo_pid,
        Daemon::Cluster => local.cluster_pid,
    })
}

/// The ports of the daemon: API, and for IPFS Cluster its proxy and libp2p ports.
fn ports(cluster: &ClusterEntry, peer: &PeerStatus) -> Option<[u16; 4]> {
    if let Some(local) = cluster.processes.iter().find(|p| p.peer == peer.name) {
        return local
            .ports
            .map(|p| [p.kubo_api, p.cluster_api, p.cluster_proxy, p.cluster_swarm]);
    }
    let port = |p: i32| u16::try_from(p).unwrap_or_default();
    cluster.namespace.as_ref().map(|_| {
        [
            port(KUBO_RPC_PORT),
            port(CLUSTER_REST_PORT),
            port(CLUSTER_PROXY_PORT),
            port(CLUSTER_SWARM_PORT),
        ]
    })
}

/// What the API of `daemon` is called in errors.
fn api_name(daemon: Daemon) -> &'static str {
    match daemon {
        Daemon::Ipfs => "Kubo RPC",
        Daemon::Cluster => "IPFS Cluster REST",
    }
}

fn status(peer: &PeerStatus, answered: bool, pid: Option<Option<i32>>) -> DaemonStatus {
    match (pid, answered, peer.state) {
        (Some(None), _, _) => DaemonStatus::Stopped,
        (_, true, _) => DaemonStatus::Running,
        (_, false, PeerState::Starting) => DaemonStatus::Starting,
        (_, false, PeerState::Restarting) => DaemonStatus::Restarting,
        _ if not_probed(peer) => DaemonStatus::Unknown,
        _ => DaemonStatus::Unresponsive,
    }
}

/// Nothing is known of the peer yet.
fn not_probed(peer: &PeerStatus) -> bool {
    peer.last_probe.is_none() && peer.state == PeerState::Unknown
}

fn health(peer: &PeerStatus, answered: bool) -> Health {
    if answered {
        if peer.state == PeerState::Healthy {
            Health::Healthy
        } else {
            Health::Degraded
        }
    } else if not_probed(peer) || peer.state == PeerState::Starting {
        Health::Unknown
    } else {
        Health::Unhealthy
    }
}

/// The peer's last error when it is about this daemon (or about the peer), and a sentence for
/// a daemon that does not answer when the error names the other one.
fn errors(peer: &PeerStatus, daemon: Daemon, status: DaemonStatus) -> Vec<BackendError> {
    let at = peer.last_probe.as_ref().map(|t| t.0.to_string());
    let other = match daemon {
        Daemon::Ipfs => Daemon::Cluster,
        Daemon::Cluster => Daemon::Ipfs,
    };
    let mut errors: Vec<BackendError> = peer
        .last_error
        .iter()
        .filter(|e| !e.starts_with(api_name(other)))
        .map(|e| BackendError {
            timestamp: at.clone(),
            error: e.clone(),
        })
        .collect();
    let said = errors.iter().any(|e| e.error.starts_with(api_name(daemon)));
    let why = match status {
        DaemonStatus::Stopped => Some(format!("its {} process does not run", daemon.as_str())),
        DaemonStatus::Unresponsive | DaemonStatus::Restarting if !said => Some(format!(
            "{} did not answer the last probe",
            api_name(daemon)
        )),
        _ => None,
    };
    errors.extend(why.map(|error| BackendError {
        timestamp: at.clone(),
        error,
    }));
    errors
}

/// One daemon of one peer as a backend.
pub fn backend_health(cluster: &ClusterEntry, peer: &PeerStatus, daemon: Daemon) -> BackendHealth {
    let pid = pid(cluster, peer, daemon);
    let answered = answered(cluster, peer, daemon);
    let status = status(peer, answered, pid);
    let port = ports(cluster, peer).map(|p| match daemon {
        Daemon::Ipfs => p[0],
        Daemon::Cluster => p[1],
    });
    BackendHealth {
        name: full_name(cluster, peer, daemon),
        status,
        health: health(peer, answered),
        api_responsive: answered,
        last_check: peer.last_probe.as_ref().map(|t| t.0.to_string()),
        errors: errors(peer, daemon, status),
        daemon_pid: pid.flatten(),
        port,
        members: Vec::new(),
    }
}

/// Several daemons under one short name: running when all run, stopped when none does; the
/// health word they all share, else degraded; their errors, each prefixed with its daemon.
pub fn aggregate(name: &str, members: &[BackendHealth]) -> BackendHealth {
    let all = |f: &dyn Fn(&BackendHealth) -> bool| members.iter().all(f);
    let status = match members.first().map(|m| m.status) {
        Some(first) if all(&|m| m.status == first) => first,
        _ if members.is_empty() => DaemonStatus::Unknown,
        _ => DaemonStatus::Partial,
    };
    let health = match members.first().map(|m| m.health) {
        Some(first) if all(&|m| m.health == first) => first,
        _ if members.is_empty() => Health::Unknown,
        _ => Health::Degraded,
    };
    BackendHealth {
        name: name.to_string(),
        status,
        health,
        api_responsive: !members.is_empty() && all(&|m| m.api_responsive),
        last_check: members.iter().filter_map(|m| m.last_check.clone()).max(),
        errors: members
            .iter()
            .flat_map(|m| {
                m.errors.iter().map(|e| BackendError {
                    timestamp: e.timestamp.clone(),
                    error: format!("{}: {}", m.name, e.error),
                })
            })
            .collect(),
        daemon_pid: None,
        port: None,
        members: members.iter().map(|m| m.name.clone()).collect(),
    }
}

/// Every daemon of every cluster, Kubo and IPFS Cluster of each peer in turn.
pub fn daemons(snapshot: &Snapshot) -> Vec<BackendHealth> {
    snapshot
        .clusters
        .iter()
        .flat_map(|c| {
            c.status
                .peers
                .iter()
                .flat_map(move |p| [Daemon::Ipfs, Daemon::Cluster].map(|d| backend_health(c, p, d)))
        })
        .collect()
}

/// `backends` of `GET /status`: every daemon under its full name, and under the short names
/// `ipfs` and `ipfs_cluster` the one such daemon, or all of them taken together.
pub fn backends(all: &[BackendHealth]) -> BTreeMap<String, BackendHealth> {
    let mut map: BTreeMap<String, BackendHealth> =
        all.iter().map(|b| (b.name.clone(), b.clone())).collect();
    for (short, suffix) in [(SHORT_IPFS, "/ipfs"), (SHORT_CLUSTER, "/cluster")] {
        let members: Vec<BackendHealth> = all
            .iter()
            .filter(|b| b.name.ends_with(suffix))
            .cloned()
            .collect();
        match members.as_slice() {
            [] => {}
            [one] => {
                map.insert(short.to_string(), one.clone());
            }
            many => {
                map.insert(short.to_string(), aggregate(short, many));
            }
        }
    }
    map
}

/// `overall_health`: the worst level of the clusters' health scores (healthy >= 80 >
/// degraded >= 50 > unhealthy); unknown while no cluster has a score.
pub fn overall_health(snapshot: &Snapshot) -> Health {
    snapshot
        .clusters
        .iter()
        .filter_map(|c| c.status.health_score)
        .map(|s| {
            Health::from(HealthLevel::from_score(
                u8::try_from(s.clamp(0, 100)).unwrap_or(0),
            ))
        })
        .max()
        .unwrap_or(Health::Unknown)
}

/// The state of one port of the IPFS Cluster daemons.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PortState {
    /// The port, when every daemon has the same (always in Kubernetes; locally with one peer).
    pub port: Option<u16>,
    /// Local: every daemon that listens on it runs. Kubernetes: not known (`null`).
    pub in_use: Option<bool>,
    /// Local: the PIDs of the daemons that listen on it.
    pub processes: Vec<i32>,
}

/// The IPFS Cluster daemons' ports: REST API, IPFS proxy, libp2p.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct PortStatus {
    pub api: PortState,
    pub proxy: PortState,
    pub cluster: PortState,
}

/// `cluster` of `GET /status` (and `details` of the cluster actions): the IPFS Cluster daemons,
/// as the toolkit described its one daemon.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ClusterService {
    /// Every IPFS Cluster daemon runs (local: its process; Kubernetes: its API answered).
    pub running: bool,
    /// Every IPFS Cluster daemon's REST API answered the last probe.
    pub api_responsive: bool,
    /// The PID, when there is one local daemon and it runs.
    pub pid: Option<i32>,
    /// The version the daemons that answered report, when they agree.
    pub version: Option<String>,
    /// IPFS Cluster peers seen: for each cluster the most any of its peers sees, added up.
    pub peer_count: usize,
    pub port_status: PortStatus,
    /// `true` when every daemon answered (it started with its configuration); `null` when
    /// one does not (its log tells whether it refused its configuration).
    pub config_valid: Option<bool>,
    /// RFC 3339 time of the latest probe.
    pub last_check: Option<String>,
    pub errors: Vec<BackendError>,
    /// Number of IPFS Cluster daemons.
    pub daemons: usize,
    /// Number of them whose REST API answered.
    pub responsive: usize,
}

/// The IPFS Cluster daemons of `clusters`.
pub fn cluster_service<'a>(clusters: impl IntoIterator<Item = &'a ClusterEntry>) -> ClusterService {
    let mut members = Vec::new();
    let mut peer_count = 0;
    for c in clusters {
        let seen = c.status.peers.iter().filter_map(|p| p.cluster_peers_seen);
        peer_count += usize::try_from(seen.max().unwrap_or(0)).unwrap_or(0);
        for p in &c.status.peers {
            members.push((c, p, backend_health(c, p, Daemon::Cluster)));
        }
    }
    let n = members.len();
    let responsive = members.iter().filter(|(_, _, b)| b.api_responsive).count();
    let running = |(c, p, b): &(&ClusterEntry, &PeerStatus, BackendHealth)| {
        pid(c, p, Daemon::Cluster).map_or(b.api_responsive, |pid| pid.is_some())
    };
    let all_running = n > 0 && members.iter().all(running);
    let local = members
        .iter()
        .all(|(c, p, _)| pid(c, p, Daemon::Cluster).is_some());
    let port_state = |i: usize| {
        let ports: Vec<Option<u16>> = members
            .iter()
            .map(|(c, p, _)| ports(c, p).map(|x| x[i]))
            .collect();
        PortState {
            port: ports
                .first()
                .copied()
                .flatten()
                .filter(|first| ports.iter().all(|p| *p == Some(*first))),
            in_use: (n > 0 && local).then_some(all_running),
            processes: members
                .iter()
                .filter_map(|(_, _, b)| b.daemon_pid)
                .collect(),
        }
    };
    let versions: Vec<&String> = members
        .iter()
        .filter_map(|(_, p, _)| p.cluster_version.as_ref())
        .collect();
    let health: Vec<BackendHealth> = members.iter().map(|(_, _, b)| b.clone()).collect();
    let summary = match health.as_slice() {
        [one] => one.clone(),
        many => aggregate(SHORT_CLUSTER, many),
    };
    let version = match versions.as_slice() {
        [first, rest @ ..] if rest.iter().all(|v| v == first) => Some(first.to_string()),
        _ => None,
    };
    ClusterService {
        running: all_running,
        api_responsive: n > 0 && responsive == n,
        pid: summary.daemon_pid,
        version,
        peer_count,
        port_status: PortStatus {
            api: port_state(1),
            proxy: port_state(2),
            cluster: port_state(3),
        },
        config_valid: (n > 0 && responsive == n).then_some(true),
        last_check: summary.last_check,
        errors: summary.errors,
        daemons: n,
        responsive,
    }
}

/// Whether the Kubo peers are up and reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Libp2pStatus {
    /// Every Kubo answered.
    Running,
    /// Some Kubo did not answer.
    Degraded,
    /// No Kubo answered (or there is none).
    Stopped,
}

/// `libp2p` of `GET /status`: the Kubo peers as libp2p nodes.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Libp2pSummary {
    pub status: Libp2pStatus,
    /// The health score, 0-100: the mean of the clusters' scores.
    pub health: Option<i32>,
    /// Kubo peers the operator runs, all clusters together.
    pub peer_count: usize,
    /// Those whose Kubo answered with at least one swarm connection (or alone in its cluster).
    pub connected_peers: usize,
    /// The operator connects the peers of every cluster that is not paused (bootstrap
    /// addresses, `swarm/connect` when connectivity is low): true when such a cluster has a Kubo
    /// that answers.
    pub discovery_active: bool,
    /// `connected_peers / peer_count`, 0 to 1; `null` without peers.
    pub connectivity_ratio: Option<f64>,
    /// What keeps peers apart, one sentence each (`<cluster>/<peer>: ...`).
    pub connectivity_issues: Vec<String>,
    /// Kubo swarm connections, all peers together (a link between two peers counts twice).
    pub swarm_connections: i64,
}

/// A peer's connectivity problems; `None` when it is connected.
fn peer_issues(c: &ClusterEntry, p: &PeerStatus) -> Vec<String> {
    let name = format!("{}/{}", c.key(), p.name);
    let others = c.status.peers.len().saturating_sub(1);
    let mut issues = Vec::new();
    if !answered(c, p, Daemon::Ipfs) {
        issues.push(format!("{name}: Kubo RPC did not answer the last probe"));
    } else if others > 0 && p.swarm_peers.unwrap_or(0) == 0 {
        issues.push(format!("{name}: no swarm connections"));
    }
    let members = c.status.peers.len();
    if let Some(seen) = p.cluster_peers_seen
        && usize::try_from(seen).unwrap_or(0) < members
    {
        issues.push(format!(
            "{name}: sees {seen} of {members} IPFS Cluster peers"
        ));
    }
    issues
}

pub fn libp2p(snapshot: &Snapshot, score: Option<i32>) -> Libp2pSummary {
    let peers = || {
        snapshot
            .clusters
            .iter()
            .flat_map(|c| c.status.peers.iter().map(move |p| (c, p)))
    };
    let peer_count = peers().count();
    let answering = peers()
        .filter(|(c, p)| answered(c, p, Daemon::Ipfs))
        .count();
    let connected = peers()
        .filter(|(c, p)| {
            answered(c, p, Daemon::Ipfs)
                && (c.status.peers.len() == 1 || p.swarm_peers.unwrap_or(0) > 0)
        })
        .count();
    let status = match answering {
        0 => Libp2pStatus::Stopped,
        n if n == peer_count => Libp2pStatus::Running,
        _ => Libp2pStatus::Degraded,
    };
    Libp2pSummary {
        status,
        health: score,
        peer_count,
        connected_peers: connected,
        discovery_active: peers().any(|(c, p)| !c.paused && answered(c, p, Daemon::Ipfs)),
        connectivity_ratio: (peer_count > 0).then(|| connected as f64 / peer_count as f64),
        connectivity_issues: peers().flat_map(|(c, p)| peer_issues(c, p)).collect(),
        swarm_connections: peers()
            .map(|(_, p)| i64::from(p.swarm_peers.unwrap_or(0)))
            .sum(),
    }
}

/// `metrics` of `GET /status`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StatusMetrics {
    /// Percent of the daemons that are healthy.
    pub health_percentage: f64,
    pub healthy_backends: usize,
    /// Daemons, two per peer (Kubo and IPFS Cluster).
    pub total_backends: usize,
    /// As `cluster.peer_count`.
    pub cluster_peers: usize,
    /// As `libp2p.peer_count`.
    pub libp2p_peers: usize,
    /// Entries of `alerts` (alerts firing and resolved, and healing steps).
    pub alerts_count: usize,
    /// Alerts firing now.
    pub alerts_firing: usize,
}

/// Percent of `part` in `whole`, one decimal; 0 without a whole.
pub fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

pub fn status_metrics(
    daemons: &[BackendHealth],
    cluster: &ClusterService,
    libp2p: &Libp2pSummary,
    alerts: &[super::Alert],
) -> StatusMetrics {
    let healthy = daemons
        .iter()
        .filter(|d| d.health == Health::Healthy)
        .count();
    StatusMetrics {
        health_percentage: percent(healthy, daemons.len()),
        healthy_backends: healthy,
        total_backends: daemons.len(),
        cluster_peers: cluster.peer_count,
        libp2p_peers: libp2p.peer_count,
        alerts_count: alerts.len(),
        alerts_firing: alerts.iter().filter(|a| a.state == "firing").count(),
    }
}

#[cfg(test)]
mod tests;
