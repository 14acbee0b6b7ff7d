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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::connectivity::{ConnectivityView, apis_up, cluster_status, kubo_status};
use super::score::{failure_text, swarm_required};
pub use crate::api::{Consensus, HealingAction, HealingResult};
use crate::api::{FieldError, IpfsClusterSpec};
use crate::probe::report::{PeerReport, ProcessState};

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

/// One healing step, for the status `healing[]` list, Events and logs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealingEntry {
    /// When the step was decided.
    pub time: UnixMillis,
    /// The peer concerned.
    pub peer: String,
    /// What kind of step.
    pub action: HealingAction,
    /// Why, in words.
    pub reason: String,
    /// How it went.
    pub result: HealingResult,
    /// How the outcome was judged, once known (e.g. `answering again after 20s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The most recent healing steps, oldest first, at most [`HEALING_LOG_LIMIT`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HealingLog {
    entries: VecDeque<HealingEntry>,
}

impl HealingLog {
    /// The entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &HealingEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry, dropping the oldest beyond [`HEALING_LOG_LIMIT`].
    pub fn push(&mut self, entry: HealingEntry) {
        self.entries.push_back(entry);
        while self.entries.len() > HEALING_LOG_LIMIT {
            self.entries.pop_front();
        }
    }

    /// Sets the outcome of the newest pending step of this kind for this peer, if still logged.
    fn resolve(
        &mut self,
        peer: &str,
        action: HealingAction,
        result: HealingResult,
        detail: String,
    ) {
        if let Some(entry) =
            self.entries.iter_mut().rev().find(|e| {
                e.peer == peer && e.action == action && e.result == HealingResult::Pending
            })
        {
            entry.result = result;
            entry.detail = Some(detail);
        }
    }
}

/// What the policy remembers about one peer between rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerHistory {
    /// When the policy first saw this peer.
    pub first_seen: Option<UnixMillis>,
    /// Whether both APIs ever answered.
    pub ever_healthy: bool,
    /// Consecutive rounds without a healthy probe (0 after a healthy one).
    pub failure_streak: u32,
    /// Since when both APIs answer, if they do.
    pub healthy_since: Option<UnixMillis>,
    /// Times of restarts inside [`BUDGET_WINDOW`], oldest first.
    pub restarts: Vec<UnixMillis>,
    /// All restarts by the operator since it started watching (status `restarts`).
    pub restarts_total: u32,
    /// Restarts since the peer was last stable for [`STABLE_AFTER`] (drives the backoff).
    pub backoff_level: u32,
    /// Time of the last restart.
    pub last_restart: Option<UnixMillis>,
    /// Reconnects since the swarm was last connected enough (drives their backoff).
    pub reconnects: u32,
    /// Time of the last reconnect.
    pub last_reconnect: Option<UnixMillis>,
    /// A reconnect was asked for and its outcome is judged on the next round Kubo answers.
    pub reconnect_pending: bool,
    /// The last skip recorded in the log, so that a lasting one is logged once.
    pub last_skip: Option<(HealingState, HealingAction)>,
}

/// A restart the runtime was asked for and that has not ended yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartInProgress {
    /// The peer restarting.
    pub peer: String,
    /// When the restart was decided.
    pub since: UnixMillis,
    /// Which daemons.
    pub scope: RestartScope,
}

/// Everything the policy remembers between rounds. Start with `ClusterHistory::default()` and
/// pass the one returned in each [`Decision`] to the next call.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHistory {
    /// The spec generation the budgets belong to.
    pub spec_generation: u64,
    /// Per peer, by name; peers no longer reported are forgotten.
    pub peers: BTreeMap<String, PeerHistory>,
    /// The restart in progress, if any (at most one in the cluster).
    pub restart_in_progress: Option<RestartInProgress>,
    /// Recent healing steps.
    pub log: HealingLog,
}

impl ClusterHistory {
    /// Restarts of `peer` in the hour before `now`.
    pub fn restarts_in_window(&self, peer: &str, now: UnixMillis) -> u32 {
        self.peers
            .get(peer)
            .map_or(0, |p| count_in_window(&p.restarts, now))
    }

    /// Restarts per peer in the hour before `now` (for the score's restart penalty).
    pub fn restarts_last_hour(&self, now: UnixMillis) -> BTreeMap<String, u32> {
        self.peers
            .iter()
            .map(|(name, p)| (name.clone(), count_in_window(&p.restarts, now)))
            .collect()
    }

    /// Forgets budgets and backoff (after a spec change); keeps streaks, the restart in
    /// progress and the log.
    fn forget_budgets(&mut self) {
        for p in self.peers.values_mut() {
            p.restarts.clear();
            p.backoff_level = 0;
            p.last_restart = None;
            p.reconnects = 0;
            p.last_reconnect = None;
            p.last_skip = None;
        }
    }
}

fn in_window(time: UnixMillis, now: UnixMillis) -> bool {
    now.saturating_sub(time) < ms(BUDGET_WINDOW)
}

fn count_in_window(times: &[UnixMillis], now: UnixMillis) -> u32 {
    let n = times.iter().filter(|&&t| in_window(t, now)).count();
    u32::try_from(n).unwrap_or(u32::MAX)
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

/// A peer that needs a restart this round.
struct RestartNeed<'a> {
    report: &'a PeerReport,
    scope: RestartScope,
    exited: bool,
    streak: u32,
    reason: String,
}

/// [`decide`] with the connectivity view already built from the same reports.
pub(crate) fn decide_with_view(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    view: &ConnectivityView,
    history: &ClusterHistory,
    now: UnixMillis,
) -> Decision {
    let mut round = Round {
        policy,
        reports,
        view,
        now,
        report_only: policy.report_only_reason(),
        h: history.clone(),
        states: BTreeMap::new(),
        swarm_states: BTreeMap::new(),
        actions: Vec::new(),
        withheld: Vec::new(),
    };
    round.observe();
    round.settle_restart();
    round.plan_restart();
    round.plan_reconnects();
    round.finish()
}

/// A state and its reason, per peer.
type States = BTreeMap<String, (HealingState, String)>;

/// One policy round in the making: the steps below run in order and each reads what the
/// previous ones left.
struct Round<'a> {
    policy: &'a HealthPolicy,
    reports: &'a [PeerReport],
    view: &'a ConnectivityView,
    now: UnixMillis,
    report_only: Option<&'static str>,
    /// The history being updated.
    h: ClusterHistory,
    /// Restart-related states (and Starting/Failing).
    states: States,
    /// Reconnect-related states.
    swarm_states: States,
    actions: Vec<Action>,
    withheld: Vec<Action>,
}

impl Round<'_> {
    /// Step 1: reset budgets on a spec change, forget removed peers, update streaks, health and
    /// budget windows.
    fn observe(&mut self) {
        let (h, now) = (&mut self.h, self.now);
        if h.spec_generation != self.policy.spec_generation {
            h.forget_budgets();
            h.spec_generation = self.policy.spec_generation;
        }
        let present: BTreeSet<&str> = self.reports.iter().map(|r| r.peer.as_str()).collect();
        h.peers.retain(|name, _| present.contains(name.as_str()));
        for report in self.reports {
            let p = h.peers.entry(report.peer.clone()).or_default();
            p.first_seen.get_or_insert(now);
            p.restarts.retain(|&t| in_window(t, now));
            if apis_up(report) {
                p.failure_streak = 0;
                p.ever_healthy = true;
                let since = *p.healthy_since.get_or_insert(now);
                if now.saturating_sub(since) >= ms(STABLE_AFTER) {
                    p.backoff_level = 0;
                }
            } else {
                p.failure_streak = p.failure_streak.saturating_add(1);
                p.healthy_since = None;
            }
        }
    }

    /// Step 2: end the restart in progress once the peer answers again, is gone, or the
    /// timeout passes.
    fn settle_restart(&mut self) {
        let Some(run) = self.h.restart_in_progress.clone() else {
            return;
        };
        let timeout = ms(self.policy.restart_timeout);
        let elapsed = self.now.saturating_sub(run.since);
        let outcome = match self.reports.iter().find(|r| r.peer == run.peer) {
            None => Some((
                HealingResult::Failed,
                "peer no longer part of the cluster".to_owned(),
            )),
            Some(r) if apis_up(r) => Some((
                HealingResult::Succeeded,
                format!("answering again after {}", human_duration(elapsed)),
            )),
            Some(_) if elapsed >= timeout => Some((
                HealingResult::Failed,
                format!(
                    "not answering {} after the restart",
                    human_duration(timeout)
                ),
            )),
            Some(_) => None,
        };
        if let Some((result, detail)) = outcome {
            self.h.restart_in_progress = None;
            self.h
                .log
                .resolve(&run.peer, HealingAction::RestartPeer, result, detail);
        }
    }

    /// Step 3: at most one restart, most urgent first (exited, then longest failing, then by
    /// name); every other peer that needs one learns why it waits.
    fn plan_restart(&mut self) {
        let (policy, now) = (self.policy, self.now);
        let threshold = policy.effective_failure_threshold();
        let mut needs: Vec<RestartNeed> = Vec::new();
        for report in self.reports {
            let Some(p) = self.h.peers.get(&report.peer) else {
                continue;
            };
            let state = match restart_need(policy, report, p, threshold, now) {
                NeedCheck::Restart(need) => {
                    needs.push(need);
                    continue;
                }
                NeedCheck::Starting(reason) => (HealingState::Starting, reason),
                NeedCheck::Failing(reason) => (HealingState::Failing, reason),
                NeedCheck::Fine => continue,
            };
            self.states.insert(report.peer.clone(), state);
        }
        needs.sort_by(|a, b| {
            b.exited
                .cmp(&a.exited)
                .then(b.streak.cmp(&a.streak))
                .then_with(|| a.report.peer.cmp(&b.report.peer))
        });

        let members = self.reports.len().max(policy.replicas as usize);
        let mut chosen: Option<(Action, RestartScope)> = None;
        for need in &needs {
            let name = need.report.peer.as_str();
            let Some(p) = self.h.peers.get(name) else {
                continue;
            };
            let why = &need.reason;
            let backoff_until = p
                .last_restart
                .map(|t| t.saturating_add(ms(policy.backoff_after(p.backoff_level))));
            let state = if let Some(run) = &self.h.restart_in_progress {
                if run.peer == name {
                    (
                        HealingState::Restarting,
                        format!("{why}; {}", self.restart_wait(run)),
                    )
                } else {
                    (
                        HealingState::Waiting,
                        format!(
                            "{why}; waiting: {} is restarting and peers restart one at a time",
                            run.peer
                        ),
                    )
                }
            } else if count_in_window(&p.restarts, now) >= policy.max_restarts_per_hour {
                (HealingState::GivenUp, given_up_reason(policy, p, why, now))
            } else if let Some(until) = backoff_until.filter(|&until| now < until) {
                (
                    HealingState::BackingOff,
                    format!(
                        "{why}; backing off after {} restart(s): next restart in {}",
                        p.backoff_level,
                        human_duration(until - now)
                    ),
                )
            } else if let Some(block) = quorum_block(policy, self.reports, need, members) {
                (HealingState::QuorumProtected, format!("{why}; {block}"))
            } else if let Some((first, _)) = &chosen {
                (
                    HealingState::Waiting,
                    format!(
                        "{why}; waiting: {} restarts first and peers restart one at a time",
                        first.peer()
                    ),
                )
            } else {
                let action = Action::RestartPeer {
                    peer: name.to_owned(),
                    scope: need.scope,
                    reason: why.clone(),
                };
                chosen = Some((action, need.scope));
                match self.report_only {
                    Some(ro) => (
                        HealingState::Withheld,
                        format!("would restart ({}): {why}; {ro}", need.scope.label()),
                    ),
                    None => (HealingState::Restarting, why.clone()),
                }
            };
            self.states.insert(name.to_owned(), state);
        }

        if let Some((action, scope)) = chosen {
            self.restart(action, scope);
        }
        if let Some(run) = &self.h.restart_in_progress
            && !self.states.contains_key(&run.peer)
        {
            let state = (HealingState::Restarting, self.restart_wait(run));
            self.states.insert(run.peer.clone(), state);
        }
    }

    /// `restart asked 20s ago, waiting up to 5m for it to answer`.
    fn restart_wait(&self, run: &RestartInProgress) -> String {
        format!(
            "restart asked {} ago, waiting up to {} for it to answer",
            human_duration(self.now.saturating_sub(run.since)),
            human_duration(ms(self.policy.restart_timeout))
        )
    }

    /// Asks for a restart (or withholds it) and records it.
    fn restart(&mut self, action: Action, scope: RestartScope) {
        let now = self.now;
        if self.report_only.is_some() {
            self.withheld.push(action);
            return;
        }
        let Some(p) = self.h.peers.get_mut(action.peer()) else {
            return;
        };
        p.restarts.push(now);
        p.restarts_total = p.restarts_total.saturating_add(1);
        p.backoff_level = p.backoff_level.saturating_add(1);
        p.last_restart = Some(now);
        p.healthy_since = None;
        self.h.restart_in_progress = Some(RestartInProgress {
            peer: action.peer().to_owned(),
            since: now,
            scope,
        });
        self.h.log.push(HealingEntry {
            time: now,
            peer: action.peer().to_owned(),
            action: HealingAction::RestartPeer,
            reason: action.reason().to_owned(),
            result: HealingResult::Pending,
            detail: None,
        });
        self.actions.push(action);
    }

    /// Whether a restart of `peer` is in progress or was just asked for (or withheld).
    fn restarting(&self, peer: &str) -> bool {
        matches!(
            self.states.get(peer),
            Some((HealingState::Restarting | HealingState::Withheld, _))
        )
    }

    /// Step 4: reconnects, for peers whose Kubo answers and that are not restarting. A missing
    /// link between two short peers is dialed from one side only: the name that sorts first.
    fn plan_reconnects(&mut self) {
        let (policy, reports, now) = (self.policy, self.reports, self.now);
        let shortfalls: BTreeMap<&str, (Vec<SwarmTarget>, String)> = reports
            .iter()
            .filter(|r| kubo_status(r).is_some())
            .filter_map(|r| {
                swarm_shortfall(policy, self.view, reports, r).map(|short| (r.peer.as_str(), short))
            })
            .collect();
        for report in reports {
            let name = report.peer.as_str();
            if kubo_status(report).is_none() {
                continue;
            }
            let shortfall = shortfalls.get(name);
            self.judge_reconnect(name, shortfall.map(|(_, why)| why.as_str()));
            let Some((targets, why)) = shortfall else {
                if let Some(p) = self.h.peers.get_mut(name) {
                    p.reconnects = 0;
                    p.last_reconnect = None;
                }
                continue;
            };
            if self.restarting(name) {
                continue;
            }
            let (targets, dialed_by_others): (Vec<SwarmTarget>, Vec<SwarmTarget>) =
                targets.iter().cloned().partition(|t| {
                    let other_dials = t.peer.as_str() < name
                        && !self.restarting(&t.peer)
                        && shortfalls
                            .get(t.peer.as_str())
                            .is_some_and(|(theirs, _)| theirs.iter().any(|x| x.peer == name));
                    !other_dials
                });
            if targets.is_empty() {
                if !dialed_by_others.is_empty() {
                    let names: Vec<&str> =
                        dialed_by_others.iter().map(|t| t.peer.as_str()).collect();
                    let reason = format!("{why}; left to {} to connect", names.join(", "));
                    self.swarm_states
                        .insert(name.to_owned(), (HealingState::Reconnecting, reason));
                }
                continue;
            }
            let Some(p) = self.h.peers.get(name) else {
                continue;
            };
            let until = p
                .last_reconnect
                .map(|t| t.saturating_add(ms(policy.backoff_after(p.reconnects))));
            let state = match until.filter(|&until| now < until) {
                Some(until) => (
                    HealingState::Reconnecting,
                    format!("{why}; next reconnect in {}", human_duration(until - now)),
                ),
                None => self.reconnect(name, targets, why),
            };
            self.swarm_states.insert(name.to_owned(), state);
        }
    }

    /// Judges the outcome of the previous reconnect of `peer`, if one is pending; `shortfall`
    /// is why it is still short of connections, if it is.
    fn judge_reconnect(&mut self, peer: &str, shortfall: Option<&str>) {
        let Some(p) = self.h.peers.get_mut(peer) else {
            return;
        };
        if !std::mem::take(&mut p.reconnect_pending) {
            return;
        }
        let (result, detail) = match shortfall {
            None => (
                HealingResult::Succeeded,
                "swarm connected enough".to_owned(),
            ),
            Some(why) => (HealingResult::Failed, format!("still: {why}")),
        };
        self.h
            .log
            .resolve(peer, HealingAction::SwarmConnect, result, detail);
    }

    /// Asks for a reconnect (or withholds it) and records it; returns the peer's state.
    fn reconnect(
        &mut self,
        peer: &str,
        targets: Vec<SwarmTarget>,
        why: &str,
    ) -> (HealingState, String) {
        let names: Vec<&str> = targets.iter().map(|t| t.peer.as_str()).collect();
        let reason = format!("{why}; connecting to {}", names.join(", "));
        let action = Action::SwarmConnect {
            peer: peer.to_owned(),
            targets,
            reason: reason.clone(),
        };
        if let Some(ro) = self.report_only {
            self.withheld.push(action);
            return (
                HealingState::Withheld,
                format!("would reconnect: {reason}; {ro}"),
            );
        }
        if let Some(p) = self.h.peers.get_mut(peer) {
            p.reconnects = p.reconnects.saturating_add(1);
            p.last_reconnect = Some(self.now);
            p.reconnect_pending = true;
        }
        self.h.log.push(HealingEntry {
            time: self.now,
            peer: peer.to_owned(),
            action: HealingAction::SwarmConnect,
            reason: reason.clone(),
            result: HealingResult::Pending,
            detail: None,
        });
        self.actions.push(action);
        (HealingState::Reconnecting, reason)
    }

    /// Step 5: one verdict per peer; a lasting skip (give-up, quorum, report only) is logged
    /// once, when it starts.
    fn finish(mut self) -> Decision {
        let mut peers = Vec::with_capacity(self.reports.len());
        for report in self.reports {
            let name = &report.peer;
            let (state, reason) = match (self.states.remove(name), self.swarm_states.remove(name)) {
                // A withheld reconnect beats "failing" for the peer's state, so it is logged.
                (Some((HealingState::Failing, _)), Some(swarm))
                    if swarm.0 == HealingState::Withheld =>
                {
                    swarm
                }
                (Some(state), _) => state,
                (None, Some(swarm)) => swarm,
                (None, None) => (HealingState::Ok, "both APIs answer".to_owned()),
            };
            let skip = match state {
                HealingState::GivenUp => Some(HealingAction::GiveUp),
                HealingState::QuorumProtected => Some(HealingAction::RestartPeer),
                HealingState::Withheld => self
                    .withheld
                    .iter()
                    .find(|a| a.peer() == name)
                    .map(Action::kind),
                _ => None,
            };
            if let Some(p) = self.h.peers.get_mut(name) {
                let key = skip.map(|kind| (state, kind));
                if let Some(kind) = skip
                    && p.last_skip != key
                {
                    self.h.log.push(HealingEntry {
                        time: self.now,
                        peer: name.clone(),
                        action: kind,
                        reason: reason.clone(),
                        result: HealingResult::Skipped,
                        detail: None,
                    });
                }
                p.last_skip = key;
            }
            peers.push(PeerHealing {
                peer: name.clone(),
                state,
                reason,
            });
        }
        Decision {
            actions: self.actions,
            withheld: self.withheld,
            report_only: self.report_only.map(str::to_owned),
            peers,
            history: self.h,
        }
    }
}

enum NeedCheck<'a> {
    Fine,
    Starting(String),
    Failing(String),
    Restart(RestartNeed<'a>),
}

/// Whether a peer needs a restart now, and which daemons.
fn restart_need<'a>(
    policy: &HealthPolicy,
    report: &'a PeerReport,
    p: &PeerHistory,
    threshold: u32,
    now: UnixMillis,
) -> NeedCheck<'a> {
    let kubo_bad = kubo_status(report).is_none();
    let cluster_bad = cluster_status(report).is_none();
    if !kubo_bad && !cluster_bad {
        return NeedCheck::Fine;
    }
    let exited = report.kubo_process == ProcessState::Exited
        || report.cluster_process == ProcessState::Exited;
    let problems = problems(report);
    let streak = p.failure_streak;
    if !exited {
        let first_seen = p.first_seen.unwrap_or(now);
        let age = now.saturating_sub(first_seen);
        if !p.ever_healthy && age < ms(policy.restart_timeout) {
            return NeedCheck::Starting(format!(
                "{problems}; new peer, not answering yet ({} of {} start grace)",
                human_duration(age),
                human_duration(ms(policy.restart_timeout))
            ));
        }
        if streak < threshold {
            return NeedCheck::Failing(format!(
                "{problems}; {streak} of {threshold} failed probes before a restart"
            ));
        }
    }
    let scope = match (kubo_bad, cluster_bad, policy.restart_unit) {
        // The runtime restarts whole peers only (Kubernetes deletes the pod): say so, so that
        // the raft quorum guard counts the IPFS Cluster member it also restarts.
        (_, _, RestartUnit::Peer) | (true, true, _) => RestartScope::Both,
        (true, false, _) => RestartScope::Kubo,
        _ => RestartScope::Cluster,
    };
    let reason = if exited {
        problems
    } else {
        format!(
            "{problems}; no healthy probe in {streak} consecutive rounds (failureThreshold {threshold})"
        )
    };
    NeedCheck::Restart(RestartNeed {
        report,
        scope,
        exited,
        streak,
        reason,
    })
}

/// What is wrong with a peer's daemons, e.g. `Kubo process exited; IPFS Cluster API: timeout: ...`.
fn problems(report: &PeerReport) -> String {
    let mut out = Vec::new();
    for (daemon, process, failure) in [
        ("Kubo", report.kubo_process, report.kubo.as_ref().err()),
        (
            "IPFS Cluster",
            report.cluster_process,
            report.cluster.as_ref().err(),
        ),
    ] {
        if process == ProcessState::Exited {
            out.push(format!("{daemon} process exited"));
        } else if let Some(failure) = failure {
            out.push(format!("{daemon} API {}", failure_text(failure)));
        }
    }
    out.join("; ")
}

fn given_up_reason(policy: &HealthPolicy, p: &PeerHistory, why: &str, now: UnixMillis) -> String {
    let max = policy.max_restarts_per_hour;
    if max == 0 {
        return format!("{why}; not restarted: restarts are disabled (maxRestartsPerHour 0)");
    }
    let mut times: Vec<UnixMillis> = p.restarts.clone();
    times.sort_unstable();
    // The slot frees when the restart that keeps the count at the budget leaves the window.
    let excess = times.len().saturating_sub(max as usize);
    let next_slot = times
        .get(excess)
        .map(|t| t.saturating_add(ms(BUDGET_WINDOW)).saturating_sub(now));
    let mut reason = format!(
        "{why}; given up: {} restarts in the last hour (maxRestartsPerHour {max})",
        times.len()
    );
    if let Some(wait) = next_slot {
        let _ = write!(
            reason,
            ", next restart possible in {}",
            human_duration(wait)
        );
    }
    reason.push_str(" or after a spec change");
    reason
}

/// With raft, why restarting this peer could break the quorum, if it could. A peer whose
/// IPFS Cluster process exited is no working member, so restarting it costs no vote; a running
/// one that does not answer may still vote, so it is restarted only if the other peers whose
/// Cluster answers make a quorum on their own.
fn quorum_block(
    policy: &HealthPolicy,
    reports: &[PeerReport],
    need: &RestartNeed,
    members: usize,
) -> Option<String> {
    if policy.consensus != Consensus::Raft
        || !need.scope.includes_cluster()
        || need.report.cluster_process == ProcessState::Exited
        || members <= 1
    {
        return None;
    }
    let quorum = raft_quorum(members);
    let others_up = reports
        .iter()
        .filter(|r| r.peer != need.report.peer && cluster_status(r).is_some())
        .count();
    (others_up < quorum).then(|| {
        format!(
            "not restarted: raft needs {quorum} of {members} peers and only {others_up} other \
             peer(s) answer, so restarting this still-running peer could break quorum"
        )
    })
}

/// If a peer's swarm is short of connections to the other peers (or cut off from the largest
/// group), the peers to connect to and why.
fn swarm_shortfall(
    policy: &HealthPolicy,
    view: &ConnectivityView,
    reports: &[PeerReport],
    report: &PeerReport,
) -> Option<(Vec<SwarmTarget>, String)> {
    let name = report.peer.as_str();
    let others = view.swarm.others_observed(name);
    let required = swarm_required(policy, others);
    let connected = view.swarm.sees_count(name);
    let low = connected < required;
    let split = view.swarm.is_split_off(name);
    if !low && !split {
        return None;
    }
    let seen: BTreeSet<&str> = view
        .swarm
        .sees
        .get(name)
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let mut targets: Vec<SwarmTarget> = reports
        .iter()
        .filter(|r| r.peer != name && !seen.contains(r.peer.as_str()))
        .filter_map(|r| {
            kubo_status(r).map(|k| SwarmTarget {
                peer: r.peer.clone(),
                peer_id: k.peer_id.clone(),
            })
        })
        .collect();
    targets.sort();
    targets.dedup();
    let why = if low {
        format!(
            "Kubo swarm connected to {connected} of the {required} other peers required \
             (minPeerConnections {})",
            policy.min_peer_connections
        )
    } else {
        let group = view.swarm.group_of(name).unwrap_or_default().join(", ");
        format!("Kubo swarm partitioned: group [{group}] is cut off from the other peers")
    };
    Some((targets, why))
}
