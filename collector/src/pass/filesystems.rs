//! Filesystems in a pass: the node's root and image filesystems (statvfs and their device from
//! mountinfo), pod volumes, and writable-layer, log and volume sizes from the incremental walk.

use super::blocks::DuDirs;
use super::Collector;
use crate::discovery::naming::Kind;
use crate::proc::fs::{FsInfo, StatvfsError};
use crate::snapshot::{ContainerSample, PodVolume};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How long a pass waits for the statvfs calls of one step (node filesystems, volumes).
pub(super) const STATVFS_TIMEOUT: Duration = Duration::from_secs(1);
/// statvfs worker threads (a hung mount holds one until its call returns).
pub(super) const STATVFS_WORKERS: usize = 4;

/// A pod's volumes are listed and their statvfs read again every this many passes, each pod in
/// its slot (and at once for a new pod). A schedule of its own, though equal to `SPEC_EVERY`.
const VOLUMES_EVERY: u64 = 6;

/// The devices of the node filesystems are looked up in mountinfo again every this many passes
/// (mounts change rarely).
pub(super) const FS_DEVICES_EVERY: u64 = 6;

impl Collector {
    pub(super) fn node_fs(
        &mut self,
        path: &Path,
        stat: Option<Result<FsInfo, StatvfsError>>,
    ) -> Option<FsInfo> {
        let mut f = match stat? {
            Ok(f) => f,
            Err(e) => {
                self.count_error(e.kind(), &e.to_string());
                return None;
            }
        };
        if !self.fs_devices.contains_key(path) {
            // `self` does not resolve in a host /proc mounted into a container (another pid
            // namespace): the host init's view then, matched by st_dev.
            let own = self.config.proc_root.join("self/mountinfo");
            let mountinfo = if own.exists() {
                own
            } else {
                self.config.proc_root.join("1/mountinfo")
            };
            let device = match std::fs::read_to_string(&mountinfo) {
                Ok(text) => crate::proc::mountinfo::mount_device(
                    &text,
                    path,
                    crate::proc::fs::path_dev(path),
                ),
                Err(e) => {
                    self.count_error("proc_io", &format!("{}: {e}", mountinfo.display()));
                    None
                }
            };
            self.fs_devices.insert(path.to_path_buf(), device);
        }
        f.device = self.fs_devices[path].clone();
        Some(f)
    }

    /// Pod volumes: the directories under `<kubelet root>/pods/<uid>/volumes/<plugin>/`, each
    /// with statvfs, read for a new pod and then every `VOLUMES_EVERY` passes (their usage under
    /// the node filesystem comes from the incremental walk in `collect_fs_usage`).
    pub(super) fn collect_volumes(&mut self, samples: &mut [ContainerSample]) {
        let pods_dir = self.config.kubelet_root.join("pods");
        // Forget the volumes of pods that are gone.
        let live: HashSet<&str> = samples
            .iter()
            .filter_map(|s| match &*s.kind {
                Kind::Pod { pod_uid, .. } => Some(pod_uid.as_str()),
                _ => None,
            })
            .collect();
        self.volumes.retain(|k, _| live.contains(k.as_str()));
        let mut listed = Vec::new();
        for s in samples.iter() {
            let Kind::Pod { pod_uid, .. } = &*s.kind else {
                continue;
            };
            if !self.volumes.contains_key(pod_uid) || self.in_slot(&s.name, VOLUMES_EVERY) {
                let volumes = pods_dir.join(pod_uid).join("volumes");
                match crate::proc::fs::pod_volume_dirs(&volumes) {
                    Ok(d) => {
                        let pod = self.metadata.pods.get(pod_uid);
                        let (ids, errors) = crate::discovery::volumes::identify(&volumes, &d, pod);
                        for e in errors {
                            self.count_error(e.kind(), &e.to_string());
                        }
                        listed.push((pod_uid.clone(), d.into_iter().zip(ids).collect()));
                    }
                    Err(e) => {
                        self.count_error("volume", &e.to_string());
                        listed.push((pod_uid.clone(), Vec::new()));
                    }
                }
            }
        }
        let paths: Vec<&Path> = listed
            .iter()
            .flat_map(|(_, dirs)| dirs.iter().map(|(d, _)| d.path.as_path()))
            .collect();
        let mut stats = self
            .statvfs
            .statvfs_all(&paths, STATVFS_TIMEOUT)
            .into_iter();
        let now = SystemTime::now();
        for (uid, dirs) in listed {
            let before = self.volumes.remove(&uid).unwrap_or_default();
            let mut vols = Vec::with_capacity(dirs.len());
            for (dir, id) in dirs {
                match stats.next() {
                    Some(Ok(fs)) => vols.push(PodVolume {
                        dir,
                        id,
                        time: now,
                        fs,
                        usage: None,
                    }),
                    Some(Err(e)) => {
                        let kind = match e {
                            StatvfsError::Failed { .. } => "volume",
                            StatvfsError::TimedOut { .. } => e.kind(),
                        };
                        self.count_error(kind, &e.to_string());
                        // Not answered now (a hung mount): the last figures keep their own time.
                        if let Some(old) = before.iter().find(|v| v.dir.path == dir.path) {
                            vols.push(PodVolume { id, ..old.clone() });
                        }
                    }
                    None => {}
                }
            }
            // The walk follows volumes on the node's filesystem: a change of them changes its trees.
            let walked = |vs: &[PodVolume]| -> Vec<PathBuf> {
                vs.iter()
                    .filter(|v| !v.dir.mounted)
                    .map(|v| v.dir.path.clone())
                    .collect()
            };
            if walked(&before) != walked(&vols) {
                self.du_dirty = true;
            }
            self.volumes.insert(uid, vols);
        }
        for s in samples.iter_mut() {
            if let Kind::Pod { pod_uid, .. } = &*s.kind {
                if let Some(v) = self.volumes.get(pod_uid) {
                    s.volumes = v.clone();
                }
            }
        }
    }

    /// Writable-layer, log and volume sizes through the incremental walk (bounded entries per
    /// pass). `dirs`: each sample's writable layer and log directory (see `read_chunk`).
    pub(super) fn collect_fs_usage(&mut self, samples: &mut [ContainerSample], dirs: &[DuDirs]) {
        if self.du_dirty {
            self.du_dirty = false;
            let mut live: HashSet<&Path> = HashSet::new();
            for t in self.tracked.values() {
                for d in [&t.rootfs_dir, &t.log_dir].into_iter().flatten() {
                    self.du.track(d);
                    live.insert(d);
                }
            }
            for s in samples.iter() {
                for v in s.volumes.iter().filter(|v| !v.dir.mounted) {
                    self.du.track(&v.dir.path);
                    live.insert(&v.dir.path);
                }
            }
            // Forget trees of containers and volumes that are gone.
            self.du.retain(|d| live.contains(d));
        }
        self.du.advance(self.config.fs_walk_budget);
        for (s, (rootfs, log)) in samples.iter_mut().zip(dirs) {
            s.rootfs = rootfs.as_deref().and_then(|d| self.du.usage(d));
            s.logs = log.as_deref().and_then(|d| self.du.usage(d));
            for v in s.volumes.iter_mut().filter(|v| !v.dir.mounted) {
                v.usage = self.du.usage(&v.dir.path);
            }
        }
    }
}
