//! Test support for node problems end to end: a real `vigil collector` running
//! node-problem-detector's shipped kernel and read-only monitors (switched to the filelog plugin
//! on a temporary kern.log), its fixture log lines, and a real `vigil aggregator` pulling it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::aggregator;

use super::aggregator::{Aggregator, Collector};

/// The shared NPD fixtures (`/work/shared/fixtures/npd`), as copied into the repository.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector/testdata/problems").join(rel)
}

/// One kernel message as a line of rsyslog's kern.log (local time, as the shipped filelog
/// pluginConfig expects).
pub fn kern_line(msg: &str) -> String {
    let out = Command::new("date").arg("+%b %e %H:%M:%S").output().unwrap();
    let stamp = String::from_utf8_lossy(&out.stdout);
    format!("{} vigil-node kernel: [ 4242.000001] {msg}\n", stamp.trim_end())
}

/// A fixture's kernel lines, each as `kern_line` writes it.
pub fn kern_lines(sample: &str) -> String {
    std::fs::read_to_string(fixture(&format!("kernel-log-samples/{sample}")))
        .unwrap()
        .lines()
        .map(kern_line)
        .collect()
}

/// Appends `bytes` to `path` in one write.
pub fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(bytes.as_ref()).unwrap();
}

/// A shipped monitor config (rules unchanged) switched to the filelog plugin on `log`.
pub fn filelog_config(dir: &Path, shipped: &str, log: &Path) -> PathBuf {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("config/{shipped}"))).unwrap()).unwrap();
    let filelog: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("config/kernel-monitor-filelog.json")).unwrap(),
    )
    .unwrap();
    v["plugin"] = "filelog".into();
    v["pluginConfig"] = filelog["pluginConfig"].clone();
    v["logPath"] = log.display().to_string().into();
    let p = dir.join(shipped);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    p
}

/// A collector with the kernel and read-only monitors on `<dir>/kern.log`, and an aggregator at
/// 1 s resolution pulling it with `extra` arguments. Waits until the aggregator holds the
/// collector's KernelDeadlock gauge (at 0), i.e. the problem pull works.
pub struct ProblemNode {
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
    pub collector: Collector,
    pub agg: Aggregator,
    /// The node's name as the aggregator's series carry it (`nodename`).
    pub nodename: String,
}

impl ProblemNode {
    pub async fn start(dir: tempfile::TempDir, extra: &[&str]) -> ProblemNode {
        let log = dir.path().join("kern.log");
        append(&log, "");
        let kernel = filelog_config(dir.path(), "kernel-monitor.json", &log);
        let readonly = filelog_config(dir.path(), "readonly-monitor.json", &log);
        let collector = Collector::start(&[
            "--problem-detector-config",
            kernel.to_str().unwrap(),
            "--problem-detector-config",
            readonly.to_str().unwrap(),
            "--housekeeping-interval",
            "1s",
        ])
        .await;
        let mut args = vec![
            "--nodes",
            collector.addr.as_str(),
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ];
        args.extend_from_slice(extra);
        let agg = Aggregator::start(&args);
        let deadline = Instant::now() + Duration::from_secs(60);
        let v = loop {
            if let Some(v) = first_result(&agg.base, "problem_gauge{type=\"KernelDeadlock\"} == 0").await {
                break v;
            }
            if Instant::now() > deadline {
                // Say why: the aggregator's pull outcomes and what the collector serves.
                let (_, m) = aggregator::get(&format!("{}/metrics", agg.base)).await;
                let pulls: Vec<&str> = m.lines().filter(|l| l.starts_with("vigil_aggregator_problem") || l.starts_with("vigil_aggregator_scrape")).collect();
                let (s, conds) = aggregator::get(&format!("http://{}/conditions", collector.addr)).await;
                panic!("no KernelDeadlock gauge in the aggregator after 60 s; its pulls: {pulls:#?}; the collector's /conditions: {s} {conds}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let nodename = v["metric"]["nodename"].as_str().unwrap().to_string();
        ProblemNode { dir, log, collector, agg, nodename }
    }

    /// The collector's base URL.
    pub fn collector_url(&self) -> String {
        format!("http://{}", self.collector.addr)
    }
}

pub fn query_url(base: &str, q: &str) -> String {
    let mut u = reqwest::Url::parse(&format!("{base}/api/v1/query")).unwrap();
    u.query_pairs_mut().append_pair("query", q);
    u.to_string()
}

/// `until`, also returning when `f` answered.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, f: F) -> (T, Instant)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let v = super::until(what, timeout, f).await;
    (v, Instant::now())
}

/// The first PromQL result of `q` on the aggregator, if any.
pub async fn first_result(base: &str, q: &str) -> Option<Value> {
    let v = aggregator::try_json(&query_url(base, q)).await?;
    v["data"]["result"].as_array()?.first().cloned()
}
