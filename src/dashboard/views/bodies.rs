//! The request bodies of the action routes, as the old toolkit's clients send them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// `POST /api/dashboard/daemon/action` body. The other fields are what the old toolkit's clients
/// send: accepted and ignored.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonAction {
    /// A backend name.
    pub daemon_name: String,
    /// `restart` or `status`; `start` and `stop` are refused with 422 unsupported_action: the
    /// reconciler keeps every declared peer running.
    #[schemars(extend("enum" = ["start", "stop", "restart", "status"]))]
    pub action: String,
    /// Sent by the old toolkit's clients; accepted and ignored.
    #[serde(default, rename = "force")]
    pub _force: Option<Value>,
    /// Accepted and ignored (healing follows spec.health.autoHeal).
    #[serde(default, rename = "auto_heal")]
    pub _auto_heal: Option<Value>,
    /// Accepted and ignored.
    #[serde(default, rename = "force_restart")]
    pub _force_restart: Option<Value>,
    /// Accepted and ignored (every check is a fresh probe round).
    #[serde(default, rename = "force_check")]
    pub _force_check: Option<Value>,
    /// Accepted and ignored (results always include the peer figures).
    #[serde(default, rename = "include_metrics")]
    pub _include_metrics: Option<Value>,
}

/// `POST /api/dashboard/cluster/action` body.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterAction {
    /// `restart`, `status` or `peers`; `start` and `stop` are refused with 422
    /// unsupported_action: the reconciler keeps every declared peer running.
    #[schemars(extend("enum" = ["start", "stop", "restart", "status", "peers"]))]
    pub action: String,
    /// Needed when the dashboard serves more than one cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Sent by the old toolkit's clients; accepted and ignored.
    #[serde(default, rename = "force")]
    pub _force: Option<Value>,
    /// Accepted and ignored.
    #[serde(default, rename = "force_restart")]
    pub _force_restart: Option<Value>,
}

/// `POST /api/dashboard/health/check` body.
#[derive(Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// One backend to probe; without it, the only cluster.
    #[serde(default)]
    pub backend_name: Option<String>,
    /// Accepted and ignored (every check is a fresh probe round).
    #[serde(default, rename = "force_check")]
    pub _force_check: Option<Value>,
    /// Accepted and ignored (results always include the peer figures).
    #[serde(default, rename = "include_metrics")]
    pub _include_metrics: Option<Value>,
}
