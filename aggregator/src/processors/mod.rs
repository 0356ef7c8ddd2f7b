//! Heapster's processing pipeline: Summary documents → metric sets → rates → pod, namespace,
//! node and cluster aggregation → node utilization and reservation.

pub mod aggregate;
pub mod decode;
pub mod enrich;
pub mod names;
pub mod rates;
pub mod wire;

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::batch::{Batch, MetricSet, MetricValue};

/// One node's answer for a round, decoded into its metric sets.
#[derive(Debug, Clone)]
pub struct NodeDoc {
    /// Where the document came from (for errors and logs).
    pub url: String,
    /// The document's `nodeName`, or the target's name when the document has none.
    pub node_name: String,
    /// The node's sets, the node's own first (`uptime` is added by the processor).
    pub sets: Vec<(String, MetricSet)>,
    /// CPU cores of the node when known (the Summary API has no capacity).
    pub cpu_cores: Option<f64>,
}

/// Decodes node documents straight into metric sets, keeping each target's label maps of its
/// previous document so an unchanged entity reuses them ([`decode::NodeCache`]).
#[derive(Default)]
pub struct Decoder {
    caches: Mutex<HashMap<String, decode::NodeCache>>,
    /// Pods dropped because an earlier pod of the same document had the same namespace/name.
    duplicate_pods: std::sync::atomic::AtomicU64,
}

impl Decoder {
    /// Decodes the document `body` that target `url` (named `fallback_name`) answered.
    pub fn decode(
        &self,
        url: &str,
        fallback_name: &str,
        cpu_cores: Option<f64>,
        body: &[u8],
    ) -> Result<NodeDoc, decode::Error> {
        // The target's cache is taken out while its document decodes, so concurrent pulls of
        // other targets do not wait for this one.
        let mut cache = self
            .caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(url)
            .unwrap_or_default();
        let r = decode::decode_document(body, fallback_name, &mut cache);
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url.to_string(), cache);
        let n = r?;
        self.duplicate_pods
            .fetch_add(n.duplicate_pods, std::sync::atomic::Ordering::Relaxed);
        Ok(NodeDoc {
            url: url.to_string(),
            node_name: n.node_name,
            sets: n.sets,
            cpu_cores,
        })
    }

    /// Pods dropped so far because their document listed the same namespace/name earlier.
    pub fn duplicate_pods(&self) -> u64 {
        self.duplicate_pods
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Forgets the caches of targets `keep` refuses (targets no longer discovered).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|url, _| keep(url));
    }
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
        self.process_owned(timestamp, docs.to_vec())
    }

    /// As [`Processor::process`], moving the documents' sets into the batch (the live path).
    ///
    /// Everything that concerns one node (enrichment, rates, pod sums, the node's requests and
    /// utilization) runs on that node's sets alone, while they are small and hot in cache;
    /// only the namespace and cluster sums span the round.
    pub fn process_owned(&mut self, timestamp: DateTime<Utc>, docs: Vec<NodeDoc>) -> Batch {
        let mut batch = Batch {
            timestamp,
            sets: Default::default(),
        };
        let mut seen = HashMap::new();
        let mut namespaces = aggregate::NamespaceSums::default();
        for doc in docs {
            if let Some(node) = self.node(timestamp, &mut seen, doc) {
                namespaces.add_pods(&node);
                for (key, set) in node.sets {
                    batch.sets.insert(key, set);
                }
            }
        }
        self.rates
            .forget(timestamp.timestamp_millis(), self.forget_after_ms);
        namespaces.finish(&mut batch);
        batch
    }

    /// One node's processed sets, unless an earlier document of the round had the same node
    /// name.
    fn node(
        &mut self,
        now: DateTime<Utc>,
        seen: &mut HashMap<String, String>,
        doc: NodeDoc,
    ) -> Option<Batch> {
        // Two targets reporting the same node name (collectors on hosts with the same hostname,
        // or a node listed twice) would overwrite each other's sets and make rates flip between
        // two counters: the first document of the round wins, the others are counted and logged.
        let name = doc.node_name.as_str();
        if let Some(first) = seen.get(name) {
            self.duplicate_nodes += 1;
            tracing::error!(node = %name, first_url = %first, dropped_url = %doc.url, "duplicate node name {name} from {first}, {}; keeping the first", doc.url);
            return None;
        }
        seen.insert(doc.node_name.clone(), doc.url);
        let node_key = decode::node_key(&doc.node_name);
        let mut node = Batch {
            timestamp: now,
            sets: Default::default(),
        };
        for (key, mut set) in doc.sets {
            if let Some(start) = set.create_time {
                let ms = (now - start).num_milliseconds().max(0);
                set.values.insert(names::UPTIME, MetricValue::Int(ms));
            }
            if let Some(cores) = doc.cpu_cores.filter(|_| key == node_key) {
                set.values
                    .insert(names::CPU_NODE_CAPACITY, MetricValue::Float(cores * 1000.0));
                set.values.insert(
                    names::CPU_NODE_ALLOCATABLE,
                    MetricValue::Float(cores * 1000.0),
                );
            }
            node.sets.insert(key, set);
        }
        // Enrichment first: the rate pass also shares each set's unchanged labels with the
        // previous round, which must see the final labels. (Rates read only cumulative values,
        // which enrichment does not touch.)
        if let Some(info) = &self.cluster_info {
            enrich::enrich(&mut node, info);
        }
        self.rates.add(&mut node);
        aggregate::pods(&mut node);
        aggregate::node_requests(&mut node);
        aggregate::node_utilization(&mut node);
        Some(node)
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
        Decoder::default()
            .decode(url, "fallback", None, &serde_json::to_vec(&v).unwrap())
            .unwrap()
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
