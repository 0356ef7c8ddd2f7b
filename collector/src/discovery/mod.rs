//! Finds cgroups: full walks of each hierarchy plus inotify watches on every cgroup directory for creation and removal.

pub mod metadata;
pub mod naming;
pub mod volumes;

use crate::cgroup::{normalise_name, Layout};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot walk {path}: {source}")]
    Walk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Walk { .. } => "discovery_walk",
            Error::Watch { .. } => "discovery_watch",
        }
    }
}

/// Every cgroup name (`/`, `/kubepods`, …) under each hierarchy root of `layout`.
pub fn scan(layout: &Layout, errors: &mut Vec<Error>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for root in layout.walk_roots() {
        walk(&root, &root, &mut names, errors);
    }
    names
}

/// Adds `dir` and every directory below it, as names relative to `root`.
pub fn walk(root: &Path, dir: &Path, names: &mut BTreeSet<String>, errors: &mut Vec<Error>) {
    let Ok(rel) = dir.strip_prefix(root) else {
        return;
    };
    let Some(rel) = rel.to_str() else { return };
    names.insert(normalise_name(rel));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // Removed while walking: not an error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(source) => {
            errors.push(Error::Walk {
                path: dir.to_path_buf(),
                source,
            });
            return;
        }
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(root, &e.path(), names, errors);
        }
    }
}

/// Changes seen by the watcher since the last drain.
#[derive(Debug, Default)]
pub struct Changes {
    pub created: BTreeSet<String>,
    pub removed: BTreeSet<String>,
    /// Events were lost (queue overflow) or a watch failed: a full rescan is needed.
    pub rescan: bool,
}

/// Watches every directory of the hierarchies with inotify; keeps the changes for the
/// housekeeping loop.
///
/// One thread owns the inotify instance: it adds a directory's watch *before* listing the
/// directory, so a child created before the watch is found by the listing and one created after
/// it raises its own event. (notify's recursive mode gives no such order — it handed a
/// directory's create event to the handler before adding the directory's watch, so a child
/// created in between was neither listed nor reported: a container created as
/// `kubepods/…/pod…/<id>` in one burst was missed until the next rescan.)
///
/// The watches ask only for directory events (create, delete, move). The `notify` crate cannot
/// narrow its mask, which includes open, modify and close-write: every cgroup file the pass opens
/// then queued an event for the watcher thread, ≈ 15,000 per pass at 1,000 containers, which
/// cost more CPU than the pass itself (see BENCHMARKS.md) and could overflow the queue.
pub struct Watcher {
    changes: Arc<Mutex<Changes>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Directory events only: the files in a cgroup are the kernel's, and reading them is the pass.
fn watch_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
}

/// The watched directories, owned by the watcher thread.
struct Tree {
    inotify: Inotify,
    roots: Vec<PathBuf>,
    /// Watch descriptor → (index into `roots`, directory).
    dirs: HashMap<WatchDescriptor, (usize, PathBuf)>,
    changes: Arc<Mutex<Changes>>,
}

impl Tree {
    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that the directory `path` under root `root` was created (`true`) or removed.
    fn note(&self, root: usize, path: &Path, created: bool) {
        let Some(rel) = path
            .strip_prefix(&self.roots[root])
            .ok()
            .and_then(|r| r.to_str())
        else {
            return;
        };
        let n = normalise_name(rel);
        tracing::debug!(cgroup = %n, created, "cgroup directory event");
        let mut ch = self.changes();
        if created {
            ch.removed.remove(&n);
            ch.created.insert(n);
        } else {
            ch.created.remove(&n);
            ch.removed.insert(n);
        }
    }

    /// Adds a watch on `dir`, then lists it and registers every subdirectory the same way; every
    /// directory registered is reported as created. Returns the watch errors other than a
    /// directory removed meanwhile.
    fn register(&mut self, root: usize, dir: &Path) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            match self.inotify.watches().add(&dir, watch_mask()) {
                Ok(wd) => {
                    self.dirs.insert(wd, (root, dir.clone()));
                }
                // Removed meanwhile (its removal event follows), or not a directory.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    continue
                }
                Err(source) => {
                    // Past the watch limit (ENOSPC): the periodic rescan covers what is not watched.
                    self.changes().rescan = true;
                    errors.push(Error::Watch { path: dir, source });
                    continue;
                }
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue; // removed meanwhile: its removal event follows
            };
            let subdirs = entries
                .flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path());
            stack.extend(subdirs);
            self.note(root, &dir, true);
        }
        errors
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<OsString>) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            tracing::warn!("inotify queue overflowed; will rescan");
            self.changes().rescan = true;
            return;
        }
        if mask.contains(EventMask::IGNORED) {
            // The watch is gone (its directory was removed).
            self.dirs.remove(&wd);
            return;
        }
        let Some((root, dir)) = self.dirs.get(&wd).cloned() else {
            return;
        };
        if mask.contains(EventMask::DELETE_SELF) {
            self.note(root, &dir, false);
            return;
        }
        let (Some(name), true) = (name, mask.contains(EventMask::ISDIR)) else {
            return;
        };
        let path = dir.join(name);
        if mask.intersects(EventMask::MOVED_FROM | EventMask::MOVED_TO) {
            // A renamed cgroup (rare): the watches below it keep their old paths; a full rescan
            // puts every name right.
            self.changes().rescan = true;
        }
        if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
            for e in self.register(root, &path) {
                tracing::warn!(error = %e, "cannot watch a new cgroup directory; will rescan");
            }
        } else if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
            self.note(root, &path, false);
        }
    }

    /// Reads and handles events until `stop` is set (checked every 200 ms).
    fn run(mut self, stop: &AtomicBool) {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut buf = vec![0u8; 64 * 1024];
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        while !stop.load(Ordering::Relaxed) {
            let mut fds = [PollFd::new(&self.inotify, PollFlags::IN)];
            match poll(&mut fds, Some(&tick)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot poll the cgroup watch; will rescan");
                    self.changes().rescan = true;
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            let events: Vec<_> = match self.inotify.read_events(&mut buf) {
                Ok(events) => events
                    .map(|e| (e.wd, e.mask, e.name.map(|n| n.to_os_string())))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cgroup watch; will rescan");
                    self.changes().rescan = true;
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            for (wd, mask, name) in events {
                self.handle(wd, mask, name);
            }
        }
    }
}

impl Watcher {
    /// Watches every directory under `layout`'s roots (returning once they are watched) and
    /// starts the thread that follows creations and removals. A directory that cannot be
    /// watched (e.g. the inotify watch limit) is reported; periodic rescans cover it.
    pub fn start(layout: &Layout) -> (Option<Watcher>, Vec<Error>) {
        let mut errors = Vec::new();
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(source) => {
                errors.push(Error::Watch {
                    path: PathBuf::from("inotify"),
                    source,
                });
                return (None, errors);
            }
        };
        let changes = Arc::new(Mutex::new(Changes::default()));
        let mut tree = Tree {
            inotify,
            roots: layout.walk_roots(),
            dirs: HashMap::new(),
            changes: changes.clone(),
        };
        for root in 0..tree.roots.len() {
            let dir = tree.roots[root].clone();
            errors.extend(tree.register(root, &dir));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("cgroup-watch".into())
            .spawn(move || tree.run(&stop_thread));
        match spawned {
            Ok(thread) => (
                Some(Watcher {
                    changes,
                    stop,
                    thread: Some(thread),
                }),
                errors,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the cgroup watch thread; rescans only");
                (None, errors)
            }
        }
    }

    /// Takes the changes seen since the last call.
    pub fn drain(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_every_cgroup_of_a_fixture() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cgroup-v1-cgroupfs");
        let layout = Layout::detect(&root).unwrap();
        let mut errors = Vec::new();
        let names = scan(&layout, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(names.contains("/"));
        assert!(names.contains("/kubepods/burstable/pod11111111-2222-3333-4444-555555555555"));
    }

    /// A temporary v2 root (with `cgroup.controllers`) and a watcher on it.
    fn watched_v2_root() -> (tempfile::TempDir, Watcher) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let layout = Layout::detect(tmp.path()).unwrap();
        let (watcher, errors) = Watcher::start(&layout);
        assert!(errors.is_empty(), "{errors:?}");
        (tmp, watcher.unwrap())
    }

    /// Nested directories created in quick succession (like a runtime creating
    /// `kubepods/<qos>/pod<uid>/<id>`) are all reported, including those created after the
    /// parent's create event was read but before a watch was on the parent.
    #[test]
    fn watcher_sees_every_level_of_quickly_created_trees() {
        let (tmp, watcher) = watched_v2_root();
        let mut want = BTreeSet::new();
        for i in 0..200 {
            let mut p = tmp.path().to_path_buf();
            let mut rel = String::new();
            for seg in ["kp", "burstable", "pod", "c"] {
                let seg = format!("{seg}{i}");
                p.push(&seg);
                rel.push('/');
                rel.push_str(&seg);
                std::fs::create_dir(&p).unwrap();
                want.insert(rel.clone());
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut created = BTreeSet::new();
        while !want.is_subset(&created) && std::time::Instant::now() < deadline {
            let ch = watcher.drain();
            assert!(!ch.rescan, "no overflow expected");
            created.extend(ch.created);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let missed: Vec<_> = want.difference(&created).collect();
        assert!(missed.is_empty(), "{} missed: {missed:?}", missed.len());
    }

    #[test]
    fn watcher_sees_creation_and_removal() {
        let (tmp, watcher) = watched_v2_root();
        std::fs::create_dir_all(tmp.path().join("kubepods/podx/abc")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut created = BTreeSet::new();
        while !created.contains("/kubepods/podx/abc") && std::time::Instant::now() < deadline {
            created.extend(watcher.drain().created);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(created.contains("/kubepods/podx/abc"), "{created:?}");
        std::fs::remove_dir(tmp.path().join("kubepods/podx/abc")).unwrap();
        let mut removed = BTreeSet::new();
        while !removed.contains("/kubepods/podx/abc") && std::time::Instant::now() < deadline {
            removed.extend(watcher.drain().removed);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(removed.contains("/kubepods/podx/abc"), "{removed:?}");
    }
}
