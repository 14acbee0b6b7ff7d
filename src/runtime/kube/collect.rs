//! Step `collect`: Kubo's garbage collection for the peers of one cluster (see
//! [`crate::runtime::gc`]): a collection is started, in the background, for each peer whose
//! repository passed the watermark of its StorageMax, and its outcome is an Event on a later
//! round (`GarbageCollecting`, then `GarbageCollected` or `GarbageCollectionFailed`).

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::context::Context;
use super::observe::Observation;
use crate::api::IpfsCluster;
use crate::api::cluster::KUBO_RPC_PORT;
use crate::probe::Endpoint;
use crate::runtime::gc::{GcOutcome, GcSettings};

/// The key prefix of a cluster's peers in [`Context::gc`].
pub fn gc_prefix(cluster: &IpfsCluster) -> String {
    format!(
        "{}/{}/",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// Reports the collections that ended, then starts the ones this round calls for. Nothing is
/// started for a paused cluster.
pub async fn garbage(cluster: &IpfsCluster, observed: &Observation, ctx: &Context) {
    let prefix = gc_prefix(cluster);
    for (peer, outcome) in ctx.gc.take_outcomes(&prefix) {
        let (type_, reason) = match outcome {
            GcOutcome::Collected { .. } => (EventType::Normal, "GarbageCollected"),
            GcOutcome::Failed(_) => (EventType::Warning, "GarbageCollectionFailed"),
        };
        let note = format!("{peer}: {}", outcome.describe());
        ctx.event(cluster, type_, reason, note).await;
    }
    if cluster.spec.paused {
        return;
    }
    let settings = GcSettings::from_spec(&cluster.spec.kubo);
    let started = ctx
        .gc
        .start_due(&ctx.ipfs, &prefix, &settings, &observed.reports, |peer| {
            observed
                .pod_ip(peer)
                .map(|ip| Endpoint::at(ip, KUBO_RPC_PORT))
        });
    for s in started {
        let note = format!("{}: {}", s.peer, s.describe(&settings));
        ctx.event(cluster, EventType::Normal, "GarbageCollecting", note)
            .await;
    }
}
