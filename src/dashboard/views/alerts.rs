//! The `alerts` of `GET /status`: the operator's alerts of every cluster (firing and recently
//! resolved, from `status.alerts`) and its healing steps (`status.healing`), in the fields of the
//! old toolkit's answer (`type`, `message`, `severity`, `timestamp`) with the cluster, the peer
//! and the state beside them.

use schemars::JsonSchema;
use serde::Serialize;

use crate::api::HealingRecord;
use crate::dashboard::{ClusterEntry, Snapshot};

/// One entry of `alerts` in `GET /status`: an alert the operator evaluated (`type` is its
/// name, e.g. `IpfsKitPeerDown`; firing or recently resolved), or a step of the healing log
/// (`type` `healing`, severity `info`, with the record itself in `entry`).
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Alert {
    /// The alert's name (`IpfsKitPeerDown`, ...), or `healing`.
    #[serde(rename = "type")]
    #[schemars(extend("examples" = ["IpfsKitPeerDown", "healing"]))]
    pub type_: String,
    /// What happened, in one sentence.
    pub message: String,
    /// `critical`, `warning` or `info` (healing steps).
    #[schemars(extend("enum" = ["critical", "warning", "info"]))]
    pub severity: String,
    /// RFC 3339: when the alert started firing, when it resolved, or when the healing step
    /// was taken.
    pub timestamp: String,
    /// `firing` or `resolved`; for a healing step its result in lower case (`pending`,
    /// `succeeded`, `failed`, `skipped`).
    pub state: String,
    /// `namespace/name` in Kubernetes, `name` locally.
    pub cluster: String,
    /// The peer concerned; `null` for an alert about the whole cluster.
    pub peer: Option<String>,
    /// An alert's description (what was seen when it started firing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// An alert's runbook section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runbook_url: Option<String>,
    /// A healing step's record, as `status.healing` holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<HealingRecord>,
}

/// Every cluster's alerts and healing steps, oldest first (by their `timestamp`).
pub fn alerts(snapshot: &Snapshot) -> Vec<Alert> {
    let mut all: Vec<(i64, Alert)> = Vec::new();
    for c in &snapshot.clusters {
        for a in &c.status.alerts {
            let at = a.ends_at.as_ref().unwrap_or(&a.starts_at);
            let runbook = crate::alerts::AlertName::parse(&a.name).map(|n| n.runbook_url());
            all.push((
                at.0.as_millisecond(),
                Alert {
                    type_: a.name.clone(),
                    message: a.summary.clone(),
                    severity: a.severity.as_str().into(),
                    timestamp: at.0.to_string(),
                    state: a.state.as_str().into(),
                    cluster: c.key(),
                    peer: a.peer.clone(),
                    description: Some(a.description.clone()),
                    runbook_url: runbook,
                    entry: None,
                },
            ));
        }
        for h in &c.status.healing {
            all.push((h.time.0.as_millisecond(), healing_alert(c, h)));
        }
    }
    // Stable: at the same time, a cluster's alerts before its healing steps.
    all.sort_by_key(|(at, _)| *at);
    all.into_iter().map(|(_, a)| a).collect()
}

fn healing_alert(c: &ClusterEntry, h: &HealingRecord) -> Alert {
    Alert {
        type_: "healing".into(),
        message: format!("{}: {:?} ({:?}): {}", h.peer, h.action, h.result, h.reason),
        severity: "info".into(),
        timestamp: h.time.0.to_string(),
        state: format!("{:?}", h.result).to_lowercase(),
        cluster: c.key(),
        peer: Some(h.peer.clone()),
        description: None,
        runbook_url: None,
        entry: Some(h.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::IpfsClusterStatus;

    #[test]
    fn alerts_and_healing_steps_are_listed_oldest_first_in_the_toolkits_fields() {
        let status: IpfsClusterStatus = serde_json::from_value(json!({
            "healing": [{"time": "2026-11-27T20:30:00Z", "peer": "web-1",
                "action": "RestartPeer", "reason": "Kubo RPC unresponsive for 3 probes",
                "result": "Skipped"}],
            "alerts": [
                {"name": "IpfsKitPeerDown", "severity": "critical", "peer": "web-1",
                    "state": "firing", "startsAt": "2026-11-27T20:32:00Z",
                    "summary": "Peer web-1 of IpfsCluster prod/web is down",
                    "description": "not answering"},
                {"name": "IpfsKitClusterDegraded", "severity": "warning", "state": "resolved",
                    "startsAt": "2026-11-27T19:00:00Z", "endsAt": "2026-11-27T20:00:00Z",
                    "summary": "IpfsCluster prod/web is degraded", "description": "score 60"},
            ],
        }))
        .expect("status");
        let snapshot = Snapshot {
            clusters: vec![ClusterEntry {
                namespace: Some("prod".into()),
                name: "web".into(),
                uid: None,
                resource_version: None,
                processes: Vec::new(),
                replicas: 2,
                paused: false,
                status,
            }],
            ..Snapshot::default()
        };
        let listed = serde_json::to_value(alerts(&snapshot)).expect("json");
        assert_eq!(
            listed,
            json!([
                {"type": "IpfsKitClusterDegraded", "message": "IpfsCluster prod/web is degraded",
                    "severity": "warning", "timestamp": "2026-11-27T20:00:00Z",
                    "state": "resolved", "cluster": "prod/web", "peer": null,
                    "description": "score 60",
                    "runbook_url": "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md#ipfskitclusterdegraded"},
                {"type": "healing",
                    "message": "web-1: RestartPeer (Skipped): Kubo RPC unresponsive for 3 probes",
                    "severity": "info", "timestamp": "2026-11-27T20:30:00Z", "state": "skipped",
                    "cluster": "prod/web", "peer": "web-1",
                    "entry": {"time": "2026-11-27T20:30:00Z", "peer": "web-1",
                        "action": "RestartPeer", "reason": "Kubo RPC unresponsive for 3 probes",
                        "result": "Skipped"}},
                {"type": "IpfsKitPeerDown", "message": "Peer web-1 of IpfsCluster prod/web is down",
                    "severity": "critical", "timestamp": "2026-11-27T20:32:00Z",
                    "state": "firing", "cluster": "prod/web", "peer": "web-1",
                    "description": "not answering",
                    "runbook_url": "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md#ipfskitpeerdown"},
            ])
        );
    }
}
