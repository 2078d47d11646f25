//! The API's Prometheus metrics (in the default registry, served with the
//! node's at `/metrics`): requests by route template and status, and
//! their latency.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};
use std::sync::OnceLock;
use std::time::Instant;

struct Metrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

/// Registering fixed, well-formed metrics fails only by a programming
/// error (a duplicate name), caught by the first test that serves a
/// request.
#[allow(clippy::expect_used)]
fn get() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| Metrics {
        requests: register_int_counter_vec!(
            "switchboard_http_requests_total",
            "HTTP API requests, by route and status",
            &["route", "status"]
        )
        .expect("metric"),
        latency: register_histogram_vec!(
            "switchboard_http_request_seconds",
            "HTTP API request latency, by route",
            &["route"],
            vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
        )
        .expect("metric"),
    })
}

/// Counts and times every request by its route template (`/api/v1/agents/{id}`,
/// not the id itself: the labels stay few).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = get();
    m.latency
        .with_label_values(&[&route])
        .observe(start.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[&route, resp.status().as_str()])
        .inc();
    resp
}
