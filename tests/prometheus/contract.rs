//! The names the operator's monitoring is written against: the metric families it exports and the
//! alerts of the rules file, with their severities. Rules, dashboard and runbooks may name nothing
//! else.

/// Every metric family (without `_total`/`_bucket`/`_sum`/`_count`), as the operator exports it.
pub const METRICS: &[&str] = &[
    "ipfs_kit_cluster_health_score",
    "ipfs_kit_cluster_phase",
    "ipfs_kit_cluster_peers_desired",
    "ipfs_kit_peer_up",
    "ipfs_kit_peer_score",
    "ipfs_kit_peer_state",
    "ipfs_kit_peer_info",
    "ipfs_kit_peer_swarm_peers",
    "ipfs_kit_peer_cluster_peers",
    "ipfs_kit_peer_pins",
    "ipfs_kit_peer_repo_size_bytes",
    "ipfs_kit_peer_storage_max_bytes",
    "ipfs_kit_peer_volume_capacity_bytes",
    "ipfs_kit_peer_received_bytes",
    "ipfs_kit_peer_sent_bytes",
    "ipfs_kit_peer_restarts",
    "ipfs_kit_peer_healing_budget_remaining",
    "ipfs_kit_healing_actions",
    "ipfs_kit_ipfspins",
    "ipfs_kit_probe_duration_seconds",
    "ipfs_kit_reconciles",
    "ipfs_kit_reconcile_errors",
    "ipfs_kit_reconcile_duration_seconds",
    "ipfs_kit_last_reconcile_timestamp_seconds",
    "ipfs_kit_steady_clusters",
    "ipfs_kit_pin_reconciles",
    "ipfs_kit_pin_reconcile_errors",
    "ipfs_kit_leader",
    "ipfs_kit_build_info",
    "ipfs_kit_dashboard_requests",
    "ipfs_kit_dashboard_request_duration_seconds",
];

/// The alerts (alertname, severity).
pub const ALERTS: &[(&str, &str)] = &[
    ("IpfsKitPeerDown", "critical"),
    ("IpfsKitClusterDegraded", "warning"),
    ("IpfsKitClusterUnhealthy", "critical"),
    ("IpfsKitHealingBudgetExhausted", "warning"),
    ("IpfsKitPinsInError", "warning"),
    ("IpfsKitPartition", "critical"),
    ("IpfsKitRepoNearStorageMax", "warning"),
    ("IpfsKitVolumeNearFull", "critical"),
    ("IpfsKitOperatorNotReconciling", "critical"),
    ("IpfsKitLeaderMissing", "critical"),
];

/// Where every `runbook_url` points (the chart's `monitoring.runbookBaseURL` default).
pub const RUNBOOK_BASE: &str =
    "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md";

/// The metric family a series name belongs to, if it is one of `METRICS`.
pub fn family(series: &str) -> Option<&'static str> {
    let candidates = [
        Some(series),
        series.strip_suffix("_total"),
        series.strip_suffix("_bucket"),
        series.strip_suffix("_sum"),
        series.strip_suffix("_count"),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|name| METRICS.iter().find(|m| **m == name).copied())
}

/// Every `ipfs_kit_*` name in a PromQL expression.
pub fn series_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("ipfs_kit_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // A name, not the end of a longer word (e.g. a label value).
        let before = rest[..at].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn family_and_series_names_read_promql() {
    assert_eq!(
        series_names(
            "histogram_quantile(0.9, sum by (le) (rate(ipfs_kit_reconcile_duration_seconds_bucket[1m]))) / ipfs_kit_peer_up{x=\"my_ipfs_kit_y\"}"
        ),
        [
            "ipfs_kit_reconcile_duration_seconds_bucket",
            "ipfs_kit_peer_up"
        ]
    );
    assert_eq!(
        family("ipfs_kit_reconcile_duration_seconds_bucket"),
        Some("ipfs_kit_reconcile_duration_seconds")
    );
    assert_eq!(
        family("ipfs_kit_healing_actions_total"),
        Some("ipfs_kit_healing_actions")
    );
    assert_eq!(family("ipfs_kit_peer_status"), None);
}
