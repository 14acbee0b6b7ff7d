//! Health over time: one sample per cluster and per peer every probe interval, kept for a bounded
//! time and answered by `GET /api/dashboard/history/{name}?since=&step=`.
//!
//! - [`History`]: the samples per series (a cluster `name` or `namespace/name`, a peer
//!   `<cluster>/<peer>`), bounded by [`RETENTION`] and [`MAX_SAMPLES`]; in memory as runs of
//!   equal samples (`series`: an unchanged series costs 4 bytes per sample), and with
//!   [`History::open`] also in an embedded store on disk (the local supervisor's state directory:
//!   [`store`]), so that a restarted supervisor serves the earlier samples.
//! - [`sampler`]: the clock. The process that reconciles hands it the latest status of each
//!   cluster after every round; it records one sample per cluster every `spec.health.probeInterval`,
//!   however many rounds or watch events happened in between.
//! - [`query`]: `since` and `step`, and the downsampling to buckets (mean of the numbers, last
//!   state of each bucket).

pub mod prometheus;
pub mod query;
pub mod sampler;
mod series;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::{IpfsClusterStatus, PeerStatus};
pub use query::{Query, QueryError};
pub use sampler::Latest;

/// How long samples are kept per series (at most [`MAX_SAMPLES`] of them).
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Most samples kept per series: 24 h at a probe interval of 5 s or more; shorter intervals keep
/// less than 24 h (4 h 48 min at 1 s).
pub const MAX_SAMPLES: usize = 17_280;
/// Samples answered without `since`: the most recent ones.
pub const DEFAULT_POINTS: usize = 360;
/// Most points one answer holds: a longer range is downsampled to fit (see `stepSeconds`).
pub const MAX_POINTS: usize = 2_000;
/// The file of the embedded store, in the local cluster's state directory.
pub const STORE_FILE: &str = "history.redb";

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// One sample as recorded (and stored): a cluster's or a peer's figures at time `t`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// When it was sampled, in ms since the Unix epoch.
    pub t: UnixMillis,
    pub score: Option<i32>,
    /// The cluster's phase or the peer's state.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<i64>,
    /// Kubo bandwidth in and out, bytes per second, between the last two probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_in: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_out: Option<f64>,
    /// Pins pinned, queued, pinning, error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins: Option<[Option<i64>; 4]>,
}

/// One point of `GET /api/dashboard/history/{name}`: a sample, or the summary of a bucket of
/// `stepSeconds` when downsampled (numbers averaged, the last state). Peer figures are absent on
/// a cluster's series and while unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthSample {
    /// RFC 3339 time of the sample, or of the start of its bucket.
    pub time: String,
    /// Health score 0-100 (the rounded mean over a bucket).
    pub score: Option<i32>,
    /// The cluster's phase, or the peer's state (the last one of a bucket).
    pub state: String,
    /// Kubo repository size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_size: Option<i64>,
    /// Kubo bandwidth received, bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in_per_second: Option<f64>,
    /// Kubo bandwidth sent, bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out_per_second: Option<f64>,
    /// Pins of this peer by state: pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_pinned: Option<i64>,
    /// Pins queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_queued: Option<i64>,
    /// Pins being pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_pinning: Option<i64>,
    /// Pins in error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins_error: Option<i64>,
}

/// The samples of one series as answered, with how they were taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Oldest first.
    pub samples: Vec<HealthSample>,
    /// The cluster's probe interval the samples were taken at, when known.
    pub interval: Option<Duration>,
    /// The bucket size when downsampled.
    pub step: Option<Duration>,
    /// Start of the range, ms since the Unix epoch, when one was asked for.
    pub since: Option<UnixMillis>,
}

/// Last bandwidth totals of a peer and the rates they gave.
#[derive(Clone, Copy, Debug)]
struct Totals {
    /// Time of the probe that read them.
    probed: UnixMillis,
    bytes_in: i64,
    bytes_out: i64,
    rates: Option<(f64, f64)>,
}

#[derive(Default)]
struct Inner {
    series: BTreeMap<String, series::Series>,
    /// Probe interval per cluster series.
    intervals: BTreeMap<String, Duration>,
    totals: BTreeMap<String, Totals>,
    writer: Option<store::Writer>,
}

/// The samples of every series; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct History {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("History")
    }
}

impl History {
    /// A history kept in memory only (lost when the process ends).
    pub fn in_memory() -> History {
        History::default()
    }

    /// A history kept in the embedded store `path` too, with the samples it already holds (those
    /// within [`RETENTION`] of `now`). A store that cannot be read is set aside with a warning
    /// naming it and a fresh one started; one that cannot be opened at all leaves the history in
    /// memory only, with a warning. Never fails.
    pub fn open(path: &Path, now: UnixMillis) -> History {
        let (store, loaded) = store::Store::open(path);
        let mut inner = Inner {
            writer: store.and_then(store::Writer::spawn),
            ..Inner::default()
        };
        let mut gone = Vec::new();
        for (key, points) in loaded {
            let mut kept = series::Series::default();
            for point in points {
                kept.push(point);
            }
            trim(&key, &mut kept, now, &mut gone);
            if !kept.is_empty() {
                inner.series.insert(key, kept);
            }
        }
        persist(&mut inner, &[], &gone);
        History {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one sample of cluster `key` (`name` or `namespace/name`) and of each of its peers
    /// (`key/peer`), taken at `now` from `status`, probed every `interval`.
    pub fn record(
        &self,
        key: &str,
        interval: Duration,
        status: &IpfsClusterStatus,
        now: UnixMillis,
    ) {
        let mut inner = self.lock();
        inner.intervals.insert(key.to_owned(), interval);
        let mut added = vec![(key.to_owned(), cluster_point(status, now))];
        for peer in &status.peers {
            let peer_key = format!("{key}/{}", peer.name);
            let rates = rates(&mut inner.totals, &peer_key, peer, now);
            added.push((peer_key, peer_point(peer, rates, now)));
        }
        let mut gone = Vec::new();
        for (series, point) in &added {
            let points = inner.series.entry(series.clone()).or_default();
            points.push(point.clone());
            trim(series, points, now, &mut gone);
        }
        persist(&mut inner, &added, &gone);
    }

    /// Forgets cluster `key` and its peers (a deleted cluster), in memory and in the store.
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        let prefix = format!("{key}/");
        let doomed: Vec<String> = inner
            .series
            .keys()
            .filter(|k| *k == key || k.starts_with(&prefix))
            .cloned()
            .collect();
        let mut gone = Vec::new();
        for series in doomed {
            if let Some(points) = inner.series.remove(&series) {
                gone.extend(points.times().map(|t| (series.clone(), t)));
            }
            inner.totals.remove(&series);
        }
        inner.intervals.remove(key);
        persist(&mut inner, &[], &gone);
    }

    /// The samples of `name` that `query` asks for at `now`; `None` for a name never sampled.
    pub fn query(&self, name: &str, query: &Query, now: UnixMillis) -> Option<Answer> {
        let inner = self.lock();
        let points = inner.series.get(name)?;
        let cluster = inner
            .intervals
            .keys()
            .filter(|c| *c == name || name.starts_with(&format!("{c}/")))
            .max_by_key(|c| c.len());
        let interval = cluster.and_then(|c| inner.intervals.get(c)).copied();
        Some(query.answer(&points.points(query.start(now)), interval, now))
    }

    /// The number of samples kept of `name`.
    pub fn len(&self, name: &str) -> usize {
        self.lock().series.get(name).map_or(0, series::Series::len)
    }

    /// True when no series has a sample.
    pub fn is_empty(&self) -> bool {
        self.lock().series.is_empty()
    }
}

/// Hands the change to the store's writer, if there is one; a store that failed is abandoned (it
/// warned).
fn persist(inner: &mut Inner, added: &[(String, Point)], gone: &[(String, UnixMillis)]) {
    if let Some(writer) = inner.writer.as_ref()
        && !writer.send(added, gone)
    {
        inner.writer = None;
    }
}

/// Drops the samples older than [`RETENTION`] and beyond [`MAX_SAMPLES`], noting them in `gone`.
fn trim(
    series: &str,
    points: &mut series::Series,
    now: UnixMillis,
    gone: &mut Vec<(String, UnixMillis)>,
) {
    let oldest = now.saturating_sub(RETENTION.as_millis() as i64);
    while let Some(first) = points.first_time() {
        if first >= oldest && points.len() <= MAX_SAMPLES {
            break;
        }
        gone.push((series.to_owned(), first));
        points.pop_front();
    }
}

fn cluster_point(status: &IpfsClusterStatus, now: UnixMillis) -> Point {
    Point {
        t: now,
        score: status.health_score,
        state: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
        ..Point::default()
    }
}

fn peer_point(peer: &PeerStatus, rates: Option<(f64, f64)>, now: UnixMillis) -> Point {
    let pins = [
        peer.pins_pinned,
        peer.pins_queued,
        peer.pins_pinning,
        peer.pins_error,
    ];
    Point {
        t: now,
        score: peer.score,
        state: format!("{:?}", peer.state),
        repo: peer.repo_size,
        rate_in: rates.map(|r| r.0),
        rate_out: rates.map(|r| r.1),
        pins: pins.iter().any(Option::is_some).then_some(pins),
    }
}

/// Kubo's bandwidth rates of a peer from the change of its totals between two probes (the
/// probe times in status, not the sample times: a sample between the same two probes repeats
/// the rates). Totals that went down (Kubo restarted) give no rate until the next probe.
fn rates(
    totals: &mut BTreeMap<String, Totals>,
    key: &str,
    peer: &PeerStatus,
    now: UnixMillis,
) -> Option<(f64, f64)> {
    let (Some(bytes_in), Some(bytes_out)) = (peer.bytes_in, peer.bytes_out) else {
        totals.remove(key);
        return None;
    };
    let probed = peer
        .last_probe
        .as_ref()
        .map_or(now, |t| t.0.as_millisecond());
    let previous = totals.get(key).copied();
    let rates = match previous {
        Some(p) if p.probed == probed => p.rates,
        Some(p) if p.probed < probed && bytes_in >= p.bytes_in && bytes_out >= p.bytes_out => {
            let secs = (probed - p.probed) as f64 / 1000.0;
            Some((
                (bytes_in - p.bytes_in) as f64 / secs,
                (bytes_out - p.bytes_out) as f64 / secs,
            ))
        }
        _ => None,
    };
    totals.insert(
        key.to_owned(),
        Totals {
            probed,
            bytes_in,
            bytes_out,
            rates,
        },
    );
    rates
}

/// Now, in ms since the Unix epoch.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests;
