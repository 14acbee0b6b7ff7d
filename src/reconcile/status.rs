//! The one status model of both runtimes: the `IpfsClusterStatus` computed from what a runtime
//! observed (peers that exist, a rollout in progress, probe reports, the health engine's
//! assessment), and the rule that decides whether it must be written. Kubernetes writes it into
//! the object; the local runtime keeps it in its state file with its pids and ports beside it.
//! Pure: no I/O, the clock is an input.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::conditions::{self, ConditionStatus, set_condition};
use crate::api::{ClusterPhase, HealingRecord, IpfsClusterStatus, PeerState, PeerStatus};
use crate::probe::report::{PeerReport, ProbeFailure};
use crate::reconcile::{Assessment, HealingEntry, HealingState, HealthLevel, UnixMillis};

/// What one round of a runtime observed, for [`compute`].
#[derive(Debug)]
pub struct Observed<'a> {
    /// `metadata.generation` of the IpfsCluster.
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `spec.paused`.
    pub paused: bool,
    /// `status.selector` value (Kubernetes: the pods' label selector; local: empty).
    pub selector: String,
    /// Peers that exist (pods not being deleted, or peers provisioned on this host).
    pub pods: i32,
    /// Why the peers do not all run the current spec yet (pods being created or rolled), if so.
    pub rollout: Option<String>,
    /// A gated rollout of a new pod template (Kubernetes), when one is under way or stalled;
    /// it supersedes `rollout`.
    pub upgrade: Option<Upgrade>,
    /// This round's probe reports, one per desired peer, in ordinal order.
    pub reports: &'a [PeerReport],
    /// The health engine's conclusions about `reports`.
    pub assessment: &'a Assessment,
    /// Problems found while applying the spec (e.g. a missing Secret), each a sentence.
    pub problems: &'a [String],
    /// The status before this round (conditions keep their transition times).
    pub previous: Option<&'a IpfsClusterStatus>,
    pub now: UnixMillis,
}

/// A gated rollout of a new pod template: the peers are updated one at a time, each healthy
/// before the next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// Pods are being updated: `n/m peers updated` and what the rollout waits for.
    Upgrading(String),
    /// A pod being updated does not become healthy: the rollout stops (which peer, why).
    Stalled(String),
}

/// Reason of the Progressing condition while a gated rollout updates pods.
pub const UPGRADING: &str = "Upgrading";
/// Reason of the Progressing condition (False) when a gated rollout stopped at a peer that does
/// not become healthy.
pub const UPGRADE_STALLED: &str = "UpgradeStalled";

/// `UnixMillis` as a Kubernetes `Time`.
pub fn time(millis: UnixMillis) -> Time {
    let ms = i64::try_from(millis).unwrap_or(i64::MAX);
    Time(Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// Why a probe failed, for `lastError`.
fn failure(api: &str, f: &ProbeFailure) -> String {
    let kind = match f.kind {
        crate::probe::report::FailureKind::Timeout => "timeout",
        crate::probe::report::FailureKind::Unreachable => "unreachable",
        crate::probe::report::FailureKind::HttpStatus => "error status",
        crate::probe::report::FailureKind::InvalidResponse => "invalid response",
    };
    format!("{api}: {kind}: {}", f.message)
}

fn peer_status(obs: &Observed<'_>, report: &PeerReport) -> PeerStatus {
    let a = obs.assessment;
    let score = a.health.peers.iter().find(|p| p.peer == report.peer);
    let healing = a.decision.peer(&report.peer);
    let history = a.decision.history.peers.get(&report.peer);
    let state = match (healing.map(|h| h.state), score.map(|s| s.level)) {
        (Some(HealingState::Restarting), _) => PeerState::Restarting,
        (Some(HealingState::Starting), _) => PeerState::Starting,
        (Some(HealingState::GivenUp), _) => PeerState::Unhealthy,
        (_, Some(HealthLevel::Healthy)) => PeerState::Healthy,
        (_, Some(HealthLevel::Degraded)) => PeerState::Degraded,
        (_, Some(HealthLevel::Unhealthy)) => PeerState::Unhealthy,
        (_, None) => PeerState::Unknown,
    };
    let kubo = report.kubo.as_ref().ok();
    let cluster = report.cluster.as_ref().ok();
    let pins = cluster.and_then(|c| c.pins.as_ref().ok());
    let to_i32 = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let last_error = match (&report.kubo, &report.cluster) {
        (Err(k), _) => Some(failure("Kubo RPC", k)),
        (_, Err(c)) => Some(failure("IPFS Cluster REST", c)),
        _ => cluster.and_then(|c| c.ipfs_error.clone()).or_else(|| {
            healing
                .filter(|h| h.state != HealingState::Ok)
                .map(|h| h.reason.clone())
        }),
    };
    PeerStatus {
        name: report.peer.clone(),
        peer_id: kubo.map(|k| k.peer_id.clone()),
        cluster_peer_id: cluster.map(|c| c.peer_id.clone()),
        kubo_version: kubo.map(|k| k.version.clone()),
        cluster_version: cluster.map(|c| c.version.clone()),
        swarm_peers: kubo.map(|k| to_i32(k.swarm_peers.len())),
        cluster_peers_seen: cluster.map(|c| to_i32(c.peers_seen.len())),
        repo_size: kubo.map(|k| to_i64(k.repo_size)),
        storage_max: kubo.map(|k| to_i64(k.storage_max)),
        bytes_in: kubo.map(|k| to_i64(k.total_in)),
        bytes_out: kubo.map(|k| to_i64(k.total_out)),
        pins_pinned: pins.map(|p| to_i64(p.pinned)),
        pins_queued: pins.map(|p| to_i64(p.queued)),
        pins_pinning: pins.map(|p| to_i64(p.pinning)),
        pins_error: pins.map(|p| to_i64(p.error)),
        score: score.map(|s| i32::from(s.score)),
        state,
        restarts: history.map_or(0, |h| i32::try_from(h.restarts_total).unwrap_or(i32::MAX)),
        last_probe: Some(time(obs.now)),
        last_error,
    }
}

/// A healing log entry as a status record.
pub fn healing_record(entry: &HealingEntry) -> HealingRecord {
    let reason = match &entry.detail {
        Some(detail) => format!("{} ({detail})", entry.reason),
        None => entry.reason.clone(),
    };
    HealingRecord {
        // Whole seconds, as a Kubernetes time is written: a finer one would never equal the
        // status read back, and the status would be rewritten every round.
        time: time(entry.time - entry.time % 1000),
        peer: entry.peer.clone(),
        action: entry.action,
        reason,
        result: entry.result,
    }
}

/// The status for this round.
pub fn compute(obs: &Observed<'_>) -> IpfsClusterStatus {
    let a = obs.assessment;
    let ready = obs
        .reports
        .iter()
        .filter(|r| r.kubo.is_ok() && r.cluster.is_ok())
        .count();
    let ready = i32::try_from(ready).unwrap_or(i32::MAX);
    let phase = phase(obs);
    let mut conditions = Conditions {
        list: obs
            .previous
            .map(|s| s.conditions.clone())
            .unwrap_or_default(),
        generation: obs.generation,
        now: time(obs.now),
    };
    let health_reason = match obs.problems.join("; ") {
        problems if problems.is_empty() => a.health.reason.clone(),
        problems => format!("{}; {problems}", a.health.reason),
    };
    conditions.ready(phase, &health_reason);
    conditions.available(obs, ready);
    conditions.progressing(obs);
    conditions.degraded(obs, &health_reason);
    // The healing log keeps as many entries as `status.healing` may hold: the list is the log.
    let healing: Vec<HealingRecord> = a
        .decision
        .history
        .log
        .entries()
        .map(healing_record)
        .collect();
    IpfsClusterStatus {
        phase: Some(phase),
        observed_generation: obs.generation,
        conditions: conditions.list,
        replicas: Some(obs.pods),
        ready_replicas: Some(ready),
        selector: Some(obs.selector.clone()),
        health_score: Some(i32::from(a.health.score)),
        peers: obs.reports.iter().map(|r| peer_status(obs, r)).collect(),
        healing,
        // The alert engine (`crate::alerts`) replaces these after the round; until then the
        // previous round's stand.
        alerts: obs.previous.map(|s| s.alerts.clone()).unwrap_or_default(),
    }
}

/// The cluster's phase: paused, no peers yet, healing, rolling out, else by health.
fn phase(obs: &Observed<'_>) -> ClusterPhase {
    let a = obs.assessment;
    if obs.paused {
        ClusterPhase::Paused
    } else if obs.pods == 0 {
        ClusterPhase::Pending
    } else if a.decision.history.restart_in_progress.is_some() {
        ClusterPhase::Healing
    } else if obs.rollout.is_some() || matches!(obs.upgrade, Some(Upgrade::Upgrading(_))) {
        ClusterPhase::Progressing
    } else {
        match a.health.level {
            HealthLevel::Healthy if obs.problems.is_empty() => ClusterPhase::Healthy,
            HealthLevel::Healthy | HealthLevel::Degraded => ClusterPhase::Degraded,
            HealthLevel::Unhealthy => ClusterPhase::Unhealthy,
        }
    }
}

/// The status conditions being set for this round (transition times kept unless they flip).
struct Conditions {
    list: Vec<Condition>,
    generation: Option<i64>,
    now: Time,
}

impl Conditions {
    fn set(&mut self, type_: &str, status: ConditionStatus, reason: &str, message: &str) {
        let now = self.now.clone();
        set_condition(
            &mut self.list,
            type_,
            status,
            reason,
            message,
            self.generation,
            now,
        );
    }

    fn ready(&mut self, phase: ClusterPhase, health_reason: &str) {
        match phase {
            ClusterPhase::Healthy => self.set(
                conditions::READY,
                ConditionStatus::True,
                "AllPeersHealthy",
                health_reason,
            ),
            ClusterPhase::Paused => self.set(
                conditions::READY,
                ConditionStatus::Unknown,
                "Paused",
                "spec.paused is true: the operator changes nothing and only reports",
            ),
            _ => self.set(
                conditions::READY,
                ConditionStatus::False,
                "PeersNotHealthy",
                health_reason,
            ),
        }
    }

    fn available(&mut self, obs: &Observed<'_>, ready: i32) {
        if ready > 0 {
            let message = format!(
                "{ready}/{} peers answer on the Kubo RPC and IPFS Cluster REST APIs",
                obs.replicas
            );
            self.set(
                conditions::AVAILABLE,
                ConditionStatus::True,
                "PeersAnswering",
                &message,
            );
            return;
        }
        let why = obs
            .reports
            .iter()
            .filter_map(|r| match (&r.kubo, &r.cluster) {
                (Err(f), _) => Some(format!("{}: {}", r.peer, failure("Kubo RPC", f))),
                (_, Err(f)) => Some(format!("{}: {}", r.peer, failure("IPFS Cluster REST", f))),
                _ => None,
            })
            .take(3)
            .collect::<Vec<_>>()
            .join("; ");
        self.set(
            conditions::AVAILABLE,
            ConditionStatus::False,
            "NoPeerAnswering",
            &format!("no peer answers on both APIs: {why}"),
        );
    }

    fn progressing(&mut self, obs: &Observed<'_>) {
        let restarting = obs.assessment.decision.history.restart_in_progress.as_ref();
        match (&obs.upgrade, &obs.rollout, restarting) {
            (Some(Upgrade::Stalled(why)), _, _) if !obs.paused => {
                self.set(
                    conditions::PROGRESSING,
                    ConditionStatus::False,
                    UPGRADE_STALLED,
                    why,
                );
            }
            (_, _, Some(r)) if !obs.paused => self.set(
                conditions::PROGRESSING,
                ConditionStatus::True,
                "Healing",
                &format!("restarting peer {}", r.peer),
            ),
            (Some(Upgrade::Upgrading(what)), _, _) if !obs.paused => self.set(
                conditions::PROGRESSING,
                ConditionStatus::True,
                UPGRADING,
                what,
            ),
            (_, Some(why), _) if !obs.paused => self.set(
                conditions::PROGRESSING,
                ConditionStatus::True,
                "RollingOut",
                why,
            ),
            _ => self.set(
                conditions::PROGRESSING,
                ConditionStatus::False,
                if obs.paused { "Paused" } else { "Stable" },
                "every peer runs the current spec",
            ),
        }
    }

    fn degraded(&mut self, obs: &Observed<'_>, health_reason: &str) {
        let level = obs.assessment.health.level;
        if level == HealthLevel::Healthy && obs.problems.is_empty() {
            self.set(
                conditions::DEGRADED,
                ConditionStatus::False,
                "AllPeersHealthy",
                health_reason,
            );
            return;
        }
        let reason = match level {
            HealthLevel::Unhealthy => "PeersUnhealthy",
            HealthLevel::Degraded => "PeersDegraded",
            HealthLevel::Healthy => "ConfigurationProblem",
        };
        self.set(
            conditions::DEGRADED,
            ConditionStatus::True,
            reason,
            health_reason,
        );
    }
}

/// `status` with the times cleared (transition times, probe times): they move every round
/// without saying anything.
fn without_times(status: &IpfsClusterStatus) -> IpfsClusterStatus {
    let mut s = status.clone();
    for c in &mut s.conditions {
        c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
    }
    for p in &mut s.peers {
        p.last_probe = None;
    }
    s
}

/// `status` with what changes every round without saying anything of health cleared: the times
/// and the volatile figures (bandwidth totals, repository size, pin counts). The metrics, the
/// dashboard and the history take those from the latest round in memory; the status carries them
/// as of its last write, at most [`needs_write`]'s refresh old.
fn without_volatile(status: &IpfsClusterStatus) -> IpfsClusterStatus {
    let mut s = without_times(status);
    for p in &mut s.peers {
        p.bytes_in = None;
        p.bytes_out = None;
        p.repo_size = None;
        p.pins_pinned = None;
        p.pins_queued = None;
        p.pins_pinning = None;
    }
    s
}

/// `status` with the volatile figures of `reports` (by peer name): what [`without_volatile`]
/// leaves out, as [`compute`] would have put it. The rest is left as it is.
pub fn with_volatile(status: &mut IpfsClusterStatus, reports: &[PeerReport]) {
    let to_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for p in &mut status.peers {
        let Some(report) = reports.iter().find(|r| r.peer == p.name) else {
            continue;
        };
        let kubo = report.kubo.as_ref().ok();
        let pins = report
            .cluster
            .as_ref()
            .ok()
            .and_then(|c| c.pins.as_ref().ok());
        p.bytes_in = kubo.map(|k| to_i64(k.total_in));
        p.bytes_out = kubo.map(|k| to_i64(k.total_out));
        p.repo_size = kubo.map(|k| to_i64(k.repo_size));
        p.pins_pinned = pins.map(|c| to_i64(c.pinned));
        p.pins_queued = pins.map(|c| to_i64(c.queued));
        p.pins_pinning = pins.map(|c| to_i64(c.pinning));
    }
}

/// Whether `new` must be written over `old`: at once when anything but the times and the
/// volatile figures differs (health, states, errors, versions, peers, conditions); when only the
/// volatile figures moved, once the probe times written last are older than `refresh` (one write
/// per `refresh` at most, however busy the peers are); never when only the times moved (unchanged
/// health writes nothing: `lastProbe` is the probe of the last write).
pub fn needs_write(
    old: Option<&IpfsClusterStatus>,
    new: &IpfsClusterStatus,
    now: UnixMillis,
    refresh: Duration,
) -> bool {
    let Some(old) = old else { return true };
    let (old_figures, new_figures) = (without_times(old), without_times(new));
    if old_figures == new_figures {
        return false;
    }
    if without_volatile(old) != without_volatile(new) {
        return true;
    }
    let refresh_ms = u64::try_from(refresh.as_millis()).unwrap_or(u64::MAX);
    let oldest = old
        .peers
        .iter()
        .filter_map(|p| p.last_probe.as_ref())
        .map(|t| u64::try_from(t.0.as_millisecond()).unwrap_or(0))
        .min();
    oldest.is_some_and(|t| now.saturating_sub(t) >= refresh_ms)
}

#[cfg(test)]
mod tests;
