//! The unit of data that flows from the processors to the store, the APIs and the sinks: one
//! resolution's metric sets, as Heapster's `core.DataBatch`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};

/// A metric name. Heapster's names are a small fixed set, so a name is a `&'static str`
/// (no allocation per value per set per round); a name that arrives at run time (a snapshot,
/// a test's custom metric) is interned once with [`intern_name`] and lives for the process.
pub type Name = &'static str;

/// Labels of a labeled metric, shared by every metric with the same labels (`resource_id`).
pub type MetricLabels = Arc<BTreeMap<String, String>>;

/// Heapster's labels of a metric set. Shared: the processor hands the same allocation to every
/// round's set while the labels stay the same, and the store keeps that same allocation, so an
/// unchanged entity costs no label copy per round. Change with `Arc::make_mut`.
pub type SetLabels = Arc<BTreeMap<String, String>>;

/// The `&'static` copy of `name`, leaked once per distinct name (the set of names is bounded
/// by what the aggregator itself produces plus what a snapshot file holds).
pub fn intern_name(name: &str) -> Name {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name) {
        return n;
    }
    let n: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(n);
    n
}

/// One value: Heapster keeps int64 and float values apart, and so do its sinks (`123i` in
/// InfluxDB's line protocol).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    Int(i64),
    Float(f64),
}

impl MetricValue {
    /// The value as a float, for sinks that only know floats (remote_write).
    pub fn as_f64(self) -> f64 {
        match self {
            MetricValue::Int(v) => v as f64,
            MetricValue::Float(v) => v,
        }
    }
}

/// A metric that carries labels of its own, such as `filesystem/usage{resource_id="/"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledMetric {
    pub name: Name,
    pub labels: MetricLabels,
    pub value: MetricValue,
}

/// The shared `{resource_id: id}` labels of a filesystem or disk metric: one allocation per
/// distinct id for the process (the cache is cleared when it grows past 10,000 ids, e.g. after
/// much pod churn with per-pod volume names), not one map per metric per set per round.
pub fn resource_labels(resource_id: &str) -> MetricLabels {
    static CACHE: OnceLock<Mutex<std::collections::HashMap<String, MetricLabels>>> =
        OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(l) = cache.get(resource_id) {
        return l.clone();
    }
    if cache.len() >= 10_000 {
        cache.clear();
    }
    let l: MetricLabels = Arc::new([("resource_id".to_string(), resource_id.to_string())].into());
    cache.insert(resource_id.to_string(), l.clone());
    l
}

/// Kinds of metric sets, Heapster's `type` label.
pub mod set_type {
    pub const POD_CONTAINER: &str = "pod_container";
    pub const SYS_CONTAINER: &str = "sys_container";
    pub const POD: &str = "pod";
    pub const NAMESPACE: &str = "ns";
    pub const NODE: &str = "node";
    pub const CLUSTER: &str = "cluster";
}

/// The metrics of one entity (container, pod, namespace, node or the cluster) at one time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricSet {
    /// When the entity started (container start, pod start, node boot).
    pub create_time: Option<DateTime<Utc>>,
    /// When the figures were read.
    pub scrape_time: Option<DateTime<Utc>>,
    /// Unlabeled metrics by name, e.g. `cpu/usage_rate`.
    pub values: BTreeMap<Name, MetricValue>,
    /// Heapster's set labels: `type`, `nodename`, `namespace_name`, `pod_name`, ...
    pub labels: SetLabels,
    /// Metrics with labels of their own.
    pub labeled: Vec<LabeledMetric>,
    /// Milliseconds between the two samples behind this set's rates, when the rate pass computed
    /// them: metrics.k8s.io's `window`, as metrics-server reports it.
    pub rate_window_ms: Option<i64>,
}

/// One resolution's metric sets, keyed as Heapster keys them
/// (`namespace:X/pod:Y/container:Z`, `namespace:X/pod:Y`, `namespace:X`, `node:N`,
/// `node:N/container:C`, `cluster`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub timestamp: DateTime<Utc>,
    pub sets: BTreeMap<String, MetricSet>,
}
