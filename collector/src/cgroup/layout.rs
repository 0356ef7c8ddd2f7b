//! Where a container's cgroup files live: the hierarchy found under the cgroup root (v1, v2,
//! hybrid), each controller's directory of a cgroup, and the files the watcher follows.

use super::Error;
use std::path::{Path, PathBuf};

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
