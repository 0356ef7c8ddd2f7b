//! The aggregator's HTTP API: one router (`app`), one error type that becomes a response in one
//! place, and the shared state the handlers read.

pub mod heapster;
pub mod metrics_k8s;
pub mod prometheus;
pub mod stream;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::batch::Batch;
use crate::metrics::SelfMetrics;
use crate::scrape::Scraper;
use crate::store::Store;

/// Writes extra exposition text (the sinks' self-metrics, or a batch's series for /federate).
pub type MetricsWriter = Arc<dyn Fn(&mut String) + Send + Sync>;
/// Renders a batch as Prometheus exposition (provided by the sinks).
pub type BatchRenderer = fn(&Batch, &mut String);

/// What the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub latest: RwLock<Option<Arc<Batch>>>,
    pub scraper: Arc<Scraper>,
    pub metrics: Arc<SelfMetrics>,
    pub resolution: Duration,
    pub disable_export: bool,
    pub extra_metrics: Option<MetricsWriter>,
    pub federate: Option<BatchRenderer>,
    /// PromQL over the store: the `/api/v1/query*` routes, alerting and the UI run through it.
    pub query: Arc<crate::query::QueryService>,
}

impl AppState {
    pub fn latest(&self) -> Option<Arc<Batch>> {
        self.latest.read().unwrap().clone()
    }
}

/// Every API error; `kube` ones answer a Kubernetes `Status` object.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{message}")]
    Kube {
        code: u16,
        reason: &'static str,
        message: String,
    },
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body, json) = match &self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, format!("{m}\n"), false),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, format!("{m}\n"), false),
            ApiError::Unavailable(m) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{m}\n"), false),
            ApiError::Kube { code, reason, message } => (
                StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}).to_string(),
                true,
            ),
        };
        let ctype = if json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
    }
}

/// The whole router; tests call it without a socket. Each API adds its routes with one
/// `.merge(<module>::routes())` line.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(heapster::healthz))
        .route("/metrics", get(self_metrics))
        .route("/federate", get(stream::federate))
        .merge(heapster::routes())
        .merge(metrics_k8s::routes())
        .merge(prometheus::routes())
        .merge(crate::render::routes(&state))
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!("no route {}", uri.path()))
        })
        .with_state(state)
}

async fn self_metrics(axum::extract::State(st): axum::extract::State<Arc<AppState>>) -> Response {
    let mut out = String::new();
    st.metrics.render(&mut out, &st.store, &st.scraper);
    if let Some(extra) = &st.extra_metrics {
        extra(&mut out);
    }
    vigil_server::write_metrics(&mut out, false);
    (
        [(
            header::CONTENT_TYPE,
            vigil_common::exposition::TEXT_CONTENT_TYPE,
        )],
        out,
    )
        .into_response()
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{MetricSet, MetricValue};
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn state() -> Arc<AppState> {
        let store = Arc::new(Store::new(900_000, 100_000));
        let now = chrono::Utc::now();
        let mut sets = std::collections::BTreeMap::new();
        for (key, kind) in [
            ("node:n1", "node"),
            ("namespace:ns", "ns"),
            ("namespace:ns/pod:p", "pod"),
            ("namespace:ns/pod:p/container:c", "pod_container"),
            ("cluster", "cluster"),
        ] {
            let mut s = MetricSet::default();
            std::sync::Arc::make_mut(&mut s.labels).insert("type".into(), kind.into());
            std::sync::Arc::make_mut(&mut s.labels).insert("nodename".into(), "n1".into());
            s.values
                .insert("cpu/usage_rate".into(), MetricValue::Int(250));
            s.values
                .insert("memory/working_set".into(), MetricValue::Int(4096));
            if kind == "node" {
                for (rid, v) in [("/", 100), ("logs", 7)] {
                    s.labeled.push(crate::batch::LabeledMetric {
                        name: "filesystem/usage".into(),
                        labels: crate::batch::resource_labels(rid),
                        value: MetricValue::Int(v),
                    });
                }
                s.values.insert("custom/delta".into(), MetricValue::Int(-5));
                s.values
                    .insert("custom/skew".into(), MetricValue::Float(-2.5));
            }
            sets.insert(key.to_string(), s);
        }
        let batch = Batch {
            timestamp: now,
            sets,
        };
        store.ingest(&batch).unwrap();
        Arc::new(AppState {
            query: Arc::new(crate::query::QueryService::new(
                store.clone(),
                crate::query::QueryLimits::default(),
            )),
            store,
            latest: RwLock::new(Some(Arc::new(batch))),
            scraper: Arc::new(Scraper::new(Duration::from_secs(1), 1)),
            metrics: Arc::new(SelfMetrics::default()),
            resolution: Duration::from_secs(15),
            disable_export: false,
            extra_metrics: None,
            federate: None,
        })
    }

    async fn call(app: &Router, path: &str) -> (StatusCode, String) {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).to_string())
    }

    #[tokio::test]
    async fn routes_answer_without_a_socket_and_never_500_on_odd_input() {
        let app = app(state());
        assert_eq!(call(&app, "/healthz").await, (StatusCode::OK, "ok".into()));
        let (s, body) = call(&app, "/api/v1/model/nodes/n1/metrics/").await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            body.contains(r#""cpu/usage_rate","#) && body.contains(r#""memory/working_set""#),
            "{body}"
        );
        assert_eq!(call(&app, "/api/v1/model/metrics/").await.0, StatusCode::OK);
        let (s, body) = call(
            &app,
            "/api/v1/model/namespaces/ns/pods/p/containers/c/metrics/cpu/usage_rate",
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body.contains(r#""value":250"#), "{body}");
        let (s, body) = call(&app, "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/p").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(
            body.contains(r#""cpu":"250000000n""#) && body.contains(r#""memory":"4Ki""#),
            "{body}"
        );
        for odd in [
            "/api/v1/model/namespaces/%00/pods/%ff/metrics/x",
            "/api/v1/model/nodes/n1/metrics/cpu/usage_rate?start=2024-13-01T00:00:00Z",
            "/api/v1/model/nodes/n1/metrics/cpu/usage_rate?labels=,,,",
            "/api/v1/model/nodes/n1/metrics/cpu/usage_rate?end=1",
            "/api/v1/model/namespaces/ns/pod-list/,/metrics/cpu/usage_rate",
            "/api/v1/model/namespaces/ns/pod-list/p,zz/metrics/cpu/usage_rate",
            "/api/v1/model/nodes/n1/freecontainers/none/metrics/",
            "/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=a%3Db",
            "/apis/metrics.k8s.io/v1beta1/namespaces/x/pods/y",
            "/federate",
            "/api/v1/model/metrics/../../etc/passwd",
        ] {
            let (s, body) = call(&app, odd).await;
            assert!(s.is_client_error(), "{odd}: {s} {body}");
            assert!(!body.is_empty(), "{odd}: empty error body");
        }
    }

    /// Review #20: metrics.k8s.io `window` is the real interval between the two samples behind
    /// the rate (as metrics-server reports it), not the resolution; the resolution only until a
    /// rate exists. Samples 10 s apart for the node and 12.5 s apart for the container while the
    /// resolution is 15 s.
    #[tokio::test]
    async fn metrics_k8s_window_is_the_real_sample_interval() {
        let st = state();
        let app = app(st.clone());
        let body = call(&app, "/apis/metrics.k8s.io/v1beta1/nodes/n1").await.1;
        assert!(body.contains(r#""window":"15s""#), "{body}");
        // After the state's batch, so nothing of it is expired by these.
        let t0 = chrono::Utc::now() + chrono::Duration::seconds(1);
        let mut rates = crate::processors::rates::Rates::default();
        for (i, (node_dt, container_dt)) in [(0, 0), (10_000, 12_500)].into_iter().enumerate() {
            let at = t0 + chrono::Duration::seconds(15 * i as i64);
            let mut sets = std::collections::BTreeMap::new();
            for (key, kind, dt) in [
                ("node:n1", "node", node_dt),
                ("namespace:ns/pod:p", "pod", container_dt),
                (
                    "namespace:ns/pod:p/container:c",
                    "pod_container",
                    container_dt,
                ),
            ] {
                let mut s = MetricSet {
                    create_time: Some(t0 - chrono::Duration::hours(1)),
                    scrape_time: Some(t0 + chrono::Duration::milliseconds(dt)),
                    ..MetricSet::default()
                };
                std::sync::Arc::make_mut(&mut s.labels).insert("type".into(), kind.into());
                s.values.insert(
                    "cpu/usage",
                    MetricValue::Int(1_000_000_000 * (i as i64 + 1)),
                );
                s.values
                    .insert("memory/working_set", MetricValue::Int(4096));
                sets.insert(key.to_string(), s);
            }
            let mut batch = Batch {
                timestamp: at,
                sets,
            };
            rates.process(&mut batch, 900_000);
            st.store.ingest(&batch).unwrap();
        }
        let body = call(&app, "/apis/metrics.k8s.io/v1beta1/nodes/n1").await.1;
        assert!(body.contains(r#""window":"10s""#), "{body}");
        let body = call(&app, "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/p")
            .await
            .1;
        assert!(body.contains(r#""window":"12.5s""#), "{body}");
    }

    #[tokio::test]
    async fn healthz_fails_without_a_fresh_batch() {
        let st = state();
        *st.latest.write().unwrap() = None;
        let app = app(st.clone());
        assert_eq!(
            call(&app, "/healthz").await.0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        *st.latest.write().unwrap() = Some(Arc::new(Batch {
            timestamp: chrono::Utc::now() - chrono::Duration::minutes(4),
            sets: Default::default(),
        }));
        let (s, body) = call(&app, "/healthz").await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("old"), "{body}");
    }

    /// #6: without `labels=`, only the unlabeled series is served; a labeled-only metric answers
    /// Heapster's empty result instead of interleaving every resource_id's points.
    #[tokio::test]
    async fn labeled_series_need_labels_and_are_never_interleaved() {
        let app = app(state());
        let (s, body) = call(&app, "/api/v1/model/nodes/n1/metrics/filesystem/usage").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["metrics"].as_array().unwrap().len(), 0, "{body}");
        assert_eq!(v["latestTimestamp"], "0001-01-01T00:00:00Z", "{body}");
        for (rid, want) in [("/", 100), ("logs", 7)] {
            let (s, body) = call(
                &app,
                &format!(
                    "/api/v1/model/nodes/n1/metrics/filesystem/usage?labels=resource_id:{rid}"
                ),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let pts = v["metrics"].as_array().unwrap();
            assert_eq!(pts.len(), 1, "{rid}: {body}");
            assert_eq!(pts[0]["value"], want, "{rid}: {body}");
        }
    }

    /// #19: negative values clamp at 0 in MetricPoint.value (a uint64 in Heapster).
    #[tokio::test]
    async fn negative_values_clamp_at_zero() {
        let app = app(state());
        let (s, body) = call(&app, "/api/v1/model/nodes/n1/metrics/custom/delta").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body.contains(r#""value":0"#), "{body}");
        let (s, body) = call(&app, "/api/v1/model/nodes/n1/metrics/custom/skew").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(
            body.contains(r#""value":0"#) && !body.contains("18446744"),
            "{body}"
        );
    }
}
