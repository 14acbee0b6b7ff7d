//! Requests for changes: restart a daemon, a peer or a cluster, or probe now. Each is made by a
//! [`Writer`] and becomes an [`ActionRequest`] the reconciler carries out; the answer (202) says
//! what was requested. `status` and `peers` actions are reads, for the old toolkit's clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;

use super::{
    ApiError, Named, ambiguous, backend_route, backend_status, find_cluster, now, one_backend,
    pick_cluster, resolve,
};
use crate::dashboard::auth::{Reader, Writer};
use crate::dashboard::error::Body;
use crate::dashboard::requests::{self, RecordError};
use crate::dashboard::views::{
    self, Accepted, BackendStatus, ClusterAction, ClusterActionRead, ClusterRead, DaemonAction,
    DaemonStatusRead, Envelope, HealthCheck, HealthCheckView, toolkit,
};
use crate::dashboard::{
    ActionKind, ActionRequest, ClusterEntry, Daemon, Dashboard, RequestState, Snapshot,
};

/// How long `POST /health/check` waits for the probe round it asked for.
pub const HEALTH_CHECK_WAIT: Duration = Duration::from_secs(20);

impl Dashboard {
    /// Records a request for the reconciler, if `writer` may change `cluster`: answered only
    /// once it is recorded (5xx when it cannot be).
    async fn request(
        &self,
        writer: &Writer,
        action: ActionKind,
        cluster: &ClusterEntry,
        peer: Option<&str>,
        daemon: Option<Daemon>,
    ) -> Result<ActionRequest, ApiError> {
        writer.permit(self, cluster).await?;
        let mut attempts = 0;
        loop {
            let request = ActionRequest {
                id: self.new_request_id(),
                action,
                cluster: cluster.key(),
                peer: peer.map(str::to_string),
                daemon,
                requested_at: None,
            };
            // On the board first: the reconciler may report on it before the recorder returns.
            self.requests.set(requests::queued(&request));
            match self.recorder.record(&request, cluster).await {
                Ok(()) => {
                    tracing::info!(id = request.id, cluster = %request.cluster, action = ?request.action, "recorded action request");
                    return Ok(request);
                }
                Err(e) => {
                    self.requests.remove(request.id);
                    attempts += 1;
                    if matches!(e, RecordError::Taken(_)) && attempts < 5 {
                        continue;
                    }
                    tracing::warn!(id = request.id, cluster = %request.cluster, "action request not recorded: {e}");
                    return Err(not_recorded(&e));
                }
            }
        }
    }

    /// A new request id: counted from 1 locally, unique across dashboards in Kubernetes.
    fn new_request_id(&self) -> u64 {
        if !self.recorder.needs_unique_ids() {
            return self.next_id.fetch_add(1, Ordering::Relaxed);
        }
        let now = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        let previous = self
            .next_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(requests::next_unique_id(last, now))
            })
            .unwrap_or(0);
        requests::next_unique_id(previous, now)
    }
}

/// The answer to a request that could not be recorded: 503 when the reconciler cannot take it
/// now, 500 when the API server refused it (a deployment problem, not the client's).
fn not_recorded(e: &RecordError) -> ApiError {
    let status = match e {
        RecordError::Refused(_) => StatusCode::INTERNAL_SERVER_ERROR,
        RecordError::Unavailable(_) | RecordError::Taken(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(
        status,
        "request_not_recorded",
        format!("the request was not recorded, nothing will be done: {e}"),
    )
}

/// The answer to a request passed on: 202 with what was requested.
type AcceptedAnswer = (StatusCode, Json<Envelope<Box<Accepted>>>);

fn accepted(request: ActionRequest, daemon_name: Option<String>) -> AcceptedAnswer {
    let view = views::accepted(request, daemon_name, &now());
    (StatusCode::ACCEPTED, Json(Envelope::new(Box::new(view))))
}

/// Answered by a read (200) or by a request passed on (202).
pub enum ReadOrAccepted<T> {
    Read(T),
    Accepted(AcceptedAnswer),
}

impl<T: serde::Serialize> IntoResponse for ReadOrAccepted<T> {
    fn into_response(self) -> Response {
        match self {
            ReadOrAccepted::Read(view) => Json(Envelope::new(view)).into_response(),
            ReadOrAccepted::Accepted(answer) => answer.into_response(),
        }
    }
}

/// The backend of `POST /backends/{backend}/restart`; another suffix is no route (404), answered
/// before the caller is authenticated.
pub struct RestartPath(String);

impl<S: Send + Sync> FromRequestParts<S> for RestartPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<RestartPath, Response> {
        let Path(rest) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        backend_route("POST", &rest, "/restart")
            .map(|name| RestartPath(name.to_string()))
            .map_err(IntoResponse::into_response)
    }
}

/// `POST /api/dashboard/backends/{backend}/restart`.
pub async fn restart_backend(
    State(d): State<Dashboard>,
    RestartPath(name): RestartPath,
    writer: Writer,
) -> Result<AcceptedAnswer, ApiError> {
    let snapshot = d.current();
    let (cluster, peer, daemon) = one_backend(&snapshot, &name)?;
    let (peer, daemon) = (Some(peer.name.as_str()), Some(daemon));
    let request = d
        .request(&writer, ActionKind::Restart, cluster, peer, daemon)
        .await?;
    Ok(accepted(request, Some(name)))
}

/// What an `action` of the action routes asks for: a restart, or a read (`None`).
fn parse_action(action: &str) -> Result<Option<ActionKind>, ApiError> {
    match action {
        // Neither runtime stops a daemon for good: the reconciler would heal it right back.
        "start" | "stop" => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_action",
            format!(
                "action {action:?} is not carried out: the reconciler keeps every declared \
                 peer running. Use restart; to stop peers set spec.paused or spec.replicas \
                 (Kubernetes), or run `local down` / `local up` (local)"
            ),
        )),
        "restart" => Ok(Some(ActionKind::Restart)),
        "status" => Ok(None),
        other => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_action",
            format!("action {other:?} is not one of restart, status (start and stop are refused)"),
        )),
    }
}

/// `POST /api/dashboard/daemon/action`: `restart` or `status` of one daemon. The body decides
/// whether this is a read, so it is checked before the caller.
pub async fn daemon_action(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<DaemonAction>,
) -> Result<ReadOrAccepted<DaemonStatusRead>, ApiError> {
    let action = parse_action(&body.action)?;
    let snapshot = d.current();
    let Some(kind) = action else {
        Reader::check(&d, &headers).await?;
        let status = backend_status(&snapshot, &body.daemon_name)?;
        let details = match &status {
            BackendStatus::One(view) => view.toolkit.clone(),
            BackendStatus::Group(group) => group.summary.clone(),
        };
        return Ok(ReadOrAccepted::Read(DaemonStatusRead {
            status,
            daemon_name: body.daemon_name,
            action: body.action,
            timestamp: now(),
            details,
        }));
    };
    let writer = Writer::check(&d, &headers).await?;
    let (cluster, peer, daemon) = one_backend(&snapshot, &body.daemon_name)?;
    let (peer, daemon) = (Some(peer.name.as_str()), Some(daemon));
    let request = d.request(&writer, kind, cluster, peer, daemon).await?;
    Ok(ReadOrAccepted::Accepted(accepted(
        request,
        Some(body.daemon_name),
    )))
}

/// `POST /api/dashboard/cluster/action`: `restart`, `status` or `peers` of a cluster.
pub async fn cluster_action(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<ClusterAction>,
) -> Result<ReadOrAccepted<ClusterActionRead>, ApiError> {
    let snapshot = d.current();
    let view: fn(&ClusterEntry) -> ClusterRead = match body.action.as_str() {
        "peers" => |c| ClusterRead::Peers(views::cluster_peers(c)),
        other => match parse_action(other)? {
            None => |c| ClusterRead::Health(views::cluster_health(c)),
            Some(kind) => {
                let writer = Writer::check(&d, &headers).await?;
                let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
                let request = d.request(&writer, kind, cluster, None, None).await?;
                return Ok(ReadOrAccepted::Accepted(accepted(request, None)));
            }
        },
    };
    Reader::check(&d, &headers).await?;
    let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
    Ok(ReadOrAccepted::Read(ClusterActionRead {
        read: view(cluster),
        action: body.action,
        timestamp: now(),
        details: toolkit::cluster_service([cluster]),
    }))
}

/// `POST /api/dashboard/health/check`: asks for a probe round and answers with its results once
/// it has finished. The body is checked before the caller.
pub async fn health_check(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<HealthCheck>,
) -> Result<Json<Envelope<HealthCheckView>>, ApiError> {
    let writer = Writer::check(&d, &headers).await?;
    let started = tokio::time::Instant::now();
    let snapshot = d.current();
    let (cluster, peer, daemon) = probe_target(&snapshot, body.backend_name.as_deref())?;
    let before = last_probed(cluster, peer);
    let mut rounds = d.snapshot.clone();
    rounds.borrow_and_update();
    let request = d
        .request(&writer, ActionKind::Probe, cluster, peer, None)
        .await?;
    let record = d.requests.finished(request.id, HEALTH_CHECK_WAIT).await;
    let round = match record {
        Some(r) if r.state == RequestState::Done => Round {
            before,
            version: r.status_version,
        },
        Some(r) if r.state == RequestState::Failed => {
            let why = r.reason.unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "request_failed",
                format!("probe request {} failed: {why}", request.id),
            ));
        }
        other => {
            let state = other.map_or("unknown (no longer kept)", |r| r.state.as_str());
            return Err(probe_timeout(&request, state));
        }
    };
    // The round is over; the status it wrote may reach this dashboard a moment later.
    let left = HEALTH_CHECK_WAIT.saturating_sub(started.elapsed());
    probe_round(rounds, &request, &round, left).await?;
    let fresh = d.current();
    let cluster = find_cluster(&fresh, &request.cluster)?;
    let seconds = started.elapsed().as_secs_f64();
    let view = views::health_check(request, cluster, daemon, seconds, &now());
    Ok(Json(Envelope::new(view)))
}

/// 504: the probe round of `request` did not finish in time; it is `state` now.
fn probe_timeout(request: &ActionRequest, state: &str) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "probe_timeout",
        format!(
            "the probe round of request {id} did not finish within {HEALTH_CHECK_WAIT:?}; it \
             is {state}: follow /api/dashboard/requests/{id}",
            id = request.id
        ),
    )
}

/// The cluster a health check probes, the peer and daemon when it names a backend. A toolkit
/// short name of several daemons probes their cluster, when they are all of one.
fn probe_target<'a>(
    snapshot: &'a Snapshot,
    backend_name: Option<&str>,
) -> Result<(&'a ClusterEntry, Option<&'a str>, Option<Daemon>), ApiError> {
    let Some(name) = backend_name else {
        return Ok((pick_cluster(snapshot, None)?, None, None));
    };
    match resolve(snapshot, name)? {
        Named::One(cluster, peer, daemon) => Ok((cluster, Some(peer.name.as_str()), Some(daemon))),
        Named::Group(daemon, members) => match snapshot.clusters.as_slice() {
            [only] => Ok((only, None, Some(daemon))),
            _ => Err(ambiguous(name, daemon, &members)),
        },
    }
}

/// When the peers a health check is about were last probed: the peer's `lastProbe`, or the
/// latest of the cluster's peers.
fn last_probed(cluster: &ClusterEntry, peer: Option<&str>) -> Option<Time> {
    cluster
        .status
        .peers
        .iter()
        .filter(|p| peer.is_none_or(|name| p.name == name))
        .filter_map(|p| p.last_probe.clone())
        .max()
}

/// Whether `fresh` is the round a health check waits for (see [`Round`]). Not every published snapshot is a probe round (the sidecar publishes on every
/// watch event, the first being its own annotation that records the request). Without a probe
/// time before (a runtime that publishes only after probing, or peers never probed) any round
/// counts; so does one without the cluster (the answer is then 404).
fn probed_after(round: &Round, fresh: &Snapshot, request: &ActionRequest) -> bool {
    let Some(before) = &round.before else {
        return true;
    };
    let Some(cluster) = fresh.clusters.iter().find(|c| c.key() == request.cluster) else {
        return true;
    };
    (round.version.is_some() && cluster.resource_version == round.version)
        || last_probed(cluster, request.peer.as_deref()).is_some_and(|t| &t > before)
}

/// What tells the status of a requested round: its probe times are later than `before` (the
/// ones known when it was asked for), or (Kubernetes) the cluster is at the resourceVersion
/// `version` its status write left (probe times have whole seconds there: a round in the same
/// second as the one before writes the same times, and maybe the same status).
struct Round {
    before: Option<Time>,
    version: Option<String>,
}

/// Waits until the status of the requested `round` is published: 504 when none comes within
/// `wait`.
async fn probe_round(
    mut rounds: watch::Receiver<Arc<Snapshot>>,
    request: &ActionRequest,
    round: &Round,
    wait: Duration,
) -> Result<(), ApiError> {
    if probed_after(round, &rounds.borrow_and_update(), request) {
        return Ok(());
    }
    let probed = async {
        // A closed channel (the runtime stopped) answers with the last snapshot.
        while rounds.changed().await.is_ok() {
            let fresh = rounds.borrow_and_update().clone();
            if probed_after(round, &fresh, request) {
                return;
            }
        }
    };
    tokio::time::timeout(wait, probed).await.map_err(|_| {
        probe_timeout(
            request,
            "done, but its status has not reached this dashboard",
        )
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::Value;

    use crate::api::{IpfsClusterStatus, PeerStatus};
    use crate::dashboard::{ActionKind, ClusterEntry, Dashboard, RequestState, Snapshot, Token};

    const TOKEN: &str = "check-token-0123456789";

    fn snapshot(score: i32, probed_at: &str) -> Snapshot {
        let probed_at: Time = serde_json::from_value(probed_at.into()).expect("time");
        let peer = PeerStatus {
            name: "demo-0".into(),
            score: Some(score),
            last_probe: Some(probed_at),
            ..PeerStatus::default()
        };
        let status = IpfsClusterStatus {
            health_score: Some(score),
            peers: vec![peer],
            ..IpfsClusterStatus::default()
        };
        Snapshot {
            clusters: vec![ClusterEntry {
                namespace: Some("prod".into()),
                name: "demo".into(),
                replicas: 1,
                paused: false,
                status,
                uid: None,
                resource_version: None,
                processes: Vec::new(),
            }],
            pins: Vec::new(),
            updated_at: Some("2026-11-27T21:00:00Z".into()),
        }
    }

    /// The sidecar publishes a snapshot on every watch event, some before the controller
    /// probed anything, and a periodic round may finish while the requested one runs: the answer
    /// comes once the requested round is done, with its status.
    #[tokio::test]
    async fn a_health_check_answers_once_the_round_it_asked_for_is_done() {
        let (dashboard, publisher, mut actions) = Dashboard::new(Token::new(TOKEN), false);
        publisher.publish(snapshot(90, "2026-11-27T21:00:00Z"));
        let board = actions.board.clone();
        tokio::spawn(async move {
            while let Some(request) = actions.recv().await {
                assert_eq!(request.action, ActionKind::Probe);
                board.update(request.id, RequestState::Running, "probing");
                // An event that is not a round: the status is the one from before.
                publisher.publish(snapshot(90, "2026-11-27T21:00:00Z"));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                // A periodic round that started before the request.
                publisher.publish(snapshot(40, "2026-11-27T21:00:07Z"));
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                publisher.publish(snapshot(30, "2026-11-27T21:00:08Z"));
                board.update(request.id, RequestState::Done, "probed");
            }
        });
        let (code, body) = health_check(dashboard).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"]["healthScore"], 30, "{body}");
        assert_eq!(
            body["data"]["peers"][0]["lastProbe"],
            "2026-11-27T21:00:08Z"
        );
    }

    /// In Kubernetes probe times have whole seconds: a requested round in the same second as the
    /// round before writes the same status, which changes nothing (no new resourceVersion, no
    /// watch event). The request records the version its write left: that status answers.
    #[tokio::test]
    async fn a_round_in_the_same_second_as_the_last_answers_by_its_resource_version() {
        let at_version = |score, version: &str| {
            let mut s = snapshot(score, "2026-11-27T21:00:05Z");
            s.clusters[0].resource_version = Some(version.into());
            s
        };
        let (dashboard, publisher, mut actions) = Dashboard::new(Token::new(TOKEN), false);
        publisher.publish(at_version(90, "41"));
        let board = actions.board.clone();
        tokio::spawn(async move {
            while let Some(request) = actions.recv().await {
                // The sidecar's own events: a version that is not the round's.
                publisher.publish(at_version(90, "42"));
                board.set(crate::api::RequestRecord {
                    request,
                    state: RequestState::Done,
                    reason: Some("probed every peer".into()),
                    updated_at: "2026-11-27T21:00:05Z".into(),
                    status_version: Some("42".into()),
                });
            }
        });
        let (code, body) = health_check(dashboard).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["data"]["healthScore"], 90, "{body}");
    }

    /// `POST /health/check` of demo-0's Kubo on `dashboard`: the status code and the body.
    async fn health_check(dashboard: Dashboard) -> (u16, Value) {
        let (base, http) = serve(dashboard).await;
        let resp = http
            .post(format!("{base}/api/dashboard/health/check"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"backend_name": "prod/demo/demo-0/ipfs"}))
            .send()
            .await
            .expect("health check");
        let code = resp.status().as_u16();
        (code, resp.json().await.expect("json"))
    }

    /// Serves `dashboard` on a free loopback port: its base URL and a client.
    async fn serve(dashboard: Dashboard) -> (String, reqwest::Client) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let router = crate::dashboard::router(dashboard);
        tokio::spawn(async move { axum::serve(listener, router).await });
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        (base, http)
    }

    /// A request the reconciler cannot take is answered 503 and not kept as queued.
    #[tokio::test]
    async fn a_request_that_cannot_be_recorded_is_answered_503_not_202() {
        let (dashboard, publisher, requests) = Dashboard::new(Token::new(TOKEN), false);
        publisher.publish(snapshot(90, "2026-11-27T21:00:00Z"));
        drop(requests);
        let (base, http) = serve(dashboard).await;
        let resp = http
            .post(format!(
                "{base}/api/dashboard/backends/prod/demo/demo-0/ipfs/restart"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("restart");
        assert_eq!(resp.status().as_u16(), 503);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["error"]["code"], "request_not_recorded", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("nothing will be done"), "{message}");
        let resp = http
            .get(format!("{base}/api/dashboard/requests/1"))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status().as_u16(), 404, "not kept as queued");
    }
}
