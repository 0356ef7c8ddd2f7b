//! Finds cgroups: full walks of each hierarchy plus inotify (the `notify` crate) for creation and removal.

pub mod metadata;
pub mod naming;

use crate::cgroup::{normalise_name, Layout};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
        source: notify::Error,
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
/// Each directory gets its own non-recursive watch, added by the watcher's registration thread
/// *before* the directory is listed: a child created before the watch is found by the listing,
/// one created after it raises its own event. (notify's recursive mode cannot give that order:
/// it hands a directory's create event to the handler before it adds the directory's watch, so
/// a child created in between was neither listed nor reported — the cause of a container
/// created as `kubepods/…/pod…/<id>` in one burst being missed until the next rescan.)
pub struct Watcher {
    /// The only strong reference: dropping it stops the watches and the registration thread.
    _inner: Arc<Mutex<notify::RecommendedWatcher>>,
    changes: Arc<Mutex<Changes>>,
}

/// Adds a watch on `dir`, then lists it and registers every subdirectory the same way; every
/// directory registered is reported as created. Returns the watch errors other than a
/// directory removed meanwhile.
fn register(
    watcher: &Mutex<notify::RecommendedWatcher>,
    changes: &Mutex<Changes>,
    root: &Path,
    dir: &Path,
) -> Vec<Error> {
    use notify::Watcher as _;
    let mut errors = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let added = watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .watch(&dir, notify::RecursiveMode::NonRecursive);
        match added {
            Ok(()) => {}
            Err(e) if matches!(e.kind, notify::ErrorKind::PathNotFound) => continue,
            Err(e) if matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound) => {
                continue
            }
            Err(source) => {
                // Past the watch limit: the periodic rescan covers what is not watched.
                changes.lock().unwrap_or_else(|p| p.into_inner()).rescan = true;
                errors.push(Error::Watch { path: dir, source });
                continue;
            }
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(_) => continue, // removed meanwhile: its removal event follows
        };
        let subdirs = entries
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path());
        stack.extend(subdirs);
        if let Some(rel) = dir.strip_prefix(root).ok().and_then(|r| r.to_str()) {
            let n = normalise_name(rel);
            tracing::debug!(cgroup = %n, "cgroup directory watched");
            let mut ch = changes.lock().unwrap_or_else(|p| p.into_inner());
            ch.removed.remove(&n);
            ch.created.insert(n);
        }
    }
    errors
}

impl Watcher {
    /// Watches every directory under `layout`'s roots (returning once they are watched) and
    /// starts the thread that registers directories created later. A directory that cannot be
    /// watched (e.g. the inotify watch limit) is reported; periodic rescans cover it.
    pub fn start(layout: &Layout) -> (Option<Watcher>, Vec<Error>) {
        let changes = Arc::new(Mutex::new(Changes::default()));
        let roots = layout.walk_roots();
        let (created_tx, created_rx) = std::sync::mpsc::channel::<(PathBuf, PathBuf)>();
        let roots_for_handler = roots.clone();
        let sink = changes.clone();
        // Runs on notify's event loop thread: it must not add watches itself (notify's `watch`
        // waits for that same thread), so created directories go to the registration thread.
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(ev) => {
                if ev.need_rescan() {
                    tracing::warn!("inotify queue overflowed; will rescan");
                    sink.lock().unwrap_or_else(|p| p.into_inner()).rescan = true;
                }
                for path in &ev.paths {
                    let Some(root) = roots_for_handler.iter().find(|r| path.starts_with(r)) else {
                        continue;
                    };
                    match ev.kind {
                        notify::EventKind::Create(notify::event::CreateKind::Folder) => {
                            tracing::debug!(path = %path.display(), "cgroup directory created");
                            let _ = created_tx.send((root.clone(), path.clone()));
                        }
                        notify::EventKind::Remove(_) => {
                            let Some(rel) = path.strip_prefix(root).ok().and_then(|r| r.to_str())
                            else {
                                continue;
                            };
                            let n = normalise_name(rel);
                            tracing::debug!(cgroup = %n, "cgroup directory removed");
                            let mut ch = sink.lock().unwrap_or_else(|p| p.into_inner());
                            ch.created.remove(&n);
                            ch.removed.insert(n);
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cgroup watch error; will rescan");
                sink.lock().unwrap_or_else(|p| p.into_inner()).rescan = true;
            }
        };
        let mut errors = Vec::new();
        let inner = match notify::recommended_watcher(handler) {
            Ok(w) => Arc::new(Mutex::new(w)),
            Err(source) => {
                errors.push(Error::Watch {
                    path: PathBuf::from("inotify"),
                    source,
                });
                return (None, errors);
            }
        };
        for root in &roots {
            errors.extend(register(&inner, &changes, root, root));
        }
        // The thread holds the watcher weakly: dropping the `Watcher` drops notify's watcher,
        // its handler and with it the channel's sender, which ends the thread.
        let weak = Arc::downgrade(&inner);
        let sink = changes.clone();
        let spawned = std::thread::Builder::new()
            .name("cgroup-watch".into())
            .spawn(move || {
                while let Ok((root, dir)) = created_rx.recv() {
                    let Some(watcher) = weak.upgrade() else { break };
                    for e in register(&watcher, &sink, &root, &dir) {
                        tracing::warn!(error = %e, "cannot watch a new cgroup directory; will rescan");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the cgroup watch thread; rescans only");
            return (None, errors);
        }
        (
            Some(Watcher {
                _inner: inner,
                changes,
            }),
            errors,
        )
    }

    /// Takes the changes seen since the last call.
    pub fn drain(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
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
