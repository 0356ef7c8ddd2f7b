//! Turns a kubelet Summary document into Heapster's metric sets (heapster
//! metrics/sources/summary/summary.go): node, system containers, pods and their containers,
//! straight from the response body (borrowed strings, no intermediate `Summary` tree).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use vigil_summary::VigilSpec;

use super::names::*;
use super::wire;
use crate::batch::{
    intern_name, resource_labels, set_type, LabeledMetric, MetricLabels, MetricSet, MetricValue,
    Name, SetLabels,
};

/// Why a node's document was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{field} is not an RFC 3339 time: {value:?}")]
    Time { field: &'static str, value: String },
    #[error("{sets} metric sets (node, system containers, pods, containers), more than the {limit} a node may report")]
    TooManySets { sets: usize, limit: usize },
    #[error("more than {limit} list entries (pods, containers, volumes, ...), more than a node may report")]
    TooManyEntries { limit: usize },
}

/// The most list entries (pods, containers, system containers, volumes, accelerators, custom
/// metrics) one document may hold, counted while it parses.
pub const MAX_ENTRIES_PER_DOCUMENT: usize = 2 * MAX_SETS_PER_DOCUMENT;

/// The most metric sets one node's document may yield: 10,000 is 8× a node at the kubelet's
/// 110-pod maximum with 10 containers a pod. Each set costs a few KB once decoded, rated and
/// stored, so without it an 8 MiB document of 95,000 minimal pods cost 785 MiB.
pub const MAX_SETS_PER_DOCUMENT: usize = 10_000;

/// Heapster's legacy names of the kubelet's system containers.
pub fn system_container_name(name: &str) -> &str {
    match name {
        "runtime" => "docker-daemon",
        "misc" => "system",
        other => other,
    }
}

pub fn node_key(node: &str) -> String {
    format!("node:{node}")
}
pub fn node_container_key(node: &str, container: &str) -> String {
    format!("node:{node}/container:{container}")
}
pub fn namespace_key(ns: &str) -> String {
    format!("namespace:{ns}")
}
pub fn pod_key(ns: &str, pod: &str) -> String {
    format!("namespace:{ns}/pod:{pod}")
}
pub fn pod_container_key(ns: &str, pod: &str, container: &str) -> String {
    format!("namespace:{ns}/pod:{pod}/container:{container}")
}

/// The label maps one target's previous document decoded to, by set key, with the pod UID they
/// were built for: an entity whose node, key and UID are unchanged gets the same `Arc` back (no
/// map built, and the rate pass and the store see the same pointer as last round).
#[derive(Default)]
pub struct NodeCache {
    node: String,
    labels: FxHashMap<String, (String, SetLabels)>,
    /// Pod keys (`namespace/name`) the previous document listed more than once: a duplicate is
    /// logged when it appears, not again while it persists.
    duplicated: rustc_hash::FxHashSet<String>,
}

/// One document's use of a [`NodeCache`]: entries found move from `old` to `new`; what is left
/// in `old` at the end (vanished sets) is dropped.
struct Labels {
    old: FxHashMap<String, (String, SetLabels)>,
    new: FxHashMap<String, (String, SetLabels)>,
}

impl Labels {
    /// The key of a set and its shared labels, reusing last round's when `uid` matches.
    fn get(
        &mut self,
        key: String,
        uid: &str,
        build: impl FnOnce() -> BTreeMap<String, String>,
    ) -> (String, SetLabels) {
        let (key, labels) = match self.old.remove_entry(&key) {
            Some((k, (u, l))) if u == uid => {
                let labels = l.clone();
                self.new.insert(k, (u, l));
                return (key, labels);
            }
            _ => (key, Arc::new(build())),
        };
        self.new
            .insert(key.clone(), (uid.to_string(), labels.clone()));
        (key, labels)
    }
}

/// Parses RFC 3339 times, remembering the last one (a kubelet stamps many figures of a document
/// with the same few times).
#[derive(Default)]
struct Times {
    last: String,
    parsed: Option<DateTime<Utc>>,
}

impl Times {
    fn get(
        &mut self,
        field: &'static str,
        s: Option<&Cow<'_, str>>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let Some(s) = s else { return Ok(None) };
        if self.parsed.is_some() && self.last == **s {
            return Ok(self.parsed);
        }
        // chrono's `FromStr` (what a `DateTime` field deserializes with) accepts a little more
        // than RFC 3339; try the strict fast parser first and fall back to it.
        let t = DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| s.parse::<DateTime<Utc>>())
            .map_err(|_| Error::Time {
                field,
                value: s.to_string(),
            })?;
        self.last.clear();
        self.last.push_str(s);
        self.parsed = Some(t);
        Ok(Some(t))
    }
}

fn int(set: &mut MetricSet, name: Name, v: Option<u64>) {
    if let Some(v) = v {
        set.values
            .insert(name, MetricValue::Int(v.min(i64::MAX as u64) as i64));
    }
}

fn labeled(set: &mut MetricSet, name: Name, labels: &MetricLabels, v: Option<u64>) {
    if let Some(v) = v {
        set.labeled.push(LabeledMetric {
            name,
            labels: labels.clone(),
            value: MetricValue::Int(v.min(i64::MAX as u64) as i64),
        });
    }
}

/// When the figures were read: the CPU's time, else the memory's, else the network's.
fn scrape_time(
    times: &mut Times,
    cpu: Option<&wire::Cpu>,
    mem: Option<&wire::Memory>,
    net: Option<&wire::Network>,
) -> Result<Option<DateTime<Utc>>, Error> {
    if let Some(t) = cpu.and_then(|c| c.time.as_ref()) {
        return times.get("cpu.time", Some(t));
    }
    if let Some(t) = mem.and_then(|m| m.time.as_ref()) {
        return times.get("memory.time", Some(t));
    }
    times.get("network.time", net.and_then(|n| n.time.as_ref()))
}

fn cpu(set: &mut MetricSet, c: Option<&wire::Cpu>) {
    if let Some(c) = c {
        int(set, CPU_USAGE, c.usage_core_nano_seconds);
    }
}

fn memory(set: &mut MetricSet, m: Option<&wire::Memory>) {
    if let Some(m) = m {
        int(set, MEMORY_USAGE, m.usage_bytes);
        int(set, MEMORY_WORKING_SET, m.working_set_bytes);
        int(set, MEMORY_RSS, m.rss_bytes);
        int(set, MEMORY_PAGE_FAULTS, m.page_faults);
        int(set, MEMORY_MAJOR_PAGE_FAULTS, m.major_page_faults);
    }
}

fn network(set: &mut MetricSet, n: Option<&wire::Network>) {
    if let Some(i) = n {
        // The inlined default interface, as Heapster reads it.
        int(set, NETWORK_RX, i.rx_bytes);
        int(set, NETWORK_RX_ERRORS, i.rx_errors);
        int(set, NETWORK_TX, i.tx_bytes);
        int(set, NETWORK_TX_ERRORS, i.tx_errors);
    }
}

fn fs(set: &mut MetricSet, resource_id: &str, f: Option<&wire::Fs>) {
    if let Some(f) = f {
        let labels = resource_labels(resource_id);
        labeled(set, FILESYSTEM_USAGE, &labels, f.used_bytes);
        labeled(set, FILESYSTEM_LIMIT, &labels, f.capacity_bytes);
        labeled(set, FILESYSTEM_AVAILABLE, &labels, f.available_bytes);
        labeled(set, FILESYSTEM_INODES, &labels, f.inodes);
        labeled(set, FILESYSTEM_INODES_FREE, &labels, f.inodes_free);
    }
}

fn base_labels(node: &str) -> BTreeMap<String, String> {
    [
        (LABEL_NODENAME.to_string(), node.to_string()),
        (LABEL_HOSTNAME.to_string(), node.to_string()),
        (LABEL_HOST_ID.to_string(), String::new()),
    ]
    .into()
}

/// A container's labels: the node's (or the pod's) plus `type` and `container_name`.
fn container_labels(
    mut labels: BTreeMap<String, String>,
    kind: &str,
    name: &str,
) -> BTreeMap<String, String> {
    labels.insert(LABEL_TYPE.to_string(), kind.to_string());
    labels.insert(LABEL_CONTAINER_NAME.to_string(), name.to_string());
    labels
}

fn pod_labels(node: &str, r: &wire::PodRef) -> BTreeMap<String, String> {
    let mut labels = base_labels(node);
    labels.insert(LABEL_POD_ID.to_string(), r.uid.to_string());
    labels.insert(LABEL_POD_NAME.to_string(), r.name.to_string());
    labels.insert(LABEL_NAMESPACE_NAME.to_string(), r.namespace.to_string());
    labels
}

fn container(
    labels: SetLabels,
    c: &wire::Container,
    times: &mut Times,
) -> Result<MetricSet, Error> {
    // Sized once: five filesystem figures per filesystem, three per accelerator (a vector
    // grown by pushes would hold up to 16 slots for a container's 10).
    let n_labeled =
        5 * (c.rootfs.is_some() as usize + c.logs.is_some() as usize) + 3 * c.accelerators.len();
    let mut set = MetricSet {
        create_time: times.get("startTime", c.start_time.as_ref())?,
        scrape_time: scrape_time(times, c.cpu.as_ref(), c.memory.as_ref(), None)?,
        labels,
        labeled: Vec::with_capacity(n_labeled),
        ..MetricSet::default()
    };
    cpu(&mut set, c.cpu.as_ref());
    memory(&mut set, c.memory.as_ref());
    fs(&mut set, "/", c.rootfs.as_ref());
    fs(&mut set, "logs", c.logs.as_ref());
    let eph = [c.rootfs.as_ref(), c.logs.as_ref()]
        .iter()
        .flatten()
        .filter_map(|f| f.used_bytes)
        .fold(None, |a: Option<u64>, v| {
            Some(a.unwrap_or(0).saturating_add(v))
        });
    int(&mut set, EPHEMERAL_STORAGE_USAGE, eph);
    for acc in &c.accelerators {
        let l: MetricLabels = Arc::new(BTreeMap::from([
            ("make".to_string(), acc.make.clone()),
            ("model".to_string(), acc.model.clone()),
            ("accelerator_id".to_string(), acc.id.clone()),
        ]));
        labeled(
            &mut set,
            ACCELERATOR_MEMORY_TOTAL,
            &l,
            Some(acc.memory_total),
        );
        labeled(&mut set, ACCELERATOR_MEMORY_USED, &l, Some(acc.memory_used));
        labeled(&mut set, ACCELERATOR_DUTY_CYCLE, &l, Some(acc.duty_cycle));
    }
    for udm in &c.user_defined_metrics {
        if matches!(udm.metric_type.as_str(), "gauge" | "cumulative" | "delta") {
            set.values.insert(
                intern_name(&format!("custom/{}", udm.name)),
                MetricValue::Float(udm.value),
            );
        }
    }
    Ok(set)
}

fn node(
    out: &mut Vec<(String, MetricSet)>,
    cache: &mut Labels,
    times: &mut Times,
    name: &str,
    n: &wire::Node,
) -> Result<(), Error> {
    let (key, labels) = cache.get(node_key(name), "", || {
        let mut l = base_labels(name);
        l.insert(LABEL_TYPE.to_string(), set_type::NODE.to_string());
        l
    });
    let mut set = MetricSet {
        create_time: times.get("node.startTime", n.start_time.as_ref())?,
        scrape_time: scrape_time(times, n.cpu.as_ref(), n.memory.as_ref(), n.network.as_ref())?,
        labels,
        ..MetricSet::default()
    };
    cpu(&mut set, n.cpu.as_ref());
    memory(&mut set, n.memory.as_ref());
    network(&mut set, n.network.as_ref());
    fs(&mut set, "/", n.fs.as_ref());
    int(
        &mut set,
        EPHEMERAL_STORAGE_USAGE,
        n.fs.as_ref().and_then(|f| f.used_bytes),
    );
    // The Summary API carries no capacity: memory capacity = available + working set (what the
    // kubelet's own eviction signal uses); allocatable is taken equal to capacity.
    if let Some(m) = &n.memory {
        if let (Some(a), Some(w)) = (m.available_bytes, m.working_set_bytes) {
            let cap = a.saturating_add(w) as f64;
            set.values
                .insert(MEMORY_NODE_CAPACITY, MetricValue::Float(cap));
            set.values
                .insert(MEMORY_NODE_ALLOCATABLE, MetricValue::Float(cap));
        }
    }
    if let Some(f) = &n.fs {
        if let Some(cap) = f.capacity_bytes {
            set.values.insert(
                EPHEMERAL_STORAGE_NODE_CAPACITY,
                MetricValue::Float(cap as f64),
            );
            set.values.insert(
                EPHEMERAL_STORAGE_NODE_ALLOCATABLE,
                MetricValue::Float(cap as f64),
            );
        }
    }
    out.push((key, set));
    for c in &n.system_containers {
        let cname = system_container_name(&c.name);
        let (key, labels) = cache.get(node_container_key(name, cname), "", || {
            container_labels(base_labels(name), set_type::SYS_CONTAINER, cname)
        });
        out.push((key, container(labels, c, times)?));
    }
    Ok(())
}

fn pod(
    out: &mut Vec<(String, MetricSet)>,
    cache: &mut Labels,
    times: &mut Times,
    node_name: &str,
    p: &wire::Pod,
) -> Result<(), Error> {
    let r = &p.pod_ref;
    let (key, labels) = cache.get(pod_key(&r.namespace, &r.name), &r.uid, || {
        let mut l = pod_labels(node_name, r);
        l.insert(LABEL_TYPE.to_string(), set_type::POD.to_string());
        l
    });
    let mut set = MetricSet {
        create_time: times.get("pod.startTime", p.start_time.as_ref())?,
        scrape_time: scrape_time(times, p.cpu.as_ref(), p.memory.as_ref(), p.network.as_ref())?,
        labels,
        labeled: Vec::with_capacity(5 * p.volume.len()),
        ..MetricSet::default()
    };
    cpu(&mut set, p.cpu.as_ref());
    memory(&mut set, p.memory.as_ref());
    network(&mut set, p.network.as_ref());
    for v in &p.volume {
        fs(&mut set, &format!("Volume:{}", v.name), Some(&v.fs()));
    }
    int(
        &mut set,
        EPHEMERAL_STORAGE_USAGE,
        p.ephemeral_storage.as_ref().and_then(|f| f.used_bytes),
    );
    out.push((key, set));
    for c in &p.containers {
        let (key, labels) = cache.get(
            pod_container_key(&r.namespace, &r.name, &c.name),
            &r.uid,
            || container_labels(pod_labels(node_name, r), set_type::POD_CONTAINER, &c.name),
        );
        let mut set = container(labels, c, times)?;
        if let Some(spec) = &c.vigil_spec {
            derived_requests_and_limits(&mut set, spec);
        }
        out.push((key, set));
    }
    Ok(())
}

/// One node's document decoded: its name and its sets, node first.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSets {
    pub node_name: String,
    pub sets: Vec<(String, MetricSet)>,
    /// Pods dropped because an earlier pod of the document had the same namespace and name.
    pub duplicate_pods: u64,
}

/// Decodes one node's document. `fallback_name` names the node when the document does not;
/// `cache` is this target's (label maps of its previous document). `uptime` is left to the
/// processor, which knows the round's time.
pub fn decode_document(
    body: &[u8],
    fallback_name: &str,
    cache: &mut NodeCache,
) -> Result<NodeSets, Error> {
    let (doc, exhausted) = wire::with_entry_budget(MAX_ENTRIES_PER_DOCUMENT, || {
        serde_json::from_slice::<wire::Summary>(body)
    });
    if exhausted {
        return Err(Error::TooManyEntries {
            limit: MAX_ENTRIES_PER_DOCUMENT,
        });
    }
    let doc = doc?;
    let name: &str = if doc.node.node_name.is_empty() {
        fallback_name
    } else {
        &doc.node.node_name
    };
    let old = if cache.node == name {
        std::mem::take(&mut cache.labels)
    } else {
        FxHashMap::default()
    };
    let mut labels = Labels {
        new: FxHashMap::with_capacity_and_hasher(old.len(), Default::default()),
        old,
    };
    let containers: usize = doc.pods.iter().map(|p| p.containers.len()).sum();
    let n_sets = 1 + doc.node.system_containers.len() + doc.pods.len() + containers;
    if n_sets > MAX_SETS_PER_DOCUMENT {
        return Err(Error::TooManySets {
            sets: n_sets,
            limit: MAX_SETS_PER_DOCUMENT,
        });
    }
    let mut sets = Vec::with_capacity(n_sets);
    let mut times = Times::default();
    // Two pods with the same namespace and name would write the same set keys, the second
    // silently replacing the first (and their counters alternating in the rates): the first
    // pod of the document wins, the others are counted and logged once.
    let mut pods_seen: rustc_hash::FxHashMap<(&str, &str), &str> = Default::default();
    let mut duplicated = rustc_hash::FxHashSet::default();
    let mut duplicate_pods = 0;
    let r = (|| {
        node(&mut sets, &mut labels, &mut times, name, &doc.node)?;
        for p in &doc.pods {
            let r = &p.pod_ref;
            let id = (r.namespace.as_ref(), r.name.as_ref());
            if let Some(kept) = pods_seen.insert(id, r.uid.as_ref()) {
                pods_seen.insert(id, kept);
                duplicate_pods += 1;
                let key = format!("{}/{}", r.namespace, r.name);
                if !cache.duplicated.contains(&key) && !duplicated.contains(&key) {
                    tracing::warn!(node = %name, pod = %key, kept_uid = %kept, dropped_uid = %r.uid, "two pods with the same namespace and name in one node's document; keeping the first (logged once while it lasts)");
                }
                duplicated.insert(key);
                continue;
            }
            pod(&mut sets, &mut labels, &mut times, name, p)?;
        }
        Ok(())
    })();
    cache.duplicated = duplicated;
    // Keep what was found even when the document is refused half-way; a refused document's
    // sets are not used.
    cache.labels = labels.new;
    if cache.node != name {
        cache.node = name.to_string();
    }
    r.map(|()| NodeSets {
        node_name: name.to_string(),
        sets,
        duplicate_pods,
    })
}

/// CFS period the kernel uses when none was reported (µs).
const DEFAULT_CFS_PERIOD_US: u64 = 100_000;

/// `(cpu/request, cpu/limit, memory/request, memory/limit)` derived from a container's cgroup
/// limits (the vigil collector's `vigilSpec`), for when no Kubernetes pod spec is available:
///
/// - `cpu/request` (millicores) = ⌈shares × 1000 / 1024⌉. The kubelet writes
///   shares = ⌊request × 1024 / 1000⌋ with a minimum of 2, so shares ≤ 2 means "no request" (0),
///   and rounding up inverts the kubelet's rounding down exactly on cgroup v1. On cgroup v2 the
///   collector converts cpu.weight back to shares, which the weight's coarser scale makes
///   approximate (250m → weight 10 → 237 shares → 232m).
/// - `cpu/limit` (millicores) = quota / period × 1000 (rounded up); no quota → 0.
/// - `memory/limit` (bytes) = memory.max / memory.limit_in_bytes; unlimited (absent, ≥ 2^62) → 0.
/// - `memory/request` (bytes): cgroups do not record it; v2 `memory.min` when set, else 0.
///
/// Zero means "not set", as in Heapster's pod-based enricher.
pub fn derive_requests_and_limits(spec: &VigilSpec) -> (i64, i64, i64, i64) {
    let cpu_request = match spec.cpu_shares {
        Some(s) if s > 2 => (s as u128 * 1000).div_ceil(1024) as i64,
        _ => 0,
    };
    let cpu_limit = match spec.cpu_quota_micros {
        Some(q) if q > 0 => {
            let period = spec
                .cpu_period_micros
                .filter(|p| *p > 0)
                .unwrap_or(DEFAULT_CFS_PERIOD_US);
            ((q as u128 * 1000).div_ceil(period as u128)).min(i64::MAX as u128) as i64
        }
        _ => 0,
    };
    let bytes = |v: Option<u64>| match v {
        Some(b) if b < 1 << 62 => b as i64,
        _ => 0,
    };
    (
        cpu_request,
        cpu_limit,
        bytes(spec.memory_min_bytes),
        bytes(spec.memory_limit_bytes),
    )
}

/// Puts the derived requests and limits on a pod container set. Decoding runs before the
/// Kubernetes enrichment, which overwrites all four from the pod spec when the API server knows
/// the pod, so the Kubernetes values win; a value already present is never replaced here.
fn derived_requests_and_limits(set: &mut MetricSet, spec: &VigilSpec) {
    let (cpu_req, cpu_lim, mem_req, mem_lim) = derive_requests_and_limits(spec);
    for (name, v) in [
        (CPU_REQUEST, cpu_req),
        (CPU_LIMIT, cpu_lim),
        (MEMORY_REQUEST, mem_req),
        (MEMORY_LIMIT, mem_lim),
    ] {
        set.values.entry(name).or_insert(MetricValue::Int(v));
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
