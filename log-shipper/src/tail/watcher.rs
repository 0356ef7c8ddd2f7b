//! The watcher: inotify (via `notify`) on the log roots wakes the reader as soon as a file is created or written.

use notify::{RecursiveMode, Watcher as _};
use std::path::PathBuf;
use std::sync::mpsc;

/// What the watcher reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Files were created, renamed or removed: rescan.
    Rescan,
    /// Files were written: read.
    Data,
}

/// Keeps the inotify watches alive; dropping it stops them.
pub struct Watcher {
    _inner: Option<notify::RecommendedWatcher>,
}

impl Watcher {
    /// Watches `roots` recursively; events go to `tx`. If inotify is unavailable the periodic rescan still works,
    /// and the returned error says why.
    pub fn start(roots: &[PathBuf], tx: mpsc::Sender<Wake>) -> (Self, Option<notify::Error>) {
        let handler = move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                use notify::EventKind;
                let wake = match ev.kind {
                    EventKind::Modify(notify::event::ModifyKind::Data(_)) => Wake::Data,
                    EventKind::Access(_) => return,
                    _ => Wake::Rescan,
                };
                let _ = tx.send(wake);
            }
        };
        let mut w = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => return (Watcher { _inner: None }, Some(e)),
        };
        let mut err = None;
        for r in roots {
            if let Err(e) = w.watch(r, RecursiveMode::Recursive) {
                err = Some(e);
            }
        }
        (Watcher { _inner: Some(w) }, err)
    }
}
