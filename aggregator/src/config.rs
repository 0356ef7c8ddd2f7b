//! Command-line options of `vigil aggregator`, their defaults and their validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sinks::SinkConfig;

/// Errors in the aggregator's options; each names the option.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("--{option}: {reason}")]
    Duration {
        option: &'static str,
        value: String,
        reason: String,
    },
    #[error("--metric-resolution {0:?} is below the 5s minimum (add --allow-short-resolution for tests)")]
    ResolutionTooShort(String),
    #[error("--{option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
    #[error("no node source: give --nodes, --nodes-file or --source")]
    NoSource,
    #[error("--config {path}: {message}")]
    File { path: String, message: String },
    /// Reading or parsing `--config` (the message names the file and the key).
    #[error("--config: {0}")]
    Load(String),
}

/// Parses a Prometheus duration (`500ms`, `15s`, `1m30s`, `1h`, `1d`) given as `--<option>`.
pub fn parse_duration(option: &'static str, value: &str) -> Result<Duration, Error> {
    vigil_common::duration::parse_std(value.trim()).map_err(|e| Error::Duration {
        option,
        value: value.to_string(),
        reason: e.to_string(),
    })
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8082))
}
fn default_metric_resolution() -> String {
    "15s".into()
}
fn default_scrape_timeout() -> String {
    "10s".into()
}
fn default_scrape_concurrency() -> usize {
    64
}
fn default_retention() -> String {
    "15m".into()
}
fn default_max_series() -> usize {
    6_000_000
}
fn default_snapshot_interval() -> String {
    "5m".into()
}

/// Command-line options of `vigil aggregator`. Options left unset come from `--config`, then
/// from the defaults; an option given on the command line wins over the file.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// YAML config file with the same settings (snake_case keys) and a `sinks:` list.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API [default: 0.0.0.0:8082, Heapster's port].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How often every node is pulled (minimum 5s) [default: 15s].
    #[arg(long = "metric-resolution", alias = "metric_resolution")]
    pub metric_resolution: Option<String>,
    /// Allows a resolution below 5s (tests only).
    #[arg(long, hide = true)]
    pub allow_short_resolution: bool,
    /// Static node list: `host:port` or `http(s)://host:port[/path]`, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// File with one node per line (same syntax as --nodes, `#` comments); re-read when it changes.
    #[arg(long)]
    pub nodes_file: Option<PathBuf>,
    /// Heapster's source flag: `kubernetes.summary_api:<master>?kubeletPort=..&kubeletHttps=..&inClusterConfig=..`
    /// (also `insecure=`, `useServiceAccount=`, `auth=<kubeconfig>` with `inClusterConfig=false`,
    /// `apiVersion=v1`, and vigil's `tokenFile=`/`caFile=`). Nodes, pods and namespaces are
    /// listed once and then watched.
    #[arg(long)]
    pub source: Option<String>,
    /// Per-node request timeout [default: 10s].
    #[arg(long)]
    pub scrape_timeout: Option<String>,
    /// How many nodes are pulled at the same time [default: 64].
    #[arg(long)]
    pub scrape_concurrency: Option<usize>,
    /// Largest Summary document accepted from a node, in bytes after gzip decoding; a larger
    /// body is refused while it streams in and counted as too_large [default: 8388608].
    #[arg(long)]
    pub max_document_bytes: Option<usize>,
    /// How long the in-memory store keeps every series [default: 15m].
    #[arg(long)]
    pub retention: Option<String>,
    /// Upper bound on stored series; new series beyond it are refused and counted [default: 6000000].
    #[arg(long)]
    pub max_series: Option<usize>,
    /// Directory for the store snapshot (loaded at start, written periodically and on shutdown).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How often the snapshot is written when --data-dir is set [default: 5m].
    #[arg(long)]
    pub snapshot_interval: Option<String>,
    /// Sink URIs in Heapster's syntax (repeatable), e.g. `influxdb:http://127.0.0.1:8086?db=k8s`;
    /// added to the config file's `sinks:`.
    #[arg(long)]
    pub sink: Vec<String>,
    /// Makes /api/v1/metric-export answer an empty list (Heapster's --disable_export).
    #[arg(long, alias = "disable_export")]
    pub disable_export: bool,
    /// Also serve the same API over HTTPS on this address (e.g. 0.0.0.0:4443): the kube-apiserver
    /// reaches the metrics.k8s.io APIService only over TLS, as it does metrics-server [default: off].
    #[arg(long)]
    pub secure_listen: Option<SocketAddr>,
    /// PEM certificate (chain) for --secure-listen; with --tls-private-key-file.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for --secure-listen; with --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Without certificate files, a self-signed pair is kept here (apiserver.crt, apiserver.key),
    /// made at the first start and reused after; unset: made in memory at every start.
    #[arg(long)]
    pub cert_dir: Option<PathBuf>,
    /// PromQL queries (/api/v1/query, query_range) running longer fail with 503 `timeout`
    /// (Prometheus's --query.timeout) [default: 2m].
    #[arg(long)]
    pub query_timeout: Option<String>,
    /// Most samples one query may load; beyond, it fails with 422 `execution`
    /// (Prometheus's --query.max-samples) [default: 50000000].
    #[arg(long)]
    pub query_max_samples: Option<usize>,
    /// Queries evaluated at once; more wait for a slot (Prometheus's --query.max-concurrency)
    /// [default: 4].
    #[arg(long)]
    pub query_max_concurrency: Option<usize>,
    /// How far back an instant selector looks for a sample (Prometheus's
    /// --query.lookback-delta) [default: 5m].
    #[arg(long)]
    pub query_lookback_delta: Option<String>,
    /// Rules and notifications (--rule-file, --notify-config, --rule-query-url, ...).
    #[command(flatten)]
    pub alerting: crate::alerting::AlertingArgs,
    /// Who may call the API: tokens, client certificates, TokenReview/SubjectAccessReview.
    #[command(flatten)]
    pub auth: vigil_server::auth::Args,
    /// Sinks from the config file's `sinks:` (set by `with_config_file`).
    #[arg(skip)]
    pub config_sinks: Vec<SinkConfig>,
}

/// The aggregator's YAML config file: the command-line settings by their snake_case names, plus
/// the sinks in their YAML form.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address of the HTTP API.
    pub listen: Option<SocketAddr>,
    /// How often every node is pulled, e.g. `15s`.
    pub metric_resolution: Option<String>,
    /// Allows a resolution below 5s (tests only).
    pub allow_short_resolution: Option<bool>,
    /// Static node list (`host:port` or URLs).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// File with one node per line, re-read when it changes.
    pub nodes_file: Option<PathBuf>,
    /// Heapster's `--source` value.
    pub source: Option<String>,
    /// Per-node request timeout.
    pub scrape_timeout: Option<String>,
    /// How many nodes are pulled at the same time.
    pub scrape_concurrency: Option<usize>,
    /// Largest Summary document accepted from a node (bytes, decompressed).
    pub max_document_bytes: Option<usize>,
    /// How long the in-memory store keeps every series.
    pub retention: Option<String>,
    /// Upper bound on stored series.
    pub max_series: Option<usize>,
    /// Directory for the store snapshot.
    pub data_dir: Option<PathBuf>,
    /// How often the snapshot is written.
    pub snapshot_interval: Option<String>,
    /// Makes /api/v1/metric-export answer an empty list.
    pub disable_export: Option<bool>,
    /// Also serve the API over HTTPS on this address.
    pub secure_listen: Option<SocketAddr>,
    /// PEM certificate for `secure_listen`.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `secure_listen`.
    pub tls_private_key_file: Option<PathBuf>,
    /// Directory of the self-signed pair when no certificate files are given.
    pub cert_dir: Option<PathBuf>,
    /// PromQL query timeout, e.g. `2m`.
    pub query_timeout: Option<String>,
    /// Most samples one query may load.
    pub query_max_samples: Option<usize>,
    /// Queries evaluated at once.
    pub query_max_concurrency: Option<usize>,
    /// Lookback of instant selectors, e.g. `5m`.
    pub query_lookback_delta: Option<String>,
    /// Sinks in their YAML form (`type: influxdb`, ...), see `vigil_aggregator::sinks::SinksConfig`.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Authentication and authorization (`token_auth_file`, `client_ca_file`, ...), see
    /// `vigil_server::auth::Args`.
    #[serde(default)]
    pub auth: Option<vigil_server::auth::Args>,
}

impl FileConfig {
    /// Reads and parses a config file (size-capped, depth-bounded); errors name the file and,
    /// from serde, the key. An empty file is the defaults.
    pub fn load(path: &std::path::Path) -> Result<FileConfig, Error> {
        vigil_common::config::load_yaml(path).map_err(|e| Error::Load(e.to_string()))
    }
}

impl Args {
    /// Fills every option not given on the command line from `--config` (when set).
    pub fn with_config_file(mut self) -> Result<Args, Error> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let f = FileConfig::load(&path)?;
        self.listen = self.listen.or(f.listen);
        self.metric_resolution = self.metric_resolution.or(f.metric_resolution);
        self.allow_short_resolution |= f.allow_short_resolution.unwrap_or(false);
        if self.nodes.iter().all(|n| n.trim().is_empty()) {
            self.nodes = f.nodes;
        }
        self.nodes_file = self.nodes_file.or(f.nodes_file);
        self.source = self.source.or(f.source);
        self.scrape_timeout = self.scrape_timeout.or(f.scrape_timeout);
        self.scrape_concurrency = self.scrape_concurrency.or(f.scrape_concurrency);
        self.max_document_bytes = self.max_document_bytes.or(f.max_document_bytes);
        self.retention = self.retention.or(f.retention);
        self.max_series = self.max_series.or(f.max_series);
        self.data_dir = self.data_dir.or(f.data_dir);
        self.snapshot_interval = self.snapshot_interval.or(f.snapshot_interval);
        self.disable_export |= f.disable_export.unwrap_or(false);
        self.secure_listen = self.secure_listen.or(f.secure_listen);
        self.tls_cert_file = self.tls_cert_file.or(f.tls_cert_file);
        self.tls_private_key_file = self.tls_private_key_file.or(f.tls_private_key_file);
        self.cert_dir = self.cert_dir.or(f.cert_dir);
        self.query_timeout = self.query_timeout.or(f.query_timeout);
        self.query_max_samples = self.query_max_samples.or(f.query_max_samples);
        self.query_max_concurrency = self.query_max_concurrency.or(f.query_max_concurrency);
        self.query_lookback_delta = self.query_lookback_delta.or(f.query_lookback_delta);
        self.config_sinks = f.sinks;
        self.auth = std::mem::take(&mut self.auth).or(f.auth.unwrap_or_default());
        Ok(self)
    }
}

/// The validated settings the aggregator runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub resolution: Duration,
    pub scrape_timeout: Duration,
    pub scrape_concurrency: usize,
    pub retention: Duration,
    pub max_series: usize,
    pub data_dir: Option<PathBuf>,
    pub snapshot_interval: Duration,
    pub disable_export: bool,
    /// The HTTPS address and where its certificate comes from (None: HTTP only).
    pub secure_listen: Option<(SocketAddr, crate::tls::TlsOptions)>,
    /// Limits of the PromQL query API.
    pub query: crate::query::QueryLimits,
}

/// The collectors' refresh interval the aggregator assumes: the kubelet's cAdvisor
/// housekeeping and the vigil collector's `housekeeping_interval` both default to 10 s, and the
/// Summary API does not say which interval a node uses.
pub const ASSUMED_HOUSEKEEPING: Duration = Duration::from_secs(10);

/// The start-up warning for a resolution at or below the collectors' refresh interval: the
/// aggregator then often reads the same sample twice, so rates come from fewer distinct samples
/// (a repeated sample yields no rate). The default 15 s is above it.
pub fn resolution_warning(resolution: Duration) -> Option<String> {
    (resolution <= ASSUMED_HOUSEKEEPING).then(|| {
        format!(
            "--metric-resolution {resolution:?} is not above the collectors' refresh interval \
             (the kubelet's and vigil collector's housekeeping default to {ASSUMED_HOUSEKEEPING:?}): \
             some rounds will read a sample already seen and give no rate for it; use a \
             resolution above the nodes' housekeeping interval"
        )
    })
}

impl Args {
    /// Checks every option without side effects; errors name the option.
    pub fn validate(&self) -> Result<Settings, Error> {
        let metric_resolution = self
            .metric_resolution
            .clone()
            .unwrap_or_else(default_metric_resolution);
        let scrape_timeout = self
            .scrape_timeout
            .clone()
            .unwrap_or_else(default_scrape_timeout);
        let scrape_concurrency = self
            .scrape_concurrency
            .unwrap_or_else(default_scrape_concurrency);
        let retention = self.retention.clone().unwrap_or_else(default_retention);
        let max_series = self.max_series.unwrap_or_else(default_max_series);
        let snapshot_interval = self
            .snapshot_interval
            .clone()
            .unwrap_or_else(default_snapshot_interval);
        let resolution = parse_duration("metric-resolution", &metric_resolution)?;
        if resolution < Duration::from_secs(5) && !self.allow_short_resolution {
            return Err(Error::ResolutionTooShort(metric_resolution));
        }
        if resolution < Duration::from_millis(100) {
            return Err(Error::Invalid {
                option: "metric-resolution",
                message: "must be at least 100ms".into(),
            });
        }
        let scrape_timeout = parse_duration("scrape-timeout", &scrape_timeout)?;
        if scrape_timeout.is_zero() {
            return Err(Error::Invalid {
                option: "scrape-timeout",
                message: "must be above zero".into(),
            });
        }
        if scrape_concurrency == 0 {
            return Err(Error::Invalid {
                option: "scrape-concurrency",
                message: "must be at least 1".into(),
            });
        }
        let retention = parse_duration("retention", &retention)?;
        if retention < resolution {
            return Err(Error::Invalid {
                option: "retention",
                message: "must be at least one --metric-resolution".into(),
            });
        }
        if max_series == 0 {
            return Err(Error::Invalid {
                option: "max-series",
                message: "must be at least 1".into(),
            });
        }
        let snapshot_interval = parse_duration("snapshot-interval", &snapshot_interval)?;
        if snapshot_interval.is_zero() {
            return Err(Error::Invalid {
                option: "snapshot-interval",
                message: "must be above zero".into(),
            });
        }
        if self.nodes.iter().all(|n| n.trim().is_empty())
            && self.nodes_file.is_none()
            && self.source.is_none()
        {
            return Err(Error::NoSource);
        }
        if self.secure_listen.is_none() {
            for (option, given) in [
                ("tls-cert-file", self.tls_cert_file.is_some()),
                ("tls-private-key-file", self.tls_private_key_file.is_some()),
                ("cert-dir", self.cert_dir.is_some()),
            ] {
                if given {
                    return Err(Error::Invalid {
                        option,
                        message: "has no effect without --secure-listen".into(),
                    });
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            return Err(Error::Invalid {
                option: if self.tls_cert_file.is_some() {
                    "tls-cert-file"
                } else {
                    "tls-private-key-file"
                },
                message: "--tls-cert-file and --tls-private-key-file go together".into(),
            });
        }
        let secure_listen = self.secure_listen.map(|addr| {
            let tls = crate::tls::TlsOptions {
                cert_file: self.tls_cert_file.clone(),
                key_file: self.tls_private_key_file.clone(),
                cert_dir: self.cert_dir.clone(),
            };
            (addr, tls)
        });
        let query = self.query_limits()?;
        crate::sinks::SinksConfig {
            sinks: self.config_sinks.clone(),
        }
        .validate()
        .map_err(|e| Error::Invalid {
            option: "config",
            message: format!("sinks: {e}"),
        })?;
        Ok(Settings {
            listen: self.listen.unwrap_or_else(default_listen),
            resolution,
            scrape_timeout,
            scrape_concurrency,
            retention,
            max_series,
            data_dir: self.data_dir.clone(),
            snapshot_interval,
            disable_export: self.disable_export,
            secure_listen,
            query,
        })
    }

    /// The `--query-*` options, checked.
    fn query_limits(&self) -> Result<crate::query::QueryLimits, Error> {
        let d = crate::query::QueryLimits::default();
        let timeout = match &self.query_timeout {
            Some(v) => parse_duration("query-timeout", v)?,
            None => d.timeout,
        };
        let lookback_delta = match &self.query_lookback_delta {
            Some(v) => parse_duration("query-lookback-delta", v)?,
            None => d.lookback_delta,
        };
        for (option, zero) in [
            ("query-timeout", timeout.is_zero()),
            ("query-lookback-delta", lookback_delta.as_millis() == 0),
            ("query-max-samples", self.query_max_samples == Some(0)),
            (
                "query-max-concurrency",
                self.query_max_concurrency == Some(0),
            ),
        ] {
            if zero {
                return Err(Error::Invalid {
                    option,
                    message: "must be above zero".into(),
                });
            }
        }
        Ok(crate::query::QueryLimits {
            timeout,
            max_samples: self.query_max_samples.unwrap_or(d.max_samples),
            max_concurrency: self.query_max_concurrency.unwrap_or(d.max_concurrency),
            lookback_delta,
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn huge_duration_is_an_error_naming_the_option_not_a_panic() {
        // Regression (#19 item 1): `Duration::from_secs_f64` panicked on overflow.
        for v in [
            "99999999999999999999h",
            "1e300s",
            "9999999999999999999h9999999999999999999h",
        ] {
            let err = super::parse_duration("metric-resolution", v)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--metric-resolution"), "{err}");
        }
    }

    #[test]
    fn a_resolution_not_above_housekeeping_is_warned_about() {
        assert!(resolution_warning(Duration::from_secs(15)).is_none());
        assert!(resolution_warning(Duration::from_millis(10_001)).is_none());
        let w = resolution_warning(Duration::from_secs(10)).unwrap();
        assert!(
            w.contains("--metric-resolution 10s") && w.contains("housekeeping"),
            "{w}"
        );
        assert!(resolution_warning(Duration::from_secs(5)).is_some());
    }

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("x", "15s").unwrap(), Duration::from_secs(15));
        assert_eq!(
            parse_duration("x", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("x", "1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("x", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        for bad in ["", "15", "s", "15x", "-1s", "1.2.3s"] {
            let err = parse_duration("metric-resolution", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("--metric-resolution"), "{bad}: {err}");
        }
    }

    fn args(extra: &[&str]) -> Args {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let mut argv = vec!["agg"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn short_resolution_needs_the_flag() {
        let err = args(&["--nodes", "127.0.0.1:1", "--metric-resolution", "1s"])
            .validate()
            .unwrap_err();
        assert_eq!(err, Error::ResolutionTooShort("1s".into()));
        let ok = args(&[
            "--nodes",
            "127.0.0.1:1",
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ])
        .validate()
        .unwrap();
        assert_eq!(ok.resolution, Duration::from_secs(1));
        assert_eq!(ok.listen.port(), 8082);
    }

    #[test]
    fn a_source_is_required_and_bad_values_are_named() {
        assert_eq!(args(&[]).validate().unwrap_err(), Error::NoSource);
        let err = args(&["--nodes", "a:1", "--scrape-concurrency", "0"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--scrape-concurrency"), "{err}");
        let err = args(&["--nodes", "a:1", "--retention", "1s"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("--retention"), "{err}");
    }

    fn testdata(name: &str) -> String {
        format!("{}/testdata/config/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn config_file_fills_unset_options_and_flags_win() {
        let a = args(&["--config", &testdata("good.yaml"), "--retention", "2h"])
            .with_config_file()
            .unwrap();
        let s = a.validate().unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:18082");
        assert_eq!(s.resolution, Duration::from_secs(30));
        assert_eq!(s.scrape_timeout, Duration::from_secs(5));
        assert_eq!(s.scrape_concurrency, 8);
        assert_eq!(s.retention, Duration::from_secs(7200), "the flag wins");
        assert_eq!(s.max_series, 1000);
        assert_eq!(s.snapshot_interval, Duration::from_secs(60));
        assert!(s.disable_export);
        assert_eq!(a.nodes.len(), 2);
        assert_eq!(a.config_sinks.len(), 2);
        assert!(matches!(&a.config_sinks[0], SinkConfig::Influxdb(i) if i.db == "k8s"));
        // Flags given for a list replace the file's list; defaults apply without a file.
        let a = args(&["--config", &testdata("good.yaml"), "--nodes", "127.0.0.9:1"])
            .with_config_file()
            .unwrap();
        assert_eq!(a.nodes, vec!["127.0.0.9:1".to_string()]);
        let s = args(&["--nodes", "a:1"])
            .with_config_file()
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            (
                s.listen.port(),
                s.resolution,
                s.scrape_concurrency,
                s.max_series
            ),
            (8082, Duration::from_secs(15), 64, 6_000_000)
        );
    }

    #[test]
    fn bad_config_files_name_the_file_and_the_key() {
        let load = |name: &str| {
            args(&["--config", &testdata(name)])
                .with_config_file()
                .and_then(|a| a.validate().map(|_| ()))
                .unwrap_err()
                .to_string()
        };
        let e = load("unknown-key.yaml");
        assert!(
            e.contains("unknown-key.yaml") && e.contains("metric_resolutoin"),
            "{e}"
        );
        let e = load("bad-type.yaml");
        assert!(
            e.contains("bad-type.yaml") && e.contains("scrape_concurrency"),
            "{e}"
        );
        let e = load("bad-sink.yaml");
        assert!(e.contains("bad-sink.yaml") && e.contains("colour"), "{e}");
        let e = load("duplicate-sinks.yaml");
        assert!(e.contains("sinks") && e.contains("log"), "{e}");
        let e = load("bad-value.yaml");
        assert!(
            e.contains("--metric-resolution") && e.contains("soon"),
            "{e}"
        );
        let e = load("missing.yaml");
        assert!(e.contains("--config") && e.contains("missing.yaml"), "{e}");
    }
}
