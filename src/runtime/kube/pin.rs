//! The IpfsPin reconciler: keeps a CID pinned on the IpfsCluster that `spec.clusterRef` names,
//! through that cluster's REST API (`POST /pins/{cid}` with the spec's replication, name and
//! mode), reports per-peer pin states in status, and unpins (`DELETE /pins/{cid}`) when the
//! IpfsPin is deleted (finalizer `ipfskit.io/unpin`).
//!
//! The REST API is reached at a peer pod's IP (port 9094), like the health probes; the first peer
//! that answers is used. A cluster that does not answer is reported in status (condition `Ready`
//! False, reason `ClusterUnreachable`) and retried with backoff.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use tracing::{debug, info, warn};

use super::apply::FIELD_MANAGER;
use super::build::{Names, selector_string};
use super::controller::host_port;
use crate::api::cluster::CLUSTER_REST_PORT;
use crate::api::conditions::{ConditionStatus, READY, set_condition};
use crate::api::{IpfsCluster, IpfsPin, IpfsPinStatus, PeerPinState, PeerPinStatus, PinPhase};

/// Finalizer on every IpfsPin: the CID is unpinned from its cluster before the object goes.
pub const PIN_FINALIZER: &str = "ipfskit.io/unpin";

/// How often a pin is checked again: while it settles, and once it is pinned.
const SETTLING_RECHECK: Duration = Duration::from_secs(15);
const PINNED_RECHECK: Duration = Duration::from_secs(300);
/// How long to wait before retrying a cluster that did not answer.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(30);

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

/// What the pin reconciler shares between reconciles.
pub struct PinContext {
    client: Client,
    recorder: Recorder,
    http: reqwest::Client,
}

impl PinContext {
    pub fn new(client: Client, instance: &str) -> Result<PinContext, reqwest::Error> {
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()?;
        let recorder = super::controller::recorder(&client, instance);
        Ok(PinContext {
            client,
            recorder,
            http,
        })
    }

    async fn event(&self, pin: &IpfsPin, type_: EventType, reason: &str, note: String) {
        super::controller::publish_event(&self.recorder, pin, type_, reason, note).await;
    }
}

/// The Pin object of `GET /allocations/{cid}` (the fields compared with the spec).
#[derive(Debug, Deserialize)]
struct ClusterPin {
    #[serde(default)]
    name: String,
    #[serde(default)]
    replication_factor_min: i32,
    #[serde(default)]
    replication_factor_max: i32,
}

/// One peer of `GET /pins/{cid}` (`peer_map`).
#[derive(Debug, Deserialize)]
struct PeerPinInfo {
    #[serde(default)]
    peername: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GlobalPinInfo {
    #[serde(default)]
    peer_map: BTreeMap<String, PeerPinInfo>,
}

/// What the cluster says about one CID.
#[derive(Debug)]
struct Observed {
    /// `None`: the CID is not in the cluster's pinset.
    pin: Option<ClusterPin>,
    peers: BTreeMap<String, PeerPinInfo>,
}

/// The REST endpoints (`http://<pod IP>:9094`) of the cluster's running peers, in ordinal order
/// (one list call).
async fn endpoints(ctx: &PinContext, cluster: &IpfsCluster, ns: &str) -> Vec<String> {
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
            Some(format!("http://{}", host_port(ip, CLUSTER_REST_PORT)))
        })
        .collect()
}

fn state_of(status: &str) -> PeerPinState {
    match status {
        "pinned" => PeerPinState::Pinned,
        "pinning" => PeerPinState::Pinning,
        "pin_queued" => PeerPinState::Queued,
        "remote" => PeerPinState::Remote,
        "unpinned" | "unpinning" | "unpin_queued" => PeerPinState::Unpinned,
        _ => PeerPinState::Error,
    }
}

/// The request that makes the cluster hold the pin as the spec says.
fn pin_query(pin: &IpfsPin) -> Vec<(&'static str, String)> {
    let mut query = vec![("mode", pin.spec.mode.as_str().to_string())];
    if let Some(n) = pin.spec.replication_min {
        query.push(("replication-min", n.to_string()));
    }
    if let Some(n) = pin.spec.replication_max {
        query.push(("replication-max", n.to_string()));
    }
    query.push(("name", cluster_pin_name(pin)));
    query
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
fn differs(pin: &IpfsPin, held: &ClusterPin) -> bool {
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

impl PinContext {
    async fn observe(&self, base: &str, cid: &str) -> Result<Observed, String> {
        let resp = self
            .http
            .get(format!("{base}/allocations/{cid}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let pin = match resp.status().as_u16() {
            404 => None,
            s if (200..300).contains(&s) => {
                Some(resp.json::<ClusterPin>().await.map_err(|e| e.to_string())?)
            }
            s => return Err(format!("GET /allocations/{cid} answered {s}")),
        };
        let peers = if pin.is_some() {
            let resp = self
                .http
                .get(format!("{base}/pins/{cid}"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("GET /pins/{cid} answered {}", resp.status()));
            }
            resp.json::<GlobalPinInfo>()
                .await
                .map_err(|e| e.to_string())?
                .peer_map
        } else {
            BTreeMap::new()
        };
        Ok(Observed { pin, peers })
    }

    async fn pin(&self, base: &str, pin: &IpfsPin) -> Result<(), String> {
        let resp = self
            .http
            .post(format!("{base}/pins/{}", pin.spec.cid))
            .query(&pin_query(pin))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if resp.status().is_success() {
            Ok(())
        } else {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Err(format!(
                "POST /pins/{} answered {status}: {}",
                pin.spec.cid,
                body.trim()
            ))
        }
    }

    async fn unpin(&self, base: &str, cid: &str) -> Result<(), String> {
        let resp = self
            .http
            .delete(format!("{base}/pins/{cid}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match resp.status().as_u16() {
            s if (200..300).contains(&s) => Ok(()),
            // Not in the pinset: nothing to unpin.
            404 => Ok(()),
            s => Err(format!("DELETE /pins/{cid} answered {s}")),
        }
    }
}

/// Status from what the cluster said; peer ids are named by the cluster's status where known.
fn status_from(
    pin: &IpfsPin,
    cluster: &IpfsCluster,
    observed: &Observed,
    previous: &IpfsPinStatus,
) -> IpfsPinStatus {
    let names: BTreeMap<&str, &str> = cluster
        .status
        .iter()
        .flat_map(|s| s.peers.iter())
        .filter_map(|p| Some((p.cluster_peer_id.as_deref()?, p.name.as_str())))
        .collect();
    let peers: Vec<PeerPinStatus> = observed
        .peers
        .iter()
        .map(|(id, info)| {
            let peer = names
                .get(id.as_str())
                .map(|n| n.to_string())
                .or_else(|| (!info.peername.is_empty()).then(|| info.peername.clone()))
                .unwrap_or_else(|| id.clone());
            PeerPinStatus {
                peer,
                peer_id: Some(id.clone()),
                state: state_of(&info.status),
                error: (!info.error.is_empty()).then(|| info.error.clone()),
                timestamp: info
                    .timestamp
                    .as_deref()
                    .and_then(|t| t.parse().ok())
                    .map(Time),
            }
        })
        .collect();
    let mut status = IpfsPinStatus {
        phase: None,
        observed_generation: pin.metadata.generation,
        conditions: previous.conditions.clone(),
        peers,
        ..IpfsPinStatus::default()
    };
    status.summarize_peers();
    let pinned = status.pinned.unwrap_or(0);
    let allocated = status.allocated.unwrap_or(0);
    let errors = status
        .peers
        .iter()
        .filter(|p| p.state == PeerPinState::Error)
        .count();
    let phase = if allocated > 0 && pinned == allocated {
        PinPhase::Pinned
    } else if errors > 0 && pinned > 0 {
        PinPhase::Degraded
    } else if errors > 0 {
        PinPhase::Failed
    } else {
        PinPhase::Pinning
    };
    status.phase = Some(phase);
    let (ready, reason, message) = match phase {
        PinPhase::Pinned => (
            true,
            "Pinned",
            format!("pinned on {pinned}/{allocated} allocated peers"),
        ),
        PinPhase::Degraded => (
            false,
            "PinErrors",
            format!("pinned on {pinned}/{allocated}; {errors} peers report errors"),
        ),
        PinPhase::Failed => (
            false,
            "PinErrors",
            format!("{errors} peers report errors, none has it pinned"),
        ),
        _ => (
            false,
            "Pinning",
            format!("pinned on {pinned}/{allocated} allocated peers so far"),
        ),
    };
    set_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::from(ready),
        reason,
        &message,
        pin.metadata.generation,
        now(),
    );
    status
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The status when the cluster could not be asked: previous per-peer states kept, `Ready` says
/// why.
fn status_not_asked(
    pin: &IpfsPin,
    previous: &IpfsPinStatus,
    reason: &str,
    message: &str,
) -> IpfsPinStatus {
    let mut status = previous.clone();
    status.observed_generation = pin.metadata.generation;
    if status.phase.is_none() {
        status.phase = Some(PinPhase::Pending);
    }
    set_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::False,
        reason,
        message,
        pin.metadata.generation,
        now(),
    );
    status
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

async fn apply(pin: &IpfsPin, ns: &str, ctx: &PinContext) -> Result<Action, PinError> {
    let previous = pin.status.clone().unwrap_or_default();
    let cluster_name = &pin.spec.cluster_ref.name;
    let Some(cluster) = target_cluster(ctx, pin, ns).await? else {
        let message = format!("IpfsCluster {cluster_name} does not exist in namespace {ns}");
        write_status(
            ctx,
            pin,
            ns,
            &status_not_asked(pin, &previous, "ClusterNotFound", &message),
        )
        .await?;
        return Ok(Action::requeue(UNREACHABLE_RETRY));
    };
    if cluster.spec.paused {
        let message = format!("IpfsCluster {cluster_name} is paused: the pin is left as it is");
        write_status(
            ctx,
            pin,
            ns,
            &status_not_asked(pin, &previous, "ClusterPaused", &message),
        )
        .await?;
        return Ok(Action::requeue(UNREACHABLE_RETRY));
    }
    let mut failures = Vec::new();
    for base in endpoints(ctx, &cluster, ns).await {
        let observed = match ctx.observe(&base, &pin.spec.cid).await {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{base}: {e}"));
                continue;
            }
        };
        let needs_pin = match &observed.pin {
            None => true,
            Some(held) => differs(pin, held),
        };
        if needs_pin {
            if let Err(e) = ctx.pin(&base, pin).await {
                failures.push(format!("{base}: {e}"));
                continue;
            }
            let verb = if observed.pin.is_some() {
                "updated"
            } else {
                "pinned"
            };
            ctx.event(
                pin,
                EventType::Normal,
                "PinRequested",
                format!("{verb} {} on IpfsCluster {cluster_name}", pin.spec.cid),
            )
            .await;
            // The next round reports the peers' progress.
            write_status(
                ctx,
                pin,
                ns,
                &status_not_asked(pin, &previous, "Pinning", "pin requested"),
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        let status = status_from(pin, &cluster, &observed, &previous);
        let settled = status.phase == Some(PinPhase::Pinned);
        if status.phase != previous.phase
            && let Some(phase) = status.phase
        {
            let type_ = match phase {
                PinPhase::Failed | PinPhase::Degraded => EventType::Warning,
                _ => EventType::Normal,
            };
            ctx.event(
                pin,
                type_,
                &format!("Pin{phase:?}"),
                format!(
                    "{} on IpfsCluster {cluster_name}: {}",
                    pin.spec.cid,
                    status.pinned_summary.clone().unwrap_or_default()
                ),
            )
            .await;
        }
        write_status(ctx, pin, ns, &status).await?;
        return Ok(Action::requeue(if settled {
            PINNED_RECHECK
        } else {
            SETTLING_RECHECK
        }));
    }
    let message = if failures.is_empty() {
        format!("no peer of IpfsCluster {cluster_name} is running with an IP")
    } else {
        format!(
            "no peer of IpfsCluster {cluster_name} answered: {}",
            failures.join("; ")
        )
    };
    if previous
        .conditions
        .iter()
        .all(|c| c.reason != "ClusterUnreachable")
    {
        ctx.event(
            pin,
            EventType::Warning,
            "ClusterUnreachable",
            message.clone(),
        )
        .await;
    }
    write_status(
        ctx,
        pin,
        ns,
        &status_not_asked(pin, &previous, "ClusterUnreachable", &message),
    )
    .await?;
    Ok(Action::requeue(UNREACHABLE_RETRY))
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
    for base in endpoints(ctx, &cluster, ns).await {
        match ctx.unpin(&base, &pin.spec.cid).await {
            Ok(()) => {
                ctx.event(
                    pin,
                    EventType::Normal,
                    "Unpinned",
                    format!("unpinned {} from IpfsCluster {cluster_name}", pin.spec.cid),
                )
                .await;
                return Ok(Action::await_change());
            }
            Err(e) => failures.push(format!("{base}: {e}")),
        }
    }
    let message = if failures.is_empty() {
        "no peer is running with an IP".to_string()
    } else {
        failures.join("; ")
    };
    ctx.event(
        pin,
        EventType::Warning,
        "UnpinFailed",
        format!(
            "{message}; retrying. To delete without unpinning, remove the finalizer {PIN_FINALIZER}"
        ),
    )
    .await;
    Err(PinError::Unpin {
        name: pin.name_any(),
        cid: pin.spec.cid.clone(),
        cluster: cluster_name,
        message,
    })
}

async fn reconcile(pin: Arc<IpfsPin>, ctx: Arc<PinContext>) -> Result<Action, PinError> {
    let ns = pin.namespace().ok_or(PinError::NoNamespace)?;
    let api: Api<IpfsPin> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, PIN_FINALIZER, pin, |event| async {
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
    })
}

fn error_policy(pin: Arc<IpfsPin>, error: &PinError, _ctx: Arc<PinContext>) -> Action {
    warn!(pin = %pin.name_any(), "{error}");
    Action::requeue(UNREACHABLE_RETRY)
}

/// Runs the IpfsPin reconciler until `shutdown` resolves.
pub async fn run_pins(
    client: Client,
    namespace: Option<String>,
    instance: String,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = match PinContext::new(client.clone(), &instance) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => {
            warn!("the IpfsPin reconciler cannot start: {e}");
            return;
        }
    };
    let pins: Api<IpfsPin> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "watching IpfsPins"
    );
    Controller::new(pins, watcher::Config::default().any_semantic())
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
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
    use super::*;

    #[test]
    fn cluster_pin_states_map_to_peer_states() {
        assert_eq!(state_of("pinned"), PeerPinState::Pinned);
        assert_eq!(state_of("pin_queued"), PeerPinState::Queued);
        assert_eq!(state_of("pinning"), PeerPinState::Pinning);
        assert_eq!(state_of("remote"), PeerPinState::Remote);
        assert_eq!(state_of("unpinned"), PeerPinState::Unpinned);
        assert_eq!(state_of("pin_error"), PeerPinState::Error);
        assert_eq!(state_of("cluster_error"), PeerPinState::Error);
    }

    fn pin(min: Option<i32>, name: Option<&str>) -> IpfsPin {
        serde_json::from_value(json!({
            "apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
            "metadata": {"name": "site", "namespace": "ns", "generation": 3},
            "spec": {"clusterRef": {"name": "store"},
                     "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
                     "replicationMin": min, "name": name}
        }))
        .expect("pin")
    }

    #[test]
    fn the_pin_request_carries_the_spec_and_changes_are_noticed() {
        let p = pin(Some(2), None);
        let q = pin_query(&p);
        assert!(q.contains(&("replication-min", "2".into())), "{q:?}");
        assert!(q.contains(&("name", "ns/site".into())), "{q:?}");
        assert!(q.contains(&("mode", "recursive".into())), "{q:?}");
        let held = ClusterPin {
            name: "ns/site".into(),
            replication_factor_min: 2,
            replication_factor_max: -1,
        };
        assert!(!differs(&p, &held));
        assert!(differs(&pin(Some(3), None), &held));
        assert!(differs(&pin(Some(2), Some("other")), &held));
    }

    #[test]
    fn status_counts_allocated_peers_and_names_them() {
        let p = pin(None, None);
        let cluster: IpfsCluster = serde_json::from_value(json!({
            "apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
            "metadata": {"name": "store", "namespace": "ns"},
            "spec": {"replicas": 3},
            "status": {"peers": [{"name": "store-0", "clusterPeerId": "A", "state": "Healthy", "restarts": 0}]}
        }))
        .expect("cluster");
        let observed = |states: &[(&str, &str)]| Observed {
            pin: None,
            peers: states
                .iter()
                .map(|(id, s)| {
                    (
                        id.to_string(),
                        PeerPinInfo {
                            peername: format!("name-{id}"),
                            status: s.to_string(),
                            error: if *s == "pin_error" {
                                "no space".into()
                            } else {
                                String::new()
                            },
                            timestamp: Some("2026-11-27T21:00:00Z".into()),
                        },
                    )
                })
                .collect(),
        };
        let prev = IpfsPinStatus::default();
        let s = status_from(
            &p,
            &cluster,
            &observed(&[("A", "pinned"), ("B", "pinned"), ("C", "remote")]),
            &prev,
        );
        assert_eq!(s.phase, Some(PinPhase::Pinned));
        assert_eq!(s.pinned_summary.as_deref(), Some("2/2"));
        assert_eq!(s.peers[0].peer, "store-0", "named by the cluster's status");
        assert_eq!(s.peers[1].peer, "name-B", "or by the cluster's peer name");
        assert_eq!(s.observed_generation, Some(3));
        let s = status_from(
            &p,
            &cluster,
            &observed(&[("A", "pinned"), ("B", "pin_error")]),
            &prev,
        );
        assert_eq!(s.phase, Some(PinPhase::Degraded));
        assert_eq!(s.peers[1].error.as_deref(), Some("no space"));
        let s = status_from(&p, &cluster, &observed(&[("A", "pin_error")]), &prev);
        assert_eq!(s.phase, Some(PinPhase::Failed));
        let s = status_from(
            &p,
            &cluster,
            &observed(&[("A", "pin_queued"), ("B", "pinned")]),
            &prev,
        );
        assert_eq!(s.phase, Some(PinPhase::Pinning));
    }
}
