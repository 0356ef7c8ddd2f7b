//! Wire types the collector serves and the aggregator pulls: the kubelet Summary API
//! (`/stats/summary`, k8s.io/kubelet/pkg/apis/stats/v1alpha1) at the crate root, and the problem
//! detector's `/conditions` and `/problems/events` documents in [`problems`].
//!
//! Serde types only: no I/O, no collection or processing, so both sides agree on one definition
//! of each document without depending on each other.
//!
//! Field names follow the kubelet's JSON exactly. Optional figures are `Option` and omitted when
//! absent, as the kubelet's pointer fields are. Times are RFC 3339 with sub-second precision
//! (the kubelet writes whole seconds; Go's and our parsers accept both).

pub mod problems;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A point in time as the Summary API writes it.
pub type Time = DateTime<Utc>;

/// The whole `/stats/summary` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub node: NodeStats,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub pods: Vec<PodStats>,
}

/// Figures of the node itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    /// `kubelet`, `runtime`, `misc`, `pods`.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub system_containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
}

/// Process limits of the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RlimitStats {
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxpid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curproc: Option<i64>,
}

/// Filesystems of the container runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_fs: Option<FsStats>,
}

/// Figures of one pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub volume: Vec<VolumeStats>,
    #[serde(rename = "ephemeral-storage", skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<FsStats>,
    #[serde(rename = "process_stats", skip_serializing_if = "Option::is_none")]
    pub process_stats: Option<ProcessStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
}

/// Which pod a set of figures belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// Figures of one container (or one system container of the node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub accelerators: Vec<AcceleratorStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub user_defined_metrics: Vec<UserDefinedMetric>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapStats>,
    /// vigil-only extension (a kubelet never sends it): the container's cgroup limits and
    /// weights, from which a Heapster-style aggregator derives `cpu/request`, `cpu/limit`,
    /// `memory/request` and `memory/limit` when it has no Kubernetes API pod specs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vigil_spec: Option<VigilSpec>,
}

/// A container's cgroup limits and weights as the collector read them (vigil extension of the
/// Summary API). Every figure is omitted when the cgroup does not have it or it is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VigilSpec {
    /// cgroup v1 `cpu.shares`, or v2 `cpu.weight` converted to shares (2 + (w − 1) × 262142 / 9999).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<u64>,
    /// CFS quota per period in microseconds (v1 `cpu.cfs_quota_us`, v2 `cpu.max`); absent = no quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_quota_micros: Option<u64>,
    /// CFS period in microseconds (v1 `cpu.cfs_period_us`, v2 `cpu.max`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_period_micros: Option<u64>,
    /// v1 `memory.limit_in_bytes` / v2 `memory.max`; absent = unlimited (or ≥ 2^62).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
    /// v2 `memory.min` (cgroup v1 has no equivalent; the soft limit is not a request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_min_bytes: Option<u64>,
}

/// CPU figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Option<Time>,
    /// Instantaneous usage in nanocores, from the last two samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// Cumulative CPU time in core-nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Memory figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub psi: Option<PsiStats>,
}

/// Swap figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SwapStats {
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swap_usage_bytes: Option<u64>,
}

/// Pressure stall information (`cpu|memory|io.pressure`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PsiStats {
    pub full: PsiData,
    pub some: PsiData,
}

/// One line of a PSI file; `total` in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PsiData {
    pub total: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// Counters of one network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_errors: Option<u64>,
}

/// Network figures: the default interface inlined, plus every interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    pub time: Option<Time>,
    #[serde(flatten)]
    pub default_interface: InterfaceStats,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub interfaces: Vec<InterfaceStats>,
}

/// Filesystem figures (node fs, imageFs, rootfs, logs, ephemeral-storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// A pod volume: filesystem figures plus its name and claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStats {
    #[serde(flatten)]
    pub fs: FsStats,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pvc_ref: Option<PvcReference>,
    /// Not on the wire: the volume lies on the node filesystem (counted in ephemeral-storage).
    #[serde(rename = "local_ephemeral", skip)]
    pub local_ephemeral: bool,
}

/// The PersistentVolumeClaim behind a volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PvcReference {
    pub name: String,
    pub namespace: String,
}

/// Process count of a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStats {
    #[serde(rename = "process_count", skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u64>,
}

/// An accelerator (GPU) attached to a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AcceleratorStats {
    pub make: String,
    pub model: String,
    pub id: String,
    pub memory_total: u64,
    pub memory_used: u64,
    pub duty_cycle: u64,
}

/// A metric a container defines itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct UserDefinedMetric {
    pub name: String,
    #[serde(rename = "type")]
    pub metric_type: String,
    pub units: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub time: Option<Time>,
    pub value: f64,
}

/// Go's encoding/json writes a nil slice as `null`; the kubelet does that for pods without
/// containers, volumes or interfaces. Accept `null` as an empty list.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document as a real kubelet writes it (trimmed from a 1.28 node) must parse, and
    /// what we write must parse back to the same value.
    #[test]
    fn kubelet_document_round_trips() {
        let doc = r#"{
 "node": {
  "nodeName": "node-1",
  "systemContainers": [{"name": "kubelet", "startTime": "2024-01-01T00:00:00Z",
     "cpu": {"time": "2024-01-01T00:10:00Z", "usageNanoCores": 12000000, "usageCoreNanoSeconds": 900000000000},
     "memory": {"time": "2024-01-01T00:10:00Z", "usageBytes": 100, "workingSetBytes": 90, "rssBytes": 80, "pageFaults": 7, "majorPageFaults": 1}}],
  "startTime": "2024-01-01T00:00:00Z",
  "cpu": {"time": "2024-01-01T00:10:00Z", "usageNanoCores": 250000000, "usageCoreNanoSeconds": 3000000000000},
  "memory": {"time": "2024-01-01T00:10:00Z", "availableBytes": 1000, "usageBytes": 2000, "workingSetBytes": 1500, "rssBytes": 800, "pageFaults": 10, "majorPageFaults": 2},
  "network": {"time": "2024-01-01T00:10:00Z", "name": "eth0", "rxBytes": 1, "rxErrors": 0, "txBytes": 2, "txErrors": 0,
     "interfaces": [{"name": "eth0", "rxBytes": 1, "rxErrors": 0, "txBytes": 2, "txErrors": 0}]},
  "fs": {"time": "2024-01-01T00:10:00Z", "availableBytes": 5, "capacityBytes": 10, "usedBytes": 5, "inodesFree": 9, "inodes": 10, "inodesUsed": 1},
  "runtime": {"imageFs": {"time": "2024-01-01T00:10:00Z", "availableBytes": 5, "capacityBytes": 10, "usedBytes": 3}},
  "rlimit": {"time": "2024-01-01T00:10:00Z", "maxpid": 4194304, "curproc": 300}
 },
 "pods": [{
  "podRef": {"name": "web-0", "namespace": "default", "uid": "0a1b"},
  "startTime": "2024-01-01T00:01:00Z",
  "containers": [{"name": "web", "startTime": "2024-01-01T00:01:05Z",
     "cpu": {"time": "2024-01-01T00:10:00Z", "usageNanoCores": 1000, "usageCoreNanoSeconds": 2000},
     "memory": {"time": "2024-01-01T00:10:00Z", "usageBytes": 10, "workingSetBytes": 9, "rssBytes": 8, "pageFaults": 1, "majorPageFaults": 0},
     "rootfs": {"time": "2024-01-01T00:10:00Z", "usedBytes": 4096, "inodesUsed": 3},
     "logs": {"time": "2024-01-01T00:10:00Z", "usedBytes": 8192}}],
  "cpu": {"time": "2024-01-01T00:10:00Z", "usageNanoCores": 1000, "usageCoreNanoSeconds": 2000},
  "volume": [{"time": "2024-01-01T00:10:00Z", "usedBytes": 1, "name": "data", "pvcRef": {"name": "data-web-0", "namespace": "default"}}],
  "ephemeral-storage": {"time": "2024-01-01T00:10:00Z", "usedBytes": 12288},
  "process_stats": {"process_count": 3}
 }]
}"#;
        let summary: Summary = serde_json::from_str(doc).expect("kubelet document parses");
        assert_eq!(summary.node.node_name, "node-1");
        assert_eq!(summary.node.system_containers[0].name, "kubelet");
        let net = summary.node.network.as_ref().unwrap();
        assert_eq!(net.default_interface.name, "eth0");
        assert_eq!(net.interfaces.len(), 1);
        let pod = &summary.pods[0];
        assert_eq!(pod.pod_ref.uid, "0a1b");
        assert_eq!(pod.volume[0].name, "data");
        assert_eq!(pod.volume[0].fs.used_bytes, Some(1));
        assert_eq!(
            pod.ephemeral_storage.as_ref().unwrap().used_bytes,
            Some(12288)
        );
        assert_eq!(pod.process_stats.as_ref().unwrap().process_count, Some(3));

        let written = serde_json::to_string(&summary).unwrap();
        for key in [
            "\"nodeName\"",
            "\"usageNanoCores\"",
            "\"ephemeral-storage\"",
            "\"podRef\"",
            "\"process_count\"",
            "\"imageFs\"",
            "\"workingSetBytes\"",
        ] {
            assert!(written.contains(key), "{key} missing from {written}");
        }
        let back: Summary = serde_json::from_str(&written).unwrap();
        assert_eq!(back, summary);
    }

    /// Go writes nil slices as `null`: every list accepts it as empty.
    #[test]
    fn null_lists_are_empty() {
        let doc = r#"{
 "node": {"nodeName": "n", "systemContainers": null,
   "network": {"name": "eth0", "rxBytes": 1, "interfaces": null}},
 "pods": [{"podRef": {"name": "p", "namespace": "ns", "uid": "u"},
   "containers": null, "volume": null,
   "network": {"name": "eth0", "interfaces": null}},
  {"podRef": {"name": "q", "namespace": "ns", "uid": "v"},
   "containers": [{"name": "c", "accelerators": null, "userDefinedMetrics": null}]}]
}"#;
        let s: Summary = serde_json::from_str(doc).expect("null lists parse");
        assert!(s.node.system_containers.is_empty());
        assert!(s.node.network.as_ref().unwrap().interfaces.is_empty());
        assert_eq!(
            s.node.network.as_ref().unwrap().default_interface.rx_bytes,
            Some(1)
        );
        let p = &s.pods[0];
        assert!(p.containers.is_empty() && p.volume.is_empty());
        assert!(p.network.as_ref().unwrap().interfaces.is_empty());
        let c = &s.pods[1].containers[0];
        assert!(c.accelerators.is_empty() && c.user_defined_metrics.is_empty());
        let top: Summary =
            serde_json::from_str(r#"{"node":{"nodeName":"n"},"pods":null}"#).unwrap();
        assert!(top.pods.is_empty());
    }

    #[test]
    fn malformed_document_names_the_field() {
        let err = serde_json::from_str::<Summary>(
            r#"{"node":{"nodeName":"n","cpu":{"usageNanoCores":"lots"}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("invalid type"), "{err}");
    }
}
