//! The per-node collector: cgroup (v1 and v2) and /proc figures for every container, served as
//! cAdvisor-compatible Prometheus metrics and as the kubelet Summary API.

pub mod cgroup;
pub mod config;
pub mod discovery;
pub mod fixture;
pub mod http;
pub mod pass;
pub mod problems;
pub mod proc;
pub mod snapshot;
pub mod summary;

use config::Config;
use pass::Collector;
use snapshot::{SharedSnapshot, Snapshot};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Command-line options of `vigil collector`. Flags override the YAML file given with `--config`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// YAML configuration file (keys as in the flags, with underscores).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to serve /metrics, /stats/summary and /healthz on [default: 0.0.0.0:4194]. The
    /// endpoints have no authentication: in a cluster, bind the node IP (the DaemonSet sets
    /// VIGIL_COLLECTOR_LISTEN=$(NODE_IP):4194 from status.hostIP) or restrict it with a NetworkPolicy.
    #[arg(long, env = "VIGIL_COLLECTOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Cgroup mount root [default: /sys/fs/cgroup].
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,
    /// /proc mount [default: /proc].
    #[arg(long)]
    pub proc_root: Option<PathBuf>,
    /// Kubelet pod log directory [default: /var/log/pods].
    #[arg(long)]
    pub pod_log_root: Option<PathBuf>,
    /// Kubelet container log symlinks [default: <pod-log-root>/../containers].
    #[arg(long)]
    pub container_log_root: Option<PathBuf>,
    /// Kubelet read API base URL, for /pods (labels, images, requests, limits).
    #[arg(long)]
    pub kubelet_url: Option<String>,
    /// Node name in the Summary API [default: host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// Time between collection passes, e.g. 10s (minimum 1s) [default: 10s].
    #[arg(long, value_parser = config::parse_duration)]
    pub housekeeping_interval: Option<Duration>,
    /// Time between full cgroup rescans [default: 60s].
    #[arg(long, value_parser = config::parse_duration)]
    pub rescan_interval: Option<Duration>,
    /// Time between counts of each cgroup's processes, descriptors and sockets (a readlink per
    /// descriptor); at or below the housekeeping interval, every pass [default: 30s].
    #[arg(long, value_parser = config::parse_duration)]
    pub process_stats_interval: Option<Duration>,
    /// Comma-separated metric groups to switch off (cAdvisor names: cpu, memory, network, disk, diskIO, process, pressure, oom_event, ...).
    #[arg(long, value_delimiter = ',')]
    pub disable_metrics: Option<Vec<String>>,
    /// Comma-separated pod labels to copy as container_label_<name> (opt-in).
    #[arg(long, value_delimiter = ',')]
    pub pod_labels: Option<Vec<String>>,
    /// A path on the node's root filesystem [default: /].
    #[arg(long)]
    pub root_fs_path: Option<PathBuf>,
    /// A path on the runtime's image filesystem.
    #[arg(long)]
    pub image_fs_path: Option<PathBuf>,
    /// Directory entries the writable-layer/log size walk may visit per pass [default: 20000].
    #[arg(long)]
    pub fs_walk_budget: Option<usize>,
    /// Threads reading cgroup files in a pass [default: 2, or 1 on a single CPU].
    #[arg(long)]
    pub collection_threads: Option<usize>,
    /// Files per cgroup kept open between passes and re-read with pread; each pins ~4.6 KiB of
    /// kernel memory (0: none) [default: 12, every file read each pass].
    #[arg(long)]
    pub open_files_per_cgroup: Option<usize>,
    /// Cgroup files kept open in all, at most [default: 16384, ~72 MiB of kernel memory].
    #[arg(long)]
    pub max_open_files: Option<usize>,
    /// The kubelet's root directory, for pod volume figures [default: /var/lib/kubelet].
    #[arg(long)]
    pub kubelet_root: Option<PathBuf>,
    /// node-problem-detector monitor config (JSON); repeat for several. Added to the file's list.
    #[arg(long = "problem-detector-config")]
    pub problem_detector_config: Vec<PathBuf>,
    /// Report problem conditions and events to the Kubernetes API server (in-cluster service
    /// account; start-up fails without one) [default: off].
    #[arg(long)]
    pub problem_detector_kubernetes: bool,
    /// Ask the API server (in-cluster service account) which PersistentVolume each pod's claims
    /// are bound to, to name PV volumes; needs --kubelet-url; start-up fails without credentials
    /// [default: off].
    #[arg(long)]
    pub kubernetes_pvc_lookup: bool,
    /// HTTPS certificate and who may call the endpoints.
    #[command(flatten)]
    pub listener: vigil_server::ListenerArgs,
}

impl Args {
    /// The collector's options for `vigil up`: defaults, listening on `listen`.
    pub fn for_up(listen: SocketAddr) -> Self {
        Args {
            listen: Some(listen),
            ..Default::default()
        }
    }

    /// The effective configuration: the file (if any), then the flags on top, validated.
    pub fn resolve(&self) -> Result<Config, config::Error> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        macro_rules! set_opt {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = Some(v.clone()); } )* };
        }
        set!(
            listen,
            cgroup_root,
            proc_root,
            pod_log_root,
            housekeeping_interval,
            rescan_interval,
            process_stats_interval,
            disable_metrics,
            pod_labels,
            root_fs_path,
            fs_walk_budget,
            collection_threads,
            open_files_per_cgroup,
            max_open_files,
            kubelet_root
        );
        set_opt!(
            container_log_root,
            kubelet_url,
            node_name,
            image_fs_path
        );
        for p in &self.problem_detector_config {
            if !c.problem_detector_config.contains(p) {
                c.problem_detector_config.push(p.clone());
            }
        }
        if self.problem_detector_kubernetes {
            c.problem_detector_kubernetes = true;
        }
        if self.kubernetes_pvc_lookup {
            c.kubernetes_pvc_lookup = true;
        }
        c.listener = self.listener.clone().or(std::mem::take(&mut c.listener));
        c.validate()?;
        Ok(c)
    }
}

/// Errors of the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Start(#[from] pass::Error),
    #[error("problem detector: {0}")]
    Problems(#[from] problems::Error),
    #[error("problem detector (--problem-detector-kubernetes): {0}")]
    Kubernetes(#[from] problems::kubernetes::KubernetesError),
    #[error("PersistentVolumeClaim lookup (--kubernetes-pvc-lookup): {0}")]
    PvcLookup(problems::kubernetes::KubernetesError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Auth(#[from] vigil_server::auth::Error),
    #[error(transparent)]
    Tls(#[from] vigil_server::tls::Error),
}

/// Runs the collector until `shutdown` fires.
pub async fn run(args: Args, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let config = Arc::new(args.resolve()?);
    run_with_config(config, shutdown).await
}

/// Runs the collector with a resolved configuration.
pub async fn run_with_config(
    config: Arc<Config>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    // The one API server client (kube), made by the first part that needs it.
    let mut api_client: Option<kube::Client> = None;
    // The problem detector loads first: a bad monitor config stops start-up with its message.
    let detector = if config.problem_detector_config.is_empty() {
        None
    } else {
        let d = Arc::new(problems::ProblemDetector::load(
            &config.problem_detector_config,
        )?);
        tracing::info!(
            configs = config.problem_detector_config.len(),
            "problem detector loaded"
        );
        // Kubernetes reporting: credentials are checked before anything runs.
        let reporter = if config.problem_detector_kubernetes {
            let cfg = problems::kubernetes::KubernetesConfig::new(&config.node_name())?;
            let (client, api) = problems::kubernetes::in_cluster_client().await?;
            tracing::info!(api = %api, "problem detector reports to Kubernetes");
            let r = d.kubernetes_reporter(cfg, client.clone());
            api_client = Some(client);
            Some(r)
        } else {
            None
        };
        tokio::spawn(d.clone().run(shutdown.clone()));
        if let Some(r) = reporter {
            tokio::spawn(r.run(Duration::from_secs(1), shutdown.clone()));
        }
        Some(d)
    };
    // Claim → PV lookup on the API server: credentials are checked before anything runs.
    let claims = if config.kubernetes_pvc_lookup {
        let client = match api_client.take() {
            Some(c) => c,
            None => {
                let (client, api) = problems::kubernetes::in_cluster_client()
                    .await
                    .map_err(Error::PvcLookup)?;
                tracing::info!(api = %api, "PersistentVolumeClaim lookup on the API server");
                client
            }
        };
        let lookup = discovery::volumes::ClaimLookup::new(client);
        let cache = lookup.cache();
        tokio::spawn(lookup.run(shutdown.clone()));
        Some(cache)
    } else {
        None
    };
    let mut collector = Collector::new(config.clone())?;
    collector.start_watcher();
    let snapshot: SharedSnapshot =
        Arc::new(RwLock::new(Arc::new(Snapshot::empty(config.node_name()))));

    if let Some(url) = config.kubelet_url.clone() {
        let slot = collector.kubelet_pods_slot();
        let interval = config.rescan_interval.min(Duration::from_secs(30));
        let mut stop = shutdown.clone();
        let claims = claims.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client");
            loop {
                match discovery::metadata::fetch_pod_list(&client, &url).await {
                    Ok(mut list) => {
                        if let Some(c) = &claims {
                            c.annotate(&mut list);
                        }
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(list)
                    }
                    Err(e) => tracing::warn!(kind = e.kind(), error = %e, "kubelet /pods"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    // Housekeeping on its own thread: file reads are blocking.
    let hk_snapshot = snapshot.clone();
    let hk_shutdown = shutdown.clone();
    let interval = config.housekeeping_interval;
    let housekeeping = std::thread::Builder::new()
        .name("housekeeping".into())
        .spawn(move || loop {
            let started = Instant::now();
            let snap = collector.pass();
            tracing::debug!(
                containers = snap.containers.len(),
                duration_ms = snap.self_stats.last_duration.as_millis() as u64,
                "collection pass"
            );
            // The previous snapshot is freed after the lock is released (readers wait on the
            // write lock; freeing 1,000 containers' samples takes about a millisecond), and its
            // samples' vector goes back to the collector for the next pass.
            let previous = std::mem::replace(
                &mut *hk_snapshot.write().unwrap_or_else(|p| p.into_inner()),
                Arc::new(snap),
            );
            collector.recycle(previous);
            let deadline = started + interval;
            while Instant::now() < deadline {
                if *hk_shutdown.borrow() {
                    return;
                }
                std::thread::sleep((deadline - Instant::now()).min(Duration::from_millis(100)));
            }
            if *hk_shutdown.borrow() {
                return;
            }
        })
        .expect("spawn housekeeping thread");

    let mut state = http::AppState::new(snapshot, config.clone());
    let detector_metrics = detector.clone();
    if detector_metrics.is_some() || claims.is_some() {
        state.extra_metrics = Some(Arc::new(move |out: &mut String| {
            if let Some(d) = &detector_metrics {
                d.write_metrics(out);
            }
            if let Some(c) = &claims {
                c.write_metrics(out);
            }
        }));
    }
    let mut app = http::app(state);
    if let Some(d) = detector {
        app = app.merge(d.router());
    }
    // Who may call the endpoints (off unless an auth option is set; `validate` checked that
    // client certificates come with HTTPS).
    let tls = config.listener.tls();
    let auth = Arc::new(vigil_server::auth::Auth::new(&config.listener.auth).await?);
    let options = match &tls {
        Some(opts) => vigil_server::Options::default().with_tls(
            vigil_server::tls::listener_config(opts, config.listen, &auth)?,
        ),
        None => vigil_server::Options::default(),
    };
    let app = auth.layer(app);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    tracing::info!(listen = %config.listen, https = tls.is_some(), "collector listening");
    vigil_server::serve(listener, app, options, shutdown).await;
    let _ = tokio::task::spawn_blocking(move || housekeeping.join()).await;
    Ok(())
}
