//! The alerting settings as keys of `vigil aggregator --config`: `rule_file:` (relative to the
//! config file's directory, globs allowed) loads the rules seen in `/api/v1/rules`, with the
//! file's `rule_evaluation_interval`; `--rule-file` replaces the file's list; a bad alerting key
//! stops the start naming the file, the key and the flag.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::aggregator::{nodes_arg, try_json, Aggregator, SimNode};
use crate::support::until;
use vigil_aggregator::sim::{Shape, Sim};

const RULES_A: &str = "groups:\n  - name: from-config-a\n    rules:\n      - record: config:memory_working_set:count\n        expr: count(memory_working_set)\n";
const RULES_B: &str = "groups:\n  - name: from-config-b\n    rules:\n      - alert: ConfigSeen\n        expr: vector(1)\n";
const RULES_FLAG: &str = "groups:\n  - name: from-flag\n    rules:\n      - alert: FlagSeen\n        expr: vector(1)\n";

/// The rule groups `/api/v1/rules` lists: (name, file, interval in seconds).
async fn groups(base: &str) -> Vec<(String, String, f64)> {
    let url = format!("{base}/api/v1/rules");
    until("rule groups in /api/v1/rules", Duration::from_secs(60), || {
        let url = url.clone();
        async move {
            let v: Value = try_json(&url).await?;
            let groups = v["data"]["groups"].as_array()?;
            let mut out: Vec<_> = groups
                .iter()
                .map(|g| {
                    (
                        g["name"].as_str().unwrap_or_default().to_string(),
                        g["file"].as_str().unwrap_or_default().to_string(),
                        g["interval"].as_f64().unwrap_or(-1.0),
                    )
                })
                .collect();
            out.sort_by(|a, b| a.0.cmp(&b.0));
            (!out.is_empty()).then_some(out)
        }
    })
    .await
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_file_key_loads_rules_relative_to_the_config_file_and_the_flag_replaces_it() {
    let sim = Sim::new(Shape {
        nodes: 1,
        pods_per_node: 1,
        containers_per_pod: 1,
        namespaces: 1,
    });
    let node = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("rules/a.yml"), RULES_A);
    write(&dir.path().join("rules/b.yml"), RULES_B);
    let flag_rules = dir.path().join("flag.yml");
    write(&flag_rules, RULES_FLAG);
    let config = dir.path().join("conf/aggregator.yaml");
    // `../rules/*.yml` is relative to conf/, not to the aggregator's working directory.
    write(
        &config,
        &format!(
            "nodes: [{}]\nrule_file: ['../rules/*.yml']\nrule_evaluation_interval: 7s\nexternal_label: [cluster=e2e]\n",
            nodes_arg(std::slice::from_ref(&node))
        ),
    );
    let config_arg = config.to_str().unwrap();

    let agg = Aggregator::start(&["--config", config_arg]);
    let g = groups(&agg.base).await;
    let names: Vec<_> = g.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["from-config-a", "from-config-b"], "{g:?}");
    for (name, file, interval) in &g {
        assert!(
            file.contains("rules") && file.ends_with(".yml"),
            "{name}: {file}"
        );
        assert_eq!(*interval, 7.0, "{name}: the file's rule_evaluation_interval");
    }
    drop(agg);

    // `--rule-file` replaces the file's list; the file's other keys still apply.
    let agg = Aggregator::start(&[
        "--config",
        config_arg,
        "--rule-file",
        flag_rules.to_str().unwrap(),
    ]);
    let g = groups(&agg.base).await;
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!((g[0].0.as_str(), g[0].2), ("from-flag", 7.0), "{g:?}");
}

#[test]
fn a_bad_alerting_key_stops_the_start_naming_the_file_key_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    write(
        &config,
        "nodes: [127.0.0.1:1]\nrule_evaluation_interval: often\n",
    );
    let out = Command::new(crate::support::vigil_bin())
        .args(["aggregator", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml")
            && err.contains("key `rule_evaluation_interval`")
            && err.contains("often")
            && err.contains("(flag --rule-evaluation-interval)"),
        "{err}"
    );
}
