//! The per-peer Services, the addresses rendered from them, and when a peer is restarted for them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, LoadBalancerIngress,
    LoadBalancerStatus, Node, NodeAddress, NodeStatus, Pod, PodCondition, PodStatus, Service,
    ServiceStatus,
};
use serde_json::json;

use super::reach::*;
use super::*;
use crate::api::{Exposure, IpfsClusterSpec, SwarmKeyReference};

/// A Service's ports as (port, protocol).
pub(super) fn ports(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> Vec<(i32, &str)> {
    spec.ports
        .iter()
        .flatten()
        .map(|p| (p.port, p.protocol.as_deref().unwrap_or("")))
        .collect()
}

fn cluster(exposure: Exposure, replicas: i32) -> IpfsCluster {
    let mut spec = IpfsClusterSpec {
        replicas,
        ..IpfsClusterSpec::default()
    };
    spec.networking.p2p.exposure = exposure;
    let mut c = IpfsCluster::new("web", spec);
    c.metadata.namespace = Some("ipfs".into());
    c.metadata.uid = Some("uid-1".into());
    c
}

fn build(c: &IpfsCluster) -> Children {
    children(c, &Environment::default()).expect("children")
}

/// `service` as the API server returns it: node ports allocated (30000 + 100 * ordinal + index).
fn allocated(mut service: Service, ordinal: i32) -> Service {
    let spec = service.spec.as_mut().expect("spec");
    for (i, p) in spec.ports.iter_mut().flatten().enumerate() {
        p.node_port = Some(30000 + 100 * ordinal + i32::try_from(i).expect("index"));
    }
    service
}

fn with_ingress(mut service: Service, ip: Option<&str>, hostname: Option<&str>) -> Service {
    service.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: ip.map(str::to_owned),
                hostname: hostname.map(str::to_owned),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    service
}

#[test]
fn each_peer_gets_its_own_service_selecting_its_pod_alone_with_the_swarm_ports_only() {
    let c = build(&cluster(Exposure::NodePort, 3));
    assert_eq!(c.peer_services.len(), 3);
    let svc = &c.peer_services[1];
    assert_eq!(svc.metadata.name.as_deref(), Some("web-1-p2p"));
    let labels = svc.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels.get(PEER_LABEL).map(String::as_str), Some("web-1"));
    assert_eq!(labels.get(CLUSTER_LABEL).map(String::as_str), Some("web"));
    let owner = &svc.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("IpfsCluster", "uid-1")
    );
    let spec = svc.spec.as_ref().expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    let selector = spec.selector.as_ref().expect("selector");
    assert_eq!(
        selector.get(POD_NAME_LABEL).map(String::as_str),
        Some("web-1")
    );
    assert_eq!(ports(spec), [(4001, "TCP"), (4001, "UDP"), (9096, "TCP")]);
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
}

#[test]
fn no_exposure_means_no_peer_service_and_an_unchanged_pod_template() {
    let has_announce_volume = |c: &Children| {
        let pod = c.statefulset.spec.template.spec.as_ref().expect("pod");
        pod.volumes
            .iter()
            .flatten()
            .any(|v| v.name == ANNOUNCE_VOLUME)
    };
    let internal = build(&cluster(Exposure::Internal, 3));
    assert!(internal.peer_services.is_empty());
    assert!(!has_announce_volume(&internal));
    let script = &internal.config_map.data.as_ref().expect("data")["kubo-init.sh"];
    assert!(script.contains("Addresses.AppendAnnounce '[]'"), "{script}");
    assert!(!script.contains(ANNOUNCE_DIR), "{script}");

    let exposed = build(&cluster(Exposure::LoadBalancer, 3));
    assert!(has_announce_volume(&exposed));
    let data = exposed.config_map.data.as_ref().expect("data");
    assert!(data["kubo-init.sh"].contains("/announce/$POD_NAME.kubo"));
    assert!(data["cluster-start.sh"].contains("export CLUSTER_ANNOUNCEMULTIADDRESS"));
}

#[test]
fn a_private_network_or_a_single_port_narrows_the_service() {
    let mut c = cluster(Exposure::NodePort, 1);
    c.spec.swarm_key_ref = Some(SwarmKeyReference {
        name: "key".into(),
        key: "swarm.key".into(),
    });
    c.spec.networking.p2p.ports = vec![4001];
    let built = build(&c);
    let ports: Vec<(i32, &str)> = built.peer_services[0]
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(|p| (p.port, p.protocol.as_deref().unwrap_or("")))
        .collect();
    // Kubo speaks TCP only with a swarm key: no QUIC port.
    assert_eq!(ports, [(4001, "TCP")]);
}

#[test]
fn a_load_balancer_address_is_announced_on_the_service_ports() {
    let c = build(&cluster(Exposure::LoadBalancer, 2));
    let svc = allocated(c.peer_services[0].clone(), 0);
    assert_eq!(
        peer_address(&svc, None),
        PeerAddress::Pending("Service web-0-p2p (LoadBalancer) has no external address yet".into())
    );
    let ready = with_ingress(svc.clone(), Some("127.0.0.50"), None);
    assert_eq!(
        peer_address(&ready, None),
        PeerAddress::Ready(Announce {
            kubo: vec![
                "/ip4/127.0.0.50/tcp/4001".into(),
                "/ip4/127.0.0.50/udp/4001/quic-v1".into()
            ],
            cluster: vec!["/ip4/127.0.0.50/tcp/9096".into()],
        })
    );
    let named = with_ingress(svc.clone(), None, Some("lb.example.org"));
    let PeerAddress::Ready(a) = peer_address(&named, None) else {
        panic!("a hostname is an address");
    };
    assert_eq!(a.cluster, ["/dns4/lb.example.org/tcp/9096"]);
    let v6 = with_ingress(svc, Some("fd00::5"), None);
    let PeerAddress::Ready(a) = peer_address(&v6, None) else {
        panic!("an IPv6 address is an address");
    };
    assert_eq!(a.kubo[0], "/ip6/fd00::5/tcp/4001");
}

fn node(addresses: &[(&str, &str)]) -> Node {
    Node {
        status: Some(NodeStatus {
            addresses: Some(
                addresses
                    .iter()
                    .map(|(t, a)| NodeAddress {
                        type_: (*t).into(),
                        address: (*a).into(),
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_node_port_is_announced_on_the_nodes_external_ip_else_the_pods_host_ip() {
    let c = build(&cluster(Exposure::NodePort, 2));
    let svc = allocated(c.peer_services[1].clone(), 1);
    let external = node(&[("InternalIP", "10.0.0.7"), ("ExternalIP", "203.0.113.7")]);
    let PeerAddress::Ready(a) = peer_address(&svc, Some(&external)) else {
        panic!("node ports are allocated");
    };
    assert_eq!(
        a.kubo,
        [
            "/ip4/203.0.113.7/tcp/30100",
            "/ip4/203.0.113.7/udp/30101/quic-v1"
        ]
    );
    assert_eq!(a.cluster, ["/ip4/203.0.113.7/tcp/30102"]);
    let internal = node(&[("InternalIP", "10.0.0.7")]);
    let PeerAddress::Ready(a) = peer_address(&svc, Some(&internal)) else {
        panic!("node ports are allocated");
    };
    assert_eq!(a.cluster, ["/@HOST@/tcp/30102"]);
    assert_eq!(peer_address(&svc, None), PeerAddress::Ready(a));
    // Not allocated yet (as built, before the API server saw it).
    assert!(matches!(
        peer_address(&c.peer_services[1], None),
        PeerAddress::Pending(_)
    ));
}

#[test]
fn the_announce_config_map_has_one_entry_per_peer_with_an_address_after_the_specs_own() {
    let mut c = cluster(Exposure::LoadBalancer, 2);
    c.spec.kubo.config = Some(
        json!({"Addresses": {"AppendAnnounce": ["/dns4/ipfs.example.org/tcp/4001"]}})
            .as_object()
            .cloned()
            .expect("object"),
    );
    let names = Names::of("web");
    let owner = owner_reference(&c).expect("owner");
    let peers = BTreeMap::from([(
        "web-1".to_owned(),
        Announce {
            kubo: vec!["/ip4/127.0.0.50/tcp/4001".into()],
            cluster: vec!["/ip4/127.0.0.50/tcp/9096".into()],
        },
    )]);
    let cm = announce_config_map(&c, &names, &owner, &peers);
    assert_eq!(cm.metadata.name.as_deref(), Some("web-announce"));
    let data = cm.data.expect("data");
    assert_eq!(
        data,
        BTreeMap::from([
            (
                "web-1.kubo".to_owned(),
                r#"["/dns4/ipfs.example.org/tcp/4001","/ip4/127.0.0.50/tcp/4001"]"#.to_owned()
            ),
            (
                "web-1.cluster".to_owned(),
                "/ip4/127.0.0.50/tcp/9096".to_owned()
            ),
        ])
    );
    // The scripts ConfigMap (whose hash rolls every pod) does not change with the addresses.
    assert!(
        !build(&c)
            .config_map
            .data
            .expect("data")
            .values()
            .any(|v| v.contains("127.0.0.50"))
    );
}

fn pod(name: &str, ready: bool, host_ip: &str, message: Option<&str>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.status = Some(PodStatus {
        host_ip: Some(host_ip.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..Default::default()
        }]),
        init_container_statuses: Some(vec![ContainerStatus {
            name: KUBO_INIT_CONTAINER.into(),
            state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    message: message.map(str::to_owned),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    p
}

#[test]
fn a_peer_is_stale_when_it_reports_another_announce_than_rendered_for_it() {
    let data = BTreeMap::from([
        (
            "web-0.kubo".to_owned(),
            r#"["/@HOST@/tcp/30000"]"#.to_owned(),
        ),
        ("web-0.cluster".to_owned(), "/@HOST@/tcp/30002".to_owned()),
        (
            "web-1.kubo".to_owned(),
            r#"["/ip4/127.0.0.51/tcp/4001"]"#.to_owned(),
        ),
    ]);
    let current0 = "kubo [\"/ip4/10.244.0.1/tcp/30000\"]\ncluster /ip4/10.244.0.1/tcp/30002";
    let pods = [
        pod("web-0", true, "10.244.0.1", Some(current0)),
        pod(
            "web-1",
            true,
            "10.244.0.1",
            Some("kubo [\"/ip4/127.0.0.50/tcp/4001\"]"),
        ),
        // No entry and no report: nothing to announce, nothing announced.
        pod("web-2", true, "10.244.0.1", None),
    ];
    let stale = stale_peers(&pods, &data);
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].0.metadata.name.as_deref(), Some("web-1"));
    assert_eq!(stale[0].1, "kubo [\"/ip4/127.0.0.51/tcp/4001\"]");
    assert!(all_ready(&pods));

    // A pod that started before its entry existed (or before it reported) is stale too.
    let started_bare = [pod("web-1", true, "10.244.0.1", None)];
    assert_eq!(stale_peers(&started_bare, &data).len(), 1);
    // One that is not Ready yet is left alone, and holds back every restart.
    let starting = [pod("web-1", false, "10.244.0.1", None), pods[0].clone()];
    assert!(stale_peers(&starting, &data).is_empty());
    assert!(!all_ready(&starting));
}

/// Runs the rendered Kubo init script of an exposed cluster as pod `web-0` on a node of host IP
/// `10.244.0.1`, with the announce ConfigMap `data` mounted (in a temporary directory) and a
/// stand-in `ipfs` that logs its arguments; returns the log and the termination message.
fn run_kubo_init(data: &BTreeMap<String, String>) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    let announce = root.join("announce");
    std::fs::create_dir(&announce).expect("announce dir");
    for (k, v) in data {
        std::fs::write(announce.join(k), v).expect("entry");
    }
    let log = root.join("ipfs.log");
    let ipfs = root.join("ipfs");
    let stub = format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display());
    std::fs::write(&ipfs, stub).expect("stub");
    std::fs::set_permissions(&ipfs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let message = root.join("termination-log");
    let script = super::scripts::kubo_init_script(&cluster(Exposure::NodePort, 1))
        .replace(ANNOUNCE_DIR, &announce.display().to_string())
        .replace("/dev/termination-log", &message.display().to_string())
        .replace(
            "export IPFS_PATH=/data/ipfs",
            &format!("export IPFS_PATH={}", root.display()),
        );
    std::fs::write(root.join("config"), "{}").expect("repo config");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("PATH", format!("{}:/usr/bin:/bin", root.display()))
        .env("POD_NAME", "web-0")
        .env("HOST_IP", "10.244.0.1")
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    let message = std::fs::read_to_string(&message).unwrap_or_default();
    (log, message)
}

#[test]
fn the_init_script_announces_the_entry_with_its_host_and_reports_what_the_operator_expects() {
    let data = BTreeMap::from([
        (
            "web-0.kubo".to_owned(),
            r#"["/@HOST@/tcp/30000","/@HOST@/udp/30001/quic-v1"]"#.to_owned(),
        ),
        ("web-0.cluster".to_owned(), "/@HOST@/tcp/30002".to_owned()),
        (
            "web-1.kubo".to_owned(),
            r#"["/ip4/127.0.0.9/tcp/30100"]"#.to_owned(),
        ),
    ]);
    let (log, message) = run_kubo_init(&data);
    let appended = r#"config --json Addresses.AppendAnnounce ["/ip4/10.244.0.1/tcp/30000","/ip4/10.244.0.1/udp/30001/quic-v1"]"#;
    assert!(log.contains(appended), "{log}");
    // The reset to nothing comes first, so that no older address survives in the repository.
    assert!(
        log.find("Addresses.AppendAnnounce []") < log.find(appended),
        "{log}"
    );
    let started = pod("web-0", true, "10.244.0.1", Some(&message));
    assert_eq!(
        Some(started_with(&started)),
        expected_start(&started, &data)
    );
    assert!(stale_peers(&[started], &data).is_empty());

    // No entry (a load balancer still pending): nothing appended, nothing reported.
    let (log, message) = run_kubo_init(&BTreeMap::new());
    assert_eq!(log.matches("AppendAnnounce").count(), 1, "{log}");
    assert_eq!(message, "");
}
