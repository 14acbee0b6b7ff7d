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
use tokio::sync::watch;

use super::{ApiError, backend_route, find_backend, find_cluster, pick_cluster};
use crate::dashboard::auth::{Reader, Writer};
use crate::dashboard::error::Body;
use crate::dashboard::views::{
    self, Accepted, ClusterAction, ClusterRead, DaemonAction, Envelope, HealthCheck,
    HealthCheckView,
};
use crate::dashboard::{ActionKind, ActionRequest, ClusterEntry, Daemon, Dashboard, Snapshot};

/// How long `POST /health/check` waits for the probe round it asked for.
pub const HEALTH_CHECK_WAIT: Duration = Duration::from_secs(20);

impl Dashboard {
    /// Passes a request on to the reconciler, if `writer` may change `cluster`.
    async fn request(
        &self,
        writer: &Writer,
        action: ActionKind,
        cluster: &ClusterEntry,
        peer: Option<&str>,
        daemon: Option<Daemon>,
    ) -> Result<ActionRequest, ApiError> {
        writer.permit(self, cluster).await?;
        let request = ActionRequest {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            action,
            cluster: cluster.key(),
            peer: peer.map(str::to_string),
            daemon,
        };
        self.actions.send(request.clone()).await.map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "reconciler_unavailable",
                "the reconciler is not running; try again shortly",
            )
        })?;
        Ok(request)
    }
}

/// The answer to a request passed on: 202 with what was requested.
type AcceptedAnswer = (StatusCode, Json<Envelope<Accepted>>);

fn accepted(request: ActionRequest) -> AcceptedAnswer {
    (
        StatusCode::ACCEPTED,
        Json(Envelope::new(views::accepted(request))),
    )
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
    let (cluster, peer, parsed) = find_backend(&snapshot, &name)?;
    let (peer, daemon) = (Some(peer.name.as_str()), Some(parsed.daemon));
    let request = d
        .request(&writer, ActionKind::Restart, cluster, peer, daemon)
        .await?;
    Ok(accepted(request))
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
) -> Result<ReadOrAccepted<views::BackendView>, ApiError> {
    let action = parse_action(&body.action)?;
    let snapshot = d.current();
    let Some(kind) = action else {
        Reader::check(&d, &headers).await?;
        let (cluster, peer, parsed) = find_backend(&snapshot, &body.daemon_name)?;
        return Ok(ReadOrAccepted::Read(views::backend(
            cluster,
            peer,
            parsed.daemon,
        )));
    };
    let writer = Writer::check(&d, &headers).await?;
    let (cluster, peer, parsed) = find_backend(&snapshot, &body.daemon_name)?;
    let (peer, daemon) = (Some(peer.name.as_str()), Some(parsed.daemon));
    let request = d.request(&writer, kind, cluster, peer, daemon).await?;
    Ok(ReadOrAccepted::Accepted(accepted(request)))
}

/// `POST /api/dashboard/cluster/action`: `restart`, `status` or `peers` of a cluster.
pub async fn cluster_action(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<ClusterAction>,
) -> Result<ReadOrAccepted<ClusterRead>, ApiError> {
    let snapshot = d.current();
    let view: fn(&ClusterEntry) -> ClusterRead = match body.action.as_str() {
        "peers" => |c| ClusterRead::Peers(views::cluster_peers(c)),
        other => match parse_action(other)? {
            None => |c| ClusterRead::Health(views::cluster_health(c)),
            Some(kind) => {
                let writer = Writer::check(&d, &headers).await?;
                let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
                let request = d.request(&writer, kind, cluster, None, None).await?;
                return Ok(ReadOrAccepted::Accepted(accepted(request)));
            }
        },
    };
    Reader::check(&d, &headers).await?;
    let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
    Ok(ReadOrAccepted::Read(view(cluster)))
}

/// `POST /api/dashboard/health/check`: asks for a probe round and answers with its results.
/// The body is checked before the caller.
pub async fn health_check(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<HealthCheck>,
) -> Result<Json<Envelope<HealthCheckView>>, ApiError> {
    let writer = Writer::check(&d, &headers).await?;
    let snapshot = d.current();
    let (cluster, peer) = probe_target(&snapshot, body.backend_name.as_deref())?;
    let mut rounds = d.snapshot.clone();
    rounds.borrow_and_update();
    let request = d
        .request(&writer, ActionKind::Probe, cluster, peer, None)
        .await?;
    next_round(rounds, &request).await?;
    let fresh = d.current();
    let cluster = find_cluster(&fresh, &request.cluster)?;
    Ok(Json(Envelope::new(views::health_check(request, cluster))))
}

/// The cluster a health check probes, and the peer when it names a backend.
fn probe_target<'a>(
    snapshot: &'a Snapshot,
    backend_name: Option<&str>,
) -> Result<(&'a ClusterEntry, Option<&'a str>), ApiError> {
    match backend_name {
        Some(name) => {
            let (cluster, peer, _) = find_backend(snapshot, name)?;
            Ok((cluster, Some(peer.name.as_str())))
        }
        None => Ok((pick_cluster(snapshot, None)?, None)),
    }
}

/// Waits until the next round after `request` is published: 504 when none comes within
/// [`HEALTH_CHECK_WAIT`].
async fn next_round(
    mut rounds: watch::Receiver<Arc<Snapshot>>,
    request: &ActionRequest,
) -> Result<(), ApiError> {
    match tokio::time::timeout(HEALTH_CHECK_WAIT, rounds.changed()).await {
        Ok(_) => Ok(()),
        Err(_) => Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "probe_timeout",
            format!(
                "no probe round finished within {HEALTH_CHECK_WAIT:?}; request {} stays queued",
                request.id
            ),
        )),
    }
}
