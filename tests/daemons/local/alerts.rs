//! Alerts without Prometheus, with real daemons: `local up --alert-webhook` posts
//! `IpfsKitPeerDown` to a receiver in Alertmanager's webhook format when a Kubo stays down, the
//! dashboard lists it (with the healing steps the engine took or declined), and when the daemon
//! is back the receiver gets it resolved.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{Local, http};
use crate::support::process::log_tail;
use crate::support::webhook::Receiver;
use crate::support::{restart_with_token, wait_for};

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
    let hook = receiver.url().replace("http://", "http://alice:pa55word@");
    local.up_foreground_with(&["--alert-webhook", &hook, "--alert-for", "all=4s"]);
    let before = local.wait_converged(1).await;
    let base = local.dashboard_base().await;
    assert!(
        receiver.alerts().is_empty(),
        "a healthy cluster alerts nothing: {:?}",
        receiver.alerts()
    );

    let victim = before.peers[0].kubo_pid.expect("kubo pid");
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill -9");
    let down_at = std::time::Instant::now();
    let log = || log_tail(&local.supervisor_log, 60);
    let minute = Duration::from_secs(60);
    let (notification, fired) = receiver
        .wait_for("IpfsKitPeerDown", "peer-0", "firing", minute, log)
        .await;
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
    let (headers, _) = receiver.notifications()[0].clone();
    assert_eq!(headers["authorization"], "Basic YWxpY2U6cGE1NXdvcmQ=");
    // Counted on /metrics once delivered.
    let delivered = wait_for(
        "the delivery counted on /metrics",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async {
            let text = http()
                .get(format!("{base}/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let line = text.lines().find(|l| {
                l.starts_with("ipfs_kit_alert_notifications_total{outcome=\"delivered\"}")
            })?;
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            (count >= 1.0).then_some(text)
        },
    )
    .await;
    assert!(
        delivered.contains("ipfs_kit_alert_notifications_total{outcome=\"dropped\"} 0"),
        "{delivered}"
    );

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
    let token =
        std::fs::read_to_string(local.cluster_dir().join("dashboard-token")).expect("token file");
    let restart = format!("{base}/api/dashboard/backends/alerting/peer-0/ipfs/restart");
    restart_with_token(&restart, token.trim()).await;
    let (_, resolved) = receiver
        .wait_for("IpfsKitPeerDown", "peer-0", "resolved", minute, log)
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

    // A new `local up` keeps listing what the earlier one saw: the healing steps and the
    // resolved alert, and fires nothing again.
    local.stop_supervisor().await;
    local.up_foreground_with(&["--alert-webhook", &hook, "--alert-for", "all=4s"]);
    local.wait_converged(1).await;
    let base = local.dashboard_base().await;
    let alerts = dashboard_alert(&base, "the earlier healing step after a restart", |a| {
        a["type"] == "healing" && a["state"] == "skipped"
    })
    .await;
    assert!(
        alerts
            .iter()
            .any(|a| a["type"] == "IpfsKitPeerDown" && a["state"] == "resolved"),
        "{alerts:?}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        receiver
            .matching("IpfsKitPeerDown", "peer-0", "firing")
            .len(),
        1,
        "fired again after the restart"
    );
    local.stop_supervisor().await;
}
