//! The monitoring the repository ships, checked with the real tools of the test world: the
//! alerting rules with `promtool` (`check rules`, and the unit tests of
//! `tests/prometheus/rules_test.yaml`), the Grafana dashboard against the fields Grafana needs and
//! every PromQL expression of it parsed by a real Prometheus, and the chart's PrometheusRule and
//! dashboard ConfigMap rendered by the real helm.
//!
//! The end-to-end test (Prometheus scraping a running `local up` with real daemons, an alert
//! firing and resolving) is in `tests/daemons/local/prometheus.rs`.

#[path = "../support/mod.rs"]
mod support;

mod chart;
mod contract;
mod dashboard;
mod rules;
