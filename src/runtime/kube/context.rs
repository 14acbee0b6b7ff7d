//! What every IpfsCluster reconcile shares ([`Context`]): the settings, the API client and Event
//! recorder, the metrics, the typed IPFS client, the health engine's memory per cluster, the
//! watch caches of owned objects and what was last applied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};
use tracing::warn;

use super::applied::{AppliedObjects, Seen};
use super::backoff::ErrorBackoff;
use super::build;
use super::events::{EventType, Events};
use crate::api::IpfsCluster;
use crate::metrics::Metrics;
use crate::probe::{IpfsClient, ProberError};
use crate::reconcile::{ClusterHistory, UnixMillis};

/// Settings of one controller instance.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Watch only this namespace (`None`: all).
    pub namespace: Option<String>,
    /// IpfsClusters reconciled at the same time, at most.
    pub concurrency: u16,
    /// Probes in flight in one cluster's round, at most.
    pub probe_concurrency: usize,
    /// First retry delay after a failed reconcile (doubles per consecutive failure).
    pub error_backoff_base: Duration,
    /// Longest retry delay after failed reconciles.
    pub error_backoff_cap: Duration,
    /// Status is rewritten at least this often while probes run, to keep `lastProbe` and the
    /// volatile figures (bandwidth, repository size, pin counts) current.
    pub status_refresh: Duration,
    /// How the daemons are pinged between probe rounds.
    pub liveness: crate::probe::liveness::monitor::Settings,
    /// Name of this instance in Events (`reportingInstance`), e.g. the pod name.
    pub instance: String,
    /// How long a new or restarted peer may take to answer before it counts as failing (the
    /// health engine's `restart_timeout`). `None`: the engine's default (5 min).
    pub start_grace: Option<Duration>,
    /// Namespace of the operator's own pods: the peers' NetworkPolicy admits to their APIs the
    /// pods of this namespace labelled `ipfskit.io/api-access: operator`. `None` (unknown, e.g.
    /// run outside the cluster): only such pods of each IpfsCluster's own namespace.
    pub operator_namespace: Option<String>,
    /// The Kubernetes cluster's DNS domain, in the peers' DNS names (start script, healing).
    pub cluster_domain: String,
    /// The operator's own image, for the peers' `kubo-metrics` containers (`spec.metrics.kubo`).
    /// `None`: Kubo's metrics are not exposed.
    pub kubo_metrics_image: Option<String>,
    /// Where the health samples of the clusters go (sampled every probe interval while this
    /// instance leads; served on the metrics server's `/internal/history/{name}`).
    pub history: crate::history::History,
    /// The alerts' `for` durations and the `--alert-webhook` sender (shared by every
    /// leadership term of this process).
    pub alerts: crate::alerts::AlertSettings,
}

impl Settings {
    /// What the owned objects are built with, from these settings.
    pub fn build_environment(&self) -> build::Environment {
        build::Environment {
            operator_namespace: self.operator_namespace.clone(),
            cluster_domain: self.cluster_domain.clone(),
            kubo_metrics_image: self.kubo_metrics_image.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: None,
            concurrency: 8,
            probe_concurrency: crate::probe::DEFAULT_CONCURRENCY,
            error_backoff_base: Duration::from_secs(1),
            error_backoff_cap: Duration::from_secs(300),
            status_refresh: Duration::from_secs(60),
            liveness: crate::probe::liveness::monitor::Settings::default(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "ipfs-kit-operator".into()),
            start_grace: None,
            operator_namespace: None,
            cluster_domain: super::dns::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            kubo_metrics_image: None,
            history: crate::history::History::in_memory(),
            alerts: crate::alerts::AlertSettings::default(),
        }
    }
}

/// The history's name of a cluster: `namespace/name`.
pub fn history_key(cluster: &ObjectRef<IpfsCluster>) -> String {
    format!(
        "{}/{}",
        cluster.namespace.as_deref().unwrap_or_default(),
        cluster.name
    )
}

/// Timeout of the operator's own calls to a peer's APIs (healing, scale-in, pins); probes use
/// the cluster's `spec.health.probeTimeout`.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub events: Events,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The one client of the peers' Kubo RPC and Cluster REST APIs (probes and healing).
    pub ipfs: IpfsClient,
    /// The last probe round per cluster (rounds run once per probe interval).
    pub rounds: Arc<super::pacing::Rounds>,
    /// The liveness pings of each cluster's daemons, between rounds.
    pub pings: super::liveness::Pings,
    /// The probe rounds of the clusters in which nothing changes, between their reconciles.
    pub steady: super::steady::Steady,
    /// The health engine's memory per cluster, between rounds (in memory: a new leader starts
    /// with fresh budgets).
    histories: Mutex<HashMap<ObjectRef<IpfsCluster>, ClusterHistory>>,
    pub backoff: ErrorBackoff<ObjectRef<IpfsCluster>>,
    /// The watch caches of owned objects and pods.
    pub caches: OwnedCaches,
    /// What was last applied per cluster: unchanged objects are not applied again.
    pub applied: AppliedObjects<ObjectRef<IpfsCluster>>,
    /// Kubo garbage collections started and their outcomes, per peer.
    pub gc: crate::runtime::gc::GcRuns,
    /// The StatefulSet per cluster as the operator last wrote it.
    pub written: super::apply::Written,
    /// Each cluster's last full apply, which an idle reconcile need not repeat.
    pub settled: super::settled::Settled,
    /// When each cluster's generated Secret was last found in order.
    pub secrets_checked: super::secret::Checked,
    /// The latest status of each cluster, which the history's sampler reads every probe interval.
    pub latest: crate::history::Latest,
    /// The alert engine's state per cluster (this leadership term's; a new leader takes the
    /// firing alerts over from `status.alerts`).
    pub alerter: crate::alerts::Alerter,
    /// Per cluster and peer, the announce a peer was last restarted for (it is not restarted for
    /// the same one twice).
    announce_restarts: Mutex<HashMap<ObjectRef<IpfsCluster>, HashMap<String, String>>>,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        caches: OwnedCaches,
    ) -> Result<Self, ProberError> {
        let events = Events::new(&client, &settings.instance);
        let ipfs = IpfsClient::new()?;
        let pings = super::liveness::Pings::new(ipfs.clone(), settings.liveness);
        let rounds = Arc::new(super::pacing::Rounds::default());
        let latest = crate::history::Latest::default();
        let steady = super::steady::Steady::new(
            ipfs.clone(),
            metrics.clone(),
            latest.clone(),
            rounds.clone(),
            pings.trigger(),
        );
        Ok(Self {
            alerter: crate::alerts::Alerter::new(settings.alerts.clone()),
            backoff: ErrorBackoff::new(settings.error_backoff_base, settings.error_backoff_cap),
            client,
            events,
            settings,
            metrics,
            pings,
            ipfs,
            rounds,
            steady,
            histories: Mutex::new(HashMap::new()),
            caches,
            applied: AppliedObjects::default(),
            gc: crate::runtime::gc::GcRuns::default(),
            written: super::apply::Written::default(),
            settled: super::settled::Settled::default(),
            secrets_checked: super::secret::Checked::default(),
            latest,
            announce_restarts: Mutex::new(HashMap::new()),
        })
    }

    pub async fn event(&self, cluster: &IpfsCluster, type_: EventType, reason: &str, note: String) {
        self.events.publish(cluster, type_, reason, note).await;
    }

    /// The health engine's memory of `cluster` (empty for a cluster not seen before).
    pub fn history(&self, cluster: &ObjectRef<IpfsCluster>) -> ClusterHistory {
        self.histories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster)
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps `history` for the next round of `cluster`.
    pub fn remember(&self, cluster: ObjectRef<IpfsCluster>, history: ClusterHistory) {
        self.histories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cluster, history);
    }

    /// Forgets everything about a deleted cluster.
    pub fn forget(&self, cluster: &ObjectRef<IpfsCluster>) {
        self.histories
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cluster);
        self.applied.forget(cluster);
        self.written.forget(cluster);
        self.settled.forget(cluster);
        self.secrets_checked.forget(cluster);
        self.rounds.forget(cluster);
        self.steady.stop(cluster);
        self.pings.forget(cluster);
        let key = history_key(cluster);
        self.latest.forget(&key);
        self.settings.history.forget(&key);
        self.announce_restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cluster);
    }

    /// The announce `peer` of `cluster` was last restarted for, if any.
    pub fn announce_restarted(
        &self,
        cluster: &ObjectRef<IpfsCluster>,
        peer: &str,
    ) -> Option<String> {
        let restarts = self
            .announce_restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        restarts.get(cluster)?.get(peer).cloned()
    }

    /// Remembers that `peer` of `cluster` was restarted to announce `announce`.
    pub fn remember_announce_restart(
        &self,
        cluster: ObjectRef<IpfsCluster>,
        peer: &str,
        announce: String,
    ) {
        self.announce_restarts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cluster)
            .or_default()
            .insert(peer.to_owned(), announce);
    }
}

/// The controller's watch caches of what the IpfsClusters own, filled by the same watches that
/// trigger reconciles: a reconcile reads them instead of asking the API server. Metadata only
/// where the operator needs no more (Services, ConfigMaps, PodDisruptionBudgets,
/// NetworkPolicies); whole objects for StatefulSets (replicas, claim templates, status) and pods
/// (IPs, container states).
pub struct OwnedCaches {
    pub statefulsets: Store<StatefulSet>,
    pub pods: Store<Pod>,
    /// Which cached pods are whose (kept by the pod watch).
    pub pod_index: Arc<super::pod_index::PodIndex>,
    /// Whole Services: the per-peer ones' node ports and load balancer addresses are announced.
    pub services: Store<Service>,
    /// The nodes, without their image lists: a NodePort peer announces its node's ExternalIP.
    /// Not waited for (a node-less view only falls back to the pods' host IPs); empty when the
    /// operator watches one namespace only.
    pub nodes: Store<Node>,
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub pdbs: Store<PartialObjectMeta<PodDisruptionBudget>>,
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    /// The dashboard's request ConfigMaps (label `ipfskit.io/request-for`), whole.
    pub requests: Store<ConfigMap>,
}

/// How long a reconcile waits for the owned objects' watch caches to fill.
const CACHE_FILL_WAIT: Duration = Duration::from_secs(10);

impl OwnedCaches {
    /// Waits until every cache holds its first complete list (at once after that), at most
    /// [`CACHE_FILL_WAIT`]: a watch that cannot list (say, an RBAC rule missing) must not stall
    /// reconciles, which then read from the API server and report what it refuses.
    pub async fn ready(&self) {
        // An error means the controller is stopping (its watches are gone): nothing to wait for.
        let all = async {
            let _ = self.statefulsets.wait_until_ready().await;
            let _ = self.pods.wait_until_ready().await;
            let _ = self.services.wait_until_ready().await;
            let _ = self.config_maps.wait_until_ready().await;
            let _ = self.pdbs.wait_until_ready().await;
            let _ = self.network_policies.wait_until_ready().await;
            let _ = self.requests.wait_until_ready().await;
        };
        if tokio::time::timeout(CACHE_FILL_WAIT, all).await.is_err() {
            warn!(
                "the watch caches of owned objects are not filled after {}s: reading from the \
                 API server (can the operator list and watch them?)",
                CACHE_FILL_WAIT.as_secs()
            );
        }
    }

    /// Whether the pod cache holds its first complete list.
    pub fn pods_ready(&self) -> bool {
        futures::FutureExt::now_or_never(self.pods.wait_until_ready()).is_some_and(|r| r.is_ok())
    }

    /// The pods of IpfsCluster `cluster` in namespace `ns`.
    pub fn pods_of(&self, ns: &str, cluster: &str) -> Vec<Pod> {
        self.pod_index
            .pods_of(ns, cluster)
            .iter()
            .filter_map(|name| self.pods.get(&ObjectRef::new(name).within(ns)))
            .map(|p| Pod::clone(&p))
            .collect()
    }
}

/// Which version of object `name` in `ns` a watch cache holds (`None`: not there).
pub fn cached_version<K>(store: &Store<K>, ns: &str, name: &str) -> Option<Seen>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name).within(ns))
        .and_then(|o| Seen::of(o.meta()))
}

/// The wall clock, for the health engine.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The error of a step that failed on an API call: which cluster, what, which object.
#[derive(Debug, thiserror::Error)]
#[error("IpfsCluster {cluster}: {action} {kind} {name}: {source}")]
pub struct KubeCallError {
    pub cluster: String,
    pub action: &'static str,
    pub kind: String,
    pub name: String,
    #[source]
    pub source: Box<kube::Error>,
}

/// Wraps a failed API call on object `kind`/`name` of `cluster`.
pub fn kube_err(
    cluster: &str,
    action: &'static str,
    kind: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> KubeCallError {
    let cluster = cluster.to_owned();
    let kind = kind.to_owned();
    let name = name.to_owned();
    move |source| KubeCallError {
        cluster,
        action,
        kind,
        name,
        source: Box::new(source),
    }
}
