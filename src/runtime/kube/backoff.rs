//! Per-object exponential backoff for reconcile errors: kube's `Controller` requeues with whatever
//! `error_policy` returns, so the delay grows here per IpfsCluster and resets on its next success.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// Delays by failure count: `base * 2^(failures - 1)`, at most `cap`.
#[derive(Debug)]
pub struct ErrorBackoff<K> {
    base: Duration,
    cap: Duration,
    failures: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash> ErrorBackoff<K> {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(*n - 1).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Forgets the failures of `key` (after a successful reconcile, or when it is deleted).
    pub fn succeeded(&self, key: &K) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }

    /// Failures of `key` since its last success.
    pub fn failures(&self, key: &K) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_up_to_the_cap_and_resets_on_success() {
        let b = ErrorBackoff::new(Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (0..6).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(
            b.failed("b").as_secs(),
            1,
            "another object has its own count"
        );
        b.succeeded(&"a");
        assert_eq!(b.failures(&"a"), 0);
        assert_eq!(b.failed("a").as_secs(), 1);
        for _ in 0..100 {
            b.failed("c");
        }
        assert_eq!(b.failed("c"), Duration::from_secs(10), "no overflow");
    }
}
