//! Alerts the operator evaluates itself, delivered without Prometheus: after every reconciled
//! round of a cluster (the leader's reconcile in Kubernetes, the supervisor's probe round
//! locally) the same alerts as the Prometheus rules (same names, severities and meanings) are
//! evaluated from the cluster's status and the health engine's history.
//!
//! - [`rules`]: which alert conditions hold in a round (pure);
//! - [`engine`]: pending -> firing -> resolved, with each alert's `for` duration (pure);
//! - [`webhook`]: Alertmanager's webhook JSON (version 4) for a round's transitions (pure);
//! - [`delivery`]: the `--alert-webhook` URL and the background sender (bounded queue, retries);
//! - [`alerter`]: what a runtime holds: the engine's state per cluster, the timings, the sender.
//!
//! `IpfsKitOperatorNotReconciling` and `IpfsKitLeaderMissing` exist only as Prometheus rules: an
//! operator that does not reconcile, or has no leader, cannot report it itself.

pub mod alerter;
pub mod delivery;
pub mod engine;
pub mod rules;
pub mod webhook;

use std::fmt;
use std::time::Duration;

pub use crate::api::{AlertSeverity, AlertState, ClusterAlert};
pub use alerter::{AlertOptions, AlertSettings, Alerter, RoundAlerts};
pub use delivery::{DeliverySettings, Webhook, WebhookUrl};
pub use engine::ClusterAlerts;
pub use rules::{Condition, Facts};

/// Where each alert's runbook section is: `<base>#<alertname in lower case>`.
pub const RUNBOOK_BASE_URL: &str =
    "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md";

/// `IpfsKitPeerDown`: how long a peer's APIs must stay silent.
pub const PEER_DOWN_FOR: Duration = Duration::from_secs(2 * 60);
/// `IpfsKitClusterDegraded`: how long the phase must stay Degraded.
pub const CLUSTER_DEGRADED_FOR: Duration = Duration::from_secs(10 * 60);
/// `IpfsKitClusterUnhealthy`: how long the phase must stay Unhealthy.
pub const CLUSTER_UNHEALTHY_FOR: Duration = Duration::from_secs(5 * 60);
/// `IpfsKitHealingBudgetExhausted`: fires as soon as no restart is left.
pub const HEALING_BUDGET_EXHAUSTED_FOR: Duration = Duration::ZERO;
/// `IpfsKitPinsInError`: how long a peer must hold pins in error.
pub const PINS_IN_ERROR_FOR: Duration = Duration::from_secs(15 * 60);
/// `IpfsKitPartition`: how long a peer must miss some of its peers.
pub const PARTITION_FOR: Duration = Duration::from_secs(5 * 60);
/// `IpfsKitRepoNearStorageMax`: how long a repository must stay above 90 % of StorageMax.
pub const REPO_NEAR_STORAGE_MAX_FOR: Duration = Duration::from_secs(15 * 60);
/// `IpfsKitVolumeNearFull`: how long a repository must fill more than 90 % of its volume.
pub const VOLUME_NEAR_FULL_FOR: Duration = Duration::from_secs(15 * 60);

/// The share of StorageMax, or of the volume, above which a repository is "near" it.
pub const NEAR_FULL_RATIO: f64 = 0.9;

/// The alerts the operator evaluates (the Prometheus rules have two more, see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertName {
    PeerDown,
    ClusterDegraded,
    ClusterUnhealthy,
    HealingBudgetExhausted,
    PinsInError,
    Partition,
    RepoNearStorageMax,
    VolumeNearFull,
}

impl AlertName {
    /// Every alert, in this order.
    pub const ALL: [AlertName; 8] = [
        Self::PeerDown,
        Self::ClusterDegraded,
        Self::ClusterUnhealthy,
        Self::HealingBudgetExhausted,
        Self::PinsInError,
        Self::Partition,
        Self::RepoNearStorageMax,
        Self::VolumeNearFull,
    ];

    /// The `alertname`, e.g. `IpfsKitPeerDown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PeerDown => "IpfsKitPeerDown",
            Self::ClusterDegraded => "IpfsKitClusterDegraded",
            Self::ClusterUnhealthy => "IpfsKitClusterUnhealthy",
            Self::HealingBudgetExhausted => "IpfsKitHealingBudgetExhausted",
            Self::PinsInError => "IpfsKitPinsInError",
            Self::Partition => "IpfsKitPartition",
            Self::RepoNearStorageMax => "IpfsKitRepoNearStorageMax",
            Self::VolumeNearFull => "IpfsKitVolumeNearFull",
        }
    }

    /// The alert of `alertname`, if the operator evaluates it.
    pub fn parse(alertname: &str) -> Option<AlertName> {
        Self::ALL.into_iter().find(|a| a.as_str() == alertname)
    }

    /// Its `severity` label.
    pub const fn severity(self) -> AlertSeverity {
        match self {
            Self::PeerDown | Self::ClusterUnhealthy | Self::Partition | Self::VolumeNearFull => {
                AlertSeverity::Critical
            }
            Self::ClusterDegraded
            | Self::HealingBudgetExhausted
            | Self::PinsInError
            | Self::RepoNearStorageMax => AlertSeverity::Warning,
        }
    }

    /// How long its condition must hold before it fires (the rule's `for`).
    pub const fn default_for(self) -> Duration {
        match self {
            Self::PeerDown => PEER_DOWN_FOR,
            Self::ClusterDegraded => CLUSTER_DEGRADED_FOR,
            Self::ClusterUnhealthy => CLUSTER_UNHEALTHY_FOR,
            Self::HealingBudgetExhausted => HEALING_BUDGET_EXHAUSTED_FOR,
            Self::PinsInError => PINS_IN_ERROR_FOR,
            Self::Partition => PARTITION_FOR,
            Self::RepoNearStorageMax => REPO_NEAR_STORAGE_MAX_FOR,
            Self::VolumeNearFull => VOLUME_NEAR_FULL_FOR,
        }
    }

    /// Its runbook section.
    pub fn runbook_url(self) -> String {
        format!("{RUNBOOK_BASE_URL}#{}", self.as_str().to_lowercase())
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `for` duration of every alert: the constants above unless overridden (tests, or a
/// user who wants to hear sooner: `--alert-for IpfsKitPeerDown=30s`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timings {
    durations: [Duration; AlertName::ALL.len()],
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            durations: AlertName::ALL.map(AlertName::default_for),
        }
    }
}

impl Timings {
    /// How long the condition of `alert` must hold before it fires.
    pub fn of(&self, alert: AlertName) -> Duration {
        self.durations[alert as usize]
    }

    /// Sets the `for` duration of `alert`.
    pub fn set(&mut self, alert: AlertName, duration: Duration) {
        self.durations[alert as usize] = duration;
    }

    /// The defaults with `overrides` applied, each `NAME=DURATION` (`IpfsKitPeerDown=30s`) or
    /// `all=DURATION`; the error names the bad override and the flag `flag`.
    pub fn with_overrides(overrides: &[String], flag: &str) -> Result<Timings, String> {
        let mut timings = Timings::default();
        for item in overrides {
            let bad = |why: String| format!("{flag} {item:?}: {why}");
            let (name, duration) = item
                .split_once('=')
                .ok_or_else(|| bad("expected NAME=DURATION, e.g. IpfsKitPeerDown=30s".into()))?;
            let duration = crate::api::validation::parse_duration(duration).map_err(bad)?;
            if name == "all" {
                timings.durations = [duration; AlertName::ALL.len()];
                continue;
            }
            let alert = AlertName::parse(name).ok_or_else(|| {
                let names: Vec<&str> = AlertName::ALL.iter().map(|a| a.as_str()).collect();
                bad(format!(
                    "unknown alert {name:?}; one of all, {}",
                    names.join(", ")
                ))
            })?;
            timings.set(alert, duration);
        }
        Ok(timings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_severities_and_runbooks_are_the_prometheus_rules() {
        let table: Vec<(&str, &str, u64)> = AlertName::ALL
            .iter()
            .map(|a| (a.as_str(), a.severity().as_str(), a.default_for().as_secs()))
            .collect();
        assert_eq!(
            table,
            [
                ("IpfsKitPeerDown", "critical", 120),
                ("IpfsKitClusterDegraded", "warning", 600),
                ("IpfsKitClusterUnhealthy", "critical", 300),
                ("IpfsKitHealingBudgetExhausted", "warning", 0),
                ("IpfsKitPinsInError", "warning", 900),
                ("IpfsKitPartition", "critical", 300),
                ("IpfsKitRepoNearStorageMax", "warning", 900),
                ("IpfsKitVolumeNearFull", "critical", 900),
            ]
        );
        assert_eq!(
            AlertName::PeerDown.runbook_url(),
            "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md#ipfskitpeerdown"
        );
        for a in AlertName::ALL {
            assert_eq!(AlertName::parse(a.as_str()), Some(a));
        }
        assert_eq!(AlertName::parse("IpfsKitLeaderMissing"), None);
    }

    #[test]
    fn timings_are_overridden_by_name_or_all_and_bad_ones_are_named() {
        let t = Timings::with_overrides(&["all=1s".into(), "IpfsKitPeerDown=3s".into()], "--x")
            .expect("overrides");
        assert_eq!(t.of(AlertName::PeerDown), Duration::from_secs(3));
        assert_eq!(t.of(AlertName::VolumeNearFull), Duration::from_secs(1));
        let err = Timings::with_overrides(&["IpfsKitNope=1s".into()], "--alert-for")
            .expect_err("unknown");
        assert!(
            err.starts_with("--alert-for \"IpfsKitNope=1s\": unknown alert")
                && err.contains("IpfsKitPeerDown"),
            "{err}"
        );
        let err = Timings::with_overrides(&["IpfsKitPeerDown=soon".into()], "--alert-for")
            .expect_err("duration");
        assert!(err.contains("not a duration"), "{err}");
        assert!(Timings::with_overrides(&["PeerDown".into()], "--alert-for").is_err());
    }
}
