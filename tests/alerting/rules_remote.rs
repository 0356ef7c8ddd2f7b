//! The rule manager evaluating through a real Prometheus 2.42 (`--rule-query-url`, as vmalert):
//! alerts, recording rules, runtime errors in `health`/`lastError`, a failing reload that keeps
//! the old rules, and `/api/v1/rules` shaped as Prometheus's own for the same rule file.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vigil_alerting::rules::eval::{Labels, SeriesWriter};
use vigil_alerting::rules::{EvalOptions, Manager, ManagerConfig};
use vigil_alerting::{Alert, Notify, Query, RemoteQuery};

struct Peer(Child);
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const RULES: &str = r#"
groups:
  - name: self
    interval: 1s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: PrometheusUp
        expr: up{job="prometheus"} == 1
        labels:
          severity: info
        annotations:
          summary: "{{ $labels.instance }} is up ({{ $value }})"
      - alert: Waiting
        expr: up{job="prometheus"} == 1
        for: 1h
      - alert: ManyToMany
        expr: '{__name__=~"up|prometheus_build_info"} * on() vector(1)'
"#;

/// Starts Prometheus scraping itself every second, with `rules` as its own rule file.
fn prometheus(dir: &std::path::Path, rules: &std::path::Path) -> (Peer, String) {
    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{:?}]\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n",
            rules.display().to_string()
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus must be installed (scripts/test.sh installs it)");
    (Peer(child), format!("http://127.0.0.1:{port}"))
}

#[derive(Default)]
struct Sent(Mutex<Vec<Alert>>);
impl Notify for Sent {
    fn send(&self, alerts: Vec<Alert>) {
        self.0.lock().unwrap().extend(alerts);
    }
}

#[derive(Default)]
struct Written(Mutex<Vec<(Labels, i64, f64)>>);
impl SeriesWriter for Written {
    fn write(&self, s: Vec<(Labels, i64, f64)>) -> Result<(), String> {
        self.0.lock().unwrap().extend(s);
        Ok(())
    }
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn rules_through_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let (_prom, url) = prometheus(dir.path(), &rules);
    let query = Arc::new(RemoteQuery::new(&url, Duration::from_secs(10)).unwrap());
    wait_for("prometheus to scrape itself", Duration::from_secs(30), || {
        query.instant("up", chrono::Utc::now().timestamp_millis()).ok().filter(|v| !v.is_empty())
    });

    let sent = Arc::new(Sent::default());
    let written = Arc::new(Written::default());
    let config = ManagerConfig {
        patterns: vec![rules.display().to_string()],
        eval: EvalOptions {
            external_labels: [("cluster".to_string(), "test".to_string())].into(),
            external_url: "http://vigil.example:8082".into(),
            ..EvalOptions::default()
        },
        data_dir: None,
    };
    let manager = Manager::new(config, query.clone(), written.clone(), Some(sent.clone())).unwrap();
    manager.start().unwrap();

    // The alert fires and is sent with the external labels and a generator URL.
    let alert = wait_for("PrometheusUp to be sent", Duration::from_secs(20), || {
        sent.0.lock().unwrap().iter().find(|a| a.labels["alertname"] == "PrometheusUp").cloned()
    });
    assert_eq!(alert.labels["severity"], "info");
    assert_eq!(alert.labels["cluster"], "test");
    assert!(alert.annotations["summary"].ends_with("is up (1)"), "{alert:?}");
    assert!(alert.generator_url.starts_with("http://vigil.example:8082/graph?g0.expr=up%7Bjob%3D%22prometheus%22%7D"));
    assert!(alert.ends_at > alert.starts_at);
    assert!(!sent.0.lock().unwrap().iter().any(|a| a.labels["alertname"] == "Waiting"), "pending alerts are never sent");

    // Recorded series and ALERTS went to the writer.
    let w = written.0.lock().unwrap().clone();
    assert!(w.iter().any(|(l, _, v)| l["__name__"] == "job:up:sum" && *v == 1.0));
    assert!(w.iter().any(|(l, _, _)| l["__name__"] == "ALERTS" && l["alertstate"] == "pending" && l["alertname"] == "Waiting"));

    // Prometheus evaluates the same file: compare /api/v1/rules and /api/v1/alerts.
    let theirs = wait_for("Prometheus's own rules to evaluate", Duration::from_secs(20), || {
        let v: serde_json::Value = reqwest::blocking::get(format!("{url}/api/v1/rules")).ok()?.json().ok()?;
        let rules = v["data"]["groups"][0]["rules"].as_array()?.clone();
        // Evaluated, and past its first evaluations (which may precede the first scrape).
        let ready = rules.iter().all(|r| r["health"] != "unknown")
            && rules.iter().any(|r| r["name"] == "PrometheusUp" && r["state"] == "firing")
            && rules.iter().any(|r| r["name"] == "Waiting" && r["state"] == "pending");
        ready.then_some(v["data"].clone())
    });
    let ours = manager.rules_json(&[]).unwrap();
    let (tg, og) = (&theirs["groups"][0], &ours["groups"][0]);
    assert_eq!(keys(tg), keys(og));
    for (t, o) in tg["rules"].as_array().unwrap().iter().zip(og["rules"].as_array().unwrap()) {
        assert_eq!(keys(t), keys(o), "rule {}", t["name"]);
        for k in ["name", "query", "duration", "labels", "annotations", "health", "type", "state", "keepFiringFor"] {
            assert_eq!(t.get(k), o.get(k), "{k} of {}", t["name"]);
        }
        if t["health"] == "err" {
            let (te, oe) = (t["lastError"].as_str().unwrap(), o["lastError"].as_str().unwrap());
            assert!(oe.contains(te) || te.contains("many-to-one") && oe.contains("many-to-one"), "{te} vs {oe}");
        }
        let none = Vec::new();
        let (tas, oas) = (t["alerts"].as_array().unwrap_or(&none), o["alerts"].as_array().unwrap_or(&none));
        assert_eq!(tas.len(), oas.len(), "alerts of {}", t["name"]);
        for (ta, oa) in tas.iter().zip(oas) {
            assert_eq!(keys(ta), keys(oa));
            for k in ["labels", "annotations", "state", "value"] {
                assert_eq!(ta[k], oa[k], "alert {k}");
            }
        }
    }
    let alerts = manager.alerts_json();
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 2, "{alerts}");
    assert!(manager.rules_json(&[("type".into(), "bogus".into())]).is_err());
    let only_record = manager.rules_json(&[("type".into(), "record".into())]).unwrap();
    assert_eq!(only_record["groups"][0]["rules"].as_array().unwrap().len(), 1);
    assert!(manager.metrics_text().contains("vigil_rule_evaluation_failures_total{rule_group="));

    // A reload with a broken file fails, says why, and keeps the old rules running.
    std::fs::write(&rules, "groups:\n- name: self\n  rules:\n  - alert: X\n    expr: 'up =='\n").unwrap();
    let err = manager.reload().unwrap_err().to_string();
    assert!(err.contains("could not parse expression"), "{err}");
    assert!(manager.metrics_text().contains("vigil_rules_last_reload_successful 0"));
    let before = written.0.lock().unwrap().len();
    wait_for("the old rules to keep running", Duration::from_secs(20), || {
        (written.0.lock().unwrap().len() > before).then_some(())
    });
    // A good reload replaces them; an unchanged rule keeps its alert.
    std::fs::write(&rules, RULES.replace("      - alert: ManyToMany\n        expr: '{__name__=~\"up|prometheus_build_info\"} * on() vector(1)'\n", "")).unwrap();
    manager.reload().unwrap();
    let rules_now = manager.rules_json(&[]).unwrap();
    assert_eq!(rules_now["groups"][0]["rules"].as_array().unwrap().len(), 3);
    assert_eq!(rules_now["groups"][0]["rules"][1]["state"], "firing");
    manager.stop();
}

#[test]
fn remote_errors_are_clear() {
    assert!(RemoteQuery::new("127.0.0.1:9", Duration::from_secs(1)).is_err());
    let q = RemoteQuery::new(&format!("http://127.0.0.1:{}", free_port()), Duration::from_secs(1)).unwrap();
    let e = q.instant("up", 0).unwrap_err().0;
    assert!(e.contains("remote query http://127.0.0.1:"), "{e}");
}
