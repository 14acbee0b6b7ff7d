//! The dashboard's change requests under `local up`, with real daemons: twenty restart requests
//! sent at once across the six daemons of three peers are each carried out exactly once (every
//! daemon started again once per request for it, nothing else restarted), each watch URL ends
//! done with what was restarted, and a health check answers once its probe round is done.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Local, http};
use crate::support::wait_for;

const REQUESTS: usize = 20;

/// How often the supervisor's log says `what` is up for `peer`.
fn starts(log: &str, what: &str, peer: &str) -> usize {
    log.matches(&format!("{what} is up peer=\"{peer}\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_restart_requests_are_each_carried_out_exactly_once() {
    let mut local = Local::new("req", 3).await;
    local.up_foreground();
    let before = local.wait_converged(3).await;
    let base = local.dashboard_base().await;
    let token = std::fs::read_to_string(local.cluster_dir().join("dashboard-token"))
        .expect("the token file");
    let token = token.trim().to_owned();
    let http = http();
    let peers: Vec<String> = before.peers.iter().map(|p| p.name.clone()).collect();
    let full_log = |l: &Local| std::fs::read_to_string(&l.supervisor_log).unwrap_or_default();
    let log_before = full_log(&local);

    // Request i: peer i % 3, Kubo for i / 3 even, IPFS Cluster otherwise.
    let target = |i: usize| {
        let daemon = if (i / 3).is_multiple_of(2) {
            "ipfs"
        } else {
            "cluster"
        };
        (peers[i % 3].clone(), daemon)
    };
    let sends = (0..REQUESTS).map(|i| {
        let (peer, daemon) = target(i);
        let url = format!("{base}/api/dashboard/backends/req/{peer}/{daemon}/restart");
        let (http, token) = (http.clone(), token.clone());
        async move {
            let resp = http
                .post(&url)
                .bearer_auth(&token)
                .send()
                .await
                .expect("POST");
            let code = resp.status().as_u16();
            let body: Value = resp.json().await.expect("json");
            assert_eq!(code, 202, "{url}: {body}");
            (i, body)
        }
    });
    let accepted = futures::future::join_all(sends).await;
    let mut ids: Vec<u64> = accepted
        .iter()
        .map(|(_, b)| b["data"]["requested"]["id"].as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), REQUESTS, "one id each");

    // The last one waits its turn behind the others: queued.
    let last = ids[REQUESTS - 1];
    let url = format!("{base}/api/dashboard/requests/{last}");
    let waiting: Value = http
        .get(&url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(waiting["data"]["state"], "queued", "{waiting}");

    for (i, body) in &accepted {
        let url = format!(
            "{base}{}",
            body["data"]["watch"].as_str().expect("watch URL")
        );
        let done = wait_for(
            &format!("request {i} done"),
            Duration::from_secs(240),
            Duration::from_millis(250),
            || async {
                let body: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
                let state = body["data"]["state"].as_str()?.to_owned();
                assert_ne!(state, "failed", "request {i}: {body}");
                (state == "done").then_some(body)
            },
        )
        .await;
        let (peer, daemon) = target(*i);
        let what = if daemon == "ipfs" {
            "Kubo"
        } else {
            "IPFS Cluster"
        };
        assert_eq!(
            done["data"]["reason"],
            json!(format!("restarted {what} of {peer}")),
            "{done}"
        );
    }

    // Exactly once: each daemon started again once per request for it.
    let log = full_log(&local);
    let mut wanted: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for i in 0..REQUESTS {
        let (peer, daemon) = target(i);
        let what = if daemon == "ipfs" {
            "Kubo"
        } else {
            "IPFS Cluster"
        };
        *wanted.entry((peer, what)).or_default() += 1;
    }
    for ((peer, what), n) in &wanted {
        let more = starts(&log, what, peer) - starts(&log_before, what, peer);
        assert_eq!(
            more, *n,
            "{what} of {peer} started {more} times for {n} requests"
        );
    }
    for id in &ids {
        let taken = log
            .lines()
            .filter(|l| l.contains("dashboard request") && l.contains(&format!("id={id} ")))
            .count();
        assert_eq!(taken, 1, "request {id} taken up {taken} times");
    }
    let after = local.status().await;
    for (was, is) in before.peers.iter().zip(&after.peers) {
        assert_ne!(was.kubo_pid, is.kubo_pid, "{}", is.name);
        assert_ne!(was.cluster_pid, is.cluster_pid, "{}", is.name);
    }

    // A health check answers once its round is done, with that round's probe times.
    let asked = k8s_openapi::jiff::Timestamp::now();
    let resp = http
        .post(format!("{base}/api/dashboard/health/check"))
        .bearer_auth(&token)
        .json(&json!({"backend_name": format!("req/{}/ipfs", peers[1])}))
        .send()
        .await
        .expect("health check");
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(code, 200, "{body}");
    for peer in body["data"]["peers"].as_array().expect("peers") {
        let probed: k8s_openapi::jiff::Timestamp = peer["lastProbe"]
            .as_str()
            .expect("lastProbe")
            .parse()
            .expect("time");
        assert!(probed.as_second() >= asked.as_second(), "{body}");
    }
    let watch = format!(
        "{base}/api/dashboard/requests/{}",
        body["data"]["requested"]["id"]
    );
    let record: Value = http
        .get(&watch)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(record["data"]["state"], "done", "{record}");
    assert!(
        record["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("probed every peer")),
        "{record}"
    );
}
