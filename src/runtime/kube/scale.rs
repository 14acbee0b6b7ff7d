//! Size changes the StatefulSet cannot make alone: volume claims grown to a bigger
//! `storage.size` (claim templates are immutable), and peers leaving the IPFS Cluster peerset
//! before a scale-in removes their pods.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::build::{CLUSTER_VOLUME, KUBO_VOLUME, Names};
use super::context::{CALL_TIMEOUT, Context};
use crate::api::IpfsCluster;
use crate::api::cluster::CLUSTER_REST_PORT;
use crate::api::validation::parse_storage_size;
use crate::probe::Endpoint;
use crate::probe::cluster::CRDT_CANNOT_REMOVE;

/// The storage request of a claim (template) spec, if it has one.
fn requested(
    spec: Option<&k8s_openapi::api::core::v1::PersistentVolumeClaimSpec>,
) -> Option<String> {
    spec.and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
}

/// Whether the spec asks for bigger volumes than the StatefulSet's claim templates (kept from
/// when it was created), so that existing claims may have to grow. Claims made from the
/// templates already have the templates' sizes.
pub fn claims_may_need_growing(sts: &StatefulSet, cluster: &IpfsCluster) -> bool {
    let spec = &cluster.spec;
    sts.spec.volume_claim_templates.iter().flatten().any(|t| {
        let wanted = match t.metadata.name.as_deref() {
            Some(KUBO_VOLUME) => &spec.kubo.storage.size,
            Some(CLUSTER_VOLUME) => &spec.cluster.storage.size,
            _ => return false,
        };
        let template = requested(t.spec.as_ref()).and_then(|q| parse_storage_size(&q).ok());
        match (parse_storage_size(wanted), template) {
            (Ok(wanted), Some(template)) => wanted > template,
            _ => false,
        }
    })
}

/// Grows existing volume claims to the spec's sizes (never shrinks them). A refusal (for example
/// a StorageClass without volume expansion) is reported as a Warning Event, not retried in a loop.
pub async fn grow_claims(cluster: &IpfsCluster, names: &Names, ns: &str, ctx: &Context) {
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
            let (Some(current), Ok(wanted)) =
                (requested(pvc.spec.as_ref()), parse_storage_size(size))
            else {
                continue;
            };
            if parse_storage_size(&current).is_ok_and(|c| c >= wanted) {
                continue;
            }
            let patch = json!({"spec": {"resources": {"requests": {"storage": size}}}});
            let (type_, reason, note) = match api
                .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => (
                    EventType::Normal,
                    "VolumeGrown",
                    format!("PersistentVolumeClaim {claim}: {current} -> {size}"),
                ),
                Err(e) => (
                    EventType::Warning,
                    "VolumeGrowFailed",
                    format!(
                        "PersistentVolumeClaim {claim} could not grow from {current} to {size}: \
                         {e} (does its StorageClass allow volume expansion?)"
                    ),
                ),
            };
            ctx.event(cluster, type_, reason, note).await;
        }
    }
}

/// Before scaling in, asks a remaining peer's IPFS Cluster to remove the departing peers from
/// the peerset (`DELETE /peers/<id>`), using the cluster peer ids from the last status. A peer
/// whose id is unknown (never answered) has nothing to remove.
pub async fn leave_peerset(cluster: &IpfsCluster, old_replicas: i32, ns: &str, ctx: &Context) {
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
        .and_then(|p| p.status.and_then(|s| s.pod_ip))
        .map(|ip| Endpoint::at(&ip, CLUSTER_REST_PORT));
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
            (Some(id), Some(api)) => {
                leave_note(&peer, id, ctx.ipfs.remove_peer(api, id, CALL_TIMEOUT).await)
            }
        };
        ctx.event(cluster, EventType::Normal, "ScaleIn", note).await;
    }
}

/// What the `ScaleIn` Event says about removing `peer` (`id`) from the peerset.
fn leave_note(peer: &str, id: &str, result: crate::probe::report::ProbeResult<()>) -> String {
    match result {
        Ok(()) => format!("scaling in: removed {peer} ({id}) from the cluster peerset"),
        // CRDT consensus first re-allocates the peer's pins, then refuses the removal: it keeps
        // no peerset (a peer drops out when it stops).
        Err(f) if f.message.contains(CRDT_CANNOT_REMOVE) => format!(
            "scaling in: re-allocated the pins of {peer} ({id}) to the remaining peers; CRDT \
             consensus keeps no peerset to remove it from, it drops out when it stops"
        ),
        Err(f) => format!(
            "scaling in: removing {peer} ({id}) from the peerset: {}",
            f.message
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::report::{FailureKind, ProbeFailure};

    #[test]
    fn the_scale_in_event_says_what_crdt_consensus_did() {
        let crdt = Err(ProbeFailure {
            kind: FailureKind::HttpStatus,
            message: format!("DELETE /peers: 500 Internal Server Error: {CRDT_CANNOT_REMOVE}"),
        });
        let note = leave_note("web-2", "12D3", crdt);
        assert!(
            note.contains("re-allocated the pins of web-2 (12D3)"),
            "{note}"
        );
        let other = Err(ProbeFailure {
            kind: FailureKind::Unreachable,
            message: "DELETE /peers: connection refused".into(),
        });
        assert!(leave_note("web-2", "12D3", other).ends_with("connection refused"));
        assert!(leave_note("web-2", "12D3", Ok(())).contains("removed web-2 (12D3)"));
    }
}
