//! The status of a local cluster: what `local status` prints (a table, or JSON for scripts) and
//! what the supervisor keeps as its live snapshot (the seam for the in-process dashboard).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LocalError;
use super::ports::PeerPorts;
use super::process::{Ownership, ownership};
use super::state::{
    ClusterPaths, ClusterState, DaemonKind, cluster_names, load_state, read_pid_file,
};
use crate::api::{IpfsClusterSpec, IpfsClusterStatus, PeerStatus};
use crate::probe::report::{PeerReport, ProcessState};
use crate::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
use crate::reconcile::{self, Assessment, ClusterHistory};

/// What only the local runtime knows of a peer: its daemons' PIDs, ports and identities.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalPeer {
    pub name: String,
    /// PID of the Kubo daemon this tool started, when it runs.
    pub kubo_pid: Option<i32>,
    /// PID of the ipfs-cluster-service daemon this tool started, when it runs.
    pub cluster_pid: Option<i32>,
    pub ports: Option<PeerPorts>,
    pub kubo_peer_id: String,
    pub cluster_peer_id: String,
}

impl LocalPeer {
    /// Neither daemon runs.
    pub fn stopped(&self) -> bool {
        self.kubo_pid.is_none() && self.cluster_pid.is_none()
    }
}

/// A whole local cluster as `local status` shows it: the status both runtimes report (the same
/// `IpfsClusterStatus` as in Kubernetes, computed by [`reconcile::status::compute`]), with the
/// local peers' PIDs and ports beside it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalStatus {
    pub name: String,
    pub generation: u64,
    /// PID of the supervisor (`local up`) when one runs.
    pub supervisor_pid: Option<i32>,
    /// Phase, conditions, health score, peers, recent healing steps.
    pub status: IpfsClusterStatus,
    /// The peers' processes, in index order.
    pub peers: Vec<LocalPeer>,
}

impl LocalStatus {
    /// The reported status of peer `name`.
    pub fn peer(&self, name: &str) -> Option<&PeerStatus> {
        self.status.peers.iter().find(|p| p.name == name)
    }
}

/// PIDs of a peer's running Kubo and IPFS Cluster daemons, by peer name.
pub type PidsOf<'a> = &'a dyn Fn(&str) -> (Option<i32>, Option<i32>);

/// The local side of each peer: PIDs (from `pids`), ports and identities.
pub fn local_peers(state: &ClusterState, pids: PidsOf<'_>) -> Vec<LocalPeer> {
    state
        .peers
        .iter()
        .map(|p| {
            let (kubo_pid, cluster_pid) = pids(&p.name);
            LocalPeer {
                name: p.name.clone(),
                kubo_pid,
                cluster_pid,
                ports: Some(p.ports),
                kubo_peer_id: p.kubo_peer_id.clone(),
                cluster_peer_id: p.cluster_peer_id.clone(),
            }
        })
        .collect()
}

/// The status of a probe round and its assessment, computed as in Kubernetes: every peer of the
/// state exists; peers whose daemons do not run yet make the cluster Progressing.
pub fn compute_status(
    spec: &IpfsClusterSpec,
    generation: u64,
    reports: &[PeerReport],
    assessment: &Assessment,
    peers: &[LocalPeer],
    previous: Option<&IpfsClusterStatus>,
    now: u64,
) -> IpfsClusterStatus {
    let stopped = peers.iter().filter(|p| p.stopped()).count();
    let rollout = (stopped > 0).then(|| format!("{stopped}/{} peers not running", peers.len()));
    let running = i32::try_from(peers.len() - stopped).unwrap_or(i32::MAX);
    reconcile::status::compute(&reconcile::status::Observed {
        generation: i64::try_from(generation).ok(),
        replicas: spec.replicas,
        paused: spec.paused,
        selector: String::new(),
        pods: running,
        rollout,
        upgrade: None,
        reports,
        assessment,
        problems: &[],
        previous,
        now,
    })
}

/// The probe targets of a cluster's peers.
pub fn targets(
    state: &ClusterState,
    process: &dyn Fn(&str, DaemonKind) -> ProcessState,
) -> Vec<PeerTarget> {
    state
        .peers
        .iter()
        .map(|p| PeerTarget {
            peer: p.name.clone(),
            kubo: Endpoint::new(p.kubo_api_url()),
            cluster: Endpoint::new(p.cluster_api_url()),
            kubo_process: process(&p.name, DaemonKind::Kubo),
            cluster_process: process(&p.name, DaemonKind::Cluster),
        })
        .collect()
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn short_id(id: &str) -> String {
    if id.len() > 14 {
        format!("…{}", &id[id.len() - 8..])
    } else if id.is_empty() {
        "-".to_owned()
    } else {
        id.to_owned()
    }
}

/// The readable table of `local status`.
pub fn format_table(status: &LocalStatus) -> String {
    let phase = status.status.phase.map(|p| format!("{p:?}"));
    let mut out = format!(
        "cluster {}  replicas {}  health {}{}  supervisor {}\n",
        status.name,
        status.peers.len(),
        opt(status.status.health_score),
        phase.map_or_else(String::new, |h| format!(" ({h})")),
        status
            .supervisor_pid
            .map_or_else(|| "not running".to_owned(), |p| format!("pid {p}")),
    );
    let header = [
        "PEER", "STATE", "SCORE", "PIDS", "API/REST", "KUBO", "CLUSTER", "SWARM", "PEERS",
        "PIN ERR", "RESTARTS", "PEER ID",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    let none = PeerStatus::default();
    for local in &status.peers {
        let p = status.peer(&local.name).unwrap_or(&none);
        table.push(peer_line(local, p));
    }

    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}", w = *w))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for p in &status.status.peers {
        if let Some(err) = &p.last_error {
            out.push_str(&format!("{}: {err}\n", p.name));
        }
    }
    let ready = status
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::conditions::READY);
    if let Some(ready) = ready {
        out.push_str(&format!("{}\n", ready.message));
    }
    out
}

/// One row of the table: `stopped` for a peer whose daemons do not run, else its state.
fn peer_line(local: &LocalPeer, p: &PeerStatus) -> Vec<String> {
    let state = if local.stopped() {
        "stopped".to_owned()
    } else {
        format!("{:?}", p.state)
    };
    vec![
        local.name.clone(),
        state,
        opt(p.score),
        format!("{}/{}", opt(local.kubo_pid), opt(local.cluster_pid)),
        local.ports.map_or_else(
            || "-".to_owned(),
            |ports| format!("{}/{}", ports.kubo_api, ports.cluster_rest),
        ),
        opt(p.kubo_version.clone()),
        opt(p
            .cluster_version
            .as_ref()
            .map(|v| v.split_once('+').map_or(v.as_str(), |(v, _)| v).to_owned())),
        opt(p.swarm_peers),
        opt(p.cluster_peers_seen),
        opt(p.pins_error),
        p.restarts.to_string(),
        short_id(&local.cluster_peer_id),
    ]
}

/// `local status [NAME]`: every named (or every) cluster under `state_root`: the running
/// supervisor's latest snapshot, or (with no supervisor) probed now.
pub async fn status(state_root: &Path, name: Option<&str>) -> Result<Vec<LocalStatus>, LocalError> {
    let names = match name {
        Some(n) => vec![n.to_owned()],
        None => cluster_names(state_root),
    };
    let mut all = Vec::new();
    for name in names {
        let paths = ClusterPaths::new(state_root, &name)?;
        let state = load_state(&paths)?.ok_or_else(|| LocalError::UnknownCluster {
            name: name.clone(),
            state_root: state_root.to_owned(),
        })?;
        all.push(probe_status(&paths, &state).await?);
    }
    Ok(all)
}

/// The supervisor's own snapshot file, if it wrote one (restart counts and healing history).
pub(super) fn supervisor_snapshot(paths: &ClusterPaths) -> Option<LocalStatus> {
    let text = std::fs::read_to_string(paths.status_file()).ok()?;
    serde_json::from_str(&text).ok()
}

async fn probe_status(
    paths: &ClusterPaths,
    state: &ClusterState,
) -> Result<LocalStatus, LocalError> {
    let pid_of = |peer: &str, kind: DaemonKind| {
        read_pid_file(&paths.peer(peer).pid_file(kind))
            .filter(|r| ownership(r) == Ownership::Ours)
            .map(|r| r.pid)
    };
    let process = |peer: &str, kind: DaemonKind| {
        if pid_of(peer, kind).is_some() {
            ProcessState::Running
        } else {
            ProcessState::Exited
        }
    };
    // A running supervisor probes every probeInterval from where the daemons run (which may be
    // an isolated network namespace): its snapshot is the status, with PIDs checked now.
    let supervisor_pid = super::lock::running_supervisor(paths);
    if let (Some(pid), Some(mut snapshot)) = (supervisor_pid, supervisor_snapshot(paths)) {
        snapshot.supervisor_pid = Some(pid);
        for row in &mut snapshot.peers {
            row.kubo_pid = pid_of(&row.name, DaemonKind::Kubo);
            row.cluster_pid = pid_of(&row.name, DaemonKind::Cluster);
        }
        return Ok(snapshot);
    }
    // No supervisor: probe now (report only: nothing here acts), restarts and healing steps
    // from the last supervisor's snapshot.
    let mut policy = super::heal::policy(&state.spec, state.generation)?;
    policy.auto_heal = false;
    let prober = Prober::new(Duration::from_secs(3))?;
    let reports = prober
        .round(&targets(state, &process), DEFAULT_CONCURRENCY)
        .await;
    let now = super::now_millis();
    let assessment = reconcile::assess(&policy, &reports, &ClusterHistory::default(), now);
    let pids = |peer: &str| {
        (
            pid_of(peer, DaemonKind::Kubo),
            pid_of(peer, DaemonKind::Cluster),
        )
    };
    let peers = local_peers(state, &pids);
    let mut status = compute_status(
        &state.spec,
        state.generation,
        &reports,
        &assessment,
        &peers,
        None,
        now,
    );
    if let Some(last) = supervisor_snapshot(paths) {
        for p in &mut status.peers {
            p.restarts = last.peer(&p.name).map_or(0, |l| l.restarts);
        }
        status.healing = last.status.healing;
    }
    Ok(LocalStatus {
        name: state.name.clone(),
        generation: state.generation,
        supervisor_pid,
        status,
        peers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ClusterPhase, PeerState};
    use crate::reconcile::connectivity::tests::mesh;

    fn running(name: &str) -> LocalPeer {
        LocalPeer {
            name: name.into(),
            kubo_pid: Some(100),
            cluster_pid: Some(101),
            ports: Some(PeerPorts::preferred(0)),
            cluster_peer_id: "12D3KooWAbCdEfGhIjKlMnOp".into(),
            ..LocalPeer::default()
        }
    }

    fn status_of(
        spec: &IpfsClusterSpec,
        reports: &[PeerReport],
        peers: &[LocalPeer],
    ) -> IpfsClusterStatus {
        let policy = super::super::heal::policy(spec, 1).expect("policy");
        let assessment = reconcile::assess(&policy, reports, &ClusterHistory::default(), 1_000);
        compute_status(spec, 1, reports, &assessment, peers, None, 1_000)
    }

    #[test]
    fn peer_states_are_those_of_the_kubernetes_runtime_not_strings() {
        // p0 has lost its swarm connections: reconnecting, which once read back as Unknown.
        let spec = IpfsClusterSpec {
            replicas: 2,
            ..IpfsClusterSpec::default()
        };
        let mut reports = mesh(2);
        if let Ok(kubo) = &mut reports[0].kubo {
            kubo.swarm_peers.clear();
        }
        let peers = [running("p0"), running("p1")];
        let s = status_of(&spec, &reports, &peers);
        assert_ne!(s.peers[0].state, PeerState::Unknown, "{:?}", s.peers[0]);
        assert_eq!(s.peers[1].state, PeerState::Healthy);
        // Healing off: a needed restart is withheld, and the peer still has a real state.
        let mut spec = spec;
        spec.health.auto_heal = false;
        let mut reports = mesh(2);
        reports[1].kubo_process = ProcessState::Exited;
        reports[1].kubo = Err(crate::reconcile::connectivity::tests::failure(
            crate::probe::report::FailureKind::Unreachable,
        ));
        let s = status_of(&spec, &reports, &peers);
        assert_eq!(s.peers[1].state, PeerState::Unhealthy, "{:?}", s.peers[1]);
    }

    #[test]
    fn the_table_has_one_aligned_line_per_peer_and_the_errors_below() {
        let spec = IpfsClusterSpec {
            replicas: 2,
            ..IpfsClusterSpec::default()
        };
        let reports = mesh(2);
        let stopped = LocalPeer {
            name: "p1".into(),
            ..LocalPeer::default()
        };
        let peers = [running("p0"), stopped];
        let mut status = status_of(&spec, &reports, &peers);
        status.peers[1].last_error = Some("Kubo: connection refused".into());
        let local = LocalStatus {
            name: "demo".into(),
            generation: 1,
            supervisor_pid: Some(42),
            status,
            peers: peers.to_vec(),
        };
        assert_eq!(local.status.phase, Some(ClusterPhase::Progressing));
        let table = format_table(&local);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("cluster demo") && lines[0].contains("pid 42"),
            "{table}"
        );
        assert!(lines[1].starts_with("PEER "), "{table}");
        let col = lines[1].find("STATE").expect("STATE column");
        assert_eq!(&lines[2][col..col + 7], "Healthy", "{table}");
        assert_eq!(&lines[3][col..col + 7], "stopped", "{table}");
        assert!(
            lines[2].contains("100/101") && lines[2].contains("5001/9094"),
            "{table}"
        );
        assert!(lines[2].contains("…IjKlMnOp"), "{table}");
        assert!(lines[3].contains("-/-"), "{table}");
        assert!(table.contains("p1: Kubo: connection refused"), "{table}");
    }

    #[test]
    fn status_json_uses_camel_case_fields() {
        let status = LocalStatus {
            name: "demo".into(),
            peers: vec![LocalPeer {
                name: "peer-0".into(),
                kubo_pid: Some(7),
                ..LocalPeer::default()
            }],
            ..LocalStatus::default()
        };
        let json = serde_json::to_value(&status).expect("json");
        assert_eq!(json["peers"][0]["kuboPid"], 7);
        assert!(json["supervisorPid"].is_null());
        let back: LocalStatus = serde_json::from_value(json).expect("back");
        assert_eq!(back, status);
    }
}
