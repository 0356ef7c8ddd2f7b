//! Regression tests for issue 19 items 2 and 3: a config file that is endless (`/dev/zero`) or a
//! YAML bomb of nested lists makes every subcommand that reads one exit at once with an error
//! naming the file, instead of growing past 2 GiB or burning 44 s of CPU.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child on every path out of the test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a run that was expected to fail left behind.
struct Failed {
    stderr: String,
    took: Duration,
}

/// Hang guard, not a speed figure: the unbounded loader took 44 s of CPU (item 3) or grew
/// without end (item 2); a bounded one answers in well under a second.
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `vigil <args>` and expects it to exit non-zero before [`DEADLINE`]; `stderr` holds
/// both output streams (`vigil rules` reports on stdout, as promtool).
fn run_failing(args: &[&str]) -> Failed {
    let start = Instant::now();
    let (mut reader, writer) = std::io::pipe().expect("pipe");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("pipe"))
        .stderr(writer);
    let child = cmd.spawn().expect("start vigil");
    // Our copies of the write end must go, or the reader never sees the end.
    drop(cmd);
    let mut guard = Guard(child);
    let output = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait for vigil") {
            break status;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "vigil {args:?} still running after {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let stderr = output.join().expect("output reader");
    assert!(
        !status.success() && status.code() != Some(101),
        "vigil {args:?} should fail with an error, not succeed or panic: {status}\n{stderr}"
    );
    Failed { stderr, took }
}

/// The three subcommands that take `--config`, with what else they need to get that far.
fn subcommands() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("collector", vec!["--listen", "127.0.0.1:0"]),
        (
            "aggregator",
            vec!["--listen", "127.0.0.1:0", "--nodes", "127.0.0.1:1"],
        ),
        ("log-shipper", vec!["--listen", "127.0.0.1:0"]),
    ]
}

/// A key of `sub`'s config that holds a list, so the bomb gets past the first key.
fn list_key(sub: &str) -> &'static str {
    match sub {
        "collector" => "pod_labels: ",
        "aggregator" => "sinks: ",
        _ => "parse: {multiline: ",
    }
}

/// 100,000 nested flow lists in 200 KB (the reproduction of item 3), the block form, and
/// nested lists under a key `sub` accepts.
fn nested_yaml(dir: &Path, sub: &str) -> Vec<String> {
    let flow = dir.join("flow.yaml");
    std::fs::write(&flow, "[".repeat(100_000) + &"]".repeat(100_000)).unwrap();
    let block = dir.join("block.yaml");
    std::fs::write(&block, "- ".repeat(100_000) + "x\n").unwrap();
    let keyed = dir.join("keyed.yaml");
    std::fs::write(&keyed, list_key(sub).to_string() + &"[".repeat(100_000)).unwrap();
    [flow, block, keyed]
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn config_dev_zero_fails_fast() {
    for (sub, extra) in subcommands() {
        let mut args = vec![sub, "--config", "/dev/zero"];
        args.extend(&extra);
        let f = run_failing(&args);
        assert!(
            f.stderr.contains("/dev/zero") && f.stderr.contains("larger than the limit"),
            "{sub}: {}",
            f.stderr
        );
        eprintln!("{sub} --config /dev/zero: failed in {:?}", f.took);
    }
}

#[test]
fn config_deeply_nested_yaml_fails_fast() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, extra) in subcommands() {
        for file in nested_yaml(dir.path(), sub) {
            let mut args = vec![sub, "--config", &file];
            args.extend(&extra);
            let f = run_failing(&args);
            assert!(f.stderr.contains(&file), "{sub} {file}: {}", f.stderr);
            // A typed config may reject the block form at its first event; the flow forms
            // reach the depth budget.
            if !file.ends_with("block.yaml") {
                assert!(f.stderr.contains("limit"), "{sub} {file}: {}", f.stderr);
            }
            eprintln!("{sub} --config {file}: failed in {:?}", f.took);
        }
    }
}

#[test]
fn problem_detector_config_dev_zero_fails_fast() {
    let f = run_failing(&[
        "collector",
        "--listen",
        "127.0.0.1:0",
        "--problem-detector-config",
        "/dev/zero",
    ]);
    assert!(
        f.stderr.contains("/dev/zero") && f.stderr.contains("larger than the limit"),
        "{}",
        f.stderr
    );
}

#[test]
fn config_bad_duration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "collector",
            "housekeeping_interval: 99999999999999999999999s\n",
            "housekeeping_interval",
        ),
        ("collector", "rescan_interval: 10\n", "rescan_interval"),
        (
            "aggregator",
            "metric_resolution: 99999999999999999999h\n",
            "metric-resolution",
        ),
    ];
    for (i, (sub, yaml, key)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("c{i}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let file = file.display().to_string();
        let mut args = vec![sub, "--config", &file];
        let extra = subcommands().into_iter().find(|(s, _)| *s == sub).unwrap().1;
        args.extend(&extra);
        let f = run_failing(&args);
        assert!(f.stderr.contains(key), "{sub} {yaml}: {}", f.stderr);
    }
}

/// Rule files (`vigil rules check`, the aggregator's `--rule-file`) and unit-test files go
/// through the same size cap and depth budget.
#[test]
fn rule_files_dev_zero_and_nested_yaml_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let f = run_failing(&["rules", "check", "/dev/zero"]);
    assert!(
        f.stderr.contains("/dev/zero") && f.stderr.contains("larger than the limit"),
        "{}",
        f.stderr
    );
    let deep = dir.path().join("deep.rules.yaml");
    std::fs::write(&deep, "groups: ".to_string() + &"[".repeat(100_000)).unwrap();
    let deep = deep.display().to_string();
    for args in [vec!["rules", "check", &deep], vec!["rules", "test", &deep]] {
        let f = run_failing(&args);
        assert!(
            f.stderr.contains(&deep) && f.stderr.contains("limit"),
            "{args:?}: {}",
            f.stderr
        );
    }
}

/// The Alertmanager-format notifier config (`vigil aggregator --notify-config`).
#[test]
fn notify_config_dev_zero_and_nested_yaml_fail_fast() {
    let dir = tempfile::tempdir().unwrap();
    let deep = dir.path().join("deep.notify.yaml");
    std::fs::write(&deep, "route: ".to_string() + &"[".repeat(100_000)).unwrap();
    let deep = deep.display().to_string();
    for (file, says) in [("/dev/zero", "larger than the limit"), (deep.as_str(), "limit")] {
        let flag = format!("--notify-config={file}");
        let f = run_failing(&[
            "aggregator",
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            "127.0.0.1:1",
            &flag,
        ]);
        assert!(
            f.stderr.contains(file) && f.stderr.contains(says),
            "{file}: {}",
            f.stderr
        );
    }
}
