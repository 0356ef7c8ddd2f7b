//! End to end: `vigil collector --problem-detector-config ...` runs node-problem-detector's
//! shipped kernel rules (through the filelog plugin on a temporary kern.log) and a custom plugin,
//! and serves /conditions, /problems/events and the problem metrics; a bad monitor config stops
//! start-up with the file and key named.

use crate::support::problems::{append, filelog_config, fixture, kern_line};
use crate::support::{free_port, start_fails, until_blocking, Proc};
use crate::support::promtool;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How long a poll waits for the collector.
const TIMEOUT: Duration = Duration::from_secs(40);

fn get(client: &reqwest::blocking::Client, url: &str) -> Option<String> {
    let resp = client.get(url).send().ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.text().ok()
}

#[test]
fn collector_serves_conditions_events_and_problem_metrics() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("kern.log");
    append(&log, "");
    let kernel = filelog_config(d.path(), "kernel-monitor.json", &log);
    // The shipped custom-plugin-monitor.json, unchanged, with its ./config/plugin/check_ntp.sh
    // resolved against the working directory (as in node-problem-detector's image): NTP is down.
    std::fs::create_dir_all(d.path().join("config/plugin")).unwrap();
    let script = d.path().join("config/plugin/check_ntp.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'NTP service is not running'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _vigil = Proc {
        name: "vigil collector".into(),
        child: Command::new(env!("CARGO_BIN_EXE_vigil"))
            .current_dir(d.path())
            .args(["collector", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--problem-detector-config")
            .arg(&kernel)
            .arg("--problem-detector-config")
            .arg(fixture("config/custom-plugin-monitor.json"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vigil"),
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // Default conditions are served from the start.
    let conds: Value = until_blocking("/conditions", TIMEOUT, || {
        get(&client, &format!("{base}/conditions"))
    })
    .parse::<Value>()
    .map(Some)
    .unwrap()
    .unwrap();
    let kinds: Vec<&str> = conds
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    for k in [
        "KernelDeadlock",
        "XfsShutdown",
        "CperHardwareErrorFatal",
        "NTPProblem",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {conds}");
    }

    let samples = ["docker_hung", "oom_kill", "au_opts_verify"];
    let text: String = samples
        .iter()
        .flat_map(|s| {
            std::fs::read_to_string(fixture(&format!("kernel-log-samples/{s}")))
                .unwrap()
                .lines()
                .map(kern_line)
                .collect::<Vec<_>>()
        })
        .collect();
    append(&log, &text);

    // Events, pulled the way the aggregator does.
    let events: Vec<Value> = until_blocking("problem events", TIMEOUT, || {
        let v: Value =
            serde_json::from_str(&get(&client, &format!("{base}/problems/events?since=0"))?)
                .ok()?;
        let ev = v["events"].as_array()?.clone();
        let reasons: Vec<&str> = ev.iter().filter_map(|e| e["reason"].as_str()).collect();
        (reasons.contains(&"OOMKilling")
            && reasons.contains(&"DockerHung")
            && reasons.contains(&"NTPIsDown"))
        .then_some(ev)
    });
    let kernel_events: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["source"] == "kernel-monitor")
        .map(|e| {
            (
                e["reason"].as_str().unwrap(),
                e["severity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kernel_events,
        [
            ("TaskHung", "warn"),
            ("DockerHung", "info"),
            ("OOMKilling", "warn")
        ]
    );
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    let later: Value = serde_json::from_str(
        &get(&client, &format!("{base}/problems/events?since={last}")).unwrap(),
    )
    .unwrap();
    assert!(later["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["seq"].as_u64().unwrap() > last));
    let bad = client
        .get(format!("{base}/problems/events?since=-1"))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    // Conditions: KernelDeadlock True (DockerHung), NTPProblem True (NTPIsDown, plugin output).
    let conds: Value =
        serde_json::from_str(&get(&client, &format!("{base}/conditions")).unwrap()).unwrap();
    let find = |k: &str| {
        conds
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == k)
            .unwrap()
            .clone()
    };
    let kd = find("KernelDeadlock");
    assert_eq!(
        (kd["status"].as_str(), kd["reason"].as_str()),
        (Some("True"), Some("DockerHung"))
    );
    assert_eq!(
        kd["message"],
        "INFO: task docker:20744 blocked for more than 120 seconds."
    );
    let ntp = until_blocking("NTPProblem True", TIMEOUT, || {
        let conds: Value =
            serde_json::from_str(&get(&client, &format!("{base}/conditions"))?).ok()?;
        let c = conds
            .as_array()?
            .iter()
            .find(|c| c["type"] == "NTPProblem")?
            .clone();
        (c["status"] == "True").then_some(c)
    });
    assert_eq!(
        (ntp["reason"].as_str(), ntp["message"].as_str()),
        (Some("NTPIsDown"), Some("NTP service is not running"))
    );

    // Metrics on the collector's /metrics, with node-problem-detector's names and semantics.
    let metrics = get(&client, &format!("{base}/metrics")).expect("/metrics");
    for want in [
        "problem_counter{reason=\"OOMKilling\"} 1",
        "problem_counter{reason=\"TaskHung\"} 1",
        "problem_counter{reason=\"DockerHung\"} 1",
        "problem_counter{reason=\"KernelOops\"} 0",
        "problem_gauge{reason=\"DockerHung\",type=\"KernelDeadlock\"} 1",
        "problem_gauge{reason=\"XfsHasShutdown\",type=\"XfsShutdown\"} 0",
        "problem_gauge{reason=\"NTPIsDown\",type=\"NTPProblem\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == want),
            "missing {want:?} in /metrics"
        );
    }
    // promtool parses the problem families (its naming lint objects only to NPD's own names).
    let mine: String = metrics
        .lines()
        .filter(|l| {
            let name = l
                .trim_start_matches("# HELP ")
                .trim_start_matches("# TYPE ");
            name.starts_with("problem_") || name.starts_with("vigil_problem_detector_")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // NPD's own names lack the `_total` suffix promtool asks for; they are kept on purpose.
    promtool::check_metrics(&mine, &["problem_counter ", "problem_gauge "]);
}

#[test]
fn collector_refuses_a_bad_monitor_config() {
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad-monitor.json");
    std::fs::write(
        &bad,
        r#"{"plugin":"kmsg","conditions":[],"rules":[{"type":"temporary","reason":"R","pattern":"task (unclosed"}]}"#,
    )
    .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let stderr = start_fails(
        "collector",
        &["--listen", &listen, "--problem-detector-config", bad.to_str().unwrap()],
    );
    assert!(
        stderr.contains("bad-monitor.json") && stderr.contains("rules[0].pattern"),
        "{stderr}"
    );
}
