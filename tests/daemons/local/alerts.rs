//! Alerts without Prometheus, with real daemons: `local up --alert-webhook` posts
//! `IpfsKitPeerDown` to a receiver in Alertmanager's webhook format when a Kubo stays down, the
//! dashboard lists it (with the healing steps the engine took or declined), and when the daemon
//! is back the receiver gets it resolved.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{Local, http};
use crate::support::process::log_tail;
use crate::support::{restart_with_token, wait_for};

/// A webhook receiver on a free loopback port: every POST body, with its headers.
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let store = got.clone();
        let app = axum::Router::new().route(
            "/hooks/s3cr3t-path",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    store.lock().expect("lock").push((headers, value));
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            base: format!("http://{addr}"),
            got,
        }
    }

    /// The alerts received so far, each with the notification it came in.
    fn alerts(&self) -> Vec<(Value, Value)> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(_, n)| {
                n["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (n.clone(), a))
            })
            .collect()
    }

    /// Waits for an alert named `name` about `peer` in state `status`.
    async fn wait_for(&self, local: &Local, name: &str, status: &str) -> (Value, Value) {
        let log = local.supervisor_log.clone();
        let found = tokio::time::timeout(
            Duration::from_secs(60),
            wait_for(
                &format!("{name} {status} at the receiver"),
                Duration::from_secs(60),
                Duration::from_millis(200),
                || async {
                    self.alerts().into_iter().find(|(_, a)| {
                        a["labels"]["alertname"] == name
                            && a["labels"]["peer"] == "peer-0"
                            && a["status"] == status
                    })
                },
            ),
        )
        .await;
        found.unwrap_or_else(|_| {
            panic!(
                "no {name} {status}; received {:?}\nsupervisor:\n{}",
                self.alerts(),
                log_tail(&log, 60)
            )
        })
    }
}

/// The in-process dashboard's base URL, from the supervisor's log.
async fn dashboard_base(local: &Local) -> String {
    wait_for(
        "the dashboard address in the supervisor's log",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let log = local.supervisor_output();
            let at = log.find("dashboard on http://")? + "dashboard on ".len();
            let end = log[at..].find(char::is_whitespace)?;
            Some(log[at..at + end].trim_end_matches('/').to_string())
        },
    )
    .await
}

/// The dashboard's `alerts` once one satisfies `check`.
async fn dashboard_alert(base: &str, what: &str, check: impl Fn(&Value) -> bool) -> Vec<Value> {
    let http = http();
    wait_for(
        what,
        Duration::from_secs(30),
        Duration::from_millis(300),
        || async {
            let body: Value = http
                .get(format!("{base}/api/dashboard/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let alerts = body["data"]["alerts"].as_array()?.clone();
            alerts.iter().any(&check).then_some(alerts)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubo_kept_down_fires_peer_down_at_the_webhook_and_its_return_resolves_it() {
    let receiver = Receiver::start().await;
    let mut local = Local::new("alerting", 1).await;
    // autoHeal off: the killed Kubo stays down until asked for.
    local.write_spec_with(1, "    autoHeal: false\n");
    // Credentials and a token-like path in the URL: sent, never logged.
    let hook = receiver
        .base
        .replace("http://", "http://alice:pa55word@")
        + "/hooks/s3cr3t-path";
    local.up_foreground_with(&["--alert-webhook", &hook, "--alert-for", "all=4s"]);
    let before = local.wait_converged(1).await;
    let base = dashboard_base(&local).await;
    assert!(
        receiver.alerts().is_empty(),
        "a healthy cluster alerts nothing: {:?}",
        receiver.alerts()
    );

    let victim = before.peers[0].kubo_pid.expect("kubo pid");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");
    let down_at = std::time::Instant::now();
    let (notification, fired) = receiver.wait_for(&local, "IpfsKitPeerDown", "firing").await;
    assert!(
        down_at.elapsed() >= Duration::from_secs(4),
        "fired after {:?}, before its `for`",
        down_at.elapsed()
    );
    assert_eq!(notification["version"], "4");
    assert_eq!(notification["receiver"], "ipfs-kit-operator");
    assert_eq!(notification["groupKey"], "{}:{cluster=\"alerting\"}");
    assert_eq!(notification["externalURL"], format!("{base}/"));
    assert_eq!(
        fired["labels"],
        serde_json::json!({"alertname": "IpfsKitPeerDown", "severity": "critical",
            "cluster": "alerting", "peer": "peer-0"})
    );
    assert_eq!(fired["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        fired["annotations"]["runbook_url"],
        "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md#ipfskitpeerdown"
    );
    let description = fired["annotations"]["description"].as_str().unwrap_or("");
    assert!(description.contains("Kubo RPC"), "{description}");
    assert_eq!(
        fired["generatorURL"],
        format!("{base}/api/dashboard/status")
    );
    let (headers, _) = receiver.got.lock().expect("lock")[0].clone();
    assert_eq!(headers["authorization"], "Basic YWxpY2U6cGE1NXdvcmQ=");

    // The dashboard lists it, beside the restart the engine declined (autoHeal off).
    let alerts = dashboard_alert(&base, "IpfsKitPeerDown in the dashboard", |a| {
        a["type"] == "IpfsKitPeerDown" && a["state"] == "firing"
    })
    .await;
    let down = alerts
        .iter()
        .find(|a| a["type"] == "IpfsKitPeerDown")
        .expect("listed");
    assert_eq!(
        (&down["severity"], &down["cluster"], &down["peer"]),
        (&"critical".into(), &"alerting".into(), &"peer-0".into())
    );
    assert_eq!(down["timestamp"], fired["startsAt"]);
    assert_eq!(down["message"], fired["annotations"]["summary"]);
    let healing = alerts
        .iter()
        .find(|a| a["type"] == "healing" && a["peer"] == "peer-0")
        .unwrap_or_else(|| panic!("no healing step in alerts: {alerts:?}"));
    assert_eq!(healing["severity"], "info");
    assert_eq!(healing["state"], "skipped", "{healing}");
    assert_eq!(healing["entry"]["peer"], "peer-0");
    // And `local status` carries it in status.alerts.
    let status = local.status().await;
    assert!(
        status
            .status
            .alerts
            .iter()
            .any(|a| a.name == "IpfsKitPeerDown" && a.is_firing()),
        "{:?}",
        status.status.alerts
    );

    // Back: the dashboard's restart request starts Kubo again; the alert resolves.
    let token = std::fs::read_to_string(local.cluster_dir().join("dashboard-token"))
        .expect("token file");
    let restart = format!("{base}/api/dashboard/backends/alerting/peer-0/ipfs/restart");
    restart_with_token(&restart, token.trim()).await;
    let (_, resolved) = receiver
        .wait_for(&local, "IpfsKitPeerDown", "resolved")
        .await;
    assert_eq!(resolved["startsAt"], fired["startsAt"]);
    assert_ne!(resolved["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(resolved["fingerprint"], fired["fingerprint"]);
    dashboard_alert(&base, "IpfsKitPeerDown resolved in the dashboard", |a| {
        a["type"] == "IpfsKitPeerDown" && a["state"] == "resolved"
    })
    .await;

    let output = local.supervisor_output();
    assert!(
        output.contains("alert firing") && output.contains("alert resolved"),
        "{output}"
    );
    assert!(
        !output.contains("s3cr3t") && !output.contains("pa55word"),
        "the webhook's path or credentials were logged:\n{output}"
    );
    local.stop_supervisor().await;
}
