//! Filesystem capacity (statvfs, off the pass on worker threads with a deadline) and bounded-cost directory usage (an incremental walk with a per-pass budget).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Capacity and usage of a mounted filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsInfo {
    pub path: PathBuf,
    /// The mount source of the filesystem (e.g. `/dev/sda1`), cAdvisor's `device` label; `None`
    /// until looked up in mountinfo (or when no mount matches).
    pub device: Option<String>,
    pub capacity: u64,
    pub available: u64,
    pub used: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// statvfs of the filesystem holding `path`.
pub fn statvfs(path: &Path) -> std::io::Result<FsInfo> {
    let s = rustix::fs::statvfs(path).map_err(std::io::Error::from)?;
    let frsize = if s.f_frsize > 0 {
        s.f_frsize
    } else {
        s.f_bsize
    };
    Ok(FsInfo {
        path: path.to_path_buf(),
        device: None,
        capacity: s.f_blocks * frsize,
        available: s.f_bavail * frsize,
        used: (s.f_blocks - s.f_bfree) * frsize,
        inodes: s.f_files,
        inodes_free: s.f_ffree,
    })
}

/// A statvfs that failed or did not return in time.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatvfsError {
    #[error("statvfs {path}: {message}")]
    Failed { path: PathBuf, message: String },
    /// The call is still running (a hung network mount): the pass went on without it, and the
    /// path is not queried again until that call returns.
    #[error("statvfs {path} has not returned after {waited:?} (hung mount?)")]
    TimedOut { path: PathBuf, waited: Duration },
}

impl StatvfsError {
    /// The kind under which this error is counted in the self-metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StatvfsError::Failed { .. } => "statvfs",
            StatvfsError::TimedOut { .. } => "statvfs_timeout",
        }
    }
}

type StatFn = fn(&Path) -> std::io::Result<FsInfo>;

struct StatJob {
    path: PathBuf,
    index: usize,
    reply: mpsc::Sender<(usize, std::io::Result<FsInfo>)>,
}

/// statvfs on a few worker threads, with a deadline: a hung mount (an NFS server gone) stalls
/// one worker, never the housekeeping pass. A path whose call has not returned is reported as
/// timed out at once on later passes, so it holds at most one worker.
pub struct StatvfsPool {
    jobs: mpsc::Sender<StatJob>,
    in_flight: Arc<Mutex<HashSet<PathBuf>>>,
}

impl StatvfsPool {
    /// `workers` threads calling `statvfs`.
    pub fn new(workers: usize) -> Self {
        Self::with_fn(workers, statvfs)
    }

    /// The same with another statvfs function (tests simulate a hung mount with it).
    pub fn with_fn(workers: usize, stat: StatFn) -> Self {
        let (jobs, rx) = mpsc::channel::<StatJob>();
        let rx = Arc::new(Mutex::new(rx));
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let in_flight = in_flight.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("statvfs-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => break, // the pool was dropped
                    };
                    let r = stat(&job.path);
                    in_flight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&job.path);
                    let _ = job.reply.send((job.index, r));
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a statvfs worker");
            }
        }
        StatvfsPool { jobs, in_flight }
    }

    /// statvfs of each path (in order), waiting `timeout` at most for all of them together.
    pub fn statvfs_all(
        &self,
        paths: &[&Path],
        timeout: Duration,
    ) -> Vec<Result<FsInfo, StatvfsError>> {
        let (reply, results) = mpsc::channel();
        let mut out: Vec<Option<Result<FsInfo, StatvfsError>>> = vec![None; paths.len()];
        let mut pending = 0;
        let mut seen: std::collections::HashSet<&Path> = std::collections::HashSet::new();
        for (index, path) in paths.iter().enumerate() {
            // The same path twice in one call is asked once.
            if !seen.insert(path) {
                continue;
            }
            let fresh = self
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(path.to_path_buf());
            if !fresh {
                out[index] = Some(Err(StatvfsError::TimedOut {
                    path: path.to_path_buf(),
                    waited: timeout,
                }));
                continue;
            }
            let job = StatJob {
                path: path.to_path_buf(),
                index,
                reply: reply.clone(),
            };
            if self.jobs.send(job).is_err() {
                out[index] = Some(Err(StatvfsError::Failed {
                    path: path.to_path_buf(),
                    message: "no statvfs worker".into(),
                }));
                continue;
            }
            pending += 1;
        }
        let deadline = Instant::now() + timeout;
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((index, r)) = results.recv_timeout(left) else {
                break;
            };
            pending -= 1;
            out[index] = Some(r.map_err(|e| StatvfsError::Failed {
                path: paths[index].to_path_buf(),
                message: e.to_string(),
            }));
        }
        (0..paths.len())
            .map(|i| {
                let first = paths.iter().position(|p| *p == paths[i]).unwrap_or(i);
                out[first].clone().unwrap_or_else(|| {
                    Err(StatvfsError::TimedOut {
                        path: paths[i].to_path_buf(),
                        waited: timeout,
                    })
                })
            })
            .collect()
    }
}

/// The `major:minor` of the filesystem holding `path`.
pub fn path_dev(path: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::stat(path).ok()?;
    Some((
        rustix::fs::major(st.st_dev) as u64,
        rustix::fs::minor(st.st_dev) as u64,
    ))
}

/// One volume directory of a pod: `<kubelet root>/pods/<uid>/volumes/<plugin>/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeDir {
    /// The volume's directory name (the volume's name in the pod spec; the PV name for CSI).
    pub name: String,
    /// The plugin directory name, e.g. `kubernetes.io~empty-dir`.
    pub plugin: String,
    /// Where the volume's data is: the volume directory, or its `mount` subdirectory (CSI).
    pub path: PathBuf,
    /// Whether `path` is a filesystem of its own (a mount: PV, tmpfs secret); otherwise it
    /// shares the node's filesystem and its usage is what lies under it (the kubelet's `du`).
    pub mounted: bool,
}

/// The volume directories of a pod under `volumes` (`<kubelet root>/pods/<uid>/volumes`).
/// An absent directory is no volumes; other errors name the directory.
pub fn pod_volume_dirs(volumes: &Path) -> std::io::Result<Vec<VolumeDir>> {
    let mut out = Vec::new();
    let plugins = match std::fs::read_dir(volumes) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", volumes.display()),
            ))
        }
    };
    for plugin in plugins.flatten() {
        let plugin_path = plugin.path();
        let Ok(plugin_md) = std::fs::metadata(&plugin_path) else {
            continue;
        };
        if !plugin_md.is_dir() {
            continue;
        }
        let Ok(vols) = std::fs::read_dir(&plugin_path) else {
            continue;
        };
        for v in vols.flatten() {
            let mut path = v.path();
            let Ok(mut md) = std::fs::metadata(&path) else {
                continue;
            };
            if !md.is_dir() {
                continue;
            }
            let mut parent_dev = plugin_md.dev();
            // CSI volumes mount under `<name>/mount` beside vol_data.json.
            let csi_mount = path.join("mount");
            if let Ok(m) = std::fs::metadata(&csi_mount) {
                if m.is_dir() && m.dev() != md.dev() {
                    parent_dev = md.dev();
                    path = csi_mount;
                    md = m;
                }
            }
            out.push(VolumeDir {
                name: v.file_name().to_string_lossy().into_owned(),
                plugin: plugin.file_name().to_string_lossy().into_owned(),
                mounted: md.dev() != parent_dev,
                path,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.plugin.cmp(&b.plugin)));
    Ok(out)
}

/// Usage of a directory tree: bytes on disk (blocks × 512, as `du`) and inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

#[derive(Debug, Default)]
struct Walk {
    pending: Vec<PathBuf>,
    partial: Usage,
    last: Option<Usage>,
    /// A pass of this walk is in progress.
    running: bool,
}

/// Sizes many directory trees without ever walking them all at once: each call to `advance`
/// visits at most `budget` entries (round-robin over the trees), and a tree's total is
/// published when its walk completes. Readers see the last complete total.
#[derive(Debug, Default)]
pub struct IncrementalDu {
    walks: HashMap<PathBuf, Walk>,
    order: Vec<PathBuf>,
    next: usize,
}

impl IncrementalDu {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking `dir` (no-op when already tracked).
    pub fn track(&mut self, dir: &Path) {
        if !self.walks.contains_key(dir) {
            self.walks.insert(dir.to_path_buf(), Walk::default());
            self.order.push(dir.to_path_buf());
        }
    }

    /// Stops tracking `dir`.
    pub fn untrack(&mut self, dir: &Path) {
        self.walks.remove(dir);
        self.order.retain(|d| d != dir);
    }

    /// Stops tracking every tree for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
        let before = self.order.len();
        self.order.retain(|d| keep(d));
        if self.order.len() != before {
            let kept: std::collections::HashSet<&PathBuf> = self.order.iter().collect();
            self.walks.retain(|d, _| kept.contains(d));
            self.next = 0;
        }
    }

    /// Number of trees tracked.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no tree is tracked.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The last complete total of `dir`.
    pub fn usage(&self, dir: &Path) -> Option<Usage> {
        self.walks.get(dir).and_then(|w| w.last)
    }

    /// Visits at most `budget` entries; returns how many it visited.
    pub fn advance(&mut self, budget: usize) -> usize {
        let mut visited = 0;
        let n = self.order.len();
        if n == 0 {
            return 0;
        }
        let mut idle_rounds = 0;
        while visited < budget && idle_rounds < n {
            let dir = self.order[self.next % n].clone();
            let walk = self.walks.get_mut(&dir).expect("tracked");
            if !walk.running {
                walk.running = true;
                walk.partial = Usage::default();
                walk.pending = vec![dir.clone()];
            }
            let mut did = 0;
            // Give each tree a slice of the budget before moving to the next one.
            let slice = (budget / n).max(64);
            while did < slice && visited < budget {
                let Some(d) = walk.pending.pop() else { break };
                if let Ok(entries) = std::fs::read_dir(&d) {
                    for e in entries.flatten() {
                        did += 1;
                        visited += 1;
                        if let Ok(md) = e.metadata() {
                            walk.partial.bytes += md.blocks() * 512;
                            walk.partial.inodes += 1;
                            if md.is_dir() {
                                walk.pending.push(e.path());
                            }
                        }
                    }
                }
            }
            if walk.pending.is_empty() {
                walk.last = Some(walk.partial);
                walk.running = false;
                self.next = (self.next + 1) % n;
                idle_rounds = if did == 0 { idle_rounds + 1 } else { 0 };
                if self
                    .order
                    .iter()
                    .all(|d| !self.walks[d].running && self.walks[d].last.is_some())
                    && visited > 0
                {
                    // Every tree has a fresh total; the next pass starts new walks.
                    break;
                }
            } else {
                self.next = (self.next + 1) % n;
            }
        }
        visited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// statvfs answering for "/" after 1.5 s when the path ends in `hung`.
    fn slow_stat(path: &Path) -> std::io::Result<FsInfo> {
        if path.ends_with("hung") {
            std::thread::sleep(Duration::from_millis(1500));
        }
        statvfs(Path::new("/")).map(|f| FsInfo {
            path: path.to_path_buf(),
            ..f
        })
    }

    #[test]
    fn a_hung_statvfs_does_not_stall_the_caller() {
        let pool = StatvfsPool::with_fn(2, slow_stat);
        let (hung, root) = (Path::new("/mnt/hung"), Path::new("/"));
        let t = Instant::now();
        let r = pool.statvfs_all(&[hung, root, root], Duration::from_millis(300));
        assert!(
            t.elapsed() < Duration::from_millis(1200),
            "{:?}",
            t.elapsed()
        );
        assert!(
            matches!(&r[0], Err(StatvfsError::TimedOut { path, .. }) if path == hung),
            "{r:?}"
        );
        assert!(r[1].as_ref().is_ok_and(|f| f.capacity > 0), "{r:?}");
        assert_eq!(r[2], r[1], "the same path twice is asked once");
        // Still hanging: not asked again, answered at once.
        let t = Instant::now();
        let r = pool.statvfs_all(&[hung], Duration::from_secs(5));
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(r[0].as_ref().unwrap_err().kind(), "statvfs_timeout");
        // Once the call has returned the path is asked again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.statvfs_all(&[hung], Duration::from_secs(3))[0].is_err() {
            assert!(Instant::now() < deadline, "the hung path never answered");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A failing call is an error naming the path.
        let missing = Path::new("/nonexistent/vigil-statvfs");
        let r = StatvfsPool::new(1).statvfs_all(&[missing], Duration::from_secs(5));
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.kind(), "statvfs");
        assert!(e.to_string().contains("/nonexistent/vigil-statvfs"), "{e}");
    }

    #[test]
    fn retain_forgets_gone_trees() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut du = IncrementalDu::new();
        du.track(a.path());
        du.track(b.path());
        du.advance(100);
        du.retain(|d| d == a.path());
        assert_eq!(du.len(), 1);
        assert!(du.usage(a.path()).is_some() && du.usage(b.path()).is_none());
    }

    #[test]
    fn pod_volume_dirs_absent_is_empty_and_bad_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(pod_volume_dirs(&tmp.path().join("none")).unwrap(), vec![]);
        let file = tmp.path().join("volumes");
        std::fs::write(&file, "not a directory").unwrap();
        let err = pod_volume_dirs(&file).unwrap_err().to_string();
        assert!(err.contains("volumes"), "{err}");
    }

    #[test]
    fn statvfs_of_root() {
        let fs = statvfs(Path::new("/")).unwrap();
        assert!(fs.capacity > 0 && fs.capacity >= fs.available);
    }

    #[test]
    fn incremental_walk_converges_within_budget() {
        let tmp = tempfile::tempdir().unwrap();
        for d in 0..10 {
            let dir = tmp.path().join(format!("d{d}"));
            std::fs::create_dir(&dir).unwrap();
            for f in 0..10 {
                std::fs::write(dir.join(format!("f{f}")), vec![1u8; 8192]).unwrap();
            }
        }
        let mut du = IncrementalDu::new();
        du.track(tmp.path());
        // 10 dirs + 100 files = 110 entries; a budget of 20 per pass needs several passes.
        let mut passes = 0;
        while du.usage(tmp.path()).is_none() {
            assert!(du.advance(20) <= 20);
            passes += 1;
            assert!(passes < 100);
        }
        assert!(
            passes >= 5,
            "walk finished in {passes} passes, the budget was not honoured"
        );
        let u = du.usage(tmp.path()).unwrap();
        assert_eq!(u.inodes, 110);
        // 100 files of 8 KiB occupy at least 800 KiB on disk.
        assert!(u.bytes >= 100 * 8192, "{u:?}");
    }
}
