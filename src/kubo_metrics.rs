//! `ipfs-kit-operator kubo-metrics`: the `kubo-metrics` container of a peer pod. Kubo serves its
//! Prometheus metrics (`/debug/metrics/prometheus`) only on its RPC port, which controls the node
//! and stays closed to everyone but the operator; this small server forwards that one path, as
//! `GET /metrics` on a port of its own, and answers 404 to everything else.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The one path that serves Kubo's metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Answers while this server runs (whatever Kubo does): the container's readiness probe.
pub const HEALTH_PATH: &str = "/healthz";
/// Where Kubo serves its metrics on the RPC port.
const KUBO_METRICS_PATH: &str = "/debug/metrics/prometheus";
/// A scrape waits this long for Kubo at most.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum KuboMetricsError {
    #[error("--kubo {url:?} is not an http:// URL of Kubo's RPC API, e.g. http://127.0.0.1:5001")]
    BadUpstream { url: String },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
}

/// The router: `GET /metrics` (Kubo's metrics), `GET /healthz`, 404 for anything else.
/// `kubo` is the base URL of Kubo's RPC API, e.g. `http://127.0.0.1:5001`.
pub fn router(kubo: &str) -> Result<Router, KuboMetricsError> {
    let base = kubo.trim_end_matches('/');
    if !base.starts_with("http://") || base.len() <= "http://".len() {
        return Err(KuboMetricsError::BadUpstream {
            url: kubo.to_owned(),
        });
    }
    crate::tls::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(UPSTREAM_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(KuboMetricsError::Client)?;
    let upstream = Upstream {
        client,
        url: format!("{base}{KUBO_METRICS_PATH}"),
    };
    Ok(Router::new()
        .route(METRICS_PATH, get(metrics))
        .route(HEALTH_PATH, get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: this port serves only GET /metrics (Kubo's Prometheus metrics)\n",
            )
        })
        .with_state(upstream))
}

/// Forwards one scrape: the scraper's `Accept` header in, Kubo's status, content type and body
/// out; 502 when Kubo does not answer.
async fn metrics(State(upstream): State<Upstream>, headers: HeaderMap) -> Response {
    let mut request = upstream.client.get(&upstream.url);
    if let Some(accept) = headers.get(header::ACCEPT) {
        request = request.header(header::ACCEPT, accept.clone());
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
            let mut response = Response::new(Body::from_stream(answer.bytes_stream()));
            *response.status_mut() = status;
            if let Some(content_type) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type);
            }
            response
        }
        Err(err) => {
            let reason = if err.is_timeout() {
                "timed out"
            } else {
                "no answer"
            };
            tracing::debug!("Kubo's metrics: {err}");
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                format!("Kubo's RPC API at {}: {reason}\n", upstream.url),
            )
                .into_response()
        }
    }
}

/// Serves the router on `listen` until SIGTERM or Ctrl-C.
pub async fn serve(listen: SocketAddr, kubo: &str) -> Result<(), KuboMetricsError> {
    let app = router(kubo)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| KuboMetricsError::Listen {
            addr: listen,
            source,
        })?;
    tracing::info!("serving Kubo's metrics of {kubo} on http://{listen}{METRICS_PATH}");
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::runtime::kube::shutdown_signal())
        .await
        .map_err(|source| KuboMetricsError::Listen {
            addr: listen,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_upstreams_are_accepted() {
        for bad in [
            "",
            "http://",
            "https://127.0.0.1:5001",
            "127.0.0.1:5001",
            "ftp://x",
        ] {
            let err = router(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains("--kubo"), "{bad:?}: {err}");
        }
        assert!(router("http://127.0.0.1:5001/").is_ok());
    }
}
