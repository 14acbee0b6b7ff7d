//! The dashboard over real HTTP on loopback, fed with published snapshots.

#[path = "../support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use ipfs_kit_operator::api::{IpfsClusterStatus, PeerStatus};
use ipfs_kit_operator::dashboard::clusters::{Patched, SpecError, SpecStore, StoredSpec, merged};
use ipfs_kit_operator::dashboard::logs::LogTarget;
use ipfs_kit_operator::dashboard::{
    ActionKind, ActionRequest, ClusterEntry, Daemon, Dashboard, HistorySource, LogError, LogSource,
    Publisher, Snapshot, Token, router,
};
use ipfs_kit_operator::history::{History, Latest, sampler};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const TOKEN: &str = "test-token-0123456789";

struct Server {
    base: String,
    publisher: Publisher,
    actions: mpsc::Receiver<ActionRequest>,
    http: reqwest::Client,
}

/// A history holding one sample of the first cluster of `snap` (and its peers).
fn recorded_once(snap: &Snapshot) -> HistorySource {
    let history = History::in_memory();
    history.record(
        &snap.clusters[0].name,
        Duration::from_secs(10),
        &snap.clusters[0].status,
        ipfs_kit_operator::history::now_millis(),
    );
    HistorySource::Recorded(history)
}

async fn serve(token: Option<&str>) -> Server {
    serve_with(token, |d| d).await
}

async fn serve_with(token: Option<&str>, setup: impl FnOnce(Dashboard) -> Dashboard) -> Server {
    let (dashboard, publisher, actions) = Dashboard::new(token.and_then(Token::new), false);
    let dashboard = setup(dashboard);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router(dashboard)).await });
    ipfs_kit_operator::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    Server {
        base,
        publisher,
        actions: actions.receiver,
        http,
    }
}

fn peer(name: &str, score: i32) -> PeerStatus {
    serde_json::from_value(json!({
        "name": name, "state": "Healthy", "score": score, "restarts": 0, "swarmPeers": 2,
        "peerId": format!("12D3KooW{name}"), "kuboVersion": "0.42.0", "clusterVersion": "1.1.6",
        "clusterPeersSeen": 3, "repoSize": 1234
    }))
    .expect("peer status")
}

fn snapshot(score: i32) -> Snapshot {
    let status: IpfsClusterStatus = serde_json::from_value(json!({
        "phase": "Healthy", "healthScore": score, "readyReplicas": 3,
        "peers": [peer("demo-0", score), peer("demo-1", score), peer("demo-2", score)]
    }))
    .expect("cluster status");
    Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: "demo".into(),
            replicas: 3,
            paused: false,
            status,
            uid: None,
            resource_version: None,
            processes: Vec::new(),
        }],
        pins: Vec::new(),
        updated_at: Some(format!("2026-11-27T21:00:{:02}Z", score % 60)),
    }
}

impl Server {
    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn reads_come_from_the_published_status_in_the_envelope() {
    let mut s = serve(Some(TOKEN)).await;
    let ready = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(
        ready.status().as_u16(),
        503,
        "not ready before the first status"
    );
    s.publisher.publish(snapshot(95));
    let ready = s
        .http
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);

    let (code, body) = s.get("/api/dashboard/status").await;
    assert_eq!(code, 200);
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["overall"]["score"], 95);
    assert_eq!(body["data"]["clusters"][0]["cluster"], "demo");
    assert_eq!(
        body["data"]["clusters"][0]["peers"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    let (code, body) = s
        .get("/api/dashboard/backends/demo/demo-1/ipfs/status")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["peerId"], "12D3KooWdemo-1");
    assert_eq!(body["data"]["swarmPeers"], 2);

    let (code, body) = s.get("/api/dashboard/metrics/realtime").await;
    assert_eq!(code, 200);
    assert_eq!(body["data"]["peers"][2]["repoSize"], 1234);

    // Reads never turn into actions.
    assert!(s.actions.try_recv().is_err());
}

/// A dashboard's `/metrics` has its own requests by route template, method and code, and no
/// cluster or peer series (the reconciler exports those, once).
#[tokio::test]
async fn the_dashboard_counts_its_requests_by_route_template_and_exports_no_peer_series() {
    // A recorded sample of `demo`, so that its peer's history answers 200.
    let snap = snapshot(95);
    let source = recorded_once(&snap);
    let s = serve_with(Some(TOKEN), |d| d.with_history(source)).await;
    s.publisher.publish(snap);
    for path in [
        "/api/dashboard/status",
        "/api/dashboard/status",
        "/api/dashboard/history/demo/demo-1",
        "/api/dashboard/history/nowhere",
        "/no/such/page",
    ] {
        let _ = s.get(path).await;
    }
    let (code, _) = s
        .post(
            "/api/dashboard/health/check",
            Some("wrong-token-0123456789"),
            json!({}),
        )
        .await;
    assert_eq!(code, 401);
    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    let content_type = metrics.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = metrics.text().await.expect("text");
    for line in [
        r#"ipfs_kit_dashboard_requests_total{route="/api/dashboard/status",method="GET",code="200"} 2"#,
        r#"ipfs_kit_dashboard_requests_total{route="/api/dashboard/history/{*name}",method="GET",code="200"} 1"#,
        r#"ipfs_kit_dashboard_requests_total{route="/api/dashboard/history/{*name}",method="GET",code="404"} 1"#,
        r#"ipfs_kit_dashboard_requests_total{route="unmatched",method="GET",code="404"} 1"#,
        r#"ipfs_kit_dashboard_requests_total{route="/api/dashboard/health/check",method="POST",code="401"} 1"#,
        r#"ipfs_kit_dashboard_request_duration_seconds_count{route="/api/dashboard/status"} 2"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    assert!(text.contains("ipfs_kit_build_info{version="), "{text}");
    for series in [
        "ipfs_kit_peer_",
        "ipfs_kit_cluster_",
        "ipfs_kit_reconcile",
        "ipfs_kit_leader",
    ] {
        assert!(
            !text.contains(series),
            "a dashboard exports no {series}*:\n{text}"
        );
    }
    assert!(
        !text.contains("/no/such/page"),
        "a path is never a label:\n{text}"
    );
}

#[tokio::test]
async fn unknown_names_are_404_with_a_reason() {
    let s = serve(Some(TOKEN)).await;
    s.publisher.publish(snapshot(90));
    for path in [
        "/api/dashboard/backends/demo/demo-9/ipfs/status",
        "/api/dashboard/backends/nope/nope-0/ipfs/status",
        "/api/dashboard/backends/demo/demo-0/lotus/status",
        "/api/dashboard/backends/demo/..%2F..%2Fetc/ipfs/status",
        "/api/dashboard/history/unknown",
    ] {
        let (code, body) = s.get(path).await;
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(body["success"], false);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn mutations_need_the_token_and_become_requests() {
    let mut s = serve(Some(TOKEN)).await;
    s.publisher.publish(snapshot(90));
    let (code, _) = s
        .post(
            "/api/dashboard/backends/demo/demo-1/cluster/restart",
            None,
            json!({}),
        )
        .await;
    assert_eq!(code, 401);
    let (code, _) = s
        .post(
            "/api/dashboard/backends/demo/demo-1/cluster/restart",
            Some("wrong-token-0123456789"),
            json!({}),
        )
        .await;
    assert_eq!(code, 401);
    assert!(
        s.actions.try_recv().is_err(),
        "a refused request must not reach the reconciler"
    );

    let (code, body) = s
        .post(
            "/api/dashboard/backends/demo/demo-1/cluster/restart",
            Some(TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let id = body["data"]["requested"]["id"].as_u64().expect("id");
    assert_eq!(
        body["data"]["watch"],
        json!(format!("/api/dashboard/requests/{id}"))
    );
    let request = s
        .actions
        .try_recv()
        .expect("request sent to the reconciler");
    assert_eq!(request.action, ActionKind::Restart);
    assert_eq!(request.cluster, "demo");
    assert_eq!(request.peer.as_deref(), Some("demo-1"));
    assert_eq!(request.daemon, Some(Daemon::Cluster));

    // The old toolkit's clients send extra flags: accepted.
    let (code, body) = s
        .post(
            "/api/dashboard/daemon/action",
            Some(TOKEN),
            json!({"daemon_name": "demo/demo-0/ipfs", "action": "restart", "force": true, "auto_heal": false, "force_restart": true}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        s.actions.try_recv().expect("restart request").action,
        ActionKind::Restart
    );
    // start and stop are refused with what to do instead, and never passed on.
    for action in ["start", "stop"] {
        let (code, body) = s
            .post(
                "/api/dashboard/daemon/action",
                Some(TOKEN),
                json!({"daemon_name": "demo/demo-0/ipfs", "action": action}),
            )
            .await;
        assert_eq!(code, 422, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("spec.paused"),
            "{body}"
        );
    }
    assert!(s.actions.try_recv().is_err());

    let (code, body) = s
        .post(
            "/api/dashboard/cluster/action",
            Some(TOKEN),
            json!({"action": "restart"}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    let request = s.actions.try_recv().expect("cluster restart");
    assert_eq!((request.peer, request.daemon), (None, None));
}

#[tokio::test]
async fn without_a_configured_token_every_mutation_is_refused() {
    let mut s = serve(None).await;
    s.publisher.publish(snapshot(90));
    let (code, body) = s
        .post(
            "/api/dashboard/cluster/action",
            Some(TOKEN),
            json!({"action": "restart"}),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("--token-file")
    );
    assert!(s.actions.try_recv().is_err());
    // Reads stay open by default.
    let (code, _) = s.get("/api/dashboard/status").await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn bad_bodies_are_refused_with_a_reason() {
    let s = serve(Some(TOKEN)).await;
    s.publisher.publish(snapshot(90));
    let (code, body) = s
        .post(
            "/api/dashboard/daemon/action",
            Some(TOKEN),
            json!({"daemon_name": "demo/demo-0/ipfs", "action": "explode"}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("explode")
    );
    let (code, body) = s
        .post(
            "/api/dashboard/daemon/action",
            Some(TOKEN),
            json!({"daemon_name": "demo/demo-0/ipfs", "action": "stop", "sudo": true}),
        )
        .await;
    assert_eq!(code, 422, "unknown field: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("sudo"),
        "{body}"
    );
    let big = "x".repeat(64 * 1024);
    let (code, _) = s
        .post(
            "/api/dashboard/daemon/action",
            Some(TOKEN),
            json!({"daemon_name": big, "action": "stop"}),
        )
        .await;
    assert_eq!(code, 413);
}

#[tokio::test]
async fn events_follow_published_rounds() {
    let s = serve(Some(TOKEN)).await;
    s.publisher.publish(snapshot(90));
    let mut events = s
        .http
        .get(format!("{}/api/dashboard/events", s.base))
        .send()
        .await
        .expect("events");
    assert_eq!(events.status().as_u16(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), events.chunk()).await;
    let first =
        String::from_utf8_lossy(&first.expect("first event").expect("chunk").expect("data"))
            .to_string();
    assert!(
        first.contains("event: status") && first.contains("\"healthScore\":90"),
        "{first}"
    );

    s.publisher.publish(snapshot(55));
    let next = tokio::time::timeout(Duration::from_secs(5), events.chunk()).await;
    let next = String::from_utf8_lossy(&next.expect("next event").expect("chunk").expect("data"))
        .to_string();
    assert!(next.contains("\"healthScore\":55"), "{next}");
}

/// The scores of the samples of an answer of `/history/...`.
fn scores(body: &Value) -> Vec<i64> {
    body["data"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|x| x["score"].as_i64())
        .collect()
}

#[tokio::test]
async fn history_is_sampled_on_the_probe_interval_not_per_published_round() {
    let history = History::in_memory();
    let latest = Latest::default();
    let sampler = tokio::spawn(sampler::run(history.clone(), latest.clone()));
    let source = HistorySource::Recorded(history.clone());
    let s = serve_with(Some(TOKEN), |d| d.with_history(source)).await;
    let interval = Duration::from_millis(250);
    // 80 rounds in 2 s (watch events, requests, exits): the reconciler publishes each, and hands
    // its status to the sampler; 90 for the first second, 55 for the second.
    let started = std::time::Instant::now();
    for round in 0..80 {
        let snap = snapshot(if round < 40 { 90 } else { 55 });
        latest.observe("demo", interval, &snap.clusters[0].status);
        s.publisher.publish(snap);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sampler.abort();
    let took = started.elapsed();
    let ticks = (took.as_millis() / interval.as_millis()) as usize;

    let (code, body) = s.get("/api/dashboard/history/demo/demo-2").await;
    assert_eq!(code, 200, "{body}");
    let got = scores(&body);
    assert!(
        (ticks..=ticks + 1).contains(&got.len()),
        "one sample per 250 ms over {ticks} intervals, not one per round: {got:?}"
    );
    assert_eq!((got[0], got[got.len() - 1]), (90, 55), "{got:?}");
    assert_eq!(body["data"]["intervalSeconds"], 0.25);
    assert_eq!(body["data"]["samples"][0]["repoSize"], 1234);
    assert_eq!(body["data"]["samples"][0]["state"], "Healthy");

    // Downsampled to 1 s buckets: the mean score of each bucket, at most one bucket per second
    // the rounds took (2 s, longer on a busy machine) plus the one they started in.
    let (code, body) = s.get("/api/dashboard/history/demo?step=1s").await;
    assert_eq!(code, 200, "{body}");
    let buckets = scores(&body);
    let most = took.as_secs_f64().ceil() as usize + 1;
    assert!(
        (2..=most).contains(&buckets.len()) && buckets.len() < got.len(),
        "{} buckets for {took:?}: {body}",
        buckets.len()
    );
    assert!(buckets.iter().all(|b| (55..=90).contains(b)), "{buckets:?}");
    assert_eq!(body["data"]["stepSeconds"], 1.0);
    // Only the last second.
    let (_, recent) = s.get("/api/dashboard/history/demo?since=1s").await;
    assert!(scores(&recent).len() < got.len(), "{recent}");
    assert!(recent["data"]["since"].is_string(), "{recent}");
    // A bad parameter is named.
    let (code, body) = s.get("/api/dashboard/history/demo?step=fast").await;
    assert_eq!(code, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("step"), "{message}");
}

#[tokio::test]
async fn the_bad_input_table_is_refused_with_reasons_and_nothing_is_requested() {
    let mut s = serve_with(Some(TOKEN), |d| d.with_logs(Arc::new(Lines::default()))).await;
    s.publisher.publish(snapshot(90));
    let table = support::bad_requests::table("demo", "demo-0");
    assert!(table.len() >= 30, "{} requests", table.len());
    let failures = support::bad_requests::check_all(&s.base, TOKEN, &table).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Not one of them reached the reconciler.
    assert!(
        matches!(
            s.actions.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty)
        ),
        "a refused request was passed on"
    );
}

/// A log source that answers numbered lines and remembers what it was asked for.
#[derive(Default)]
struct Lines {
    asked: Mutex<Vec<(LogTarget, usize)>>,
}

impl LogSource for Lines {
    fn tail(
        &self,
        target: LogTarget,
        lines: usize,
    ) -> BoxFuture<'static, Result<String, LogError>> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.push((target.clone(), lines));
        }
        Box::pin(async move {
            if target.peer == "demo-2" {
                return Err(LogError::Unavailable("disk on fire".into()));
            }
            // More lines than asked for: the route keeps the last `lines`.
            Ok((1..=lines + 5)
                .map(|i| format!("{} line {i}", target.peer))
                .collect::<Vec<_>>()
                .join("\n"))
        })
    }
}

#[tokio::test]
async fn logs_are_read_only_for_backends_in_status_and_bounded() {
    let source = Arc::new(Lines::default());
    let for_dashboard: Arc<dyn LogSource> = source.clone();
    let s = serve_with(Some(TOKEN), move |d| d.with_logs(for_dashboard)).await;
    s.publisher.publish(snapshot(90));

    let (code, body) = s
        .get("/api/dashboard/logs/demo/demo-1/cluster?lines=3")
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["data"]["lines"],
        json!(["demo-1 line 6", "demo-1 line 7", "demo-1 line 8"])
    );
    assert_eq!(body["data"]["daemon"], "cluster");
    let (code, body) = s.get("/api/dashboard/logs/demo/demo-0/ipfs").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["data"]["count"], 100, "the default is 100 lines");
    let (code, body) = s.get("/api/dashboard/logs/demo/demo-2/ipfs").await;
    assert_eq!(code, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("disk on fire")
    );

    for bad in [
        "/api/dashboard/logs/demo/demo-9/ipfs",
        "/api/dashboard/logs/demo/..%2F..%2Fetc%2Fpasswd/ipfs",
        "/api/dashboard/logs/demo/demo-0/ipfs?lines=2001",
    ] {
        let (code, _) = s.get(bad).await;
        assert!((400..500).contains(&code), "{bad}: {code}");
    }
    let asked = source.asked.lock().expect("asked").clone();
    let peers: Vec<(&str, Daemon, usize)> = asked
        .iter()
        .map(|(t, n)| (t.peer.as_str(), t.daemon, *n))
        .collect();
    assert_eq!(
        peers,
        [
            ("demo-1", Daemon::Cluster, 3),
            ("demo-0", Daemon::Ipfs, 100),
            ("demo-2", Daemon::Ipfs, 100)
        ],
        "only names found in status reach the log source"
    );

    // A dashboard without a log source says so.
    let plain = serve(Some(TOKEN)).await;
    plain.publisher.publish(snapshot(90));
    let (code, body) = plain.get("/api/dashboard/logs/demo/demo-0/ipfs").await;
    assert_eq!(code, 501, "{body}");
}

fn with_bandwidth(score: i32, bytes_in: i64, bytes_out: i64) -> Snapshot {
    let mut s = snapshot(score);
    for p in &mut s.clusters[0].status.peers {
        p.bytes_in = Some(bytes_in);
        p.bytes_out = Some(bytes_out);
    }
    s
}

#[tokio::test]
async fn realtime_serves_sampled_host_figures_and_bandwidth_rates() {
    let s = serve(Some(TOKEN)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    tokio::spawn(
        s.publisher
            .host_sampler(dir.path())
            .run(Duration::from_millis(100)),
    );
    s.publisher.publish(with_bandwidth(90, 1_000, 500));
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.publisher.publish(with_bandwidth(90, 101_000, 50_500));

    let (code, body) = s.get("/api/dashboard/metrics/realtime").await;
    assert_eq!(code, 200, "{body}");
    let host = &body["data"]["host"];
    assert!(host["memoryTotalBytes"].as_u64().unwrap_or(0) > 0, "{host}");
    assert!(host["diskTotalBytes"].as_u64().unwrap_or(0) > 0, "{host}");
    assert_eq!(host["diskPath"], json!(dir.path().display().to_string()));
    let cpu = host["cpuPercent"]
        .as_f64()
        .expect("a CPU figure after two samples");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    assert_eq!(host["loadAverage"].as_array().map(Vec::len), Some(3));
    let bw = &body["data"]["peers"][0]["bandwidth"];
    assert_eq!(bw["totalIn"], 101_000);
    // 100 000 bytes in about half a second (the machine may be slow: up to 5 s).
    let rate_in = bw["rateIn"].as_f64().expect("rateIn");
    let rate_out = bw["rateOut"].as_f64().expect("rateOut");
    assert!((20_000.0..=200_000.0).contains(&rate_in), "{rate_in}");
    assert!(
        (rate_in / rate_out - 2.0).abs() < 0.01,
        "{rate_in} / {rate_out}"
    );

    // A restarted daemon counts from zero again: no rate until the next round.
    s.publisher.publish(with_bandwidth(90, 10, 10));
    let (_, body) = s.get("/api/dashboard/metrics/realtime").await;
    assert_eq!(body["data"]["peers"][0]["bandwidth"]["rateIn"], Value::Null);
}

/// Specs kept in memory, changed as the runtimes change them (checked, merged, validated).
#[derive(Default)]
struct MemorySpecs(Mutex<Option<StoredSpec>>);

impl SpecStore for MemorySpecs {
    fn read(&self, _: &ClusterEntry) -> BoxFuture<'static, Result<StoredSpec, SpecError>> {
        let now = self.0.lock().expect("lock").clone().unwrap_or(StoredSpec {
            spec: Default::default(),
            generation: 1,
        });
        Box::pin(async move { Ok(now) })
    }

    fn patch(
        &self,
        cluster: &ClusterEntry,
        patch: serde_json::Map<String, Value>,
        _: Option<i64>,
    ) -> BoxFuture<'static, Result<Patched, SpecError>> {
        let read = self.read(cluster);
        let result = futures::executor::block_on(read).and_then(|now| {
            let (spec, changed) = merged(&now.spec, &patch)?;
            let generation = now.generation + i64::from(!changed.is_empty());
            let stored = StoredSpec { spec, generation };
            *self.0.lock().expect("lock") = Some(stored.clone());
            Ok(Patched { stored, changed })
        });
        Box::pin(async move { result })
    }

    fn applied_by(&self) -> &'static str {
        "memory"
    }
}

#[tokio::test]
async fn openapi_describes_every_route_and_every_described_route_exists() {
    // Every JSON answer is also checked against its schema in the document.
    // One recorded sample of `demo`, so that its history answers.
    let snap = snapshot(90);
    let source = recorded_once(&snap);
    let s = serve_with(Some(TOKEN), |d| {
        d.with_logs(Arc::new(Lines::default()))
            .with_history(source)
            .with_specs(Arc::new(MemorySpecs::default()))
    })
    .await;
    s.publisher.publish(snap);
    let (code, doc) = s.get("/openapi.json").await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    for route in [
        "/api/dashboard/status",
        "/api/dashboard/metrics/realtime",
        "/api/dashboard/backends/{backend}/status",
        "/api/dashboard/backends/{backend}/restart",
        "/api/dashboard/logs/{backend}",
        "/api/dashboard/history/{name}",
        "/api/dashboard/events",
        "/api/dashboard/daemon/action",
        "/api/dashboard/cluster/action",
        "/api/dashboard/health/check",
        "/api/dashboard/clusters/{cluster}/spec",
        "/api/dashboard/clusters/{cluster}/pins",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(route), "{route} is not described");
    }
    let http = &s.http;
    for (path, methods) in paths {
        let url = format!(
            "{}{}",
            s.base,
            path.replace("{backend}", "demo/demo-0/ipfs")
                .replace("{name}", "demo")
                .replace("{cluster}", "demo")
                // The restart above (paths in order) was request 1.
                .replace("{id}", "1")
                .replace("{asset}", "app.js")
        );
        for method in methods.as_object().expect("methods").keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = if path.ends_with("/daemon/action") {
                json!({"daemon_name": "demo/demo-0/ipfs", "action": "status"})
            } else if path.ends_with("/cluster/action") {
                json!({"action": "status"})
            } else {
                json!({})
            };
            let mut req = http.request(m.clone(), &url).bearer_auth(TOKEN);
            if m == reqwest::Method::POST || m == reqwest::Method::PATCH {
                req = req.json(&body);
            }
            if path.ends_with("/health/check") {
                // It waits for a probe round that nobody runs here: the route exists if it
                // accepted the request (the reconciler side got it).
                let resp = tokio::time::timeout(Duration::from_millis(500), req.send()).await;
                assert!(
                    resp.is_err(),
                    "{method} {path} answered without a probe round"
                );
                continue;
            }
            let resp = if path.ends_with("/events") {
                let r = req.send().await.expect("send");
                (r.status().as_u16(), Value::Null)
            } else {
                let r = req.send().await.expect("send");
                let code = r.status().as_u16();
                (code, r.json().await.unwrap_or(Value::Null))
            };
            assert!(
                matches!(resp.0, 200 | 202),
                "{method} {path} answered {} {}",
                resp.0,
                resp.1
            );
            if !resp.1.is_null() {
                let at = url.trim_start_matches(&s.base);
                support::openapi::check(&method.to_uppercase(), at, resp.0, &resp.1);
            }
        }
    }
}
