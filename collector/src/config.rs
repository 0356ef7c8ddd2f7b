//! The collector's configuration: YAML file (`--config`) plus flags (flags win), validated at start-up.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Configuration errors; each names the key and, for the file, where it is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or parsing the file (the message names the file and the key).
    #[error(transparent)]
    Load(#[from] vigil_common::config::LoadError),
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    /// The listener's certificate and authentication options (the message names the flags).
    #[error("{0}")]
    Listener(String),
}

/// cAdvisor's metric group names accepted by `disable_metrics`.
pub const METRIC_GROUPS: &[&str] = &[
    "accelerator",
    "advtcp",
    "app",
    "cpu",
    "cpuLoad",
    "cpu_topology",
    "cpuset",
    "disk",
    "diskIO",
    "hugetlb",
    "memory",
    "memory_numa",
    "network",
    "oom_event",
    "percpu",
    "perf_event",
    "pressure",
    "process",
    "referenced_memory",
    "resctrl",
    "sched",
    "tcp",
    "udp",
    // vigil's own: the kubelet's kubelet_volume_stats_* (PVC-backed pod volumes).
    "volume_stats",
];

/// The collector's settings. Every field can be set in the YAML file; most also as a flag.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to serve /metrics, /stats/summary, /healthz and /api/v1/containers on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The listener's certificate (`tls_cert_file`, `tls_private_key_file`: HTTPS only, and
    /// client certificates can authenticate; without, plain HTTP) and who may call the
    /// endpoints (`auth:`), see `vigil_server::ListenerArgs`.
    #[serde(flatten)]
    pub listener: vigil_server::ListenerArgs,
    /// Where the cgroup hierarchies are mounted (v2 root, or the parent of v1 controller mounts).
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
    /// Where /proc is mounted (the host's, in a DaemonSet).
    #[serde(default = "default_proc_root")]
    pub proc_root: PathBuf,
    /// The kubelet's pod log directory (`<namespace>_<pod>_<uid>/<container>/`).
    #[serde(default = "default_pod_log_root")]
    pub pod_log_root: PathBuf,
    /// The kubelet's container log symlinks (`<pod>_<namespace>_<container>-<id>.log`);
    /// default: `containers` beside `pod_log_root`.
    #[serde(default)]
    pub container_log_root: Option<PathBuf>,
    /// Base URL of the kubelet's read API (for `/pods`: labels, images, requests, limits).
    #[serde(default)]
    pub kubelet_url: Option<String>,
    /// Node name in the Summary API; default: the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Time between collection passes, e.g. `10s` (minimum 1s).
    #[serde(default = "default_housekeeping", with = "vigil_common::duration::serde_std")]
    pub housekeeping_interval: Duration,
    /// Time between full rescans of the cgroup hierarchies (inotify covers the time between).
    #[serde(default = "default_rescan", with = "vigil_common::duration::serde_std")]
    pub rescan_interval: Duration,
    /// Time between counts of each cgroup's processes, open descriptors and sockets
    /// (`container_processes`, `container_file_descriptors`, `container_sockets`): a readlink
    /// per descriptor, so not in every pass at a short housekeeping interval. At or below the
    /// housekeeping interval: every pass. Longer on a node whose counts would exceed ~5,000
    /// descriptors per pass (see `pass::tracked::PROCESS_STATS_BUDGET`).
    #[serde(default = "default_process_stats", with = "vigil_common::duration::serde_std")]
    pub process_stats_interval: Duration,
    /// Metric groups not to collect or expose, with cAdvisor's names (cpu, memory, network, disk, diskIO, process, pressure, oom_event, ...).
    #[serde(default)]
    pub disable_metrics: Vec<String>,
    /// Pod labels copied to `container_label_<name>` labels (opt-in: each one multiplies series).
    #[serde(default)]
    pub pod_labels: Vec<String>,
    /// Path on the node's root filesystem (for the node `fs` figures).
    #[serde(default = "default_root_fs")]
    pub root_fs_path: PathBuf,
    /// Path on the container runtime's image filesystem; default: the first of
    /// /var/lib/containerd, /var/lib/containers, /var/lib/docker that exists, else `root_fs_path`.
    #[serde(default)]
    pub image_fs_path: Option<PathBuf>,
    /// Directory entries the writable-layer and log size walk may visit per pass.
    #[serde(default = "default_fs_walk_budget")]
    pub fs_walk_budget: usize,
    /// Threads reading cgroup files in a pass (the cgroups are split between them; results do
    /// not depend on the count). Default: 2, or 1 where only one CPU is available.
    #[serde(default = "default_collection_threads")]
    pub collection_threads: usize,
    /// Files per cgroup kept open between passes and re-read with `pread` (0: open every file
    /// every pass; the cgroup's directories stay open either way). The default, 12, keeps every
    /// file a cgroup reads each pass (9 on v2 without swap, 10 with swap, up to 12 on v1). Each kept cgroupfs file pins about 4.6 KiB of kernel
    /// memory charged to the collector's cgroup (its seq_file page), bounded by `max_open_files`.
    #[serde(default = "default_open_files_per_cgroup")]
    pub open_files_per_cgroup: usize,
    /// Cgroup files kept open across all cgroups (beyond it, files are opened each pass): at
    /// ~4.6 KiB each on cgroupfs, the default 16,384 bounds that kernel memory at ~72 MiB
    /// (1,000 containers in 500 pods need ~15,000). Also bounded by RLIMIT_NOFILE.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// The kubelet's root directory (pod volumes under `pods/<uid>/volumes/<plugin>/<name>`).
    #[serde(default = "default_kubelet_root")]
    pub kubelet_root: PathBuf,
    /// node-problem-detector monitor config files to run.
    #[serde(default)]
    pub problem_detector_config: Vec<PathBuf>,
    /// Report the problem detector's conditions (node status) and events to the Kubernetes API
    /// server with the in-cluster service account; start-up fails without credentials.
    #[serde(default)]
    pub problem_detector_kubernetes: bool,
    /// Ask the Kubernetes API server (in-cluster service account, `get` on
    /// persistentvolumeclaims) which PersistentVolume each pod's claims are bound to, so a PV's
    /// volume directory gets its pod spec name and `pvcRef` when its name and elimination do
    /// not tell; needs `kubelet_url` (the pod specs); start-up fails without credentials.
    #[serde(default)]
    pub kubernetes_pvc_lookup: bool,
}

fn default_listen() -> SocketAddr {
    "0.0.0.0:4194".parse().expect("valid default")
}
fn default_cgroup_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup")
}
fn default_proc_root() -> PathBuf {
    PathBuf::from("/proc")
}
fn default_pod_log_root() -> PathBuf {
    PathBuf::from("/var/log/pods")
}
fn default_housekeeping() -> Duration {
    Duration::from_secs(10)
}
fn default_rescan() -> Duration {
    Duration::from_secs(60)
}
fn default_process_stats() -> Duration {
    Duration::from_secs(30)
}
fn default_root_fs() -> PathBuf {
    PathBuf::from("/")
}
fn default_fs_walk_budget() -> usize {
    20_000
}
fn default_collection_threads() -> usize {
    // Two where the collector may use two CPUs: with kept files a pass is mostly `pread`, which
    // scales with threads (BENCHMARKS.md); more threads than that buy little for the CPU.
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}
fn default_open_files_per_cgroup() -> usize {
    // Every file a cgroup reads each pass (v2: cpu.stat, memory.current/peak/stat,
    // memory.swap.current on a node with swap, io.stat, pids.current, three PSI files): a
    // `pread` instead of `openat`+`read`+`close` halves the pass (BENCHMARKS.md), at ~4.6 KiB of
    // kernel memory per file.
    12
}
fn default_max_open_files() -> usize {
    16_384
}
fn default_kubelet_root() -> PathBuf {
    PathBuf::from("/var/lib/kubelet")
}

impl Default for Config {
    fn default() -> Self {
        vigil_common::config::from_yaml("{}", Path::new("(defaults)")).expect("defaults deserialize")
    }
}

/// The flags' duration parser: Prometheus's syntax (`10s`, `1m30s`, `500ms`, `1d`), range-checked.
pub use vigil_common::duration::parse_std as parse_duration;

impl Config {
    /// Reads a YAML file (size-capped, depth-bounded); errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Config, Error> {
        Ok(vigil_common::config::load_yaml(path)?)
    }

    /// Parses YAML text (`path` is only for messages).
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, Error> {
        Ok(vigil_common::config::from_yaml(text, path)?)
    }

    /// Checks values that serde cannot; pure.
    pub fn validate(&self) -> Result<(), Error> {
        if self.housekeeping_interval < Duration::from_secs(1) {
            return Err(Error::Invalid {
                key: "housekeeping_interval",
                message: format!(
                    "{:?} is below the minimum of 1s",
                    self.housekeeping_interval
                ),
            });
        }
        if self.process_stats_interval.is_zero() {
            return Err(Error::Invalid {
                key: "process_stats_interval",
                message: "must be longer than 0s".into(),
            });
        }
        if self.rescan_interval < self.housekeeping_interval {
            return Err(Error::Invalid {
                key: "rescan_interval",
                message: "must not be shorter than housekeeping_interval".into(),
            });
        }
        for g in &self.disable_metrics {
            if !METRIC_GROUPS.contains(&g.as_str()) {
                return Err(Error::Invalid {
                    key: "disable_metrics",
                    message: format!(
                        "unknown metric group {g:?}; known: {}",
                        METRIC_GROUPS.join(", ")
                    ),
                });
            }
        }
        let mut seen: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
        for l in &self.pod_labels {
            if l.is_empty() {
                return Err(Error::Invalid {
                    key: "pod_labels",
                    message: "empty label name".into(),
                });
            }
            let name = pod_label_name(l);
            if let Some(first) = seen.insert(name.clone(), l) {
                return Err(Error::Invalid {
                    key: "pod_labels",
                    message: format!(
                        "{first:?} and {l:?} both map to the Prometheus label {name}; keep one"
                    ),
                });
            }
        }
        if let Some(url) = &self.kubelet_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Invalid {
                    key: "kubelet_url",
                    message: format!("expected an http:// or https:// URL, got {url:?}"),
                });
            }
        }
        if self.problem_detector_kubernetes && self.problem_detector_config.is_empty() {
            return Err(Error::Invalid {
                key: "problem_detector_kubernetes",
                message: "needs at least one problem_detector_config (--problem-detector-config) to report"
                    .into(),
            });
        }
        if self.kubernetes_pvc_lookup && self.kubelet_url.is_none() {
            return Err(Error::Invalid {
                key: "kubernetes_pvc_lookup",
                message: "needs kubelet_url (--kubelet-url): the claims come from the pod specs of the kubelet's /pods"
                    .into(),
            });
        }
        if !(1..=16).contains(&self.collection_threads) {
            return Err(Error::Invalid {
                key: "collection_threads",
                message: format!("{} is outside 1..=16", self.collection_threads),
            });
        }
        if self.open_files_per_cgroup > 32 {
            return Err(Error::Invalid {
                key: "open_files_per_cgroup",
                message: format!(
                    "{} is above 32 (a cgroup has fewer files worth keeping open)",
                    self.open_files_per_cgroup
                ),
            });
        }
        if self.max_open_files > 1 << 20 {
            return Err(Error::Invalid {
                key: "max_open_files",
                message: format!(
                    "{} is above 1048576 (the kernel's nr_open ceiling)",
                    self.max_open_files
                ),
            });
        }
        self.listener.validate("collector").map_err(Error::Listener)?;
        if self.fs_walk_budget == 0 {
            return Err(Error::Invalid {
                key: "fs_walk_budget",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// Whether a metric group is enabled.
    pub fn enabled(&self, group: &str) -> bool {
        !self.disable_metrics.iter().any(|g| g == group)
    }

    /// The container log symlink directory.
    pub fn container_log_root(&self) -> PathBuf {
        self.container_log_root.clone().unwrap_or_else(|| {
            self.pod_log_root
                .parent()
                .map(|p| p.join("containers"))
                .unwrap_or_else(|| PathBuf::from("/var/log/containers"))
        })
    }

    /// The node name: configured, else the host name.
    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The image filesystem path.
    pub fn image_fs_path(&self) -> PathBuf {
        if let Some(p) = &self.image_fs_path {
            return p.clone();
        }
        for p in [
            "/var/lib/containerd",
            "/var/lib/containers",
            "/var/lib/docker",
        ] {
            if Path::new(p).is_dir() {
                return PathBuf::from(p);
            }
        }
        self.root_fs_path.clone()
    }
}

/// The Prometheus label name for an opt-in pod label: `container_label_` plus the key with every
/// character outside `[A-Za-z0-9]` replaced by `_` (as cAdvisor sanitizes runtime labels).
pub fn pod_label_name(key: &str) -> String {
    let mut out = String::with_capacity(16 + key.len());
    out.push_str("container_label_");
    out.extend(
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.port(), 4194);
        assert_eq!(c.housekeeping_interval, Duration::from_secs(10));
        assert_eq!(c.container_log_root(), PathBuf::from("/var/log/containers"));
    }

    #[test]
    fn yaml_file_fields() {
        let c = Config::from_yaml("listen: 127.0.0.1:9999\nhousekeeping_interval: 2s\ndisable_metrics: [network, diskIO]\n", Path::new("c.yaml")).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.housekeeping_interval, Duration::from_secs(2));
        assert!(!c.enabled("network") && c.enabled("cpu"));
    }

    #[test]
    fn process_stats_interval_defaults_to_30s_and_zero_is_refused() {
        assert_eq!(
            Config::default().process_stats_interval,
            Duration::from_secs(30)
        );
        let c = Config::from_yaml("process_stats_interval: 1m\n", Path::new("c.yaml")).unwrap();
        assert_eq!(c.process_stats_interval, Duration::from_secs(60));
        let c = Config::from_yaml("process_stats_interval: 0s\n", Path::new("c.yaml")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("process_stats_interval"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_yaml(
            "listen: 127.0.0.1:1\nhousekeeping_intervall: 2s\n",
            Path::new("/etc/vigil.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/etc/vigil.yaml") && err.contains("housekeeping_intervall"),
            "{err}"
        );
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Config::from_yaml("housekeeping_interval: soon\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("housekeeping_interval"), "{err}");
    }

    #[test]
    fn huge_duration_is_an_error_naming_the_key_not_a_panic() {
        // Regression (#19 item 1): `Duration::from_secs_f64` panicked on overflow.
        assert!(vigil_common::duration::parse_std("99999999999999999999999s")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        for yaml in [
            "housekeeping_interval: 99999999999999999999999s\n",
            "housekeeping_interval: 1e300\n",
        ] {
            let err = Config::from_yaml(yaml, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("housekeeping_interval")
                    && (err.contains("out of range") || err.contains("has no unit")),
                "{err}"
            );
        }
    }

    #[test]
    fn validate_rejects_short_interval_and_unknown_group() {
        let c = Config {
            housekeeping_interval: Duration::from_millis(500),
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("housekeeping_interval"));
        let c = Config {
            disable_metrics: vec!["cpux".into()],
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("cpux"));
    }

    #[test]
    fn validate_rejects_out_of_range_cost_knobs() {
        for (c, key) in [
            (
                Config {
                    collection_threads: 0,
                    ..Default::default()
                },
                "collection_threads",
            ),
            (
                Config {
                    collection_threads: 17,
                    ..Default::default()
                },
                "collection_threads",
            ),
            (
                Config {
                    open_files_per_cgroup: 33,
                    ..Default::default()
                },
                "open_files_per_cgroup",
            ),
            (
                Config {
                    max_open_files: (1 << 20) + 1,
                    ..Default::default()
                },
                "max_open_files",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = Config::from_yaml("max_open_files: lots\n", Path::new("c.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_open_files"), "{err}");
        let defaults = Config::default();
        assert!(defaults.validate().is_ok());
        assert_eq!(
            (defaults.open_files_per_cgroup, defaults.max_open_files),
            (12, 16_384)
        );
        assert!((1..=2).contains(&defaults.collection_threads));
    }

    #[test]
    fn validate_rejects_pod_labels_that_sanitize_to_the_same_name() {
        let mut c = Config {
            pod_labels: vec![
                "app".into(),
                "app.kubernetes.io/name".into(),
                "app_kubernetes_io_name".into(),
            ],
            ..Default::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("pod_labels")
                && err.contains("\"app.kubernetes.io/name\"")
                && err.contains("\"app_kubernetes_io_name\"")
                && err.contains("container_label_app_kubernetes_io_name"),
            "{err}"
        );
        c.pod_labels = vec!["a-b".into(), "a.c".into()];
        assert!(c.validate().is_ok());
    }

    #[test]
    fn problem_detector_kubernetes_needs_a_monitor_config() {
        let c =
            Config::from_yaml("problem_detector_kubernetes: true\n", Path::new("c.yaml")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("problem_detector_kubernetes"), "{err}");
        assert!(!Config::default().problem_detector_kubernetes);
    }

    #[test]
    fn kubernetes_pvc_lookup_is_off_by_default_and_needs_the_kubelet() {
        assert!(!Config::default().kubernetes_pvc_lookup);
        let c = Config::from_yaml("kubernetes_pvc_lookup: true\n", Path::new("c.yaml")).unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("kubernetes_pvc_lookup") && err.contains("kubelet_url"),
            "{err}"
        );
        let c = Config::from_yaml(
            "kubernetes_pvc_lookup: true\nkubelet_url: http://127.0.0.1:10255\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn tls_files_go_together_and_turn_on_https() {
        assert!(Config::default().listener.tls().is_none());
        let c = Config::from_yaml(
            "tls_cert_file: /etc/vigil/tls.crt\ntls_private_key_file: /etc/vigil/tls.key\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        c.validate().unwrap();
        let t = c.listener.tls().unwrap();
        assert_eq!(
            (t.cert_file.unwrap(), t.key_file.unwrap()),
            (
                PathBuf::from("/etc/vigil/tls.crt"),
                PathBuf::from("/etc/vigil/tls.key")
            )
        );
        let c =
            Config::from_yaml("tls_cert_file: /etc/vigil/tls.crt\n", Path::new("c.yaml")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--tls-private-key-file") && e.contains("tls_private_key_file is missing"),
            "{e}"
        );
    }

    #[test]
    fn durations_are_prometheus_durations() {
        let c = Config::from_yaml(
            "housekeeping_interval: 500ms\nrescan_interval: 1m30s\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        assert_eq!(c.housekeeping_interval, Duration::from_millis(500));
        assert_eq!(c.rescan_interval, Duration::from_secs(90));
        for bad in ["housekeeping_interval: 3\n", "housekeeping_interval: -1s\n"] {
            let err = Config::from_yaml(bad, Path::new("c.yaml")).unwrap_err().to_string();
            assert!(err.contains("key `housekeeping_interval`"), "{err}");
        }
    }
}
