use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::api::IpfsClusterStatus;
use crate::reconcile::{HealingEntry, HealingResult};

fn status(peers: &[&str]) -> IpfsClusterStatus {
    let peers: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            // Peer 0 answered on both APIs; the others' IPFS Cluster did not.
            let cluster_id = (i == 0).then(|| format!("12D3KooWcluster{name}"));
            json!({"name": name, "state": if i == 0 { "Healthy" } else { "Unhealthy" },
                   "clusterPeerId": cluster_id,
                   "score": 90 - i as i64 * 50, "restarts": 2, "swarmPeers": 4,
                   "clusterPeersSeen": 3, "peerId": format!("12D3KooW{name}"),
                   "kuboVersion": "0.42.0", "clusterVersion": "1.1.6",
                   "pinsPinned": 5, "pinsQueued": 0, "pinsPinning": 1, "pinsError": 1,
                   "repoSize": 1_048_576, "storageMax": 9_663_676_416_i64,
                   "bytesIn": 1000, "bytesOut": 2000})
        })
        .collect();
    serde_json::from_value(json!({"phase": "Degraded", "healthScore": 70, "peers": peers}))
        .expect("status")
}

fn report<'a>(cluster: ClusterKey, status: &'a IpfsClusterStatus) -> ClusterReport<'a> {
    let names = status.peers.iter().map(|p| p.name.clone());
    ClusterReport {
        cluster,
        desired_peers: 3,
        status,
        volume_capacity: names.clone().map(|n| (n, 10_737_418_240)).collect(),
        healing_budget: names.map(|n| (n, 4)).collect(),
    }
}

fn prometheus_text(metrics: &Metrics) -> String {
    metrics.render(None).1
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(needle))
        .collect()
}

#[test]
fn the_exposition_has_the_contracts_series_with_namespace_cluster_and_peer() {
    let metrics = Metrics::new(Exporter::Controller);
    let s = status(&["demo-0", "demo-1"]);
    metrics.report(report(ClusterKey::kube("ns", "demo"), &s));
    metrics.count_healing(&ClusterKey::kube("ns", "demo"), "demo-1", "restart_peer");
    let text = metrics.encode();
    let p = r#"namespace="ns",cluster="demo",peer="demo-0""#;
    for line in [
        r#"ipfs_kit_cluster_health_score{namespace="ns",cluster="demo"} 70"#.to_owned(),
        r#"ipfs_kit_cluster_phase{namespace="ns",cluster="demo",phase="Degraded"} 1"#.into(),
        r#"ipfs_kit_cluster_phase{namespace="ns",cluster="demo",phase="Healthy"} 0"#.into(),
        r#"ipfs_kit_cluster_peers_desired{namespace="ns",cluster="demo"} 3"#.into(),
        format!("ipfs_kit_peer_up{{{p}}} 1"),
        r#"ipfs_kit_peer_up{namespace="ns",cluster="demo",peer="demo-1"} 0"#.into(),
        format!("ipfs_kit_peer_score{{{p}}} 90"),
        format!(r#"ipfs_kit_peer_state{{{p},state="Healthy"}} 1"#),
        format!(r#"ipfs_kit_peer_state{{{p},state="Restarting"}} 0"#),
        format!(
            r#"ipfs_kit_peer_info{{{p},peer_id="12D3KooWdemo-0",kubo_version="0.42.0",cluster_version="1.1.6"}} 1"#
        ),
        format!("ipfs_kit_peer_swarm_peers{{{p}}} 4"),
        format!("ipfs_kit_peer_cluster_peers{{{p}}} 3"),
        format!(r#"ipfs_kit_peer_pins{{{p},state="pinned"}} 5"#),
        format!(r#"ipfs_kit_peer_pins{{{p},state="error"}} 1"#),
        format!("ipfs_kit_peer_repo_size_bytes{{{p}}} 1048576"),
        format!("ipfs_kit_peer_storage_max_bytes{{{p}}} 9663676416"),
        format!("ipfs_kit_peer_volume_capacity_bytes{{{p}}} 10737418240"),
        format!("ipfs_kit_peer_received_bytes_total{{{p}}} 1000"),
        format!("ipfs_kit_peer_sent_bytes_total{{{p}}} 2000"),
        format!("ipfs_kit_peer_restarts_total{{{p}}} 2"),
        format!("ipfs_kit_peer_healing_budget_remaining{{{p}}} 4"),
        r#"ipfs_kit_healing_actions_total{namespace="ns",cluster="demo",peer="demo-1",action="restart_peer"} 1"#.into(),
        "ipfs_kit_leader 0".into(),
        format!(
            r#"ipfs_kit_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        ),
        "# EOF".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line} in:\n{text}");
    }
    // Seven phases, six states: one sample each.
    assert_eq!(lines_with(&text, "ipfs_kit_cluster_phase{").len(), 7);
    assert_eq!(
        lines_with(&text, &format!("ipfs_kit_peer_state{{{p}")).len(),
        6
    );
}

#[test]
fn help_and_type_precede_every_family_and_counters_end_in_total() {
    let metrics = Metrics::new(Exporter::Local);
    let s = status(&["demo-0"]);
    metrics.report(report(ClusterKey::local("demo"), &s));
    metrics.count_healing(&ClusterKey::local("demo"), "demo-0", "swarm_connect");
    metrics.count_error("apply");
    metrics.count_pin_error("unpin");
    metrics.reconciled(std::time::Duration::from_millis(20), true);
    metrics
        .dashboard
        .observe("/metrics", &axum::http::Method::GET, 200, 0.01);
    metrics
        .probe_durations
        .get_or_create(&ApiLabels { api: "kubo".into() })
        .observe(0.02);
    let text = prometheus_text(&metrics);
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("help text");
            assert!(!help.is_empty(), "{line}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            types.insert(name.to_owned(), kind.to_owned());
        } else {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = types
                .keys()
                .filter(|f| name.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .unwrap_or_else(|| panic!("sample without TYPE: {line}"));
            if types[family] == "counter" {
                assert_eq!(name, family, "{line}");
            }
        }
    }
    let counters: Vec<&String> = types
        .iter()
        .filter(|(_, k)| k.as_str() == "counter")
        .map(|(n, _)| n)
        .collect();
    assert!(
        counters.iter().all(|n| n.ends_with("_total")),
        "{counters:?}"
    );
    // Every name of the contract, and no other.
    let gauges = [
        "build_info",
        "cluster_health_score",
        "cluster_peers_desired",
        "cluster_phase",
        "last_reconcile_timestamp_seconds",
        "leader",
        "peer_cluster_peers",
        "peer_healing_budget_remaining",
        "peer_info",
        "peer_pins",
        "peer_repo_size_bytes",
        "peer_score",
        "peer_state",
        "peer_storage_max_bytes",
        "peer_swarm_peers",
        "peer_up",
        "peer_volume_capacity_bytes",
    ];
    let counters = [
        "dashboard_requests_total",
        "healing_actions_total",
        "peer_received_bytes_total",
        "peer_restarts_total",
        "peer_sent_bytes_total",
        "pin_reconcile_errors_total",
        "pin_reconciles_total",
        "reconcile_errors_total",
        "reconciles_total",
    ];
    let histograms = [
        "dashboard_request_duration_seconds",
        "probe_duration_seconds",
        "reconcile_duration_seconds",
    ];
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (names, kind) in [
        (&gauges[..], "gauge"),
        (&counters[..], "counter"),
        (&histograms[..], "histogram"),
    ] {
        for n in names {
            expected.insert(format!("ipfs_kit_{n}"), kind.to_owned());
        }
    }
    assert_eq!(types, expected, "{text}");
    // Locally there is no namespace label (and no IpfsPins).
    assert!(
        text.lines()
            .any(|l| l == r#"ipfs_kit_peer_up{cluster="demo",peer="demo-0"} 1"#),
        "{text}"
    );
    assert!(!text.contains("namespace="), "{text}");
    assert!(text.contains("ipfs_kit_leader 1"), "{text}");
}

#[test]
fn openmetrics_is_served_when_asked_for() {
    let metrics = Metrics::new(Exporter::Controller);
    metrics.reconciles.inc();
    let (content_type, body) = metrics.render(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ));
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(
        body.contains("# TYPE ipfs_kit_reconciles counter\n"),
        "{body}"
    );
    assert!(body.contains("\nipfs_kit_reconciles_total 1\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    let (content_type, body) = metrics.render(Some("*/*"));
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    assert!(
        body.contains("# TYPE ipfs_kit_reconciles_total counter\n"),
        "{body}"
    );
    assert!(!body.contains("# EOF"), "{body}");
}

#[test]
fn a_peer_scaled_in_and_a_deleted_cluster_have_no_series() {
    let metrics = Metrics::new(Exporter::Controller);
    let demo = ClusterKey::kube("ns", "demo");
    let other = ClusterKey::kube("ns", "other");
    let two = status(&["demo-0", "demo-1"]);
    metrics.report(report(demo.clone(), &two));
    metrics.count_healing(&demo, "demo-1", "restart_kubo");
    let o = status(&["other-0"]);
    metrics.report(report(other.clone(), &o));
    assert!(metrics.encode().contains(r#"peer="demo-1""#));

    let one = status(&["demo-0"]);
    metrics.report(report(demo.clone(), &one));
    let text = metrics.encode();
    assert!(!text.contains(r#"peer="demo-1""#), "{text}");
    assert!(text.contains(r#"peer="demo-0""#), "{text}");
    assert!(
        !text.contains("ipfs_kit_healing_actions"),
        "the departed peer's healing counter goes with it:\n{text}"
    );

    metrics.count_healing(&demo, "demo-0", "swarm_connect");
    metrics.forget_cluster(&demo);
    let text = metrics.encode();
    assert!(!text.contains(r#"cluster="demo""#), "{text}");
    assert!(text.contains(r#"cluster="other""#), "{text}");
    assert!(
        !text.contains("ipfs_kit_healing_actions"),
        "deleting a cluster drops its healing counters:\n{text}"
    );
}

#[test]
fn losing_the_lead_drops_every_cluster_series() {
    let metrics = Metrics::new(Exporter::Controller);
    metrics.set_leader(true);
    let s = status(&["demo-0"]);
    metrics.report(report(ClusterKey::kube("ns", "demo"), &s));
    let text = metrics.encode();
    assert!(text.contains("\nipfs_kit_leader 1\n"), "{text}");
    assert!(text.contains("ipfs_kit_peer_up{"), "{text}");
    metrics.reconciles.inc();
    metrics.set_leader(false);
    let text = metrics.encode();
    assert!(text.contains("\nipfs_kit_leader 0\n"), "{text}");
    assert!(!text.contains("ipfs_kit_peer_"), "{text}");
    assert!(!text.contains("ipfs_kit_cluster_"), "{text}");
    assert!(text.contains("ipfs_kit_reconciles_total 1"), "{text}");
}

#[test]
fn a_dashboard_exports_its_own_http_metrics_and_build_info_only() {
    let metrics = Metrics::new(Exporter::Dashboard);
    let s = status(&["demo-0"]);
    metrics.report(report(ClusterKey::kube("ns", "demo"), &s));
    metrics.reconciles.inc();
    metrics.dashboard.observe(
        "/api/dashboard/history/{*name}",
        &axum::http::Method::GET,
        404,
        0.003,
    );
    metrics.dashboard.observe(
        "unmatched",
        &axum::http::Method::from_bytes(b"BREW").expect("method"),
        404,
        0.001,
    );
    let text = metrics.encode();
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(
        families,
        BTreeSet::from([
            "ipfs_kit_build_info",
            "ipfs_kit_dashboard_request_duration_seconds",
            "ipfs_kit_dashboard_requests",
        ]),
        "{text}"
    );
    assert!(
        text.contains(
            r#"ipfs_kit_dashboard_requests_total{route="/api/dashboard/history/{*name}",method="GET",code="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"ipfs_kit_dashboard_requests_total{route="unmatched",method="other",code="404"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"ipfs_kit_dashboard_request_duration_seconds_count{route="/api/dashboard/history/{*name}"} 1"#
        ),
        "{text}"
    );
}

fn entry(peer: &str, time: u64, action: HealingAction) -> HealingEntry {
    HealingEntry {
        time,
        peer: peer.into(),
        action,
        reason: "test".into(),
        result: HealingResult::Pending,
        detail: None,
    }
}

use crate::reconcile::{Action, Assessment, ClusterHistory, HealingAction, RestartScope};

fn assessment(actions: Vec<Action>, history: ClusterHistory) -> Assessment {
    let policy = crate::reconcile::HealthPolicy::new(3, crate::reconcile::Consensus::Crdt);
    let mut a = crate::reconcile::assess(&policy, &[], &ClusterHistory::default(), 0);
    a.decision.actions = actions;
    a.decision.history = history;
    a
}

#[test]
fn healing_steps_are_labelled_by_what_was_restarted_and_give_ups_counted_once() {
    let restart = |peer: &str, scope| Action::RestartPeer {
        peer: peer.into(),
        scope,
        reason: "test".into(),
    };
    let mut before = ClusterHistory::default();
    before.log.push(entry("p-2", 1, HealingAction::GiveUp));
    let mut after = before.clone();
    after.log.push(entry("p-3", 2, HealingAction::GiveUp));
    after.log.push(entry("p-0", 2, HealingAction::RestartPeer));
    let a = assessment(
        vec![
            restart("p-0", RestartScope::Kubo),
            restart("p-1", RestartScope::Cluster),
            restart("p-4", RestartScope::Both),
            Action::SwarmConnect {
                peer: "p-5".into(),
                targets: Vec::new(),
                reason: "test".into(),
            },
        ],
        after,
    );
    let labels = healing_labels(&a, &before);
    let expected: Vec<(String, &str)> = vec![
        ("p-0".into(), "restart_kubo"),
        ("p-1".into(), "restart_cluster"),
        ("p-4".into(), "restart_peer"),
        ("p-5".into(), "swarm_connect"),
        ("p-3".into(), "give_up"),
    ];
    assert_eq!(labels, expected);
}

#[test]
fn the_budget_is_the_hours_restarts_left() {
    let s = status(&["p-0", "p-1"]);
    let mut history = ClusterHistory::default();
    let now = 10 * 3_600_000;
    let p0 = history.peers.entry("p-0".into()).or_default();
    p0.restarts = vec![now - 7_200_000, now - 60_000, now - 1_000];
    let budgets = healing_budgets(&s, &history, 5, now);
    assert_eq!(
        budgets,
        BTreeMap::from([("p-0".into(), 3), ("p-1".into(), 5)])
    );
    assert_eq!(healing_budgets(&s, &history, 1, now)["p-0"], 0);
}
