//! The status of a local cluster: what `local status` prints (a table, or JSON for scripts) and
//! what the supervisor keeps as its live snapshot (the seam for the in-process dashboard).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LocalError;
use super::heal::policy_from_spec;
use super::ports::PeerPorts;
use super::process::{Ownership, ownership};
use super::state::{
    ClusterPaths, ClusterState, DaemonKind, cluster_names, load_state, read_pid_file,
};
use crate::probe::report::{PeerReport, PinCounts, ProcessState};
use crate::probe::{DEFAULT_CONCURRENCY, Endpoint, PeerTarget, Prober};
use crate::reconcile::{self, Assessment, ClusterHistory, HealingEntry};

/// One peer as `local status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    pub name: String,
    /// PID of the Kubo daemon this tool started, when it runs.
    pub kubo_pid: Option<i32>,
    /// PID of the ipfs-cluster-service daemon this tool started, when it runs.
    pub cluster_pid: Option<i32>,
    pub ports: Option<PeerPorts>,
    pub kubo_peer_id: String,
    pub cluster_peer_id: String,
    pub kubo_version: Option<String>,
    pub cluster_version: Option<String>,
    /// Kubo swarm connections.
    pub swarm_peers: Option<usize>,
    /// Cluster peers this peer sees in `GET /peers` (itself included).
    pub cluster_peers: Option<usize>,
    /// Kubo repository size and bandwidth totals (bytes), from the last probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    pub pins: Option<PinCounts>,
    /// Health score 0-100 from the health engine.
    pub score: Option<u8>,
    /// `running`, `stopped`, `healthy`, `degraded`, `unhealthy`, ...
    pub state: String,
    /// Restarts by the supervisor since it started.
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// A whole local cluster as `local status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalStatus {
    pub name: String,
    pub generation: u64,
    pub replicas: i32,
    /// PID of the supervisor (`local up`) when one runs.
    pub supervisor_pid: Option<i32>,
    pub health_score: Option<u8>,
    pub health: Option<String>,
    pub reason: Option<String>,
    pub peers: Vec<PeerRow>,
    /// Recent healing steps, oldest first.
    pub healing: Vec<HealingEntry>,
}

/// PIDs of a peer's running Kubo and IPFS Cluster daemons, by peer name.
pub type PidsOf<'a> = &'a dyn Fn(&str) -> (Option<i32>, Option<i32>);

/// The rows of a probe round and its assessment. `pids` gives the running daemons' PIDs by peer
/// name; `restarts` the supervisor's restart counts.
pub fn rows(
    state: &ClusterState,
    reports: &[PeerReport],
    assessment: &Assessment,
    pids: PidsOf<'_>,
    restarts: &dyn Fn(&str) -> u32,
) -> Vec<PeerRow> {
    state
        .peers
        .iter()
        .map(|p| {
            let report = reports.iter().find(|r| r.peer == p.name);
            let kubo = report.and_then(|r| r.kubo.as_ref().ok());
            let cluster = report.and_then(|r| r.cluster.as_ref().ok());
            let score = assessment.health.peers.iter().find(|s| s.peer == p.name);
            let healing = assessment.decision.peer(&p.name);
            let (kubo_pid, cluster_pid) = pids(&p.name);
            let stopped = kubo_pid.is_none() && cluster_pid.is_none();
            let state = if stopped {
                "stopped".to_owned()
            } else {
                match (score, healing) {
                    (_, Some(h)) if h.state != reconcile::HealingState::Ok => {
                        h.state.label().replace('_', " ")
                    }
                    (Some(s), _) => s.level.as_str().to_owned(),
                    _ => "unknown".to_owned(),
                }
            };
            let last_error = report.and_then(|r| {
                r.kubo
                    .as_ref()
                    .err()
                    .map(|e| format!("Kubo: {}", e.message))
                    .or_else(|| {
                        r.cluster
                            .as_ref()
                            .err()
                            .map(|e| format!("IPFS Cluster: {}", e.message))
                    })
            });
            PeerRow {
                name: p.name.clone(),
                kubo_pid,
                cluster_pid,
                ports: Some(p.ports),
                kubo_peer_id: p.kubo_peer_id.clone(),
                cluster_peer_id: p.cluster_peer_id.clone(),
                kubo_version: kubo.map(|k| k.version.clone()),
                cluster_version: cluster.map(|c| c.version.clone()),
                swarm_peers: kubo.map(|k| k.swarm_peers.len()),
                cluster_peers: cluster.map(|c| c.peers_seen.len()),
                repo_size: kubo.map(|k| k.repo_size),
                bytes_in: kubo.map(|k| k.total_in),
                bytes_out: kubo.map(|k| k.total_out),
                pins: cluster.and_then(|c| c.pins.as_ref().ok().copied()),
                score: (!stopped).then(|| score.map(|s| s.score)).flatten(),
                state,
                restarts: restarts(&p.name),
                last_error: if stopped { None } else { last_error },
            }
        })
        .collect()
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
    let mut out = format!(
        "cluster {}  replicas {}  health {}{}  supervisor {}\n",
        status.name,
        status.replicas,
        opt(status.health_score),
        status
            .health
            .as_ref()
            .map_or_else(String::new, |h| format!(" ({h})")),
        status
            .supervisor_pid
            .map_or_else(|| "not running".to_owned(), |p| format!("pid {p}")),
    );
    let header = [
        "PEER", "STATE", "SCORE", "PIDS", "API/REST", "KUBO", "CLUSTER", "SWARM", "PEERS", "PINS",
        "RESTARTS", "PEER ID",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for p in &status.peers {
        let pins = p.pins.map_or_else(
            || "-".to_owned(),
            |c| {
                let mut s = c.pinned.to_string();
                if c.error > 0 {
                    s.push_str(&format!(" ({} err)", c.error));
                }
                s
            },
        );
        table.push(vec![
            p.name.clone(),
            p.state.clone(),
            opt(p.score),
            format!("{}/{}", opt(p.kubo_pid), opt(p.cluster_pid)),
            p.ports.map_or_else(
                || "-".to_owned(),
                |ports| format!("{}/{}", ports.kubo_api, ports.cluster_rest),
            ),
            opt(p.kubo_version.clone()),
            opt(p
                .cluster_version
                .as_ref()
                .map(|v| v.split_once('+').map_or(v.as_str(), |(v, _)| v).to_owned())),
            opt(p.swarm_peers),
            opt(p.cluster_peers),
            pins,
            p.restarts.to_string(),
            short_id(&p.cluster_peer_id),
        ]);
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
    for p in &status.peers {
        if let Some(err) = &p.last_error {
            out.push_str(&format!("{}: {err}\n", p.name));
        }
    }
    if let Some(reason) = &status.reason {
        out.push_str(&format!("{reason}\n"));
    }
    out
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
fn supervisor_snapshot(paths: &ClusterPaths) -> Option<LocalStatus> {
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
    let policy = policy_from_spec(&state.spec, state.generation)?;
    let prober = Prober::new(Duration::from_secs(3))?;
    let reports = prober
        .round(&targets(state, &process), DEFAULT_CONCURRENCY)
        .await;
    let assessment = reconcile::assess(
        &policy,
        &reports,
        &ClusterHistory::default(),
        super::now_millis(),
    );
    let snapshot = supervisor_snapshot(paths);
    let restarts = |peer: &str| {
        snapshot
            .as_ref()
            .and_then(|s| s.peers.iter().find(|p| p.name == peer))
            .map_or(0, |p| p.restarts)
    };
    let pids = |peer: &str| {
        (
            pid_of(peer, DaemonKind::Kubo),
            pid_of(peer, DaemonKind::Cluster),
        )
    };
    let peers = rows(state, &reports, &assessment, &pids, &restarts);
    let any_running = peers
        .iter()
        .any(|p| p.kubo_pid.is_some() || p.cluster_pid.is_some());
    Ok(LocalStatus {
        name: state.name.clone(),
        generation: state.generation,
        replicas: state.spec.replicas,
        supervisor_pid,
        health_score: any_running.then_some(assessment.health.score),
        health: any_running.then(|| assessment.health.level.as_str().to_owned()),
        reason: Some(if any_running {
            assessment.health.reason.clone()
        } else {
            "stopped: start it with `local up -f FILE`".to_owned()
        }),
        peers,
        healing: snapshot.map(|s| s.healing).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_one_aligned_line_per_peer_and_the_errors_below() {
        let status = LocalStatus {
            name: "demo".into(),
            generation: 1,
            replicas: 2,
            supervisor_pid: Some(42),
            health_score: Some(90),
            health: Some("healthy".into()),
            reason: Some("2 peers: 1 healthy, 1 unhealthy".into()),
            peers: vec![
                PeerRow {
                    name: "peer-0".into(),
                    kubo_pid: Some(100),
                    cluster_pid: Some(101),
                    ports: Some(PeerPorts::preferred(0)),
                    cluster_peer_id: "12D3KooWAbCdEfGhIjKlMnOp".into(),
                    kubo_version: Some("0.42.0".into()),
                    cluster_version: Some("1.1.6+git123".into()),
                    swarm_peers: Some(1),
                    cluster_peers: Some(2),
                    pins: Some(PinCounts {
                        pinned: 3,
                        error: 1,
                        ..PinCounts::default()
                    }),
                    score: Some(100),
                    state: "healthy".into(),
                    ..PeerRow::default()
                },
                PeerRow {
                    name: "peer-1".into(),
                    state: "stopped".into(),
                    restarts: 2,
                    last_error: Some("Kubo: connection refused".into()),
                    ..PeerRow::default()
                },
            ],
            healing: Vec::new(),
        };
        let table = format_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].contains("cluster demo") && lines[0].contains("pid 42"),
            "{table}"
        );
        assert!(lines[1].starts_with("PEER "), "{table}");
        let col = lines[1].find("STATE").expect("STATE column");
        assert_eq!(&lines[2][col..col + 7], "healthy", "{table}");
        assert_eq!(&lines[3][col..col + 7], "stopped", "{table}");
        assert!(
            lines[2].contains("100/101") && lines[2].contains("5001/9094"),
            "{table}"
        );
        assert!(
            lines[2].contains("1.1.6 ") && lines[2].contains("3 (1 err)"),
            "{table}"
        );
        assert!(lines[2].contains("…IjKlMnOp"), "{table}");
        assert!(lines[3].contains("-/-"), "{table}");
        assert_eq!(lines[4], "peer-1: Kubo: connection refused");
        assert_eq!(lines[5], "2 peers: 1 healthy, 1 unhealthy");
    }

    #[test]
    fn status_json_uses_camel_case_fields() {
        let status = LocalStatus {
            name: "demo".into(),
            peers: vec![PeerRow {
                name: "peer-0".into(),
                kubo_pid: Some(7),
                ..PeerRow::default()
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
