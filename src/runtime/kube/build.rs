//! Pure builders of the objects one IpfsCluster owns: a StatefulSet (Kubo + IPFS Cluster in each
//! pod), the peers' headless Service, an internal API Service, the optional p2p and gateway
//! Services, the ConfigMap of start scripts, the generated cluster Secret, a PodDisruptionBudget
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
//! configuration rolls the pods one at a time (StatefulSet rolling update).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, Secret, SecretKeySelector, SecurityContext, Service,
    ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Map, Value};

use crate::api::cluster::{
    CLUSTER_PROXY_PORT, CLUSTER_REST_PORT, CLUSTER_SWARM_PORT, KUBO_RPC_PORT, KUBO_SWARM_PORT,
};
use crate::api::{Consensus, Exposure, IpfsCluster, ResourceRequirements};

/// Label every owned object carries with the name of its IpfsCluster (orphan cleanup lists by it).
pub const CLUSTER_LABEL: &str = "ipfskit.io/cluster";
/// `app.kubernetes.io/managed-by` value of owned objects.
pub const MANAGED_BY: &str = "ipfs-kit-operator";
/// Pod-template annotation holding the hash of the rendered configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "ipfskit.io/config-hash";
/// Label of pods (in any namespace) allowed to reach the peers' APIs: the operator and its
/// dashboard carry it with value `operator`.
pub const API_ACCESS_LABEL: &str = "ipfskit.io/api-access";
/// Label a client pod in the cluster's namespace sets to the IpfsCluster's name to reach the
/// peers' APIs (5001, 9094, 9095).
pub const API_CLIENT_LABEL: &str = "ipfskit.io/api-client";
/// Key of the cluster secret in the generated Secret (and the default of `secretRef.key`).
pub const SECRET_KEY: &str = "secret";
/// Kubo's gateway port inside the pod.
pub const GATEWAY_PORT: i32 = 8080;
/// Where the Kubo repository lives in the pods.
pub const KUBO_PATH: &str = "/data/ipfs";
/// Where the IPFS Cluster state lives in the pods.
pub const CLUSTER_PATH: &str = "/data/ipfs-cluster";
/// Name of the Kubo volume claim template.
pub const KUBO_VOLUME: &str = "kubo-data";
/// Name of the IPFS Cluster volume claim template.
pub const CLUSTER_VOLUME: &str = "cluster-data";
/// UID and GID of the `ipfs` user in the Kubo and IPFS Cluster images.
const IPFS_UID: i64 = 1000;
pub use crate::api::MANAGED_KUBO_KEYS;

/// Names of the objects an IpfsCluster named `name` owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub statefulset: String,
    pub headless_service: String,
    pub api_service: String,
    pub p2p_service: String,
    pub gateway_service: String,
    pub config_map: String,
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
            p2p_service: format!("{cluster}-p2p"),
            gateway_service: format!("{cluster}-gateway"),
            config_map: format!("{cluster}-config"),
            generated_secret: format!("{cluster}-cluster-secret"),
            pdb: cluster.to_owned(),
            network_policy: cluster.to_owned(),
        }
    }

    /// Pod (peer) name of `ordinal`.
    pub fn peer(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.statefulset)
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
    /// `None` when `spec.networking.p2p.exposure` is `None`.
    pub p2p_service: Option<Service>,
    /// `None` when the gateway is off.
    pub gateway_service: Option<Service>,
    pub pdb: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

impl Children {
    /// Names of the Services this cluster wants (anything else it labelled is an orphan).
    pub fn service_names(&self) -> Vec<String> {
        [
            Some(&self.headless_service),
            Some(&self.api_service),
            self.p2p_service.as_ref(),
            self.gateway_service.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(|s| s.metadata.name.clone())
        .collect()
    }
}

/// Builds every owned object except the generated Secret (see [`generated_secret`]).
pub fn children(cluster: &IpfsCluster) -> Result<Children, BuildError> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or_else(|| BuildError::NoIdentity("<unnamed>".into()))?;
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    let owner = owner_reference(cluster)?;
    let names = Names::of(&name);
    let config_map = config_map(cluster, &names, &namespace, &owner);
    let hash = config_hash(&config_map);
    let statefulset = statefulset(cluster, &names, &owner, &hash)?;
    Ok(Children {
        headless_service: headless_service(&names, &owner),
        api_service: api_service(&names, &owner),
        p2p_service: p2p_service(cluster, &names, &owner),
        gateway_service: gateway_service(cluster, &names, &owner),
        pdb: pdb(&names, &owner),
        network_policy: network_policy(cluster, &names, &owner),
        config_map,
        statefulset,
        names,
    })
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
/// operator manages. Objects are descended into (so overrides merge with Kubo's defaults); any
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

/// The script the `kubo-config` init container runs on every start.
pub fn kubo_init_script(cluster: &IpfsCluster) -> String {
    let spec = &cluster.spec.kubo;
    let profiles = spec
        .profiles
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let init = if profiles.is_empty() {
        "ipfs init".to_owned()
    } else {
        format!("ipfs init --profile={}", sh_quote(&profiles))
    };
    let gateway = if cluster.spec.networking.gateway.enabled {
        format!("/ip4/0.0.0.0/tcp/{GATEWAY_PORT}")
    } else {
        format!("/ip4/127.0.0.1/tcp/{GATEWAY_PORT}")
    };
    let mut lines = vec![
        "#!/bin/sh".to_owned(),
        "# Rendered by ipfs-kit-operator from the IpfsCluster spec; runs before every start of Kubo.".to_owned(),
        "set -eu".to_owned(),
        format!("export IPFS_PATH={KUBO_PATH}"),
        "if [ ! -f \"$IPFS_PATH/config\" ]; then".to_owned(),
        format!("  {init}"),
        "fi".to_owned(),
        "ipfs repo migrate".to_owned(),
        "# Operator-managed settings: the RPC API listens on the pod IP (the NetworkPolicy limits who".to_owned(),
        "# reaches it), the gateway only when enabled, no public bootstrap peers.".to_owned(),
        format!("ipfs config Addresses.API /ip4/0.0.0.0/tcp/{KUBO_RPC_PORT}"),
        format!("ipfs config Addresses.Gateway {gateway}"),
        "ipfs config --json Bootstrap '[]'".to_owned(),
    ];
    if let Some(config) = &spec.config {
        let leaves = kubo_config_leaves(config);
        if !leaves.is_empty() {
            lines.push("# spec.kubo.config overrides".to_owned());
        }
        for (path, value) in leaves {
            lines.push(format!(
                "ipfs config --json {} {}",
                sh_quote(&path),
                sh_quote(&value)
            ));
        }
    }
    lines.push(String::new());
    lines.join("\n")
}

/// The script the `cluster-config` init container runs on every start: creates the state (and
/// the peer's own identity) once; settings come from `CLUSTER_*` variables at each start.
pub fn cluster_init_script(cluster: &IpfsCluster) -> String {
    let consensus = match cluster.spec.cluster.consensus {
        Consensus::Crdt => "crdt",
        Consensus::Raft => "raft",
    };
    [
        "#!/bin/sh",
        "# Rendered by ipfs-kit-operator; runs before every start of ipfs-cluster-service.",
        "set -eu",
        &format!("export IPFS_CLUSTER_PATH={CLUSTER_PATH}"),
        "if [ ! -f \"$IPFS_CLUSTER_PATH/service.json\" ]; then",
        &format!("  ipfs-cluster-service init --consensus {consensus} --datastore pebble"),
        "fi",
        "",
    ]
    .join("\n")
}

/// The script the `cluster` container runs: bootstraps to every other peer that answers (by its
/// DNS name in the headless Service; ordinals are contiguous, so the first name that does not
/// resolve ends the list), then execs the daemon.
pub fn cluster_start_script(names: &Names, namespace: &str) -> String {
    let domain = format!("{}.{namespace}.svc.cluster.local", names.headless_service);
    [
        "#!/bin/sh",
        "# Rendered by ipfs-kit-operator: start ipfs-cluster-service bootstrapped to every peer.",
        "set -u",
        &format!("export IPFS_CLUSTER_PATH={CLUSTER_PATH}"),
        "bootstrap=''",
        "i=0",
        "while [ \"$i\" -lt 100 ]; do",
        &format!("  host=\"{}-$i.{domain}\"", names.statefulset),
        "  i=$((i + 1))",
        &format!("  [ \"{}-$((i - 1))\" = \"$POD_NAME\" ] && continue", names.statefulset),
        "  nslookup \"$host\" >/dev/null 2>&1 || break",
        &format!(
            "  id=$(wget -q -T 2 -O - \"http://$host:{CLUSTER_REST_PORT}/id\" 2>/dev/null | grep -o '\"id\":\"[^\"]*\"' | head -n 1 | cut -d '\"' -f 4)"
        ),
        &format!(
            "  [ -n \"$id\" ] && bootstrap=\"$bootstrap,/dns4/$host/tcp/{CLUSTER_SWARM_PORT}/p2p/$id\""
        ),
        "done",
        "if [ -n \"$bootstrap\" ]; then",
        "  exec ipfs-cluster-service daemon --bootstrap \"${bootstrap#,}\"",
        "fi",
        "exec ipfs-cluster-service daemon",
        "",
    ]
    .join("\n")
}

fn config_map(
    cluster: &IpfsCluster,
    names: &Names,
    namespace: &str,
    owner: &OwnerReference,
) -> ConfigMap {
    ConfigMap {
        metadata: meta(&names.config_map, names, owner),
        data: Some(BTreeMap::from([
            ("kubo-init.sh".to_owned(), kubo_init_script(cluster)),
            ("cluster-init.sh".to_owned(), cluster_init_script(cluster)),
            (
                "cluster-start.sh".to_owned(),
                cluster_start_script(names, namespace),
            ),
        ])),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..Default::default()
    }
}

fn resources(
    r: &Option<ResourceRequirements>,
) -> Option<k8s_openapi::api::core::v1::ResourceRequirements> {
    r.as_ref()
        .map(|r| k8s_openapi::api::core::v1::ResourceRequirements {
            requests: (!r.requests.is_empty()).then(|| r.requests.clone()),
            limits: (!r.limits.is_empty()).then(|| r.limits.clone()),
            ..Default::default()
        })
}

fn tcp_probe(port: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(10),
        ..Default::default()
    }
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(IPFS_UID),
        run_as_group: Some(IPFS_UID),
        capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A volume claim template of `size` in `class`.
pub fn claim_template(
    name: &str,
    size: &str,
    class: &Option<String>,
    labels: &BTreeMap<String, String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn statefulset(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
    config_hash: &str,
) -> Result<StatefulSet, BuildError> {
    let spec = &cluster.spec;
    let selector = selector_labels(&names.cluster);
    let (secret_name, secret_key) = secret_source(cluster, names);
    let mut cluster_env = vec![
        pod_name_env("POD_NAME"),
        pod_name_env("CLUSTER_PEERNAME"),
        EnvVar {
            name: "CLUSTER_SECRET".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret_name,
                    key: secret_key,
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        env("IPFS_CLUSTER_PATH", CLUSTER_PATH),
        env(
            "CLUSTER_IPFSHTTP_NODEMULTIADDRESS",
            format!("/ip4/127.0.0.1/tcp/{KUBO_RPC_PORT}"),
        ),
        env(
            "CLUSTER_RESTAPI_HTTPLISTENMULTIADDRESS",
            format!("/ip4/0.0.0.0/tcp/{CLUSTER_REST_PORT}"),
        ),
        env(
            "CLUSTER_IPFSPROXY_LISTENMULTIADDRESS",
            format!("/ip4/0.0.0.0/tcp/{CLUSTER_PROXY_PORT}"),
        ),
        env(
            "CLUSTER_LISTENMULTIADDRESS",
            format!("/ip4/0.0.0.0/tcp/{CLUSTER_SWARM_PORT}"),
        ),
        env("CLUSTER_MDNSINTERVAL", "0s"),
        env("CLUSTER_MONITORPINGINTERVAL", "15s"),
    ];
    if spec.cluster.consensus == Consensus::Crdt {
        cluster_env.push(env("CLUSTER_CRDT_TRUSTEDPEERS", "*"));
    }
    if let Some(min) = spec.cluster.replication_factor_min {
        cluster_env.push(env("CLUSTER_REPLICATIONFACTORMIN", min.to_string()));
    }
    if let Some(max) = spec.cluster.replication_factor_max {
        cluster_env.push(env("CLUSTER_REPLICATIONFACTORMAX", max.to_string()));
    }
    let config_mount = VolumeMount {
        name: "config".into(),
        mount_path: "/config".into(),
        read_only: Some(true),
        ..Default::default()
    };
    let kubo_mount = mount(KUBO_VOLUME, KUBO_PATH);
    let cluster_mount = mount(CLUSTER_VOLUME, CLUSTER_PATH);
    let mut kubo_ports = vec![port("swarm", KUBO_SWARM_PORT), port("rpc", KUBO_RPC_PORT)];
    if spec.networking.gateway.enabled {
        kubo_ports.push(port("gateway", GATEWAY_PORT));
    }
    let kubo_env = vec![env("IPFS_PATH", KUBO_PATH)];
    let init_kubo = Container {
        name: "kubo-config".into(),
        image: Some(spec.kubo.image.clone()),
        command: Some(vec!["/bin/sh".into(), "/config/kubo-init.sh".into()]),
        env: Some(kubo_env.clone()),
        volume_mounts: Some(vec![kubo_mount.clone(), config_mount.clone()]),
        security_context: Some(restricted()),
        ..Default::default()
    };
    let init_cluster = Container {
        name: "cluster-config".into(),
        image: Some(spec.cluster.image.clone()),
        command: Some(vec!["/bin/sh".into(), "/config/cluster-init.sh".into()]),
        env: Some(cluster_env.clone()),
        volume_mounts: Some(vec![cluster_mount.clone(), config_mount.clone()]),
        security_context: Some(restricted()),
        ..Default::default()
    };
    let kubo = Container {
        name: "kubo".into(),
        image: Some(spec.kubo.image.clone()),
        command: Some(vec![
            "ipfs".into(),
            "daemon".into(),
            "--migrate=false".into(),
        ]),
        env: Some(kubo_env),
        ports: Some(kubo_ports),
        resources: resources(&spec.kubo.resources),
        volume_mounts: Some(vec![kubo_mount]),
        readiness_probe: Some(tcp_probe(KUBO_RPC_PORT)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(60),
            failure_threshold: Some(6),
            ..tcp_probe(KUBO_SWARM_PORT)
        }),
        security_context: Some(restricted()),
        ..Default::default()
    };
    let cluster_container = Container {
        name: "cluster".into(),
        image: Some(spec.cluster.image.clone()),
        command: Some(vec!["/bin/sh".into(), "/config/cluster-start.sh".into()]),
        env: Some(cluster_env),
        ports: Some(vec![
            port("cluster-swarm", CLUSTER_SWARM_PORT),
            port("cluster-api", CLUSTER_REST_PORT),
            port("cluster-proxy", CLUSTER_PROXY_PORT),
        ]),
        resources: resources(&spec.cluster.resources),
        volume_mounts: Some(vec![cluster_mount, config_mount]),
        readiness_probe: Some(tcp_probe(CLUSTER_REST_PORT)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(60),
            failure_threshold: Some(6),
            ..tcp_probe(CLUSTER_SWARM_PORT)
        }),
        security_context: Some(restricted()),
        ..Default::default()
    };
    let claim_labels = selector.clone();
    Ok(StatefulSet {
        metadata: meta(&names.statefulset, names, owner),
        spec: StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(names.headless_service.clone()),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            // Scale-in keeps the claims (data survives a mistaken scale-in); deleting the
            // IpfsCluster deletes them with it.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Delete".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&names.cluster)),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        fs_group: Some(IPFS_UID),
                        ..Default::default()
                    }),
                    init_containers: Some(vec![init_kubo, init_cluster]),
                    containers: vec![kubo, cluster_container],
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: names.config_map.clone(),
                            default_mode: Some(0o444),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![
                claim_template(
                    KUBO_VOLUME,
                    &spec.kubo.storage.size,
                    &spec.kubo.storage.storage_class_name,
                    &claim_labels,
                ),
                claim_template(
                    CLUSTER_VOLUME,
                    &spec.cluster.storage.size,
                    &spec.cluster.storage.storage_class_name,
                    &claim_labels,
                ),
            ]),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The headless Service that gives each peer a stable DNS name
/// (`<cluster>-<n>.<cluster>-peers.<ns>.svc`), published before the pod is ready so that peers
/// can bootstrap to each other while starting.
fn headless_service(names: &Names, owner: &OwnerReference) -> Service {
    Service {
        metadata: meta(&names.headless_service, names, owner),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names.cluster)),
            ports: Some(vec![
                service_port("swarm", KUBO_SWARM_PORT),
                service_port("cluster-swarm", CLUSTER_SWARM_PORT),
                service_port("rpc", KUBO_RPC_PORT),
                service_port("cluster-api", CLUSTER_REST_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The cluster-internal Service of the IPFS Cluster REST API and proxy (ClusterIP, never exposed).
fn api_service(names: &Names, owner: &OwnerReference) -> Service {
    Service {
        metadata: meta(&names.api_service, names, owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(&names.cluster)),
            ports: Some(vec![
                service_port("cluster-api", CLUSTER_REST_PORT),
                service_port("cluster-proxy", CLUSTER_PROXY_PORT),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn exposure_type(exposure: Exposure) -> &'static str {
    match exposure {
        Exposure::Internal => "ClusterIP",
        Exposure::NodePort => "NodePort",
        Exposure::LoadBalancer => "LoadBalancer",
    }
}

/// The Service exposing the peer-to-peer ports (4001, 9096 only), when asked for.
fn p2p_service(cluster: &IpfsCluster, names: &Names, owner: &OwnerReference) -> Option<Service> {
    let p2p = &cluster.spec.networking.p2p;
    if p2p.exposure == Exposure::Internal {
        return None;
    }
    let ports = p2p
        .ports
        .iter()
        .filter_map(|p| match *p {
            KUBO_SWARM_PORT => Some(service_port("swarm", KUBO_SWARM_PORT)),
            CLUSTER_SWARM_PORT => Some(service_port("cluster-swarm", CLUSTER_SWARM_PORT)),
            // The API validation refuses any other port; never expose one even if it slipped by.
            _ => None,
        })
        .collect::<Vec<_>>();
    if ports.is_empty() {
        return None;
    }
    let mut metadata = meta(&names.p2p_service, names, owner);
    if !p2p.service_annotations.is_empty() {
        metadata.annotations = Some(p2p.service_annotations.clone());
    }
    Some(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(exposure_type(p2p.exposure).into()),
            selector: Some(selector_labels(&names.cluster)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The read-only gateway Service, when the gateway is enabled.
fn gateway_service(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
) -> Option<Service> {
    let gateway = &cluster.spec.networking.gateway;
    gateway.enabled.then(|| Service {
        metadata: meta(&names.gateway_service, names, owner),
        spec: Some(ServiceSpec {
            type_: Some(exposure_type(gateway.exposure).into()),
            selector: Some(selector_labels(&names.cluster)),
            ports: Some(vec![service_port("gateway", GATEWAY_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// At most one peer down by voluntary disruption (drains, evictions).
fn pdb(names: &Names, owner: &OwnerReference) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(&names.pdb, names, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names.cluster)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn np_port(port: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some(protocol.to_owned()),
        ..Default::default()
    }
}

fn pods_labelled(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..Default::default()
    }
}

/// Ingress to the peer pods: the swarm ports (and the gateway, when enabled) from anywhere; the
/// control APIs (Kubo RPC 5001, Cluster REST 9094, proxy 9095) only from the other peers, from the
/// operator and its dashboard (pods labelled `ipfskit.io/api-access: operator` in any namespace)
/// and from client pods in the same namespace labelled `ipfskit.io/api-client: <cluster>`.
fn network_policy(cluster: &IpfsCluster, names: &Names, owner: &OwnerReference) -> NetworkPolicy {
    let mut open_ports = vec![
        np_port(KUBO_SWARM_PORT, "TCP"),
        np_port(KUBO_SWARM_PORT, "UDP"),
        np_port(CLUSTER_SWARM_PORT, "TCP"),
    ];
    if cluster.spec.networking.gateway.enabled {
        open_ports.push(np_port(GATEWAY_PORT, "TCP"));
    }
    let api_ports = vec![
        np_port(KUBO_RPC_PORT, "TCP"),
        np_port(CLUSTER_REST_PORT, "TCP"),
        np_port(CLUSTER_PROXY_PORT, "TCP"),
    ];
    let api_clients = vec![
        NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names.cluster)),
                ..Default::default()
            }),
            ..Default::default()
        },
        NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(pods_labelled(API_ACCESS_LABEL, "operator")),
            ..Default::default()
        },
        NetworkPolicyPeer {
            pod_selector: Some(pods_labelled(API_CLIENT_LABEL, &names.cluster)),
            ..Default::default()
        },
    ];
    NetworkPolicy {
        metadata: meta(&names.network_policy, names, owner),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&names.cluster)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(open_ports),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(api_ports),
                    from: Some(api_clients),
                },
            ]),
            egress: None,
        }),
    }
}

/// An environment variable holding the pod's own name (the peer name).
fn pod_name_env(name: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
