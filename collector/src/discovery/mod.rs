//! Finds cgroups: full walks of each hierarchy plus inotify watches on every cgroup directory for creation and removal, and on the limit and event files whose changes the pass reads.

pub mod metadata;
pub mod naming;
pub mod volumes;

use crate::cgroup::{normalise_name, Layout, V2_EVENT_FILES};
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
    /// Cgroups one of whose limit files was written (their spec is to be read again).
    pub limits_changed: BTreeSet<String>,
    /// Cgroups whose event files (memory.events) changed.
    pub events_changed: BTreeSet<String>,
    /// Cgroups (re)registered with every limit and event file of theirs watched in one
    /// hierarchy: their limits and events may be read only when they change...
    pub files_watched: BTreeSet<String>,
    /// ...unless one of their directories lacks a watched file (its controller is not enabled
    /// there, or the watch budget is spent): then they are read on a schedule.
    pub files_unwatched: BTreeSet<String>,
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
    /// The inotify descriptor's number, to count its watches in /proc/self/fdinfo.
    fd: i32,
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

/// What a watch descriptor stands for.
#[derive(Debug, Clone)]
enum Watched {
    /// A cgroup directory under `roots[.0]`.
    Dir(u8, Arc<Path>),
    /// The file `files[.0][.2]` of the cgroup directory `.1` under `roots[.0]` (the path is
    /// shared with the directory's entry: about eight watches per cgroup, so kept small).
    File(u8, Arc<Path>, u8),
}

/// The watched directories and files, owned by the watcher thread.
struct Tree {
    inotify: Inotify,
    roots: Vec<PathBuf>,
    /// The files to watch in every directory, per root (`Layout::watched_files`).
    files: Vec<Vec<&'static str>>,
    /// Watch descriptor number → what it watches.
    watches: HashMap<i32, Watched>,
    /// Every watch of a directory: its own first, then its files'. cgroupfs never reports the
    /// end of these watches (no IN_DELETE_SELF nor IN_IGNORED when a cgroup is removed: the
    /// kernel removes its files itself), so they are removed here when the parent reports the
    /// directory's removal; otherwise each removed cgroup would leak its watches.
    by_dir: HashMap<Arc<Path>, Vec<WatchDescriptor>>,
    /// File watches are added while the watches stay under this (a quarter of the user's
    /// `max_user_watches`, which the kubelet, systemd and the runtime share), so that
    /// directories, which discovery needs, are never short of one.
    file_watch_limit: usize,
    changes: Arc<Mutex<Changes>>,
}

/// Watches on files only report writes.
fn file_watch_mask() -> WatchMask {
    WatchMask::MODIFY | WatchMask::DONT_FOLLOW
}

/// The per-user inotify watch limit (`fs.inotify.max_user_watches`; 8,192 when unreadable, the
/// old kernels' default).
fn max_user_watches() -> usize {
    std::fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(8192)
}

impl Tree {
    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cgroup name of the directory `path` under root `root`.
    fn name_of(&self, root: usize, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.roots[root]).ok()?.to_str()?;
        Some(normalise_name(rel))
    }

    /// Records that the directory `path` under root `root` was created (`true`) or removed.
    fn note(&self, root: usize, path: &Path, created: bool) {
        let Some(n) = self.name_of(root, path) else {
            return;
        };
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

    /// Records whether every limit and event file of the directory `path` is watched.
    fn note_files(&self, root: usize, path: &Path, all_watched: bool) {
        let Some(n) = self.name_of(root, path) else {
            return;
        };
        let mut ch = self.changes();
        if all_watched {
            ch.files_watched.insert(n);
        } else {
            ch.files_watched.remove(&n);
            ch.files_unwatched.insert(n);
        }
    }

    /// Adds a watch on `dir`, then lists it and registers every subdirectory the same way; every
    /// directory registered is reported as created. Returns the watch errors other than a
    /// directory removed meanwhile.
    fn register(&mut self, root: usize, dir: &Path) -> Vec<Error> {
        let mut errors = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(dir) = stack.pop() {
            // Watched before (re-created under the same name, or listed twice): drop the old
            // watches first (the same inode would get the same descriptor back).
            self.unwatch(&dir);
            let all_watched;
            match self.inotify.watches().add(&dir, watch_mask()) {
                Ok(wd) => {
                    let shared: Arc<Path> = Arc::from(dir.as_path());
                    self.watches.insert(
                        wd.get_watch_descriptor_id(),
                        Watched::Dir(root as u8, shared.clone()),
                    );
                    self.by_dir.insert(shared.clone(), vec![wd]);
                    all_watched = self.watch_files(root, &shared, &mut errors);
                }
                // Removed meanwhile (its removal event follows), or not a directory.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    continue
                }
                Err(source) => {
                    // Past the watch limit (ENOSPC): the periodic rescan covers what is not watched.
                    self.changes().rescan = true;
                    self.note_files(root, &dir, false);
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
            // Created first, then what is watched: a re-created cgroup forgets what it knew of
            // its files when the collector takes the creation, so this must not come before.
            self.note(root, &dir, true);
            self.note_files(root, &dir, all_watched);
        }
        errors
    }

    /// Adds the watches on the limit and event files of the cgroup directory `dir`; true when
    /// every one is watched. A file the directory lacks (its controller is not enabled there),
    /// a failure or the watch budget spent make it false: the collector then reads that
    /// cgroup's limits and events on a schedule.
    fn watch_files(&mut self, root: usize, dir: &Arc<Path>, errors: &mut Vec<Error>) -> bool {
        for i in 0..self.files[root].len() {
            let file = self.files[root][i];
            if self.watches.len() >= self.file_watch_limit {
                return false;
            }
            let path = dir.join(file);
            match self.inotify.watches().add(&path, file_watch_mask()) {
                Ok(wd) => {
                    self.watches.insert(
                        wd.get_watch_descriptor_id(),
                        Watched::File(root as u8, dir.clone(), i as u8),
                    );
                    if let Some(wds) = self.by_dir.get_mut(&**dir) {
                        wds.push(wd);
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    return false;
                }
                Err(source) => {
                    errors.push(Error::Watch { path, source });
                    return false;
                }
            }
        }
        true
    }

    /// Removes every watch of the directory `dir` (see `by_dir`).
    fn unwatch(&mut self, dir: &Path) {
        for wd in self.by_dir.remove(dir).unwrap_or_default() {
            self.watches.remove(&wd.get_watch_descriptor_id());
            // Already gone (tmpfs reports its removal itself): nothing to do.
            let _ = self.inotify.watches().remove(wd);
        }
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<OsString>) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            tracing::warn!("inotify queue overflowed; will rescan");
            self.changes().rescan = true;
            return;
        }
        if mask.contains(EventMask::IGNORED) {
            // The watch is gone (its directory or file was removed, or unwatched here).
            self.watches.remove(&wd.get_watch_descriptor_id());
            return;
        }
        let (root, dir) = match self.watches.get(&wd.get_watch_descriptor_id()) {
            Some(Watched::Dir(root, dir)) => (usize::from(*root), dir.to_path_buf()),
            Some(Watched::File(root, dir, file)) => {
                let (root, file) = (
                    usize::from(*root),
                    self.files[usize::from(*root)][usize::from(*file)],
                );
                if mask.contains(EventMask::MODIFY) {
                    if let Some(n) = self.name_of(root, dir) {
                        let mut ch = self.changes();
                        if V2_EVENT_FILES.contains(&file) {
                            ch.events_changed.insert(n);
                        } else {
                            ch.limits_changed.insert(n);
                        }
                    }
                }
                return;
            }
            None => return,
        };
        if mask.contains(EventMask::DELETE_SELF) {
            self.unwatch(&dir);
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
                tracing::warn!(error = %e, "cannot watch a new cgroup directory or file; reading it on a schedule");
            }
        } else if mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
            self.unwatch(&path);
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
        let roots = layout.walk_roots();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&inotify);
        let mut tree = Tree {
            inotify,
            files: roots.iter().map(|r| layout.watched_files(r)).collect(),
            roots,
            watches: HashMap::new(),
            by_dir: HashMap::new(),
            file_watch_limit: max_user_watches() / 4,
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
                    fd,
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

    /// The watches the kernel holds for this watcher (`inotify wd:` lines of its fdinfo).
    pub fn kernel_watches(&self) -> Option<usize> {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.fd)).ok()?;
        Some(
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count(),
        )
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

    /// Writes to limit files and to memory.events of watched cgroups are reported by cgroup, and
    /// reading files raises nothing; a cgroup lacking one of its controllers' files is reported
    /// as not fully watched.
    #[test]
    fn watcher_reports_written_limit_and_event_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let dir = tmp.path().join("kubepods/poda/c1");
        let partial = tmp.path().join("kubepods/poda/c2");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&partial).unwrap();
        let files = [
            "cpu.max",
            "cpu.weight",
            "memory.max",
            "memory.min",
            "memory.swap.max",
            "memory.events",
        ];
        for f in files.iter().chain(["cpu.stat"].iter()) {
            std::fs::write(dir.join(f), "0\n").unwrap();
        }
        // No memory.min: as if the memory controller were not fully enabled there.
        for f in files.iter().filter(|f| **f != "memory.min") {
            std::fs::write(partial.join(f), "0\n").unwrap();
        }
        let layout = Layout::detect(tmp.path()).unwrap();
        let (watcher, errors) = Watcher::start(&layout);
        assert!(errors.is_empty(), "{errors:?}");
        let watcher = watcher.unwrap();
        let first = watcher.drain();
        assert!(
            first.files_watched.contains("/kubepods/poda/c1"),
            "{first:?}"
        );
        assert!(
            first.files_unwatched.contains("/kubepods/poda/c2"),
            "{first:?}"
        );
        assert!(
            !first.files_watched.contains("/kubepods/poda/c2"),
            "{first:?}"
        );
        let drain_until = |what: &dyn Fn(&Changes) -> bool| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut all = Changes::default();
            while std::time::Instant::now() < deadline {
                let ch = watcher.drain();
                all.limits_changed.extend(ch.limits_changed);
                all.events_changed.extend(ch.events_changed);
                if what(&all) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            all
        };
        // Reads and writes to files that are not watched raise nothing.
        std::fs::read_to_string(dir.join("memory.max")).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let quiet = watcher.drain();
        assert!(quiet.limits_changed.is_empty() && quiet.events_changed.is_empty());
        std::fs::write(dir.join("memory.max"), "1048576\n").unwrap();
        let ch = drain_until(&|c| !c.limits_changed.is_empty());
        assert_eq!(
            ch.limits_changed,
            BTreeSet::from(["/kubepods/poda/c1".to_string()])
        );
        assert!(ch.events_changed.is_empty());
        // A write is a truncation and a write, two events that may fall in two drains: let the
        // second one pass before the next check.
        std::thread::sleep(std::time::Duration::from_millis(300));
        watcher.drain();
        std::fs::write(dir.join("memory.events"), "oom_kill 1\n").unwrap();
        let ch = drain_until(&|c| !c.events_changed.is_empty());
        assert_eq!(
            ch.events_changed,
            BTreeSet::from(["/kubepods/poda/c1".to_string()])
        );
        assert!(ch.limits_changed.is_empty());
        // Removing the cgroups removes their directory and file watches.
        let before = watcher.kernel_watches().unwrap();
        std::fs::remove_dir_all(tmp.path().join("kubepods/poda")).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        // poda: 1; c1: 1 + 6 files; c2: 1 + the 3 files before its missing memory.min.
        assert_eq!(
            before,
            2 + 1 + 7 + 4,
            "the root and kubepods have no limit files"
        );
        while watcher.kernel_watches().unwrap() > 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(watcher.kernel_watches().unwrap(), 2);
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
