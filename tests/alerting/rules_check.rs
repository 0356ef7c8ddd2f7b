//! `vigil rules check` against the real `promtool check rules` (Debian's prometheus package):
//! the same verdict (exit status) and the same reason on the same files.

use std::path::Path;
use std::process::{Command, Output};

fn run(program: &str, args: &[&str], file: &Path) -> Output {
    Command::new(program)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed (scripts/test.sh installs it): {e}"))
}

/// (name, file text, reason both must give; None = valid).
const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "valid",
        r#"
groups:
  - name: node
    interval: 30s
    rules:
      - record: instance:cpu:rate5m
        expr: sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))
      - alert: HighCPU
        expr: instance:cpu:rate5m > 0.9
        for: 10m
        keep_firing_for: 5m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.instance }} CPU at {{ humanizePercentage $value }}"
          description: '{{ with query "up" }}{{ . | first | value | humanize }}{{ end }}'
  - name: other
    limit: 10
    rules:
      - alert: Down
        expr: up == 0
"#,
        None,
    ),
    ("empty groups", "groups: []\n", None),
    (
        "bad expression",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: 'sum(up'\n",
        Some("could not parse expression"),
    ),
    (
        "record and alert",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    record: b\n    expr: up\n",
        Some("only one of 'record' and 'alert' must be set"),
    ),
    (
        "neither record nor alert",
        "groups:\n- name: g\n  rules:\n  - expr: up\n",
        Some("one of 'record' or 'alert' must be set"),
    ),
    (
        "no expr",
        "groups:\n- name: g\n  rules:\n  - alert: A\n",
        Some("field 'expr' must be set in rule"),
    ),
    (
        "repeated group",
        "groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n",
        Some("groupname: \"g\" is repeated in the same file"),
    ),
    (
        "empty group name",
        "groups:\n- rules:\n  - record: a\n    expr: up\n",
        Some("Groupname must not be empty"),
    ),
    (
        "invalid recording name",
        "groups:\n- name: g\n  rules:\n  - record: 'a-b'\n    expr: up\n",
        Some("invalid recording rule name: a-b"),
    ),
    (
        "for on recording rule",
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    for: 5m\n",
        Some("invalid field 'for' in recording rule"),
    ),
    (
        "annotations on recording rule",
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    annotations:\n      x: y\n",
        Some("invalid field 'annotations' in recording rule"),
    ),
    (
        "invalid label name",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    labels:\n      'x-y': z\n",
        Some("invalid label name: x-y"),
    ),
    (
        "invalid annotation name",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      '1x': z\n",
        Some("invalid annotation name: 1x"),
    ),
    (
        "template that does not parse",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    annotations:\n      s: '{{ $labels.instance '\n",
        Some("annotation \"s\""),
    ),
    (
        "unknown template function",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    labels:\n      s: '{{ nosuch 1 }}'\n",
        Some("label \"s\""),
    ),
    (
        "bad duration",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    for: 5 minutes\n",
        Some("not a valid duration string"),
    ),
    (
        "unknown field",
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n    severity: page\n",
        Some("severity"),
    ),
    ("not yaml", "groups: [\n", Some("")),
];

#[test]
fn same_verdicts_and_reasons_as_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let vigil = env!("CARGO_BIN_EXE_vigil");
    for (name, text, reason) in CASES {
        let file = dir.path().join(format!("{}.yml", name.replace(' ', "_")));
        std::fs::write(&file, text).unwrap();
        let theirs = run("promtool", &["check", "rules"], &file);
        let ours = run(vigil, &["rules", "check"], &file);
        let their_err = String::from_utf8_lossy(&theirs.stderr);
        let our_err = String::from_utf8_lossy(&ours.stderr);
        assert_eq!(
            theirs.status.code(),
            ours.status.code(),
            "{name}: promtool {:?} ({their_err}), vigil {:?} ({our_err})",
            theirs.status,
            ours.status
        );
        match reason {
            None => {
                assert_eq!(theirs.status.code(), Some(0), "{name}: {their_err}");
                let their_out = String::from_utf8_lossy(&theirs.stdout);
                let our_out = String::from_utf8_lossy(&ours.stdout);
                let count = |s: &str| s.lines().find(|l| l.contains("SUCCESS")).map(str::to_string);
                assert_eq!(count(&their_out), count(&our_out), "{name}");
            }
            Some(reason) => {
                assert_eq!(theirs.status.code(), Some(1), "{name}: {their_err}");
                assert!(their_err.contains(reason), "{name}: promtool said {their_err}");
                assert!(our_err.contains(reason), "{name}: vigil said {our_err}");
                assert!(
                    our_err.contains(&file.display().to_string()),
                    "{name}: the error names the file: {our_err}"
                );
            }
        }
    }
}

#[test]
fn errors_name_group_and_rule_like_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    std::fs::write(
        &file,
        "groups:\n- name: node\n  rules:\n  - record: ok\n    expr: up\n  - alert: Broken\n    expr: 'rate(up[5m]'\n",
    )
    .unwrap();
    let ours = run(env!("CARGO_BIN_EXE_vigil"), &["rules", "check"], &file);
    let theirs = run("promtool", &["check", "rules"], &file);
    let want = "group \"node\", rule 2, \"Broken\": could not parse expression";
    assert!(String::from_utf8_lossy(&theirs.stderr).contains(want));
    assert!(String::from_utf8_lossy(&ours.stderr).contains(want), "{ours:?}");
}

#[test]
fn duplicate_rules_are_a_lint_finding_as_in_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dup.yml");
    std::fs::write(
        &file,
        "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n  - record: a\n    expr: up\n",
    )
    .unwrap();
    let vigil = env!("CARGO_BIN_EXE_vigil");
    for args in [&["check", "rules"][..], &["check", "rules", "--lint-fatal"][..]] {
        let theirs = run("promtool", args, &file);
        let mut our_args = vec!["rules", "check"];
        our_args.extend(&args[2..]);
        let ours = run(vigil, &our_args, &file);
        assert_eq!(theirs.status.code(), ours.status.code(), "{args:?}");
        let want = "1 duplicate rule(s) found";
        assert!(String::from_utf8_lossy(&theirs.stderr).contains(want));
        assert!(String::from_utf8_lossy(&ours.stderr).contains(want));
    }
}

#[test]
fn default_rule_file_passes_promtool_and_vigil() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerting/rules/default.yml");
    let theirs = run("promtool", &["check", "rules"], &file);
    assert_eq!(theirs.status.code(), Some(0), "{}", String::from_utf8_lossy(&theirs.stderr));
    let ours = run(env!("CARGO_BIN_EXE_vigil"), &["rules", "check"], &file);
    assert_eq!(ours.status.code(), Some(0), "{}", String::from_utf8_lossy(&ours.stderr));
    assert_eq!(String::from_utf8_lossy(&theirs.stdout), String::from_utf8_lossy(&ours.stdout));
}
