//! The Kubernetes manifests in deploy/ only use flags the binary knows, with values it accepts:
//! each container's `args` is parsed by the real `vigil` binary (with `--help` appended, so it
//! parses and exits without starting anything).

use std::path::Path;
use std::process::Command;

fn container_args(doc: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    let containers = &doc["spec"]["template"]["spec"]["containers"];
    let Some(list) = containers.as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap_or("?").to_string();
            let args = c["args"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().expect("string arg").to_string())
                        .collect()
                })
                .unwrap_or_default();
            (name, args)
        })
        .collect()
}

#[test]
fn every_manifest_container_uses_flags_the_binary_accepts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()));
        for doc in docs {
            for (name, args) in container_args(&doc) {
                assert!(
                    !args.is_empty(),
                    "{}: container {name} has no args",
                    path.display()
                );
                let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
                    .args(&args)
                    .arg("--help")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}: container {name}: vigil rejects {:?}: {}",
                    path.display(),
                    args,
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "expected the collector, log shipper and aggregator containers, checked {checked}"
    );
}

#[test]
fn a_wrong_flag_is_caught() {
    // The check above would be hollow if the binary accepted anything before --help.
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["collector", "--no-such-flag=1", "--help"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
