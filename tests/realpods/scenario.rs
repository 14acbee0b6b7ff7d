//! The life of `examples/minimal-cluster.yaml` on real pods, step by step, each step checked
//! the way a user would check it. A failure names its step.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ipfs_kit_operator::api::{HealingAction, IpfsCluster};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::steps::{Cluster, KUBO_ARGV, pinned_on, process_of, signal};
use crate::support::real_node::real_node;
use crate::support::wait_for;
use crate::{helm_dashboard_token, helm_operator_ip, kubectl, report};

const NAME: &str = "minimal";
/// Pin names in `examples/pin.yaml` and the one without replication bounds (every peer).
const DOCS_PIN: &str = "ipfs-docs-readme";
const EVERYWHERE_PIN: &str = "everywhere";

pub async fn minimal_cluster() {
    let node = real_node();
    let c = Cluster::in_new_namespace(NAME).await;
    let ns = c.ns.clone();

    let cold = apply_minimal_cluster(&c).await;
    let ids = peers_connected(&c, 3).await;
    kubos_metrics_and_nothing_else_on_their_own_port(&c).await;
    kubo_runs_offline_and_keeps_its_siblings(&c, &ids).await;
    let cids = pins_applied(&c).await;
    let back = killed_kubo_comes_back(&c, &cids).await;
    report(&format!(
        "Kubo answering: cold start (pod created -> RPC) {:.1} s; killed container -> RPC again {:.1} s",
        cold.as_secs_f64(),
        back.as_secs_f64()
    ));
    stopped_kubo_is_detected_and_restarted(&c).await;
    dashboard_restarts_one_container(&c).await;
    dashboard_shows_the_real_peers(&c, &ids).await;
    scaled_out_and_in(&c, &cids).await;
    config_change_rolls_one_pod_at_a_time(&c).await;
    crate::upgrade::kubo_image_changes_are_gated(&c).await;
    unpinned_when_deleted(&c, &cids).await;
    kubectl(node, &["delete", "ipfscluster", NAME, "-n", &ns, "--wait"]);
}

/// Applies the example unchanged; returns how long peer 0's Kubo took from its pod's creation
/// to answering RPC (a cold start).
async fn apply_minimal_cluster(c: &Cluster) -> Duration {
    let node = real_node();
    let started = Instant::now();
    kubectl(
        node,
        &["apply", "-n", &c.ns, "-f", "examples/minimal-cluster.yaml"],
    );
    // Kubo of peer 0 from its pod's creation (first seen, polled every 100 ms) to answering.
    let created = wait_for(
        "peer 0's pod created",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            c.pods
                .get_opt(&c.peer(0))
                .await
                .ok()?
                .map(|_| Instant::now())
        },
    )
    .await;
    wait_for(
        "peer 0's Kubo answering at its pod IP",
        Duration::from_secs(240),
        Duration::from_millis(100),
        || async {
            let pod = c.pods.get_opt(&c.peer(0)).await.ok()??;
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            c.kubo(&ip, "id").await
        },
    )
    .await;
    let cold = created.elapsed();
    let cluster = c.wait_healthy(3, Duration::from_secs(240)).await;
    let took = started.elapsed();
    report(&format!(
        "kubectl apply -f examples/minimal-cluster.yaml -> Healthy with 3 real peers: {:.1} s",
        took.as_secs_f64()
    ));
    report(&format!(
        "kubectl get ipfsclusters:\n{}",
        kubectl(node, &["get", "ipfsclusters", "-n", &c.ns])
    ));
    // kubelet's probes (Kubo's /version, IPFS Cluster's /health) found the daemons up without
    // restarting one on the way.
    let restarts = crate::restarts(&c.live_pods().await);
    assert!(restarts.iter().all(|(_, _, n)| *n == 0), "{restarts:?}");
    let status = cluster.status.expect("status");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    assert_eq!(ready.map(|c| c.status.as_str()), Some("True"), "{ready:?}");
    for peer in &status.peers {
        // Kubo itself reports the limit: 90 % of the default 10Gi volume.
        assert_eq!(peer.storage_max, Some(9 << 30), "{peer:?}");
        assert!(peer.repo_size.is_some_and(|s| s > 0), "{peer:?}");
        assert!(
            peer.kubo_version
                .as_deref()
                .is_some_and(|v| v.starts_with("0.42.0")),
            "{peer:?}"
        );
        assert!(
            peer.cluster_version
                .as_deref()
                .is_some_and(|v| v.starts_with("1.1.6")),
            "{peer:?}"
        );
    }
    cold
}

/// Every Kubo has swarm connections to the two others, every cluster peer lists all three,
/// status names the real identities. Returns the Kubo peer ids in ordinal order.
pub async fn peers_connected(c: &Cluster, n: usize) -> Vec<String> {
    let ips = c.ips(n).await;
    let mut ids = Vec::new();
    for ip in &ips {
        ids.push(c.kubo_id(ip).await);
    }
    for (i, ip) in ips.iter().enumerate() {
        let others: BTreeSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id.clone())
            .collect();
        wait_for(
            &format!("Kubo of {} connected to the other peers' Kubo", c.peer(i)),
            Duration::from_secs(90),
            Duration::from_millis(500),
            || async { others.is_subset(&c.swarm_peers(ip).await).then_some(()) },
        )
        .await;
    }
    let mut cluster_ids = Vec::new();
    for ip in &ips {
        let id = c.rest(ip, "id").await.expect("cluster /id");
        cluster_ids.push(id["id"].as_str().expect("cluster id").to_owned());
    }
    let all: BTreeSet<String> = cluster_ids.iter().cloned().collect();
    for (i, ip) in ips.iter().enumerate() {
        wait_for(
            &format!("{} listing {n} cluster peers", c.peer(i)),
            Duration::from_secs(90),
            Duration::from_millis(500),
            || async { (c.cluster_peers(ip).await == all).then_some(()) },
        )
        .await;
    }
    let cluster = c.api.get(&c.name).await.expect("cluster");
    let status = cluster.status.expect("status");
    for (i, peer) in status.peers.iter().enumerate() {
        assert_eq!(peer.name, c.peer(i));
        assert_eq!(peer.peer_id.as_deref(), Some(ids[i].as_str()), "{peer:?}");
        assert_eq!(
            peer.cluster_peer_id.as_deref(),
            Some(cluster_ids[i].as_str()),
            "{peer:?}"
        );
    }
    ids
}

/// Kubo in the pods fetches nothing from and reports nothing to the public network (AutoConf
/// and telemetry off), and a dropped connection between siblings is re-established by Kubo
/// itself (the operator's reconnect adds the siblings to Kubo's peering), without a routing
/// system and without another reconnect by the operator.
async fn kubo_runs_offline_and_keeps_its_siblings(c: &Cluster, ids: &[String]) {
    let ips = c.ips(3).await;
    for ip in &ips {
        let autoconf = c.kubo(ip, "config?arg=AutoConf.Enabled").await;
        assert_eq!(autoconf.map(|v| v["Value"].clone()), Some(json!(false)));
        let telemetry = c
            .kubo(ip, "config?arg=Plugins.Plugins.telemetry.Config.Mode")
            .await;
        assert_eq!(telemetry.map(|v| v["Value"].clone()), Some(json!("off")));
    }
    // A pair where one side keeps the other in its peering set.
    let mut pair = None;
    for (i, ip) in ips.iter().enumerate() {
        let peering = c.kubo(ip, "swarm/peering/ls").await.expect("peering/ls");
        let listed: Vec<String> = peering["Peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["ID"].as_str().map(str::to_owned))
            .collect();
        if let Some(j) = ids.iter().position(|id| listed.contains(id)) {
            pair = Some((i, j));
            break;
        }
    }
    let (i, j) = pair.expect("a Kubo with a sibling in its peering set");
    let before = c.api.get(&c.name).await.expect("cluster");
    let reconnects = |cl: &IpfsCluster| {
        cl.status.as_ref().map_or(0, |s| {
            s.healing
                .iter()
                .filter(|h| h.action == HealingAction::SwarmConnect)
                .count()
        })
    };
    let reconnects_before = reconnects(&before);
    let addr = format!("/ip4/{}/tcp/4001/p2p/{}", ips[j], ids[j]);
    c.kubo(&ips[i], &format!("swarm/disconnect?arg={addr}"))
        .await
        .expect("swarm/disconnect");
    let dropped = Instant::now();
    wait_for(
        &format!(
            "{} reconnected to {} by Kubo's peering",
            c.peer(i),
            c.peer(j)
        ),
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async { c.swarm_peers(&ips[i]).await.contains(&ids[j]).then_some(()) },
    )
    .await;
    report(&format!(
        "swarm/disconnect of {} from {}: reconnected by Kubo's peering in {:.1} s",
        c.peer(j),
        c.peer(i),
        dropped.elapsed().as_secs_f64()
    ));
    let after = c.api.get(&c.name).await.expect("cluster");
    assert_eq!(
        reconnects(&after),
        reconnects_before,
        "no reconnect by the operator"
    );
}

/// Adds content to peer 0's Kubo, applies `examples/pin.yaml` with that CID (the example's own
/// CID is not reachable from the test world) and a pin without replication bounds: pinned 3/3.
/// Returns both CIDs (the example's, the everywhere pin's).
async fn pins_applied(c: &Cluster) -> [String; 2] {
    let node = real_node();
    let ip = &c.ips(1).await[0];
    let mut cids = Vec::new();
    for content in ["the docs pin of the real-pod test", "pinned on every peer"] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(content.as_bytes().to_vec()).file_name("data"),
        );
        let added: Value = c
            .http
            .post(format!("http://{ip}:5001/api/v0/add?cid-version=1"))
            .multipart(form)
            .send()
            .await
            .expect("add")
            .json()
            .await
            .expect("add json");
        cids.push(added["Hash"].as_str().expect("Hash").to_owned());
    }
    let example =
        std::fs::read_to_string(crate::repo().join("examples/pin.yaml")).expect("pin.yaml");
    let line = example
        .lines()
        .find(|l| l.trim_start().starts_with("cid:"))
        .expect("a cid line");
    let old = line
        .split_whitespace()
        .nth(1)
        .expect("the example's CID")
        .to_owned();
    let file = crate::scratch(&c.ns).join("pin.yaml");
    std::fs::write(&file, example.replace(&old, &cids[0])).expect("write pin.yaml");
    let everywhere = crate::scratch(&c.ns).join("everywhere.yaml");
    std::fs::write(
        &everywhere,
        format!(
            "apiVersion: ipfskit.io/v1alpha1\nkind: IpfsPin\nmetadata:\n  name: {EVERYWHERE_PIN}\n\
             spec:\n  clusterRef:\n    name: {NAME}\n  cid: {}\n",
            cids[1]
        ),
    )
    .expect("write everywhere.yaml");
    // IPFS Cluster allocates a pin only to peers whose free-space metric it holds (each peer
    // sends it every few seconds once it runs): wait until every peer holds all three, or the
    // docs pin may go to two peers only (replicationMin 2) and stay there.
    let ips = c.ips(3).await;
    wait_for(
        "every IPFS Cluster peer to hold the free-space metric of all three",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            for ip in &ips {
                let metrics = c.rest(ip, "monitor/metrics/freespace").await?;
                (metrics.as_array()?.len() >= 3).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    let started = Instant::now();
    for f in [&file, &everywhere] {
        kubectl(
            node,
            &["apply", "-n", &c.ns, "-f", &f.display().to_string()],
        );
    }
    for pin in [DOCS_PIN, EVERYWHERE_PIN] {
        c.wait_pin(pin, "Pinned on 3 peers", Duration::from_secs(120), |p| {
            pinned_on(p, 3)
        })
        .await;
    }
    report(&format!(
        "kubectl apply -f examples/pin.yaml -> Pinned 3/3: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    report(&format!(
        "kubectl get ipfspins:\n{}",
        kubectl(node, &["get", "ipfspins", "-n", &c.ns])
    ));
    for cid in &cids {
        let statuses = c.pin_status(ip, cid).await;
        assert_eq!(statuses.len(), 3, "{statuses:?}");
        assert!(statuses.iter().all(|(_, s)| s == "pinned"), "{statuses:?}");
    }
    [cids[0].clone(), cids[1].clone()]
}

/// SIGKILL of Kubo in peer 1's pod: kubelet restarts that container (the pod, its IP and the
/// cluster daemon stay), Kubo answers again with its pins (the repository is on the pod's
/// volume), and status and metrics count the restart. Returns how long from the kill to RPC
/// answering again.
async fn killed_kubo_comes_back(c: &Cluster, cids: &[String; 2]) -> Duration {
    let peer = c.peer(1);
    let (restarts, uid) = c.container_restarts(1, "kubo").await;
    let (cluster_restarts, _) = c.container_restarts(1, "cluster").await;
    let pid = process_of(&peer, &KUBO_ARGV).expect("Kubo's process in peer 1's pod");
    let ip = c.ips(2).await[1].clone();
    let killed = Instant::now();
    signal(pid, "KILL");
    wait_for(
        "Kubo of peer 1 answering again after SIGKILL",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || async {
            let now = process_of(&peer, &KUBO_ARGV)?;
            if now == pid {
                return None;
            }
            c.kubo(&ip, "id").await
        },
    )
    .await;
    let back = killed.elapsed();
    for cid in cids {
        let pinned: Option<Value> = c.kubo(&ip, &format!("pin/ls?arg={cid}")).await;
        assert!(pinned.is_some(), "{cid} no longer pinned on {peer}");
    }
    // Status says what happened: the restart is counted for the peer.
    let cluster = crate::support::clusters::wait_status(
        &c.api,
        &c.name,
        "peer 1's restart counted in status",
        |cl: &IpfsCluster| {
            cl.status
                .as_ref()
                .is_some_and(|s| s.peers.iter().any(|p| p.name == peer && p.restarts > 0))
        },
    )
    .await;
    report(&format!(
        "SIGKILL of Kubo in {peer}: status {}",
        serde_json::to_string(&cluster.status.as_ref().map(|s| &s.peers[1])).unwrap_or_default()
    ));
    // A probe interval later it is still the same pod: kubelet restarted the container, the
    // operator did not delete the pod on top of that (it did so within a second before).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (now, same_uid) = c.container_restarts(1, "kubo").await;
    let (cluster_now, _) = c.container_restarts(1, "cluster").await;
    assert_eq!(
        same_uid, uid,
        "the pod was kept: only the container restarted"
    );
    assert_eq!(now, restarts + 1, "the kubo container restarted once");
    assert_eq!(
        cluster_now, cluster_restarts,
        "the cluster container untouched"
    );
    c.wait_healthy(3, Duration::from_secs(120)).await;
    back
}

/// SIGSTOP of Kubo in peer 2's pod: its RPC stops answering while its sockets stay open; the
/// operator notices within the health policy's threshold (3 failed probes, 10 s apart, 5 s
/// timeout) and restarts the peer (its pod: a hung process cannot be asked to stop through its
/// API), long before kubelet's liveness probe would (5 minutes of silence).
async fn stopped_kubo_is_detected_and_restarted(c: &Cluster) {
    let peer = c.peer(2);
    let pid = process_of(&peer, &KUBO_ARGV).expect("Kubo's process in peer 2's pod");
    let before = c.api.get(&c.name).await.expect("cluster");
    let healed_before = healing_count(&before, &peer);
    let stopped = Instant::now();
    signal(pid, "STOP");
    let cluster = crate::support::clusters::wait_status_within(
        &c.api,
        &c.name,
        "a restart of the stopped peer in the healing log",
        Duration::from_secs(90),
        |cl| healing_count(cl, &peer) > healed_before,
    )
    .await;
    let detected = stopped.elapsed();
    let record = cluster
        .status
        .as_ref()
        .and_then(|s| s.healing.iter().rev().find(|h| h.peer == peer).cloned())
        .expect("healing record");
    report(&format!(
        "SIGSTOP of Kubo in {peer} -> restart decided {:.1} s later: {} ({})",
        detected.as_secs_f64(),
        record.reason,
        serde_json::to_string(&record.result).unwrap_or_default()
    ));
    // Rounds of a hung peer are probeInterval + probeTimeout apart (the probe waits for its
    // timeout): failureThreshold of them, after up to one interval until the first.
    let bound = Duration::from_secs(3 * (10 + 5) + 10);
    assert!(
        detected <= bound,
        "detected after {detected:?} (bound {bound:?})"
    );
    wait_for(
        "the stopped Kubo process gone",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async { (process_of(&peer, &KUBO_ARGV) != Some(pid)).then_some(()) },
    )
    .await;
    c.wait_healthy(3, Duration::from_secs(180)).await;
    report(&format!(
        "SIGSTOP of Kubo in {peer} -> Healthy again {:.1} s",
        stopped.elapsed().as_secs_f64()
    ));
}

/// Restarts the operator decided, every peer.
fn healing_count_all(cluster: &IpfsCluster) -> usize {
    cluster.status.as_ref().map_or(0, |s| {
        s.healing
            .iter()
            .filter(|h| h.action == HealingAction::RestartPeer)
            .count()
    })
}

fn healing_count(cluster: &IpfsCluster, peer: &str) -> usize {
    cluster.status.as_ref().map_or(0, |s| {
        s.healing
            .iter()
            .filter(|h| h.peer == peer && h.action == HealingAction::RestartPeer)
            .count()
    })
}

/// A restart of peer 0's `ipfs` daemon, then of its `cluster` daemon, through the dashboard
/// sidecar (at its pod IP, with the chart's token) restarts that daemon's container only: same
/// pod, the other container untouched.
async fn dashboard_restarts_one_container(c: &Cluster) {
    let ip = helm_operator_ip(&c.client).await;
    let token = helm_dashboard_token(&c.client).await;
    for (daemon, container, other) in [("ipfs", "kubo", "cluster"), ("cluster", "cluster", "kubo")]
    {
        let (before, uid) = c.container_restarts(0, container).await;
        let (other_before, _) = c.container_restarts(0, other).await;
        let url = format!(
            "http://{ip}:8080/api/dashboard/backends/{}/{}/{}/{daemon}/restart",
            c.ns,
            c.name,
            c.peer(0)
        );
        let refused = c.http.post(&url).send().await.expect("POST restart");
        assert_eq!(refused.status().as_u16(), 401, "no token, no restart");
        let started = Instant::now();
        let accepted = c
            .http
            .post(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("POST restart");
        assert_eq!(accepted.status().as_u16(), 202);
        wait_for(
            &format!("peer 0's {container} container restarted"),
            Duration::from_secs(90),
            Duration::from_millis(250),
            || async { (c.container_restarts(0, container).await.0 > before).then_some(()) },
        )
        .await;
        report(&format!(
            "dashboard restart of {}/{daemon} -> {container} container restarted {:.1} s",
            c.peer(0),
            started.elapsed().as_secs_f64()
        ));
        // A probe interval later: still the same pod, the other container untouched.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let (after, same_uid) = c.container_restarts(0, container).await;
        let (other_after, _) = c.container_restarts(0, other).await;
        assert_eq!(same_uid, uid, "the pod was kept");
        assert_eq!(after, before + 1);
        assert_eq!(other_after, other_before, "the {other} container untouched");
        c.wait_healthy(3, Duration::from_secs(120)).await;
    }
}

/// The dashboard sidecar at its pod IP: status with the real peer ids, the kubo container's
/// own log lines, and metrics that count the restarts of the killed daemon.
async fn dashboard_shows_the_real_peers(c: &Cluster, ids: &[String]) {
    let ip = helm_operator_ip(&c.client).await;
    let base = format!("http://{ip}:8080");
    let key = format!("{}/{}", c.ns, c.name);
    let status = crate::support::dashboard_status_until(&base, "the cluster served", |body| {
        body["data"]["clusters"]
            .as_array()?
            .iter()
            .find(|cl| cl["cluster"] == json!(key))
            .cloned()
    })
    .await;
    let text = status.to_string();
    for id in ids {
        assert!(text.contains(id.as_str()), "{id} not in {text}");
    }
    let logs: Value = c
        .http
        .get(format!(
            "{base}/api/dashboard/logs/{}/{}/{}/ipfs?lines=200",
            c.ns,
            c.name,
            c.peer(1)
        ))
        .send()
        .await
        .expect("GET logs")
        .json()
        .await
        .expect("logs json");
    let lines = logs.to_string();
    assert!(lines.contains("Daemon is ready"), "{logs}");
    // The sidecar exports only its own HTTP metrics; the controller (the leader, in the same
    // pod) exports the peer series.
    let get_text = |url: String| async move {
        c.http
            .get(url)
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    };
    let sidecar = get_text(format!("{base}/metrics")).await;
    assert!(
        sidecar.contains("ipfs_kit_dashboard_requests_total{")
            && !sidecar.contains("ipfs_kit_peer_"),
        "{sidecar}"
    );
    // The leader's controller: the replica that says `ipfs_kit_leader 1`.
    let mut metrics = String::new();
    for operator in crate::helm_operator_ips(&c.client).await {
        let text = get_text(format!("http://{operator}:9090/metrics")).await;
        if text.lines().any(|l| l == "ipfs_kit_leader 1") {
            metrics = text;
        }
    }
    let labels = format!(
        "{{namespace=\"{}\",cluster=\"{}\",peer=\"{}\"}} ",
        c.ns,
        c.name,
        c.peer(1)
    );
    let restarts = metrics
        .lines()
        .find(|l| l.starts_with(&format!("ipfs_kit_peer_restarts_total{labels}")))
        .unwrap_or_else(|| panic!("no restart metric of {}:\n{metrics}", c.peer(1)));
    let value: f64 = restarts
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("metric value");
    assert!(value >= 1.0, "{restarts}");
}

/// `kubectl scale` to 5 then back to 3: the new peers join and hold the every-peer pin; the
/// removed ones leave the peer set; no pin is lost.
async fn scaled_out_and_in(c: &Cluster, cids: &[String; 2]) {
    let node = real_node();
    let started = Instant::now();
    kubectl(
        node,
        &["scale", "ipfscluster", &c.name, "-n", &c.ns, "--replicas=5"],
    );
    c.wait_healthy(5, Duration::from_secs(240)).await;
    report(&format!(
        "kubectl scale --replicas=5 -> Healthy with 5: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    peers_connected(c, 5).await;
    c.wait_pin(
        EVERYWHERE_PIN,
        "Pinned on 5 peers",
        Duration::from_secs(120),
        |p| pinned_on(p, 5),
    )
    .await;
    let started = Instant::now();
    kubectl(
        node,
        &["scale", "ipfscluster", &c.name, "-n", &c.ns, "--replicas=3"],
    );
    c.wait_healthy(3, Duration::from_secs(240)).await;
    report(&format!(
        "kubectl scale --replicas=3 -> Healthy with 3: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    peers_connected(c, 3).await;
    assert_eq!(c.live_pods().await.len(), 3);
    for (pin, cid) in [DOCS_PIN, EVERYWHERE_PIN].iter().zip(cids) {
        c.wait_pin(pin, "Pinned on 3 peers", Duration::from_secs(120), |p| {
            pinned_on(p, 3)
        })
        .await;
        let statuses = c.pin_status(&c.ips(1).await[0], cid).await;
        assert!(
            statuses.iter().filter(|(_, s)| s == "pinned").count() >= 3,
            "{cid}: {statuses:?}"
        );
    }
}

/// A change of `spec.kubo.config`: the pods are replaced one at a time, each Ready before the
/// next goes, and every Kubo runs with the new value.
async fn config_change_rolls_one_pod_at_a_time(c: &Cluster) {
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(c.pod(i).await.uid().unwrap_or_default());
    }
    let restarts_before = healing_count_all(&c.api.get(&c.name).await.expect("cluster"));
    // With IPFS Cluster's own metrics turned on in the same change.
    let patch = json!({"spec": {
        "kubo": {"config": {"Swarm": {"ConnMgr": {"HighWater": 321}}}},
        "metrics": {"cluster": true},
    }});
    let started = Instant::now();
    c.api
        .patch(&c.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch spec.kubo.config");
    let (seen, ready_at) = c.watch_replacement(&uids, Duration::from_secs(300)).await;
    // In the order they were replaced, each new pod appeared only once the one before was Ready.
    let mut order: Vec<usize> = (0..3).collect();
    order.sort_by_key(|&i| seen[i]);
    for pair in order.windows(2) {
        let (before, next) = (pair[0], pair[1]);
        assert!(
            seen[next] >= ready_at[before],
            "{} replaced (poll {:?}) before {} was Ready (poll {:?})",
            c.peer(next),
            seen[next],
            c.peer(before),
            ready_at[before]
        );
    }
    c.wait_healthy(3, Duration::from_secs(180)).await;
    report(&format!(
        "spec.kubo.config change -> 3 pods replaced one at a time, Healthy: {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // `kubectl describe` shows the generation just applied, not the first one.
    let generation = c
        .api
        .get(&c.name)
        .await
        .expect("cluster")
        .metadata
        .generation
        .unwrap_or_default();
    crate::support::clusters::event_note(
        &c.client,
        &c.ns,
        "Applied",
        &format!("generation {generation}:"),
    )
    .await;
    // A rollout is not a failure: no restart by the operator while the pods were replaced.
    let restarts_after = healing_count_all(&c.api.get(&c.name).await.expect("cluster"));
    assert_eq!(
        restarts_after, restarts_before,
        "restarts decided during the rollout"
    );
    for ip in c.ips(3).await {
        let value = c
            .kubo(&ip, "config?arg=Swarm.ConnMgr.HighWater")
            .await
            .expect("config");
        assert_eq!(value["Value"], json!(321), "{ip}: {value}");
        // IPFS Cluster's own series on 8888.
        metrics_text(&format!("http://{ip}:8888/metrics"), "ipfscluster_").await;
    }
}

/// The body of a metrics endpoint once it answers 200 with series named `prefix*` (IPFS
/// Cluster reports its first figures after its 30 s reporting interval).
async fn metrics_text(url: &str, prefix: &str) -> String {
    let http = crate::http();
    wait_for(
        &format!("{url} to answer with {prefix}* series"),
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let answer = http.get(url).send().await.ok()?;
            (answer.status() == 200).then_some(())?;
            let text = answer.text().await.ok()?;
            text.lines().any(|l| l.starts_with(prefix)).then_some(text)
        },
    )
    .await
}

/// Each pod's `kubo-metrics` container (the operator's image, as the chart runs it) serves
/// Kubo's own metrics on 9401, and nothing else of the RPC API.
async fn kubos_metrics_and_nothing_else_on_their_own_port(c: &Cluster) {
    let http = crate::http();
    for ip in c.ips(3).await {
        // Kubo's own series on 9401.
        metrics_text(&format!("http://{ip}:9401/metrics"), "ipfs_").await;
        let id = http
            .post(format!("http://{ip}:9401/api/v0/id"))
            .send()
            .await
            .expect("answer");
        assert_eq!(id.status(), 404, "{ip}: the RPC API is not on 9401");
    }
}

/// Deleting the IpfsPin unpins its CID from the cluster.
async fn unpinned_when_deleted(c: &Cluster, cids: &[String; 2]) {
    let node = real_node();
    kubectl(
        node,
        &["delete", "ipfspin", DOCS_PIN, "-n", &c.ns, "--wait"],
    );
    let ip = c.ips(1).await[0].clone();
    wait_for(
        "the docs CID unpinned from every peer",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || async {
            let statuses = c.pin_status(&ip, &cids[0]).await;
            statuses.iter().all(|(_, s)| s == "unpinned").then_some(())
        },
    )
    .await;
    // The other pin is untouched.
    let statuses = c.pin_status(&ip, &cids[1]).await;
    assert!(
        statuses.iter().all(|(_, s)| s == "pinned") && statuses.len() == 3,
        "{statuses:?}"
    );
}
