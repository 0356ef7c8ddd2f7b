//! Baseline quality on NAB's labelled AWS CloudWatch series: replays each file online with the
//! default `BaselineConfig`, turns verdicts into alert onsets with Prometheus's `for` /
//! `keep_firing_for` state machine, scores them with NAB's scorer (`score.py`, python3) and
//! fails when the score drops below the figure recorded in BENCHMARKS.md.
//!
//! Data: `$NAB_DIR` or `../shared/fixtures/nab` next to the repository. `NAB_ALERTS_OUT=<file>`
//! also writes the onsets there, `NAB_CONFIG='{expr: value, deviations: 4}'` replays another
//! configuration without checking it (`alerting/nab/run.sh` uses both).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDateTime;
use vigil_alerting::anomaly::{Baseline, BaselineConfig};

/// A rule file's map as vigil reads it (serde-saphyr within the config budget).
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, vigil_common::config::LoadError> {
    vigil_common::config::from_yaml(text, std::path::Path::new("rule.yaml"))
}

/// Recorded in BENCHMARKS.md (all twelve files, default configuration).
const RECORDED_STANDARD: f64 = 67.2;
const RECORDED_LOW_FP: f64 = 60.3;

fn nab_dir() -> PathBuf {
    let dir = std::env::var_os("NAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/nab"));
    assert!(
        dir.join("score.py").is_file(),
        "NAB data and scorer not found in {} (set NAB_DIR)",
        dir.display()
    );
    dir
}

/// `file -> [[start, end], ...]`: the files to replay.
fn files(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("data/labels/combined_windows.json")).unwrap();
    let windows: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    windows.into_keys().collect()
}

fn read_csv(path: &Path) -> Vec<(String, i64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("timestamp,value"), "{}", path.display());
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (ts, v) = l.split_once(',').unwrap();
            let t = NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S")
                .unwrap_or_else(|e| panic!("{}: {ts:?}: {e}", path.display()))
                .and_utc()
                .timestamp_millis();
            (ts.to_string(), t, v.parse().unwrap())
        })
        .collect()
}

/// Prometheus's alert state machine on the per-sample condition: inactive → pending →
/// firing after `for`, resolved once the condition has been false for `keep_firing_for`.
/// Returns the onset times (inactive/pending → firing).
fn onsets(config: &BaselineConfig, samples: &[(String, i64, f64)]) -> Vec<String> {
    let hold = config.hold.as_millis() as i64;
    let keep = config.keep_firing_for.as_millis() as i64;
    let mut model = Baseline::new(config);
    let mut active_since: Option<i64> = None;
    let mut firing = false;
    let mut clear_since: Option<i64> = None;
    let mut out = Vec::new();
    for (ts, t, v) in samples {
        let verdict = model.update(*t, *v).unwrap();
        if verdict.anomalous {
            clear_since = None;
            let since = *active_since.get_or_insert(*t);
            if !firing && t - since >= hold {
                firing = true;
                out.push(ts.clone());
            }
        } else if firing {
            let since = *clear_since.get_or_insert(*t);
            if t - since >= keep {
                firing = false;
                active_since = None;
                clear_since = None;
            }
        } else {
            active_since = None;
        }
    }
    out
}

/// Replays `files` and scores them; returns score.py's JSON summary.
fn replay_and_score(dir: &Path, files: &[String], config: &BaselineConfig) -> serde_json::Value {
    let mut csv = String::from("file,timestamp\n");
    for f in files {
        let samples = read_csv(&dir.join("data").join(f));
        for ts in onsets(config, &samples) {
            csv.push_str(&format!("{f},{ts}\n"));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let alerts = tmp.path().join("alerts.csv");
    std::fs::write(&alerts, &csv).unwrap();
    if let Some(out) = std::env::var_os("NAB_ALERTS_OUT") {
        std::fs::write(out, &csv).unwrap();
    }
    let json = tmp.path().join("score.json");
    let mut cmd = Command::new("python3");
    cmd.arg(dir.join("score.py"))
        .arg(&alerts)
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--json")
        .arg(&json)
        .arg("--files")
        .args(files);
    let out = cmd.output().expect("python3 runs NAB's score.py");
    assert!(
        out.status.success(),
        "score.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn nab_default_config_keeps_its_recorded_score() {
    let dir = nab_dir();
    let files = files(&dir);
    assert_eq!(files.len(), 12, "the twelve realAWSCloudwatch files");
    // NAB_CONFIG (a `baseline:` map) replays another configuration, for the record only.
    let other = std::env::var("NAB_CONFIG").ok();
    let yaml = other.as_deref().unwrap_or("expr: value");
    let config: BaselineConfig = parse_yaml(yaml).unwrap();
    config.validate().unwrap();
    let score = replay_and_score(&dir, &files, &config);
    if other.is_some() {
        return;
    }
    assert_eq!(config, BaselineConfig::new("value"));
    let standard = score["nab_standard"].as_f64().unwrap();
    let low_fp = score["nab_reward_low_FP_rate"].as_f64().unwrap();
    assert!(
        standard >= RECORDED_STANDARD && low_fp >= RECORDED_LOW_FP,
        "NAB standard {standard:.2} (recorded {RECORDED_STANDARD}), reward-low-FP {low_fp:.2} \
         (recorded {RECORDED_LOW_FP})"
    );
}

#[test]
fn nab_perfect_and_null_detectors_score_100_and_0() {
    // The scorer itself, as this test drives it: no alerts is 0, the windows' starts are 100.
    let dir = nab_dir();
    let files = files(&dir);
    let text = std::fs::read_to_string(dir.join("data/labels/combined_windows.json")).unwrap();
    let windows: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(&text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (csv, expect) in [
        ("file,timestamp\n".to_string(), 0.0),
        (
            windows
                .iter()
                .fold(String::from("file,timestamp\n"), |mut s, (f, ws)| {
                    for w in ws {
                        s.push_str(&format!("{f},{}\n", w[0]));
                    }
                    s
                }),
            100.0,
        ),
    ] {
        let alerts = tmp.path().join("a.csv");
        let json = tmp.path().join("s.json");
        std::fs::write(&alerts, csv).unwrap();
        let out = Command::new("python3")
            .arg(dir.join("score.py"))
            .arg(&alerts)
            .arg("--data")
            .arg(dir.join("data"))
            .arg("--json")
            .arg(&json)
            .args(["--files"])
            .args(&files)
            .output()
            .expect("python3 runs NAB's score.py");
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        let got = v["nab_standard"].as_f64().unwrap();
        assert!((got - expect).abs() < 1e-6, "expected {expect}, got {got}");
    }
}
