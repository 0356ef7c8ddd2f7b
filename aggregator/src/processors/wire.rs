//! The part of a kubelet Summary document the aggregator reads, deserialized straight from the
//! response body with borrowed strings (no owned `Summary` tree per node per round).
//!
//! Field names and required fields are those of `vigil_summary` (the kubelet's
//! `stats/v1alpha1`); fields Heapster does not read (`usageNanoCores`, `psi`, `swap`, `rlimit`,
//! `runtime`, `interfaces`, `process_stats`, filesystem times) are skipped unparsed.

use std::borrow::Cow;

use std::cell::Cell;
use std::marker::PhantomData;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use vigil_summary::{AcceleratorStats, UserDefinedMetric, VigilSpec};

thread_local! {
    /// List entries the document being parsed on this thread may still have.
    static ENTRIES_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Parses with at most `limit` list entries (pods, containers, volumes, ...) in the whole
/// document: a small body of many tiny entries would otherwise parse into structs hundreds of
/// times its size before anything could count them. Returns the result and whether the budget
/// ran out.
pub fn with_entry_budget<T>(limit: usize, parse: impl FnOnce() -> T) -> (T, bool) {
    let previous = ENTRIES_LEFT.replace(limit);
    let r = parse();
    let exhausted = ENTRIES_LEFT.replace(previous) == 0;
    (r, exhausted)
}

/// Go writes a nil slice as `null`: accept it as an empty list. Every entry is taken from the
/// document's budget ([`with_entry_budget`]).
fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct List<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list or null")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::new();
            loop {
                let left = ENTRIES_LEFT.get();
                if left == 0 {
                    return Err(A::Error::custom("too many list entries in the document"));
                }
                ENTRIES_LEFT.set(left - 1);
                match seq.next_element()? {
                    Some(x) => v.push(x),
                    None => {
                        ENTRIES_LEFT.set(left);
                        return Ok(v);
                    }
                }
            }
        }
    }
    d.deserialize_option(List(PhantomData))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary<'a> {
    #[serde(borrow)]
    pub node: Node<'a>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub pods: Vec<Pod<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node<'a> {
    #[serde(borrow)]
    pub node_name: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub system_containers: Vec<Container<'a>>,
    #[serde(borrow)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub cpu: Option<Cpu<'a>>,
    #[serde(borrow)]
    pub memory: Option<Memory<'a>>,
    #[serde(borrow)]
    pub network: Option<Network<'a>>,
    pub fs: Option<Fs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodRef<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub namespace: Cow<'a, str>,
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod<'a> {
    #[serde(borrow)]
    pub pod_ref: PodRef<'a>,
    #[serde(borrow)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub containers: Vec<Container<'a>>,
    #[serde(borrow)]
    pub cpu: Option<Cpu<'a>>,
    #[serde(borrow)]
    pub memory: Option<Memory<'a>>,
    #[serde(borrow)]
    pub network: Option<Network<'a>>,
    #[serde(borrow, default, deserialize_with = "null_as_empty")]
    pub volume: Vec<Volume<'a>>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<Fs>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    #[serde(borrow)]
    pub start_time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub cpu: Option<Cpu<'a>>,
    #[serde(borrow)]
    pub memory: Option<Memory<'a>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub accelerators: Vec<AcceleratorStats>,
    pub rootfs: Option<Fs>,
    pub logs: Option<Fs>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub user_defined_metrics: Vec<UserDefinedMetric>,
    pub vigil_spec: Option<VigilSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu<'a> {
    #[serde(borrow)]
    pub time: Option<Cow<'a, str>>,
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory<'a> {
    #[serde(borrow)]
    pub time: Option<Cow<'a, str>>,
    pub available_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub working_set_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

/// Network figures: the default interface is inlined in the object (read directly here, not
/// through serde's buffering `flatten`); the per-interface list is not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network<'a> {
    #[serde(borrow)]
    pub time: Option<Cow<'a, str>>,
    pub rx_bytes: Option<u64>,
    pub rx_errors: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_errors: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Fs {
    pub available_bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub inodes_free: Option<u64>,
    pub inodes: Option<u64>,
}

/// A pod volume: filesystem figures and the volume's name in one object.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    #[serde(borrow, default)]
    pub name: Cow<'a, str>,
    pub available_bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub inodes_free: Option<u64>,
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
