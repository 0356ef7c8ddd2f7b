//! Heapster's processing pipeline: Summary documents → metric sets → rates → pod, namespace,
//! node and cluster aggregation → node utilization and reservation.

pub mod aggregate;
pub mod decode;
pub mod enrich;
pub mod names;
pub mod rates;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use vigil_collector::summary::Summary;

use crate::batch::{Batch, MetricValue};

/// One node's answer for a round.
#[derive(Debug, Clone)]
pub struct NodeDoc {
    /// Name to use when the document carries no `nodeName`.
    pub fallback_name: String,
    /// Where the document came from (for errors and logs).
    pub url: String,
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
    /// Documents dropped because an earlier one in the same round had the same node name.
    duplicate_nodes: u64,
}

impl Processor {
    /// `forget_after` bounds how long a vanished set's last counters are remembered.
    pub fn new(forget_after: std::time::Duration) -> Processor {
        Processor {
            rates: rates::Rates::default(),
            forget_after_ms: forget_after.as_millis() as i64,
            cluster_info: None,
            duplicate_nodes: 0,
        }
    }

    /// Turns one round's documents into a batch stamped `timestamp`.
    pub fn process(&mut self, timestamp: DateTime<Utc>, docs: &[NodeDoc]) -> Batch {
        let mut batch = Batch {
            timestamp,
            sets: Default::default(),
        };
        let mut seen = HashMap::new();
        for doc in docs {
            self.decode_one(&mut batch, &mut seen, doc);
        }
        self.finish(batch)
    }

    /// As [`Processor::process`], but each document is dropped as soon as it is decoded (the
    /// live path): the parsed documents and the finished batch are never whole in memory at once.
    pub fn process_owned(&mut self, timestamp: DateTime<Utc>, docs: Vec<NodeDoc>) -> Batch {
        let mut batch = Batch {
            timestamp,
            sets: Default::default(),
        };
        let mut seen = HashMap::new();
        for doc in docs {
            self.decode_one(&mut batch, &mut seen, &doc);
        }
        self.finish(batch)
    }

    /// Decodes one document unless an earlier one of the round had the same node name.
    fn decode_one(&mut self, batch: &mut Batch, seen: &mut HashMap<String, String>, doc: &NodeDoc) {
        // Two targets reporting the same node name (collectors on hosts with the same hostname,
        // or a node listed twice) would overwrite each other's sets and make rates flip between
        // two counters: the first document of the round wins, the others are counted and logged.
        let name = if doc.summary.node.node_name.is_empty() {
            doc.fallback_name.as_str()
        } else {
            doc.summary.node.node_name.as_str()
        };
        if let Some(first) = seen.get(name) {
            self.duplicate_nodes += 1;
            tracing::error!(node = %name, first_url = %first, dropped_url = %doc.url, "duplicate node name {name} from {first}, {}; keeping the first", doc.url);
            return;
        }
        seen.insert(name.to_string(), doc.url.clone());
        decode::decode(batch, &doc.summary, &doc.fallback_name, batch.timestamp);
        if let Some(cores) = doc.cpu_cores {
            if let Some(set) = batch.sets.get_mut(&decode::node_key(name)) {
                set.values
                    .insert(names::CPU_NODE_CAPACITY, MetricValue::Float(cores * 1000.0));
                set.values.insert(
                    names::CPU_NODE_ALLOCATABLE,
                    MetricValue::Float(cores * 1000.0),
                );
            }
        }
    }

    /// Enrichment, rates and aggregation of a round's decoded sets.
    fn finish(&mut self, mut batch: Batch) -> Batch {
        // Enrichment first: the rate pass also shares each set's unchanged labels with the
        // previous round, which must see the final labels. (Rates read only cumulative values,
        // which enrichment does not touch.)
        if let Some(info) = &self.cluster_info {
            enrich::enrich(&mut batch, info);
        }
        self.rates.process(&mut batch, self.forget_after_ms);
        aggregate::pods(&mut batch);
        aggregate::namespaces_nodes_cluster(&mut batch);
        aggregate::node_utilization(&mut batch);
        batch
    }

    pub fn rate_stats(&self) -> rates::RateStats {
        self.rates.stats
    }

    /// Documents dropped so far because their node name was already seen in the round.
    pub fn duplicate_nodes(&self) -> u64 {
        self.duplicate_nodes
    }

    pub fn tracked_sets(&self) -> usize {
        self.rates.tracked()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(url: &str, cpu_ns: u64) -> NodeDoc {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["node"]["cpu"]["usageCoreNanoSeconds"] = cpu_ns.into();
        NodeDoc {
            fallback_name: "fallback".into(),
            url: url.into(),
            summary: serde_json::from_value(v).unwrap(),
            cpu_cores: None,
        }
    }

    /// #14: two documents with the same nodeName in one round: the first wins, the second is
    /// counted, and rates keep following the first target's counter.
    #[test]
    fn duplicate_node_name_keeps_the_first_and_is_counted() {
        let mut p = Processor::new(std::time::Duration::from_secs(600));
        let t0: DateTime<Utc> = "2024-01-01T00:10:00Z".parse().unwrap();
        let docs = [
            doc("http://a:10255", 3_000_000_000_000),
            doc("http://b:10255", 9_000_000_000_000),
        ];
        let b = p.process(t0, &docs);
        assert_eq!(p.duplicate_nodes(), 1);
        // The live path (documents dropped as decoded) builds the same batch.
        let mut owned = Processor::new(std::time::Duration::from_secs(600));
        assert_eq!(owned.process_owned(t0, docs.to_vec()), b);
        assert_eq!(owned.duplicate_nodes(), 1);
        let node = &b.sets["node:node-1"];
        assert_eq!(
            node.values["cpu/usage"],
            MetricValue::Int(3_000_000_000_000)
        );
        let nodes = b
            .sets
            .keys()
            .filter(|k| k.starts_with("node:") && !k.contains('/'));
        assert_eq!(nodes.count(), 1);
    }
}
