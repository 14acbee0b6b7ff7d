//! The pure reconcile core: from observations, history and the clock, decide how healthy the
//! peers are and what to do about it. No I/O happens here; the runtimes (Kubernetes, local)
//! probe, carry out the actions and keep the history between rounds.
//!
//! - [`connectivity`]: who sees whom in the cluster peerset and the Kubo swarm; partitions.
//! - [`score`]: the 0-100 health score per peer and per cluster, and its levels.
//! - [`policy`]: the healing ladder (reconnect, restart one peer, backoff, budget, quorum).
//! - [`status`]: the `IpfsClusterStatus` both runtimes report, from an assessed round.
//!
//! [`assess`] runs all three on one probe round. See `docs/health.md` for the formula, the
//! thresholds and the ladder in prose.

pub mod connectivity;
pub mod policy;
pub mod score;
pub mod status;

#[cfg(test)]
mod policy_tests;

use serde::{Deserialize, Serialize};

pub use connectivity::{ConnectivityView, LayerView};
pub use policy::{
    Action, ClusterHistory, Consensus, Decision, HealingAction, HealingEntry, HealingLog,
    HealingResult, HealingState, HealthPolicy, PeerHealing, PeerHistory, RestartInProgress,
    RestartScope, RestartUnit, SwarmTarget, UnixMillis, decide,
};
pub use score::{ClusterHealth, HealthLevel, PeerScore, ScoreBreakdown, score_cluster, score_peer};

use crate::probe::report::PeerReport;

/// Everything the core concludes from one probe round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assessment {
    /// Who sees whom, and partitions.
    pub connectivity: ConnectivityView,
    /// Scores and levels, with restarts up to and including this round's.
    pub health: ClusterHealth,
    /// Healing actions and the history for the next round.
    pub decision: Decision,
}

/// Assesses one probe round: connectivity, healing decision, then scores (which count the
/// restarts in the returned history). Pure: same inputs, same result.
pub fn assess(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    history: &ClusterHistory,
    now: UnixMillis,
) -> Assessment {
    let connectivity = ConnectivityView::from_reports(reports);
    let decision = policy::decide_with_view(policy, reports, &connectivity, history, now);
    let restarts = decision.history.restarts_last_hour(now);
    let health = score_cluster(policy, reports, &connectivity, &restarts);
    Assessment {
        connectivity,
        health,
        decision,
    }
}
