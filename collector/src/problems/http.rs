//! HTTP endpoints of the problem detector: `/conditions`, `/problems/events` and
//! `/problems/sources` (each system log monitor's source health).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::store::{EventPage, Store};

/// Largest page of events one request returns.
pub const MAX_EVENTS_PER_PAGE: usize = 1000;

/// Query of `/problems/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Return events with a sequence number greater than this (default 0: all retained).
    #[serde(default)]
    pub since: u64,
    /// At most this many events (default and maximum 1000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Builds the router (tests call it without a socket).
pub fn app(store: Arc<Store>) -> Router {
    Router::new()
        .route("/conditions", get(conditions))
        .route("/problems/events", get(events))
        .route("/problems/sources", get(sources))
        .with_state(store)
}

async fn sources(State(store): State<Arc<Store>>) -> Response {
    Json(store.source_health()).into_response()
}

async fn conditions(State(store): State<Arc<Store>>) -> Response {
    Json(store.conditions()).into_response()
}

async fn events(
    State(store): State<Arc<Store>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"status": "error", "errorType": "bad_data", "error": e.body_text()})),
            )
                .into_response()
        }
    };
    let limit = q
        .limit
        .unwrap_or(MAX_EVENTS_PER_PAGE)
        .clamp(1, MAX_EVENTS_PER_PAGE);
    let (events, last, truncated) = store.events_since(q.since, limit);
    Json(EventPage {
        events,
        last,
        truncated,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::store::Severity;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_json(app: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn conditions_and_events_are_served() {
        let now = chrono::Utc::now();
        let store = Store::kernel_monitor_sample(now);
        store.push_event(
            "kernel-monitor",
            Severity::Warn,
            now,
            "TaskHung",
            "task x blocked",
        );
        let (s, v) = get_json(app(store.clone()), "/conditions").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["type"], "KernelDeadlock");
        assert_eq!(v[0]["status"], "False");
        assert_eq!(v[0]["reason"], "KernelHasNoDeadlock");
        let (_, v) = get_json(app(store.clone()), "/problems/events?since=1").await;
        assert_eq!(v["events"].as_array().unwrap().len(), 1);
        assert_eq!(v["events"][0]["reason"], "TaskHung");
        assert_eq!(v["events"][0]["severity"], "warn");
        assert_eq!(v["last"], 2);
        let (s, v) = get_json(app(store), "/problems/events?since=abc").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["status"], "error");
    }

    /// A failing log source shows its error until it recovers.
    #[tokio::test]
    async fn source_health_is_served() {
        let store = Arc::new(Store::default());
        let stats = store.watch_stats("kernel-monitor");
        let mut retry = crate::problems::watch::Retry::new(stats);
        let path = std::path::Path::new("/var/log/kern.log");
        retry.failed(
            path,
            "cannot read log file",
            &"Is a directory (os error 21)",
        );
        let (s, v) = get_json(app(store.clone()), "/problems/sources").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            v,
            serde_json::json!([{
                "source": "kernel-monitor", "failing": true, "readErrors": 1, "linesTruncated": 0,
                "lastError": "cannot read log file /var/log/kern.log: Is a directory (os error 21)"
            }])
        );
        retry.ok(path);
        let (_, v) = get_json(app(store), "/problems/sources").await;
        assert_eq!(v[0]["failing"], false);
        assert!(v[0].get("lastError").is_none());
    }
}
