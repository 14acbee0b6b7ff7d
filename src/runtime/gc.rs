//! Kubo's garbage collection, started by the operator for both runtimes.
//!
//! Kubo's own periodic collection (`ipfs daemon --enable-gc`) cannot be used: with it, Kubo 0.42's
//! `shutdown` RPC closes the node but never ends the daemon (the collection loop waits on the
//! daemon command's context, which only a signal ends), so a Kubo restarted through its API (the
//! dashboard's restart of a peer's `ipfs` daemon in Kubernetes) would hang until kubelet's liveness
//! probe gives up on it. The operator does what that loop does instead: at most once per
//! `Datastore.GCPeriod` (default 1h) per peer, when a probe round shows the repository past
//! `Datastore.StorageGCWatermark` (default 90) % of `Datastore.StorageMax`, it asks that Kubo for
//! `repo/gc`, in the background, and reports the outcome on a later round.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::KuboSpec;
use crate::api::validation::parse_duration;
use crate::probe::report::{KuboStatus, PeerReport};
use crate::probe::{Endpoint, IpfsClient};

/// Kubo's default `Datastore.GCPeriod`.
pub const DEFAULT_GC_PERIOD: Duration = Duration::from_secs(3600);
/// Kubo's default `Datastore.StorageGCWatermark`, in % of `StorageMax`.
pub const DEFAULT_GC_WATERMARK: u64 = 90;
/// Longest a collection may take before it counts as failed.
pub const GC_TIMEOUT: Duration = Duration::from_secs(1800);

/// When to collect: Kubo's own settings, as the spec sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcSettings {
    /// `Datastore.GCPeriod`; zero turns collection off, as in Kubo.
    pub period: Duration,
    /// `Datastore.StorageGCWatermark`, in %.
    pub watermark: u64,
}

impl GcSettings {
    /// From `spec.kubo.config` (`Datastore.GCPeriod`, `Datastore.StorageGCWatermark`), Kubo's
    /// defaults where it sets nothing usable.
    pub fn from_spec(kubo: &KuboSpec) -> GcSettings {
        let datastore = kubo
            .config
            .as_ref()
            .and_then(|c| c.get("Datastore"))
            .and_then(Value::as_object);
        let period = match datastore.and_then(|d| d.get("GCPeriod")) {
            Some(Value::String(s)) if s.trim_start_matches('0').is_empty() => Duration::ZERO,
            Some(Value::String(s)) => parse_duration(s).unwrap_or(DEFAULT_GC_PERIOD),
            _ => DEFAULT_GC_PERIOD,
        };
        let watermark = datastore
            .and_then(|d| d.get("StorageGCWatermark"))
            .and_then(Value::as_u64)
            .filter(|w| (1..=100).contains(w))
            .unwrap_or(DEFAULT_GC_WATERMARK);
        GcSettings { period, watermark }
    }

    /// Whether a repository of `kubo`'s size passed the watermark of its `StorageMax`.
    pub fn over_watermark(&self, kubo: &KuboStatus) -> bool {
        let limit = u128::from(kubo.storage_max) * u128::from(self.watermark) / 100;
        kubo.storage_max > 0 && u128::from(kubo.repo_size) >= limit
    }
}

/// How a collection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcOutcome {
    /// Kubo removed this many blocks.
    Collected { removed: u64, took: Duration },
    /// Kubo's error, or the call's.
    Failed(String),
}

/// A collection just started: for the runtime's Event or log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcStarted {
    pub peer: String,
    pub repo_size: u64,
    pub storage_max: u64,
}

#[derive(Debug)]
struct PeerGc {
    started: Instant,
    running: bool,
    outcome: Option<GcOutcome>,
}

/// The collections of every peer the runtime watches, by key (`<namespace>/<cluster>/<peer>` in
/// Kubernetes, the peer's name locally). Cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct GcRuns(Arc<Mutex<BTreeMap<String, PeerGc>>>);

impl GcRuns {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, PeerGc>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` should be collected now: its repository passed the watermark, no collection
    /// of it runs, and none started within the last period. Claims it if so.
    pub fn claim(&self, key: &str, settings: &GcSettings, kubo: &KuboStatus, now: Instant) -> bool {
        if settings.period.is_zero() || !settings.over_watermark(kubo) {
            return false;
        }
        let mut runs = self.lock();
        if let Some(run) = runs.get(key)
            && (run.running || now.saturating_duration_since(run.started) < settings.period)
        {
            return false;
        }
        runs.insert(
            key.to_owned(),
            PeerGc {
                started: now,
                running: true,
                outcome: None,
            },
        );
        true
    }

    /// Records how the collection of `key` ended.
    pub fn finish(&self, key: &str, outcome: GcOutcome) {
        if let Some(run) = self.lock().get_mut(key) {
            run.running = false;
            run.outcome = Some(outcome);
        }
    }

    /// The outcomes not reported yet of the keys under `prefix`, by the rest of their key.
    pub fn take_outcomes(&self, prefix: &str) -> Vec<(String, GcOutcome)> {
        // The keys under `prefix` only (a reconcile of one cluster reads no other's runs).
        self.lock()
            .range_mut::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, run)| {
                let peer = key.strip_prefix(prefix)?;
                Some((peer.to_owned(), run.outcome.take()?))
            })
            .collect()
    }

    /// Whether a collection of a key under `prefix` runs, or ended and was not reported yet.
    pub fn busy(&self, prefix: &str) -> bool {
        self.lock()
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .any(|(_, run)| run.running || run.outcome.is_some())
    }

    /// Forgets the keys under `prefix` (a deleted cluster).
    pub fn forget(&self, prefix: &str) {
        self.lock().retain(|key, _| !key.starts_with(prefix));
    }

    /// Starts, in the background, the collections a round calls for: each peer of `reports`
    /// whose Kubo answered, whose key is `prefix` + its name, reached at `endpoint(peer)`.
    pub fn start_due(
        &self,
        client: &IpfsClient,
        prefix: &str,
        settings: &GcSettings,
        reports: &[PeerReport],
        endpoint: impl Fn(&str) -> Option<Endpoint>,
    ) -> Vec<GcStarted> {
        let mut started = Vec::new();
        for report in reports {
            let (Ok(kubo), Some(api)) = (&report.kubo, endpoint(&report.peer)) else {
                continue;
            };
            let key = format!("{prefix}{}", report.peer);
            if !self.claim(&key, settings, kubo, Instant::now()) {
                continue;
            }
            let (runs, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                let began = Instant::now();
                let outcome = match client.kubo_repo_gc(&api, GC_TIMEOUT).await {
                    Ok(removed) => GcOutcome::Collected {
                        removed,
                        took: began.elapsed(),
                    },
                    Err(f) => GcOutcome::Failed(f.message),
                };
                runs.finish(&key, outcome);
            });
            started.push(GcStarted {
                peer: report.peer.clone(),
                repo_size: kubo.repo_size,
                storage_max: kubo.storage_max,
            });
        }
        started
    }
}

impl GcStarted {
    /// `repository 3.8 MiB of 4.0 MiB (Datastore.StorageMax): past the 90 % watermark`.
    pub fn describe(&self, settings: &GcSettings) -> String {
        format!(
            "repository {} of {} (Datastore.StorageMax): past the {} % watermark, collecting \
             the blocks no pin holds",
            mib(self.repo_size),
            mib(self.storage_max),
            settings.watermark
        )
    }
}

impl GcOutcome {
    /// `removed 12 blocks in 1.2 s` or the failure.
    pub fn describe(&self) -> String {
        match self {
            Self::Collected { removed, took } => {
                format!("removed {removed} blocks in {:.1} s", took.as_secs_f64())
            }
            Self::Failed(why) => format!("garbage collection failed: {why}"),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kubo(repo_size: u64, storage_max: u64) -> KuboStatus {
        KuboStatus {
            repo_size,
            storage_max,
            ..KuboStatus::default()
        }
    }

    fn spec(config: Value) -> KuboSpec {
        KuboSpec {
            config: config.as_object().cloned(),
            ..KuboSpec::default()
        }
    }

    #[test]
    fn settings_are_kubos_own_with_its_defaults() {
        let defaults = GcSettings::from_spec(&KuboSpec::default());
        assert_eq!(defaults.period, DEFAULT_GC_PERIOD);
        assert_eq!(defaults.watermark, 90);
        let set = GcSettings::from_spec(&spec(
            json!({"Datastore": {"GCPeriod": "2s", "StorageGCWatermark": 50}}),
        ));
        assert_eq!((set.period, set.watermark), (Duration::from_secs(2), 50));
        let off = GcSettings::from_spec(&spec(json!({"Datastore": {"GCPeriod": "0"}})));
        assert!(off.period.is_zero());
        let junk = GcSettings::from_spec(&spec(
            json!({"Datastore": {"GCPeriod": "soon", "StorageGCWatermark": 500}}),
        ));
        assert_eq!(
            (junk.period, junk.watermark),
            (DEFAULT_GC_PERIOD, DEFAULT_GC_WATERMARK)
        );
    }

    #[test]
    fn a_repository_is_collected_past_the_watermark_once_per_period() {
        let settings = GcSettings {
            period: Duration::from_secs(60),
            watermark: 90,
        };
        let runs = GcRuns::default();
        let t0 = Instant::now();
        assert!(
            !runs.claim("ns/c/p0", &settings, &kubo(89, 100), t0),
            "under"
        );
        assert!(
            !runs.claim("ns/c/p0", &settings, &kubo(95, 0), t0),
            "no limit"
        );
        assert!(runs.claim("ns/c/p0", &settings, &kubo(90, 100), t0));
        assert!(
            !runs.claim("ns/c/p0", &settings, &kubo(99, 100), t0),
            "one at a time"
        );
        assert!(
            runs.claim("ns/c/p1", &settings, &kubo(99, 100), t0),
            "per peer"
        );
        let done = GcOutcome::Collected {
            removed: 3,
            took: Duration::from_millis(1200),
        };
        runs.finish("ns/c/p0", done.clone());
        let later = t0 + Duration::from_secs(30);
        assert!(
            !runs.claim("ns/c/p0", &settings, &kubo(99, 100), later),
            "within the period"
        );
        assert_eq!(runs.take_outcomes("ns/c/"), vec![("p0".to_owned(), done)]);
        assert_eq!(runs.take_outcomes("ns/c/"), vec![], "reported once");
        let next = t0 + Duration::from_secs(61);
        assert!(runs.claim("ns/c/p0", &settings, &kubo(99, 100), next));
        runs.forget("ns/c/");
        assert_eq!(runs.lock().len(), 0);
        let off = GcSettings {
            period: Duration::ZERO,
            ..settings
        };
        assert!(!runs.claim("ns/c/p0", &off, &kubo(99, 100), next), "off");
    }

    #[test]
    fn a_cluster_reads_only_its_own_outcomes_in_peer_order() {
        let settings = GcSettings {
            period: Duration::from_secs(60),
            watermark: 90,
        };
        let runs = GcRuns::default();
        let t0 = Instant::now();
        for key in ["ns/c/c-1", "ns/c/c-0", "ns/cd/cd-0", "ns/b/b-0", "nt/c/c-0"] {
            assert!(runs.claim(key, &settings, &kubo(95, 100), t0), "{key}");
            runs.finish(key, GcOutcome::Failed(key.to_owned()));
        }
        let peers: Vec<String> = runs
            .take_outcomes("ns/c/")
            .into_iter()
            .map(|(peer, _)| peer)
            .collect();
        assert_eq!(peers, ["c-0", "c-1"]);
        assert_eq!(runs.take_outcomes("ns/cd/").len(), 1);
        assert_eq!(runs.take_outcomes("ns/c/"), vec![]);
        assert_eq!(runs.take_outcomes("ns/b/").len(), 1);
    }

    #[test]
    fn messages_say_what_and_how_much() {
        let started = GcStarted {
            peer: "p0".into(),
            repo_size: 4 << 20,
            storage_max: 4 << 20,
        };
        let settings = GcSettings {
            period: DEFAULT_GC_PERIOD,
            watermark: 90,
        };
        assert_eq!(
            started.describe(&settings),
            "repository 4.0 MiB of 4.0 MiB (Datastore.StorageMax): past the 90 % watermark, \
             collecting the blocks no pin holds"
        );
        let done = GcOutcome::Collected {
            removed: 6,
            took: Duration::from_millis(250),
        };
        assert_eq!(done.describe(), "removed 6 blocks in 0.2 s");
    }
}
