//! Cgroup hierarchies (v1, v2, hybrid): where a container's cgroup files live and what we read from them.

pub mod fds;
pub mod parse;
pub mod v1;
pub mod v2;

pub use fds::{FdBudget, Handles};

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

/// The v1 controllers the collector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Controller {
    Cpu,
    Cpuacct,
    Memory,
    Blkio,
    Pids,
}

impl Controller {
    pub const ALL: [Controller; 5] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Memory,
        Controller::Blkio,
        Controller::Pids,
    ];
    pub fn dir_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Memory => "memory",
            Controller::Blkio => "blkio",
            Controller::Pids => "pids",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Which hierarchies a host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Unified hierarchy only (`cgroup.controllers` at the root).
    V2,
    /// Per-controller v1 hierarchies only.
    V1,
    /// v1 controllers plus a v2 hierarchy at `<root>/unified`.
    Hybrid,
}

/// The cgroup hierarchies of a host, found under a cgroup root.
#[derive(Debug, Clone)]
pub struct Layout {
    pub mode: Mode,
    /// Mount point of the v2 hierarchy, if any.
    pub v2_root: Option<PathBuf>,
    /// Mount point of each v1 controller (indexed by `Controller as usize`).
    pub v1_roots: [Option<PathBuf>; 5],
}

impl Layout {
    /// Finds the hierarchies under `root` (normally /sys/fs/cgroup).
    pub fn detect(root: &Path) -> Result<Layout, Error> {
        if root.join("cgroup.controllers").is_file() {
            return Ok(Layout {
                mode: Mode::V2,
                v2_root: Some(root.to_path_buf()),
                v1_roots: Default::default(),
            });
        }
        let mut v1_roots: [Option<PathBuf>; 5] = Default::default();
        for c in Controller::ALL {
            let dir = root.join(c.dir_name());
            if dir.is_dir() {
                v1_roots[c.index()] = Some(dir);
            }
        }
        let unified = root.join("unified");
        let v2_root = unified
            .join("cgroup.controllers")
            .is_file()
            .then_some(unified);
        let has_v1 = v1_roots.iter().any(Option::is_some);
        match (has_v1, v2_root) {
            (true, Some(v2)) => Ok(Layout {
                mode: Mode::Hybrid,
                v2_root: Some(v2),
                v1_roots,
            }),
            (true, None) => Ok(Layout {
                mode: Mode::V1,
                v2_root: None,
                v1_roots,
            }),
            (false, Some(v2)) => Ok(Layout {
                mode: Mode::V2,
                v2_root: Some(v2),
                v1_roots,
            }),
            (false, None) => Err(Error::NoHierarchy {
                root: root.to_path_buf(),
            }),
        }
    }

    /// The v1 mount of a controller, if the host has it.
    pub fn v1_root(&self, c: Controller) -> Option<&Path> {
        self.v1_roots[c.index()].as_deref()
    }

    /// Every hierarchy root to walk for discovery, deduplicated (cpu and cpuacct are often one mount).
    pub fn walk_roots(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = Vec::new();
        let mut seen = Vec::new();
        for p in self.v1_roots.iter().flatten().chain(self.v2_root.iter()) {
            let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            if !seen.contains(&canon) {
                seen.push(canon);
                roots.push(p.clone());
            }
        }
        roots
    }

    /// The directories of the cgroup `name` (a path like `/kubepods/burstable/pod…/…`) in each
    /// hierarchy where it exists.
    pub fn paths_of(&self, name: &str) -> CgroupPaths {
        let rel = name.trim_start_matches('/');
        let mut v1: [Option<PathBuf>; 5] = Default::default();
        for c in Controller::ALL {
            if let Some(root) = self.v1_root(c) {
                let dir = if rel.is_empty() {
                    root.to_path_buf()
                } else {
                    root.join(rel)
                };
                if dir.is_dir() {
                    v1[c.index()] = Some(dir);
                }
            }
        }
        let v2 = self.v2_root.as_ref().and_then(|root| {
            let dir = if rel.is_empty() {
                root.clone()
            } else {
                root.join(rel)
            };
            dir.is_dir().then_some(dir)
        });
        CgroupPaths {
            name: normalise_name(name),
            v1,
            v2,
        }
    }
}

/// The watched files of a v2 controller: its limit files (the spec; a write to one, the kubelet
/// or systemd changing a limit, raises an inotify IN_MODIFY on it, so the pass re-reads the
/// spec when told so) and its event files (`V2_EVENT_FILES`).
pub fn v2_watched_files(controller: &str) -> &'static [&'static str] {
    match controller {
        "cpu" => &["cpu.max", "cpu.weight"],
        "memory" => &[
            "memory.max",
            "memory.min",
            "memory.swap.max",
            "memory.events",
        ],
        "pids" => &["pids.max"],
        _ => &[],
    }
}

/// v2 files the kernel itself notifies (IN_MODIFY on every change of a count, as the cgroup v2
/// documentation promises for memory.events): read only when they change.
pub const V2_EVENT_FILES: [&str; 1] = ["memory.events"];

/// Limit files of the v1 controllers (see `v2_watched_files`).
fn v1_limit_files(c: Controller) -> &'static [&'static str] {
    match c {
        Controller::Cpu => &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
        Controller::Memory => &[
            "memory.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.memsw.limit_in_bytes",
        ],
        Controller::Pids => &["pids.max"],
        Controller::Cpuacct | Controller::Blkio => &[],
    }
}

impl Layout {
    /// The files to watch for changes in every cgroup directory under the hierarchy `root`
    /// (one of `walk_roots`): the limit files of its controllers and, on v2, the event files.
    pub fn watched_files(&self, root: &Path) -> Vec<&'static str> {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let root = canon(root);
        let mut files = Vec::new();
        for c in Controller::ALL {
            if self.v1_root(c).is_some_and(|r| canon(r) == root) {
                files.extend_from_slice(v1_limit_files(c));
            }
        }
        if let Some(v2) = self.v2_root.as_deref().filter(|r| canon(r) == root) {
            // Only the controllers this hierarchy has (on a hybrid host the unified hierarchy
            // usually has none of them): a cgroup lacking an expected file is then one whose
            // controller is not enabled, which the collector reads on a schedule.
            let controllers =
                std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
            for c in controllers.split_ascii_whitespace() {
                files.extend_from_slice(v2_watched_files(c));
            }
        }
        files.dedup();
        files
    }
}

/// `"kubepods/x"` and `"/kubepods/x/"` are both the cgroup `"/kubepods/x"`; the root is `"/"`.
pub fn normalise_name(name: &str) -> String {
    let t = name.trim_matches('/');
    format!("/{t}")
}

/// Where one cgroup's files live in each hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    /// The cgroup path, e.g. `/kubepods/burstable/pod…/…` (cAdvisor's `id`).
    pub name: String,
    pub v1: [Option<PathBuf>; 5],
    pub v2: Option<PathBuf>,
}

impl CgroupPaths {
    pub fn v1(&self, c: Controller) -> Option<&Path> {
        self.v1[c.index()].as_deref()
    }
    /// Whether the cgroup exists in no hierarchy any more.
    pub fn is_empty(&self) -> bool {
        self.v1.iter().all(Option::is_none) && self.v2.is_none()
    }
    /// When the cgroup was created, as cAdvisor's raw handler computes it (`GetSpec`
    /// CreationTime): the earliest, over every hierarchy, of the directory's mtime and of the mtime
    /// of a file the kernel creates with it and never modifies (`cgroup.clone_children` on v1,
    /// `cgroup.events` on v2). A directory's mtime moves when children are created, the file's
    /// does not, so the result is the same whenever the collector (re)starts.
    pub fn creation_time(&self) -> Option<std::time::SystemTime> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let v1 = self
            .v1
            .iter()
            .flatten()
            .map(|d| (d.as_path(), "cgroup.clone_children"));
        let v2 = self.v2.iter().map(|d| (d.as_path(), "cgroup.events"));
        v1.chain(v2)
            .flat_map(|(dir, file)| [mtime(dir), mtime(&dir.join(file))])
            .flatten()
            .min()
    }

    /// Any directory of this cgroup (for cgroup.procs and creation time).
    pub fn any_dir(&self) -> Option<&Path> {
        self.v1(Controller::Cpu)
            .or(self.v1(Controller::Cpuacct))
            .or(self.v1(Controller::Memory))
            .or(self.v1(Controller::Pids))
            .or(self.v2.as_deref())
            .or(self.v1.iter().flatten().next().map(|p| p.as_path()))
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

/// What to read in one pass.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub cpu: bool,
    pub memory: bool,
    pub io: bool,
    pub pids: bool,
    pub pressure: bool,
    /// Re-read limits (they rarely change; the caller reads them every few passes).
    pub spec: bool,
    /// Read v2 `memory.swap.current`. False when the node has no swap at all (`SwapTotal: 0`
    /// in /proc/meminfo, read in the same pass): no cgroup can then have swapped memory, so
    /// the figure is 0 without a read. (v1 takes swap from memory.stat, read anyway.)
    pub swap: bool,
    /// Read v2 `memory.events` (failcnt and OOM kills). False when the caller knows it has not
    /// changed (the kernel notifies every change; see `V2_EVENT_FILES`): the figures are then
    /// `None` and the caller keeps the last ones.
    pub memory_events: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            cpu: true,
            memory: true,
            io: true,
            pids: true,
            pressure: true,
            spec: true,
            swap: true,
            memory_events: true,
        }
    }
}

/// A reusable reader: one buffer for every file it reads, and each cgroup directory opened once
/// (files are opened relative to it with `openat`, so the kernel walks the long path once per
/// directory instead of once per file). With a budget (`with_budget`), the directories and the
/// first `keep_files` files of each cgroup stay open between passes in the cgroup's `Handles`,
/// and a kept file costs one `pread` per pass instead of `openat` + `read` + `close`.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    len: usize,
    /// Directory and file of the last load, for error messages.
    last_dir: PathBuf,
    last_file: &'static str,
    /// Address and length of the last directory argument (see `load`).
    last_dir_key: (usize, usize),
    /// Its index in `handles.dirs`, once looked up (`None`: not looked up or not kept).
    last_kept_dir: Option<usize>,
    /// A directory opened for this cgroup only (no budget, or the budget is spent).
    transient: Option<(PathBuf, rustix::fd::OwnedFd)>,
    /// The descriptors of the cgroup being read (swapped in by `read_stats`).
    handles: Handles,
    budget: Option<&'static FdBudget>,
    /// Files kept open per cgroup (0: only directories are kept).
    keep_files: usize,
    /// Whether files loaded now may be kept (false while reading the limits, read every few passes).
    keep_now: bool,
    /// Where the next kept file is likely to be in `handles.files` (see `file_index_from`).
    file_hint: usize,
    /// Files read by this reader since it was created (for the benches' floor).
    pub files_read: u64,
    /// Files are opened with O_NOATIME (no inode time update per read, as on tmpfs) until the
    /// kernel refuses it once (not the files' owner and no CAP_FOWNER).
    no_atime_refused: bool,
}

/// Where the directory of a load comes from.
enum DirRef {
    Kept(usize),
    Transient,
}

impl Reader {
    pub fn new() -> Self {
        Reader {
            buf: vec![0; 16 * 1024],
            ..Default::default()
        }
    }

    /// The budget this reader keeps descriptors in, if any.
    pub fn budget(&self) -> Option<&'static FdBudget> {
        self.budget
    }

    /// A reader that keeps directories and up to `keep_files` files per cgroup open between
    /// passes, within `budget`.
    pub fn with_budget(budget: &'static FdBudget, keep_files: usize) -> Self {
        Reader {
            budget: Some(budget),
            keep_files,
            ..Reader::new()
        }
    }

    fn gone_or_absent(dir: &Path, name: &str) -> Result<bool, Error> {
        if dir.is_dir() {
            Ok(false)
        } else {
            Err(Error::Gone {
                name: name.to_string(),
            })
        }
    }

    fn io_err(&self, source: rustix::io::Errno) -> Error {
        Error::Io {
            path: self.last_dir.join(self.last_file),
            source: source.into(),
        }
    }

    /// Finds or opens the directory `dir`; the flag says whether it was opened just now.
    fn dir_ref(&mut self, dir: &Path, name: &str) -> Result<(DirRef, bool), Error> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        if let Some(i) = self.handles.dir_index(dir) {
            return Ok((DirRef::Kept(i), false));
        }
        if matches!(&self.transient, Some((p, _)) if p.as_os_str() == dir.as_os_str()) {
            return Ok((DirRef::Transient, false));
        }
        let fd = match rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                return Err(Error::Gone {
                    name: name.to_string(),
                })
            }
            Err(e) => {
                return Err(Error::Io {
                    path: dir.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        if let Some(token) = self.budget.and_then(|b| b.take()) {
            return Ok((DirRef::Kept(self.handles.keep_dir(dir, fd, token)), true));
        }
        self.transient = Some((dir.to_path_buf(), fd));
        Ok((DirRef::Transient, true))
    }

    /// Reads `dir/file` into the reusable buffer (then see `text`). An absent file is `Ok(false)`;
    /// an absent `dir` is `Gone`.
    pub(crate) fn load(
        &mut self,
        dir: &Path,
        file: &'static str,
        name: &str,
    ) -> Result<bool, Error> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        self.files_read += 1;
        self.len = 0;
        // Remembered for error messages; the directory is copied only when it changes (a
        // cgroup's files are read one after the other, from the same `CgroupPaths`: the same
        // address and length is the same directory, without comparing the bytes).
        let key = (
            dir.as_os_str().as_encoded_bytes().as_ptr() as usize,
            dir.as_os_str().len(),
        );
        if key != self.last_dir_key {
            if self.last_dir.as_os_str() != dir.as_os_str() {
                let d = self.last_dir.as_mut_os_string();
                d.clear();
                d.push(dir.as_os_str());
            }
            self.last_dir_key = key;
            self.last_kept_dir = None;
        }
        self.last_file = file;
        if self.buf.is_empty() {
            self.buf = vec![0; 16 * 1024];
        }
        // A kept file: one pread at offset 0.
        let kept_dir = match self.last_kept_dir {
            Some(d) => Some(d),
            None => {
                let d = self.handles.dir_index(dir);
                self.last_kept_dir = d;
                d
            }
        };
        if let Some(d) = kept_dir {
            if let Some(i) = self.handles.file_index_from(d, file, self.file_hint) {
                match read_all(&self.handles.files[i].fd, &mut self.buf, &mut self.len) {
                    Ok(()) => {
                        self.file_hint = i + 1;
                        return Ok(true);
                    }
                    // ENODEV (cgroup removed or controller disabled) or another failure: close it
                    // and let a fresh open tell which.
                    Err(_) => {
                        self.handles.drop_file(i);
                        self.len = 0;
                    }
                }
            }
        }
        let mut retried = false;
        let (fd, kept_dir) = loop {
            let (dref, fresh) = self.dir_ref(dir, name)?;
            let dirfd = match &dref {
                DirRef::Kept(i) => &self.handles.dirs[*i].fd,
                DirRef::Transient => &self.transient.as_ref().expect("opened").1,
            };
            let flags = if self.no_atime_refused {
                OFlags::RDONLY | OFlags::CLOEXEC
            } else {
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOATIME
            };
            match rustix::fs::openat(dirfd, file, flags, Mode::empty()) {
                // O_NOATIME needs the file's owner or CAP_FOWNER: without them, open as usual.
                Err(Errno::PERM) if !self.no_atime_refused => {
                    self.no_atime_refused = true;
                    continue;
                }
                Ok(fd) => {
                    break (
                        fd,
                        match dref {
                            DirRef::Kept(i) => Some(i),
                            DirRef::Transient => None,
                        },
                    )
                }
                Err(Errno::NOENT) | Err(Errno::NODEV) => {
                    // A directory kept from an earlier pass may be a removed cgroup whose name
                    // was created again: forget it and look the path up once more.
                    if let (DirRef::Kept(i), false, false) = (&dref, fresh, retried) {
                        // Still the same directory: the file is just absent.
                        if same_dir(&self.handles.dirs[*i].fd, dir) {
                            return Ok(false);
                        }
                        self.handles.drop_dir(*i);
                        self.last_kept_dir = None;
                        retried = true;
                        continue;
                    }
                    return Self::gone_or_absent(dir, name);
                }
                Err(e) => return Err(self.io_err(e)),
            }
        };
        match read_all(&fd, &mut self.buf, &mut self.len) {
            Ok(()) => {}
            // ENODEV: the cgroup was removed between open and read.
            Err(Errno::NODEV) => return Self::gone_or_absent(dir, name),
            Err(e) => return Err(self.io_err(e)),
        }
        if let Some(d) = kept_dir {
            if self.keep_now && self.handles.files_len() < self.keep_files {
                if let Some(token) = self.budget.and_then(|b| b.take()) {
                    self.handles.keep_file(d, file, fd, token);
                }
            }
        }
        Ok(true)
    }

    /// The content of the last file loaded (empty if it is not UTF-8, which parsers then reject).
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub(crate) fn parse_err(&self, detail: impl Into<String>) -> Error {
        Error::Parse {
            path: self.last_dir.join(self.last_file),
            detail: detail.into(),
        }
    }

    /// Reads every figure of the cgroup, with the descriptors kept for it in `handles` (updated:
    /// files and directories opened now may be kept, stale ones are closed). Errors that leave the
    /// rest readable (a malformed or unreadable file) are pushed to `errors` and the pass goes on;
    /// `Gone` stops it.
    pub fn read_stats(
        &mut self,
        paths: &CgroupPaths,
        handles: &mut Handles,
        opts: ReadOptions,
        errors: &mut Vec<Error>,
    ) -> Result<Stats, Error> {
        self.with_handles(handles, |r| r.read_stats_inner(paths, opts, errors))
    }

    /// Runs `read` with the descriptors kept for one cgroup (`handles`), and puts them back.
    fn with_handles<T>(&mut self, handles: &mut Handles, read: impl FnOnce(&mut Self) -> T) -> T {
        self.transient = None;
        self.file_hint = 0;
        self.last_kept_dir = None;
        self.last_dir_key = (0, 0);
        std::mem::swap(&mut self.handles, handles);
        let r = read(self);
        std::mem::swap(&mut self.handles, handles);
        self.transient = None;
        r
    }

    /// The pids of the cgroup's `cgroup.procs`, in `any_dir` (the v1 cpu controller's first, as
    /// cAdvisor). `None` when the file is absent. A line that is not a pid is a parse error
    /// naming the file. Its descriptor is kept like the figures' (within the same limits): an
    /// open and a close cost 5–6 µs more than a `pread` here, with the inotify watches on.
    pub fn read_procs_of(
        &mut self,
        paths: &CgroupPaths,
        handles: &mut Handles,
    ) -> Result<Option<Vec<u32>>, Error> {
        let Some(dir) = paths.any_dir() else {
            return Ok(None);
        };
        self.with_handles(handles, |r| {
            r.keep_now = true;
            if !r.load(dir, "cgroup.procs", &paths.name)? {
                return Ok(None);
            }
            crate::proc::processes::parse_procs(r.text())
                .map(Some)
                .map_err(|e| r.parse_err(e))
        })
    }

    fn read_stats_inner(
        &mut self,
        paths: &CgroupPaths,
        opts: ReadOptions,
        errors: &mut Vec<Error>,
    ) -> Result<Stats, Error> {
        // Without the spec (read below, or the caller's): `Stats::default` would allocate one.
        let mut stats = Stats {
            cpu: None,
            memory: None,
            io: None,
            pids: None,
            pressure: Pressure::default(),
            spec: NO_SPEC.with(Arc::clone),
        };
        let name = paths.name.as_str();
        self.keep_now = true;
        macro_rules! soft {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(Error::Gone { name }) => return Err(Error::Gone { name }),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            };
        }
        // CPU: v1 cpuacct/cpu, else v2.
        if opts.cpu {
            stats.cpu =
                if paths.v1(Controller::Cpuacct).is_some() || paths.v1(Controller::Cpu).is_some() {
                    soft!(v1::read_cpu(self, paths, name))
                } else if let Some(dir) = &paths.v2 {
                    soft!(v2::read_cpu(self, dir, name))
                } else {
                    None
                };
        }
        if opts.memory {
            stats.memory = if let Some(dir) = paths.v1(Controller::Memory) {
                soft!(v1::read_memory(self, dir, name))
            } else if let Some(dir) = &paths.v2 {
                soft!(v2::read_memory(
                    self,
                    dir,
                    name,
                    opts.swap,
                    opts.memory_events
                ))
            } else {
                None
            };
        }
        if opts.io {
            stats.io = if let Some(dir) = paths.v1(Controller::Blkio) {
                soft!(v1::read_io(self, dir, name))
            } else if let Some(dir) = &paths.v2 {
                soft!(v2::read_io(self, dir, name))
            } else {
                None
            };
        }
        let pids_dir = paths.v1(Controller::Pids).or(paths.v2.as_deref());
        if opts.pids {
            stats.pids = match pids_dir {
                Some(dir) => soft!(read_pids(self, dir, name)),
                None => None,
            };
        }
        if opts.pressure {
            if let Some(dir) = &paths.v2 {
                stats.pressure.cpu = soft!(v2::read_psi(self, dir, "cpu.pressure", name));
                stats.pressure.memory = soft!(v2::read_psi(self, dir, "memory.pressure", name));
                stats.pressure.io = soft!(v2::read_psi(self, dir, "io.pressure", name));
            }
        }
        if opts.spec {
            // Limits are read every few passes: their files are not worth a kept descriptor.
            self.keep_now = false;
            let mut spec = Spec::default();
            if paths.v1(Controller::Cpu).is_some() || paths.v1(Controller::Memory).is_some() {
                soft!(v1::read_spec(self, paths, name, &mut spec).map(Some));
            }
            if let Some(dir) = &paths.v2 {
                soft!(v2::read_spec(self, dir, name, &mut spec, paths).map(Some));
            }
            if opts.pids {
                if let Some(dir) = pids_dir {
                    spec.pids_max = soft!(read_pids_max(self, dir, name));
                }
            }
            stats.spec = Arc::new(spec);
            stats.apply_spec_limits();
        }
        Ok(stats)
    }
}

thread_local! {
    /// The empty spec of samples read without theirs (one per reading thread: no shared count).
    static NO_SPEC: Arc<Spec> = Arc::default();
}

/// Whether the directory descriptor `fd` is still the directory at `path` (not a removed one
/// whose name was created again).
fn same_dir(fd: &rustix::fd::OwnedFd, path: &Path) -> bool {
    match (rustix::fs::fstat(fd), rustix::fs::stat(path)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Reads a whole file from offset 0 with `pread` (one call for a kernfs or tmpfs file that fits the
/// buffer: a short read is its end); the buffer grows for larger files.
pub(crate) fn read_all(
    fd: &rustix::fd::OwnedFd,
    buf: &mut Vec<u8>,
    len: &mut usize,
) -> Result<(), rustix::io::Errno> {
    use rustix::io::Errno;
    *len = 0;
    loop {
        match rustix::io::pread(fd, &mut buf[*len..], *len as u64) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                *len += n;
                if *len < buf.len() {
                    return Ok(());
                }
                let grow = buf.len();
                buf.resize(grow * 2, 0);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// pids.current (same name on v1 and v2); `max` comes from the spec (`read_pids_max`).
fn read_pids(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Pids>, Error> {
    Ok(read_u64_file(r, dir, "pids.current", name)?.map(|current| Pids { current, max: None }))
}

/// pids.max (a limit: read with the spec, every few passes). `Some(None)` is unlimited.
fn read_pids_max(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Option<u64>>, Error> {
    if !r.load(dir, "pids.max", name)? {
        return Ok(None);
    }
    Ok(Some(
        parse::parse_limit(r.text()).map_err(|d| r.parse_err(d))?,
    ))
}

/// Loads a flat keyed file (`key value` lines) and hands each pair to `f`. `Ok(false)` when the
/// file is absent; a malformed line or an error from `f` is a parse error naming the file.
pub(crate) fn read_keyed(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
    mut f: impl FnMut(&str, u64) -> Result<(), String>,
) -> Result<bool, Error> {
    if !r.load(dir, file, name)? {
        return Ok(false);
    }
    for kv in parse::flat_keyed(r.text()) {
        if let Err(e) = kv.and_then(|(k, v)| f(k, v)) {
            return Err(r.parse_err(e));
        }
    }
    Ok(true)
}

/// A file holding one number, read leniently (a figure the kernel may not have, such as a peak):
/// `None` when the file is absent or not a number.
pub(crate) fn read_u64_lenient(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
) -> Result<Option<u64>, Error> {
    Ok(if r.load(dir, file, name)? {
        parse::parse_u64(r.text())
    } else {
        None
    })
}

/// A limit file (`max`, -1 or a huge value is unlimited) into `slot`; absent leaves it.
pub(crate) fn read_limit(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
    slot: &mut Option<u64>,
) -> Result<(), Error> {
    if r.load(dir, file, name)? {
        *slot = parse::parse_limit(r.text()).map_err(|d| r.parse_err(d))?;
    }
    Ok(())
}

/// A file holding one number; `None` when the file is absent.
pub(crate) fn read_u64_file(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
) -> Result<Option<u64>, Error> {
    if !r.load(dir, file, name)? {
        return Ok(None);
    }
    let t = r.text();
    parse::parse_u64(t)
        .map(Some)
        .ok_or_else(|| r.parse_err(format!("expected a number, got {:?}", t.trim())))
}

/// The pids listed in a cgroup's `cgroup.procs`.
pub fn read_procs(dir: &Path) -> std::io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(p)
    }

    #[test]
    fn detects_v2_v1_and_hybrid_layouts() {
        assert_eq!(
            Layout::detect(&testdata("cgroup-v2-systemd")).unwrap().mode,
            Mode::V2
        );
        assert_eq!(
            Layout::detect(&testdata("cgroup-v1-cgroupfs"))
                .unwrap()
                .mode,
            Mode::V1
        );
        let hybrid = Layout::detect(&testdata("cgroup-hybrid")).unwrap();
        assert_eq!(hybrid.mode, Mode::Hybrid);
        assert!(hybrid.v2_root.as_ref().unwrap().ends_with("unified"));
        let err = Layout::detect(&testdata("no-such-root")).unwrap_err();
        assert!(err.to_string().contains("no-such-root"), "{err}");
    }

    /// With a spent budget nothing is kept and every file is still read; with room, kept files
    /// are re-read (new content) with one pread and give their descriptors back when dropped.
    #[test]
    fn kept_files_follow_the_budget_and_reread_fresh_content() {
        static BUDGET: std::sync::OnceLock<FdBudget> = std::sync::OnceLock::new();
        let budget = BUDGET.get_or_init(|| FdBudget::new(3));
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let dir = tmp.path().join("a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1\n").unwrap();
        std::fs::write(dir.join("memory.current"), "100\n").unwrap();
        std::fs::write(dir.join("pids.current"), "1\n").unwrap();
        let layout = Layout::detect(tmp.path()).unwrap();
        let paths = layout.paths_of("/a");
        let opts = ReadOptions {
            spec: false,
            ..Default::default()
        };
        let mut r = Reader::with_budget(budget, 8);
        let mut h = Handles::default();
        let mut errors = Vec::new();
        let s = r.read_stats(&paths, &mut h, opts, &mut errors).unwrap();
        assert_eq!(s.cpu.unwrap().usage_ns, 1000);
        // The directory and two files: the budget of three is spent.
        assert_eq!((h.len(), budget.in_use()), (3, 3));
        std::fs::write(dir.join("cpu.stat"), "usage_usec 2\n").unwrap();
        std::fs::write(dir.join("pids.current"), "9\n").unwrap();
        let s = r.read_stats(&paths, &mut h, opts, &mut errors).unwrap();
        assert_eq!(s.cpu.unwrap().usage_ns, 2000);
        assert_eq!(s.memory.unwrap().usage, 100);
        assert_eq!(s.pids.unwrap().current, 9);
        assert!(errors.is_empty(), "{errors:?}");
        drop(h);
        assert_eq!(budget.in_use(), 0);
    }

    /// Review #10: the start time does not follow the directory mtime (which moves when children
    /// are created) and is the same for a collector started later.
    #[test]
    fn creation_time_is_stable_when_children_are_created() {
        use std::time::{Duration, SystemTime};
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory\n").unwrap();
        let pod = root.join("kubepods/podaa");
        std::fs::create_dir_all(&pod).unwrap();
        let created = SystemTime::now() - Duration::from_secs(3600);
        let events = std::fs::File::create(pod.join("cgroup.events")).unwrap();
        events.set_modified(created).unwrap();
        let layout = Layout::detect(root).unwrap();
        let first = layout.paths_of("/kubepods/podaa").creation_time().unwrap();
        assert_eq!(first, created);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::create_dir(pod.join("0123")).unwrap();
        let dir_mtime = std::fs::metadata(&pod).unwrap().modified().unwrap();
        assert!(dir_mtime > created);
        // A restarted collector (a new layout) computes the same time.
        let again = Layout::detect(root).unwrap();
        assert_eq!(
            again.paths_of("/kubepods/podaa").creation_time(),
            Some(first)
        );
        // v1: cgroup.clone_children plays that part in each controller's directory.
        let v1 = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory"] {
            let d = v1.path().join(c).join("kubepods/podbb");
            std::fs::create_dir_all(&d).unwrap();
            let f = std::fs::File::create(d.join("cgroup.clone_children")).unwrap();
            let t = if c == "cpu" {
                created
            } else {
                created + Duration::from_secs(5)
            };
            f.set_modified(t).unwrap();
        }
        let l1 = Layout::detect(v1.path()).unwrap();
        assert_eq!(
            l1.paths_of("/kubepods/podbb").creation_time(),
            Some(created)
        );
    }

    #[test]
    fn normalises_names() {
        assert_eq!(normalise_name(""), "/");
        assert_eq!(normalise_name("/"), "/");
        assert_eq!(normalise_name("kubepods/a/"), "/kubepods/a");
    }
}
