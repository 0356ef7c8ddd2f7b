//! File descriptors kept open between passes: a cgroup's directories (O_PATH) and its hottest files, under a process-wide budget.

use rustix::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::OnceLock;

/// How many descriptors the collector may keep open across passes (process-wide).
///
/// Every kept cgroup file pins a kernfs `seq_file` buffer (one page, charged to the collector's
/// cgroup on v2) until it is closed; a kept directory is an `O_PATH` descriptor (no buffer).
#[derive(Debug)]
pub struct FdBudget {
    left: AtomicIsize,
    total: usize,
}

/// Descriptors never handed to the cache: sockets, inotify, /proc reads, the problem detector.
const RESERVED_FDS: u64 = 1024;

impl FdBudget {
    /// A budget of `n` descriptors.
    pub fn new(n: usize) -> Self {
        FdBudget {
            left: AtomicIsize::new(n as isize),
            total: n,
        }
    }

    /// The process-wide budget (see `global_capped`), as first set up.
    pub fn global() -> &'static FdBudget {
        Self::global_capped(usize::MAX)
    }

    /// The process-wide budget, set up by the first call: RLIMIT_NOFILE's soft limit is raised to
    /// the hard limit once, everything above a reserve of 1,024 (or an eighth of the limit, if
    /// larger) may be kept, and at most `cap` (the collector's `max_open_files`). Later calls
    /// return the same budget, whatever their cap.
    pub fn global_capped(cap: usize) -> &'static FdBudget {
        static GLOBAL: OnceLock<FdBudget> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            use rustix::process::{getrlimit, setrlimit, Resource};
            let mut lim = getrlimit(Resource::Nofile);
            if lim.current != lim.maximum {
                let raised = rustix::process::Rlimit {
                    current: lim.maximum,
                    maximum: lim.maximum,
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => lim = getrlimit(Resource::Nofile),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE to its hard limit")
                    }
                }
            }
            // An unlimited (None) soft limit: still bound the cache.
            let soft = lim.current.unwrap_or(1 << 20).min(1 << 20);
            let reserve = RESERVED_FDS.max(soft / 8);
            let n = (soft.saturating_sub(reserve) as usize).min(cap);
            tracing::info!(nofile = soft, kept_fd_budget = n, "file descriptor budget");
            FdBudget::new(n)
        })
    }

    /// Takes one descriptor from the budget; `None` when it is spent.
    pub fn take(&'static self) -> Option<Token> {
        if self.left.fetch_sub(1, Ordering::Relaxed) > 0 {
            Some(Token(self))
        } else {
            self.left.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Descriptors currently kept.
    pub fn in_use(&self) -> usize {
        (self.total as isize - self.left.load(Ordering::Relaxed)).max(0) as usize
    }

    /// The size of the budget.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// One descriptor's share of the budget, given back when dropped (with its descriptor).
#[derive(Debug)]
pub struct Token(&'static FdBudget);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.left.fetch_add(1, Ordering::Relaxed);
    }
}

/// A kept directory descriptor (`O_PATH`).
#[derive(Debug)]
pub(crate) struct KeptDir {
    pub path: PathBuf,
    pub fd: OwnedFd,
    _token: Token,
}

/// A kept file descriptor, re-read with `pread` at offset 0 (kernfs seq_files regenerate their
/// content when read from offset 0; tmpfs files are read as they are).
#[derive(Debug)]
pub(crate) struct KeptFile {
    /// Index into `Handles::dirs`.
    pub dir: usize,
    pub name: &'static str,
    pub fd: OwnedFd,
    _token: Token,
}

/// The descriptors kept for one cgroup between passes; dropping it closes them.
#[derive(Debug, Default)]
pub struct Handles {
    pub(crate) dirs: Vec<KeptDir>,
    pub(crate) files: Vec<KeptFile>,
}

impl Handles {
    /// Number of kept descriptors (directories and files).
    pub fn len(&self) -> usize {
        self.dirs.len() + self.files.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty() && self.files.is_empty()
    }

    pub(crate) fn dir_index(&self, path: &Path) -> Option<usize> {
        self.dirs
            .iter()
            .position(|d| d.path.as_os_str() == path.as_os_str())
    }

    /// The kept file `name` of directory `dir`, looked for at `hint` first: a pass reads a
    /// cgroup's files in the same order as the pass that kept them, so the hint (the index after
    /// the last file found) is nearly always right and the search is one comparison.
    pub(crate) fn file_index_from(&self, dir: usize, name: &str, hint: usize) -> Option<usize> {
        match self.files.get(hint) {
            Some(f) if f.dir == dir && (std::ptr::eq(f.name, name) || f.name == name) => Some(hint),
            _ => self.file_index(dir, name),
        }
    }

    pub(crate) fn file_index(&self, dir: usize, name: &str) -> Option<usize> {
        self.files
            .iter()
            .position(|f| f.dir == dir && f.name == name)
    }

    pub(crate) fn keep_dir(&mut self, path: &Path, fd: OwnedFd, token: Token) -> usize {
        self.dirs.push(KeptDir {
            path: path.to_path_buf(),
            fd,
            _token: token,
        });
        self.dirs.len() - 1
    }

    pub(crate) fn keep_file(&mut self, dir: usize, name: &'static str, fd: OwnedFd, token: Token) {
        self.files.push(KeptFile {
            dir,
            name,
            fd,
            _token: token,
        });
    }

    /// Files kept (in every directory of the cgroup).
    pub(crate) fn files_len(&self) -> usize {
        self.files.len()
    }

    /// Forgets a directory and its files (it was removed, or replaced by a new one of the same name).
    pub(crate) fn drop_dir(&mut self, dir: usize) {
        self.files.retain(|f| f.dir != dir);
        self.dirs.remove(dir);
        for f in &mut self.files {
            if f.dir > dir {
                f.dir -= 1;
            }
        }
    }

    pub(crate) fn drop_file(&mut self, i: usize) {
        self.files.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_given_back_on_drop() {
        static B: OnceLock<FdBudget> = OnceLock::new();
        let b = B.get_or_init(|| FdBudget::new(2));
        let t1 = b.take().unwrap();
        let t2 = b.take().unwrap();
        assert!(b.take().is_none());
        assert_eq!(b.in_use(), 2);
        drop(t1);
        assert_eq!(b.in_use(), 1);
        let _t3 = b.take().unwrap();
        drop(t2);
        assert_eq!(b.in_use(), 1);
    }
}
