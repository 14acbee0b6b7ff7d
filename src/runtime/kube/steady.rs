//! Steady rounds: the probe rounds of a cluster in which nothing changes, run without a
//! reconcile. A reconcile that changed nothing and has nothing pending ([`why_not`]) hands the
//! cluster's probe targets to a task of its own and requeues only after [`RESYNC`] (or when a
//! start grace ends or an alert fires); the task probes them every probe interval, keeps the
//! metrics and the history's latest status current with the volatile figures (traffic,
//! repository size, pin counts), and asks for a reconcile (`Controller::reconcile_on`) as soon
//! as a round differs in anything else (a daemon that stops or starts answering, another peer
//! set, a repository crossing a threshold), or once figures that moved are due to be written
//! (the status refresh after the handover). Any reconcile of the cluster (a pod or spec change,
//! a hung daemon, a request, the resync) ends its task first.
//!
//! A daemon whose last answer was a refused connection is dialled with a bare TCP connect: as
//! long as it refuses, the round knows what the HTTP probe would say.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::context::history_key;
use super::pacing::Rounds;
use crate::alerts::NEAR_FULL_RATIO;
use crate::api::IpfsCluster;
use crate::history::Latest;
use crate::metrics::{ClusterKey, Metrics};
use crate::probe::report::{ClusterStatus, FailureKind, KuboStatus, PeerReport, ProbeResult};
use crate::probe::{IpfsClient, PeerTarget, Prober};
use crate::reconcile::status::with_volatile;
use crate::reconcile::{Assessment, HealingState, PeerHealing, UnixMillis};
use crate::runtime::gc::GcSettings;

type Key = ObjectRef<IpfsCluster>;

/// The longest a steady cluster goes without a reconcile (which also reads its Secret and the
/// nodes' addresses its exposed peers announce, neither of which triggers one).
pub const RESYNC: Duration = Duration::from_secs(5 * 60);

/// What the steady rounds of a cluster start from: the last reconcile's round.
pub struct Handoff {
    /// The peers probed, with the runtime's view of their processes.
    pub targets: Vec<PeerTarget>,
    /// The round's report of every peer (those not probed included).
    pub reports: Vec<PeerReport>,
    pub interval: Duration,
    pub timeout: Duration,
    /// How long after the handover volatile figures that moved are written into the status (by
    /// a reconcile this task asks for).
    pub refresh: Duration,
    /// When the cluster's Kubo repositories are garbage-collected (a repository passing the
    /// watermark needs a reconcile).
    pub gc: GcSettings,
}

/// What the tasks share.
struct Shared {
    ipfs: IpfsClient,
    metrics: Arc<Metrics>,
    latest: Latest,
    rounds: Arc<Rounds>,
    trigger: UnboundedSender<Key>,
}

/// The steady-round tasks of the clusters handed over.
pub struct Steady {
    shared: Arc<Shared>,
    tasks: Mutex<HashMap<Key, JoinHandle<()>>>,
}

impl Steady {
    /// Tasks that probe with `ipfs`, report to `metrics` and `latest`, record their rounds in
    /// `rounds` and send the clusters whose round changed to `trigger`.
    pub fn new(
        ipfs: IpfsClient,
        metrics: Arc<Metrics>,
        latest: Latest,
        rounds: Arc<Rounds>,
        trigger: UnboundedSender<Key>,
    ) -> Steady {
        Steady {
            shared: Arc::new(Shared {
                ipfs,
                metrics,
                latest,
                rounds,
                trigger,
            }),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exports how many clusters `tasks` holds (finished tasks included until their next
    /// reconcile) as `ipfs_kit_steady_clusters`.
    fn export(&self, tasks: &HashMap<Key, JoinHandle<()>>) {
        let n = i64::try_from(tasks.len()).unwrap_or(i64::MAX);
        self.shared.metrics.steady_clusters.set(n);
    }

    /// Probes `cluster` from `handoff` on, every interval, until a round changes.
    pub fn start(&self, cluster: Key, handoff: Handoff) {
        let task = tokio::spawn(run(self.shared.clone(), cluster.clone(), handoff));
        let mut tasks = self.lock();
        if let Some(earlier) = tasks.insert(cluster, task) {
            earlier.abort();
        }
        self.export(&tasks);
    }

    /// Ends the steady rounds of `cluster` (a reconcile of it starts, or it is deleted).
    pub fn stop(&self, cluster: &Key) {
        let mut tasks = self.lock();
        if let Some(task) = tasks.remove(cluster) {
            task.abort();
            self.export(&tasks);
        }
    }

    /// Ends every cluster's steady rounds (this process stopped reconciling).
    pub fn clear(&self) {
        let mut tasks = self.lock();
        for (_, task) in tasks.drain() {
            task.abort();
        }
        self.export(&tasks);
    }
}

impl Drop for Steady {
    fn drop(&mut self) {
        self.clear();
    }
}

/// What a reconcile's round must be for its cluster to go steady.
pub struct Round<'a> {
    pub assessment: &'a Assessment,
    /// A request asked for this round.
    pub requested: bool,
    /// The round wrote the status (something changed).
    pub written: bool,
    /// A rollout, a scale or a gated upgrade is under way.
    pub rolling: bool,
    /// The pods' and the Services' problems.
    pub problems: &'a [String],
    /// A daemon is hung (its pings trigger the reconcile that sees it answer again).
    pub hung: bool,
    /// When an alert whose condition holds fires (its `for` duration over).
    pub alert_fires: Option<UnixMillis>,
    /// A garbage collection runs (its outcome is reported by a reconcile).
    pub collecting: bool,
    /// When the start grace of the peers judged starting ends ([`grace_ends`]).
    pub grace_ends: Option<UnixMillis>,
    pub now: UnixMillis,
}

impl<'a> Round<'a> {
    /// The first moment a steady round would be judged differently without a probe answering
    /// differently: a start grace ends, an alert fires.
    pub fn deadline(&self) -> Option<UnixMillis> {
        [self.grace_ends, self.alert_fires]
            .into_iter()
            .flatten()
            .min()
    }

    /// A round of `assessment` at `now` with nothing else pending.
    pub fn new(assessment: &'a Assessment, now: UnixMillis) -> Round<'a> {
        Round {
            assessment,
            requested: false,
            written: false,
            rolling: false,
            problems: &[],
            hung: false,
            alert_fires: None,
            collecting: false,
            grace_ends: None,
            now,
        }
    }
}

/// Why a round does not hand its cluster over to steady rounds, or `None` when it does: what
/// the next rounds would change without a probe answering differently (a restart, a streak
/// counting up to the failure threshold, a restart leaving the budget's hour, a rollout, a
/// collection) needs its reconciles. An alert waiting for its `for` duration is settled until it
/// fires, and the reconcile is requeued for then. When the policy only reports
/// (paused, or autoHeal off), a peer still in its start grace is settled until the grace ends,
/// and the reconcile is requeued for then (with healing on, its failures count towards a
/// restart from the grace's end on).
pub fn why_not(round: &Round<'_>) -> Option<&'static str> {
    let decision = &round.assessment.decision;
    let report_only = decision.report_only.is_some();
    let settled = |p: &PeerHealing| match p.state {
        HealingState::Ok | HealingState::Withheld => true,
        HealingState::Starting => report_only,
        _ => false,
    };
    let starting = decision
        .peers
        .iter()
        .any(|p| p.state == HealingState::Starting);
    let checks = [
        (round.requested, "a request asked for the round"),
        (round.written, "the status changed"),
        (!decision.actions.is_empty(), "a healing step was taken"),
        (!decision.peers.iter().all(settled), "a peer is not settled"),
        (
            starting && round.grace_ends.is_none_or(|t| t <= round.now),
            "a peer's start grace ends",
        ),
        (
            decision.history.restart_in_progress.is_some(),
            "a restart is in progress",
        ),
        (
            decision
                .history
                .restarts_last_hour(round.now)
                .values()
                .any(|&n| n > 0),
            "a restart is inside the budget's hour",
        ),
        (round.rolling, "a rollout is under way"),
        (!round.problems.is_empty(), "the pods have problems"),
        (round.hung, "a daemon is hung"),
        (
            round.alert_fires.is_some_and(|t| t <= round.now),
            "an alert fires",
        ),
        (round.collecting, "a garbage collection runs"),
    ];
    checks
        .into_iter()
        .find(|(holds, _)| *holds)
        .map(|(_, why)| why)
}

/// When the start grace of every peer judged starting has ended: the later of its first sighting
/// (a new peer) and its containers' start, plus `grace`.
pub fn grace_ends(
    assessment: &Assessment,
    pods: &[Pod],
    grace: Duration,
    now: UnixMillis,
) -> Option<UnixMillis> {
    let grace = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    let history = &assessment.decision.history;
    let started = |peer: &str| {
        pods.iter()
            .filter(|p| p.metadata.name.as_deref() == Some(peer))
            .flat_map(|p| p.status.iter())
            .flat_map(|s| s.container_statuses.iter().flatten())
            .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .filter_map(|t| u64::try_from(t.0.as_millisecond()).ok())
            .max()
    };
    assessment
        .decision
        .peers
        .iter()
        .filter(|p| p.state == HealingState::Starting)
        .map(|p| {
            let seen = history.peers.get(&p.peer).and_then(|h| h.first_seen);
            seen.max(started(&p.peer))
                .unwrap_or(now)
                .saturating_add(grace)
        })
        .max()
}

async fn run(shared: Arc<Shared>, cluster: Key, handoff: Handoff) {
    let Handoff {
        targets,
        mut reports,
        interval,
        timeout,
        refresh,
        gc,
    } = handoff;
    let handed_over = Instant::now();
    let series = history_key(&cluster);
    let key = ClusterKey::kube(
        cluster.namespace.as_deref().unwrap_or_default(),
        &cluster.name,
    );
    let prober = shared
        .ipfs
        .prober(timeout)
        .timed(shared.metrics.probe_durations.clone());
    let mut figures = volatile(&reports);
    // Every round that does not end the task says what the handed-over one said.
    let settled = signature(&reports, &gc);
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let started = std::time::Instant::now();
        let probed = join_all(targets.iter().map(|target| {
            let last = reports.iter().find(|r| r.peer == target.peer);
            probe(&prober, target, last)
        }))
        .await;
        // The peers that still refuse keep their reports: a round of only those changes
        // nothing, and leaves nothing a reconcile would reuse.
        let probed: Vec<(String, PeerReport)> = probed.into_iter().flatten().collect();
        if probed.is_empty() {
            shared.latest.renew(&series);
            continue;
        }
        shared.rounds.heard(&cluster, &probed, Timestamp::now());
        shared
            .rounds
            .record(cluster.clone(), true, &probed, started);
        for (_, report) in probed {
            if let Some(r) = reports.iter_mut().find(|r| r.peer == report.peer) {
                *r = report;
            }
        }
        if signature(&reports, &gc) != settled {
            let _ = shared.trigger.send(cluster.clone());
            return;
        }
        let now = volatile(&reports);
        if now == figures {
            shared.latest.renew(&series);
            continue;
        }
        if handed_over.elapsed() >= refresh {
            let _ = shared.trigger.send(cluster.clone());
            return;
        }
        figures = now;
        let Some(mut status) = shared.latest.status(&series) else {
            continue;
        };
        with_volatile(&mut status, &reports);
        shared.metrics.figures(&key, &status);
        shared.latest.observe(&series, interval, &status);
    }
}

/// One peer's probe, with the address probed: a peer both of whose APIs refused their last
/// connection is dialled bare, and keeps its last report (`None`) while both still refuse; any
/// other is probed in full.
async fn probe(
    prober: &Prober,
    target: &PeerTarget,
    last: Option<&PeerReport>,
) -> Option<(String, PeerReport)> {
    if last.is_some_and(|l| refused(&l.kubo) && refused(&l.cluster))
        && still_refuses(&target.kubo.base, prober.timeout()).await
        && still_refuses(&target.cluster.base, prober.timeout()).await
    {
        return None;
    }
    Some((target.kubo.base.clone(), prober.peer(target).await))
}

/// Whether a probe failed on a refused connection.
fn refused<T>(result: &ProbeResult<T>) -> bool {
    result.as_ref().is_err_and(|f| {
        f.kind == FailureKind::Unreachable && f.message.contains("Connection refused")
    })
}

/// Whether the API at `base` (`http://ip:port`) refuses a bare connection now.
async fn still_refuses(base: &str, timeout: Duration) -> bool {
    let Some(addr) = socket_addr(base) else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The address of `http://ip:port` (IPv6 in brackets); `None` for a host name.
fn socket_addr(base: &str) -> Option<SocketAddr> {
    base.strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))?
        .parse()
        .ok()
}

/// What a round says of a peer beyond its volatile figures: everything a reconcile would act
/// on or write. The repository's size counts only as whether it is near its StorageMax or past
/// the garbage collection's watermark, the pin counts only as whether every pin is in error.
#[derive(Debug, PartialEq)]
struct Settled {
    report: PeerReport,
    near_full: bool,
    over_watermark: bool,
    all_pins_in_error: bool,
}

fn signature(reports: &[PeerReport], gc: &GcSettings) -> Vec<Settled> {
    reports
        .iter()
        .map(|r| {
            let kubo = r.kubo.as_ref().ok();
            let pins = r.cluster.as_ref().ok().and_then(|c| c.pins.as_ref().ok());
            Settled {
                near_full: kubo.is_some_and(|k| {
                    k.storage_max > 0 && k.repo_size as f64 > k.storage_max as f64 * NEAR_FULL_RATIO
                }),
                over_watermark: kubo.is_some_and(|k| gc.over_watermark(k)),
                all_pins_in_error: pins.is_some_and(|p| {
                    p.error > 0 && p.error == p.queued + p.pinning + p.pinned + p.error
                }),
                report: without_figures(r),
            }
        })
        .collect()
}

fn without_figures(report: &PeerReport) -> PeerReport {
    let kubo = report.kubo.clone().map(|k| KuboStatus {
        repo_size: 0,
        total_in: 0,
        total_out: 0,
        ..k
    });
    let cluster = report.cluster.clone().map(|c| ClusterStatus {
        pins: c.pins.map(|p| crate::probe::report::PinCounts {
            queued: 0,
            pinning: 0,
            pinned: 0,
            ..p
        }),
        ..c
    });
    PeerReport {
        kubo,
        cluster,
        ..report.clone()
    }
}

/// The volatile figures of a round, peer by peer.
fn volatile(reports: &[PeerReport]) -> Vec<[Option<u64>; 6]> {
    reports
        .iter()
        .map(|r| {
            let kubo = r.kubo.as_ref().ok();
            let pins = r.cluster.as_ref().ok().and_then(|c| c.pins.as_ref().ok());
            [
                kubo.map(|k| k.repo_size),
                kubo.map(|k| k.total_in),
                kubo.map(|k| k.total_out),
                pins.map(|p| p.queued),
                pins.map(|p| p.pinning),
                pins.map(|p| p.pinned),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests;
