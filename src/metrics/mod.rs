//! The operator's Prometheus metrics, every name prefixed `ipfs_kit_` (the README's "Metrics"
//! table lists them all).
//!
//! Each process exports only what it is the source of ([`Exporter`]): the controller (`run`)
//! the reconcilers' series, the cluster and peer series only while it leads; a dashboard sidecar
//! only its own HTTP metrics; `local up` everything from one registry.
//!
//! - [`clusters`]: the cluster and peer series, encoded on each scrape from the latest reconciled
//!   state of each cluster, so that a deleted cluster or peer has no series;
//! - [`http`]: the dashboard's request counter and latency histogram (an axum middleware).

pub mod clusters;
pub mod http;
pub mod webhook;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::api::{IpfsCluster, IpfsPin};
pub use clusters::{ClusterKey, ClusterReport, healing_budgets, healing_labels};
pub use http::DashboardHttp;

/// Which process exports: it decides the series registered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// `ipfs-kit-operator run`: reconciler counters, probe latency, `leader`, and the cluster and
    /// peer series while it leads.
    Controller,
    /// The dashboard sidecar: its own HTTP metrics only.
    Dashboard,
    /// `local up`: the supervisor's series and its in-process dashboard's, in one registry.
    Local,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// A short, bounded error kind (never a free-text message).
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `kubo` or `cluster`.
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

/// A family of histograms that all have the same buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// How long one probe of one daemon's API took, by API (`kubo`, `cluster`).
pub type ProbeDurations = HistogramFamily<ApiLabels>;

/// Buckets of the latency histograms, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric a process may export; which are registered depends on its [`Exporter`]. Cheap
/// to clone (handles onto shared values).
#[derive(Clone)]
pub struct Metrics {
    exporter: Exporter,
    registry: Arc<Registry>,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration_seconds: Histogram,
    pub last_reconcile_timestamp_seconds: Gauge<f64, AtomicU64>,
    pub pin_reconciles: Counter,
    pub pin_reconcile_errors: Family<ErrorLabels, Counter>,
    pub probe_durations: ProbeDurations,
    pub leader: Gauge,
    /// IpfsClusters whose probe rounds run without reconciles (the controller only).
    pub steady_clusters: Gauge,
    pub dashboard: DashboardHttp,
    /// The `--alert-webhook` sender's counts (the reconciling process only).
    pub webhook: webhook::WebhookCounts,
    clusters: Arc<clusters::ClusterSeries>,
}

/// The controller's set (what `run` exports).
impl Default for Metrics {
    fn default() -> Self {
        Self::new(Exporter::Controller)
    }
}

impl Metrics {
    pub fn new(exporter: Exporter) -> Metrics {
        let mut m = Metrics {
            exporter,
            registry: Arc::new(Registry::default()),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration_seconds: latency_histogram(),
            last_reconcile_timestamp_seconds: Gauge::default(),
            pin_reconciles: Counter::default(),
            pin_reconcile_errors: Family::default(),
            probe_durations: Family::new_with_constructor(latency_histogram),
            leader: Gauge::default(),
            steady_clusters: Gauge::default(),
            dashboard: DashboardHttp::default(),
            webhook: webhook::WebhookCounts::default(),
            clusters: Arc::default(),
        };
        let mut registry = Registry::with_prefix("ipfs_kit");
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the label says which version of the operator runs",
            build_info,
        );
        if exporter != Exporter::Dashboard {
            m.register_reconciler(&mut registry);
            registry.register_collector(Box::new(m.clusters.clone()));
            registry.register_collector(Box::new(m.webhook.clone()));
        }
        if exporter == Exporter::Controller {
            registry.register(
                "steady_clusters",
                "IpfsClusters whose probe rounds run without a reconcile: the last reconcile had \
                 nothing to do, and the next comes when a round differs or after 5 minutes",
                m.steady_clusters.clone(),
            );
        }
        if exporter != Exporter::Controller {
            m.dashboard.register(&mut registry);
        }
        if exporter == Exporter::Local {
            // The supervisor is the one writer of its cluster.
            m.leader.set(1);
        }
        m.registry = Arc::new(registry);
        m
    }

    /// Which process this is the metrics of.
    pub fn exporter(&self) -> Exporter {
        self.exporter
    }

    /// Registers the reconcilers' own series (not per cluster).
    fn register_reconciler(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (always 1 locally and without leader \
             election), else 0",
            self.leader.clone(),
        );
        registry.register(
            "reconciles",
            "IpfsCluster reconcile runs",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed IpfsCluster reconcile runs, by the step that failed",
            self.reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one IpfsCluster reconcile run (locally: one probe round)",
            Unit::Seconds,
            self.reconcile_duration_seconds.clone(),
        );
        registry.register_with_unit(
            "last_reconcile_timestamp",
            "Unix time of the last successful IpfsCluster reconcile (locally: probe round)",
            Unit::Seconds,
            self.last_reconcile_timestamp_seconds.clone(),
        );
        registry.register(
            "pin_reconciles",
            "IpfsPin reconcile runs",
            self.pin_reconciles.clone(),
        );
        registry.register(
            "pin_reconcile_errors",
            "Failed IpfsPin reconcile runs, by error kind",
            self.pin_reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "probe_duration",
            "Duration of one probe of one daemon's API (kubo: Kubo RPC, cluster: IPFS Cluster \
             REST)",
            Unit::Seconds,
            self.probe_durations.clone(),
        );
    }

    /// Counts a failed IpfsCluster reconcile by the step that failed.
    pub fn count_error(&self, step: &'static str) {
        let labels = ErrorLabels {
            error: step.to_owned(),
        };
        self.reconcile_errors.get_or_create(&labels).inc();
    }

    /// Counts a failed IpfsPin reconcile by error kind.
    pub fn count_pin_error(&self, kind: &'static str) {
        let labels = ErrorLabels {
            error: kind.to_owned(),
        };
        self.pin_reconcile_errors.get_or_create(&labels).inc();
    }

    /// One reconcile run (locally: one probe round) that took `elapsed`; a successful one sets
    /// the last-reconcile time to now.
    pub fn reconciled(&self, elapsed: Duration, succeeded: bool) {
        self.reconcile_duration_seconds
            .observe(elapsed.as_secs_f64());
        if succeeded {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_reconcile_timestamp_seconds.set(now.as_secs_f64());
        }
    }

    /// Whether this process leads (the reconcilers run): on losing the lead, every cluster and
    /// peer series goes, since another process exports them now.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        if !leading {
            self.clusters.clear();
        }
    }

    /// The latest reconciled state of one cluster: its series follow it from the next scrape.
    pub fn report(&self, report: ClusterReport) {
        self.clusters.report(report);
    }

    /// The volatile figures of a cluster reported before (a steady probe round's).
    pub fn figures(&self, cluster: &ClusterKey, status: &crate::api::IpfsClusterStatus) {
        self.clusters.figures(cluster, status);
    }

    /// Counts one healing step (`action` as [`healing_labels`] names it) on `peer`.
    pub fn count_healing(&self, cluster: &ClusterKey, peer: &str, action: &'static str) {
        self.clusters.count_healing(cluster, peer, action);
    }

    /// A deleted cluster: every series of it (healing counters included) goes.
    pub fn forget_cluster(&self, cluster: &ClusterKey) {
        self.clusters.forget(cluster);
    }

    /// Exports only the clusters this watch cache still holds (a cluster deleted without the
    /// operator's cleanup loses its series too).
    pub fn track_clusters(&self, clusters: Store<IpfsCluster>) {
        self.clusters.track_clusters(clusters);
    }

    /// Counts the IpfsPins of this watch cache per cluster and phase (`ipfs_kit_ipfspins`).
    pub fn track_pins(&self, pins: Store<IpfsPin>) {
        self.clusters.track_pins(pins);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The exposition in the format `accept` prefers: OpenMetrics when it names
    /// `application/openmetrics-text` (as Prometheus does), else the Prometheus text format
    /// 0.0.4. Returns the content type and the body.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        let openmetrics = accept.is_some_and(|a| a.contains("application/openmetrics-text"));
        if openmetrics {
            return (OPENMETRICS_CONTENT_TYPE, self.encode());
        }
        let mut out = String::new();
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        (
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            out,
        )
    }
}

/// The content type of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` of any process: the exposition in the format the scraper asks for.
pub fn respond(metrics: &Metrics, headers: &axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let (content_type, body) = metrics.render(accept);
    ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests;
