//! PromQL over the store: `vigil_promql::Storage` for [`Store`], and [`QueryService`], the one
//! place queries run (engine, limits, concurrency), shared by the HTTP API, alerting and the UI.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use vigil_promql::{
    Engine, EngineOptions, Hints, Matcher, QueryResult, Selected, Storage, StorageError,
};

use crate::store::Store;

impl Storage for Store {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &Hints,
    ) -> Result<Vec<Selected>, StorageError> {
        self.select_hinted(matchers, Some((start_ms, end_ms)), hints, |_| Ok(()))
    }

    fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        label_names(self, selectors, start_ms, end_ms, &mut |_| Ok(()))
    }

    fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        label_values(self, name, selectors, start_ms, end_ms, &mut |_| Ok(()))
    }
}

type Budget<'a> = dyn FnMut(usize) -> Result<(), StorageError> + 'a;

fn label_names(
    store: &Store,
    selectors: &[Vec<Matcher>],
    start_ms: i64,
    end_ms: i64,
    budget: &mut Budget<'_>,
) -> Result<Vec<String>, StorageError> {
    if selectors.is_empty() {
        return Ok(store.label_names());
    }
    let mut out = std::collections::BTreeSet::new();
    for sel in selectors {
        // Only whether a series has a sample in the range matters: its newest one will do.
        let hints = Hints { last_only: true, labels: None };
        for s in store.select_hinted(sel, Some((start_ms, end_ms)), &hints, &mut *budget)? {
            out.extend(s.labels.keys().cloned());
        }
    }
    Ok(out.into_iter().collect())
}

fn label_values(
    store: &Store,
    name: &str,
    selectors: &[Vec<Matcher>],
    start_ms: i64,
    end_ms: i64,
    budget: &mut Budget<'_>,
) -> Result<Vec<String>, StorageError> {
    if selectors.is_empty() {
        return Ok(store.label_values(name));
    }
    let mut out = std::collections::BTreeSet::new();
    for sel in selectors {
        let hints = Hints { last_only: true, labels: Some(vec![name.to_string()]) };
        for s in store.select_hinted(sel, Some((start_ms, end_ms)), &hints, &mut *budget)? {
            if let Some(v) = s.labels.get(name) {
                out.insert(v.clone());
            }
        }
    }
    Ok(out.into_iter().collect())
}

/// The store as one query sees it: every sample it loads counts against `max_samples`, and
/// loading stops at the deadline, so a query too big for the aggregator fails early and alone.
struct Limited<'a> {
    store: &'a Store,
    max_samples: usize,
    deadline: Instant,
    loaded: AtomicUsize,
    too_many: AtomicBool,
    timed_out: AtomicBool,
}

impl Limited<'_> {
    fn budget(&self, n: usize) -> Result<(), StorageError> {
        let total = self.loaded.fetch_add(n, Ordering::Relaxed) + n;
        if total > self.max_samples {
            self.too_many.store(true, Ordering::Relaxed);
            return Err(StorageError(format!(
                "query processing would load too many samples into memory in query execution (limit {})",
                self.max_samples
            )));
        }
        if Instant::now() > self.deadline {
            self.timed_out.store(true, Ordering::Relaxed);
            return Err(StorageError("query timed out in query execution".into()));
        }
        Ok(())
    }
}

impl Storage for Limited<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &Hints,
    ) -> Result<Vec<Selected>, StorageError> {
        self.store
            .select_hinted(matchers, Some((start_ms, end_ms)), hints, |n| self.budget(n))
    }

    fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        label_names(self.store, selectors, start_ms, end_ms, &mut |n| self.budget(n))
    }

    fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        label_values(self.store, name, selectors, start_ms, end_ms, &mut |n| {
            self.budget(n)
        })
    }
}

/// Limits of the query service (`--query-*` flags, as Prometheus's `--query.*`).
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Default and maximum run time of a query (Prometheus: 2m).
    pub timeout: Duration,
    /// Most samples a query may load (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Queries running at once; more wait for a slot (Prometheus: 20).
    pub max_concurrency: usize,
    /// How far back an instant selector looks (Prometheus: 5m).
    pub lookback_delta: Duration,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_concurrency: 4,
            lookback_delta: Duration::from_secs(300),
        }
    }
}

/// Per-query overrides (the HTTP API's `timeout` and `lookback_delta` parameters).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams {
    /// Capped by [`QueryLimits::timeout`].
    pub timeout: Option<Duration>,
    pub lookback_delta: Option<Duration>,
}

/// What a query evaluates.
#[derive(Debug, Clone)]
pub enum QueryKind {
    Instant { time_ms: i64 },
    Range { start_ms: i64, end_ms: i64, step_ms: i64 },
}

/// Why a query failed. `Engine` carries the engine's own error; the others are the service's.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Engine(#[from] vigil_promql::Error),
    #[error("query processing would load too many samples into memory in query execution (limit {limit})")]
    TooManySamples { limit: usize },
    #[error("query timed out in query execution")]
    Timeout,
    /// The engine panicked (a bug): the query fails, the aggregator keeps running.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The `data` of `/api/v1/rules`, given the request's parameters (set by alerting).
pub type RulesHook = Arc<dyn Fn(&[(String, String)]) -> serde_json::Value + Send + Sync>;
/// The `data` of `/api/v1/alerts` (set by alerting).
pub type AlertsHook = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Runs PromQL over the store: each query on a blocking thread, at most
/// `max_concurrency` at once (the others wait in turn), each bounded in time and samples.
pub struct QueryService {
    pub store: Arc<Store>,
    pub limits: QueryLimits,
    permits: Arc<tokio::sync::Semaphore>,
    rules: RwLock<Option<RulesHook>>,
    alerts: RwLock<Option<AlertsHook>>,
}

impl QueryService {
    pub fn new(store: Arc<Store>, limits: QueryLimits) -> QueryService {
        QueryService {
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrency.max(1))),
            store,
            limits,
            rules: RwLock::new(None),
            alerts: RwLock::new(None),
        }
    }

    /// Evaluates `query` (instant or range) with the service's limits.
    pub async fn run(
        &self,
        query: &str,
        kind: QueryKind,
        params: QueryParams,
    ) -> Result<QueryResult, QueryError> {
        let timeout = params
            .timeout
            .map_or(self.limits.timeout, |t| t.min(self.limits.timeout));
        let started = Instant::now();
        let deadline = started + timeout;
        let options = EngineOptions {
            lookback_delta_ms: params
                .lookback_delta
                .unwrap_or(self.limits.lookback_delta)
                .as_millis() as i64,
            timeout,
            max_samples: self.limits.max_samples,
            max_points_per_series: 11_000,
        };
        let store = self.store.clone();
        let query = query.to_string();
        let max_samples = self.limits.max_samples;
        let work = async {
            // Waiting for a slot counts toward the timeout, as in Prometheus.
            let permit = self
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| QueryError::Internal(e.to_string()))?;
            let task = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let storage = Limited {
                    store: &store,
                    max_samples,
                    deadline,
                    loaded: AtomicUsize::new(0),
                    too_many: AtomicBool::new(false),
                    timed_out: AtomicBool::new(false),
                };
                let engine = Engine::new(options);
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match kind {
                    QueryKind::Instant { time_ms } => engine.instant(&storage, &query, time_ms),
                    QueryKind::Range {
                        start_ms,
                        end_ms,
                        step_ms,
                    } => engine.range(&storage, &query, start_ms, end_ms, step_ms),
                }));
                match res {
                    Ok(Ok(r)) => Ok(r),
                    Ok(Err(_)) if storage.too_many.load(Ordering::Relaxed) => {
                        Err(QueryError::TooManySamples { limit: max_samples })
                    }
                    Ok(Err(_)) if storage.timed_out.load(Ordering::Relaxed) => {
                        Err(QueryError::Timeout)
                    }
                    Ok(Err(e)) => Err(QueryError::Engine(e)),
                    Err(p) => Err(QueryError::Internal(panic_message(&p))),
                }
            });
            task.await
                .map_err(|e| QueryError::Internal(e.to_string()))?
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            // The blocking thread stops at its next storage call past the deadline; its slot
            // stays taken until then, so runaway queries cannot pile up beyond the limit.
            Err(_) => Err(QueryError::Timeout),
        }
    }

    /// Runs a metadata request (series, labels, values) on a blocking thread, bounded in time
    /// and samples like a query but not waiting for a query slot: the editor's label lists stay
    /// quick while dashboards' queries queue.
    pub async fn metadata<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Storage) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, QueryError> {
        let timeout = self.limits.timeout;
        let deadline = Instant::now() + timeout;
        let store = self.store.clone();
        let max_samples = self.limits.max_samples;
        let work = async move {
            tokio::task::spawn_blocking(move || {
                let storage = Limited {
                    store: &store,
                    max_samples,
                    deadline,
                    loaded: AtomicUsize::new(0),
                    too_many: AtomicBool::new(false),
                    timed_out: AtomicBool::new(false),
                };
                match f(&storage) {
                    Ok(v) => Ok(v),
                    Err(_) if storage.too_many.load(Ordering::Relaxed) => {
                        Err(QueryError::TooManySamples { limit: max_samples })
                    }
                    Err(_) if storage.timed_out.load(Ordering::Relaxed) => {
                        Err(QueryError::Timeout)
                    }
                    Err(e) => Err(QueryError::Engine(vigil_promql::Error::Storage(e))),
                }
            })
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(QueryError::Timeout),
        }
    }

    /// Makes `/api/v1/rules` answer `hook(params)` as its `data` (alerting calls this).
    pub fn set_rules_hook(&self, hook: RulesHook) {
        *self.rules.write().unwrap() = Some(hook);
    }

    /// Makes `/api/v1/alerts` answer `hook()` as its `data` (alerting calls this).
    pub fn set_alerts_hook(&self, hook: AlertsHook) {
        *self.alerts.write().unwrap() = Some(hook);
    }

    /// `/api/v1/rules`' data: the hook's, or Prometheus's empty `{"groups":[]}`.
    pub fn rules(&self, params: &[(String, String)]) -> serde_json::Value {
        match self.rules.read().unwrap().clone() {
            Some(h) => h(params),
            None => serde_json::json!({"groups": []}),
        }
    }

    /// `/api/v1/alerts`' data: the hook's, or Prometheus's empty `{"alerts":[]}`.
    pub fn alerts(&self) -> serde_json::Value {
        match self.alerts.read().unwrap().clone() {
            Some(h) => h(),
            None => serde_json::json!({"alerts": []}),
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "query evaluation panicked".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, LabeledMetric, MetricSet, MetricValue};
    use std::collections::{BTreeMap, BTreeSet};
    use vigil_promql::MatchOp;

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    fn batch(t: i64, pods: &[(&str, &str)]) -> Batch {
        let mut sets = BTreeMap::new();
        for (i, (ns, pod)) in pods.iter().enumerate() {
            let mut s = MetricSet::default();
            let l = Arc::make_mut(&mut s.labels);
            l.insert("type".into(), "pod".into());
            l.insert("namespace_name".into(), ns.to_string());
            l.insert("pod_name".into(), pod.to_string());
            l.insert("labels".into(), String::new());
            s.values.insert("cpu/usage_rate", MetricValue::Int(100 + i as i64));
            s.values.insert("network/rx", MetricValue::Int(t));
            s.labeled.push(LabeledMetric {
                name: "filesystem/usage",
                labels: crate::batch::resource_labels("/"),
                value: MetricValue::Int(7),
            });
            sets.insert(format!("namespace:{ns}/pod:{pod}"), s);
        }
        Batch {
            timestamp: chrono::DateTime::from_timestamp_millis(t).unwrap(),
            sets,
        }
    }

    #[test]
    fn selects_through_the_index_with_sink_names_and_expires() {
        let store = Store::new(60_000, 1000);
        for r in 0..3 {
            store
                .ingest(&batch(1_000_000 + r * 15_000, &[("a", "p1"), ("b", "p2")]))
                .unwrap();
        }
        let got = store
            .select(
                &[
                    m(MatchOp::Equal, "__name__", "cpu_usage_rate"),
                    m(MatchOp::Equal, "namespace_name", "a"),
                ],
                0,
                i64::MAX,
                &Hints::default(),
            )
            .unwrap();
        assert_eq!(got.len(), 1);
        let want: BTreeMap<String, String> = [
            ("__name__", "cpu_usage_rate"),
            ("namespace_name", "a"),
            ("pod_name", "p1"),
            ("type", "pod"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(*got[0].labels, want);
        assert_eq!(got[0].samples.len(), 3);
        assert_eq!(got[0].samples[2], (1_030_000, 100.0));
        // Hints: only the newest sample at or before the end (from the header, or decoded when
        // the end is in the past), and projected label sets shared between series.
        let cpu = [m(MatchOp::Equal, "__name__", "cpu_usage_rate")];
        let last = Hints { last_only: true, labels: None };
        let got = store.select(&cpu, 0, i64::MAX, &last).unwrap();
        assert_eq!(got.len(), 2);
        let only = |got: &[Selected], t: i64| {
            got.iter().all(|s| {
                let want = if s.labels["pod_name"] == "p1" { 100.0 } else { 101.0 };
                s.samples == vec![(t, want)]
            })
        };
        assert!(only(&got, 1_030_000), "{got:?}");
        let got = store.select(&cpu, 0, 1_020_000, &last).unwrap();
        assert_eq!(got.len(), 2);
        assert!(only(&got, 1_015_000), "{got:?}");
        let by_type = Hints { last_only: false, labels: Some(vec!["type".into(), "nodename".into()]) };
        let got = store.select(&cpu, 0, i64::MAX, &by_type).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].labels.iter().collect::<Vec<_>>(), vec![(&"type".to_string(), &"pod".to_string())]);
        assert!(Arc::ptr_eq(&got[0].labels, &got[1].labels), "one shared set per projection");
        assert_eq!(got[0].samples.len(), 3);
        let by_pod = Hints { last_only: false, labels: Some(vec!["pod_name".into()]) };
        let got = store.select(&cpu, 0, i64::MAX, &by_pod).unwrap();
        let pods: BTreeSet<&str> = got.iter().map(|s| s.labels["pod_name"].as_str()).collect();
        assert_eq!(pods, BTreeSet::from(["p1", "p2"]));
        let rx = store
            .select(&[m(MatchOp::Regex, "__name__", "network_rx.*")], 1_015_000, 1_030_000, &Hints::default())
            .unwrap();
        assert_eq!(rx.len(), 2);
        assert!(rx.iter().all(|s| s.samples.len() == 2 && s.labels["__name__"] == "network_rx_total"));
        let fs = store
            .select(
                &[
                    m(MatchOp::Equal, "resource_id", "/"),
                    m(MatchOp::NotEqual, "pod_name", "p1"),
                ],
                0,
                i64::MAX,
                &Hints::default(),
            )
            .unwrap();
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].labels["__name__"], "filesystem_usage");
        assert_eq!(fs[0].labels["pod_name"], "p2");
        assert_eq!(
            Storage::label_values(&store, "__name__", &[], 0, i64::MAX).unwrap(),
            vec!["cpu_usage_rate", "filesystem_usage", "network_rx_total"]
        );
        assert_eq!(
            Storage::label_names(
                &store,
                &[vec![m(MatchOp::Equal, "__name__", "filesystem_usage")]],
                0,
                i64::MAX
            )
            .unwrap(),
            vec!["__name__", "namespace_name", "pod_name", "resource_id", "type"]
        );
        // p1 goes away: after a window its series and index entries are gone.
        store.append(
            &[("__name__", "ALERTS"), ("alertname", "X"), ("alertstate", "firing")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            1_040_000,
            1.0,
        )
        .unwrap();
        store.ingest(&batch(1_100_000, &[("b", "p2")])).unwrap();
        assert_eq!(
            Storage::label_values(&store, "pod_name", &[], 0, i64::MAX).unwrap(),
            vec!["p2"]
        );
        assert_eq!(
            Storage::label_values(&store, "namespace_name", &[], 0, i64::MAX).unwrap(),
            vec!["b"]
        );
        let alerts = store
            .select(&[m(MatchOp::Equal, "__name__", "ALERTS")], 0, i64::MAX, &Hints::default())
            .unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels["alertstate"], "firing");
        assert_eq!(alerts[0].samples, vec![(1_040_000, 1.0)]);
        // Appended series expire with the window too.
        store.ingest(&batch(1_200_000, &[("b", "p2")])).unwrap();
        assert!(store
            .select(&[m(MatchOp::Equal, "__name__", "ALERTS")], 0, i64::MAX, &Hints::default())
            .unwrap()
            .is_empty());
        assert!(!Storage::label_names(&store, &[], 0, i64::MAX)
            .unwrap()
            .contains(&"alertname".to_string()));
    }

    #[test]
    fn append_refuses_bad_names_and_old_samples() {
        let store = Store::new(60_000, 1000);
        let l = |p: &[(&str, &str)]| -> BTreeMap<String, String> {
            p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let ok = l(&[("__name__", "job:cpu:sum"), ("job", "x")]);
        store.append(&ok, 1000, 1.0).unwrap();
        let e = store.append(&ok, 1000, 2.0).unwrap_err().to_string();
        assert!(e.contains("not newer"), "{e}");
        let e = store.append(&l(&[("job", "x")]), 1000, 1.0).unwrap_err().to_string();
        assert!(e.contains("no __name__"), "{e}");
        let e = store
            .append(&l(&[("__name__", "a"), ("bad-name", "x")]), 1000, 1.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid label name \"bad-name\""), "{e}");
        let stale = f64::from_bits(vigil_promql::STALE_NAN_BITS);
        store.append(&ok, 2000, stale).unwrap();
        let s = store
            .select(&[m(MatchOp::Equal, "__name__", "job:cpu:sum")], 0, i64::MAX, &Hints::default())
            .unwrap();
        assert!(vigil_promql::is_stale(s[0].samples[1].1));
        // Appended series stay out of Heapster's model API.
        assert!(store.keys(|_| true).is_empty());
    }

    #[test]
    fn appended_series_with_one_label_set_and_two_names_stay_apart() {
        // Two recording rules over `sum(...)`: the same (empty) label set, two names.
        let store = Store::new(60_000, 1000);
        let named = |n: &str| -> BTreeMap<String, String> {
            [("__name__".to_string(), n.to_string())].into()
        };
        for (t, a, b) in [(1000, 1.0, 10.0), (2000, 2.0, 20.0)] {
            store.append(&named("a:sum"), t, a).unwrap();
            store.append(&named("b:sum"), t, b).unwrap();
        }
        let get = |n: &str| {
            store
                .select(&[m(MatchOp::Equal, "__name__", n)], 0, i64::MAX, &Hints::default())
                .unwrap()
        };
        let (a, b) = (get("a:sum"), get("b:sum"));
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].samples, vec![(1000, 1.0), (2000, 2.0)]);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].samples, vec![(1000, 10.0), (2000, 20.0)]);
        assert_eq!(b[0].labels["__name__"], "b:sum");
        assert_eq!(
            Storage::label_values(&store, "__name__", &[], 0, i64::MAX).unwrap(),
            vec!["a:sum", "b:sum"]
        );
    }
}
