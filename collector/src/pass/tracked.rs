//! Per-cgroup state kept between passes (`Tracked`) and its schedules: limits every few passes,
//! process counts within a budget, each cgroup in its own slot; and CPU rates from two samples.

use super::blocks::Outcome;
use super::Collector;
use crate::cgroup::{self, CgroupPaths, Spec};
use crate::config::Config;
use crate::discovery::naming::Kind;
use crate::proc;
use crate::proc::pod_net::PodNet;
use crate::proc::processes::{self, ProcessCounts};
use crate::snapshot::Identity;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Limits (cpu.max, memory.max, pids.max...) rarely change: without file watches each cgroup
/// reads them every this many passes (once a minute at the default 10 s housekeeping), and at
/// once when it is new.
pub(super) const SPEC_EVERY: u8 = 6;

/// With every limit file watched (a write raises IN_MODIFY, and the spec is read in the next
/// pass), the limits are still read every this many passes (10 minutes at 10 s), in case a
/// controller was enabled after the cgroup's files were watched.
pub(super) const SPEC_EVERY_WATCHED: u8 = 60;

#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) paths: CgroupPaths,
    pub(super) kind: Arc<Kind>,
    pub(super) start_time: SystemTime,
    pub(super) prev_cpu: Option<(Instant, u64)>,
    pub(super) spec: Arc<Spec>,
    /// Read the spec (limits) in the next pass: a new or re-created cgroup, or a limit file
    /// written. Otherwise it is read in the passes where `(pass + spec_slot)` is a multiple of
    /// the interval (`SPEC_EVERY_WATCHED` or `SPEC_EVERY`): staggered over the cgroups, so that
    /// no pass reads every cgroup's limits.
    pub(super) spec_forced: bool,
    /// This cgroup's place in the stagger.
    pub(super) spec_slot: u8,
    /// Whether every limit and event file of the cgroup is watched (`None`: not known yet, as
    /// without watches): only then are they read when they change.
    pub(super) files_watched: Option<bool>,
    /// memory.events may have changed since it was last read.
    pub(super) events_stale: bool,
    /// The last figures read from memory.events: failcnt and OOM kills.
    pub(super) events: (Option<u64>, Option<u64>),
    /// Descriptors kept open between passes (closed when the cgroup is dropped).
    pub(super) handles: cgroup::Handles,
    /// Writable layer directory, once found from a process's mountinfo.
    pub(super) rootfs_dir: Option<Arc<Path>>,
    pub(super) rootfs_probed: bool,
    /// The container's log directory (`<pod log root>/<ns>_<pod>_<uid>/<container>`), once
    /// named (see `Collector::describe`).
    pub(super) log_dir: Option<Arc<Path>>,
    /// A pod-level cgroup's network source (read by the thread that reads the cgroup).
    pub(super) net: PodNet,
    /// Names and labels (see `Collector::describe`).
    pub(super) identity: Arc<Identity>,
    pub(super) label_str: Arc<str>,
    /// The last count of its processes and their descriptors, and the pass it was tried in
    /// (a count that failed is tried again when due, not in every pass).
    pub(super) processes: Option<ProcessCounts>,
    pub(super) processes_at: Option<u64>,
}

impl Tracked {
    /// Forgets what was read from the files of a cgroup whose directory changed (re-created,
    /// or gone from one hierarchy): its limits and counts are read again in the next pass, and
    /// whether its files are watched is learnt again from the watcher.
    pub(super) fn forget_files(&mut self) {
        self.spec_forced = true;
        self.events_stale = true;
        self.events = (None, None);
        self.files_watched = None;
        self.processes_at = None;
    }
}

impl Collector {
    /// Whether this pass is the cgroup `name`'s turn in a cycle of `every` passes: work done
    /// every few passes for each cgroup is spread over the passes by the cgroup's slot, so that
    /// no pass does it for every cgroup.
    pub(super) fn in_slot(&self, name: &str, every: u64) -> bool {
        (self.stats.passes + u64::from(slot_of(name))).is_multiple_of(every)
    }
}

/// Descriptors and processes a pass examines in its process counts, on average, at most. A
/// count costs ≈ 3 µs per descriptor and ≈ 9 µs per process on the test VM, so this is ≈ 15 ms
/// of CPU over the reading threads. When the last counts of all cgroups add up to more than
/// `process_stats_interval` passes of it, counts come less often (every cgroup still in turn)
/// instead of slowing every pass.
pub(super) const PROCESS_STATS_BUDGET: u64 = 5_000;

/// How processes are counted in one pass (see `count_processes_of`).
#[derive(Clone, Copy)]
pub(super) struct ProcessPass<'a> {
    /// The /proc the pids of cgroup.procs are looked up in.
    pub(super) proc_root: &'a Path,
    /// Every how many passes a cgroup is counted: from `process_stats_interval`, or more
    /// when the counts would exceed `PROCESS_STATS_BUDGET`.
    pub(super) every: u64,
}

/// Every how many passes a cgroup's processes are counted: `process_stats_interval` in passes
/// (at the defaults, 30 s and 10 s, every third pass), or more passes when a full count of
/// `count_size` descriptors and processes would exceed `PROCESS_STATS_BUDGET` per pass.
pub(super) fn processes_every(config: &Config, count_size: u64) -> u64 {
    let by_interval = (config.process_stats_interval.as_millis())
        .div_ceil(config.housekeeping_interval.as_millis().max(1))
        .max(1) as u64;
    by_interval.max(count_size.div_ceil(PROCESS_STATS_BUDGET))
}

/// Counts a cgroup's processes and their descriptors into `t.processes` when due: when first
/// seen, then in its slot of every `how.every` passes.
pub(super) fn count_processes_of(
    reader: &mut cgroup::Reader,
    t: &mut Tracked,
    pass: u64,
    how: ProcessPass<'_>,
    out: &mut Outcome,
) {
    // Not a pod-level cgroup: its processes are in its containers' cgroups (cgroup v2 forbids
    // processes in a cgroup whose children have controllers), so its cgroup.procs is empty, a
    // read for nothing in a third of a node's cgroups.
    if matches!(&*t.kind, Kind::Pod { .. }) {
        return;
    }
    // The slot's pass may be skipped when `every` grows: counted again a period later at most.
    let due = match t.processes_at {
        None => true,
        Some(at) => {
            (pass + u64::from(t.spec_slot)).is_multiple_of(how.every) || pass >= at + how.every
        }
    };
    if !due {
        return;
    }
    t.processes_at = Some(pass);
    let counted = match reader.read_procs_of(&t.paths, &mut t.handles) {
        Ok(Some(pids)) => processes::count(how.proc_root, &pids).map_err(|e| {
            out.proc_errors.push(e);
        }),
        // No cgroup.procs, or gone since its figures were read (then dropped in the next pass).
        Ok(None) | Err(cgroup::Error::Gone { .. }) => Err(()),
        Err(e) => {
            out.errors.push(e);
            Err(())
        }
    };
    t.processes = counted.ok();
    if let Some(c) = &t.processes {
        if c.sockets.is_none() {
            out.proc_errors.push(proc::Error::Io {
                path: how.proc_root.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "permission denied reading descriptor links (other processes' need \
                     CAP_SYS_PTRACE): container_sockets is left out",
                ),
            });
        }
    }
}

/// A cgroup's slot (0..SPEC_EVERY_WATCHED) for work done every few passes: from a hash of its
/// name, so that pods, their containers and any cycle length up to 60 spread evenly.
pub(super) fn slot_of(name: &str) -> u8 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % u64::from(SPEC_EVERY_WATCHED)) as u8
}

/// CPU cores used between two samples of a cumulative nanosecond counter, in nanocores; `None`
/// when no time passed or the counter went backwards (a reset).
pub(super) fn rate_nano_cores(
    prev_at: Instant,
    prev_ns: u64,
    now: Instant,
    ns: u64,
) -> Option<u64> {
    let dt = now.duration_since(prev_at).as_nanos();
    (dt > 0 && ns >= prev_ns).then(|| ((ns - prev_ns) as u128 * 1_000_000_000 / dt) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn process_counts_come_less_often_when_they_exceed_the_budget() {
        let at = |interval: u64, stats: u64| Config {
            housekeeping_interval: Duration::from_secs(interval),
            process_stats_interval: Duration::from_secs(stats),
            ..Default::default()
        };
        // 30 s at 10 s: every third pass; at or below the interval: every pass.
        assert_eq!(processes_every(&at(10, 30), 0), 3);
        assert_eq!(processes_every(&at(10, 25), 0), 3);
        assert_eq!(processes_every(&at(10, 10), 0), 1);
        assert_eq!(processes_every(&at(10, 1), 0), 1);
        // Up to three budgets' worth in three passes; beyond, one budget's worth per pass.
        assert_eq!(processes_every(&at(10, 30), 3 * PROCESS_STATS_BUDGET), 3);
        assert_eq!(
            processes_every(&at(10, 30), 3 * PROCESS_STATS_BUDGET + 1),
            4
        );
        assert_eq!(processes_every(&at(10, 30), 30 * PROCESS_STATS_BUDGET), 30);
        assert_eq!(processes_every(&at(1, 1), PROCESS_STATS_BUDGET + 1), 2);
    }
}
