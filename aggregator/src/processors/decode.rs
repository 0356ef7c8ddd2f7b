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
mod tests {
    use super::*;
    use crate::batch::Batch;

    #[test]
    fn kubelet_document_decodes_to_heapster_sets() {
        let doc = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let b = process(doc, None);
        let keys: Vec<&str> = b.sets.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cluster",
                "namespace:default",
                "namespace:default/pod:web-0",
                "namespace:default/pod:web-0/container:web",
                "node:node-1",
                "node:node-1/container:docker-daemon",
                "node:node-1/container:kubelet",
            ]
        );
        let node = &b.sets["node:node-1"];
        assert_eq!(node.labels["type"], "node");
        assert_eq!(node.labels["hostname"], "node-1");
        assert_eq!(
            node.values["cpu/usage"],
            MetricValue::Int(3_000_000_000_000)
        );
        assert_eq!(node.values["uptime"], MetricValue::Int(600_000));
        assert_eq!(
            node.values["memory/node_capacity"],
            MetricValue::Float(2500.0)
        );
        assert_eq!(node.values["network/rx"], MetricValue::Int(1));
        let fs: Vec<_> = node
            .labeled
            .iter()
            .filter(|m| m.name == "filesystem/usage")
            .collect();
        assert_eq!(fs[0].labels["resource_id"], "/");
        let c = &b.sets["namespace:default/pod:web-0/container:web"];
        assert_eq!(c.labels["type"], "pod_container");
        assert_eq!(c.labels["pod_id"], "0a1b");
        assert_eq!(c.labels["namespace_name"], "default");
        assert_eq!(c.labels["container_name"], "web");
        assert_eq!(
            c.values["ephemeral_storage/usage"],
            MetricValue::Int(4096 + 8192)
        );
        assert!(c
            .labeled
            .iter()
            .any(|m| m.name == "filesystem/usage" && m.labels["resource_id"] == "logs"));
        let pod = &b.sets["namespace:default/pod:web-0"];
        assert!(pod
            .labeled
            .iter()
            .any(|m| m.labels["resource_id"] == "Volume:data"));
        assert_eq!(
            b.sets["node:node-1/container:docker-daemon"].labels["type"],
            "sys_container"
        );
    }

    fn testdata() -> serde_json::Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn sets_of(n: &NodeSets) -> BTreeMap<&str, &MetricSet> {
        n.sets.iter().map(|(k, s)| (k.as_str(), s)).collect()
    }

    /// The second document of a target reuses the label maps of the first (same allocation), so
    /// the rate pass and the store see an unchanged pointer; a pod recreated under the same name
    /// (new UID) and a changed node name get new maps.
    #[test]
    fn label_maps_are_reused_until_the_entity_changes() {
        let body = serde_json::to_vec(&testdata()).unwrap();
        let mut cache = NodeCache::default();
        let a = decode_document(&body, "f", &mut cache).unwrap();
        let b = decode_document(&body, "f", &mut cache).unwrap();
        assert_eq!(a, b);
        for ((ka, sa), (kb, sb)) in a.sets.iter().zip(&b.sets) {
            assert_eq!(ka, kb);
            assert!(Arc::ptr_eq(&sa.labels, &sb.labels), "{ka}");
        }
        let mut v = testdata();
        v["pods"][0]["podRef"]["uid"] = "new-uid".into();
        let c = decode_document(&serde_json::to_vec(&v).unwrap(), "f", &mut cache).unwrap();
        let (b, c) = (sets_of(&b), sets_of(&c));
        let pod = "namespace:default/pod:web-0";
        assert!(!Arc::ptr_eq(&b[pod].labels, &c[pod].labels));
        assert_eq!(c[pod].labels["pod_id"], "new-uid");
        let web = "namespace:default/pod:web-0/container:web";
        assert_eq!(c[web].labels["pod_id"], "new-uid");
        assert!(Arc::ptr_eq(
            &b["node:node-1"].labels,
            &c["node:node-1"].labels
        ));
        v["node"]["nodeName"] = "".into();
        let d =
            decode_document(&serde_json::to_vec(&v).unwrap(), "fallback-7", &mut cache).unwrap();
        assert_eq!(d.node_name, "fallback-7");
        assert_eq!(
            sets_of(&d)["node:fallback-7"].labels["hostname"],
            "fallback-7"
        );
        assert_eq!(sets_of(&d)[web].labels["nodename"], "fallback-7");
    }

    /// Go's `null` lists are empty lists; a bad time, a wrong type or a missing required field
    /// refuses the document with a message naming what is wrong; unread fields are skipped.
    #[test]
    fn nulls_bad_times_and_wrong_types() {
        let mut v = testdata();
        v["pods"][0]["containers"] = serde_json::Value::Null;
        v["pods"][0]["volume"] = serde_json::Value::Null;
        v["node"]["systemContainers"] = serde_json::Value::Null;
        v["node"]["network"]["interfaces"] = serde_json::Value::Null;
        v["pods"][0]["cpu"]["psi"] = serde_json::json!({"full": {"total": 1}});
        let n = decode_document(
            &serde_json::to_vec(&v).unwrap(),
            "f",
            &mut NodeCache::default(),
        )
        .unwrap();
        let keys: Vec<&str> = sets_of(&n).keys().copied().collect();
        assert_eq!(keys, ["namespace:default/pod:web-0", "node:node-1"]);
        // The pod's network is the inlined default interface.
        assert_eq!(
            sets_of(&n)["namespace:default/pod:web-0"].values[NETWORK_TX],
            MetricValue::Int(200)
        );
        let refuse = |v: serde_json::Value| {
            decode_document(
                &serde_json::to_vec(&v).unwrap(),
                "f",
                &mut NodeCache::default(),
            )
            .unwrap_err()
            .to_string()
        };
        let mut v = testdata();
        v["pods"][0]["containers"][0]["cpu"]["time"] = "yesterday".into();
        let e = refuse(v);
        assert!(e.contains("cpu.time") && e.contains("yesterday"), "{e}");
        let mut v = testdata();
        v["node"]["startTime"] = "2024-13-01T00:00:00Z".into();
        assert!(refuse(v).contains("node.startTime"));
        let mut v = testdata();
        v["node"]["memory"]["usageBytes"] = "many".into();
        assert!(refuse(v).contains("invalid type"));
        let mut v = testdata();
        v["pods"][0]["podRef"]
            .as_object_mut()
            .unwrap()
            .remove("uid");
        assert!(refuse(v).contains("missing field `uid`"));
        let mut v = testdata();
        v.as_object_mut().unwrap().remove("node");
        assert!(refuse(v).contains("missing field `node`"));
        assert!(decode_document(
            b"{\"node\": {\"nodeName\": 42, ",
            "f",
            &mut NodeCache::default()
        )
        .is_err());
        // chrono's looser form (a space for the `T`) is still accepted, as before.
        let mut v = testdata();
        v["node"]["startTime"] = "2024-01-01 00:00:00Z".into();
        let n = decode_document(
            &serde_json::to_vec(&v).unwrap(),
            "f",
            &mut NodeCache::default(),
        )
        .unwrap();
        assert_eq!(
            sets_of(&n)["node:node-1"].create_time,
            Some("2024-01-01T00:00:00Z".parse().unwrap())
        );
    }

    /// Regression (#19, item 6): two pods with the same namespace/name in one document no
    /// longer overwrite each other: the first is kept, the second counted every document and
    /// remembered so it is logged once while it lasts.
    #[test]
    fn duplicate_pod_names_keep_the_first_and_are_counted() {
        let mut v = testdata();
        let mut second = v["pods"][0].clone();
        second["podRef"]["uid"] = "other-uid".into();
        second["containers"][0]["memory"]["workingSetBytes"] = 1.into();
        v["pods"].as_array_mut().unwrap().push(second);
        let body = serde_json::to_vec(&v).unwrap();
        let mut cache = NodeCache::default();
        let n = decode_document(&body, "f", &mut cache).unwrap();
        assert_eq!(n.duplicate_pods, 1);
        let web = "namespace:default/pod:web-0/container:web";
        assert_eq!(n.sets.iter().filter(|(k, _)| k == web).count(), 1);
        let sets = sets_of(&n);
        assert_eq!(sets[web].labels["pod_id"], "0a1b");
        assert_ne!(sets[web].values[MEMORY_WORKING_SET], MetricValue::Int(1));
        assert!(cache.duplicated.contains("default/web-0"));
        // The next document still has it: counted again (the log is not repeated).
        assert_eq!(
            decode_document(&body, "f", &mut cache)
                .unwrap()
                .duplicate_pods,
            1
        );
        // Gone: forgotten, so a later duplicate is logged again.
        let clean = serde_json::to_vec(&testdata()).unwrap();
        assert_eq!(
            decode_document(&clean, "f", &mut cache)
                .unwrap()
                .duplicate_pods,
            0
        );
        assert!(cache.duplicated.is_empty());
    }

    /// A document yielding more sets than a node may report is refused before any set is
    /// built (a small document of minimal pods must not cost hundreds of MB).
    #[test]
    fn too_many_sets_are_refused() {
        let mut v = testdata();
        let pod = v["pods"][0].clone();
        let pods: Vec<serde_json::Value> = (0..MAX_SETS_PER_DOCUMENT / 2)
            .map(|i| {
                let mut p = pod.clone();
                p["podRef"]["name"] = format!("p{i}").into();
                p
            })
            .collect();
        v["pods"] = pods.clone().into();
        let e = decode_document(
            &serde_json::to_vec(&v).unwrap(),
            "f",
            &mut NodeCache::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than the 10000"), "{e}");
        // Far more entries than that: refused while parsing, before they are all built.
        let many: Vec<serde_json::Value> = (0..MAX_ENTRIES_PER_DOCUMENT + 1)
            .map(|i| serde_json::json!({"podRef": {"name": format!("p{i}"), "namespace": "n", "uid": "u"}}))
            .collect();
        v["pods"] = many.into();
        let e = decode_document(
            &serde_json::to_vec(&v).unwrap(),
            "f",
            &mut NodeCache::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("more than 20000 list entries"), "{e}");
        // A big but real node (1,000 pods with a container each) is accepted.
        v["pods"] = pods[..1000].to_vec().into();
        assert!(decode_document(
            &serde_json::to_vec(&v).unwrap(),
            "f",
            &mut NodeCache::default()
        )
        .is_ok());
    }

    fn with_vigil_spec(spec: serde_json::Value) -> Vec<u8> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["pods"][0]["containers"][0]["vigilSpec"] = spec;
        serde_json::to_vec(&v).unwrap()
    }

    fn process(body: Vec<u8>, info: Option<super::super::enrich::ClusterInfo>) -> Batch {
        let mut p = super::super::Processor::new(std::time::Duration::from_secs(600));
        p.cluster_info = info.map(std::sync::Arc::new);
        let doc = super::super::Decoder::default()
            .decode("http://127.0.0.1:1", "fallback", Some(2.0), &body)
            .unwrap();
        p.process("2024-01-01T00:10:00Z".parse().unwrap(), &[doc])
    }

    /// A vigil collector's `vigilSpec` yields the four Heapster metrics on the container, and
    /// through aggregation on the pod, namespace, node (with `*/node_reservation`) and cluster.
    #[test]
    fn vigil_spec_derives_requests_limits_and_node_reservation() {
        // shares 256 = 250m × 1024 / 1000; quota 50000 / period 100000 = 500m.
        let summary = with_vigil_spec(serde_json::json!({
            "cpuShares": 256, "cpuQuotaMicros": 50000, "cpuPeriodMicros": 100000,
            "memoryLimitBytes": 1000, "memoryMinBytes": 500
        }));
        let b = process(summary, None);
        let c = &b.sets["namespace:default/pod:web-0/container:web"];
        assert_eq!(c.values[CPU_REQUEST], MetricValue::Int(250));
        assert_eq!(c.values[CPU_LIMIT], MetricValue::Int(500));
        assert_eq!(c.values[MEMORY_REQUEST], MetricValue::Int(500));
        assert_eq!(c.values[MEMORY_LIMIT], MetricValue::Int(1000));
        for key in [
            "namespace:default/pod:web-0",
            "namespace:default",
            "node:node-1",
            "cluster",
        ] {
            let s = &b.sets[key];
            assert_eq!(s.values[CPU_REQUEST], MetricValue::Int(250), "{key}");
            assert_eq!(s.values[MEMORY_LIMIT], MetricValue::Int(1000), "{key}");
        }
        let n = &b.sets["node:node-1"];
        // 250m of 2 cores; 500 B of memory capacity available 1000 + working set 1500.
        assert_eq!(n.values[CPU_NODE_RESERVATION], MetricValue::Float(0.125));
        assert_eq!(n.values[MEMORY_NODE_RESERVATION], MetricValue::Float(0.2));
    }

    /// Kubelet minimum shares (2), no quota, unlimited memory: all four are 0 ("not set").
    #[test]
    fn vigil_spec_without_limits_is_zero() {
        assert_eq!(
            derive_requests_and_limits(&VigilSpec {
                cpu_shares: Some(2),
                cpu_period_micros: Some(100_000),
                memory_limit_bytes: Some(u64::MAX),
                ..VigilSpec::default()
            }),
            (0, 0, 0, 0)
        );
        // 100m → ⌊102.4⌋ = 102 shares → ⌈99.6⌉ = 100m; quota 150000 / period 100000 → 1500m.
        assert_eq!(
            derive_requests_and_limits(&VigilSpec {
                cpu_shares: Some(102),
                cpu_quota_micros: Some(150_000),
                cpu_period_micros: Some(100_000),
                ..VigilSpec::default()
            }),
            (100, 1500, 0, 0)
        );
        // A kubelet document has no vigilSpec: no derived metrics.
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let b = process(text.into_bytes(), None);
        let c = &b.sets["namespace:default/pod:web-0/container:web"];
        assert!(!c.values.contains_key(CPU_REQUEST) && !c.values.contains_key(MEMORY_LIMIT));
    }

    /// With the Kubernetes API source, the pod spec's values win over the derived ones.
    #[test]
    fn kubernetes_values_win_over_vigil_spec() {
        use super::super::enrich::{ClusterInfo, PodInfo, Resources};
        let summary = with_vigil_spec(serde_json::json!({
            "cpuShares": 256, "cpuQuotaMicros": 50000, "cpuPeriodMicros": 100000,
            "memoryLimitBytes": 1000
        }));
        let mut info = ClusterInfo::default();
        info.pods.insert(
            ("default".into(), "web-0".into()),
            PodInfo {
                labels: String::new(),
                containers: [(
                    "web".to_string(),
                    Resources {
                        cpu_request: 100,
                        cpu_limit: 200,
                        memory_request: 300,
                        memory_limit: 400,
                        ..Resources::default()
                    },
                )]
                .into(),
            },
        );
        let b = process(summary, Some(info));
        let c = &b.sets["namespace:default/pod:web-0/container:web"];
        assert_eq!(c.values[CPU_REQUEST], MetricValue::Int(100));
        assert_eq!(c.values[CPU_LIMIT], MetricValue::Int(200));
        assert_eq!(c.values[MEMORY_REQUEST], MetricValue::Int(300));
        assert_eq!(c.values[MEMORY_LIMIT], MetricValue::Int(400));
        assert_eq!(
            b.sets["node:node-1"].values[CPU_REQUEST],
            MetricValue::Int(100)
        );
    }
}
