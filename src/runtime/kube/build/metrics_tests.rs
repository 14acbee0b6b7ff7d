//! The daemons' own metrics in the peer pods (`spec.metrics`): the `kubo-metrics` container,
//! IPFS Cluster's endpoint, and the ports the Services and the NetworkPolicy open for them.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::api::{IpfsClusterSpec, MetricsSpec};

const IMAGE: &str = "ghcr.io/ipfs-kit/ipfs-kit-operator:0.1.0";

fn build(metrics: MetricsSpec, image: Option<&str>) -> Children {
    let mut c = IpfsCluster::new(
        "demo",
        IpfsClusterSpec {
            metrics,
            ..IpfsClusterSpec::default()
        },
    );
    c.metadata.namespace = Some("ipfs".into());
    c.metadata.uid = Some("uid-1".into());
    let env = Environment {
        kubo_metrics_image: image.map(str::to_owned),
        ..Environment::default()
    };
    children(&c, &env).expect("children")
}

fn pod(c: &Children) -> &PodSpec {
    c.statefulset.spec.template.spec.as_ref().expect("pod spec")
}

fn container<'a>(c: &'a Children, name: &str) -> Option<&'a Container> {
    pod(c).containers.iter().find(|ct| ct.name == name)
}

fn container_ports(ct: &Container) -> Vec<(String, i32)> {
    ct.ports
        .iter()
        .flatten()
        .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
        .collect()
}

/// The ports the NetworkPolicy opens to everyone (its first rule, without `from`).
fn open_ports(c: &Children) -> Vec<i32> {
    let rules = c
        .network_policy
        .spec
        .as_ref()
        .and_then(|s| s.ingress.clone())
        .unwrap_or_default();
    assert_eq!(rules[0].from, None);
    rules[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| match &p.port {
            Some(IntOrString::Int(n)) => Some(*n),
            _ => None,
        })
        .collect()
}

fn headless_ports(c: &Children) -> Vec<String> {
    c.headless_service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.name)
        .collect()
}

#[test]
fn kubo_metrics_run_from_the_operator_image_on_a_port_of_their_own() {
    let c = build(MetricsSpec::default(), Some(IMAGE));
    let ct = container(&c, KUBO_METRICS_CONTAINER).expect("kubo-metrics container");
    assert_eq!(ct.image.as_deref(), Some(IMAGE));
    assert_eq!(
        ct.args.clone().unwrap_or_default(),
        [
            "kubo-metrics",
            "--listen=0.0.0.0:9401",
            "--kubo=http://127.0.0.1:5001"
        ]
    );
    assert_eq!(container_ports(ct), [("kubo-metrics".to_owned(), 9401)]);
    let sc = ct.security_context.as_ref().expect("security context");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let limits = ct
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    assert!(limits.contains_key("memory"), "a memory limit: {limits:?}");
    assert!(open_ports(&c).contains(&9401), "{:?}", open_ports(&c));
    assert!(headless_ports(&c).contains(&"kubo-metrics".to_owned()));
    // The RPC port itself stays closed to everyone but the operator, peers and clients.
    assert!(!open_ports(&c).contains(&5001));
}

#[test]
fn without_the_operator_image_or_with_kubo_metrics_off_no_container_is_added() {
    for c in [
        build(MetricsSpec::default(), None),
        build(
            MetricsSpec {
                kubo: false,
                cluster: false,
            },
            Some(IMAGE),
        ),
    ] {
        let names: Vec<_> = pod(&c)
            .containers
            .iter()
            .map(|ct| ct.name.clone())
            .collect();
        assert_eq!(names, ["kubo", "cluster"]);
        assert!(!open_ports(&c).contains(&9401));
        assert!(!headless_ports(&c).contains(&"kubo-metrics".to_owned()));
    }
}

#[test]
fn cluster_metrics_turn_on_ipfs_clusters_endpoint_on_8888() {
    let off = build(MetricsSpec::default(), None);
    let cluster = container(&off, "cluster").expect("cluster");
    assert!(!container_ports(cluster).iter().any(|(_, p)| *p == 8888));
    assert!(!open_ports(&off).contains(&8888));

    let on = build(
        MetricsSpec {
            kubo: false,
            cluster: true,
        },
        None,
    );
    let cluster = container(&on, "cluster").expect("cluster");
    let env = |name: &str| {
        cluster
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env("CLUSTER_METRICS_ENABLESTATS").as_deref(), Some("true"));
    assert_eq!(
        env("CLUSTER_METRICS_PROMETHEUSENDPOINT").as_deref(),
        Some("/ip4/0.0.0.0/tcp/8888")
    );
    assert!(container_ports(cluster).contains(&("cluster-metrics".to_owned(), 8888)));
    assert!(open_ports(&on).contains(&8888));
    assert!(headless_ports(&on).contains(&"cluster-metrics".to_owned()));
}
