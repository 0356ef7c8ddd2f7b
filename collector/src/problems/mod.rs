//! Node problem detector: runs node-problem-detector's monitor configs unchanged (system log
//! monitors and custom plugins), keeps node conditions and events.

pub mod config;
pub mod custom;
pub mod http;
pub mod kubernetes;
pub mod logmonitor;
pub mod matcher;
pub mod store;
pub mod watch;

/// node-problem-detector's kernel monitor as it ships it (kubernetes/node-problem-detector
/// `config/kernel-monitor.json`, unchanged: kmsg plugin on /dev/kmsg, conditions KernelDeadlock,
/// XfsShutdown and CperHardwareErrorFatal): `vigil up`'s default and the tests' reference.
pub const KERNEL_MONITOR: &str = include_str!("../../testdata/problems/config/kernel-monitor.json");

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch as tokio_watch;

use config::MonitorConfig;
use store::Store;

/// Errors of the problem detector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A monitor config could not be read, parsed or validated (names the file and the key).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The same config file was given twice.
    #[error("{0}: monitor config given more than once")]
    Duplicate(PathBuf),
}

/// One loaded monitor.
pub(crate) struct Monitor {
    pub(crate) file: PathBuf,
    pub(crate) config: MonitorConfig,
}

/// The node problem detector: every monitor config, their shared conditions, events and metrics.
pub struct ProblemDetector {
    monitors: Vec<Monitor>,
    store: Arc<Store>,
}

impl ProblemDetector {
    /// Loads and validates every monitor config (errors name the file and the key).
    pub fn load(config_paths: &[PathBuf]) -> Result<Self, Error> {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        Self::load_in(config_paths, &cwd)
    }

    /// As `load`, resolving relative plugin paths against `cwd` (node-problem-detector resolves
    /// them against its working directory).
    pub fn load_in(config_paths: &[PathBuf], cwd: &Path) -> Result<Self, Error> {
        let mut monitors = Vec::new();
        for (i, file) in config_paths.iter().enumerate() {
            if config_paths[..i].contains(file) {
                return Err(Error::Duplicate(file.clone()));
            }
            let config = config::parse_file(file)?;
            match &config {
                MonitorConfig::SystemLog(c) => c.validate(file)?,
                MonitorConfig::Custom(c) => {
                    let exists = |p: &str| cwd.join(p).exists();
                    c.validate(file, &exists)?
                }
            }
            monitors.push(Monitor {
                file: file.clone(),
                config,
            });
        }
        let detector = ProblemDetector {
            monitors,
            store: Arc::new(Store::default()),
        };
        detector.initialize();
        Ok(detector)
    }

    /// Sets the initial conditions and metrics of every monitor (as node-problem-detector does
    /// before its monitors start), so `/conditions` and `/metrics` are complete from the start.
    fn initialize(&self) {
        for m in &self.monitors {
            match &m.config {
                MonitorConfig::SystemLog(c) => logmonitor::initialize(&self.store, c),
                MonitorConfig::Custom(c) => custom::initialize(&self.store, c),
            }
        }
    }

    /// The loaded config files.
    pub fn config_files(&self) -> Vec<&Path> {
        self.monitors.iter().map(|m| m.file.as_path()).collect()
    }

    /// The shared state (conditions, events, metrics).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs every monitor until shutdown (true = stop).
    pub async fn run(self: Arc<Self>, shutdown: tokio_watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for (slot, m) in self.monitors.iter().enumerate() {
            let store = self.store.clone();
            let shutdown = shutdown.clone();
            let file = m.file.clone();
            match m.config.clone() {
                MonitorConfig::SystemLog(c) => {
                    tasks.spawn(
                        async move { logmonitor::run(file, c, slot, store, shutdown).await },
                    );
                }
                MonitorConfig::Custom(c) => {
                    tasks.spawn(async move { custom::run(file, c, slot, store, shutdown).await });
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// `/conditions` (JSON) and `/problems/events` (JSON, events since `?since=<seq>` so the aggregator can pull them).
    pub fn router(self: Arc<Self>) -> axum::Router {
        http::app(self.store.clone())
    }

    /// The optional Kubernetes reporter (off unless the caller enables it): patches the node's
    /// status conditions and creates Events through `client`. Run it with
    /// `Reporter::run(tick, shutdown)`.
    pub fn kubernetes_reporter(
        &self,
        config: kubernetes::KubernetesConfig,
        client: kube::Client,
    ) -> kubernetes::Reporter {
        kubernetes::Reporter::new(config, client, self.store.clone())
    }

    /// Appends `problem_counter{reason}` and `problem_gauge{type,reason}` (with HELP/TYPE) to a Prometheus exposition.
    pub fn write_metrics(&self, out: &mut String) {
        self.store.write_metrics(out);
    }
}

#[cfg(test)]
mod tests;
