//! The HTTP server of the log shipper: `/metrics` (OpenMetrics text) and `/healthz`.

use crate::metrics::Metrics;
use axum::{http::header, response::IntoResponse, routing::get, Router};
use std::sync::Arc;

/// What the handlers need.
#[derive(Clone)]
pub struct State {
    pub metrics: Arc<Metrics>,
    /// Sinks that cannot write (shown by `/healthz`).
    pub health: crate::sinks::Health,
}

/// The router (tests call it without a socket).
pub fn app(state: State) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

/// The shipper's metrics, then the HTTP listener's (connections, timeouts), before `# EOF`.
async fn metrics(axum::extract::State(s): axum::extract::State<State>) -> impl IntoResponse {
    let mut text = s.metrics.render();
    let end = text.rfind("# EOF\n").unwrap_or(text.len());
    let mut server = String::new();
    vigil_server::write_metrics(&mut server, true);
    text.insert_str(end, &server);
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}

/// 200 `ok` while every sink writes; 503 with one line per failing sink (its error and for how long) otherwise.
async fn healthz(axum::extract::State(s): axum::extract::State<State>) -> axum::response::Response {
    match s.health.report() {
        None => "ok\n".into_response(),
        Some(problems) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, problems).into_response(),
    }
}
