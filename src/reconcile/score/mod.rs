//! The health score of a peer and of a cluster, 0 (down) to 100 (everything fine), and the
//! levels derived from it. The weights and thresholds live here and nowhere else; `docs/health.md`
//! explains them.
//!
//! Peer score = the sum of the components below, minus a restart penalty, clamped to 0..=100:
//!
//! | component | points | given when |
//! |---|---|---|
//! | Kubo API | [`WEIGHT_KUBO_API`] | Kubo answered its probe and its process was not seen exited |
//! | swarm | [`WEIGHT_SWARM`] | Kubo up; scaled by swarm connections to the other peers vs the required minimum |
//! | Kubo link | [`WEIGHT_KUBO_LINK`] | both APIs up and IPFS Cluster reports no error reaching its Kubo |
//! | Cluster API | [`WEIGHT_CLUSTER_API`] | IPFS Cluster answered and its process was not seen exited |
//! | membership | [`WEIGHT_MEMBERSHIP`] | Cluster up; scaled by the share of other answering peers whose `/peers` lists it |
//! | pins | [`WEIGHT_PINS`] | Cluster up and pin counts read: all if no pin is in error, half if some are, none if all are |
//!
//! minus [`PENALTY_PER_RESTART`] per operator restart in the last hour, at most
//! [`MAX_RESTART_PENALTY`]. Fractions round down. A peer whose Kubo has no swarm connection to
//! any of the siblings it must reach scores at most `HEALTHY_MIN_SCORE - 1`: degraded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::connectivity::{ConnectivityView, cluster_status, kubo_status};
use super::policy::HealthPolicy;
use crate::probe::report::{PeerReport, PinCounts, ProbeFailure, ProbeResult, ProcessState};

/// Points for a Kubo RPC API that answers.
pub const WEIGHT_KUBO_API: u32 = 25;
/// Points for Kubo swarm connections to enough of the other peers.
pub const WEIGHT_SWARM: u32 = 20;
/// Points for IPFS Cluster reaching its own Kubo (both APIs up, no `ipfs.error` in `/id`).
pub const WEIGHT_KUBO_LINK: u32 = 10;
/// Points for an IPFS Cluster REST API that answers.
pub const WEIGHT_CLUSTER_API: u32 = 10;
/// Points for being in the peerset of every other answering cluster peer.
pub const WEIGHT_MEMBERSHIP: u32 = 25;
/// Points for having no pin in error.
pub const WEIGHT_PINS: u32 = 10;
/// Points taken per restart by the operator in the last hour.
pub const PENALTY_PER_RESTART: u32 = 5;
/// Most points the restart penalty takes.
pub const MAX_RESTART_PENALTY: u32 = 25;

/// Lowest score of a healthy peer or cluster.
pub const HEALTHY_MIN_SCORE: u8 = 80;
/// Lowest score of a degraded peer or cluster; below it is unhealthy.
pub const DEGRADED_MIN_SCORE: u8 = 50;

const _: () = assert!(
    WEIGHT_KUBO_API
        + WEIGHT_SWARM
        + WEIGHT_KUBO_LINK
        + WEIGHT_CLUSTER_API
        + WEIGHT_MEMBERSHIP
        + WEIGHT_PINS
        == 100,
    "the score weights must add up to 100"
);
// Losing either API must make a peer unhealthy on its own (each API carries more than half of
// the points, the Kubo link counting for both).
const _: () = assert!(WEIGHT_KUBO_API + WEIGHT_SWARM + WEIGHT_KUBO_LINK > 50);
const _: () = assert!(WEIGHT_CLUSTER_API + WEIGHT_MEMBERSHIP + WEIGHT_PINS + WEIGHT_KUBO_LINK > 50);

/// Health level of a peer or a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HealthLevel {
    /// Score at least [`HEALTHY_MIN_SCORE`].
    Healthy,
    /// Score at least [`DEGRADED_MIN_SCORE`], below healthy.
    Degraded,
    /// Score below [`DEGRADED_MIN_SCORE`].
    Unhealthy,
}

impl HealthLevel {
    /// The level of a score: healthy >= 80 > degraded >= 50 > unhealthy.
    pub const fn from_score(score: u8) -> Self {
        if score >= HEALTHY_MIN_SCORE {
            Self::Healthy
        } else if score >= DEGRADED_MIN_SCORE {
            Self::Degraded
        } else {
            Self::Unhealthy
        }
    }

    /// Stable lower-case label (metrics, logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// The points each component contributed to a peer score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoreBreakdown {
    /// Out of [`WEIGHT_KUBO_API`].
    pub kubo_api: u32,
    /// Out of [`WEIGHT_SWARM`].
    pub swarm: u32,
    /// Out of [`WEIGHT_KUBO_LINK`].
    pub kubo_link: u32,
    /// Out of [`WEIGHT_CLUSTER_API`].
    pub cluster_api: u32,
    /// Out of [`WEIGHT_MEMBERSHIP`].
    pub membership: u32,
    /// Out of [`WEIGHT_PINS`].
    pub pins: u32,
    /// Points taken for recent restarts, at most [`MAX_RESTART_PENALTY`].
    pub restart_penalty: u32,
}

impl ScoreBreakdown {
    /// The score: sum of the components minus the penalty, clamped to 0..=100.
    pub fn total(&self) -> u8 {
        let sum = self.kubo_api
            + self.swarm
            + self.kubo_link
            + self.cluster_api
            + self.membership
            + self.pins;
        let clamped = sum.saturating_sub(self.restart_penalty).min(100);
        u8::try_from(clamped).unwrap_or(100)
    }
}

/// The score of one peer, with what cost it points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerScore {
    /// The peer's name.
    pub peer: String,
    /// 0..=100.
    pub score: u8,
    /// The level of `score`.
    pub level: HealthLevel,
    /// Points per component.
    pub breakdown: ScoreBreakdown,
    /// One line per component that lost points, in the order of the table above (empty at 100).
    pub findings: Vec<String>,
}

/// Scores one peer of a round. `restarts_last_hour` is how many times the operator restarted it
/// in the last hour ([`super::ClusterHistory::restarts_last_hour`]).
pub fn score_peer(
    policy: &HealthPolicy,
    view: &ConnectivityView,
    report: &PeerReport,
    restarts_last_hour: u32,
) -> PeerScore {
    let mut tally = Tally::default();
    let kubo_up = tally.kubo(policy, view, report);
    tally.cluster(view, report, kubo_up);
    tally.restarts(restarts_last_hour);
    let Tally {
        breakdown,
        findings,
        isolated,
    } = tally;
    let mut score = breakdown.total();
    if isolated {
        // Cut off from every sibling it should reach, a peer cannot fetch or serve the
        // cluster's content: at most degraded, whatever else answers.
        score = score.min(HEALTHY_MIN_SCORE - 1);
    }
    PeerScore {
        peer: report.peer.clone(),
        score,
        level: HealthLevel::from_score(score),
        breakdown,
        findings,
    }
}

/// A peer's score being added up, component by component, in the order of the table above.
#[derive(Default)]
struct Tally {
    breakdown: ScoreBreakdown,
    findings: Vec<String>,
    /// Kubo is up but has no swarm connection to any of the siblings it must reach.
    isolated: bool,
}

impl Tally {
    /// The Kubo API and swarm components; returns whether Kubo is up.
    fn kubo(
        &mut self,
        policy: &HealthPolicy,
        view: &ConnectivityView,
        report: &PeerReport,
    ) -> bool {
        if kubo_status(report).is_none() {
            self.findings.push(down_finding(
                "Kubo",
                report.kubo_process,
                report.kubo.as_ref().err(),
            ));
            return false;
        }
        let name = report.peer.as_str();
        self.breakdown.kubo_api = WEIGHT_KUBO_API;
        let others = view.swarm.others_observed(name);
        let required = swarm_required(policy, others);
        let connected = view.swarm.sees_count(name);
        self.breakdown.swarm = fraction(WEIGHT_SWARM, connected.min(required), required);
        self.isolated = required > 0 && connected == 0;
        if connected < required {
            self.findings.push(format!(
                "Kubo swarm connected to {connected} of the {required} other peers required \
                 (minPeerConnections {}, {others} other peers answering)",
                policy.min_peer_connections
            ));
        }
        true
    }

    /// The IPFS Cluster API, Kubo link, membership and pins components.
    fn cluster(&mut self, view: &ConnectivityView, report: &PeerReport, kubo_up: bool) {
        let Some(status) = cluster_status(report) else {
            self.findings.push(down_finding(
                "IPFS Cluster",
                report.cluster_process,
                report.cluster.as_ref().err(),
            ));
            return;
        };
        self.breakdown.cluster_api = WEIGHT_CLUSTER_API;
        match status.ipfs_error.as_deref().filter(|e| !e.is_empty()) {
            Some(error) => {
                self.findings
                    .push(format!("IPFS Cluster cannot reach its Kubo: {error}"));
            }
            None if kubo_up => self.breakdown.kubo_link = WEIGHT_KUBO_LINK,
            None => {}
        }
        self.membership(view, report.peer.as_str());
        self.pins(&status.pins);
    }

    /// The share of the other answering peers whose `/peers` lists this one.
    fn membership(&mut self, view: &ConnectivityView, name: &str) {
        let witnesses = view.cluster.others_observed(name);
        let seen_by = view.cluster.seen_by_count(name);
        // With no other answering peer nobody contradicts membership: full points.
        self.breakdown.membership = fraction(WEIGHT_MEMBERSHIP, seen_by, witnesses);
        if seen_by < witnesses {
            self.findings.push(format!(
                "cluster peer listed by {seen_by} of {witnesses} other answering peers"
            ));
        }
    }

    /// All points with no pin in error, half with some, none when all are.
    fn pins(&mut self, pins: &ProbeResult<PinCounts>) {
        match pins {
            Ok(pins) => {
                let total = pins.queued + pins.pinning + pins.pinned + pins.error;
                self.breakdown.pins = if pins.error == 0 {
                    WEIGHT_PINS
                } else if pins.error < total {
                    WEIGHT_PINS / 2
                } else {
                    0
                };
                if pins.error > 0 {
                    self.findings
                        .push(format!("{} of {total} pins in error", pins.error));
                }
            }
            Err(failure) => self
                .findings
                .push(format!("pin counts unavailable: {}", failure_text(failure))),
        }
    }

    /// The penalty for the operator's restarts in the last hour.
    fn restarts(&mut self, restarts_last_hour: u32) {
        self.breakdown.restart_penalty = restarts_last_hour
            .saturating_mul(PENALTY_PER_RESTART)
            .min(MAX_RESTART_PENALTY);
        if restarts_last_hour > 0 {
            self.findings.push(format!(
                "restarted {restarts_last_hour} time(s) in the last hour"
            ));
        }
    }
}

/// Swarm connections to other peers a peer needs: `minPeerConnections`, but never more than the
/// other peers whose Kubo answered this round (a peer cannot connect to peers that are down).
pub fn swarm_required(policy: &HealthPolicy, others_answering: usize) -> usize {
    usize::try_from(policy.min_peer_connections)
        .unwrap_or(usize::MAX)
        .min(others_answering)
}

/// `weight * part / whole`, rounded down; the full weight when `whole` is 0.
fn fraction(weight: u32, part: usize, whole: usize) -> u32 {
    if whole == 0 {
        return weight;
    }
    let part = part.min(whole) as u64;
    let scaled = u64::from(weight) * part / whole as u64;
    u32::try_from(scaled).unwrap_or(weight)
}

fn down_finding(daemon: &str, process: ProcessState, failure: Option<&ProbeFailure>) -> String {
    match (process, failure) {
        (ProcessState::Exited, _) => format!("{daemon} process exited"),
        (ProcessState::Restarting, _) => format!("{daemon} exited; the runtime restarts it"),
        (ProcessState::Starting, _) => format!("{daemon} starting"),
        (_, Some(failure)) => format!("{daemon} API down: {}", failure_text(failure)),
        (_, None) => format!("{daemon} API down"),
    }
}

/// `timeout: POST /api/v0/id: ...`: the failure kind, then its message.
pub(crate) fn failure_text(failure: &ProbeFailure) -> String {
    let kind = match failure.kind {
        crate::probe::report::FailureKind::Timeout => "timeout",
        crate::probe::report::FailureKind::Unreachable => "unreachable",
        crate::probe::report::FailureKind::HttpStatus => "HTTP error",
        crate::probe::report::FailureKind::InvalidResponse => "invalid response",
    };
    format!("{kind}: {}", failure.message)
}

/// Health of the whole cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    /// Mean of the peer scores over `max(replicas, peers reported)`, a peer not reported counting
    /// 0; rounded down.
    pub score: u8,
    /// The level of `score`, but never better than degraded while a peer is unhealthy or
    /// missing, or the peers are partitioned.
    pub level: HealthLevel,
    /// One score per reported peer, in report order.
    pub peers: Vec<PeerScore>,
    /// How many of the desired replicas had no report this round.
    pub missing: u32,
    /// Description of the partition, if the peers split into groups.
    pub partition: Option<String>,
    /// One line for status and events, e.g. `3 peers: 2 healthy, 1 unhealthy (p2: 35)`.
    pub reason: String,
}

/// Scores a whole round. `restarts_last_hour` maps peer names to operator restarts in the last
/// hour (absent = 0).
pub fn score_cluster(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    view: &ConnectivityView,
    restarts_last_hour: &BTreeMap<String, u32>,
) -> ClusterHealth {
    let peers: Vec<PeerScore> = reports
        .iter()
        .map(|report| {
            let restarts = restarts_last_hour.get(&report.peer).copied().unwrap_or(0);
            score_peer(policy, view, report, restarts)
        })
        .collect();

    let slots = reports.len().max(policy.replicas as usize);
    let missing = slots - reports.len();
    let sum: u64 = peers.iter().map(|p| u64::from(p.score)).sum();
    let score = if slots == 0 {
        0
    } else {
        u8::try_from(sum / slots as u64).unwrap_or(100)
    };

    let count = |level: HealthLevel| peers.iter().filter(|p| p.level == level).count();
    let (healthy, degraded, unhealthy) = (
        count(HealthLevel::Healthy),
        count(HealthLevel::Degraded),
        count(HealthLevel::Unhealthy),
    );
    let partition = view.partition_summary();

    let mut level = HealthLevel::from_score(score);
    if unhealthy > 0 || missing > 0 || partition.is_some() {
        level = level.max(HealthLevel::Degraded);
    }

    let mut reason = format!("{slots} peers: {healthy} healthy");
    let mut list = |n: usize, what: &str, wanted: HealthLevel| {
        if n > 0 {
            let who: Vec<String> = peers
                .iter()
                .filter(|p| p.level == wanted)
                .map(|p| format!("{}: {}", p.peer, p.score))
                .collect();
            reason.push_str(&format!(", {n} {what} ({})", who.join(", ")));
        }
    };
    list(degraded, "degraded", HealthLevel::Degraded);
    list(unhealthy, "unhealthy", HealthLevel::Unhealthy);
    if missing > 0 {
        reason.push_str(&format!(", {missing} not reported"));
    }
    if let Some(partition) = &partition {
        reason.push_str(&format!("; {partition}"));
    }

    ClusterHealth {
        score,
        level,
        peers,
        missing: u32::try_from(missing).unwrap_or(u32::MAX),
        partition,
        reason,
    }
}

#[cfg(test)]
mod tests;
