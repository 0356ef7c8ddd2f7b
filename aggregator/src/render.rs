//! The web UI and `/render` (crate `vigil-dashboards`) over this aggregator's query service.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use vigil_dashboards::render::{RangeFuture, Series};
use vigil_dashboards::{RangeQuery, UiOptions};
use vigil_promql::Value;

use crate::api::AppState;
use crate::query::{QueryKind, QueryParams, QueryService};

/// `/render`'s range queries, run by the same service (limits, concurrency) as `/api/v1/query_range`.
struct ServiceQuery(Arc<QueryService>);

impl RangeQuery for ServiceQuery {
    fn range<'a>(&'a self, expr: &'a str, start_ms: i64, end_ms: i64, step_ms: i64) -> RangeFuture<'a> {
        Box::pin(async move {
            let kind = QueryKind::Range { start_ms, end_ms, step_ms };
            let result = self.0.run(expr, kind, QueryParams::default()).await.map_err(|e| e.to_string())?;
            match result.value {
                Value::Matrix(series) => Ok(series.into_iter().map(|s| -> Series { (s.labels, s.samples) }).collect()),
                Value::Scalar { .. } | Value::String { .. } | Value::Vector(_) => {
                    Err("a range query must return a matrix".to_string())
                }
            }
        })
    }
}

/// The UI's routes (`/`, `/ui/*`, `/render`) for this aggregator.
pub fn routes(state: &AppState) -> Router<Arc<AppState>> {
    let options = UiOptions {
        resolution: state.resolution,
        retention: Duration::from_millis(state.store.retention_ms().max(0) as u64),
    };
    vigil_dashboards::router(Arc::new(ServiceQuery(state.query.clone())), options)
}
