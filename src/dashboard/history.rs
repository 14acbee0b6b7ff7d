//! Where `/api/dashboard/history/{name}` reads from ([`HistorySource`]): the samples this process
//! records (the local supervisor), or, for the Kubernetes sidecar, the leader controller's, read
//! over HTTP from its metrics and health server ([`internal_router`], `GET
//! /internal/history/{name}?since=&step=`, the same answer as the dashboard's).
//!
//! The sidecar finds the leader through the leader-election Lease: when the holder is its own
//! pod's controller it reads `--controller-url` (loopback); otherwise it reads the address the
//! leader advertised on the Lease ([`LEADER_ANNOTATION`]: `{"instance": ..., "url": ...}`,
//! written when it took the Lease), and only if that names the current holder.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::views::{Envelope, HistoryView};
use crate::history::prometheus::PrometheusRange;
use crate::history::{History, Query, RETENTION, UnixMillis, now_millis};

/// The annotation on the leader-election Lease where the leader advertises its history address.
pub const LEADER_ANNOTATION: &str = "ipfskit.io/leader-endpoint";

/// The value of [`LEADER_ANNOTATION`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEndpoint {
    /// The Lease holder identity of the controller that wrote it (its pod name).
    pub instance: String,
    /// Base URL of its metrics and health server, e.g. `http://10.0.0.5:9090`.
    pub url: String,
}

/// How long the sidecar waits for the leader's answer.
const LEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the history comes from.
#[derive(Clone)]
pub enum HistorySource {
    /// Samples recorded in this process.
    Recorded(History),
    /// The leader controller's, over HTTP.
    Leader(Arc<LeaderHistory>),
}

impl Default for HistorySource {
    fn default() -> Self {
        HistorySource::Recorded(History::in_memory())
    }
}

/// The leader-election Lease the sidecar follows.
#[derive(Clone, Debug)]
pub struct LeaseRef {
    pub namespace: String,
    pub name: String,
    /// This pod's name: the holder identity of its own controller.
    pub instance: String,
}

/// The sidecar's reader of the leader controller's history.
pub struct LeaderHistory {
    client: kube::Client,
    /// `None` without leader election: the own controller is the only one.
    lease: Option<LeaseRef>,
    /// Base URL of the own controller's metrics and health server.
    own: String,
    http: reqwest::Client,
}

impl LeaderHistory {
    pub fn new(
        client: kube::Client,
        lease: Option<LeaseRef>,
        own: impl Into<String>,
    ) -> Result<LeaderHistory, crate::probe::ProberError> {
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(LEADER_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(crate::probe::ProberError::from)?;
        Ok(LeaderHistory {
            client,
            lease,
            own: own.into().trim_end_matches('/').to_owned(),
            http,
        })
    }

    /// Base URL of the leader's metrics and health server.
    async fn leader_url(&self) -> Result<String, ApiError> {
        let Some(lease) = &self.lease else {
            return Ok(self.own.clone());
        };
        let unavailable =
            |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", m);
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &lease.namespace);
        let found = api.get_opt(&lease.name).await.map_err(|e| {
            unavailable(format!(
                "reading the leader Lease {}/{}: {e}",
                lease.namespace, lease.name
            ))
        })?;
        // No Lease at all: no leader election, the own controller is the only one.
        let Some(found) = found else {
            return Ok(self.own.clone());
        };
        let holder = found
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .ok_or_else(|| {
                unavailable(format!(
                    "no controller holds the Lease {}/{}: the history is kept by the leader",
                    lease.namespace, lease.name
                ))
            })?;
        if holder == lease.instance {
            return Ok(self.own.clone());
        }
        found
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LEADER_ANNOTATION))
            .and_then(|v| serde_json::from_str::<LeaderEndpoint>(v).ok())
            .filter(|e| e.instance == holder)
            .map(|e| e.url.trim_end_matches('/').to_owned())
            .ok_or_else(|| {
                unavailable(format!(
                    "the leader {holder} has not advertised its address on the Lease {}/{} \
                     ({LEADER_ANNOTATION}) yet",
                    lease.namespace, lease.name
                ))
            })
    }

    /// The leader's answer to `/internal/history/{name}?{query}`, passed on as it is.
    async fn fetch(&self, name: &str, query: Option<&str>) -> Result<Response, ApiError> {
        let base = self.leader_url().await?;
        let mut url = format!("{base}/internal/history/{}", encode_path(name));
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push('?');
            url.push_str(q);
        }
        let bad_gateway = |e: reqwest::Error| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "leader_unreachable",
                format!("reading the history from the leader controller at {base}: {e}"),
            )
        };
        let resp = self.http.get(&url).send().await.map_err(bad_gateway)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(bad_gateway)?;
        let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        Ok((
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(body),
        )
            .into_response())
    }
}

/// `name` for a URL path: slashes kept, everything but unreserved characters percent-encoded.
fn encode_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query, or a 400 naming the parameter at fault.
pub fn parse_query(raw: Option<&str>) -> Result<Query, ApiError> {
    Query::parse(raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("query parameter {e}"),
        )
    })
}

/// The answer from samples recorded in this process.
pub fn recorded(history: &History, name: &str, query: &Query) -> Result<HistoryView, ApiError> {
    let answer = history.query(name, query, now_millis()).ok_or_else(|| {
        ApiError::not_found(format!(
            "no history for {name:?} (a cluster or cluster/peer)"
        ))
    })?;
    let rfc3339 = |t| {
        k8s_openapi::jiff::Timestamp::from_millisecond(t)
            .map(|t| t.to_string())
            .ok()
    };
    Ok(HistoryView {
        name: name.to_owned(),
        samples: answer.samples,
        interval_seconds: answer.interval.map(|d| d.as_secs_f64()),
        step_seconds: answer.step.map(|d| d.as_secs_f64()),
        since: answer.since.and_then(rfc3339),
        retention_seconds: RETENTION.as_secs(),
        source: "recorded".to_owned(),
        warning: None,
    })
}

/// RFC 3339 of ms since the epoch.
fn rfc3339(t: UnixMillis) -> Option<String> {
    k8s_openapi::jiff::Timestamp::from_millisecond(t)
        .map(|t| t.to_string())
        .ok()
}

/// A `since` further back than this before the first recorded sample is read from Prometheus.
const PROMETHEUS_SLACK_MS: UnixMillis = 60_000;

/// Whether a range from `start` needs Prometheus: the recorded answer (`body`, the JSON of the
/// dashboard's envelope, `None` when there is no recorded series) begins over a minute later.
fn needs_prometheus(start: UnixMillis, body: Option<&serde_json::Value>) -> bool {
    let first = body
        .and_then(|b| b["data"]["samples"][0]["time"].as_str())
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(|t| t.as_millisecond());
    first.is_none_or(|first| start < first - PROMETHEUS_SLACK_MS)
}

/// The samples of `name` from `start` until now, read from Prometheus.
async fn from_prometheus(
    prometheus: &PrometheusRange,
    name: &str,
    query: &Query,
    start: UnixMillis,
) -> Result<HistoryView, crate::history::prometheus::PrometheusError> {
    let now = now_millis();
    let step = PrometheusRange::step(start, now, query.step);
    let samples = prometheus.samples(name, start, now, step).await?;
    Ok(HistoryView {
        name: name.to_owned(),
        samples,
        interval_seconds: None,
        step_seconds: Some(step.as_secs_f64()),
        since: rfc3339(start),
        retention_seconds: RETENTION.as_secs(),
        source: "prometheus".to_owned(),
        warning: None,
    })
}

/// The answer of `/history/{name}` from `source`; a `since` older than the recorded samples
/// is read from `prometheus` when there is one (and the recorded answer is given, with a
/// warning, when Prometheus does not answer).
pub async fn answer(
    source: &HistorySource,
    prometheus: Option<&PrometheusRange>,
    name: &str,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let query = parse_query(raw)?;
    let kept = match source {
        HistorySource::Recorded(history) => {
            recorded(history, name, &query).map(|view| Json(Envelope::new(view)).into_response())
        }
        HistorySource::Leader(leader) => leader.fetch(name, raw).await,
    };
    let (Some(prometheus), Some(start)) = (prometheus, query.start(now_millis())) else {
        return kept;
    };
    // The recorded answer, as JSON, to see where it begins (and to keep as the fallback).
    let (status, body) = match kept {
        Ok(response) => {
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
                .await
                .unwrap_or_default();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).ok(),
            )
        }
        Err(err) if err.status == StatusCode::NOT_FOUND => (StatusCode::NOT_FOUND, None),
        Err(err) => return Err(err),
    };
    let recorded_body = body.filter(|_| status == StatusCode::OK);
    if !needs_prometheus(start, recorded_body.as_ref()) {
        return Ok((status, Json(recorded_body.unwrap_or_default())).into_response());
    }
    match from_prometheus(prometheus, name, &query, start).await {
        Ok(view) if !view.samples.is_empty() || recorded_body.is_none() => {
            Ok(Json(Envelope::new(view)).into_response())
        }
        Ok(_) => Ok(Json(recorded_body.unwrap_or_default()).into_response()),
        Err(err) => {
            tracing::warn!("history of {name}: {err}");
            let Some(mut body) = recorded_body else {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "prometheus_unreachable",
                    err.to_string(),
                ));
            };
            body["data"]["warning"] = serde_json::Value::String(format!(
                "{err}; the samples recorded by the operator instead"
            ));
            Ok(Json(body).into_response())
        }
    }
}

/// The controller's internal route, `GET /internal/history/{name}?since=&step=`, for the
/// dashboard sidecars; merge it into the metrics and health server.
pub fn internal_router(history: History) -> Router {
    Router::new()
        .route("/internal/history/{*name}", get(internal))
        .with_state(history)
}

async fn internal(
    State(history): State<History>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Envelope<HistoryView>>, ApiError> {
    let query = parse_query(raw.as_deref())?;
    Ok(Json(Envelope::new(recorded(&history, &name, &query)?)))
}
