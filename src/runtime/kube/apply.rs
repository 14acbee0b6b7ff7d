//! Server-side apply with the operator's one field manager, and removal of objects the operator
//! labelled for a cluster but no longer wants.

use std::fmt::Debug;

use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
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

/// Deletes the objects labelled for cluster `cluster` and controlled by the object of `owner_uid`
/// whose names are not in `keep`. Returns the names deleted.
pub async fn delete_orphans<K>(
    api: &Api<K>,
    cluster: &str,
    owner_uid: &str,
    keep: &[String],
) -> Result<Vec<String>, kube::Error>
where
    K: Resource + DeserializeOwned + Clone + Debug,
{
    let list = api
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={cluster}")))
        .await?;
    let mut deleted = Vec::new();
    for obj in list.items {
        let name = obj.name_any();
        let ours = obj
            .owner_references()
            .iter()
            .any(|o| o.uid == owner_uid && o.controller == Some(true));
        if ours && !keep.contains(&name) && obj.meta().deletion_timestamp.is_none() {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(name),
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}
