//! The IpfsCluster controller: a kube-rs `Controller` whose reconcile is a pipeline of small
//! steps: build the owned objects (pure, [`super::build`]) -> apply them (server-side apply, one
//! field manager, owner references, orphan cleanup) -> observe the pods and probe the peers ->
//! let the health engine decide ([`crate::reconcile`]) -> carry out its healing actions -> write
//! the status when it changed ([`super::status`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::applied::{AppliedObjects, Seen, body_hash};
use super::apply::{FIELD_MANAGER, apply, delete_all, orphans};
use super::backoff::ErrorBackoff;
use super::build::{
    self, BuildError, CLUSTER_LABEL, CLUSTER_VOLUME, Children, KUBO_VOLUME, MANAGED_BY, Names,
};
use super::status::{self, Observed};
use crate::api::cluster::{CLUSTER_REST_PORT, KUBO_RPC_PORT, KUBO_SWARM_PORT};
use crate::api::validation::parse_storage_size;
use crate::api::{ACTION_REQUEST_ANNOTATION, IpfsCluster, IpfsClusterStatus};
use crate::probe::report::{FailureKind, PeerReport, ProbeFailure, ProcessState};
use crate::probe::{Endpoint, PeerTarget, Prober};
use crate::reconcile::{self, ClusterHistory, Consensus, HealthPolicy, UnixMillis};

/// Finalizer the operator puts on every IpfsCluster it manages.
pub const FINALIZER: &str = "ipfskit.io/cleanup";

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
    /// Status is rewritten at least this often while probes run, to keep `lastProbe` current.
    pub status_refresh: Duration,
    /// Name of this instance in Events (`reportingInstance`), e.g. the pod name.
    pub instance: String,
    /// How long a new or restarted peer may take to answer before it counts as failing (the
    /// health engine's `restart_timeout`). `None`: the engine's default (5 min).
    pub start_grace: Option<Duration>,
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
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| "ipfs-kit-operator".into()),
            start_grace: None,
        }
    }
}

/// Why a reconcile failed. Every message names the IpfsCluster and the object or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("IpfsCluster {cluster}: {action} {kind} {name}: {source}")]
    Kube {
        cluster: String,
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("IpfsCluster {cluster}: Secret {name} key `{key}` {problem}")]
    Secret {
        cluster: String,
        name: String,
        key: String,
        problem: String,
    },
    #[error("generating a cluster secret: reading /dev/urandom: {0}")]
    Random(#[source] std::io::Error),
    #[error("building the probe client: {0}")]
    Prober(#[from] crate::probe::client::ProberError),
    #[error("IpfsCluster {0} has no namespace")]
    NoNamespace(String),
    #[error("finalizer of IpfsCluster: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// Short machine label (metrics, Event reasons).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Build(_) => "build",
            Self::Kube { .. } => "kube_api",
            Self::Secret { .. } => "secret",
            Self::Random(_) => "random",
            Self::Prober(_) => "prober",
            Self::NoNamespace(_) => "no_namespace",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

fn kube_err(
    cluster: &str,
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let cluster = cluster.to_owned();
    let name = name.to_owned();
    move |source| Error::Kube {
        cluster,
        action,
        kind,
        name,
        source: Box::new(source),
    }
}

/// The operator's Prometheus metrics (shared with the dashboard).
pub use crate::metrics::Metrics;

fn count_error(metrics: &Metrics, label: &'static str) {
    metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ErrorLabels {
            error: label.to_owned(),
        })
        .inc();
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// HTTP client for healing calls (swarm connect, peer removal) to pod IPs.
    http: reqwest::Client,
    /// Probers by timeout (each cluster chooses its probe timeout).
    probers: Mutex<HashMap<Duration, Prober>>,
    /// The health engine's memory per cluster, between rounds (in memory: a new leader starts
    /// with fresh budgets).
    histories: Mutex<HashMap<ObjectRef<IpfsCluster>, ClusterHistory>>,
    backoff: ErrorBackoff<ObjectRef<IpfsCluster>>,
    /// The watch caches of owned objects and pods.
    caches: OwnedCaches,
    /// What was last applied per cluster: unchanged objects are not applied again.
    applied: AppliedObjects<ObjectRef<IpfsCluster>>,
}

/// The controller's watch caches of what the IpfsClusters own, filled by the same watches that
/// trigger reconciles: a reconcile reads them instead of asking the API server. Metadata only
/// where the operator needs no more (Services, ConfigMaps, PodDisruptionBudgets,
/// NetworkPolicies); whole objects for StatefulSets (replicas, claim templates, status) and pods
/// (IPs, container states).
pub struct OwnedCaches {
    statefulsets: Store<StatefulSet>,
    pods: Store<Pod>,
    services: Store<PartialObjectMeta<Service>>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pdbs: Store<PartialObjectMeta<PodDisruptionBudget>>,
    network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
}

impl OwnedCaches {
    /// Waits until every cache holds its first complete list (at once after that), at most
    /// [`CACHE_FILL_WAIT`]: a watch that cannot list (say, an RBAC rule missing) must not stall
    /// reconciles, which then read from the API server and report what it refuses.
    async fn ready(&self) {
        // An error means the controller is stopping (its watches are gone): nothing to wait for.
        let all = async {
            let _ = self.statefulsets.wait_until_ready().await;
            let _ = self.pods.wait_until_ready().await;
            let _ = self.services.wait_until_ready().await;
            let _ = self.config_maps.wait_until_ready().await;
            let _ = self.pdbs.wait_until_ready().await;
            let _ = self.network_policies.wait_until_ready().await;
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
    fn pods_ready(&self) -> bool {
        futures::FutureExt::now_or_never(self.pods.wait_until_ready()).is_some_and(|r| r.is_ok())
    }

    /// The pods of IpfsCluster `cluster` in namespace `ns`.
    fn pods_of(&self, ns: &str, cluster: &str) -> Vec<Pod> {
        let selector = build::selector_labels(cluster);
        self.pods
            .state()
            .iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(ns)
                    && selector
                        .iter()
                        .all(|(k, v)| p.labels().get(k).is_some_and(|l| l == v))
            })
            .map(|p| Pod::clone(p))
            .collect()
    }
}

/// How long a reconcile waits for the owned objects' watch caches to fill.
const CACHE_FILL_WAIT: Duration = Duration::from_secs(10);

/// Which version of object `name` in `ns` a watch cache holds (`None`: not there).
fn cached_version<K>(store: &Store<PartialObjectMeta<K>>, ns: &str, name: &str) -> Option<Seen>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name).within(ns))
        .and_then(|o| Seen::of(&o.metadata))
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        caches: OwnedCaches,
    ) -> Result<Self, Error> {
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .map_err(|e| Error::Prober(e.into()))?;
        let recorder = recorder(&client, &settings.instance);
        Ok(Self {
            backoff: ErrorBackoff::new(settings.error_backoff_base, settings.error_backoff_cap),
            client,
            recorder,
            settings,
            metrics,
            http,
            probers: Mutex::new(HashMap::new()),
            histories: Mutex::new(HashMap::new()),
            caches,
            applied: AppliedObjects::default(),
        })
    }

    fn prober(&self, timeout: Duration) -> Result<Prober, Error> {
        let mut probers = self.probers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = probers.get(&timeout) {
            return Ok(p.clone());
        }
        let p = Prober::new(timeout)?;
        probers.insert(timeout, p.clone());
        Ok(p)
    }

    async fn event(&self, cluster: &IpfsCluster, type_: EventType, reason: &str, note: String) {
        publish_event(&self.recorder, cluster, type_, reason, note).await;
    }
}

/// The Event recorder of this operator instance (`reportingInstance`: `instance`).
pub(super) fn recorder(client: &Client, instance: &str) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "ipfs-kit-operator".into(),
            instance: Some(instance.to_string()),
        },
    )
}

/// Publishes an Event about `object` (its `action` is its `reason`); a failure is only logged.
pub(super) async fn publish_event<K>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, &object.object_ref(&())).await {
        warn!(object = %object.meta().name.clone().unwrap_or_default(), reason, "publishing an Event failed: {e}");
    }
}

fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// 32 random bytes from the kernel, as 64 hex digits (an IPFS Cluster secret).
fn random_secret() -> Result<String, Error> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(Error::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The health engine's policy for a cluster's spec.
pub fn health_policy(cluster: &IpfsCluster) -> Result<HealthPolicy, Error> {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    let invalid = |e: crate::api::FieldError| BuildError::Invalid {
        cluster: name.clone(),
        field: e.field,
        message: e.message,
    };
    let consensus = match spec.cluster.consensus {
        crate::api::Consensus::Crdt => Consensus::Crdt,
        crate::api::Consensus::Raft => Consensus::Raft,
    };
    let mut p = HealthPolicy::new(u32::try_from(spec.replicas).unwrap_or(0), consensus);
    p.probe_interval = spec.health.probe_interval().map_err(invalid)?;
    p.probe_timeout = spec.health.probe_timeout().map_err(invalid)?;
    p.failure_threshold = u32::try_from(spec.health.failure_threshold).unwrap_or(1);
    p.auto_heal = spec.health.auto_heal;
    p.max_restarts_per_hour = u32::try_from(spec.health.max_restarts_per_hour).unwrap_or(0);
    p.min_peer_connections = u32::try_from(spec.health.min_peer_connections).unwrap_or(0);
    p.paused = spec.paused;
    p.spec_generation = cluster
        .metadata
        .generation
        .and_then(|g| u64::try_from(g).ok())
        .unwrap_or(0);
    Ok(p)
}

/// Reconciles one IpfsCluster (the function given to the `Controller`).
pub async fn reconcile(cluster: Arc<IpfsCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let started = std::time::Instant::now();
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let api: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let key = ObjectRef::from_obj(&*cluster);
    let result = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            FinalizerEvent::Apply(c) => apply_cluster(&c, &ctx).await,
            FinalizerEvent::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    });
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    ctx.metrics
        .reconcile_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Retries a failed reconcile after a per-cluster exponential backoff, and reports the failure
/// as a Warning Event.
pub fn error_policy(cluster: Arc<IpfsCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*cluster));
    count_error(&ctx.metrics, error.label());
    warn!(
        cluster = %cluster.name_any(),
        namespace = cluster.namespace().unwrap_or_default(),
        retry_in = ?delay,
        "reconcile failed: {error}"
    );
    let note = format!("{error}; retrying in {}s", delay.as_secs());
    tokio::spawn(async move {
        ctx.event(&cluster, EventType::Warning, "ReconcileFailed", note)
            .await;
    });
    Action::requeue(delay)
}

async fn cleanup(cluster: &IpfsCluster, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(cluster);
    ctx.histories
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    ctx.applied.forget(&key);
    ctx.event(
        cluster,
        EventType::Normal,
        "Deleting",
        "the owned StatefulSet, Services, ConfigMap, Secret, PodDisruptionBudget and \
         NetworkPolicy are removed by garbage collection (owner references)"
            .into(),
    )
    .await;
    Ok(Action::await_change())
}

async fn apply_cluster(cluster: &IpfsCluster, ctx: &Context) -> Result<Action, Error> {
    let name = cluster.name_any();
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(name.clone()))?;
    let mut policy = health_policy(cluster)?;
    if let Some(grace) = ctx.settings.start_grace {
        policy.restart_timeout = grace;
    }
    let children = build::children(cluster)?;
    let mut problems = Vec::new();
    let client = &ctx.client;
    ctx.caches.ready().await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let cached = ctx
        .caches
        .statefulsets
        .get(&ObjectRef::new(&children.names.statefulset).within(&ns))
        .map(|s| StatefulSet::clone(&s));
    // Not in the cache: not created yet, or created so recently that the watch has not shown
    // it; the API server knows (its claim templates must be kept: they are immutable).
    let existing = match cached {
        Some(sts) => Some(sts),
        None => sts_api
            .get_opt(&children.names.statefulset)
            .await
            .map_err(kube_err(
                &name,
                "reading",
                "StatefulSet",
                &children.names.statefulset,
            ))?,
    };

    let statefulset = if cluster.spec.paused {
        existing
    } else {
        let new_generation = cluster.status.as_ref().and_then(|s| s.observed_generation)
            != cluster.metadata.generation;
        ensure_secret(cluster, &children.names, &ns, ctx, &mut problems).await?;
        let grow = existing
            .as_ref()
            .is_some_and(|sts| claims_may_need_growing(sts, cluster));
        let sts = apply_children(cluster, children.clone(), existing, &ns, ctx).await?;
        if grow {
            grow_claims(cluster, &children.names, &ns, ctx).await;
        }
        if new_generation {
            ctx.event(
                cluster,
                EventType::Normal,
                "Applied",
                format!(
                    "generation {}: StatefulSet, Services, ConfigMap, PodDisruptionBudget and \
                     NetworkPolicy applied",
                    cluster.metadata.generation.unwrap_or_default()
                ),
            )
            .await;
        }
        Some(sts)
    };

    if let Some(request) = cluster.annotations().get(ACTION_REQUEST_ANNOTATION) {
        handle_action_request(cluster, request, &children.names, &ns, ctx).await?;
    }

    // Observe and probe.
    let pods = if ctx.caches.pods_ready() {
        ctx.caches.pods_of(&ns, &name)
    } else {
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        pods_api
            .list(&ListParams::default().labels(&build::selector_string(&name)))
            .await
            .map_err(kube_err(
                &name,
                "listing",
                "Pods",
                &build::selector_string(&name),
            ))?
            .items
    };
    let (targets, mut unprobed) = probe_targets(&children.names, cluster.spec.replicas, &pods);
    let prober = ctx.prober(policy.probe_timeout)?;
    // Owned per-target futures (rather than `Prober::round`, which borrows), so that the
    // reconcile future is provably `Send`.
    let mut reports: Vec<PeerReport> = futures::stream::iter(targets)
        .map(|target| {
            let prober = prober.clone();
            async move { prober.peer(&target).await }
        })
        .buffered(ctx.settings.probe_concurrency.max(1))
        .collect()
        .await;
    reports.append(&mut unprobed);
    reports.sort_by_key(|r| ordinal(&r.peer));

    // Decide.
    let key = ObjectRef::from_obj(cluster);
    let history = ctx
        .histories
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned()
        .unwrap_or_default();
    let now = now_millis();
    let assessment = reconcile::assess(&policy, &reports, &history, now);
    debug!(cluster = %name, "{}", assessment.decision.summary());

    // Carry out.
    for action in &assessment.decision.actions {
        carry_out(cluster, action, &children.names, &ns, &pods, ctx).await;
    }
    record_new_log_entries(cluster, &history, &assessment.decision.history, ctx).await;
    ctx.histories
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, assessment.decision.history.clone());

    // Report.
    let alive = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .count();
    let new_status = status::compute(&Observed {
        generation: cluster.metadata.generation,
        replicas: cluster.spec.replicas,
        paused: cluster.spec.paused,
        selector: build::selector_string(&name),
        pods: i32::try_from(alive).unwrap_or(i32::MAX),
        statefulset: statefulset.as_ref(),
        reports: &reports,
        assessment: &assessment,
        problems: &problems,
        previous: cluster.status.as_ref(),
        now,
    });
    ctx.metrics
        .observe_cluster(&format!("{ns}/{name}"), &new_status);
    if status::needs_write(
        cluster.status.as_ref(),
        &new_status,
        now,
        ctx.settings.status_refresh,
    ) {
        write_status(cluster, &new_status, &ns, ctx).await?;
    }
    Ok(Action::requeue(policy.probe_interval))
}

async fn write_status(
    cluster: &IpfsCluster,
    status: &IpfsClusterStatus,
    ns: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let name = cluster.name_any();
    let api: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": IpfsCluster::api_version(&()),
        "kind": IpfsCluster::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(kube_err(
        &name,
        "writing the status of",
        "IpfsCluster",
        &name,
    ))?;
    Ok(())
}

/// An action the dashboard asked for, recorded in the `ipfskit.io/requested-action` annotation.
#[derive(Debug, serde::Deserialize)]
struct ActionRequest {
    #[serde(default)]
    id: u64,
    action: String,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default, rename = "requestedAt")]
    requested_at: Option<String>,
}

/// Carries out an action request of the dashboard (the controller stays the one writer), then
/// removes the annotation. `restart` of one peer deletes its pod; `restart` of every peer rolls
/// the StatefulSet one pod at a time; `probe` is a no-op (peers are probed every round); `start`
/// and `stop` do not exist in Kubernetes (use `spec.paused` or `spec.replicas`).
async fn handle_action_request(
    cluster: &IpfsCluster,
    raw: &str,
    names: &Names,
    ns: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let name = cluster.name_any();
    let (type_, reason, note) = match serde_json::from_str::<ActionRequest>(raw) {
        Err(e) => (
            EventType::Warning,
            "ActionRequestInvalid",
            format!("annotation {ACTION_REQUEST_ANNOTATION} is not an action request: {e}"),
        ),
        Ok(r) if cluster.spec.paused => (
            EventType::Warning,
            "ActionRequestRefused",
            format!(
                "request {}: {} refused: spec.paused is true",
                r.id, r.action
            ),
        ),
        Ok(r) => match (r.action.as_str(), &r.peer) {
            ("restart", Some(peer)) => {
                let ours = (0..cluster.spec.replicas).any(|i| names.peer(i) == *peer);
                if !ours {
                    (
                        EventType::Warning,
                        "ActionRequestRefused",
                        format!(
                            "request {}: {peer} is not a peer of IpfsCluster {name}",
                            r.id
                        ),
                    )
                } else {
                    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
                    match pods.delete(peer, &DeleteParams::default()).await {
                        Ok(_) => (
                            EventType::Normal,
                            "RestartRequested",
                            format!(
                                "request {}: deleted pod {peer} (the StatefulSet recreates it)",
                                r.id
                            ),
                        ),
                        Err(e) => (
                            EventType::Warning,
                            "RestartFailed",
                            format!("request {}: deleting pod {peer}: {e}", r.id),
                        ),
                    }
                }
            }
            ("restart", None) => {
                // A template annotation owned by a separate field manager: the operator's own
                // apply leaves it alone, and the StatefulSet rolls the pods one at a time.
                let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
                let at = r.requested_at.clone().unwrap_or_else(|| r.id.to_string());
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {
                    "ipfskit.io/restarted-at": at}}}}});
                match sts
                    .patch(
                        &names.statefulset,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => (
                        EventType::Normal,
                        "RestartRequested",
                        format!(
                            "request {}: rolling restart of every peer, one at a time",
                            r.id
                        ),
                    ),
                    Err(e) => (
                        EventType::Warning,
                        "RestartFailed",
                        format!("request {}: rolling restart: {e}", r.id),
                    ),
                }
            }
            ("probe", _) => (
                EventType::Normal,
                "ProbeRequested",
                format!(
                    "request {}: the peers are probed every spec.health.probeInterval",
                    r.id
                ),
            ),
            (other, _) => (
                EventType::Warning,
                "ActionRequestRefused",
                format!(
                    "request {}: `{other}` is not available in Kubernetes: use spec.paused or \
                     spec.replicas",
                    r.id
                ),
            ),
        },
    };
    ctx.event(cluster, type_, reason, note).await;
    let api: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), ns);
    let clear = json!({"metadata": {"annotations": {ACTION_REQUEST_ANNOTATION: null}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&clear))
        .await
        .map_err(kube_err(
            &name,
            "clearing the action request of",
            "IpfsCluster",
            &name,
        ))?;
    Ok(())
}

/// Makes sure the cluster secret exists: creates the generated Secret (32 random bytes, hex)
/// when missing and the spec names none; checks a named one exists. Never logs the value.
async fn ensure_secret(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    ctx: &Context,
    problems: &mut Vec<String>,
) -> Result<(), Error> {
    let name = cluster.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let owner_uid = cluster.metadata.uid.clone().unwrap_or_default();
    if let Some(r) = &cluster.spec.cluster.secret_ref {
        // A generated Secret left from before `secretRef` was set is an orphan.
        if let Some(old) = api
            .get_opt(&names.generated_secret)
            .await
            .map_err(kube_err(
                &name,
                "reading",
                "Secret",
                &names.generated_secret,
            ))?
            && old.owner_references().iter().any(|o| o.uid == owner_uid)
        {
            api.delete(&names.generated_secret, &DeleteParams::background())
                .await
                .map_err(kube_err(
                    &name,
                    "deleting",
                    "Secret",
                    &names.generated_secret,
                ))?;
        }
        let secret = api
            .get_opt(&r.name)
            .await
            .map_err(kube_err(&name, "reading", "Secret", &r.name))?;
        let problem = match secret {
            None => Some(format!(
                "spec.cluster.secretRef: Secret {} does not exist in namespace {ns}: create it \
                 with key `{}` holding 64 hex digits",
                r.name, r.key
            )),
            Some(s) => {
                let value = s.data.as_ref().and_then(|d| d.get(&r.key));
                match value {
                    None => Some(format!(
                        "spec.cluster.secretRef: Secret {} has no key `{}`",
                        r.name, r.key
                    )),
                    Some(v) if !build::is_valid_cluster_secret(v.0.trim_ascii()) => Some(format!(
                        "spec.cluster.secretRef: Secret {} key `{}` is not 64 hex digits (32 \
                         bytes); generate one with `od -vN 32 -An -tx1 /dev/urandom | tr -d ' \\n'`",
                        r.name, r.key
                    )),
                    Some(_) => None,
                }
            }
        };
        if let Some(p) = problem {
            ctx.event(
                cluster,
                EventType::Warning,
                "ClusterSecretInvalid",
                p.clone(),
            )
            .await;
            problems.push(p);
        }
        return Ok(());
    }
    let existing = api
        .get_opt(&names.generated_secret)
        .await
        .map_err(kube_err(
            &name,
            "reading",
            "Secret",
            &names.generated_secret,
        ))?;
    if let Some(s) = existing {
        let valid = s
            .data
            .as_ref()
            .and_then(|d| d.get(build::SECRET_KEY))
            .is_some_and(|v| build::is_valid_cluster_secret(&v.0));
        if !valid {
            return Err(Error::Secret {
                cluster: name,
                name: names.generated_secret.clone(),
                key: build::SECRET_KEY.into(),
                problem: "is missing or not 64 hex digits: delete the Secret and the operator \
                          generates a new one (running peers then need a restart)"
                    .into(),
            });
        }
        return Ok(());
    }
    let secret = build::generated_secret(cluster, names, &random_secret()?)?.ok_or_else(|| {
        Error::Secret {
            cluster: name.clone(),
            name: names.generated_secret.clone(),
            key: build::SECRET_KEY.into(),
            problem: "could not be built".into(),
        }
    })?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            info!(cluster = %name, secret = %names.generated_secret, "generated the cluster secret");
            ctx.event(
                cluster,
                EventType::Normal,
                "SecretGenerated",
                format!(
                    "generated Secret {} holding the cluster secret (32 random bytes)",
                    names.generated_secret
                ),
            )
            .await;
            Ok(())
        }
        // Created between our read and write (another reconcile): keep it.
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(kube_err(
            &name,
            "creating",
            "Secret",
            &names.generated_secret,
        )(e)),
    }
}

/// Whether object `kind`/`name` must be applied (see [`AppliedObjects::needs_apply`]): returns
/// the hash of its body to record after the apply, or `None` when it is unchanged.
fn needs_apply<K: serde::Serialize>(
    ctx: &Context,
    owner: &ObjectRef<IpfsCluster>,
    kind: &'static str,
    obj: &K,
    name: &str,
    live: Option<Seen>,
) -> Option<u64> {
    let body = body_hash(obj);
    ctx.applied
        .needs_apply(owner, kind, name, body, live.as_ref())
        .then_some(body)
}

/// Applies `obj` unless it is unchanged since its last apply and untouched since (the watch
/// cache shows `live`). Returns the applied object, or `None` when nothing was sent.
async fn apply_changed<K>(
    ctx: &Context,
    cluster: &IpfsCluster,
    kind: &'static str,
    api: &Api<K>,
    obj: &K,
    live: Option<Seen>,
) -> Result<Option<K>, Error>
where
    K: Resource + serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    let owner = ObjectRef::from_obj(cluster);
    let name = obj.name_any();
    let Some(body) = needs_apply(ctx, &owner, kind, obj, &name, live) else {
        return Ok(None);
    };
    applied_recorded(ctx, cluster, kind, api, obj, body)
        .await
        .map(Some)
}

/// Applies `obj` and records that `body` was applied.
async fn applied_recorded<K>(
    ctx: &Context,
    cluster: &IpfsCluster,
    kind: &'static str,
    api: &Api<K>,
    obj: &K,
    body: u64,
) -> Result<K, Error>
where
    K: Resource + serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = obj.name_any();
    let written =
        apply(api, obj)
            .await
            .map_err(kube_err(&cluster.name_any(), "applying", kind, &name))?;
    ctx.applied.record(
        &ObjectRef::from_obj(cluster),
        kind,
        &name,
        body,
        written.meta(),
    );
    Ok(written)
}

/// Applies every owned object that changed (or whose live copy changed or vanished), deletes
/// labelled Services no longer wanted, and returns the StatefulSet as applied (or as cached,
/// when unchanged).
async fn apply_children(
    cluster: &IpfsCluster,
    mut children: Children,
    existing: Option<StatefulSet>,
    ns: &str,
    ctx: &Context,
) -> Result<StatefulSet, Error> {
    let name = cluster.name_any();
    let client = &ctx.client;
    let caches = &ctx.caches;
    let owner_uid = cluster.metadata.uid.clone().unwrap_or_default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let live = cached_version(&caches.config_maps, ns, &children.names.config_map);
    apply_changed(
        ctx,
        cluster,
        "ConfigMap",
        &cm_api,
        &children.config_map,
        live,
    )
    .await?;
    let svc_api: Api<Service> = Api::namespaced(client.clone(), ns);
    let wanted = children.service_names();
    let mut applied = false;
    for svc in [
        Some(&children.headless_service),
        Some(&children.api_service),
        children.p2p_service.as_ref(),
        children.gateway_service.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        let live = cached_version(&caches.services, ns, &svc.name_any());
        applied |= apply_changed(ctx, cluster, "Service", &svc_api, svc, live)
            .await?
            .is_some();
    }
    // Which Services are wanted changes only with the spec: look for orphans once per
    // generation (and after a restart of the operator), not in every reconcile.
    let owner = ObjectRef::from_obj(cluster);
    let generation = cluster.metadata.generation.unwrap_or_default();
    let unwanted = if applied || !ctx.applied.orphans_checked(&owner, generation) {
        let services = caches.services.state();
        orphans(
            services
                .iter()
                .map(|s| &s.metadata)
                .filter(|m| m.namespace.as_deref() == Some(ns)),
            &name,
            &owner_uid,
            &wanted,
        )
    } else {
        Vec::new()
    };
    let removed = delete_all(&svc_api, &unwanted).await.map_err(kube_err(
        &name,
        "cleaning up",
        "Services",
        &name,
    ))?;
    for svc in removed {
        ctx.event(
            cluster,
            EventType::Normal,
            "DeletedOrphan",
            format!("deleted Service {svc}: the spec no longer asks for it"),
        )
        .await;
    }
    let pdb_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    let live = cached_version(&caches.pdbs, ns, &children.names.pdb);
    apply_changed(
        ctx,
        cluster,
        "PodDisruptionBudget",
        &pdb_api,
        &children.pdb,
        live,
    )
    .await?;
    let np_api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let live = cached_version(&caches.network_policies, ns, &children.names.network_policy);
    apply_changed(
        ctx,
        cluster,
        "NetworkPolicy",
        &np_api,
        &children.network_policy,
        live,
    )
    .await?;

    // Volume claim templates are immutable: keep the existing ones (sizes grow on the claims).
    if let Some(old) = &existing {
        children.statefulset.spec.volume_claim_templates = old.spec.volume_claim_templates.clone();
    }
    let body = needs_apply(
        ctx,
        &owner,
        "StatefulSet",
        &children.statefulset,
        &children.names.statefulset,
        existing.as_ref().and_then(|s| Seen::of(&s.metadata)),
    );
    let (body, existing) = match (body, existing) {
        (Some(body), existing) => (body, existing),
        (None, Some(unchanged)) => return Ok(unchanged),
        // Never: a missing object always needs an apply.
        (None, None) => (body_hash(&children.statefulset), None),
    };
    if let Some(old) = &existing {
        let old_replicas = old.spec.replicas.unwrap_or(1);
        if old_replicas > cluster.spec.replicas {
            leave_peerset(cluster, old_replicas, ns, ctx).await;
        }
    }
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    applied_recorded(
        ctx,
        cluster,
        "StatefulSet",
        &sts_api,
        &children.statefulset,
        body,
    )
    .await
}

/// Whether the spec asks for bigger volumes than the StatefulSet's claim templates (kept from
/// when it was created), so that existing claims may have to grow. Claims made from the
/// templates already have the templates' sizes.
fn claims_may_need_growing(sts: &StatefulSet, cluster: &IpfsCluster) -> bool {
    let spec = &cluster.spec;
    sts.spec.volume_claim_templates.iter().flatten().any(|t| {
        let wanted = match t.metadata.name.as_deref() {
            Some(KUBO_VOLUME) => &spec.kubo.storage.size,
            Some(CLUSTER_VOLUME) => &spec.cluster.storage.size,
            _ => return false,
        };
        let template = t
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| parse_storage_size(&q.0).ok());
        match (parse_storage_size(wanted), template) {
            (Ok(wanted), Some(template)) => wanted > template,
            _ => false,
        }
    })
}

/// Grows existing volume claims to the spec's sizes (never shrinks them). A refusal (for example
/// a StorageClass without volume expansion) is reported as a Warning Event, not retried in a loop.
async fn grow_claims(cluster: &IpfsCluster, names: &Names, ns: &str, ctx: &Context) {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    let spec = &cluster.spec;
    for ordinal in 0..spec.replicas {
        for (template, size) in [
            (KUBO_VOLUME, &spec.kubo.storage.size),
            (CLUSTER_VOLUME, &spec.cluster.storage.size),
        ] {
            let claim = names.claim(template, ordinal);
            let Ok(Some(pvc)) = api.get_opt(&claim).await else {
                continue;
            };
            let current = pvc
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone());
            let (Some(current), Ok(wanted)) = (current, parse_storage_size(size)) else {
                continue;
            };
            if parse_storage_size(&current).is_ok_and(|c| c >= wanted) {
                continue;
            }
            let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
            match api
                .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    ctx.event(
                        cluster,
                        EventType::Normal,
                        "VolumeGrown",
                        format!("PersistentVolumeClaim {claim}: {current} -> {size}"),
                    )
                    .await
                }
                Err(e) => {
                    ctx.event(
                        cluster,
                        EventType::Warning,
                        "VolumeGrowFailed",
                        format!(
                            "PersistentVolumeClaim {claim} could not grow from {current} to \
                             {size}: {e} (does its StorageClass allow volume expansion?)"
                        ),
                    )
                    .await
                }
            }
        }
    }
}

/// What IPFS Cluster answers `DELETE /peers/<id>` with under CRDT consensus, after it has moved
/// the peer's pins to other peers (`consensus/crdt`: `ErrRmPeer`).
const CRDT_CANNOT_REMOVE: &str = "crdt consensus component cannot remove peers";

/// Before scaling in, asks a remaining peer's IPFS Cluster to remove the departing peers from
/// the peerset (`DELETE /peers/<id>`), using the cluster peer ids from the last status. A peer
/// whose id is unknown (never answered) has nothing to remove.
async fn leave_peerset(cluster: &IpfsCluster, old_replicas: i32, ns: &str, ctx: &Context) {
    let names = Names::of(&cluster.name_any());
    let known: BTreeMap<String, String> = cluster
        .status
        .iter()
        .flat_map(|s| s.peers.iter())
        .filter_map(|p| p.cluster_peer_id.clone().map(|id| (p.name.clone(), id)))
        .collect();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let remaining = pods
        .get_opt(&names.peer(0))
        .await
        .ok()
        .flatten()
        .and_then(|p| p.status.and_then(|s| s.pod_ip));
    for ordinal in cluster.spec.replicas..old_replicas {
        let peer = names.peer(ordinal);
        let note = match (known.get(&peer), &remaining) {
            (None, _) => format!(
                "scaling in: peer {peer} never reported a cluster peer id, nothing to remove \
                 from the peerset"
            ),
            (Some(_), None) => {
                format!("scaling in: no remaining peer answers to remove {peer} from the peerset")
            }
            (Some(id), Some(ip)) => {
                let url = format!("http://{}/peers/{id}", host_port(ip, CLUSTER_REST_PORT));
                match ctx.http.delete(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        format!("scaling in: removed {peer} ({id}) from the cluster peerset")
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        // CRDT consensus first re-allocates the peer's pins, then refuses the
                        // removal: it keeps no peerset (a peer drops out when it stops).
                        if body.contains(CRDT_CANNOT_REMOVE) {
                            format!(
                                "scaling in: re-allocated the pins of {peer} ({id}) to the \
                                 remaining peers; CRDT consensus keeps no peerset to remove it \
                                 from, it drops out when it stops"
                            )
                        } else {
                            format!(
                                "scaling in: removing {peer} ({id}) from the peerset answered \
                                 {status}: {}",
                                body.trim()
                            )
                        }
                    }
                    Err(e) => format!("scaling in: removing {peer} ({id}) from the peerset: {e}"),
                }
            }
        };
        ctx.event(cluster, EventType::Normal, "ScaleIn", note).await;
    }
}

/// `ip:port`, with IPv6 addresses in brackets.
pub(super) fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

fn ordinal(peer: &str) -> i64 {
    peer.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(i64::MAX)
}

/// The peers to probe (pods with an IP) and the reports of peers that cannot be probed (no pod,
/// no IP yet, being deleted), which are never dialled.
fn probe_targets(names: &Names, replicas: i32, pods: &[Pod]) -> (Vec<PeerTarget>, Vec<PeerReport>) {
    let mut targets = Vec::new();
    let mut unprobed = Vec::new();
    for ordinal in 0..replicas {
        let peer = names.peer(ordinal);
        let pod = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&peer));
        let gone = |state: ProcessState, why: String| PeerReport {
            peer: peer.clone(),
            kubo_process: state,
            cluster_process: state,
            kubo: Err(ProbeFailure {
                kind: FailureKind::Unreachable,
                message: why.clone(),
            }),
            cluster: Err(ProbeFailure {
                kind: FailureKind::Unreachable,
                message: why,
            }),
        };
        // A pod not created yet, or deleted and being recreated by the StatefulSet, is no
        // reason to restart (deleting it again would not help): its state is Unknown.
        let Some(pod) = pod else {
            unprobed.push(gone(
                ProcessState::Unknown,
                format!("pod {peer} does not exist (yet)"),
            ));
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            unprobed.push(gone(
                ProcessState::Unknown,
                format!("pod {peer} is being deleted"),
            ));
            continue;
        }
        let status = pod.status.clone().unwrap_or_default();
        let phase = status.phase.clone().unwrap_or_else(|| "Unknown".into());
        let Some(ip) = status.pod_ip.clone().filter(|_| phase == "Running") else {
            unprobed.push(gone(
                ProcessState::Unknown,
                format!("pod {peer} is {phase}, not running with an IP yet"),
            ));
            continue;
        };
        let container = |name: &str| {
            status
                .container_statuses
                .iter()
                .flatten()
                .find(|c| c.name == name)
                .map_or(ProcessState::Unknown, |c| match c.state.as_ref() {
                    Some(s) if s.running.is_some() => ProcessState::Running,
                    Some(s) if s.terminated.is_some() => ProcessState::Exited,
                    _ => ProcessState::Unknown,
                })
        };
        targets.push(PeerTarget {
            peer: peer.clone(),
            kubo: Endpoint::new(format!("http://{}", host_port(&ip, KUBO_RPC_PORT))),
            cluster: Endpoint::new(format!("http://{}", host_port(&ip, CLUSTER_REST_PORT))),
            kubo_process: container("kubo"),
            cluster_process: container("cluster"),
        });
    }
    (targets, unprobed)
}

/// Carries out one healing action. Failures become Warning Events; the health engine judges the
/// outcome on the next rounds.
async fn carry_out(
    cluster: &IpfsCluster,
    action: &reconcile::Action,
    names: &Names,
    ns: &str,
    pods: &[Pod],
    ctx: &Context,
) {
    ctx.metrics
        .healing_actions
        .get_or_create(&crate::metrics::HealingLabels {
            cluster: format!("{ns}/{}", cluster.name_any()),
            peer: action.peer().to_owned(),
            action: action.label().to_owned(),
        })
        .inc();
    match action {
        reconcile::Action::RestartPeer { peer, reason, .. } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
            match api.delete(peer, &DeleteParams::default()).await {
                Ok(_) => {
                    info!(cluster = %cluster.name_any(), %peer, "restarting peer: {reason}");
                    ctx.event(
                        cluster,
                        EventType::Normal,
                        "RestartingPeer",
                        format!("deleted pod {peer} (the StatefulSet recreates it): {reason}"),
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => {
                    ctx.event(
                        cluster,
                        EventType::Warning,
                        "RestartFailed",
                        format!("deleting pod {peer} to restart it: {e}"),
                    )
                    .await
                }
            }
        }
        reconcile::Action::SwarmConnect {
            peer,
            targets,
            reason,
        } => {
            let ip = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(peer))
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.pod_ip.clone());
            let Some(ip) = ip else { return };
            let mut failed = Vec::new();
            for t in targets {
                let addr = format!(
                    "/dns4/{}.{}.{ns}.svc.cluster.local/tcp/{KUBO_SWARM_PORT}/p2p/{}",
                    t.peer, names.headless_service, t.peer_id
                );
                let url = format!(
                    "http://{}/api/v0/swarm/connect",
                    host_port(&ip, KUBO_RPC_PORT)
                );
                match ctx.http.post(&url).query(&[("arg", &addr)]).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => failed.push(format!("{}: {}", t.peer, r.status())),
                    Err(e) => failed.push(format!("{}: {e}", t.peer)),
                }
            }
            let (type_, note) = if failed.is_empty() {
                (
                    EventType::Normal,
                    format!("connected {peer} to {} peers: {reason}", targets.len()),
                )
            } else {
                (
                    EventType::Warning,
                    format!("connecting {peer} to its peers: {}", failed.join("; ")),
                )
            };
            ctx.event(cluster, type_, "SwarmReconnect", note).await;
        }
    }
}

/// Publishes an Event for every healing log entry new in this round (give-ups, skips and
/// outcomes included), so that `kubectl describe` shows the ladder.
async fn record_new_log_entries(
    cluster: &IpfsCluster,
    before: &ClusterHistory,
    after: &ClusterHistory,
    ctx: &Context,
) {
    for entry in after.log.entries() {
        if before.log.entries().any(|e| e == entry) {
            continue;
        }
        let record = status::healing_record(entry);
        let type_ = match record.result {
            crate::api::HealingResult::Failed | crate::api::HealingResult::Skipped => {
                EventType::Warning
            }
            _ => EventType::Normal,
        };
        let reason = match entry.action {
            reconcile::ActionKind::GiveUp => "HealingGivenUp",
            reconcile::ActionKind::RestartPeer => "HealingRestart",
            reconcile::ActionKind::SwarmConnect => "HealingReconnect",
        };
        ctx.event(
            cluster,
            type_,
            reason,
            format!("{}: {} ({:?})", entry.peer, record.reason, record.result),
        )
        .await;
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the IpfsCluster CustomResourceDefinition is not installed in this cluster ({0}); install \
         it with `ipfs-kit-operator crd | kubectl apply -f -` or `kubectl apply -k deploy/`"
    )]
    CrdMissing(String),
    #[error(
        "not allowed to list IpfsClusters ({0}); bind the operator's ServiceAccount to the \
         ClusterRole in deploy/rbac.yaml"
    )]
    Forbidden(String),
    #[error("checking that the IpfsCluster CRD is installed: {0}")]
    Api(#[source] kube::Error),
    #[error(transparent)]
    Context(#[from] Error),
}

/// Checks that the IpfsCluster CRD is served and readable, with an install hint if not.
pub async fn check_crd(client: &Client, namespace: Option<&str>) -> Result<(), StartError> {
    let api: Api<IpfsCluster> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Err(StartError::CrdMissing(s.message)),
        Err(kube::Error::Api(s)) if s.is_forbidden() => Err(StartError::Forbidden(s.message)),
        Err(e) => Err(StartError::Api(e)),
    }
}

/// The Controller's backoff over all its watches together: none, because each watch backs off on
/// its own errors (`default_backoff`). kube's default here (up to 30 s, reset only after two
/// quiet minutes) pauses *every* watch after an error of any one: after an API server outage the
/// watches' recoveries (each a 410 Gone, then a relist) queued up behind each other for minutes
/// while reconciles kept reading stale caches.
struct EachWatchBacksOffAlone;

impl Iterator for EachWatchBacksOffAlone {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachWatchBacksOffAlone {
    fn reset(&mut self) {}
}

/// A watch of `api` that keeps a cache of its objects, and the stream of their changes.
fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let changes = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    (store, changes)
}

/// Runs the controller until `shutdown` resolves, then lets running reconciles finish.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), StartError> {
    check_crd(&client, settings.namespace.as_deref()).await?;
    let ns = settings.namespace.clone();
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let clusters: Api<IpfsCluster> = api(&client, &ns);
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    let (reader, writer) = reflector::store();
    // Status writes change neither the generation nor the finalizers: they do not re-trigger a
    // reconcile (no self-inflicted hot loop); periodic requeues pick up probe results.
    let trigger = watcher(clusters, watcher::Config::default().any_semantic())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            // Annotations carry the dashboard's action requests.
            predicates::generation
                .combine(predicates::finalizers)
                .combine(predicates::annotations),
            Default::default(),
        );
    // The owned objects' watches fill the caches reconciles read, and trigger the owner.
    let (statefulsets, sts_changes) = cached(api::<StatefulSet>(&client, &ns), owned.clone());
    let (pods, pod_changes) = cached(api::<Pod>(&client, &ns), owned.clone());
    // Metadata-only watches (an `Api` of `PartialObjectMeta`) where that is all reconciles read.
    type Meta<K> = PartialObjectMeta<K>;
    let (services, svc_changes) = cached(api::<Meta<Service>>(&client, &ns), owned.clone());
    let (config_maps, cm_changes) = cached(api::<Meta<ConfigMap>>(&client, &ns), owned.clone());
    let (pdbs, pdb_changes) = cached(
        api::<Meta<PodDisruptionBudget>>(&client, &ns),
        owned.clone(),
    );
    let (network_policies, np_changes) = cached(api::<Meta<NetworkPolicy>>(&client, &ns), owned);
    let caches = OwnedCaches {
        statefulsets,
        pods,
        services,
        config_maps,
        pdbs,
        network_policies,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        metrics,
        caches,
    )?);
    info!(
        namespace = ns.as_deref().unwrap_or("<all>"),
        concurrency = settings.concurrency,
        "watching IpfsClusters"
    );
    // IpfsPins are reconciled next to their clusters, by the same (leading) instance.
    let shutdown = futures::FutureExt::shared(shutdown);
    let pins = tokio::spawn(super::pin::run_pins(
        client.clone(),
        ns.clone(),
        settings.instance.clone(),
        settings.concurrency,
        shutdown.clone(),
    ));
    Controller::for_stream(trigger, reader)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .trigger_backoff(EachWatchBacksOffAlone)
        .owns_stream(sts_changes)
        .owns_stream(svc_changes)
        .owns_stream(cm_changes)
        .owns_stream(pdb_changes)
        .owns_stream(np_changes)
        .watches_stream(pod_changes, |pod: Pod| {
            let cluster = pod.labels().get(CLUSTER_LABEL)?.clone();
            let ns = pod.namespace()?;
            Some(ObjectRef::<IpfsCluster>::new(&cluster).within(&ns))
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!("reconcile ended with: {e}");
            }
        })
        .await;
    let _ = pins.await;
    info!("controller stopped");
    Ok(())
}
