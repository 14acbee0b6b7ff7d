//! Pure builders of the objects one IpfsCluster owns: a StatefulSet (Kubo + IPFS Cluster in each
//! pod), the peers' headless Service, an internal API Service, the optional per-peer p2p Services
//! and gateway Service, the ConfigMap of start scripts, the generated cluster Secret, a PodDisruptionBudget
//! and a NetworkPolicy. No I/O: same cluster in, same objects out (the generated secret value is
//! an input).
//!
//! How a pod starts, on every start (so that spec changes take effect):
//! 1. init container `kubo-config` (Kubo image): `ipfs init` if the repository is new, `ipfs repo
//!    migrate`, then the operator-managed settings and the spec's `kubo.config` overrides are
//!    written leaf by leaf with `ipfs config --json`;
//! 2. init container `cluster-config` (Cluster image): `ipfs-cluster-service init` if the state
//!    directory is new; the rest of the Cluster configuration comes from `CLUSTER_*` environment
//!    variables, which `ipfs-cluster-service daemon` applies over `service.json` at each start;
//! 3. containers `kubo` (`ipfs daemon`) and `cluster` (`ipfs-cluster-service daemon`, bootstrapped
//!    to every other peer that answers, by its stable DNS name in the headless Service).
//!
//! Every peer makes its own identity keys on its own volume: no key is in a ConfigMap or Secret,
//! and no pod can read another peer's key. The cluster secret reaches the Cluster container only
//! through a `secretKeyRef` environment variable.
//!
//! The ConfigMap's content hash is an annotation on the pod template, so a change to the rendered
//! configuration rolls the pods one at a time, each healthy before the next (the StatefulSet's
//! partition, moved by the upgrade gate: [`super::upgrade`]).
//!
//! Here the names, labels and the [`children`] entry point; `pod` builds the StatefulSet and its
//! pod template, `scripts` the start scripts and their ConfigMap, `services` the Services, the
//! PodDisruptionBudget and the NetworkPolicy, `reach` the per-peer p2p Services and the announce
//! ConfigMap rendered from their addresses.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Map, Value};

use crate::api::{IpfsCluster, check_cluster_name};

mod pod;
pub mod reach;
mod scripts;
mod services;

pub use pod::claim_template;
use pod::statefulset;
use reach::peer_services;
use scripts::config_map;
pub use scripts::{cluster_init_script, cluster_start_script, kubo_init_script};
use services::{api_service, gateway_service, headless_service, network_policy, pdb};

/// Label every owned object carries with the name of its IpfsCluster (orphan cleanup lists by it).
pub const CLUSTER_LABEL: &str = "ipfskit.io/cluster";
/// `app.kubernetes.io/managed-by` value of owned objects.
pub const MANAGED_BY: &str = "ipfs-kit-operator";
/// Pod-template annotation holding the hash of the rendered configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "ipfskit.io/config-hash";
/// Pod annotation that asks the pod's IPFS Cluster daemon to restart: the cluster container sees
/// it through a downward-API file ([`RESTART_FILE`]) and, when its value changes, stops the
/// daemon and exits; kubelet restarts the container (the pod, its IP and Kubo stay). The value is
/// the id of the request that asked.
pub const RESTART_CLUSTER_ANNOTATION: &str = "ipfskit.io/restart-cluster";
/// Where the cluster container reads [`RESTART_CLUSTER_ANNOTATION`].
pub const RESTART_FILE: &str = "/podinfo/restart-cluster";
/// Label of the operator's pods (in the operator's namespace) allowed to reach the peers' APIs:
/// the operator and its dashboard carry it with value `operator`.
pub const API_ACCESS_LABEL: &str = "ipfskit.io/api-access";
/// Label a client pod in the cluster's namespace sets to the IpfsCluster's name to reach the
/// peers' APIs (5001, 9094, 9095).
pub const API_CLIENT_LABEL: &str = "ipfskit.io/api-client";
/// Key of the cluster secret in the generated Secret (and the default of `secretRef.key`).
pub const SECRET_KEY: &str = "secret";
/// Kubo's gateway port inside the pod.
pub const GATEWAY_PORT: i32 = 8080;
/// Name of the container serving Kubo's metrics (`spec.metrics.kubo`).
pub const KUBO_METRICS_CONTAINER: &str = "kubo-metrics";
/// Where the Kubo repository lives in the pods.
pub const KUBO_PATH: &str = "/data/ipfs";
/// Where the IPFS Cluster state lives in the pods.
pub const CLUSTER_PATH: &str = "/data/ipfs-cluster";
/// Name of the Kubo volume claim template.
pub const KUBO_VOLUME: &str = "kubo-data";
/// Name of the IPFS Cluster volume claim template.
pub const CLUSTER_VOLUME: &str = "cluster-data";
/// Name of the Secret volume holding the swarm key (`spec.swarmKeyRef`).
pub const SWARM_KEY_VOLUME: &str = "swarm-key";
/// Where the `kubo-config` init container finds the swarm key's Secret volume.
pub const SWARM_KEY_DIR: &str = "/swarm-key";
/// The swarm key's file name, in the Secret volume and in the Kubo repository (Kubo reads
/// `$IPFS_PATH/swarm.key`).
pub const SWARM_KEY_FILE: &str = "swarm.key";
/// What kubelet's probes of Kubo GET on the RPC port: the RPC API (`/api/v0/*`) takes POST only,
/// `/version` answers GET with 200 once the API serves (the daemon is up).
pub const KUBO_HEALTH_PATH: &str = "/version";
/// What kubelet's probes of IPFS Cluster GET on the REST API port: `/health` answers 204 (and
/// needs no credentials when the API has some).
pub const CLUSTER_HEALTH_PATH: &str = "/health";
pub use crate::api::MANAGED_KUBO_KEYS;

/// Names of the objects an IpfsCluster named `name` owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub statefulset: String,
    pub headless_service: String,
    pub api_service: String,
    pub gateway_service: String,
    pub config_map: String,
    /// The ConfigMap of the peers' announce addresses (exposed peers only).
    pub announce_config_map: String,
    pub generated_secret: String,
    pub pdb: String,
    pub network_policy: String,
}

impl Names {
    pub fn of(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            statefulset: cluster.to_owned(),
            headless_service: format!("{cluster}-peers"),
            api_service: format!("{cluster}-api"),
            gateway_service: format!("{cluster}-gateway"),
            config_map: format!("{cluster}-config"),
            announce_config_map: format!("{cluster}-announce"),
            generated_secret: format!("{cluster}-cluster-secret"),
            pdb: cluster.to_owned(),
            network_policy: cluster.to_owned(),
        }
    }

    /// The p2p Service of the peer of `ordinal` (exposed peers only): `<cluster>-<ordinal>-p2p`.
    pub fn peer_service(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}-p2p", self.cluster)
    }

    /// Pod (peer) name of `ordinal`.
    pub fn peer(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.statefulset)
    }

    /// The ordinal of pod (peer) name `peer`, if it is one of this cluster's: the inverse of
    /// [`Names::peer`].
    pub fn ordinal_of(&self, peer: &str) -> Option<i32> {
        peer.strip_prefix(self.statefulset.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
            .filter(|o: &i32| *o >= 0)
    }

    /// The DNS domain of the headless Service in namespace `ns` (cluster domain `domain`), under
    /// which every peer has its name.
    pub fn peers_domain(&self, ns: &str, domain: &str) -> String {
        format!("{}.{ns}.svc.{domain}", self.headless_service)
    }

    /// The stable DNS name of peer (pod) `peer` in namespace `ns`.
    pub fn peer_host(&self, peer: &str, ns: &str, domain: &str) -> String {
        format!("{peer}.{}", self.peers_domain(ns, domain))
    }

    /// PersistentVolumeClaim of `template` for the peer of `ordinal`.
    pub fn claim(&self, template: &str, ordinal: i32) -> String {
        format!("{template}-{}-{ordinal}", self.statefulset)
    }
}

/// The Secret and key the Cluster containers read the cluster secret from.
pub fn secret_source(cluster: &IpfsCluster, names: &Names) -> (String, String) {
    match &cluster.spec.cluster.secret_ref {
        Some(r) => (r.name.clone(), r.key.clone()),
        None => (names.generated_secret.clone(), SECRET_KEY.to_owned()),
    }
}

/// Labels that select the peer pods of a cluster.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            "ipfs-cluster".to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), name.to_owned()),
    ])
}

/// The selector labels in `kubectl get -l` syntax (for `status.selector`).
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels of every owned object.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    labels.insert(CLUSTER_LABEL.to_owned(), name.to_owned());
    labels
}

/// What went wrong building the children: names the field to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "IpfsCluster {0} has no metadata.name or metadata.uid yet (not created by the API server?)"
    )]
    NoIdentity(String),
    #[error("IpfsCluster {cluster}: {field} is invalid: {message}")]
    Invalid {
        cluster: String,
        field: String,
        message: String,
    },
}

/// Everything one IpfsCluster owns, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    pub names: Names,
    pub config_map: ConfigMap,
    pub statefulset: StatefulSet,
    pub headless_service: Service,
    pub api_service: Service,
    /// One per peer, in ordinal order; none when `spec.networking.p2p.exposure` is `None`.
    pub peer_services: Vec<Service>,
    /// `None` when the gateway is off.
    pub gateway_service: Option<Service>,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

impl Children {
    /// Names of the Services this cluster wants (anything else it labelled is an orphan).
    pub fn service_names(&self) -> Vec<String> {
        [&self.headless_service, &self.api_service]
            .into_iter()
            .chain(&self.peer_services)
            .chain(self.gateway_service.as_ref())
            .filter_map(|s| s.metadata.name.clone())
            .collect()
    }
}

/// What the owned objects depend on besides the IpfsCluster: where the operator runs and the
/// Kubernetes cluster's DNS domain (both from the operator's settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// Namespace of the operator's pods, whose pods labelled [`API_ACCESS_LABEL`] may reach the
    /// peers' APIs. `None` (unknown: the operator runs outside the cluster): only such pods in
    /// the IpfsCluster's own namespace may, never those of any other namespace.
    pub operator_namespace: Option<String>,
    /// The cluster's DNS domain, e.g. `cluster.local` (see [`crate::runtime::kube::dns`]).
    pub cluster_domain: String,
    /// The operator's own image, run as the `kubo-metrics` container of each peer pod when
    /// `spec.metrics.kubo` is on. `None`: no such container (Kubo's metrics stay unexposed).
    pub kubo_metrics_image: Option<String>,
}

impl Default for Environment {
    fn default() -> Self {
        Self {
            operator_namespace: None,
            cluster_domain: crate::runtime::kube::dns::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            kubo_metrics_image: None,
        }
    }
}

/// Builds every owned object except the generated Secret (see [`generated_secret`]).
pub fn children(cluster: &IpfsCluster, env: &Environment) -> Result<Children, BuildError> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or_else(|| BuildError::NoIdentity("<unnamed>".into()))?;
    // The API server refuses such names at creation; an object made before that rule cannot
    // yield valid objects either.
    check_cluster_name(&name).map_err(|e| BuildError::Invalid {
        cluster: name.clone(),
        field: e.field,
        message: e.message,
    })?;
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let owner = owner_reference(cluster)?;
    let names = Names::of(&name);
    let config_map = config_map(cluster, &names, &namespace, &env.cluster_domain, &owner);
    let hash = config_hash(&config_map);
    let kubo_metrics = kubo_metrics_image(cluster, env);
    let statefulset = statefulset(cluster, &names, &owner, &hash, kubo_metrics)?;
    Ok(Children {
        headless_service: headless_service(cluster, &names, &owner, kubo_metrics.is_some()),
        api_service: api_service(&names, &owner),
        peer_services: peer_services(cluster, &names, &owner),
        gateway_service: gateway_service(cluster, &names, &owner),
        pdb: pdb(&names, &owner),
        network_policy: network_policy(
            cluster,
            &names,
            env.operator_namespace.as_deref(),
            kubo_metrics.is_some(),
            &owner,
        ),
        config_map,
        statefulset,
        names,
    })
}

/// The image of the `kubo-metrics` container, when the spec asks for Kubo's metrics and the
/// operator knows its own image.
fn kubo_metrics_image<'a>(cluster: &IpfsCluster, env: &'a Environment) -> Option<&'a str> {
    env.kubo_metrics_image
        .as_deref()
        .filter(|image| cluster.spec.metrics.kubo && !image.is_empty())
}

/// The controller owner reference to `cluster` (blockOwnerDeletion, so garbage collection waits).
pub fn owner_reference(cluster: &IpfsCluster) -> Result<OwnerReference, BuildError> {
    use kube::Resource;
    let display = cluster.metadata.name.clone().unwrap_or_default();
    cluster
        .controller_owner_ref(&())
        .ok_or(BuildError::NoIdentity(display))
}

fn meta(name: &str, names: &Names, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        labels: Some(labels(&names.cluster)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// The generated cluster Secret holding `secret_hex` (32 random bytes, hex), for a spec that
/// names no Secret of its own.
pub fn generated_secret(
    cluster: &IpfsCluster,
    names: &Names,
    secret_hex: &str,
) -> Result<Secret, BuildError> {
    let owner = owner_reference(cluster)?;
    Ok(Secret {
        metadata: meta(&names.generated_secret, names, &owner),
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(
            SECRET_KEY.to_owned(),
            secret_hex.to_owned(),
        )])),
        ..Default::default()
    })
}

/// Whether `value` is a valid IPFS Cluster secret: 64 hex digits (32 bytes).
pub fn is_valid_cluster_secret(value: &[u8]) -> bool {
    value.len() == 64 && value.iter().all(u8::is_ascii_hexdigit)
}

/// Stable 64-bit FNV-1a hash of the ConfigMap data, as 16 hex digits. Stable across builds and
/// Rust versions (unlike `DefaultHasher`), so an operator upgrade alone does not roll the pods.
pub fn config_hash(config_map: &ConfigMap) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (k, v) in config_map.data.iter().flatten() {
        feed(k.as_bytes());
        feed(&[0]);
        feed(v.as_bytes());
        feed(&[0]);
    }
    format!("{hash:016x}")
}

/// Quotes `s` for a POSIX shell (single quotes).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Flattens Kubo config overrides into `(dotted path, JSON value)` leaves, skipping the keys the
/// operator manages (a second line of defence: the API server refuses them, see
/// [`crate::api::check_kubo_config`]). Objects are descended into (so overrides merge with Kubo's defaults); any
/// other value (including arrays) is a leaf. An empty object is a leaf `{}`.
pub fn kubo_config_leaves(config: &Map<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        if MANAGED_KUBO_KEYS
            .iter()
            .any(|k| prefix == *k || prefix.starts_with(&format!("{k}.")))
        {
            return;
        }
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut out = Vec::new();
    for (k, v) in config {
        walk(k, v, &mut out);
    }
    out
}

#[cfg(test)]
mod metrics_tests;
#[cfg(test)]
mod reach_tests;
#[cfg(test)]
mod tests;
