//! vigil's PromQL engine: parses with the `promql-parser` crate and evaluates with Prometheus
//! 3.x semantics for float samples over any [`Storage`]. The aggregator's query API, alerting and
//! the web UI are its clients; it depends on none of them.

mod aggregate;
mod binary;
mod eval;
mod functions;
mod parse;
mod range;
pub mod storage;
pub mod testing;

pub use parse::{format_query, Query};
pub use storage::{
    is_stale, Hints, Labels, MatchOp, Matcher, Selected, Series, Storage, StorageError, STALE_NAN_BITS,
};

use std::time::{Duration, Instant};

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
        self.instant_query(storage, &Query::parse(query)?, time_ms)
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
        self.range_query(storage, &Query::parse(query)?, start_ms, end_ms, step_ms)
    }

    /// [`Engine::instant`] for a query parsed once (e.g. a rule evaluated every interval).
    pub fn instant_query(
        &self,
        storage: &dyn Storage,
        query: &Query,
        time_ms: i64,
    ) -> Result<QueryResult, Error> {
        let mut ev = self.evaluator(time_ms, time_ms, 0);
        ev.invalid_utf8 = query.invalid_utf8.clone();
        ev.load(storage, &query.expr)?;
        let value = match ev.eval(&query.expr, time_ms)? {
            eval::Val::Scalar(v) => Value::Scalar { t_ms: time_ms, value: v },
            eval::Val::Str(s) => Value::String { t_ms: time_ms, value: s },
            eval::Val::Vector(v) => {
                let mut names = NameDropper::default();
                let mut seen = std::collections::HashSet::with_capacity(v.len());
                let mut out = Vec::with_capacity(v.len());
                for e in v {
                    let labels = names.finish(&e.labels, e.drop_name);
                    if !seen.insert(labels.clone()) {
                        return Err(Error::Execution(
                            "vector cannot contain metrics with the same labelset".into(),
                        ));
                    }
                    out.push(Sample { labels: (*labels).clone(), t_ms: time_ms, value: e.value });
                }
                Value::Vector(out)
            }
            eval::Val::Matrix(m) => {
                let mut names = NameDropper::default();
                let mut out: Vec<Series> = m
                    .series
                    .into_iter()
                    .map(|s| Series {
                        labels: (*names.finish(&s.labels, s.drop_name)).clone(),
                        samples: s.samples.into_owned(),
                    })
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Value::Matrix(out)
            }
        };
        Ok(QueryResult {
            value,
            warnings: ev.warnings.into_inner().into_iter().collect(),
            samples_loaded: ev.samples_loaded,
        })
    }

    /// [`Engine::range`] for a query parsed once.
    pub fn range_query(
        &self,
        storage: &dyn Storage,
        query: &Query,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, Error> {
        if step_ms <= 0 {
            return Err(Error::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(Error::Execution("end timestamp must not be before start time".into()));
        }
        let points = (end_ms - start_ms) / step_ms + 1;
        if points > self.options.max_points_per_series as i64 {
            return Err(Error::Execution(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                thousands(self.options.max_points_per_series)
            )));
        }
        let mut ev = self.evaluator(start_ms, end_ms, step_ms);
        ev.invalid_utf8 = query.invalid_utf8.clone();
        ev.load(storage, &query.expr)?;
        let mut names = NameDropper::default();
        let mut out = eval::SeriesCollector::default();
        let mut total = 0usize;
        let empty = std::sync::Arc::new(Labels::new());
        let mut ts = start_ms;
        while ts <= end_ms {
            ev.check_deadline()?;
            ev.reset_step();
            ev.hold(total)?;
            match ev.eval(&query.expr, ts)? {
                eval::Val::Scalar(v) => {
                    out.push(&empty, false, ts, v);
                    total += 1;
                }
                eval::Val::Vector(v) => {
                    total += v.len();
                    for e in v {
                        let labels = names.finish(&e.labels, e.drop_name);
                        if !out.push(&labels, false, ts, e.value) {
                            return Err(Error::Execution(
                                "vector cannot contain metrics with the same labelset".into(),
                            ));
                        }
                    }
                }
                other => {
                    return Err(Error::Execution(format!(
                        "invalid expression type {:?} for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )))
                }
            }
            ts += step_ms;
        }
        let mut series: Vec<Series> = out
            .series
            .into_iter()
            .map(|(labels, _, samples)| Series { labels: (*labels).clone(), samples })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult {
            value: Value::Matrix(series),
            warnings: ev.warnings.into_inner().into_iter().collect(),
            samples_loaded: ev.samples_loaded,
        })
    }

    fn evaluator(&self, start: i64, end: i64, step: i64) -> eval::Evaluator {
        eval::Evaluator::new(
            start,
            end,
            step,
            self.options.lookback_delta_ms,
            Instant::now() + self.options.timeout,
            self.options.max_samples,
        )
    }
}

/// Applies delayed `__name__` removal, once per distinct label set.
#[derive(Default)]
struct NameDropper {
    cache: std::collections::HashMap<usize, (std::sync::Arc<Labels>, std::sync::Arc<Labels>)>,
}

impl NameDropper {
    fn finish(&mut self, l: &std::sync::Arc<Labels>, drop: bool) -> std::sync::Arc<Labels> {
        if !drop || !l.contains_key(eval::NAME) {
            return l.clone();
        }
        let key = std::sync::Arc::as_ptr(l) as usize;
        self.cache
            .entry(key)
            .or_insert_with(|| (l.clone(), std::sync::Arc::new(eval::without_name(l))))
            .1
            .clone()
    }
}

/// `11000` as `11,000`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemStorage;

    fn storage() -> MemStorage {
        let mut s = MemStorage::new();
        for (i, pod) in ["a", "b", "c"].iter().enumerate() {
            let mut l = Labels::new();
            l.insert("__name__".into(), "cpu_usage_rate".into());
            l.insert("pod_name".into(), pod.to_string());
            l.insert("namespace_name".into(), "ns".into());
            for t in 0..20 {
                s.add(&l, t * 15_000, (i * 10 + t as usize) as f64);
            }
        }
        s
    }

    fn err(e: &Engine, q: &str) -> String {
        e.instant(&storage(), q, 150_000).unwrap_err().to_string()
    }

    #[test]
    fn instant_and_range() {
        let e = Engine::default();
        let r = e.instant(&storage(), "sum by (namespace_name) (cpu_usage_rate)", 150_000).unwrap();
        let Value::Vector(v) = r.value else { panic!() };
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, 10.0 + 20.0 + 30.0);
        assert_eq!(v[0].labels.get("namespace_name").unwrap(), "ns");
        let r = e.range(&storage(), "cpu_usage_rate{pod_name=\"b\"} * 2", 0, 60_000, 15_000).unwrap();
        let Value::Matrix(m) = r.value else { panic!() };
        assert_eq!(m.len(), 1);
        assert!(!m[0].labels.contains_key("__name__"));
        assert_eq!(m[0].samples, vec![(0, 20.0), (15_000, 22.0), (30_000, 24.0), (45_000, 26.0), (60_000, 28.0)]);
        assert!(r.samples_loaded > 0);
    }

    /// A range query computes an aggregation over a selector at every step at once (each
    /// series walked with a cursor): each step must equal the instant query at that time, with
    /// gaps, staleness markers, `offset` and `@` in the data and the query.
    #[test]
    fn range_aggregation_over_a_selector_equals_each_instant() {
        let mut s = MemStorage::new();
        for i in 0..12u32 {
            let mut l = Labels::new();
            l.insert("__name__".into(), "x".into());
            l.insert("ns".into(), format!("n{}", i % 3));
            l.insert("pod".into(), format!("p{i}"));
            for t in 0..80i64 {
                // Gaps longer than the lookback, a few stale markers, NaN and negative values.
                if (t + i as i64) % 17 < 4 && i % 2 == 0 {
                    continue;
                }
                let v = match (t * 7 + i as i64) % 23 {
                    0 => f64::from_bits(STALE_NAN_BITS),
                    1 if i == 5 => f64::NAN,
                    k => (k as f64 - 11.0) * (i as f64 + 0.5),
                };
                s.add(&l, t * 13_000 + i as i64 * 100, v);
            }
        }
        let e = Engine::new(EngineOptions { lookback_delta_ms: 40_000, ..EngineOptions::default() });
        for q in [
            "sum by (ns) (x)",
            "avg by (ns) (x)",
            "min(x)",
            "max without (pod) (x)",
            "count by (ns) (x offset 1m)",
            "group by (ns) (x @ 500)",
            "sum by (ns) (x) / count by (ns) (x)",
        ] {
            let (start, end, step) = (30_000, 1_000_000, 7_000);
            let Value::Matrix(m) = e.range(&s, q, start, end, step).unwrap().value else {
                panic!("{q}")
            };
            let mut want: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
            let mut t = start;
            while t <= end {
                if let Value::Vector(v) = e.instant(&s, q, t).unwrap().value {
                    for x in v {
                        want.entry(x.labels).or_default().push((t, x.value));
                    }
                }
                t += step;
            }
            let got: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> =
                m.into_iter().map(|s| (s.labels, s.samples)).collect();
            assert_eq!(got.len(), want.len(), "{q}");
            assert!(!got.is_empty(), "{q}");
            for (l, w) in &want {
                let g = &got[l];
                assert_eq!(g.len(), w.len(), "{q} {l:?}");
                for (a, b) in g.iter().zip(w) {
                    assert!(a.0 == b.0 && a.1.to_bits() == b.1.to_bits(), "{q} {l:?}: {a:?} != {b:?}");
                }
            }
        }
    }

    #[test]
    fn scalars_and_strings() {
        let e = Engine::default();
        let r = e.instant(&storage(), "1 + 2 * 3", 1000).unwrap();
        assert_eq!(r.value, Value::Scalar { t_ms: 1000, value: 7.0 });
        let r = e.instant(&storage(), "\"hi\"", 1000).unwrap();
        assert_eq!(r.value, Value::String { t_ms: 1000, value: "hi".into() });
    }

    #[test]
    fn limits() {
        let mut e = Engine::default();
        e.options.max_samples = 10;
        assert!(matches!(
            e.instant(&storage(), "cpu_usage_rate[5m]", 285_000),
            Err(Error::TooManySamples { limit: 10 })
        ));
        let e = Engine::new(EngineOptions { timeout: Duration::ZERO, ..EngineOptions::default() });
        assert!(matches!(e.instant(&storage(), "cpu_usage_rate", 1000), Err(Error::Timeout)));
        let e = Engine::default();
        let m = e.range(&storage(), "cpu_usage_rate", 0, 11_000_000, 1000).unwrap_err().to_string();
        assert_eq!(m, "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
        assert!(e.range(&storage(), "1", 0, 1000, 0).unwrap_err().to_string().contains("zero or negative"));
        assert!(e.range(&storage(), "1", 1000, 0, 10).unwrap_err().to_string().contains("end timestamp"));
        assert!(e.range(&storage(), "cpu_usage_rate[1m]", 0, 1000, 10).unwrap_err().to_string().contains("range query"));
    }

    #[test]
    fn bad_queries() {
        let e = Engine::default();
        assert!(err(&e, "sum(").starts_with("1:"));
        assert!(err(&e, "nope(cpu_usage_rate)").contains("nope"));
        assert!(err(&e, "abs()").contains("parse error"));
        assert!(err(&e, "abs(\"x\")").contains("parse error"));
        assert!(matches!(e.instant(&storage(), "rate(", 0), Err(Error::Parse(_))));
        // Matching errors as Prometheus words them.
        let m = err(&e, "cpu_usage_rate + on(namespace_name) cpu_usage_rate");
        assert!(m.contains("many-to-many matching not allowed"), "{m}");
        let m = err(&e, "sum by (namespace_name) (cpu_usage_rate) + on(namespace_name) group_right cpu_usage_rate + on(namespace_name) cpu_usage_rate");
        assert!(m.contains("matching"), "{m}");
        let m = err(&e, "label_replace(cpu_usage_rate, \"pod_name\", \"x\", \"pod_name\", \"(\")");
        assert!(m.contains("invalid regular expression"), "{m}");
        let m = err(&e, "topk(0/0, cpu_usage_rate)");
        assert_eq!(m, "Parameter value is NaN");
        let m = err(&e, "info(cpu_usage_rate)");
        assert!(m.contains("not supported"), "{m}");
        let m = err(&e, "cpu_usage_rate + fill(0) cpu_usage_rate");
        assert!(!m.is_empty());
    }

    #[test]
    fn annotations() {
        let e = Engine::default();
        let r = e.instant(&storage(), "rate(cpu_usage_rate[1m])", 150_000).unwrap();
        assert_eq!(
            r.warnings,
            vec!["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"cpu_usage_rate\"".to_string()]
        );
    }

    #[test]
    fn same_labelset_after_name_removal() {
        let mut s = storage();
        let mut l = Labels::new();
        l.insert("__name__".into(), "other".into());
        l.insert("pod_name".into(), "a".into());
        l.insert("namespace_name".into(), "ns".into());
        s.add(&l, 0, 1.0);
        let e = Engine::default();
        let m = e
            .instant(&s, "abs({__name__=~\"cpu_usage_rate|other\", pod_name=\"a\"})", 0)
            .unwrap_err()
            .to_string();
        assert_eq!(m, "vector cannot contain metrics with the same labelset");
    }

    #[test]
    fn parsed_queries_run_many_times() {
        let e = Engine::default();
        let q = Query::parse("count(cpu_usage_rate > 15)").unwrap();
        assert_eq!(q.result_type(), "vector");
        let at = |t| match e.instant_query(&storage(), &q, t).unwrap().value {
            Value::Vector(v) => v.first().map(|s| s.value),
            _ => None,
        };
        assert_eq!(at(0), Some(1.0));
        assert_eq!(at(285_000), Some(3.0));
    }
}
