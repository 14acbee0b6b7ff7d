//! The HTTP routes. GETs read the published snapshot and never act; POSTs are authenticated and
//! become [`ActionRequest`]s for the reconciler.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::timeout::TimeoutLayer;

use super::access::{AccessTarget, ReviewedUser};
use super::backend::BackendName;
use super::logs::{LogError, LogTarget};
use super::{
    ActionKind, ActionRequest, BODY_LIMIT, ClusterEntry, Daemon, Dashboard, MAX_LOG_LINES, Snapshot,
};
use crate::api::PeerStatus;

/// How long `POST /health/check` waits for the probe round it asked for.
const HEALTH_CHECK_WAIT: Duration = Duration::from_secs(20);

/// The dashboard's router, ready for `axum::serve`.
pub fn router(dashboard: Dashboard) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/metrics/realtime", get(realtime))
        .route("/backends/{*rest}", get(backend_get).post(backend_post))
        .route("/history/{*name}", get(history))
        .route("/logs/{*backend}", get(logs))
        .route("/events", get(events))
        .route("/daemon/action", post(daemon_action))
        .route("/cluster/action", post(cluster_action))
        .route("/health/check", post(health_check))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method);
    Router::new()
        .nest("/api/dashboard", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .merge(super::page::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        // Bodies are only ever read by the JSON extractor, which answers 413 in the envelope.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(dashboard)
}

/// An error answer: `{"success": false, "error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"success": false, "error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; see /openapi.json",
        uri.path()
    ))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; see /openapi.json", uri.path()),
    )
}

fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

/// JSON bodies whose errors answer in the envelope (400 malformed, 422 wrong fields).
pub struct Body<T>(T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Read as a JSON value first: serde would also take a struct from an array, positionally.
        match Json::<Value>::from_request(req, state).await {
            Ok(Json(v)) if !v.is_object() => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            )),
            Ok(Json(v)) => serde_json::from_value(v).map(Body).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    e.to_string(),
                )
            }),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.body_text(),
            )),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e)) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("{} (limit {BODY_LIMIT} bytes)", e.body_text()),
            )),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// Who made a request that needs authentication.
pub enum Caller {
    /// Presented the dashboard's own token.
    Token,
    /// A Kubernetes identity the API server vouched for (TokenReview).
    Kube(ReviewedUser),
}

impl Dashboard {
    /// Authenticates a request: the dashboard's token, or (with access review) a Kubernetes
    /// token. 403 when no way to authenticate is configured, 401 when the credentials fail.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if self.token.is_none() && self.review.is_none() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "mutations_disabled",
                "this dashboard has no token configured, so it refuses every change; start it \
                 with --token-file",
            ));
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.matches_header(presented))
        {
            return Ok(Caller::Token);
        }
        let unauthorized = || {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <token>",
            )
        };
        let bearer = presented
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match (&self.review, bearer) {
            (Some(review), Some(token)) => match review.authenticate(token.to_string()).await {
                Ok(Some(user)) => Ok(Caller::Kube(user)),
                Ok(None) => Err(unauthorized()),
                Err(e) => Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "review_failed",
                    format!("could not review the token with the Kubernetes API: {e}"),
                )),
            },
            _ => Err(unauthorized()),
        }
    }

    /// Whether `caller` may do `verb` on `cluster` (every cluster when `None`): the dashboard's
    /// token may do everything; a Kubernetes identity what RBAC allows on `ipfsclusters`.
    async fn permit(
        &self,
        caller: &Caller,
        verb: &str,
        cluster: Option<&ClusterEntry>,
    ) -> Result<(), ApiError> {
        let (Caller::Kube(user), Some(review)) = (caller, &self.review) else {
            return Ok(());
        };
        let target = AccessTarget {
            verb: verb.to_string(),
            namespace: cluster.and_then(|c| c.namespace.clone()),
            name: cluster.map(|c| c.name.clone()),
        };
        match review.permits(user.clone(), target).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} may not {verb} ipfsclusters{}: {reason}",
                    user.username,
                    cluster.map(|c| format!(" {}", c.key())).unwrap_or_default()
                ),
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "review_failed",
                format!("could not review access with the Kubernetes API: {e}"),
            )),
        }
    }

    /// Reads are open unless `auth_reads`; then they need the token or `list` on ipfsclusters.
    async fn authorize_read(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.auth_reads {
            return Ok(());
        }
        let caller = self.authenticate(headers).await?;
        self.permit(&caller, "list", None).await
    }

    async fn request(
        &self,
        action: ActionKind,
        cluster: &ClusterEntry,
        peer: Option<&str>,
        daemon: Option<Daemon>,
    ) -> Result<ActionRequest, ApiError> {
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

fn accepted(request: &ActionRequest) -> Response {
    let body = json!({
        "success": true,
        "data": {
            "requested": request,
            "watch": "/api/dashboard/events",
            "message": "requested; the reconciler carries it out and status shows the result",
        }
    });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn find_cluster<'a>(snapshot: &'a Snapshot, key: &str) -> Result<&'a ClusterEntry, ApiError> {
    snapshot
        .clusters
        .iter()
        .find(|c| c.key() == key)
        .ok_or_else(|| ApiError::not_found(format!("no cluster {key:?}")))
}

fn find_backend<'a>(
    snapshot: &'a Snapshot,
    name: &str,
) -> Result<(&'a ClusterEntry, &'a PeerStatus, BackendName), ApiError> {
    let parsed = BackendName::parse(name).map_err(ApiError::not_found)?;
    let cluster = find_cluster(snapshot, &parsed.cluster)?;
    let peer = cluster
        .status
        .peers
        .iter()
        .find(|p| p.name == parsed.peer)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "cluster {:?} has no peer {:?}",
                parsed.cluster, parsed.peer
            ))
        })?;
    Ok((cluster, peer, parsed))
}

fn backend_view(cluster: &ClusterEntry, peer: &PeerStatus, daemon: Daemon) -> Value {
    let common = json!({
        "cluster": cluster.key(),
        "peer": peer.name,
        "state": peer.state,
        "score": peer.score,
        "restarts": peer.restarts,
        "lastProbe": peer.last_probe,
        "lastError": peer.last_error,
    });
    let specific = match daemon {
        Daemon::Ipfs => json!({
            "daemon": "ipfs",
            "peerId": peer.peer_id,
            "version": peer.kubo_version,
            "swarmPeers": peer.swarm_peers,
            "repoSize": peer.repo_size,
        }),
        Daemon::Cluster => json!({
            "daemon": "cluster",
            "peerId": peer.cluster_peer_id,
            "version": peer.cluster_version,
            "clusterPeersSeen": peer.cluster_peers_seen,
            "pinsQueued": peer.pins_queued,
            "pinsPinning": peer.pins_pinning,
            "pinsError": peer.pins_error,
        }),
    };
    let mut view = common;
    if let (Some(v), Some(s)) = (view.as_object_mut(), specific.as_object()) {
        v.extend(s.clone());
    }
    view
}

fn summary(snapshot: &Snapshot) -> Value {
    let peers: Vec<&PeerStatus> = snapshot
        .clusters
        .iter()
        .flat_map(|c| &c.status.peers)
        .collect();
    let scores: Vec<i32> = snapshot
        .clusters
        .iter()
        .filter_map(|c| c.status.health_score)
        .collect();
    let overall = if scores.is_empty() {
        None
    } else {
        Some(scores.iter().sum::<i32>() / scores.len() as i32)
    };
    json!({
        "score": overall,
        "clusters": snapshot.clusters.len(),
        "peers": peers.len(),
        "updatedAt": snapshot.updated_at,
    })
}

async fn metrics(State(d): State<Dashboard>, headers: HeaderMap) -> Result<Response, ApiError> {
    d.authorize_read(&headers).await?;
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    Ok(([(header::CONTENT_TYPE, content_type)], d.metrics.encode()).into_response())
}

async fn readyz(State(d): State<Dashboard>) -> Response {
    if d.current().updated_at.is_some() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first reconciled status",
        )
            .into_response()
    }
}

async fn status(State(d): State<Dashboard>, headers: HeaderMap) -> Result<Response, ApiError> {
    d.authorize_read(&headers).await?;
    let snapshot = d.current();
    // A `Value` always serializes (its map keys are strings).
    let body = d.status_body(&snapshot, |s| {
        Bytes::from(serde_json::to_vec(&status_json(s)).unwrap_or_default())
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The `GET /status` answer for one snapshot (serialized once per snapshot, see `status_body`).
fn status_json(snapshot: &Snapshot) -> Value {
    let clusters: Vec<Value> = snapshot
        .clusters
        .iter()
        .map(|c| {
            json!({
                "cluster": c.key(),
                "replicas": c.replicas,
                "paused": c.paused,
                "phase": c.status.phase,
                "healthScore": c.status.health_score,
                "readyReplicas": c.status.ready_replicas,
                "conditions": c.status.conditions,
                "peers": c.status.peers,
                "pins": snapshot.pins.iter()
                    .filter(|p| c.namespace.as_deref() == Some(p.namespace.as_str()) && p.cluster == c.name)
                    .map(|p| json!({
                        "name": p.name, "cid": p.cid, "phase": p.status.phase,
                        "pinned": p.status.pinned_summary, "conditions": p.status.conditions,
                    }))
                    .collect::<Vec<_>>(),
                "libp2p": {
                    "peers": c.status.peers.len(),
                    "swarmPeers": c.status.peers.iter().map(|p| (p.name.clone(), p.swarm_peers)).collect::<std::collections::BTreeMap<_, _>>(),
                    "clusterPeersSeen": c.status.peers.iter().map(|p| (p.name.clone(), p.cluster_peers_seen)).collect::<std::collections::BTreeMap<_, _>>(),
                },
            })
        })
        .collect();
    let alerts: Vec<Value> = snapshot
        .clusters
        .iter()
        .flat_map(|c| {
            c.status
                .healing
                .iter()
                .map(move |h| json!({"cluster": c.key(), "entry": h}))
        })
        .collect();
    json!({"success": true, "data": {
        "overall": summary(snapshot),
        "clusters": clusters,
        "alerts": alerts,
    }})
}

async fn realtime(State(d): State<Dashboard>, headers: HeaderMap) -> Result<Response, ApiError> {
    d.authorize_read(&headers).await?;
    let snapshot = d.current();
    let rates = d
        .bandwidth
        .lock()
        .map(|b| b.rates.clone())
        .unwrap_or_default();
    let peers: Vec<Value> = snapshot
        .clusters
        .iter()
        .flat_map(|c| {
            let rates = &rates;
            c.status.peers.iter().map(move |p| {
                let rate = rates.get(&format!("{}/{}", c.key(), p.name));
                json!({
                    "cluster": c.key(),
                    "peer": p.name,
                    "state": p.state,
                    "score": p.score,
                    "swarmPeers": p.swarm_peers,
                    "repoSize": p.repo_size,
                    "bandwidth": {
                        "totalIn": p.bytes_in,
                        "totalOut": p.bytes_out,
                        "rateIn": rate.map(|r| r.bytes_in_per_second),
                        "rateOut": rate.map(|r| r.bytes_out_per_second),
                    },
                    "lastProbe": p.last_probe,
                })
            })
        })
        .collect();
    let host = d.host.read().ok().and_then(|h| h.clone());
    Ok(ok(
        json!({"host": host, "peers": peers, "updatedAt": snapshot.updated_at}),
    ))
}

async fn backend_get(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    d.authorize_read(&headers).await?;
    let name = rest
        .strip_suffix("/status")
        .ok_or_else(|| ApiError::not_found(format!("no route GET /backends/{rest}")))?;
    let snapshot = d.current();
    let (cluster, peer, parsed) = find_backend(&snapshot, name)?;
    Ok(ok(backend_view(cluster, peer, parsed.daemon)))
}

async fn backend_post(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(rest): Path<String>,
) -> Result<Response, ApiError> {
    let name = rest
        .strip_suffix("/restart")
        .ok_or_else(|| ApiError::not_found(format!("no route POST /backends/{rest}")))?;
    let caller = d.authenticate(&headers).await?;
    let snapshot = d.current();
    let (cluster, peer, parsed) = find_backend(&snapshot, name)?;
    d.permit(&caller, "patch", Some(cluster)).await?;
    let request = d
        .request(
            ActionKind::Restart,
            cluster,
            Some(&peer.name),
            Some(parsed.daemon),
        )
        .await?;
    Ok(accepted(&request))
}

/// `GET /logs/{backend}` query: `lines` (default 100, at most [`MAX_LOG_LINES`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    #[serde(default)]
    lines: Option<usize>,
}

const DEFAULT_LOG_LINES: usize = 100;

async fn logs(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    d.authorize_read(&headers).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::bad_request(format!(
            "{}; the only parameter is lines=<1-{MAX_LOG_LINES}>",
            e.body_text()
        ))
    })?;
    let lines = query.lines.unwrap_or(DEFAULT_LOG_LINES);
    if !(1..=MAX_LOG_LINES).contains(&lines) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_lines",
            format!("lines={lines} is out of range: ask for 1 to {MAX_LOG_LINES} lines"),
        ));
    }
    let snapshot = d.current();
    let (cluster, peer, parsed) = find_backend(&snapshot, &name)?;
    let source = d.logs.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "logs_unavailable",
            "this dashboard has no access to daemon logs",
        )
    })?;
    let target = LogTarget {
        namespace: cluster.namespace.clone(),
        cluster: cluster.name.clone(),
        peer: peer.name.clone(),
        daemon: parsed.daemon,
    };
    let text = source.tail(target, lines).await.map_err(|e| match e {
        LogError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "no_log", m),
        LogError::Unavailable(m) => ApiError::new(StatusCode::BAD_GATEWAY, "logs_unavailable", m),
    })?;
    let all: Vec<&str> = text.lines().collect();
    let kept = &all[all.len().saturating_sub(lines)..];
    Ok(ok(json!({
        "backend": name,
        "cluster": cluster.key(),
        "peer": peer.name,
        "daemon": parsed.daemon,
        "count": kept.len(),
        "lines": kept,
    })))
}

/// The OpenAPI 3.1 description of these routes, embedded in the binary.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn history(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    d.authorize_read(&headers).await?;
    let samples = d
        .history
        .lock()
        .ok()
        .and_then(|h| h.get(&name).map(|s| s.iter().cloned().collect::<Vec<_>>()))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no history for {name:?} (a cluster or cluster/peer)"
            ))
        })?;
    Ok(ok(json!({"name": name, "samples": samples})))
}

async fn events(
    State(d): State<Dashboard>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    d.authorize_read(&headers).await?;
    let rx = d.snapshot.clone();
    let stream = futures::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let snapshot = rx.borrow_and_update().clone();
        let data = json!({"overall": summary(&snapshot), "clusters": snapshot.clusters.iter().map(|c| json!({
            "cluster": c.key(), "phase": c.status.phase, "healthScore": c.status.health_score,
        })).collect::<Vec<_>>()});
        let event = Event::default().event("status").data(data.to_string());
        Some((Ok(event), (rx, false)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `POST /daemon/action` body. `force`, `auto_heal`, `force_restart`, `force_check` and
/// `include_metrics` are what the old toolkit's clients send: accepted and ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonAction {
    daemon_name: String,
    action: String,
    #[serde(default, rename = "force")]
    _force: Option<Value>,
    #[serde(default, rename = "auto_heal")]
    _auto_heal: Option<Value>,
    #[serde(default, rename = "force_restart")]
    _force_restart: Option<Value>,
    #[serde(default, rename = "force_check")]
    _force_check: Option<Value>,
    #[serde(default, rename = "include_metrics")]
    _include_metrics: Option<Value>,
}

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

async fn daemon_action(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<DaemonAction>,
) -> Result<Response, ApiError> {
    let action = parse_action(&body.action)?;
    let snapshot = d.current();
    match action {
        None => {
            d.authorize_read(&headers).await?;
            let (cluster, peer, parsed) = find_backend(&snapshot, &body.daemon_name)?;
            Ok(ok(backend_view(cluster, peer, parsed.daemon)))
        }
        Some(kind) => {
            let caller = d.authenticate(&headers).await?;
            let (cluster, peer, parsed) = find_backend(&snapshot, &body.daemon_name)?;
            d.permit(&caller, "patch", Some(cluster)).await?;
            let request = d
                .request(kind, cluster, Some(&peer.name), Some(parsed.daemon))
                .await?;
            Ok(accepted(&request))
        }
    }
}

/// `POST /cluster/action` body; `cluster` may be left out when there is only one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterAction {
    action: String,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default, rename = "force")]
    _force: Option<Value>,
    #[serde(default, rename = "force_restart")]
    _force_restart: Option<Value>,
}

fn pick_cluster<'a>(
    snapshot: &'a Snapshot,
    name: Option<&str>,
) -> Result<&'a ClusterEntry, ApiError> {
    match name {
        Some(key) => find_cluster(snapshot, key),
        None if snapshot.clusters.len() == 1 => Ok(&snapshot.clusters[0]),
        None => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cluster_required",
            format!(
                "there are {} clusters; name one in \"cluster\"",
                snapshot.clusters.len()
            ),
        )),
    }
}

async fn cluster_action(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<ClusterAction>,
) -> Result<Response, ApiError> {
    let snapshot = d.current();
    if body.action == "peers" {
        d.authorize_read(&headers).await?;
        let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
        return Ok(ok(
            json!({"cluster": cluster.key(), "peers": cluster.status.peers}),
        ));
    }
    match parse_action(&body.action)? {
        None => {
            d.authorize_read(&headers).await?;
            let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
            Ok(ok(
                json!({"cluster": cluster.key(), "phase": cluster.status.phase,
                "healthScore": cluster.status.health_score, "readyReplicas": cluster.status.ready_replicas}),
            ))
        }
        Some(kind) => {
            let caller = d.authenticate(&headers).await?;
            let cluster = pick_cluster(&snapshot, body.cluster.as_deref())?;
            d.permit(&caller, "patch", Some(cluster)).await?;
            let request = d.request(kind, cluster, None, None).await?;
            Ok(accepted(&request))
        }
    }
}

/// `POST /health/check` body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HealthCheck {
    #[serde(default)]
    backend_name: Option<String>,
    #[serde(default, rename = "force_check")]
    _force_check: Option<Value>,
    #[serde(default, rename = "include_metrics")]
    _include_metrics: Option<Value>,
}

async fn health_check(
    State(d): State<Dashboard>,
    headers: HeaderMap,
    Body(body): Body<HealthCheck>,
) -> Result<Response, ApiError> {
    let caller = d.authenticate(&headers).await?;
    let snapshot = d.current();
    let (cluster, peer) = match &body.backend_name {
        Some(name) => {
            let (cluster, peer, _) = find_backend(&snapshot, name)?;
            (cluster, Some(peer.name.as_str()))
        }
        None => (pick_cluster(&snapshot, None)?, None),
    };
    d.permit(&caller, "patch", Some(cluster)).await?;
    let mut rx = d.snapshot.clone();
    rx.borrow_and_update();
    let request = d.request(ActionKind::Probe, cluster, peer, None).await?;
    let key = cluster.key();
    if tokio::time::timeout(HEALTH_CHECK_WAIT, rx.changed())
        .await
        .is_err()
    {
        return Err(ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "probe_timeout",
            format!(
                "no probe round finished within {HEALTH_CHECK_WAIT:?}; request {} stays queued",
                request.id
            ),
        ));
    }
    let fresh = d.current();
    let cluster = find_cluster(&fresh, &key)?;
    Ok(ok(
        json!({"requested": request, "cluster": key, "phase": cluster.status.phase,
        "healthScore": cluster.status.health_score, "peers": cluster.status.peers}),
    ))
}
