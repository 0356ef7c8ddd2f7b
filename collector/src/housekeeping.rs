//! The housekeeping loop: one collection pass over every known cgroup and the node into a cached
//! snapshot, plus rates from the last two samples and the collector's own counters.

use crate::cgroup::{self, CgroupPaths, Layout, Mode, ReadOptions, Spec, Stats};
use crate::config::Config;
use crate::discovery::metadata::{Metadata, PodList};
use crate::discovery::naming::{classify, Kind};
use crate::discovery::{self, Watcher};
use crate::proc::fs::{FsInfo, IncrementalDu, StatvfsError, StatvfsPool, Usage};
use crate::proc::processes::{self, ProcessCounts};
use crate::proc::{self, pod_net, pod_net::PodNet, Interface, Node};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
    /// When `fs` was read (volumes are read every sixth pass).
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

/// Limits (cpu.max, memory.max, pids.max...) rarely change: without file watches each cgroup
/// reads them every this many passes (once a minute at the default 10 s housekeeping), and at
/// once when it is new.
const SPEC_EVERY: u8 = 6;

/// With every limit file watched (a write raises IN_MODIFY, and the spec is read in the next
/// pass), the limits are still read every this many passes (10 minutes at 10 s), in case a
/// controller was enabled after the cgroup's files were watched.
const SPEC_EVERY_WATCHED: u8 = 60;

/// Shared, swappable latest snapshot.
pub type SharedSnapshot = Arc<RwLock<Arc<Snapshot>>>;

#[derive(Debug)]
struct Tracked {
    paths: CgroupPaths,
    kind: Arc<Kind>,
    start_time: SystemTime,
    prev_cpu: Option<(Instant, u64)>,
    spec: Arc<Spec>,
    /// Read the spec (limits) in the next pass: a new or re-created cgroup, or a limit file
    /// written. Otherwise it is read in the passes where `(pass + spec_slot)` is a multiple of
    /// the interval (`SPEC_EVERY_WATCHED` or `SPEC_EVERY`): staggered over the cgroups, so that
    /// no pass reads every cgroup's limits.
    spec_forced: bool,
    /// This cgroup's place in the stagger.
    spec_slot: u8,
    /// Whether every limit and event file of the cgroup is watched (`None`: not known yet, as
    /// without watches): only then are they read when they change.
    files_watched: Option<bool>,
    /// memory.events may have changed since it was last read.
    events_stale: bool,
    /// The last figures read from memory.events: failcnt and OOM kills.
    events: (Option<u64>, Option<u64>),
    /// Descriptors kept open between passes (closed when the cgroup is dropped).
    handles: cgroup::Handles,
    /// Writable layer directory, once found from a process's mountinfo.
    rootfs_dir: Option<Arc<Path>>,
    rootfs_probed: bool,
    /// The container's log directory (`<pod log root>/<ns>_<pod>_<uid>/<container>`), once
    /// named (see `Collector::describe`).
    log_dir: Option<Arc<Path>>,
    /// A pod-level cgroup's network source (read by the thread that reads the cgroup).
    net: PodNet,
    /// Names and labels (see `Collector::describe`).
    identity: Arc<Identity>,
    label_str: Arc<str>,
    /// The last count of its processes and their descriptors, and the pass it was tried in
    /// (a count that failed is tried again when due, not in every pass).
    processes: Option<ProcessCounts>,
    processes_at: Option<u64>,
}

impl Tracked {
    /// Forgets what was read from the files of a cgroup whose directory changed (re-created,
    /// or gone from one hierarchy): its limits and counts are read again in the next pass, and
    /// whether its files are watched is learnt again from the watcher.
    fn forget_files(&mut self) {
        self.spec_forced = true;
        self.events_stale = true;
        self.events = (None, None);
        self.files_watched = None;
        self.processes_at = None;
    }
}

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
    /// Node filesystem path → its device from mountinfo (refreshed every sixth pass).
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

/// How long a pass waits for the statvfs calls of one step (node filesystems, volumes).
const STATVFS_TIMEOUT: Duration = Duration::from_secs(1);
/// statvfs worker threads (a hung mount holds one until its call returns).
const STATVFS_WORKERS: usize = 4;

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

    fn refresh_metadata(&mut self) {
        let pods_root = self.config.pod_log_root.clone();
        let containers_root = self.config.container_log_root();
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let now = (mtime(&pods_root), mtime(&containers_root));
        let kubelet = self
            .kubelet_pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if self.log_dirs_mtime == Some(now) && kubelet.is_none() {
            return;
        }
        self.log_dirs_mtime = Some(now);
        let (mut meta, errors) = Metadata::from_log_dirs(&pods_root, &containers_root);
        for e in errors {
            self.count_error(e.kind(), &e.to_string());
        }
        // Keep the last kubelet answer merged in (a new one replaces it).
        let kubelet = kubelet.or_else(|| self.last_kubelet.take());
        if let Some(list) = &kubelet {
            meta.merge_pod_list(list);
        }
        self.last_kubelet = kubelet;
        self.metadata = meta;
        self.described = false;
    }

    fn add(&mut self, name: &str) {
        if self.tracked.contains_key(name) {
            return;
        }
        let paths = self.layout.paths_of(name);
        if paths.is_empty() {
            return;
        }
        let kind = classify(name);
        if kind == Kind::Other && name != "/" && is_conmon(name) {
            return;
        }
        // cAdvisor clamps a creation time older than the boot to the boot time (cgroupfs mtimes
        // of cgroups created by the initramfs or early boot can predate btime).
        let start_time = match (paths.creation_time(), self.boot_time) {
            (Some(t), Some(boot)) => t.max(boot),
            (Some(t), None) => t,
            (None, _) => SystemTime::now(),
        };
        self.stats.containers_added += 1;
        self.described = false;
        self.tracked.insert(
            Arc::from(name),
            Tracked {
                paths,
                kind: Arc::new(kind),
                start_time,
                prev_cpu: None,
                spec: Arc::default(),
                spec_forced: true,
                spec_slot: slot_of(name),
                files_watched: None,
                events_stale: true,
                events: (None, None),
                handles: cgroup::Handles::default(),
                rootfs_dir: None,
                rootfs_probed: false,
                log_dir: None,
                net: PodNet::default(),
                identity: Arc::default(),
                label_str: Arc::from(""),
                processes: None,
                processes_at: None,
            },
        );
    }

    fn remove(&mut self, name: &str) {
        if let Some(t) = self.tracked.remove(name) {
            self.stats.containers_removed += 1;
            self.described = false;
            self.du_dirty = true;
            if let Some(d) = &t.rootfs_dir {
                self.du.untrack(d);
            }
        }
        self.forget_net_source(name);
    }

    /// A container cgroup was removed or re-created: its pod's network descriptor, if opened
    /// through its process, is closed (see `proc::pod_net`).
    fn forget_net_source(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            if let Some(pod) = self.tracked.get_mut(parent) {
                pod.net.forget(name);
            }
        }
    }

    fn discover(&mut self) {
        let rescan_due = match self.last_rescan {
            None => true,
            Some(t) => t.elapsed() >= self.config.rescan_interval,
        };
        let changes = self.watcher.as_ref().map(|w| w.drain()).unwrap_or_default();
        for n in &changes.created {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                // Created again (or in another hierarchy): kept descriptors may point at the
                // removed directory, and its limits and counts are the new cgroup's.
                t.paths = self.layout.paths_of(n);
                t.handles = cgroup::Handles::default();
                t.forget_files();
                self.forget_net_source(n);
            }
        }
        if rescan_due || changes.rescan {
            let mut errors = Vec::new();
            let names = discovery::scan(&self.layout, &mut errors);
            for e in errors {
                self.count_error(e.kind(), &e.to_string());
            }
            let gone: Vec<Arc<str>> = self
                .tracked
                .keys()
                .filter(|k| !names.contains(&***k))
                .cloned()
                .collect();
            for g in gone {
                self.remove(&g);
            }
            for n in &names {
                self.add(n);
            }
            self.last_rescan = Some(Instant::now());
        } else {
            for n in &changes.removed {
                // A removal in one hierarchy: drop it only when it is gone from all.
                if self.layout.paths_of(n).is_empty() {
                    self.remove(n);
                } else if let Some(t) = self.tracked.get_mut(n.as_str()) {
                    t.paths = self.layout.paths_of(n);
                    t.handles = cgroup::Handles::default();
                    t.forget_files();
                }
            }
            for n in &changes.created {
                self.add(n);
            }
        }
        // What the watcher knows of the files, for cgroups tracked now (a new one was just added).
        for n in &changes.files_watched {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.files_watched.get_or_insert(true);
            }
        }
        for n in &changes.files_unwatched {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.files_watched = Some(false);
            }
        }
        for n in &changes.limits_changed {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.spec_forced = true;
            }
        }
        for n in &changes.events_changed {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.events_stale = true;
            }
        }
        if changes.rescan {
            // Events were lost: the changes of files too.
            for t in self.tracked.values_mut() {
                t.spec_forced = true;
                t.events_stale = true;
            }
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
        if self.stats.passes.is_multiple_of(6) {
            // Mounts change rarely: the device names are looked up again every sixth pass.
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

    /// Pod and container names, images, the sandbox flag and the exposition label string of
    /// every tracked cgroup. They change only with the metadata or the set of cgroups (a pod's
    /// container count tells its sandbox apart), so they are computed again only then
    /// (`described` false), not in every pass; samples share them.
    fn describe(&mut self) {
        if self.described {
            return;
        }
        self.described = true;
        self.du_dirty = true;
        let mut per_pod: HashMap<&str, usize> = HashMap::new();
        for t in self.tracked.values() {
            if let Kind::Container { pod_uid, .. } = &*t.kind {
                *per_pod.entry(pod_uid.as_str()).or_default() += 1;
            }
        }
        let mut described = Vec::with_capacity(self.tracked.len());
        for (name, t) in &self.tracked {
            let idn = identity_of(&t.kind, &self.metadata, &per_pod, &self.config.pod_labels);
            let labels = label_string(name, &idn, &self.config.pod_labels);
            described.push((idn, labels));
        }
        let log_root = &self.config.pod_log_root;
        for (t, (idn, labels)) in self.tracked.values_mut().zip(described) {
            let log_dir = (!idn.container.is_empty() && !idn.sandbox && !idn.pod.is_empty())
                .then(|| pod_log_dir(log_root, &idn));
            if t.log_dir.as_deref() != log_dir.as_deref() {
                t.log_dir = log_dir.map(Arc::from);
            }
            if *t.identity != idn {
                t.identity = Arc::new(idn);
            }
            if *t.label_str != *labels {
                t.label_str = labels.into();
            }
        }
    }

    /// Whether this pass is the cgroup `name`'s turn in a cycle of `every` passes: work done
    /// every few passes for each cgroup is spread over the passes by the cgroup's slot, so that
    /// no pass does it for every cgroup.
    fn in_slot(&self, name: &str, every: u64) -> bool {
        (self.stats.passes + u64::from(slot_of(name))).is_multiple_of(every)
    }

    fn node_fs(
        &mut self,
        path: &Path,
        stat: Option<Result<FsInfo, StatvfsError>>,
    ) -> Option<FsInfo> {
        let mut f = match stat? {
            Ok(f) => f,
            Err(e) => {
                self.count_error(e.kind(), &e.to_string());
                return None;
            }
        };
        if !self.fs_devices.contains_key(path) {
            // `self` does not resolve in a host /proc mounted into a container (another pid
            // namespace): the host init's view then, matched by st_dev.
            let own = self.config.proc_root.join("self/mountinfo");
            let mountinfo = if own.exists() {
                own
            } else {
                self.config.proc_root.join("1/mountinfo")
            };
            let device = match std::fs::read_to_string(&mountinfo) {
                Ok(text) => {
                    crate::proc::fs::mount_device(&text, path, crate::proc::fs::path_dev(path))
                }
                Err(e) => {
                    self.count_error("proc_io", &format!("{}: {e}", mountinfo.display()));
                    None
                }
            };
            self.fs_devices.insert(path.to_path_buf(), device);
        }
        f.device = self.fs_devices[path].clone();
        Some(f)
    }

    /// Pod volumes: the directories under `<kubelet root>/pods/<uid>/volumes/<plugin>/`, each
    /// with statvfs, read for a new pod and then every sixth pass (their usage under the node
    /// filesystem comes from the incremental walk in `collect_fs_usage`).
    fn collect_volumes(&mut self, samples: &mut [ContainerSample]) {
        let pods_dir = self.config.kubelet_root.join("pods");
        // Forget the volumes of pods that are gone.
        let live: HashSet<&str> = samples
            .iter()
            .filter_map(|s| match &*s.kind {
                Kind::Pod { pod_uid, .. } => Some(pod_uid.as_str()),
                _ => None,
            })
            .collect();
        self.volumes.retain(|k, _| live.contains(k.as_str()));
        let mut listed = Vec::new();
        for s in samples.iter() {
            let Kind::Pod { pod_uid, .. } = &*s.kind else {
                continue;
            };
            if !self.volumes.contains_key(pod_uid) || self.in_slot(&s.name, 6) {
                let volumes = pods_dir.join(pod_uid).join("volumes");
                match crate::proc::fs::pod_volume_dirs(&volumes) {
                    Ok(d) => {
                        let pod = self.metadata.pods.get(pod_uid);
                        let (ids, errors) = crate::discovery::volumes::identify(&volumes, &d, pod);
                        for e in errors {
                            self.count_error(e.kind(), &e.to_string());
                        }
                        listed.push((pod_uid.clone(), d.into_iter().zip(ids).collect()));
                    }
                    Err(e) => {
                        self.count_error("volume", &e.to_string());
                        listed.push((pod_uid.clone(), Vec::new()));
                    }
                }
            }
        }
        let paths: Vec<&Path> = listed
            .iter()
            .flat_map(|(_, dirs)| dirs.iter().map(|(d, _)| d.path.as_path()))
            .collect();
        let mut stats = self
            .statvfs
            .statvfs_all(&paths, STATVFS_TIMEOUT)
            .into_iter();
        let now = SystemTime::now();
        for (uid, dirs) in listed {
            let before = self.volumes.remove(&uid).unwrap_or_default();
            let mut vols = Vec::with_capacity(dirs.len());
            for (dir, id) in dirs {
                match stats.next() {
                    Some(Ok(fs)) => vols.push(PodVolume {
                        dir,
                        id,
                        time: now,
                        fs,
                        usage: None,
                    }),
                    Some(Err(e)) => {
                        let kind = match e {
                            StatvfsError::Failed { .. } => "volume",
                            StatvfsError::TimedOut { .. } => e.kind(),
                        };
                        self.count_error(kind, &e.to_string());
                        // Not answered now (a hung mount): the last figures keep their own time.
                        if let Some(old) = before.iter().find(|v| v.dir.path == dir.path) {
                            vols.push(PodVolume { id, ..old.clone() });
                        }
                    }
                    None => {}
                }
            }
            // The walk follows volumes on the node's filesystem: a change of them changes its trees.
            let walked = |vs: &[PodVolume]| -> Vec<PathBuf> {
                vs.iter()
                    .filter(|v| !v.dir.mounted)
                    .map(|v| v.dir.path.clone())
                    .collect()
            };
            if walked(&before) != walked(&vols) {
                self.du_dirty = true;
            }
            self.volumes.insert(uid, vols);
        }
        for s in samples.iter_mut() {
            if let Kind::Pod { pod_uid, .. } = &*s.kind {
                if let Some(v) = self.volumes.get(pod_uid) {
                    s.volumes = v.clone();
                }
            }
        }
    }

    /// Writable-layer, log and volume sizes through the incremental walk (bounded entries per
    /// pass). `dirs`: each sample's writable layer and log directory (see `read_chunk`).
    fn collect_fs_usage(&mut self, samples: &mut [ContainerSample], dirs: &[DuDirs]) {
        if self.du_dirty {
            self.du_dirty = false;
            let mut live: HashSet<&Path> = HashSet::new();
            for t in self.tracked.values() {
                for d in [&t.rootfs_dir, &t.log_dir].into_iter().flatten() {
                    self.du.track(d);
                    live.insert(d);
                }
            }
            for s in samples.iter() {
                for v in s.volumes.iter().filter(|v| !v.dir.mounted) {
                    self.du.track(&v.dir.path);
                    live.insert(&v.dir.path);
                }
            }
            // Forget trees of containers and volumes that are gone.
            self.du.retain(|d| live.contains(d));
        }
        self.du.advance(self.config.fs_walk_budget);
        for (s, (rootfs, log)) in samples.iter_mut().zip(dirs) {
            s.rootfs = rootfs.as_deref().and_then(|d| self.du.usage(d));
            s.logs = log.as_deref().and_then(|d| self.du.usage(d));
            for v in s.volumes.iter_mut().filter(|v| !v.dir.mounted) {
                v.usage = self.du.usage(&v.dir.path);
            }
        }
    }

    /// Number of tracked cgroups.
    pub fn tracked_len(&self) -> usize {
        self.tracked.len()
    }
}

/// What one reading thread met besides the samples (which go straight to their slots).
#[derive(Default)]
struct Outcome {
    errors: Vec<cgroup::Error>,
    /// Errors reading /proc: pods' network, processes' descriptors.
    proc_errors: Vec<proc::Error>,
    gone: Vec<Arc<str>>,
    files_read: u64,
    /// Writable layers found in this pass.
    rootfs_found: usize,
}

/// A tracked cgroup as the reading threads get it.
type Entry<'a> = (&'a Arc<str>, &'a mut Tracked);

/// A block of the pass: tracked cgroups, their sample slots, their writable-layer and log
/// directory slots (a cgroup found gone leaves its slots empty).
type Block<'e, 'a> = (
    &'e mut [Entry<'a>],
    &'e mut [Option<ContainerSample>],
    &'e mut [DuDirs],
);

/// `n` empty sample slots in the allocation of `spare` (an emptied samples vector) when it is
/// large enough. `Option<ContainerSample>` has the size and alignment of `ContainerSample` (the
/// `Arc`s are never null), so the standard library's in-place collection keeps the allocation.
fn slots_from(mut spare: Vec<ContainerSample>, n: usize) -> Vec<Option<ContainerSample>> {
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
fn samples_from(slots: Vec<Option<ContainerSample>>) -> Vec<ContainerSample> {
    // `flatten` would do the same but allocates a new vector.
    #[allow(clippy::filter_map_identity)]
    slots.into_iter().filter_map(|s| s).collect()
}

/// Cgroups per block of a pass's reading (see `Collector::pass`): small enough to balance the
/// threads, large enough that taking a block costs nothing next to reading it (~0.2 ms).
const READ_BLOCK: usize = 16;

/// What every reading thread needs for one pass.
#[derive(Clone, Copy)]
struct PassContext<'a> {
    opts: ReadOptions,
    pass: u64,
    /// How cgroups' processes are counted in this pass, when the `process` group is on.
    processes: Option<ProcessPass<'a>>,
    /// Where pods' processes are looked up, when network figures are collected.
    net: Option<pod_net::Lookup<'a>>,
    /// The /proc of containers' processes, when writable layers are looked for.
    rootfs_probe: Option<&'a Path>,
}

/// Descriptors and processes a pass examines in its process counts, on average, at most. A
/// count costs ≈ 3 µs per descriptor and ≈ 9 µs per process on the test VM, so this is ≈ 15 ms
/// of CPU over the reading threads. When the last counts of all cgroups add up to more than
/// `process_stats_interval` passes of it, counts come less often (every cgroup still in turn)
/// instead of slowing every pass.
const PROCESS_STATS_BUDGET: u64 = 5_000;

/// How processes are counted in one pass (see `count_processes_of`).
#[derive(Clone, Copy)]
struct ProcessPass<'a> {
    /// The /proc the pids of cgroup.procs are looked up in.
    proc_root: &'a Path,
    /// Every how many passes a cgroup is counted: from `process_stats_interval`, or more
    /// when the counts would exceed `PROCESS_STATS_BUDGET`.
    every: u64,
}

/// A sample's writable-layer and log directories (the incremental walk's trees).
type DuDirs = (Option<Arc<Path>>, Option<Arc<Path>>);

/// Reads a block of the tracked cgroups with one reader (one thread) into its slots; what else
/// it meets goes to `out`.
fn read_chunk(
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

/// Every how many passes a cgroup's processes are counted: `process_stats_interval` in passes
/// (at the defaults, 30 s and 10 s, every third pass), or more passes when a full count of
/// `count_size` descriptors and processes would exceed `PROCESS_STATS_BUDGET` per pass.
fn processes_every(config: &Config, count_size: u64) -> u64 {
    let by_interval = (config.process_stats_interval.as_millis())
        .div_ceil(config.housekeeping_interval.as_millis().max(1))
        .max(1) as u64;
    by_interval.max(count_size.div_ceil(PROCESS_STATS_BUDGET))
}

/// Counts a cgroup's processes and their descriptors into `t.processes` when due: when first
/// seen, then in its slot of every `how.every` passes.
fn count_processes_of(
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
fn slot_of(name: &str) -> u8 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % u64::from(SPEC_EVERY_WATCHED)) as u8
}

/// CPU cores used between two samples of a cumulative nanosecond counter, in nanocores; `None`
/// when no time passed or the counter went backwards (a reset).
fn rate_nano_cores(prev_at: Instant, prev_ns: u64, now: Instant, ns: u64) -> Option<u64> {
    let dt = now.duration_since(prev_at).as_nanos();
    (dt > 0 && ns >= prev_ns).then(|| ((ns - prev_ns) as u128 * 1_000_000_000 / dt) as u64)
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

/// Whether `/proc/<pid>/cgroup` places the process in the pod with this uid (cgroupfs driver:
/// `pod<uid>`; systemd driver: `pod<uid with _ for ->`). An unreadable file means no.
fn pod_log_dir(root: &Path, id: &Identity) -> PathBuf {
    root.join(format!("{}_{}_{}", id.namespace, id.pod, id.pod_uid))
        .join(&id.container)
}

fn is_conmon(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .map(|s| s.starts_with("crio-conmon-"))
        .unwrap_or(false)
}

/// The `upperdir=` of the overlay mounted at `/` in a process's mount namespace.
/// The writable layer of a container: the overlay upperdir of a process in `paths`.
fn probe_rootfs(paths: &CgroupPaths, proc_root: &Path) -> Option<PathBuf> {
    let pid = paths
        .any_dir()
        .and_then(|d| cgroup::read_procs(d).ok())
        .and_then(|p| p.first().copied())?;
    overlay_upperdir(&proc_root.join(pid.to_string()).join("mountinfo"))
}

pub fn overlay_upperdir(mountinfo: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(mountinfo).ok()?;
    for line in text.lines() {
        let (pre, post) = line.split_once(" - ")?;
        let mount_point = pre.split_ascii_whitespace().nth(4)?;
        if mount_point != "/" {
            continue;
        }
        let mut it = post.split_ascii_whitespace();
        if it.next()? != "overlay" {
            return None;
        }
        let opts = it.nth(1)?;
        return opts
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from);
    }
    None
}

/// Escapes a label value for the text exposition.
pub fn escape_label(v: &str, out: &mut String) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Pod/container names, image and sandbox flag of a cgroup of kind `kind`; `per_pod`: the
/// number of container cgroups of each pod.
fn identity_of(
    kind: &Kind,
    metadata: &Metadata,
    per_pod: &HashMap<&str, usize>,
    pod_labels: &[String],
) -> Identity {
    // What a pod's cgroups and its containers' share: the pod's uid, and its name, namespace
    // and selected labels when the metadata knows the pod.
    let of_pod = |pod_uid: &String| {
        let mut idn = Identity {
            pod_uid: pod_uid.clone(),
            ..Default::default()
        };
        let pod = metadata.pods.get(pod_uid);
        if let Some(pod) = pod {
            idn.pod = pod.name.clone();
            idn.namespace = pod.namespace.clone();
            idn.labels = pod_labels
                .iter()
                .filter_map(|k| pod.labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
        }
        (idn, pod)
    };
    match kind {
        Kind::Container { pod_uid, id, .. } => {
            let (mut idn, pod) = of_pod(pod_uid);
            idn.container_id = id.clone();
            if let Some(pod) = pod {
                match pod.containers.get(id) {
                    Some(c) => {
                        idn.container = c.name.clone();
                        idn.image = c.image.clone();
                    }
                    None if per_pod.get(pod_uid.as_str()).copied().unwrap_or(0) > 1 => {
                        // In the pod's cgroup but not in its logs or the kubelet's list: the
                        // sandbox (pause) container.
                        idn.sandbox = true;
                        idn.container = "POD".to_string();
                    }
                    None => {
                        // A single unnamed container: if the pod has exactly one named
                        // container in its log dir, it is that one.
                        if pod.container_names.len() == 1 && pod.containers.is_empty() {
                            idn.container = pod.container_names[0].clone();
                        }
                    }
                }
            }
            idn
        }
        Kind::Pod { pod_uid, .. } => of_pod(pod_uid).0,
        _ => Identity::default(),
    }
}

/// The exposition label set of cgroup `name` (see `ContainerSample::label_str`): the kubelet's
/// labels (container, id, image, name, namespace, pod) plus the opt-in pod labels.
fn label_string(name: &str, i: &Identity, pod_labels: &[String]) -> String {
    let mut out = String::with_capacity(160);
    for (k, v) in [
        ("container", i.container.as_str()),
        ("id", name),
        ("image", i.image.as_str()),
        ("name", i.container_id.as_str()),
        ("namespace", i.namespace.as_str()),
        ("pod", i.pod.as_str()),
    ] {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, &mut out);
        out.push('"');
    }
    for k in pod_labels {
        let v = i
            .labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        out.push(',');
        out.push_str(&crate::config::pod_label_name(k));
        out.push_str("=\"");
        escape_label(v, &mut out);
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_config(root: &str) -> Arc<Config> {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        Arc::new(Config {
            cgroup_root: base.join(root),
            proc_root: base.join("proc-root-absent"),
            pod_log_root: base.join("logs/pods"),
            container_log_root: Some(base.join("logs/containers")),
            node_name: Some("fixture-node".into()),
            ..Default::default()
        })
    }

    /// A temporary cgroup v2 root (with `controllers`) holding the empty container cgroup
    /// `/kubepods/podaa/0123`.
    struct TmpNode {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        dir: PathBuf,
    }

    fn tmp_node(controllers: &str) -> TmpNode {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        std::fs::write(root.join("cgroup.controllers"), format!("{controllers}\n")).unwrap();
        let dir = root.join("kubepods/podaa/0123");
        std::fs::create_dir_all(&dir).unwrap();
        TmpNode {
            _tmp: tmp,
            root,
            dir,
        }
    }

    /// An empty cgroup v2 root (cpu and memory) at `<dir>/cg`.
    fn v2_root_in(dir: &Path) -> PathBuf {
        let cg = dir.join("cg");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "cpu memory\n").unwrap();
        cg
    }

    /// A collector on the cgroup root `root` with the fixture config, adjusted by `tweak`.
    fn collector_at(root: &Path, tweak: impl FnOnce(&mut Config)) -> Collector {
        let mut cfg = (*fixture_config("x")).clone();
        cfg.cgroup_root = root.to_path_buf();
        tweak(&mut cfg);
        Collector::new(Arc::new(cfg)).unwrap()
    }

    fn find<'a>(s: &'a Snapshot, suffix: &str) -> &'a ContainerSample {
        s.containers
            .iter()
            .find(|c| c.name.ends_with(suffix))
            .unwrap_or_else(|| panic!("{suffix} not found"))
    }

    #[test]
    fn v2_systemd_fixture_values() {
        let mut c = Collector::new(fixture_config("cgroup-v2-systemd")).unwrap();
        let snap = c.pass();
        let a = find(&snap, &format!("cri-containerd-{}.scope", "a".repeat(64)));
        let cpu = a.stats.cpu.as_ref().unwrap();
        // cpu.stat usage_usec 5000000 × 1000 = 5e9 ns; user 3e9; system 2e9; throttled_usec 250000 × 1000.
        assert_eq!(
            (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
            (5_000_000_000, 3_000_000_000, 2_000_000_000)
        );
        assert_eq!(
            (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
            (100, 10, 250_000_000)
        );
        let m = a.stats.memory.as_ref().unwrap();
        // working set = memory.current 104857600 − inactive_file 20971520 = 83886080.
        assert_eq!(m.usage, 104_857_600);
        assert_eq!(m.working_set, 83_886_080);
        assert_eq!(
            (m.rss, m.cache, m.mapped_file, m.swap),
            (52_428_800, 41_943_040, 4_194_304, 4096)
        );
        assert_eq!(
            (m.pgfault, m.pgmajfault, m.failcnt, m.oom_kills),
            (1000, 7, Some(3), Some(1))
        );
        assert_eq!(m.max_usage, Some(125_829_120));
        // cpu.max "50000 100000"; cpu.weight 10 → 2 + 9 × 262142 / 9999 = 2 + 235 = 237.
        assert_eq!(a.stats.spec.cpu_quota_us, Some(50_000));
        assert_eq!(a.stats.spec.cpu_period_us, Some(100_000));
        assert_eq!(a.stats.spec.cpu_shares, Some(237));
        assert_eq!(a.stats.spec.memory_limit, Some(268_435_456));
        assert_eq!(a.stats.spec.memory_swap_limit, None);
        let io = a.stats.io.as_ref().unwrap();
        assert_eq!(
            (
                io[0].read_bytes,
                io[0].write_bytes,
                io[0].reads,
                io[0].writes
            ),
            (1_048_576, 2_097_152, 10, 20)
        );
        assert_eq!(a.stats.pids.as_ref().unwrap().current, 12);
        assert_eq!(a.stats.pids.as_ref().unwrap().max, Some(1024));
        let psi = a.stats.pressure.cpu.as_ref().unwrap();
        assert_eq!((psi.some.total, psi.full.total), (1_500_000, 500_000));
        // Names from the log layout: the symlink maps aaaa… to nginx; cccc… has no match and the
        // pod has two containers, so it is the sandbox.
        assert_eq!(a.identity.container, "nginx");
        assert_eq!(
            (a.identity.pod.as_str(), a.identity.namespace.as_str()),
            ("web-0", "default")
        );
        let sandbox = find(&snap, &format!("cri-containerd-{}.scope", "c".repeat(64)));
        assert!(sandbox.identity.sandbox);
        assert_eq!(sandbox.identity.container, "POD");
        // crio-conmon is not a container; the kubelet is a system container.
        assert!(!snap
            .containers
            .iter()
            .any(|c| c.name.contains("crio-conmon")));
        assert_eq!(
            *find(&snap, "/system.slice/kubelet.service").kind,
            Kind::System("kubelet")
        );
        // The pod-level cgroup is a pod.
        let pod = find(
            &snap,
            "kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice",
        );
        assert!(matches!(*pod.kind, Kind::Pod { .. }));
        assert_eq!(pod.identity.pod, "web-0");
    }

    #[test]
    fn malformed_files_are_counted_and_the_pass_goes_on() {
        let mut c = Collector::new(fixture_config("cgroup-v2-systemd")).unwrap();
        let snap = c.pass();
        // crio-dddd…: memory.stat has a bad line, pids.current is not a number.
        let d = find(&snap, &format!("crio-{}.scope", "d".repeat(64)));
        assert!(d.stats.cpu.is_some(), "cpu still read");
        assert!(d.stats.memory.is_none());
        assert!(d.stats.pids.is_none());
        assert_eq!(
            snap.self_stats.errors_by_kind.get("parse"),
            Some(&2),
            "{:?}",
            snap.self_stats.errors_by_kind
        );
        // The missing /proc is counted, not fatal.
        assert!(
            snap.self_stats
                .errors_by_kind
                .get("proc_io")
                .copied()
                .unwrap_or(0)
                >= 1
        );
        // Unknown pod: still reported by its cgroup id, with no names.
        assert_eq!(d.identity.pod, "");
        assert!(d
            .label_str
            .contains(&format!("name=\"{}\"", "d".repeat(64))));
    }

    #[test]
    fn v1_cgroupfs_fixture_values() {
        let mut c = Collector::new(fixture_config("cgroup-v1-cgroupfs")).unwrap();
        let snap = c.pass();
        let b = find(&snap, &"b".repeat(64));
        let cpu = b.stats.cpu.as_ref().unwrap();
        let tick = 1_000_000_000 / rustix::param::clock_ticks_per_second();
        // cpuacct.usage 7e9 ns; cpuacct.stat user 400, system 200 ticks (× 1e9/USER_HZ).
        assert_eq!(cpu.usage_ns, 7_000_000_000);
        assert_eq!((cpu.user_ns, cpu.system_ns), (400 * tick, 200 * tick));
        assert_eq!(
            (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
            (40, 4, 123_000_000)
        );
        let m = b.stats.memory.as_ref().unwrap();
        // working set = 209715200 − total_inactive_file 52428800 = 157286400 (total_* keys, not the local ones).
        assert_eq!(m.working_set, 157_286_400);
        assert_eq!(
            (m.rss, m.cache, m.swap, m.mapped_file),
            (73_400_320, 104_857_600, 8192, 8_388_608)
        );
        assert_eq!(
            (m.pgfault, m.pgmajfault, m.failcnt, m.oom_kills),
            (2000, 9, Some(2), Some(2))
        );
        // Container scope comes from the non-total_ keys: pgfault 5, pgmajfault 6.
        assert_eq!((m.pgfault_local, m.pgmajfault_local), (5, 6));
        assert_eq!(b.stats.spec.cpu_shares, Some(512));
        assert_eq!(b.stats.spec.cpu_quota_us, Some(50_000));
        assert_eq!(b.stats.spec.memory_limit, Some(536_870_912));
        // 9223372036854771712 is v1's "unlimited".
        assert_eq!(b.stats.spec.memory_swap_limit, None);
        let io = b.stats.io.as_ref().unwrap();
        assert_eq!(
            (
                io[0].read_bytes,
                io[0].write_bytes,
                io[0].reads,
                io[0].writes
            ),
            (4096, 8192, 1, 2)
        );
        assert_eq!(b.stats.pids.as_ref().unwrap().max, None);
        // The pod-level cgroup has cpu.cfs_quota_us -1: no quota.
        let pod = find(&snap, "/pod11111111-2222-3333-4444-555555555555");
        assert_eq!(pod.stats.spec.cpu_quota_us, None);
        // No metadata for this pod: reported by cgroup id.
        assert_eq!(b.identity.pod, "");
        // This v1 fixture has every controller.
        assert_eq!(
            snap.self_stats.errors_by_kind.get("missing_controller"),
            None
        );
    }

    #[test]
    fn hybrid_reads_v1_controllers_and_v2_pressure() {
        let mut c = Collector::new(fixture_config("cgroup-hybrid")).unwrap();
        let snap = c.pass();
        let e = find(&snap, &"e".repeat(64));
        // CPU from v1 cpuacct.usage (3e9), not the unified cpu.stat (2.999e9).
        assert_eq!(e.stats.cpu.as_ref().unwrap().usage_ns, 3_000_000_000);
        assert_eq!(e.stats.pressure.cpu.as_ref().unwrap().some.total, 7000);
        assert_eq!(e.stats.memory.as_ref().unwrap().usage, 1_048_576);
        // A cgroup only in the unified hierarchy is read through v2.
        let f = find(&snap, &"f".repeat(64));
        assert_eq!(f.stats.cpu.as_ref().unwrap().usage_ns, 1_000_000_000);
        // blkio and pids are not mounted in this fixture: counted once as missing controllers.
        assert_eq!(
            snap.self_stats.errors_by_kind.get("missing_controller"),
            Some(&2)
        );
    }

    #[test]
    fn removed_mid_pass_is_dropped_not_fatal() {
        let node = tmp_node("cpu memory");
        let (root, dir) = (node.root.as_path(), node.dir.clone());
        std::fs::write(
            dir.join("cpu.stat"),
            "usage_usec 10\nuser_usec 5\nsystem_usec 5\n",
        )
        .unwrap();
        let mut c = collector_at(root, |_| {});
        let first = c.pass();
        assert!(first
            .containers
            .iter()
            .any(|s| &*s.name == "/kubepods/podaa/0123"));
        std::fs::remove_dir_all(&dir).unwrap();
        // No watcher and no rescan due: the read finds the directory gone.
        let second = c.pass();
        assert!(!second
            .containers
            .iter()
            .any(|s| &*s.name == "/kubepods/podaa/0123"));
        assert_eq!(
            second.self_stats.errors_by_kind.get("container_gone"),
            Some(&1)
        );
    }

    #[test]
    fn unreadable_file_is_counted_as_io_and_the_rest_is_read() {
        let node = tmp_node("cpu memory");
        let (root, dir) = (node.root.as_path(), node.dir.clone());
        // A directory where the kernel has a file: reading it fails (EISDIR), as an unreadable file does.
        std::fs::create_dir(dir.join("cpu.stat")).unwrap();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        let mut c = collector_at(root, |_| {});
        let snap = c.pass();
        let s = snap
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap();
        assert!(s.stats.cpu.is_none());
        assert_eq!(s.stats.memory.as_ref().unwrap().usage, 4096);
        assert!(
            snap.self_stats
                .errors_by_kind
                .get("io")
                .copied()
                .unwrap_or(0)
                >= 1,
            "{:?}",
            snap.self_stats.errors_by_kind
        );
    }

    #[test]
    fn rates_come_from_two_samples() {
        let node = tmp_node("cpu");
        let (root, dir) = (node.root.as_path(), node.dir.clone());
        std::fs::write(dir.join("cpu.stat"), "usage_usec 0\n").unwrap();
        let mut c = collector_at(root, |_| {});
        let first = c.pass();
        assert_eq!(
            first
                .containers
                .iter()
                .find(|s| &*s.name == "/kubepods/podaa/0123")
                .unwrap()
                .usage_nano_cores,
            None
        );
        std::thread::sleep(Duration::from_millis(200));
        // 100 ms of CPU in ≥ 200 ms of wall time: at most half a core.
        std::fs::write(dir.join("cpu.stat"), "usage_usec 100000\n").unwrap();
        let second = c.pass();
        let r = second
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap()
            .usage_nano_cores
            .unwrap();
        assert!(r > 100_000_000 && r <= 500_000_000, "{r}");
    }

    #[test]
    fn overflowing_counter_is_a_parse_error_naming_the_file() {
        let node = tmp_node("cpu memory");
        let (root, dir) = (node.root.as_path(), node.dir.clone());
        // u64::MAX µs × 1000 does not fit u64 ns: no panic, no wrap, a parse error.
        std::fs::write(
            dir.join("cpu.stat"),
            format!("usage_usec {}\nuser_usec 1\n", u64::MAX),
        )
        .unwrap();
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        let mut c = collector_at(root, |_| {});
        let mut errors = Vec::new();
        let paths = c.layout.paths_of("/kubepods/podaa/0123");
        let opts = c.opts_template;
        let err = match c.readers[0].read_stats(
            &paths,
            &mut cgroup::Handles::default(),
            opts,
            &mut errors,
        ) {
            Err(e) => e.to_string(),
            Ok(_) => errors
                .iter()
                .map(|e| e.to_string())
                .find(|e| e.contains("overflows"))
                .expect("an overflow error"),
        };
        assert!(
            err.contains("cpu.stat") && err.contains("usage_usec"),
            "{err}"
        );
        let snap = c.pass();
        assert!(
            snap.self_stats
                .errors_by_kind
                .get("parse")
                .copied()
                .unwrap_or(0)
                >= 1
        );
        // The pass went on: the container is still reported with its memory.
        let s = snap
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap();
        assert_eq!(s.stats.memory.as_ref().unwrap().usage, 4096);
    }

    #[test]
    fn no_rate_after_a_pass_without_cpu_stats() {
        let node = tmp_node("cpu memory");
        let (root, dir) = (node.root.as_path(), node.dir.clone());
        // Pass 1: no cpu.stat yet (created mid-read), only memory.
        std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
        let mut c = collector_at(root, |_| {});
        let first = c.pass();
        let s = first
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap();
        assert!(s.stats.cpu.is_none());
        std::thread::sleep(Duration::from_millis(50));
        // Pass 2: an hour of lifetime CPU appears; one sample is not a rate.
        std::fs::write(dir.join("cpu.stat"), "usage_usec 3600000000\n").unwrap();
        let second = c.pass();
        let s = second
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap();
        assert_eq!(s.stats.cpu.as_ref().unwrap().usage_ns, 3_600_000_000_000);
        assert_eq!(s.usage_nano_cores, None);
        // Pass 3: 10 ms more CPU in ≥ 50 ms: a sane rate (≤ 0.2 core).
        std::thread::sleep(Duration::from_millis(50));
        std::fs::write(dir.join("cpu.stat"), "usage_usec 3600010000\n").unwrap();
        let third = c.pass();
        let r = third
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap()
            .usage_nano_cores
            .unwrap();
        assert!(r > 0 && r <= 200_000_000, "{r}");
    }

    /// A pod's network comes from net/dev of one of its processes, opened once through a
    /// container cgroup: a pid whose /proc entry is not in the pod (exited and reused) is
    /// skipped; the descriptor is re-read without looking the pid up again; when its container is
    /// removed, another container's process is looked up.
    #[test]
    fn pod_network_is_read_through_a_container_process() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = v2_root_in(tmp.path());
        let proc_root = tmp.path().join("proc");
        let uid = "11111111-2222-3333-4444-555555555555";
        let pod_rel = format!("kubepods/burstable/pod{uid}");
        let container = |c: char, procs: &str| {
            let d = cg.join(&pod_rel).join(c.to_string().repeat(64));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("cpu.stat"), "usage_usec 10\n").unwrap();
            std::fs::write(d.join("cgroup.procs"), procs).unwrap();
            d
        };
        let net = |rx: u64| {
            format!(
                "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 7 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n  eth0: {rx} 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n"
            )
        };
        let write_pid = |pid: u32, cgroup: &str, rx: u64| {
            let d = proc_root.join(pid.to_string());
            std::fs::create_dir_all(d.join("net")).unwrap();
            std::fs::write(d.join("cgroup"), cgroup).unwrap();
            std::fs::write(d.join("net/dev"), net(rx)).unwrap();
        };
        let in_pod = |c: char| format!("0::/{pod_rel}/{}\n", c.to_string().repeat(64));
        // Container a lists pid 100, which is a host process now (exited and reused).
        let a = container('a', "100\n");
        write_pid(100, "0::/system.slice/cron.service\n", 999_999_999);
        let mut c = collector_at(&cg, |cfg| {
            cfg.proc_root = proc_root.clone();
            cfg.rescan_interval = Duration::ZERO;
        });
        let rx = |snap: &Snapshot| {
            let pod = snap
                .containers
                .iter()
                .find(|s| *s.name == *format!("/{pod_rel}"))
                .expect("pod sample");
            let n = pod.network.as_ref()?;
            assert!(
                n.iter().all(|i| i.name != "lo"),
                "lo is not a pod interface"
            );
            Some(n.iter().find(|i| i.name == "eth0").unwrap().rx_bytes)
        };
        assert_eq!(rx(&c.pass()), None, "a pid outside the pod is not read");
        // Container b starts with pid 200, in the pod: found within the retry cycle.
        container('b', "200\n");
        write_pid(200, &in_pod('b'), 2000);
        let found = (0..pod_net::RETRY_EVERY).find_map(|_| rx(&c.pass()));
        assert_eq!(found, Some(2000));
        // The kept descriptor is re-read; cgroup.procs is not looked at again.
        write_pid(200, &in_pod('b'), 2500);
        std::fs::write(
            cg.join(&pod_rel).join("b".repeat(64)).join("cgroup.procs"),
            "300\n",
        )
        .unwrap();
        write_pid(300, &in_pod('b'), 3000);
        assert_eq!(rx(&c.pass()), Some(2500));
        // Container b is removed: the pod's network is looked up again, in container a, whose
        // pid 100 is now the pod's.
        std::fs::remove_dir_all(cg.join(&pod_rel).join("b".repeat(64))).unwrap();
        write_pid(100, &in_pod('a'), 1000);
        assert_eq!(rx(&c.pass()), Some(1000));
        drop(a);
    }

    /// Names and labels are kept between passes, and follow the metadata (log directories
    /// appearing) and the cgroups (a second container in the pod makes the unnamed one its
    /// sandbox).
    #[test]
    fn names_and_labels_follow_metadata_and_new_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = v2_root_in(tmp.path());
        let (pods, containers) = (tmp.path().join("pods"), tmp.path().join("containers"));
        std::fs::create_dir_all(&pods).unwrap();
        std::fs::create_dir_all(&containers).unwrap();
        let uid = "11111111-2222-3333-4444-777777777777";
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let pod_dir = cg.join(format!("kubepods/pod{uid}"));
        std::fs::create_dir_all(pod_dir.join(&a)).unwrap();
        let mut c = collector_at(&cg, |cfg| {
            cfg.pod_log_root = pods.clone();
            cfg.container_log_root = Some(containers.clone());
            cfg.rescan_interval = Duration::ZERO;
        });
        let snap = c.pass();
        let s = find(&snap, &a);
        assert_eq!(s.identity.pod, "");
        assert!(s.label_str.contains("pod=\"\""), "{}", s.label_str);
        // The kubelet's log directories appear: the container is named in the next pass.
        std::fs::create_dir_all(pods.join(format!("ns1_web-0_{uid}/app"))).unwrap();
        std::fs::write(containers.join(format!("web-0_ns1_app-{a}.log")), "").unwrap();
        let snap = c.pass();
        let s = find(&snap, &a);
        assert_eq!(
            (s.identity.pod.as_str(), s.identity.container.as_str()),
            ("web-0", "app")
        );
        assert!(s.label_str.contains("container=\"app\"") && s.label_str.contains("pod=\"web-0\""));
        let pod = find(&snap, &format!("pod{uid}"));
        assert!(
            pod.label_str.contains("namespace=\"ns1\""),
            "{}",
            pod.label_str
        );
        // A second, unnamed container in the pod: the sandbox.
        std::fs::create_dir_all(pod_dir.join(&b)).unwrap();
        let snap = c.pass();
        let s = find(&snap, &b);
        assert!(s.identity.sandbox);
        assert!(s.label_str.contains("container=\"POD\""), "{}", s.label_str);
        assert_eq!(find(&snap, &a).identity.container, "app");
    }

    /// A container's writable layer (the overlay upperdir of one of its processes) and its log
    /// directory are sized by the incremental walk, `du`'s way; when the container goes, their
    /// walks stop.
    #[test]
    fn writable_layer_and_logs_are_sized_and_forgotten() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let cg = v2_root_in(tmp.path());
        let proc_root = tmp.path().join("proc");
        let (pods, containers) = (tmp.path().join("pods"), tmp.path().join("containers"));
        let upper = tmp.path().join("snapshots/9/fs");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("data"), vec![7u8; 20_000]).unwrap();
        std::fs::write(upper.join("etc/conf"), "x=1\n").unwrap();
        let uid = "11111111-2222-3333-4444-888888888888";
        let id = "c".repeat(64);
        let log_dir = pods.join(format!("ns1_web-0_{uid}/app"));
        std::fs::create_dir_all(&log_dir).unwrap();
        std::fs::write(log_dir.join("0.log"), vec![b'l'; 9_000]).unwrap();
        std::fs::create_dir_all(&containers).unwrap();
        std::fs::write(containers.join(format!("web-0_ns1_app-{id}.log")), "").unwrap();
        let ctr = cg.join(format!("kubepods/pod{uid}/{id}"));
        std::fs::create_dir_all(&ctr).unwrap();
        std::fs::write(ctr.join("cgroup.procs"), "500\n").unwrap();
        std::fs::create_dir_all(proc_root.join("500")).unwrap();
        std::fs::write(
            proc_root.join("500/mountinfo"),
            format!(
                "1 0 0:50 / / rw - overlay overlay rw,lowerdir=/l,upperdir={},workdir=/w\n",
                upper.display()
            ),
        )
        .unwrap();
        // What `du` counts under a directory: every entry's blocks × 512.
        let du = |root: &Path| {
            let mut u = Usage::default();
            let mut pending = vec![root.to_path_buf()];
            while let Some(d) = pending.pop() {
                for e in std::fs::read_dir(&d).unwrap().flatten() {
                    let md = e.metadata().unwrap();
                    u.bytes += md.blocks() * 512;
                    u.inodes += 1;
                    if md.is_dir() {
                        pending.push(e.path());
                    }
                }
            }
            u
        };
        let mut c = collector_at(&cg, |cfg| {
            cfg.proc_root = proc_root.clone();
            cfg.pod_log_root = pods.clone();
            cfg.container_log_root = Some(containers.clone());
            cfg.rescan_interval = Duration::ZERO;
        });
        let sized = (0..5)
            .map(|_| c.pass())
            .find(|snap| {
                let s = find(snap, &id);
                s.rootfs.is_some() && s.logs.is_some()
            })
            .expect("writable layer and logs sized within 5 passes");
        let s = find(&sized, &id);
        assert_eq!(s.rootfs, Some(du(&upper)));
        assert_eq!(s.rootfs.unwrap().inodes, 3);
        assert_eq!(s.logs, Some(du(&log_dir)));
        assert!(s.logs.unwrap().bytes >= 9_000);
        assert_eq!(c.du.len(), 2);
        // More data in the layer: the next complete walk has it.
        std::fs::write(upper.join("more"), vec![1u8; 50_000]).unwrap();
        let grown = (0..5)
            .map(|_| find(&c.pass(), &id).rootfs)
            .find(|u| *u == Some(du(&upper)));
        assert!(grown.is_some(), "the layer's new size within 5 passes");
        std::fs::remove_dir_all(&ctr).unwrap();
        c.pass();
        assert_eq!(c.du.len(), 0, "the walks of a removed container stop");
    }

    /// On a tree of many blocks, passes with 1, 2 and 3 threads give the same samples, in the
    /// same order (blocks are taken from both ends and put back in order).
    #[test]
    fn threads_share_the_blocks_and_keep_the_order() {
        let tmp = tempfile::tempdir().unwrap();
        crate::fixture::generate_v2_tree(tmp.path(), 60).unwrap();
        let run = |threads: usize| {
            let mut c = collector_at(tmp.path(), |cfg| cfg.collection_threads = threads);
            c.pass();
            let snap = c.pass();
            snap.containers
                .iter()
                .map(|s| (s.name.clone(), s.stats.clone(), s.label_str.clone()))
                .collect::<Vec<_>>()
        };
        let one = run(1);
        assert!(one.len() > 5 * READ_BLOCK, "{} cgroups", one.len());
        assert!(one.windows(2).all(|w| w[0].0 < w[1].0), "in name order");
        assert_eq!(run(2), one);
        assert_eq!(run(3), one);
    }

    /// A pass fills the vector of the snapshot handed back (`recycle`), and cgroups found gone
    /// while it reads leave no hole: the others close up, in order. A snapshot still shared
    /// is not taken.
    #[test]
    fn recycled_samples_are_refilled_in_place_and_close_up_over_gone_cgroups() {
        let tmp = tempfile::tempdir().unwrap();
        crate::fixture::generate_v2_tree(tmp.path(), 60).unwrap();
        let mut c = collector_at(tmp.path(), |cfg| cfg.collection_threads = 2);
        let first = c.pass();
        let names: Vec<Arc<str>> = first.containers.iter().map(|s| s.name.clone()).collect();
        let at = first.containers.as_ptr();
        c.recycle(Arc::new(first));
        // Containers in several blocks (never a pod: its containers go with it).
        let gone: Vec<&Arc<str>> = names
            .iter()
            .filter(|n| n.ends_with(".scope"))
            .step_by(9)
            .collect();
        assert!(gone.len() >= 5, "{} removed", gone.len());
        for n in &gone {
            std::fs::remove_dir_all(tmp.path().join(n.trim_start_matches('/'))).unwrap();
        }
        // No watcher and no rescan due: the reads find them gone.
        let second = c.pass();
        assert_eq!(
            second.containers.as_ptr(),
            at,
            "the recycled vector is filled"
        );
        let left: Vec<&Arc<str>> = names.iter().filter(|n| !gone.contains(n)).collect();
        let got: Vec<&Arc<str>> = second.containers.iter().map(|s| &s.name).collect();
        assert_eq!(got, left);
        assert_eq!(
            second.self_stats.errors_by_kind.get("container_gone"),
            Some(&(gone.len() as u64))
        );
        // Each sample is its own cgroup's (the slots were not shifted).
        for s in &second.containers {
            let usage = std::fs::read_to_string(
                tmp.path()
                    .join(s.name.trim_start_matches('/'))
                    .join("cpu.stat"),
            )
            .unwrap();
            let usec: u64 = usage.lines().next().unwrap()[11..].parse().unwrap();
            assert_eq!(
                s.stats.cpu.as_ref().unwrap().usage_ns,
                usec * 1000,
                "{}",
                s.name
            );
        }
        // A snapshot a scrape still holds is left alone.
        let second = Arc::new(second);
        let held = second.clone();
        c.recycle(second);
        let third = c.pass();
        assert_ne!(third.containers.as_ptr(), held.containers.as_ptr());
        assert_eq!(held.containers.len(), left.len());
    }

    /// cgroup v2's `populated 0` in a pod's cgroup.events spares the look at its containers.
    #[test]
    fn unpopulated_pod_has_no_network_until_populated() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = v2_root_in(tmp.path());
        let proc_root = tmp.path().join("proc");
        let uid = "11111111-2222-3333-4444-666666666666";
        let pod = cg.join(format!("kubepods/pod{uid}"));
        let ctr = pod.join("d".repeat(64));
        std::fs::create_dir_all(&ctr).unwrap();
        std::fs::write(ctr.join("cgroup.procs"), "400\n").unwrap();
        std::fs::write(pod.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        let d = proc_root.join("400");
        std::fs::create_dir_all(d.join("net")).unwrap();
        std::fs::write(
            d.join("cgroup"),
            format!("0::/kubepods/pod{uid}/{}\n", "d".repeat(64)),
        )
        .unwrap();
        std::fs::write(
            d.join("net/dev"),
            "h1\nh2\n  eth0: 42 1 0 0 0 0 0 0 8 1 0 0 0 0 0 0\n",
        )
        .unwrap();
        let mut c = collector_at(&cg, |cfg| cfg.proc_root = proc_root.clone());
        let net = |snap: &Snapshot| {
            snap.containers
                .iter()
                .find(|s| *s.name == *format!("/kubepods/pod{uid}"))
                .and_then(|s| s.network.clone())
        };
        for _ in 0..pod_net::RETRY_EVERY {
            assert_eq!(net(&c.pass()), None, "populated 0: not looked at");
        }
        std::fs::write(pod.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        let found = (0..pod_net::RETRY_EVERY).find_map(|_| net(&c.pass()));
        assert_eq!(found.expect("found once populated")[0].rx_bytes, 42);
    }

    fn v2_dir(root: &Path, rel: &str, usage_usec: u64) -> PathBuf {
        let dir = root.join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), format!("usage_usec {usage_usec}\n")).unwrap();
        std::fs::write(dir.join("memory.current"), format!("{}\n", usage_usec * 2)).unwrap();
        std::fs::write(dir.join("pids.current"), "3\n").unwrap();
        dir
    }

    /// cgroup.procs and each listed process's /proc/<pid>/fd: processes, descriptors and
    /// sockets, counted when first seen, then every `process_stats_interval` (every third pass at
    /// the defaults); a process that exited is left out; a bad cgroup.procs is a parse error.
    #[test]
    fn processes_descriptors_and_sockets_are_counted_every_few_passes() {
        let node = tmp_node("cpu memory pids");
        v2_dir(&node.root, "kubepods/podaa/0123", 10);
        std::fs::write(node.dir.join("cgroup.procs"), "500\n501\n4000000\n").unwrap();
        let proc_tmp = tempfile::tempdir().unwrap();
        let fd_links = |pid: u32, links: &[&str]| {
            let fd = proc_tmp.path().join(pid.to_string()).join("fd");
            let _ = std::fs::remove_dir_all(&fd);
            std::fs::create_dir_all(&fd).unwrap();
            for (i, l) in links.iter().enumerate() {
                std::os::unix::fs::symlink(l, fd.join(i.to_string())).unwrap();
            }
        };
        fd_links(
            500,
            &["/dev/null", "socket:[123]", "pipe:[7]", "socket:[124]"],
        );
        fd_links(501, &["/var/log/app.log", "anon_inode:[eventpoll]"]);
        // pid 4000000 has no /proc entry: exited since cgroup.procs was read.
        let mut c = collector_at(&node.root, |cfg| cfg.proc_root = proc_tmp.path().into());
        let counts = |snap: &Snapshot| find(snap, "/0123").processes;
        let first = ProcessCounts {
            processes: 3,
            fds: 6,
            sockets: Some(2),
        };
        assert_eq!(counts(&c.pass()), Some(first));
        let mut out = String::new();
        let snap = c.pass();
        crate::http::metrics::render(&snap, &c.config, &mut out);
        for (name, v) in [
            ("container_processes{", "3"),
            ("container_file_descriptors{", "6"),
            ("container_sockets{", "2"),
        ] {
            let line = out
                .lines()
                .find(|l| l.starts_with(name) && l.contains("id=\"/kubepods/podaa/0123\""))
                .unwrap_or_else(|| panic!("no {name}"));
            assert_eq!(line.rsplit(' ').nth(1), Some(v), "{line}");
        }
        // One socket more: seen within three passes (10 s interval), and the count in between
        // is the last one, not a missing figure.
        fd_links(
            501,
            &["/var/log/app.log", "anon_inode:[eventpoll]", "socket:[9]"],
        );
        let seen: Vec<_> = (0..3).map(|_| counts(&c.pass())).collect();
        assert!(seen.iter().all(Option::is_some), "{seen:?}");
        assert_eq!(
            seen.last().unwrap().unwrap(),
            ProcessCounts {
                processes: 3,
                fds: 7,
                sockets: Some(3)
            },
            "{seen:?}"
        );
        // A line that is not a pid: no figure, and a parse error naming the file.
        std::fs::write(node.dir.join("cgroup.procs"), "500\nfive\n").unwrap();
        let before = c.stats.errors_by_kind.get("parse").copied().unwrap_or(0);
        let seen: Vec<_> = (0..3).map(|_| counts(&c.pass())).collect();
        assert_eq!(seen.last().unwrap(), &None, "{seen:?}");
        assert!(c.stats.errors_by_kind.get("parse").copied().unwrap_or(0) > before);
        assert!(c
            .logged
            .iter()
            .any(|m| m.contains("cgroup.procs") && m.contains("five")));
    }

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

    /// memory.swap.current is read only when the node has swap: with `SwapTotal: 0` in the
    /// pass's /proc/meminfo it is 0 without a read; with swap, or when meminfo cannot be read,
    /// the file's value is reported.
    #[test]
    fn swap_is_read_only_on_a_node_with_swap() {
        let node = tmp_node("cpu memory pids");
        std::fs::write(node.dir.join("memory.current"), "8192\n").unwrap();
        std::fs::write(node.dir.join("memory.swap.current"), "4096\n").unwrap();
        let proc_tmp = tempfile::tempdir().unwrap();
        let proc_root = proc_tmp.path().to_path_buf();
        let meminfo = |swap_kb: u64| {
            std::fs::write(
                proc_root.join("meminfo"),
                format!("MemTotal: 1000 kB\nMemFree: 500 kB\nSwapTotal: {swap_kb} kB\nSwapFree: {swap_kb} kB\n"),
            )
            .unwrap()
        };
        let swap_of = |snap: &Snapshot| {
            snap.containers
                .iter()
                .find(|s| &*s.name == "/kubepods/podaa/0123")
                .and_then(|s| s.stats.memory.as_ref().map(|m| m.swap))
        };
        meminfo(0);
        let mut c = collector_at(&node.root, |cfg| cfg.proc_root = proc_root.clone());
        // 0 although the file says 4096: it was not read.
        assert_eq!(swap_of(&c.pass()), Some(0));
        meminfo(2048);
        assert_eq!(swap_of(&c.pass()), Some(4096));
        std::fs::remove_file(proc_root.join("meminfo")).unwrap();
        assert_eq!(
            swap_of(&c.pass()),
            Some(4096),
            "meminfo unreadable: the file is read"
        );
    }

    /// With the watcher, a limit written between passes is in the next pass (not up to six
    /// passes later), and memory.events is read only when it changes.
    #[test]
    fn watched_limits_and_events_are_read_when_they_change() {
        let node = tmp_node("cpu memory pids");
        // Every limit and event file of the hierarchy's controllers, in every cgroup: all watched.
        for rel in ["", "kubepods", "kubepods/podaa", "kubepods/podaa/0123"] {
            let d = node.root.join(rel);
            for (f, v) in [
                ("cpu.max", "max 100000"),
                ("cpu.weight", "100"),
                ("memory.min", "0"),
                ("memory.swap.max", "max"),
                ("pids.max", "max"),
            ] {
                std::fs::write(d.join(f), format!("{v}\n")).unwrap();
            }
            std::fs::write(d.join("memory.max"), "1000000\n").unwrap();
            std::fs::write(d.join("memory.events"), "max 0\noom_kill 0\n").unwrap();
        }
        std::fs::write(node.dir.join("memory.current"), "8192\n").unwrap();
        // At a 30 s interval processes are counted in every pass (cgroup.procs is read in
        // every pass, like the figures), so the files read per pass do not vary with that.
        let mut c = collector_at(&node.root, |cfg| {
            cfg.housekeeping_interval = Duration::from_secs(30)
        });
        c.start_watcher();
        let name = "/kubepods/podaa/0123";
        let figures = |snap: &Snapshot| {
            let s = snap.containers.iter().find(|s| &*s.name == name).unwrap();
            let m = s.stats.memory.as_ref().unwrap();
            (s.stats.spec.memory_limit, m.oom_kills)
        };
        // The first two passes read everything (the stagger's first slot is next).
        c.pass();
        c.pass();
        let read_before = c.stats.files_read;
        assert_eq!(figures(&c.pass()), (Some(1_000_000), Some(0)));
        let per_pass = c.stats.files_read - read_before;
        // Unchanged: neither memory.events nor the limits were read.
        let read_before = c.stats.files_read;
        c.pass();
        assert_eq!(c.stats.files_read - read_before, per_pass);
        std::fs::write(node.dir.join("memory.max"), "2000000\n").unwrap();
        std::fs::write(node.dir.join("memory.events"), "max 3\noom_kill 1\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = figures(&c.pass());
        while seen != (Some(2_000_000), Some(1)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            seen = figures(&c.pass());
        }
        assert_eq!(seen, (Some(2_000_000), Some(1)));
        // Carried over in later passes, not reset to "unknown".
        assert_eq!(figures(&c.pass()), (Some(2_000_000), Some(1)));
        // Let any late event of the writes above (truncation, then write) be taken first.
        std::thread::sleep(Duration::from_millis(300));
        c.pass();
        // Not read without a change: a new file renamed over it (no IN_MODIFY) goes unseen.
        let tmp = node.dir.join(".memory.events.new");
        std::fs::write(&tmp, "max 9\noom_kill 9\n").unwrap();
        std::fs::rename(&tmp, node.dir.join("memory.events")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(figures(&c.pass()), (Some(2_000_000), Some(1)));
        assert_eq!(c.tracked[name].files_watched, Some(true));
    }

    /// A cgroup one of whose limit or event files is not watched (its controller not enabled
    /// when it was registered) reads memory.events every pass.
    #[test]
    fn cgroups_not_fully_watched_read_their_events_every_pass() {
        let node = tmp_node("cpu memory pids");
        std::fs::write(node.dir.join("memory.current"), "8192\n").unwrap();
        std::fs::write(node.dir.join("memory.events"), "max 0\noom_kill 0\n").unwrap();
        let mut c = collector_at(&node.root, |_| {});
        c.start_watcher();
        let name = "/kubepods/podaa/0123";
        let ooms = |snap: &Snapshot| {
            let s = snap.containers.iter().find(|s| &*s.name == name).unwrap();
            s.stats.memory.as_ref().unwrap().oom_kills
        };
        assert_eq!(ooms(&c.pass()), Some(0));
        assert_eq!(c.tracked[name].files_watched, Some(false));
        // A new file renamed over it raises no IN_MODIFY, and is still read.
        let tmp = node.dir.join(".memory.events.new");
        std::fs::write(&tmp, "max 4\noom_kill 2\n").unwrap();
        std::fs::rename(&tmp, node.dir.join("memory.events")).unwrap();
        assert_eq!(ooms(&c.pass()), Some(2));
    }

    fn usage_of(snap: &Snapshot, name: &str) -> Option<u64> {
        snap.containers
            .iter()
            .find(|s| &*s.name == name)
            .and_then(|s| s.stats.cpu.as_ref().map(|c| c.usage_ns))
    }

    /// A cgroup removed and created again under the same name between passes is read from the
    /// new directory, not through descriptors kept for the old one.
    #[test]
    fn recreated_cgroup_is_read_from_the_new_directory() {
        let node = tmp_node("cpu memory pids");
        let root = node.root.as_path();
        let name = "/kubepods/podaa/0123";
        let dir = v2_dir(root, "kubepods/podaa/0123", 10);
        let mut c = collector_at(root, |c| c.open_files_per_cgroup = 3);
        c.start_watcher();
        assert_eq!(usage_of(&c.pass(), name), Some(10_000));
        assert_eq!(usage_of(&c.pass(), name), Some(10_000));
        assert!(
            c.tracked[name].handles.len() >= 2,
            "directory and files kept"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        v2_dir(root, "kubepods/podaa/0123", 77);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = usage_of(&c.pass(), name);
            if u == Some(77_000) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still reading the removed cgroup: {u:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Without a watcher, a kept directory descriptor of a removed cgroup is noticed by the
    /// failing `openat` and the path is looked up again (only directories kept here).
    #[test]
    fn stale_kept_directory_is_reopened() {
        let node = tmp_node("cpu memory pids");
        let root = node.root.as_path();
        let name = "/kubepods/podaa/0123";
        let dir = v2_dir(root, "kubepods/podaa/0123", 10);
        let mut c = collector_at(root, |c| c.open_files_per_cgroup = 0);
        assert_eq!(usage_of(&c.pass(), name), Some(10_000));
        std::fs::remove_dir_all(&dir).unwrap();
        v2_dir(root, "kubepods/podaa/0123", 77);
        let snap = c.pass();
        assert_eq!(usage_of(&snap, name), Some(77_000));
        let s = snap.containers.iter().find(|s| &*s.name == name).unwrap();
        assert_eq!(s.stats.memory.as_ref().unwrap().usage, 154);
    }

    /// Splitting the cgroups between worker threads and keeping files open changes nothing in
    /// what a pass reports, nor in the errors it counts.
    #[test]
    fn threads_and_kept_files_give_the_same_pass() {
        let run = |threads: usize, keep: usize| {
            let mut cfg = (*fixture_config("cgroup-v2-systemd")).clone();
            cfg.collection_threads = threads;
            cfg.open_files_per_cgroup = keep;
            let mut c = Collector::new(Arc::new(cfg)).unwrap();
            c.pass();
            let snap = c.pass();
            let mut errors = snap.self_stats.errors_by_kind.clone();
            // The missing /proc is counted once per pass whatever the settings.
            errors.remove("proc_io");
            let v: Vec<(Arc<str>, Stats, Arc<str>)> = snap
                .containers
                .iter()
                .map(|s| (s.name.clone(), s.stats.clone(), s.label_str.clone()))
                .collect();
            (v, errors, snap.self_stats.files_read)
        };
        let base = run(1, 0);
        assert!(base.0.len() > 5);
        for (threads, keep) in [(2, 0), (2, 3), (1, 11), (3, 11)] {
            let other = run(threads, keep);
            assert_eq!(other.0, base.0, "threads {threads} keep {keep}");
            assert_eq!(other.1, base.1, "threads {threads} keep {keep}");
            assert_eq!(other.2, base.2, "threads {threads} keep {keep}");
        }
    }

    /// Pod volumes from a kubelet root fixture: every directory under
    /// `pods/<uid>/volumes/<plugin>/`, with the filesystem's capacity and inodes from statvfs and,
    /// for volumes on the node filesystem, the usage under them (as the kubelet's du).
    #[test]
    fn pod_volumes_from_the_kubelet_root() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut cfg = (*fixture_config("cgroup-v2-systemd")).clone();
        cfg.kubelet_root = base.join("kubelet");
        let mut c = Collector::new(Arc::new(cfg)).unwrap();
        let snap = c.pass();
        let pod = find(
            &snap,
            "kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice",
        );
        let names: Vec<(&str, &str, bool)> = pod
            .volumes
            .iter()
            .map(|v| (v.dir.name.as_str(), v.dir.plugin.as_str(), v.dir.mounted))
            .collect();
        assert_eq!(
            names,
            vec![
                ("cache", "kubernetes.io~empty-dir", false),
                ("config", "kubernetes.io~configmap", false)
            ]
        );
        let fs = crate::proc::fs::statvfs(&base).unwrap();
        // du of each volume: every entry under it, blocks × 512 (cache: a.bin, sub, sub/b.txt).
        let du = |p: &Path| -> (u64, u64) {
            let mut out = (0, 0);
            let mut stack = vec![p.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap().flatten() {
                    let md = e.metadata().unwrap();
                    out.0 += std::os::unix::fs::MetadataExt::blocks(&md) * 512;
                    out.1 += 1;
                    if md.is_dir() {
                        stack.push(e.path());
                    }
                }
            }
            out
        };
        let summary = crate::http::summary::build(&snap);
        let json = serde_json::to_value(&summary).unwrap();
        let p = json["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["podRef"]["uid"] == "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
            .unwrap();
        let vols = p["volume"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        for (v, inodes) in vols.iter().zip([3u64, 1]) {
            let dir = pod
                .volumes
                .iter()
                .find(|x| x.dir.name == v["name"])
                .unwrap();
            let (bytes, n) = du(&dir.dir.path);
            assert_eq!(n, inodes);
            assert_eq!(v["usedBytes"], bytes, "{v}");
            assert_eq!(v["inodesUsed"], inodes, "{v}");
            assert_eq!(v["capacityBytes"], fs.capacity, "{v}");
            assert_eq!(v["inodes"], fs.inodes, "{v}");
            for k in ["time", "availableBytes", "inodesFree"] {
                assert!(v.get(k).is_some(), "{k} missing in {v}");
            }
        }
        // Local volumes count in the pod's ephemeral-storage.
        let eph = p["ephemeral-storage"]["usedBytes"].as_u64().unwrap();
        assert!(eph >= du(&pod.volumes[0].dir.path).0 + du(&pod.volumes[1].dir.path).0);
        // A pod without a kubelet directory has no volumes and no error.
        let other = find(
            &snap,
            "kubepods-pod99999999_8888_7777_6666_555555555555.slice",
        );
        assert!(other.volumes.is_empty());
        assert_eq!(snap.self_stats.errors_by_kind.get("volume"), None);
    }

    /// The fs `device` label is the mount source from mountinfo (cAdvisor), not the path.
    #[test]
    fn fs_device_label_comes_from_mountinfo() {
        let tmp = tempfile::tempdir().unwrap();
        let proc_root = tmp.path().join("proc");
        std::fs::create_dir_all(proc_root.join("self")).unwrap();
        let (ma, mi) = crate::proc::fs::path_dev(tmp.path()).unwrap();
        std::fs::write(
            proc_root.join("self/mountinfo"),
            format!("1 0 {ma}:{mi} / / rw,relatime - ext4 /dev/vigil-test rw\n"),
        )
        .unwrap();
        let mut cfg = (*fixture_config("cgroup-v2-systemd")).clone();
        cfg.proc_root = proc_root;
        cfg.root_fs_path = tmp.path().to_path_buf();
        cfg.image_fs_path = Some(tmp.path().to_path_buf());
        let mut c = Collector::new(Arc::new(cfg.clone())).unwrap();
        let snap = c.pass();
        assert_eq!(
            snap.root_fs.as_ref().unwrap().device.as_deref(),
            Some("/dev/vigil-test")
        );
        let mut out = String::new();
        crate::http::metrics::render(&snap, &cfg, &mut out);
        let line = out
            .lines()
            .find(|l| l.starts_with("container_fs_limit_bytes{") && l.contains("id=\"/\""))
            .expect("root fs limit line");
        assert!(line.contains("device=\"/dev/vigil-test\""), "{line}");
    }

    #[test]
    fn upperdir_from_mountinfo() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("mountinfo");
        std::fs::write(&p, "1 0 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/var/lib/containerd/snapshots/9/fs,workdir=/w\n2 1 0:5 / /proc rw - proc proc rw\n").unwrap();
        assert_eq!(
            overlay_upperdir(&p),
            Some(PathBuf::from("/var/lib/containerd/snapshots/9/fs"))
        );
    }

    /// The Summary's vigil-only `vigilSpec` carries the cgroup limits computed by hand from the
    /// fixture files, for cgroup v2 (cpu.weight/cpu.max/memory.max/memory.min) and v1
    /// (cpu.shares/cpu.cfs_quota_us/cpu.cfs_period_us/memory.limit_in_bytes).
    #[test]
    fn summary_carries_vigil_spec_from_cgroup_fixtures() {
        fn spec_of(root: &str, suffix: &str, id: &str) -> crate::summary::VigilSpec {
            let mut c = Collector::new(fixture_config(root)).unwrap();
            let snap = c.pass();
            let sample = find(&snap, suffix);
            let summary = crate::http::summary::build(&snap);
            let json = serde_json::to_string(&summary).unwrap();
            assert!(json.contains("\"vigilSpec\""), "{json}");
            let back: crate::summary::Summary = serde_json::from_str(&json).unwrap();
            back.pods
                .iter()
                .flat_map(|p| &p.containers)
                .find(|c| {
                    c.name.contains(id)
                        || (!sample.identity.container.is_empty()
                            && c.name == sample.identity.container)
                })
                .unwrap_or_else(|| panic!("{id} not in summary"))
                .vigil_spec
                .clone()
                .expect("vigilSpec present")
        }
        // v2: cpu.weight 10 → shares 2 + 9 × 262142 / 9999 = 237; cpu.max "50000 100000";
        // memory.max 268435456; memory.min 0.
        let v2 = spec_of(
            "cgroup-v2-systemd",
            &format!("cri-containerd-{}.scope", "a".repeat(64)),
            &"a".repeat(64),
        );
        assert_eq!(v2.cpu_shares, Some(237));
        assert_eq!(v2.cpu_quota_micros, Some(50_000));
        assert_eq!(v2.cpu_period_micros, Some(100_000));
        assert_eq!(v2.memory_limit_bytes, Some(268_435_456));
        assert_eq!(v2.memory_min_bytes, Some(0));
        // v1: cpu.shares 512, cfs_quota_us 50000, cfs_period_us 100000,
        // memory.limit_in_bytes 536870912; v1 has no memory.min.
        let v1 = spec_of("cgroup-v1-cgroupfs", &"b".repeat(64), &"b".repeat(64));
        assert_eq!(v1.cpu_shares, Some(512));
        assert_eq!(v1.cpu_quota_micros, Some(50_000));
        assert_eq!(v1.cpu_period_micros, Some(100_000));
        assert_eq!(v1.memory_limit_bytes, Some(536_870_912));
        assert_eq!(v1.memory_min_bytes, None);
    }
}
