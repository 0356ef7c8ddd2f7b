//! Peer harness for the sink tests: starts the real InfluxDB 1.6, VictoriaMetrics and
//! Prometheus on free 127.0.0.1 ports with temp dirs (killed by pid on Drop), reads data back
//! through their query APIs, and builds Heapster-shaped batches by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use vigil_aggregator::batch::{Batch, LabeledMetric, MetricSet, MetricValue};
use super::free_port;

/// A running peer process, killed (by its pid) and reaped on Drop.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(bin: &str, args: &[String], log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start the test peer `{bin}` (install it: scripts/test.sh does): {e}")
            });
        Proc {
            child: Some(child),
            log,
        }
    }

    /// Stops the process gracefully (SIGTERM, so it flushes what it accepted), killing it after 15s.
    pub fn stop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.kill();
    }

    /// Kills the process now.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to a pid (our own child).
fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

async fn wait_http(url: &str, proc: &mut Proc, what: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        if let Some(c) = proc.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!(
                    "{what} exited ({st}) before it was ready; its log:\n{}",
                    proc.log_text()
                );
            }
        }
        if Instant::now() > deadline {
            panic!(
                "{what} not ready at {url} after 30s; its log:\n{}",
                proc.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// InfluxDB 1.6 (`influxd`).
pub struct Influx {
    pub proc: Proc,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
}

impl Influx {
    pub async fn start() -> Influx {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()), free_port()).await
    }

    /// Starts on a given dir and port (a restart keeps both).
    pub async fn start_in(dir: Arc<tempfile::TempDir>, port: u16) -> Influx {
        let d = dir.path();
        let rpc = free_port();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{m}\"\n\
             [data]\n  dir = \"{data}\"\n  wal-dir = \"{wal}\"\n  query-log-enabled = false\n\
             [http]\n  bind-address = \"127.0.0.1:{port}\"\n  log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [continuous_queries]\n  enabled = false\n\
             [logging]\n  level = \"warn\"\n",
            m = d.join("meta").display(),
            data = d.join("data").display(),
            wal = d.join("wal").display(),
        );
        let conf_path = d.join("influxdb.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut proc = Proc::spawn(
            "influxd",
            &[
                "run".into(),
                "-config".into(),
                conf_path.display().to_string(),
            ],
            d.join(format!(
                "influxd-{port}-{}.log",
                Instant::now().elapsed().as_nanos()
            )),
        );
        wait_http(
            &format!("http://127.0.0.1:{port}/ping"),
            &mut proc,
            "influxd",
        )
        .await;
        Influx { proc, port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs an InfluxQL query; returns the JSON answer.
    pub async fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let r = reqwest::Client::new()
            .get(format!("{}/query", self.url()))
            .query(&[("db", db), ("q", q), ("epoch", "ns")])
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// Every point of `db` as (measurement, tags, field, value, time ns), via `SELECT * ... GROUP BY *`.
    pub async fn all_points(&self, db: &str) -> Vec<InfluxPoint> {
        // Field types as stored, so 1.0 stored as a float is not mistaken for an integer.
        let keys = self.query(db, "SHOW FIELD KEYS").await;
        let mut types: BTreeMap<(String, String), String> = BTreeMap::new();
        for s in keys["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            for row in s["values"].as_array().unwrap() {
                types.insert(
                    (
                        s["name"].as_str().unwrap().to_string(),
                        row[0].as_str().unwrap().to_string(),
                    ),
                    row[1].as_str().unwrap().to_string(),
                );
            }
        }
        let v = self.query(db, "SELECT * FROM /.*/ GROUP BY *").await;
        let mut out = Vec::new();
        let Some(series) = v["results"][0]["series"].as_array() else {
            return out;
        };
        for s in series {
            let name = s["name"].as_str().unwrap().to_string();
            let tags: BTreeMap<String, String> = s["tags"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| {
                            v.as_str()
                                .filter(|x| !x.is_empty())
                                .map(|x| (k.clone(), x.to_string()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cols: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_string())
                .collect();
            for row in s["values"].as_array().unwrap() {
                let row = row.as_array().unwrap();
                let time = row[0].as_i64().unwrap();
                for (i, c) in cols.iter().enumerate().skip(1) {
                    if row[i].is_null() {
                        continue;
                    }
                    out.push(InfluxPoint {
                        measurement: name.clone(),
                        tags: tags.clone(),
                        field: c.clone(),
                        value: match types.get(&(name.clone(), c.clone())).map(String::as_str) {
                            Some("integer") => Num::Int(row[i].as_i64().unwrap()),
                            Some("float") => Num::Float(row[i].as_f64().unwrap()),
                            other => panic!("field {name}.{c} has type {other:?}"),
                        },
                        time,
                    });
                }
            }
        }
        out.sort();
        out
    }
}

/// A number as the server gave it back: integer or float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn from_json(v: &serde_json::Value) -> Num {
        if let Some(i) = v.as_i64() {
            if v.is_i64() || v.is_u64() {
                return Num::Int(i);
            }
        }
        Num::Float(v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")))
    }
    pub fn from_value(v: MetricValue) -> Num {
        match v {
            MetricValue::Int(i) => Num::Int(i),
            MetricValue::Float(f) => Num::Float(f),
        }
    }
}

impl Eq for Num {}
impl Ord for Num {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        match (self, o) {
            (Num::Int(a), Num::Int(b)) => a.cmp(b),
            (Num::Float(a), Num::Float(b)) => a.total_cmp(b),
            (Num::Int(_), Num::Float(_)) => std::cmp::Ordering::Less,
            (Num::Float(_), Num::Int(_)) => std::cmp::Ordering::Greater,
        }
    }
}
impl PartialOrd for Num {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// One point as stored in InfluxDB.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InfluxPoint {
    pub measurement: String,
    pub tags: BTreeMap<String, String>,
    pub field: String,
    pub value: Num,
    pub time: i64,
}

/// What Heapster's InfluxDB sink writes for these batches (an independent oracle for the tests).
pub fn expected_influx_points(
    batches: &[Batch],
    with_fields: bool,
    cluster_name: &str,
) -> Vec<InfluxPoint> {
    let mut out = Vec::new();
    for b in batches {
        let time = b.timestamp.timestamp_nanos_opt().unwrap();
        for set in b.sets.values() {
            let mut base: BTreeMap<String, String> = set
                .labels
                .iter()
                .filter(|(k, v)| {
                    !v.is_empty()
                        && !["namespace_id", "pod_id", "hostname", "host_id"].contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            base.insert("cluster_name".into(), cluster_name.into());
            let mut add = |name: &str, tags: BTreeMap<String, String>, v: MetricValue| {
                let (m, f) = match (with_fields, name.split_once('/')) {
                    (true, Some((m, f))) => (m.to_string(), f.to_string()),
                    _ => (name.to_string(), "value".to_string()),
                };
                out.push(InfluxPoint {
                    measurement: m,
                    tags,
                    field: f,
                    value: Num::from_value(v),
                    time,
                });
            };
            for (n, v) in &set.values {
                add(n, base.clone(), *v);
            }
            for lm in &set.labeled {
                let mut t = base.clone();
                t.extend((*lm.labels).clone());
                add(&lm.name, t, lm.value);
            }
        }
    }
    out.sort();
    out
}

/// An `/api/v1/export` answer: per series its labels, values and timestamps (ms).
pub type Export = Vec<(BTreeMap<String, String>, Vec<f64>, Vec<i64>)>;

/// VictoriaMetrics (single node).
pub struct Victoria {
    pub proc: Proc,
    pub port: u16,
    pub dir: Arc<tempfile::TempDir>,
}

impl Victoria {
    pub async fn start() -> Victoria {
        Self::start_in(Arc::new(tempfile::tempdir().unwrap()), free_port()).await
    }

    pub async fn start_in(dir: Arc<tempfile::TempDir>, port: u16) -> Victoria {
        let d = dir.path();
        let mut proc = Proc::spawn(
            "victoria-metrics",
            &[
                format!("-storageDataPath={}", d.join("data").display()),
                format!("-httpListenAddr=127.0.0.1:{port}"),
                "-retentionPeriod=100y".into(),
                "-search.disableCache".into(),
                "-loggerLevel=ERROR".into(),
            ],
            d.join(format!("vm-{port}-{}.log", std::process::id())),
        );
        wait_http(
            &format!("http://127.0.0.1:{port}/health"),
            &mut proc,
            "victoria-metrics",
        )
        .await;
        Victoria { proc, port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `/api/v1/export` for a series selector: (metric labels, values, timestamps ms) per series.
    pub async fn export(&self, selector: &str) -> Export {
        let body = reqwest::Client::new()
            .post(format!("{}/api/v1/export", self.url()))
            .form(&[("match[]", selector), ("start", "0")])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut out: Export = Vec::new();
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let labels = v["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let values = v["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let ts = v["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            out.push((labels, values, ts));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Prometheus 2.x with the remote-write receiver, optionally scraping one target.
pub struct Prometheus {
    pub proc: Proc,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Prometheus {
    pub async fn start(scrape_target: Option<&str>) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut conf = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
        if let Some(t) = scrape_target {
            conf.push_str(&format!(
                "scrape_configs:\n  - job_name: vigil\n    honor_labels: true\n    honor_timestamps: true\n    scrape_interval: 1s\n    metrics_path: /federate\n    static_configs:\n      - targets: ['{t}']\n"
            ));
        }
        let conf_path = dir.path().join("prometheus.yml");
        std::fs::write(&conf_path, conf).unwrap();
        let mut proc = Proc::spawn(
            "prometheus",
            &[
                format!("--config.file={}", conf_path.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-remote-write-receiver".into(),
                "--log.level=warn".into(),
            ],
            dir.path().join("prometheus.log"),
        );
        wait_http(
            &format!("http://127.0.0.1:{port}/-/ready"),
            &mut proc,
            "prometheus",
        )
        .await;
        Prometheus { proc, port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Instant query at time `t` (seconds); returns `data.result`.
    pub async fn query(&self, q: &str, t: f64) -> Vec<serde_json::Value> {
        let v: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", q.to_string()), ("time", format!("{t:.3}"))])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> std::sync::Arc<BTreeMap<String, String>> {
    std::sync::Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// A Heapster-shaped batch at `ts`: cluster, namespace, node, pod, pod container and system
/// container sets; int and float values; labeled filesystem metrics; label values with commas,
/// spaces, `=` and colons. `i` varies the values.
pub fn sample_batch(ts: DateTime<Utc>, i: i64) -> Batch {
    let f = i as f64;
    let mut sets = BTreeMap::new();
    let vals = |v: &[(&'static str, MetricValue)]| -> BTreeMap<&'static str, MetricValue> {
        v.iter().copied().collect()
    };
    sets.insert(
        "cluster".to_string(),
        MetricSet {
            labels: labels(&[("type", "cluster")]),
            values: vals(&[
                ("cpu/usage_rate", MetricValue::Int(1500 + i)),
                ("memory/usage", MetricValue::Int(8 << 30)),
            ]),
            ..Default::default()
        },
    );
    sets.insert(
        "namespace:kube-system".to_string(),
        MetricSet {
            labels: labels(&[
                ("type", "ns"),
                ("namespace_name", "kube-system"),
                ("namespace_id", "ns-uid"),
            ]),
            values: vals(&[
                ("cpu/usage_rate", MetricValue::Int(700 + i)),
                ("memory/usage", MetricValue::Int(3 << 30)),
            ]),
            ..Default::default()
        },
    );
    sets.insert(
        "node:node-a".to_string(),
        MetricSet {
            labels: labels(&[
                ("type", "node"),
                ("nodename", "node-a"),
                ("hostname", "node-a"),
                ("host_id", "i-123"),
            ]),
            values: vals(&[
                ("cpu/usage_rate", MetricValue::Int(900 + i)),
                ("memory/usage", MetricValue::Int(4 << 30)),
                (
                    "cpu/node_utilization",
                    MetricValue::Float(0.225 + f / 1000.0),
                ),
                ("uptime", MetricValue::Int(3_600_000 + i * 60_000)),
            ]),
            labeled: vec![
                LabeledMetric {
                    name: "filesystem/usage".into(),
                    labels: labels(&[("resource_id", "/")]),
                    value: MetricValue::Int(10_000_000 + i),
                },
                LabeledMetric {
                    name: "filesystem/limit".into(),
                    labels: labels(&[("resource_id", "/")]),
                    value: MetricValue::Int(100_000_000),
                },
            ],
            ..Default::default()
        },
    );
    sets.insert(
        "namespace:kube-system/pod:dns-1".to_string(),
        MetricSet {
            labels: labels(&[
                ("type", "pod"),
                ("namespace_name", "kube-system"),
                ("pod_name", "dns-1"),
                ("nodename", "node-a"),
                ("pod_id", "pod-uid"),
                ("labels", "app:dns,tier:infra"),
            ]),
            values: vals(&[
                ("cpu/usage_rate", MetricValue::Int(250 + i)),
                ("memory/usage", MetricValue::Int(50_000_000 + i)),
                ("network/rx_rate", MetricValue::Float(1234.5 + f)),
            ]),
            ..Default::default()
        },
    );
    sets.insert(
        "namespace:kube-system/pod:dns-1/container:dns".to_string(),
        MetricSet {
            labels: labels(&[
                ("type", "pod_container"),
                ("namespace_name", "kube-system"),
                ("pod_name", "dns-1"),
                ("nodename", "node-a"),
                ("container_name", "dns"),
                ("container_base_image", "registry.k8s.io/coredns:1.11"),
                ("labels", "app:dns,tier:infra"),
                ("hostname", ""),
            ]),
            values: vals(&[
                (
                    "cpu/usage",
                    MetricValue::Int(123_456_789_000 + i * 1_000_000),
                ),
                ("cpu/usage_rate", MetricValue::Int(240 + i)),
                ("memory/working_set", MetricValue::Int(40_000_000 + i)),
                ("memory/page_faults_rate", MetricValue::Float(0.5 + f / 4.0)),
            ]),
            labeled: vec![LabeledMetric {
                name: "filesystem/usage".into(),
                labels: labels(&[("resource_id", "Volume:config volume")]),
                value: MetricValue::Int(4096 + i),
            }],
            ..Default::default()
        },
    );
    sets.insert(
        "node:node-a/container:kubelet".to_string(),
        MetricSet {
            labels: labels(&[
                ("type", "sys_container"),
                ("nodename", "node-a"),
                ("container_name", "kubelet"),
            ]),
            values: vals(&[
                ("cpu/usage_rate", MetricValue::Int(30 + i)),
                ("memory/usage", MetricValue::Int(90_000_000)),
            ]),
            ..Default::default()
        },
    );
    Batch {
        timestamp: ts,
        sets,
    }
}

/// Number of points (metric values, labeled ones included) in a batch.
pub fn points_in(b: &Batch) -> usize {
    b.sets
        .values()
        .map(|s| s.values.len() + s.labeled.len())
        .sum()
}

/// Batch times: `n` resolutions of `step` ending a little before now, on whole milliseconds.
pub fn times(n: usize, step: Duration) -> Vec<DateTime<Utc>> {
    let now = Utc::now().timestamp_millis() / 1000 * 1000;
    (0..n)
        .map(|k| {
            let ms = now - (n - k) as i64 * step.as_millis() as i64;
            DateTime::from_timestamp_millis(ms).unwrap()
        })
        .collect()
}

/// Asserts two sorted point lists are equal, printing only the differences.
pub fn assert_same_points(got: &[InfluxPoint], want: &[InfluxPoint]) {
    let missing: Vec<_> = want.iter().filter(|p| !got.contains(p)).take(5).collect();
    let extra: Vec<_> = got.iter().filter(|p| !want.contains(p)).take(5).collect();
    assert!(
        got == want,
        "got {} points, want {}; missing (first 5): {missing:#?}; unexpected (first 5): {extra:#?}",
        got.len(),
        want.len()
    );
}

/// Series as a map: labels (with `__name__`) → samples (ms, value), in time order.
pub type SeriesMap = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

/// What the remote_write sink sends for these batches (independent oracle): every set, Heapster
/// labels as Prometheus labels (empty ones left out), a labeled metric's own labels added.
pub fn expected_remote_write(batches: &[Batch], cluster_name: &str) -> SeriesMap {
    let mut out = SeriesMap::new();
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    for b in batches {
        let ts = b.timestamp.timestamp_millis();
        for set in b.sets.values() {
            let mut base: BTreeMap<String, String> = set
                .labels
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (clean(k), v.clone()))
                .collect();
            if !cluster_name.is_empty() {
                base.insert("cluster_name".into(), cluster_name.into());
            }
            let metrics = set.values.iter().map(|(n, v)| (n, *v, None)).chain(
                set.labeled
                    .iter()
                    .map(|m| (&m.name, m.value, Some(&m.labels))),
            );
            for (name, v, own) in metrics {
                let mut l = base.clone();
                if let Some(own) = own {
                    l.extend(own.iter().map(|(k, v)| (clean(k), v.clone())));
                }
                let cumulative = [
                    "uptime",
                    "cpu/usage",
                    "memory/page_faults",
                    "memory/major_page_faults",
                    "network/rx",
                    "network/rx_errors",
                    "network/tx",
                    "network/tx_errors",
                    "disk/io_read_bytes",
                    "disk/io_write_bytes",
                    "restart_count",
                ];
                let suffix = if cumulative.contains(name) {
                    "_total"
                } else {
                    ""
                };
                l.insert("__name__".into(), format!("{}{suffix}", clean(name)));
                let x = match v {
                    MetricValue::Int(i) => i as f64,
                    MetricValue::Float(f) => f,
                };
                out.entry(l).or_default().push((ts, x));
            }
        }
    }
    out
}

/// Turns an export into a SeriesMap.
pub fn to_series_map(export: Export) -> SeriesMap {
    export
        .into_iter()
        .map(|(l, v, t)| {
            let mut s: Vec<(i64, f64)> = t.into_iter().zip(v).collect();
            s.sort_by_key(|x| x.0);
            (l, s)
        })
        .collect()
}

/// Asserts two series maps are equal, printing only the differences.
pub fn assert_same_series(got: &SeriesMap, want: &SeriesMap) {
    let missing: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(3)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, v)| want.get(*k) != Some(v))
        .take(3)
        .collect();
    assert!(got == want, "got {} series, want {}; differing wanted (first 3): {missing:#?}; differing got (first 3): {extra:#?}", got.len(), want.len());
}

/// Runs a SinkSet in the background; `stop` asks it to shut down and waits.
pub struct Running {
    pub set: Arc<vigil_aggregator::sinks::SinkSet>,
    tx: tokio::sync::watch::Sender<bool>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn start(uris: &[String], data_dir: Option<&Path>) -> Running {
        let set = Arc::new(vigil_aggregator::sinks::SinkSet::from_uris(uris, data_dir).unwrap());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(set.clone().run(rx));
        Running {
            set,
            tx,
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.tx.send(true);
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(20), h)
                .await
                .expect("sinks stop within 20s")
                .unwrap();
        }
    }

    /// Pushes `batches` and waits (30 s at most) until every sink has delivered all `points`.
    pub async fn push_all_and_wait(&self, batches: &[Batch], points: u64) {
        for b in batches {
            self.set.push(std::sync::Arc::new(b.clone()));
        }
        for sink in 0..self.set.stats().len() {
            self.wait_sent(sink, points, Duration::from_secs(30)).await;
        }
    }

    /// Waits until sink number `sink` has delivered `points` points (or panics with the stats).
    pub async fn wait_sent(&self, sink: usize, points: u64, timeout: Duration) {
        let set = self.set.clone();
        let deadline = Instant::now() + timeout;
        loop {
            let st = &set.stats()[sink];
            if st.points_sent >= points {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "sink {} sent {} of {points} points in {timeout:?}: {st:?}",
                    st.name, st.points_sent
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
