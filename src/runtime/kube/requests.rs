//! Step `requests`: carries out what dashboard clients asked for, each recorded as a ConfigMap of
//! its own (label `ipfskit.io/request-for: <cluster>`, see [`crate::api::request`]); the
//! controller stays the one writer. Each request is taken up once: its move from queued to
//! running is a patch conditional on the resourceVersion the cache saw, so a stale cache or a
//! second controller cannot take it up again. It ends done or failed with what was done, as an
//! Event too, and its ConfigMap is deleted by this step after [`KEEP_FINISHED`] (at most
//! [`KEEP_FINISHED_COUNT`] kept per cluster).
//!
//! - `restart` of one peer deletes its pod (the StatefulSet recreates it);
//! - `restart` of one daemon: Kubo is asked to shut down (RPC `shutdown`) and kubelet restarts
//!   its container, nothing else; IPFS Cluster has no such call: the request's id in a pod
//!   annotation, read by the cluster container's start script through a downward-API file,
//!   makes it stop the daemon and exit, and kubelet restarts that container alone;
//! - `restart` of every peer rolls the StatefulSet one pod at a time;
//! - `probe` makes this reconcile probe at once; it is done once the round's status is written
//!   ([`finish_probes`]); one interrupted before that is probed again by the next reconcile.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;
use tracing::{debug, warn};

use super::build::{Names, RESTART_CLUSTER_ANNOTATION};
use super::context::{CALL_TIMEOUT, Context};
use crate::api::cluster::KUBO_RPC_PORT;
use crate::api::request::{
    KEEP_FINISHED, KEEP_FINISHED_COUNT, REASON_KEY, REQUEST_LABEL, STATE_KEY, STATUS_VERSION_KEY,
    UPDATED_KEY, request_record,
};
use crate::api::{ActionKind, ActionRequest, Daemon, IpfsCluster, RequestState};
use crate::probe::Endpoint;

/// What became of a request: an Event, and its state.
struct Outcome {
    type_: EventType,
    reason: &'static str,
    note: String,
}

impl Outcome {
    fn state(&self) -> RequestState {
        match self.type_ {
            EventType::Normal => RequestState::Done,
            EventType::Warning => RequestState::Failed,
        }
    }
}

fn normal(reason: &'static str, note: String) -> Outcome {
    Outcome {
        type_: EventType::Normal,
        reason,
        note,
    }
}

fn warning(reason: &'static str, note: String) -> Outcome {
    Outcome {
        type_: EventType::Warning,
        reason,
        note,
    }
}

/// The requests a reconcile took up: whether to probe at once, and the probe requests to finish
/// once the round's status is written.
#[derive(Default)]
pub struct Taken {
    pub probe_now: bool,
    probes: Vec<Held>,
}

/// A request this reconcile holds (running): its ConfigMap and the resourceVersion written.
struct Held {
    name: String,
    id: u64,
    resource_version: String,
}

/// Carries out the queued requests of `cluster`, oldest first; fails the restarts an earlier
/// controller took up and never finished; deletes the finished ones past keeping.
pub async fn carry_out(cluster: &IpfsCluster, names: &Names, ns: &str, ctx: &Context) -> Taken {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let mut taken = Taken::default();
    let mut finished = Vec::new();
    for cm in requests_of(cluster, ns, ctx) {
        let name = cm.name_any();
        let seen = cm.resource_version();
        let record = match request_record(&cm) {
            Ok(record) => record,
            Err(e) => {
                mark(&api, &name, seen, RequestState::Failed, e).await;
                continue;
            }
        };
        let (id, action) = (record.request.id, record.request.action);
        match record.state {
            RequestState::Queued => {
                let by = format!("taken up by {}", ctx.settings.instance);
                let Some(rv) = mark(&api, &name, seen, RequestState::Running, by).await else {
                    continue;
                };
                if action == ActionKind::Probe && !cluster.spec.paused {
                    taken.hold(name, id, rv);
                    continue;
                }
                let outcome = outcome_of(cluster, &record.request, names, ns, ctx).await;
                ctx.event(cluster, outcome.type_, outcome.reason, outcome.note.clone())
                    .await;
                mark(&api, &name, Some(rv), outcome.state(), outcome.note).await;
            }
            RequestState::Running if action == ActionKind::Probe => {
                taken.hold(name, id, seen.unwrap_or_default());
            }
            RequestState::Running => {
                let why = format!(
                    "request {id}: interrupted: a controller took it up and stopped before \
                     recording its outcome (it may have been carried out; see the Events)"
                );
                mark(&api, &name, seen, RequestState::Failed, why).await;
            }
            RequestState::Done | RequestState::Failed => finished.push((record.updated_at, name)),
        }
    }
    forget_old(&api, finished).await;
    taken
}

impl Taken {
    fn hold(&mut self, name: String, id: u64, resource_version: String) {
        self.probe_now = true;
        self.probes.push(Held {
            name,
            id,
            resource_version,
        });
    }
}

/// The probe requests of this reconcile are done: its round's status (health score `score`) is
/// written, and the cluster is at resourceVersion `version` after that write; each request
/// records it, for the dashboard to answer with that status (its probe times have whole
/// seconds: a round in the same second as the one before writes the same times).
pub async fn finish_probes(
    taken: Taken,
    score: Option<i32>,
    version: Option<String>,
    ns: &str,
    ctx: &Context,
) {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let score = score.map_or_else(|| "none".to_owned(), |s| s.to_string());
    for held in taken.probes {
        let note = format!(
            "request {}: probed every peer; health score {score}",
            held.id
        );
        let rv = Some(held.resource_version).filter(|rv| !rv.is_empty());
        let done = (RequestState::Done, note);
        write_state(&api, &held.name, rv, done, version.as_deref()).await;
    }
}

/// The request ConfigMaps of `cluster` in the cache, oldest (lowest id) first.
fn requests_of(cluster: &IpfsCluster, ns: &str, ctx: &Context) -> Vec<Arc<ConfigMap>> {
    let name = cluster.name_any();
    let mut found: Vec<(u64, Arc<ConfigMap>)> = ctx
        .caches
        .requests
        .state()
        .into_iter()
        .filter(|cm| cm.namespace().as_deref() == Some(ns))
        .filter(|cm| cm.labels().get(REQUEST_LABEL) == Some(&name))
        .map(|cm| {
            let id = request_record(&cm).map_or(0, |r| r.request.id);
            (id, cm)
        })
        .collect();
    found.sort_by_key(|(id, _)| *id);
    found.into_iter().map(|(_, cm)| cm).collect()
}

/// Moves request ConfigMap `name` to `state` with `reason`, if it still is at resourceVersion
/// `seen` (when given): its new resourceVersion, or `None` when it changed meanwhile (a stale
/// cache: another reconcile has it) or could not be written (the next reconcile tries again).
async fn mark(
    api: &Api<ConfigMap>,
    name: &str,
    seen: Option<String>,
    state: RequestState,
    reason: String,
) -> Option<String> {
    write_state(api, name, seen, (state, reason), None).await
}

/// [`mark`], recording also the cluster's resourceVersion `status_version` (a done probe).
async fn write_state(
    api: &Api<ConfigMap>,
    name: &str,
    seen: Option<String>,
    (state, reason): (RequestState, String),
    status_version: Option<&str>,
) -> Option<String> {
    let mut patch = json!({"data": {
        STATE_KEY: state.as_str(),
        REASON_KEY: reason,
        UPDATED_KEY: k8s_openapi::jiff::Timestamp::now().to_string(),
    }});
    if let Some(version) = status_version {
        patch["data"][STATUS_VERSION_KEY] = json!(version);
    }
    if let Some(rv) = seen {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(cm) => Some(cm.resource_version().unwrap_or_default()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            debug!(request = name, "changed since the cache saw it: left alone");
            None
        }
        Err(e) => {
            warn!(
                request = name,
                "recording the request as {}: {e}",
                state.as_str()
            );
            None
        }
    }
}

/// Deletes the finished request ConfigMaps older than [`KEEP_FINISHED`], and the oldest beyond
/// [`KEEP_FINISHED_COUNT`]; `finished` holds (updatedAt, name), oldest id first.
async fn forget_old(api: &Api<ConfigMap>, finished: Vec<(String, String)>) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let excess = finished.len().saturating_sub(KEEP_FINISHED_COUNT);
    for (i, (updated, name)) in finished.into_iter().enumerate() {
        let old = updated
            .parse::<k8s_openapi::jiff::Timestamp>()
            .map_or(true, |t| {
                now.duration_since(t).as_secs() >= KEEP_FINISHED.as_secs() as i64
            });
        if (i < excess || old)
            && let Err(e) = api.delete(&name, &DeleteParams::default()).await
            && !matches!(&e, kube::Error::Api(s) if s.code == 404)
        {
            warn!(request = name, "deleting a finished request: {e}");
        }
    }
}

/// Carries out one request that is not a probe of a running cluster.
async fn outcome_of(
    cluster: &IpfsCluster,
    r: &ActionRequest,
    names: &Names,
    ns: &str,
    ctx: &Context,
) -> Outcome {
    if cluster.spec.paused {
        return warning(
            "ActionRequestRefused",
            format!(
                "request {}: {:?} refused: spec.paused is true",
                r.id, r.action
            ),
        );
    }
    match (r.action, &r.peer) {
        (ActionKind::Probe, _) => normal("ProbeRequested", format!("request {}: probed", r.id)),
        (ActionKind::Restart, None) => restart_all(r, names, ns, ctx).await,
        (ActionKind::Restart, Some(peer)) => restart_one(cluster, r, peer, names, ns, ctx).await,
    }
}

/// Restarts every peer: a template annotation owned by a separate field manager (the operator's
/// own apply leaves it alone): a new pod template, rolled one healthy pod at a time by the
/// upgrade gate.
async fn restart_all(r: &ActionRequest, names: &Names, ns: &str, ctx: &Context) -> Outcome {
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let at = r.requested_at.clone().unwrap_or_else(|| r.id.to_string());
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "ipfskit.io/restarted-at": at}}}}});
    let params = PatchParams::default();
    match sts
        .patch(&names.statefulset, &params, &Patch::Merge(&patch))
        .await
    {
        Ok(_) => normal(
            "RestartRequested",
            format!(
                "request {}: rolling restart of every peer, one at a time",
                r.id
            ),
        ),
        Err(e) => warning(
            "RestartFailed",
            format!("request {}: rolling restart: {e}", r.id),
        ),
    }
}

/// Restarts one peer, or one daemon of it.
async fn restart_one(
    cluster: &IpfsCluster,
    r: &ActionRequest,
    peer: &str,
    names: &Names,
    ns: &str,
    ctx: &Context,
) -> Outcome {
    if !(0..cluster.spec.replicas).any(|i| names.peer(i) == peer) {
        let name = cluster.name_any();
        let note = format!(
            "request {}: {peer} is not a peer of IpfsCluster {name}",
            r.id
        );
        return warning("ActionRequestRefused", note);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match r.daemon {
        Some(Daemon::Ipfs) => return restart_kubo(r, peer, &pods, ctx).await,
        Some(Daemon::Cluster) => return restart_cluster(r, peer, &pods).await,
        None => {}
    }
    match pods.delete(peer, &DeleteParams::default()).await {
        Ok(_) => normal(
            "RestartRequested",
            format!(
                "request {}: deleted pod {peer}, the StatefulSet recreates it",
                r.id
            ),
        ),
        Err(e) => warning(
            "RestartFailed",
            format!("request {}: deleting pod {peer}: {e}", r.id),
        ),
    }
}

/// Asks `peer`'s IPFS Cluster daemon to restart: the request's id in the pod's
/// [`RESTART_CLUSTER_ANNOTATION`], which the cluster container reads through a downward-API
/// file; it stops the daemon and exits, kubelet restarts the container. The pod, its IP and Kubo
/// stay.
async fn restart_cluster(r: &ActionRequest, peer: &str, pods: &Api<Pod>) -> Outcome {
    let patch = json!({"metadata": {"annotations": {
        RESTART_CLUSTER_ANNOTATION: r.id.to_string(),
    }}});
    match pods
        .patch(peer, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => normal(
            "RestartRequested",
            format!(
                "request {}: asked the IPFS Cluster daemon of {peer} to stop (pod annotation \
                 {RESTART_CLUSTER_ANNOTATION}); kubelet restarts its container",
                r.id
            ),
        ),
        Err(e) => warning(
            "RestartFailed",
            format!("request {}: annotating pod {peer}: {e}", r.id),
        ),
    }
}

/// Asks `peer`'s Kubo to shut down: kubelet restarts the container; the pod, its IP and the
/// IPFS Cluster daemon stay.
async fn restart_kubo(r: &ActionRequest, peer: &str, pods: &Api<Pod>, ctx: &Context) -> Outcome {
    let ip = pods
        .get_opt(peer)
        .await
        .ok()
        .flatten()
        .and_then(|p| p.status.and_then(|s| s.pod_ip));
    let Some(ip) = ip else {
        let note = format!(
            "request {}: pod {peer} has no IP: Kubo cannot be asked to stop",
            r.id
        );
        return warning("RestartFailed", note);
    };
    let api = Endpoint::at(&ip, KUBO_RPC_PORT);
    match ctx.ipfs.kubo_shutdown(&api, CALL_TIMEOUT).await {
        Ok(()) => normal(
            "RestartRequested",
            format!(
                "request {}: asked Kubo of {peer} to shut down; kubelet restarts its container",
                r.id
            ),
        ),
        Err(f) => warning(
            "RestartFailed",
            format!("request {}: restarting Kubo of {peer}: {}", r.id, f.message),
        ),
    }
}
