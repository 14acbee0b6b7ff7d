//! Step `heal`: carries out the health engine's actions on pods ([`KubePeers`], the Kubernetes
//! [`PeerRuntime`]) and turns every new healing log entry into an Event, so that
//! `kubectl describe` shows the ladder.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kube::runtime::events::EventType;
use tracing::info;

use super::build::Names;
use super::context::{CALL_TIMEOUT, Context};
use super::observe::Observation;
use crate::api::cluster::{KUBO_RPC_PORT, KUBO_SWARM_PORT};
use crate::api::{HealingAction, HealingResult, IpfsCluster};
use crate::metrics::{ClusterKey, healing_labels};
use crate::probe::Endpoint;
use crate::reconcile::status::healing_record;
use crate::reconcile::{Assessment, ClusterHistory, RestartScope, RestartUnit, SwarmTarget};
use crate::runtime::{PeerRuntime, carry_out};

/// The peers of one cluster as pods: what the health engine may do to them.
pub struct KubePeers<'a> {
    pub cluster: &'a IpfsCluster,
    pub names: &'a Names,
    pub ns: &'a str,
    pub observed: &'a Observation,
    pub ctx: &'a Context,
}

impl PeerRuntime for KubePeers<'_> {
    /// A hung daemon does not answer a request to stop, and kubelet restarts only containers
    /// that exit: the operator restarts a peer by deleting its pod (the StatefulSet recreates
    /// it), which restarts both daemons.
    const RESTART_UNIT: RestartUnit = RestartUnit::Peer;

    async fn restart(&mut self, peer: &str, _scope: RestartScope, reason: &str) {
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let (type_, event, note) = match api.delete(peer, &DeleteParams::default()).await {
            Ok(_) => {
                info!(cluster = %self.cluster.name_any(), %peer, "restarting peer: {reason}");
                (
                    EventType::Normal,
                    "RestartingPeer",
                    format!("deleted pod {peer} (the StatefulSet recreates it): {reason}"),
                )
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => return,
            Err(e) => (
                EventType::Warning,
                "RestartFailed",
                format!("deleting pod {peer} to restart it: {e}"),
            ),
        };
        self.ctx.event(self.cluster, type_, event, note).await;
    }

    async fn reconnect(&mut self, peer: &str, targets: &[SwarmTarget], reason: &str) {
        let Some(ip) = self.observed.pod_ip(peer) else {
            return;
        };
        let api = Endpoint::at(ip, KUBO_RPC_PORT);
        let mut failed = Vec::new();
        for t in targets {
            let host = self
                .names
                .peer_host(&t.peer, self.ns, &self.ctx.settings.cluster_domain);
            let addr = format!("/dns4/{host}/tcp/{KUBO_SWARM_PORT}/p2p/{}", t.peer_id);
            // Peering first: Kubo then keeps the connection itself, re-dialling the stable
            // DNS name when it drops, without a routing system and without the operator.
            let ipfs = &self.ctx.ipfs;
            let connected = match ipfs.swarm_peering_add(&api, &addr, CALL_TIMEOUT).await {
                Ok(()) => ipfs.swarm_connect(&api, &addr, CALL_TIMEOUT).await,
                Err(e) => Err(e),
            };
            if let Err(f) = connected {
                failed.push(format!("{}: {}", t.peer, f.message));
            }
        }
        let (type_, note) = if failed.is_empty() {
            (
                EventType::Normal,
                format!("connected {peer} to {} peers: {reason}", targets.len()),
            )
        } else {
            (
                EventType::Warning,
                format!("connecting {peer} to its peers: {}", failed.join("; ")),
            )
        };
        self.ctx
            .event(self.cluster, type_, "SwarmReconnect", note)
            .await;
    }
}

/// Carries out the round's actions (each counted in the healing metric), then publishes an
/// Event for every healing log entry new since `before`.
pub async fn carry_out_actions(
    peers: &mut KubePeers<'_>,
    assessment: &Assessment,
    before: &ClusterHistory,
) {
    let cluster = ClusterKey::kube(peers.ns, &peers.cluster.name_any());
    for (peer, action) in healing_labels(assessment, before) {
        peers.ctx.metrics.count_healing(&cluster, &peer, action);
    }
    for action in &assessment.decision.actions {
        carry_out(peers, action).await;
    }
    for entry in assessment.decision.history.log.entries() {
        if before.log.entries().any(|e| e == entry) {
            continue;
        }
        let record = healing_record(entry);
        let (type_, reason) = event_of(record.action, record.result);
        let note = format!("{}: {} ({:?})", entry.peer, record.reason, record.result);
        peers.ctx.event(peers.cluster, type_, reason, note).await;
    }
}

/// The Event type and reason of a healing log entry.
fn event_of(action: HealingAction, result: HealingResult) -> (EventType, &'static str) {
    let type_ = match result {
        HealingResult::Failed | HealingResult::Skipped => EventType::Warning,
        HealingResult::Pending | HealingResult::Succeeded => EventType::Normal,
    };
    let reason = match action {
        HealingAction::GiveUp => "HealingGivenUp",
        HealingAction::RestartPeer => "HealingRestart",
        HealingAction::SwarmConnect => "HealingReconnect",
        HealingAction::Backoff => "HealingBackoff",
    };
    (type_, reason)
}
