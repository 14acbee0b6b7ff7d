//! The specs in Kubernetes: the IpfsCluster objects themselves. A change is a JSON merge patch of
//! the IpfsCluster through the API (field manager `ipfs-kit-operator-dashboard`), made by the
//! sidecar's ServiceAccount once the caller's own rights were checked (the dashboard token, or
//! `patch` on that IpfsCluster with `--kube-auth`). The patch carries the resourceVersion it was
//! checked against, so a concurrent change is never overwritten; the API server validates the
//! result (OpenAPI schema and CEL rules) and the controller rolls it out.

use futures::future::BoxFuture;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value, json};

use super::{Patched, SpecError, SpecStore, StoredSpec, merged};
use crate::api::IpfsCluster;
use crate::dashboard::ClusterEntry;
use crate::dashboard::kube::FIELD_MANAGER;

/// How often a patch is tried again when the object changed between its read and its write (the
/// controller writes the status often).
const ATTEMPTS: usize = 4;

/// The IpfsClusters through the Kubernetes API (the sidecar needs `get` and `patch` on
/// `ipfsclusters`).
pub struct KubeSpecs {
    client: Client,
}

impl KubeSpecs {
    pub fn new(client: Client) -> KubeSpecs {
        KubeSpecs { client }
    }
}

/// The namespace and name of `cluster`'s object, and its API.
fn target(
    client: &Client,
    cluster: &ClusterEntry,
) -> Result<(Api<IpfsCluster>, String), SpecError> {
    let namespace = cluster
        .namespace
        .as_deref()
        .ok_or_else(|| SpecError::NotFound(format!("cluster {} has no namespace", cluster.name)))?;
    Ok((
        Api::namespaced(client.clone(), namespace),
        format!("IpfsCluster {namespace}/{}", cluster.name),
    ))
}

fn stored(object: &IpfsCluster) -> StoredSpec {
    StoredSpec {
        spec: object.spec.clone(),
        generation: object.metadata.generation.unwrap_or(0),
    }
}

/// An API error as a spec error naming `what` and `verb`.
fn api_error(e: kube::Error, what: &str, verb: &str) -> SpecError {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            SpecError::NotFound(format!("{what} does not exist (any more)"))
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => SpecError::Invalid(format!(
            "the API server refused the change of {what}: {}",
            s.message
        )),
        kube::Error::Api(s) if s.code == 403 || s.code == 401 => SpecError::Refused(format!(
            "the API server does not let the dashboard {verb} {what}: {} (its ServiceAccount \
             needs `get` and `patch` on ipfsclusters, as in deploy/rbac.yaml)",
            s.message
        )),
        e => SpecError::Unavailable(format!("{verb} {what}: {e}; try again shortly")),
    }
}

impl SpecStore for KubeSpecs {
    fn read(&self, cluster: &ClusterEntry) -> BoxFuture<'static, Result<StoredSpec, SpecError>> {
        let target = target(&self.client, cluster);
        let name = cluster.name.clone();
        Box::pin(async move {
            let (api, what) = target?;
            let object = api
                .get(&name)
                .await
                .map_err(|e| api_error(e, &what, "read"))?;
            Ok(stored(&object))
        })
    }

    fn patch(
        &self,
        cluster: &ClusterEntry,
        patch: Map<String, Value>,
        expected: Option<i64>,
    ) -> BoxFuture<'static, Result<Patched, SpecError>> {
        let target = target(&self.client, cluster);
        let name = cluster.name.clone();
        Box::pin(async move {
            let (api, what) = target?;
            for _ in 0..ATTEMPTS {
                match patch_once(&api, &name, &what, &patch, expected).await {
                    Err(Retry) => continue,
                    Ok(result) => return result,
                }
            }
            Err(SpecError::Unavailable(format!(
                "{what} changed {ATTEMPTS} times while the change was being made; try again"
            )))
        })
    }

    fn applied_by(&self) -> &'static str {
        "a JSON merge patch of the IpfsCluster through the Kubernetes API; the operator rolls it \
         out (status.observedGeneration follows)"
    }
}

/// The object changed between the read and the patch: read it again.
struct Retry;

/// Reads the object, checks and merges the patch, and sends it conditional on the
/// resourceVersion read.
async fn patch_once(
    api: &Api<IpfsCluster>,
    name: &str,
    what: &str,
    patch: &Map<String, Value>,
    expected: Option<i64>,
) -> Result<Result<Patched, SpecError>, Retry> {
    let current = match api.get(name).await {
        Ok(object) => object,
        Err(e) => return Ok(Err(api_error(e, what, "read"))),
    };
    let now = stored(&current);
    if let Some(expected) = expected.filter(|e| *e != now.generation) {
        return Ok(Err(SpecError::Changed(format!(
            "the spec of {what} changed since you read it (generation {expected}, now {}): \
             reload it and make the change again",
            now.generation
        ))));
    }
    let changed = match merged(&now.spec, patch) {
        Ok((_, changed)) => changed,
        Err(e) => return Ok(Err(e)),
    };
    if changed.is_empty() {
        return Ok(Ok(Patched {
            stored: now,
            changed,
        }));
    }
    let body = json!({
        "metadata": {"resourceVersion": current.resource_version()},
        "spec": Value::Object(patch.clone()),
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api.patch(name, &params, &Patch::Merge(&body)).await {
        Ok(object) => {
            tracing::info!(cluster = %what, ?changed, generation = ?object.metadata.generation, "changed the spec from the dashboard");
            Ok(Ok(Patched {
                stored: stored(&object),
                changed,
            }))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Err(Retry),
        Err(e) => Ok(Err(api_error(e, what, "patch"))),
    }
}
