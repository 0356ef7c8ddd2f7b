//! The web UI's files, compiled into the binary, and its settings (`ui/config.json`).

use std::time::Duration;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// What the pages need to know about the server that serves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiOptions {
    /// The metric resolution: pages refresh this often and call a node stale after 3×.
    pub resolution: Duration,
    /// How far back the server keeps samples (a note under charts whose range is longer).
    pub retention: Duration,
}

/// Every file of the UI: path under `ui/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../assets/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../assets/api.js")),
    ("plot.js", "text/javascript; charset=utf-8", include_bytes!("../assets/plot.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../assets/style.css")),
    ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/vendor/uPlot.iife.min.js")),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../assets/vendor/uPlot.min.css")),
    ("vendor/uPlot-LICENSE.txt", "text/plain; charset=utf-8", include_bytes!("../assets/vendor/uPlot-LICENSE.txt")),
];

const INDEX: &str = include_str!("../assets/index.html");

/// `GET /`: the one HTML page; the pages themselves are hash routes (`#/node/<name>`).
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

/// `GET /ui/<file>`.
pub async fn asset(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, ctype, bytes)) => {
            ([(header::CONTENT_TYPE, *ctype), (header::CACHE_CONTROL, "no-cache")], *bytes).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no UI file {path:?}\n")).into_response(),
    }
}

/// `GET /ui/config.json`.
pub async fn config(opts: UiOptions) -> Response {
    let body = serde_json::json!({
        "resolution_ms": opts.resolution.as_millis() as u64,
        "retention_ms": opts.retention.as_millis() as u64,
    });
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], body.to_string()).into_response()
}
