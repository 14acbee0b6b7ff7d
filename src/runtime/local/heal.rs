//! The seam between the local supervisor and the shared health engine: the spec's `health`
//! section becomes a [`HealthPolicy`], each probe round is assessed by [`reconcile::assess`], and
//! the history is kept here between rounds. The supervisor only carries out the actions.

use crate::api::{Consensus as SpecConsensus, IpfsClusterSpec};
use crate::probe::report::PeerReport;
use crate::reconcile::{self, Assessment, ClusterHistory, Consensus, HealthPolicy};

use super::LocalError;

/// How long a restart of a local peer counts as in progress without an answer (the engine's
/// default suits pods, which may wait for a node and pull an image).
pub const LOCAL_RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Maps the spec (and the local generation counter) into the health engine's policy.
pub fn policy_from_spec(
    spec: &IpfsClusterSpec,
    generation: u64,
) -> Result<HealthPolicy, LocalError> {
    let consensus = match spec.cluster.consensus {
        SpecConsensus::Crdt => Consensus::Crdt,
        SpecConsensus::Raft => Consensus::Raft,
    };
    let replicas = u32::try_from(spec.replicas).unwrap_or(1).max(1);
    let mut policy = HealthPolicy::new(replicas, consensus);
    let h = &spec.health;
    policy.probe_interval = h.probe_interval().map_err(LocalError::Field)?;
    policy.probe_timeout = h.probe_timeout().map_err(LocalError::Field)?;
    policy.failure_threshold = u32::try_from(h.failure_threshold).unwrap_or(1);
    policy.auto_heal = h.auto_heal;
    policy.max_restarts_per_hour = u32::try_from(h.max_restarts_per_hour).unwrap_or(0);
    policy.min_peer_connections = u32::try_from(h.min_peer_connections).unwrap_or(0);
    policy.paused = spec.paused;
    policy.spec_generation = generation;
    // A local daemon answers within a second or two of its start, and the supervisor itself
    // waits up to START_TIMEOUT for it; a restart still not answering after this has failed.
    policy.restart_timeout = LOCAL_RESTART_TIMEOUT;
    Ok(policy)
}

/// The health engine as the supervisor uses it: one call per probe round.
#[derive(Clone, Debug)]
pub struct Healer {
    pub policy: HealthPolicy,
    history: ClusterHistory,
}

impl Healer {
    pub fn new(policy: HealthPolicy) -> Healer {
        Healer {
            policy,
            history: ClusterHistory::default(),
        }
    }

    /// Assesses a round and keeps the history for the next one.
    pub fn assess(&mut self, reports: &[PeerReport], now: u64) -> Assessment {
        let assessment = reconcile::assess(&self.policy, reports, &self.history, now);
        self.history = assessment.decision.history.clone();
        assessment
    }

    pub fn history(&self) -> &ClusterHistory {
        &self.history
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_health_section_maps_into_the_policy() {
        let mut spec = IpfsClusterSpec {
            replicas: 4,
            ..IpfsClusterSpec::default()
        };
        spec.health.probe_interval = "2s".into();
        spec.health.probe_timeout = "1s".into();
        spec.health.failure_threshold = 2;
        spec.health.auto_heal = false;
        spec.health.max_restarts_per_hour = 7;
        spec.health.min_peer_connections = 3;
        let policy = policy_from_spec(&spec, 9).expect("policy");
        assert_eq!(policy.replicas, 4);
        assert_eq!(policy.probe_interval, Duration::from_secs(2));
        assert_eq!(policy.probe_timeout, Duration::from_secs(1));
        assert_eq!(policy.failure_threshold, 2);
        assert!(!policy.auto_heal);
        assert_eq!(policy.max_restarts_per_hour, 7);
        assert_eq!(policy.min_peer_connections, 3);
        assert_eq!(policy.spec_generation, 9);
        assert_eq!(policy.consensus, Consensus::Crdt);
    }
}
