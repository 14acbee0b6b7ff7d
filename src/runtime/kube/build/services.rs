//! The Services of a cluster (headless for peer DNS names, internal APIs, optional gateway
//! exposure; the per-peer p2p Services are in `reach`) and what guards the peers: a PodDisruptionBudget and a NetworkPolicy.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{API_ACCESS_LABEL, API_CLIENT_LABEL, GATEWAY_PORT, Names, meta, selector_labels};
use crate::api::cluster::{
    CLUSTER_METRICS_PORT, CLUSTER_PROXY_PORT, CLUSTER_REST_PORT, CLUSTER_SWARM_PORT,
    KUBO_METRICS_PORT, KUBO_RPC_PORT, KUBO_SWARM_PORT,
};
use crate::api::{Exposure, IpfsCluster};

fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// The daemons' metrics ports the pods serve (`spec.metrics`): `kubo-metrics` when the
/// `kubo-metrics` container runs, `cluster-metrics` when IPFS Cluster's endpoint is on.
fn metrics_ports(cluster: &IpfsCluster, kubo_metrics: bool) -> Vec<(&'static str, i32)> {
    let mut ports = Vec::new();
    if kubo_metrics {
        ports.push(("kubo-metrics", KUBO_METRICS_PORT));
    }
    if cluster.spec.metrics.cluster {
        ports.push(("cluster-metrics", CLUSTER_METRICS_PORT));
    }
    ports
}

/// The headless Service that gives each peer a stable DNS name
/// (`<cluster>-<n>.<cluster>-peers.<ns>.svc`), published before the pod is ready so that peers
/// can bootstrap to each other while starting. It also lists the daemons' metrics ports, for a
/// ServiceMonitor.
pub(super) fn headless_service(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
    kubo_metrics: bool,
) -> Service {
    let mut ports = vec![
        service_port("swarm", KUBO_SWARM_PORT),
        service_port("cluster-swarm", CLUSTER_SWARM_PORT),
        service_port("rpc", KUBO_RPC_PORT),
        service_port("cluster-api", CLUSTER_REST_PORT),
    ];
    ports.extend(
        metrics_ports(cluster, kubo_metrics)
            .into_iter()
            .map(|(name, port)| service_port(name, port)),
    );
    Service {
        metadata: meta(&names.headless_service, names, owner),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&names.cluster)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The cluster-internal Service of the IPFS Cluster REST API and proxy (ClusterIP, never exposed).
pub(super) fn api_service(names: &Names, owner: &OwnerReference) -> Service {
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

/// The read-only gateway Service, when the gateway is enabled.
pub(super) fn gateway_service(
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
pub(super) fn pdb(names: &Names, owner: &OwnerReference) -> PodDisruptionBudget {
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

/// The label the API server sets on every namespace to its name.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A selector of the objects (pods, namespaces) labelled `key: value`.
fn labelled(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..Default::default()
    }
}

/// Ingress to the peer pods: the swarm ports (and the gateway and the daemons' metrics ports,
/// when on) from anywhere; the
/// control APIs (Kubo RPC 5001, Cluster REST 9094, proxy 9095) only from the other peers, from the
/// operator and its dashboard (pods labelled `ipfskit.io/api-access: operator` in the operator's
/// namespace, `operator_namespace`) and from client pods in the same namespace labelled
/// `ipfskit.io/api-client: <cluster>`. With the operator's namespace unknown (`None`: the operator
/// runs outside the cluster), the operator's label admits pods of the cluster's own namespace
/// only: never pods of any other namespace, which anyone allowed to label a pod there could join.
pub(super) fn network_policy(
    cluster: &IpfsCluster,
    names: &Names,
    operator_namespace: Option<&str>,
    kubo_metrics: bool,
    owner: &OwnerReference,
) -> NetworkPolicy {
    let mut open_ports = vec![
        np_port(KUBO_SWARM_PORT, "TCP"),
        np_port(KUBO_SWARM_PORT, "UDP"),
        np_port(CLUSTER_SWARM_PORT, "TCP"),
    ];
    if cluster.spec.networking.gateway.enabled {
        open_ports.push(np_port(GATEWAY_PORT, "TCP"));
    }
    // Read-only figures, no secret: scraped by whatever Prometheus the cluster runs.
    open_ports.extend(
        metrics_ports(cluster, kubo_metrics)
            .into_iter()
            .map(|(_, port)| np_port(port, "TCP")),
    );
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
            // By name: `kubernetes.io/metadata.name` is set by the API server on every
            // namespace and cannot be changed.
            namespace_selector: operator_namespace.map(|ns| labelled(NAMESPACE_NAME_LABEL, ns)),
            pod_selector: Some(labelled(API_ACCESS_LABEL, "operator")),
            ..Default::default()
        },
        NetworkPolicyPeer {
            pod_selector: Some(labelled(API_CLIENT_LABEL, &names.cluster)),
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
