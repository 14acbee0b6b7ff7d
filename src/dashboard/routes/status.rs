//! Status reads: the whole status, one backend, health history, readiness.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, backend_route, backend_status, now};
use crate::dashboard::auth::Reader;
use crate::dashboard::requests::{KEEP_FINISHED, KEEP_FINISHED_COUNT};
use crate::dashboard::views::{self, BackendStatus, Envelope};
use crate::dashboard::{Dashboard, RequestRecord};

/// `GET /api/dashboard/status`, serialized once per published snapshot.
pub async fn status(State(d): State<Dashboard>, _: Reader) -> Response {
    let body = d.status_body(&d.current(), |s| {
        // These views always serialize (every map key is a string).
        let view = views::status(s, &now());
        Bytes::from(serde_json::to_vec(&Envelope::new(view)).unwrap_or_default())
    });
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `GET /api/dashboard/backends/{backend}/status`: one daemon, or the daemons a toolkit short
/// name stands for.
pub async fn backend(
    State(d): State<Dashboard>,
    Path(rest): Path<String>,
    _: Reader,
) -> Result<Json<Envelope<BackendStatus>>, ApiError> {
    let name = backend_route("GET", &rest, "/status")?;
    Ok(Json(Envelope::new(backend_status(&d.current(), name)?)))
}

/// `GET /api/dashboard/history/{name}?since=&step=`: a cluster's or a peer's health samples.
pub async fn history(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    _: Reader,
) -> Result<Response, ApiError> {
    crate::dashboard::history::answer(&d.history, d.prometheus.as_deref(), &name, query.as_deref())
        .await
}

/// `GET /api/dashboard/requests/{id}`: what became of a request answered 202.
pub async fn request(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
    _: Reader,
) -> Result<Json<Envelope<RequestRecord>>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            format!("request id {id:?} is not a number"),
        )
    })?;
    d.requests
        .get(id)
        .map(|r| Json(Envelope::new(r)))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no request {id}: unknown, or finished more than {} minutes (or {} requests) ago",
                KEEP_FINISHED.as_secs() / 60,
                KEEP_FINISHED_COUNT
            ))
        })
}

/// `GET /readyz`: ready once the first reconciled status arrived.
pub async fn readyz(State(d): State<Dashboard>) -> Response {
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
