//! The unit of data that flows from the processors to the store, the APIs and the sinks: one
//! resolution's metric sets, as Heapster's `core.DataBatch`.

use std::collections::BTreeMap;
use chrono::{DateTime, Utc};

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
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: MetricValue,
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
    pub values: BTreeMap<String, MetricValue>,
    /// Heapster's set labels: `type`, `nodename`, `namespace_name`, `pod_name`, ...
    pub labels: BTreeMap<String, String>,
    /// Metrics with labels of their own.
    pub labeled: Vec<LabeledMetric>,
}

/// One resolution's metric sets, keyed as Heapster keys them
/// (`namespace:X/pod:Y/container:Z`, `namespace:X/pod:Y`, `namespace:X`, `node:N`,
/// `node:N/container:C`, `cluster`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    pub timestamp: DateTime<Utc>,
    pub sets: BTreeMap<String, MetricSet>,
}
