//! Gated upgrades: a new pod template (a new `spec.kubo.image` or `spec.cluster.image`, a new
//! configuration, a rolling restart) reaches the peers one pod at a time, and the next pod is
//! updated only once the updated ones are healthy by the operator's own probes (both APIs answer
//! and the other peers list the peer in the cluster peerset: health level Healthy), not merely
//! Ready for kubelet.
//!
//! The gate is the StatefulSet's `updateStrategy.rollingUpdate.partition`: the StatefulSet
//! controller updates only the pods whose ordinal is at least the partition, and recreates any
//! other pod (deleted by a healing restart, lost with its node) from the current, old template.
//! At rest the partition is closed (`replicas`). When the template changes, [`decide`] opens it
//! one ordinal at a time, highest first: to `replicas - 1`, then lower once every pod from the
//! partition up runs the new template and is healthy. (The alternative, `OnDelete` with the
//! operator deleting pods, recreates every deleted pod from the new template, so a healing
//! restart of a not yet updated peer would update it out of turn.)
//!
//! A pod being updated that does not become healthy stalls the rollout: at once when kubelet says
//! why it cannot run (an image that cannot be pulled, a container that exited
//! [`STALL_RESTARTS`] times), otherwise once the pod is older than the start grace
//! (`restart_timeout`, 5 min by default). The partition then stays where it is: the other peers
//! keep the old template. A corrected spec is a new template: a revert makes the stalled pod's
//! template the current one again (the StatefulSet controller replaces just that pod), a good new
//! image restarts the rollout from the highest ordinal.
//!
//! Pure: [`decide`] takes what the round saw and returns the partition and what to report.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::reconcile::UnixMillis;

/// The label the StatefulSet controller puts on each pod: the revision of its template.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Exits of one container of a pod being updated after which the rollout stalls without waiting
/// for the start grace: the new template crash-loops.
pub const STALL_RESTARTS: i32 = 2;

/// Waiting reasons of a container that cannot start from its image or spec: the rollout stalls
/// at once.
const CANNOT_START: [&str; 7] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// One peer pod as the gate sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPod {
    /// Its template revision (`controller-revision-hash`).
    pub revision: Option<String>,
    /// Healthy by the operator's probes this round.
    pub healthy: bool,
    /// When the pod was created (the StatefulSet controller creates it anew to update it).
    pub created: Option<UnixMillis>,
    /// Why kubelet cannot run it, when that is final enough to stall on (see [`cannot_run`]).
    pub cannot_run: Option<String>,
}

/// What the gate is given: the StatefulSet as last seen and the round's pods, by ordinal.
#[derive(Clone, Debug)]
pub struct GateInput {
    pub replicas: i32,
    /// The partition the StatefulSet has now.
    pub partition: i32,
    /// The template revision pods are updated to, when the StatefulSet status is current (it
    /// has seen the latest spec, and the cache is not behind the operator's own last write).
    pub update_revision: Option<String>,
    /// The revision the StatefulSet controller calls current (the one before a rollout; it
    /// becomes the update revision once every pod is updated and Ready).
    pub current_revision: Option<String>,
    /// Pod of each ordinal `0..replicas` (`None`: none, or being deleted).
    pub pods: Vec<Option<PeerPod>>,
    /// A healing restart is in progress: no pod is updated meanwhile (one at a time).
    pub healing: bool,
    /// How long a pod being updated may take to become healthy.
    pub grace: Duration,
    pub now: UnixMillis,
}

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every pod runs the current template (or the status does not tell yet).
    Settled,
    /// Pods are being updated: `n/m peers updated` and what it waits for.
    Upgrading(String),
    /// A pod being updated does not become healthy: which, and why.
    Stalled { peer: String, why: String },
}

/// The gate's decision for this round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub partition: i32,
    pub rollout: Rollout,
}

/// The partition and the state of the rollout, from the pods of this round. `name` gives a
/// peer's name from its ordinal.
pub fn decide(input: &GateInput, name: impl Fn(i32) -> String) -> Gate {
    let keep = |rollout| Gate {
        partition: input.partition,
        rollout,
    };
    let Some(revision) = input.update_revision.as_deref() else {
        return keep(Rollout::Settled);
    };
    let updated = |o: i32| -> Option<&PeerPod> {
        let pod = input.pods.get(usize::try_from(o).ok()?)?.as_ref()?;
        (pod.revision.as_deref() == Some(revision)).then_some(pod)
    };
    let settled = Gate {
        partition: input.replicas,
        rollout: Rollout::Settled,
    };
    // At rest: no pod runs another template (a missing pod is being recreated, not updated).
    let others = input
        .pods
        .iter()
        .flatten()
        .any(|p| p.revision.as_deref() != Some(revision));
    if input.current_revision.as_deref() == Some(revision) && !others {
        return settled;
    }
    let count = (0..input.replicas)
        .filter(|&o| updated(o).is_some())
        .count();
    let all_healthy = (0..input.replicas).all(|o| updated(o).is_some_and(|p| p.healthy));
    if all_healthy {
        return settled;
    }
    let progress = format!("{count}/{} peers updated", input.replicas);
    // The lowest ordinal from which every pod up to the highest is updated and healthy.
    let done_from = (0..input.replicas)
        .rev()
        .take_while(|&o| updated(o).is_some_and(|p| p.healthy))
        .last()
        .unwrap_or(input.replicas);
    let partition = input.partition.clamp(0, input.replicas);
    if done_from <= partition {
        if input.healing {
            let why = format!("{progress}; waiting for the healing restart in progress");
            return keep(Rollout::Upgrading(why));
        }
        let next = done_from - 1;
        let why = format!("{progress}; updating {}", name(next));
        return Gate {
            partition: next,
            rollout: Rollout::Upgrading(why),
        };
    }
    // The highest pod from the partition up that is not updated and healthy yet.
    let waiting = done_from - 1;
    let peer = name(waiting);
    match updated(waiting) {
        Some(pod) => match stalled(pod, input) {
            Some(why) => keep(Rollout::Stalled { peer, why }),
            None => keep(Rollout::Upgrading(format!(
                "{progress}; waiting for {peer} to be healthy"
            ))),
        },
        None => keep(Rollout::Upgrading(format!(
            "{progress}; waiting for the StatefulSet controller to update {peer}"
        ))),
    }
}

/// Why an updated pod that is not healthy stalls the rollout, if it does.
fn stalled(pod: &PeerPod, input: &GateInput) -> Option<String> {
    if let Some(why) = &pod.cannot_run {
        return Some(why.clone());
    }
    let age = input.now.saturating_sub(pod.created?);
    let grace = u64::try_from(input.grace.as_millis()).unwrap_or(u64::MAX);
    (age >= grace).then(|| {
        format!(
            "not healthy by the operator's probes {} s after its pod was created with the new \
             template",
            age / 1000
        )
    })
}

/// Why kubelet cannot run `pod`'s containers, when it is final enough to stall a rollout on: a
/// container that cannot start from its image or spec, or one that exited [`STALL_RESTARTS`]
/// times (init containers included), e.g. `init container kubo-config exits with code 127
/// (restarted 2 times)`.
pub fn cannot_run(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let inits = status.init_container_statuses.iter().flatten();
    let mains = status.container_statuses.iter().flatten();
    inits
        .map(|c| (c, "init container"))
        .chain(mains.map(|c| (c, "container")))
        .find_map(|(c, kind)| container_failure(c).map(|why| format!("{kind} {} {why}", c.name)))
}

fn container_failure(c: &ContainerStatus) -> Option<String> {
    let state = c.state.as_ref();
    let waiting = state.and_then(|s| s.waiting.as_ref());
    if let Some(reason) = waiting
        .and_then(|w| w.reason.as_deref())
        .filter(|r| CANNOT_START.contains(r))
    {
        let message = waiting.and_then(|w| w.message.as_deref()).unwrap_or("");
        let line = message.lines().next().unwrap_or("");
        return Some(format!("cannot start: {reason}: {line}"));
    }
    if c.restart_count < STALL_RESTARTS {
        return None;
    }
    let exit = state
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))?;
    Some(format!(
        "exits with code {} ({}; restarted {} times)",
        exit.exit_code,
        exit.reason.as_deref().unwrap_or("no reason given"),
        c.restart_count
    ))
}

/// The partition `sts` has (0 when it sets none: the API server's default).
pub fn partition_of(sts: &StatefulSet) -> i32 {
    sts.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
}

/// Sets the rolling update partition of `sts`.
pub fn set_partition(sts: &mut StatefulSet, partition: i32) {
    sts.spec.update_strategy = Some(StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateStatefulSetStrategy {
            partition: Some(partition),
            max_unavailable: None,
        }),
    });
}

/// The partition to apply with a new body of the StatefulSet: the live one while a rollout is
/// under way (the gate moves it), closed (`replicas`) when the live StatefulSet is settled, so
/// that a new template changes no pod before the gate opens, and 0 for a new StatefulSet (its
/// pods are all created at once from the one template there is).
pub fn partition_to_apply(live: Option<&StatefulSet>, replicas: i32) -> i32 {
    let Some(live) = live else { return 0 };
    let status = live.status.as_ref();
    let current = status.and_then(|s| s.current_revision.as_deref());
    let update = status.and_then(|s| s.update_revision.as_deref());
    let settled = current.is_some() && current == update;
    if settled {
        replicas
    } else {
        partition_of(live)
    }
}

/// The update revision of `sts` when its status is current: the StatefulSet controller has seen
/// its latest spec.
pub fn current_update_revision(sts: &StatefulSet) -> Option<String> {
    let status = sts.status.as_ref()?;
    if sts.metadata.generation > status.observed_generation {
        return None;
    }
    status.update_revision.clone()
}

/// `pod` as the gate sees it, `healthy` by this round's probes.
pub fn peer_pod(pod: &Pod, healthy: bool) -> Option<PeerPod> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    Some(PeerPod {
        revision: pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_LABEL))
            .cloned(),
        healthy,
        created: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| u64::try_from(t.0.as_millisecond()).ok()),
        cannot_run: cannot_run(pod),
    })
}

#[cfg(test)]
mod tests;

/// The peer being updated while a rollout waits for it (the pod at the partition, on the new
/// template): its failing probes are the rollout's to judge, not the healing policy's, so its
/// processes are reported as starting (no restart is decided for it; a stall is reported
/// instead).
pub fn leave_to_rollout(
    reports: &mut [crate::probe::report::PeerReport],
    live: Option<&StatefulSet>,
    pods: &[Pod],
    peer_name: impl Fn(i32) -> String,
) {
    use crate::probe::report::ProcessState;
    let Some(live) = live else { return };
    let status = live.status.as_ref();
    let Some(revision) = current_update_revision(live) else {
        return;
    };
    if status.and_then(|s| s.current_revision.as_deref()) == Some(revision.as_str()) {
        return;
    }
    let peer = peer_name(partition_of(live));
    let on_new_template = pods.iter().any(|p| {
        p.metadata.name.as_deref() == Some(peer.as_str())
            && p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(REVISION_LABEL))
                == Some(&revision)
    });
    for r in reports
        .iter_mut()
        .filter(|r| on_new_template && r.peer == peer)
    {
        if r.kubo.is_err() || r.cluster.is_err() {
            r.kubo_process = ProcessState::Starting;
            r.cluster_process = ProcessState::Starting;
        }
    }
}

pub mod step;
