//! Turns a kubelet Summary document into Heapster's metric sets (heapster
//! metrics/sources/summary/summary.go): node, system containers, pods and their containers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use vigil_collector::summary::{
    ContainerStats, CpuStats, FsStats, MemoryStats, NetworkStats, NodeStats, PodStats, Summary,
    VigilSpec,
};

use super::names::*;
use crate::batch::{
    intern_name, resource_labels, set_type, Batch, LabeledMetric, MetricLabels, MetricSet,
    MetricValue, Name,
};

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

fn scrape_time(
    cpu: Option<&CpuStats>,
    mem: Option<&MemoryStats>,
    net: Option<&NetworkStats>,
) -> Option<DateTime<Utc>> {
    cpu.and_then(|c| c.time)
        .or_else(|| mem.and_then(|m| m.time))
        .or_else(|| net.and_then(|n| n.time))
}

fn uptime(set: &mut MetricSet, start: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    if let Some(start) = start {
        let ms = (now - start).num_milliseconds().max(0);
        set.values.insert(UPTIME, MetricValue::Int(ms));
    }
}

fn cpu(set: &mut MetricSet, c: Option<&CpuStats>) {
    if let Some(c) = c {
        int(set, CPU_USAGE, c.usage_core_nano_seconds);
    }
}

fn memory(set: &mut MetricSet, m: Option<&MemoryStats>) {
    if let Some(m) = m {
        int(set, MEMORY_USAGE, m.usage_bytes);
        int(set, MEMORY_WORKING_SET, m.working_set_bytes);
        int(set, MEMORY_RSS, m.rss_bytes);
        int(set, MEMORY_PAGE_FAULTS, m.page_faults);
        int(set, MEMORY_MAJOR_PAGE_FAULTS, m.major_page_faults);
    }
}

fn network(set: &mut MetricSet, n: Option<&NetworkStats>) {
    if let Some(n) = n {
        // The inlined default interface, as Heapster reads it.
        let i = &n.default_interface;
        int(set, NETWORK_RX, i.rx_bytes);
        int(set, NETWORK_RX_ERRORS, i.rx_errors);
        int(set, NETWORK_TX, i.tx_bytes);
        int(set, NETWORK_TX_ERRORS, i.tx_errors);
    }
}

fn fs(set: &mut MetricSet, resource_id: &str, f: Option<&FsStats>) {
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

fn container(
    labels: &BTreeMap<String, String>,
    kind: &str,
    name: &str,
    c: &ContainerStats,
    now: DateTime<Utc>,
) -> MetricSet {
    let mut set = MetricSet {
        create_time: c.start_time,
        scrape_time: scrape_time(c.cpu.as_ref(), c.memory.as_ref(), None),
        labels: std::sync::Arc::new(labels.clone()),
        ..MetricSet::default()
    };
    std::sync::Arc::make_mut(&mut set.labels).insert(LABEL_TYPE.to_string(), kind.to_string());
    std::sync::Arc::make_mut(&mut set.labels)
        .insert(LABEL_CONTAINER_NAME.to_string(), name.to_string());
    uptime(&mut set, c.start_time, now);
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
        let l: MetricLabels = std::sync::Arc::new(BTreeMap::from([
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
    set
}

fn node(batch: &mut Batch, name: &str, n: &NodeStats, now: DateTime<Utc>) {
    let labels = base_labels(name);
    let mut set = MetricSet {
        create_time: n.start_time,
        scrape_time: scrape_time(n.cpu.as_ref(), n.memory.as_ref(), n.network.as_ref()),
        labels: std::sync::Arc::new(labels.clone()),
        ..MetricSet::default()
    };
    std::sync::Arc::make_mut(&mut set.labels)
        .insert(LABEL_TYPE.to_string(), set_type::NODE.to_string());
    uptime(&mut set, n.start_time, now);
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
    batch.sets.insert(node_key(name), set);
    for c in &n.system_containers {
        let cname = system_container_name(&c.name);
        batch.sets.insert(
            node_container_key(name, cname),
            container(&labels, set_type::SYS_CONTAINER, cname, c, now),
        );
    }
}

fn pod(batch: &mut Batch, node_name: &str, p: &PodStats, now: DateTime<Utc>) {
    let r = &p.pod_ref;
    let mut labels = base_labels(node_name);
    labels.insert(LABEL_POD_ID.to_string(), r.uid.clone());
    labels.insert(LABEL_POD_NAME.to_string(), r.name.clone());
    labels.insert(LABEL_NAMESPACE_NAME.to_string(), r.namespace.clone());
    let mut set = MetricSet {
        create_time: p.start_time,
        scrape_time: scrape_time(p.cpu.as_ref(), p.memory.as_ref(), p.network.as_ref()),
        labels: std::sync::Arc::new(labels.clone()),
        ..MetricSet::default()
    };
    std::sync::Arc::make_mut(&mut set.labels)
        .insert(LABEL_TYPE.to_string(), set_type::POD.to_string());
    uptime(&mut set, p.start_time, now);
    cpu(&mut set, p.cpu.as_ref());
    memory(&mut set, p.memory.as_ref());
    network(&mut set, p.network.as_ref());
    for v in &p.volume {
        fs(&mut set, &format!("Volume:{}", v.name), Some(&v.fs));
    }
    int(
        &mut set,
        EPHEMERAL_STORAGE_USAGE,
        p.ephemeral_storage.as_ref().and_then(|f| f.used_bytes),
    );
    batch.sets.insert(pod_key(&r.namespace, &r.name), set);
    for c in &p.containers {
        let mut set = container(&labels, set_type::POD_CONTAINER, &c.name, c, now);
        if let Some(spec) = &c.vigil_spec {
            derived_requests_and_limits(&mut set, spec);
        }
        batch
            .sets
            .insert(pod_container_key(&r.namespace, &r.name, &c.name), set);
    }
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

/// Decodes one node's document into `batch`. `fallback_name` names the node when the document
/// does not; `now` is the batch time (uptime is measured to it).
pub fn decode(batch: &mut Batch, summary: &Summary, fallback_name: &str, now: DateTime<Utc>) {
    let name = if summary.node.node_name.is_empty() {
        fallback_name
    } else {
        summary.node.node_name.as_str()
    };
    node(batch, name, &summary.node, now);
    for p in &summary.pods {
        pod(batch, name, p, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_document_decodes_to_heapster_sets() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let summary: Summary = serde_json::from_str(&doc).unwrap();
        let now = "2024-01-01T00:10:00Z".parse().unwrap();
        let mut b = Batch {
            timestamp: now,
            sets: BTreeMap::new(),
        };
        decode(&mut b, &summary, "ignored", now);
        let keys: Vec<&str> = b.sets.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            [
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

    fn with_vigil_spec(spec: serde_json::Value) -> Summary {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["pods"][0]["containers"][0]["vigilSpec"] = spec;
        serde_json::from_value(v).unwrap()
    }

    fn process(summary: Summary, info: Option<super::super::enrich::ClusterInfo>) -> Batch {
        let mut p = super::super::Processor::new(std::time::Duration::from_secs(600));
        p.cluster_info = info.map(std::sync::Arc::new);
        let doc = super::super::NodeDoc {
            fallback_name: "fallback".into(),
            url: "http://127.0.0.1:1".into(),
            summary,
            cpu_cores: Some(2.0),
        };
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
        let b = process(serde_json::from_str(&text).unwrap(), None);
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
