//! The alerting rules: valid for Prometheus (`promtool check rules`), unit-tested by `promtool test
//! rules` with a firing and a quiet case for every alert, written against the contract's names,
//! each with its runbook section, and the copy in deploy/ identical to the chart's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::contract::{ALERTS, RUNBOOK_BASE, family, series_names};
use crate::support::prometheus::promtool;

pub const RULES: &str = "charts/ipfs-kit-operator/files/prometheus-rules.yaml";
const DEPLOY_RULES: &str = "deploy/prometheus-rules.yaml";
const RULES_TEST: &str = "tests/prometheus/rules_test.yaml";

pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Every rule of a rule file (`groups[].rules[]`).
pub fn rules_of(text: &str) -> Vec<Value> {
    let file: Value = serde_yaml::from_str(text).expect("the rule file is YAML");
    file["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn promtool_finds_both_rule_files_valid() {
    for file in [RULES, DEPLOY_RULES] {
        let (ok, out) = promtool(&["check", "rules", file]);
        assert!(ok, "promtool check rules {file}:\n{out}");
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[test]
fn the_deploy_copy_is_the_charts_rule_file() {
    assert!(
        read(RULES) == read(DEPLOY_RULES),
        "{DEPLOY_RULES} differs from {RULES} (the source): copy it over with \
         `cp {RULES} {DEPLOY_RULES}`"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let (ok, out) = promtool(&["test", "rules", RULES_TEST]);
    assert!(ok, "promtool test rules {RULES_TEST}:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The unit tests name every alert at least once firing and once quiet, and only the contract's
/// series as input.
#[test]
fn the_unit_tests_cover_every_alert_firing_and_quiet() {
    let tests: Value = serde_yaml::from_str(&read(RULES_TEST)).expect("rules_test.yaml");
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_sequence().expect("tests") {
        for series in test["input_series"].as_sequence().into_iter().flatten() {
            for name in series_names(text(&series["series"])) {
                assert!(
                    family(&name).is_some(),
                    "{RULES_TEST}: test {:?} feeds {name}, which the operator does not export",
                    text(&test["name"])
                );
            }
        }
        for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
            let name = text(&case["alertname"]).to_owned();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected == 0 {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    for (alert, _) in ALERTS {
        assert!(
            firing.contains(*alert),
            "{RULES_TEST} never expects {alert} to fire"
        );
        assert!(
            quiet.contains(*alert),
            "{RULES_TEST} never expects {alert} to stay quiet"
        );
    }
}

/// Exactly the contract's alerts, each with its severity, the three annotations, a runbook_url
/// into docs/runbooks.md where a section of that name exists, over the contract's series only.
#[test]
fn every_alert_has_its_severity_annotations_and_runbook_section() {
    let rules = rules_of(&read(RULES));
    let runbooks = read("docs/runbooks.md");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for rule in &rules {
        let alert = text(&rule["alert"]);
        assert!(!alert.is_empty(), "a rule that is not an alert: {rule:?}");
        *seen.entry(alert.to_owned()).or_default() += 1;
        let severity = ALERTS
            .iter()
            .find(|(name, _)| *name == alert)
            .map(|(_, s)| *s)
            .unwrap_or_else(|| panic!("{alert} is not one of the contract's alerts"));
        assert_eq!(text(&rule["labels"]["severity"]), severity, "{alert}");
        for key in ["summary", "description"] {
            assert!(
                text(&rule["annotations"][key]).len() > 20,
                "{alert} has no {key}"
            );
        }
        let anchor = alert.to_lowercase();
        assert_eq!(
            text(&rule["annotations"]["runbook_url"]),
            format!("{RUNBOOK_BASE}#{anchor}"),
            "{alert}'s runbook_url"
        );
        assert!(
            anchors.contains(&anchor),
            "docs/runbooks.md has no section `## {alert}` (anchor #{anchor})"
        );
        for name in series_names(text(&rule["expr"])) {
            assert!(
                family(&name).is_some(),
                "{alert} reads {name}, which the operator does not export"
            );
        }
    }
    let names: BTreeSet<&str> = seen.keys().map(String::as_str).collect();
    let contract: BTreeSet<&str> = ALERTS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, contract, "the alerts of {RULES}");
}
