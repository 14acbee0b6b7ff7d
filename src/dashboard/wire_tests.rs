//! The dashboard's answers on the wire, recorded once and compared on every run: status codes,
//! the `WWW-Authenticate` and `Content-Type` headers, and every JSON body (compared as JSON
//! values, so key order does not matter). Clients (the embedded page, scripts written against the
//! old toolkit) read these bodies; a change here is a change of the API.
//!
//! Re-record after an intended change with `UPDATE_WIRE=1 cargo test --lib dashboard::wire_tests`
//! and review the diff of `testdata/wire.json`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::access::{AccessReview, AccessTarget, ReviewedUser};
use super::logs::{LogError, LogSource, LogTarget};
use super::{
    ActionKind, ActionRequest, ClusterEntry, Dashboard, PinEntry, RequestRecord, RequestState,
    Snapshot, Token,
};
use crate::api::{IpfsClusterStatus, IpfsPinStatus};

const TOKEN: &str = "wire-token-0123456789";

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/dashboard/testdata/wire.json")
}

fn status(score: i32, peers: &[&str]) -> IpfsClusterStatus {
    let peers: Vec<Value> = peers
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "name": name, "state": if i == 2 { "Degraded" } else { "Healthy" },
                "score": score - i as i32, "restarts": i, "swarmPeers": 2 + i,
                "peerId": format!("12D3KooW{name}"), "clusterPeerId": format!("12D3KooWc{name}"),
                "kuboVersion": "0.42.0", "clusterVersion": "1.1.6", "clusterPeersSeen": 3,
                "repoSize": 1234 * (i + 1), "bytesIn": 1000, "bytesOut": 500,
                "pinsQueued": 0, "pinsPinning": 1, "pinsError": i,
                "lastProbe": "2026-11-27T21:00:00Z",
                "lastError": if i == 2 { Value::from("swarm peers 0 < 1") } else { Value::Null },
            })
        })
        .collect();
    serde_json::from_value(json!({
        "phase": "Healthy", "healthScore": score, "readyReplicas": 3, "replicas": 3,
        "observedGeneration": 4,
        "conditions": [{"type": "Ready", "status": "True", "reason": "AllPeersReady",
            "message": "3/3 peers ready", "lastTransitionTime": "2026-11-27T20:00:00Z",
            "observedGeneration": 4}],
        "peers": peers,
        "healing": [{"time": "2026-11-27T20:30:00Z", "peer": "demo-2", "action": "SwarmConnect",
            "reason": "swarm peers 0 < 1", "result": "Succeeded"}],
        "alerts": [
            {"name": "IpfsKitPeerDown", "severity": "critical", "peer": peers[0]["name"],
                "state": "firing", "startsAt": "2026-11-27T20:40:00Z",
                "summary": format!("Peer {} is down", peers[0]["name"].as_str().unwrap_or_default()),
                "description": "its Kubo RPC and IPFS Cluster REST APIs do not both answer"},
            {"name": "IpfsKitClusterDegraded", "severity": "warning", "state": "resolved",
                "startsAt": "2026-11-27T20:10:00Z", "endsAt": "2026-11-27T20:25:00Z",
                "summary": "the cluster is degraded", "description": "health score 61"},
        ],
    }))
    .expect("cluster status")
}

fn local_snapshot(score: i32) -> Snapshot {
    Snapshot {
        clusters: vec![ClusterEntry {
            namespace: None,
            name: "demo".into(),
            replicas: 3,
            paused: false,
            status: status(score, &["demo-0", "demo-1", "demo-2"]),
            uid: None,
        }],
        pins: Vec::new(),
        updated_at: Some(format!("2026-11-27T21:00:{:02}Z", score % 60)),
    }
}

/// Six samples of `demo`, 10 s apart from 2026-11-27T21:00:00Z, the score falling from 90 by 10.
fn recorded_history() -> crate::history::History {
    let history = crate::history::History::in_memory();
    let start = 1_795_813_200_000; // 2026-11-27T21:00:00Z
    for i in 0..6 {
        let score = 90 - 10 * i;
        let mut status = status(score, &["demo-0", "demo-1", "demo-2"]);
        for p in &mut status.peers {
            p.pins_pinned = Some(4);
            p.pins_error = Some(i64::from(i / 3));
        }
        let t = start + i64::from(i) * 10_000;
        history.record("demo", Duration::from_secs(10), &status, t);
    }
    history
}

fn kube_snapshot() -> Snapshot {
    let pin_status: IpfsPinStatus = serde_json::from_value(json!({
        "phase": "Pinned", "pinned": 2, "allocated": 2, "pinnedSummary": "2/2",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Pinned",
            "message": "2/2", "lastTransitionTime": "2026-11-27T20:00:00Z"}],
        "peers": [{"peer": "store-0", "state": "Pinned"}],
    }))
    .expect("pin status");
    let pin = |namespace: &str, name: &str, cluster: &str| PinEntry {
        namespace: namespace.into(),
        name: name.into(),
        cluster: cluster.into(),
        cid: format!("bafy{name}"),
        status: pin_status.clone(),
    };
    Snapshot {
        clusters: vec![
            ClusterEntry {
                namespace: Some("prod".into()),
                name: "other".into(),
                replicas: 1,
                paused: true,
                status: IpfsClusterStatus::default(),
                uid: None,
            },
            ClusterEntry {
                namespace: Some("prod".into()),
                name: "store".into(),
                replicas: 2,
                paused: false,
                status: status(80, &["store-0", "store-1"]),
                uid: None,
            },
        ],
        pins: vec![
            pin("prod", "data", "store"),
            pin("prod", "more", "other"),
            pin("test", "elsewhere", "store"),
        ],
        updated_at: Some("2026-11-27T21:00:00Z".into()),
    }
}

/// Kubernetes identities by token: `kube-allowed` may do anything, `kube-denied` nothing,
/// `kube-broken` cannot be reviewed.
struct FakeReview;

impl AccessReview for FakeReview {
    fn authenticate(
        &self,
        token: String,
    ) -> BoxFuture<'static, Result<Option<ReviewedUser>, String>> {
        Box::pin(async move {
            let user = |name: &str| ReviewedUser {
                username: name.into(),
                uid: None,
                groups: Vec::new(),
                extra: Default::default(),
            };
            match token.as_str() {
                "kube-allowed" => Ok(Some(user("alice"))),
                "kube-denied" => Ok(Some(user("bob"))),
                "kube-broken" => Err("the API server is away".into()),
                _ => Ok(None),
            }
        })
    }

    fn permits(
        &self,
        user: ReviewedUser,
        _target: AccessTarget,
    ) -> BoxFuture<'static, Result<Result<(), String>, String>> {
        Box::pin(async move {
            if user.username == "alice" {
                Ok(Ok(()))
            } else {
                Ok(Err("RBAC says no".into()))
            }
        })
    }
}

struct NumberedLines;

impl LogSource for NumberedLines {
    fn tail(
        &self,
        target: LogTarget,
        lines: usize,
    ) -> BoxFuture<'static, Result<String, LogError>> {
        Box::pin(async move {
            match target.peer.as_str() {
                "demo-2" => Err(LogError::Unavailable("disk on fire".into())),
                "demo-1" => Err(LogError::NotFound("no log yet".into())),
                _ => Ok((1..=lines + 2)
                    .map(|i| format!("{} line {i}", target.peer))
                    .collect::<Vec<_>>()
                    .join("\n")),
            }
        })
    }
}

async fn serve(dashboard: Dashboard) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, super::router(dashboard)).await });
    base
}

/// One request: method, path, bearer token, body (`Value::Null` for none; a string is sent raw
/// as text/plain).
type Call = (&'static str, String, Option<&'static str>, Value);

async fn record(http: &reqwest::Client, base: &str, (method, path, token, body): Call) -> Value {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = http.request(m, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req = match &body {
        Value::Null => req,
        Value::String(raw) => req.header("content-type", "text/plain").body(raw.clone()),
        v => req.json(v),
    };
    let resp = req.send().await.expect("send");
    let code = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let authenticate = header("www-authenticate");
    let text = resp.text().await.expect("body");
    let body_seen = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    json!({
        "request": format!("{method} {path} token={}", token.unwrap_or("-")),
        "sent": body,
        "status": code,
        "contentType": content_type,
        "wwwAuthenticate": authenticate,
        "body": body_seen,
    })
}

/// The first `status` event of the SSE stream, its data parsed.
async fn first_event(http: &reqwest::Client, base: &str) -> Value {
    let mut resp = http
        .get(format!("{base}/api/dashboard/events"))
        .send()
        .await
        .expect("events");
    let chunk = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("an event in time")
        .expect("chunk")
        .expect("data");
    let text = String::from_utf8_lossy(&chunk).to_string();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .unwrap_or(Value::Null);
    json!({"event": text.lines().next(), "data": data})
}

fn calls_local() -> Vec<Call> {
    let p = |s: &str| format!("/api/dashboard{s}");
    let n = Value::Null;
    let t = Some(TOKEN);
    vec![
        ("GET", "/healthz".into(), None, n.clone()),
        ("GET", "/readyz".into(), None, n.clone()),
        ("GET", p("/status"), None, n.clone()),
        ("GET", p("/metrics/realtime"), None, n.clone()),
        (
            "GET",
            p("/backends/demo/demo-0/ipfs/status"),
            None,
            n.clone(),
        ),
        (
            "GET",
            p("/backends/demo/demo-2/cluster/status"),
            None,
            n.clone(),
        ),
        (
            "GET",
            p("/backends/demo/demo-2/kubo/status"),
            None,
            n.clone(),
        ),
        (
            "GET",
            p("/backends/demo/demo-2/kubo/bogus"),
            None,
            n.clone(),
        ),
        (
            "GET",
            p("/backends/demo/demo-9/ipfs/status"),
            None,
            n.clone(),
        ),
        ("GET", p("/history/demo"), None, n.clone()),
        ("GET", p("/history/demo/demo-0"), None, n.clone()),
        ("GET", p("/history/demo/demo-0?step=30s"), None, n.clone()),
        (
            "GET",
            p("/history/demo?since=2026-11-27T21:00:30Z"),
            None,
            n.clone(),
        ),
        ("GET", p("/history/demo?since=soon"), None, n.clone()),
        ("GET", p("/history/demo?step=1ms"), None, n.clone()),
        ("GET", p("/history/demo?limit=2"), None, n.clone()),
        ("GET", p("/history/nosuch"), None, n.clone()),
        ("GET", p("/logs/demo/demo-0/ipfs?lines=2"), None, n.clone()),
        ("GET", p("/logs/demo/demo-0/cluster"), None, n.clone()),
        ("GET", p("/logs/demo/demo-1/ipfs"), None, n.clone()),
        ("GET", p("/logs/demo/demo-2/ipfs"), None, n.clone()),
        ("GET", p("/logs/demo/demo-0/ipfs?lines=0"), None, n.clone()),
        ("GET", p("/logs/demo/demo-0/ipfs?lines=x"), None, n.clone()),
        ("GET", p("/logs/demo/demo-0/ipfs?file=y"), None, n.clone()),
        ("GET", p("/nope"), None, n.clone()),
        ("GET", "/nope".into(), None, n.clone()),
        ("GET", p("/daemon/action"), t, n.clone()),
        ("DELETE", "/metrics".into(), t, n.clone()),
        (
            "POST",
            p("/daemon/action"),
            None,
            json!({"daemon_name": "demo/demo-1/cluster", "action": "status", "force": 1}),
        ),
        (
            "POST",
            p("/daemon/action"),
            None,
            json!({"daemon_name": "demo/demo-1/cluster", "action": "restart"}),
        ),
        (
            "POST",
            p("/daemon/action"),
            Some("wrong-token-0123456789"),
            json!({"daemon_name": "demo/demo-1/cluster", "action": "restart"}),
        ),
        (
            "POST",
            p("/daemon/action"),
            t,
            json!({"daemon_name": "demo/demo-1/cluster", "action": "restart", "auto_heal": true}),
        ),
        (
            "POST",
            p("/daemon/action"),
            t,
            json!({"daemon_name": "demo/demo-1/ipfs", "action": "stop"}),
        ),
        (
            "POST",
            p("/daemon/action"),
            t,
            json!({"daemon_name": "demo/demo-1/ipfs", "action": "explode"}),
        ),
        (
            "POST",
            p("/daemon/action"),
            t,
            json!({"daemon_name": "demo/demo-1/ipfs", "action": "restart", "sudo": 1}),
        ),
        (
            "POST",
            p("/daemon/action"),
            t,
            json!({"daemon_name": "demo/demo-1/ipfs"}),
        ),
        ("POST", p("/daemon/action"), t, json!(["demo", "restart"])),
        ("POST", p("/daemon/action"), t, json!("{\"action\": 1}")),
        ("POST", p("/daemon/action"), t, n.clone()),
        (
            "POST",
            p("/cluster/action"),
            None,
            json!({"action": "status"}),
        ),
        (
            "POST",
            p("/cluster/action"),
            None,
            json!({"action": "peers"}),
        ),
        (
            "POST",
            p("/cluster/action"),
            None,
            json!({"action": "peers", "cluster": "nosuch"}),
        ),
        ("POST", p("/cluster/action"), t, json!({"action": "start"})),
        (
            "POST",
            p("/cluster/action"),
            t,
            json!({"action": "restart", "cluster": "demo", "force_restart": true}),
        ),
        (
            "POST",
            p("/backends/demo/demo-2/ipfs/restart"),
            None,
            n.clone(),
        ),
        (
            "POST",
            p("/backends/demo/demo-2/ipfs/restart"),
            t,
            n.clone(),
        ),
        (
            "POST",
            p("/backends/demo/demo-2/ipfs/bogus"),
            None,
            n.clone(),
        ),
        (
            "POST",
            p("/backends/demo/demo-9/ipfs/restart"),
            t,
            n.clone(),
        ),
        ("POST", p("/health/check"), None, json!({})),
        (
            "POST",
            p("/health/check"),
            t,
            json!({"backend_name": "demo/demo-9/ipfs"}),
        ),
        (
            "POST",
            p("/health/check"),
            t,
            json!({"backend_name": "demo/demo-1/ipfs", "force_check": true}),
        ),
        // Answered after the health checks: every request before them is done.
        ("GET", p("/requests/1"), None, n.clone()),
        ("GET", p("/requests/999"), None, n.clone()),
        ("GET", p("/requests/first"), None, n.clone()),
        ("GET", p("/history/demo"), None, n.clone()),
    ]
}

fn calls_kube() -> Vec<Call> {
    let p = |s: &str| format!("/api/dashboard{s}");
    let n = Value::Null;
    vec![
        ("GET", p("/status"), None, n.clone()),
        ("GET", p("/status"), Some("kube-allowed"), n.clone()),
        ("GET", p("/status"), Some("kube-denied"), n.clone()),
        ("GET", p("/status"), Some("kube-broken"), n.clone()),
        ("GET", p("/status"), Some("not-a-kube-token"), n.clone()),
        ("GET", "/metrics".into(), None, n.clone()),
        ("GET", p("/events"), None, n.clone()),
        (
            "GET",
            p("/backends/prod/store/store-1/ipfs/status"),
            Some("kube-allowed"),
            n.clone(),
        ),
        (
            "GET",
            p("/logs/prod/store/store-1/ipfs"),
            Some("kube-allowed"),
            n.clone(),
        ),
        (
            "POST",
            p("/cluster/action"),
            Some("kube-allowed"),
            json!({"action": "restart"}),
        ),
        (
            "POST",
            p("/cluster/action"),
            Some("kube-denied"),
            json!({"action": "restart", "cluster": "prod/store"}),
        ),
        (
            "POST",
            p("/cluster/action"),
            Some("kube-denied"),
            json!({"action": "status", "cluster": "prod/store"}),
        ),
        (
            "POST",
            p("/backends/prod/store/store-0/cluster/restart"),
            Some("kube-denied"),
            n.clone(),
        ),
        (
            "POST",
            p("/backends/prod/store/store-0/cluster/restart"),
            Some("kube-allowed"),
            n.clone(),
        ),
        (
            "POST",
            p("/backends/prod/store/store-0/cluster/restart"),
            Some("kube-broken"),
            n.clone(),
        ),
    ]
}

/// The snapshot of a probe round ten seconds after the first.
fn probed_again(mut snapshot: Snapshot) -> Snapshot {
    let later: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(json!("2026-11-27T21:00:10Z")).expect("time");
    for cluster in &mut snapshot.clusters {
        for peer in &mut cluster.status.peers {
            peer.last_probe = Some(later.clone());
        }
    }
    snapshot
}

/// Carries out what the reconciler would: records each request, answers a probe request with
/// a fresh round, and tells the board it is done (at a fixed time).
fn reconciler(
    mut actions: super::Requests,
    publisher: super::Publisher,
    seen: Arc<Mutex<Vec<ActionRequest>>>,
) {
    tokio::spawn(async move {
        while let Some(request) = actions.recv().await {
            let reason = if request.action == ActionKind::Probe {
                publisher.publish(probed_again(local_snapshot(70)));
                "probed every peer; health score 70"
            } else {
                "restarted"
            };
            actions.board.set(RequestRecord {
                request: request.clone(),
                state: RequestState::Done,
                reason: Some(reason.into()),
                updated_at: "2026-11-27T21:00:10Z".into(),
            });
            if let Ok(mut seen) = seen.lock() {
                seen.push(request);
            }
        }
    });
}

async fn answers() -> Value {
    crate::tls::ensure_crypto_provider();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut recorded = Vec::new();

    let (local, publisher, actions) = Dashboard::new(Token::new(TOKEN), false);
    let local = local.with_history(super::HistorySource::Recorded(recorded_history()));
    let local = serve(local.with_logs(Arc::new(NumberedLines))).await;
    recorded.push(record(&http, &local, ("GET", "/readyz".into(), None, Value::Null)).await);
    publisher.publish(local_snapshot(90));
    let seen = Arc::new(Mutex::new(Vec::new()));
    recorded.push(first_event(&http, &local).await);
    reconciler(actions, publisher, seen.clone());
    for call in calls_local() {
        recorded.push(record(&http, &local, call).await);
    }

    let (kube, publisher, _actions) = Dashboard::new(None, true);
    let kube = serve(kube.with_access_review(Arc::new(FakeReview))).await;
    publisher.publish(kube_snapshot());
    for call in calls_kube() {
        recorded.push(record(&http, &kube, call).await);
    }

    let (closed, publisher, _actions) = Dashboard::new(None, false);
    let closed = serve(closed).await;
    publisher.publish(local_snapshot(90));
    let restart = json!({"action": "restart"});
    let call = (
        "POST",
        "/api/dashboard/cluster/action".into(),
        Some(TOKEN),
        restart,
    );
    recorded.push(record(&http, &closed, call).await);

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    json!({"answers": recorded, "requests": seen})
}

#[tokio::test]
async fn the_answers_on_the_wire_are_the_recorded_ones() {
    let answers = answers().await;
    let path = golden_path();
    if std::env::var_os("UPDATE_WIRE").is_some() {
        let text = serde_json::to_string_pretty(&answers).expect("json") + "\n";
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write the recording");
        return;
    }
    let text = std::fs::read_to_string(&path).expect("read testdata/wire.json");
    let recorded: Value = serde_json::from_str(&text).expect("recording is JSON");
    let (now, then) = (&answers["answers"], &recorded["answers"]);
    let count = now.as_array().map(Vec::len).unwrap_or(0);
    for i in 0..count.max(then.as_array().map(Vec::len).unwrap_or(0)) {
        assert_eq!(
            now[i], then[i],
            "answer {i} differs from the recording (UPDATE_WIRE=1 re-records)"
        );
    }
    assert_eq!(answers["requests"], recorded["requests"]);
}
