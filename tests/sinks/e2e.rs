//! End to end through the real `vigil aggregator` with `--sink`: simulated kubelets → aggregator →
//! a real InfluxDB 1.6, whose points equal what the aggregator's own model API answers; the
//! aggregator's /federate passes promtool, /metrics carries the sink's self-metrics; a bad
//! `--sink` stops start-up with a message naming the option.

use crate::support::until;
use crate::support::promtool;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::aggregator::{get, nodes_arg, Aggregator, SimNode};
use vigil_aggregator::sim::{Shape, Sim};
use crate::support::sinks::Influx;

fn rfc3339_ns(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

/// (time ns → value) of one series from InfluxDB.
async fn influx_series(influx: &Influx, q: &str) -> BTreeMap<i64, f64> {
    let v = influx.query("k8s", q).await;
    let mut out = BTreeMap::new();
    if let Some(rows) = v["results"][0]["series"][0]["values"].as_array() {
        for r in rows {
            out.insert(r[0].as_i64().unwrap(), r[1].as_f64().unwrap());
        }
    }
    out
}

/// (time ns → value) from a Heapster model MetricResult.
async fn model_series(url: &str) -> BTreeMap<i64, f64> {
    let (st, body) = get(url).await;
    let mut out = BTreeMap::new();
    if st != 200 {
        return out;
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for m in v["metrics"].as_array().cloned().unwrap_or_default() {
        let val = m["floatValue"]
            .as_f64()
            .or_else(|| m["value"].as_f64())
            .unwrap();
        out.insert(rfc3339_ns(m["timestamp"].as_str().unwrap()), val);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_sink_writes_what_its_model_api_answers() {
    let influx = Influx::start().await;
    let sim = Sim::new(Shape {
        nodes: 2,
        pods_per_node: 2,
        containers_per_pod: 2,
        namespaces: 2,
    });
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(SimNode::start(&sim, i, "127.0.0.1", 0).await);
    }
    let list = nodes_arg(&nodes);
    let data_dir = tempfile::tempdir().unwrap();
    let sink = format!(
        "influxdb:{}?db=k8s&retry_initial=100ms&retry_max=1s",
        influx.url()
    );
    let mut agg = Aggregator::start(&[
        "--nodes",
        &list,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
        "--data-dir",
        &data_dir.path().display().to_string(),
        "--sink",
        &sink,
    ]);
    let model = format!("{}/api/v1/model/metrics/cpu/usage_rate", agg.base);
    // Wait for at least two cluster points that both sides know.
    let (ours, theirs) = until(
        "cluster cpu/usage_rate in InfluxDB and the model API",
        Duration::from_secs(60),
        || async {
            let i = influx_series(
                &influx,
                "SELECT \"value\" FROM \"cpu/usage_rate\" WHERE \"type\"='cluster'",
            )
            .await;
            let m = model_series(&model).await;
            let common = i.keys().filter(|t| m.contains_key(t)).count();
            (common >= 2).then_some((i, m))
        },
    )
    .await;
    for (t, v) in &ours {
        if let Some(mv) = theirs.get(t) {
            assert_eq!(v, mv, "cluster cpu/usage_rate at {t}");
        }
    }
    // Containers' points carry Heapster's tags.
    let v = influx
        .query("k8s", "SHOW TAG KEYS FROM \"memory/usage\"")
        .await;
    let keys: Vec<String> = v["results"][0]["series"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    for k in [
        "cluster_name",
        "container_name",
        "namespace_name",
        "nodename",
        "pod_name",
        "type",
    ] {
        assert!(
            keys.contains(&k.to_string()),
            "tag {k} missing from {keys:?}"
        );
    }
    assert!(!keys.contains(&"pod_id".to_string()) && !keys.contains(&"namespace_id".to_string()));

    // The sink's self-metrics on the aggregator's /metrics.
    let (st, metrics) = get(&format!("{}/metrics", agg.base)).await;
    assert_eq!(st, 200);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("vigil_sink_points_sent_total{"))
        .expect("sink metrics on /metrics");
    assert!(
        line.split(' ').next_back().unwrap().parse::<f64>().unwrap() > 0.0,
        "{line}"
    );

    // /federate: the aggregated series, accepted by promtool.
    let (st, fed) = get(&format!("{}/federate", agg.base)).await;
    assert_eq!(st, 200);
    assert!(
        fed.contains("# TYPE cpu_usage_rate gauge") && fed.contains("type=\"cluster\""),
        "{fed}"
    );
    promtool::check_metrics(&fed, &[]);
    assert!(agg.terminate().success());
}

#[test]
fn a_bad_sink_uri_stops_start_up_naming_the_option() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "aggregator",
            "--listen",
            "127.0.0.1:0",
            "--nodes",
            "127.0.0.1:1",
            "--sink",
            "influxdb:http://127.0.0.1:8086?withfields=sometimes",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--sink") && err.contains("withfields"),
        "{err}"
    );
}
