//! Heapster's processing pipeline: Summary documents → metric sets → rates → pod, namespace,
//! node and cluster aggregation → node utilization and reservation.

pub mod aggregate;
pub mod decode;
pub mod enrich;
pub mod names;
pub mod rates;

use chrono::{DateTime, Utc};
use vigil_collector::summary::Summary;

use crate::batch::{Batch, MetricValue};

/// One node's answer for a round.
#[derive(Debug, Clone)]
pub struct NodeDoc {
    /// Name to use when the document carries no `nodeName`.
    pub fallback_name: String,
    pub summary: Summary,
    /// CPU cores of the node when known (the Summary API has no capacity).
    pub cpu_cores: Option<f64>,
}

/// The pipeline with its memory of previous counters.
pub struct Processor {
    rates: rates::Rates,
    forget_after_ms: i64,
    /// Pods and namespaces from the Kubernetes API, when that is the node source.
    pub cluster_info: Option<std::sync::Arc<enrich::ClusterInfo>>,
}

impl Processor {
    /// `forget_after` bounds how long a vanished set's last counters are remembered.
    pub fn new(forget_after: std::time::Duration) -> Processor {
        Processor {
            rates: rates::Rates::default(),
            forget_after_ms: forget_after.as_millis() as i64,
            cluster_info: None,
        }
    }

    /// Turns one round's documents into a batch stamped `timestamp`.
    pub fn process(&mut self, timestamp: DateTime<Utc>, docs: &[NodeDoc]) -> Batch {
        let mut batch = Batch {
            timestamp,
            sets: Default::default(),
        };
        for doc in docs {
            decode::decode(&mut batch, &doc.summary, &doc.fallback_name, timestamp);
            if let Some(cores) = doc.cpu_cores {
                let name = if doc.summary.node.node_name.is_empty() {
                    &doc.fallback_name
                } else {
                    &doc.summary.node.node_name
                };
                if let Some(set) = batch.sets.get_mut(&decode::node_key(name)) {
                    set.values.insert(
                        names::CPU_NODE_CAPACITY.to_string(),
                        MetricValue::Float(cores * 1000.0),
                    );
                    set.values.insert(
                        names::CPU_NODE_ALLOCATABLE.to_string(),
                        MetricValue::Float(cores * 1000.0),
                    );
                }
            }
        }
        self.rates.process(&mut batch, self.forget_after_ms);
        if let Some(info) = &self.cluster_info {
            enrich::enrich(&mut batch, info);
        }
        aggregate::pods(&mut batch);
        aggregate::namespaces_nodes_cluster(&mut batch);
        aggregate::node_utilization(&mut batch);
        batch
    }

    pub fn rate_stats(&self) -> rates::RateStats {
        self.rates.stats
    }

    pub fn tracked_sets(&self) -> usize {
        self.rates.tracked()
    }
}
