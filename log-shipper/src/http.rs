//! The HTTP server of the log shipper: `/metrics` (OpenMetrics text) and `/healthz`.

use crate::metrics::Metrics;
use axum::{http::header, response::IntoResponse, routing::get, Router};
use std::sync::Arc;

/// What the handlers need.
#[derive(Clone)]
pub struct State {
    pub metrics: Arc<Metrics>,
}

/// The router (tests call it without a socket).
pub fn app(state: State) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

async fn metrics(axum::extract::State(s): axum::extract::State<State>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
}
