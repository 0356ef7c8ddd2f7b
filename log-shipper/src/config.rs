//! The YAML configuration of `vigil log-shipper` (unknown keys are errors) and its validation.

use crate::discovery::DiscoveryConfig;
use crate::enrich::{IndexPattern, RecordConfig};
pub use crate::metadata::MetadataConfig;
use crate::parse::OverLong;
use crate::sinks::elasticsearch::EsConfig;
use crate::sinks::file::FileSinkConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_common::config::RenamedKey;

/// Errors loading or validating the configuration; each names the key (and the file).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or parsing the file (size-capped, depth-bounded; names the file and the key).
    #[error(transparent)]
    Load(#[from] vigil_common::config::LoadError),
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP server (`/metrics`, `/healthz`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The listener's certificate (`tls_cert_file`, `tls_private_key_file`: HTTPS only, and
    /// client certificates can authenticate; without, plain HTTP) and who may call `/metrics`
    /// (`auth:`), see `vigil_server::ListenerArgs`.
    #[serde(flatten)]
    pub listener: vigil_server::ListenerArgs,
    /// Directory for checkpoints and the dead-letter file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Which files to tail.
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    /// Labels, annotations, node and image of each pod from the kubelet or the API server, cached and refreshed in the
    /// background (records read before a pod's metadata arrives carry path metadata only).
    #[serde(default)]
    pub kubernetes_metadata: Option<MetadataConfig>,
    /// Line parsing.
    #[serde(default)]
    pub parse: ParseConfig,
    /// Record shaping.
    #[serde(default)]
    pub record: RecordConfig,
    /// Where records go.
    #[serde(default)]
    pub sink: Option<SinkSection>,
    /// How often open files are checked for growth without an inotify event, e.g. `250ms`.
    #[serde(default = "default_poll", with = "vigil_common::duration::serde_std")]
    pub poll_interval: Duration,
    /// How often changed checkpoints are written, e.g. `1s`.
    #[serde(
        default = "default_checkpoint",
        with = "vigil_common::duration::serde_std"
    )]
    pub checkpoint_interval: Duration,
    /// Deleted log files not yet read to the end (the kubelet keeps 5 per container) are held open, so that an
    /// Elasticsearch outage loses nothing, up to this many bytes on disk together; past it the oldest is let go and
    /// its unread bytes are counted in `vigil_log_shipper_lost_bytes_total`.
    #[serde(default = "default_deleted_max")]
    pub deleted_files_max_bytes: u64,
}

fn default_listen() -> String {
    "0.0.0.0:2020".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/vigil/log-shipper")
}
fn default_poll() -> Duration {
    Duration::from_millis(250)
}
fn default_checkpoint() -> Duration {
    Duration::from_secs(1)
}
fn default_deleted_max() -> u64 {
    1 << 30
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            listener: Default::default(),
            data_dir: default_data_dir(),
            discovery: DiscoveryConfig::default(),
            kubernetes_metadata: None,
            parse: ParseConfig::default(),
            record: RecordConfig::default(),
            sink: None,
            poll_interval: default_poll(),
            checkpoint_interval: default_checkpoint(),
            deleted_files_max_bytes: default_deleted_max(),
        }
    }
}

/// Line parsing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// Largest line or joined record kept, in bytes.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
    /// `truncate` (keep the first `max_line_bytes`, flag `truncated`) or `drop` (count and skip).
    #[serde(default)]
    pub over_long: OverLong,
    /// Multiline rules; the first whose namespace/container match a file applies to it.
    #[serde(default)]
    pub multiline: Vec<MultilineConfig>,
}

fn default_max_line() -> usize {
    1 << 20
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            max_line_bytes: default_max_line(),
            over_long: OverLong::Truncate,
            multiline: Vec::new(),
        }
    }
}

/// One multiline rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Only files of this namespace (any if unset).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Only containers of this name (any if unset).
    #[serde(default)]
    pub container: Option<String>,
    /// Regex a record's first line matches; other lines are appended to the record.
    pub start_pattern: String,
    /// Emit a pending record after this long without a new line, e.g. `1s`.
    #[serde(default = "default_flush", with = "vigil_common::duration::serde_std")]
    pub flush_timeout: Duration,
}

fn default_flush() -> Duration {
    Duration::from_secs(1)
}

/// The keys that counted milliseconds before they became durations (`poll_interval_ms: 250` is
/// `poll_interval: 250ms`): still read, with a deprecation warning naming the new key.
pub const RENAMED_KEYS: &[RenamedKey] = &[
    RenamedKey {
        parent: "",
        old: "poll_interval_ms",
        new: "poll_interval",
    },
    RenamedKey {
        parent: "",
        old: "checkpoint_interval_ms",
        new: "checkpoint_interval",
    },
    RenamedKey {
        parent: "discovery",
        old: "rescan_interval_ms",
        new: "rescan_interval",
    },
    RenamedKey {
        parent: "parse.multiline[]",
        old: "flush_timeout_ms",
        new: "flush_timeout",
    },
    RenamedKey {
        parent: "kubernetes_metadata",
        old: "refresh_interval_ms",
        new: "refresh_interval",
    },
    RenamedKey {
        parent: "kubernetes_metadata",
        old: "cache_ttl_ms",
        new: "cache_ttl",
    },
    RenamedKey {
        parent: "kubernetes_metadata",
        old: "request_timeout_ms",
        new: "request_timeout",
    },
    RenamedKey {
        parent: "sink.elasticsearch",
        old: "batch_timeout_ms",
        new: "batch_timeout",
    },
    RenamedKey {
        parent: "sink.elasticsearch",
        old: "request_timeout_ms",
        new: "request_timeout",
    },
    RenamedKey {
        parent: "sink.elasticsearch",
        old: "backoff_initial_ms",
        new: "backoff_initial",
    },
    RenamedKey {
        parent: "sink.elasticsearch",
        old: "backoff_max_ms",
        new: "backoff_max",
    },
];

/// The `sink` section: set exactly one of its keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSection {
    /// Elasticsearch `_bulk`.
    #[serde(default)]
    pub elasticsearch: Option<EsConfig>,
    /// An NDJSON file, rotated by size.
    #[serde(default)]
    pub file: Option<FileSinkConfig>,
    /// `true`: documents as NDJSON on standard output.
    #[serde(default)]
    pub stdout: bool,
}

impl SinkSection {
    /// The one configured sink.
    pub fn resolve(&self) -> Result<SinkConfig, String> {
        match (&self.elasticsearch, &self.file, self.stdout) {
            (Some(es), None, false) => Ok(SinkConfig::Elasticsearch(es.clone())),
            (None, Some(f), false) => Ok(SinkConfig::File(f.clone())),
            (None, None, true) => Ok(SinkConfig::Stdout),
            (None, None, false) => Err("sink: set one of elasticsearch, file, stdout".into()),
            _ => Err("sink: set only one of elasticsearch, file, stdout".into()),
        }
    }
}

impl From<SinkConfig> for SinkSection {
    fn from(s: SinkConfig) -> Self {
        match s {
            SinkConfig::Elasticsearch(es) => SinkSection {
                elasticsearch: Some(es),
                ..Default::default()
            },
            SinkConfig::File(f) => SinkSection {
                file: Some(f),
                ..Default::default()
            },
            SinkConfig::Stdout => SinkSection {
                stdout: true,
                ..Default::default()
            },
        }
    }
}

/// The resolved sink.
#[derive(Debug, Clone)]
pub enum SinkConfig {
    Elasticsearch(EsConfig),
    File(FileSinkConfig),
    Stdout,
}

impl SinkConfig {
    /// Parses `--sink`: `elasticsearch:<url>` (or `es:<url>`), `file:<path>`, `stdout`.
    pub fn from_flag(s: &str) -> Result<Self, ConfigError> {
        let bad = |m: String| ConfigError::Invalid {
            origin: "--sink".into(),
            message: m,
        };
        if s == "stdout" {
            return Ok(SinkConfig::Stdout);
        }
        if let Some(url) = s
            .strip_prefix("elasticsearch:")
            .or_else(|| s.strip_prefix("es:"))
        {
            return Ok(SinkConfig::Elasticsearch(EsConfig::new(url.to_string())));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err(bad("file: needs a path".into()));
            }
            return Ok(SinkConfig::File(FileSinkConfig::new(PathBuf::from(path))));
        }
        Err(bad(format!(
            "{s:?}: expected elasticsearch:<url>, file:<path> or stdout"
        )))
    }
}

impl Config {
    /// Reads a YAML file (size-capped, depth-bounded); an old `_ms` key is read as its new key
    /// and logged once as deprecated.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = vigil_common::config::read_capped(path)?;
        let (config, warnings) = Self::from_yaml(&text, path)?;
        for w in warnings {
            tracing::warn!("{w}");
        }
        Ok(config)
    }

    /// Parses YAML text (`path` names it in messages), with the deprecation warnings of the old
    /// keys it uses.
    pub fn from_yaml(text: &str, path: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        Ok(vigil_common::config::from_yaml_renamed(
            text,
            path,
            RENAMED_KEYS,
        )?)
    }

    /// Checks the configuration without I/O. `origin` names where it came from (the file, or flags).
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Invalid {
            origin: origin.into(),
            message,
        };
        if let Some(m) = &self.kubernetes_metadata {
            m.validate().map_err(bad)?;
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(bad(format!(
                "listen {:?}: not an address such as 0.0.0.0:2020",
                self.listen
            )));
        }
        self.listener.validate("log shipper").map_err(bad)?;
        if self.discovery.roots.is_empty() {
            return Err(bad("discovery.roots: at least one root is needed".into()));
        }
        if self.discovery.include.is_empty() {
            return Err(bad("discovery.include: at least one glob is needed".into()));
        }
        for (key, d) in [
            ("discovery.rescan_interval", self.discovery.rescan_interval),
            ("poll_interval", self.poll_interval),
        ] {
            if d.is_zero() {
                return Err(bad(format!("{key}: must be longer than 0s")));
            }
        }
        if self.parse.max_line_bytes < 64 {
            return Err(bad(format!(
                "parse.max_line_bytes {}: must be at least 64",
                self.parse.max_line_bytes
            )));
        }
        for (i, m) in self.parse.multiline.iter().enumerate() {
            if let Err(e) = regex::bytes::Regex::new(&m.start_pattern) {
                return Err(bad(format!("parse.multiline[{i}].start_pattern: {e}")));
            }
            if m.flush_timeout.is_zero() {
                return Err(bad(format!(
                    "parse.multiline[{i}].flush_timeout: must be longer than 0s"
                )));
            }
        }
        let Some(section) = &self.sink else {
            return Err(bad("no sink: set --sink (elasticsearch:<url>, file:<path>, stdout) or `sink` in the config".into()));
        };
        match section.resolve().map_err(bad)? {
            SinkConfig::Elasticsearch(es) => {
                es.validate().map_err(bad)?;
                IndexPattern::parse(es.target())
                    .map_err(|e| bad(format!("sink.elasticsearch.index: {e}")))?;
            }
            SinkConfig::File(f) => {
                if f.max_bytes == 0 {
                    return Err(bad("sink.file.max_bytes: must be > 0".into()));
                }
            }
            SinkConfig::Stdout => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    fn yaml<T: serde::de::DeserializeOwned>(
        text: &str,
    ) -> Result<T, vigil_common::config::LoadError> {
        vigil_common::config::from_yaml(text, std::path::Path::new("test.yaml"))
    }
    use super::*;

    #[test]
    fn full_yaml_parses_and_validates() {
        let c: Config = yaml(
            r#"
listen: 127.0.0.1:2020
data_dir: /tmp/x
discovery: {roots: [/var/log/pods], exclude: ["kube-system_*/**"]}
parse:
  max_line_bytes: 65536
  over_long: drop
  multiline: [{namespace: shop, start_pattern: '^\d{4}-', flush_timeout: 500ms}]
record: {merge_log: true}
sink:
  elasticsearch: {url: "http://127.0.0.1:9200", index: "logs-{namespace}-%Y.%m.%d", gzip: true, concurrency: 4}
"#,
        )
        .unwrap();
        c.validate("test.yaml").unwrap();
        assert_eq!(c.parse.over_long, OverLong::Drop);
        assert_eq!(
            c.parse.multiline[0].flush_timeout,
            Duration::from_millis(500)
        );
    }

    fn load(text: &str) -> Result<(Config, Vec<String>), String> {
        Config::from_yaml(text, Path::new("f.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_are_written_with_units() {
        let (c, w) = load(
            "poll_interval: 100ms\ncheckpoint_interval: 2s\ndiscovery: {rescan_interval: 1m}\n\
             kubernetes_metadata: {source: apiserver, refresh_interval: 10s, cache_ttl: 1h, request_timeout: 3s}\n\
             sink: {elasticsearch: {url: 'http://h:9200', batch_timeout: 250ms, request_timeout: 1m30s, backoff_initial: 50ms, backoff_max: 5s}}\n",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            (
                c.poll_interval,
                c.checkpoint_interval,
                c.discovery.rescan_interval
            ),
            (
                Duration::from_millis(100),
                Duration::from_secs(2),
                Duration::from_secs(60)
            )
        );
        let m = c.kubernetes_metadata.as_ref().unwrap();
        assert_eq!(
            (m.refresh_interval, m.cache_ttl, m.request_timeout),
            (
                Duration::from_secs(10),
                Duration::from_secs(3600),
                Duration::from_secs(3)
            )
        );
        let es = c.sink.as_ref().unwrap().elasticsearch.as_ref().unwrap();
        assert_eq!(
            (
                es.batch_timeout,
                es.request_timeout,
                es.backoff_initial,
                es.backoff_max
            ),
            (
                Duration::from_millis(250),
                Duration::from_secs(90),
                Duration::from_millis(50),
                Duration::from_secs(5)
            )
        );
        // A bare number has no unit: refused, naming the key.
        for (text, key) in [
            (
                "discovery: {rescan_interval: 10}\n",
                "key `discovery.rescan_interval`",
            ),
            ("poll_interval: 250\n", "key `poll_interval`"),
            (
                "sink: {elasticsearch: {url: 'http://h:9200', backoff_max: 1.5}}\n",
                "key `sink.elasticsearch.backoff_max`",
            ),
        ] {
            let e = load(text).unwrap_err();
            assert!(
                e.starts_with("config file f.yaml: ") && e.contains(key) && e.contains("no unit"),
                "{e}"
            );
        }
        let (c, _) = load("sink: {stdout: true}\ndiscovery: {rescan_interval: 0s}\n").unwrap();
        let e = c.validate("f.yaml").unwrap_err().to_string();
        assert!(
            e.contains("discovery.rescan_interval: must be longer than 0s"),
            "{e}"
        );
    }

    #[test]
    fn old_millisecond_keys_still_work_with_one_warning_each() {
        let (c, w) = load(
            "poll_interval_ms: 100\ncheckpoint_interval_ms: 2000\ndiscovery: {rescan_interval_ms: 50}\n\
             parse: {multiline: [{start_pattern: x, flush_timeout_ms: 300}]}\n\
             kubernetes_metadata: {source: apiserver, refresh_interval_ms: 200, cache_ttl_ms: 60000, request_timeout_ms: 1500}\n\
             sink: {elasticsearch: {url: 'http://h:9200', batch_timeout_ms: 100, request_timeout_ms: 30000, backoff_initial_ms: 20, backoff_max_ms: 100}}\n",
        )
        .unwrap();
        assert_eq!(w.len(), RENAMED_KEYS.len(), "{w:?}");
        assert!(
            w.contains(&"config file f.yaml: key `discovery.rescan_interval_ms` is deprecated and will be removed: write `discovery.rescan_interval: 50ms`".to_string()),
            "{w:?}"
        );
        assert!(
            w.iter()
                .any(|w| w.contains("`parse.multiline[0].flush_timeout: 300ms`")),
            "{w:?}"
        );
        assert_eq!(c.discovery.rescan_interval, Duration::from_millis(50));
        assert_eq!(
            c.parse.multiline[0].flush_timeout,
            Duration::from_millis(300)
        );
        assert_eq!(
            c.kubernetes_metadata.as_ref().unwrap().cache_ttl,
            Duration::from_secs(60)
        );
        let es = c.sink.as_ref().unwrap().elasticsearch.as_ref().unwrap();
        assert_eq!(
            (es.backoff_initial, es.backoff_max),
            (Duration::from_millis(20), Duration::from_millis(100))
        );
        assert_eq!(c.poll_interval, Duration::from_millis(100));
        c.validate("f.yaml").unwrap();

        // Old and new spelling of one key: an error naming both.
        let e = load("discovery: {rescan_interval_ms: 50, rescan_interval: 1s}\n").unwrap_err();
        assert!(
            e.contains("key `discovery.rescan_interval_ms`")
                && e.contains("keep only `rescan_interval`"),
            "{e}"
        );
        let e = load("sink: {elasticsearch: {url: 'http://h:9200', backoff_max_ms: 1s}}\n")
            .unwrap_err();
        assert!(
            e.contains("key `sink.elasticsearch.backoff_max_ms`") && e.contains("milliseconds"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_the_key() {
        let e = yaml::<Config>("sink: {stdout: true}\nlisten_addr: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_addr"), "{e}");
        let mut c: Config =
            yaml("sink: {stdout: true}\nparse: {multiline: [{start_pattern: '('}]}\n").unwrap();
        let e = c.validate("f.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with("f.yaml: parse.multiline[0].start_pattern"),
            "{e}"
        );
        c.parse.multiline.clear();
        c.kubernetes_metadata = Some(MetadataConfig::new(crate::metadata::Source::Kubelet, None));
        let e = c.validate("f.yaml").unwrap_err().to_string();
        assert!(e.starts_with("f.yaml: kubernetes_metadata.url"), "{e}");
        let e = yaml::<Config>("kubernetes_metadata: {source: kubelet, url: 'https://127.0.0.1:10250', label: false}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("label"), "{e}");
        let e = yaml::<Config>("kubernetes_metadata: {source: etcd}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("etcd"), "{e}");
        let c: Config =
            yaml("sink: {elasticsearch: {url: 'http://h:9200', index: 'x-%H'}}\n").unwrap();
        assert!(c
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("sink.elasticsearch.index"));
        let c = Config::default();
        assert!(c
            .validate("flags")
            .unwrap_err()
            .to_string()
            .contains("no sink"));
        let c: Config = yaml("sink: {stdout: true, file: {path: /tmp/x}}\n").unwrap();
        assert!(c
            .validate("f")
            .unwrap_err()
            .to_string()
            .contains("only one"));
    }

    #[test]
    fn tls_files_go_together_and_turn_on_https() {
        let c: Config = yaml("sink: {stdout: true}\n").unwrap();
        assert!(c.listener.tls().is_none());
        let c: Config = yaml(
            "sink: {stdout: true}\ntls_cert_file: /etc/vigil/tls.crt\ntls_private_key_file: /etc/vigil/tls.key\n",
        )
        .unwrap();
        c.validate("f.yaml").unwrap();
        assert!(c
            .listener
            .tls()
            .is_some_and(|t| t.key_file.as_deref() == Some(Path::new("/etc/vigil/tls.key"))));
        let c: Config = yaml("sink: {stdout: true}\ntls_private_key_file: /k\n").unwrap();
        let e = c.validate("f.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "f.yaml: --tls-cert-file and --tls-private-key-file go together: tls_cert_file"
            ),
            "{e}"
        );
    }

    #[test]
    fn sink_flag_forms() {
        assert!(matches!(
            SinkConfig::from_flag("stdout").unwrap(),
            SinkConfig::Stdout
        ));
        assert!(matches!(
            SinkConfig::from_flag("es:http://127.0.0.1:9200").unwrap(),
            SinkConfig::Elasticsearch(_)
        ));
        assert!(matches!(
            SinkConfig::from_flag("file:/tmp/a.ndjson").unwrap(),
            SinkConfig::File(_)
        ));
        assert!(SinkConfig::from_flag("kafka:x").is_err());
    }
}
