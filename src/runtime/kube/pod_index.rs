//! Which cached pods belong to which IpfsCluster: the pods' names per namespace and cluster (the
//! pods carrying the cluster's selector labels, see [`super::build::selector_labels`]), kept by
//! the pod watch next to its cache. A reconcile finds its cluster's pods through it instead of
//! looking at every cached pod, so its cost does not grow with the number of clusters.
//!
//! Fed the watch's events as the cache is: a relist (`Init` .. `InitDone`) fills a fresh index
//! that replaces the old one at its end, as the cache's own contents are replaced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

/// A cluster: its namespace and name.
type ClusterKey = (String, String);
/// A pod: its namespace and name.
type PodKey = (String, String);

#[derive(Debug, Default)]
struct Index {
    pods: HashMap<ClusterKey, BTreeSet<String>>,
    cluster_of: HashMap<PodKey, ClusterKey>,
}

impl Index {
    fn insert(&mut self, pod: &Pod) {
        let Some(key) = pod_key(pod) else { return };
        let cluster = cluster_of(pod);
        if self.cluster_of.get(&key) == cluster.as_ref() {
            return;
        }
        self.remove(&key);
        if let Some(cluster) = cluster {
            self.pods
                .entry(cluster.clone())
                .or_default()
                .insert(key.1.clone());
            self.cluster_of.insert(key, cluster);
        }
    }

    fn remove(&mut self, key: &PodKey) {
        let Some(cluster) = self.cluster_of.remove(key) else {
            return;
        };
        if let Some(names) = self.pods.get_mut(&cluster) {
            names.remove(&key.1);
            if names.is_empty() {
                self.pods.remove(&cluster);
            }
        }
    }
}

/// The pods of every cluster (see the module's documentation).
#[derive(Debug, Default)]
pub struct PodIndex {
    live: Mutex<Index>,
    /// The index being filled by a relist.
    relist: Mutex<Option<Index>>,
}

impl PodIndex {
    /// Follows one event of the pod watch.
    pub fn apply(&self, event: &Event<Pod>) {
        match event {
            Event::Apply(pod) => lock(&self.live).insert(pod),
            Event::Delete(pod) => {
                if let Some(key) = pod_key(pod) {
                    lock(&self.live).remove(&key);
                }
            }
            Event::Init => *lock(&self.relist) = Some(Index::default()),
            Event::InitApply(pod) => {
                if let Some(index) = lock(&self.relist).as_mut() {
                    index.insert(pod);
                }
            }
            Event::InitDone => {
                if let Some(index) = lock(&self.relist).take() {
                    *lock(&self.live) = index;
                }
            }
        }
    }

    /// The names of the pods of cluster `name` in namespace `ns`, in name order.
    pub fn pods_of(&self, ns: &str, name: &str) -> Vec<String> {
        lock(&self.live)
            .pods
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn pod_key(pod: &Pod) -> Option<PodKey> {
    Some((pod.metadata.namespace.clone()?, pod.metadata.name.clone()?))
}

/// The cluster whose selector labels `pod` carries, if any.
fn cluster_of(pod: &Pod) -> Option<ClusterKey> {
    let labels = pod.metadata.labels.as_ref()?;
    let instance = labels.get("app.kubernetes.io/instance")?;
    let matches = super::build::selector_labels(instance)
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let ns = pod.metadata.namespace.clone()?;
    matches.then(|| (ns, instance.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ns: &str, name: &str, cluster: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                labels: cluster.map(super::super::build::selector_labels),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn pods_are_found_by_their_clusters_selector_labels() {
        let index = PodIndex::default();
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(pod("a", "web-0", Some("web"))));
        index.apply(&Event::InitApply(pod("a", "web-1", Some("web"))));
        index.apply(&Event::InitApply(pod("b", "web-0", Some("web"))));
        index.apply(&Event::InitApply(pod("a", "stray", None)));
        assert!(
            index.pods_of("a", "web").is_empty(),
            "not before the list ends"
        );
        index.apply(&Event::InitDone);
        assert_eq!(index.pods_of("a", "web"), ["web-0", "web-1"]);
        assert_eq!(index.pods_of("b", "web"), ["web-0"]);
        assert!(index.pods_of("a", "stray").is_empty());

        index.apply(&Event::Delete(pod("a", "web-1", Some("web"))));
        index.apply(&Event::Apply(pod("a", "db-0", Some("db"))));
        assert_eq!(index.pods_of("a", "web"), ["web-0"]);
        assert_eq!(index.pods_of("a", "db"), ["db-0"]);
        // A pod whose labels change moves (or leaves).
        index.apply(&Event::Apply(pod("a", "web-0", Some("db"))));
        assert!(index.pods_of("a", "web").is_empty());
        assert_eq!(index.pods_of("a", "db"), ["db-0", "web-0"]);
        index.apply(&Event::Apply(pod("a", "web-0", None)));
        assert_eq!(index.pods_of("a", "db"), ["db-0"]);

        // A relist replaces everything: pods gone meanwhile are forgotten.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(pod("a", "db-1", Some("db"))));
        index.apply(&Event::InitDone);
        assert_eq!(index.pods_of("a", "db"), ["db-1"]);
        assert!(index.pods_of("b", "web").is_empty());
    }
}
