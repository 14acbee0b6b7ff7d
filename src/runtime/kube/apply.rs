//! Step `apply`: the owned objects of a cluster, server-side applied with the operator's one
//! field manager when their body changed or their live copy changed or vanished (read from the
//! watch caches), Services no longer wanted removed, volume claims grown, departing peers
//! handled before a scale-in. [`children`] destructures the built [`Children`] without `..`, so
//! a new kind of owned object does not compile until it is applied here.

use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::applied::{Seen, body_hash};
use super::build::{CLUSTER_LABEL, Children, Names};
use super::context::{Context, KubeCallError, cached_version, kube_err};
use super::upgrade;
use super::{reach, scale};
use crate::api::IpfsCluster;

/// An owned object could not be read, applied or deleted.
pub type ApplyError = KubeCallError;

/// The StatefulSet as the watch cache holds it, or as the API server has it when the cache does
/// not (not created yet, or created so recently that the watch has not shown it).
pub async fn existing_statefulset(
    cluster: &IpfsCluster,
    names: &Names,
    ns: &str,
    ctx: &Context,
) -> Result<Option<Arc<StatefulSet>>, ApplyError> {
    let key = ObjectRef::new(&names.statefulset).within(ns);
    let owner = ObjectRef::from_obj(cluster);
    if let Some(sts) = ctx.caches.statefulsets.get(&key) {
        return Ok(Some(ctx.written.freshest(&owner, sts)));
    }
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let live = api.get_opt(&names.statefulset).await.map_err(kube_err(
        &cluster.name_any(),
        "reading",
        "StatefulSet",
        &names.statefulset,
    ))?;
    Ok(live.map(|sts| ctx.written.freshest(&owner, Arc::new(sts))))
}

/// The StatefulSet each cluster's last write returned: a watch cache that has not seen the
/// operator's own write yet (an older generation of the same object) must not make it undo that
/// write, e.g. raise a partition the upgrade gate just lowered.
#[derive(Debug, Default)]
pub struct Written(
    std::sync::Mutex<std::collections::HashMap<ObjectRef<IpfsCluster>, Arc<StatefulSet>>>,
);

impl Written {
    fn record(&self, owner: &ObjectRef<IpfsCluster>, sts: &StatefulSet) {
        // Kept as the watch cache keeps StatefulSets (no managed fields: most of the object).
        let mut kept = sts.clone();
        super::slim::statefulset(&mut kept);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(owner.clone(), Arc::new(kept));
    }

    /// `live`, or the operator's last write of the same object when `live` is older. Once the
    /// cache shows that write (or a later object), the write is forgotten: it is needed no more.
    pub fn freshest(
        &self,
        owner: &ObjectRef<IpfsCluster>,
        live: Arc<StatefulSet>,
    ) -> Arc<StatefulSet> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(owner) {
            Some(ours)
                if ours.metadata.uid == live.metadata.uid
                    && ours.metadata.generation > live.metadata.generation =>
            {
                Arc::clone(ours)
            }
            Some(_) => {
                map.remove(owner);
                live
            }
            None => live,
        }
    }

    pub fn forget(&self, owner: &ObjectRef<IpfsCluster>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(owner);
    }
}

/// Applies every owned object that needs it (see [`AppliedObjects::needs_apply`]), deletes
/// labelled Services no longer wanted, renders the exposed peers' addresses ([`reach`], before
/// the StatefulSet, so that new pods find theirs), grows volume claims, and returns the
/// StatefulSet as applied (or as it was, when unchanged) and the peers' reachability problems.
/// Announces a new generation with an `Applied` Event.
///
/// [`AppliedObjects::needs_apply`]: super::applied::AppliedObjects::needs_apply
pub async fn children(
    cluster: &IpfsCluster,
    children: Children,
    owner: &OwnerReference,
    ns: &str,
    ctx: &Context,
) -> Result<(StatefulSet, Vec<String>), ApplyError> {
    let Children {
        names,
        config_map,
        statefulset,
        headless_service,
        api_service,
        peer_services,
        gateway_service,
        pdb,
        network_policy,
    } = children;
    let caches = &ctx.caches;
    let live = cached_version(&caches.config_maps, ns, &names.config_map);
    apply_changed(ctx, cluster, &api::<ConfigMap>(ctx, ns), &config_map, live).await?;
    let services: Vec<Service> = [headless_service, api_service]
        .into_iter()
        .chain(peer_services)
        .chain(gateway_service)
        .collect();
    let fresh = apply_services(cluster, &services, ns, ctx).await?;
    let unreached = reach::announce(cluster, &names, owner, &fresh, ns, ctx).await?;
    let live = cached_version(&caches.pdbs, ns, &names.pdb);
    apply_changed(
        ctx,
        cluster,
        &api::<PodDisruptionBudget>(ctx, ns),
        &pdb,
        live,
    )
    .await?;
    let live = cached_version(&caches.network_policies, ns, &names.network_policy);
    let np_api = api::<NetworkPolicy>(ctx, ns);
    apply_changed(ctx, cluster, &np_api, &network_policy, live).await?;
    let existing = existing_statefulset(cluster, &names, ns, ctx).await?;
    let grow = existing
        .as_ref()
        .is_some_and(|sts| scale::claims_may_need_growing(sts, cluster));
    let applied = apply_statefulset(cluster, statefulset, existing, ns, ctx).await?;
    if grow {
        scale::grow_claims(cluster, &names, ns, ctx).await;
    }
    announce_generation(cluster, ctx).await;
    Ok((applied, unreached))
}

fn api<K>(ctx: &Context, ns: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(ctx.client.clone(), ns)
}

/// An `Applied` Event the first time a generation of the spec is applied.
async fn announce_generation(cluster: &IpfsCluster, ctx: &Context) {
    let observed = cluster.status.as_ref().and_then(|s| s.observed_generation);
    if observed == cluster.metadata.generation {
        return;
    }
    let note = format!(
        "generation {}: StatefulSet, Services, ConfigMap, PodDisruptionBudget and NetworkPolicy \
         applied",
        cluster.metadata.generation.unwrap_or_default()
    );
    ctx.event(cluster, EventType::Normal, "Applied", note).await;
}

/// Applies the wanted Services and deletes the ones this cluster labelled but no longer wants;
/// returns the Services written now (the watch cache shows them a moment later). Which Services
/// are wanted changes only with the spec: orphans are looked for once per generation (and after
/// a restart of the operator or an apply), not in every reconcile.
async fn apply_services(
    cluster: &IpfsCluster,
    services: &[Service],
    ns: &str,
    ctx: &Context,
) -> Result<Vec<Service>, ApplyError> {
    let name = cluster.name_any();
    let svc_api = api::<Service>(ctx, ns);
    let mut written = Vec::new();
    for svc in services {
        let live = cached_version(&ctx.caches.services, ns, &svc.name_any());
        written.extend(apply_changed(ctx, cluster, &svc_api, svc, live).await?);
    }
    let owner = ObjectRef::from_obj(cluster);
    let generation = cluster.metadata.generation.unwrap_or_default();
    if written.is_empty() && ctx.applied.orphans_checked(&owner, generation) {
        return Ok(written);
    }
    let wanted: Vec<String> = services.iter().map(ResourceExt::name_any).collect();
    let owner_uid = cluster.metadata.uid.clone().unwrap_or_default();
    let unwanted = orphans(
        ctx.caches
            .services
            .state()
            .iter()
            .map(|s| &s.metadata)
            .filter(|m| m.namespace.as_deref() == Some(ns)),
        &name,
        &owner_uid,
        &wanted,
    );
    let removed = delete_all(&svc_api, &unwanted).await.map_err(kube_err(
        &name,
        "cleaning up",
        "Services",
        &name,
    ))?;
    ctx.applied.mark_orphans_checked(&owner, generation);
    for svc in removed {
        let note = format!("deleted Service {svc}: the spec no longer asks for it");
        ctx.event(cluster, EventType::Normal, "DeletedOrphan", note)
            .await;
    }
    Ok(written)
}

/// Applies the StatefulSet when it changed, keeping the existing (immutable) volume claim
/// templates, and lets departing peers leave the peerset first when it scales in.
async fn apply_statefulset(
    cluster: &IpfsCluster,
    mut statefulset: StatefulSet,
    existing: Option<Arc<StatefulSet>>,
    ns: &str,
    ctx: &Context,
) -> Result<StatefulSet, ApplyError> {
    let partition = upgrade::partition_to_apply(existing.as_deref(), cluster.spec.replicas);
    upgrade::set_partition(&mut statefulset, partition);
    let Some(old) = existing else {
        let body = body_hash(&statefulset);
        return write_statefulset(ctx, cluster, &statefulset, body, ns).await;
    };
    // Volume claim templates are immutable: keep the existing ones (sizes grow on the claims).
    statefulset.spec.volume_claim_templates = old.spec.volume_claim_templates.clone();
    let owner = ObjectRef::from_obj(cluster);
    let Some(body) = needs_apply(ctx, &owner, &statefulset, Seen::of(&old.metadata)) else {
        return Ok(Arc::unwrap_or_clone(old));
    };
    let old_replicas = old.spec.replicas.unwrap_or(1);
    if old_replicas > cluster.spec.replicas {
        scale::leave_peerset(cluster, old_replicas, ns, ctx).await;
    }
    write_statefulset(ctx, cluster, &statefulset, body, ns).await
}

/// Applies the StatefulSet `built` (as [`children`] does) with the upgrade gate's `partition`,
/// keeping the volume claim templates of `live`. Returns the StatefulSet as written.
pub async fn statefulset_partition(
    cluster: &IpfsCluster,
    mut built: StatefulSet,
    live: &StatefulSet,
    partition: i32,
    ns: &str,
    ctx: &Context,
) -> Result<StatefulSet, ApplyError> {
    built.spec.volume_claim_templates = live.spec.volume_claim_templates.clone();
    upgrade::set_partition(&mut built, partition);
    let body = body_hash(&built);
    write_statefulset(ctx, cluster, &built, body, ns).await
}

async fn write_statefulset(
    ctx: &Context,
    cluster: &IpfsCluster,
    statefulset: &StatefulSet,
    body: u64,
    ns: &str,
) -> Result<StatefulSet, ApplyError> {
    let written = applied_recorded(ctx, cluster, &api(ctx, ns), statefulset, body).await?;
    ctx.written.record(&ObjectRef::from_obj(cluster), &written);
    Ok(written)
}

/// Whether `obj` must be applied (see [`super::applied::AppliedObjects::needs_apply`]): returns
/// the hash of its body to record after the apply, or `None` when it is unchanged.
fn needs_apply<K: Resource<DynamicType = ()> + Serialize>(
    ctx: &Context,
    owner: &ObjectRef<IpfsCluster>,
    obj: &K,
    live: Option<Seen>,
) -> Option<u64> {
    let body = body_hash(obj);
    let kind = K::kind(&());
    ctx.applied
        .needs_apply(owner, &kind, &obj.name_any(), body, live.as_ref())
        .then_some(body)
}

/// Applies `obj` unless it is unchanged since its last apply and untouched since (the watch
/// cache shows `live`). Returns the applied object, or `None` when nothing was sent.
pub(super) async fn apply_changed<K>(
    ctx: &Context,
    cluster: &IpfsCluster,
    api: &Api<K>,
    obj: &K,
    live: Option<Seen>,
) -> Result<Option<K>, ApplyError>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let owner = ObjectRef::from_obj(cluster);
    let Some(body) = needs_apply(ctx, &owner, obj, live) else {
        return Ok(None);
    };
    applied_recorded(ctx, cluster, api, obj, body)
        .await
        .map(Some)
}

/// Applies `obj` and records that `body` was applied.
async fn applied_recorded<K>(
    ctx: &Context,
    cluster: &IpfsCluster,
    api: &Api<K>,
    obj: &K,
    body: u64,
) -> Result<K, ApplyError>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.name_any();
    let kind = K::kind(&());
    let written =
        apply(api, obj)
            .await
            .map_err(kube_err(&cluster.name_any(), "applying", &kind, &name))?;
    let owner = ObjectRef::from_obj(cluster);
    ctx.applied
        .record(&owner, &kind, &name, body, written.meta());
    Ok(written)
}

/// The field manager of every write the operator makes (objects and status).
pub const FIELD_MANAGER: &str = "ipfs-kit-operator";

/// Server-side applies `obj` (forcing ownership of the fields it sets). An apply that changes
/// nothing leaves the object, and its resourceVersion, untouched.
pub async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K, kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj.name_any();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// The names of the objects among `objects` that are labelled for cluster `cluster`, controlled
/// by the object of `owner_uid`, not being deleted, and not in `keep`: the orphans to delete.
pub fn orphans<'a>(
    objects: impl IntoIterator<Item = &'a ObjectMeta>,
    cluster: &str,
    owner_uid: &str,
    keep: &[String],
) -> Vec<String> {
    objects
        .into_iter()
        .filter(|meta| {
            // Cheapest test first: most objects belong to other clusters.
            meta.labels
                .as_ref()
                .and_then(|l| l.get(CLUSTER_LABEL))
                .is_some_and(|c| c == cluster)
                && meta.deletion_timestamp.is_none()
                && meta.name.as_ref().is_some_and(|name| !keep.contains(name))
                && meta
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.uid == owner_uid && o.controller == Some(true))
        })
        .filter_map(|meta| meta.name.clone())
        .collect()
}

/// Deletes the objects named `names` (in the background: their dependents are collected after).
/// Returns the names deleted; one already gone is skipped.
pub async fn delete_all<K>(api: &Api<K>, names: &[String]) -> Result<Vec<String>, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let mut deleted = Vec::new();
    for name in names {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name.clone()),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, cluster: &str, owner: &str, controller: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            labels: Some([(CLUSTER_LABEL.to_owned(), cluster.to_owned())].into()),
            owner_references: Some(vec![OwnerReference {
                uid: owner.into(),
                controller: Some(controller),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn orphans_are_our_labelled_controlled_unwanted_objects_only() {
        let mut deleting = service("web-old", "web", "u1", true);
        deleting.deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-01-01T00:00:00Z")).expect("time"));
        let objects = [
            service("web-peers", "web", "u1", true),
            service("web-gateway", "web", "u1", true),
            service("other-gateway", "other", "u2", true),
            service("web-adopted", "web", "u9", true),
            service("web-shared", "web", "u1", false),
            deleting,
        ];
        let keep = ["web-peers".to_owned()];
        assert_eq!(orphans(objects.iter(), "web", "u1", &keep), ["web-gateway"]);
    }
}
