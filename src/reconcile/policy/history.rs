//! What the policy remembers between rounds: per-peer streaks, restart budgets and backoff, the
//! restart in progress, and the log of recent healing steps.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::{
    BUDGET_WINDOW, HEALING_LOG_LIMIT, HealingAction, HealingResult, HealingState, RestartScope,
    UnixMillis, ms,
};

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
    pub(super) fn resolve(
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
    /// Consecutive rounds without a healthy probe (0 after a healthy one), at most one per
    /// probe interval.
    pub failure_streak: u32,
    /// When the last failed round was counted in `failure_streak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_counted: Option<UnixMillis>,
    /// Consecutive rounds (at most one per probe interval) in which both APIs answered but the
    /// peer's IPFS Cluster was split off from the largest group of the cluster peerset.
    #[serde(default)]
    pub split_streak: u32,
    /// When the last split round was counted in `split_streak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_split_counted: Option<UnixMillis>,
    /// Since when the peer is split off, while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_since: Option<UnixMillis>,
    /// Since when both APIs answer, if they do.
    pub healthy_since: Option<UnixMillis>,
    /// Times of restarts inside [`BUDGET_WINDOW`], oldest first.
    pub restarts: Vec<UnixMillis>,
    /// All restarts by the operator since it started watching (status `restarts`).
    pub restarts_total: u32,
    /// Restarts since the peer was last stable for [`STABLE_AFTER`](super::STABLE_AFTER) (drives the backoff).
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
/// pass the one returned in each [`Decision`](super::Decision) to the next call.
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
    pub(super) fn forget_budgets(&mut self) {
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

pub(super) fn in_window(time: UnixMillis, now: UnixMillis) -> bool {
    now.saturating_sub(time) < ms(BUDGET_WINDOW)
}

pub(super) fn count_in_window(times: &[UnixMillis], now: UnixMillis) -> u32 {
    let n = times.iter().filter(|&&t| in_window(t, now)).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}
