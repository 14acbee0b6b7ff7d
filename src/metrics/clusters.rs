//! The cluster and peer series. They are not kept in metric families that only grow: each
//! cluster's latest reconciled state ([`ClusterReport`]) replaces the previous one, and the
//! series are encoded from those states on each scrape ([`ClusterSeries`], a collector). A peer
//! that left the status, and a cluster that was deleted ([`ClusterSeries::forget`]) or that the
//! watch cache no longer holds, have no series at the next scrape.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use kube::runtime::reflector::{ObjectRef, Store};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::api::{ClusterPhase, IpfsCluster, IpfsClusterStatus, IpfsPin, PeerState, PinPhase};
use crate::reconcile::{
    Action, Assessment, ClusterHistory, HealingAction, HealingEntry, RestartScope, UnixMillis,
};

/// A cluster: its namespace (`None` locally, where the label is left out) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterKey {
    pub namespace: Option<String>,
    pub name: String,
}

impl ClusterKey {
    /// An IpfsCluster of namespace `namespace`.
    pub fn kube(namespace: &str, name: &str) -> ClusterKey {
        ClusterKey {
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// A cluster of `local up`.
    pub fn local(name: &str) -> ClusterKey {
        ClusterKey {
            namespace: None,
            name: name.to_owned(),
        }
    }
}

/// What a runtime reports after reconciling a cluster.
pub struct ClusterReport<'a> {
    pub cluster: ClusterKey,
    /// `spec.replicas`.
    pub desired_peers: i32,
    pub status: &'a IpfsClusterStatus,
    /// Per peer, the size of the volume holding its Kubo repository, in bytes.
    pub volume_capacity: BTreeMap<String, u64>,
    /// Per peer, restarts left in the current hour.
    pub healing_budget: BTreeMap<String, u32>,
}

/// The label of a healing step in `ipfs_kit_healing_actions_total`: `swarm_connect`,
/// `restart_peer` (both daemons or the pod), `restart_kubo`, `restart_cluster`.
pub fn action_label(action: &Action) -> &'static str {
    match action {
        Action::SwarmConnect { .. } => "swarm_connect",
        Action::RestartPeer { scope, .. } => match scope {
            RestartScope::Both => "restart_peer",
            RestartScope::Kubo => "restart_kubo",
            RestartScope::Cluster => "restart_cluster",
        },
    }
}

/// The healing steps one assessed round decided, as `(peer, action)`: its actions, and
/// `give_up` for each peer given up since `before` (the history the round started from).
pub fn healing_labels(
    assessment: &Assessment,
    before: &ClusterHistory,
) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = assessment
        .decision
        .actions
        .iter()
        .map(|a| (a.peer().to_owned(), action_label(a)))
        .collect();
    let given_up_before = |e: &HealingEntry| {
        before
            .log
            .entries()
            .any(|b| b.time == e.time && b.peer == e.peer && b.action == e.action)
    };
    for entry in assessment.decision.history.log.entries() {
        if entry.action == HealingAction::GiveUp && !given_up_before(entry) {
            out.push((entry.peer.clone(), "give_up"));
        }
    }
    out
}

/// Per peer of `status`, the restarts the health engine may still make in the current hour:
/// `max_restarts_per_hour` minus the restarts `history` counts in the window.
pub fn healing_budgets(
    status: &IpfsClusterStatus,
    history: &ClusterHistory,
    max_restarts_per_hour: u32,
    now: UnixMillis,
) -> BTreeMap<String, u32> {
    status
        .peers
        .iter()
        .map(|p| {
            let used = history.restarts_in_window(&p.name, now);
            (p.name.clone(), max_restarts_per_hour.saturating_sub(used))
        })
        .collect()
}

/// One peer's figures, as the latest status has them.
#[derive(Clone, Debug, PartialEq)]
struct PeerFigures {
    name: String,
    up: bool,
    score: i64,
    state: PeerState,
    peer_id: String,
    kubo_version: String,
    cluster_version: String,
    swarm_peers: Option<i64>,
    cluster_peers: Option<i64>,
    /// pinned, queued, pinning, error.
    pins: [Option<i64>; 4],
    repo_size: Option<i64>,
    storage_max: Option<i64>,
    volume_capacity: Option<u64>,
    received: Option<i64>,
    sent: Option<i64>,
    restarts: i64,
    budget: Option<u32>,
}

const PIN_STATES: [&str; 4] = ["pinned", "queued", "pinning", "error"];

const CLUSTER_PHASES: [ClusterPhase; 7] = [
    ClusterPhase::Pending,
    ClusterPhase::Progressing,
    ClusterPhase::Healthy,
    ClusterPhase::Degraded,
    ClusterPhase::Unhealthy,
    ClusterPhase::Healing,
    ClusterPhase::Paused,
];

const PEER_STATES: [PeerState; 6] = [
    PeerState::Unknown,
    PeerState::Starting,
    PeerState::Healthy,
    PeerState::Degraded,
    PeerState::Unhealthy,
    PeerState::Restarting,
];

const PIN_PHASES: [PinPhase; 5] = [
    PinPhase::Pending,
    PinPhase::Pinning,
    PinPhase::Pinned,
    PinPhase::Degraded,
    PinPhase::Failed,
];

/// One cluster's figures, and the healing steps counted on its peers.
#[derive(Clone, Debug, Default, PartialEq)]
struct ClusterFigures {
    reported: bool,
    health_score: i64,
    phase: ClusterPhase,
    desired_peers: i64,
    peers: Vec<PeerFigures>,
    /// Per (peer, action), steps since the operator first saw the peer.
    healing: BTreeMap<(String, &'static str), u64>,
}

impl ClusterFigures {
    fn update(&mut self, report: &ClusterReport<'_>) {
        let status = report.status;
        self.reported = true;
        self.health_score = i64::from(status.health_score.unwrap_or(0));
        self.phase = status.phase.unwrap_or_default();
        self.desired_peers = i64::from(report.desired_peers);
        self.peers = status
            .peers
            .iter()
            .map(|p| PeerFigures {
                name: p.name.clone(),
                // The alert engine's IpfsKitPeerDown reads the same definition.
                up: crate::alerts::rules::peer_up(p),
                score: i64::from(p.score.unwrap_or(0)),
                state: p.state,
                peer_id: p.peer_id.clone().unwrap_or_default(),
                kubo_version: p.kubo_version.clone().unwrap_or_default(),
                cluster_version: p.cluster_version.clone().unwrap_or_default(),
                swarm_peers: p.swarm_peers.map(i64::from),
                cluster_peers: p.cluster_peers_seen.map(i64::from),
                pins: [p.pins_pinned, p.pins_queued, p.pins_pinning, p.pins_error],
                repo_size: p.repo_size,
                storage_max: p.storage_max,
                volume_capacity: report.volume_capacity.get(&p.name).copied(),
                received: p.bytes_in,
                sent: p.bytes_out,
                restarts: i64::from(p.restarts),
                budget: report.healing_budget.get(&p.name).copied(),
            })
            .collect();
        let peers = &self.peers;
        self.healing
            .retain(|(peer, _), _| peers.iter().any(|p| &p.name == peer));
    }
}

#[derive(Default)]
struct State {
    clusters: BTreeMap<ClusterKey, ClusterFigures>,
    /// When set, only the clusters this cache holds are exported.
    live: Option<Store<IpfsCluster>>,
    pins: Option<Store<IpfsPin>>,
}

impl State {
    fn is_live(&self, key: &ClusterKey) -> bool {
        match (&self.live, &key.namespace) {
            (Some(store), Some(ns)) => store
                .get(&ObjectRef::<IpfsCluster>::new(&key.name).within(ns))
                .is_some(),
            _ => true,
        }
    }
}

/// The latest state of every cluster, encoded as series on each scrape.
#[derive(Default)]
pub struct ClusterSeries {
    state: Mutex<State>,
}

impl fmt::Debug for ClusterSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSeries").finish_non_exhaustive()
    }
}

impl ClusterSeries {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The volatile figures of `status`'s peers (traffic totals, repository size, pin counts);
    /// the rest stays as last reported.
    pub fn figures(&self, cluster: &ClusterKey, status: &IpfsClusterStatus) {
        let mut state = self.lock();
        let Some(figures) = state.clusters.get_mut(cluster) else {
            return;
        };
        for p in &mut figures.peers {
            let Some(s) = status.peers.iter().find(|s| s.name == p.name) else {
                continue;
            };
            p.repo_size = s.repo_size;
            p.received = s.bytes_in;
            p.sent = s.bytes_out;
            p.pins[..3].copy_from_slice(&[s.pins_pinned, s.pins_queued, s.pins_pinning]);
        }
    }

    pub fn report(&self, report: ClusterReport<'_>) {
        let mut state = self.lock();
        let figures = state.clusters.entry(report.cluster.clone()).or_default();
        figures.update(&report);
    }

    pub fn count_healing(&self, cluster: &ClusterKey, peer: &str, action: &'static str) {
        let mut state = self.lock();
        let figures = state.clusters.entry(cluster.clone()).or_default();
        *figures
            .healing
            .entry((peer.to_owned(), action))
            .or_default() += 1;
    }

    pub fn forget(&self, cluster: &ClusterKey) {
        self.lock().clusters.remove(cluster);
    }

    /// Forgets every cluster and the caches (the reconcilers stopped).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.clusters.clear();
        state.live = None;
        state.pins = None;
    }

    pub fn track_clusters(&self, clusters: Store<IpfsCluster>) {
        self.lock().live = Some(clusters);
    }

    pub fn track_pins(&self, pins: Store<IpfsPin>) {
        self.lock().pins = Some(pins);
    }
}

/// Labels of one sample: `namespace` (when there is one), `cluster`, then the family's own.
type Labels = Vec<(&'static str, String)>;

fn cluster_labels(key: &ClusterKey) -> Labels {
    let mut labels = Vec::with_capacity(5);
    if let Some(ns) = &key.namespace {
        labels.push(("namespace", ns.clone()));
    }
    labels.push(("cluster", key.name.clone()));
    labels
}

fn with(mut labels: Labels, more: &[(&'static str, &str)]) -> Labels {
    labels.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    labels
}

/// One metric family: its descriptor and samples, written only when it has samples.
struct FamilyOut<M> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    samples: Vec<(Labels, M)>,
}

impl<M: EncodeMetric> FamilyOut<M> {
    fn new(name: &'static str, help: &'static str) -> Self {
        FamilyOut {
            name,
            help,
            unit: None,
            samples: Vec::new(),
        }
    }

    fn bytes(mut self) -> Self {
        self.unit = Some(Unit::Bytes);
        self
    }

    fn push(&mut self, labels: Labels, metric: M) {
        self.samples.push((labels, metric));
    }

    fn encode(self, encoder: &mut DescriptorEncoder<'_>, kind: MetricType) -> fmt::Result {
        if self.samples.is_empty() {
            return Ok(());
        }
        // Ended with a full stop, like the help of the registered metrics.
        let help = format!("{}.", self.help);
        let mut metric = encoder.encode_descriptor(self.name, &help, self.unit.as_ref(), kind)?;
        for (labels, value) in &self.samples {
            value.encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

type Gauges = FamilyOut<ConstGauge<i64>>;
type Counters = FamilyOut<ConstCounter<u64>>;

fn counter(value: i64) -> ConstCounter<u64> {
    ConstCounter::new(u64::try_from(value).unwrap_or(0))
}

/// 1 for `current`, 0 for every other value of `all`, one sample each.
fn one_hot<T: PartialEq + fmt::Debug>(
    out: &mut Gauges,
    base: &Labels,
    label: &'static str,
    all: &[T],
    current: &T,
) {
    for value in all {
        let labels = with(base.clone(), &[(label, &format!("{value:?}"))]);
        out.push(labels, ConstGauge::new(i64::from(value == current)));
    }
}

fn encode_cluster_families(state: &State, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut score = Gauges::new("cluster_health_score", "Health score of a cluster, 0-100");
    let mut phase = Gauges::new(
        "cluster_phase",
        "1 for the cluster's current phase, 0 for the others",
    );
    let mut desired = Gauges::new(
        "cluster_peers_desired",
        "Peers the spec asks for (replicas)",
    );
    for (key, figures) in exported(state) {
        let base = cluster_labels(key);
        score.push(base.clone(), ConstGauge::new(figures.health_score));
        one_hot(&mut phase, &base, "phase", &CLUSTER_PHASES, &figures.phase);
        desired.push(base, ConstGauge::new(figures.desired_peers));
    }
    score.encode(encoder, MetricType::Gauge)?;
    phase.encode(encoder, MetricType::Gauge)?;
    desired.encode(encoder, MetricType::Gauge)?;
    encode_ipfspins(state, encoder)
}

/// `ipfs_kit_ipfspins`: per exported cluster, its IpfsPins per phase (every phase, zeros too).
fn encode_ipfspins(state: &State, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let Some(pins) = &state.pins else {
        return Ok(());
    };
    let pins = pins.state();
    let mut out = Gauges::new("ipfspins", "IpfsPin objects of a cluster, by phase");
    for (key, _) in exported(state) {
        let Some(ns) = &key.namespace else {
            continue;
        };
        let base = cluster_labels(key);
        for phase in PIN_PHASES {
            let count = pins
                .iter()
                .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
                .filter(|p| p.spec.cluster_ref.name == key.name)
                .filter(|p| p.status.as_ref().and_then(|s| s.phase).unwrap_or_default() == phase)
                .count();
            let labels = with(base.clone(), &[("phase", &format!("{phase:?}"))]);
            out.push(
                labels,
                ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX)),
            );
        }
    }
    out.encode(encoder, MetricType::Gauge)
}

/// The clusters whose series are exported: reported, and still live.
fn exported(state: &State) -> impl Iterator<Item = (&ClusterKey, &ClusterFigures)> {
    state
        .clusters
        .iter()
        .filter(|(key, figures)| figures.reported && state.is_live(key))
}

/// Every peer of the exported clusters, with its base labels.
fn peers(state: &State) -> impl Iterator<Item = (Labels, &PeerFigures)> {
    exported(state).flat_map(|(key, figures)| {
        figures.peers.iter().map(move |p| {
            let labels = with(cluster_labels(key), &[("peer", &p.name)]);
            (labels, p)
        })
    })
}

fn encode_peer_gauges(state: &State, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut up = Gauges::new(
        "peer_up",
        "1 when the peer's Kubo and IPFS Cluster both answered the last probe",
    );
    let mut score = Gauges::new("peer_score", "Health score of a peer, 0-100");
    let mut states = Gauges::new(
        "peer_state",
        "1 for the peer's current state, 0 for the others",
    );
    let mut info = Gauges::new(
        "peer_info",
        "Always 1; the labels name the peer's identity and daemon versions",
    );
    let mut swarm = Gauges::new("peer_swarm_peers", "Kubo swarm connections of a peer");
    let mut cluster_peers = Gauges::new(
        "peer_cluster_peers",
        "IPFS Cluster peers this peer sees (itself included)",
    );
    let mut pins = Gauges::new("peer_pins", "Pins of a peer by state");
    let mut budget = Gauges::new(
        "peer_healing_budget_remaining",
        "Restarts left to the peer in the current hour (maxRestartsPerHour minus restarts in the \
         window)",
    );
    for (base, p) in peers(state) {
        up.push(base.clone(), ConstGauge::new(i64::from(p.up)));
        score.push(base.clone(), ConstGauge::new(p.score));
        one_hot(&mut states, &base, "state", &PEER_STATES, &p.state);
        let versions = [
            ("peer_id", p.peer_id.as_str()),
            ("kubo_version", p.kubo_version.as_str()),
            ("cluster_version", p.cluster_version.as_str()),
        ];
        info.push(with(base.clone(), &versions), ConstGauge::new(1));
        if let Some(n) = p.swarm_peers {
            swarm.push(base.clone(), ConstGauge::new(n));
        }
        if let Some(n) = p.cluster_peers {
            cluster_peers.push(base.clone(), ConstGauge::new(n));
        }
        for (state, count) in PIN_STATES.iter().zip(p.pins) {
            if let Some(count) = count {
                pins.push(
                    with(base.clone(), &[("state", state)]),
                    ConstGauge::new(count),
                );
            }
        }
        if let Some(left) = p.budget {
            budget.push(base, ConstGauge::new(i64::from(left)));
        }
    }
    for family in [up, score, states, info, swarm, cluster_peers, pins, budget] {
        family.encode(encoder, MetricType::Gauge)?;
    }
    Ok(())
}

fn encode_peer_bytes(state: &State, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut repo = Gauges::new("peer_repo_size", "Size of a peer's Kubo repository").bytes();
    let mut max = Gauges::new(
        "peer_storage_max",
        "The most a peer's Kubo repository may hold (Datastore.StorageMax); garbage collection \
         keeps the repository under it",
    )
    .bytes();
    let mut volume = Gauges::new(
        "peer_volume_capacity",
        "Size of the volume holding a peer's Kubo repository (the claim's request in Kubernetes, \
         the filesystem's size locally)",
    )
    .bytes();
    let mut received = Counters::new(
        "peer_received",
        "Bytes Kubo received (Kubo's own total: starts over when Kubo restarts)",
    )
    .bytes();
    let mut sent = Counters::new(
        "peer_sent",
        "Bytes Kubo sent (Kubo's own total: starts over when Kubo restarts)",
    )
    .bytes();
    for (base, p) in peers(state) {
        if let Some(v) = p.repo_size {
            repo.push(base.clone(), ConstGauge::new(v));
        }
        if let Some(v) = p.storage_max {
            max.push(base.clone(), ConstGauge::new(v));
        }
        if let Some(v) = p.volume_capacity {
            let v = i64::try_from(v).unwrap_or(i64::MAX);
            volume.push(base.clone(), ConstGauge::new(v));
        }
        if let Some(v) = p.received {
            received.push(base.clone(), counter(v));
        }
        if let Some(v) = p.sent {
            sent.push(base, counter(v));
        }
    }
    for family in [repo, max, volume] {
        family.encode(encoder, MetricType::Gauge)?;
    }
    received.encode(encoder, MetricType::Counter)?;
    sent.encode(encoder, MetricType::Counter)
}

fn encode_peer_counters(state: &State, encoder: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let mut restarts = Counters::new(
        "peer_restarts",
        "Restarts of a peer's daemons by the operator, as recorded in status",
    );
    for (base, p) in peers(state) {
        restarts.push(base, counter(p.restarts));
    }
    restarts.encode(encoder, MetricType::Counter)?;
    let mut healing = Counters::new(
        "healing_actions",
        "Healing steps decided, by peer and action",
    );
    for (key, figures) in exported(state) {
        for ((peer, action), count) in &figures.healing {
            let labels = with(cluster_labels(key), &[("peer", peer), ("action", action)]);
            healing.push(labels, ConstCounter::new(*count));
        }
    }
    healing.encode(encoder, MetricType::Counter)
}

impl Collector for ClusterSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let state = self.lock();
        encode_cluster_families(&state, &mut encoder)?;
        encode_peer_gauges(&state, &mut encoder)?;
        encode_peer_bytes(&state, &mut encoder)?;
        encode_peer_counters(&state, &mut encoder)
    }
}
