//! Prometheus metrics, shared by the reconcilers and the dashboard (which serves `/metrics`).
//!
//! Peer gauges are set from each published status snapshot, never on a scrape; counters are
//! bumped by the runtimes as they reconcile and heal.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::api::{IpfsClusterStatus, PeerState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub cluster: String,
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PinLabels {
    pub cluster: String,
    pub peer: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HealingLabels {
    pub cluster: String,
    pub peer: String,
    /// `swarm_connect`, `restart_peer`, `give_up`.
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// A short, bounded error kind (never a free-text message).
    pub error: String,
}

/// Every metric the operator exports, prefixed `ipfs_kit_`.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub cluster_health_score: Family<ClusterLabels, Gauge>,
    pub peer_score: Family<PeerLabels, Gauge>,
    pub peer_up: Family<PeerLabels, Gauge>,
    pub peer_swarm_peers: Family<PeerLabels, Gauge>,
    pub peer_restarts: Family<PeerLabels, Gauge>,
    pub peer_pins: Family<PinLabels, Gauge>,
    pub peer_repo_size: Family<PeerLabels, Gauge>,
    pub peer_storage_max: Family<PeerLabels, Gauge>,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration_seconds: Histogram,
    pub healing_actions: Family<HealingLabels, Counter>,
    pub pin_reconciles: Counter,
    pub pin_reconcile_errors: Family<ErrorLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ipfs_kit");
        let m = Metrics {
            registry: Arc::new(Mutex::new(Registry::default())),
            cluster_health_score: Family::default(),
            peer_score: Family::default(),
            peer_up: Family::default(),
            peer_swarm_peers: Family::default(),
            peer_restarts: Family::default(),
            peer_pins: Family::default(),
            peer_repo_size: Family::default(),
            peer_storage_max: Family::default(),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration_seconds: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            healing_actions: Family::default(),
            pin_reconciles: Counter::default(),
            pin_reconcile_errors: Family::default(),
        };
        m.register_gauges(&mut registry);
        registry.register("reconciles", "Reconcile runs", m.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile runs that failed, by error kind",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile run",
            m.reconcile_duration_seconds.clone(),
        );
        registry.register(
            "healing_actions",
            "Healing actions decided, by cluster, peer and action",
            m.healing_actions.clone(),
        );
        registry.register(
            "pin_reconciles",
            "IpfsPin reconcile runs",
            m.pin_reconciles.clone(),
        );
        registry.register(
            "pin_reconcile_errors",
            "IpfsPin reconcile runs that failed, by error kind",
            m.pin_reconcile_errors.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }

    /// Registers the cluster and peer gauges (set from each status snapshot).
    fn register_gauges(&self, registry: &mut Registry) {
        registry.register(
            "cluster_health_score",
            "Health score of a cluster, 0-100",
            self.cluster_health_score.clone(),
        );
        registry.register(
            "peer_score",
            "Health score of a peer, 0-100",
            self.peer_score.clone(),
        );
        registry.register(
            "peer_up",
            "1 when the peer's Kubo and Cluster APIs both answered the last probe",
            self.peer_up.clone(),
        );
        registry.register(
            "peer_swarm_peers",
            "Kubo swarm connections of a peer",
            self.peer_swarm_peers.clone(),
        );
        registry.register(
            "peer_restarts",
            "Restarts of a peer recorded in status",
            self.peer_restarts.clone(),
        );
        registry.register(
            "peer_pins",
            "Pins of a peer by status",
            self.peer_pins.clone(),
        );
        registry.register_with_unit(
            "peer_repo_size",
            "Size of a peer's Kubo repository",
            Unit::Bytes,
            self.peer_repo_size.clone(),
        );
        registry.register_with_unit(
            "peer_storage_max",
            "The most a peer's Kubo repository may hold (Datastore.StorageMax); garbage \
             collection keeps the repository under it",
            Unit::Bytes,
            self.peer_storage_max.clone(),
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

    /// Sets the cluster and peer gauges from one cluster's status.
    pub fn observe_cluster(&self, cluster: &str, status: &IpfsClusterStatus) {
        let labels = ClusterLabels {
            cluster: cluster.to_string(),
        };
        self.cluster_health_score
            .get_or_create(&labels)
            .set(i64::from(status.health_score.unwrap_or(0)));
        for peer in &status.peers {
            let p = PeerLabels {
                cluster: cluster.to_string(),
                peer: peer.name.clone(),
            };
            self.peer_score
                .get_or_create(&p)
                .set(i64::from(peer.score.unwrap_or(0)));
            let up = matches!(peer.state, PeerState::Healthy | PeerState::Degraded);
            self.peer_up.get_or_create(&p).set(i64::from(up));
            self.peer_swarm_peers
                .get_or_create(&p)
                .set(i64::from(peer.swarm_peers.unwrap_or(0)));
            self.peer_restarts
                .get_or_create(&p)
                .set(i64::from(peer.restarts));
            // Kept at the last answer while Kubo does not answer.
            if let Some(size) = peer.repo_size {
                self.peer_repo_size.get_or_create(&p).set(size);
            }
            if let Some(max) = peer.storage_max {
                self.peer_storage_max.get_or_create(&p).set(max);
            }
            for (status, count) in [
                ("queued", peer.pins_queued),
                ("pinning", peer.pins_pinning),
                ("error", peer.pins_error),
            ] {
                let labels = PinLabels {
                    cluster: cluster.to_string(),
                    peer: peer.name.clone(),
                    status: status.to_string(),
                };
                self.peer_pins
                    .get_or_create(&labels)
                    .set(count.unwrap_or(0));
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peer_gauges_follow_status() {
        let metrics = Metrics::new();
        let status: IpfsClusterStatus = serde_json::from_value(json!({
            "healthScore": 70,
            "peers": [{"name": "demo-0", "state": "Healthy", "score": 90, "restarts": 2,
                       "swarmPeers": 4, "pinsError": 1, "repoSize": 1048576,
                       "storageMax": 9663676416_i64}]
        }))
        .expect("status");
        metrics.observe_cluster("demo", &status);
        let text = metrics.encode();
        assert!(
            text.contains("ipfs_kit_cluster_health_score{cluster=\"demo\"} 70"),
            "{text}"
        );
        assert!(
            text.contains("ipfs_kit_peer_score{cluster=\"demo\",peer=\"demo-0\"} 90"),
            "{text}"
        );
        assert!(
            text.contains("ipfs_kit_peer_up{cluster=\"demo\",peer=\"demo-0\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "ipfs_kit_peer_pins{cluster=\"demo\",peer=\"demo-0\",status=\"error\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ipfs_kit_peer_repo_size_bytes{cluster=\"demo\",peer=\"demo-0\"} 1048576"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ipfs_kit_peer_storage_max_bytes{cluster=\"demo\",peer=\"demo-0\"} 9663676416"
            ),
            "{text}"
        );
        assert!(text.contains("# EOF"), "{text}");
    }
}
