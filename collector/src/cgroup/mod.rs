//! Cgroup hierarchies (v1, v2, hybrid): where a container's cgroup files live and what we read from them.
//! `layout.rs` finds a cgroup's files, `reader.rs` reads them into the `Stats` defined here,
//! `v1.rs`, `v2.rs` and `parse.rs` know each version's files and the kernel's formats.

pub mod fds;
pub mod parse;
pub mod v1;
pub mod v2;

mod layout;
mod reader;

pub use fds::{FdBudget, Handles};
pub use layout::{
    normalise_name, v2_watched_files, CgroupPaths, Controller, Layout, Mode, V2_EVENT_FILES,
};
pub(crate) use reader::{read_all, read_keyed, read_limit, read_u64_file, read_u64_lenient};
pub use reader::{read_procs, ReadOptions, Reader};

use crate::summary::PsiStats;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors while reading one container's cgroup files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container's cgroup directory disappeared (the container stopped mid-read).
    #[error("cgroup {name} is gone")]
    Gone { name: String },
    /// A file could not be read for another reason than absence.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file's content is not what the kernel writes.
    #[error("malformed {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    /// No cgroup hierarchy was found under the cgroup root.
    #[error(
        "no cgroup hierarchy under {root}: expected cgroup.controllers (v2) or cpu/, memory/ (v1)"
    )]
    NoHierarchy { root: PathBuf },
}

impl Error {
    /// The kind under which this error is counted in the self-metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Gone { .. } => "container_gone",
            Error::Io { .. } => "io",
            Error::Parse { .. } => "parse",
            Error::NoHierarchy { .. } => "missing_hierarchy",
        }
    }
}

/// CPU figures of a cgroup, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cpu {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory figures of a cgroup, in bytes and counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    pub usage: u64,
    /// memory.max_usage_in_bytes / memory.peak, when the kernel has it.
    pub max_usage: Option<u64>,
    /// usage − inactive_file, clamped at 0.
    pub working_set: u64,
    pub rss: u64,
    pub cache: u64,
    pub swap: u64,
    pub mapped_file: u64,
    pub inactive_file: u64,
    /// Page faults of the cgroup and its descendants (v1 `total_pgfault`, v2 `pgfault`):
    /// cAdvisor's `scope="hierarchy"`.
    pub pgfault: u64,
    pub pgmajfault: u64,
    /// Page faults of the cgroup itself (v1 `pgfault` without `total_`): cAdvisor's
    /// `scope="container"`. On v2 memory.stat is hierarchical, so equal to `pgfault`.
    pub pgfault_local: u64,
    pub pgmajfault_local: u64,
    /// memory.failcnt (v1) or memory.events `max` (v2).
    pub failcnt: Option<u64>,
    /// OOM kills inside the cgroup (memory.events oom_kill, memory.oom_control oom_kill).
    pub oom_kills: Option<u64>,
}

impl Memory {
    /// The working set: usage minus inactive file pages, clamped at 0 (cAdvisor, kubelet).
    pub(crate) fn with_working_set(mut self) -> Self {
        self.working_set = self.usage.saturating_sub(self.inactive_file);
        self
    }
}

/// Bytes and operations of one block device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IoDevice {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Task counts of a cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pids {
    /// pids.current: tasks (threads) in the cgroup.
    pub current: u64,
    /// pids.max; `None` is unlimited.
    pub max: Option<u64>,
}

/// Pressure stall figures; totals in microseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pressure {
    pub cpu: Option<PsiStats>,
    pub memory: Option<PsiStats>,
    pub io: Option<PsiStats>,
}

/// Limits and weights of a cgroup (cAdvisor's "spec").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    /// cpu.shares, or cpu.weight converted to shares.
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period; `None` is unlimited.
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: Option<u64>,
    /// `None` is unlimited.
    pub memory_limit: Option<u64>,
    pub memory_swap_limit: Option<u64>,
    pub memory_reservation: Option<u64>,
    /// v2 `memory.min` only (v1 has no memory protection file); `None` when not read.
    pub memory_min: Option<u64>,
    /// pids.max: `None` when not read (no pids controller), `Some(None)` when unlimited.
    pub pids_max: Option<Option<u64>>,
}

/// Everything read from one cgroup in one pass. A `None` group is one the host does not have for
/// this cgroup (controller not mounted or not enabled).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    pub io: Option<Vec<IoDevice>>,
    pub pids: Option<Pids>,
    pub pressure: Pressure,
    /// Shared with the cgroup's state and the samples of the passes that did not read it (limits
    /// are read when they change): a sample carries a pointer, not a copy.
    pub spec: Arc<Spec>,
}

impl Stats {
    /// Copies the limits read with the spec into the figures that carry them (`pids.max`).
    pub fn apply_spec_limits(&mut self) {
        if let (Some(p), Some(max)) = (&mut self.pids, self.spec.pids_max) {
            p.max = max;
        }
    }
}
