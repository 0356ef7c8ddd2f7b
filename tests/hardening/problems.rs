//! Broken log sources against the real `vigil collector`'s problem detector (#19, items 7 and
//! 8): a `logPath` that is a directory must not spin, and a kernel-log line without a newline
//! must neither be kept whole nor rescanned on every read.

use crate::support::problems::{append, filelog_config, kern_line};
use crate::support::{free_port, until_blocking, Proc};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a poll waits for the collector.
const TIMEOUT: Duration = Duration::from_secs(40);

/// Starts a collector with the kernel monitor on `log`; stderr goes to `stderr`.
fn collector(dir: &Path, log: &Path, stderr: &Path) -> (Proc, String) {
    let config = filelog_config(dir, "kernel-monitor.json", log);
    let port = free_port();
    let vigil = Proc {
        name: "vigil collector".into(),
        child: Command::new(env!("CARGO_BIN_EXE_vigil"))
            .current_dir(dir)
            .args(["collector", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--problem-detector-config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .expect("start vigil"),
    };
    (vigil, format!("http://127.0.0.1:{port}"))
}

fn get(url: &str) -> Option<String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let resp = client.get(url).send().ok()?;
    resp.status().is_success().then(|| resp.text().ok())?
}

fn sample(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn events(base: &str) -> Vec<Value> {
    get(&format!("{base}/problems/events?since=0"))
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["events"].as_array().cloned())
        .unwrap_or_default()
}

/// CPU seconds (user + system) the process has used, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    ticks
        / String::from_utf8_lossy(&hz.stdout)
            .trim()
            .parse::<f64>()
            .unwrap()
}

/// Peak resident memory (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

const SOURCE: &str = "{source=\"kernel-monitor\"}";

/// Regression (#19, item 7): a `logPath` that is a directory opened fine, failed every read
/// with EISDIR and was reopened at once: 100 % CPU and 245k log lines in 5 s. Now it is retried
/// with exponential backoff, logged once, shown on /metrics, and picked up when it is fixed.
#[test]
fn filelog_directory_log_path_backs_off_instead_of_spinning() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("kern.log");
    std::fs::create_dir(&log).unwrap();
    let stderr = d.path().join("stderr.log");
    let (vigil, base) = collector(d.path(), &log, &stderr);
    let metrics = || get(&format!("{base}/metrics"));
    until_blocking("the source reported failing", TIMEOUT, || {
        let t = metrics()?;
        (sample(
            &t,
            &format!("vigil_problem_detector_log_source_failing{SOURCE}"),
        )? == 1.0)
            .then_some(())
    });
    let cpu0 = cpu_seconds(vigil.pid());
    std::thread::sleep(Duration::from_secs(5));
    let cpu = cpu_seconds(vigil.pid()) - cpu0;
    let t = metrics().unwrap();
    let errors = sample(
        &t,
        &format!("vigil_problem_detector_log_read_errors_total{SOURCE}"),
    )
    .unwrap();
    let logged = std::fs::read_to_string(&stderr).unwrap();
    let error_lines = logged
        .lines()
        .filter(|l| l.contains("cannot read log file"))
        .count();
    eprintln!("directory as logPath: {errors} read attempts, {error_lines} log lines, {cpu:.2} s CPU in ~5 s");
    // 200 ms, 400 ms, 800 ms... up to 10 s between attempts: a handful, not thousands.
    assert!((2.0..=15.0).contains(&errors), "{errors} read errors\n{t}");
    assert_eq!(error_lines, 1, "{logged}");
    assert!(cpu < 2.0, "{cpu} s of CPU in 5 s");
    // The error itself is served.
    let sources: Value =
        serde_json::from_str(&get(&format!("{base}/problems/sources")).unwrap()).unwrap();
    let kernel = &sources.as_array().unwrap()[0];
    assert_eq!(kernel["source"], "kernel-monitor");
    assert_eq!(kernel["failing"], true);
    assert!(
        kernel["lastError"]
            .as_str()
            .unwrap()
            .contains("Is a directory"),
        "{sources}"
    );

    // Fixed: the directory becomes a log file; it is read and the failure clears (logged).
    std::fs::remove_dir(&log).unwrap();
    append(
        &log,
        kern_line("Out of memory: Kill process 1 (x) score 1 or sacrifice child").as_bytes(),
    );
    append(
        &log,
        kern_line("Killed process 1 (x) total-vm:1kB, anon-rss:1kB, file-rss:0kB").as_bytes(),
    );
    until_blocking("OOMKilling after the fix", TIMEOUT, || {
        events(&base)
            .iter()
            .any(|e| e["reason"] == "OOMKilling")
            .then_some(())
    });
    let t = metrics().unwrap();
    assert_eq!(
        sample(
            &t,
            &format!("vigil_problem_detector_log_source_failing{SOURCE}")
        ),
        Some(0.0),
        "{t}"
    );
    assert!(std::fs::read_to_string(&stderr)
        .unwrap()
        .contains("log source readable again"));
}

/// Regression (#19, item 8): 100 MB without a newline were buffered whole and rescanned on
/// every 64 KiB read (100 % CPU for 30 s+, 142 MiB). Now a line keeps at most 8 KiB, each
/// byte is looked at once, the cut is counted, and the next line is matched as usual.
#[test]
fn kernel_log_line_without_newline_is_capped() {
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("kern.log");
    append(&log, b"");
    let stderr = d.path().join("stderr.log");
    let (vigil, base) = collector(d.path(), &log, &stderr);
    until_blocking("collector up", TIMEOUT, || get(&format!("{base}/conditions")));
    let pid = vigil.pid();
    let cpu0 = cpu_seconds(pid);
    let started = Instant::now();
    let mib = vec![b'x'; 1 << 20];
    for _ in 0..100 {
        append(&log, &mib);
    }
    append(&log, b"\n");
    append(
        &log,
        kern_line("Out of memory: Kill process 7 (y) score 1 or sacrifice child").as_bytes(),
    );
    append(
        &log,
        kern_line("Killed process 7 (y) total-vm:1kB, anon-rss:1kB, file-rss:0kB").as_bytes(),
    );
    until_blocking("OOMKilling after the long line", TIMEOUT, || {
        events(&base)
            .iter()
            .any(|e| {
                e["reason"] == "OOMKilling"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("process 7"))
            })
            .then_some(())
    });
    let took = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    let peak = peak_rss_mib(pid);
    let t = get(&format!("{base}/metrics")).unwrap();
    eprintln!(
        "100 MB line: matched the next line after {took:?}, {cpu:.2} s CPU, peak RSS {peak:.1} MiB"
    );
    assert_eq!(
        sample(
            &t,
            &format!("vigil_problem_detector_log_lines_truncated_total{SOURCE}")
        ),
        Some(1.0),
        "{t}"
    );
    assert!(cpu < 5.0, "{cpu} s of CPU for a 100 MB line");
    assert!(peak < 100.0, "peak RSS {peak} MiB");
    let logged = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(
        logged
            .lines()
            .filter(|l| l.contains("log line longer than the maximum"))
            .count(),
        1,
        "{logged}"
    );
}
