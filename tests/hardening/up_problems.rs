//! `vigil up` runs the collector's node problem detector: node-problem-detector's kernel monitor
//! by default (written to `<data-dir>/problems/`, served whether or not this machine lets it read
//! the kernel log), other monitor configs with `--problem-detector-config`, and a malformed one
//! stops `vigil up` with its file named.

use crate::support::collector::get;
use crate::support::problems::{append, filelog_config, fixture, kern_lines};
use crate::support::{free_port, start_fails, Proc};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a poll waits for `vigil up`.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The loopback flags of all three listeners (free ports), a data dir and a pod log root in `dir`.
fn up_flags(dir: &Path) -> Vec<String> {
    let pods = dir.join("pods");
    std::fs::create_dir_all(&pods).unwrap();
    vec![
        format!("--collector-listen=127.0.0.1:{}", free_port()),
        format!("--aggregator-listen=127.0.0.1:{}", free_port()),
        format!("--log-shipper-listen=127.0.0.1:{}", free_port()),
        format!("--data-dir={}", dir.join("data").display()),
        format!("--pod-log-root={}", pods.display()),
    ]
}

/// Starts `vigil up <flags> <extra>`; returns it and the collector's base URL.
fn up(dir: &Path, extra: &[String]) -> (Proc, String) {
    let flags = up_flags(dir);
    let collector = flags[0]
        .trim_start_matches("--collector-listen=")
        .to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(dir)
        .arg("up")
        .args(&flags)
        .args(extra)
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("start vigil up");
    (
        Proc {
            child,
            name: "vigil up".into(),
        },
        format!("http://{collector}"),
    )
}

/// GET `url` as JSON once it answers 200 and `ok` holds (panics with the last answer and
/// `vigil up`'s stderr after TIMEOUT).
fn json_when(dir: &Path, what: &str, url: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, body) = get(url);
        if status == 200 {
            if let Some(v) = serde_json::from_str::<Value>(&body).ok().filter(|v| ok(v)) {
                return v;
            }
        }
        if Instant::now() > deadline {
            let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            panic!("timed out after {TIMEOUT:?} waiting for {what}; last answer {status} {body}; vigil up's stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == kind)
}

fn sources(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s["source"].as_str()).collect())
        .unwrap_or_default()
}

/// With no flag: the shipped kernel monitor, written to the data dir, serves its conditions at
/// their initial status and lists its source (failing or not: this machine may refuse /dev/kmsg).
#[test]
fn up_runs_the_kernel_monitor_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, base) = up(dir.path(), &[]);
    let conditions = json_when(
        dir.path(),
        "/conditions with KernelDeadlock",
        &format!("{base}/conditions"),
        |v| condition(v, "KernelDeadlock").is_some(),
    );
    for (kind, reason) in [
        ("KernelDeadlock", "KernelHasNoDeadlock"),
        ("XfsShutdown", "XfsHasNotShutDown"),
        ("CperHardwareErrorFatal", "CperHardwareHasNoFatalError"),
    ] {
        let c = condition(&conditions, kind).unwrap_or_else(|| panic!("no {kind} in {conditions}"));
        assert_eq!(c["status"], "False", "{c}");
        assert_eq!(c["reason"], reason, "{c}");
    }
    let v = json_when(
        dir.path(),
        "/problems/sources",
        &format!("{base}/problems/sources"),
        |v| !sources(v).is_empty(),
    );
    assert_eq!(sources(&v), ["kernel-monitor"], "{v}");
    let (status, _) = get(&format!("{base}/problems/events"));
    assert_eq!(status, 200);

    let written = dir.path().join("data/problems/kernel-monitor.json");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        std::fs::read_to_string(fixture("config/kernel-monitor.json")).unwrap(),
        "{} is node-problem-detector's kernel-monitor.json",
        written.display()
    );
    let stdout = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    assert!(
        stdout.contains("/conditions") && stdout.contains(&written.display().to_string()),
        "{stdout}"
    );
}

/// `--problem-detector-config` (repeated) replaces the default: both monitors run on the given
/// kern.log, a hung docker task sets KernelDeadlock, and no default file is written.
#[test]
fn up_problem_detector_config_overrides_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("kern.log");
    append(&log, "");
    let kernel = filelog_config(dir.path(), "kernel-monitor.json", &log);
    let readonly = filelog_config(dir.path(), "readonly-monitor.json", &log);
    let (_up, base) = up(
        dir.path(),
        &[
            format!("--problem-detector-config={}", kernel.display()),
            "--problem-detector-config".into(),
            readonly.display().to_string(),
        ],
    );
    let v = json_when(
        dir.path(),
        "both sources",
        &format!("{base}/problems/sources"),
        |v| sources(v).len() == 2,
    );
    let mut names = sources(&v);
    names.sort();
    assert_eq!(names, ["kernel-monitor", "readonly-monitor"], "{v}");
    assert!(
        v.as_array().unwrap().iter().all(|s| s["failing"] == false),
        "{v}"
    );

    append(&log, kern_lines("docker_hung"));
    let conditions = json_when(
        dir.path(),
        "KernelDeadlock True",
        &format!("{base}/conditions"),
        |v| condition(v, "KernelDeadlock").is_some_and(|c| c["status"] == "True"),
    );
    assert_eq!(
        condition(&conditions, "KernelDeadlock").unwrap()["reason"],
        "DockerHung"
    );
    assert_eq!(
        condition(&conditions, "ReadonlyFilesystem").unwrap()["status"],
        "False",
        "{conditions}"
    );
    assert!(
        !dir.path().join("data/problems").exists(),
        "the default monitor is written only when no flag is given"
    );
}

/// A malformed monitor config stops `vigil up` at start-up, naming the file.
#[test]
fn up_stops_on_a_malformed_problem_detector_config() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken-monitor.json");
    std::fs::write(&bad, "{\"plugin\": \"kmsg\", \"rules\": [").unwrap();
    let mut args = up_flags(dir.path());
    args.push(format!("--problem-detector-config={}", bad.display()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = start_fails("up", &args);
    assert!(err.contains("broken-monitor.json"), "{err}");
}

/// A kernel log that cannot be opened (as /dev/kmsg without permission) does not stop `vigil up`:
/// the conditions are served at their initial status, the source is reported failing with its
/// error, and the rest of vigil serves (node-problem-detector logs and keeps going).
#[test]
fn up_serves_when_the_kernel_log_cannot_be_opened() {
    let dir = tempfile::tempdir().unwrap();
    let mut v: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("config/kernel-monitor.json")).unwrap(),
    )
    .unwrap();
    let missing = dir.path().join("no-such-kmsg");
    v["logPath"] = missing.display().to_string().into();
    let config = dir.path().join("kernel-monitor.json");
    std::fs::write(&config, v.to_string()).unwrap();
    let (_up, base) = up(
        dir.path(),
        &[format!("--problem-detector-config={}", config.display())],
    );
    let v = json_when(
        dir.path(),
        "kernel-monitor failing",
        &format!("{base}/problems/sources"),
        |v| v[0]["failing"] == true,
    );
    assert_eq!(v[0]["source"], "kernel-monitor", "{v}");
    assert!(
        v[0]["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("cannot open kmsg {}: ", missing.display())),
        "the error names the path: {v}"
    );
    let conditions = json_when(
        dir.path(),
        "/conditions",
        &format!("{base}/conditions"),
        |_| true,
    );
    assert_eq!(
        condition(&conditions, "KernelDeadlock").unwrap()["status"],
        "False",
        "{conditions}"
    );
    let (status, _) = get(&format!("{base}/metrics"));
    assert_eq!(status, 200, "the collector serves its metrics");
}
