//! Liveness pings: between two probe rounds, every daemon that answered the last round is pinged
//! on its cheapest endpoint (Kubo `POST /api/v0/version`, IPFS Cluster `GET /health`) every
//! [`PING_INTERVAL`], each ping bounded by [`PING_TIMEOUT`]. A daemon that misses
//! [`MISSES_TO_HUNG`] pings in a row is **hung** (a stopped or wedged process answers no request,
//! though its port still accepts connections): the runtime runs a round at once in which that
//! daemon counts as not answering, without waiting for the probe round's own timeout, so that the
//! status shows it within seconds. The health engine then heals as its policy says (a failure
//! counts once per probe interval, so pings make detection faster, never healing).
//!
//! - here, the pure part: [`Misses`] (which daemon missed how many pings) and [`overlay`] (a peer's
//!   report with its hung daemons marked as not answering);
//! - [`monitor`]: the ping task of one cluster ([`Monitor`]), and the ping calls.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::http::Endpoint;
use super::report::{FailureKind, PeerReport, ProbeFailure, ProbeResult};

pub mod monitor;

pub use monitor::{Monitor, PingTarget};

/// Time between two pings of a daemon.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long one ping may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Pings missed in a row after which a daemon is hung: with the interval and timeout above, a
/// daemon that stops answering is found within about `MISSES_TO_HUNG + 1` seconds.
pub const MISSES_TO_HUNG: u32 = 3;

/// The API of a daemon that is pinged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DaemonApi {
    Kubo,
    Cluster,
}

impl DaemonApi {
    /// `kubo` or `cluster`, for logs.
    pub const fn label(self) -> &'static str {
        match self {
            DaemonApi::Kubo => "kubo",
            DaemonApi::Cluster => "cluster",
        }
    }

    /// The call a ping makes.
    pub const fn ping_call(self) -> &'static str {
        match self {
            DaemonApi::Kubo => "POST /api/v0/version",
            DaemonApi::Cluster => "GET /health",
        }
    }
}

/// A daemon found hung, and why (the failure a probe of it reports meanwhile).
pub type HungSet = BTreeMap<(String, DaemonApi), ProbeFailure>;

/// One daemon's pings so far.
#[derive(Clone, Debug)]
struct Entry {
    /// The address pinged: a new address (a new pod) starts over.
    base: String,
    misses: u32,
    hung: Option<ProbeFailure>,
}

/// Which daemon missed how many pings in a row, and which are hung. Pure: the monitor feeds it
/// the pings' results.
#[derive(Clone, Debug, Default)]
pub struct Misses {
    entries: HashMap<(String, DaemonApi), Entry>,
    /// The ping settings (for the reason a hung daemon is given).
    pub timeout: Duration,
    pub misses_to_hung: u32,
}

impl Misses {
    pub fn new(timeout: Duration, misses_to_hung: u32) -> Misses {
        Misses {
            entries: HashMap::new(),
            timeout,
            misses_to_hung: misses_to_hung.max(1),
        }
    }

    /// Whether `target` is to be pinged: it answered the last round, or it is hung at the same
    /// address (pinged until it answers again).
    pub fn wants(&self, target: &PingTarget) -> bool {
        target.answered
            || self
                .entries
                .get(&(target.peer.clone(), target.api))
                .is_some_and(|e| e.hung.is_some() && e.base == target.endpoint.base)
    }

    /// Forgets the daemons that are no longer `targets`, or moved to another address.
    pub fn retain(&mut self, targets: &[PingTarget]) {
        self.entries.retain(|(peer, api), e| {
            targets
                .iter()
                .any(|t| &t.peer == peer && t.api == *api && t.endpoint.base == e.base)
        });
    }

    /// Records a ping of `target`; true when its verdict (hung or not) changed.
    pub fn record(&mut self, target: &PingTarget, result: ProbeResult<()>) -> bool {
        let key = (target.peer.clone(), target.api);
        let entry = self.entries.entry(key).or_insert_with(|| Entry {
            base: target.endpoint.base.clone(),
            misses: 0,
            hung: None,
        });
        if entry.base != target.endpoint.base {
            *entry = Entry {
                base: target.endpoint.base.clone(),
                misses: 0,
                hung: None,
            };
        }
        match result {
            // An answer, even an error status, or a refused connection (the process is gone or
            // restarting: the runtime and the probe round see to that) is no hang.
            Ok(()) => {
                entry.misses = 0;
                entry.hung.take().is_some()
            }
            Err(failure) if failure.kind != FailureKind::Timeout => {
                entry.misses = 0;
                entry.hung.take().is_some()
            }
            Err(failure) => {
                entry.misses = entry.misses.saturating_add(1);
                if entry.misses < self.misses_to_hung || entry.hung.is_some() {
                    return false;
                }
                entry.hung = Some(ProbeFailure {
                    kind: failure.kind,
                    message: format!(
                        "hung: no answer to {} liveness pings in a row ({}, {}s timeout each); \
                         last: {}",
                        entry.misses,
                        target.api.ping_call(),
                        self.timeout.as_secs_f32(),
                        failure.message
                    ),
                });
                true
            }
        }
    }

    /// The daemons hung now.
    pub fn hung(&self) -> HungSet {
        self.entries
            .iter()
            .filter_map(|(key, e)| Some((key.clone(), e.hung.clone()?)))
            .collect()
    }
}

/// `report` (a peer's last answers) with its hung daemons marked as not answering: a hung Kubo
/// fails, and its IPFS Cluster (when not hung itself) is reported up but unable to reach Kubo, as
/// a probe round reports it (the cluster daemon stalls on its Kubo); a hung IPFS Cluster fails.
pub fn overlay(report: &mut PeerReport, hung: &HungSet) {
    let of = |api| hung.get(&(report.peer.clone(), api)).cloned();
    let (kubo, cluster) = (of(DaemonApi::Kubo), of(DaemonApi::Cluster));
    if let Some(failure) = kubo {
        if let (None, Ok(c)) = (&cluster, report.cluster.as_mut()) {
            c.ipfs_error = Some(format!("its Kubo does not answer ({})", failure.message));
        }
        report.kubo = Err(failure);
    }
    if let Some(failure) = cluster {
        report.cluster = Err(failure);
    }
}

/// Whether any daemon of `peer` is hung.
pub fn is_hung(hung: &HungSet, peer: &str) -> bool {
    hung.keys().any(|(p, _)| p == peer)
}

/// The daemons of a peer to ping, from its probe target and whether each API answered.
pub fn ping_targets(
    peer: &str,
    kubo: (&Endpoint, bool),
    cluster: (&Endpoint, bool),
) -> [PingTarget; 2] {
    let target = |api, (endpoint, answered): (&Endpoint, bool)| PingTarget {
        peer: peer.to_owned(),
        api,
        endpoint: endpoint.clone(),
        answered,
    };
    [
        target(DaemonApi::Kubo, kubo),
        target(DaemonApi::Cluster, cluster),
    ]
}

/// The daemons of `reports` to ping, each at its `targets` endpoint.
pub fn targets_of(targets: &[super::PeerTarget], reports: &[PeerReport]) -> Vec<PingTarget> {
    targets
        .iter()
        .filter_map(|t| {
            let r = reports.iter().find(|r| r.peer == t.peer)?;
            Some(ping_targets(
                &t.peer,
                (&t.kubo, r.kubo.is_ok()),
                (&t.cluster, r.cluster.is_ok()),
            ))
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests;

/// Resolves once `changes` shows a daemon hung that `seen` does not list (never, once the
/// monitor is gone): a probe round waiting on a daemon that turned out hung is cut short by it.
pub async fn newly_hung(changes: &mut tokio::sync::watch::Receiver<HungSet>, seen: &HungSet) {
    loop {
        if changes.changed().await.is_err() {
            return std::future::pending().await;
        }
        if changes
            .borrow_and_update()
            .keys()
            .any(|k| !seen.contains_key(k))
        {
            return;
        }
    }
}
