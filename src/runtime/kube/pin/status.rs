//! The IpfsPin status from what the cluster says about the CID (pure): each peer's state, the
//! phase, and the `Ready` condition.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::api::conditions::{ConditionStatus, READY, set_condition};
use crate::api::{IpfsCluster, IpfsPin, IpfsPinStatus, PeerPinState, PeerPinStatus, PinPhase};
use crate::probe::cluster::{Allocation, PeerPinInfo};
use crate::runtime::kube::build::Names;

/// What the cluster says about one CID.
#[derive(Debug, Default)]
pub struct PinObservation {
    /// `None`: the CID is not in the cluster's pinset.
    pub allocation: Option<Allocation>,
    /// Each peer's state, by cluster peer id.
    pub peers: BTreeMap<String, PeerPinInfo>,
}

pub fn state_of(status: &str) -> PeerPinState {
    match status {
        "pinned" => PeerPinState::Pinned,
        "pinning" => PeerPinState::Pinning,
        "pin_queued" => PeerPinState::Queued,
        "remote" => PeerPinState::Remote,
        "unpinned" | "unpinning" | "unpin_queued" => PeerPinState::Unpinned,
        _ => PeerPinState::Error,
    }
}

/// Status from what the cluster said; peer ids are named by the cluster's status where known.
pub fn status_from(
    pin: &IpfsPin,
    cluster: &IpfsCluster,
    observed: &PinObservation,
    previous: &IpfsPinStatus,
) -> IpfsPinStatus {
    let names: BTreeMap<&str, &str> = cluster
        .status
        .iter()
        .flat_map(|s| s.peers.iter())
        .filter_map(|p| Some((p.cluster_peer_id.as_deref()?, p.name.as_str())))
        .collect();
    let peers: Vec<PeerPinStatus> = observed
        .peers
        .iter()
        .map(|(id, info)| peer_pin_status(&names, id, info))
        .collect();
    let mut status = IpfsPinStatus {
        phase: None,
        observed_generation: pin.metadata.generation,
        conditions: previous.conditions.clone(),
        peers,
        ..IpfsPinStatus::default()
    };
    status.summarize_peers();
    let pinned = status.pinned.unwrap_or(0);
    let allocated = status.allocated.unwrap_or(0);
    let errors = status
        .peers
        .iter()
        .filter(|p| p.state == PeerPinState::Error)
        .count();
    let phase = if allocated > 0 && pinned == allocated {
        PinPhase::Pinned
    } else if errors > 0 && pinned > 0 {
        PinPhase::Degraded
    } else if errors > 0 {
        PinPhase::Failed
    } else {
        PinPhase::Pinning
    };
    status.phase = Some(phase);
    let (ready, reason, message) = ready_condition(phase, pinned, allocated, errors);
    set_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::from(ready),
        reason,
        &message,
        pin.metadata.generation,
        now(),
    );
    status
}

/// Whether `status` lists a pod of `cluster` past its replicas: IPFS Cluster still reports a
/// peer removed by a scale-in for a while. (Peers that are not the cluster's pods, or that it
/// never drops, do not keep the pin from settling.)
pub fn lists_removed_peers(status: &IpfsPinStatus, cluster: &IpfsCluster) -> bool {
    let names = Names::of(&cluster.name_any());
    status.peers.iter().any(|p| {
        names
            .ordinal_of(&p.peer)
            .is_some_and(|ordinal| ordinal >= cluster.spec.replicas)
    })
}

/// One peer's state of the CID, the peer named by the cluster's status where known, else by
/// its cluster peer name, else by its id.
fn peer_pin_status(names: &BTreeMap<&str, &str>, id: &str, info: &PeerPinInfo) -> PeerPinStatus {
    let peer = names
        .get(id)
        .map(|n| n.to_string())
        .or_else(|| (!info.peername.is_empty()).then(|| info.peername.clone()))
        .unwrap_or_else(|| id.to_owned());
    PeerPinStatus {
        peer,
        peer_id: Some(id.to_owned()),
        state: state_of(&info.status),
        error: (!info.error.is_empty()).then(|| info.error.clone()),
        timestamp: info
            .timestamp
            .as_deref()
            .and_then(|t| t.parse().ok())
            .map(Time),
    }
}

/// The `Ready` condition of a pin in `phase`: whether, reason and message.
fn ready_condition(
    phase: PinPhase,
    pinned: i32,
    allocated: i32,
    errors: usize,
) -> (bool, &'static str, String) {
    match phase {
        PinPhase::Pinned => (
            true,
            "Pinned",
            format!("pinned on {pinned}/{allocated} allocated peers"),
        ),
        PinPhase::Degraded => (
            false,
            "PinErrors",
            format!("pinned on {pinned}/{allocated}; {errors} peers report errors"),
        ),
        PinPhase::Failed => (
            false,
            "PinErrors",
            format!("{errors} peers report errors, none has it pinned"),
        ),
        _ => (
            false,
            "Pinning",
            format!("pinned on {pinned}/{allocated} allocated peers so far"),
        ),
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// The status when the cluster could not be asked: previous per-peer states kept, `Ready` says
/// why.
pub fn status_not_asked(
    pin: &IpfsPin,
    previous: &IpfsPinStatus,
    reason: &str,
    message: &str,
) -> IpfsPinStatus {
    let mut status = previous.clone();
    status.observed_generation = pin.metadata.generation;
    if status.phase.is_none() {
        status.phase = Some(PinPhase::Pending);
    }
    set_condition(
        &mut status.conditions,
        READY,
        ConditionStatus::False,
        reason,
        message,
        pin.metadata.generation,
        now(),
    );
    status
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cluster_pin_states_map_to_peer_states() {
        assert_eq!(state_of("pinned"), PeerPinState::Pinned);
        assert_eq!(state_of("pin_queued"), PeerPinState::Queued);
        assert_eq!(state_of("pinning"), PeerPinState::Pinning);
        assert_eq!(state_of("remote"), PeerPinState::Remote);
        assert_eq!(state_of("unpinned"), PeerPinState::Unpinned);
        assert_eq!(state_of("pin_error"), PeerPinState::Error);
        assert_eq!(state_of("cluster_error"), PeerPinState::Error);
    }

    pub(crate) fn pin(min: Option<i32>, name: Option<&str>) -> IpfsPin {
        serde_json::from_value(json!({
            "apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsPin",
            "metadata": {"name": "site", "namespace": "ns", "generation": 3},
            "spec": {"clusterRef": {"name": "store"},
                     "cid": "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
                     "replicationMin": min, "name": name}
        }))
        .expect("pin")
    }

    #[test]
    fn status_counts_allocated_peers_and_names_them() {
        let p = pin(None, None);
        let cluster: IpfsCluster = serde_json::from_value(json!({
            "apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
            "metadata": {"name": "store", "namespace": "ns"},
            "spec": {"replicas": 3},
            "status": {"peers": [{"name": "store-0", "clusterPeerId": "A", "state": "Healthy", "restarts": 0}]}
        }))
        .expect("cluster");
        let observed = |states: &[(&str, &str)]| PinObservation {
            allocation: None,
            peers: states
                .iter()
                .map(|(id, s)| {
                    (
                        id.to_string(),
                        PeerPinInfo {
                            peername: format!("name-{id}"),
                            status: s.to_string(),
                            error: if *s == "pin_error" {
                                "no space".into()
                            } else {
                                String::new()
                            },
                            timestamp: Some("2026-11-27T21:00:00Z".into()),
                        },
                    )
                })
                .collect(),
        };
        let prev = IpfsPinStatus::default();
        let s = status_from(
            &p,
            &cluster,
            &observed(&[("A", "pinned"), ("B", "pinned"), ("C", "remote")]),
            &prev,
        );
        assert_eq!(s.phase, Some(PinPhase::Pinned));
        assert_eq!(s.pinned_summary.as_deref(), Some("2/2"));
        assert_eq!(s.peers[0].peer, "store-0", "named by the cluster's status");
        assert_eq!(s.peers[1].peer, "name-B", "or by the cluster's peer name");
        assert_eq!(s.observed_generation, Some(3));
        let s = status_from(
            &p,
            &cluster,
            &observed(&[("A", "pinned"), ("B", "pin_error")]),
            &prev,
        );
        assert_eq!(s.phase, Some(PinPhase::Degraded));
        assert_eq!(s.peers[1].error.as_deref(), Some("no space"));
        let s = status_from(&p, &cluster, &observed(&[("A", "pin_error")]), &prev);
        assert_eq!(s.phase, Some(PinPhase::Failed));
        let s = status_from(
            &p,
            &cluster,
            &observed(&[("A", "pin_queued"), ("B", "pinned")]),
            &prev,
        );
        assert_eq!(s.phase, Some(PinPhase::Pinning));
    }

    #[test]
    fn peers_of_the_cluster_past_its_replicas_are_removed_ones() {
        let p = pin(None, None);
        let cluster = |replicas: i32| -> IpfsCluster {
            serde_json::from_value(json!({
                "apiVersion": "ipfskit.io/v1alpha1", "kind": "IpfsCluster",
                "metadata": {"name": "store", "namespace": "ns"},
                "spec": {"replicas": replicas},
                "status": {"peers": [
                    {"name": "store-0", "clusterPeerId": "A", "state": "Healthy", "restarts": 0}
                ]}
            }))
            .expect("cluster")
        };
        let observed = |peers: &[(&str, &str)]| PinObservation {
            allocation: None,
            peers: peers
                .iter()
                .map(|(id, name)| {
                    let info = PeerPinInfo {
                        peername: name.to_string(),
                        status: "pinned".into(),
                        error: String::new(),
                        timestamp: None,
                    };
                    (id.to_string(), info)
                })
                .collect(),
        };
        let prev = IpfsPinStatus::default();
        let listed = &[("A", "store-0"), ("B", "store-1"), ("X", "outside-peer")];
        let two = cluster(2);
        let status = status_from(&p, &two, &observed(listed), &prev);
        assert!(!lists_removed_peers(&status, &two), "{status:?}");
        // Scaled in to one: store-1 is still listed until IPFS Cluster drops it; a peer that is
        // not one of the cluster's pods never counts.
        let one = cluster(1);
        let status = status_from(&p, &one, &observed(listed), &prev);
        assert!(lists_removed_peers(&status, &one));
        let dropped = status_from(
            &p,
            &one,
            &observed(&[("A", "x"), ("X", "outside-peer")]),
            &prev,
        );
        assert!(!lists_removed_peers(&dropped, &one));
    }
}
