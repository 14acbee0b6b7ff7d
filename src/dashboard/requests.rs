//! Change requests from acceptance to outcome. The dashboard records each accepted request with
//! a [`RequestRecorder`] before it answers `202` (a request whose recording fails is answered
//! 5xx), and keeps what it knows of each on a [`RequestBoard`]: `GET /api/dashboard/requests/{id}`
//! reads it, `POST /health/check` waits on it.
//!
//! Locally the recorder is the channel to the supervisor, which moves the request on the board
//! (running, then done or failed). In Kubernetes it creates one ConfigMap per request (see
//! [`crate::api::request`]); the controller moves and finally deletes it, and the sidecar's
//! watch of those ConfigMaps copies their states onto the board.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use super::ClusterEntry;
use crate::api::{ActionRequest, RequestRecord, RequestState};

pub use crate::api::request::{KEEP_FINISHED, KEEP_FINISHED_COUNT};

/// Why a request could not be recorded: it is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The reconciler cannot take requests now (it stopped, the API server is unreachable).
    #[error("{0}")]
    Unavailable(String),
    /// The API server refused (RBAC, admission, quota).
    #[error("{0}")]
    Refused(String),
    /// The id is taken (another dashboard recorded one with it): try another.
    #[error("request id {0} is taken")]
    Taken(u64),
}

/// Records an accepted request where its reconciler finds it.
pub trait RequestRecorder: Send + Sync {
    /// Records `request`, for `cluster`, before it is answered `202`.
    fn record(
        &self,
        request: &ActionRequest,
        cluster: &ClusterEntry,
    ) -> BoxFuture<'static, Result<(), RecordError>>;

    /// Whether ids must be unique across dashboards and their restarts (Kubernetes: they name
    /// recorded objects), rather than counted from 1 by this process.
    fn needs_unique_ids(&self) -> bool {
        false
    }
}

/// The local recorder: the channel to the supervisor.
pub struct ChannelRecorder(pub mpsc::Sender<ActionRequest>);

impl RequestRecorder for ChannelRecorder {
    fn record(
        &self,
        request: &ActionRequest,
        _cluster: &ClusterEntry,
    ) -> BoxFuture<'static, Result<(), RecordError>> {
        let sender = self.0.clone();
        let request = request.clone();
        Box::pin(async move {
            sender.send(request).await.map_err(|_| {
                RecordError::Unavailable(
                    "the reconciler is not running: the request was not recorded; try again \
                     shortly"
                        .into(),
                )
            })
        })
    }
}

/// One request on the board, with when it finished (for pruning).
struct Entry {
    record: RequestRecord,
    finished: Option<Instant>,
}

/// What the dashboard knows of each request: shared by the dashboard and, locally, the
/// supervisor; in Kubernetes filled from the request ConfigMaps' watch.
#[derive(Clone)]
pub struct RequestBoard {
    entries: Arc<Mutex<BTreeMap<u64, Entry>>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Default for RequestBoard {
    fn default() -> RequestBoard {
        RequestBoard {
            entries: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
        }
    }
}

impl RequestBoard {
    /// Puts `record` on the board (replacing what was known of its id), drops finished requests
    /// beyond [`KEEP_FINISHED`] and [`KEEP_FINISHED_COUNT`], and wakes the waiters.
    pub fn set(&self, record: RequestRecord) {
        let id = record.request.id;
        if let Ok(mut entries) = self.entries.lock() {
            let finished = record.state.is_finished().then(|| {
                entries
                    .get(&id)
                    .and_then(|e| e.finished)
                    .unwrap_or_else(Instant::now)
            });
            entries.insert(id, Entry { record, finished });
            prune(&mut entries, Instant::now());
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Moves request `id` to `state` with `reason`; unknown ids are ignored.
    pub fn update(&self, id: u64, state: RequestState, reason: impl Into<String>) {
        let Some(mut record) = self.get(id) else {
            return;
        };
        record.state = state;
        record.reason = Some(reason.into());
        record.updated_at = now_rfc3339();
        self.set(record);
    }

    /// Forgets request `id` (it was not recorded, or its record is gone).
    pub fn remove(&self, id: u64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn get(&self, id: u64) -> Option<RequestRecord> {
        let entries = self.entries.lock().ok()?;
        entries.get(&id).map(|e| e.record.clone())
    }

    /// Request `id` once it is finished, or what is known of it when `wait` has passed first
    /// (`None`: it is not on the board).
    pub async fn finished(&self, id: u64, wait: Duration) -> Option<RequestRecord> {
        let mut changes = self.changed.subscribe();
        let done = async {
            loop {
                changes.borrow_and_update();
                match self.get(id) {
                    Some(r) if r.state.is_finished() => return,
                    None => return,
                    Some(_) => {}
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(wait, done).await;
        self.get(id)
    }
}

/// Drops the finished entries older than [`KEEP_FINISHED`], then the oldest beyond
/// [`KEEP_FINISHED_COUNT`]; requests not finished always stay.
fn prune(entries: &mut BTreeMap<u64, Entry>, now: Instant) {
    entries.retain(|_, e| {
        e.finished
            .is_none_or(|at| now.duration_since(at) < KEEP_FINISHED)
    });
    let mut finished: Vec<(Instant, u64)> = entries
        .iter()
        .filter_map(|(id, e)| e.finished.map(|at| (at, *id)))
        .collect();
    if finished.len() > KEEP_FINISHED_COUNT {
        finished.sort();
        for (_, id) in &finished[..finished.len() - KEEP_FINISHED_COUNT] {
            entries.remove(id);
        }
    }
}

/// A queued record of `request`, now.
pub fn queued(request: &ActionRequest) -> RequestRecord {
    RequestRecord {
        request: request.clone(),
        state: RequestState::Queued,
        reason: None,
        updated_at: now_rfc3339(),
        status_version: None,
    }
}

pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

/// The next request id after `last`: unique across restarts and (with the id checked on
/// creation) across dashboards: the current time in milliseconds times 1024, or one more than
/// the last when that is not larger. Below 2^53, so that JavaScript clients read it exactly.
pub fn next_unique_id(last: u64, now_millis: u64) -> u64 {
    (now_millis << 10).max(last + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ActionKind;

    fn request(id: u64) -> ActionRequest {
        ActionRequest {
            id,
            action: ActionKind::Restart,
            cluster: "demo".into(),
            peer: Some("peer-0".into()),
            daemon: None,
            requested_at: None,
        }
    }

    #[tokio::test]
    async fn a_waiter_sees_the_request_finish_and_a_timeout_answers_its_state_then() {
        let board = RequestBoard::default();
        board.set(queued(&request(1)));
        let waiter = {
            let board = board.clone();
            tokio::spawn(async move { board.finished(1, Duration::from_secs(10)).await })
        };
        board.update(1, RequestState::Running, "taken up");
        board.update(1, RequestState::Done, "restarted kubo of peer-0");
        let record = waiter.await.expect("join").expect("on the board");
        assert_eq!(record.state, RequestState::Done);
        assert_eq!(record.reason.as_deref(), Some("restarted kubo of peer-0"));
        board.set(queued(&request(2)));
        let record = board.finished(2, Duration::from_millis(50)).await;
        assert_eq!(record.map(|r| r.state), Some(RequestState::Queued));
        assert!(board.finished(3, Duration::from_secs(10)).await.is_none());
    }

    #[test]
    fn finished_requests_are_kept_a_bounded_time_and_count_and_waiting_ones_always() {
        let mut entries = BTreeMap::new();
        let now = Instant::now();
        let old = now.checked_sub(KEEP_FINISHED + Duration::from_secs(1));
        let mut record = queued(&request(0));
        entries.insert(
            0,
            Entry {
                record: record.clone(),
                finished: None,
            },
        );
        for id in 1..=(KEEP_FINISHED_COUNT as u64 + 5) {
            record.request.id = id;
            let at = now.checked_sub(Duration::from_secs(600 - id));
            entries.insert(
                id,
                Entry {
                    record: record.clone(),
                    finished: at,
                },
            );
        }
        entries.insert(
            9999,
            Entry {
                record: record.clone(),
                finished: old,
            },
        );
        prune(&mut entries, now);
        assert!(entries.contains_key(&0), "a queued request stays");
        assert!(!entries.contains_key(&9999), "an old one goes");
        assert_eq!(entries.len(), KEEP_FINISHED_COUNT + 1);
        assert!(!entries.contains_key(&5) && entries.contains_key(&6));
    }

    #[test]
    fn unique_ids_increase_and_stay_exact_in_javascript() {
        let now = 1_795_813_200_000;
        let a = next_unique_id(0, now);
        let b = next_unique_id(a, now);
        assert!(b > a && b < (1 << 53));
        assert_eq!(next_unique_id(b, now + 1), (now + 1) << 10);
    }
}
