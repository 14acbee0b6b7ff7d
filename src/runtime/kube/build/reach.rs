//! Per-peer reachability (`spec.networking.p2p.exposure` NodePort or LoadBalancer): one Service
//! per peer, selecting that peer's pod alone, and the addresses each peer announces from it.
//!
//! Why one Service per peer: a libp2p dial names a peer id. A Service shared by all peers spreads
//! the dials of one peer id across every pod, and all but one fail the handshake. A peer's own
//! Service always reaches that peer.
//!
//! How a peer learns its public address: the operator renders it from the peer's Service into the
//! ConfigMap `<cluster>-announce`, one entry per peer (`<pod>.kubo`, `<pod>.cluster`), mounted at
//! [`ANNOUNCE_DIR`]. Kubo's `kubo-config` init container writes the `.kubo` entry into
//! `Addresses.AppendAnnounce`; the `cluster` container exports the `.cluster` entry as
//! `CLUSTER_ANNOUNCEMULTIADDRESS`. The ConfigMap is not part of the configuration hash that
//! rolls every pod: a new address restarts only the peer it belongs to. The `kubo-config` init
//! container reports what it applied in its termination message, so the operator sees, from the
//! pod alone, whether a peer runs with the entry it rendered, and restarts (deletes) that pod when
//! not (see [`started_with`], [`expected_start`]).
//!
//! Where the address comes from:
//! - LoadBalancer: each `status.loadBalancer.ingress[]` entry, `ip` as `/ip4/` (or `/ip6/`),
//!   `hostname` as `/dns4/`, with the Service's ports (4001, 9096). None yet: the peer starts
//!   without an announce, and status says the Service is pending.
//! - NodePort: the ExternalIP of the node the pod runs on, else the pod's `status.hostIP` (the
//!   node's InternalIP as its kubelet reports it), with the Service's node ports. The latter is
//!   rendered as the placeholder [`HOST_PLACEHOLDER`], which the pod replaces with its own host
//!   IP (downward API): a new pod announces the right address from its first start, before the
//!   operator has seen which node it landed on.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::{Names, meta, selector_labels};
use crate::api::cluster::{CLUSTER_SWARM_PORT, KUBO_SWARM_PORT};
use crate::api::{Exposure, IpfsCluster};

/// Where the pods mount the announce ConfigMap.
pub const ANNOUNCE_DIR: &str = "/announce";
/// Name of the announce ConfigMap's volume.
pub const ANNOUNCE_VOLUME: &str = "announce";
/// Stands for the pod's host address (`ip4/<hostIP>` or `ip6/<hostIP>`) in a NodePort entry.
pub const HOST_PLACEHOLDER: &str = "@HOST@";
/// The label the StatefulSet controller puts on each pod with the pod's name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label of a per-peer Service naming its peer (pod).
pub const PEER_LABEL: &str = "ipfskit.io/peer";
/// Name of Kubo's init container, whose termination message says what it announced.
pub const KUBO_INIT_CONTAINER: &str = "kubo-config";

/// Whether `cluster` exposes its peers: one Service per peer, announce addresses.
pub fn exposed(cluster: &IpfsCluster) -> bool {
    cluster.spec.networking.p2p.exposure != Exposure::Internal && !swarm_ports(cluster).is_empty()
}

/// The peer-to-peer ports the spec exposes (4001 and/or 9096; never an API port).
fn swarm_ports(cluster: &IpfsCluster) -> Vec<i32> {
    let mut ports: Vec<i32> = cluster
        .spec
        .networking
        .p2p
        .ports
        .iter()
        .copied()
        .filter(|p| *p == KUBO_SWARM_PORT || *p == CLUSTER_SWARM_PORT)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn port(name: &str, number: i32, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: number,
        target_port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.to_owned()),
        ..Default::default()
    }
}

/// The ports of a peer's Service: Kubo's swarm over TCP and, unless a swarm key limits Kubo to
/// TCP, UDP (QUIC); IPFS Cluster's swarm over TCP (its only listener).
fn peer_ports(cluster: &IpfsCluster) -> Vec<ServicePort> {
    let mut ports = Vec::new();
    for p in swarm_ports(cluster) {
        if p == KUBO_SWARM_PORT {
            ports.push(port("swarm", p, "TCP"));
            if cluster.spec.swarm_key_ref.is_none() {
                ports.push(port("swarm-quic", p, "UDP"));
            }
        } else {
            ports.push(port("cluster-swarm", p, "TCP"));
        }
    }
    ports
}

/// One Service per peer (`<cluster>-<ordinal>-p2p`) of the exposure's type, selecting that peer's
/// pod alone; none when the peers are not exposed.
pub(super) fn peer_services(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
) -> Vec<Service> {
    if !exposed(cluster) {
        return Vec::new();
    }
    let p2p = &cluster.spec.networking.p2p;
    let type_ = match p2p.exposure {
        Exposure::LoadBalancer => "LoadBalancer",
        _ => "NodePort",
    };
    (0..cluster.spec.replicas)
        .map(|ordinal| {
            let peer = names.peer(ordinal);
            let mut metadata = meta(&names.peer_service(ordinal), names, owner);
            if let Some(labels) = metadata.labels.as_mut() {
                labels.insert(PEER_LABEL.to_owned(), peer.clone());
            }
            if !p2p.service_annotations.is_empty() {
                metadata.annotations = Some(p2p.service_annotations.clone());
            }
            let mut selector = selector_labels(&names.cluster);
            selector.insert(POD_NAME_LABEL.to_owned(), peer);
            Service {
                metadata,
                spec: Some(ServiceSpec {
                    type_: Some(type_.to_owned()),
                    selector: Some(selector),
                    ports: Some(peer_ports(cluster)),
                    // Only the node of the pod answers, without a second hop, and the peer sees
                    // the real remote address (libp2p's observed addresses and per-IP limits).
                    // The address announced is that node's (NodePort) or the load balancer's.
                    external_traffic_policy: Some("Local".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

/// The addresses one peer announces: Kubo's (`Addresses.AppendAnnounce`) and IPFS Cluster's
/// (`announce_multiaddress`). A NodePort entry may hold [`HOST_PLACEHOLDER`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announce {
    pub kubo: Vec<String>,
    pub cluster: Vec<String>,
}

impl Announce {
    pub fn is_empty(&self) -> bool {
        self.kubo.is_empty() && self.cluster.is_empty()
    }
}

/// What a peer's Service offers to announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddress {
    /// The addresses to announce.
    Ready(Announce),
    /// No address yet: why, naming the Service.
    Pending(String),
}

/// `ip4/<ip>` or `ip6/<ip>`: the multiaddr head of an IP address.
fn ip_head(ip: &str) -> String {
    if ip.contains(':') {
        format!("ip6/{ip}")
    } else {
        format!("ip4/{ip}")
    }
}

/// The announce addresses of `host` (a multiaddr head like `ip4/1.2.3.4`) for each port of
/// `service`; `node_ports` picks the node port instead of the Service port.
fn addresses(service: &Service, host: &str, node_ports: bool) -> Announce {
    let mut announce = Announce::default();
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    for p in ports.into_iter().flatten() {
        let number = if node_ports {
            p.node_port
        } else {
            Some(p.port)
        };
        let Some(number) = number else { continue };
        let udp = p.protocol.as_deref() == Some("UDP");
        match (p.port, udp) {
            (KUBO_SWARM_PORT, false) => announce.kubo.push(format!("/{host}/tcp/{number}")),
            (KUBO_SWARM_PORT, true) => announce.kubo.push(format!("/{host}/udp/{number}/quic-v1")),
            (CLUSTER_SWARM_PORT, false) => {
                announce.cluster.push(format!("/{host}/tcp/{number}"));
            }
            _ => {}
        }
    }
    announce
}

/// The ExternalIP of `node`, if it has one.
pub fn node_external_ip(node: &Node) -> Option<String> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses
        .iter()
        .find(|a| a.type_ == "ExternalIP" && !a.address.is_empty())
        .map(|a| a.address.clone())
}

/// What the peer behind `service` announces: see the module docs. `node` is the node its pod
/// runs on, when known.
pub fn peer_address(service: &Service, node: Option<&Node>) -> PeerAddress {
    let name = service.metadata.name.as_deref().unwrap_or("?");
    let type_ = service.spec.as_ref().and_then(|s| s.type_.as_deref());
    if type_ == Some("NodePort") {
        let host = match node.and_then(node_external_ip) {
            Some(ip) => ip_head(&ip),
            None => HOST_PLACEHOLDER.to_owned(),
        };
        let announce = addresses(service, &host, true);
        if announce.is_empty() {
            return PeerAddress::Pending(format!("Service {name} has no node port yet"));
        }
        return PeerAddress::Ready(announce);
    }
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let mut announce = Announce::default();
    for i in ingress.into_iter().flatten() {
        let host = match (i.ip.as_deref(), i.hostname.as_deref()) {
            (Some(ip), _) if !ip.is_empty() => ip_head(ip),
            (_, Some(h)) if !h.is_empty() => format!("dns4/{h}"),
            _ => continue,
        };
        let more = addresses(service, &host, false);
        announce.kubo.extend(more.kubo);
        announce.cluster.extend(more.cluster);
    }
    if announce.is_empty() {
        return PeerAddress::Pending(format!(
            "Service {name} (LoadBalancer) has no external address yet"
        ));
    }
    PeerAddress::Ready(announce)
}

/// The spec's own `Addresses.AppendAnnounce` (in `spec.kubo.config`), kept before the peer's.
fn spec_append_announce(cluster: &IpfsCluster) -> Vec<String> {
    let config = cluster.spec.kubo.config.as_ref();
    let list = config
        .and_then(|c| c.get("Addresses"))
        .and_then(|a| a.get("AppendAnnounce"))
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// The announce ConfigMap: for each peer with addresses, `<pod>.kubo` (the JSON list Kubo's
/// `Addresses.AppendAnnounce` gets: the spec's own entries, then the peer's) and `<pod>.cluster`
/// (comma-separated, as `CLUSTER_ANNOUNCEMULTIADDRESS` takes it).
pub fn announce_config_map(
    cluster: &IpfsCluster,
    names: &Names,
    owner: &OwnerReference,
    peers: &BTreeMap<String, Announce>,
) -> ConfigMap {
    let mut data = BTreeMap::new();
    let own = spec_append_announce(cluster);
    for (peer, announce) in peers {
        if !announce.kubo.is_empty() {
            let list: Vec<&String> = own.iter().chain(&announce.kubo).collect();
            let json = serde_json::to_string(&list).unwrap_or_else(|_| "[]".into());
            data.insert(format!("{peer}.kubo"), json);
        }
        if !announce.cluster.is_empty() {
            data.insert(format!("{peer}.cluster"), announce.cluster.join(","));
        }
    }
    ConfigMap {
        metadata: meta(&names.announce_config_map, names, owner),
        data: Some(data),
        ..Default::default()
    }
}

/// The host head a pod puts in place of [`HOST_PLACEHOLDER`]: `ip4/<hostIP>` (or `ip6/`).
fn pod_host(pod: &Pod) -> Option<String> {
    let ip = pod.status.as_ref()?.host_ip.as_deref()?;
    (!ip.is_empty()).then(|| ip_head(ip))
}

/// The termination message `kubo-config` writes when `peer`'s pod starts with the announce
/// ConfigMap `data` (see the start scripts): `kubo <json>` and `cluster <list>` lines for the
/// entries it finds, nothing when it finds none. `None` when it depends on the pod's host IP and
/// that is not known yet.
pub fn expected_start(pod: &Pod, data: &BTreeMap<String, String>) -> Option<String> {
    let peer = pod.metadata.name.as_deref()?;
    let mut lines = Vec::new();
    for kind in ["kubo", "cluster"] {
        if let Some(entry) = data.get(&format!("{peer}.{kind}")) {
            let entry = if entry.contains(HOST_PLACEHOLDER) {
                entry.replace(HOST_PLACEHOLDER, &pod_host(pod)?)
            } else {
                entry.clone()
            };
            lines.push(format!("{kind} {entry}"));
        }
    }
    Some(lines.join("\n"))
}

/// What `pod` announces, as its `kubo-config` init container reported when it ended (an empty
/// string when it reported nothing: it found no entry, or it predates the report).
pub fn started_with(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let init = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.name == KUBO_INIT_CONTAINER);
    init.and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.message.as_deref())
        .map(|m| m.trim().to_owned())
        .unwrap_or_default()
}

/// Whether `pod` is Ready (kubelet's condition).
pub fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pods that started announcing something else than `data` says, with what they should
/// announce: Ready pods only (a pod that is not has not reported yet, or is being handled by
/// kubelet and the healing), not being deleted.
pub fn stale_peers<'a>(pods: &'a [Pod], data: &BTreeMap<String, String>) -> Vec<(&'a Pod, String)> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
        .filter_map(|pod| {
            let expected = expected_start(pod, data)?;
            (started_with(pod) != expected).then_some((pod, expected))
        })
        .collect()
}

/// Whether every pod of the cluster is Ready (not being deleted): only then is a peer restarted
/// for its announce, so that one peer at most is down (a raft majority stays up).
pub fn all_ready(pods: &[Pod]) -> bool {
    pods.iter()
        .all(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p))
}
