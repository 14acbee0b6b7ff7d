//! A cluster's configuration and IpfsPins: `GET /clusters/{cluster}/spec` (the whole spec and
//! the fields the dashboard may change), `PATCH /clusters/{cluster}/spec` (a JSON merge patch of
//! those fields, with the token), `GET /clusters/{cluster}/pins` (the IpfsPins with their state
//! on each peer).

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::{ApiError, find_cluster};
use crate::dashboard::Dashboard;
use crate::dashboard::auth::{Reader, Writer};
use crate::dashboard::clusters::{self, SpecError, SpecStore, check_patch};
use crate::dashboard::error::Body;
use crate::dashboard::views::Envelope;

/// What `/clusters/{rest}` names: a cluster's spec or its pins.
pub enum ClusterPath {
    Spec(String),
    Pins(String),
}

impl<S: Send + Sync> FromRequestParts<S> for ClusterPath {
    type Rejection = Response;

    /// Answered before the caller is authenticated: another suffix is no route (404).
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ClusterPath, Response> {
        let Path(rest) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let method = parts.method.clone();
        if let Some(name) = rest.strip_suffix("/spec") {
            return Ok(ClusterPath::Spec(name.to_owned()));
        }
        match rest.strip_suffix("/pins") {
            Some(name) if method == axum::http::Method::GET => {
                Ok(ClusterPath::Pins(name.to_owned()))
            }
            _ => Err(ApiError::not_found(format!(
                "no route {method} /clusters/{rest}; see /openapi.json"
            ))
            .into_response()),
        }
    }
}

impl Dashboard {
    fn spec_store(&self) -> Result<&dyn SpecStore, ApiError> {
        self.specs.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "spec_unavailable",
                "this dashboard has no access to the clusters' specs",
            )
        })
    }
}

/// A store's error as an answer.
fn spec_error(e: SpecError) -> ApiError {
    match e {
        SpecError::NotFound(m) => ApiError::not_found(m),
        SpecError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_spec", m),
        SpecError::Changed(m) => ApiError::new(StatusCode::PRECONDITION_FAILED, "spec_changed", m),
        SpecError::Refused(m) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "spec_not_changed", m)
        }
        SpecError::Unavailable(m) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "spec_unavailable", m)
        }
    }
}

/// The answer with the generation as its `ETag` (for `If-Match`).
fn with_etag(view: clusters::SpecView) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", view.generation)).ok();
    let mut resp = Json(Envelope::new(view)).into_response();
    if let Some(etag) = etag {
        resp.headers_mut().insert(header::ETAG, etag);
    }
    resp
}

/// `GET /api/dashboard/clusters/{cluster}/spec` and `/pins`.
pub async fn read(
    State(d): State<Dashboard>,
    path: ClusterPath,
    _: Reader,
) -> Result<Response, ApiError> {
    let snapshot = d.current();
    match path {
        ClusterPath::Pins(name) => {
            let cluster = find_cluster(&snapshot, &name)?;
            let view = clusters::pins_view(cluster, &snapshot.pins);
            Ok(Json(Envelope::new(view)).into_response())
        }
        ClusterPath::Spec(name) => {
            let cluster = find_cluster(&snapshot, &name)?;
            let store = d.spec_store()?;
            let stored = store.read(cluster).await.map_err(spec_error)?;
            Ok(with_etag(clusters::spec_view(
                cluster,
                &stored,
                store.applied_by(),
            )))
        }
    }
}

/// The generation of `If-Match` (`"5"`, `5` or `W/"5"`), if sent.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match {text:?} is not a generation: send the `generation` (the ETag) of the spec \
             you read, e.g. If-Match: \"3\""
        ))
    })
}

/// `PATCH /api/dashboard/clusters/{cluster}/spec`: a JSON merge patch of the editable fields.
pub async fn patch(
    State(d): State<Dashboard>,
    path: ClusterPath,
    headers: HeaderMap,
    writer: Writer,
    Body(body): Body<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let ClusterPath::Spec(name) = path else {
        return Err(ApiError::not_found("only a cluster's spec can be patched"));
    };
    let expected = if_match(&headers)?;
    let snapshot = d.current();
    let cluster = find_cluster(&snapshot, &name)?;
    writer.permit(&d, cluster).await?;
    check_patch(&body).map_err(|r| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            r.code,
            format!("{}: {}", r.field, r.message),
        )
    })?;
    let store = d.spec_store()?;
    let patched = store
        .patch(cluster, body, expected)
        .await
        .map_err(spec_error)?;
    let mut view = clusters::spec_view(cluster, &patched.stored, store.applied_by());
    view.changed = Some(patched.changed);
    Ok(with_etag(view))
}
