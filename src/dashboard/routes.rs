//! The HTTP routes, one file per concern: status reads (`status`), host and peer figures and the
//! Prometheus text (`metrics`), daemon logs (`logs`), the event stream (`events`), requests for
//! changes (`actions`) and a cluster's spec and IpfsPins (`clusters`). GETs read the published
//! snapshot (or, for a spec, the store it lives in) and never act; changes are made by a
//! [`Writer`](super::auth::Writer) and become [`ActionRequest`](super::ActionRequest)s for the
//! reconciler, or (a spec's safe fields) a change of the spec its one writer applies.

mod actions;
mod clusters;
mod events;
mod logs;
mod metrics;
mod status;

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;

pub use actions::HEALTH_CHECK_WAIT;
pub use logs::DEFAULT_LOG_LINES;

use super::backend::BackendName;
use super::error::ApiError;
use super::views::{self, BackendStatus, toolkit};
use super::{BODY_LIMIT, ClusterEntry, Daemon, Dashboard, Snapshot};
use crate::api::PeerStatus;

/// The dashboard's router, ready for `axum::serve`.
pub fn router(dashboard: Dashboard) -> Router {
    let http = dashboard.metrics.dashboard.clone();
    let api = Router::new()
        .route("/status", get(status::status))
        .route("/metrics/realtime", get(metrics::realtime))
        .route(
            "/backends/{*rest}",
            get(status::backend).post(actions::restart_backend),
        )
        .route("/history/{*name}", get(status::history))
        .route(
            "/clusters/{*rest}",
            get(clusters::read).patch(clusters::patch),
        )
        .route("/logs/{*backend}", get(logs::logs))
        .route("/events", get(events::events))
        .route("/daemon/action", post(actions::daemon_action))
        .route("/cluster/action", post(actions::cluster_action))
        .route("/health/check", post(actions::health_check))
        .route("/requests/{id}", get(status::request))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method);
    Router::new()
        .nest("/api/dashboard", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::prometheus))
        .route("/readyz", get(status::readyz))
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
        // Outermost: every answer is counted, refusals and timeouts included.
        .layer(axum::middleware::from_fn_with_state(
            http,
            crate::metrics::http::track,
        ))
        .with_state(dashboard)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {method} {}; see /openapi.json",
        uri.path()
    ))
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not take {method}; see /openapi.json", uri.path()),
    )
}

async fn openapi() -> Response {
    let doc = super::openapi::OPENAPI;
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// The backend name of `/backends/{rest}`, which must end in `suffix` (`/status`, `/restart`).
fn backend_route<'a>(method: &str, rest: &'a str, suffix: &str) -> Result<&'a str, ApiError> {
    rest.strip_suffix(suffix)
        .ok_or_else(|| ApiError::not_found(format!("no route {method} /backends/{rest}")))
}

fn find_cluster<'a>(snapshot: &'a Snapshot, key: &str) -> Result<&'a ClusterEntry, ApiError> {
    snapshot
        .clusters
        .iter()
        .find(|c| c.key() == key)
        .ok_or_else(|| ApiError::not_found(format!("no cluster {key:?}")))
}

/// A cluster by name, or the only one when no name is given.
fn pick_cluster<'a>(
    snapshot: &'a Snapshot,
    name: Option<&str>,
) -> Result<&'a ClusterEntry, ApiError> {
    match (name, snapshot.clusters.as_slice()) {
        (Some(key), _) => find_cluster(snapshot, key),
        (None, [only]) => Ok(only),
        (None, all) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "cluster_required",
            format!("there are {} clusters; name one in \"cluster\"", all.len()),
        )),
    }
}

/// A backend name resolved against the snapshot: its cluster, its peer, and the parsed name.
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

/// What a backend name names: one daemon, or several (a toolkit short name, `ipfs` or
/// `ipfs_cluster`, when there is more than one peer).
enum Named<'a> {
    One(&'a ClusterEntry, &'a PeerStatus, Daemon),
    Group(Daemon, Vec<(&'a ClusterEntry, &'a PeerStatus)>),
}

/// A full backend name, or a toolkit short name: with one cluster of one peer, that peer's
/// daemon; else all of them.
fn resolve<'a>(snapshot: &'a Snapshot, name: &str) -> Result<Named<'a>, ApiError> {
    let Some(daemon) = toolkit::short_name(name) else {
        let (cluster, peer, parsed) = find_backend(snapshot, name)?;
        return Ok(Named::One(cluster, peer, parsed.daemon));
    };
    let members: Vec<(&ClusterEntry, &PeerStatus)> = snapshot
        .clusters
        .iter()
        .flat_map(|c| c.status.peers.iter().map(move |p| (c, p)))
        .collect();
    match members.as_slice() {
        [] => Err(ApiError::not_found(format!(
            "{name:?} names the {} daemons, and no peer is known yet",
            daemon.as_str()
        ))),
        [(cluster, peer)] => Ok(Named::One(cluster, peer, daemon)),
        _ => Ok(Named::Group(daemon, members)),
    }
}

/// 409: `name` stands for several daemons, and a change (or a log) is of one.
fn ambiguous(name: &str, daemon: Daemon, members: &[(&ClusterEntry, &PeerStatus)]) -> ApiError {
    let names: Vec<String> = members
        .iter()
        .map(|(c, p)| toolkit::full_name(c, p, daemon))
        .collect();
    ApiError::new(
        StatusCode::CONFLICT,
        "ambiguous_backend",
        format!(
            "{name:?} names {} daemons; name one of them: {}",
            names.len(),
            names.join(", ")
        ),
    )
}

/// The status of what `name` names: one daemon's, or the group's.
fn backend_status(snapshot: &Snapshot, name: &str) -> Result<BackendStatus, ApiError> {
    Ok(match resolve(snapshot, name)? {
        Named::One(cluster, peer, daemon) => {
            BackendStatus::One(Box::new(views::backend(cluster, peer, daemon)))
        }
        Named::Group(daemon, members) => {
            BackendStatus::Group(views::backend_group(name, daemon, &members))
        }
    })
}

/// The one daemon `name` names, for a change or a log: 409 for a short name of several.
fn one_backend<'a>(
    snapshot: &'a Snapshot,
    name: &str,
) -> Result<(&'a ClusterEntry, &'a PeerStatus, Daemon), ApiError> {
    match resolve(snapshot, name)? {
        Named::One(cluster, peer, daemon) => Ok((cluster, peer, daemon)),
        Named::Group(daemon, members) => Err(ambiguous(name, daemon, &members)),
    }
}

/// The time of an answer, RFC 3339 to the millisecond.
fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_millisecond(now.as_millisecond())
        .unwrap_or(now)
        .to_string()
}
