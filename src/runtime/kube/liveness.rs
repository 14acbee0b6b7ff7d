//! The liveness pings of every cluster's daemons ([`crate::probe::liveness`]): one ping task per
//! cluster, started by its first probe round and fed by each later one with the pods' IPs the
//! round probed (no API-server call per ping). When a daemon turns hung (or answers again) the
//! cluster is reconciled at once (`Controller::reconcile_on`), and the round judges the hung daemon
//! on the pings' word instead of waiting for its probes to time out.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{mpsc, watch};

use crate::api::IpfsCluster;
use crate::probe::IpfsClient;
use crate::probe::liveness::monitor::Settings;
use crate::probe::liveness::{HungSet, Monitor, PingTarget};

type Key = ObjectRef<IpfsCluster>;

/// The ping tasks of the clusters, and the stream of clusters to reconcile because a daemon of
/// theirs turned hung or answers again.
pub struct Pings {
    client: IpfsClient,
    settings: Settings,
    monitors: Mutex<HashMap<Key, Monitor>>,
    trigger: mpsc::UnboundedSender<Key>,
    triggers: Mutex<Option<mpsc::UnboundedReceiver<Key>>>,
}

impl Pings {
    pub fn new(client: IpfsClient, settings: Settings) -> Pings {
        let (trigger, triggers) = mpsc::unbounded_channel();
        Pings {
            client,
            settings,
            monitors: Mutex::new(HashMap::new()),
            trigger,
            triggers: Mutex::new(Some(triggers)),
        }
    }

    /// The clusters to reconcile at once (for `Controller::reconcile_on`); `None` once taken.
    pub fn take_triggers(&self) -> Option<impl Stream<Item = Key> + Send + 'static> {
        let rx = self
            .triggers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|key| (key, rx))
        }))
    }

    /// A sender into the stream of clusters to reconcile at once.
    pub fn trigger(&self) -> mpsc::UnboundedSender<Key> {
        self.trigger.clone()
    }

    /// The daemons of `cluster` hung now, and a receiver of the changes (none before its first
    /// round).
    pub fn hung(&self, cluster: &Key) -> (HungSet, Option<watch::Receiver<HungSet>>) {
        let monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        match monitors.get(cluster) {
            Some(m) => (m.hung(), Some(m.changes())),
            None => (HungSet::new(), None),
        }
    }

    /// Pings `targets` of `cluster` from now on (its task started once one of them answered a
    /// round: a cluster none of whose daemons ever answered has nothing to ping, and costs no
    /// task).
    pub fn watch(&self, cluster: &Key, targets: Vec<PingTarget>) {
        let mut monitors = self.monitors.lock().unwrap_or_else(|e| e.into_inner());
        if !monitors.contains_key(cluster) && !targets.iter().any(|t| t.answered) {
            return;
        }
        let monitor = monitors.entry(cluster.clone()).or_insert_with(|| {
            let trigger = self.trigger.clone();
            let key = cluster.clone();
            Monitor::spawn(
                format!(
                    "{}/{}",
                    key.namespace.as_deref().unwrap_or_default(),
                    key.name
                ),
                self.client.clone(),
                self.settings,
                move || {
                    let _ = trigger.send(key.clone());
                },
            )
        });
        monitor.watch(targets);
    }

    /// Stops pinging a deleted cluster.
    pub fn forget(&self, cluster: &Key) {
        self.monitors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Endpoint;
    use crate::probe::liveness::ping_targets;

    #[tokio::test]
    async fn a_cluster_gets_a_ping_task_only_once_a_daemon_answered() {
        let pings = Pings::new(IpfsClient::new().expect("client"), Settings::default());
        let key = ObjectRef::new("web").within("team");
        let api = Endpoint::at("127.0.0.1", 9);
        let tasks = |p: &Pings| p.monitors.lock().expect("lock").len();
        pings.watch(
            &key,
            ping_targets("web-0", (&api, false), (&api, false)).into(),
        );
        assert_eq!(tasks(&pings), 0, "nothing answered: nothing to ping");
        pings.watch(
            &key,
            ping_targets("web-0", (&api, true), (&api, false)).into(),
        );
        assert_eq!(tasks(&pings), 1);
        // Once started, it is kept (a hung daemon is pinged until it answers again).
        pings.watch(
            &key,
            ping_targets("web-0", (&api, false), (&api, false)).into(),
        );
        assert_eq!(tasks(&pings), 1);
        pings.forget(&key);
        assert_eq!(tasks(&pings), 0);
    }
}
