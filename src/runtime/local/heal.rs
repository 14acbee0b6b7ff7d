//! The seam between the local supervisor and the shared health engine: the spec's `health`
//! section becomes a [`HealthPolicy`], each probe round is assessed by [`reconcile::assess`], and
//! the history is kept here between rounds. The supervisor only carries out the actions.

use crate::api::{HealingRecord, IpfsClusterSpec};
use crate::probe::report::PeerReport;
use crate::reconcile::{self, Assessment, ClusterHistory, HealingEntry, HealthPolicy};

use super::LocalError;

/// How long a restart of a local peer counts as in progress without an answer (the engine's
/// default suits pods, which may wait for a node and pull an image).
pub const LOCAL_RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The health policy of the spec at the local generation counter, as the supervisor carries it
/// out (one daemon at a time, [`crate::runtime::PeerRuntime`]).
pub fn policy(spec: &IpfsClusterSpec, generation: u64) -> Result<HealthPolicy, LocalError> {
    let mut policy = crate::runtime::policy_for::<super::supervisor::Supervisor>(spec, generation)
        .map_err(LocalError::Field)?;
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

    /// Starts the healing log from the steps an earlier supervisor recorded in its last status
    /// (`status.healing`), so that they stay listed after a restart of `local up`.
    pub fn take_over_log(&mut self, records: &[HealingRecord]) {
        for r in records {
            self.history.log.push(HealingEntry {
                time: u64::try_from(r.time.0.as_millisecond()).unwrap_or(0),
                peer: r.peer.clone(),
                action: r.action,
                reason: r.reason.clone(),
                result: r.result,
                detail: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::RestartUnit;

    #[test]
    fn an_earlier_supervisors_healing_steps_are_kept() {
        let record: HealingRecord = serde_json::from_value(serde_json::json!({
            "time": "2026-11-27T20:30:00Z", "peer": "peer-1", "action": "RestartPeer",
            "reason": "Kubo exited (answering again after 2s)", "result": "Succeeded"}))
        .expect("record");
        let mut healer = Healer::new(policy(&IpfsClusterSpec::default(), 1).expect("policy"));
        healer.take_over_log(std::slice::from_ref(&record));
        let back: Vec<HealingRecord> = healer
            .history()
            .log
            .entries()
            .map(crate::reconcile::status::healing_record)
            .collect();
        assert_eq!(back, [record]);
    }

    #[test]
    fn the_local_policy_is_the_specs_at_daemon_granularity() {
        let spec = IpfsClusterSpec {
            replicas: 4,
            ..IpfsClusterSpec::default()
        };
        let local = policy(&spec, 9).expect("policy");
        let mut expected = HealthPolicy::from_spec(&spec, 9).expect("policy");
        expected.restart_unit = RestartUnit::Daemon;
        expected.restart_timeout = LOCAL_RESTART_TIMEOUT;
        assert_eq!(local, expected);
    }
}
