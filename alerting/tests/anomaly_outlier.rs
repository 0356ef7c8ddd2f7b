//! Host comparison on generated fleets: one drifting node among 10, the whole fleet shifting,
//! a group of 2, pods grouped by deployment, direction, gaps, bad configs.

use std::collections::BTreeMap;

use vigil_alerting::anomaly::outlier::{evaluate, OutlierConfig};
use vigil_alerting::anomaly::AnomalyError;
use vigil_alerting::RangeSeries;

/// A rule file's map as vigil reads it (serde-saphyr within the config budget).
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, vigil_common::config::LoadError> {
    vigil_common::config::from_yaml(text, std::path::Path::new("rule.yaml"))
}

const STEP_MS: i64 = 15_000;
/// 15 minutes at a 15 s step.
const POINTS: i64 = 60;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Deterministic noise in [-1, 1].
fn noise(seed: u64, i: i64) -> f64 {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005)
        ^ (i as u64).wrapping_mul(1_442_695_040_888_963_407);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 20_001) as f64 / 10_000.0 - 1.0
}

/// A node's CPU use over the window: `f(i)` plus ±2 of noise.
fn node(name: &str, seed: u64, f: impl Fn(i64) -> f64) -> RangeSeries {
    RangeSeries {
        labels: labels(&[("__name__", "node_cpu_busy"), ("nodename", name)]),
        points: (0..POINTS)
            .map(|i| (i * STEP_MS, f(i) + 2.0 * noise(seed, i)))
            .collect(),
    }
}

fn fleet(n: usize, f: impl Fn(usize, i64) -> f64) -> Vec<RangeSeries> {
    (0..n)
        .map(|k| node(&format!("node-{k}"), k as u64 + 1, |i| f(k, i)))
        .collect()
}

fn firing(verdicts: &[vigil_alerting::anomaly::GroupVerdict]) -> Vec<String> {
    verdicts
        .iter()
        .flat_map(|g| g.members.iter())
        .filter(|m| m.anomalous)
        .map(|m| m.labels["nodename"].clone())
        .collect()
}

#[test]
fn one_drifting_node_among_ten_is_the_only_outlier() {
    // node-7 drifts from 50 % to 90 % over the window; the others stay at 50 % ± 2.
    let series = fleet(10, |k, i| {
        if k == 7 {
            50.0 + 40.0 * i as f64 / POINTS as f64
        } else {
            50.0
        }
    });
    let config = OutlierConfig::new("node_cpu_busy", &["nodename"]);
    let verdicts = evaluate(&config, &series);
    assert_eq!(verdicts.len(), 1, "one group: the nodes of one metric");
    assert_eq!(verdicts[0].group, labels(&[("__name__", "node_cpu_busy")]));
    assert_eq!(verdicts[0].skipped, None);
    assert_eq!(firing(&verdicts), ["node-7"]);
    let drifting = verdicts[0]
        .members
        .iter()
        .find(|m| m.labels["nodename"] == "node-7")
        .unwrap();
    assert!(
        drifting.score > 3.0 && drifting.outlying_share >= 0.5,
        "{drifting:?}"
    );
    for m in verdicts[0]
        .members
        .iter()
        .filter(|m| m.labels["nodename"] != "node-7")
    {
        assert!(m.score.abs() < 2.0 && m.outlying_share < 0.2, "{m:?}");
    }
}

#[test]
fn a_node_drifting_only_at_the_end_fires_once_most_of_its_window_is_out() {
    // Out for the last quarter of the window: under `share` (0.5), not an outlier yet.
    let series = fleet(10, |k, i| if k == 3 && i >= 45 { 90.0 } else { 50.0 });
    let config = OutlierConfig::new("node_cpu_busy", &["nodename"]);
    assert!(firing(&evaluate(&config, &series)).is_empty());
    let config = OutlierConfig {
        share: 0.2,
        ..config
    };
    assert_eq!(firing(&evaluate(&config, &series)), ["node-3"]);
}

#[test]
fn the_whole_fleet_shifting_together_fires_nothing() {
    // Every node jumps from 30 % to 80 % half-way through the window (a deploy, a traffic peak).
    let series = fleet(10, |_, i| if i < POINTS / 2 { 30.0 } else { 80.0 });
    let config = OutlierConfig::new("node_cpu_busy", &["nodename"]);
    let verdicts = evaluate(&config, &series);
    assert!(firing(&verdicts).is_empty(), "{verdicts:?}");
    // And ramping together.
    let series = fleet(10, |_, i| 10.0 + i as f64);
    assert!(firing(&evaluate(&config, &series)).is_empty());
}

#[test]
fn a_group_of_two_is_not_compared_and_says_why() {
    let series = fleet(2, |k, _| if k == 0 { 20.0 } else { 95.0 });
    let config = OutlierConfig::new("node_cpu_busy", &["nodename"]);
    let verdicts = evaluate(&config, &series);
    assert_eq!(verdicts.len(), 1);
    assert!(firing(&verdicts).is_empty());
    let why = verdicts[0].skipped.as_deref().unwrap();
    assert!(
        why.contains("2 member(s)") && why.contains("min_members 3"),
        "{why}"
    );
    assert_eq!(
        verdicts[0].members.len(),
        2,
        "members listed, none anomalous"
    );
    // Three members: the odd one is found.
    let series = fleet(3, |k, _| if k == 0 { 20.0 } else { 95.0 });
    assert_eq!(firing(&evaluate(&config, &series)), ["node-0"]);
}

#[test]
fn pods_are_compared_within_their_deployment_only() {
    let pod = |deploy: &str, pod: &str, seed: u64, level: f64| RangeSeries {
        labels: labels(&[("deployment", deploy), ("pod", pod)]),
        points: (0..POINTS)
            .map(|i| (i * STEP_MS, level + 0.02 * level * noise(seed, i)))
            .collect(),
    };
    // api pods use ~200 MB, one leaks to 400 MB; db pods use ~2 GB each (not outliers of api).
    let mut series = vec![
        pod("api", "api-1", 1, 200.0),
        pod("api", "api-2", 2, 205.0),
        pod("api", "api-3", 3, 400.0),
        pod("api", "api-4", 4, 198.0),
    ];
    for k in 0..4 {
        series.push(pod("db", &format!("db-{k}"), 10 + k, 2000.0));
    }
    let config = OutlierConfig::new("memory", &["pod"]);
    let verdicts = evaluate(&config, &series);
    assert_eq!(verdicts.len(), 2);
    let out: Vec<_> = verdicts
        .iter()
        .flat_map(|g| {
            g.members
                .iter()
                .filter(|m| m.anomalous)
                .map(|m| m.labels["pod"].as_str())
        })
        .collect();
    assert_eq!(out, ["api-3"]);
}

#[test]
fn direction_below_ignores_a_node_above_its_peers() {
    let series = fleet(10, |k, _| match k {
        2 => 90.0,
        5 => 10.0,
        _ => 50.0,
    });
    let mut config = OutlierConfig::new("node_cpu_busy", &["nodename"]);
    assert_eq!(firing(&evaluate(&config, &series)), ["node-2", "node-5"]);
    config.direction = vigil_alerting::anomaly::Direction::Below;
    assert_eq!(firing(&evaluate(&config, &series)), ["node-5"]);
}

#[test]
fn identical_peers_do_not_make_a_tiny_difference_an_outlier() {
    // Nine nodes report exactly 100; one reports 100.5: MAD is 0, the 1 % floor keeps it quiet.
    let series: Vec<RangeSeries> = (0..10)
        .map(|k| RangeSeries {
            labels: labels(&[("nodename", &format!("n{k}"))]),
            points: (0..POINTS)
                .map(|i| (i * STEP_MS, if k == 9 { 100.5 } else { 100.0 }))
                .collect(),
        })
        .collect();
    let config = OutlierConfig::new("x", &["nodename"]);
    assert!(firing(&evaluate(&config, &series)).is_empty());
}

#[test]
fn instants_with_too_few_members_and_nan_points_are_skipped() {
    let mut series = fleet(4, |k, _| if k == 0 { 90.0 } else { 50.0 });
    // node-3 has no data in the first half and NaN in the second: only 3 members remain.
    series[3].points.retain(|&(t, _)| t >= POINTS / 2 * STEP_MS);
    for p in &mut series[3].points {
        p.1 = f64::NAN;
    }
    let config = OutlierConfig::new("x", &["nodename"]);
    assert_eq!(firing(&evaluate(&config, &series)), ["node-0"]);
    let silent = series[3].clone();
    let v = evaluate(&config, &series);
    let m = v[0]
        .members
        .iter()
        .find(|m| m.labels == silent.labels)
        .unwrap();
    assert_eq!((m.score, m.outlying_share, m.anomalous), (0.0, 0.0, false));
}

#[test]
fn config_from_a_rule_file_map_with_defaults_and_bad_keys() {
    let c: OutlierConfig = parse_yaml("{expr: 'node_load1', by: [nodename]}").unwrap();
    assert_eq!(c, OutlierConfig::new("node_load1", &["nodename"]));
    assert_eq!(c.window, std::time::Duration::from_secs(900));
    c.validate().unwrap();
    let c: OutlierConfig = parse_yaml(
        "{expr: x, by: [pod], window: 1h30m, deviations: 4, direction: above, share: 0.8, \
          min_members: 5, for: 5m, keep_firing_for: 10m}",
    )
    .unwrap();
    assert_eq!(c.window, std::time::Duration::from_secs(5400));
    assert_eq!(c.hold, std::time::Duration::from_secs(300));
    c.validate().unwrap();

    let err =
        parse_yaml::<OutlierConfig>("{expr: x, by: [a], tolerance: 3}").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `tolerance`"),
        "{err}"
    );
    let err =
        parse_yaml::<OutlierConfig>("{expr: x, by: [a], window: 5 minutes}").unwrap_err();
    assert!(err.to_string().contains("not a valid duration"), "{err}");
    let err = parse_yaml::<OutlierConfig>("{expr: x}").unwrap_err();
    assert!(err.to_string().contains("missing field `by`"), "{err}");

    let key = |yaml: &str| match parse_yaml::<OutlierConfig>(yaml)
        .unwrap()
        .validate()
    {
        Err(AnomalyError::Config { key, .. }) => key,
        other => panic!("{yaml}: {other:?}"),
    };
    assert_eq!(key("{expr: x, by: []}"), "by");
    assert_eq!(key("{expr: ' ', by: [a]}"), "expr");
    assert_eq!(key("{expr: x, by: [a], window: 0s}"), "window");
    assert_eq!(key("{expr: x, by: [a], deviations: -1}"), "deviations");
    assert_eq!(key("{expr: x, by: [a], share: 1.5}"), "share");
    assert_eq!(key("{expr: x, by: [a], min_members: 2}"), "min_members");
    let msg = OutlierConfig {
        min_members: 2,
        ..c
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with("outlier: min_members: must be at least 3"),
        "{msg}"
    );
}
