//! Spec changes from the dashboard under `local up`: the in-process dashboard hands a checked
//! merge patch of the safe fields (see [`crate::dashboard::clusters`]) to the supervisor, the one
//! writer, which applies it as `local up -f` applies a changed file: the new spec is validated as
//! an update, saved in `state.json` with the next generation, its health policy (and probe
//! timeout) taken at once, and the peers brought to it (scale up or down, restart of the peers
//! whose configuration changed, one at a time). The dashboard answers once the change is saved;
//! the status shows the peers follow.
//!
//! The spec file is not rewritten: the next `local up -f FILE` applies FILE again, as `kubectl
//! apply` of an older manifest would.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::heal::policy;
use super::state::save_state;
use super::supervisor::Supervisor;
use crate::dashboard::ClusterEntry;
use crate::dashboard::clusters::{Patched, SpecError, SpecStore, StoredSpec, merged};
use crate::metrics::Metrics;
use crate::probe::Prober;

/// How long the dashboard waits for the supervisor to take a change up (it may be busy with a
/// restart or a scale); a change not taken up by then is dropped, never applied later.
pub const TAKE_UP_WAIT: Duration = Duration::from_secs(20);

/// One change on its way to the supervisor, with where to answer.
pub struct SpecChange {
    pub patch: Map<String, Value>,
    pub expected: Option<i64>,
    pub reply: oneshot::Sender<Result<Patched, SpecError>>,
}

/// The dashboard's side: the spec as the supervisor last applied it, and the way to it.
pub struct LocalSpecs {
    current: watch::Receiver<StoredSpec>,
    changes: mpsc::Sender<SpecChange>,
}

/// The supervisor's side of [`LocalSpecs`].
pub struct SpecChanges {
    pub current: watch::Sender<StoredSpec>,
    pub receiver: mpsc::Receiver<SpecChange>,
}

/// A store for the dashboard and the supervisor's end of it, starting at `now`.
pub fn channel(now: StoredSpec) -> (LocalSpecs, SpecChanges) {
    let (current_tx, current_rx) = watch::channel(now);
    let (changes_tx, changes_rx) = mpsc::channel(8);
    (
        LocalSpecs {
            current: current_rx,
            changes: changes_tx,
        },
        SpecChanges {
            current: current_tx,
            receiver: changes_rx,
        },
    )
}

impl SpecStore for LocalSpecs {
    fn read(&self, _cluster: &ClusterEntry) -> BoxFuture<'static, Result<StoredSpec, SpecError>> {
        let now = self.current.borrow().clone();
        Box::pin(async move { Ok(now) })
    }

    fn patch(
        &self,
        _cluster: &ClusterEntry,
        patch: Map<String, Value>,
        expected: Option<i64>,
    ) -> BoxFuture<'static, Result<Patched, SpecError>> {
        let changes = self.changes.clone();
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let gone = || {
                SpecError::Unavailable(
                    "the supervisor is not running: nothing was changed".to_owned(),
                )
            };
            let change = SpecChange {
                patch,
                expected,
                reply,
            };
            let taken = async {
                if changes.send(change).await.is_err() {
                    return Err(gone());
                }
                answer.await.unwrap_or_else(|_| Err(gone()))
            };
            // On timeout the answer's receiver is dropped: the supervisor then skips the change.
            tokio::time::timeout(TAKE_UP_WAIT, taken)
                .await
                .unwrap_or_else(|_| {
                    Err(SpecError::Unavailable(format!(
                        "the supervisor did not take the change up within {} s (it is busy with \
                         a restart or a scale): nothing was changed; try again",
                        TAKE_UP_WAIT.as_secs()
                    )))
                })
        })
    }

    fn applied_by(&self) -> &'static str {
        "the supervisor, as `local up -f` applies a changed file: saved in state.json, then the \
         peers are brought to it (the spec file is not rewritten: the next `local up -f FILE` \
         applies FILE again)"
    }
}

impl Supervisor {
    /// Applies a change from the dashboard and answers it; whether the spec changed (the peers
    /// are then to be brought to it). A change whose asker gave up is skipped.
    pub(super) fn take_spec_change(&mut self, change: SpecChange) -> bool {
        if change.reply.is_closed() {
            warn!("a spec change from the dashboard was dropped: its request timed out");
            return false;
        }
        let result = self.change_spec(&change.patch, change.expected);
        let changed = matches!(&result, Ok(p) if !p.changed.is_empty());
        let _ = change.reply.send(result);
        changed
    }

    fn stored_spec(&self) -> StoredSpec {
        StoredSpec {
            spec: self.state.spec.clone(),
            generation: i64::try_from(self.state.generation).unwrap_or(i64::MAX),
        }
    }

    /// Validates and saves the changed spec as the next generation, and takes its health
    /// policy and probe timeout.
    fn change_spec(
        &mut self,
        patch: &Map<String, Value>,
        expected: Option<i64>,
    ) -> Result<Patched, SpecError> {
        let now = self.stored_spec();
        if let Some(expected) = expected.filter(|e| *e != now.generation) {
            return Err(SpecError::Changed(format!(
                "the spec of {} changed since you read it (generation {expected}, now {}): \
                 reload it and make the change again",
                self.state.name, now.generation
            )));
        }
        let (spec, changed) = merged(&now.spec, patch)?;
        if changed.is_empty() {
            return Ok(Patched {
                stored: now,
                changed,
            });
        }
        let mut next = self.state.clone();
        next.spec = spec;
        next.generation += 1;
        let new_policy =
            policy(&next.spec, next.generation).map_err(|e| SpecError::Invalid(e.to_string()))?;
        let prober = if new_policy.probe_timeout == self.healer.policy.probe_timeout {
            None
        } else {
            Some(new_prober(new_policy.probe_timeout, &self.metrics)?)
        };
        save_state(&self.paths, &next)
            .map_err(|e| SpecError::Unavailable(format!("saving the changed spec: {e}")))?;
        info!(cluster = %next.name, generation = next.generation, ?changed, "the spec changed from the dashboard: reconciling as `local up -f` would");
        self.state = next;
        self.healer.policy = new_policy;
        if let Some(prober) = prober {
            self.prober = prober;
        }
        let stored = self.stored_spec();
        if let Some(specs) = &self.specs {
            specs.send_replace(stored.clone());
        }
        Ok(Patched { stored, changed })
    }

    /// Brings the peers to a spec changed from the dashboard, then probes so that the status
    /// shows it.
    pub(super) async fn reconverge(&mut self) {
        if let Err(e) = self.converge().await {
            warn!("bringing the peers to the changed spec: {e}");
        }
        self.round().await;
    }
}

fn new_prober(timeout: Duration, metrics: &Metrics) -> Result<Prober, SpecError> {
    Prober::new(timeout)
        .map(|p| p.timed(metrics.probe_durations.clone()))
        .map_err(|e| SpecError::Unavailable(format!("a prober for the new timeout: {e}")))
}
