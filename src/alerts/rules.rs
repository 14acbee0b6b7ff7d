//! Which alert conditions hold in one round of a cluster, from its reconciled status, the
//! restart budget the health engine has left per peer and, when known, the size of the repo
//! volume. Pure: the `for` durations are the engine's business.
//!
//! Each condition is the Prometheus rule's expression over the series the operator exports:
//!
//! | alert | condition (per peer unless said) |
//! |---|---|
//! | `IpfsKitPeerDown` | Kubo and IPFS Cluster did not both answer the last probe (`ipfs_kit_peer_up == 0`) |
//! | `IpfsKitClusterDegraded` | the cluster's phase is Degraded |
//! | `IpfsKitClusterUnhealthy` | the cluster's phase is Unhealthy |
//! | `IpfsKitHealingBudgetExhausted` | no restart left in the hour (`maxRestartsPerHour` > 0) |
//! | `IpfsKitPinsInError` | pins in error > 0 |
//! | `IpfsKitPartition` | an answering peer sees fewer IPFS Cluster peers than the peers that answer, or fewer Kubo swarm peers than the other answering peers |
//! | `IpfsKitRepoNearStorageMax` | repo size > 90 % of `Datastore.StorageMax` |
//! | `IpfsKitVolumeNearFull` | repo size > 90 % of the volume (when its size is known) |

use std::collections::BTreeMap;

use super::{AlertName, NEAR_FULL_RATIO};
use crate::api::{ClusterPhase, IpfsClusterStatus, PeerStatus};
use crate::reconcile::{ClusterHistory, UnixMillis};

/// What a round knows about one cluster.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// The namespace in Kubernetes; `None` locally.
    pub namespace: Option<&'a str>,
    /// The IpfsCluster's name.
    pub cluster: &'a str,
    /// The status this round computed.
    pub status: &'a IpfsClusterStatus,
    /// Restarts left in the current hour, per peer; a peer absent has no budget to exhaust
    /// (restarts disabled).
    pub budget_left: &'a BTreeMap<String, u32>,
    /// The size of each peer's repo volume in bytes, if known (the claim's size in Kubernetes,
    /// the filesystem's locally).
    pub volume_capacity: Option<u64>,
}

impl Facts<'_> {
    /// `namespace/name`, or `name` locally.
    pub fn cluster_key(&self) -> String {
        match self.namespace {
            Some(ns) => format!("{ns}/{}", self.cluster),
            None => self.cluster.to_owned(),
        }
    }
}

/// An alert condition that holds this round, with the words it would fire with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub alert: AlertName,
    /// The peer concerned; `None` for the whole cluster.
    pub peer: Option<String>,
    /// One sentence: what is wrong.
    pub summary: String,
    /// What was seen, and what it means or what to look at.
    pub description: String,
}

/// Restarts left in the hour before `now`, per peer of `status`: `max_per_hour` minus the
/// restarts in the budget window; empty when `max_per_hour` is 0 (restarts disabled).
pub fn budget_left(
    status: &IpfsClusterStatus,
    history: &ClusterHistory,
    max_per_hour: u32,
    now: UnixMillis,
) -> BTreeMap<String, u32> {
    if max_per_hour == 0 {
        return BTreeMap::new();
    }
    crate::metrics::healing_budgets(status, history, max_per_hour, now)
}

/// Whether both of the peer's daemons answered the last probe (`ipfs_kit_peer_up`).
pub fn peer_up(peer: &PeerStatus) -> bool {
    peer.peer_id.is_some() && peer.cluster_peer_id.is_some()
}

/// The conditions that hold in this round.
pub fn active(facts: &Facts<'_>) -> Vec<Condition> {
    let mut found = cluster_conditions(facts);
    let up = facts.status.peers.iter().filter(|p| peer_up(p)).count();
    for peer in &facts.status.peers {
        peer_conditions(facts, peer, up, &mut found);
    }
    found
}

fn cluster_conditions(facts: &Facts<'_>) -> Vec<Condition> {
    let key = facts.cluster_key();
    let status = facts.status;
    let score = status
        .health_score
        .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
    let why = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::conditions::DEGRADED)
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no reason recorded".into());
    let (alert, word) = match status.phase {
        Some(ClusterPhase::Degraded) => (AlertName::ClusterDegraded, "degraded"),
        Some(ClusterPhase::Unhealthy) => (AlertName::ClusterUnhealthy, "unhealthy"),
        _ => return Vec::new(),
    };
    vec![Condition {
        alert,
        peer: None,
        summary: format!("IpfsCluster {key} is {word}"),
        description: format!("health score {score}: {why}"),
    }]
}

fn peer_conditions(facts: &Facts<'_>, p: &PeerStatus, up: usize, found: &mut Vec<Condition>) {
    let key = facts.cluster_key();
    let name = &p.name;
    let mut add = |alert, summary: String, description: String| {
        found.push(Condition {
            alert,
            peer: Some(name.clone()),
            summary,
            description,
        });
    };
    if !peer_up(p) {
        let error = p.last_error.as_deref().unwrap_or("no error recorded");
        add(
            AlertName::PeerDown,
            format!("Peer {name} of IpfsCluster {key} is down"),
            format!(
                "its Kubo RPC and IPFS Cluster REST APIs do not both answer the operator's \
                 probes (state {:?}; last error: {error})",
                p.state
            ),
        );
    }
    if facts.budget_left.get(name) == Some(&0) {
        add(
            AlertName::HealingBudgetExhausted,
            format!("Peer {name} of IpfsCluster {key} has no restart left this hour"),
            format!(
                "the operator restarted it {} times in all and reached \
                 spec.health.maxRestartsPerHour: it is left alone until a restart leaves the \
                 one-hour window (see status.healing)",
                p.restarts
            ),
        );
    }
    if let Some(errors) = p.pins_error.filter(|n| *n > 0) {
        add(
            AlertName::PinsInError,
            format!("Peer {name} of IpfsCluster {key} has {errors} pins in error"),
            "IPFS Cluster reports pins in error on this peer (`ipfs-cluster-ctl status \
             --filter error`); recover them with `ipfs-cluster-ctl recover`"
                .into(),
        );
    }
    if let Some(condition) = partition(&key, p, up) {
        found.push(condition);
    }
    storage_conditions(facts, p, found);
}

/// A peer that answers but misses some of the answering peers.
fn partition(key: &str, p: &PeerStatus, up: usize) -> Option<Condition> {
    if !peer_up(p) || up < 2 {
        return None;
    }
    let up_i32 = i32::try_from(up).unwrap_or(i32::MAX);
    let seen = p.cluster_peers_seen.unwrap_or(0);
    let swarm = p.swarm_peers.unwrap_or(0);
    if seen >= up_i32 && swarm >= up_i32 - 1 {
        return None;
    }
    let name = &p.name;
    Some(Condition {
        alert: AlertName::Partition,
        peer: Some(name.clone()),
        summary: format!("Peer {name} of IpfsCluster {key} does not see all its peers"),
        description: format!(
            "{up} peers answer, but it sees {seen} IPFS Cluster peers (itself included) and \
             has {swarm} Kubo swarm connections: the cluster is split or this peer cannot \
             reach the others"
        ),
    })
}

fn storage_conditions(facts: &Facts<'_>, p: &PeerStatus, found: &mut Vec<Condition>) {
    let key = facts.cluster_key();
    let name = &p.name;
    let Some(size) = p.repo_size.and_then(|s| u64::try_from(s).ok()) else {
        return;
    };
    let percent = |of: u64| (size as f64 / of as f64) * 100.0;
    if let Some(max) = p.storage_max.and_then(|m| u64::try_from(m).ok())
        && max > 0
        && size as f64 > max as f64 * NEAR_FULL_RATIO
    {
        found.push(Condition {
            alert: AlertName::RepoNearStorageMax,
            peer: Some(name.clone()),
            summary: format!(
                "Kubo repository of {name} in IpfsCluster {key} is at {:.0}% of StorageMax",
                percent(max)
            ),
            description: format!(
                "{size} of {max} bytes (Datastore.StorageMax, spec.kubo.storageMax): garbage \
                 collection cannot free pinned blocks; raise the limit or unpin"
            ),
        });
    }
    if let Some(capacity) = facts.volume_capacity.filter(|c| *c > 0)
        && size as f64 > capacity as f64 * NEAR_FULL_RATIO
    {
        found.push(Condition {
            alert: AlertName::VolumeNearFull,
            peer: Some(name.clone()),
            summary: format!(
                "Kubo repository of {name} in IpfsCluster {key} fills {:.0}% of its volume",
                percent(capacity)
            ),
            description: format!(
                "{size} bytes on a volume of {capacity} bytes: grow spec.kubo.storage.size (or \
                 the disk) before Kubo runs out of space"
            ),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PeerState;

    pub(crate) fn up_peer(name: &str, seen: i32, swarm: i32) -> PeerStatus {
        PeerStatus {
            name: name.into(),
            peer_id: Some(format!("12D3KooW{name}")),
            cluster_peer_id: Some(format!("12D3KooWc{name}")),
            cluster_peers_seen: Some(seen),
            swarm_peers: Some(swarm),
            repo_size: Some(100),
            storage_max: Some(1000),
            pins_error: Some(0),
            state: PeerState::Healthy,
            ..PeerStatus::default()
        }
    }

    fn names(facts: &Facts<'_>) -> Vec<(AlertName, Option<String>)> {
        active(facts)
            .into_iter()
            .map(|c| (c.alert, c.peer))
            .collect()
    }

    fn facts<'a>(status: &'a IpfsClusterStatus, budget: &'a BTreeMap<String, u32>) -> Facts<'a> {
        Facts {
            namespace: Some("prod"),
            cluster: "web",
            status,
            budget_left: budget,
            volume_capacity: None,
        }
    }

    #[test]
    fn a_healthy_cluster_has_no_condition() {
        let status = IpfsClusterStatus {
            phase: Some(ClusterPhase::Healthy),
            peers: vec![up_peer("web-0", 2, 1), up_peer("web-1", 2, 1)],
            ..IpfsClusterStatus::default()
        };
        let budget = BTreeMap::from([("web-0".into(), 5), ("web-1".into(), 5)]);
        assert_eq!(names(&facts(&status, &budget)), []);
    }

    #[test]
    fn a_down_peer_is_down_and_the_others_are_not_partitioned_by_it() {
        let mut down = up_peer("web-1", 0, 0);
        down.peer_id = None;
        down.last_error = Some("Kubo RPC: unreachable: connection refused".into());
        let status = IpfsClusterStatus {
            phase: Some(ClusterPhase::Degraded),
            peers: vec![up_peer("web-0", 2, 1), down, up_peer("web-2", 2, 1)],
            ..IpfsClusterStatus::default()
        };
        let found = active(&facts(&status, &BTreeMap::new()));
        let keys: Vec<_> = found.iter().map(|c| (c.alert, c.peer.clone())).collect();
        assert_eq!(
            keys,
            [
                (AlertName::ClusterDegraded, None),
                (AlertName::PeerDown, Some("web-1".into())),
            ]
        );
        assert_eq!(
            found[1].summary,
            "Peer web-1 of IpfsCluster prod/web is down"
        );
        assert!(
            found[1].description.contains("connection refused"),
            "{}",
            found[1].description
        );
    }

    #[test]
    fn a_peer_that_misses_answering_peers_is_partitioned() {
        let status = IpfsClusterStatus {
            peers: vec![
                up_peer("web-0", 1, 0),
                up_peer("web-1", 2, 1),
                up_peer("web-2", 3, 2),
            ],
            ..IpfsClusterStatus::default()
        };
        assert_eq!(
            names(&facts(&status, &BTreeMap::new())),
            [
                (AlertName::Partition, Some("web-0".into())),
                (AlertName::Partition, Some("web-1".into())),
            ]
        );
    }

    #[test]
    fn budget_pins_and_storage_conditions() {
        let mut p = up_peer("web-0", 1, 0);
        p.pins_error = Some(3);
        p.repo_size = Some(950);
        let status = IpfsClusterStatus {
            peers: vec![p],
            ..IpfsClusterStatus::default()
        };
        let budget = BTreeMap::from([("web-0".into(), 0)]);
        let mut f = facts(&status, &budget);
        f.volume_capacity = Some(1050);
        let found = active(&f);
        let keys: Vec<_> = found.iter().map(|c| c.alert).collect();
        assert_eq!(
            keys,
            [
                AlertName::HealingBudgetExhausted,
                AlertName::PinsInError,
                AlertName::RepoNearStorageMax,
                AlertName::VolumeNearFull,
            ]
        );
        assert_eq!(
            found[2].summary,
            "Kubo repository of web-0 in IpfsCluster prod/web is at 95% of StorageMax"
        );
        // 90 % exactly is not above; an unknown volume size never fires.
        f.volume_capacity = None;
        let mut at_limit = status.clone();
        at_limit.peers[0].repo_size = Some(900);
        f.status = &at_limit;
        assert!(
            !names(&f)
                .iter()
                .any(|(a, _)| *a == AlertName::RepoNearStorageMax)
        );
    }

    #[test]
    fn the_budget_is_max_minus_restarts_in_the_window_and_none_when_disabled() {
        let status = IpfsClusterStatus {
            peers: vec![up_peer("web-0", 1, 0), up_peer("web-1", 1, 0)],
            ..IpfsClusterStatus::default()
        };
        let mut history = ClusterHistory::default();
        let hour = 3_600_000;
        let now = 10 * hour;
        history.peers.entry("web-0".into()).or_default().restarts =
            vec![now - hour - 1, now - 1000, now - 10];
        let left = budget_left(&status, &history, 2, now);
        assert_eq!(
            left,
            BTreeMap::from([("web-0".into(), 0), ("web-1".into(), 2)])
        );
        assert!(budget_left(&status, &history, 0, now).is_empty());
    }
}
