//! What a client written for the old toolkit sees of a real local cluster of one peer: the
//! toolkit's fields filled from the supervisor's status (PIDs, ports, the health words), its short
//! backend names naming that peer's daemons, and every answer as the OpenAPI document says.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::Local;
use crate::support::openapi::{get, http, post};
use crate::support::wait_for;

/// `data` of `/status` once `check` accepts it.
async fn status_until(base: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let http = http();
    wait_for(
        what,
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let (code, body) = get(&http, base, "/api/dashboard/status").await;
            (code == 200 && check(&body["data"])).then(|| body["data"].clone())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toolkit_client_sees_one_peer_whose_kubo_stopped_and_restarts_it_by_short_name() {
    let mut local = Local::new("solo", 1).await;
    // autoHeal off: the stopped Kubo stays down until a client asks for it.
    local.write_spec_with(1, "    autoHeal: false\n");
    local.up_foreground();
    let before = local.wait_converged(1).await;
    let base = local.dashboard_base().await;
    let peer = &before.peers[0];
    let (kubo_pid, cluster_pid) = (
        peer.kubo_pid.expect("kubo"),
        peer.cluster_pid.expect("cluster"),
    );
    let ports = peer.ports.expect("ports");

    let healthy = status_until(&base, "a healthy one-peer status", |d| {
        d["overall_health"] == "healthy" && d["backends"]["ipfs"]["status"] == "running"
    })
    .await;
    let ipfs = &healthy["backends"]["ipfs"];
    assert_eq!(ipfs["name"], "solo/peer-0/ipfs", "the one Kubo: {ipfs}");
    assert_eq!(
        (&ipfs["daemon_pid"], &ipfs["port"], &ipfs["health"]),
        (&json!(kubo_pid), &json!(ports.kubo_api), &json!("healthy"))
    );
    assert_eq!(healthy["backends"]["solo/peer-0/ipfs"], *ipfs);
    let cluster = &healthy["cluster"];
    assert_eq!(
        (&cluster["running"], &cluster["pid"], &cluster["peer_count"]),
        (&json!(true), &json!(cluster_pid), &json!(1))
    );
    assert_eq!(cluster["port_status"]["api"]["port"], ports.cluster_rest);
    assert_eq!(cluster["port_status"]["proxy"]["port"], ports.cluster_proxy);
    assert_eq!(
        cluster["port_status"]["cluster"]["port"],
        ports.cluster_swarm
    );
    assert_eq!(
        cluster["port_status"]["api"]["processes"],
        json!([cluster_pid])
    );
    assert_eq!(cluster["config_valid"], true);
    assert!(
        cluster["version"]
            .as_str()
            .is_some_and(|v| v.starts_with('1')),
        "{cluster}"
    );
    let libp2p = &healthy["libp2p"];
    assert_eq!(
        (&libp2p["peer_count"], &libp2p["connected_peers"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(libp2p["connectivity_ratio"], 1.0);
    assert_eq!(healthy["metrics"]["health_percentage"], 100.0);
    assert_eq!(healthy["metrics"]["total_backends"], 2);
    let processes = &healthy["clusters"][0]["processes"][0];
    assert_eq!(
        (&processes["kuboPid"], &processes["clusterPid"]),
        (&json!(kubo_pid), &json!(cluster_pid))
    );
    assert_eq!(processes["ports"]["kuboGateway"], ports.kubo_gateway);

    // Kubo stops: the supervisor sees the exit at once and, autoHeal off, leaves it down.
    kill(Pid::from_raw(kubo_pid), Signal::SIGKILL).expect("kill -9 kubo");
    let down = status_until(&base, "Kubo reported stopped", |d| {
        d["backends"]["ipfs"]["status"] == "stopped" && d["overall_health"] != "healthy"
    })
    .await;
    let ipfs = &down["backends"]["ipfs"];
    assert!(
        ["degraded", "unhealthy"].contains(&down["overall_health"].as_str().unwrap_or("")),
        "{down:#}"
    );
    assert_eq!(
        (&ipfs["health"], &ipfs["daemon_pid"]),
        (&json!("unhealthy"), &Value::Null)
    );
    assert_eq!(ipfs["api_responsive"], false);
    let errors = ipfs["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not run"))),
        "{ipfs}"
    );
    assert_eq!(down["backends"]["ipfs_cluster"]["daemon_pid"], cluster_pid);
    assert_eq!(down["libp2p"]["status"], "stopped");
    assert!(
        down["libp2p"]["connectivity_issues"][0]
            .as_str()
            .is_some_and(|i| i.starts_with("solo/peer-0: Kubo RPC")),
        "{}",
        down["libp2p"]
    );
    assert!(
        down["metrics"]["health_percentage"]
            .as_f64()
            .unwrap_or(100.0)
            < 100.0
    );
    assert_eq!(down["clusters"][0]["processes"][0]["kuboPid"], Value::Null);
    // The healing step the engine declined is listed among the alerts.
    let declined = status_until(&base, "the declined restart among the alerts", |d| {
        d["alerts"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["type"] == "healing" && a["state"] == "skipped")
        })
    })
    .await;
    assert!(declined["metrics"]["alerts_count"].as_u64().unwrap_or(0) >= 1);

    let http = http();
    let (code, one) = get(&http, &base, "/api/dashboard/backends/ipfs/status").await;
    assert_eq!(code, 200, "{one}");
    assert_eq!(
        (&one["data"]["peer"], &one["data"]["status"]),
        (&json!("peer-0"), &json!("stopped"))
    );
    let (code, read) = post(
        &http,
        &base,
        "/api/dashboard/daemon/action",
        None,
        &json!({"daemon_name": "ipfs_cluster", "action": "status"}),
    )
    .await;
    assert_eq!(code, 200, "{read}");
    assert_eq!(
        (
            &read["data"]["daemon_name"],
            &read["data"]["action"],
            &read["data"]["details"]["status"]
        ),
        (&json!("ipfs_cluster"), &json!("status"), &json!("running"))
    );

    // A toolkit client restarts "ipfs": the one Kubo starts again under a new PID.
    let token =
        std::fs::read_to_string(local.cluster_dir().join("dashboard-token")).expect("token");
    let (code, accepted) = post(
        &http,
        &base,
        "/api/dashboard/backends/ipfs/restart",
        Some(token.trim()),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 202, "{accepted}");
    let data = &accepted["data"];
    assert_eq!(
        (&data["daemon_name"], &data["action"]),
        (&json!("ipfs"), &json!("restart"))
    );
    assert_eq!(data["requested"]["peer"], "peer-0");
    let back = status_until(&base, "Kubo running again", |d| {
        d["backends"]["ipfs"]["status"] == "running"
    })
    .await;
    let new_pid = back["backends"]["ipfs"]["daemon_pid"]
        .as_i64()
        .expect("a pid");
    assert_ne!(new_pid, i64::from(kubo_pid));
    assert_eq!(
        back["backends"]["ipfs_cluster"]["daemon_pid"], cluster_pid,
        "only Kubo restarted"
    );

    // Its log, by short name too, as the toolkit's entries (newest first).
    let (code, logs) = get(&http, &base, "/api/dashboard/logs/ipfs?lines=20").await;
    assert_eq!(code, 200, "{logs}");
    let entries = logs["data"]["logs"].as_array().expect("logs");
    assert_eq!(
        entries.len(),
        logs["data"]["lines"].as_array().map_or(0, Vec::len)
    );
    let lines = logs["data"]["lines"].as_array().expect("lines");
    let (newest, last) = (
        &entries[0],
        lines.last().and_then(Value::as_str).expect("a line"),
    );
    assert_eq!(
        (&newest["id"], &newest["backend"]),
        (&json!(lines.len()), &json!("ipfs"))
    );
    assert!(
        last.ends_with(newest["message"].as_str().unwrap_or("?")),
        "{newest} / {last}"
    );
    local.stop_supervisor().await;
}
