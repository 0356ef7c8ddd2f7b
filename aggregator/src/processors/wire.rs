//! The part of a kubelet Summary document the aggregator reads, deserialized straight from the
//! response body with borrowed strings (no owned `Summary` tree per node per round).
//!
//! Field names and required fields are those of `vigil_collector::summary` (the kubelet's
//! `stats/v1alpha1`); fields Heapster does not read (`usageNanoCores`, `psi`, `swap`, `rlimit`,
//! `runtime`, `interfaces`, `process_stats`, filesystem times) are skipped unparsed.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer};
use vigil_collector::summary::{AcceleratorStats, UserDefinedMetric, VigilSpec};

/// Go writes a nil slice as `null`: accept it as an empty list.
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
pub struct Summary<'a> {
    #[serde(borrow)]
    pub node: Node<'a>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub pods: Vec<Pod<'a>>,
}

#[derive(Deserialize)]
pub struct Node<'a> {
    #[serde(borrow, rename = "nodeName")]
    pub node_name: Cow<'a, str>,
    #[serde(
        borrow,
        rename = "systemContainers",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub system_containers: Vec<Container<'a>>,
    #[serde(borrow, rename = "startTime", default)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cpu: Option<Cpu<'a>>,
    #[serde(borrow, default)]
    pub memory: Option<Memory<'a>>,
    #[serde(borrow, default)]
    pub network: Option<Network<'a>>,
    #[serde(default)]
    pub fs: Option<Fs>,
}

#[derive(Deserialize)]
pub struct PodRef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub namespace: Cow<'a, str>,
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
}

#[derive(Deserialize)]
pub struct Pod<'a> {
    #[serde(borrow, rename = "podRef")]
    pub pod_ref: PodRef<'a>,
    #[serde(borrow, rename = "startTime", default)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub containers: Vec<Container<'a>>,
    #[serde(borrow, default)]
    pub cpu: Option<Cpu<'a>>,
    #[serde(borrow, default)]
    pub memory: Option<Memory<'a>>,
    #[serde(borrow, default)]
    pub network: Option<Network<'a>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub volume: Vec<Volume<'a>>,
    #[serde(rename = "ephemeral-storage", default)]
    pub ephemeral_storage: Option<Fs>,
}

#[derive(Deserialize)]
pub struct Container<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow, rename = "startTime", default)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cpu: Option<Cpu<'a>>,
    #[serde(borrow, default)]
    pub memory: Option<Memory<'a>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub accelerators: Vec<AcceleratorStats>,
    #[serde(default)]
    pub rootfs: Option<Fs>,
    #[serde(default)]
    pub logs: Option<Fs>,
    #[serde(
        rename = "userDefinedMetrics",
        default,
        deserialize_with = "null_as_empty"
    )]
    pub user_defined_metrics: Vec<UserDefinedMetric>,
    #[serde(rename = "vigilSpec", default)]
    pub vigil_spec: Option<VigilSpec>,
}

#[derive(Deserialize)]
pub struct Cpu<'a> {
    #[serde(borrow, default)]
    pub time: Option<Cow<'a, str>>,
    #[serde(rename = "usageCoreNanoSeconds", default)]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Deserialize)]
pub struct Memory<'a> {
    #[serde(borrow, default)]
    pub time: Option<Cow<'a, str>>,
    #[serde(rename = "availableBytes", default)]
    pub available_bytes: Option<u64>,
    #[serde(rename = "usageBytes", default)]
    pub usage_bytes: Option<u64>,
    #[serde(rename = "workingSetBytes", default)]
    pub working_set_bytes: Option<u64>,
    #[serde(rename = "rssBytes", default)]
    pub rss_bytes: Option<u64>,
    #[serde(rename = "pageFaults", default)]
    pub page_faults: Option<u64>,
    #[serde(rename = "majorPageFaults", default)]
    pub major_page_faults: Option<u64>,
}

/// Network figures: the default interface is inlined in the object (read directly here, not
/// through serde's buffering `flatten`); the per-interface list is not read.
#[derive(Deserialize)]
pub struct Network<'a> {
    #[serde(borrow, default)]
    pub time: Option<Cow<'a, str>>,
    #[serde(rename = "rxBytes", default)]
    pub rx_bytes: Option<u64>,
    #[serde(rename = "rxErrors", default)]
    pub rx_errors: Option<u64>,
    #[serde(rename = "txBytes", default)]
    pub tx_bytes: Option<u64>,
    #[serde(rename = "txErrors", default)]
    pub tx_errors: Option<u64>,
}

#[derive(Deserialize, Default)]
pub struct Fs {
    #[serde(rename = "availableBytes", default)]
    pub available_bytes: Option<u64>,
    #[serde(rename = "capacityBytes", default)]
    pub capacity_bytes: Option<u64>,
    #[serde(rename = "usedBytes", default)]
    pub used_bytes: Option<u64>,
    #[serde(rename = "inodesFree", default)]
    pub inodes_free: Option<u64>,
    #[serde(default)]
    pub inodes: Option<u64>,
}

/// A pod volume: filesystem figures and the volume's name in one object.
#[derive(Deserialize)]
pub struct Volume<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    #[serde(rename = "availableBytes", default)]
    pub available_bytes: Option<u64>,
    #[serde(rename = "capacityBytes", default)]
    pub capacity_bytes: Option<u64>,
    #[serde(rename = "usedBytes", default)]
    pub used_bytes: Option<u64>,
    #[serde(rename = "inodesFree", default)]
    pub inodes_free: Option<u64>,
    #[serde(default)]
    pub inodes: Option<u64>,
}

impl Volume<'_> {
    pub fn fs(&self) -> Fs {
        Fs {
            available_bytes: self.available_bytes,
            capacity_bytes: self.capacity_bytes,
            used_bytes: self.used_bytes,
            inodes_free: self.inodes_free,
            inodes: self.inodes,
        }
    }
}
