//! Step `upgrade`: the gate's decision carried out (the StatefulSet applied with the new
//! partition) and announced (an Event for each pod updated, a stall, the end of a rollout).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::events::EventType;

use super::{Gate, GateInput, Rollout, current_update_revision, decide, partition_of, peer_pod};
use crate::api::IpfsCluster;
use crate::api::conditions::PROGRESSING;
use crate::reconcile::status::{UPGRADE_STALLED, UPGRADING, Upgrade};
use crate::reconcile::{Assessment, HealthLevel, UnixMillis};
use crate::runtime::kube::apply::{self, ApplyError};
use crate::runtime::kube::build::Names;
use crate::runtime::kube::context::Context;
use crate::runtime::kube::observe::Observation;

/// What one round saw, for [`carry_out`].
pub struct Round<'a> {
    pub names: &'a Names,
    pub observed: &'a Observation,
    pub assessment: &'a Assessment,
    pub grace: std::time::Duration,
    pub now: UnixMillis,
}

/// Decides the partition from the round and applies it when it moves (`built` gives the
/// StatefulSet as built from the spec, called only then). Returns the StatefulSet as it now is and the rollout.
pub async fn carry_out(
    cluster: &IpfsCluster,
    built: impl FnOnce() -> Option<StatefulSet>,
    live: Option<Arc<StatefulSet>>,
    round: Round<'_>,
    ns: &str,
    ctx: &Context,
) -> Result<(Option<Arc<StatefulSet>>, Rollout), ApplyError> {
    let live = match live {
        Some(live) if !cluster.spec.paused => live,
        other => return Ok((other, Rollout::Settled)),
    };
    let gate = decide(&gate_input(cluster, &live, &round), |o| round.names.peer(o));
    announce(cluster, &gate, partition_of(&live), ctx).await;
    if gate.partition == partition_of(&live) {
        return Ok((Some(live), gate.rollout));
    }
    // Built from the spec this reconcile read (which built before, so this cannot fail).
    let Some(built) = built() else {
        return Ok((Some(live), gate.rollout));
    };
    // Boxed: rarely run, and large; a reconcile that does not move the partition need not carry it.
    let written = Box::pin(apply::statefulset_partition(
        cluster,
        built,
        &live,
        gate.partition,
        ns,
        ctx,
    ))
    .await?;
    Ok((Some(Arc::new(written)), gate.rollout))
}

fn gate_input(cluster: &IpfsCluster, live: &StatefulSet, round: &Round<'_>) -> GateInput {
    let a = round.assessment;
    let healthy = |peer: &str| {
        a.health
            .peers
            .iter()
            .any(|p| p.peer == peer && p.level == HealthLevel::Healthy)
    };
    let pods = (0..cluster.spec.replicas)
        .map(|o| {
            let peer = round.names.peer(o);
            round
                .observed
                .pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(peer.as_str()))
                .and_then(|p| peer_pod(p, healthy(&peer)))
        })
        .collect();
    GateInput {
        replicas: cluster.spec.replicas,
        partition: partition_of(live),
        update_revision: current_update_revision(live),
        current_revision: live
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone()),
        pods,
        healing: a.decision.history.restart_in_progress.is_some(),
        grace: round.grace,
        now: round.now,
    }
}

/// The Events of a gate decision: a pod updated, a stall (once: when the status did not say it
/// yet), the end of a rollout.
async fn announce(cluster: &IpfsCluster, gate: &Gate, before: i32, ctx: &Context) {
    let previous = cluster
        .status
        .iter()
        .flat_map(|s| s.conditions.iter())
        .find(|c| c.type_ == PROGRESSING);
    let was = |reason: &str| previous.is_some_and(|c| c.reason == reason);
    let generation = cluster.metadata.generation.unwrap_or_default();
    let (type_, reason, note) = match &gate.rollout {
        Rollout::Upgrading(what) if gate.partition < before => (
            EventType::Normal,
            "UpgradingPeer",
            format!("generation {generation}: {what}"),
        ),
        Rollout::Stalled { .. } => {
            let message = stalled_message(cluster, &gate.rollout);
            if previous.is_some_and(|c| c.reason == UPGRADE_STALLED && c.message == message) {
                return;
            }
            (EventType::Warning, UPGRADE_STALLED, message)
        }
        Rollout::Settled if was(UPGRADING) || was(UPGRADE_STALLED) => (
            EventType::Normal,
            "Upgraded",
            format!(
                "generation {generation}: every peer runs the current pod template and is healthy"
            ),
        ),
        _ => return,
    };
    ctx.event(cluster, type_, reason, note).await;
}

/// The rollout as the status reports it.
pub fn for_status(cluster: &IpfsCluster, rollout: &Rollout) -> Option<Upgrade> {
    match rollout {
        Rollout::Settled => None,
        Rollout::Upgrading(what) => Some(Upgrade::Upgrading(what.clone())),
        Rollout::Stalled { .. } => Some(Upgrade::Stalled(stalled_message(cluster, rollout))),
    }
}

/// The Progressing message of a stalled rollout: the peer, why, and how to go on.
pub fn stalled_message(cluster: &IpfsCluster, rollout: &Rollout) -> String {
    let Rollout::Stalled { peer, why } = rollout else {
        return String::new();
    };
    format!(
        "upgrade stalled at peer {peer}: {why}; the peers not updated yet keep the previous pod \
         template; set spec.kubo.image ({}) or spec.cluster.image ({}) back, or to a working \
         image, to go on",
        cluster.spec.kubo.image, cluster.spec.cluster.image
    )
}
