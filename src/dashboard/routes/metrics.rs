//! Figures: the host's and each peer's latest (`/api/dashboard/metrics/realtime`) and the
//! Prometheus text (`/metrics`).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::dashboard::Dashboard;
use crate::dashboard::auth::Reader;
use crate::dashboard::views::{self, Envelope, RealtimeView};

/// `GET /api/dashboard/metrics/realtime`.
pub async fn realtime(State(d): State<Dashboard>, _: Reader) -> Json<Envelope<RealtimeView>> {
    let rates = d
        .bandwidth
        .lock()
        .map(|b| b.rates.clone())
        .unwrap_or_default();
    let host = d.host.read().ok().and_then(|h| h.clone());
    let now = super::now();
    Json(Envelope::new(views::realtime(
        &d.current(),
        host,
        &rates,
        &now,
    )))
}

/// `GET /metrics`: OpenMetrics text when the scraper asks for it, else the Prometheus text
/// format. A sidecar's has only its own HTTP metrics; `local up`'s has the supervisor's too.
pub async fn prometheus(State(d): State<Dashboard>, _: Reader, headers: HeaderMap) -> Response {
    crate::metrics::respond(&d.metrics, &headers)
}
