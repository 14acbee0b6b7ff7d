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

use serde_json::{Value, json};

use super::{ActionKind, ActionRequest, Dashboard, RequestRecord, RequestState, Snapshot, Token};

mod fixtures;

use fixtures::{
    FakeReview, NumberedLines, kube_snapshot, local_snapshot, recorded_history, solo_snapshot,
};

const TOKEN: &str = "wire-token-0123456789";

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/dashboard/testdata/wire.json")
}

fn calls_solo() -> Vec<Call> {
    let p = |s: &str| format!("/api/dashboard{s}");
    let n = Value::Null;
    vec![
        ("GET", p("/status"), None, n.clone()),
        ("GET", p("/metrics/realtime"), None, n.clone()),
        ("GET", p("/backends/ipfs/status"), None, n.clone()),
        ("GET", p("/backends/ipfs_cluster/status"), None, n.clone()),
        (
            "POST",
            p("/daemon/action"),
            None,
            json!({"daemon_name": "ipfs", "action": "status"}),
        ),
        (
            "POST",
            p("/cluster/action"),
            None,
            json!({"action": "status"}),
        ),
        ("POST", p("/backends/ipfs/restart"), Some(TOKEN), n.clone()),
        ("GET", p("/logs/ipfs_cluster?lines=1"), None, n.clone()),
    ]
}

/// Six samples of `demo`, 10 s apart from 2026-11-27T21:00:00Z, the score falling from 90 by 10.
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
    let mut body_seen = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
    let problems = schema_problems(method, &path, code, &body_seen);
    assert!(
        problems.is_empty(),
        "{method} {path} answered {code} off its schema in openapi.json:\n{}\n{body_seen:#}",
        problems.join("\n")
    );
    answer_time_masked(&mut body_seen);
    json!({
        "request": format!("{method} {path} token={}", token.unwrap_or("-")),
        "sent": body,
        "status": code,
        "contentType": content_type,
        "wwwAuthenticate": authenticate,
        "body": body_seen,
    })
}

/// How the answer of `method path` with `code` differs from what the OpenAPI document says of
/// it: fields of the wrong type or missing (JSON Schema), and fields it does not describe.
/// Answers of routes the document does not have must be errors (404, 405).
fn schema_problems(method: &str, path: &str, code: u16, body: &Value) -> Vec<String> {
    let schema = match super::openapi::answer_schema(method, path, code) {
        Ok(Some(schema)) => schema,
        Ok(None) => return Vec::new(),
        Err(e) if [404, 405].contains(&code) && body["success"] == false => {
            let error = super::openapi::answer_schema("GET", "/api/dashboard/status", 401);
            match error {
                Ok(Some(schema)) => schema,
                _ => return vec![format!("{e}; and no error schema")],
            }
        }
        Err(e) => return vec![e],
    };
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut problems: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    problems.extend(
        super::openapi::undeclared_fields(&schema, body)
            .into_iter()
            .map(|field| format!("{field}: not described")),
    );
    problems
}

/// The fields that hold the time of the answer (and the duration of a health check) differ on
/// every run: checked, then replaced by a placeholder.
fn answer_time_masked(body: &mut Value) {
    let Some(data) = body.get_mut("data").filter(|d| d.is_object()) else {
        return;
    };
    if let Some(at) = data.get("timestamp").and_then(Value::as_str) {
        let at: k8s_openapi::jiff::Timestamp = at.parse().expect("an RFC 3339 timestamp");
        let age = k8s_openapi::jiff::Timestamp::now().duration_since(at);
        // The status answers the time of its round, fixed in the snapshots here.
        if age.as_secs() < 300 {
            data["timestamp"] = json!("(the time of the answer)");
        }
    }
    if let Some(seconds) = data["metrics"]
        .get("check_duration")
        .and_then(Value::as_f64)
    {
        assert!((0.0..20.0).contains(&seconds), "{seconds}");
        data["metrics"]["check_duration"] = json!("(seconds)");
    }
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
        // The old toolkit's short names, with three peers: the status of all of them, a
        // change or a log refused with their full names.
        ("GET", p("/backends/ipfs/status"), None, n.clone()),
        ("GET", p("/backends/ipfs_cluster/status"), None, n.clone()),
        ("POST", p("/backends/ipfs-cluster/restart"), t, n.clone()),
        (
            "POST",
            p("/daemon/action"),
            None,
            json!({"daemon_name": "ipfs", "action": "status"}),
        ),
        (
            "POST",
            p("/daemon/action"),
            t,
            json!({"daemon_name": "ipfs", "action": "restart"}),
        ),
        ("GET", p("/logs/ipfs"), None, n.clone()),
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
        (
            "POST",
            p("/health/check"),
            t,
            json!({"backend_name": "ipfs_cluster"}),
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

/// The snapshot of the `round`th probe round after the first, ten seconds apart.
fn probed_again(mut snapshot: Snapshot, round: u32) -> Snapshot {
    let at = format!("2026-11-27T21:00:{:02}Z", 10 * round);
    let later: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time =
        serde_json::from_value(json!(at)).expect("time");
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
        let mut rounds = 0;
        while let Some(request) = actions.recv().await {
            let reason = if request.action == ActionKind::Probe {
                rounds += 1;
                publisher.publish(probed_again(local_snapshot(70), rounds));
                "probed every peer; health score 70"
            } else {
                "restarted"
            };
            actions.board.set(RequestRecord {
                request: request.clone(),
                state: RequestState::Done,
                reason: Some(reason.into()),
                updated_at: "2026-11-27T21:00:10Z".into(),
                status_version: None,
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

    let (solo, publisher, _solo_actions) = Dashboard::new(Token::new(TOKEN), false);
    let solo = serve(solo.with_logs(Arc::new(NumberedLines))).await;
    publisher.publish(solo_snapshot());
    for call in calls_solo() {
        recorded.push(record(&http, &solo, call).await);
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
