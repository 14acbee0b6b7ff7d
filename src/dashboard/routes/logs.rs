//! `GET /api/dashboard/logs/{backend}?lines=N`: a daemon's own recent log lines, for backends
//! found in the reconciled status only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::{ApiError, one_backend};
use crate::dashboard::auth::Reader;
use crate::dashboard::logs::{LogError, LogTarget};
use crate::dashboard::views::{self, Envelope, LogsView};
use crate::dashboard::{Dashboard, MAX_LOG_LINES};

/// Lines answered when the query does not say.
pub const DEFAULT_LOG_LINES: usize = 100;

/// The query: `lines` (default [`DEFAULT_LOG_LINES`], at most [`MAX_LOG_LINES`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[serde(default)]
    lines: Option<usize>,
}

/// The number of lines asked for, or why the query is refused.
fn lines(query: Result<Query<LogsQuery>, QueryRejection>) -> Result<usize, ApiError> {
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
    Ok(lines)
}

pub async fn logs(
    State(d): State<Dashboard>,
    Path(name): Path<String>,
    _: Reader,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<Json<Envelope<LogsView>>, ApiError> {
    let lines = lines(query)?;
    let snapshot = d.current();
    let (cluster, peer, daemon) = one_backend(&snapshot, &name)?;
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
        daemon,
    };
    let text = source.tail(target, lines).await.map_err(log_error)?;
    let view = views::logs(name, cluster, peer, daemon, &text, lines);
    Ok(Json(Envelope::new(view)))
}

/// 404 when the daemon has no log yet, 502 when it could not be read.
fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "no_log", m),
        LogError::Unavailable(m) => ApiError::new(StatusCode::BAD_GATEWAY, "logs_unavailable", m),
    }
}
