//! The alerts the operator evaluates itself (see `crate::alerts`), as `status.alerts` carries
//! them: the ones firing, and the most recently resolved. The list changes only when an alert
//! starts or stops firing, so it costs no status write in a steady state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Resolved alerts kept in `status.alerts` beside the firing ones, newest kept.
pub const RESOLVED_ALERTS_LIMIT: usize = 10;

/// How urgent an alert is (the `severity` label of the Prometheus rules).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Someone should act now: a peer or the cluster does not serve.
    Critical,
    /// Needs attention soon.
    Warning,
}

impl AlertSeverity {
    /// `critical` or `warning`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Warning => "warning",
        }
    }
}

/// Whether an alert fires or has resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved` (Alertmanager's words).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert of a cluster, firing or recently resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterAlert {
    /// The alert's name, as in the Prometheus rules (e.g. `IpfsKitPeerDown`).
    pub name: String,
    /// `critical` or `warning`.
    pub severity: AlertSeverity,
    /// The peer concerned; absent for an alert about the whole cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `firing` or `resolved`.
    pub state: AlertState,
    /// When the alert started firing.
    pub starts_at: Time,
    /// When it resolved (absent while it fires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Time>,
    /// One sentence: what is wrong.
    pub summary: String,
    /// What was seen when it started firing, and what it means.
    pub description: String,
}

impl ClusterAlert {
    /// Whether it still fires.
    pub fn is_firing(&self) -> bool {
        self.state == AlertState::Firing
    }
}
