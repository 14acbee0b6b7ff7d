//! The dashboard's own metrics: requests by route template, method and status code, and their
//! latency by route, recorded by an axum middleware ([`track`]).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{HistogramFamily, latency_histogram};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template (e.g. `/api/dashboard/history/{*name}`), `unmatched` for none.
    pub route: String,
    pub method: String,
    /// The HTTP status code.
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// The route label of requests that matched no route (any path: unbounded, never a label).
pub const UNMATCHED: &str = "unmatched";

/// The dashboard's request counter and latency histogram.
#[derive(Clone)]
pub struct DashboardHttp {
    pub requests: Family<RequestLabels, Counter>,
    pub durations: HistogramFamily<RouteLabels>,
}

impl Default for DashboardHttp {
    fn default() -> Self {
        DashboardHttp {
            requests: Family::default(),
            durations: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl DashboardHttp {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "dashboard_requests",
            "Requests the dashboard answered, by route template, method and status code",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "dashboard_request_duration",
            "Time the dashboard took to answer a request (to the response head), by route",
            Unit::Seconds,
            self.durations.clone(),
        );
    }

    /// Counts one answered request.
    pub fn observe(&self, route: &str, method: &Method, code: u16, seconds: f64) {
        let known = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ];
        // Any other token a client sends would make a new series.
        let method = if known.contains(method) {
            method.as_str()
        } else {
            "other"
        };
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }
}

/// The route template a request matched; [`UNMATCHED`] for none (a fallback, or the catch-all
/// that axum puts under a nested router).
fn route_of(request: &Request) -> String {
    match request.extensions().get::<MatchedPath>() {
        Some(path) if !path.as_str().contains("__private__") => path.as_str().to_owned(),
        _ => UNMATCHED.to_owned(),
    }
}

/// The middleware: `axum::middleware::from_fn_with_state(http, track)`.
pub async fn track(State(http): State<DashboardHttp>, request: Request, next: Next) -> Response {
    let route = route_of(&request);
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    http.observe(&route, &method, response.status().as_u16(), seconds);
    response
}
