//! The ping task of one cluster: one timer, at most [`Settings::concurrency`] pings in flight, no
//! call but the pings themselves. The runtime tells it after every probe round which daemons
//! answered ([`Monitor::watch`]); it tells the runtime when the set of hung daemons changes (the
//! `on_change` callback, and [`Monitor::changes`]).

use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{DaemonApi, HungSet, MISSES_TO_HUNG, Misses, PING_INTERVAL, PING_TIMEOUT};
use crate::probe::http::{Endpoint, IpfsClient};
use crate::probe::report::ProbeResult;

/// One daemon to ping.
#[derive(Clone, Debug)]
pub struct PingTarget {
    /// The peer's name, e.g. `demo-0`.
    pub peer: String,
    pub api: DaemonApi,
    pub endpoint: Endpoint,
    /// Whether this API answered the last probe round (only those are pinged, and the hung ones
    /// until they answer again).
    pub answered: bool,
}

impl PartialEq for PingTarget {
    fn eq(&self, other: &Self) -> bool {
        self.peer == other.peer
            && self.api == other.api
            && self.endpoint.base == other.endpoint.base
            && self.answered == other.answered
    }
}

/// How the daemons are pinged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub interval: Duration,
    pub timeout: Duration,
    pub misses_to_hung: u32,
    /// Pings in flight at once, at most.
    pub concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval: PING_INTERVAL,
            timeout: PING_TIMEOUT,
            misses_to_hung: MISSES_TO_HUNG,
            concurrency: 16,
        }
    }
}

impl IpfsClient {
    /// One liveness ping of a daemon's cheapest endpoint: Kubo `POST /api/v0/version` (answered
    /// from memory), IPFS Cluster `GET /health` (204, needs nothing but the daemon).
    pub async fn ping(&self, api: DaemonApi, at: &Endpoint, timeout: Duration) -> ProbeResult<()> {
        let (method, path) = match api {
            DaemonApi::Kubo => (Method::POST, "/api/v0/version"),
            DaemonApi::Cluster => (Method::GET, "/health"),
        };
        let req = self.request(method, at, path, timeout);
        Self::send(api.ping_call(), req, &[]).await.map(drop)
    }
}

/// The ping task of one cluster; dropping it stops the task.
#[derive(Debug)]
pub struct Monitor {
    targets: watch::Sender<Vec<PingTarget>>,
    hung: watch::Receiver<HungSet>,
    task: tokio::task::AbortHandle,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Monitor {
    /// Starts pinging for cluster `name` (in logs); `on_change` is called whenever the set of hung
    /// daemons changes. Needs a Tokio runtime.
    pub fn spawn(
        name: String,
        client: IpfsClient,
        settings: Settings,
        on_change: impl Fn() + Send + Sync + 'static,
    ) -> Monitor {
        let (targets, targets_rx) = watch::channel(Vec::new());
        let (hung_tx, hung) = watch::channel(HungSet::new());
        let task = tokio::spawn(run(name, client, settings, targets_rx, hung_tx, on_change));
        Monitor {
            targets,
            hung,
            task: task.abort_handle(),
        }
    }

    /// The daemons to ping from now on (after a probe round).
    pub fn watch(&self, targets: Vec<PingTarget>) {
        self.targets.send_if_modified(|t| {
            let changed = *t != targets;
            *t = targets;
            changed
        });
    }

    /// The daemons hung now.
    pub fn hung(&self) -> HungSet {
        self.hung.borrow().clone()
    }

    /// A receiver that sees every change of the hung daemons.
    pub fn changes(&self) -> watch::Receiver<HungSet> {
        self.hung.clone()
    }
}

async fn run(
    name: String,
    client: IpfsClient,
    settings: Settings,
    mut targets: watch::Receiver<Vec<PingTarget>>,
    hung: watch::Sender<HungSet>,
    on_change: impl Fn() + Send + Sync + 'static,
) {
    let mut misses = Misses::new(settings.timeout, settings.misses_to_hung);
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let current = targets.borrow_and_update().clone();
        misses.retain(&current);
        publish(&name, &misses, &hung, &on_change);
        let due: Vec<PingTarget> = current.into_iter().filter(|t| misses.wants(t)).collect();
        if due.is_empty() {
            // Nothing answers (yet): wait for the next round's targets.
            if targets.changed().await.is_err() {
                return;
            }
            continue;
        }
        tick.tick().await;
        // Owned targets and client per ping: the task's future stays `Send` and `'static`.
        let results: Vec<(PingTarget, ProbeResult<()>)> = futures::stream::iter(due)
            .map(|t| {
                let client = client.clone();
                async move {
                    let result = client.ping(t.api, &t.endpoint, settings.timeout).await;
                    (t, result)
                }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        for (target, result) in results {
            misses.record(&target, result);
        }
        publish(&name, &misses, &hung, &on_change);
        if targets.has_changed().is_err() {
            return;
        }
    }
}

/// Hands the hung daemons to the runtime when they changed, with a log line per change.
fn publish(
    name: &str,
    misses: &Misses,
    hung: &watch::Sender<HungSet>,
    on_change: &(impl Fn() + Send + Sync),
) {
    let now = misses.hung();
    let before = hung.borrow().clone();
    if before == now {
        return;
    }
    for ((peer, api), why) in &now {
        if !before.contains_key(&(peer.clone(), *api)) {
            warn!(
                cluster = name,
                peer,
                daemon = api.label(),
                "{}",
                why.message
            );
        }
    }
    for (peer, api) in before.keys() {
        if !now.contains_key(&(peer.clone(), *api)) {
            info!(
                cluster = name,
                peer,
                daemon = api.label(),
                "not hung any more (answers again, or gone)"
            );
        }
    }
    hung.send_replace(now);
    on_change();
}
