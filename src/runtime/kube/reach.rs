//! Step `reach`: the addresses exposed peers announce (see [`super::build::reach`] for the
//! design). After the per-peer Services are applied: renders each peer's address from its
//! Service (and node) into the announce ConfigMap, reports the peers still without one, and
//! restarts, one at a time, a peer that runs with an older address than the one rendered.
//! Without exposure it removes the announce ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::apply::{apply_changed, delete_all};
use super::build::Names;
use super::build::reach::{
    Announce, PeerAddress, all_ready, announce_config_map, exposed, peer_address, stale_peers,
};
use super::context::{Context, KubeCallError, cached_version, kube_err};
use crate::api::IpfsCluster;

/// The announce ConfigMap could not be applied or deleted, or a pod deleted.
pub type ReachError = KubeCallError;

/// Renders and applies the peers' announce addresses, restarts a peer that runs with an older
/// one, and returns the problems to show in status (peers whose Service has no address yet,
/// peers that still run without theirs after a restart). `fresh`: Services written just now
/// (newer than the watch cache's copies).
pub async fn announce(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
    fresh: &[Service],
    ns: &str,
    ctx: &Context,
) -> Result<Vec<String>, ReachError> {
    let name = cluster.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let live = cached_version(&ctx.caches.config_maps, ns, &names.announce_config_map);
    if !exposed(cluster) {
        if live.is_some() {
            let gone = [names.announce_config_map.clone()];
            delete_all(&api, &gone).await.map_err(kube_err(
                &name,
                "deleting",
                "ConfigMap",
                &names.announce_config_map,
            ))?;
        }
        return Ok(Vec::new());
    }
    let pods = ctx.caches.pods_of(ns, &name);
    let (peers, mut problems) = rendered(cluster, names, ns, fresh, &pods, ctx);
    let config_map = announce_config_map(cluster, names, owner, &peers);
    if apply_changed(ctx, cluster, &api, &config_map, live)
        .await?
        .is_some()
    {
        let note = summary(&peers, &problems);
        ctx.event(cluster, EventType::Normal, "Announce", note)
            .await;
    }
    let data = config_map.data.unwrap_or_default();
    problems.extend(restart_stale(cluster, names, ns, &pods, &data, ctx).await?);
    Ok(problems)
}

/// Each peer's addresses from its Service (and its pod's node), and the peers without one.
fn rendered(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    fresh: &[Service],
    pods: &[Pod],
    ctx: &Context,
) -> (BTreeMap<String, Announce>, Vec<String>) {
    let mut peers = BTreeMap::new();
    let mut problems = Vec::new();
    for ordinal in 0..cluster.spec.replicas {
        let peer = names.peer(ordinal);
        let service_name = names.peer_service(ordinal);
        let key = ObjectRef::new(&service_name).within(ns);
        let written = fresh
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(&service_name));
        let Some(service) = written
            .cloned()
            .or_else(|| ctx.caches.services.get(&key).map(|s| Service::clone(&s)))
        else {
            continue;
        };
        let node = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&peer))
            .and_then(|p| p.spec.as_ref()?.node_name.clone())
            .and_then(|n| ctx.caches.nodes.get(&ObjectRef::new(&n)));
        match peer_address(&service, node.as_deref()) {
            PeerAddress::Ready(announce) => {
                peers.insert(peer, announce);
            }
            PeerAddress::Pending(why) => problems.push(format!(
                "peer {peer} announces no public address: {why} (it starts without one and is \
                 restarted once the address is known)"
            )),
        }
    }
    (peers, problems)
}

/// One line per peer: what it announces, or why nothing.
fn summary(peers: &BTreeMap<String, Announce>, problems: &[String]) -> String {
    let mut lines: Vec<String> = peers
        .iter()
        .map(|(peer, a)| {
            let all: Vec<&str> = a
                .kubo
                .iter()
                .chain(&a.cluster)
                .map(String::as_str)
                .collect();
            format!("peer {peer} announces {}", all.join(", "))
        })
        .collect();
    lines.extend(problems.iter().cloned());
    lines.join("; ")
}

/// Restarts (deletes the pod of) the first peer that runs with an older announce than `data`
/// says, when every pod is Ready; a peer already restarted for the same announce is not
/// restarted again but reported.
async fn restart_stale(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    pods: &[Pod],
    data: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<Vec<String>, ReachError> {
    let key = ObjectRef::from_obj(cluster);
    let mut problems = Vec::new();
    let mut candidate = None;
    // Departing peers (a scale-in in progress) leave the peerset first and then stop: never
    // restarted for an announce they no longer have.
    let wanted: Vec<String> = (0..cluster.spec.replicas).map(|i| names.peer(i)).collect();
    let staying: Vec<Pod> = pods
        .iter()
        .filter(|p| wanted.contains(&p.name_any()))
        .cloned()
        .collect();
    for (pod, expected) in stale_peers(&staying, data) {
        let peer = pod.name_any();
        if ctx.announce_restarted(&key, &peer).as_deref() == Some(expected.as_str()) {
            problems.push(format!(
                "peer {peer} does not report the announce addresses rendered from its Service \
                 {} even after a restart for them (see the logs of its kubo-config container)",
                service_of(names, &peer)
            ));
        } else if candidate.is_none() {
            candidate = Some((peer, expected));
        }
    }
    let Some((peer, expected)) = candidate else {
        return Ok(problems);
    };
    if !all_ready(pods) {
        return Ok(problems);
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(&peer, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(problems),
        Err(e) => return Err(kube_err(&cluster.name_any(), "deleting", "Pod", &peer)(e)),
    }
    ctx.remember_announce_restart(key, &peer, expected);
    let service = service_of(names, &peer);
    info!(cluster = %cluster.name_any(), %peer, "restarting peer to announce the address of Service {service}");
    let note = format!(
        "deleted pod {peer} (the StatefulSet recreates it): it announces an older address than \
         its Service {service} has"
    );
    ctx.event(cluster, EventType::Normal, "RestartingPeer", note)
        .await;
    Ok(problems)
}

/// The per-peer Service of the pod `peer` (`<cluster>-<ordinal>`).
fn service_of(names: &Names, peer: &str) -> String {
    let ordinal = peer
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<i32>().ok())
        .unwrap_or_default();
    names.peer_service(ordinal)
}
