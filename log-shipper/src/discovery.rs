//! Discovery: which files under the log roots to tail, and the pod/container metadata in their paths.

use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Errors of discovery configuration.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("discovery.{key}: invalid glob {glob:?}: {source}")]
    Glob {
        key: &'static str,
        glob: String,
        source: regex::Error,
    },
}

/// Where to look for container logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Directories laid out like `/var/log/pods` (`<ns>_<pod>_<uid>/<container>/<n>.log`).
    #[serde(default = "default_roots")]
    pub roots: Vec<PathBuf>,
    /// Globs relative to a root of the files to tail (`*` does not cross `/`, `**` does).
    #[serde(default = "default_include")]
    pub include: Vec<String>,
    /// Globs relative to a root of files never tailed (`.tmp` files, the kubelet's half-written compressed copies, are
    /// always skipped; `<n>.log.<stamp>.gz` files are read through gzip).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Directory of `<pod>_<ns>_<container>-<id>.log` symlinks used when no root exists.
    #[serde(default = "default_containers_dir")]
    pub containers_dir: PathBuf,
    /// Interval of the full rescan that backs up inotify, e.g. `500ms`.
    #[serde(default = "default_rescan", with = "vigil_common::duration::serde_std")]
    pub rescan_interval: std::time::Duration,
    /// Directories outside the roots that a log file symlink may point into (docker's json-file logs, which the
    /// kubelet links from /var/log/pods). A link resolving anywhere else is not followed, so a host file never
    /// ends up in the output.
    #[serde(default = "default_link_targets")]
    pub link_targets: Vec<PathBuf>,
}

fn default_roots() -> Vec<PathBuf> {
    vec![PathBuf::from("/var/log/pods")]
}
fn default_include() -> Vec<String> {
    vec!["*/*/*.log".into(), "*/*/*.log.*".into()]
}
fn default_containers_dir() -> PathBuf {
    PathBuf::from("/var/log/containers")
}
fn default_rescan() -> std::time::Duration {
    std::time::Duration::from_millis(500)
}
fn default_link_targets() -> Vec<PathBuf> {
    vec![PathBuf::from("/var/lib/docker/containers")]
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            roots: default_roots(),
            include: default_include(),
            exclude: Vec::new(),
            containers_dir: default_containers_dir(),
            rescan_interval: default_rescan(),
            link_targets: default_link_targets(),
        }
    }
}

/// Kubernetes metadata of one log file, from its path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileMeta {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    pub container: String,
    /// The `<n>` of `<n>.log` (the container's restart count), when the path has it.
    pub restart_count: Option<u32>,
    /// The container's log directory.
    pub dir: String,
    /// The file's original name (`<n>.log`; a rotated `0.log.20261122-101500` has base `0.log`).
    pub base: String,
}

/// Converts a glob to an anchored regex.
pub fn glob_to_regex(glob: &str) -> Result<Regex, regex::Error> {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                re.push_str(".*");
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re)
}

/// Finds log files.
#[derive(Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    include: Vec<Regex>,
    exclude: Vec<Regex>,
    /// Symlinks not followed (out of the roots), each warned about once.
    refused_links: std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    /// Tests only: (link, new target) pairs applied right after the next listing, as a swap racing the reader would.
    #[cfg(test)]
    pub(crate) swap_after_scan: std::sync::Mutex<Vec<(PathBuf, PathBuf)>>,
}

/// One discovered file.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    pub meta: FileMeta,
}

impl Discovery {
    pub fn new(config: DiscoveryConfig) -> Result<Self, DiscoveryError> {
        let compile = |key: &'static str, globs: &[String]| {
            globs
                .iter()
                .map(|g| {
                    glob_to_regex(g).map_err(|source| DiscoveryError::Glob {
                        key,
                        glob: g.clone(),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let include = compile("include", &config.include)?;
        let exclude = compile("exclude", &config.exclude)?;
        Ok(Discovery {
            config,
            include,
            exclude,
            refused_links: Default::default(),
            #[cfg(test)]
            swap_after_scan: Default::default(),
        })
    }

    /// The directories to watch with inotify.
    pub fn watch_roots(&self) -> Vec<PathBuf> {
        let roots: Vec<PathBuf> = self
            .config
            .roots
            .iter()
            .filter(|r| r.is_dir())
            .cloned()
            .collect();
        if roots.is_empty() && self.config.containers_dir.is_dir() {
            return vec![self.config.containers_dir.clone()];
        }
        roots
    }

    /// Lists every file to tail now.
    pub fn scan(&self) -> Vec<Found> {
        let mut out = Vec::new();
        let mut any_root = false;
        for root in &self.config.roots {
            if !root.is_dir() {
                continue;
            }
            any_root = true;
            self.walk(root, root, 0, &mut out);
        }
        if !any_root {
            if let Ok(rd) = std::fs::read_dir(&self.config.containers_dir) {
                for e in rd.flatten() {
                    let path = e.path();
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".log") || !self.link_allowed(&path) {
                        continue;
                    }
                    if let Some(meta) =
                        meta_from_containers_name(&self.config.containers_dir, &name)
                    {
                        out.push(Found { path, meta });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        #[cfg(test)]
        for (link, target) in self
            .swap_after_scan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).expect("test swap");
        }
        out
    }

    fn walk(&self, root: &Path, dir: &Path, depth: usize, out: &mut Vec<Found>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < 6 {
                    self.walk(root, &path, depth + 1, out);
                }
                continue;
            }
            if ft.is_symlink() && !self.link_allowed(&path) {
                continue;
            }
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy();
            if rel.ends_with(".tmp") {
                continue;
            }
            if !self.include.iter().any(|r| r.is_match(&rel))
                || self.exclude.iter().any(|r| r.is_match(&rel))
            {
                continue;
            }
            out.push(Found {
                meta: meta_from_pods_path(root, &rel),
                path,
            });
        }
    }
}

impl Discovery {
    /// Whether `path` may be read: not a symlink, or one resolving inside a log root or `link_targets`. A refused
    /// link is logged once.
    fn link_allowed(&self, path: &Path) -> bool {
        if !path.is_symlink() {
            return true;
        }
        let target = std::fs::canonicalize(path);
        if target.as_deref().is_ok_and(|t| self.allows(t)) {
            return true;
        }
        let mut refused = self.refused_links.lock().unwrap_or_else(|e| e.into_inner());
        if refused.len() < 10_000 && refused.insert(path.to_path_buf()) {
            match &target {
                Ok(t) => tracing::warn!(path = %path.display(), target = %t.display(), "symlink points out of the log roots and discovery.link_targets; not followed"),
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "dangling symlink skipped"),
            }
        }
        false
    }

    /// Whether a resolved path (no symlinks in it) lies inside a log root or a directory of `link_targets`.
    pub fn allows(&self, target: &Path) -> bool {
        self.config
            .roots
            .iter()
            .chain(&self.config.link_targets)
            .any(|r| target.starts_with(std::fs::canonicalize(r).unwrap_or_else(|_| r.clone())))
    }

    /// The metadata of a path under one of the roots (e.g. a checkpointed file that no longer exists).
    pub fn meta_of(&self, path: &Path) -> Option<FileMeta> {
        if let Some(root) = self.config.roots.iter().find(|r| path.starts_with(r)) {
            let rel = path.strip_prefix(root).ok()?.to_string_lossy().into_owned();
            return Some(meta_from_pods_path(root, &rel));
        }
        let dir = path.parent()?;
        meta_from_containers_name(dir, &path.file_name()?.to_string_lossy())
    }
}

/// Metadata from `<ns>_<pod>_<uid>/<container>/<n>.log[.<timestamp>[.gz]]` (or the older `<uid>/<container>/...`).
pub fn meta_from_pods_path(root: &Path, rel: &str) -> FileMeta {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut meta = FileMeta::default();
    let name = parts.last().copied().unwrap_or_default();
    let base = match name.find(".log") {
        Some(i) => &name[..i + 4],
        None => name,
    };
    meta.base = base.to_string();
    meta.restart_count = base.strip_suffix(".log").and_then(|n| n.parse().ok());
    if parts.len() >= 3 {
        let pod_dir = parts[parts.len() - 3];
        let mut it = pod_dir.splitn(3, '_');
        match (it.next(), it.next(), it.next()) {
            (Some(ns), Some(pod), Some(uid)) => {
                meta.namespace = ns.into();
                meta.pod = pod.into();
                meta.pod_uid = uid.into();
            }
            (Some(uid), None, None) => meta.pod_uid = uid.into(),
            _ => {}
        }
        meta.container = parts[parts.len() - 2].into();
    }
    let dir_rel = &parts[..parts.len().saturating_sub(1)];
    meta.dir = root.join(dir_rel.join("/")).to_string_lossy().into_owned();
    meta
}

/// Metadata from a `/var/log/containers/<pod>_<ns>_<container>-<64 hex id>.log` name.
pub fn meta_from_containers_name(dir: &Path, name: &str) -> Option<FileMeta> {
    let stem = name.strip_suffix(".log")?;
    let mut it = stem.splitn(3, '_');
    let (pod, ns, rest) = (it.next()?, it.next()?, it.next()?);
    let dash = rest.rfind('-')?;
    let (container, id) = (&rest[..dash], &rest[dash + 1..]);
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(FileMeta {
        namespace: ns.into(),
        pod: pod.into(),
        pod_uid: String::new(),
        container: container.into(),
        restart_count: None,
        dir: dir.to_string_lossy().into_owned(),
        base: name.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_path_metadata() {
        let m = meta_from_pods_path(
            Path::new("/var/log/pods"),
            "kube-system_coredns-5d78c9869d-abcde_0f1e2d3c-aaaa-bbbb/coredns/3.log.20261122-101500",
        );
        assert_eq!(m.namespace, "kube-system");
        assert_eq!(m.pod, "coredns-5d78c9869d-abcde");
        assert_eq!(m.pod_uid, "0f1e2d3c-aaaa-bbbb");
        assert_eq!(m.container, "coredns");
        assert_eq!(m.restart_count, Some(3));
        assert_eq!(m.base, "3.log");
        assert_eq!(
            m.dir,
            "/var/log/pods/kube-system_coredns-5d78c9869d-abcde_0f1e2d3c-aaaa-bbbb/coredns"
        );
        let old = meta_from_pods_path(Path::new("/var/log/pods"), "0f1e2d3c/app/0.log");
        assert_eq!(
            (
                old.pod_uid.as_str(),
                old.container.as_str(),
                old.namespace.as_str()
            ),
            ("0f1e2d3c", "app", "")
        );
    }

    #[test]
    fn containers_symlink_metadata() {
        let id = "a".repeat(64);
        let m = meta_from_containers_name(
            Path::new("/var/log/containers"),
            &format!("web-0_shop_nginx-proxy-{id}.log"),
        )
        .unwrap();
        assert_eq!(
            (m.pod.as_str(), m.namespace.as_str(), m.container.as_str()),
            ("web-0", "shop", "nginx-proxy")
        );
        assert!(meta_from_containers_name(Path::new("/x"), "random.log").is_none());
    }

    #[test]
    fn scan_includes_rotated_and_compressed_and_skips_tmp_and_excluded() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("ns_pod_uid/app");
        std::fs::create_dir_all(&c).unwrap();
        for f in [
            "0.log",
            "0.log.20261122-101500",
            "0.log.20261122-101000.gz",
            "0.log.20261122-100000.tmp",
            "notes.txt",
        ] {
            std::fs::write(c.join(f), b"").unwrap();
        }
        let skip = dir.path().join("ns_skipped_uid/app");
        std::fs::create_dir_all(&skip).unwrap();
        std::fs::write(skip.join("0.log"), b"").unwrap();
        let cfg = DiscoveryConfig {
            roots: vec![dir.path().to_path_buf()],
            exclude: vec!["*_skipped_*/**".into()],
            ..Default::default()
        };
        let found = Discovery::new(cfg).unwrap().scan();
        let names: Vec<String> = found
            .iter()
            .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec!["0.log", "0.log.20261122-101000.gz", "0.log.20261122-101500"]
        );
        assert_eq!(found[1].meta.base, "0.log");
        assert_eq!(found[2].meta.base, "0.log");
        let d = Discovery::new(DiscoveryConfig {
            roots: vec![dir.path().to_path_buf()],
            ..Default::default()
        })
        .unwrap();
        let m = d.meta_of(&c.join("0.log.20261122-090000")).unwrap();
        assert_eq!((m.pod.as_str(), m.container.as_str()), ("pod", "app"));
    }

    #[test]
    fn falls_back_to_containers_dir() {
        let dir = tempfile::tempdir().unwrap();
        let id = "b".repeat(64);
        std::fs::write(dir.path().join(format!("p_ns_c-{id}.log")), b"").unwrap();
        let cfg = DiscoveryConfig {
            roots: vec![dir.path().join("missing")],
            containers_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let found = Discovery::new(cfg).unwrap().scan();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].meta.container, "c");
    }

    /// Regression (issue 19 item 12): a `0.log` symlink to a host file outside `--root` was followed and the host
    /// file shipped.
    #[test]
    fn a_0_log_symlink_out_of_the_roots_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("pods");
        let host = dir.path().join("host-secret");
        let docker = dir.path().join("docker-containers");
        std::fs::create_dir_all(&docker).unwrap();
        std::fs::write(&host, b"root:x:0:0\n").unwrap();
        std::fs::write(docker.join("abc-json.log"), b"").unwrap();
        let out = root.join("ns_evil_uid/app");
        let ok = root.join("ns_docker_uid/app");
        let inside = root.join("ns_moved_uid/app");
        for d in [&out, &ok, &inside] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(&host, out.join("0.log")).unwrap();
        std::os::unix::fs::symlink(docker.join("abc-json.log"), ok.join("0.log")).unwrap();
        std::fs::write(inside.join("1.log"), b"").unwrap();
        std::os::unix::fs::symlink(inside.join("1.log"), inside.join("0.log")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("missing"), inside.join("2.log")).unwrap();
        let d = Discovery::new(DiscoveryConfig {
            roots: vec![root.clone()],
            link_targets: vec![docker.clone()],
            ..Default::default()
        })
        .unwrap();
        let found: Vec<PathBuf> = d.scan().into_iter().map(|f| f.path).collect();
        assert_eq!(
            found,
            vec![ok.join("0.log"), inside.join("0.log"), inside.join("1.log")],
            "links out of the roots are not followed"
        );
        // Without the docker directory among the link targets, its link is refused too.
        let d = Discovery::new(DiscoveryConfig {
            roots: vec![root],
            link_targets: Vec::new(),
            ..Default::default()
        })
        .unwrap();
        assert!(!d.scan().iter().any(|f| f.path == ok.join("0.log")));
    }
}
