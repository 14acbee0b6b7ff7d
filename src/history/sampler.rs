//! The history's clock. The process that reconciles hands [`Latest`] each cluster's status after
//! every round ([`Latest::observe`]); [`run`] records a sample of every cluster once per its
//! probe interval from the latest status, whatever happened in between (rounds triggered by
//! events, requests, daemon exits add no sample). A status older than [`STALE_AFTER`] intervals
//! and at least [`STALE_FLOOR`] (the reconciler stopped reaching the cluster) is not sampled: the
//! series shows a gap.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{History, now_millis};
use crate::api::IpfsClusterStatus;

/// Intervals after which a status that was not renewed is no longer sampled.
pub const STALE_AFTER: u32 = 3;
/// ... but never sooner than this (a slow round on a loaded machine is not a gap).
pub const STALE_FLOOR: Duration = Duration::from_secs(30);
/// Longest wait between two looks at the clusters (a new cluster is sampled within it).
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Shortest wait between two looks: clusters due within it are sampled together (each sample at
/// most this late), so that a thousand clusters due at a thousand moments are not a thousand
/// looks at all of them per interval.
const MIN_WAIT: Duration = Duration::from_millis(250);

#[derive(Clone)]
struct Observed {
    interval: Duration,
    /// Shared: every look at the clusters copies the list, not the statuses.
    status: Arc<IpfsClusterStatus>,
    at: Instant,
}

/// The latest status of each cluster, by series key (`name` or `namespace/name`).
#[derive(Clone, Default)]
pub struct Latest {
    clusters: Arc<Mutex<BTreeMap<String, Observed>>>,
}

impl std::fmt::Debug for Latest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Latest")
    }
}

impl Latest {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Observed>> {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status of cluster `key` after a round; it is probed every `interval`.
    pub fn observe(&self, key: &str, interval: Duration, status: &IpfsClusterStatus) {
        let observed = Observed {
            interval: interval.max(Duration::from_millis(100)),
            status: Arc::new(status.clone()),
            at: Instant::now(),
        };
        self.lock().insert(key.to_owned(), observed);
    }

    /// Cluster `key` is gone (deleted, or no longer reconciled here).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets every cluster (this process stopped reconciling).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Every cluster, in key order.
    fn all(&self) -> Vec<(String, Observed)> {
        self.lock()
            .iter()
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect()
    }
}

/// When each cluster is due for its next sample.
#[derive(Default)]
pub struct Schedule {
    due: BTreeMap<String, Instant>,
}

impl Schedule {
    /// The clusters due at `now` (each then due one interval later), and how long until the
    /// next one is due. A cluster seen for the first time is due at once. `clusters` are in key
    /// order (as [`Latest::all`] lists them).
    fn due(
        &mut self,
        clusters: &[(String, Observed)],
        now: Instant,
    ) -> (Vec<(String, Observed)>, Duration) {
        self.due
            .retain(|k, _| clusters.binary_search_by(|(c, _)| c.cmp(k)).is_ok());
        let mut ready = Vec::new();
        let mut wait = MAX_WAIT;
        for (key, observed) in clusters {
            let next = self.due.entry(key.clone()).or_insert(now);
            if *next <= now {
                ready.push((key.clone(), observed.clone()));
                *next += observed.interval;
                // Ticks missed (a stalled process) are skipped, not caught up in a burst.
                if *next <= now {
                    *next = now + observed.interval;
                }
            }
            wait = wait.min(next.saturating_duration_since(now));
        }
        (ready, wait)
    }
}

/// Records a sample of every cluster in `latest` once per its probe interval, forever (abort the
/// task to stop it).
pub async fn run(history: History, latest: Latest) {
    let mut schedule = Schedule::default();
    loop {
        let now = Instant::now();
        let (ready, wait) = schedule.due(&latest.all(), now);
        let fresh: Vec<(String, Observed)> = ready
            .into_iter()
            .filter(|(_, o)| {
                now.duration_since(o.at) <= (o.interval * STALE_AFTER).max(STALE_FLOOR)
            })
            .collect();
        if !fresh.is_empty() {
            let history = history.clone();
            let time = now_millis();
            // The store writes to disk: off the async threads.
            let _ = tokio::task::spawn_blocking(move || {
                for (key, observed) in fresh {
                    history.record(&key, observed.interval, &observed.status, time);
                }
            })
            .await;
        }
        tokio::time::sleep(wait.max(MIN_WAIT)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(interval_ms: u64) -> Observed {
        Observed {
            interval: Duration::from_millis(interval_ms),
            status: Arc::default(),
            at: Instant::now(),
        }
    }

    #[test]
    fn each_cluster_is_due_once_per_its_interval_and_missed_ticks_are_skipped() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let clusters = vec![
            ("a".to_owned(), observed(1000)),
            ("b".into(), observed(3000)),
        ];
        let mut s = Schedule::default();
        let names = |r: Vec<(String, Observed)>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let (ready, wait) = s.due(&clusters, t0);
        assert_eq!(
            (names(ready), wait),
            (vec!["a".to_owned(), "b".into()], ms(1000))
        );
        let (ready, wait) = s.due(&clusters, t0 + ms(400));
        assert_eq!((names(ready), wait), (Vec::<String>::new(), ms(600)));
        let (ready, _) = s.due(&clusters, t0 + ms(1000));
        assert_eq!(names(ready), ["a"]);
        // Five seconds without a look: one sample each, not a burst.
        let (ready, wait) = s.due(&clusters, t0 + ms(6000));
        assert_eq!(
            (names(ready), wait),
            (vec!["a".to_owned(), "b".into()], ms(1000))
        );
        // A cluster that is gone is no longer scheduled.
        let (ready, _) = s.due(&clusters[..1], t0 + ms(7000));
        assert_eq!(names(ready), ["a"]);
        assert_eq!(s.due.len(), 1);
    }
}
