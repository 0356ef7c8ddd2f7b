//! Sink configuration: Heapster's `--sink=KIND:URL?opt=v` URIs and the same in YAML, validated.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Error;

/// The `sinks:` section of the aggregator's YAML config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    /// Sinks every batch is delivered to, as many as wanted.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

impl SinksConfig {
    /// Checks every sink (pure: touches neither disk nor network).
    pub fn validate(&self) -> Result<(), Error> {
        let mut names = std::collections::BTreeSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate().map_err(|reason| Error::Config {
                key: format!("sinks[{i}]"),
                reason,
            })?;
            let name = sink.name();
            if !names.insert(name.clone()) {
                return Err(Error::Config {
                    key: format!("sinks[{i}]"),
                    reason: format!(
                        "two sinks are named `{name}`; give one a distinct `name` (it names the spill directory)"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// One sink, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum SinkConfig {
    /// Writes every point to the log (Heapster's `--sink=log`).
    Log(LogConfig),
    /// InfluxDB 1.x `/write` (Heapster's `--sink=influxdb:...`).
    Influxdb(InfluxdbConfig),
    /// InfluxDB 2.x `/api/v2/write` (`--sink=influxdb2:...`).
    Influxdb2(Influxdb2Config),
    /// Prometheus remote_write 1.0 (`--sink=prometheus-remote-write:...`).
    PrometheusRemoteWrite(RemoteWriteConfig),
}

/// Options of the log sink.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Name in self-metrics and logs; defaults to `log`.
    #[serde(default)]
    pub name: Option<String>,
}

/// Options of the InfluxDB 1.x sink (names as Heapster's URI options where Heapster had them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxdbConfig {
    /// Name in self-metrics, logs and the spill directory; defaults to `influxdb-HOST-PORT-DB`.
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL of the server, e.g. `http://monitoring-influxdb:8086`.
    #[serde(default = "default_influx_url")]
    pub url: String,
    /// User for Basic authentication (empty: none). Heapster's default is `root`.
    #[serde(default = "default_root")]
    pub user: String,
    /// Password for Basic authentication.
    #[serde(default = "default_root")]
    pub pw: String,
    /// Database written to; created when missing.
    #[serde(default = "default_db")]
    pub db: String,
    /// Retention policy written to (`rp=`), and the name given to it when the database is created.
    #[serde(default = "default_rp")]
    pub rp: String,
    /// Duration of the retention policy created with the database (`0` = keep forever), e.g. `7d`.
    #[serde(default = "default_retention")]
    pub retention: String,
    /// How points are written: the options both InfluxDB sinks share.
    #[serde(flatten)]
    pub write: InfluxWrite,
}

/// Options of the InfluxDB 2.x sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Influxdb2Config {
    /// Name in self-metrics, logs and the spill directory; defaults to `influxdb2-HOST-PORT-BUCKET`.
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL of the server, e.g. `http://influxdb:8086`.
    pub url: String,
    /// Organization (`org=`).
    pub org: String,
    /// Bucket (`bucket=`).
    pub bucket: String,
    /// File holding the API token; when absent the token comes from the variable named by `token_env`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the API token when no `token_file` is given.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// How points are written: the options both InfluxDB sinks share.
    #[serde(flatten)]
    pub write: InfluxWrite,
}

/// The write options of both InfluxDB sinks (YAML keys at the sink's level; URI options as
/// Heapster named them). The sink structs flatten it: serde still refuses an unknown key there,
/// as no field of either struct takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfluxWrite {
    /// Heapster's `withfields`: measurement = text before the first `/`, field = the rest.
    #[serde(default)]
    pub with_fields: bool,
    /// Value of the `cluster_name` tag added to every point (empty: no tag).
    #[serde(default = "default_cluster_name")]
    pub cluster_name: String,
    /// Leaves out cumulative metrics (`cpu/usage`, `network/rx`, ...), as Heapster's option.
    #[serde(default)]
    pub disable_counter_metrics: bool,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Most points in one write request.
    #[serde(default = "default_influx_batch")]
    pub batch_size: usize,
    /// Most bytes (before compression) in one write request.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Compresses request bodies with gzip.
    #[serde(default)]
    pub gzip: bool,
    /// Accepts any TLS certificate (Heapster's `insecuressl`).
    #[serde(default)]
    pub insecure_ssl: bool,
    /// Queue, spill and retry settings.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

impl Default for InfluxWrite {
    fn default() -> Self {
        InfluxWrite {
            with_fields: false,
            cluster_name: default_cluster_name(),
            disable_counter_metrics: false,
            concurrency: default_concurrency(),
            batch_size: default_influx_batch(),
            max_body_bytes: default_max_body_bytes(),
            gzip: false,
            insecure_ssl: false,
            delivery: DeliveryConfig::default(),
        }
    }
}

impl InfluxWrite {
    /// Applies one URI option; `Ok(false)` when the key is not one of these.
    fn apply(&mut self, k: &str, v: &str) -> Result<bool, String> {
        match k {
            "withfields" => self.with_fields = parse_bool(k, v)?,
            "cluster_name" => self.cluster_name = v.to_string(),
            "disable_counter_metrics" => self.disable_counter_metrics = parse_bool(k, v)?,
            "concurrency" => self.concurrency = parse_num(k, v)?,
            "batch_size" => self.batch_size = parse_num(k, v)?,
            "max_body_bytes" => {
                self.max_body_bytes = parse_bytes(v).map_err(|e| format!("option `{k}`: {e}"))?
            }
            "gzip" => self.gzip = parse_bool(k, v)?,
            "insecuressl" => self.insecure_ssl = parse_bool(k, v)?,
            _ => return self.delivery.apply(k, v),
        }
        Ok(true)
    }

    fn validate(&self) -> Result<(), String> {
        check_common(self.concurrency, self.batch_size, self.max_body_bytes)?;
        self.delivery.validate()
    }
}

/// Options of the Prometheus remote_write sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Name in self-metrics, logs and the spill directory; defaults to `prometheus-remote-write-HOST-PORT`.
    #[serde(default)]
    pub name: Option<String>,
    /// Full endpoint URL, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: String,
    /// Adds a `cluster_name` label with this value to every series (empty: no label).
    #[serde(default)]
    pub cluster_name: String,
    /// Most samples in one request.
    #[serde(default = "default_rw_batch")]
    pub batch_size: usize,
    /// User for Basic authentication (empty: none).
    #[serde(default)]
    pub user: String,
    /// Password for Basic authentication.
    #[serde(default)]
    pub pw: String,
    /// File holding a bearer token sent as `Authorization: Bearer`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Accepts any TLS certificate.
    #[serde(default)]
    pub insecure_ssl: bool,
    /// Queue, spill and retry settings.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

/// How a sink queues, spills and retries (shared by every network sink).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Timeout of one request, e.g. `20s` (Heapster's `--sink_export_data_timeout`).
    #[serde(default = "default_timeout", with = "duration_text")]
    pub timeout: Duration,
    /// First retry delay; doubles per failure, with jitter.
    #[serde(default = "default_retry_initial", with = "duration_text")]
    pub retry_initial: Duration,
    /// Longest retry delay.
    #[serde(default = "default_retry_max", with = "duration_text")]
    pub retry_max: Duration,
    /// Encoded bytes held in memory before spilling to disk (or, without a data dir, before dropping the oldest).
    #[serde(default = "default_max_memory_bytes")]
    pub max_memory_bytes: u64,
    /// Bytes spilled to disk under the data dir before the oldest are dropped.
    #[serde(default = "default_max_disk_bytes")]
    pub max_disk_bytes: u64,
    /// Batches waiting to be encoded before `push` drops new ones (counted).
    #[serde(default = "default_max_pending_batches")]
    pub max_pending_batches: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: default_timeout(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            max_memory_bytes: default_max_memory_bytes(),
            max_disk_bytes: default_max_disk_bytes(),
            max_pending_batches: default_max_pending_batches(),
        }
    }
}

fn default_influx_url() -> String {
    "http://localhost:8086".into()
}
fn default_root() -> String {
    "root".into()
}
fn default_db() -> String {
    "k8s".into()
}
fn default_rp() -> String {
    "default".into()
}
fn default_retention() -> String {
    "0".into()
}
fn default_cluster_name() -> String {
    "default".into()
}
fn default_concurrency() -> usize {
    1
}
fn default_influx_batch() -> usize {
    10_000
}
fn default_rw_batch() -> usize {
    2_000
}
fn default_max_body_bytes() -> u64 {
    4 << 20
}
fn default_token_env() -> String {
    "INFLUX_TOKEN".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_retry_initial() -> Duration {
    Duration::from_millis(250)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn default_max_memory_bytes() -> u64 {
    32 << 20
}
fn default_max_disk_bytes() -> u64 {
    1 << 30
}
fn default_max_pending_batches() -> usize {
    8
}

/// Parses a Prometheus duration: `250ms`, `20s`, `5m`, `1h30m`, `1d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    vigil_common::duration::parse_std(s.trim()).map_err(|e| e.to_string())
}

fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

/// Parses a byte count: `1048576`, `512KiB`, `64MiB`, `1GiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("`{s}` is not a byte count (expected e.g. 1048576, 512KiB, 64MiB, 1GiB)")
    })?;
    let mul: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "`{s}` is not a byte count (expected e.g. 1048576, 512KiB, 64MiB, 1GiB)"
            ))
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("`{s}` is too large"))
}

mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(format!("option `{key}` must be true or false, not `{v}`")),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("option `{key}` must be a whole number, not `{v}`"))
}

fn check_url(url: &str, what: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(url).map_err(|e| format!("{what} `{url}` is not a URL: {e}"))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(format!("{what} `{url}` must be http:// or https://"));
    }
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(format!("{what} `{url}` has no host"));
    }
    Ok(u)
}

fn sanitize_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn default_name(kind: &str, url: &str, extra: &str) -> String {
    let (host, port) = match url::Url::parse(url) {
        Ok(u) => (
            u.host_str().unwrap_or("").to_string(),
            u.port_or_known_default().unwrap_or(0),
        ),
        Err(_) => (String::new(), 0),
    };
    let mut n = format!("{kind}-{host}-{port}");
    if !extra.is_empty() {
        n.push('-');
        n.push_str(extra);
    }
    sanitize_name(&n)
}

impl DeliveryConfig {
    /// Applies a URI option if it is one of the delivery options; `Ok(false)` when it is not.
    fn apply(&mut self, key: &str, v: &str) -> Result<bool, String> {
        let dur = |v: &str| parse_duration(v).map_err(|e| format!("option `{key}`: {e}"));
        let bytes = |v: &str| parse_bytes(v).map_err(|e| format!("option `{key}`: {e}"));
        match key {
            "timeout" => self.timeout = dur(v)?,
            "retry_initial" => self.retry_initial = dur(v)?,
            "retry_max" => self.retry_max = dur(v)?,
            "max_memory_bytes" => self.max_memory_bytes = bytes(v)?,
            "max_disk_bytes" => self.max_disk_bytes = bytes(v)?,
            "max_pending_batches" => self.max_pending_batches = parse_num(key, v)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Pure check of the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout.is_zero() {
            return Err("`timeout` must be more than 0".into());
        }
        if self.retry_initial.is_zero() || self.retry_initial > self.retry_max {
            return Err("`retry_initial` must be more than 0 and at most `retry_max`".into());
        }
        if self.max_memory_bytes < 1024 {
            return Err("`max_memory_bytes` must be at least 1KiB".into());
        }
        if self.max_disk_bytes < 4096 {
            return Err("`max_disk_bytes` must be at least 4KiB".into());
        }
        if self.max_pending_batches == 0 {
            return Err("`max_pending_batches` must be at least 1".into());
        }
        Ok(())
    }
}

fn check_common(concurrency: usize, batch_size: usize, max_body_bytes: u64) -> Result<(), String> {
    if concurrency == 0 || concurrency > 64 {
        return Err(format!("`concurrency` must be 1..=64, not {concurrency}"));
    }
    if batch_size == 0 {
        return Err("`batch_size` must be at least 1".into());
    }
    if max_body_bytes < 1024 {
        return Err("`max_body_bytes` must be at least 1024".into());
    }
    Ok(())
}

impl SinkConfig {
    /// The sink's name: the configured one or one derived from kind, host, port and database.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::Log(c) => c.name.clone().unwrap_or_else(|| "log".into()),
            SinkConfig::Influxdb(c) => c
                .name
                .clone()
                .unwrap_or_else(|| default_name("influxdb", &c.url, &c.db)),
            SinkConfig::Influxdb2(c) => c
                .name
                .clone()
                .unwrap_or_else(|| default_name("influxdb2", &c.url, &c.bucket)),
            SinkConfig::PrometheusRemoteWrite(c) => c
                .name
                .clone()
                .unwrap_or_else(|| default_name("prometheus-remote-write", &c.url, "")),
        }
    }

    /// The sink's kind as written in `--sink=KIND:...`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Log(_) => "log",
            SinkConfig::Influxdb(_) => "influxdb",
            SinkConfig::Influxdb2(_) => "influxdb2",
            SinkConfig::PrometheusRemoteWrite(_) => "prometheus-remote-write",
        }
    }

    /// Pure check of one sink's values; the error says which key is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = match self {
            SinkConfig::Log(c) => &c.name,
            SinkConfig::Influxdb(c) => &c.name,
            SinkConfig::Influxdb2(c) => &c.name,
            SinkConfig::PrometheusRemoteWrite(c) => &c.name,
        } {
            if n.is_empty() || sanitize_name(n) != *n {
                return Err(format!(
                    "`name` `{n}` may only hold letters, digits, `-`, `_` and `.`"
                ));
            }
        }
        match self {
            SinkConfig::Log(_) => Ok(()),
            SinkConfig::Influxdb(c) => {
                check_url(&c.url, "`url`")?;
                if c.db.is_empty() {
                    return Err("`db` must not be empty".into());
                }
                if c.rp.is_empty() {
                    return Err("`rp` must not be empty".into());
                }
                if c.retention != "0" && !is_influx_duration(&c.retention) {
                    return Err(format!(
                        "`retention` `{}` is not an InfluxQL duration (e.g. 0, 7d, 24h)",
                        c.retention
                    ));
                }
                c.write.validate()
            }
            SinkConfig::Influxdb2(c) => {
                check_url(&c.url, "`url`")?;
                if c.org.is_empty() {
                    return Err("`org` must not be empty".into());
                }
                if c.bucket.is_empty() {
                    return Err("`bucket` must not be empty".into());
                }
                if c.token_file.is_none() && c.token_env.is_empty() {
                    return Err("a token is needed: set `token_file` or `token_env`".into());
                }
                c.write.validate()
            }
            SinkConfig::PrometheusRemoteWrite(c) => {
                check_url(&c.url, "`url`")?;
                if c.batch_size == 0 {
                    return Err("`batch_size` must be at least 1".into());
                }
                if !c.user.is_empty() && c.bearer_token_file.is_some() {
                    return Err("set either `user`/`pw` or `bearer_token_file`, not both".into());
                }
                c.delivery.validate()
            }
        }
    }

    /// Parses one `--sink` value in Heapster's syntax, `KIND[:URL][?opt=v&...]`, and validates it.
    pub fn from_uri(uri: &str) -> Result<SinkConfig, Error> {
        let bad = |reason: String| Error::BadUri {
            uri: uri.to_string(),
            reason,
        };
        let (kind, rest) = match uri.find(':') {
            Some(i) => (&uri[..i], &uri[i + 1..]),
            None => (uri, ""),
        };
        let (base, query) = match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let opts: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let unknown = |k: &str| format!("unknown option `{k}` for a {kind} sink");
        let cfg = match kind {
            "log" => {
                if !base.is_empty() {
                    return Err(bad(format!("the log sink takes no URL, got `{base}`")));
                }
                let mut c = LogConfig::default();
                for (k, v) in &opts {
                    match k.as_str() {
                        "name" => c.name = Some(v.clone()),
                        _ => return Err(bad(unknown(k))),
                    }
                }
                SinkConfig::Log(c)
            }
            "influxdb" => {
                let mut c = InfluxdbConfig {
                    name: None,
                    url: if base.is_empty() { default_influx_url() } else { base.to_string() },
                    user: default_root(),
                    pw: default_root(),
                    db: default_db(),
                    rp: default_rp(),
                    retention: default_retention(),
                    write: InfluxWrite::default(),
                };
                if !c.url.contains("://") {
                    c.url = format!("http://{}", c.url);
                }
                let mut secure = false;
                for (k, v) in &opts {
                    let k = k.as_str();
                    match k {
                        "name" => c.name = Some(v.clone()),
                        "user" => c.user = v.clone(),
                        "pw" => c.pw = v.clone(),
                        "db" => c.db = v.clone(),
                        "rp" => c.rp = v.clone(),
                        "retention" => c.retention = v.clone(),
                        "secure" => secure = parse_bool(k, v).map_err(bad)?,
                        _ => {
                            if !c.write.apply(k, v).map_err(bad)? {
                                return Err(bad(unknown(k)));
                            }
                        }
                    }
                }
                if secure && c.url.starts_with("http://") {
                    c.url = format!("https://{}", &c.url["http://".len()..]);
                }
                SinkConfig::Influxdb(c)
            }
            "influxdb2" => {
                if base.is_empty() {
                    return Err(bad("the influxdb2 sink needs a URL, e.g. influxdb2:http://host:8086?org=o&bucket=b".into()));
                }
                let mut c = Influxdb2Config {
                    name: None,
                    url: base.to_string(),
                    org: String::new(),
                    bucket: String::new(),
                    token_file: None,
                    token_env: default_token_env(),
                    write: InfluxWrite::default(),
                };
                for (k, v) in &opts {
                    let k = k.as_str();
                    match k {
                        "name" => c.name = Some(v.clone()),
                        "org" => c.org = v.clone(),
                        "bucket" => c.bucket = v.clone(),
                        "token_file" => c.token_file = Some(PathBuf::from(v)),
                        "token_env" => c.token_env = v.clone(),
                        "token" => {
                            return Err(bad(
                                "option `token` is not accepted (a secret in a command line leaks); use token_file= or the INFLUX_TOKEN environment variable".into(),
                            ))
                        }
                        _ => {
                            if !c.write.apply(k, v).map_err(bad)? {
                                return Err(bad(unknown(k)));
                            }
                        }
                    }
                }
                SinkConfig::Influxdb2(c)
            }
            "prometheus-remote-write" => {
                if base.is_empty() {
                    return Err(bad("the prometheus-remote-write sink needs a URL, e.g. prometheus-remote-write:http://host:9090/api/v1/write".into()));
                }
                let mut c = RemoteWriteConfig {
                    name: None,
                    url: base.to_string(),
                    cluster_name: String::new(),
                    batch_size: default_rw_batch(),
                    user: String::new(),
                    pw: String::new(),
                    bearer_token_file: None,
                    insecure_ssl: false,
                    delivery: DeliveryConfig::default(),
                };
                for (k, v) in &opts {
                    let k = k.as_str();
                    match k {
                        "name" => c.name = Some(v.clone()),
                        "cluster_name" => c.cluster_name = v.clone(),
                        "batch_size" => c.batch_size = parse_num(k, v).map_err(bad)?,
                        "user" => c.user = v.clone(),
                        "pw" => c.pw = v.clone(),
                        "bearer_token_file" => c.bearer_token_file = Some(PathBuf::from(v)),
                        "insecuressl" => c.insecure_ssl = parse_bool(k, v).map_err(bad)?,
                        _ => {
                            if !c.delivery.apply(k, v).map_err(bad)? {
                                return Err(bad(unknown(k)));
                            }
                        }
                    }
                }
                SinkConfig::PrometheusRemoteWrite(c)
            }
            "" => return Err(bad("the sink kind is missing (expected e.g. influxdb:http://host:8086)".into())),
            other => {
                return Err(bad(format!(
                    "sink kind `{other}` is not supported (supported: log, influxdb, influxdb2, prometheus-remote-write)"
                )))
            }
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }
}

fn is_influx_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h", "d", "w"]
            .iter()
            .find(|u| rest.starts_with(*u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {

    #[test]
    fn huge_duration_is_an_error_not_an_overflow() {
        // Regression (#19 item 1): `n * 3600` overflowed u64.
        let err = super::parse_duration("99999999999999999h").unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }
    use super::*;

    #[test]
    fn heapster_influxdb_uri_parses_with_defaults() {
        let c = SinkConfig::from_uri("influxdb:http://monitoring-influxdb:8086").unwrap();
        let SinkConfig::Influxdb(c) = c else { panic!() };
        assert_eq!(c.url, "http://monitoring-influxdb:8086");
        assert_eq!(
            (c.user.as_str(), c.pw.as_str(), c.db.as_str()),
            ("root", "root", "k8s")
        );
        assert_eq!(c.write.cluster_name, "default");
        assert!(!c.write.with_fields);
        assert_eq!(c.write.batch_size, 10_000);
    }

    #[test]
    fn influxdb_options_parse() {
        let c = SinkConfig::from_uri(
            "influxdb:http://h:8086?db=m&user=&pw=&withfields=true&cluster_name=c1&concurrency=4&retention=7d&gzip=true&retry_max=2s&max_disk_bytes=64MiB&secure=true",
        )
        .unwrap();
        let SinkConfig::Influxdb(c) = c else { panic!() };
        assert_eq!(c.url, "https://h:8086");
        assert_eq!(c.db, "m");
        assert_eq!(c.user, "");
        assert!(c.write.with_fields && c.write.gzip);
        assert_eq!(c.write.concurrency, 4);
        assert_eq!(c.write.delivery.retry_max, Duration::from_secs(2));
        assert_eq!(c.write.delivery.max_disk_bytes, 64 << 20);
        assert_eq!(c.retention, "7d");
    }

    #[test]
    fn bad_uris_name_the_option_and_the_problem() {
        let cases = [
            ("kafka:http://x", "not supported"),
            ("influxdb:http://h:8086?withfields=maybe", "withfields"),
            ("influxdb:http://h:8086?bogus=1", "unknown option `bogus`"),
            ("influxdb:http://h:8086?concurrency=0", "concurrency"),
            ("influxdb:ftp://h", "http"),
            ("influxdb2:http://h:8086?org=o", "bucket"),
            ("influxdb2:http://h:8086?org=o&bucket=b&token=abc", "token"),
            ("prometheus-remote-write:", "needs a URL"),
            (
                "prometheus-remote-write:http://h/api/v1/write?retry_max=soon",
                "retry_max",
            ),
            ("influxdb:http://h?retention=forever", "retention"),
            ("log:http://x", "no URL"),
            (":http://x", "kind is missing"),
        ];
        for (uri, want) in cases {
            let e = SinkConfig::from_uri(uri).unwrap_err().to_string();
            assert!(e.contains("--sink"), "{uri}: {e}");
            assert!(e.contains(want), "{uri}: {e} lacks {want}");
        }
    }

    #[test]
    fn log_and_remote_write_parse() {
        assert_eq!(
            SinkConfig::from_uri("log").unwrap(),
            SinkConfig::Log(LogConfig::default())
        );
        let c = SinkConfig::from_uri(
            "prometheus-remote-write:http://127.0.0.1:9090/api/v1/write?batch_size=500",
        )
        .unwrap();
        assert_eq!(c.name(), "prometheus-remote-write-127.0.0.1-9090");
        let SinkConfig::PrometheusRemoteWrite(c) = c else {
            panic!()
        };
        assert_eq!(c.url, "http://127.0.0.1:9090/api/v1/write");
        assert_eq!(c.batch_size, 500);
    }

    #[test]
    fn yaml_form_parses_and_rejects_unknown_keys() {
        let y = "sinks:\n  - type: influxdb\n    url: http://127.0.0.1:8086\n    db: k8s\n    with_fields: true\n    delivery:\n      retry_max: 5s\n      max_disk_bytes: 1048576\n  - type: prometheus-remote-write\n    url: http://127.0.0.1:9090/api/v1/write\n  - type: log\n";
        let c: SinksConfig = vigil_common::config::from_yaml(y, std::path::Path::new("t.yaml")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.sinks.len(), 3);
        let SinkConfig::Influxdb(i) = &c.sinks[0] else {
            panic!()
        };
        assert!(i.write.with_fields);
        assert_eq!(i.write.delivery.retry_max, Duration::from_secs(5));
        let bad = "sinks:\n  - type: influxdb\n    url: http://h:8086\n    colour: red\n";
        let e = vigil_common::config::from_yaml::<SinksConfig>(bad, std::path::Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        // The shared write options are flattened into each sink: a misspelt one is still refused.
        let bad = "sinks:\n  - type: influxdb2\n    url: http://h:8086\n    org: o\n    bucket: b\n    batch_sise: 10\n";
        let e = vigil_common::config::from_yaml::<SinksConfig>(bad, std::path::Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("batch_sise") && e.contains("t.yaml"), "{e}");
        let ok = "sinks:\n  - type: influxdb2\n    url: http://h:8086\n    org: o\n    bucket: b\n    batch_size: 10\n    gzip: true\n";
        let c: SinksConfig = vigil_common::config::from_yaml(ok, std::path::Path::new("t.yaml")).unwrap();
        let SinkConfig::Influxdb2(i) = &c.sinks[0] else {
            panic!()
        };
        assert_eq!((i.write.batch_size, i.write.gzip), (10, true));
        let dup = "sinks:\n  - type: log\n  - type: log\n";
        let c: SinksConfig = vigil_common::config::from_yaml(dup, std::path::Path::new("t.yaml")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("sinks[1]") && e.contains("named"), "{e}");
    }

    #[test]
    fn durations_and_bytes_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("2 weeks").is_err());
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert!(parse_bytes("1GB").is_err());
        assert!(is_influx_duration("1h30m"));
        assert!(!is_influx_duration("1x"));
    }
}
