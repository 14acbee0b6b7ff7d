//! Idle reconciles neither build nor apply. A cluster is reconciled every probe interval, and
//! building its owned objects again to hash and compare them with what was applied costs most of
//! an idle reconcile's CPU. Those objects can only differ from the last full apply's when the
//! spec has a new generation or a live copy changed or vanished (whoever changed it: the watch
//! caches show it). So a full apply that leaves them in order records what the caches show of
//! them; a later reconcile that finds the same generation and the same versions in the caches
//! skips building and applying (the upgrade gate builds the StatefulSet only when it moves the
//! partition).
//!
//! A record taken while the caches still lag behind a write of this reconcile is harmless: the
//! write happened, and once the caches show it the versions differ and the next reconcile does a
//! full apply (which then finds nothing to write, and records again). Clusters whose peers are
//! exposed are always applied in full: their announced addresses follow pods and nodes.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::applied::Seen;
use super::build::{Names, reach::exposed};
use super::context::{OwnedCaches, cached_version};
use super::scale;
use crate::api::IpfsCluster;

/// The last full apply of each cluster that may be skipped next time.
#[derive(Debug, Default)]
pub struct Settled(Mutex<HashMap<ObjectRef<IpfsCluster>, Entry>>);

#[derive(Debug)]
struct Entry {
    at: Fingerprint,
    /// The Services the spec asked for then.
    services: Vec<String>,
}

/// What a full apply depends on and the watch caches can tell: the IpfsCluster's identity and
/// generation, and the version of each owned object (`None`: absent).
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    uid: Option<String>,
    generation: Option<i64>,
    seen: Vec<Option<Seen>>,
}

fn fingerprint(
    cluster: &IpfsCluster,
    names: &Names,
    services: &[String],
    ns: &str,
    caches: &OwnedCaches,
) -> Fingerprint {
    let mut seen = vec![
        cached_version(&caches.config_maps, ns, &names.config_map),
        cached_version(&caches.config_maps, ns, &names.announce_config_map),
        cached_version(&caches.pdbs, ns, &names.pdb),
        cached_version(&caches.network_policies, ns, &names.network_policy),
        cached_version(&caches.statefulsets, ns, &names.statefulset),
    ];
    seen.extend(
        services
            .iter()
            .map(|s| cached_version(&caches.services, ns, s)),
    );
    Fingerprint {
        uid: cluster.metadata.uid.clone(),
        generation: cluster.metadata.generation,
        seen,
    }
}

impl Settled {
    /// Whether nothing the last full apply depends on changed since (then this reconcile need
    /// not build or apply anything).
    pub fn unchanged(&self, cluster: &IpfsCluster, ns: &str, caches: &OwnedCaches) -> bool {
        if cluster.spec.paused || exposed(cluster) {
            return false;
        }
        let key = ObjectRef::from_obj(cluster);
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = map.get(&key) else {
            return false;
        };
        let names = Names::of(&cluster.name_any());
        fingerprint(cluster, &names, &entry.services, ns, caches) == entry.at
    }

    /// Records a full apply that succeeded: `services` are the Services it applied, `applied` the
    /// StatefulSet as it is now. Not recorded (so the next reconcile
    /// applies in full again) when the apply is not done by itself: exposed peers, or volume
    /// claims still to grow.
    pub fn record(
        &self,
        cluster: &IpfsCluster,
        services: Vec<String>,
        applied: &StatefulSet,
        ns: &str,
        caches: &OwnedCaches,
    ) {
        let key = ObjectRef::from_obj(cluster);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cluster.spec.paused
            || exposed(cluster)
            || scale::claims_may_need_growing(applied, cluster)
        {
            map.remove(&key);
            return;
        }
        let names = Names::of(&cluster.name_any());
        let at = fingerprint(cluster, &names, &services, ns, caches);
        map.insert(key, Entry { at, services });
    }

    pub fn forget(&self, cluster: &ObjectRef<IpfsCluster>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(cluster);
    }
}
