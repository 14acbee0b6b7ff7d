//! What a runtime holds to evaluate alerts: the engine's state per cluster, the `for` timings
//! and the webhook sender. [`Alerter::round`] is called once per reconciled round of a cluster;
//! it logs each transition and queues it for the webhook, and returns the cluster's alert list
//! for `status.alerts` with the transitions (Kubernetes makes Events of them).

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::{info, warn};

use super::engine::ClusterAlerts;
use super::rules::{self, Facts};
use super::webhook::{Origin, notification};
use super::{DeliverySettings, Timings, Webhook, WebhookUrl};
use crate::api::ClusterAlert;
use crate::reconcile::UnixMillis;

/// The alert flags, checked at start (before any runtime exists).
#[derive(Clone, Debug, Default)]
pub struct AlertOptions {
    /// `--alert-webhook`.
    pub webhook: Option<WebhookUrl>,
    /// The `for` durations, with the overrides of `--alert-for`.
    pub timings: Timings,
    pub delivery: DeliverySettings,
}

impl AlertOptions {
    /// Checks `--alert-webhook` (empty counts as unset) and the `--alert-for` overrides; the
    /// error names the flag.
    pub fn from_flags(webhook: Option<&str>, overrides: &[String]) -> Result<AlertOptions, String> {
        let webhook = webhook
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(WebhookUrl::parse)
            .transpose()?;
        Ok(AlertOptions {
            webhook,
            timings: Timings::with_overrides(overrides, "--alert-for")?,
            delivery: DeliverySettings::default(),
        })
    }

    /// Starts the webhook sender, if any (inside a Tokio runtime). `external_url`: the
    /// dashboard's base URL, if known.
    pub fn start(self, external_url: Option<String>) -> Result<AlertSettings, String> {
        let webhook = self
            .webhook
            .map(|url| Webhook::start(url, self.delivery))
            .transpose()?;
        Ok(AlertSettings {
            timings: self.timings,
            webhook,
            external_url,
        })
    }
}

/// How a runtime evaluates and delivers alerts.
#[derive(Clone, Debug, Default)]
pub struct AlertSettings {
    /// The `for` duration of each alert.
    pub timings: Timings,
    /// The sender to `--alert-webhook`, if one was given.
    pub webhook: Option<Webhook>,
    /// The dashboard's base URL (the notifications' `externalURL`), if known.
    pub external_url: Option<String>,
}

/// The outcome of one round of a cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoundAlerts {
    /// The cluster's alerts, for `status.alerts`.
    pub alerts: Vec<ClusterAlert>,
    /// The alerts that started firing or resolved in this round.
    pub transitions: Vec<ClusterAlert>,
}

/// The alert engine of every cluster a runtime reconciles.
#[derive(Debug, Default)]
pub struct Alerter {
    settings: AlertSettings,
    clusters: Mutex<HashMap<String, ClusterAlerts>>,
}

impl Alerter {
    pub fn new(settings: AlertSettings) -> Alerter {
        Alerter {
            settings,
            clusters: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    /// Evaluates a round of the cluster of `facts` at `now`. A cluster seen for the first time
    /// takes over the alerts of its `previous` status (those of an earlier leader or
    /// supervisor). Transitions are logged and queued for the webhook.
    pub fn round(
        &self,
        facts: &Facts<'_>,
        previous: &[ClusterAlert],
        now: UnixMillis,
    ) -> RoundAlerts {
        let conditions = rules::active(facts);
        let (alerts, transitions) = {
            let mut clusters = self.clusters.lock().unwrap_or_else(|e| e.into_inner());
            let state = clusters
                .entry(facts.cluster_key())
                .or_insert_with(|| ClusterAlerts::from_status(previous));
            let transitions = state.evaluate(conditions, &self.settings.timings, now);
            (state.list(), transitions)
        };
        self.deliver(facts.namespace, facts.cluster, &transitions);
        RoundAlerts {
            alerts,
            transitions,
        }
    }

    /// When the first alert of cluster `key` (`namespace/name`) whose condition holds fires (its
    /// `for` duration over), if its condition still holds then.
    pub fn fires_at(&self, key: &str) -> Option<UnixMillis> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)?
            .fires_at(&self.settings.timings)
    }

    /// Forgets a deleted cluster: what fired is resolved (and delivered as such).
    pub fn forget(
        &self,
        namespace: Option<&str>,
        cluster: &str,
        now: UnixMillis,
    ) -> Vec<ClusterAlert> {
        let key = match namespace {
            Some(ns) => format!("{ns}/{cluster}"),
            None => cluster.to_owned(),
        };
        let state = self
            .clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let resolved = state.map(|mut s| s.resolve_all(now)).unwrap_or_default();
        self.deliver(namespace, cluster, &resolved);
        resolved
    }

    fn deliver(&self, namespace: Option<&str>, cluster: &str, transitions: &[ClusterAlert]) {
        for t in transitions {
            let peer = t.peer.as_deref().unwrap_or("");
            if t.is_firing() {
                warn!(alert = %t.name, severity = t.severity.as_str(), cluster, peer, "alert firing: {}", t.summary);
            } else {
                info!(alert = %t.name, cluster, peer, "alert resolved: {}", t.summary);
            }
        }
        let Some(webhook) = &self.settings.webhook else {
            return;
        };
        let origin = Origin {
            namespace,
            cluster,
            external_url: self.settings.external_url.as_deref(),
        };
        if let Some(n) = notification(&origin, transitions) {
            webhook.send(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alerts::AlertName;
    use crate::api::{ClusterPhase, IpfsClusterStatus, PeerStatus};

    #[test]
    fn rounds_of_a_cluster_fire_and_resolve_and_a_new_alerter_takes_over_from_status() {
        let mut timings = Timings::default();
        timings.set(
            AlertName::ClusterUnhealthy,
            std::time::Duration::from_secs(60),
        );
        let alerter = Alerter::new(AlertSettings {
            timings: timings.clone(),
            ..AlertSettings::default()
        });
        let unhealthy = IpfsClusterStatus {
            phase: Some(ClusterPhase::Unhealthy),
            peers: vec![PeerStatus {
                name: "web-0".into(),
                peer_id: Some("a".into()),
                cluster_peer_id: Some("b".into()),
                ..PeerStatus::default()
            }],
            ..IpfsClusterStatus::default()
        };
        let budget = BTreeMap::new();
        let facts = Facts {
            namespace: Some("prod"),
            cluster: "web",
            status: &unhealthy,
            budget_left: &budget,
            volume_capacity: None,
        };
        assert_eq!(alerter.round(&facts, &[], 0), RoundAlerts::default());
        let fired = alerter.round(&facts, &[], 60_000);
        assert_eq!(fired.transitions.len(), 1);
        assert_eq!(fired.alerts, fired.transitions);
        assert_eq!(fired.alerts[0].summary, "IpfsCluster prod/web is unhealthy");

        // A new leader: takes the firing alert over from the status and resolves it.
        let next = Alerter::new(AlertSettings {
            timings,
            ..AlertSettings::default()
        });
        let healthy = IpfsClusterStatus {
            phase: Some(ClusterPhase::Healthy),
            ..unhealthy.clone()
        };
        let facts = Facts {
            status: &healthy,
            ..facts
        };
        let resolved = next.round(&facts, &fired.alerts, 90_000);
        assert_eq!(resolved.transitions.len(), 1);
        assert!(!resolved.transitions[0].is_firing());
        assert_eq!(next.forget(Some("prod"), "web", 100_000), []);
        let again = alerter.forget(Some("prod"), "web", 100_000);
        assert_eq!(
            again.len(),
            1,
            "the deleted cluster's firing alert resolves"
        );
    }
}
