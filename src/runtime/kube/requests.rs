//! Step `requests`: carries out what a dashboard client asked for through the
//! [`ACTION_REQUEST_ANNOTATION`] (the controller stays the one writer), reports it as an Event,
//! then removes the annotation.
//!
//! - `restart` of one peer deletes its pod (the StatefulSet recreates it);
//! - `restart` of one daemon: Kubo is asked to shut down (RPC `shutdown`) and kubelet restarts
//!   its container, nothing else; IPFS Cluster has no such call, so its pod is deleted;
//! - `restart` of every peer rolls the StatefulSet one pod at a time;
//! - `probe` is answered by the next round (peers are probed every `probeInterval`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use super::build::Names;
use super::context::{CALL_TIMEOUT, Context, KubeCallError, kube_err};
use crate::api::cluster::KUBO_RPC_PORT;
use crate::api::{ACTION_REQUEST_ANNOTATION, ActionKind, ActionRequest, Daemon, IpfsCluster};
use crate::probe::Endpoint;

/// The annotation could not be removed.
pub type RequestError = KubeCallError;

/// What became of a request: an Event.
struct Outcome {
    type_: EventType,
    reason: &'static str,
    note: String,
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

/// Carries out the request recorded on `cluster`, if there is one; whether there was one (then
/// the peers are probed at once, whatever the probe interval).
pub async fn carry_out(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    ctx: &Context,
) -> Result<bool, RequestError> {
    let Some(raw) = cluster.annotations().get(ACTION_REQUEST_ANNOTATION) else {
        return Ok(false);
    };
    let outcome = match parse(raw) {
        Err(outcome) => outcome,
        Ok(r) if cluster.spec.paused => warning(
            "ActionRequestRefused",
            format!(
                "request {}: {:?} refused: spec.paused is true",
                r.id, r.action
            ),
        ),
        Ok(r) => match (r.action, &r.peer) {
            (ActionKind::Probe, _) => normal(
                "ProbeRequested",
                format!(
                    "request {}: the peers are probed every spec.health.probeInterval",
                    r.id
                ),
            ),
            (ActionKind::Restart, None) => restart_all(&r, names, ns, ctx).await,
            (ActionKind::Restart, Some(peer)) => {
                restart_one(cluster, &r, peer, names, ns, ctx).await
            }
        },
    };
    ctx.event(cluster, outcome.type_, outcome.reason, outcome.note)
        .await;
    let name = cluster.name_any();
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
    Ok(true)
}

/// The request in the annotation, or the Event saying why it is not one.
fn parse(raw: &str) -> Result<ActionRequest, Outcome> {
    serde_json::from_str::<ActionRequest>(raw).map_err(|e| {
        let action = serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
        match action.as_deref() {
            Some(other @ ("start" | "stop")) => warning(
                "ActionRequestRefused",
                format!(
                    "`{other}` is not available in Kubernetes: the operator keeps the declared \
                     peers running; use spec.paused or spec.replicas"
                ),
            ),
            _ => warning(
                "ActionRequestInvalid",
                format!("annotation {ACTION_REQUEST_ANNOTATION} is not an action request: {e}"),
            ),
        }
    })
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
    if r.daemon == Some(Daemon::Ipfs) {
        return restart_kubo(r, peer, &pods, ctx).await;
    }
    let why = match r.daemon {
        Some(_) => " (IPFS Cluster cannot be restarted alone without exec into the pod)",
        None => "",
    };
    match pods.delete(peer, &DeleteParams::default()).await {
        Ok(_) => normal(
            "RestartRequested",
            format!(
                "request {}: deleted pod {peer}, the StatefulSet recreates it{why}",
                r.id
            ),
        ),
        Err(e) => warning(
            "RestartFailed",
            format!("request {}: deleting pod {peer}: {e}", r.id),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_daemon_and_unknown_actions_are_refused_with_a_reason() {
        let r = parse(r#"{"id": 3, "action": "restart", "peer": "web-1", "daemon": "ipfs"}"#)
            .ok()
            .expect("a request");
        assert_eq!(r.daemon, Some(Daemon::Ipfs));
        assert_eq!(r.peer.as_deref(), Some("web-1"));
        let stop = parse(r#"{"id": 4, "action": "stop"}"#).expect_err("refused");
        assert_eq!(stop.reason, "ActionRequestRefused");
        assert!(
            stop.note.contains("use spec.paused or spec.replicas"),
            "{}",
            stop.note
        );
        let junk = parse("{").expect_err("invalid");
        assert_eq!(junk.reason, "ActionRequestInvalid");
    }
}
