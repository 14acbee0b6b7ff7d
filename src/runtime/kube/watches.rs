//! The watches of the IpfsCluster controller: IpfsClusters trigger reconciles (on generation,
//! finalizer and annotation changes only: status writes do not re-trigger), the owned
//! objects' watches both trigger their owner and fill the caches reconciles read, and a queued
//! dashboard request (a ConfigMap labelled `ipfskit.io/request-for`) triggers its cluster. [`run`] wires
//! them into a kube-rs `Controller` next to the IpfsPin reconciler.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{debug, info};

use super::build::{CLUSTER_LABEL, MANAGED_BY};
use super::context::{Context, OwnedCaches, Settings};
use super::controller::{error_policy, reconcile};
use super::pod_index::PodIndex;
use super::slim;
use crate::api::request::{REQUEST_LABEL, STATE_KEY};
use crate::api::{IpfsCluster, RequestState};
use crate::metrics::Metrics;
use crate::probe::ProberError;

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
    Client(#[from] ProberError),
    #[error("the IpfsPin reconciler: {0}")]
    Pins(String),
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

type Changes<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// A watch of `api` that keeps a cache of its objects, each stripped by `slim` to what
/// reconciles read (see [`super::slim`]), and the stream of their changes.
fn cached<K>(api: Api<K>, config: watcher::Config, slim: fn(&mut K)) -> (Store<K>, Changes<K>)
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
        .modify(slim)
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, changes)
}

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

/// The owned objects' caches and change streams.
struct OwnedWatches {
    caches: OwnedCaches,
    statefulsets: Changes<StatefulSet>,
    pods: Changes<Pod>,
    services: Changes<Service>,
    nodes: Changes<Node>,
    config_maps: Changes<PartialObjectMeta<ConfigMap>>,
    pdbs: Changes<PartialObjectMeta<PodDisruptionBudget>>,
    network_policies: Changes<PartialObjectMeta<NetworkPolicy>>,
    requests: Changes<ConfigMap>,
}

/// Watches of what the operator labelled as managed; metadata only (an `Api` of
/// `PartialObjectMeta`) where that is all reconciles read.
fn owned_watches(client: &Client, ns: &Option<String>) -> OwnedWatches {
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"));
    type Meta<K> = PartialObjectMeta<K>;
    let (statefulsets_cache, statefulsets) = cached(
        api::<StatefulSet>(client, ns),
        owned.clone(),
        slim::statefulset,
    );
    let (pods_cache, pod_index, pods) = pod_watch(api::<Pod>(client, ns), owned.clone());
    let (services_cache, services) =
        cached(api::<Service>(client, ns), owned.clone(), slim::service);
    let (nodes_cache, nodes) = node_watch(client, ns.is_none());
    let (cm_cache, config_maps) = cached(
        api::<Meta<ConfigMap>>(client, ns),
        owned.clone(),
        slim::object,
    );
    let (pdb_cache, pdbs) = cached(
        api::<Meta<PodDisruptionBudget>>(client, ns),
        owned.clone(),
        slim::object,
    );
    let (np_cache, network_policies) =
        cached(api::<Meta<NetworkPolicy>>(client, ns), owned, slim::object);
    // The dashboard's requests, created by the sidecar (not managed-by labelled).
    let for_cluster = watcher::Config::default().labels(REQUEST_LABEL);
    let (requests_cache, requests) =
        cached(api::<ConfigMap>(client, ns), for_cluster, slim::object);
    OwnedWatches {
        caches: OwnedCaches {
            statefulsets: statefulsets_cache,
            pods: pods_cache,
            pod_index,
            services: services_cache,
            nodes: nodes_cache,
            config_maps: cm_cache,
            pdbs: pdb_cache,
            network_policies: np_cache,
            requests: requests_cache,
        },
        statefulsets,
        pods,
        services,
        nodes,
        config_maps,
        pdbs,
        network_policies,
        requests,
    }
}

/// The watch of the peer pods: a cache of them (stripped, see [`slim::pod`]), the index of
/// whose they are, and the stream of their changes.
fn pod_watch(api: Api<Pod>, config: watcher::Config) -> (Store<Pod>, Arc<PodIndex>, Changes<Pod>) {
    let (store, writer) = reflector::store();
    let index = Arc::new(PodIndex::default());
    let follows = index.clone();
    let changes = watcher(api, config)
        .default_backoff()
        .modify(slim::pod)
        .reflect(writer)
        .inspect_ok(move |event| follows.apply(event))
        .touched_objects()
        .boxed();
    (store, index, changes)
}

/// A watch of the nodes, whose ExternalIP a NodePort peer announces. Their image lists and
/// managed fields are dropped before they are cached (the bulk of a Node, and never read).
/// Only when `cluster_wide`: an operator confined to one namespace has no right to read the
/// cluster-scoped nodes, and its NodePort peers announce their pods' host IPs (an empty cache).
fn node_watch(client: &Client, cluster_wide: bool) -> (Store<Node>, Changes<Node>) {
    let (store, writer) = reflector::store();
    if !cluster_wide {
        return (store, futures::stream::empty().boxed());
    }
    let changes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|node| {
            node.metadata.managed_fields = None;
            if let Some(status) = node.status.as_mut() {
                status.images = None;
            }
        })
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, changes)
}

/// This process reconciles from now on: it exports the cluster and peer series (of the
/// clusters its cache holds) and samples the history; returns the sampler.
fn start_leading(
    metrics: &Metrics,
    reader: &reflector::Store<IpfsCluster>,
    settings: &Settings,
    ctx: &Context,
) -> tokio::task::JoinHandle<()> {
    metrics.set_leader(true);
    metrics.track_clusters(reader.clone());
    info!(
        namespace = settings.namespace.as_deref().unwrap_or("<all>"),
        concurrency = settings.concurrency,
        "watching IpfsClusters"
    );
    tokio::spawn(crate::history::sampler::run(
        settings.history.clone(),
        ctx.latest.clone(),
    ))
}

/// The IpfsPin reconciler, running until `shutdown`.
fn spawn_pins(
    client: Client,
    settings: &Settings,
    ctx: &Context,
    metrics: &Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let pins = super::pin::PinContext::new(
        client,
        &settings.instance,
        ctx.ipfs.clone(),
        metrics.clone(),
    );
    tokio::spawn(super::pin::run_pins(
        pins,
        settings.namespace.clone(),
        settings.concurrency,
        shutdown,
    ))
}

/// The cluster of a request ConfigMap still queued: a request triggers its cluster, the
/// controller's own updates of the request do not.
fn queued_request_cluster(cm: ConfigMap) -> Option<ObjectRef<IpfsCluster>> {
    let queued = cm
        .data
        .as_ref()
        .and_then(|d| d.get(STATE_KEY))
        .is_none_or(|s| s == RequestState::Queued.as_str());
    let cluster = cm.labels().get(REQUEST_LABEL)?.clone();
    let ns = cm.namespace()?;
    queued.then(|| ObjectRef::<IpfsCluster>::new(&cluster).within(&ns))
}

/// The cluster of a peer pod, by its label.
fn pod_cluster(pod: Pod) -> Option<ObjectRef<IpfsCluster>> {
    let cluster = pod.labels().get(CLUSTER_LABEL)?.clone();
    let ns = pod.namespace()?;
    Some(ObjectRef::<IpfsCluster>::new(&cluster).within(&ns))
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
    let (reader, writer) = reflector::store();
    // Status writes change neither the generation nor the finalizers: they do not re-trigger a
    // reconcile (no self-inflicted hot loop); periodic requeues pick up probe results.
    let trigger = watcher(
        api::<IpfsCluster>(&client, &ns),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(slim::object)
    .reflect(writer)
    .applied_objects()
    .predicate_filter(
        predicates::generation
            .combine(predicates::finalizers)
            .combine(predicates::annotations),
        Default::default(),
    );
    let owned = owned_watches(&client, &ns);
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings.clone(),
        metrics.clone(),
        owned.caches,
    )?);
    let sampler = start_leading(&metrics, &reader, &settings, &ctx);
    let latest = ctx.latest.clone();
    let context = ctx.clone();
    // IpfsPins are reconciled next to their clusters, by the same (leading) instance.
    let shutdown = futures::FutureExt::shared(shutdown);
    let pins = spawn_pins(client, &settings, &ctx, &metrics, shutdown.clone());
    // A daemon that turns hung (or answers again) has its cluster reconciled at once.
    let hung = ctx
        .pings
        .take_triggers()
        .map_or_else(|| futures::stream::empty().boxed(), StreamExt::boxed);
    Controller::for_stream(trigger, reader)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .reconcile_on(hung)
        .trigger_backoff(EachWatchBacksOffAlone)
        .owns_stream(owned.statefulsets)
        .owns_stream(owned.services)
        .owns_stream(owned.config_maps)
        .owns_stream(owned.pdbs)
        .owns_stream(owned.network_policies)
        // A node's address changes only what NodePort peers announce; the periodic reconcile
        // picks it up. The stream is driven here only to keep the cache filled.
        .watches_stream(owned.nodes, |_: Node| None::<ObjectRef<IpfsCluster>>)
        .watches_stream(owned.requests, queued_request_cluster)
        .watches_stream(owned.pods, pod_cluster)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!("reconcile ended with: {e}");
            }
        })
        .await;
    let _ = pins.await;
    // Another process may reconcile now: the cluster and peer series are its to export.
    context.steady.clear();
    metrics.set_leader(false);
    sampler.abort();
    latest.clear();
    info!("controller stopped");
    Ok(())
}
