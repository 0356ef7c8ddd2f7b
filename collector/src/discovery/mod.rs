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

/// Watches the hierarchy roots with inotify; keeps the changes for the housekeeping loop.
pub struct Watcher {
    _inner: notify::RecommendedWatcher,
    changes: Arc<Mutex<Changes>>,
}

impl Watcher {
    /// Starts watching `layout`'s roots recursively. A root that cannot be watched (e.g. the
    /// inotify watch limit) is reported; periodic rescans cover it.
    pub fn start(layout: &Layout) -> (Option<Watcher>, Vec<Error>) {
        use notify::Watcher as _;
        let changes = Arc::new(Mutex::new(Changes::default()));
        let roots = layout.walk_roots();
        let roots_for_handler = roots.clone();
        let sink = changes.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            let mut ch = sink.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                Ok(ev) => {
                    if ev.need_rescan() {
                        ch.rescan = true;
                    }
                    for path in &ev.paths {
                        let Some(root) = roots_for_handler.iter().find(|r| path.starts_with(r))
                        else {
                            continue;
                        };
                        match ev.kind {
                            notify::EventKind::Create(_) if path.is_dir() => {
                                // Directories created before the watch was added get no event of their own.
                                let mut names = BTreeSet::new();
                                let mut errs = Vec::new();
                                walk(root, path, &mut names, &mut errs);
                                for n in names {
                                    ch.removed.remove(&n);
                                    ch.created.insert(n);
                                }
                            }
                            notify::EventKind::Remove(_) => {
                                if let Ok(rel) = path.strip_prefix(root) {
                                    if let Some(rel) = rel.to_str() {
                                        let n = normalise_name(rel);
                                        ch.created.remove(&n);
                                        ch.removed.insert(n);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cgroup watch error; will rescan");
                    ch.rescan = true;
                }
            }
        };
        let mut errors = Vec::new();
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(source) => {
                errors.push(Error::Watch {
                    path: PathBuf::from("inotify"),
                    source,
                });
                return (None, errors);
            }
        };
        for root in &roots {
            if let Err(source) = watcher.watch(root, notify::RecursiveMode::Recursive) {
                errors.push(Error::Watch {
                    path: root.clone(),
                    source,
                });
            }
        }
        (
            Some(Watcher {
                _inner: watcher,
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

    #[test]
    fn watcher_sees_creation_and_removal() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let layout = Layout::detect(tmp.path()).unwrap();
        let (watcher, errors) = Watcher::start(&layout);
        assert!(errors.is_empty(), "{errors:?}");
        let watcher = watcher.unwrap();
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
