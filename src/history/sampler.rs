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

    /// The status of cluster `key` after a round; it is probed every `interval`. A status equal
    /// to the one held is not copied again (most rounds of a steady cluster).
    pub fn observe(&self, key: &str, interval: Duration, status: &IpfsClusterStatus) {
        let interval = interval.max(Duration::from_millis(100));
        let now = Instant::now();
        let mut clusters = self.lock();
        if let Some(held) = clusters.get_mut(key)
            && *held.status == *status
        {
            held.interval = interval;
            held.at = now;
            return;
        }
        let observed = Observed {
            interval,
            status: Arc::new(status.clone()),
            at: now,
        };
        clusters.insert(key.to_owned(), observed);
    }

    /// A copy of the latest status of cluster `key`.
    pub fn status(&self, key: &str) -> Option<IpfsClusterStatus> {
        self.lock().get(key).map(|held| (*held.status).clone())
    }

    /// Cluster `key` was probed again and its status did not change.
    pub fn renew(&self, key: &str) {
        if let Some(held) = self.lock().get_mut(key) {
            held.at = Instant::now();
        }
    }

    /// Cluster `key` is gone (deleted, or no longer reconciled here).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Forgets every cluster (this process stopped reconciling).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The clusters due for a sample at `now` by `schedule`, and how long until the next one is
    /// due; looked at under the lock (nothing is copied but the clusters due).
    fn due(&self, schedule: &mut Schedule, now: Instant) -> (Vec<(String, Observed)>, Duration) {
        schedule.due(&self.lock(), now)
    }
}

/// When each cluster is due for its next sample.
#[derive(Default)]
pub struct Schedule {
    due: BTreeMap<String, Instant>,
}

impl Schedule {
    /// The clusters due at `now` (each then due one interval later), and how long until the
    /// next one is due. A cluster seen for the first time is due at once.
    fn due(
        &mut self,
        clusters: &BTreeMap<String, Observed>,
        now: Instant,
    ) -> (Vec<(String, Observed)>, Duration) {
        let mut ready = Vec::new();
        let mut wait = MAX_WAIT;
        for (key, observed) in clusters {
            let next = match self.due.get_mut(key) {
                Some(next) => next,
                None => self.due.entry(key.clone()).or_insert(now),
            };
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
        // Every cluster has an entry now: more entries than clusters means some are gone.
        if self.due.len() > clusters.len() {
            self.due.retain(|k, _| clusters.contains_key(k));
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
        let (ready, wait) = latest.due(&mut schedule, now);
        let fresh: Vec<(String, Observed)> = ready
            .into_iter()
            .filter(|(_, o)| {
                now.duration_since(o.at) <= (o.interval * STALE_AFTER).max(STALE_FLOOR)
            })
            .collect();
        if !fresh.is_empty() {
            let history = history.clone();
            let time = now_millis();
            // A thousand clusters and their peers: off the async threads (the store's disk
            // writes are on a thread of their own and never waited for here).
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
    fn an_unchanged_status_is_not_copied_again_but_counts_as_fresh() {
        let latest = Latest::default();
        let mut status = IpfsClusterStatus {
            ready_replicas: Some(1),
            ..IpfsClusterStatus::default()
        };
        let second = Duration::from_secs(1);
        latest.observe("ns/a", second, &status);
        let held = |l: &Latest| l.lock().get("ns/a").cloned().expect("held");
        let first = held(&latest);
        latest.observe("ns/a", second * 2, &status);
        let same = held(&latest);
        assert!(Arc::ptr_eq(&first.status, &same.status), "not copied again");
        assert!(same.at >= first.at);
        assert_eq!(same.interval, second * 2);
        status.ready_replicas = Some(2);
        latest.observe("ns/a", second, &status);
        assert_eq!(held(&latest).status.ready_replicas, Some(2));
    }

    #[test]
    fn each_cluster_is_due_once_per_its_interval_and_missed_ticks_are_skipped() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let clusters: BTreeMap<String, Observed> = [
            ("a".to_owned(), observed(1000)),
            ("b".into(), observed(3000)),
        ]
        .into();
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
        let only_a: BTreeMap<String, Observed> = clusters.into_iter().take(1).collect();
        let (ready, _) = s.due(&only_a, t0 + ms(7000));
        assert_eq!(names(ready), ["a"]);
        assert_eq!(s.due.len(), 1);
    }
}
