//! vigil's PromQL engine: parses with the `promql-parser` crate and evaluates with Prometheus
//! 3.x semantics for float samples over any [`Storage`]. The aggregator's query API, alerting and
//! the web UI are its clients; it depends on none of them.

pub mod storage;

pub use storage::{is_stale, Labels, MatchOp, Matcher, Series, Storage, StorageError, STALE_NAN_BITS};

use std::time::Duration;

/// Limits and defaults of query evaluation (Prometheus's `--query.*` flags).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// A query running longer fails with [`Error::Timeout`] (Prometheus: 2m).
    pub timeout: Duration,
    /// Most samples a query may hold in memory at once (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Most points a range query may return per series ((end - start) / step + 1; Prometheus: 11,000).
    pub max_points_per_series: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
        }
    }
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t_ms: i64,
    pub value: f64,
}

/// The value of an expression, as the HTTP API returns it (`resultType`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t_ms: i64, value: f64 },
    String { t_ms: i64, value: String },
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector, or a range query's result: series with samples oldest first.
    Matrix(Vec<Series>),
}

/// A query's result and what the engine has to say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Prometheus's warnings and info annotations (e.g. "metric might not be a counter").
    pub warnings: Vec<String>,
    /// Samples the query loaded from storage.
    pub samples_loaded: usize,
}

/// Why a query failed; each maps to one of Prometheus's `errorType`s.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unparsable PromQL (`bad_data`, HTTP 400); the message names the position.
    #[error("{0}")]
    Parse(String),
    /// A well-formed query that cannot be evaluated (`execution`, HTTP 422), e.g.
    /// "many-to-many matching not allowed", or a native-histogram feature.
    #[error("{0}")]
    Execution(String),
    /// More samples than [`EngineOptions::max_samples`] (`execution`, HTTP 422).
    #[error("query processing would load too many samples into memory in query execution (limit {limit})")]
    TooManySamples { limit: usize },
    /// The query ran past [`EngineOptions::timeout`] (`timeout`, HTTP 503).
    #[error("query timed out in query execution")]
    Timeout,
    /// The storage failed (`execution`, HTTP 422).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The engine: stateless between queries, cheap to share.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub options: EngineOptions,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Engine {
        Engine { options }
    }

    /// Evaluates `query` at `time_ms` (`/api/v1/query`).
    pub fn instant(
        &self,
        storage: &dyn Storage,
        query: &str,
        time_ms: i64,
    ) -> Result<QueryResult, Error> {
        let _ = (storage, query, time_ms);
        unimplemented!("engine: being written")
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` (`/api/v1/query_range`); the
    /// result is always a matrix.
    pub fn range(
        &self,
        storage: &dyn Storage,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, Error> {
        let _ = (storage, query, start_ms, end_ms, step_ms);
        unimplemented!("engine: being written")
    }
}
