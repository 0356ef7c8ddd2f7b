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
