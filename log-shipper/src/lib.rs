//! The log shipper: discovery → tail → parse → enrich → sinks, with checkpoints that follow sink acknowledgements.

pub mod config;
pub mod discovery;
pub mod enrich;
pub mod http;
pub mod metadata;
pub mod metrics;
pub mod parse;
pub mod sinks;
pub mod tail;

use config::{Config, ConfigError, MetadataConfig, SinkConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Command-line options of `vigil log-shipper` (flags win over the config file).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// YAML configuration file (unknown keys are errors).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the HTTP server for /metrics and /healthz [default: 0.0.0.0:2020].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for checkpoints and the dead-letter file [default: /var/lib/vigil/log-shipper].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTPS certificate and who may call /metrics.
    #[command(flatten)]
    pub listener: vigil_server::ListenerArgs,
    /// Bytes of deleted, not yet shipped log files held open at most [default: 1 GiB] (config deleted_files_max_bytes).
    #[arg(long)]
    pub deleted_files_max_bytes: Option<u64>,
    /// A directory laid out like /var/log/pods (repeatable; replaces discovery.roots).
    #[arg(long = "root")]
    pub roots: Vec<PathBuf>,
    /// Where records go: `elasticsearch:<url>` (or `es:<url>`), `file:<path>` or `stdout`.
    #[arg(long)]
    pub sink: Option<String>,
    /// Elasticsearch index pattern (e.g. `logstash-%Y.%m.%d`, `logs-{namespace}-%Y.%m.%d`).
    #[arg(long)]
    pub index: Option<String>,
    /// Elasticsearch batch size in bytes [default: 5 MiB].
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    /// Elasticsearch batch timeout, e.g. 500ms [default: 1s].
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub batch_timeout: Option<Duration>,
    /// Deprecated: --batch-timeout in milliseconds.
    #[arg(long, hide = true, conflicts_with = "batch_timeout")]
    pub batch_timeout_ms: Option<u64>,
    /// Pod labels, annotations and images from this kubelet's `/pods` (e.g. https://127.0.0.1:10250), with the
    /// service-account token when present (sets kubernetes_metadata.source=kubelet).
    #[arg(long)]
    pub kubelet_url: Option<String>,
    /// Do not verify the kubelet's serving certificate (kubelets with self-signed certificates).
    #[arg(long)]
    pub kubelet_insecure_tls: bool,
    /// Pod labels, annotations and images from the API server with in-cluster credentials (service-account token and
    /// CA, KUBERNETES_SERVICE_HOST/PORT), listing only the pods of NODE_NAME.
    #[arg(long, conflicts_with = "kubelet_url")]
    pub kubernetes_api: bool,
}

/// Errors of the log shipper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    #[error(transparent)]
    Tail(#[from] tail::TailError),
    #[error(transparent)]
    Elasticsearch(#[from] sinks::elasticsearch::EsError),
    #[error(transparent)]
    FileSink(#[from] sinks::file::FileSinkError),
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("the reader thread panicked")]
    ReaderPanicked,
    #[error(transparent)]
    Auth(#[from] vigil_server::auth::Error),
    #[error(transparent)]
    Tls(#[from] vigil_server::tls::Error),
}

impl Args {
    /// The effective configuration and where it came from (the file, or `flags`): the file (if
    /// any), then the flags on top, validated.
    pub fn resolve(&self) -> Result<(Config, String), Error> {
        let (mut cfg, origin) = match &self.config {
            Some(p) => (Config::load(p)?, p.display().to_string()),
            None => (Config::default(), "flags".to_string()),
        };
        if let Some(l) = &self.listen {
            cfg.listen = l.clone();
        }
        if let Some(d) = &self.data_dir {
            cfg.data_dir = d.clone();
        }
        cfg.listener = self.listener.clone().or(std::mem::take(&mut cfg.listener));
        if let Some(b) = self.deleted_files_max_bytes {
            cfg.deleted_files_max_bytes = b;
        }
        if !self.roots.is_empty() {
            cfg.discovery.roots = self.roots.clone();
        }
        if let Some(url) = &self.kubelet_url {
            let mut m = MetadataConfig::new(metadata::Source::Kubelet, Some(url.clone()));
            m.insecure_skip_tls_verify = self.kubelet_insecure_tls;
            cfg.kubernetes_metadata = Some(m);
        } else if self.kubelet_insecure_tls {
            return Err(ConfigError::Invalid {
                origin: "flags".into(),
                message: "--kubelet-insecure-tls needs --kubelet-url".into(),
            }
            .into());
        }
        if self.kubernetes_api {
            cfg.kubernetes_metadata = Some(MetadataConfig::new(metadata::Source::Apiserver, None));
        }
        if let Some(s) = &self.sink {
            cfg.sink = Some(SinkConfig::from_flag(s)?.into());
        }
        if let Some(es) = cfg.sink.as_mut().and_then(|s| s.elasticsearch.as_mut()) {
            if let Some(i) = &self.index {
                es.index = i.clone();
            }
            if let Some(b) = self.batch_bytes {
                es.batch_bytes = b;
            }
            if let Some(t) = self.batch_timeout_ms {
                tracing::warn!(
                    "--batch-timeout-ms is deprecated and will be removed: write --batch-timeout {}",
                    vigil_common::Duration::from_millis(t)
                );
                es.batch_timeout = Duration::from_millis(t);
            }
            if let Some(t) = self.batch_timeout {
                es.batch_timeout = t;
            }
        } else if self.index.is_some()
            || self.batch_bytes.is_some()
            || self.batch_timeout.is_some()
            || self.batch_timeout_ms.is_some()
        {
            return Err(ConfigError::Invalid {
                origin: "flags".into(),
                message:
                    "--index, --batch-bytes and --batch-timeout apply to the elasticsearch sink only"
                        .into(),
            }
            .into());
        }
        cfg.validate(&origin)?;
        Ok((cfg, origin))
    }
}

/// Runs the log shipper until `shutdown` fires (then flushes, waits briefly for the sink, writes checkpoints).
pub async fn run(args: Args, shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let (cfg, origin) = args.resolve()?;
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| Error::DataDir {
        path: cfg.data_dir.clone(),
        source,
    })?;
    let metrics = Arc::new(metrics::Metrics::default());

    let sink_cfg = cfg
        .sink
        .as_ref()
        .expect("validated")
        .resolve()
        .expect("validated");
    let (index, batch_bytes, batch_timeout, concurrency) = match &sink_cfg {
        SinkConfig::Elasticsearch(es) => (
            es.target().to_string(),
            es.batch_bytes,
            es.batch_timeout,
            es.concurrency,
        ),
        _ => (
            "logstash-%Y.%m.%d".to_string(),
            1 << 20,
            Duration::from_millis(200),
            1,
        ),
    };
    let sink = match sink_cfg {
        SinkConfig::Elasticsearch(es) => {
            sinks::Sink::Elasticsearch(Arc::new(sinks::elasticsearch::ElasticsearchSink::new(
                es,
                cfg.data_dir.join("dead-letter.ndjson"),
                metrics.clone(),
            )?))
        }
        SinkConfig::File(f) => sinks::Sink::File(sinks::file::FileSink::new(f)?),
        SinkConfig::Stdout => sinks::Sink::Stdout,
    };

    // Pod metadata: filled by a background task; the reader only looks into the cache (never waits for it).
    let refresher = match &cfg.kubernetes_metadata {
        Some(m) => Some(metadata::Refresher::new(m.clone(), metrics.clone()).await?),
        None => None,
    };
    let pod_metadata = refresher.as_ref().map(|r| r.cache());
    if let Some(r) = refresher {
        tracing::info!(url = %r.url(), "pod metadata from the Kubernetes API");
        tokio::spawn(r.run(shutdown.clone()));
    }

    let buffers = sinks::BufferPool::default();
    let discovery = discovery::Discovery::new(cfg.discovery.clone())?;
    let watch_roots = discovery.watch_roots();
    let multiline = cfg
        .parse
        .multiline
        .iter()
        .map(|m| tail::MultilineSelector {
            namespace: m.namespace.clone(),
            container: m.container.clone(),
            rule: parse::multiline::Rule {
                start: regex::bytes::Regex::new(&m.start_pattern).expect("validated"),
                flush_timeout: m.flush_timeout,
            },
        })
        .collect();
    let encoder = enrich::Encoder::new(
        enrich::IndexPattern::parse(&index).map_err(|e| ConfigError::Invalid {
            origin: origin.clone(),
            message: e.to_string(),
        })?,
        cfg.record.clone(),
    );
    let reader = tail::Reader::new(
        tail::ReaderConfig {
            discovery,
            max_line_bytes: cfg.parse.max_line_bytes,
            over_long: cfg.parse.over_long,
            multiline,
            encoder,
            batch_bytes,
            batch_timeout,
            poll_interval: cfg.poll_interval,
            rescan_interval: cfg.discovery.rescan_interval,
            store: tail::checkpoint::Store::new(&cfg.data_dir),
            checkpoint_interval: cfg.checkpoint_interval,
            buffers: buffers.clone(),
            pod_metadata,
            deleted_files_max_bytes: cfg.deleted_files_max_bytes,
        },
        metrics.clone(),
    )?;

    // Who may call /metrics (off unless an auth option is set; `validate` checked that client
    // certificates come with HTTPS).
    let tls = cfg.listener.tls();
    let auth = Arc::new(vigil_server::auth::Auth::new(&cfg.listener.auth).await?);
    let options = match &tls {
        Some(opts) => {
            let addr = cfg.listen.parse().expect("validated");
            vigil_server::Options::default()
                .with_tls(vigil_server::tls::listener_config(opts, addr, &auth)?)
        }
        None => vigil_server::Options::default(),
    };
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: cfg.listen.clone(),
            source,
        })?;
    tracing::info!(listen = %cfg.listen, https = tls.is_some(), data_dir = %cfg.data_dir.display(), "log shipper started");
    let health = sinks::Health::default();
    let app = auth.layer(http::app(http::State {
        metrics: metrics.clone(),
        health: health.clone(),
    }));
    let server = tokio::spawn(vigil_server::serve(
        listener,
        app,
        options,
        shutdown.clone(),
    ));

    // In-flight batches get a grace period after shutdown to be acknowledged, then are abandoned
    // (their records are re-sent after the restart and deduplicated by id).
    let (abort_tx, abort_rx) = watch::channel(false);
    let mut sd = shutdown.clone();
    tokio::spawn(async move {
        let _ = sd.wait_for(|s| *s).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let _ = abort_tx.send(true);
    });

    let (batch_tx, batch_rx) = tokio::sync::mpsc::channel(1);
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let (wake_tx, wake_rx) = std::sync::mpsc::channel();
    let (_watcher, werr) = tail::watcher::Watcher::start(&watch_roots, wake_tx);
    if let Some(e) = werr {
        tracing::warn!(error = %e, "inotify unavailable for some roots; relying on the periodic rescan");
    }
    let sink_task = tokio::spawn(sinks::run(
        sink,
        batch_rx,
        ack_tx,
        abort_rx,
        metrics.clone(),
        concurrency,
        buffers,
        health,
    ));
    let stop = shutdown.clone();
    let reader_task =
        tokio::task::spawn_blocking(move || reader.run(batch_tx, ack_rx, wake_rx, stop));
    let result = reader_task.await.map_err(|_| Error::ReaderPanicked)?;
    let _ = sink_task.await;
    let _ = server.await;
    result?;
    tracing::info!("log shipper stopped");
    Ok(())
}
