//! Keeping the tracked cgroups in step with discovery: the watcher's changes and rescans add and
//! drop cgroups, and the pod metadata (log directories, the kubelet's `/pods`) is refreshed.

use super::tracked::{slot_of, Tracked};
use super::Collector;
use crate::cgroup;
use crate::discovery;
use crate::discovery::metadata::Metadata;
use crate::discovery::naming::{classify, Kind};
use crate::proc::pod_net::PodNet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

impl Collector {
    pub(super) fn refresh_metadata(&mut self) {
        let pods_root = self.config.pod_log_root.clone();
        let containers_root = self.config.container_log_root();
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let now = (mtime(&pods_root), mtime(&containers_root));
        let kubelet = self
            .kubelet_pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if self.log_dirs_mtime == Some(now) && kubelet.is_none() {
            return;
        }
        self.log_dirs_mtime = Some(now);
        let (mut meta, errors) = Metadata::from_log_dirs(&pods_root, &containers_root);
        for e in errors {
            self.count_error(e.kind(), &e.to_string());
        }
        // Keep the last kubelet answer merged in (a new one replaces it).
        let kubelet = kubelet.or_else(|| self.last_kubelet.take());
        if let Some(list) = &kubelet {
            meta.merge_pod_list(list);
        }
        self.last_kubelet = kubelet;
        self.metadata = meta;
        self.described = false;
    }

    pub(super) fn add(&mut self, name: &str) {
        if self.tracked.contains_key(name) {
            return;
        }
        let paths = self.layout.paths_of(name);
        if paths.is_empty() {
            return;
        }
        let kind = classify(name);
        if kind == Kind::Other && name != "/" && is_conmon(name) {
            return;
        }
        // cAdvisor clamps a creation time older than the boot to the boot time (cgroupfs mtimes
        // of cgroups created by the initramfs or early boot can predate btime).
        let start_time = match (paths.creation_time(), self.boot_time) {
            (Some(t), Some(boot)) => t.max(boot),
            (Some(t), None) => t,
            (None, _) => SystemTime::now(),
        };
        self.stats.containers_added += 1;
        self.described = false;
        self.tracked.insert(
            Arc::from(name),
            Tracked {
                paths,
                kind: Arc::new(kind),
                start_time,
                prev_cpu: None,
                spec: Arc::default(),
                spec_forced: true,
                spec_slot: slot_of(name),
                files_watched: None,
                events_stale: true,
                events: (None, None),
                handles: cgroup::Handles::default(),
                rootfs_dir: None,
                rootfs_probed: false,
                log_dir: None,
                net: PodNet::default(),
                identity: Arc::default(),
                label_str: Arc::from(""),
                processes: None,
                processes_at: None,
            },
        );
    }

    pub(super) fn remove(&mut self, name: &str) {
        if let Some(t) = self.tracked.remove(name) {
            self.stats.containers_removed += 1;
            self.described = false;
            self.du_dirty = true;
            if let Some(d) = &t.rootfs_dir {
                self.du.untrack(d);
            }
        }
        self.forget_net_source(name);
    }

    /// A container cgroup was removed or re-created: its pod's network descriptor, if opened
    /// through its process, is closed (see `proc::pod_net`).
    pub(super) fn forget_net_source(&mut self, name: &str) {
        if let Some((parent, _)) = name.rsplit_once('/') {
            if let Some(pod) = self.tracked.get_mut(parent) {
                pod.net.forget(name);
            }
        }
    }

    pub(super) fn discover(&mut self) {
        let rescan_due = match self.last_rescan {
            None => true,
            Some(t) => t.elapsed() >= self.config.rescan_interval,
        };
        let changes = self.watcher.as_ref().map(|w| w.drain()).unwrap_or_default();
        for n in &changes.created {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                // Created again (or in another hierarchy): kept descriptors may point at the
                // removed directory, and its limits and counts are the new cgroup's.
                t.paths = self.layout.paths_of(n);
                t.handles = cgroup::Handles::default();
                t.forget_files();
                self.forget_net_source(n);
            }
        }
        if rescan_due || changes.rescan {
            let mut errors = Vec::new();
            let names = discovery::scan(&self.layout, &mut errors);
            for e in errors {
                self.count_error(e.kind(), &e.to_string());
            }
            let gone: Vec<Arc<str>> = self
                .tracked
                .keys()
                .filter(|k| !names.contains(&***k))
                .cloned()
                .collect();
            for g in gone {
                self.remove(&g);
            }
            for n in &names {
                self.add(n);
            }
            self.last_rescan = Some(Instant::now());
        } else {
            for n in &changes.removed {
                // A removal in one hierarchy: drop it only when it is gone from all.
                if self.layout.paths_of(n).is_empty() {
                    self.remove(n);
                } else if let Some(t) = self.tracked.get_mut(n.as_str()) {
                    t.paths = self.layout.paths_of(n);
                    t.handles = cgroup::Handles::default();
                    t.forget_files();
                }
            }
            for n in &changes.created {
                self.add(n);
            }
        }
        // What the watcher knows of the files, for cgroups tracked now (a new one was just added).
        for n in &changes.files_watched {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.files_watched.get_or_insert(true);
            }
        }
        for n in &changes.files_unwatched {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.files_watched = Some(false);
            }
        }
        for n in &changes.limits_changed {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.spec_forced = true;
            }
        }
        for n in &changes.events_changed {
            if let Some(t) = self.tracked.get_mut(n.as_str()) {
                t.events_stale = true;
            }
        }
        if changes.rescan {
            // Events were lost: the changes of files too.
            for t in self.tracked.values_mut() {
                t.spec_forced = true;
                t.events_stale = true;
            }
        }
    }
}

fn is_conmon(name: &str) -> bool {
    name.rsplit('/')
        .next()
        .map(|s| s.starts_with("crio-conmon-"))
        .unwrap_or(false)
}
