//! The Grafana dashboard `dashboards/ipfs-kit.json`: the fields Grafana needs to import it, the
//! variables it promises, queries over the contract's series only, each parsed by a real
//! Prometheus, and the chart's copy identical.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::contract::{family, series_names};
use crate::rules::read;
use crate::support::prometheus::{
    Config, Prometheus, dashboard_queries, repository_dashboard, substitute,
};

const DASHBOARD: &str = "dashboards/ipfs-kit.json";
const CHART_DASHBOARD: &str = "charts/ipfs-kit-operator/files/ipfs-kit-dashboard.json";

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// The panels, with the panels of collapsed rows.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels is a list") {
        panels.push(panel);
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    panels
}

/// What Grafana needs of a panel that queries: an id, a type, a title, a place on the grid, the
/// data source variable, and targets each with an expression and a refId.
fn check_panel(panel: &Value, ids: &mut BTreeSet<i64>) -> Vec<String> {
    let mut problems = Vec::new();
    let title = str_of(panel, "title");
    let id = panel["id"].as_i64();
    match id {
        Some(id) if ids.insert(id) => {}
        Some(id) => problems.push(format!("panel {title:?}: id {id} used twice")),
        None => problems.push(format!("panel {title:?}: no numeric id")),
    }
    if str_of(panel, "type").is_empty() || title.is_empty() {
        problems.push(format!("panel {id:?}: no type or no title"));
    }
    let grid = &panel["gridPos"];
    if !["h", "w", "x", "y"].iter().all(|k| grid[*k].is_u64()) || grid["w"].as_u64() > Some(24) {
        problems.push(format!(
            "panel {title:?}: gridPos {grid} is not h, w <= 24, x, y"
        ));
    }
    if panel["type"] == "row" {
        return problems;
    }
    if panel["datasource"]["type"] != "prometheus" || panel["datasource"]["uid"] != "${datasource}"
    {
        problems.push(format!(
            "panel {title:?}: datasource {} is not the $datasource variable",
            panel["datasource"]
        ));
    }
    let targets = panel["targets"].as_array().cloned().unwrap_or_default();
    if targets.is_empty() {
        problems.push(format!("panel {title:?}: no targets"));
    }
    let mut refs = BTreeSet::new();
    for t in &targets {
        if str_of(t, "expr").is_empty() || !refs.insert(str_of(t, "refId").to_owned()) {
            problems.push(format!(
                "panel {title:?}: a target without expr or with a missing or repeated refId: {t}"
            ));
        }
    }
    problems
}

#[test]
fn the_dashboard_has_every_field_grafana_requires() {
    let dashboard = repository_dashboard();
    let mut problems = Vec::new();
    if str_of(&dashboard, "uid").is_empty() || str_of(&dashboard, "uid").len() > 40 {
        problems.push("uid missing or longer than 40 characters".to_owned());
    }
    if str_of(&dashboard, "title").is_empty() {
        problems.push("no title".to_owned());
    }
    if dashboard["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
        problems.push(format!(
            "schemaVersion {} (Grafana 9+ dashboards have 36 or more)",
            dashboard["schemaVersion"]
        ));
    }
    let mut ids = BTreeSet::new();
    let panels = all_panels(&dashboard);
    for panel in &panels {
        problems.extend(check_panel(panel, &mut ids));
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let var = |name: &str| variables.iter().find(|v| v["name"] == name).cloned();
    match var("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        other => problems.push(format!(
            "templating: no datasource variable of Prometheus data sources: {other:?}"
        )),
    }
    for name in ["namespace", "cluster"] {
        match var(name) {
            Some(v) if v["type"] == "query" && v["datasource"]["uid"] == "${datasource}" => {
                let query = v["query"]["query"].as_str().unwrap_or_default();
                if !query.starts_with("label_values(") || !query.ends_with(&format!("{name})")) {
                    problems.push(format!(
                        "variable {name}: query {query:?} is not label_values(..., {name})"
                    ));
                }
            }
            other => problems.push(format!("templating: no query variable {name}: {other:?}")),
        }
    }
    // Every query panel filters on both variables, or reads operator-wide series only.
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = str_of(t, "expr");
            let operator_wide = series_names(expr).iter().all(|n| {
                [
                    "ipfs_kit_reconcile",
                    "ipfs_kit_pin_reconcile",
                    "ipfs_kit_probe_duration",
                    "ipfs_kit_last_reconcile",
                    "ipfs_kit_leader",
                    "ipfs_kit_build_info",
                ]
                .iter()
                .any(|p| n.starts_with(p))
            });
            let filtered = expr.contains("$namespace") && expr.contains("$cluster");
            if !operator_wide && !filtered {
                problems.push(format!(
                    "panel {:?}: {expr} ignores $namespace or $cluster",
                    str_of(panel, "title")
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{DASHBOARD}:\n  {}",
        problems.join("\n  ")
    );
    assert!(panels.len() > 10, "{} panels", panels.len());
}

#[test]
fn the_dashboard_reads_only_the_operators_series() {
    let dashboard = repository_dashboard();
    let mut used = BTreeSet::new();
    for query in dashboard_queries(&dashboard) {
        let names = series_names(&query.expr);
        assert!(
            !names.is_empty(),
            "{}: {} reads no ipfs_kit_ series",
            query.origin,
            query.expr
        );
        for name in names {
            let family = family(&name).unwrap_or_else(|| {
                panic!(
                    "{}: {name} is not exported by the operator ({})",
                    query.origin, query.expr
                )
            });
            used.insert(family);
        }
    }
    // What the issue asks the dashboard to show.
    for family in [
        "ipfs_kit_cluster_phase",
        "ipfs_kit_cluster_health_score",
        "ipfs_kit_peer_score",
        "ipfs_kit_peer_up",
        "ipfs_kit_peer_pins",
        "ipfs_kit_peer_repo_size_bytes",
        "ipfs_kit_peer_storage_max_bytes",
        "ipfs_kit_peer_received_bytes",
        "ipfs_kit_peer_sent_bytes",
        "ipfs_kit_healing_actions",
        "ipfs_kit_reconciles",
        "ipfs_kit_reconcile_errors",
        "ipfs_kit_reconcile_duration_seconds",
    ] {
        assert!(used.contains(family), "no panel shows {family}");
    }
}

#[test]
fn the_chart_ships_the_dashboard_unchanged() {
    assert!(
        read(DASHBOARD) == read(CHART_DASHBOARD),
        "{CHART_DASHBOARD} differs from {DASHBOARD} (the source; helm cannot read outside the \
         chart): copy it over with `cp {DASHBOARD} {CHART_DASHBOARD}`"
    );
}

/// Each expression, with the variables replaced as Grafana replaces them, is a query the real
/// Prometheus accepts (a parse error is HTTP 400 `bad_data`). Nothing is scraped: this checks
/// syntax and functions, not data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_parses_in_prometheus() {
    let prometheus = Prometheus::start(Config::default()).await;
    // The check can fail: a broken expression is refused.
    let refused = prometheus
        .query("sum by (cluster (ipfs_kit_peer_up)")
        .await
        .expect_err("a broken expression is refused");
    assert_eq!(
        (refused.status, refused.error_type.as_str()),
        (400, "bad_data")
    );

    let queries = dashboard_queries(&repository_dashboard());
    let mut problems = Vec::new();
    for query in &queries {
        let expr = substitute(&query.expr, "1m");
        assert!(
            !expr.contains('$'),
            "{}: {expr} keeps a variable",
            query.origin
        );
        if let Err(e) = prometheus.query(&expr).await {
            problems.push(format!("{}: {expr}\n    {e}", query.origin));
        }
    }
    assert!(
        problems.is_empty(),
        "Prometheus refuses {} of {} dashboard queries:\n  {}",
        problems.len(),
        queries.len(),
        problems.join("\n  ")
    );
}
