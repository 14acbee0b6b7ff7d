//! The test world's real Prometheus scraping a running `local up` (real Kubo and IPFS Cluster
//! daemons, the in-process dashboard's `/metrics`) with the repository's alerting rules loaded
//! (their `for:` shortened to seconds): a killed Kubo that stays down makes `IpfsKitPeerDown`
//! fire in Prometheus's own `/api/v1/alerts` and reach a webhook receiver from the operator's own
//! alerting (`--alert-webhook`), and bringing it back resolves it in both. And every query
//! of the Grafana dashboard returns data against that Prometheus.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{Local, http, pin_block};
use crate::support::prometheus::{
    Config, Prometheus, ScrapeJob, dashboard_queries, repository_dashboard, substitute,
};
use crate::support::wait_for;
use crate::support::webhook::Receiver;

const RULES: &str = "charts/ipfs-kit-operator/files/prometheus-rules.yaml";

/// A Prometheus scraping that dashboard every second, with the rules loaded (`for:` 5 s).
async fn prometheus_scraping(dashboard: &str) -> Prometheus {
    let target = dashboard.trim_start_matches("http://");
    let prometheus = Prometheus::start(Config {
        scrape: vec![ScrapeJob::new("ipfs-kit-local", target)],
        rule_files: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES)],
        for_duration: Some(Duration::from_secs(5)),
        ..Config::default()
    })
    .await;
    prometheus.wait_targets_up(Duration::from_secs(30)).await;
    prometheus
}

/// `ipfs_kit_peer_up` of `cluster` as Prometheus last scraped it: peer name -> value.
async fn peers_up(prometheus: &Prometheus, cluster: &str) -> Vec<(String, String)> {
    let mut up: Vec<(String, String)> = prometheus
        .vector(&format!("ipfs_kit_peer_up{{cluster=\"{cluster}\"}}"))
        .await
        .iter()
        .map(|s| {
            (
                s["metric"]["peer"].as_str().unwrap_or_default().to_owned(),
                s["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    up.sort();
    up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubo_kept_down_fires_ipfs_kit_peer_down_in_prometheus_and_resolves_when_back() {
    // The operator's own alerts go to a webhook receiver at the same time (same 5 s wait).
    let receiver = Receiver::start().await;
    let mut local = Local::new("alerting", 2).await;
    // Healing off: the killed Kubo stays down until the test brings it back.
    local.write_spec_with(2, "    autoHeal: false\n");
    local.up_foreground_with(&[
        "--alert-webhook",
        &receiver.url(),
        "--alert-for",
        "IpfsKitPeerDown=5s",
    ]);
    let before = local.wait_converged(2).await;
    let dashboard = local.dashboard_base().await;
    let prometheus = prometheus_scraping(&dashboard).await;
    let up = |v: &str| {
        vec![
            ("peer-0".to_owned(), "1".to_owned()),
            ("peer-1".to_owned(), v.to_owned()),
        ]
    };
    wait_for(
        "Prometheus to scrape both peers up",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async { (peers_up(&prometheus, "alerting").await == up("1")).then_some(()) },
    )
    .await;
    // Rules evaluated for a while: nothing fires for a healthy cluster.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let active = prometheus.alerts_named("IpfsKitPeerDown", &[]).await;
    assert!(active.is_empty(), "alerts before any failure: {active:?}");

    let victim = before.peers[1].kubo_pid.expect("peer-1's Kubo runs");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9 peer-1's Kubo");
    let killed = std::time::Instant::now();
    let peer1 = [("cluster", "alerting"), ("peer", "peer-1")];
    prometheus
        .wait_alert(
            "IpfsKitPeerDown",
            &peer1,
            "pending",
            Duration::from_secs(30),
        )
        .await;
    let alert = prometheus
        .wait_alert("IpfsKitPeerDown", &peer1, "firing", Duration::from_secs(60))
        .await;
    eprintln!(
        "IpfsKitPeerDown firing {:.1} s after the kill (for: 5 s)",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert!(
        alert["labels"].get("namespace").is_none(),
        "local mode has no namespace: {alert}"
    );
    assert_eq!(
        alert["annotations"]["summary"], "IPFS peer peer-1 of cluster alerting is down",
        "{alert}"
    );
    assert!(
        alert["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("docs/runbooks.md#ipfskitpeerdown")),
        "{alert}"
    );
    // Delivered to the webhook too, in Alertmanager's format, by the operator itself.
    let log = || local.supervisor_output();
    let minute = Duration::from_secs(60);
    let (_, delivered) = receiver
        .wait_for("IpfsKitPeerDown", "peer-1", "firing", minute, log)
        .await;
    for label in ["alertname", "severity", "cluster", "peer"] {
        assert_eq!(
            delivered["labels"][label], alert["labels"][label],
            "the same alert in Prometheus and at the webhook: {label}"
        );
    }
    assert_eq!(
        delivered["annotations"]["runbook_url"], alert["annotations"]["runbook_url"],
        "the same runbook"
    );
    let others = prometheus
        .alerts_named("IpfsKitPeerDown", &[("peer", "peer-0")])
        .await;
    assert!(others.is_empty(), "peer-0 is up: {others:?}");
    // Kept down: healing is off, so it still fires a while later.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let still = prometheus.alerts_named("IpfsKitPeerDown", &peer1).await;
    assert!(
        still.iter().any(|a| a["state"] == "firing"),
        "resolved without healing: {still:?}"
    );
    assert!(local.status().await.peers[1].kubo_pid.is_none());

    // Brought back by a restart through the dashboard: the alert resolves.
    let token = std::fs::read_to_string(local.cluster_dir().join("dashboard-token"))
        .expect("the dashboard token");
    let restart = format!("{dashboard}/api/dashboard/backends/alerting/peer-1/ipfs/restart");
    crate::support::restart_with_token(&restart, token.trim()).await;
    let back = std::time::Instant::now();
    prometheus
        .wait_alert_gone("IpfsKitPeerDown", &peer1, Duration::from_secs(60))
        .await;
    eprintln!(
        "IpfsKitPeerDown resolved {:.1} s after the restart request",
        back.elapsed().as_secs_f64()
    );
    assert_eq!(peers_up(&prometheus, "alerting").await, up("1"));
    receiver
        .wait_for("IpfsKitPeerDown", "peer-1", "resolved", minute, log)
        .await;
    local.stop_supervisor().await;
}

/// The metric families `/metrics` declares (`# TYPE name kind`), for the failure message.
async fn exported_families(dashboard: &str) -> Vec<String> {
    let text = http()
        .get(format!("{dashboard}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("/metrics body");
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every query of `dashboards/ipfs-kit.json`, with Grafana's variables replaced, returns data
/// from a Prometheus scraping `local up` (after a pin and a healed Kubo, so that pins and
/// healing actions exist). The error counters' queries end in `or on () vector(0)`: without an
/// error they have no series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_scraped_local_cluster() {
    let mut local = Local::new("graphs", 2).await;
    local.up_foreground();
    let before = local.wait_converged(2).await;
    pin_block(&before, b"a pin for the dashboard").await;
    let dashboard = local.dashboard_base().await;
    let prometheus = prometheus_scraping(&dashboard).await;
    // A healing action: a killed Kubo, restarted by the supervisor.
    let victim = before.peers[1].kubo_pid.expect("peer-1's Kubo runs");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9 peer-1's Kubo");
    wait_for(
        "peer-1's Kubo restarted",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let pid = local.try_status().await?.peers.get(1)?.kubo_pid?;
            (pid != victim).then_some(())
        },
    )
    .await;
    local.wait_converged(2).await;
    // Enough scrapes for rates over the window below.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let families = exported_families(&dashboard).await;
    let mut empty = Vec::new();
    let queries = dashboard_queries(&repository_dashboard());
    for query in &queries {
        let expr = substitute(&query.expr, "10s");
        let samples: Vec<Value> = prometheus
            .query(&expr)
            .await
            .unwrap_or_else(|e| panic!("{}: {expr}: {e}", query.origin));
        if samples.is_empty() {
            empty.push(format!("{}: {expr}", query.origin));
        }
    }
    assert!(
        empty.is_empty(),
        "{} of {} dashboard queries return no data from a scraped `local up`:\n  {}\n\
         families on /metrics: {families:?}",
        empty.len(),
        queries.len(),
        empty.join("\n  ")
    );
    local.stop_supervisor().await;
}

/// With `--prometheus-url`, a history range older than the recorded samples comes from
/// Prometheus: a supervisor whose history file was lost still answers `?since=10m` with the
/// samples Prometheus scraped from the one before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_recorded_samples_comes_from_prometheus() {
    let mut local = Local::new("longago", 1).await;
    local.up_foreground();
    local.wait_converged(1).await;
    let dashboard = local.dashboard_base().await;
    let prometheus = prometheus_scraping(&dashboard).await;
    wait_for(
        "Prometheus to hold 10 s of the peer's score",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let seen = prometheus
                .vector("count_over_time(ipfs_kit_peer_score{cluster=\"longago\"}[1m])")
                .await;
            let count = seen.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
            (count >= 10.0).then_some(())
        },
    )
    .await;

    // The supervisor stops and its history file is lost.
    local.stop_supervisor().await;
    let store = local.cluster_dir().join("history.redb");
    std::fs::remove_file(&store).expect("remove the history file");
    let restarted = k8s_openapi::jiff::Timestamp::now();
    local.up_foreground_with(&["--prometheus-url", &prometheus.base]);
    local.wait_converged(1).await;
    let base = local.dashboard_base().await;
    let get = |path: String| async move {
        let resp = http().get(&path).send().await.expect("GET history");
        let code = resp.status().as_u16();
        (code, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let before = |body: &Value| -> Vec<Value> {
        body["data"]["samples"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["time"]
                    .as_str()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .is_some_and(|t| t < restarted)
            })
            .cloned()
            .collect()
    };

    // Prometheus scraped the first supervisor for some 15 s: a step of 1 s finds its samples.
    let (code, cluster) = get(format!(
        "{base}/api/dashboard/history/longago?since=10m&step=1s"
    ))
    .await;
    assert_eq!(code, 200, "{cluster}");
    assert_eq!(cluster["data"]["source"], "prometheus", "{cluster}");
    let old = before(&cluster);
    assert!(
        !old.is_empty(),
        "samples from before the restart: {cluster}"
    );
    assert!(
        old.iter()
            .any(|s| s["state"] == "Healthy" && s["score"].as_i64().is_some_and(|v| v > 0)),
        "{old:?}"
    );
    let (code, peer) = get(format!(
        "{base}/api/dashboard/history/longago/peer-0?since=10m&step=2s"
    ))
    .await;
    assert_eq!(code, 200, "{peer}");
    assert_eq!(peer["data"]["source"], "prometheus", "{peer}");
    assert_eq!(peer["data"]["stepSeconds"], 2.0, "{peer}");
    let old = before(&peer);
    assert!(
        old.iter().any(|s| s["state"] == "Healthy"
            && s["repoSize"].as_i64().is_some_and(|v| v > 0)
            && s["pinsPinned"].as_i64().is_some()),
        "the peer's figures from Prometheus: {old:?}"
    );

    // Without `since` (or within what is recorded): the recorded samples, none from before.
    let (code, recent) = get(format!("{base}/api/dashboard/history/longago")).await;
    if code == 200 {
        assert_eq!(recent["data"]["source"], "recorded", "{recent}");
        assert!(before(&recent).is_empty(), "{recent}");
    } else {
        assert_eq!(code, 404, "no sample recorded yet: {recent}");
    }
}
