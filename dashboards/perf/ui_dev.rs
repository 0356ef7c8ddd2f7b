//! Development server: the UI and /render from this crate, the PromQL API proxied to a real
//! Prometheus. cargo run -p vigil-dashboards --features perf --example ui_dev -- 127.0.0.1:18090 http://127.0.0.1:19090
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use vigil_dashboards::render::Series;
use vigil_dashboards::{router, RangeQuery, UiOptions};

struct Http(String);

impl RangeQuery for Http {
    fn range<'a>(&'a self, expr: &'a str, s: i64, e: i64, step: i64) -> vigil_dashboards::render::RangeFuture<'a> {
        let (base, expr) = (self.0.clone(), expr.to_string());
        Box::pin(async move { tokio::task::spawn_blocking(move || Http(base).blocking(&expr, s, e, step)).await.unwrap() })
    }
}

impl Http {
    fn blocking(&self, expr: &str, s: i64, e: i64, step: i64) -> Result<Vec<Series>, String> {
        let url = format!("{}/api/v1/query_range", self.0);
        let body: serde_json::Value = reqwest::blocking::Client::new()
            .get(url)
            .query(&[("query", expr.to_string()), ("start", (s as f64 / 1000.0).to_string()), ("end", (e as f64 / 1000.0).to_string()), ("step", (step as f64 / 1000.0).to_string())])
            .send().map_err(|e| e.to_string())?.json().map_err(|e| e.to_string())?;
        if body["status"] != "success" { return Err(body["error"].as_str().unwrap_or("error").to_string()); }
        Ok(body["data"]["result"].as_array().unwrap().iter().map(|r| {
            let labels: BTreeMap<String, String> = serde_json::from_value(r["metric"].clone()).unwrap();
            let pts = r["values"].as_array().unwrap().iter().map(|p| ((p[0].as_f64().unwrap() * 1000.0) as i64, p[1].as_str().unwrap().parse().unwrap())).collect();
            (labels, pts)
        }).collect())
    }
}

async fn proxy(State(base): State<Arc<String>>, req: Request) -> Response {
    let url = format!("{}{}", base, req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""));
    let method = req.method().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
    let r = reqwest::Client::new().request(method, url).body(body).send().await.unwrap();
    let status = r.status();
    (status, r.bytes().await.unwrap()).into_response()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let prom = args[2].clone();
    let app: axum::Router = router(Arc::new(Http(prom.clone())), UiOptions { resolution: Duration::from_secs(5), retention: Duration::from_secs(900) })
        .fallback_service(axum::Router::new().fallback(proxy).with_state(Arc::new(prom)));
    let l = tokio::net::TcpListener::bind(&args[1]).await.unwrap();
    axum::serve(l, app).await.unwrap();
}
