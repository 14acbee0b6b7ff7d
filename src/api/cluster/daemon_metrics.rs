//! The daemons' own Prometheus metrics (`spec.metrics`): Kubo's `/debug/metrics/prometheus`,
//! served by a `kubo-metrics` container in each peer's pod (Kubo serves it only on its RPC port,
//! which stays closed), and IPFS Cluster's own Prometheus endpoint.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Port of the `kubo-metrics` container (`GET /metrics`: Kubo's metrics, nothing else).
pub const KUBO_METRICS_PORT: i32 = 9401;
/// Port of IPFS Cluster's Prometheus endpoint (its documented default, 8888).
pub const CLUSTER_METRICS_PORT: i32 = 8888;

/// Which daemons expose their own Prometheus metrics in the peer pods (container ports
/// `kubo-metrics` 9401 and `cluster-metrics` 8888, path `/metrics`), for a PodMonitor or any
/// scraper. These are the daemons' own series; the operator's (`ipfs_kit_*`) are on its own
/// metrics endpoint either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    /// Serve Kubo's metrics (`/debug/metrics/prometheus`) on port 9401 of each peer pod, from a
    /// small `kubo-metrics` container (the operator's image) that forwards that one path and
    /// nothing else of the RPC API. Default true; needs the operator to know its own image
    /// (`--kubo-metrics-image`, set by the chart and `deploy/`), else no container is added.
    /// A change rolls the peers.
    #[serde(default = "default_true")]
    pub kubo: bool,

    /// Turn on IPFS Cluster's Prometheus endpoint (`metrics.enable_stats`) on port 8888 of each
    /// peer pod. Default false. A change rolls the peers.
    #[serde(default)]
    pub cluster: bool,
}

fn default_true() -> bool {
    true
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            kubo: true,
            cluster: false,
        }
    }
}
