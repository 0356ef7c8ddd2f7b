//! The parallel read of a pass: the tracked cgroups in blocks, taken by the reading threads from
//! both ends, each cgroup's sample written straight into its slot of the snapshot.

use super::tracked::{
    count_processes_of, rate_nano_cores, ProcessPass, Tracked, SPEC_EVERY, SPEC_EVERY_WATCHED,
};
use crate::cgroup::{self, CgroupPaths, ReadOptions};
use crate::discovery::naming::Kind;
use crate::proc::mountinfo::overlay_upperdir;
use crate::proc::{self, pod_net};
use crate::snapshot::ContainerSample;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// What one reading thread met besides the samples (which go straight to their slots).
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) errors: Vec<cgroup::Error>,
    /// Errors reading /proc: pods' network, processes' descriptors.
    pub(super) proc_errors: Vec<proc::Error>,
    pub(super) gone: Vec<Arc<str>>,
    pub(super) files_read: u64,
    /// Writable layers found in this pass.
    pub(super) rootfs_found: usize,
}

/// A tracked cgroup as the reading threads get it.
pub(super) type Entry<'a> = (&'a Arc<str>, &'a mut Tracked);

/// A block of the pass: tracked cgroups, their sample slots, their writable-layer and log
/// directory slots (a cgroup found gone leaves its slots empty).
pub(super) type Block<'e, 'a> = (
    &'e mut [Entry<'a>],
    &'e mut [Option<ContainerSample>],
    &'e mut [DuDirs],
);

/// `n` empty sample slots in the allocation of `spare` (an emptied samples vector) when it is
/// large enough. `Option<ContainerSample>` has the size and alignment of `ContainerSample` (the
/// `Arc`s are never null), so the standard library's in-place collection keeps the allocation.
pub(super) fn slots_from(
    mut spare: Vec<ContainerSample>,
    n: usize,
) -> Vec<Option<ContainerSample>> {
    spare.clear();
    if spare.capacity() > 2 * n + 64 {
        // Far more containers than now: not worth holding on to.
        spare = Vec::new();
    }
    let mut slots: Vec<Option<ContainerSample>> = spare.into_iter().map(Some).collect();
    slots.resize_with(n, || None);
    slots
}

/// The filled slots, closed up in place (the same in-place collection as `slots_from`).
pub(super) fn samples_from(slots: Vec<Option<ContainerSample>>) -> Vec<ContainerSample> {
    // `flatten` would do the same but allocates a new vector.
    #[allow(clippy::filter_map_identity)]
    slots.into_iter().filter_map(|s| s).collect()
}

/// Cgroups per block of a pass's reading (see `Collector::pass`): small enough to balance the
/// threads, large enough that taking a block costs nothing next to reading it (~0.2 ms).
pub(super) const READ_BLOCK: usize = 16;

/// What every reading thread needs for one pass.
#[derive(Clone, Copy)]
pub(super) struct PassContext<'a> {
    pub(super) opts: ReadOptions,
    pub(super) pass: u64,
    /// How cgroups' processes are counted in this pass, when the `process` group is on.
    pub(super) processes: Option<ProcessPass<'a>>,
    /// Where pods' processes are looked up, when network figures are collected.
    pub(super) net: Option<pod_net::Lookup<'a>>,
    /// The /proc of containers' processes, when writable layers are looked for.
    pub(super) rootfs_probe: Option<&'a Path>,
}

/// A sample's writable-layer and log directories (the incremental walk's trees).
pub(super) type DuDirs = (Option<Arc<Path>>, Option<Arc<Path>>);

/// Reads a block of the tracked cgroups with one reader (one thread) into its slots; what else
/// it meets goes to `out`.
pub(super) fn read_chunk(
    reader: &mut cgroup::Reader,
    block: Block<'_, '_>,
    cx: PassContext<'_>,
    out: &mut Outcome,
) {
    let (part, slots, du_slots) = block;
    let PassContext {
        opts: template,
        pass,
        processes: count_processes,
        net,
        rootfs_probe,
    } = cx;
    let files_before = reader.files_read;
    let mut net_buf = Vec::new();
    for (((name, t), slot), du_slot) in part.iter_mut().zip(slots).zip(du_slots) {
        let mut opts = template;
        // Limit and event files are read when they change only if every one is watched.
        let watched = t.files_watched == Some(true);
        let every = if watched {
            SPEC_EVERY_WATCHED
        } else {
            SPEC_EVERY
        };
        opts.spec =
            t.spec_forced || (pass + u64::from(t.spec_slot)).is_multiple_of(u64::from(every));
        // v1 has no notified event file: failcnt and oom_control are read every pass.
        let v1_memory = t.paths.v1(cgroup::Controller::Memory).is_some();
        // The scheduled spec read is also the events' safety net.
        opts.memory_events = !watched || t.events_stale || v1_memory || opts.spec;
        match reader.read_stats(&t.paths, &mut t.handles, opts, &mut out.errors) {
            Ok(mut stats) => {
                let now = Instant::now();
                if opts.spec {
                    t.spec = stats.spec.clone();
                    t.spec_forced = false;
                } else {
                    stats.spec = t.spec.clone();
                    stats.apply_spec_limits();
                }
                if let Some(m) = &mut stats.memory {
                    if opts.memory_events {
                        t.events = (m.failcnt, m.oom_kills);
                        t.events_stale = false;
                    } else {
                        (m.failcnt, m.oom_kills) = t.events;
                    }
                }
                let mut usage_nano_cores = None;
                if let Some(cpu) = &stats.cpu {
                    if let Some((pt, pu)) = t.prev_cpu {
                        usage_nano_cores = rate_nano_cores(pt, pu, now, cpu.usage_ns);
                    }
                    t.prev_cpu = Some((now, cpu.usage_ns));
                } else {
                    // No CPU sample this pass: the next rate needs two real samples
                    // (a zero baseline would turn lifetime CPU into one interval's rate).
                    t.prev_cpu = None;
                }
                // The pod's network: one read per pod, on its pod-level cgroup.
                let network = match (&*t.kind, net, t.paths.any_dir()) {
                    (Kind::Pod { pod_uid, .. }, Some(lookup), Some(dir)) => {
                        let retry =
                            (pass + u64::from(t.spec_slot)).is_multiple_of(pod_net::RETRY_EVERY);
                        t.net
                            .read(name, dir, pod_uid, lookup, retry, &mut net_buf)
                            .unwrap_or_else(|e| {
                                out.proc_errors.push(e);
                                None
                            })
                    }
                    _ => None,
                };
                // A container's writable layer, looked for once (from the mountinfo of one of its
                // processes), when disk figures are collected.
                if let (Some(proc_root), Kind::Container { .. }) = (rootfs_probe, &*t.kind) {
                    if !t.rootfs_probed && !t.identity.sandbox {
                        t.rootfs_probed = true;
                        t.rootfs_dir = probe_rootfs(&t.paths, proc_root).map(Arc::from);
                        out.rootfs_found += usize::from(t.rootfs_dir.is_some());
                    }
                }
                if let Some(how) = count_processes {
                    count_processes_of(reader, t, pass, how, out);
                }
                *du_slot = (t.rootfs_dir.clone(), t.log_dir.clone());
                *slot = Some(ContainerSample {
                    name: (*name).clone(),
                    kind: t.kind.clone(),
                    identity: t.identity.clone(),
                    stats,
                    usage_nano_cores,
                    network,
                    start_time: t.start_time,
                    rootfs: None,
                    logs: None,
                    volumes: Vec::new(),
                    label_str: t.label_str.clone(),
                    processes: t.processes,
                });
            }
            Err(cgroup::Error::Gone { .. }) => out.gone.push((*name).clone()),
            Err(e) => out.errors.push(e),
        }
    }
    out.files_read += reader.files_read - files_before;
}

/// The writable layer of a container: the overlay upperdir of a process in `paths`.
fn probe_rootfs(paths: &CgroupPaths, proc_root: &Path) -> Option<PathBuf> {
    let pid = paths
        .any_dir()
        .and_then(|d| cgroup::read_procs(d).ok())
        .and_then(|p| p.first().copied())?;
    overlay_upperdir(&proc_root.join(pid.to_string()).join("mountinfo"))
}
