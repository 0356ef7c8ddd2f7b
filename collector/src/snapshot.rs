//! The snapshot data model: what one collection pass produced and `/metrics` and
//! `/stats/summary` serve (containers' samples, pod volumes, the node, the collector's counters).

use crate::cgroup::Stats;
use crate::discovery::naming::Kind;
use crate::proc::fs::{FsInfo, Usage};
use crate::proc::processes::ProcessCounts;
use crate::proc::{Interface, Node};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// Names and labels of a container, from its cgroup path and the pod metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub pod_uid: String,
    pub pod: String,
    pub namespace: String,
    /// Container name; `POD` for a sandbox; empty for a pod-level or system cgroup.
    pub container: String,
    /// Runtime container id (cAdvisor's `name` label for Kubernetes containers).
    pub container_id: String,
    pub image: String,
    pub sandbox: bool,
    /// Opt-in pod labels (config `pod_labels`).
    pub labels: Vec<(String, String)>,
}

/// One container's sample in a snapshot.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    /// The cgroup path (cAdvisor's `id`), shared with the cgroup's state.
    pub name: Arc<str>,
    /// Shared with the cgroup's state (it never changes for a name).
    pub kind: Arc<Kind>,
    /// Shared with the cgroup's state until its metadata changes.
    pub identity: Arc<Identity>,
    pub stats: Stats,
    pub usage_nano_cores: Option<u64>,
    /// Network counters of the pod (on the pod-level cgroup only; one read per pod).
    pub network: Option<Vec<Interface>>,
    pub start_time: SystemTime,
    pub rootfs: Option<Usage>,
    pub logs: Option<Usage>,
    /// Pod volumes (on the pod-level cgroup only).
    pub volumes: Vec<PodVolume>,
    /// Processes of the cgroup and their descriptors, counted every `process_stats_interval` at most
    /// (the last count in between); `None` before the first or with the `process` group off.
    pub processes: Option<ProcessCounts>,
    /// The exposition label set, escaped, without braces: `container="…",id="…",…`.
    pub label_str: Arc<str>,
}

/// One pod volume's filesystem figures (the Summary API's `volume[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PodVolume {
    pub dir: crate::proc::fs::VolumeDir,
    /// The pod spec name and claim the kubelet reports the volume under (discovery::volumes).
    pub id: crate::discovery::volumes::VolumeIdentity,
    /// When `fs` was read (volumes are read every few passes, see `pass::filesystems`).
    pub time: SystemTime,
    /// statvfs of the volume's filesystem.
    pub fs: FsInfo,
    /// Bytes and inodes under the volume when it shares the node filesystem (the kubelet's
    /// `du`-based figure, from the incremental walk); `None` for a mounted volume (its
    /// filesystem's own usage applies) or before the first complete walk.
    pub usage: Option<Usage>,
}

/// The collector's own counters.
#[derive(Debug, Clone, Default)]
pub struct SelfStats {
    pub passes: u64,
    pub last_duration: Duration,
    pub errors_by_kind: BTreeMap<&'static str, u64>,
    pub containers_added: u64,
    pub containers_removed: u64,
    pub files_read: u64,
}

/// Everything one pass collected; endpoints serve this.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub time: SystemTime,
    pub node_name: String,
    pub node: Node,
    pub node_usage_nano_cores: Option<u64>,
    pub root_fs: Option<FsInfo>,
    pub image_fs: Option<FsInfo>,
    pub containers: Vec<ContainerSample>,
    pub self_stats: SelfStats,
    /// False until the first pass completed.
    pub ready: bool,
}

impl Snapshot {
    pub fn empty(node_name: String) -> Self {
        Snapshot {
            time: SystemTime::UNIX_EPOCH,
            node_name,
            node: Node::default(),
            node_usage_nano_cores: None,
            root_fs: None,
            image_fs: None,
            containers: Vec::new(),
            self_stats: SelfStats::default(),
            ready: false,
        }
    }
}

/// Shared, swappable latest snapshot.
pub type SharedSnapshot = Arc<RwLock<Arc<Snapshot>>>;
