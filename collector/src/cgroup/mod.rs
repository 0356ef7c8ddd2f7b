//! Cgroup hierarchies (v1, v2, hybrid): where a container's cgroup files live and what we read from them.

pub mod parse;
pub mod v1;
pub mod v2;

use crate::summary::PsiStats;
use std::path::{Path, PathBuf};

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
    pub spec: Spec,
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
        }
    }
}

/// A reusable reader: one buffer for every file it reads, and the cgroup directory opened once
/// (files are opened relative to it with `openat`, so the kernel walks the long path once per
/// directory instead of once per file).
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    len: usize,
    last_file: String,
    dir: Option<(PathBuf, rustix::fd::OwnedFd)>,
    /// Files read by this reader since it was created (for the benches' floor).
    pub files_read: u64,
}

impl Reader {
    pub fn new() -> Self {
        Reader {
            buf: vec![0; 16 * 1024],
            len: 0,
            last_file: String::new(),
            dir: None,
            files_read: 0,
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

    /// Reads `dir/file` into the reusable buffer (then see `text`). An absent file is `Ok(false)`;
    /// an absent `dir` is `Gone`.
    pub(crate) fn load(&mut self, dir: &Path, file: &str, name: &str) -> Result<bool, Error> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        self.files_read += 1;
        self.len = 0;
        self.last_file.clear();
        self.last_file.push_str(file);
        if self.buf.is_empty() {
            self.buf = vec![0; 16 * 1024];
        }
        let cached = matches!(&self.dir, Some((p, _)) if p.as_os_str() == dir.as_os_str());
        if !cached {
            self.dir = None;
            match rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => self.dir = Some((dir.to_path_buf(), fd)),
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
            }
        }
        let dirfd = &self.dir.as_ref().expect("opened above").1;
        let fd = match rustix::fs::openat(
            dirfd,
            file,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NODEV) => return Self::gone_or_absent(dir, name),
            Err(e) => {
                return Err(Error::Io {
                    path: dir.join(file),
                    source: e.into(),
                })
            }
        };
        loop {
            match rustix::io::read(&fd, &mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.len += n;
                    if self.len < self.buf.len() {
                        // A short read of a regular or kernfs (seq_file) file is the end of it.
                        break;
                    }
                    let grow = self.buf.len();
                    self.buf.resize(grow * 2, 0);
                }
                Err(Errno::INTR) => continue,
                // ENODEV: the cgroup was removed between open and read.
                Err(Errno::NODEV) => return Self::gone_or_absent(dir, name),
                Err(e) => {
                    return Err(Error::Io {
                        path: dir.join(file),
                        source: e.into(),
                    })
                }
            }
        }
        Ok(true)
    }

    /// Forgets the open directory (call before reading another cgroup).
    pub fn reset_dir(&mut self) {
        self.dir = None;
    }

    /// The content of the last file loaded (empty if it is not UTF-8, which parsers then reject).
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub(crate) fn parse_err(&self, detail: impl Into<String>) -> Error {
        let path = match &self.dir {
            Some((d, _)) => d.join(&self.last_file),
            None => PathBuf::from(&self.last_file),
        };
        Error::Parse {
            path,
            detail: detail.into(),
        }
    }

    /// Reads every figure of the cgroup. Errors that leave the rest readable (a malformed or
    /// unreadable file) are pushed to `errors` and the pass goes on; `Gone` stops it.
    pub fn read_stats(
        &mut self,
        paths: &CgroupPaths,
        opts: ReadOptions,
        errors: &mut Vec<Error>,
    ) -> Result<Stats, Error> {
        self.reset_dir();
        let mut stats = Stats::default();
        let name = paths.name.as_str();
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
                soft!(v2::read_memory(self, dir, name))
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
        if opts.pids {
            let dir = paths.v1(Controller::Pids).or(paths.v2.as_deref());
            stats.pids = match dir {
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
            let mut spec = Spec::default();
            if paths.v1(Controller::Cpu).is_some() || paths.v1(Controller::Memory).is_some() {
                soft!(v1::read_spec(self, paths, name, &mut spec).map(Some));
            }
            if let Some(dir) = &paths.v2 {
                soft!(v2::read_spec(self, dir, name, &mut spec, paths).map(Some));
            }
            stats.spec = spec;
        }
        Ok(stats)
    }
}

/// pids.current and pids.max (same names on v1 and v2).
fn read_pids(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Pids>, Error> {
    if !r.load(dir, "pids.current", name)? {
        return Ok(None);
    }
    let t = r.text();
    let current = parse::parse_u64(t)
        .ok_or_else(|| r.parse_err(format!("expected a number, got {:?}", t.trim())))?;
    let max = if r.load(dir, "pids.max", name)? {
        parse::parse_limit(r.text()).map_err(|d| r.parse_err(d))?
    } else {
        None
    };
    Ok(Some(Pids { current, max }))
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

    #[test]
    fn normalises_names() {
        assert_eq!(normalise_name(""), "/");
        assert_eq!(normalise_name("/"), "/");
        assert_eq!(normalise_name("kubepods/a/"), "/kubepods/a");
    }
}
