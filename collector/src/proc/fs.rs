//! Filesystem capacity (statvfs) and bounded-cost directory usage (an incremental walk with a per-pass budget).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Capacity and usage of a mounted filesystem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FsInfo {
    pub path: PathBuf,
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
        capacity: s.f_blocks * frsize,
        available: s.f_bavail * frsize,
        used: (s.f_blocks - s.f_bfree) * frsize,
        inodes: s.f_files,
        inodes_free: s.f_ffree,
    })
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
