//! Server-side apply with the operator's one field manager, and removal of objects the operator
//! labelled for a cluster but no longer wants.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::build::CLUSTER_LABEL;

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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

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
