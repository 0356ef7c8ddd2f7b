//! The aggregator's configuration: YAML file (`--config`) plus flags (flags win), validated at start-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::alerting::ExternalLabel;
use crate::sinks::SinkConfig;

/// Errors in the aggregator's settings; each names the option (a flag `--x-y` is the key
/// `x_y` in the file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or parsing `--config` (the message names the file, the key and, for a key that
    /// is also a flag, the flag).
    #[error("--config: {}{}", .0, flag_of(.0))]
    Load(#[from] vigil_common::config::LoadError),
    #[error(
        "--metric-resolution {0} is below the 5s minimum (add --allow-short-resolution for tests)"
    )]
    ResolutionTooShort(vigil_common::Duration),
    #[error("--{option}: {message}")]
    Invalid {
        option: &'static str,
        message: String,
    },
    #[error("no node source: give --nodes, --nodes-file or --source")]
    NoSource,
}

/// ` (flag --x-y)` for an error in a top-level key `x_y` that is also a flag.
/// An element of a list key (`external_label[1]`) names the list's flag.
fn flag_of(e: &vigil_common::config::LoadError) -> String {
    match e {
        // A misspelt key is no flag: naming `--metric-resolutoin` would mislead.
        vigil_common::config::LoadError::Parse { message, .. }
            if message.starts_with("unknown field") =>
        {
            String::new()
        }
        vigil_common::config::LoadError::Parse { key, .. } => {
            let key = match key.split_once('[') {
                Some((list, index))
                    if index.strip_suffix(']').is_some_and(|i| {
                        !i.is_empty() && i.chars().all(|c| c.is_ascii_digit())
                    }) =>
                {
                    list
                }
                _ => key,
            };
            flag_of_key(key)
        }
        _ => String::new(),
    }
}

fn flag_of_key(key: &str) -> String {
    match key {
        key if !key.is_empty()
            && key != "sinks"
            && key != "auth"
            && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
        {
            format!(" (flag --{})", key.replace('_', "-"))
        }
        _ => String::new(),
    }
}

/// The aggregator's settings. Every field can be set in the YAML file (`--config`); all but
/// `sinks` and `auth`'s sections also as a flag of the same name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API (Heapster's port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// How often every node is pulled, e.g. `15s` (minimum 5s).
    #[serde(
        default = "default_metric_resolution",
        with = "vigil_common::duration::serde_std"
    )]
    pub metric_resolution: Duration,
    /// Allows a resolution below 5s (tests only).
    #[serde(default)]
    pub allow_short_resolution: bool,
    /// Static node list: `host:port` or `http(s)://host:port[/path]`.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// File with one node per line, re-read when it changes.
    #[serde(default)]
    pub nodes_file: Option<PathBuf>,
    /// Heapster's `--source` value (`kubernetes.summary_api:...`).
    #[serde(default)]
    pub source: Option<String>,
    /// Per-node request timeout.
    #[serde(
        default = "default_scrape_timeout",
        with = "vigil_common::duration::serde_std"
    )]
    pub scrape_timeout: Duration,
    /// How many nodes are pulled at the same time.
    #[serde(default = "default_scrape_concurrency")]
    pub scrape_concurrency: usize,
    /// Largest Summary document accepted from a node, in bytes after gzip decoding.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: usize,
    /// How long the in-memory store keeps every series.
    #[serde(
        default = "default_retention",
        with = "vigil_common::duration::serde_std"
    )]
    pub retention: Duration,
    /// Upper bound on stored series; new series beyond it are refused and counted.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Directory for the store snapshot (loaded at start, written periodically and on shutdown).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// How often the snapshot is written when `data_dir` is set.
    #[serde(
        default = "default_snapshot_interval",
        with = "vigil_common::duration::serde_std"
    )]
    pub snapshot_interval: Duration,
    /// Makes /api/v1/metric-export answer an empty list (Heapster's --disable_export).
    #[serde(default)]
    pub disable_export: bool,
    /// Also serve the API over HTTPS on this address (metrics.k8s.io is reached only over TLS).
    #[serde(default)]
    pub secure_listen: Option<SocketAddr>,
    /// PEM certificate (chain) for `secure_listen`, with `tls_private_key_file`.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for `secure_listen`.
    #[serde(default)]
    pub tls_private_key_file: Option<PathBuf>,
    /// Directory of the self-signed pair when no certificate files are given.
    #[serde(default)]
    pub cert_dir: Option<PathBuf>,
    /// PromQL queries running longer fail with 503 `timeout` (Prometheus's --query.timeout).
    #[serde(
        default = "default_query_timeout",
        with = "vigil_common::duration::serde_std"
    )]
    pub query_timeout: Duration,
    /// Most samples one query may load (Prometheus's --query.max-samples).
    #[serde(default = "default_query_max_samples")]
    pub query_max_samples: usize,
    /// Queries evaluated at once (Prometheus's --query.max-concurrency).
    #[serde(default = "default_query_max_concurrency")]
    pub query_max_concurrency: usize,
    /// How far back an instant selector looks for a sample (Prometheus's
    /// --query.lookback-delta).
    #[serde(
        default = "default_query_lookback_delta",
        with = "vigil_common::duration::serde_std"
    )]
    pub query_lookback_delta: Duration,
    /// Prometheus rule files (paths or globs); in the file, a relative path is relative to the
    /// file's directory (as Prometheus's `rule_files`).
    #[serde(default)]
    pub rule_file: Vec<String>,
    /// Alertmanager-format notification config; in the file, relative to the file's directory.
    #[serde(default)]
    pub notify_config: Option<PathBuf>,
    /// Evaluate rules through this Prometheus-compatible API instead of the store.
    #[serde(default)]
    pub rule_query_url: Option<String>,
    /// Interval of rule groups that set none (Prometheus's evaluation_interval).
    #[serde(
        default = "default_rule_evaluation_interval",
        with = "vigil_common::duration::serde_std"
    )]
    pub rule_evaluation_interval: Duration,
    /// Shortest `for` whose pending state is restored after a restart.
    #[serde(
        default = "default_rule_for_grace_period",
        with = "vigil_common::duration::serde_std"
    )]
    pub rule_for_grace_period: Duration,
    /// URL this server is reached at (alerts' generatorURL, templates' $externalURL).
    #[serde(default)]
    pub external_url: Option<String>,
    /// Labels added to alerts sent, each `name=value`.
    #[serde(default)]
    pub external_label: Vec<ExternalLabel>,
    /// Alertmanagers the rules' alerts are also sent to (base URLs).
    #[serde(default)]
    pub alertmanager_url: Vec<String>,
    /// Sinks in their YAML form (`type: influxdb`, ...), then those of `--sink`.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// Authentication and authorization (`token_auth_file`, `client_ca_file`, ...), see
    /// `vigil_server::auth::Args`.
    #[serde(default)]
    pub auth: vigil_server::auth::Args,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8082))
}
fn default_metric_resolution() -> Duration {
    Duration::from_secs(15)
}
fn default_scrape_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_scrape_concurrency() -> usize {
    64
}
fn default_max_document_bytes() -> usize {
    crate::scrape::DEFAULT_MAX_DOCUMENT
}
fn default_retention() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_max_series() -> usize {
    6_000_000
}
fn default_snapshot_interval() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_query_timeout() -> Duration {
    crate::query::QueryLimits::default().timeout
}
fn default_query_max_samples() -> usize {
    crate::query::QueryLimits::default().max_samples
}
fn default_query_max_concurrency() -> usize {
    crate::query::QueryLimits::default().max_concurrency
}
fn default_query_lookback_delta() -> Duration {
    crate::query::QueryLimits::default().lookback_delta
}
fn default_rule_evaluation_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_rule_for_grace_period() -> Duration {
    Duration::from_secs(10 * 60)
}

impl Default for Config {
    fn default() -> Self {
        vigil_common::config::from_yaml("{}", Path::new("(defaults)"))
            .expect("defaults deserialize")
    }
}

/// Command-line options of `vigil aggregator`. Options left unset come from `--config`, then
/// from the defaults; an option given on the command line wins over the file.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// YAML config file with the same settings (snake_case keys) and a `sinks:` list.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address of the HTTP API [default: 0.0.0.0:8082, Heapster's port].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// How often every node is pulled, e.g. 15s (minimum 5s) [default: 15s].
    #[arg(long = "metric-resolution", alias = "metric_resolution", value_parser = vigil_common::duration::parse_std)]
    pub metric_resolution: Option<Duration>,
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
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub scrape_timeout: Option<Duration>,
    /// How many nodes are pulled at the same time [default: 64].
    #[arg(long)]
    pub scrape_concurrency: Option<usize>,
    /// Largest Summary document accepted from a node, in bytes after gzip decoding; a larger
    /// body is refused while it streams in and counted as too_large [default: 8388608].
    #[arg(long)]
    pub max_document_bytes: Option<usize>,
    /// How long the in-memory store keeps every series [default: 15m].
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub retention: Option<Duration>,
    /// Upper bound on stored series; new series beyond it are refused and counted [default: 6000000].
    #[arg(long)]
    pub max_series: Option<usize>,
    /// Directory for the store snapshot (loaded at start, written periodically and on shutdown).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How often the snapshot is written when --data-dir is set [default: 5m].
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub snapshot_interval: Option<Duration>,
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
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub query_timeout: Option<Duration>,
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
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub query_lookback_delta: Option<Duration>,
    /// Rules and notifications (--rule-file, --notify-config, --rule-query-url, ...); also keys
    /// of the config file.
    #[command(flatten)]
    pub alerting: crate::alerting::AlertingArgs,
    /// Who may call the API: tokens, client certificates, TokenReview/SubjectAccessReview.
    #[command(flatten)]
    pub auth: vigil_server::auth::Args,
}

impl Args {
    /// The effective configuration: the file (if any; its relative rule files and notify
    /// config taken relative to its directory), then the flags on top (a list flag replaces
    /// the file's list; `--sink` URIs are added to its sinks), validated.
    pub fn resolve(&self) -> Result<Config, Error> {
        let mut c = match &self.config {
            Some(p) => {
                let mut c: Config = vigil_common::config::load_yaml(p)?;
                c.paths_relative_to(p.parent().unwrap_or(Path::new("")));
                c
            }
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
            metric_resolution,
            scrape_timeout,
            scrape_concurrency,
            max_document_bytes,
            retention,
            max_series,
            snapshot_interval,
            query_timeout,
            query_max_samples,
            query_max_concurrency,
            query_lookback_delta
        );
        let a = &self.alerting;
        if let Some(v) = a.rule_evaluation_interval {
            c.rule_evaluation_interval = v;
        }
        if let Some(v) = a.rule_for_grace_period {
            c.rule_for_grace_period = v;
        }
        if let Some(v) = &a.notify_config {
            c.notify_config = Some(v.clone());
        }
        if let Some(v) = &a.rule_query_url {
            c.rule_query_url = Some(v.clone());
        }
        if let Some(v) = &a.external_url {
            c.external_url = Some(v.clone());
        }
        if !a.rule_files.is_empty() {
            c.rule_file = a.rule_files.clone();
        }
        if !a.external_labels.is_empty() {
            c.external_label = a.external_labels.clone();
        }
        if !a.alertmanager_urls.is_empty() {
            c.alertmanager_url = a.alertmanager_urls.clone();
        }
        set_opt!(
            nodes_file,
            source,
            data_dir,
            secure_listen,
            tls_cert_file,
            tls_private_key_file,
            cert_dir
        );
        if self.nodes.iter().any(|n| !n.trim().is_empty()) {
            c.nodes = self.nodes.clone();
        }
        c.allow_short_resolution |= self.allow_short_resolution;
        c.disable_export |= self.disable_export;
        for uri in &self.sink {
            c.sinks
                .push(SinkConfig::from_uri(uri).map_err(|e| Error::Invalid {
                    option: "sink",
                    message: e.to_string(),
                })?);
        }
        c.auth = self.auth.clone().or(std::mem::take(&mut c.auth));
        c.validate()?;
        Ok(c)
    }
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

impl Config {
    /// Makes the file's relative rule files and notify config relative to `dir`, the config
    /// file's directory (as Prometheus reads `rule_files`); absolute ones stay.
    fn paths_relative_to(&mut self, dir: &Path) {
        for f in &mut self.rule_file {
            if Path::new(f.as_str()).is_relative() {
                *f = dir.join(&*f).display().to_string();
            }
        }
        if let Some(n) = &mut self.notify_config {
            if n.is_relative() {
                *n = dir.join(&*n);
            }
        }
    }

    /// Checks what serde cannot; pure. Errors name the option.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |option: &'static str, message: &str| {
            Err(Error::Invalid {
                option,
                message: message.into(),
            })
        };
        let resolution = self.metric_resolution;
        if resolution < Duration::from_secs(5) && !self.allow_short_resolution {
            return Err(Error::ResolutionTooShort(
                resolution.try_into().unwrap_or_default(),
            ));
        }
        if resolution < Duration::from_millis(100) {
            return invalid("metric-resolution", "must be at least 100ms");
        }
        if self.retention < resolution {
            return invalid("retention", "must be at least one --metric-resolution");
        }
        for (option, zero) in [
            ("scrape-timeout", self.scrape_timeout.is_zero()),
            ("snapshot-interval", self.snapshot_interval.is_zero()),
            ("query-timeout", self.query_timeout.is_zero()),
            (
                "rule-evaluation-interval",
                self.rule_evaluation_interval.is_zero(),
            ),
            (
                "query-lookback-delta",
                self.query_lookback_delta.as_millis() == 0,
            ),
        ] {
            if zero {
                return invalid(option, "must be above zero");
            }
        }
        for (option, zero) in [
            ("scrape-concurrency", self.scrape_concurrency == 0),
            ("max-series", self.max_series == 0),
            ("max-document-bytes", self.max_document_bytes == 0),
            ("query-max-samples", self.query_max_samples == 0),
            ("query-max-concurrency", self.query_max_concurrency == 0),
        ] {
            if zero {
                return invalid(option, "must be at least 1");
            }
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
                    return invalid(option, "has no effect without --secure-listen");
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_private_key_file.is_some() {
            let option = if self.tls_cert_file.is_some() {
                "tls-cert-file"
            } else {
                "tls-private-key-file"
            };
            return invalid(
                option,
                "--tls-cert-file and --tls-private-key-file go together",
            );
        }
        crate::sinks::SinksConfig {
            sinks: self.sinks.clone(),
        }
        .validate()
        .map_err(|e| Error::Invalid {
            option: "config",
            message: format!("sinks: {e}"),
        })
    }

    /// The HTTPS address and where its certificate comes from (None: HTTP only).
    pub fn secure_listen(&self) -> Option<(SocketAddr, crate::tls::TlsOptions)> {
        self.secure_listen.map(|addr| {
            let tls = crate::tls::TlsOptions {
                cert_file: self.tls_cert_file.clone(),
                key_file: self.tls_private_key_file.clone(),
                cert_dir: self.cert_dir.clone(),
            };
            (addr, tls)
        })
    }

    /// Limits of the PromQL query API.
    pub fn query_limits(&self) -> crate::query::QueryLimits {
        crate::query::QueryLimits {
            timeout: self.query_timeout,
            max_samples: self.query_max_samples,
            max_concurrency: self.query_max_concurrency,
            lookback_delta: self.query_lookback_delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn try_args(extra: &[&str]) -> Result<Args, clap::Error> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let mut argv = vec!["agg"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    fn args(extra: &[&str]) -> Args {
        try_args(extra).unwrap()
    }

    #[test]
    fn duration_flags_take_prometheus_durations_and_name_the_flag() {
        let c = args(&[
            "--nodes",
            "a:1",
            "--metric-resolution",
            "1m30s",
            "--query-timeout",
            "500ms",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.metric_resolution, Duration::from_secs(90));
        assert_eq!(c.query_limits().timeout, Duration::from_millis(500));
        // Regression (#19 item 1): an overflowing duration is an error naming the flag.
        for bad in [
            "",
            "15",
            "s",
            "15x",
            "-1s",
            "1.2.3s",
            "99999999999999999999h",
            "1e300s",
        ] {
            let flag = format!("--metric-resolution={bad}");
            let err = try_args(&[&flag]).err().unwrap().to_string();
            assert!(err.contains("--metric-resolution"), "{bad}: {err}");
        }
        let err = try_args(&["--snapshot-interval", "soon"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--snapshot-interval") && err.contains("soon"),
            "{err}"
        );
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

    #[test]
    fn short_resolution_needs_the_flag() {
        let err = args(&["--nodes", "127.0.0.1:1", "--metric-resolution", "1s"])
            .resolve()
            .unwrap_err();
        assert!(
            matches!(err, Error::ResolutionTooShort(d) if d == vigil_common::Duration::from_secs(1)),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("--metric-resolution 1s is below"),
            "{err}"
        );
        let ok = args(&[
            "--nodes",
            "127.0.0.1:1",
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ])
        .resolve()
        .unwrap();
        assert_eq!(ok.metric_resolution, Duration::from_secs(1));
        assert_eq!(ok.listen.port(), 8082);
    }

    #[test]
    fn a_source_is_required_and_bad_values_are_named() {
        assert!(matches!(args(&[]).resolve().unwrap_err(), Error::NoSource));
        for (flags, option) in [
            (&["--scrape-concurrency", "0"][..], "--scrape-concurrency"),
            (&["--retention", "1s"][..], "--retention"),
            (&["--max-document-bytes", "0"][..], "--max-document-bytes"),
            (&["--query-max-samples", "0"][..], "--query-max-samples"),
            (&["--scrape-timeout", "0s"][..], "--scrape-timeout"),
            (&["--tls-cert-file", "c.pem"][..], "--tls-cert-file"),
            (&["--sink", "kafka:x"][..], "--sink"),
        ] {
            let mut a = vec!["--nodes", "a:1"];
            a.extend(flags);
            let err = args(&a).resolve().unwrap_err().to_string();
            assert!(err.starts_with(option), "{flags:?}: {err}");
        }
    }

    fn testdata(name: &str) -> String {
        format!("{}/testdata/config/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn config_file_fills_unset_options_and_flags_win() {
        let c = args(&[
            "--config",
            &testdata("good.yaml"),
            "--retention",
            "2h",
            "--sink",
            "log:?name=flags",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:18082");
        assert_eq!(c.metric_resolution, Duration::from_secs(30));
        assert_eq!(c.scrape_timeout, Duration::from_secs(5));
        assert_eq!(c.scrape_concurrency, 8);
        assert_eq!(c.retention, Duration::from_secs(7200), "the flag wins");
        assert_eq!(c.max_series, 1000);
        assert_eq!(c.snapshot_interval, Duration::from_secs(60));
        assert!(c.disable_export);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.sinks.len(), 3, "the file's two sinks, then --sink");
        // A --sink whose name clashes with one of the file's is refused before start.
        let e = args(&["--config", &testdata("good.yaml"), "--sink", "log"])
            .resolve()
            .unwrap_err();
        assert!(e.to_string().contains("two sinks are named `log`"), "{e}");
        assert!(matches!(&c.sinks[0], SinkConfig::Influxdb(i) if i.db == "k8s"));
        // Flags given for a list replace the file's list; defaults apply without a file.
        let c = args(&["--config", &testdata("good.yaml"), "--nodes", "127.0.0.9:1"])
            .resolve()
            .unwrap();
        assert_eq!(c.nodes, vec!["127.0.0.9:1".to_string()]);
        let c = args(&["--nodes", "a:1"]).resolve().unwrap();
        assert_eq!(
            (
                c.listen.port(),
                c.metric_resolution,
                c.scrape_concurrency,
                c.max_series,
                c.max_document_bytes
            ),
            (
                8082,
                Duration::from_secs(15),
                64,
                6_000_000,
                crate::scrape::DEFAULT_MAX_DOCUMENT
            )
        );
    }

    #[test]
    fn bad_config_files_name_the_file_and_the_key() {
        let load = |name: &str| {
            args(&["--config", &testdata(name)])
                .resolve()
                .unwrap_err()
                .to_string()
        };
        let e = load("unknown-key.yaml");
        assert!(
            e.contains("unknown-key.yaml") && e.contains("metric_resolutoin"),
            "{e}"
        );
        assert!(!e.contains("(flag --"), "a misspelt key names no flag: {e}");
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
            e.contains("bad-value.yaml")
                && e.contains("key `metric_resolution`")
                && e.contains("soon")
                && e.ends_with("(flag --metric-resolution)"),
            "{e}"
        );
        let e = load("missing.yaml");
        assert!(e.contains("--config") && e.contains("missing.yaml"), "{e}");
        // A bare number has no unit: refused, naming the key.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "nodes: [a:1]\nretention: 3600\n").unwrap();
        let e = args(&["--config", f.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("key `retention`") && e.contains("no unit"),
            "{e}"
        );
    }

    #[test]
    fn config_file_fills_unset_alerting_options_and_flags_win() {
        let file = testdata("alerting.yaml");
        let dir = Path::new(&file).parent().unwrap();
        let c = args(&["--config", &file]).resolve().unwrap();
        // The file's relative paths are relative to its directory; absolute ones stay.
        assert_eq!(
            c.rule_file,
            vec![
                dir.join("rules/*.yml").display().to_string(),
                "/etc/vigil/extra.yml".to_string()
            ]
        );
        assert_eq!(c.notify_config, Some(dir.join("notify.yml")));
        assert_eq!(c.rule_query_url.as_deref(), Some("http://127.0.0.1:9090"));
        assert_eq!(c.rule_evaluation_interval, Duration::from_secs(30));
        assert_eq!(c.rule_for_grace_period, Duration::from_secs(300));
        assert_eq!(c.external_url.as_deref(), Some("http://vigil.example"));
        let labels: Vec<_> = c
            .external_label
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(labels, [("cluster", "prod"), ("region", "eu")]);
        assert_eq!(c.alertmanager_url.len(), 2);

        // Flags win; a list flag replaces the file's list; flag paths are taken as given.
        let c = args(&[
            "--config",
            &file,
            "--rule-file",
            "mine.yml",
            "--notify-config",
            "n.yml",
            "--rule-query-url",
            "http://q:9090",
            "--rule-evaluation-interval",
            "10s",
            "--rule-for-grace-period",
            "1h",
            "--external-url",
            "http://flag",
            "--external-label",
            "team=infra",
            "--alertmanager-url",
            "http://am:1",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.rule_file, vec!["mine.yml".to_string()]);
        assert_eq!(c.notify_config, Some(PathBuf::from("n.yml")));
        assert_eq!(c.rule_query_url.as_deref(), Some("http://q:9090"));
        assert_eq!(c.rule_evaluation_interval, Duration::from_secs(10));
        assert_eq!(c.rule_for_grace_period, Duration::from_secs(3600));
        assert_eq!(c.external_url.as_deref(), Some("http://flag"));
        assert_eq!(c.external_label.len(), 1);
        assert_eq!(c.external_label[0].name, "team");
        assert_eq!(c.alertmanager_url, vec!["http://am:1".to_string()]);

        // Without a file or flags: Prometheus's defaults, nothing configured.
        let c = args(&["--nodes", "a:1"]).resolve().unwrap();
        assert!(c.rule_file.is_empty() && c.notify_config.is_none());
        assert_eq!(c.rule_evaluation_interval, Duration::from_secs(60));
        assert_eq!(c.rule_for_grace_period, Duration::from_secs(600));
        assert!(c.external_label.is_empty() && c.alertmanager_url.is_empty());
    }

    #[test]
    fn bad_alerting_keys_name_the_file_the_key_and_the_flag() {
        let load = |name: &str| {
            args(&["--config", &testdata(name)])
                .resolve()
                .unwrap_err()
                .to_string()
        };
        let e = load("bad-external-label.yaml");
        assert!(
            e.contains("bad-external-label.yaml")
                && e.contains("key `external_label[1]`")
                && e.contains("1region")
                && e.ends_with("(flag --external-label)"),
            "{e}"
        );
        let e = load("bad-rule-interval.yaml");
        assert!(
            e.contains("bad-rule-interval.yaml")
                && e.contains("key `rule_for_grace_period`")
                && e.contains("later")
                && e.ends_with("(flag --rule-for-grace-period)"),
            "{e}"
        );
        // A zero interval parses but is refused, naming the option.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "nodes: [a:1]\nrule_evaluation_interval: 0s\n").unwrap();
        let e = args(&["--config", f.to_str().unwrap()])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--rule-evaluation-interval: must be above zero"),
            "{e}"
        );
        // The same label checks apply to the flag.
        let e = try_args(&["--external-label", "no-equals"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("--external-label") && e.contains("name=value"),
            "{e}"
        );
    }
}
