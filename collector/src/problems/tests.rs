//! Detector-level tests: shipped configs, bad configs, the kernel samples through the shipped
//! rules (synchronously and by tailing a real file), /dev/kmsg, metrics and promtool.

use super::*;
use crate::problems::logmonitor::LogMonitor;
use crate::problems::store::Status;
use crate::problems::watch::filelog::Translator;
use std::time::{Duration, Instant};

fn testdata(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/problems")).join(rel)
}

fn shipped(name: &str) -> PathBuf {
    testdata(&format!("config/{name}"))
}

/// The shipped kernel-monitor-filelog.json's pluginConfig (syslog-style kern.log).
fn filelog_plugin_config() -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shipped("kernel-monitor-filelog.json")).unwrap(),
    )
    .unwrap();
    v["pluginConfig"].clone()
}

/// A shipped kmsg config turned into a filelog one reading `log` (rules unchanged).
fn as_filelog(name: &str, log: &Path, dir: &Path) -> PathBuf {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped(name)).unwrap()).unwrap();
    v["plugin"] = "filelog".into();
    v["pluginConfig"] = filelog_plugin_config();
    v["logPath"] = log.display().to_string().into();
    let out = dir.join(name);
    std::fs::write(&out, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    out
}

/// A kern.log line as rsyslog writes it, for `msg` logged now.
fn kern_line(msg: &str) -> String {
    let now = chrono::Local::now();
    format!(
        "{} vigil-node kernel: [ 1234.567890] {msg}\n",
        now.format("%b %e %H:%M:%S")
    )
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(testdata(&format!("kernel-log-samples/{name}"))).unwrap()
}

#[test]
fn every_shipped_config_loads_unchanged() {
    let d = tempfile::tempdir().unwrap();
    // Relative plugin paths resolve against the working directory, as in node-problem-detector's
    // image (/ with /config/plugin/*.sh): give them one.
    std::fs::create_dir_all(d.path().join("config/plugin")).unwrap();
    for s in ["check_ntp.sh", "network_problem.sh", "dns_problem.sh"] {
        std::fs::write(
            d.path().join("config/plugin").join(s),
            "#!/bin/sh\nexit 0\n",
        )
        .unwrap();
    }
    let mut loadable = Vec::new();
    for entry in std::fs::read_dir(testdata("config")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "kernel-monitor-counter.json" {
            // Its plugin is the absolute /home/kubernetes/bin/log-counter of GKE nodes: absent
            // here, so the only complaint must be that path, named with file and key.
            let err = ProblemDetector::load_in(std::slice::from_ref(&path), d.path())
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("kernel-monitor-counter.json") && err.contains("rules[0].path"),
                "{err}"
            );
            assert!(err.contains("/home/kubernetes/bin/log-counter"), "{err}");
            continue;
        }
        loadable.push(path);
    }
    assert_eq!(loadable.len(), 7);
    let det = ProblemDetector::load_in(&loadable, d.path()).unwrap();
    assert_eq!(det.config_files().len(), 7);
    // All default conditions are False from the start.
    let conds = det.store().conditions();
    assert!(conds
        .iter()
        .any(|c| c.kind == "KernelDeadlock" && c.status == Status::False));
    assert!(conds
        .iter()
        .any(|c| c.kind == "NTPProblem" && c.reason == "NTPIsUp"));
    assert!(conds.iter().all(|c| c.status == Status::False));
}

fn load_err(text: &str) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad-monitor.json");
    std::fs::write(&p, text).unwrap();
    ProblemDetector::load_in(&[p], d.path())
        .err()
        .expect("must be rejected")
        .to_string()
}

#[test]
fn bad_configs_are_rejected_with_file_and_key() {
    let e = load_err(
        r#"{"plugin":"kmsg","rules":[{"type":"temporary","reason":"R","pattern":"a(b"}]}"#,
    );
    assert!(
        e.contains("bad-monitor.json")
            && e.contains("rules[0].pattern")
            && e.contains("invalid regex"),
        "{e}"
    );
    let e = load_err(r#"{"plugin":"syslog"}"#);
    assert!(
        e.contains("bad-monitor.json") && e.contains("`plugin`") && e.contains("unknown plugin"),
        "{e}"
    );
    let e = load_err(
        r#"{"plugin":"custom","rules":[{"type":"temporary","reason":"R","path":"/nonexistent/check.sh"}]}"#,
    );
    assert!(
        e.contains("rules[0].path") && e.contains("does not exist"),
        "{e}"
    );
    let e = load_err(
        r#"{"plugin":"kmsg","conditions":[],"rules":[{"type":"permanent","condition":"KernelDeadlock","reason":"DockerHung","pattern":"x"}]}"#,
    );
    assert!(
        e.contains("rules[0].condition") && e.contains("no default"),
        "{e}"
    );
    let e = load_err(r#"{"plugin":"kmsg","bufferSize":10,"typo":1}"#);
    assert!(e.contains("unknown field `typo`"), "{e}");
    let e =
        load_err(r#"{"plugin":"kmsg","rules":[{"type":"sometimes","reason":"R","pattern":"x"}]}"#);
    assert!(e.contains("rules[0].type"), "{e}");
    // Regression (found by tests/hardening_proptest.rs): a huge bufferSize aborted on allocation.
    let e = load_err(r#"{"plugin":"kmsg","bufferSize":8744585108571799280}"#);
    assert!(
        e.contains("`bufferSize`") || e.contains("bufferSize"),
        "{e}"
    );
    let e = load_err(r#"{"plugin":"kmsg","lookback":"5 minutes"}"#);
    assert!(e.contains("`lookback`"), "{e}");
    let e = load_err(
        r#"{"plugin":"filelog","logPath":"/x","pluginConfig":{"timestamp":"^.{15}","message":"(.*","timestampFormat":"Jan _2 15:04:05"}}"#,
    );
    assert!(e.contains("pluginConfig.message"), "{e}");
    let e = load_err(r#"{"plugin":"journald","pluginConfig":{}}"#);
    assert!(e.contains("pluginConfig.source"), "{e}");
    let e = load_err(
        r#"{"plugin":"custom","pluginConfig":{"timeout":"1s"},"rules":[{"type":"temporary","reason":"R","path":"/bin/true","timeout":"2s"}]}"#,
    );
    assert!(e.contains("rules[0].timeout"), "{e}");
    let e = load_err("{not json");
    assert!(
        e.contains("bad-monitor.json") && e.contains("invalid JSON"),
        "{e}"
    );
    let missing = ProblemDetector::load(&[PathBuf::from("/nonexistent/monitor.json")])
        .err()
        .unwrap()
        .to_string();
    assert!(
        missing.contains("/nonexistent/monitor.json") && missing.contains("cannot read"),
        "{missing}"
    );
}

/// What one sample produces through the kernel and readonly rules, read through the shipped
/// filelog translator (events as (reason, message); conditions that became True).
/// (reason, message) of each event, and (type, reason) of each True condition.
type SampleOutcome = (Vec<(String, String)>, Vec<(String, String)>);

fn run_sample_sync(name: &str) -> SampleOutcome {
    let store = Arc::new(Store::default());
    let pc = filelog_plugin_config();
    let tr = Translator::new(
        pc["timestamp"].as_str().unwrap(),
        pc["message"].as_str().unwrap(),
        pc["timestampFormat"].as_str().unwrap(),
    )
    .unwrap();
    let mut monitors = Vec::new();
    for cfg in ["kernel-monitor.json", "readonly-monitor.json"] {
        let MonitorConfig::SystemLog(c) = config::parse_file(&shipped(cfg)).unwrap() else {
            panic!()
        };
        logmonitor::initialize(&store, &c);
        monitors.push(LogMonitor::new(&c, monitors.len(), store.clone()).unwrap());
    }
    for raw in sample(name).lines() {
        let line = tr.translate(kern_line(raw).trim_end_matches('\n')).unwrap();
        for m in &mut monitors {
            m.process(line.clone());
        }
    }
    let events = store
        .events_since(0, 1000)
        .0
        .into_iter()
        .map(|e| (e.reason, e.message))
        .collect();
    let conds = store
        .conditions()
        .into_iter()
        .filter(|c| c.status == Status::True)
        .map(|c| (c.kind, c.reason))
        .collect();
    (events, conds)
}

fn ev(reason: &str, msg: &str) -> (String, String) {
    (reason.to_string(), msg.to_string())
}

#[test]
fn kernel_samples_produce_what_npd_reports() {
    // Checked by hand against each sample and the rule regexes (see the README of testdata).
    let none: Vec<(String, String)> = Vec::new();
    assert_eq!(
        run_sample_sync("au_opts_verify"),
        (none.clone(), none.clone())
    );
    assert_eq!(
        run_sample_sync("aufs_umount_hung"),
        (
            vec![ev(
                "TaskHung",
                "INFO: task umount.aufs:21568 blocked for more than 120 seconds."
            )],
            none.clone()
        )
    );
    // "divide error: 0000 [#1] SMP " -> the filelog message regex's greedy `\[.*\] ` leaves "SMP ":
    // node-problem-detector reports nothing for it through kern.log (kmsg: see the next test).
    assert_eq!(run_sample_sync("divide_zero"), (none.clone(), none.clone()));
    let hung = "INFO: task docker:20744 blocked for more than 120 seconds.";
    assert_eq!(
        run_sample_sync("docker_hung"),
        (
            vec![
                ev("TaskHung", hung),
                ev(
                    "DockerHung",
                    &format!("Node condition KernelDeadlock is now: True, reason: DockerHung, message: {hung:?}")
                ),
            ],
            vec![("KernelDeadlock".to_string(), "DockerHung".to_string())]
        )
    );
    assert_eq!(
        run_sample_sync("null_pointer"),
        (
            vec![ev(
                "KernelOops",
                "BUG: unable to handle kernel NULL pointer dereference at 0000000000000078"
            )],
            none.clone()
        )
    );
    assert_eq!(
        run_sample_sync("oom_kill"),
        (
            vec![ev(
                "OOMKilling",
                "Killed process 1012 (heapster) total-vm:327128kB, anon-rss:306328kB, file-rss:11132kB, shmem-rss:12345kB"
            )],
            none.clone()
        )
    );
    let ro = "EXT4-fs (sda1): Remounting filesystem read-only";
    assert_eq!(
        run_sample_sync("readonly_filesystem"),
        (
            vec![ev(
                "FilesystemIsReadOnly",
                &format!(
                    "Node condition ReadonlyFilesystem is now: True, reason: FilesystemIsReadOnly, message: {ro:?}"
                )
            )],
            vec![("ReadonlyFilesystem".to_string(), "FilesystemIsReadOnly".to_string())]
        )
    );
    assert_eq!(
        run_sample_sync("unregister_netdevice"),
        (
            vec![ev(
                "UnregisterNetDevice",
                "unregister_netdevice: waiting for lo to become free. Usage count = 1"
            )],
            none
        )
    );
}

#[test]
fn divide_error_fires_through_kmsg_records() {
    // kmsg messages are trimmed, so the sample's "divide error: 0000 [#1] SMP " matches there.
    let store = Arc::new(Store::default());
    let MonitorConfig::SystemLog(c) = config::parse_file(&shipped("kernel-monitor.json")).unwrap()
    else {
        panic!()
    };
    logmonitor::initialize(&store, &c);
    let mut m = LogMonitor::new(&c, 0, store.clone()).unwrap();
    for (i, raw) in sample("divide_zero").lines().enumerate() {
        let rec = watch::kmsg::parse_record(&format!("4,{i},{},-;{raw}\n", 1000 + i)).unwrap();
        m.process(matcher::LogLine {
            timestamp: chrono::Utc::now(),
            message: rec.message,
        });
    }
    let events = store.events_since(0, 100).0;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].reason.as_str(), events[0].message.as_str()),
        ("KernelOops", "divide error: 0000 [#1] SMP")
    );
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filelog_tail_follows_rotation_and_reports_all_samples() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("kern.log");
    // An old line (outside the 5m lookback) must be skipped.
    append(
        &log,
        "Jan  1 00:00:01 vigil-node kernel: [ 1.0] Buffer I/O error on dev old\n",
    );
    let configs = vec![
        as_filelog("kernel-monitor.json", &log, d.path()),
        as_filelog("readonly-monitor.json", &log, d.path()),
    ];
    let det = Arc::new(ProblemDetector::load_in(&configs, d.path()).unwrap());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(det.clone().run(rx));
    let store = det.store().clone();
    let mut total_lines = 0;
    for name in [
        "au_opts_verify",
        "aufs_umount_hung",
        "divide_zero",
        "docker_hung",
        "null_pointer",
        "oom_kill",
    ] {
        total_lines += sample(name).lines().count();
        let text: String = sample(name).lines().map(kern_line).collect();
        append(&log, &text);
    }
    // A partial line is only read once complete.
    let line = kern_line("unregister_netdevice: waiting for lo to become free. Usage count = 1");
    let (a, b) = line.split_at(30);
    append(&log, a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&log, b);
    // Everything so far is read from the original file before it is rotated.
    wait_for("lines before rotation", || {
        store
            .events_since(0, 1000)
            .0
            .iter()
            .any(|e| e.reason == "UnregisterNetDevice")
    })
    .await;
    // Rotate: rename the file and start a new one.
    std::fs::rename(&log, d.path().join("kern.log.1")).unwrap();
    append(
        &log,
        &kern_line("EXT4-fs (sda1): Remounting filesystem read-only"),
    );
    append(&log, &kern_line("Buffer I/O error on dev sentinel"));
    wait_for("sentinel event", || {
        store
            .events_since(0, 1000)
            .0
            .iter()
            .any(|e| e.reason == "IOError")
    })
    .await;
    wait_for("read-only condition", || {
        store
            .conditions()
            .iter()
            .any(|c| c.kind == "ReadonlyFilesystem" && c.status == Status::True)
    })
    .await;
    let reasons: Vec<String> = store
        .events_since(0, 1000)
        .0
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.as_str() != "FilesystemIsReadOnly")
            .cloned()
            .collect::<Vec<_>>(),
        [
            "TaskHung",
            "TaskHung",
            "DockerHung",
            "KernelOops",
            "OOMKilling",
            "UnregisterNetDevice",
            "IOError"
        ],
        "old line skipped, everything else once"
    );
    let conds = store.conditions();
    let kd = conds.iter().find(|c| c.kind == "KernelDeadlock").unwrap();
    assert_eq!(
        (kd.status, kd.reason.as_str()),
        (Status::True, "DockerHung")
    );
    // Metrics: counters per reason, gauges per condition.
    let mut out = String::new();
    det.write_metrics(&mut out);
    let lines_want = format!(
        "vigil_problem_detector_log_lines_total{{source=\"kernel-monitor\"}} {}",
        total_lines + 3
    );
    for want in [
        "problem_counter{reason=\"TaskHung\"} 2",
        "problem_counter{reason=\"DockerHung\"} 1",
        "problem_counter{reason=\"Ext4Error\"} 0",
        "problem_counter{reason=\"FilesystemIsReadOnly\"} 1",
        "problem_gauge{reason=\"DockerHung\",type=\"KernelDeadlock\"} 1",
        "problem_gauge{reason=\"XfsHasShutdown\",type=\"XfsShutdown\"} 0",
        "problem_gauge{reason=\"FilesystemIsReadOnly\",type=\"ReadonlyFilesystem\"} 1",
        // The samples' lines + unregister + read-only + sentinel (the old line is skipped).
        lines_want.as_str(),
    ] {
        assert!(out.lines().any(|l| l == want), "missing {want} in\n{out}");
    }
    // The file disappears and comes back: reopened.
    std::fs::remove_file(&log).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(&log, &kern_line("Buffer I/O error on dev comeback"));
    wait_for("line after the file came back", || {
        store
            .events_since(0, 1000)
            .0
            .iter()
            .any(|e| e.message.contains("comeback"))
    })
    .await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("monitors stop on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmsg_plugin_sees_a_line_written_to_dev_kmsg() {
    let nonce = format!(
        "{:x}",
        std::process::id() as u64 * 1_000_003 + chrono::Utc::now().timestamp_subsec_nanos() as u64
    );
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("kmsg-monitor.json");
    std::fs::write(
        &cfg,
        r#"{"plugin":"kmsg","logPath":"/dev/kmsg","lookback":"5m","bufferSize":10,"source":"kmsg-test",
            "conditions":[],"rules":[{"type":"temporary","reason":"VigilKmsgProbe","pattern":"vigil kmsg probe [0-9a-f]+"}]}"#,
    )
    .unwrap();
    let det = Arc::new(ProblemDetector::load_in(&[cfg], d.path()).unwrap());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(det.clone().run(rx));
    // Writing to /dev/kmsg needs root (CAP_SYSLOG); this machine's tests run as root.
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, format!("<6>vigil kmsg probe {nonce}\n").as_bytes())
        })
        .expect("write /dev/kmsg (needs root)");
    let store = det.store().clone();
    wait_for("the kmsg probe event", || {
        store
            .events_since(0, 1000)
            .0
            .iter()
            .any(|e| e.message == format!("vigil kmsg probe {nonce}"))
    })
    .await;
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("stops")
        .unwrap();
}

#[test]
fn promtool_accepts_the_exposition() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("config/plugin")).unwrap();
    std::fs::write(d.path().join("config/plugin/check_ntp.sh"), "#!/bin/sh\n").unwrap();
    let det = ProblemDetector::load_in(
        &[
            shipped("kernel-monitor.json"),
            shipped("readonly-monitor.json"),
            shipped("custom-plugin-monitor.json"),
        ],
        d.path(),
    )
    .unwrap();
    det.store().increment_counter("OOMKilling", 1);
    let mut out = String::new();
    det.write_metrics(&mut out);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (package prometheus)");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), out.as_bytes()).unwrap();
    let res = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    // Exit 1 = the exposition does not parse. Exit 3 = lint findings only: promtool's naming
    // lint objects to node-problem-detector's own names (no `_total`, type in the name), which
    // are kept for compatibility; nothing else may be reported.
    let allowed = [
        "problem_counter counter metrics should have \"_total\" suffix",
        "problem_counter metric name should not include type 'counter'",
        "problem_gauge metric name should not include type 'gauge'",
    ];
    match res.status.code() {
        Some(0) => {}
        Some(3) => {
            for l in report.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    allowed.contains(&l.trim()),
                    "unexpected promtool finding: {l}\n{out}"
                );
            }
        }
        other => panic!("promtool rejected the exposition ({other:?}): {report}\n{out}"),
    }
    assert!(out.contains("problem_counter{reason=\"OOMKilling\"} 1\n"));
    assert!(out.contains("problem_gauge{reason=\"NTPIsDown\",type=\"NTPProblem\"} 0\n"));
}

#[test]
fn metrics_reporting_false_creates_no_problem_series() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("quiet-monitor.json");
    std::fs::write(
        &p,
        r#"{"plugin":"kmsg","metricsReporting":false,"source":"quiet",
            "conditions":[{"type":"Quiet","reason":"AllQuiet","message":"ok"}],
            "rules":[{"type":"temporary","reason":"QuietEvent","pattern":"quiet \\d+"},
                     {"type":"permanent","condition":"Quiet","reason":"Loud","pattern":"loud"}]}"#,
    )
    .unwrap();
    let det = ProblemDetector::load_in(std::slice::from_ref(&p), d.path()).unwrap();
    let MonitorConfig::SystemLog(c) = config::parse_file(&p).unwrap() else {
        panic!()
    };
    let mut m = LogMonitor::new(&c, 0, det.store().clone()).unwrap();
    m.process(matcher::LogLine {
        timestamp: chrono::Utc::now(),
        message: "quiet 1".into(),
    });
    m.process(matcher::LogLine {
        timestamp: chrono::Utc::now(),
        message: "loud".into(),
    });
    let mut out = String::new();
    det.write_metrics(&mut out);
    assert!(
        !out.contains("QuietEvent") && !out.contains("Loud"),
        "{out}"
    );
    // Events and conditions are still reported.
    assert_eq!(det.store().events_since(0, 10).0.len(), 2);
    assert_eq!(det.store().conditions()[0].status, Status::True);
}

#[test]
fn skip_list_and_pattern_suffix() {
    let common = watch::Common {
        start: chrono::Utc::now(),
        skip_list: vec!["audit:".into(), "UFW".into()],
        stats: Default::default(),
    };
    assert!(common.skipped("audit: type=1400"));
    assert!(common.skipped("[UFW BLOCK] IN=eth0"));
    assert!(!common.skipped("Killed process 1"));
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("suffix-monitor.json");
    std::fs::write(
        &p,
        r#"{"plugin":"kmsg","source":"s","rules":[{"type":"temporary","reason":"R","pattern":"disk \\w+ failed",
            "patternGeneratedMessageSuffix":"see https://example.invalid/runbook"}]}"#,
    )
    .unwrap();
    let det = ProblemDetector::load_in(std::slice::from_ref(&p), d.path()).unwrap();
    let MonitorConfig::SystemLog(c) = config::parse_file(&p).unwrap() else {
        panic!()
    };
    let mut m = LogMonitor::new(&c, 0, det.store().clone()).unwrap();
    m.process(matcher::LogLine {
        timestamp: chrono::Utc::now(),
        message: "disk sda failed".into(),
    });
    assert_eq!(
        det.store().events_since(0, 10).0[0].message,
        "disk sda failed; see https://example.invalid/runbook"
    );
}

#[test]
fn huge_go_duration_is_an_error_not_a_panic() {
    // Regression (#19 item 1): `Duration::from_secs_f64` panicked on overflow.
    let err = super::config::parse_go_duration("99999999999999999999999h").unwrap_err();
    assert!(err.contains("too large"), "{err}");
}
