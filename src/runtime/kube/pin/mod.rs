//! The IpfsPin reconciler: keeps a CID pinned on the IpfsCluster that `spec.clusterRef` names,
//! through that cluster's REST API (`POST /pins/{cid}` with the spec's replication, name and
//! mode), reports per-peer pin states in status ([`status`]), and unpins (`DELETE /pins/{cid}`)
//! when the IpfsPin is deleted (finalizer `ipfskit.io/unpin`).
//!
//! The REST API is reached at a peer pod's IP (port 9094), like the health probes; the first peer
//! that answers is used. A cluster that does not answer is reported in status (condition `Ready`
//! False, reason `ClusterUnreachable`) and retried. Failed reconciles back off per IpfsPin and
//! are counted in `ipfs_kit_pin_reconcile_errors_total`.

pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use self::status::{PinObservation, lists_removed_peers, status_from, status_not_asked};
use super::apply::FIELD_MANAGER;
use super::backoff::ErrorBackoff;
use super::build::{Names, selector_string};
use super::context::CALL_TIMEOUT;
use super::events::{EventType, Events};
use crate::api::cluster::CLUSTER_REST_PORT;
use crate::api::{IpfsCluster, IpfsPin, IpfsPinStatus, PinPhase};
use crate::metrics::Metrics;
use crate::probe::cluster::{Allocation, PinOptions};
use crate::probe::{Endpoint, IpfsClient};

/// Finalizer on every IpfsPin: the CID is unpinned from its cluster before the object goes.
pub const PIN_FINALIZER: &str = "ipfskit.io/unpin";

/// How often a pin is checked again: while it settles, and once it is pinned.
const SETTLING_RECHECK: Duration = Duration::from_secs(15);
const PINNED_RECHECK: Duration = Duration::from_secs(300);
/// How long to wait before asking a cluster that did not answer again.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(30);
/// First and longest retry delay after a failed reconcile (doubling per consecutive failure).
const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(2);
const ERROR_BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Errors of one IpfsPin reconcile.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{verb} IpfsPin {name}: {source}")]
    Kube {
        verb: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("IpfsPin {name}: unpinning {cid} from IpfsCluster {cluster}: {message}")]
    Unpin {
        name: String,
        cid: String,
        cluster: String,
        message: String,
    },
    #[error("IpfsPin has no namespace")]
    NoNamespace,
    #[error("finalizer of IpfsPin: {0}")]
    Finalizer(String),
}

impl PinError {
    /// Short machine label (the error metric's label).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube_api",
            Self::Unpin { .. } => "unpin",
            Self::NoNamespace => "no_namespace",
            Self::Finalizer(_) => "finalizer",
        }
    }
}

/// What the pin reconciler shares between reconciles.
pub struct PinContext {
    client: Client,
    events: Events,
    ipfs: IpfsClient,
    metrics: Arc<Metrics>,
    backoff: ErrorBackoff<ObjectRef<IpfsPin>>,
}

impl PinContext {
    /// The context of the pin reconciler of operator instance `instance`, sharing the
    /// IpfsCluster controller's IPFS client and metrics.
    pub fn new(client: Client, instance: &str, ipfs: IpfsClient, metrics: Arc<Metrics>) -> Self {
        PinContext {
            events: Events::new(&client, instance),
            client,
            ipfs,
            metrics,
            backoff: ErrorBackoff::new(ERROR_BACKOFF_BASE, ERROR_BACKOFF_CAP),
        }
    }

    async fn event(&self, pin: &IpfsPin, type_: EventType, reason: &str, note: String) {
        self.events.publish(pin, type_, reason, note).await;
    }

    /// What the cluster at `api` says about `cid`.
    async fn observe(&self, api: &Endpoint, cid: &str) -> Result<PinObservation, String> {
        let allocation = self
            .ipfs
            .allocation(api, cid, CALL_TIMEOUT)
            .await
            .map_err(|f| f.message)?;
        let peers = match allocation {
            Some(_) => self
                .ipfs
                .pin_status(api, cid, CALL_TIMEOUT)
                .await
                .map_err(|f| f.message)?,
            None => Default::default(),
        };
        Ok(PinObservation { allocation, peers })
    }
}

/// The REST endpoints of the cluster's running peers, in ordinal order (one list call).
async fn endpoints(ctx: &PinContext, cluster: &IpfsCluster, ns: &str) -> Vec<Endpoint> {
    let names = Names::of(&cluster.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = ListParams::default().labels(&selector_string(&cluster.name_any()));
    let Ok(list) = pods.list(&params).await else {
        return Vec::new();
    };
    (0..cluster.spec.replicas)
        .filter_map(|ordinal| {
            let peer = names.peer(ordinal);
            let pod = list
                .items
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&peer))?;
            let status = pod.status.as_ref()?;
            let running = status.phase.as_deref() == Some("Running")
                && pod.metadata.deletion_timestamp.is_none();
            let ip = status.pod_ip.as_deref().filter(|_| running)?;
            Some(Endpoint::at(ip, CLUSTER_REST_PORT))
        })
        .collect()
}

/// How the cluster should hold the pin, as the spec says.
fn pin_options(pin: &IpfsPin) -> PinOptions {
    PinOptions {
        name: cluster_pin_name(pin),
        replication_min: pin.spec.replication_min,
        replication_max: pin.spec.replication_max,
        mode: pin.spec.mode.as_str().to_string(),
    }
}

/// The pin's name in IPFS Cluster: `spec.name`, or `<namespace>/<name>` of the object.
fn cluster_pin_name(pin: &IpfsPin) -> String {
    pin.spec
        .name
        .clone()
        .unwrap_or_else(|| format!("{}/{}", pin.namespace().unwrap_or_default(), pin.name_any()))
}

/// Whether the cluster's pin differs from what the spec asks (then it is pinned again, which
/// updates its options).
fn differs(pin: &IpfsPin, held: &Allocation) -> bool {
    held.name != cluster_pin_name(pin)
        || pin
            .spec
            .replication_min
            .is_some_and(|n| n != held.replication_factor_min)
        || pin
            .spec
            .replication_max
            .is_some_and(|n| n != held.replication_factor_max)
}

async fn write_status(
    ctx: &PinContext,
    pin: &IpfsPin,
    ns: &str,
    status: &IpfsPinStatus,
) -> Result<(), PinError> {
    if pin.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<IpfsPin> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({
        "apiVersion": IpfsPin::api_version(&()),
        "kind": IpfsPin::kind(&()),
        "status": status,
    });
    api.patch_status(
        &pin.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| PinError::Kube {
        verb: "writing the status of",
        name: pin.name_any(),
        source,
    })?;
    Ok(())
}

async fn target_cluster(
    ctx: &PinContext,
    pin: &IpfsPin,
    ns: &str,
) -> Result<Option<IpfsCluster>, PinError> {
    let clusters: Api<IpfsCluster> = Api::namespaced(ctx.client.clone(), ns);
    clusters
        .get_opt(&pin.spec.cluster_ref.name)
        .await
        .map_err(|source| PinError::Kube {
            verb: "reading the IpfsCluster of",
            name: pin.name_any(),
            source,
        })
}

/// Keeps the pin on its cluster: asks the first peer that answers, pins (again) when the
/// cluster's pin is missing or differs, else reports the peers' states.
async fn apply(pin: &IpfsPin, ns: &str, ctx: &PinContext) -> Result<Action, PinError> {
    let previous = pin.status.clone().unwrap_or_default();
    let cluster_name = &pin.spec.cluster_ref.name;
    let not_asked = |reason: &str, message: &str| status_not_asked(pin, &previous, reason, message);
    let Some(cluster) = target_cluster(ctx, pin, ns).await? else {
        let message = format!("IpfsCluster {cluster_name} does not exist in namespace {ns}");
        write_status(ctx, pin, ns, &not_asked("ClusterNotFound", &message)).await?;
        return Ok(Action::requeue(UNREACHABLE_RETRY));
    };
    if cluster.spec.paused {
        let message = format!("IpfsCluster {cluster_name} is paused: the pin is left as it is");
        write_status(ctx, pin, ns, &not_asked("ClusterPaused", &message)).await?;
        return Ok(Action::requeue(UNREACHABLE_RETRY));
    }
    let mut failures = Vec::new();
    for api in endpoints(ctx, &cluster, ns).await {
        let observed = match ctx.observe(&api, &pin.spec.cid).await {
            Ok(o) => o,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let needs_pin = observed
            .allocation
            .as_ref()
            .is_none_or(|held| differs(pin, held));
        if !needs_pin {
            return report(pin, &cluster, &observed, &previous, ns, ctx).await;
        }
        let options = pin_options(pin);
        if let Err(f) = ctx
            .ipfs
            .pin(&api, &pin.spec.cid, &options, CALL_TIMEOUT)
            .await
        {
            failures.push(f.message);
            continue;
        }
        let verb = if observed.allocation.is_some() {
            "updated"
        } else {
            "pinned"
        };
        let note = format!("{verb} {} on IpfsCluster {cluster_name}", pin.spec.cid);
        ctx.event(pin, EventType::Normal, "PinRequested", note)
            .await;
        // The next round reports the peers' progress.
        write_status(ctx, pin, ns, &not_asked("Pinning", "pin requested")).await?;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let message = if failures.is_empty() {
        format!("no peer of IpfsCluster {cluster_name} is running with an IP")
    } else {
        format!(
            "no peer of IpfsCluster {cluster_name} answered: {}",
            failures.join("; ")
        )
    };
    let reported = previous
        .conditions
        .iter()
        .any(|c| c.reason == "ClusterUnreachable");
    if !reported {
        ctx.event(
            pin,
            EventType::Warning,
            "ClusterUnreachable",
            message.clone(),
        )
        .await;
    }
    write_status(ctx, pin, ns, &not_asked("ClusterUnreachable", &message)).await?;
    Ok(Action::requeue(UNREACHABLE_RETRY))
}

/// Writes the peers' states (an Event when the phase changes); checks again soon while the pin
/// settles, rarely once it is pinned.
async fn report(
    pin: &IpfsPin,
    cluster: &IpfsCluster,
    observed: &PinObservation,
    previous: &IpfsPinStatus,
    ns: &str,
    ctx: &PinContext,
) -> Result<Action, PinError> {
    let status = status_from(pin, cluster, observed, previous);
    if status.phase != previous.phase
        && let Some(phase) = status.phase
    {
        let type_ = match phase {
            PinPhase::Failed | PinPhase::Degraded => EventType::Warning,
            _ => EventType::Normal,
        };
        let note = format!(
            "{} on IpfsCluster {}: {}",
            pin.spec.cid,
            cluster.name_any(),
            status.pinned_summary.clone().unwrap_or_default()
        );
        ctx.event(pin, type_, &format!("Pin{phase:?}"), note).await;
    }
    write_status(ctx, pin, ns, &status).await?;
    // A pin on every peer (replication -1) is not settled while the cluster has more ready
    // peers than hold it: peers that just joined may not list it yet.
    let everywhere = observed
        .allocation
        .as_ref()
        .is_some_and(|a| a.replication_factor_max == -1);
    let ready_peers = cluster
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let short = everywhere && status.pinned.unwrap_or(0) < ready_peers;
    // After a scale-in, IPFS Cluster lists the removed peers for a while; the status must not
    // keep them until the next periodic recheck.
    let settled =
        status.phase == Some(PinPhase::Pinned) && !short && !lists_removed_peers(&status, cluster);
    Ok(Action::requeue(if settled {
        PINNED_RECHECK
    } else {
        SETTLING_RECHECK
    }))
}

/// Unpins on delete. When the IpfsCluster is gone there is nothing left to unpin; when it exists
/// but does not answer, the finalizer stays and the unpin is retried (the Event says how to force
/// the deletion).
async fn cleanup(pin: &IpfsPin, ns: &str, ctx: &PinContext) -> Result<Action, PinError> {
    let cluster_name = pin.spec.cluster_ref.name.clone();
    let Some(cluster) = target_cluster(ctx, pin, ns).await? else {
        return Ok(Action::await_change());
    };
    if cluster.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let mut failures = Vec::new();
    for api in endpoints(ctx, &cluster, ns).await {
        match ctx.ipfs.unpin(&api, &pin.spec.cid, CALL_TIMEOUT).await {
            Ok(()) => {
                let note = format!("unpinned {} from IpfsCluster {cluster_name}", pin.spec.cid);
                ctx.event(pin, EventType::Normal, "Unpinned", note).await;
                return Ok(Action::await_change());
            }
            Err(f) => failures.push(f.message),
        }
    }
    let message = if failures.is_empty() {
        "no peer is running with an IP".to_string()
    } else {
        failures.join("; ")
    };
    let note = format!(
        "{message}; retrying. To delete without unpinning, remove the finalizer {PIN_FINALIZER}"
    );
    ctx.event(pin, EventType::Warning, "UnpinFailed", note)
        .await;
    Err(PinError::Unpin {
        name: pin.name_any(),
        cid: pin.spec.cid.clone(),
        cluster: cluster_name,
        message,
    })
}

async fn reconcile(pin: Arc<IpfsPin>, ctx: Arc<PinContext>) -> Result<Action, PinError> {
    ctx.metrics.pin_reconciles.inc();
    let ns = pin.namespace().ok_or(PinError::NoNamespace)?;
    let key = ObjectRef::from_obj(&*pin);
    let api: Api<IpfsPin> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, PIN_FINALIZER, pin, |event| async {
        match event {
            Finalizer::Apply(pin) => apply(&pin, &ns, &ctx).await,
            Finalizer::Cleanup(pin) => cleanup(&pin, &ns, &ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => PinError::Finalizer(other.to_string()),
    });
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
    }
    result
}

/// Retries a failed reconcile after a per-IpfsPin exponential backoff and counts the failure.
fn error_policy(pin: Arc<IpfsPin>, error: &PinError, ctx: Arc<PinContext>) -> Action {
    let delay = ctx.backoff.failed(ObjectRef::from_obj(&*pin));
    ctx.metrics.count_pin_error(error.label());
    warn!(pin = %pin.name_any(), retry_in = ?delay, "{error}");
    Action::requeue(delay)
}

/// A hash of what the pins of a cluster depend on: its ready peers and their identities.
fn peer_set(cluster: &IpfsCluster) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let status = cluster.status.as_ref()?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status.ready_replicas.hash(&mut hasher);
    for peer in &status.peers {
        peer.cluster_peer_id.hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// The IpfsPins that name `cluster` (same namespace, `spec.clusterRef.name`).
fn pins_of(pins: &[Arc<IpfsPin>], cluster: &IpfsCluster) -> Vec<ObjectRef<IpfsPin>> {
    let name = cluster.name_any();
    pins.iter()
        .filter(|p| p.namespace() == cluster.namespace() && p.spec.cluster_ref.name == name)
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// Runs the IpfsPin reconciler until `shutdown` resolves.
pub async fn run_pins(
    ctx: PinContext,
    namespace: Option<String>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let pins: Api<IpfsPin> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "watching IpfsPins"
    );
    let clusters: Api<IpfsCluster> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // A change of a cluster's peer set (scaled, a peer replaced) re-checks its pins at once,
    // not at the next periodic recheck: new peers pin, removed ones drop out of status.
    let peer_set_changes = watcher(clusters, watcher::Config::default().any_semantic())
        .default_backoff()
        .applied_objects()
        .predicate_filter(peer_set, Default::default());
    let controller = Controller::new(pins, watcher::Config::default().any_semantic());
    let store = controller.store();
    ctx.metrics.track_pins(store.clone());
    controller
        .watches_stream(peer_set_changes, move |cluster: IpfsCluster| {
            pins_of(&store.state(), &cluster)
        })
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!("IpfsPin reconcile ended with: {e}");
            }
        })
        .await;
    info!("IpfsPin reconciler stopped");
}

#[cfg(test)]
mod tests {
    use super::status::tests::pin;
    use super::*;

    #[test]
    fn the_pin_request_carries_the_spec_and_changes_are_noticed() {
        let p = pin(Some(2), None);
        let options = pin_options(&p);
        assert_eq!(options.replication_min, Some(2));
        assert_eq!(options.name, "ns/site");
        assert_eq!(options.mode, "recursive");
        let held = Allocation {
            name: "ns/site".into(),
            replication_factor_min: 2,
            replication_factor_max: -1,
        };
        assert!(!differs(&p, &held));
        assert!(differs(&pin(Some(3), None), &held));
        assert!(differs(&pin(Some(2), Some("other")), &held));
    }

    #[test]
    fn failed_pin_reconciles_are_labelled_for_the_error_metric() {
        let e = PinError::Unpin {
            name: "site".into(),
            cid: "bafy".into(),
            cluster: "store".into(),
            message: "no peer".into(),
        };
        assert_eq!(e.label(), "unpin");
        assert_eq!(PinError::NoNamespace.label(), "no_namespace");
    }
}
