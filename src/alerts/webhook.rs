//! Alertmanager's webhook JSON (`version: "4"`), what Alertmanager POSTs to a `webhook_config`
//! receiver, so that any receiver written for Alertmanager (a chat bridge, a pager gateway)
//! takes the operator's alerts as they are. One notification carries the transitions of one
//! cluster in one round: its group is the cluster (`namespace`, `cluster`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::AlertName;
use crate::api::{AlertState, ClusterAlert};

/// The `receiver` of every notification.
pub const RECEIVER: &str = "ipfs-kit-operator";

/// Alertmanager's `endsAt` of an alert that still fires (Go's zero time).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Labels or annotations, sorted by name.
pub type Labels = BTreeMap<String, String>;

/// One POST to the webhook.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Always `"4"`.
    pub version: &'static str,
    /// `{}:{cluster="...",namespace="..."}`, stable for a cluster.
    pub group_key: String,
    /// Alerts left out of `alerts` (never any).
    pub truncated_alerts: u32,
    /// `firing` when any alert of the notification fires, else `resolved`.
    pub status: &'static str,
    pub receiver: String,
    pub group_labels: Labels,
    /// The labels every alert of the notification has.
    pub common_labels: Labels,
    /// The annotations every alert of the notification has.
    pub common_annotations: Labels,
    /// The dashboard, when its address is known; else empty.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WebhookAlert {
    pub status: &'static str,
    /// `alertname`, `severity`, `namespace` (Kubernetes only), `cluster`, `peer` (a peer's
    /// alerts only).
    pub labels: Labels,
    /// `summary`, `description`, `runbook_url`.
    pub annotations: Labels,
    /// RFC 3339.
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// RFC 3339; [`ZERO_TIME`] while it fires.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// Where the alert can be seen: the dashboard's status, when its address is known.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// 16 hex digits of the FNV-1a hash of the labels, as Alertmanager computes it.
    pub fingerprint: String,
}

/// The cluster a notification is about, and where its dashboard is.
#[derive(Clone, Debug, Default)]
pub struct Origin<'a> {
    pub namespace: Option<&'a str>,
    pub cluster: &'a str,
    /// The dashboard's base URL (`http://127.0.0.1:8080/`), if known.
    pub external_url: Option<&'a str>,
}

impl Origin<'_> {
    fn group_labels(&self) -> Labels {
        let mut labels = Labels::new();
        labels.insert("cluster".into(), self.cluster.to_owned());
        if let Some(ns) = self.namespace {
            labels.insert("namespace".into(), ns.to_owned());
        }
        labels
    }
}

/// The notification of a round's `transitions`, or `None` when there are none.
pub fn notification(origin: &Origin<'_>, transitions: &[ClusterAlert]) -> Option<Notification> {
    if transitions.is_empty() {
        return None;
    }
    let group_labels = origin.group_labels();
    let external_url = origin.external_url.unwrap_or_default().to_owned();
    let generator_url = origin
        .external_url
        .map(|u| format!("{}/api/dashboard/status", u.trim_end_matches('/')))
        .unwrap_or_default();
    let alerts: Vec<WebhookAlert> = transitions
        .iter()
        .map(|a| webhook_alert(&group_labels, a, &generator_url))
        .collect();
    let firing = transitions.iter().any(ClusterAlert::is_firing);
    Some(Notification {
        version: "4",
        group_key: format!("{{}}:{}", label_text(&group_labels)),
        truncated_alerts: 0,
        status: if firing { "firing" } else { "resolved" },
        receiver: RECEIVER.into(),
        common_labels: common(alerts.iter().map(|a| &a.labels)),
        common_annotations: common(alerts.iter().map(|a| &a.annotations)),
        group_labels,
        external_url,
        alerts,
    })
}

fn webhook_alert(group: &Labels, alert: &ClusterAlert, generator_url: &str) -> WebhookAlert {
    let mut labels = group.clone();
    labels.insert("alertname".into(), alert.name.clone());
    labels.insert("severity".into(), alert.severity.as_str().into());
    if let Some(peer) = &alert.peer {
        labels.insert("peer".into(), peer.clone());
    }
    let runbook = AlertName::parse(&alert.name).map(AlertName::runbook_url);
    let mut annotations = Labels::new();
    annotations.insert("summary".into(), alert.summary.clone());
    annotations.insert("description".into(), alert.description.clone());
    annotations.insert("runbook_url".into(), runbook.unwrap_or_default());
    WebhookAlert {
        status: alert.state.as_str(),
        fingerprint: fingerprint(&labels),
        labels,
        annotations,
        starts_at: alert.starts_at.0.to_string(),
        ends_at: match (&alert.state, &alert.ends_at) {
            (AlertState::Resolved, Some(end)) => end.0.to_string(),
            _ => ZERO_TIME.into(),
        },
        generator_url: generator_url.to_owned(),
    }
}

/// The pairs every map of `maps` holds with the same value.
fn common<'a>(mut maps: impl Iterator<Item = &'a Labels>) -> Labels {
    let Some(first) = maps.next() else {
        return Labels::new();
    };
    let mut shared = first.clone();
    for m in maps {
        shared.retain(|k, v| m.get(k) == Some(v));
    }
    shared
}

/// `{a="1",b="2"}`, as Alertmanager writes a label set.
fn label_text(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str())))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the labels sorted by name, each
/// name and value followed by the byte 0xff, as 16 hex digits.
pub fn fingerprint(labels: &Labels) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes.iter().chain([0xffu8].iter()) {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(value.as_bytes());
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::AlertSeverity;
    use crate::reconcile::status::time;

    fn alert(name: &str, peer: Option<&str>, state: AlertState) -> ClusterAlert {
        ClusterAlert {
            name: name.into(),
            severity: AlertSeverity::Critical,
            peer: peer.map(Into::into),
            state,
            starts_at: time(1_795_000_000_000),
            ends_at: (state == AlertState::Resolved).then(|| time(1_795_000_180_500)),
            summary: "Peer demo-1 of IpfsCluster prod/demo is down".into(),
            description: "not answering".into(),
        }
    }

    #[test]
    fn a_notification_is_alertmanagers_webhook_json() {
        let origin = Origin {
            namespace: Some("prod"),
            cluster: "demo",
            external_url: Some("http://dash.example:8080/"),
        };
        let n = notification(
            &origin,
            &[
                alert("IpfsKitPeerDown", Some("demo-1"), AlertState::Firing),
                alert("IpfsKitPeerDown", Some("demo-2"), AlertState::Resolved),
            ],
        )
        .expect("a notification");
        let runbook = "https://github.com/ipfs-kit/ipfs-kit-operator/blob/main/docs/runbooks.md#ipfskitpeerdown";
        let annotations = json!({
            "summary": "Peer demo-1 of IpfsCluster prod/demo is down",
            "description": "not answering",
            "runbook_url": runbook,
        });
        let labels = |peer: &str| {
            json!({"alertname": "IpfsKitPeerDown", "severity": "critical",
                "namespace": "prod", "cluster": "demo", "peer": peer})
        };
        let expected = json!({
            "version": "4",
            "groupKey": "{}:{cluster=\"demo\",namespace=\"prod\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "ipfs-kit-operator",
            "groupLabels": {"cluster": "demo", "namespace": "prod"},
            "commonLabels": {"alertname": "IpfsKitPeerDown", "severity": "critical",
                "namespace": "prod", "cluster": "demo"},
            "commonAnnotations": annotations,
            "externalURL": "http://dash.example:8080/",
            "alerts": [
                {
                    "status": "firing",
                    "labels": labels("demo-1"),
                    "annotations": annotations,
                    "startsAt": "2026-11-18T11:06:40Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://dash.example:8080/api/dashboard/status",
                    "fingerprint": fingerprint(&serde_json::from_value(labels("demo-1")).expect("labels")),
                },
                {
                    "status": "resolved",
                    "labels": labels("demo-2"),
                    "annotations": annotations,
                    "startsAt": "2026-11-18T11:06:40Z",
                    "endsAt": "2026-11-18T11:09:40.5Z",
                    "generatorURL": "http://dash.example:8080/api/dashboard/status",
                    "fingerprint": fingerprint(&serde_json::from_value(labels("demo-2")).expect("labels")),
                },
            ],
        });
        assert_eq!(serde_json::to_value(&n).expect("json"), expected);
    }

    #[test]
    fn a_local_resolution_has_no_namespace_and_no_dashboard_link() {
        let origin = Origin {
            namespace: None,
            cluster: "demo",
            external_url: None,
        };
        let n = notification(
            &origin,
            &[alert("IpfsKitClusterUnhealthy", None, AlertState::Resolved)],
        )
        .expect("a notification");
        let v = serde_json::to_value(&n).expect("json");
        assert_eq!(v["status"], "resolved");
        assert_eq!(v["groupKey"], "{}:{cluster=\"demo\"}");
        assert_eq!(
            v["alerts"][0]["labels"],
            json!({"alertname": "IpfsKitClusterUnhealthy", "severity": "critical", "cluster": "demo"})
        );
        assert_eq!(v["externalURL"], "");
        assert_eq!(v["alerts"][0]["generatorURL"], "");
        assert!(notification(&origin, &[]).is_none());
    }

    #[test]
    fn the_fingerprint_is_alertmanagers() {
        // Computed with github.com/prometheus/common/model (LabelSet.Fingerprint) v0.72.1.
        let labels: Labels = serde_json::from_value(json!({"alertname": "IpfsKitPeerDown",
            "severity": "critical", "namespace": "prod", "cluster": "demo", "peer": "demo-1"}))
        .expect("labels");
        assert_eq!(fingerprint(&labels), "9353922b3b1aa3be");
        assert_eq!(fingerprint(&Labels::new()), "cbf29ce484222325");
    }
}
