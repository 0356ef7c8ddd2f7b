//! Dashboards: charts drawn on the server (`chart`, `/render`), the web UI, and the Grafana dashboards.

pub mod chart;
pub mod render;
pub mod ui;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use render::RangeQuery;
pub use ui::UiOptions;

/// The UI's routes (`/`, `/ui/*`) and `/render`, ready to merge into a server's router of any
/// state type.
pub fn router<S: Clone + Send + Sync + 'static>(query: Arc<dyn RangeQuery>, options: UiOptions) -> Router<S> {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/config.json", get(move || ui::config(options)))
        .route("/ui/{*path}", get(ui::asset))
        .route("/render", get(move |params| render::render(query.clone(), params)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use tower::ServiceExt;

    /// Answers `n_series(<n>)` with n lines of a ramp, and anything else with a parse error.
    struct Ramp;

    impl RangeQuery for Ramp {
        fn range<'a>(&'a self, expr: &'a str, start_ms: i64, end_ms: i64, step_ms: i64) -> render::RangeFuture<'a> {
            Box::pin(async move {
                let n: usize = expr
                    .strip_prefix("n_series(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| format!("1:1: parse error: unexpected {expr:?}"))?;
                Ok((0..n)
                    .map(|i| {
                        let labels = BTreeMap::from([("__name__".to_string(), "ramp".to_string()), ("i".to_string(), i.to_string())]);
                        let points = (0..).map(|k| start_ms + k * step_ms).take_while(|t| *t <= end_ms).map(|t| (t, (t - start_ms) as f64 * i as f64)).collect();
                        (labels, points)
                    })
                    .collect())
            })
        }
    }

    fn app() -> Router {
        router(Arc::new(Ramp), UiOptions { resolution: Duration::from_secs(15), retention: Duration::from_secs(900) })
    }

    async fn get(uri: &str) -> (StatusCode, String, Vec<u8>) {
        let resp = app().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, ctype, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    #[tokio::test]
    async fn serves_the_page_its_files_and_settings() {
        let (s, ctype, body) = get("/").await;
        assert_eq!((s, ctype.as_str()), (StatusCode::OK, "text/html; charset=utf-8"));
        let html = String::from_utf8(body).unwrap();
        // Every file the page refers to is served, from the binary.
        for file in ["ui/app.js", "ui/style.css", "ui/vendor/uPlot.iife.min.js", "ui/vendor/uPlot.min.css"] {
            assert!(html.contains(file), "{file}");
            let (s, _, body) = get(&format!("/{file}")).await;
            assert_eq!(s, StatusCode::OK, "{file}");
            assert!(!body.is_empty());
        }
        assert!(!html.contains("http://") && !html.contains("https://"), "no external URL");
        let (s, ctype, _) = get("/ui/api.js").await;
        assert_eq!((s, ctype.as_str()), (StatusCode::OK, "text/javascript; charset=utf-8"));
        let (s, _, body) = get("/ui/nope.js").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert!(String::from_utf8(body).unwrap().contains("no UI file \"nope.js\""));
        let (_, _, body) = get("/ui/config.json").await;
        let cfg: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(cfg, serde_json::json!({"resolution_ms": 15000, "retention_ms": 900000}));
    }

    #[tokio::test]
    async fn render_draws_png_and_svg() {
        let (s, ctype, body) = get("/render?query=n_series(3)&start=1700000000&end=1700003600&width=300&height=200").await;
        assert_eq!((s, ctype.as_str()), (StatusCode::OK, "image/png"), "{}", String::from_utf8_lossy(&body));
        assert_eq!(&body[1..4], b"PNG");
        let (s, ctype, body) = get("/render?query=n_series(2)&format=svg&title=Ramps&unit=bytes").await;
        assert_eq!((s, ctype.as_str()), (StatusCode::OK, "image/svg+xml"));
        let svg = String::from_utf8(body).unwrap();
        assert!(svg.contains("Ramps"), "{svg}");
        // The legend keeps what tells the lines apart (`i`), not the shared `__name__`.
        assert!(svg.contains("{i=&quot;1&quot;}") || svg.contains("{i=\"1\"}"), "legend names the series: {svg}");
    }

    #[tokio::test]
    async fn render_refuses_bad_requests_with_4xx() {
        for (uri, status, want) in [
            ("/render", StatusCode::BAD_REQUEST, "invalid parameter \"query\": missing"),
            ("/render?query=n_series(1)&width=4001", StatusCode::BAD_REQUEST, "\"width\": 4001 is out of range"),
            ("/render?query=n_series(1)&bogus=1", StatusCode::BAD_REQUEST, "unknown field `bogus`"),
            ("/render?query=n_series(101)", StatusCode::BAD_REQUEST, "returned 101 series, at most 100"),
            ("/render?query=rate(", StatusCode::UNPROCESSABLE_ENTITY, "query failed: 1:1: parse error"),
        ] {
            let (s, _, body) = get(uri).await;
            let body = String::from_utf8(body).unwrap();
            assert_eq!(s, status, "{uri}: {body}");
            assert!(body.contains(want), "{uri}: {body}");
        }
    }
}
