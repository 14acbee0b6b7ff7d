//! The old toolkit's figures of `GET /metrics/realtime` (`system`, `backends`, `network`,
//! `performance`) and of `POST /health/check` (`metrics`), from the host sample and the
//! published status.

use schemars::JsonSchema;
use serde::Serialize;

use super::toolkit::{BackendHealth, ClusterService, Health, Libp2pSummary};
use crate::dashboard::HostMetrics;

/// `system` of `/metrics/realtime`: the host, from `/proc` and the filesystem of the state.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SystemFigures {
    /// Busy CPU percent (all cores) between the last two samples; `null` until there are two.
    pub cpu_percent: Option<f64>,
    /// Memory in use (total - available), percent.
    pub memory_percent: f64,
    /// Disk in use, percent of the filesystem that holds the state (locally) or `/`.
    pub disk_usage: f64,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
}

fn ratio_percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (used as f64 * 1000.0 / total as f64).round() / 10.0
}

pub fn system(host: &HostMetrics) -> SystemFigures {
    SystemFigures {
        cpu_percent: host.cpu_percent.map(|c| (c * 10.0).round() / 10.0),
        memory_percent: ratio_percent(host.memory_used_bytes, host.memory_total_bytes),
        disk_usage: ratio_percent(host.disk_used_bytes, host.disk_total_bytes),
        load_average: host.load_average,
    }
}

/// `backends` of `/metrics/realtime`: the daemons by health.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct BackendCounts {
    /// Daemons, two per peer.
    pub total: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub unhealthy: usize,
    /// Not probed yet, or starting.
    pub unknown: usize,
}

pub fn backend_counts(daemons: &[BackendHealth]) -> BackendCounts {
    let count = |h: Health| daemons.iter().filter(|d| d.health == h).count();
    BackendCounts {
        total: daemons.len(),
        healthy: count(Health::Healthy),
        degraded: count(Health::Degraded),
        unhealthy: count(Health::Unhealthy),
        unknown: count(Health::Unknown),
    }
}

/// `network` of `/metrics/realtime`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct NetworkFigures {
    /// As `cluster.peer_count` of `/status`.
    pub cluster_peers: usize,
    /// As `libp2p.peer_count` of `/status`.
    pub libp2p_peers: usize,
    /// As `libp2p.connected_peers` of `/status`.
    pub libp2p_connected: usize,
}

pub fn network(cluster: &ClusterService, libp2p: &Libp2pSummary) -> NetworkFigures {
    NetworkFigures {
        cluster_peers: cluster.peer_count,
        libp2p_peers: libp2p.peer_count,
        libp2p_connected: libp2p.connected_peers,
    }
}

/// `performance` of `/metrics/realtime`, each 0-100.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Performance {
    /// The operator's health score: the mean of the clusters' scores.
    pub health_score: Option<i32>,
    /// `libp2p.connectivity_ratio` in percent.
    pub network_connectivity: Option<f64>,
    /// 100 - the larger of CPU and memory percent.
    pub system_health: Option<f64>,
    /// The mean of `health_score` and `system_health` (whichever are known).
    pub overall_score: Option<f64>,
}

pub fn performance(
    score: Option<i32>,
    libp2p: &Libp2pSummary,
    system: Option<&SystemFigures>,
) -> Performance {
    let system_health = system.map(|s| {
        let busiest = s.cpu_percent.unwrap_or(0.0).max(s.memory_percent);
        ((100.0 - busiest).clamp(0.0, 100.0) * 10.0).round() / 10.0
    });
    let known: Vec<f64> = [score.map(f64::from), system_health]
        .into_iter()
        .flatten()
        .collect();
    let overall = (!known.is_empty())
        .then(|| (known.iter().sum::<f64>() / known.len() as f64 * 10.0).round() / 10.0);
    Performance {
        health_score: score,
        network_connectivity: libp2p
            .connectivity_ratio
            .map(|r| (r * 1000.0).round() / 10.0),
        system_health,
        overall_score: overall,
    }
}

/// `metrics` of `POST /health/check`.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct CheckMetrics {
    /// Seconds from the request to the answer: the probe round and its status reaching the
    /// dashboard.
    pub check_duration: f64,
    /// Daemons in `results`.
    pub backends_checked: usize,
    /// Those that are healthy.
    pub healthy_count: usize,
}

pub fn check_metrics(results: &[BackendHealth], seconds: f64) -> CheckMetrics {
    CheckMetrics {
        check_duration: (seconds * 1000.0).round() / 1000.0,
        backends_checked: results.len(),
        healthy_count: results
            .iter()
            .filter(|r| r.health == Health::Healthy)
            .count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::views::toolkit::{Libp2pStatus, Libp2pSummary};

    fn libp2p(ratio: Option<f64>) -> Libp2pSummary {
        Libp2pSummary {
            status: Libp2pStatus::Running,
            health: Some(90),
            peer_count: 2,
            connected_peers: 1,
            discovery_active: true,
            connectivity_ratio: ratio,
            connectivity_issues: Vec::new(),
            swarm_connections: 1,
        }
    }

    #[test]
    fn host_figures_become_the_toolkits_percentages_and_scores() {
        let host = HostMetrics {
            cpu_percent: Some(12.34),
            memory_used_bytes: 3,
            memory_total_bytes: 4,
            disk_used_bytes: 1,
            disk_total_bytes: 3,
            disk_path: "/".into(),
            load_average: [0.5, 0.25, 0.125],
            sampled_at: String::new(),
        };
        let system = system(&host);
        assert_eq!(system.cpu_percent, Some(12.3));
        assert_eq!((system.memory_percent, system.disk_usage), (75.0, 33.3));
        let perf = performance(Some(90), &libp2p(Some(0.5)), Some(&system));
        // 100 - max(12.3, 75) = 25; (90 + 25) / 2.
        assert_eq!(perf.system_health, Some(25.0));
        assert_eq!(perf.overall_score, Some(57.5));
        assert_eq!(perf.network_connectivity, Some(50.0));
        let unsampled = performance(None, &libp2p(None), None);
        assert_eq!(
            (unsampled.overall_score, unsampled.network_connectivity),
            (None, None)
        );
    }
}
