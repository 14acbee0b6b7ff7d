//! Real daemons behind kwok pods (see [`crate::real_peers`]) with the default health settings:
//! steady traffic (blocks added and pinned through the real Kubo and IPFS Cluster APIs) changes
//! bandwidth, repository size and pin counts every probe round, yet the IpfsCluster is written at
//! most once a minute while health stays the same; and a SIGSTOPped Kubo or IPFS Cluster daemon is
//! shown not healthy within 5 s (liveness pings), back to healthy after SIGCONT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ipfs_kit_operator::api::{IpfsCluster, IpfsClusterStatus, PeerState};
use ipfs_kit_operator::runtime::kube::Metrics;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use nix::sys::signal::Signal;
use serde_json::json;

use crate::controller::start_controller_into;
use crate::support::clusters::{
    apply_cluster, cluster_json, provide_volumes, running_pods, wait_status_within,
};
use crate::support::control_plane::control_plane;
use crate::support::forward::forward;
use crate::support::ipfs::IpfsWorld;

const TRAFFIC: Duration = Duration::from_secs(45);

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Waits until the peer's state satisfies `want`; returns how long it took.
async fn time_until(api: &Api<IpfsCluster>, what: &str, want: fn(PeerState) -> bool) -> Duration {
    let started = Instant::now();
    wait_status_within(api, "quiet", what, Duration::from_secs(60), |c| {
        c.status
            .as_ref()
            .and_then(|s| s.peers.first())
            .is_some_and(|p| want(p.state))
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_alone_writes_no_status_and_a_stopped_daemon_shows_within_five_seconds() {
    let world = IpfsWorld::start(1).await;
    let cp = control_plane();
    cp.install_crds().await;
    let ns = cp.namespace("quiet").await;
    let client = cp.admin_client().await;
    let class = provide_volumes(&client, &ns, 2).await;
    let metrics = Arc::new(Metrics::default());
    let (stop, _controller) = start_controller_into(client.clone(), &ns, metrics.clone());
    let mut cluster = cluster_json("quiet", &class, 1);
    // The default probe interval, timeout and threshold; pod IPs must stay put for the
    // forwarders: report only, never delete a pod.
    cluster["spec"]["health"] = json!({"autoHeal": false});
    apply_cluster(&client, &ns, &cluster).await;
    let mut forwarders = Vec::new();
    let pod = running_pods(&client, &ns, "quiet", 1).await.remove(0);
    let ip = pod
        .status
        .and_then(|s| s.pod_ip)
        .expect("kwok gave the pod an IP");
    let peer = &world.peers[0];
    for (port, to) in [(5001, &peer.kubo_api), (9094, &peer.cluster_api)] {
        let listen: SocketAddr = format!("{ip}:{port}").parse().expect("address");
        forwarders.push(forward(listen, addr(to)).await);
    }
    let api: Api<IpfsCluster> = Api::namespaced(client.clone(), &ns);
    let healthy = |s: PeerState| s == PeerState::Healthy;
    time_until(&api, "the peer Healthy", healthy).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every write of the IpfsCluster while blocks are added and pinned.
    let exported_before = exported_repo_size(&metrics);
    let (writes, added) = count_writes(&api, &world, TRAFFIC).await;
    let last = api.get("quiet").await.expect("get");
    let status = last.status.expect("status");
    let p = &status.peers[0];
    println!(
        "{added} blocks added and pinned in {}s: {} status writes ({writes:?}); peer {:?}, \
         repoSize {:?}, bytesIn {:?}, pinsPinned {:?} as last written",
        TRAFFIC.as_secs(),
        writes.len(),
        p.state,
        p.repo_size,
        p.bytes_in,
        p.pins_pinned
    );
    assert_eq!(p.state, PeerState::Healthy, "{p:?}");
    assert!(added >= 50, "traffic: {added} blocks");
    // The figures did move under the traffic (every probe round saw new ones).
    let repo = world.kubo(0, "repo/stat", &[("size-only", "true")]).await;
    let now = repo["RepoSize"].as_i64().expect("RepoSize");
    println!("Kubo's repository now {now} bytes");
    assert!(p.repo_size.is_some_and(|s| s < now), "{p:?} vs {now}");
    // ... and the metrics followed them between the writes: the probe rounds of a steady
    // cluster run without a reconcile or a write, and export what they see (the last write may
    // have come with the last round of the traffic: the next round exports the size it left).
    let written = p.repo_size.unwrap_or(i64::MAX);
    let exported = crate::support::wait_for(
        "a probe round to export a repository size past the one last written",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || async { exported_repo_size(&metrics).filter(|e| *e > written) },
    )
    .await;
    println!(
        "exported repository size {exported_before:?} before the traffic, {exported} after \
         (written {written})"
    );
    assert!(exported > exported_before.unwrap_or(0));
    let again = api.get("quiet").await.expect("get");
    assert_eq!(
        again.metadata.resource_version, last.metadata.resource_version,
        "the size was exported without a status write"
    );
    // A write that changes health (a pin briefly in error lowers the score) is what a status is
    // for; the writes that change nothing but the traffic figures are the minute's refresh at most.
    let figures_only: Vec<_> = writes.iter().filter(|w| w.figures_only).collect();
    assert!(
        figures_only.len() <= 1,
        "at most the minute's refresh of the traffic figures: {figures_only:?}"
    );

    for (daemon, which) in [("Kubo", 0), ("IPFS Cluster", 1)] {
        let signal = |s: Signal| match which {
            0 => peer.kubo.signal(s),
            _ => peer.cluster.as_ref().expect("cluster daemon").signal(s),
        };
        signal(Signal::SIGSTOP);
        let seen = time_until(&api, &format!("not healthy after {daemon} stopped"), |s| {
            s != PeerState::Healthy
        })
        .await;
        println!(
            "{daemon} stopped: shown not healthy after {:.1} s",
            seen.as_secs_f64()
        );
        let c = api.get("quiet").await.expect("get");
        let p = c.status.expect("status").peers.remove(0);
        signal(Signal::SIGCONT);
        assert!(
            p.last_error
                .as_deref()
                .is_some_and(|e| e.contains("hung: no answer to 3 liveness pings")),
            "{p:?}"
        );
        assert!(seen <= Duration::from_secs(5), "{daemon}: {seen:?}");
        let back = time_until(&api, &format!("healthy after SIGCONT of {daemon}"), healthy).await;
        println!(
            "{daemon} continued: healthy again after {:.1} s",
            back.as_secs_f64()
        );
    }
    let _ = stop.send(());
    for f in forwarders {
        f.abort();
    }
}

/// The repository size of peer `quiet-0` as `metrics` export it.
fn exported_repo_size(metrics: &Metrics) -> Option<i64> {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("ipfs_kit_peer_repo_size_bytes{") && l.contains("quiet-0"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// One write of the IpfsCluster seen while traffic ran.
#[derive(Debug)]
struct Write {
    resource_version: String,
    /// Whether it changed nothing but the volatile figures (traffic, repository size, pin
    /// counts) and the times of the status written before it.
    figures_only: bool,
}

/// The status without what a write of the traffic figures alone changes.
fn health_of(status: Option<&IpfsClusterStatus>) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    for p in v["peers"].as_array_mut().into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            for figure in [
                "repoSize",
                "bytesIn",
                "bytesOut",
                "pinsPinned",
                "pinsQueued",
                "pinsPinning",
                "lastProbe",
            ] {
                p.remove(figure);
            }
        }
    }
    for c in v["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(c) = c.as_object_mut() {
            c.remove("lastTransitionTime");
        }
    }
    v
}

/// The writes the IpfsCluster took while `world` got blocks added and pinned for `duration`
/// (the initial listing not counted), and how many blocks were added.
async fn count_writes(
    api: &Api<IpfsCluster>,
    world: &IpfsWorld,
    duration: Duration,
) -> (Vec<Write>, u32) {
    let start = api.get("quiet").await.expect("get");
    let from = start.metadata.resource_version.clone().unwrap_or_default();
    let watch = watcher(
        api.clone(),
        watcher::Config::default().fields("metadata.name=quiet"),
    )
    .applied_objects();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        futures::pin_mut!(watch);
        while let Some(Ok(c)) = watch.next().await {
            eprintln!(
                "IpfsCluster written: {}",
                serde_json::to_string(&c.status).unwrap_or_default()
            );
            let _ = tx.send(c);
        }
    });
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < duration {
        let data = format!("more traffic {n} {:?}", Instant::now()).repeat(64);
        let cid = world.put_block(0, data.as_bytes()).await;
        world.pin(0, &cid).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let mut writes = Vec::new();
    let mut health = health_of(start.status.as_ref());
    while let Ok(c) = rx.try_recv() {
        let resource_version = c.metadata.resource_version.unwrap_or_default();
        if resource_version == from
            || writes
                .iter()
                .any(|w: &Write| w.resource_version == resource_version)
        {
            continue;
        }
        let now = health_of(c.status.as_ref());
        writes.push(Write {
            resource_version,
            figures_only: now == health,
        });
        health = now;
    }
    (writes, n)
}
