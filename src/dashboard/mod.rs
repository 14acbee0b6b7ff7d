//! The dashboard: an axum server that answers from reconciled status (never by probing on the
//! request path) and turns mutations into requests for the one writer, the reconciler.
//!
//! Routes keep the envelope of the toolkit it replaces: `{"success": true, "data": ...}`, errors
//! `{"success": false, "error": {"code", "message"}}` with the matching HTTP status.

pub mod auth;
mod backend;
pub mod kube;
mod routes;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::api::IpfsClusterStatus;
use crate::metrics::Metrics;

pub use auth::Token;
pub use backend::{BackendName, Daemon};
pub use routes::router;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 16 * 1024;
/// Health samples kept per cluster and per peer for `/history/{name}`.
pub const HISTORY_LEN: usize = 360;
/// Most log lines `/logs/{backend}?lines=N` returns.
pub const MAX_LOG_LINES: usize = 2000;

/// One cluster as the reconciler last saw it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEntry {
    /// The namespace in Kubernetes; `None` for a local cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    pub paused: bool,
    pub status: IpfsClusterStatus,
}

impl ClusterEntry {
    /// `namespace/name`, or `name` for a local cluster.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Host figures, sampled by the runtime in the background (never on a request).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostMetrics {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub load_average: [f64; 3],
}

/// Everything the dashboard serves, published by the reconciler after each round.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub clusters: Vec<ClusterEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<HostMetrics>,
    /// RFC 3339 time of the round that produced this snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// What a client asked for; the reconciler carries it out and the result shows in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    /// Increasing id, echoed to the client.
    pub id: u64,
    /// `start`, `stop`, `restart` or `probe`.
    pub action: ActionKind,
    /// The cluster (`namespace/name` in Kubernetes).
    pub cluster: String,
    /// One peer, or every peer of the cluster when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// One daemon of the peer, or both when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Daemon>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Start,
    Stop,
    Restart,
    /// An immediate probe round (`POST /health/check`).
    Probe,
}

/// One point of `/history/{name}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthSample {
    pub time: String,
    pub score: Option<i32>,
    pub state: String,
}

/// The dashboard's shared state: the latest snapshot, bounded history, and the channel to the
/// reconciler.
#[derive(Clone)]
pub struct Dashboard {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    history: Arc<Mutex<BTreeMap<String, VecDeque<HealthSample>>>>,
    actions: mpsc::Sender<ActionRequest>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    token: Option<Token>,
    auth_reads: bool,
    metrics: Metrics,
    status_cache: StatusCache,
}

/// The serialized answer of `GET /status` and the snapshot it was built from, so that it is
/// serialized once per published snapshot rather than once per request.
type StatusCache = Arc<Mutex<Option<(Arc<Snapshot>, Bytes)>>>;

/// The reconciler's side: publishes snapshots, receives action requests.
pub struct Publisher {
    snapshot: watch::Sender<Arc<Snapshot>>,
    history: Arc<Mutex<BTreeMap<String, VecDeque<HealthSample>>>>,
    metrics: Metrics,
}

impl Publisher {
    /// The metrics `/metrics` serves; runtimes bump their counters here.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Publishes a new snapshot and records a history sample per cluster and per peer.
    pub fn publish(&self, snapshot: Snapshot) {
        let time = snapshot.updated_at.clone().unwrap_or_default();
        for cluster in &snapshot.clusters {
            self.metrics
                .observe_cluster(&cluster.key(), &cluster.status);
        }
        if let Ok(mut history) = self.history.lock() {
            for cluster in &snapshot.clusters {
                let phase = cluster
                    .status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_default();
                push(
                    &mut history,
                    cluster.key(),
                    HealthSample {
                        time: time.clone(),
                        score: cluster.status.health_score,
                        state: phase,
                    },
                );
                for peer in &cluster.status.peers {
                    push(
                        &mut history,
                        format!("{}/{}", cluster.key(), peer.name),
                        HealthSample {
                            time: time.clone(),
                            score: peer.score,
                            state: format!("{:?}", peer.state),
                        },
                    );
                }
            }
        }
        self.snapshot.send_replace(Arc::new(snapshot));
    }
}

fn push(history: &mut BTreeMap<String, VecDeque<HealthSample>>, key: String, sample: HealthSample) {
    let samples = history.entry(key).or_default();
    if samples.len() == HISTORY_LEN {
        samples.pop_front();
    }
    samples.push_back(sample);
}

impl Dashboard {
    /// A dashboard and the publisher/receiver the reconciler keeps. Mutations need `token`; with
    /// `auth_reads` reads need it too.
    pub fn new(
        token: Option<Token>,
        auth_reads: bool,
    ) -> (Dashboard, Publisher, mpsc::Receiver<ActionRequest>) {
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (actions_tx, actions_rx) = mpsc::channel(64);
        let history = Arc::new(Mutex::new(BTreeMap::new()));
        let metrics = Metrics::new();
        let dashboard = Dashboard {
            snapshot: snapshot_rx,
            history: history.clone(),
            actions: actions_tx,
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            token,
            auth_reads,
            metrics: metrics.clone(),
            status_cache: StatusCache::default(),
        };
        let publisher = Publisher {
            snapshot: snapshot_tx,
            history,
            metrics,
        };
        (dashboard, publisher, actions_rx)
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The body `build` makes from `snapshot`, made at most once per published snapshot (two
    /// requests racing on a fresh snapshot may both build it; the answer is the same).
    fn status_body(
        &self,
        snapshot: &Arc<Snapshot>,
        build: impl FnOnce(&Snapshot) -> Bytes,
    ) -> Bytes {
        let cached = self.status_cache.lock().ok().and_then(|cache| {
            cache
                .as_ref()
                .filter(|(built_from, _)| Arc::ptr_eq(built_from, snapshot))
                .map(|(_, body)| body.clone())
        });
        if let Some(body) = cached {
            return body;
        }
        let body = build(snapshot);
        if let Ok(mut cache) = self.status_cache.lock() {
            *cache = Some((snapshot.clone(), body.clone()));
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_body_is_built_once_per_published_snapshot() {
        let (dashboard, publisher, _actions) = Dashboard::new(None, false);
        let builds = std::cell::Cell::new(0);
        let body = |d: &Dashboard| {
            d.status_body(&d.current(), |s| {
                builds.set(builds.get() + 1);
                Bytes::from(s.updated_at.clone().unwrap_or_default())
            })
        };
        publisher.publish(Snapshot {
            updated_at: Some("first".into()),
            ..Snapshot::default()
        });
        assert_eq!(body(&dashboard), "first");
        assert_eq!(body(&dashboard), "first");
        assert_eq!(builds.get(), 1, "a second request reuses the body");
        publisher.publish(Snapshot {
            updated_at: Some("second".into()),
            ..Snapshot::default()
        });
        assert_eq!(
            body(&dashboard),
            "second",
            "a new snapshot is never answered stale"
        );
        assert_eq!(builds.get(), 2);
    }
}
