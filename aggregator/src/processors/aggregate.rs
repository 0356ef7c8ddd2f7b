//! Aggregation container → pod → namespace → node → cluster and node utilization/reservation
//! (heapster metrics/processors/{pod,namespace,node,cluster}_aggregator.go,
//! node_autoscaling_enricher.go).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use super::decode::{namespace_key, pod_key};
use super::names::*;
use crate::batch::{set_type, Batch, MetricSet, MetricValue, Name, SetLabels};

fn add(into: &mut BTreeMap<Name, MetricValue>, name: Name, v: MetricValue) {
    let sum = match (into.get(name), v) {
        (None, v) => v,
        (Some(MetricValue::Int(a)), MetricValue::Int(b)) => MetricValue::Int(a.saturating_add(b)),
        (Some(a), b) => MetricValue::Float(a.as_f64() + b.as_f64()),
    };
    into.insert(name, sum);
}

fn kind(set: &MetricSet) -> &str {
    set.labels.get(LABEL_TYPE).map(|s| s.as_str()).unwrap_or("")
}

/// Pods get the sum of their containers' non-cumulative metrics, except metrics the source
/// already gave for the pod itself.
pub fn pods(batch: &mut Batch) {
    // Keyed by the labels borrowed from the batch (no key built per container); a pod's labels
    // are derived from its first container only when the pod has no set of its own.
    type Sums<'a> = (BTreeMap<Name, MetricValue>, &'a SetLabels);
    let mut sums: FxHashMap<(&str, &str), Sums<'_>> = FxHashMap::default();
    for set in batch
        .sets
        .values()
        .filter(|s| kind(s) == set_type::POD_CONTAINER)
    {
        let (Some(ns), Some(pod)) = (
            set.labels.get(LABEL_NAMESPACE_NAME),
            set.labels.get(LABEL_POD_NAME),
        ) else {
            continue;
        };
        let entry = sums
            .entry((ns.as_str(), pod.as_str()))
            .or_insert_with(|| (BTreeMap::new(), &set.labels));
        for (name, v) in &set.values {
            if !skipped_by_pod_sum(name) {
                add(&mut entry.0, name, *v);
            }
        }
    }
    let sums: Vec<(String, BTreeMap<Name, MetricValue>, SetLabels)> = sums
        .into_iter()
        .map(|((ns, pod), (values, labels))| (pod_key(ns, pod), values, labels.clone()))
        .collect();
    for (key, values, container_labels) in sums {
        let pod = batch.sets.entry(key).or_insert_with(|| {
            let mut labels = (*container_labels).clone();
            labels.remove(LABEL_CONTAINER_NAME);
            labels.remove(LABEL_CONTAINER_BASE_IMAGE);
            labels.insert(LABEL_TYPE.to_string(), set_type::POD.to_string());
            MetricSet {
                labels: std::sync::Arc::new(labels),
                ..MetricSet::default()
            }
        });
        for (name, v) in values {
            pod.values.entry(name).or_insert(v);
        }
    }
}

/// Namespaces sum their pods; nodes add their pods' requests and limits; the cluster sums
/// the namespaces.
pub fn namespaces_nodes_cluster(batch: &mut Batch) {
    node_requests(batch);
    let mut namespaces = NamespaceSums::default();
    namespaces.add_pods(batch);
    namespaces.finish(batch);
}

/// Nodes add their pods' requests and limits (pods by their `nodename` label).
pub fn node_requests(batch: &mut Batch) {
    let mut nodes: FxHashMap<&str, BTreeMap<Name, MetricValue>> = FxHashMap::default();
    for set in batch.sets.values().filter(|s| kind(s) == set_type::POD) {
        if let Some(node) = set.labels.get(LABEL_NODENAME) {
            let e = nodes.entry(node.as_str()).or_default();
            for name in [CPU_REQUEST, CPU_LIMIT, MEMORY_REQUEST, MEMORY_LIMIT] {
                if let Some(v) = set.values.get(name) {
                    add(e, name, *v);
                }
            }
        }
    }
    let nodes: Vec<(String, BTreeMap<Name, MetricValue>)> = nodes
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (super::decode::node_key(k), v))
        .collect();
    for (node_key, values) in nodes {
        if let Some(set) = batch.sets.get_mut(&node_key) {
            for (name, v) in values {
                set.values.entry(name).or_insert(v);
            }
        }
    }
}

/// Namespace sums of pods, accumulated over a round's nodes, then the namespace and cluster
/// sets.
#[derive(Default)]
pub struct NamespaceSums {
    namespaces: BTreeMap<String, BTreeMap<Name, MetricValue>>,
}

impl NamespaceSums {
    /// Adds the pods of `batch` (one node's part of the round, or all of it).
    pub fn add_pods(&mut self, batch: &Batch) {
        for set in batch.sets.values().filter(|s| kind(s) == set_type::POD) {
            if let Some(ns) = set.labels.get(LABEL_NAMESPACE_NAME) {
                let e = match self.namespaces.get_mut(ns.as_str()) {
                    Some(e) => e,
                    None => self.namespaces.entry(ns.clone()).or_default(),
                };
                for name in AGGREGATED {
                    if let Some(v) = set.values.get(name) {
                        add(e, name, *v);
                    }
                }
            }
        }
    }

    /// Puts the namespace sets and the cluster set into `batch`.
    pub fn finish(self, batch: &mut Batch) {
        let mut cluster = BTreeMap::new();
        for (ns, values) in self.namespaces {
            for (name, v) in &values {
                add(&mut cluster, name, *v);
            }
            let set = batch.sets.entry(namespace_key(&ns)).or_insert_with(|| {
                let mut labels = BTreeMap::new();
                labels.insert(LABEL_TYPE.to_string(), set_type::NAMESPACE.to_string());
                labels.insert(LABEL_NAMESPACE_NAME.to_string(), ns.clone());
                MetricSet {
                    labels: std::sync::Arc::new(labels),
                    ..MetricSet::default()
                }
            });
            set.values.extend(values);
        }
        let set = batch
            .sets
            .entry("cluster".to_string())
            .or_insert_with(|| MetricSet {
                labels: std::sync::Arc::new(
                    [(LABEL_TYPE.to_string(), set_type::CLUSTER.to_string())].into(),
                ),
                ..MetricSet::default()
            });
        set.values.extend(cluster);
    }
}

/// `*/node_utilization` and `*/node_reservation` as shares of allocatable.
pub fn node_utilization(batch: &mut Batch) {
    for set in batch
        .sets
        .values_mut()
        .filter(|s| kind(s) == set_type::NODE)
    {
        let get = |n: &str| set.values.get(n).map(|v| v.as_f64());
        let mut out = Vec::new();
        if let Some(alloc) = get(CPU_NODE_ALLOCATABLE).filter(|a| *a > 0.0) {
            if let Some(u) = get(CPU_USAGE_RATE) {
                out.push((CPU_NODE_UTILIZATION, u / alloc));
            }
            if let Some(r) = get(CPU_REQUEST) {
                out.push((CPU_NODE_RESERVATION, r / alloc));
            }
        }
        if let Some(alloc) = get(MEMORY_NODE_ALLOCATABLE).filter(|a| *a > 0.0) {
            if let Some(u) = get(MEMORY_USAGE) {
                out.push((MEMORY_NODE_UTILIZATION, u / alloc));
            }
            if let Some(r) = get(MEMORY_REQUEST) {
                out.push((MEMORY_NODE_RESERVATION, r / alloc));
            }
        }
        if let Some(alloc) = get(EPHEMERAL_STORAGE_NODE_ALLOCATABLE).filter(|a| *a > 0.0) {
            if let Some(u) = get(EPHEMERAL_STORAGE_USAGE) {
                out.push((EPHEMERAL_STORAGE_NODE_UTILIZATION, u / alloc));
            }
        }
        for (name, v) in out {
            set.values.insert(name, MetricValue::Float(v));
        }
    }
}

/// The node names present in a batch.
pub fn node_names(batch: &Batch) -> BTreeSet<String> {
    batch
        .sets
        .values()
        .filter(|s| kind(s) == set_type::NODE)
        .filter_map(|s| s.labels.get(LABEL_NODENAME).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(
        kind: &str,
        labels: &[(&str, &str)],
        values: &[(&'static str, MetricValue)],
    ) -> MetricSet {
        let mut s = MetricSet::default();
        std::sync::Arc::make_mut(&mut s.labels).insert("type".into(), kind.into());
        for (k, v) in labels {
            std::sync::Arc::make_mut(&mut s.labels).insert(k.to_string(), v.to_string());
        }
        for (k, v) in values {
            s.values.insert(*k, *v);
        }
        s
    }

    #[test]
    fn aggregates_like_heapster() {
        use MetricValue::*;
        let mut b = Batch {
            timestamp: chrono::Utc::now(),
            sets: BTreeMap::new(),
        };
        let pl = [
            ("namespace_name", "ns1"),
            ("pod_name", "p"),
            ("nodename", "n1"),
            ("pod_id", "u1"),
        ];
        b.sets.insert(
            "node:n1".into(),
            set(
                "node",
                &[("nodename", "n1")],
                &[
                    ("cpu/usage_rate", Int(500)),
                    ("memory/usage", Int(600)),
                    ("memory/node_allocatable", Float(1200.0)),
                    ("cpu/node_allocatable", Float(2000.0)),
                ],
            ),
        );
        // The source gave the pod's memory but not the rate: the rate is summed, memory kept.
        b.sets.insert(
            "namespace:ns1/pod:p".into(),
            set(
                "pod",
                &pl,
                &[("memory/usage", Int(100)), ("cpu/usage", Int(5))],
            ),
        );
        let mut c1 = set(
            "pod_container",
            &pl,
            &[
                ("cpu/usage_rate", Int(10)),
                ("memory/usage", Int(30)),
                ("cpu/request", Int(100)),
                ("cpu/usage", Int(99)),
                ("network/rx_rate", Float(1.5)),
            ],
        );
        std::sync::Arc::make_mut(&mut c1.labels).insert("container_name".into(), "a".into());
        let mut c2 = set(
            "pod_container",
            &pl,
            &[
                ("cpu/usage_rate", Int(20)),
                ("memory/usage", Int(40)),
                ("cpu/request", Int(200)),
                ("network/rx_rate", Float(2.0)),
            ],
        );
        std::sync::Arc::make_mut(&mut c2.labels).insert("container_name".into(), "b".into());
        b.sets.insert("namespace:ns1/pod:p/container:a".into(), c1);
        b.sets.insert("namespace:ns1/pod:p/container:b".into(), c2);
        // A pod known only through its container gets a set of its own.
        let ql = [
            ("namespace_name", "ns2"),
            ("pod_name", "q"),
            ("nodename", "n1"),
            ("container_name", "x"),
        ];
        b.sets.insert(
            "namespace:ns2/pod:q/container:x".into(),
            set(
                "pod_container",
                &ql,
                &[("cpu/usage_rate", Int(7)), ("memory/usage", Int(8))],
            ),
        );

        pods(&mut b);
        namespaces_nodes_cluster(&mut b);
        node_utilization(&mut b);

        let p = &b.sets["namespace:ns1/pod:p"];
        assert_eq!(p.values["cpu/usage_rate"], Int(30));
        assert_eq!(
            p.values["memory/usage"],
            Int(100),
            "pod-level value from the source wins"
        );
        assert_eq!(p.values["cpu/request"], Int(300));
        assert_eq!(
            p.values["cpu/usage"],
            Int(5),
            "cumulative metrics are not summed"
        );
        assert_eq!(p.values["network/rx_rate"], Float(3.5));
        let q = &b.sets["namespace:ns2/pod:q"];
        assert_eq!(q.labels["type"], "pod");
        assert!(!q.labels.contains_key("container_name"));
        assert_eq!(b.sets["namespace:ns1"].values["cpu/usage_rate"], Int(30));
        assert_eq!(b.sets["namespace:ns1"].labels["type"], "ns");
        let cl = &b.sets["cluster"];
        assert_eq!(cl.values["cpu/usage_rate"], Int(37));
        assert_eq!(cl.values["memory/usage"], Int(108));
        assert_eq!(cl.labels["type"], "cluster");
        let n = &b.sets["node:n1"];
        assert_eq!(n.values["cpu/request"], Int(300));
        assert_eq!(
            n.values["cpu/usage_rate"],
            Int(500),
            "node usage stays the node's own"
        );
        assert_eq!(n.values["cpu/node_utilization"], Float(0.25));
        assert_eq!(n.values["cpu/node_reservation"], Float(0.15));
        assert_eq!(n.values["memory/node_utilization"], Float(0.5));
    }
}
