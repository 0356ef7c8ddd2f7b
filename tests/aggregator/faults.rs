//! End to end, the bad cases: a node returning garbage, a node disappearing, a counter going
//! backwards, a container restarting; snapshots surviving a restart; the nodes file changing.

use crate::support::until;
use crate::support::promtool;
use std::time::Duration;

use crate::support::aggregator::*;
use serde_json::Value;
use vigil_aggregator::sim::{self, Mode, Sim};

const WAIT: Duration = Duration::from_secs(40);

async fn metrics(base: &str) -> String {
    get(&format!("{base}/metrics")).await.1
}

fn node_line(text: &str, metric: &str, node: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{metric}{{node=\"{node}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// All points of a MetricResult.
fn points(v: &Value) -> Vec<f64> {
    v["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    p.get("floatValue")
                        .and_then(|f| f.as_f64())
                        .unwrap_or(p["value"].as_f64().unwrap_or(f64::NAN))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_disappearance_counter_reset_and_restart() {
    let sim = Sim::new(small_shape());
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(SimNode::start(&sim, i, "127.0.0.1", 0).await);
    }
    let list = nodes_arg(&nodes);
    let agg = Aggregator::start(&[
        "--nodes",
        &list,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
        "--scrape-timeout",
        "500ms",
    ]);
    let b = agg.base.clone();
    let m = format!("{b}/api/v1/model");
    let (pod, ns) = sim::pod_ref(&sim.shape, 0, 0);
    let c0 = format!("{m}/namespaces/{ns}/pods/{pod}/containers/c0/metrics");
    until("first rate", WAIT, || async {
        latest(&serde_json::from_str::<Value>(&get(&format!("{c0}/cpu/usage_rate")).await.1).ok()?)
    })
    .await;

    // Node 1 answers garbage: counted as malformed, named, stale; others carry on.
    sim.set_mode("node-0001", Mode::Garbage);
    until("node-0001 stale", WAIT, || async {
        let t = metrics(&b).await;
        (node_line(&t, "vigil_aggregator_node_up", "node-0001") == Some(0.0)
            && sample(
                &t,
                "vigil_aggregator_scrape_failures_total{reason=\"malformed\"}",
            )? >= 1.0)
            .then_some(())
    })
    .await;
    let t = metrics(&b).await;
    assert_eq!(
        node_line(&t, "vigil_aggregator_node_up", "node-0000"),
        Some(1.0),
        "{t}"
    );
    assert_eq!(get(&format!("{b}/healthz")).await.0, 200);
    // It comes back and is fresh again.
    sim.set_mode("node-0001", Mode::Normal);
    until("node-0001 back", WAIT, || async {
        (node_line(&metrics(&b).await, "vigil_aggregator_node_up", "node-0001") == Some(1.0))
            .then_some(())
    })
    .await;

    // Node 0's CPU counters go backwards: no negative or absurd rate, and rates resume.
    let before = sample(&metrics(&b).await, "vigil_aggregator_counter_resets_total").unwrap();
    sim.set_cpu_offset("node-0000", 10_000_000_000);
    until("counter reset seen", WAIT, || async {
        (sample(&metrics(&b).await, "vigil_aggregator_counter_resets_total")? > before)
            .then_some(())
    })
    .await;
    let rounds = sample(&metrics(&b).await, "vigil_aggregator_rounds_total").unwrap();
    until("two more rounds", WAIT, || async {
        (sample(&metrics(&b).await, "vigil_aggregator_rounds_total")? >= rounds + 2.0).then_some(())
    })
    .await;
    let series = get_json(&format!("{c0}/cpu/usage_rate")).await;
    let want = sim::container_millicores(0, 0) as f64;
    for v in points(&series) {
        assert!(
            (0.0..=want * 1.5 + 2.0).contains(&v),
            "rate {v} out of range after a counter reset: {series}"
        );
    }
    let node_rates =
        points(&get_json(&format!("{m}/nodes/node-0000/metrics/cpu/usage_rate")).await);
    assert!(
        node_rates.iter().all(|v| *v >= 0.0 && *v < 10_000.0),
        "{node_rates:?}"
    );

    // A container restarts: restart_count goes to 1, no rate across the restart.
    sim.restart_first_container("node-0000");
    let rc = until("restart counted", WAIT, || async {
        latest(&try_json(&format!("{c0}/restart_count")).await?).filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(rc, 1.0);
    let rounds = sample(&metrics(&b).await, "vigil_aggregator_rounds_total").unwrap();
    until("two more rounds", WAIT, || async {
        (sample(&metrics(&b).await, "vigil_aggregator_rounds_total")? >= rounds + 2.0).then_some(())
    })
    .await;
    for v in points(&get_json(&format!("{c0}/cpu/usage_rate")).await) {
        assert!(
            (0.0..=want * 1.5 + 2.0).contains(&v),
            "rate {v} across a restart"
        );
    }
    let uptime = latest(&get_json(&format!("{c0}/uptime")).await).unwrap();
    assert!(
        uptime < 60_000.0,
        "uptime restarts with the container: {uptime}"
    );
    assert!(
        sample(
            &metrics(&b).await,
            "vigil_aggregator_container_restarts_total"
        )
        .unwrap()
            >= 1.0
    );

    // Node 2 disappears: stale, counted; the round still completes for the others.
    nodes[2].stop().await;
    until("node-0002 stale", WAIT, || async {
        let t = metrics(&b).await;
        (node_line(&t, "vigil_aggregator_node_up", "node-0002") == Some(0.0)).then_some(())
    })
    .await;
    let rounds = sample(&metrics(&b).await, "vigil_aggregator_rounds_total").unwrap();
    until("rounds continue", WAIT, || async {
        (sample(&metrics(&b).await, "vigil_aggregator_rounds_total")? >= rounds + 2.0).then_some(())
    })
    .await;
    let t = metrics(&b).await;
    assert!(
        node_line(
            &t,
            "vigil_aggregator_node_scrape_failures_total",
            "node-0002"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        node_line(&t, "vigil_aggregator_node_up", "node-0000"),
        Some(1.0)
    );
    assert_eq!(get(&format!("{b}/healthz")).await.0, 200);
    // Its history stays queryable within the window.
    assert_eq!(
        get(&format!("{m}/nodes/node-0002/metrics/memory/usage"))
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_survives_a_restart_with_data_dir_and_nodes_file_is_reread() {
    let sim = Sim::new(small_shape());
    let n0 = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let n1 = SimNode::start(&sim, 1, "127.0.0.1", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let nodes_file = dir.path().join("nodes.txt");
    std::fs::write(&nodes_file, format!("# one node first\n{}\n", n0.addr)).unwrap();
    let data = dir.path().join("data");
    let args = [
        "--nodes-file",
        nodes_file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
    ];
    let mut agg = Aggregator::start(&args);
    let m = format!("{}/api/v1/model", agg.base);
    until("node-0000 listed", WAIT, || async {
        (try_json(&format!("{m}/nodes")).await? == serde_json::json!(["node-0000"])).then_some(())
    })
    .await;

    // The file changes: the new node is pulled without a restart.
    std::fs::write(&nodes_file, format!("{}\n{}\n", n0.addr, n1.addr)).unwrap();
    until("node-0001 listed", WAIT, || async {
        (try_json(&format!("{m}/nodes")).await?.as_array()?.len() == 2).then_some(())
    })
    .await;
    // A broken edit keeps the old list and is counted.
    std::fs::write(
        &nodes_file,
        format!("{}\n{}\nnot-a-node\n", n0.addr, n1.addr),
    )
    .unwrap();
    until("discovery error counted", WAIT, || async {
        (sample(
            &get(&format!("{}/metrics", agg.base)).await.1,
            "vigil_aggregator_discovery_errors_total",
        )? >= 1.0)
            .then_some(())
    })
    .await;
    let url = format!("{m}/nodes/node-0001/metrics/memory/usage");
    let before = until("points for node-0001", WAIT, || async {
        let v = try_json(&url).await?;
        (v["metrics"].as_array()?.len() >= 2).then_some(v)
    })
    .await;

    // SIGTERM writes the snapshot; a new process serves the old points before its first round.
    assert!(agg.terminate().success());
    assert!(data.join("aggregator-store.jsonl").exists());
    std::fs::write(&nodes_file, "127.0.0.1:9\n").unwrap();
    let agg2 = Aggregator::start(&args);
    let m2 = format!("{}/api/v1/model", agg2.base);
    let after = until("restarted aggregator answers", WAIT, || async {
        let (s, body) = get(&format!("{m2}/nodes/node-0001/metrics/memory/usage")).await;
        (s == 200).then(|| serde_json::from_str::<Value>(&body).unwrap())
    })
    .await;
    let before_pts = before["metrics"].as_array().unwrap();
    let after_pts = after["metrics"].as_array().unwrap();
    assert!(
        after_pts.len() >= before_pts.len(),
        "before {before} after {after}"
    );
    assert_eq!(
        after_pts[..before_pts.len()],
        before_pts[..],
        "snapshot points equal the served ones"
    );
    drop((n0, n1));
}

// The Kubernetes source (list/watch of nodes, pods and namespaces) is tested in aggregator_kube.rs.

/// Bad options stop the start with the option named, the Kubernetes source's included: in-cluster
/// configuration outside a pod, a bad kubeconfig (`auth=`), an unknown option, an API version
/// other than v1.
#[test]
fn bad_options_are_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let bad_kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&bad_kubeconfig, "clusters: [not: a: kubeconfig").unwrap();
    let auth = format!(
        "kubernetes.summary_api:?inClusterConfig=false&auth={}",
        bad_kubeconfig.display()
    );
    let k = |opts: &'static str| ["--source", opts];
    for (args, want) in [
        (
            vec!["--nodes", "127.0.0.1:1", "--metric-resolution", "1s"],
            "--allow-short-resolution",
        ),
        (vec!["--nodes", "no-port"], "no-port"),
        (vec![], "--nodes"),
        (
            vec!["--nodes", "127.0.0.1:1", "--sink", "bogus:thing"],
            "--sink",
        ),
        (
            k("kubernetes.summary_api:''?inClusterConfig=true").to_vec(),
            "KUBERNETES_SERVICE_HOST",
        ),
        (vec!["--source", auth.as_str()], "auth="),
        (
            k("kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&bogus=1").to_vec(),
            "unknown option bogus",
        ),
        (
            k("kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&apiVersion=v2")
                .to_vec(),
            "apiVersion=v2",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["aggregator", "--listen", "127.0.0.1:0"])
            .args(&args)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `--config`: the file supplies the nodes, resolution and a sink; the command line's --listen
/// wins over the file's; a bad file stops the start with the file and key named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_runs_the_aggregator_and_bad_files_are_named() {
    let sim = Sim::new(small_shape());
    let node = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("aggregator.yaml");
    // The file's listen port is taken by nothing and must lose to the harness's --listen.
    std::fs::write(
        &good,
        format!(
            "listen: 127.0.0.1:1\nnodes: [{}]\nmetric_resolution: 1s\nallow_short_resolution: true\nscrape_timeout: 500ms\nsinks:\n  - type: log\n",
            node.addr
        ),
    )
    .unwrap();
    let agg = Aggregator::start(&["--config", good.to_str().unwrap()]);
    let url = format!("{}/api/v1/model/nodes/", agg.base);
    let want = sim::node_name(0);
    until("node from the config file", WAIT, || async {
        let (s, body) = get(&url).await;
        (s == 200 && body.contains(&want)).then_some(())
    })
    .await;
    // The file's log sink runs: its self-metrics are on /metrics.
    let m = metrics(&agg.base).await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("vigil_sink_points_sent_total{") && l.contains("\"log\"")),
        "log sink self-metrics: {m}"
    );
    // The aggregator's and the sink's self-metrics together parse as one exposition; the only
    // lint is the released name vigil_aggregator_counter_resets_total.
    promtool::check_metrics(
        &m,
        &["vigil_aggregator_counter_resets_total metric name should not include type 'counter'"],
    );
    drop(agg);

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "nodes: [127.0.0.1:1]\nscrape_concurency: 4\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["aggregator", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("scrape_concurency"),
        "{err}"
    );
}
