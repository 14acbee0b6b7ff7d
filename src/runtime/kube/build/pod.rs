//! The StatefulSet of a cluster and its pod template: one builder per container, volume and
//! claim, and the small helpers they share (env, ports, mounts, probes, security context).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::reach::{ANNOUNCE_DIR, ANNOUNCE_VOLUME, KUBO_INIT_CONTAINER, exposed};
use super::{
    BuildError, CLUSTER_HEALTH_PATH, CLUSTER_PATH, CLUSTER_VOLUME, CONFIG_HASH_ANNOTATION,
    GATEWAY_PORT, KUBO_HEALTH_PATH, KUBO_METRICS_CONTAINER, KUBO_PATH, KUBO_VOLUME, Names,
    RESTART_CLUSTER_ANNOTATION, RESTART_FILE, SWARM_KEY_DIR, SWARM_KEY_FILE, SWARM_KEY_VOLUME,
    labels, meta, secret_source, selector_labels,
};
use crate::api::cluster::PodIds;
use crate::api::cluster::{
    CLUSTER_METRICS_PORT, CLUSTER_PROXY_PORT, CLUSTER_REST_PORT, CLUSTER_SWARM_PORT,
    KUBO_METRICS_PORT, KUBO_RPC_PORT, KUBO_SWARM_PORT,
};
use crate::api::{Consensus, IpfsCluster, IpfsClusterSpec, ResourceRequirements};

/// The StatefulSet of the peers: one pod per peer, its two volume claims, rolled one pod at a
/// time when `config_hash` (the rendered start scripts) changes.
pub(super) fn statefulset(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
    config_hash: &str,
    kubo_metrics: Option<&str>,
) -> Result<StatefulSet, BuildError> {
    let spec = &cluster.spec;
    let selector = selector_labels(&names.cluster);
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
            template: pod_template(cluster, names, config_hash, kubo_metrics),
            volume_claim_templates: Some(claim_templates(&cluster.spec, &selector)),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// The pod of one peer: the two init containers, then Kubo and IPFS Cluster (and the
/// `kubo-metrics` container when `kubo_metrics` names its image).
fn pod_template(
    cluster: &IpfsCluster,
    names: &Names,
    config_hash: &str,
    kubo_metrics: Option<&str>,
) -> PodTemplateSpec {
    let spec = &cluster.spec;
    let cluster_env = cluster_env(cluster, names);
    let exposed = exposed(cluster);
    let mut volumes = vec![config_volume(names), podinfo_volume()];
    volumes.extend(swarm_key_volume(spec));
    if exposed {
        volumes.push(announce_volume(names));
    }
    PodTemplateSpec {
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
            security_context: Some(pod_security_context(spec)),
            init_containers: Some(vec![
                kubo_init_container(spec, exposed),
                cluster_init_container(spec, cluster_env.clone()),
            ]),
            containers: [
                Some(kubo_container(spec)),
                Some(cluster_container(spec, cluster_env, exposed)),
                kubo_metrics.map(|image| kubo_metrics_container(spec, image)),
            ]
            .into_iter()
            .flatten()
            .collect(),
            volumes: Some(volumes),
            ..Default::default()
        }),
    }
}

/// The pod's security context: the volumes' group (unless the platform assigns it) and, as the
/// Pod Security Standard `restricted` asks, a seccomp profile: the runtime's default, which Kubo
/// and IPFS Cluster run under.
fn pod_security_context(spec: &IpfsClusterSpec) -> PodSecurityContext {
    PodSecurityContext {
        fs_group: spec.pod_security_context.ids().map(|ids| ids.fs_group),
        seccomp_profile: Some(k8s_openapi::api::core::v1::SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The environment of the IPFS Cluster containers: identity, secret, listen addresses and the
/// spec's consensus and replication settings (`CLUSTER_*` override `service.json`).
fn cluster_env(cluster: &IpfsCluster, names: &Names) -> Vec<EnvVar> {
    let spec = &cluster.spec;
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
    if spec.metrics.cluster {
        cluster_env.extend([
            env("CLUSTER_METRICS_ENABLESTATS", "true"),
            env(
                "CLUSTER_METRICS_PROMETHEUSENDPOINT",
                format!("/ip4/0.0.0.0/tcp/{CLUSTER_METRICS_PORT}"),
            ),
        ]);
    }
    if exposed(cluster) {
        cluster_env.push(host_ip_env());
    }
    cluster_env
}

/// `HOST_IP`: the address of the pod's node (its kubelet's), which a NodePort announce entry
/// stands for with a placeholder.
fn host_ip_env() -> EnvVar {
    EnvVar {
        name: "HOST_IP".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.hostIP".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const PODINFO_VOLUME: &str = "podinfo";
const PODINFO_DIR: &str = "/podinfo";

/// The pod's [`RESTART_CLUSTER_ANNOTATION`] as a file (kubelet rewrites it when the annotation
/// changes): how the operator restarts the IPFS Cluster daemon alone without exec.
fn podinfo_volume() -> Volume {
    let file = RESTART_FILE.rsplit('/').next().unwrap_or(RESTART_FILE);
    Volume {
        name: PODINFO_VOLUME.into(),
        downward_api: Some(DownwardAPIVolumeSource {
            items: Some(vec![DownwardAPIVolumeFile {
                path: file.into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.annotations['{RESTART_CLUSTER_ANNOTATION}']"),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            default_mode: Some(0o444),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The announce ConfigMap, read-only at [`ANNOUNCE_DIR`] (exposed peers only). Optional: a pod
/// starts without it (and without an announce) if it is not there yet.
fn announce_volume(names: &Names) -> Volume {
    Volume {
        name: ANNOUNCE_VOLUME.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.announce_config_map.clone(),
            default_mode: Some(0o444),
            optional: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn announce_mount() -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..mount(ANNOUNCE_VOLUME, ANNOUNCE_DIR)
    }
}

/// The environment of the Kubo containers.
fn kubo_env() -> Vec<EnvVar> {
    vec![env("IPFS_PATH", KUBO_PATH)]
}

/// The environment of the Kubo daemon: with a swarm key, `LIBP2P_FORCE_PNET=1` (Kubo refuses to
/// start without the key instead of joining the public network) and `LIBP2P_TCP_MUX=false` (the
/// TCP and WebSocket listeners cannot share a port in a private network; Kubo says so at every
/// start otherwise).
fn kubo_daemon_env(spec: &IpfsClusterSpec) -> Vec<EnvVar> {
    let mut vars = kubo_env();
    if spec.swarm_key_ref.is_some() {
        vars.push(env("LIBP2P_FORCE_PNET", "1"));
        vars.push(env("LIBP2P_TCP_MUX", "false"));
    }
    vars
}

/// The volume of the swarm key (`spec.swarmKeyRef`), as the file [`SWARM_KEY_FILE`]. Only the
/// `kubo-config` init container mounts it; it copies the key into the repository, readable by
/// the daemon's user alone. Readable by all in that container (0444): without an `fsGroup` the
/// files of a Secret volume belong to root.
fn swarm_key_volume(spec: &IpfsClusterSpec) -> Option<Volume> {
    let r = spec.swarm_key_ref.as_ref()?;
    Some(Volume {
        name: SWARM_KEY_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(r.name.clone()),
            items: Some(vec![KeyToPath {
                key: r.key.clone(),
                path: SWARM_KEY_FILE.into(),
                ..Default::default()
            }]),
            default_mode: Some(0o444),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The start scripts, read-only at `/config`.
fn config_mount() -> VolumeMount {
    VolumeMount {
        name: "config".into(),
        mount_path: "/config".into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The volume of the start scripts, from the cluster's ConfigMap.
fn config_volume(names: &Names) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names.config_map.clone(),
            default_mode: Some(0o444),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Init container `kubo-config`: sets up the Kubo repository (see the module docs), with the
/// swarm key when there is one and the peer's announce addresses when `exposed`.
fn kubo_init_container(spec: &IpfsClusterSpec, exposed: bool) -> Container {
    let mut mounts = vec![mount(KUBO_VOLUME, KUBO_PATH), config_mount()];
    if spec.swarm_key_ref.is_some() {
        mounts.push(VolumeMount {
            read_only: Some(true),
            ..mount(SWARM_KEY_VOLUME, SWARM_KEY_DIR)
        });
    }
    let mut vars = kubo_env();
    if exposed {
        mounts.push(announce_mount());
        vars.extend([pod_name_env("POD_NAME"), host_ip_env()]);
    }
    Container {
        name: KUBO_INIT_CONTAINER.into(),
        image: Some(spec.kubo.image.clone()),
        command: Some(vec!["/bin/sh".into(), "/config/kubo-init.sh".into()]),
        env: Some(vars),
        volume_mounts: Some(mounts),
        security_context: Some(restricted(spec)),
        ..Default::default()
    }
}

/// Init container `cluster-config`: creates the IPFS Cluster state once.
fn cluster_init_container(spec: &IpfsClusterSpec, cluster_env: Vec<EnvVar>) -> Container {
    Container {
        name: "cluster-config".into(),
        image: Some(spec.cluster.image.clone()),
        command: Some(vec!["/bin/sh".into(), "/config/cluster-init.sh".into()]),
        env: Some(cluster_env),
        volume_mounts: Some(vec![mount(CLUSTER_VOLUME, CLUSTER_PATH), config_mount()]),
        security_context: Some(restricted(spec)),
        ..Default::default()
    }
}

/// Container `kubo`: `ipfs daemon`, its swarm and RPC ports (and the gateway, when enabled).
fn kubo_container(spec: &IpfsClusterSpec) -> Container {
    let mut kubo_ports = vec![port("swarm", KUBO_SWARM_PORT), port("rpc", KUBO_RPC_PORT)];
    if spec.networking.gateway.enabled {
        kubo_ports.push(port("gateway", GATEWAY_PORT));
    }
    Container {
        name: "kubo".into(),
        image: Some(spec.kubo.image.clone()),
        command: Some(vec![
            "ipfs".into(),
            "daemon".into(),
            // No `--enable-gc`: the operator starts the collections (see `runtime::gc`).
            "--migrate=false".into(),
        ]),
        env: Some(kubo_daemon_env(spec)),
        ports: Some(kubo_ports),
        resources: resources(&spec.kubo.resources),
        volume_mounts: Some(vec![mount(KUBO_VOLUME, KUBO_PATH)]),
        startup_probe: Some(startup_probe(KUBO_HEALTH_PATH, KUBO_RPC_PORT)),
        readiness_probe: Some(readiness_probe(KUBO_HEALTH_PATH, KUBO_RPC_PORT)),
        liveness_probe: Some(liveness_probe(KUBO_HEALTH_PATH, KUBO_RPC_PORT)),
        security_context: Some(restricted(spec)),
        ..Default::default()
    }
}

/// Container `cluster`: the start script (bootstrap, then `ipfs-cluster-service daemon`), with
/// the peer's announce addresses when `exposed`.
fn cluster_container(spec: &IpfsClusterSpec, cluster_env: Vec<EnvVar>, exposed: bool) -> Container {
    let mut mounts = vec![
        mount(CLUSTER_VOLUME, CLUSTER_PATH),
        config_mount(),
        VolumeMount {
            read_only: Some(true),
            ..mount(PODINFO_VOLUME, PODINFO_DIR)
        },
    ];
    if exposed {
        mounts.push(announce_mount());
    }
    Container {
        name: "cluster".into(),
        image: Some(spec.cluster.image.clone()),
        command: Some(vec!["/bin/sh".into(), "/config/cluster-start.sh".into()]),
        env: Some(cluster_env),
        ports: Some(cluster_ports(spec)),
        resources: resources(&spec.cluster.resources),
        volume_mounts: Some(mounts),
        startup_probe: Some(startup_probe(CLUSTER_HEALTH_PATH, CLUSTER_REST_PORT)),
        readiness_probe: Some(readiness_probe(CLUSTER_HEALTH_PATH, CLUSTER_REST_PORT)),
        liveness_probe: Some(liveness_probe(CLUSTER_HEALTH_PATH, CLUSTER_REST_PORT)),
        security_context: Some(restricted(spec)),
        ..Default::default()
    }
}

fn cluster_ports(spec: &IpfsClusterSpec) -> Vec<ContainerPort> {
    let mut ports = vec![
        port("cluster-swarm", CLUSTER_SWARM_PORT),
        port("cluster-api", CLUSTER_REST_PORT),
        port("cluster-proxy", CLUSTER_PROXY_PORT),
    ];
    if spec.metrics.cluster {
        ports.push(port("cluster-metrics", CLUSTER_METRICS_PORT));
    }
    ports
}

/// Container `kubo-metrics`: the operator's image serving Kubo's `/debug/metrics/prometheus` as
/// `/metrics` on its own port, and nothing else of the RPC API (see `crate::kubo_metrics`).
fn kubo_metrics_container(spec: &IpfsClusterSpec, image: &str) -> Container {
    Container {
        name: KUBO_METRICS_CONTAINER.into(),
        image: Some(image.to_owned()),
        args: Some(vec![
            "kubo-metrics".into(),
            format!("--listen=0.0.0.0:{KUBO_METRICS_PORT}"),
            format!("--kubo=http://127.0.0.1:{KUBO_RPC_PORT}"),
        ]),
        ports: Some(vec![port("kubo-metrics", KUBO_METRICS_PORT)]),
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("5m".into())),
                ("memory".to_owned(), Quantity("16Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("64Mi".into()),
            )])),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            period_seconds: Some(30),
            timeout_seconds: Some(5),
            ..http_probe(crate::kubo_metrics::HEALTH_PATH, KUBO_METRICS_PORT)
        }),
        security_context: Some(restricted(spec)),
        ..Default::default()
    }
}

/// The volume claim templates: the Kubo repository, then the IPFS Cluster state.
fn claim_templates(
    spec: &IpfsClusterSpec,
    labels: &BTreeMap<String, String>,
) -> Vec<PersistentVolumeClaim> {
    vec![
        claim_template(
            KUBO_VOLUME,
            &spec.kubo.storage.size,
            &spec.kubo.storage.storage_class_name,
            labels,
        ),
        claim_template(
            CLUSTER_VOLUME,
            &spec.cluster.storage.size,
            &spec.cluster.storage.storage_class_name,
            labels,
        ),
    ]
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

/// An HTTP GET of `path` on `port` of the pod IP. kubelet counts any status 200-399 as success.
fn http_probe(path: &str, port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Until the daemon's API first answers (every 2 s, for up to 10 minutes: a big Kubo repository
/// opens slowly, and an IPFS Cluster peer waits up to 2 minutes for another to bootstrap to),
/// neither readiness nor liveness is probed.
fn startup_probe(path: &str, port: i32) -> Probe {
    Probe {
        period_seconds: Some(2),
        timeout_seconds: Some(5),
        failure_threshold: Some(300),
        ..http_probe(path, port)
    }
}

/// Ready while the daemon's API answers: every 10 s, not Ready after 3 probes without an answer
/// within 5 s (about 30 s), Ready again at the first answer.
fn readiness_probe(path: &str, port: i32) -> Probe {
    Probe {
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..http_probe(path, port)
    }
}

/// kubelet restarts the daemon only after its API has not answered for 5 minutes (10 probes, 30 s
/// apart, 10 s timeout each): a daemon that is gone or hung for good. Before that the operator's
/// own healing decides (by default a restart after 3 failed probe rounds, within a minute, in
/// its restart budget); this is the backstop when it does not (self-healing off, budget spent,
/// the operator down).
fn liveness_probe(path: &str, port: i32) -> Probe {
    Probe {
        period_seconds: Some(30),
        timeout_seconds: Some(10),
        failure_threshold: Some(10),
        ..http_probe(path, port)
    }
}

/// A container's security context under the Pod Security Standard `restricted`: non-root, no
/// privilege escalation, no capabilities; the user and group of `spec.podSecurityContext`
/// unless the platform assigns them.
fn restricted(spec: &IpfsClusterSpec) -> SecurityContext {
    let ids: Option<PodIds> = spec.pod_security_context.ids();
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        run_as_user: ids.map(|i| i.run_as_user),
        run_as_group: ids.map(|i| i.run_as_group),
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
