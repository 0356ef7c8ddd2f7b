//! The query interface rules are evaluated through: the in-process PromQL engine (adapter in
//! the aggregator) or a remote Prometheus-compatible API (`--rule-query-url`).
//! Synchronous: rule groups and notifiers call it from their own threads.

use std::collections::BTreeMap;

/// One sample of an instant query's vector (a scalar result comes as one sample with no labels).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range query: points `(t_ms, value)` oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

/// Why a query failed; the message is shown in `/api/v1/rules` as `lastError`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// What rules and notifiers need from a metrics store.
pub trait Query: Send + Sync {
    /// Evaluates `expr` at `time_ms`.
    fn instant(&self, expr: &str, time_ms: i64) -> Result<Vec<Sample>, QueryError>;
    /// Evaluates `expr` at each step from `start_ms` to `end_ms`.
    fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<RangeSeries>, QueryError>;
}

pub mod remote;
pub use remote::RemoteQuery;

/// Runs an instant query on the in-process engine over `storage`: the one conversion of engine
/// results into rule samples, shared by the aggregator's store and the offline (test, replay) store.
pub fn engine_instant(
    engine: &vigil_promql::Engine,
    storage: &dyn vigil_promql::Storage,
    expr: &str,
    time_ms: i64,
) -> Result<Vec<Sample>, QueryError> {
    let r = engine
        .instant(storage, expr, time_ms)
        .map_err(|e| QueryError(e.to_string()))?;
    match r.value {
        vigil_promql::Value::Vector(v) => Ok(v
            .into_iter()
            .map(|s| Sample {
                labels: s.labels,
                value: s.value,
            })
            .collect()),
        vigil_promql::Value::Scalar { value, .. } => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value,
        }]),
        vigil_promql::Value::String { .. } => Err(QueryError(
            "rule queries must return a vector or a scalar, got a string".into(),
        )),
        vigil_promql::Value::Matrix(_) => Err(QueryError(
            "rule queries must return a vector or a scalar, got a range vector".into(),
        )),
    }
}

/// Runs a range query on the in-process engine over `storage` (see [`engine_instant`]).
pub fn engine_range(
    engine: &vigil_promql::Engine,
    storage: &dyn vigil_promql::Storage,
    expr: &str,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
) -> Result<Vec<RangeSeries>, QueryError> {
    let r = engine
        .range(storage, expr, start_ms, end_ms, step_ms)
        .map_err(|e| QueryError(e.to_string()))?;
    match r.value {
        vigil_promql::Value::Matrix(m) => Ok(m
            .into_iter()
            .map(|s| RangeSeries {
                labels: s.labels,
                points: s.samples,
            })
            .collect()),
        _ => Err(QueryError("range query did not return a matrix".into())),
    }
}
