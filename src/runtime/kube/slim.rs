//! What the controller's watch caches keep of each object: only what reconciles read. Applied by
//! the watches' modify step before an object is cached, so a cache of 1000 clusters' objects
//! holds no managed fields (the bulk of a server-side-applied object), no `kubectl apply`
//! annotation, no pod template in a StatefulSet ([`statefulset`]), of a Service only what a peer
//! announces ([`service`]), and of a pod only the few fields the steps read:
//!
//! - metadata: name, namespace, uid, labels (selector, `controller-revision-hash`), owner
//!   references, creation and deletion timestamps, resourceVersion, generation, annotations;
//! - spec: the containers' names and whether each has a startup probe ([`super::observe`]),
//!   `restartPolicy` (exits kubelet restarts), `nodeName` (the node a NodePort peer announces);
//! - status: phase, IPs, conditions, and the containers' states, readiness, `started` and
//!   restart counts ([`super::observe`], [`super::kubelet`], [`super::upgrade`], the announce
//!   check of [`super::reach`]).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, LoadBalancerIngress, LoadBalancerStatus, Pod, PodSpec, PodStatus,
    PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Resource;

/// The annotation `kubectl apply` (client side) keeps the whole last-applied object in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the managed fields and the last-applied annotation (no reconcile reads them).
pub fn metadata(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// [`metadata`] of any object: the modify step of the watches of whole objects kept as they are.
pub fn object<K: Resource>(object: &mut K) {
    metadata(object.meta_mut());
}

/// A StatefulSet as the cache keeps it: without managed fields, its pod template or its selector
/// (the containers, volumes, probes, the pods' labels: what the operator builds and never reads
/// back; the steps read the replicas, the claim templates, which are applied again as they are,
/// the update strategy and the status).
pub fn statefulset(sts: &mut StatefulSet) {
    metadata(&mut sts.metadata);
    sts.spec.template = PodTemplateSpec::default();
    sts.spec.selector = LabelSelector::default();
}

/// A Service as the cache keeps it: its metadata, type, ports (number, node port, protocol) and
/// load balancer addresses: what a peer announces ([`super::reach`]).
pub fn service(service: &mut Service) {
    metadata(&mut service.metadata);
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        type_: spec.type_,
        ports: spec.ports.map(|ports| {
            ports
                .into_iter()
                .map(|p| ServicePort {
                    port: p.port,
                    node_port: p.node_port,
                    protocol: p.protocol,
                    ..ServicePort::default()
                })
                .collect()
        }),
        ..ServiceSpec::default()
    });
    service.status = service.status.take().map(|status| ServiceStatus {
        load_balancer: status.load_balancer.map(|lb| LoadBalancerStatus {
            ingress: lb.ingress.map(|list| {
                list.into_iter()
                    .map(|i| LoadBalancerIngress {
                        ip: i.ip,
                        hostname: i.hostname,
                        ..LoadBalancerIngress::default()
                    })
                    .collect()
            }),
        }),
        ..ServiceStatus::default()
    });
}

/// A pod as the cache keeps it (see the module's documentation).
pub fn pod(pod: &mut Pod) {
    metadata(&mut pod.metadata);
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(pod_spec(spec));
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(pod_status(status));
    }
}

fn pod_spec(spec: PodSpec) -> PodSpec {
    PodSpec {
        containers: spec
            .containers
            .into_iter()
            .map(|c| Container {
                name: c.name,
                // Only whether there is one is read.
                startup_probe: c.startup_probe.map(|_| Probe::default()),
                ..Container::default()
            })
            .collect(),
        restart_policy: spec.restart_policy,
        node_name: spec.node_name,
        ..PodSpec::default()
    }
}

fn pod_status(status: PodStatus) -> PodStatus {
    let containers = |list: Option<Vec<ContainerStatus>>| {
        list.map(|list| list.into_iter().map(container_status).collect())
    };
    PodStatus {
        phase: status.phase,
        pod_ip: status.pod_ip,
        host_ip: status.host_ip,
        conditions: status.conditions,
        container_statuses: containers(status.container_statuses),
        init_container_statuses: containers(status.init_container_statuses),
        ..PodStatus::default()
    }
}

fn container_status(c: ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        name: c.name,
        state: c.state,
        last_state: c.last_state,
        ready: c.ready,
        started: c.started,
        restart_count: c.restart_count,
        ..ContainerStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, PodCondition,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use std::collections::BTreeMap;

    fn full_pod() -> Pod {
        let json = serde_json::json!({
            "metadata": {
                "name": "web-0",
                "namespace": "team",
                "uid": "u-1",
                "resourceVersion": "42",
                "creationTimestamp": "2026-11-30T10:00:00Z",
                "labels": {"app.kubernetes.io/instance": "web", "controller-revision-hash": "web-abc"},
                "annotations": {"ipfskit.io/config-hash": "0123", LAST_APPLIED: "{...}"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "s-1"}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update"}]
            },
            "spec": {
                "nodeName": "node-1",
                "restartPolicy": "Always",
                "initContainers": [{"name": "kubo-config", "image": "ipfs/kubo", "command": ["sh", "-c", "a long script"]}],
                "containers": [
                    {"name": "kubo", "image": "ipfs/kubo", "startupProbe": {"httpGet": {"path": "/version", "port": 5001}},
                     "env": [{"name": "IPFS_PATH", "value": "/data/ipfs"}]},
                    {"name": "cluster", "image": "ipfs/ipfs-cluster"}
                ],
                "volumes": [{"name": "scripts", "configMap": {"name": "web-config"}}]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.7",
                "podIPs": [{"ip": "10.244.0.7"}],
                "hostIP": "192.0.2.1",
                "qosClass": "Burstable",
                "conditions": [{"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{
                    "name": "kubo-config", "image": "ipfs/kubo", "imageID": "sha256:1", "ready": true, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "message": "kubo /ip4/192.0.2.1/tcp/4001"}}
                }],
                "containerStatuses": [{
                    "name": "kubo", "image": "ipfs/kubo", "imageID": "sha256:2", "containerID": "containerd://x",
                    "ready": false, "started": true, "restartCount": 2,
                    "state": {"running": {"startedAt": "2026-11-30T10:01:00Z"}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
                }]
            }
        });
        serde_json::from_value(json).expect("pod json")
    }

    #[test]
    fn a_cached_pod_keeps_what_the_steps_read_and_nothing_else() {
        let mut p = full_pod();
        pod(&mut p);
        let meta = &p.metadata;
        assert_eq!(meta.managed_fields, None);
        assert_eq!(
            meta.annotations,
            Some(BTreeMap::from([(
                "ipfskit.io/config-hash".into(),
                "0123".into()
            )]))
        );
        assert_eq!(meta.labels.as_ref().map(BTreeMap::len), Some(2));
        assert_eq!(meta.uid.as_deref(), Some("u-1"));
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert!(meta.creation_timestamp.is_some());
        assert_eq!(meta.owner_references.as_ref().map(Vec::len), Some(1));

        let spec = p.spec.as_ref().expect("spec");
        let expected_spec = PodSpec {
            containers: vec![
                Container {
                    name: "kubo".into(),
                    startup_probe: Some(Probe::default()),
                    ..Container::default()
                },
                Container {
                    name: "cluster".into(),
                    ..Container::default()
                },
            ],
            node_name: Some("node-1".into()),
            restart_policy: Some("Always".into()),
            ..PodSpec::default()
        };
        assert_eq!(*spec, expected_spec);

        let status = p.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.7"));
        assert_eq!(status.host_ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(status.pod_ips, None);
        assert_eq!(status.qos_class, None);
        assert_eq!(
            status.conditions,
            Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }])
        );
        let kubo = &status.container_statuses.as_ref().expect("containers")[0];
        let expected = ContainerStatus {
            name: "kubo".into(),
            ready: false,
            started: Some(true),
            restart_count: 2,
            state: Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time("2026-11-30T10:01:00Z".parse().expect("time"))),
                }),
                ..ContainerState::default()
            }),
            last_state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("OOMKilled".into()),
                    ..ContainerStateTerminated::default()
                }),
                ..ContainerState::default()
            }),
            ..ContainerStatus::default()
        };
        assert_eq!(*kubo, expected);
        let init = &status.init_container_statuses.as_ref().expect("inits")[0];
        assert_eq!(
            crate::runtime::kube::build::reach::started_with(&p),
            "kubo /ip4/192.0.2.1/tcp/4001"
        );
        assert_eq!(init.image, "");
    }

    #[test]
    fn a_cached_service_keeps_what_a_peer_announces() {
        use crate::runtime::kube::build::reach::peer_address;
        let mut svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0-p2p", "resourceVersion": "7",
                "managedFields": [{"manager": "ipfs-kit-operator"}]},
            "spec": {
                "type": "NodePort",
                "selector": {"statefulset.kubernetes.io/pod-name": "web-0"},
                "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "ipFamilies": ["IPv4"],
                "ports": [{"name": "swarm", "port": 4001, "targetPort": 4001, "nodePort": 30401,
                    "protocol": "TCP"}]
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9", "ipMode": "VIP"}]}}
        }))
        .expect("service json");
        let before = svc.clone();
        service(&mut svc);
        assert_eq!(svc.metadata.managed_fields, None);
        assert_eq!(svc.metadata.resource_version.as_deref(), Some("7"));
        let spec = svc.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert_eq!(
            (spec.selector.as_ref(), spec.cluster_ip.as_ref()),
            (None, None)
        );
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.port, port.node_port, port.protocol.as_deref()),
            (4001, Some(30401), Some("TCP"))
        );
        let ingress = |s: &Service| {
            s.status
                .as_ref()?
                .load_balancer
                .as_ref()?
                .ingress
                .as_ref()?[0]
                .ip
                .clone()
        };
        assert_eq!(ingress(&svc), ingress(&before));
        // What a peer announces is the same from the cached copy.
        let announces = |s: &Service| format!("{:?}", peer_address(s, None));
        assert_eq!(announces(&svc), announces(&before));
    }

    #[test]
    fn a_cached_statefulset_keeps_its_replicas_claims_strategy_and_status() {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "generation": 3, "managedFields": [{"manager": "ipfs-kit-operator"}]},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app.kubernetes.io/instance": "web"}},
                "serviceName": "web-peers",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/instance": "web"}},
                    "spec": {"containers": [{"name": "kubo", "image": "ipfs/kubo"}]}
                },
                "volumeClaimTemplates": [{"metadata": {"name": "kubo-data"},
                    "spec": {"resources": {"requests": {"storage": "1Gi"}}}}]
            },
            "status": {"replicas": 3, "observedGeneration": 3, "updateRevision": "web-2"}
        }))
        .expect("statefulset json");
        let before = sts.clone();
        statefulset(&mut sts);
        assert_eq!(sts.metadata.managed_fields, None);
        assert_eq!(sts.metadata.generation, Some(3));
        assert_eq!(sts.spec.template, PodTemplateSpec::default());
        assert_eq!(sts.spec.selector, LabelSelector::default());
        assert_eq!(sts.spec.replicas, Some(3));
        assert_eq!(sts.spec.update_strategy, before.spec.update_strategy);
        assert_eq!(
            sts.spec.volume_claim_templates,
            before.spec.volume_claim_templates
        );
        assert_eq!(sts.status, before.status);
    }

    #[test]
    fn metadata_loses_managed_fields_and_the_last_applied_copy_only() {
        let mut meta = ObjectMeta {
            name: Some("web".into()),
            annotations: Some(BTreeMap::from([(LAST_APPLIED.into(), "{}".into())])),
            managed_fields: Some(vec![ManagedFieldsEntry::default()]),
            labels: Some(BTreeMap::from([("a".into(), "b".into())])),
            ..ObjectMeta::default()
        };
        metadata(&mut meta);
        assert_eq!(
            meta,
            ObjectMeta {
                name: Some("web".into()),
                labels: Some(BTreeMap::from([("a".into(), "b".into())])),
                ..ObjectMeta::default()
            }
        );
    }
}
