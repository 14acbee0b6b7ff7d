//! The libp2p view of a probe round: which peer sees which, in the IPFS Cluster peerset and in
//! the Kubo swarm, and whether the peers split into separate groups (a partition).
//!
//! Only peers whose API answered this round are *observed*: their own lists say whom they see.
//! A peer whose API is down cannot be placed (its id and its view are unknown this round), so it
//! is listed as unobserved and never counts as a group of its own. A partition means the
//! observed peers split into more than one group.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::probe::report::{ClusterStatus, KuboStatus, PeerReport, ProcessState};

/// This round's Kubo status of a peer, if its Kubo API answered and its process was not seen
/// exited (an exit observed by the runtime beats a stale answer).
pub fn kubo_status(report: &PeerReport) -> Option<&KuboStatus> {
    match (&report.kubo, report.kubo_process) {
        (_, ProcessState::Exited) => None,
        (Ok(status), _) => Some(status),
        (Err(_), _) => None,
    }
}

/// This round's IPFS Cluster status of a peer, if its Cluster API answered and its process was
/// not seen exited.
pub fn cluster_status(report: &PeerReport) -> Option<&ClusterStatus> {
    match (&report.cluster, report.cluster_process) {
        (_, ProcessState::Exited) => None,
        (Ok(status), _) => Some(status),
        (Err(_), _) => None,
    }
}

/// Whether both APIs of the peer answered and neither process was seen exited: the "healthy
/// probe" that resets failure counts and ends a restart.
pub fn apis_up(report: &PeerReport) -> bool {
    kubo_status(report).is_some() && cluster_status(report).is_some()
}

/// Who sees whom in one layer (cluster peerset or Kubo swarm).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerView {
    /// For each observed peer, the names of the other observed peers it sees, sorted.
    pub sees: BTreeMap<String, Vec<String>>,
    /// Peers whose API did not answer this round, sorted: their view is unknown.
    pub unobserved: Vec<String>,
    /// Groups of observed peers linked by "sees" in either direction; largest group first,
    /// equal sizes ordered by their first name. Names within a group are sorted.
    pub groups: Vec<Vec<String>>,
    /// True when the observed peers form more than one group.
    pub partitioned: bool,
}

impl LayerView {
    /// Builds the layer from each peer's own id and the ids it says it sees. `layer` returns
    /// `None` for a peer that is not observed in this layer.
    fn build<'a>(
        reports: &'a [PeerReport],
        layer: impl Fn(&'a PeerReport) -> Option<(&'a str, &'a [String])>,
    ) -> Self {
        let mut name_of_id: BTreeMap<&str, &str> = BTreeMap::new();
        let mut observed: Vec<(&str, &[String])> = Vec::new();
        let mut unobserved = BTreeSet::new();
        for report in reports {
            match layer(report) {
                Some((id, seen)) => {
                    name_of_id.insert(id, report.peer.as_str());
                    observed.push((report.peer.as_str(), seen));
                }
                None => {
                    unobserved.insert(report.peer.clone());
                }
            }
        }

        let mut sees: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut links: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for &(name, seen) in &observed {
            let mut names: BTreeSet<&str> = BTreeSet::new();
            for id in seen {
                if let Some(&other) = name_of_id.get(id.as_str())
                    && other != name
                {
                    names.insert(other);
                }
            }
            links.entry(name).or_default();
            for &other in &names {
                links.entry(name).or_default().insert(other);
                links.entry(other).or_default().insert(name);
            }
            sees.insert(
                name.to_owned(),
                names.into_iter().map(str::to_owned).collect(),
            );
        }

        let groups = connected_groups(&links);
        Self {
            sees,
            unobserved: unobserved.into_iter().collect(),
            partitioned: groups.len() > 1,
            groups,
        }
    }

    /// Number of other observed peers that `peer` sees (0 when `peer` is not observed).
    pub fn sees_count(&self, peer: &str) -> usize {
        self.sees.get(peer).map_or(0, Vec::len)
    }

    /// Number of observed peers other than `peer`: the ones that could see it or be seen by it.
    pub fn others_observed(&self, peer: &str) -> usize {
        self.sees.keys().filter(|name| *name != peer).count()
    }

    /// Number of other observed peers that see `peer`.
    pub fn seen_by_count(&self, peer: &str) -> usize {
        self.sees
            .iter()
            .filter(|(name, seen)| *name != peer && seen.iter().any(|s| s == peer))
            .count()
    }

    /// The group `peer` belongs to, if it is observed.
    pub fn group_of(&self, peer: &str) -> Option<&[String]> {
        self.groups
            .iter()
            .find(|group| group.iter().any(|name| name == peer))
            .map(Vec::as_slice)
    }

    /// Whether `peer` is observed but outside the largest group (the side of a partition that
    /// should reach out to the rest).
    pub fn is_split_off(&self, peer: &str) -> bool {
        self.partitioned
            && self.sees.contains_key(peer)
            && self
                .groups
                .first()
                .is_some_and(|largest| !largest.iter().any(|name| name == peer))
    }
}

/// Connected components of an undirected graph, largest first, ties by first name.
fn connected_groups(links: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<Vec<String>> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for &start in links.keys() {
        if !seen.insert(start) {
            continue;
        }
        let mut group = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            for &next in links.get(node).into_iter().flatten() {
                if seen.insert(next) {
                    group.insert(next);
                    stack.push(next);
                }
            }
        }
        groups.push(group.into_iter().map(str::to_owned).collect());
    }
    groups.sort_by(|a, b| {
        b.len()
            .cmp(&a.len())
            .then_with(|| a.first().cmp(&b.first()))
    });
    groups
}

/// Connectivity between the peers of one cluster in one probe round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectivityView {
    /// IPFS Cluster peerset: A sees B when B's cluster peer id is in A's `GET /peers`.
    pub cluster: LayerView,
    /// Kubo swarm: A sees B when B's Kubo peer id is among A's `swarm/peers`.
    pub swarm: LayerView,
}

impl ConnectivityView {
    /// Builds both layers from one round of reports.
    pub fn from_reports(reports: &[PeerReport]) -> Self {
        Self {
            cluster: LayerView::build(reports, |report| {
                cluster_status(report)
                    .map(|status| (status.peer_id.as_str(), status.peers_seen.as_slice()))
            }),
            swarm: LayerView::build(reports, |report| {
                kubo_status(report)
                    .map(|status| (status.peer_id.as_str(), status.swarm_peers.as_slice()))
            }),
        }
    }

    /// True when either layer is split into more than one group.
    pub fn partitioned(&self) -> bool {
        self.cluster.partitioned || self.swarm.partitioned
    }

    /// A one-line description of the partition(s), e.g.
    /// `cluster peerset split into [demo-0, demo-1] | [demo-2]`; `None` when not partitioned.
    pub fn partition_summary(&self) -> Option<String> {
        let describe = |what: &str, layer: &LayerView| {
            layer.partitioned.then(|| {
                let groups: Vec<String> = layer
                    .groups
                    .iter()
                    .map(|group| format!("[{}]", group.join(", ")))
                    .collect();
                format!("{what} split into {}", groups.join(" | "))
            })
        };
        let parts: Vec<String> = [
            describe("cluster peerset", &self.cluster),
            describe("Kubo swarm", &self.swarm),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::report::{FailureKind, PinCounts, ProbeFailure};

    /// Kubo peer id of a test peer.
    pub(crate) fn kubo_id(name: &str) -> String {
        format!("12D3Kubo-{name}")
    }

    /// Cluster peer id of a test peer.
    pub(crate) fn cluster_id(name: &str) -> String {
        format!("12D3Cluster-{name}")
    }

    pub(crate) fn failure(kind: FailureKind) -> ProbeFailure {
        ProbeFailure {
            kind,
            message: "POST /api/v0/id: timed out after 5s".to_owned(),
        }
    }

    /// A fully healthy peer that sees `sees` in both layers.
    pub(crate) fn peer(name: &str, sees: &[&str]) -> PeerReport {
        PeerReport {
            peer: name.to_owned(),
            kubo_process: ProcessState::Running,
            cluster_process: ProcessState::Running,
            kubo: Ok(KuboStatus {
                peer_id: kubo_id(name),
                agent_version: "kubo/0.42.0".to_owned(),
                version: "0.42.0".to_owned(),
                swarm_peers: sees.iter().map(|s| kubo_id(s)).collect(),
                storage_max: 1 << 30,
                repo_size: 1024,
                total_in: 0,
                total_out: 0,
            }),
            cluster: Ok(ClusterStatus {
                peer_id: cluster_id(name),
                peername: name.to_owned(),
                version: "1.1.5".to_owned(),
                cluster_peers: sees.iter().map(|s| cluster_id(s)).collect(),
                // `/peers` lists the peer itself too.
                peers_seen: std::iter::once(name)
                    .chain(sees.iter().copied())
                    .map(cluster_id)
                    .collect(),
                ipfs_error: None,
                pins: Ok(PinCounts {
                    pinned: 4,
                    ..PinCounts::default()
                }),
            }),
        }
    }

    /// `n` healthy peers `p0..p{n-1}`, fully meshed.
    pub(crate) fn mesh(n: usize) -> Vec<PeerReport> {
        let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        names
            .iter()
            .map(|name| {
                let others: Vec<&str> = names
                    .iter()
                    .filter(|o| *o != name)
                    .map(String::as_str)
                    .collect();
                peer(name, &others)
            })
            .collect()
    }

    #[test]
    fn full_mesh_is_one_group() {
        let view = ConnectivityView::from_reports(&mesh(3));
        assert!(!view.partitioned());
        assert_eq!(view.cluster.groups, vec![vec!["p0", "p1", "p2"]]);
        assert_eq!(view.swarm.sees["p0"], vec!["p1", "p2"]);
        assert_eq!(view.cluster.seen_by_count("p1"), 2);
        assert_eq!(view.swarm.others_observed("p1"), 2);
        assert_eq!(view.partition_summary(), None);
    }

    #[test]
    fn a_chain_is_one_group_seen_in_either_direction() {
        // p0 sees p1, p2 sees p1: all one group although nobody sees everybody.
        let reports = vec![peer("p0", &["p1"]), peer("p1", &[]), peer("p2", &["p1"])];
        let view = ConnectivityView::from_reports(&reports);
        assert!(!view.partitioned());
        assert_eq!(view.swarm.seen_by_count("p1"), 2);
        assert_eq!(view.swarm.sees_count("p1"), 0);
    }

    #[test]
    fn a_split_is_flagged_with_the_largest_group_first() {
        let reports = vec![
            peer("p0", &["p1"]),
            peer("p1", &["p0"]),
            peer("p2", &["p3"]),
            peer("p3", &["p2", "p4"]),
            peer("p4", &["p3"]),
        ];
        let view = ConnectivityView::from_reports(&reports);
        assert!(view.cluster.partitioned && view.swarm.partitioned);
        assert_eq!(
            view.swarm.groups,
            vec![vec!["p2", "p3", "p4"], vec!["p0", "p1"]]
        );
        assert!(view.swarm.is_split_off("p0"));
        assert!(!view.swarm.is_split_off("p3"));
        assert_eq!(
            view.swarm.group_of("p1"),
            Some(&["p0".to_owned(), "p1".to_owned()][..])
        );
        assert_eq!(
            view.partition_summary().as_deref(),
            Some(
                "cluster peerset split into [p2, p3, p4] | [p0, p1]; \
                 Kubo swarm split into [p2, p3, p4] | [p0, p1]"
            )
        );
    }

    #[test]
    fn equal_groups_are_ordered_by_name() {
        let reports = vec![peer("b", &[]), peer("a", &[])];
        let view = ConnectivityView::from_reports(&reports);
        assert_eq!(view.cluster.groups, vec![vec!["a"], vec!["b"]]);
        assert!(view.swarm.is_split_off("b"));
    }

    #[test]
    fn layers_are_independent() {
        // Swarm fully connected, but p2's cluster peer is not in anybody's peerset.
        let mut reports = mesh(3);
        for report in &mut reports {
            if let Ok(cluster) = &mut report.cluster {
                if report.peer == "p2" {
                    cluster.peers_seen = vec![cluster_id("p2")];
                } else {
                    cluster.peers_seen.retain(|id| *id != cluster_id("p2"));
                }
            }
        }
        let view = ConnectivityView::from_reports(&reports);
        assert!(!view.swarm.partitioned);
        assert!(view.cluster.partitioned);
        assert_eq!(view.cluster.groups, vec![vec!["p0", "p1"], vec!["p2"]]);
        assert_eq!(view.cluster.seen_by_count("p2"), 0);
    }

    #[test]
    fn peers_that_did_not_answer_are_unobserved_not_partitions() {
        let mut reports = mesh(3);
        reports[2].kubo = Err(failure(FailureKind::Timeout));
        reports[1].cluster_process = ProcessState::Exited;
        let view = ConnectivityView::from_reports(&reports);
        assert_eq!(view.swarm.unobserved, vec!["p2"]);
        assert_eq!(view.cluster.unobserved, vec!["p1"]);
        assert!(!view.partitioned());
        assert_eq!(view.swarm.sees["p0"], vec!["p1"]);
        assert_eq!(view.swarm.others_observed("p0"), 1);
    }

    #[test]
    fn unknown_ids_and_self_are_ignored() {
        let mut p0 = peer("p0", &["p1"]);
        if let Ok(kubo) = &mut p0.kubo {
            kubo.swarm_peers.push("12D3SomePublicPeer".to_owned());
            kubo.swarm_peers.push(kubo_id("p0"));
        }
        let view = ConnectivityView::from_reports(&[p0, peer("p1", &["p0"])]);
        assert_eq!(view.swarm.sees["p0"], vec!["p1"]);
    }

    #[test]
    fn no_peers_is_not_a_partition() {
        let view = ConnectivityView::from_reports(&[]);
        assert!(!view.partitioned());
        assert!(view.cluster.groups.is_empty());
    }
}
