//! The history of a local cluster with real daemons: one sample per `probeInterval` (however many
//! rounds ran in between), per peer with the figures of the probes, and still served after the
//! supervisor was stopped and started again (it lives in the state directory).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Local, http};
use crate::support::wait_for;

/// `GET {base}{path}`: its status and JSON body.
async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = http()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

fn samples(body: &Value) -> Vec<Value> {
    body["data"]["samples"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn times(body: &Value) -> Vec<String> {
    samples(body)
        .iter()
        .filter_map(|s| s["time"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_sampled_every_probe_interval_and_survives_a_supervisor_restart() {
    let mut local = Local::new("hist", 1).await;
    let yaml = "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsCluster\nmetadata:\n  name: hist\nspec:\n  \
                replicas: 1\n  health:\n    probeInterval: 1s\n    probeTimeout: 800ms\n";
    std::fs::write(local.spec_file(), yaml).expect("write spec");
    local.up_foreground();
    let status = local.wait_converged(1).await;
    let peer = status.peers[0].name.clone();
    let base = local.dashboard_base().await;
    let token = std::fs::read_to_string(local.cluster_dir().join("dashboard-token"))
        .expect("the dashboard token");
    let token = token.trim().to_owned();

    // Let two probes of the converged peer pass, then count over at least 8 s in which at least
    // 16 extra rounds are asked for (health checks; each takes as long as its probe, longer on a
    // busy machine): one sample a second, not one a round.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, before) = get(&base, "/api/dashboard/history/hist").await;
    assert_eq!(code, 200, "{before}");
    let started = Instant::now();
    let http = http();
    let mut checks = 0;
    while checks < 16 || started.elapsed() < Duration::from_secs(8) {
        let resp = http
            .post(format!("{base}/api/dashboard/health/check"))
            .bearer_auth(&token)
            .json(&json!({"backend_name": format!("hist/{peer}/ipfs")}))
            .send()
            .await
            .expect("POST /health/check");
        assert!(
            resp.status().is_success(),
            "health check: {}",
            resp.status()
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (_, after) = get(&base, "/api/dashboard/history/hist").await;
    let elapsed = started.elapsed().as_secs_f64();
    let added = samples(&after).len() - samples(&before).len();
    assert!(
        (elapsed.floor() as usize - 1..=elapsed.ceil() as usize + 1).contains(&added),
        "{added} samples in {elapsed:.1} s at a 1 s interval, with {checks} extra rounds:\n{after}"
    );
    assert_eq!(after["data"]["intervalSeconds"], 1.0, "{after}");
    let last = &samples(&after)[samples(&after).len() - 1];
    assert_eq!(last["state"], "Healthy", "{last}");

    // The peer's series carries what the probes saw.
    let (code, peer_history) = get(&base, &format!("/api/dashboard/history/hist/{peer}")).await;
    assert_eq!(code, 200, "{peer_history}");
    let latest = samples(&peer_history).pop().expect("a peer sample");
    assert!(latest["repoSize"].as_i64().unwrap_or(0) > 0, "{latest}");
    assert!(latest["bytesInPerSecond"].as_f64().is_some(), "{latest}");
    assert!(latest["pinsPinned"].as_i64().is_some(), "{latest}");
    // Downsampled: one point per 5 s bucket.
    let (code, coarse) = get(&base, "/api/dashboard/history/hist?step=5s").await;
    assert_eq!(code, 200, "{coarse}");
    assert!(
        samples(&coarse).len() <= samples(&after).len() / 5 + 2,
        "{coarse}"
    );

    // Stop the supervisor (the daemons stop too) and start it again: the earlier samples are
    // still there, and new ones follow.
    let kept = times(&after);
    local.stop_supervisor().await;
    assert!(local.cluster_dir().join("history.redb").is_file());
    local.up_foreground();
    local.wait_converged(1).await;
    let base = local.dashboard_base().await;
    let (code, again) = wait_for(
        "samples of the new supervisor after the earlier ones",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async {
            let (code, body) = get(&base, "/api/dashboard/history/hist?since=1h").await;
            (times(&body).len() > kept.len() + 1).then_some((code, body))
        },
    )
    .await;
    assert_eq!(code, 200, "{again}");
    let served = times(&again);
    assert_eq!(
        served[..kept.len()],
        kept[..],
        "the earlier samples are served after the restart"
    );
    assert!(served[kept.len()] > kept[kept.len() - 1], "{served:?}");
}
