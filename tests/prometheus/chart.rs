//! The chart's monitoring objects, rendered by the test world's helm: off by default; the
//! PrometheusRule carries the rule file's groups (valid for promtool) with every runbook_url under
//! `monitoring.runbookBaseURL` and the extra labels, and is refused, by name, where the Prometheus
//! Operator's kind is missing; the dashboard ConfigMap carries the dashboard byte for byte with
//! the label Grafana's sidecar looks for.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

use crate::contract::RUNBOOK_BASE;
use crate::rules::{RULES, read, repo_file, rules_of};
use crate::support::prometheus::promtool;
use crate::support::tools;

const PROMETHEUS_RULE_API: &str = "monitoring.coreos.com/v1/PrometheusRule";

fn chart() -> PathBuf {
    repo_file("charts/ipfs-kit-operator")
}

/// `helm template` (with its own empty home) of the chart with `args`.
fn helm_template(args: &[&str]) -> Output {
    let home = tempfile::tempdir().expect("helm home");
    let chart = chart();
    Command::new(tools::binary("helm", "helm"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("KUBECONFIG")
        .args(["template", "ipfs-kit-operator"])
        .arg(&chart)
        .args(["--namespace", "operators"])
        .args(args)
        .output()
        .expect("run helm")
}

/// The rendered documents as JSON; fails with helm's words unless it succeeds.
fn render(args: &[&str]) -> Vec<Value> {
    let out = helm_template(args);
    assert!(
        out.status.success(),
        "helm template {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    serde_yaml::Deserializer::from_str(&yaml)
        .map(|doc| serde_yaml::Value::deserialize(doc).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).expect("YAML as JSON"))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn dashboard_configmaps(docs: &[Value]) -> Vec<&Value> {
    find(docs, "ConfigMap")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect()
}

#[test]
fn the_monitoring_objects_are_off_by_default() {
    let docs = render(&["--api-versions", PROMETHEUS_RULE_API]);
    assert!(find(&docs, "PrometheusRule").is_empty());
    assert!(dashboard_configmaps(&docs).is_empty());
}

#[test]
fn the_prometheus_rule_carries_the_rule_file_under_the_runbook_base_url() {
    let base = "https://wiki.example.com/ipfs/runbooks";
    let docs = render(&[
        "--api-versions",
        PROMETHEUS_RULE_API,
        "--set",
        "monitoring.prometheusRule.enabled=true",
        "--set",
        "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        &format!("monitoring.runbookBaseURL={base}/"),
    ]);
    let rules = find(&docs, "PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    let rule = rules[0];
    assert_eq!(rule["metadata"]["namespace"], "operators");
    assert_eq!(
        rule["metadata"]["labels"]["release"], "kube-prometheus-stack",
        "the extra labels (a Prometheus's ruleSelector)"
    );
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/name"],
        "ipfs-kit-operator"
    );

    // The same rules as the file, but for the runbook links.
    let rendered = serde_yaml::to_string(&rule["spec"]).expect("spec as YAML");
    let expected = read(RULES).replace(&format!("{RUNBOOK_BASE}#"), &format!("{base}#"));
    let as_json = |text: &str| -> Vec<Value> {
        rules_of(text)
            .into_iter()
            .map(|r| serde_json::to_value(r).expect("rule as JSON"))
            .collect()
    };
    assert_eq!(as_json(&rendered), as_json(&expected));
    for r in as_json(&rendered) {
        let url = r["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = r["alert"].as_str().unwrap_or_default().to_lowercase();
        assert_eq!(url, format!("{base}#{anchor}"));
    }

    // What the Prometheus Operator hands Prometheus is a valid rule file.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("rendered-rules.yaml");
    std::fs::write(&file, &rendered).expect("write rendered rules");
    let (ok, out) = promtool(&["check", "rules", file.to_str().expect("utf-8 path")]);
    assert!(
        ok,
        "promtool check rules on the rendered PrometheusRule:\n{out}"
    );

    // The default base is the repository's runbooks.
    let docs = render(&[
        "--api-versions",
        PROMETHEUS_RULE_API,
        "--set",
        "monitoring.prometheusRule.enabled=true",
    ]);
    let spec = serde_yaml::to_string(&find(&docs, "PrometheusRule")[0]["spec"]).expect("YAML");
    assert_eq!(as_json(&spec), as_json(&read(RULES)));
}

#[test]
fn a_prometheus_rule_without_the_prometheus_operator_is_refused_by_name() {
    let out = helm_template(&["--set", "monitoring.prometheusRule.enabled=true"]);
    assert!(
        !out.status.success(),
        "rendered without the PrometheusRule kind"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("monitoring.prometheusRule.enabled")
            && err.contains("deploy/prometheus-rules.yaml"),
        "{err}"
    );
    let out = helm_template(&[
        "--set",
        "monitoring.grafanaDashboard.enabled=true",
        "--set",
        "monitoring.runbookBaseURL=wiki/runbooks",
    ]);
    assert!(!out.status.success(), "a runbook base that is no URL");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("runbookBaseURL"), "{err}");
}

#[test]
fn the_dashboard_configmap_carries_the_dashboard_for_grafanas_sidecar() {
    let docs = render(&[
        "--set",
        "monitoring.grafanaDashboard.enabled=true",
        "--set",
        "monitoring.grafanaDashboard.namespace=grafana",
        "--set",
        "monitoring.grafanaDashboard.annotations.grafana_folder=IPFS",
    ]);
    let maps = dashboard_configmaps(&docs);
    assert_eq!(
        maps.len(),
        1,
        "one ConfigMap labelled grafana_dashboard: \"1\""
    );
    let map = maps[0];
    assert_eq!(map["metadata"]["namespace"], "grafana");
    assert_eq!(map["metadata"]["annotations"]["grafana_folder"], "IPFS");
    let data = map["data"].as_object().expect("data");
    assert_eq!(data.len(), 1, "one dashboard");
    let (key, json) = data.iter().next().expect("a key");
    assert!(key.ends_with(".json"), "{key}");
    assert!(
        json.as_str() == Some(read("dashboards/ipfs-kit.json").as_str()),
        "the ConfigMap's {key} is not dashboards/ipfs-kit.json byte for byte"
    );
}

/// The operator's series carry the IpfsCluster's `namespace`; the Prometheus Operator would
/// otherwise overwrite it with the scraped pod's namespace (and keep ours as
/// `exported_namespace`), which the rules and the dashboard do not read.
#[test]
fn the_service_monitor_keeps_the_series_namespace_label() {
    let docs = render(&[
        "--api-versions",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ]);
    let monitors = find(&docs, "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let endpoints = monitors[0]["spec"]["endpoints"]
        .as_array()
        .expect("endpoints");
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        assert_eq!(endpoint["honorLabels"], true, "{endpoint}");
    }
}
