//! The healing policy: from the latest probe round, what happened before and the clock, decide
//! which healing actions to take. Pure and deterministic: [`decide`] takes data and returns the
//! actions plus the new history; the runtimes carry the actions out and keep the history.
//!
//! The ladder, cheapest first:
//! 1. a peer with too few swarm connections to the other peers (or cut off from the largest
//!    group) gets a `swarm/connect` to the peers it misses ([`Action::SwarmConnect`]), retried with
//!    exponential backoff while it stays low;
//! 2. a peer whose process exited, or whose APIs failed `failure_threshold` consecutive probes, is
//!    restarted ([`Action::RestartPeer`]), and only the daemons that failed;
//! 3. restarts of a peer are spaced by exponential backoff and limited to
//!    `max_restarts_per_hour` in any rolling hour; a peer over budget is given up (left alone)
//!    until the window frees a slot or the spec changes;
//! 4. one restart at a time in the whole cluster (until the restarted peer answers again or
//!    `restart_timeout` passes); with raft, no restart of a still-running peer unless the others
//!    alone keep a quorum.
//!
//! `paused` or `auto_heal: false` make the policy report only: it still says what it would do
//! and why ([`Decision::withheld`]), but asks for nothing.
//!
//! Here the policy's types; [`history`] what it remembers between rounds; `round` the steps of
//! one decision (observe, settle the restart in progress, verdicts), `restart` the restart
//! planning (need, backoff, budget, quorum) and `reconnect` the swarm reconnects.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::connectivity::ConnectivityView;
pub use crate::api::{Consensus, HealingAction, HealingResult};
use crate::api::{FieldError, IpfsClusterSpec};
use crate::probe::report::PeerReport;

pub mod history;
mod reconnect;
mod restart;
mod round;

pub use history::{ClusterHistory, HealingEntry, HealingLog, PeerHistory, RestartInProgress};
pub(crate) use round::decide_with_view;

/// Wall-clock time as milliseconds since the Unix epoch. The policy never reads a clock: callers
/// pass `now` in, so decisions replay exactly in tests.
pub type UnixMillis = u64;

/// The window of the restart budget: `max_restarts_per_hour` counts restarts in the last hour.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(3600);
/// After this long healthy, a peer's backoff starts again from the beginning.
pub const STABLE_AFTER: Duration = Duration::from_secs(600);
/// Entries kept in the healing log: as many as the status `healing[]` list holds.
pub use crate::api::cluster::HEALING_HISTORY_LIMIT as HEALING_LOG_LIMIT;

/// The probing and healing settings of one cluster, mapped from the spec by the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Desired number of peers (`spec.replicas`).
    pub replicas: u32,
    /// `spec.cluster.consensus`.
    pub consensus: Consensus,
    /// Time between probe rounds; also the base of the exponential backoff. Default 10 s.
    pub probe_interval: Duration,
    /// Timeout of one probe call (used by the probes; recorded here for completeness). Default 5 s.
    pub probe_timeout: Duration,
    /// Consecutive rounds without a healthy probe before a running peer is restarted. 0 is
    /// treated as 1. Default 3.
    pub failure_threshold: u32,
    /// Heal at all. When false the policy only reports. Default true.
    pub auto_heal: bool,
    /// Restarts of one peer allowed in any rolling hour; 0 disables restarts. Default 5.
    pub max_restarts_per_hour: u32,
    /// Swarm connections to the other peers of this cluster a peer should have; the effective
    /// minimum never exceeds the other peers whose Kubo answers. Default 1.
    pub min_peer_connections: u32,
    /// `spec.paused`: report only.
    pub paused: bool,
    /// The spec's generation (`metadata.generation`, or a counter bumped on every local spec
    /// change). When it changes, restart budgets and backoff start over.
    pub spec_generation: u64,
    /// How long a restart counts as in progress if the peer does not answer again; also the
    /// grace a new peer gets to answer for the first time. Default 5 min.
    pub restart_timeout: Duration,
    /// Longest wait between two restarts (or two reconnects) of one peer. Default 5 min.
    pub backoff_cap: Duration,
    /// The smallest thing the runtime can restart: one daemon (local processes) or the whole
    /// peer (a pod). Restarts are planned, and the raft quorum guarded, at that granularity.
    pub restart_unit: RestartUnit,
}

/// The smallest thing a runtime restarts to heal a peer ([`crate::runtime::PeerRuntime`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartUnit {
    /// One daemon at a time: a failed Kubo is restarted alone, IPFS Cluster keeps running.
    #[default]
    Daemon,
    /// The whole peer: both daemons restart together (Kubernetes deletes the pod).
    Peer,
}

impl HealthPolicy {
    /// Default `probe_interval`.
    pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
    /// Default `probe_timeout`.
    pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `failure_threshold`.
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
    /// Default `max_restarts_per_hour`.
    pub const DEFAULT_MAX_RESTARTS_PER_HOUR: u32 = 5;
    /// Default `min_peer_connections`.
    pub const DEFAULT_MIN_PEER_CONNECTIONS: u32 = 1;
    /// Default `restart_timeout`.
    pub const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(300);
    /// Default `backoff_cap`.
    pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(300);

    /// The defaults for a cluster of `replicas` peers (healing on, not paused, generation 0).
    pub fn new(replicas: u32, consensus: Consensus) -> Self {
        Self {
            replicas,
            consensus,
            probe_interval: Self::DEFAULT_PROBE_INTERVAL,
            probe_timeout: Self::DEFAULT_PROBE_TIMEOUT,
            failure_threshold: Self::DEFAULT_FAILURE_THRESHOLD,
            auto_heal: true,
            max_restarts_per_hour: Self::DEFAULT_MAX_RESTARTS_PER_HOUR,
            min_peer_connections: Self::DEFAULT_MIN_PEER_CONNECTIONS,
            paused: false,
            spec_generation: 0,
            restart_timeout: Self::DEFAULT_RESTART_TIMEOUT,
            backoff_cap: Self::DEFAULT_BACKOFF_CAP,
            restart_unit: RestartUnit::Daemon,
        }
    }

    /// The policy a cluster's spec asks for: the `health` section, `replicas` (at least 1),
    /// consensus and `paused`, at spec `generation`; the runtime then sets what only it knows
    /// (`restart_unit`, `restart_timeout`). Errors name the field (`spec.health.probeInterval`).
    pub fn from_spec(spec: &IpfsClusterSpec, generation: u64) -> Result<Self, FieldError> {
        let count = |v: i32| u32::try_from(v).unwrap_or(0);
        let h = &spec.health;
        let mut p = Self::new(count(spec.replicas).max(1), spec.cluster.consensus);
        p.probe_interval = h.probe_interval()?;
        p.probe_timeout = h.probe_timeout()?;
        p.failure_threshold = count(h.failure_threshold);
        p.auto_heal = h.auto_heal;
        p.max_restarts_per_hour = count(h.max_restarts_per_hour);
        p.min_peer_connections = count(h.min_peer_connections);
        p.paused = spec.paused;
        p.spec_generation = generation;
        Ok(p)
    }

    /// `failure_threshold`, at least 1.
    pub fn effective_failure_threshold(&self) -> u32 {
        self.failure_threshold.max(1)
    }

    /// Why the policy only reports, if it does: `paused`, then `auto_heal: false`.
    pub fn report_only_reason(&self) -> Option<&'static str> {
        if self.paused {
            Some("report only: spec.paused is true")
        } else if !self.auto_heal {
            Some("report only: spec.health.autoHeal is false")
        } else {
            None
        }
    }

    /// The wait before the next restart (or reconnect) of a peer that had `attempts` of them
    /// since it was last stable: none for the first, then `probe_interval`, doubling each time,
    /// at most `backoff_cap`.
    pub fn backoff_after(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(attempts - 1).unwrap_or(u32::MAX);
        self.probe_interval
            .saturating_mul(factor)
            .min(self.backoff_cap)
    }
}

/// Votes a raft cluster of `members` peers needs: `floor(members / 2) + 1`.
pub fn raft_quorum(members: usize) -> usize {
    members / 2 + 1
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A duration in words for reasons: `500ms`, `45s`, `2m30s`, `1h5m`.
pub fn human_duration(millis: u64) -> String {
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = millis / 1000;
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    out
}

/// A peer to connect to: the runtime turns it into a multiaddr (pod DNS name or local port).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwarmTarget {
    /// The target's peer name.
    pub peer: String,
    /// The target's Kubo peer id, as it reported this round.
    pub peer_id: String,
}

/// Which daemons of a peer to restart: the ones that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartScope {
    /// Only Kubo.
    Kubo,
    /// Only IPFS Cluster.
    Cluster,
    /// Both (in Kubernetes any scope means deleting the pod).
    Both,
}

impl RestartScope {
    /// `kubo`, `cluster` or `both`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Kubo => "kubo",
            Self::Cluster => "cluster",
            Self::Both => "both",
        }
    }

    /// Whether the IPFS Cluster daemon is restarted (which matters to raft).
    pub const fn includes_cluster(self) -> bool {
        matches!(self, Self::Cluster | Self::Both)
    }
}

/// Something the runtime should do now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `POST /api/v0/swarm/connect` on `peer`'s Kubo to each target.
    SwarmConnect {
        /// The poorly connected peer.
        peer: String,
        /// Peers it should connect to, sorted by name.
        targets: Vec<SwarmTarget>,
        /// Why, in words.
        reason: String,
    },
    /// Restart `peer`'s daemons (delete the pod, or stop and start the processes).
    RestartPeer {
        /// The peer to restart.
        peer: String,
        /// Which daemons failed.
        scope: RestartScope,
        /// Why, in words.
        reason: String,
    },
}

impl Action {
    /// The kind of the action.
    pub fn kind(&self) -> HealingAction {
        match self {
            Self::SwarmConnect { .. } => HealingAction::SwarmConnect,
            Self::RestartPeer { .. } => HealingAction::RestartPeer,
        }
    }

    /// The stable machine label (`swarm_connect`, `restart_peer`).
    pub fn label(&self) -> &'static str {
        self.kind().label()
    }

    /// The peer acted on.
    pub fn peer(&self) -> &str {
        match self {
            Self::SwarmConnect { peer, .. } | Self::RestartPeer { peer, .. } => peer,
        }
    }

    /// Why, in words (for status, Events and logs).
    pub fn reason(&self) -> &str {
        match self {
            Self::SwarmConnect { reason, .. } | Self::RestartPeer { reason, .. } => reason,
        }
    }
}

/// Where a peer stands in the healing ladder after a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealingState {
    /// Both APIs answer and the swarm is connected enough: nothing to do.
    Ok,
    /// New peer that has not answered yet, inside its start grace (`restart_timeout`).
    Starting,
    /// Some probe failed, fewer times in a row than `failure_threshold`.
    Failing,
    /// Too few swarm connections: reconnecting (now or after a backoff).
    Reconnecting,
    /// A restart of this peer is in progress.
    Restarting,
    /// Needs a restart, but another peer restarts first (one at a time).
    Waiting,
    /// Needs a restart, but its backoff since the last restart has not passed.
    BackingOff,
    /// Needs a restart, but restarting it could break the raft quorum.
    QuorumProtected,
    /// Needs a restart, but its restart budget is spent: left alone.
    GivenUp,
    /// Needs an action, but the policy reports only (paused or autoHeal off).
    Withheld,
}

impl HealingState {
    /// Stable snake_case label (metrics).
    pub const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Starting => "starting",
            Self::Failing => "failing",
            Self::Reconnecting => "reconnecting",
            Self::Restarting => "restarting",
            Self::Waiting => "waiting",
            Self::BackingOff => "backing_off",
            Self::QuorumProtected => "quorum_protected",
            Self::GivenUp => "given_up",
            Self::Withheld => "withheld",
        }
    }
}

/// The decision about one peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerHealing {
    /// The peer's name.
    pub peer: String,
    /// Where it stands.
    pub state: HealingState,
    /// Why, in words.
    pub reason: String,
}

/// The outcome of one policy round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// What to carry out now: at most one restart and any number of reconnects.
    pub actions: Vec<Action>,
    /// What the policy would carry out if it did not report only.
    pub withheld: Vec<Action>,
    /// Why actions are withheld (paused or autoHeal off), if they are.
    pub report_only: Option<String>,
    /// One entry per reported peer, in report order.
    pub peers: Vec<PeerHealing>,
    /// The history to pass to the next round.
    pub history: ClusterHistory,
}

impl Decision {
    /// One line for logs: the actions taken (or withheld) and their reasons.
    pub fn summary(&self) -> String {
        let describe = |actions: &[Action]| {
            actions
                .iter()
                .map(|a| format!("{} {}: {}", a.label(), a.peer(), a.reason()))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match (
            &self.report_only,
            self.actions.is_empty(),
            self.withheld.is_empty(),
        ) {
            (Some(why), _, false) => format!("{why}; would {}", describe(&self.withheld)),
            (_, false, _) => describe(&self.actions),
            _ => "no healing action".to_owned(),
        }
    }

    /// The decision about `peer`, if it was reported.
    pub fn peer(&self, peer: &str) -> Option<&PeerHealing> {
        self.peers.iter().find(|p| p.peer == peer)
    }
}

/// Decides the healing actions for one probe round. `reports` is the latest round (one report
/// per peer), `history` what the previous call returned, `now` the time of the round.
pub fn decide(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    history: &ClusterHistory,
    now: UnixMillis,
) -> Decision {
    let view = ConnectivityView::from_reports(reports);
    decide_with_view(policy, reports, &view, history, now)
}
