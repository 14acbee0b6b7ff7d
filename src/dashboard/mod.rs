//! The dashboard: an axum server that answers from reconciled status (never by probing on the
//! request path) and turns mutations into requests for the one writer, the reconciler.
//!
//! Routes keep the envelope of the toolkit it replaces: `{"success": true, "data": ...}`, errors
//! `{"success": false, "error": {"code", "message"}}` with the matching HTTP status.
//!
//! Layout: this file holds the shared state ([`Dashboard`], [`Publisher`], [`Snapshot`]);
//! `auth` the token and the [`Reader`]/[`Writer`] extractors; `views` the typed answers and
//! request bodies with their pure mappings from a snapshot; `error` the error answer and JSON
//! body extractor; `routes/` the handlers, one file per concern; `openapi` the document built
//! from the views; `kube`, `access`, `logs`, `host`, `history` the sources a runtime plugs in;
//! `clusters` a cluster's spec (shown, and its safe fields changed) and IpfsPins.

pub mod access;
pub mod auth;
mod backend;
pub mod clusters;
mod error;
mod history;
pub mod host;
pub mod kube;
pub mod logs;
pub mod openapi;
mod page;
pub mod requests;
mod routes;
pub mod views;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use schemars::JsonSchema;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::api::{IpfsClusterStatus, IpfsPinStatus};
use crate::metrics::{Exporter, Metrics};

pub use access::{AccessReview, KubeAccessReview};
pub use auth::{Reader, Token, TokenSource, Writer};
pub use backend::{BackendName, Daemon};
pub use history::{
    HistorySource, LEADER_ANNOTATION, LeaderEndpoint, LeaderHistory, LeaseRef, internal_router,
};
pub use host::HostSampler;
pub use logs::{LogError, LogSource};
pub use requests::{RecordError, RequestBoard, RequestRecorder};
pub use routes::router;

/// Largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 16 * 1024;
/// How often runtimes sample the host's figures for `/metrics/realtime`.
pub const HOST_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
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
    /// The object's uid in Kubernetes (its requests name it as their owner).
    #[serde(skip)]
    pub uid: Option<String>,
    /// The object's resourceVersion in Kubernetes (a health check waits for the one its round
    /// wrote).
    #[serde(skip)]
    pub resource_version: Option<String>,
    /// What the local supervisor knows of each peer's processes (empty in Kubernetes, where
    /// daemons run in pods).
    pub processes: Vec<PeerProcesses>,
}

/// A peer's daemon processes as the local supervisor knows them: their PIDs (when they run)
/// and the ports it gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerProcesses {
    pub peer: String,
    /// PID of the Kubo daemon the supervisor started, while it runs.
    pub kubo_pid: Option<i32>,
    /// PID of the ipfs-cluster-service daemon the supervisor started, while it runs.
    pub cluster_pid: Option<i32>,
    /// The ports the supervisor gave its daemons (`null` when not known).
    pub ports: Option<ProcessPorts>,
}

/// The ports of a local peer's daemons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessPorts {
    /// Kubo RPC API.
    pub kubo_api: u16,
    /// Kubo gateway.
    pub kubo_gateway: u16,
    /// Kubo libp2p swarm.
    pub kubo_swarm: u16,
    /// IPFS Cluster REST API.
    pub cluster_api: u16,
    /// IPFS Cluster IPFS-proxy API.
    pub cluster_proxy: u16,
    /// IPFS Cluster libp2p.
    pub cluster_swarm: u16,
    /// IPFS Cluster pinning-service API.
    pub cluster_pinsvc: u16,
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

/// One IpfsPin as the reconciler last saw it (Kubernetes only).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PinEntry {
    pub namespace: String,
    pub name: String,
    /// The IpfsCluster (`spec.clusterRef.name`, same namespace).
    pub cluster: String,
    pub cid: String,
    pub status: IpfsPinStatus,
}

/// Host figures, sampled in the background by a [`HostSampler`] (never on a request).
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostMetrics {
    /// Busy CPU percent (all cores) since the previous sample; `None` until there are two.
    pub cpu_percent: Option<f64>,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    /// The filesystem the disk figures are of (the state directory locally, `/` otherwise).
    pub disk_path: String,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
    /// RFC 3339 time of the sample.
    pub sampled_at: String,
}

/// Kubo's bandwidth of one peer between the last two published rounds, in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRates {
    pub bytes_in_per_second: f64,
    pub bytes_out_per_second: f64,
}

/// Last bandwidth totals and the rates computed from them, per `cluster/peer`.
#[derive(Default)]
struct Bandwidth {
    totals: BTreeMap<String, (std::time::Instant, i64, i64)>,
    rates: BTreeMap<String, PeerRates>,
}

/// Everything the dashboard serves, published by the reconciler after each round.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub clusters: Vec<ClusterEntry>,
    /// IpfsPins, sorted by namespace and name.
    pub pins: Vec<PinEntry>,
    /// RFC 3339 time of the round that produced this snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

pub use crate::api::request::{ActionKind, ActionRequest, RequestRecord, RequestState};

pub use crate::history::HealthSample;

/// The dashboard's shared state: the latest snapshot, where the history comes from, where
/// requests are recorded and what became of them.
#[derive(Clone)]
pub struct Dashboard {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    history: HistorySource,
    /// Where ranges older than the history are read (`--prometheus-url`).
    prometheus: Option<Arc<crate::history::prometheus::PrometheusRange>>,
    recorder: Arc<dyn RequestRecorder>,
    requests: RequestBoard,
    next_id: Arc<std::sync::atomic::AtomicU64>,
    token: Option<TokenSource>,
    auth_reads: bool,
    metrics: Metrics,
    host: Arc<RwLock<Option<HostMetrics>>>,
    bandwidth: Arc<Mutex<Bandwidth>>,
    logs: Option<Arc<dyn LogSource>>,
    review: Option<Arc<dyn AccessReview>>,
    /// Where the clusters' specs are read and changed (`/clusters/{name}/spec`).
    specs: Option<Arc<dyn clusters::SpecStore>>,
    status_cache: StatusCache,
}

/// The serialized answer of `GET /status` and the snapshot it was built from, so that it is
/// serialized once per published snapshot rather than once per request.
type StatusCache = Arc<Mutex<Option<(Arc<Snapshot>, Bytes)>>>;

/// The local reconciler's side of the requests: the channel they arrive on and the board on
/// which it tells what became of each.
pub struct Requests {
    pub receiver: mpsc::Receiver<ActionRequest>,
    pub board: RequestBoard,
}

impl Requests {
    /// The next request, `None` once every dashboard is gone.
    pub async fn recv(&mut self) -> Option<ActionRequest> {
        self.receiver.recv().await
    }
}

/// The reconciler's side: publishes snapshots.
pub struct Publisher {
    snapshot: watch::Sender<Arc<Snapshot>>,
    host: Arc<RwLock<Option<HostMetrics>>>,
    bandwidth: Arc<Mutex<Bandwidth>>,
}

impl Publisher {
    /// A sampler of this host's figures for `/metrics/realtime`; disk figures are of the
    /// filesystem holding `disk_path`. Run it with [`HostSampler::run`].
    pub fn host_sampler(&self, disk_path: impl Into<std::path::PathBuf>) -> HostSampler {
        HostSampler::new(disk_path.into(), self.host.clone())
    }

    /// Publishes a new snapshot. (The history is sampled on a clock, not here: see
    /// [`crate::history::sampler`].)
    pub fn publish(&self, snapshot: Snapshot) {
        self.update_rates(&snapshot);
        self.snapshot.send_replace(Arc::new(snapshot));
    }

    /// Bandwidth rates from the change of each peer's totals since the previous snapshot that
    /// had them. A total that went down (the daemon restarted) starts over without a rate.
    fn update_rates(&self, snapshot: &Snapshot) {
        let Ok(mut bw) = self.bandwidth.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        let mut seen = Vec::new();
        for cluster in &snapshot.clusters {
            for peer in &cluster.status.peers {
                let key = format!("{}/{}", cluster.key(), peer.name);
                let (Some(bytes_in), Some(bytes_out)) = (peer.bytes_in, peer.bytes_out) else {
                    continue;
                };
                let previous = bw.totals.insert(key.clone(), (now, bytes_in, bytes_out));
                match previous {
                    Some((then, last_in, last_out))
                        if bytes_in >= last_in && bytes_out >= last_out =>
                    {
                        let secs = now.duration_since(then).as_secs_f64();
                        if secs >= 0.05 {
                            let rates = PeerRates {
                                bytes_in_per_second: (bytes_in - last_in) as f64 / secs,
                                bytes_out_per_second: (bytes_out - last_out) as f64 / secs,
                            };
                            bw.rates.insert(key.clone(), rates);
                        }
                    }
                    _ => {
                        bw.rates.remove(&key);
                    }
                }
                seen.push(key);
            }
        }
        // Peers that are gone (or no longer report totals) drop out.
        bw.totals.retain(|k, _| seen.contains(k));
        bw.rates.retain(|k, _| seen.contains(k));
    }
}

impl Dashboard {
    /// A dashboard and the publisher and requests the (local) reconciler keeps. Mutations need
    /// `token`; with `auth_reads` reads need it too.
    pub fn new(token: Option<Token>, auth_reads: bool) -> (Dashboard, Publisher, Requests) {
        let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (actions_tx, actions_rx) = mpsc::channel(64);
        let board = RequestBoard::default();
        let metrics = Metrics::new(Exporter::Dashboard);
        let host = Arc::new(RwLock::new(None));
        let bandwidth = Arc::new(Mutex::new(Bandwidth::default()));
        let dashboard = Dashboard {
            snapshot: snapshot_rx,
            history: HistorySource::default(),
            prometheus: None,
            recorder: Arc::new(requests::ChannelRecorder(actions_tx)),
            requests: board.clone(),
            next_id: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            token: token.map(TokenSource::from),
            auth_reads,
            metrics,
            host: host.clone(),
            bandwidth: bandwidth.clone(),
            logs: None,
            review: None,
            specs: None,
            status_cache: StatusCache::default(),
        };
        let publisher = Publisher {
            snapshot: snapshot_tx,
            host,
            bandwidth,
        };
        let requests = Requests {
            receiver: actions_rx,
            board,
        };
        (dashboard, publisher, requests)
    }

    /// Records requests with `recorder` instead of the channel [`Dashboard::new`] returns;
    /// `board` is where what becomes of them shows.
    pub fn with_requests(
        mut self,
        recorder: Arc<dyn RequestRecorder>,
        board: RequestBoard,
    ) -> Dashboard {
        self.recorder = recorder;
        self.requests = board;
        self
    }

    /// Serves `metrics` on `/metrics` (and counts its requests there) instead of a dashboard's
    /// own HTTP metrics only: `local up` serves its supervisor's series from the same registry.
    pub fn with_metrics(mut self, metrics: Metrics) -> Dashboard {
        self.metrics = metrics;
        self
    }

    /// Reads the token from `path` at each check instead (see [`TokenSource`]).
    pub fn with_token_file(mut self, path: &std::path::Path) -> Dashboard {
        self.token = Some(TokenSource::File(path.to_owned()));
        self
    }

    /// Serves `/logs/{backend}` from `source` (without one, that route answers 501).
    pub fn with_logs(mut self, source: Arc<dyn LogSource>) -> Dashboard {
        self.logs = Some(source);
        self
    }

    /// Serves `/history/{name}` from `source` (without one: an empty in-memory history, which
    /// answers 404 for every name).
    pub fn with_history(mut self, source: HistorySource) -> Dashboard {
        self.history = source;
        self
    }

    /// Reads `/history/{name}?since=` ranges older than the recorded samples from `prometheus`.
    pub fn with_prometheus(
        mut self,
        prometheus: crate::history::prometheus::PrometheusRange,
    ) -> Dashboard {
        self.prometheus = Some(Arc::new(prometheus));
        self
    }

    /// Also accepts Kubernetes bearer tokens that `review` vouches for, with the rights RBAC
    /// gives them on ipfsclusters.
    pub fn with_access_review(mut self, review: Arc<dyn AccessReview>) -> Dashboard {
        self.review = Some(review);
        self
    }

    /// Serves `/clusters/{name}/spec` from `store` (without one, that route answers 501).
    pub fn with_specs(mut self, store: Arc<dyn clusters::SpecStore>) -> Dashboard {
        self.specs = Some(store);
        self
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

#[cfg(test)]
mod wire_tests;
