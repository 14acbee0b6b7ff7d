//! The one definition of a change a dashboard client asks for ([`ActionRequest`]), as the
//! dashboard hands it to its reconciler and as it travels through the
//! [`ACTION_REQUEST_ANNOTATION`](super::ACTION_REQUEST_ANNOTATION) in Kubernetes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a client asked for; the reconciler carries it out and the result shows in status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    /// Increasing id, echoed to the client.
    #[serde(default)]
    pub id: u64,
    /// `restart` or `probe`.
    pub action: ActionKind,
    /// The cluster (`namespace/name` in Kubernetes); not repeated in the annotation, which sits
    /// on the cluster itself.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// One peer, or every peer of the cluster when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// One daemon of the peer, or both when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<Daemon>,
    /// RFC 3339 time the request was recorded (Kubernetes: rolls a restart of every peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<String>,
}

/// The changes a client may ask for. Starting and stopping peers are not among them: the
/// reconciler keeps the declared peers running (use `spec.paused` or `spec.replicas`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Restart,
    /// An immediate probe round (`POST /health/check`).
    Probe,
}

/// A daemon of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Daemon {
    /// Kubo.
    Ipfs,
    /// ipfs-cluster-service.
    Cluster,
}

impl Daemon {
    /// The daemon a client names: `ipfs`/`kubo`, or `cluster`/`ipfs-cluster`/
    /// `ipfs_cluster_service`.
    pub fn parse(s: &str) -> Option<Daemon> {
        match s {
            "ipfs" | "kubo" => Some(Daemon::Ipfs),
            "cluster" | "ipfs-cluster" | "ipfs_cluster_service" => Some(Daemon::Cluster),
            _ => None,
        }
    }
}
