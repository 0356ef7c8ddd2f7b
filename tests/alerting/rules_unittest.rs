//! `vigil rules test` against the real `promtool test rules` on the same unit-test files:
//! the same verdict on passing and failing tests.

use std::path::Path;
use std::process::Command;

const RULES: &str = r#"
groups:
  - name: g
    rules:
      - record: job:requests:rate5m
        expr: sum by (job) (rate(requests_total[5m]))
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} of {{ $labels.job }} down"
          value: "{{ $value }}"
      - alert: HighRate
        expr: job:requests:rate5m > 1
        annotations:
          rate: "{{ humanize $value }}"
"#;

const PASSING: &str = r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="api", instance="a"}'
        values: '1 1 0 0 0 0 0 0 0 0 0'
      - series: 'up{job="api", instance="b"}'
        values: '1x10'
      - series: 'requests_total{job="api", instance="a"}'
        values: '0+120x10'
      - series: 'requests_total{job="api", instance="b"}'
        values: '0+30x4 _ stale'
    alert_rule_test:
      - eval_time: 5m
        alertname: InstanceDown
      - eval_time: 8m
        alertname: InstanceDown
        exp_alerts:
          - exp_labels: {severity: page, job: api, instance: a}
            exp_annotations: {summary: "a of api down", value: "0"}
      - eval_time: 3m
        alertname: HighRate
        exp_alerts:
          - exp_labels: {job: api}
            exp_annotations: {rate: "1.5"}
    promql_expr_test:
      - expr: job:requests:rate5m
        eval_time: 3m
        exp_samples:
          - labels: 'job:requests:rate5m{job="api"}'
            value: 1.5000000000000002
      - expr: up == 0
        eval_time: 10m
        exp_samples:
          - labels: 'up{job="api", instance="a"}'
            value: 0
"#;

fn run(program: &str, args: &[&str], file: &Path) -> (Option<i32>, String) {
    let o = Command::new(program)
        .args(args)
        .arg(file)
        .current_dir(file.parent().unwrap())
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test.sh installs it): {e}"));
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
}

#[test]
fn same_verdicts_as_promtool_test_rules() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let cases = [
        ("passing", PASSING.to_string(), Some(0)),
        ("wrong labels", PASSING.replace("{severity: page, job: api, instance: a}", "{severity: ticket, job: api, instance: a}"), Some(1)),
        ("not firing yet", PASSING.replace("eval_time: 8m", "eval_time: 6m"), Some(1)),
        ("wrong annotation", PASSING.replace("{rate: \"1.5\"}", "{rate: \"3\"}"), Some(1)),
        ("wrong value", PASSING.replace("value: 1.5000000000000002", "value: 1.5"), Some(1)),
        ("missing sample", PASSING.replace("eval_time: 10m", "eval_time: 1m"), Some(1)),
        ("bad notation", PASSING.replace("'1x10'", "'1x'"), Some(1)),
        ("unknown key", PASSING.replace("tests:", "testz:"), Some(1)),
    ];
    let vigil = env!("CARGO_BIN_EXE_vigil");
    for (name, text, want) in cases {
        let file = dir.path().join(format!("{}.test.yml", name.replace(' ', "_")));
        std::fs::write(&file, text).unwrap();
        let (theirs, their_out) = run("promtool", &["test", "rules"], &file);
        let (ours, our_out) = run(vigil, &["rules", "test"], &file);
        assert_eq!(theirs, want, "{name}: promtool said {their_out}");
        assert_eq!(ours, want, "{name}: vigil said {our_out} (promtool: {their_out})");
    }
}

/// `outlier:` rules (vigil's own kind, which promtool does not know) go through `vigil rules
/// check` and `vigil rules test`: the drifting host is the expected alert, the others are not.
#[test]
fn outlier_rules_are_checked_and_unit_tested() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: fleet\n    rules:\n      - alert: HostOutlier\n        outlier: {expr: load, by: [host], window: 10m, for: 2m}\n        labels: {severity: ticket}\n",
    )
    .unwrap();
    let test = |exp: &str| {
        format!(
            "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - {{series: 'load{{host=\"a\"}}', values: '1x30'}}\n      - {{series: 'load{{host=\"b\"}}', values: '1.1x30'}}\n      - {{series: 'load{{host=\"c\"}}', values: '0.9x30'}}\n      - {{series: 'load{{host=\"d\"}}', values: '1x10 1+1x20'}}\n    alert_rule_test:\n      - {{eval_time: 10m, alertname: HostOutlier}}\n      - eval_time: 25m\n        alertname: HostOutlier\n        exp_alerts: [{{exp_labels: {exp}}}]\n"
        )
    };
    let vigil = env!("CARGO_BIN_EXE_vigil");
    let (code, out) = run(vigil, &["rules", "check"], &dir.path().join("rules.yml"));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("SUCCESS: 1 rules found"), "{out}");
    for (exp, want) in [("{severity: ticket, host: d}", Some(0)), ("{severity: ticket, host: a}", Some(1))] {
        let file = dir.path().join("outlier.test.yml");
        std::fs::write(&file, test(exp)).unwrap();
        let (code, out) = run(vigil, &["rules", "test"], &file);
        assert_eq!(code, want, "expecting {exp}: {out}");
    }
    std::fs::write(dir.path().join("bad.yml"), "groups:\n  - name: g\n    rules:\n      - alert: A\n        outlier: {expr: load, by: [host], share: 2}\n").unwrap();
    let (code, out) = run(vigil, &["rules", "check"], &dir.path().join("bad.yml"));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("group \"g\", rule 1, \"A\": outlier: share: must be in (0, 1], got 2"), "{out}");
}

/// The shipped default rule for a node whose Kubernetes Ready condition is not True, unit-tested
/// with the same file by promtool and by vigil (the series as the aggregator writes it from the
/// node watch, with kube-state-metrics' name and labels).
#[test]
fn default_node_not_ready_rule_fires_after_five_minutes() {
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerting/rules/default.yml");
    std::fs::copy(&rules, dir.path().join("default.yml")).unwrap();
    let test = r#"
rule_files: [default.yml]
evaluation_interval: 30s
tests:
  - interval: 30s
    input_series:
      - series: 'kube_node_status_condition{node="n1",condition="Ready",status="true"}'
        values: '1 1 0x20'
      - series: 'kube_node_status_condition{node="n2",condition="Ready",status="true"}'
        values: '1x22'
    alert_rule_test:
      - eval_time: 4m
        alertname: NodeNotReady
      - eval_time: 6m
        alertname: NodeNotReady
        exp_alerts:
          - exp_labels: {severity: warning, node: n1, condition: Ready, status: "true"}
            exp_annotations:
              summary: "Node n1 is not Ready"
              description: "The kubelet of n1 reports its Ready condition as not True: the aggregator no longer pulls it and its pods may be evicted."
"#;
    let file = dir.path().join("default.test.yml");
    std::fs::write(&file, test).unwrap();
    let (theirs, their_out) = run("promtool", &["test", "rules"], &file);
    assert_eq!(theirs, Some(0), "promtool said {their_out}");
    let (ours, our_out) = run(env!("CARGO_BIN_EXE_vigil"), &["rules", "test"], &file);
    assert_eq!(ours, Some(0), "vigil said {our_out}");
    // The same file with the alert expected too early fails in both.
    std::fs::write(&file, test.replace("eval_time: 6m", "eval_time: 3m")).unwrap();
    assert_eq!(run("promtool", &["test", "rules"], &file).0, Some(1));
    assert_eq!(run(env!("CARGO_BIN_EXE_vigil"), &["rules", "test"], &file).0, Some(1));
}
