//! `vigil rules replay`: a CSV series through the rule engine in virtual time, one line per
//! alert state change; bad input named by file and line.

use std::process::Command;

fn vigil(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vigil")).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn replay_prints_state_changes() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: g\n  rules:\n  - alert: High\n    expr: cpu > 0.9\n    for: 10m\n  - alert: Low\n    expr: cpu < 0.1\n",
    )
    .unwrap();
    let csv = dir.path().join("cpu.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..20 {
        let v = match i {
            5..=9 => 0.95,
            15 => 0.05,
            _ => 0.5,
        };
        text.push_str(&format!("2024-03-01 10:{:02}:00,{v}\n", i * 3));
    }
    std::fs::write(&csv, text).unwrap();
    let (code, out, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--csv", csv.to_str().unwrap(), "--metric", "cpu"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "2024-03-01T10:27:00Z High {} firing\n\
         2024-03-01T10:30:00Z High {} resolved\n\
         2024-03-01T10:45:00Z Low {} firing\n\
         2024-03-01T10:48:00Z Low {} resolved\n"
    );
}

#[test]
fn replay_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("r.yml");
    std::fs::write(&rules, "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: value > 1\n").unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "timestamp,value\n1700000000,1\nnot a time,2\n").unwrap();
    let (code, _, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--csv", csv.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.csv:3: timestamp \"not a time\""), "{err}");
    std::fs::write(&rules, "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: 'value >'\n").unwrap();
    let (code, _, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--csv", csv.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("r.yml: group \"g\", rule 1, \"A\": could not parse expression"), "{err}");
}

struct Peer(std::process::Child);
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `replay --from/--to` over a real Prometheus 2.42 holding two hours of history (backfilled
/// with `promtool tsdb create-blocks-from openmetrics`): the alert's firing and resolution at
/// the expected evaluation times, and bad flags or a dead API named.
#[test]
fn replay_from_to_over_prometheus_history() {
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc::now().timestamp();
    let t0 = (now - 3 * 3600) / 60 * 60;
    let mut om = String::from("# HELP load Load.\n# TYPE load gauge\n");
    for node in ["a", "b"] {
        for m in 0..120 {
            let v = if node == "a" && (30..60).contains(&m) { 20 } else { 1 };
            om.push_str(&format!("load{{node=\"{node}\"}} {v} {}\n", t0 + m * 60));
        }
    }
    om.push_str("# EOF\n");
    let input = dir.path().join("history.om");
    std::fs::write(&input, om).unwrap();
    let tsdb = dir.path().join("tsdb");
    let o = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics", input.to_str().unwrap(), tsdb.to_str().unwrap()])
        .output()
        .expect("promtool must be installed (Debian package prometheus; scripts/test.sh installs it)");
    assert!(o.status.success(), "promtool: {}", String::from_utf8_lossy(&o.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {scrape_interval: 1m}\n").unwrap();
    let _prom = Peer(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus must be installed (scripts/test.sh installs it)"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !reqwest::blocking::get(format!("{url}/-/ready")).is_ok_and(|r| r.status().is_success()) {
        assert!(std::time::Instant::now() < deadline, "prometheus not ready");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let rules = dir.path().join("r.yml");
    std::fs::write(&rules, "groups:\n- name: g\n  rules:\n  - alert: High\n    expr: load > 10\n    for: 10m\n    labels: {severity: page}\n").unwrap();
    let at = |m: i64| chrono::DateTime::from_timestamp(t0 + m * 60, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (code, out, err) = vigil(&[
        "rules", "replay", "--rule-file", rules.to_str().unwrap(),
        "--from", &at(0), "--to", &at(119), "--rule-query-url", &url,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{} High {{node=\"a\", severity=\"page\"}} firing\n{} High {{node=\"a\", severity=\"page\"}} resolved\n",
            at(40),
            at(60)
        ),
        "{err}"
    );
    // Bad input: reversed range, a bad time, both sources, a dead API (every evaluation fails).
    let (code, _, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--from", &at(10), "--to", &at(0), "--rule-query-url", &url]);
    assert_eq!(code, 2);
    assert!(err.contains("is after --to"), "{err}");
    let (code, _, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--from", "yesterday", "--to", &at(0)]);
    assert_eq!(code, 2);
    assert!(err.contains("--from: timestamp \"yesterday\""), "{err}");
    let (code, _, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--csv", "x.csv", "--from", &at(0), "--to", &at(1)]);
    assert_eq!(code, 2, "{err}");
    let dead = format!("http://127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let (code, out, err) = vigil(&["rules", "replay", "--rule-file", rules.to_str().unwrap(), "--from", &at(0), "--to", &at(30), "--rule-query-url", &dead]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains(&format!("{} group \"g\", rule \"High\": remote query {dead}/api/v1/query", at(0))), "{err}");
    assert!(err.contains("31 failed evaluations in all"), "{err}");
    // Each failure is said once, in the report: not also as a log line.
    assert!(!err.contains("rule evaluation failed"), "{err}");
}
