//! The dashboard over real HTTP on loopback, fed with published snapshots.

use std::time::Duration;

use ipfs_kit_operator::api::{IpfsClusterStatus, PeerStatus};
use ipfs_kit_operator::dashboard::{
    ActionKind, ActionRequest, ClusterEntry, Daemon, Dashboard, Publisher, Snapshot, Token, router,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const TOKEN: &str = "test-token-0123456789";

struct Server {
    base: String,
    publisher: Publisher,
    actions: mpsc::Receiver<ActionRequest>,
    http: reqwest::Client,
}

async fn serve(token: Option<&str>) -> Server {
    let (dashboard, publisher, actions) = Dashboard::new(token.and_then(Token::new), false);
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
        actions,
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
        }],
        host: None,
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

    let metrics = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status().as_u16(), 200);
    let text = metrics.text().await.expect("text");
    assert!(
        text.contains("ipfs_kit_peer_score{cluster=\"demo\",peer=\"demo-1\"} 95"),
        "{text}"
    );

    // Reads never turn into actions.
    assert!(s.actions.try_recv().is_err());
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
    assert_eq!(body["data"]["watch"], "/api/dashboard/events");
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
            json!({"daemon_name": "demo/demo-0/ipfs", "action": "stop", "force": true, "auto_heal": false}),
        )
        .await;
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        s.actions.try_recv().expect("stop request").action,
        ActionKind::Stop
    );

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
            json!({"action": "stop"}),
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
async fn history_and_events_follow_published_rounds() {
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

    let (code, body) = s.get("/api/dashboard/history/demo/demo-2").await;
    assert_eq!(code, 200, "{body}");
    let scores: Vec<i64> = body["data"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|x| x["score"].as_i64())
        .collect();
    assert_eq!(scores, [90, 55]);
}
