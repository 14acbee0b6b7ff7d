//! Gated upgrades on real pods: a new `spec.kubo.image` reaches the peers one pod at a time, each
//! healthy by the operator's probes before the next pod changes; an image whose Kubo exits at
//! once stalls the rollout at the first pod, the others keep the old image, and setting the image
//! back resumes to all healthy. Runs on the scenario's 3-peer cluster.

use std::time::{Duration, Instant};

use ipfs_kit_operator::api::{IpfsCluster, PeerState};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

use crate::report;
use crate::steps::Cluster;
use crate::support::clusters::{event_note, wait_status_within};
use crate::support::real_node::real_node;

/// The Kubo image the example runs (the default), and its full name in containerd.
const KUBO_IMAGE: &str = "ipfs/kubo:v0.42.0";
const KUBO_IMAGE_REF: &str = "docker.io/ipfs/kubo:v0.42.0";
/// The same build under a second tag.
const RETAGGED: &str = "localhost/ipfs-kit-test/kubo:v0.42.0-retagged";
/// A "Kubo" image without Kubo (the IPFS Cluster image): its `kubo-config` init container exits
/// at once (`ipfs: not found`).
const BROKEN: &str = "localhost/ipfs-kit-test/kubo:broken";
const CLUSTER_IMAGE: &str = "docker.io/ipfs/ipfs-cluster:v1.1.6";
const PEERS: usize = 3;

pub async fn kubo_image_changes_are_gated(c: &Cluster) {
    let node = real_node();
    node.tag_image(KUBO_IMAGE_REF, RETAGGED);
    node.tag_image(CLUSTER_IMAGE, BROKEN);
    let restarts_before = healing_restarts(&c.api.get(&c.name).await.expect("cluster"));
    one_healthy_pod_at_a_time(c).await;
    a_broken_image_stalls_at_the_first_pod(c).await;
    let after = c.api.get(&c.name).await.expect("cluster");
    assert_eq!(
        healing_restarts(&after),
        restarts_before,
        "the healing policy restarted a peer during a rollout"
    );
}

fn healing_restarts(cluster: &IpfsCluster) -> usize {
    let s = cluster.status.as_ref();
    s.map_or(0, |s| {
        s.healing
            .iter()
            .filter(|h| h.action == ipfs_kit_operator::api::HealingAction::RestartPeer)
            .count()
    })
}

async fn set_kubo_image(c: &Cluster, image: &str) {
    let patch = json!({"spec": {"kubo": {"image": image}}});
    c.api
        .patch(&c.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("set spec.kubo.image to {image}: {e}"));
}

/// Longest the status of a reconcile may lag behind the pod change that reconcile made.
const STATUS_WRITE_SLACK: Duration = Duration::from_secs(3);

/// Whether the status shows peer `ordinal` Healthy within `within`.
async fn status_shows_healthy(c: &Cluster, ordinal: usize, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Ok(cluster) = c.api.get(&c.name).await
            && healthy_in_status(&cluster, &c.peer(ordinal))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The Kubo image of each peer's pod (`None`: no pod, or being deleted).
async fn kubo_images(c: &Cluster) -> Vec<Option<String>> {
    let pods = c.pods.list(&ListParams::default()).await.expect("pods");
    (0..PEERS)
        .map(|i| {
            let pod: &Pod = pods
                .items
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(c.peer(i).as_str()))?;
            if pod.metadata.deletion_timestamp.is_some() {
                return None;
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .find(|k| k.name == "kubo")
                .and_then(|k| k.image.clone())
        })
        .collect()
}

fn healthy_in_status(cluster: &IpfsCluster, peer: &str) -> bool {
    cluster
        .status
        .iter()
        .flat_map(|s| s.peers.iter())
        .any(|p| p.name == peer && p.state == PeerState::Healthy)
}

fn progressing(cluster: &IpfsCluster) -> (String, String, String) {
    cluster
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == "Progressing")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// Per peer during a rollout: still on the old image, changing (its pod replaced or on the new
/// image, not yet healthy again in status since), or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Old,
    Changing { seen_unhealthy: bool },
    Done,
}

/// `spec.kubo.image` to a second tag of the same build: the pods change one at a time, highest
/// ordinal first, and none changes before the one before it is Healthy in the operator's status.
async fn one_healthy_pod_at_a_time(c: &Cluster) {
    let started = Instant::now();
    set_kubo_image(c, RETAGGED).await;
    let mut steps = [Step::Old; PEERS];
    let (mut changed_at, mut done_at) = ([None; PEERS], [None; PEERS]);
    let mut upgrading_seen = String::new();
    let deadline = started + Duration::from_secs(420);
    while steps.iter().any(|s| *s != Step::Done) {
        assert!(
            Instant::now() < deadline,
            "rollout not done in 420 s: {steps:?}"
        );
        let images = kubo_images(c).await;
        let cluster = c.api.get(&c.name).await.expect("cluster");
        let (_, reason, message) = progressing(&cluster);
        if reason == "Upgrading" && message.contains("peers updated") {
            upgrading_seen = message;
        }
        let now = started.elapsed();
        for i in 0..PEERS {
            let on_new = images[i].as_deref() == Some(RETAGGED);
            let healthy = on_new && healthy_in_status(&cluster, &c.peer(i));
            steps[i] = match steps[i] {
                Step::Old if images[i].as_deref() == Some(KUBO_IMAGE) => Step::Old,
                Step::Old | Step::Changing { .. } => {
                    changed_at[i].get_or_insert(now);
                    let seen_unhealthy = matches!(
                        steps[i],
                        Step::Changing {
                            seen_unhealthy: true
                        }
                    ) || !healthy;
                    if seen_unhealthy && healthy {
                        done_at[i] = Some(now);
                        Step::Done
                    } else {
                        Step::Changing { seen_unhealthy }
                    }
                }
                Step::Done => Step::Done,
            };
        }
        let changing: Vec<usize> = (0..PEERS)
            .filter(|&i| matches!(steps[i], Step::Changing { .. }))
            .collect();
        if let [.., previous] = changing[..]
            && changing.len() == 2
        {
            // The reconcile that judges a peer healthy opens the next pod and then writes the
            // status: the status says so a moment after the next pod starts changing.
            let shown = status_shows_healthy(c, previous, STATUS_WRITE_SLACK).await;
            assert!(
                shown,
                "peers {changing:?} updating at once at {now:?}: {steps:?} {images:?}"
            );
            done_at[previous] = Some(started.elapsed());
            steps[previous] = Step::Done;
            continue;
        }
        assert!(
            changing.len() <= 1,
            "peers {changing:?} updating at once at {now:?}: {steps:?} {images:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (changed, done): (Vec<Duration>, Vec<Duration>) = (
        changed_at.iter().map(|t| t.expect("changed")).collect(),
        done_at.iter().map(|t| t.expect("done")).collect(),
    );
    // Highest ordinal first; each next pod changed only after the previous one was Healthy.
    assert!(
        changed[2] < changed[1] && changed[1] < changed[0],
        "order: {changed:?}"
    );
    assert!(
        changed[1] + STATUS_WRITE_SLACK >= done[2] && changed[0] + STATUS_WRITE_SLACK >= done[1],
        "changed {changed:?}, healthy {done:?}"
    );
    assert!(
        upgrading_seen.contains("/3 peers updated"),
        "Progressing never said Upgrading n/3: {upgrading_seen:?}"
    );
    c.wait_healthy(PEERS, Duration::from_secs(60)).await;
    let per_pod: Vec<String> = (0..PEERS)
        .rev()
        .map(|i| {
            format!(
                "{}: {:.1} s",
                c.peer(i),
                (done[i] - changed[i]).as_secs_f64()
            )
        })
        .collect();
    report(&format!(
        "spec.kubo.image to a second tag -> 3 pods updated one at a time, each Healthy before the \
         next: {:.1} s (pod replaced -> Healthy in status: {})",
        started.elapsed().as_secs_f64(),
        per_pod.join(", ")
    ));
    event_note(
        &c.client,
        &c.ns,
        "Upgraded",
        "every peer runs the current pod template",
    )
    .await;
}

/// A Kubo image that exits at once: the rollout stops at the highest peer with UpgradeStalled
/// naming it and the exit code, the other peers keep the previous image and stay healthy; the
/// previous image back resumes to all healthy.
async fn a_broken_image_stalls_at_the_first_pod(c: &Cluster) {
    let started = Instant::now();
    set_kubo_image(c, BROKEN).await;
    let stalled = wait_status_within(
        &c.api,
        &c.name,
        "Progressing=False UpgradeStalled",
        Duration::from_secs(180),
        |cl| {
            let (status, reason, _) = progressing(cl);
            status == "False" && reason == "UpgradeStalled"
        },
    )
    .await;
    let detected = started.elapsed();
    let (_, _, message) = progressing(&stalled);
    let last = c.peer(PEERS - 1);
    assert!(
        message.contains(&format!("upgrade stalled at peer {last}: ")),
        "{message}"
    );
    assert!(
        message.contains("kubo-config exits with code 127"),
        "{message}"
    );
    event_note(&c.client, &c.ns, "UpgradeStalled", &last).await;
    // Hold on a little: the rollout stays stopped, the other peers on the previous image, Healthy.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let images = kubo_images(c).await;
    let cluster = c.api.get(&c.name).await.expect("cluster");
    assert_eq!(
        images[..PEERS - 1],
        vec![Some(RETAGGED.to_owned()); PEERS - 1],
        "{images:?}"
    );
    assert_eq!(images[PEERS - 1].as_deref(), Some(BROKEN));
    for i in 0..PEERS - 1 {
        assert!(
            healthy_in_status(&cluster, &c.peer(i)),
            "{} not Healthy: {:?}",
            c.peer(i),
            cluster.status
        );
    }
    assert_eq!(progressing(&cluster).1, "UpgradeStalled");

    let reverted = Instant::now();
    set_kubo_image(c, RETAGGED).await;
    c.wait_healthy(PEERS, Duration::from_secs(240)).await;
    assert_eq!(kubo_images(c).await, vec![Some(RETAGGED.to_owned()); PEERS]);
    report(&format!(
        "broken spec.kubo.image -> UpgradeStalled naming {last}: {:.1} s; image set back -> 3 \
         peers Healthy: {:.1} s",
        detected.as_secs_f64(),
        reverted.elapsed().as_secs_f64()
    ));
}
