//! Memory of what the operator last applied, so that a steady-state reconcile sends no write: an
//! owned object is applied again only when its desired body changed, or when the live object (as
//! the controller's watch caches show it) is gone, was replaced, or was changed since.
//!
//! "Changed since" is judged by `metadata.generation` where the API server keeps one (the
//! StatefulSet, PodDisruptionBudget and NetworkPolicy: status writes by other controllers do not
//! bump it), and by `resourceVersion` otherwise (ConfigMap, Service). A watch cache that has not
//! yet seen the operator's own write shows an older version: that is not a change.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// Which version of an object was seen: its uid and generation or resourceVersion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    uid: String,
    version: Version,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Version {
    Generation(i64),
    ResourceVersion(String),
}

impl Seen {
    /// The version of an object with this metadata (`None` without a uid: not stored yet).
    pub fn of(meta: &ObjectMeta) -> Option<Seen> {
        let uid = meta.uid.clone()?;
        let version = match (meta.generation, &meta.resource_version) {
            (Some(g), _) => Version::Generation(g),
            (None, Some(rv)) => Version::ResourceVersion(rv.clone()),
            (None, None) => return None,
        };
        Some(Seen { uid, version })
    }

    /// Whether `self` (the live object) is a later change than `applied` (what the operator's
    /// write returned). resourceVersions are compared as numbers when both are (etcd revisions),
    /// otherwise any difference counts as a change.
    fn changed_since(&self, applied: &Seen) -> bool {
        if self.uid != applied.uid {
            return true;
        }
        match (&self.version, &applied.version) {
            (Version::Generation(live), Version::Generation(ours)) => live > ours,
            (Version::ResourceVersion(live), Version::ResourceVersion(ours)) => {
                match (live.parse::<u64>(), ours.parse::<u64>()) {
                    (Ok(live), Ok(ours)) => live > ours,
                    _ => live != ours,
                }
            }
            _ => true,
        }
    }
}

/// A hash of the body the operator would send (stable within one process).
pub fn body_hash<T: Serialize>(body: &T) -> u64 {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

#[derive(Clone, Debug)]
struct Applied {
    body: u64,
    seen: Seen,
}

/// An owned object: its kind and name.
type Owned = (String, String);

/// What was applied per owner (an IpfsCluster) and owned object.
#[derive(Debug)]
pub struct AppliedObjects<O> {
    applied: Mutex<HashMap<O, HashMap<Owned, Applied>>>,
    /// The owner's generation at the last look for orphans.
    orphans_checked: Mutex<HashMap<O, i64>>,
}

impl<O> Default for AppliedObjects<O> {
    fn default() -> Self {
        Self {
            applied: Mutex::new(HashMap::new()),
            orphans_checked: Mutex::new(HashMap::new()),
        }
    }
}

impl<O: Eq + Hash + Clone> AppliedObjects<O> {
    /// Whether object `kind`/`name` of `owner` must be applied: nothing recorded, the desired
    /// body changed, the live object is missing (`live` is `None`), was replaced or changed.
    pub fn needs_apply(
        &self,
        owner: &O,
        kind: &str,
        name: &str,
        body: u64,
        live: Option<&Seen>,
    ) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = applied
            .get(owner)
            .and_then(|objects| objects.get(&(kind.to_owned(), name.to_owned())))
        else {
            return true;
        };
        match live {
            None => true,
            Some(live) => last.body != body || live.changed_since(&last.seen),
        }
    }

    /// Records a successful apply of `body` that returned an object with metadata `meta`.
    pub fn record(&self, owner: &O, kind: &str, name: &str, body: u64, meta: &ObjectMeta) {
        let Some(seen) = Seen::of(meta) else { return };
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied
            .entry(owner.clone())
            .or_default()
            .insert((kind.to_owned(), name.to_owned()), Applied { body, seen });
    }

    /// Whether orphans of `owner` were looked for at this `generation` already.
    pub fn orphans_checked(&self, owner: &O, generation: i64) -> bool {
        let checked = self
            .orphans_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        checked.get(owner) == Some(&generation)
    }

    /// Records that orphans of `owner` were looked for (and deleted) at `generation`.
    pub fn mark_orphans_checked(&self, owner: &O, generation: i64) {
        let mut checked = self
            .orphans_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        checked.insert(owner.clone(), generation);
    }

    /// Forgets what was applied for `owner` (it is being deleted).
    pub fn forget(&self, owner: &O) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        applied.remove(owner);
        drop(applied);
        let mut checked = self
            .orphans_checked
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        checked.remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, generation: Option<i64>, rv: &str) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            generation,
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    #[test]
    fn applies_once_then_only_on_a_new_body_or_a_live_change() {
        let cache = AppliedObjects::<&str>::default();
        let applied = meta("u1", Some(2), "100");
        let seen = Seen::of(&applied);
        assert!(cache.needs_apply(&"c", "StatefulSet", "web", 7, seen.as_ref()));
        cache.record(&"c", "StatefulSet", "web", 7, &applied);
        // The same body, the live object as written (or a status write: same generation).
        assert!(!cache.needs_apply(&"c", "StatefulSet", "web", 7, seen.as_ref()));
        let status_write = Seen::of(&meta("u1", Some(2), "180"));
        assert!(!cache.needs_apply(&"c", "StatefulSet", "web", 7, status_write.as_ref()));
        // A watch cache that has not seen our write yet is not a change.
        let stale = Seen::of(&meta("u1", Some(1), "90"));
        assert!(!cache.needs_apply(&"c", "StatefulSet", "web", 7, stale.as_ref()));
        // A new desired body, a spec edit by someone else, a deleted or replaced object.
        assert!(cache.needs_apply(&"c", "StatefulSet", "web", 8, seen.as_ref()));
        let edited = Seen::of(&meta("u1", Some(3), "200"));
        assert!(cache.needs_apply(&"c", "StatefulSet", "web", 7, edited.as_ref()));
        assert!(cache.needs_apply(&"c", "StatefulSet", "web", 7, None));
        let replaced = Seen::of(&meta("u2", Some(1), "300"));
        assert!(cache.needs_apply(&"c", "StatefulSet", "web", 7, replaced.as_ref()));
        // Other objects and owners have their own records; forgetting an owner clears its own.
        assert!(cache.needs_apply(&"c", "Service", "web", 7, seen.as_ref()));
        assert!(cache.needs_apply(&"d", "StatefulSet", "web", 7, seen.as_ref()));
        cache.forget(&"c");
        assert!(cache.needs_apply(&"c", "StatefulSet", "web", 7, seen.as_ref()));
    }

    #[test]
    fn orphans_are_looked_for_once_per_generation() {
        let cache = AppliedObjects::<&str>::default();
        assert!(!cache.orphans_checked(&"c", 1));
        cache.mark_orphans_checked(&"c", 1);
        assert!(cache.orphans_checked(&"c", 1));
        assert!(
            !cache.orphans_checked(&"c", 2),
            "a new generation looks again"
        );
        assert!(!cache.orphans_checked(&"d", 1));
        cache.forget(&"c");
        assert!(!cache.orphans_checked(&"c", 1));
    }

    #[test]
    fn without_a_generation_the_resource_version_tells_changes() {
        let cache = AppliedObjects::<&str>::default();
        cache.record(&"c", "ConfigMap", "cfg", 1, &meta("u", None, "50"));
        let same = Seen::of(&meta("u", None, "50"));
        let older = Seen::of(&meta("u", None, "49"));
        let newer = Seen::of(&meta("u", None, "51"));
        assert!(!cache.needs_apply(&"c", "ConfigMap", "cfg", 1, same.as_ref()));
        assert!(!cache.needs_apply(&"c", "ConfigMap", "cfg", 1, older.as_ref()));
        assert!(cache.needs_apply(&"c", "ConfigMap", "cfg", 1, newer.as_ref()));
        cache.record(&"c", "ConfigMap", "opaque", 1, &meta("u", None, "abc"));
        let other = Seen::of(&meta("u", None, "abd"));
        assert!(cache.needs_apply(&"c", "ConfigMap", "opaque", 1, other.as_ref()));
    }

    #[test]
    fn the_body_hash_follows_the_content() {
        let a = serde_json::json!({"spec": {"replicas": 1}});
        let b = serde_json::json!({"spec": {"replicas": 2}});
        assert_eq!(body_hash(&a), body_hash(&a.clone()));
        assert_ne!(body_hash(&a), body_hash(&b));
    }
}
