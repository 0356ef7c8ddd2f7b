//! The collection pass: one read of every tracked cgroup and the node into a snapshot
//! (`Collector::pass`), run by the housekeeping thread. Discovery bookkeeping, per-cgroup
//! schedules, the parallel block read, naming and filesystems each have their module below.

mod blocks;
mod discover;
mod filesystems;
mod identity;
#[cfg(test)]
mod tests;
mod tracked;


use crate::cgroup::{self, Layout, Mode, ReadOptions};
use crate::config::Config;
use crate::discovery::metadata::{Metadata, PodList};
use crate::discovery::Watcher;
use crate::proc::fs::{IncrementalDu, StatvfsPool};
use crate::proc::{self, pod_net, Node};
use crate::snapshot::{ContainerSample, PodVolume, SelfStats, Snapshot};
use blocks::{
    read_chunk, samples_from, slots_from, Block, DuDirs, Entry, Outcome, PassContext, READ_BLOCK,
};
use filesystems::{FS_DEVICES_EVERY, STATVFS_TIMEOUT, STATVFS_WORKERS};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tracked::{processes_every, rate_nano_cores, ProcessPass, Tracked};

/// The collection state; `pass` is synchronous (run it on a blocking thread).
pub struct Collector {
    config: Arc<Config>,
    layout: Layout,
    tracked: BTreeMap<Arc<str>, Tracked>,
    /// One reader per collection thread: the pass's own thread and the pool's.
    readers: Vec<cgroup::Reader>,
    /// The other collection threads (`collection_threads` − 1), kept between passes: a thread
    /// woken from the pool starts reading within tens of microseconds, where a thread spawned
    /// for the pass started 0.3–3.7 ms later on this 2-core VM (it is first queued on the
    /// spawning, busy CPU).
    pool: Option<rayon::ThreadPool>,
    watcher: Option<Watcher>,
    last_rescan: Option<Instant>,
    metadata: Metadata,
    log_dirs_mtime: Option<(Option<SystemTime>, Option<SystemTime>)>,
    kubelet_pods: Arc<Mutex<Option<PodList>>>,
    last_kubelet: Option<PodList>,
    du: IncrementalDu,
    /// statvfs of node filesystems and volumes, off this thread (a hung mount must not stall a pass).
    statvfs: StatvfsPool,
    /// Node filesystem path → its device from mountinfo (looked up again every
    /// `FS_DEVICES_EVERY` passes).
    fs_devices: HashMap<PathBuf, Option<String>>,
    /// pod uid → its volumes as last read.
    volumes: HashMap<String, Vec<PodVolume>>,
    prev_node_cpu: Option<(Instant, u64)>,
    /// Whether every tracked cgroup's names and labels are up to date (see `describe`).
    described: bool,
    /// Whether the set of trees the incremental walk follows may have changed (writable layers,
    /// log directories, volumes): it is then rebuilt, else left as it is.
    du_dirty: bool,
    /// The samples vector of the snapshot before last, emptied (see `recycle`): the next pass
    /// fills it instead of a fresh allocation, whose pages the kernel would have to fault in
    /// and zero again (the allocator gives freed memory back at once, to keep RSS low).
    spare: Vec<ContainerSample>,
    /// Each sample's writable layer and log directory during a pass (kept for its allocation).
    du_slots: Vec<DuDirs>,
    stats: SelfStats,
    logged: HashSet<String>,
    node_name: String,
    opts_template: ReadOptions,
    /// The node's boot time (`btime` of /proc/stat), read at start.
    boot_time: Option<SystemTime>,
    /// The node's CPU sockets and physical cores (/proc/cpuinfo), read at start.
    topology: Option<proc::Topology>,
}

/// Housekeeping errors that stop start-up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Layout(#[from] cgroup::Error),
    #[error("cannot start the collection threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

impl Collector {
    /// Detects the hierarchies and starts the watcher.
    pub fn new(config: Arc<Config>) -> Result<Self, Error> {
        let layout = Layout::detect(&config.cgroup_root)?;
        let opts_template = ReadOptions {
            cpu: config.enabled("cpu"),
            memory: config.enabled("memory"),
            io: config.enabled("diskIO"),
            pids: config.enabled("process"),
            pressure: config.enabled("pressure"),
            spec: true,
            swap: true,
            memory_events: true,
        };
        let (threads, keep_files) = (
            config.collection_threads.max(1),
            config.open_files_per_cgroup,
        );
        let budget = cgroup::FdBudget::global_capped(config.max_open_files);
        let pool = if threads > 1 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads - 1)
                    .thread_name(|i| format!("collect-{}", i + 1))
                    .build()?,
            )
        } else {
            None
        };
        let mut c = Collector {
            node_name: config.node_name(),
            config,
            layout,
            tracked: BTreeMap::new(),
            readers: (0..threads)
                .map(|_| cgroup::Reader::with_budget(budget, keep_files))
                .collect(),
            pool,
            watcher: None,
            last_rescan: None,
            metadata: Metadata::default(),
            log_dirs_mtime: None,
            kubelet_pods: Arc::new(Mutex::new(None)),
            last_kubelet: None,
            du: IncrementalDu::new(),
            statvfs: StatvfsPool::new(STATVFS_WORKERS),
            volumes: HashMap::new(),
            fs_devices: HashMap::new(),
            prev_node_cpu: None,
            described: false,
            du_dirty: true,
            spare: Vec::new(),
            du_slots: Vec::new(),
            stats: SelfStats::default(),
            logged: HashSet::new(),
            opts_template,
            boot_time: None,
            topology: None,
        };
        c.boot_time = std::fs::read_to_string(c.config.proc_root.join("stat"))
            .ok()
            .and_then(|t| proc::parse_stat(&t, 1).ok())
            .filter(|cpu| cpu.boot_time > 0)
            .map(|cpu| SystemTime::UNIX_EPOCH + Duration::from_secs(cpu.boot_time));
        match proc::read_topology(&c.config.proc_root) {
            Ok(t) => c.topology = t,
            Err(e) => c.count_error(e.kind(), &e.to_string()),
        }
        if c.layout.mode != Mode::V2 {
            for ctrl in cgroup::Controller::ALL {
                if c.layout.v1_root(ctrl).is_none() {
                    let msg = format!(
                        "v1 controller {} is not mounted under {}",
                        ctrl.dir_name(),
                        c.config.cgroup_root.display()
                    );
                    c.count_error("missing_controller", &msg);
                }
            }
        }
        tracing::info!(mode = ?c.layout.mode, root = %c.config.cgroup_root.display(), "cgroup layout detected");
        Ok(c)
    }

    /// Starts inotify watches (separate from `new` so benches can skip it).
    pub fn start_watcher(&mut self) {
        let (w, errors) = Watcher::start(&self.layout);
        for e in errors {
            self.count_error(e.kind(), &e.to_string());
        }
        self.watcher = w;
    }

    /// Where the kubelet `/pods` fetcher stores its last answer.
    pub fn kubelet_pods_slot(&self) -> Arc<Mutex<Option<PodList>>> {
        self.kubelet_pods.clone()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn count_error(&mut self, kind: &'static str, message: &str) {
        *self.stats.errors_by_kind.entry(kind).or_default() += 1;
        // Log each distinct problem once; the counter keeps counting.
        if self.logged.len() < 10_000 && self.logged.insert(format!("{kind}:{message}")) {
            tracing::warn!(kind, error = %message, "collection error");
        }
    }

    /// Takes back a snapshot of this collector once it is no longer served: its samples are
    /// freed here and their vector is filled again by the next pass (see `spare`). A snapshot
    /// still in use (a scrape holds it) is just let go.
    pub fn recycle(&mut self, snapshot: Arc<Snapshot>) {
        if let Ok(s) = Arc::try_unwrap(snapshot) {
            let mut v = s.containers;
            v.clear();
            self.spare = v;
        }
    }

    /// One collection pass; returns the new snapshot.
    pub fn pass(&mut self) -> Snapshot {
        let started = Instant::now();
        let now_wall = SystemTime::now();
        self.discover();
        self.refresh_metadata();
        self.describe();
        // /proc first: a node without swap (meminfo read and SwapTotal 0) spares every v2
        // cgroup's memory.swap.current, which is then necessarily 0.
        let mut node_errors = Vec::new();
        let mut node = proc::read_node(&self.config.proc_root, &mut node_errors);
        node.topology = self.topology;
        let node_read_at = Instant::now();
        let mut opts = self.opts_template;
        opts.swap = !(node.memory.total > 0 && node.memory.swap_total == 0);
        let pass = self.stats.passes;
        // The cgroups are read in blocks of the map's order, each with its slots in the
        // snapshot's vector: this thread takes blocks from the front and the other readers
        // (threads) from the back, so that the work balances itself (a thread starts late, or is
        // descheduled), and every sample is written once, in its place. A pass is deterministic
        // (the map's order) whatever the thread count.
        let mut entries: Vec<Entry<'_>> = self.tracked.iter_mut().collect();
        let n = entries.len();
        let mut slots = slots_from(std::mem::take(&mut self.spare), n);
        let mut du_slots = std::mem::take(&mut self.du_slots);
        du_slots.clear();
        du_slots.resize(n, (None, None));
        let proc_root = self.config.proc_root.clone();
        let net = self.config.enabled("network").then_some(pod_net::Lookup {
            proc_root: &proc_root,
            budget: self.readers[0].budget(),
        });
        let rootfs_probe = self.config.enabled("disk").then_some(proc_root.as_path());
        // What the last full count examined (see `PROCESS_STATS_BUDGET`).
        let count_size: u64 = (entries.iter())
            .filter_map(|(_, t)| t.processes.map(|c| c.fds + c.processes))
            .sum();
        let processes_every = processes_every(&self.config, count_size);
        let cx = PassContext {
            opts,
            pass,
            processes: opts.pids.then_some(ProcessPass {
                proc_root: &proc_root,
                every: processes_every,
            }),
            net,
            rootfs_probe,
        };
        let workers = self.readers.len().min(n.div_ceil(READ_BLOCK)).max(1);
        let mut outcomes: Vec<Outcome> = (0..workers).map(|_| Outcome::default()).collect();
        {
            let blocks: Mutex<VecDeque<Block<'_, '_>>> = Mutex::new(
                entries
                    .chunks_mut(READ_BLOCK)
                    .zip(slots.chunks_mut(READ_BLOCK))
                    .zip(du_slots.chunks_mut(READ_BLOCK))
                    .map(|((e, s), d)| (e, s, d))
                    .collect(),
            );
            let take = |front: bool| {
                let mut q = blocks.lock().unwrap_or_else(|p| p.into_inner());
                if front {
                    q.pop_front()
                } else {
                    q.pop_back()
                }
            };
            let (first_reader, others) = self.readers.split_first_mut().expect("a reader");
            let (first_out, other_outs) = outcomes.split_first_mut().expect("an outcome");
            let mut read_front = || {
                while let Some(block) = take(true) {
                    read_chunk(first_reader, block, cx, first_out);
                }
            };
            match &self.pool {
                // A panic in a pool thread is raised here when the scope ends.
                Some(pool) if workers > 1 => pool.in_place_scope(|scope| {
                    for (reader, out) in others.iter_mut().zip(other_outs) {
                        scope.spawn(move |_| {
                            while let Some(block) = take(false) {
                                read_chunk(reader, block, cx, out);
                            }
                        });
                    }
                    read_front();
                }),
                _ => read_front(),
            }
        }
        drop(entries);
        // Cgroups found gone leave an empty slot: the samples close up, in place.
        let mut present = slots.iter().map(Option::is_some);
        du_slots.retain(|_| present.next().unwrap_or(false));
        let mut samples = samples_from(slots);
        let (mut errors, mut proc_errors, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for mut o in outcomes {
            self.du_dirty |= o.rootfs_found > 0;
            errors.append(&mut o.errors);
            proc_errors.append(&mut o.proc_errors);
            gone.append(&mut o.gone);
            self.stats.files_read += o.files_read;
        }
        for e in errors {
            let kind = e.kind();
            self.count_error(kind, &e.to_string());
        }
        for e in proc_errors {
            self.count_error(e.kind(), &e.to_string());
        }
        for g in gone {
            *self
                .stats
                .errors_by_kind
                .entry("container_gone")
                .or_default() += 1;
            tracing::debug!(cgroup = %g, "container removed during the pass");
            self.remove(&g);
        }
        if self.config.enabled("disk") {
            self.collect_volumes(&mut samples);
            self.collect_fs_usage(&mut samples, &du_slots);
        }
        du_slots.clear();
        self.du_slots = du_slots;

        for e in node_errors {
            self.count_error(e.kind(), &e.to_string());
        }
        fill_root_from_proc(&mut samples, &node, self.config.enabled("network"));
        let now = node_read_at;
        let mut node_usage_nano_cores = None;
        if node.cpu.usage_ns > 0 {
            if let Some((pt, pu)) = self.prev_node_cpu {
                node_usage_nano_cores = rate_nano_cores(pt, pu, now, node.cpu.usage_ns);
            }
            self.prev_node_cpu = Some((now, node.cpu.usage_ns));
        }
        if self.stats.passes.is_multiple_of(FS_DEVICES_EVERY) {
            // Mounts change rarely: the device names are looked up again now and then.
            self.fs_devices.clear();
        }
        let root_path = self.config.root_fs_path.clone();
        let image_path = self.config.image_fs_path();
        let mut stats = self
            .statvfs
            .statvfs_all(&[&root_path, &image_path], STATVFS_TIMEOUT)
            .into_iter();
        let root_fs = self.node_fs(&root_path, stats.next());
        let image_fs = self.node_fs(&image_path, stats.next());
        self.stats.passes += 1;
        self.stats.last_duration = started.elapsed();
        Snapshot {
            time: now_wall,
            node_name: self.node_name.clone(),
            node,
            node_usage_nano_cores,
            root_fs,
            image_fs,
            containers: samples,
            self_stats: self.stats.clone(),
            ready: true,
        }
    }

    /// Number of tracked cgroups.
    pub fn tracked_len(&self) -> usize {
        self.tracked.len()
    }
}

/// The root cgroup ("/") gets what its cgroup files lack from /proc (as cAdvisor does on v2,
/// where the root has no memory.current): CPU from /proc/stat, memory from /proc/meminfo, and
/// the node's interfaces.
fn fill_root_from_proc(samples: &mut [ContainerSample], node: &Node, network: bool) {
    let Some(root) = samples.iter_mut().find(|s| &*s.name == "/") else {
        return;
    };
    if root.stats.cpu.is_none() && node.cpu.usage_ns > 0 {
        root.stats.cpu = Some(cgroup::Cpu {
            usage_ns: node.cpu.usage_ns,
            user_ns: node.cpu.user_ns,
            system_ns: node.cpu.system_ns,
            ..Default::default()
        });
    }
    if root.stats.memory.is_none() && node.memory.total > 0 {
        let m = &node.memory;
        root.stats.memory = Some(cgroup::Memory {
            usage: m.usage(),
            working_set: m.working_set(),
            rss: m.anon_pages,
            cache: m.cached + m.buffers,
            swap: m.swap_total.saturating_sub(m.swap_free),
            mapped_file: m.mapped,
            inactive_file: m.inactive_file,
            ..Default::default()
        });
    }
    if network {
        root.network = Some(
            node.interfaces
                .iter()
                .filter(|i| proc::is_container_interface(&i.name))
                .cloned()
                .collect(),
        );
    }
}
