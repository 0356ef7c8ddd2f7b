//! End to end with real collectors: one `vigil collector` on a cgroup v2 fixture tree, one on
//! this machine's real cgroups and /proc, and one simulated node, all pulled by one
//! `vigil aggregator`.

use std::time::Duration;

use crate::support::fixture_node_flags;
use crate::support::until;
use crate::support::aggregator::*;
use vigil_aggregator::sim::{Shape, Sim};

const WAIT: Duration = Duration::from_secs(60);


fn mem_total_bytes() -> f64 {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: f64 = info
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectors_on_a_fixture_and_on_real_cgroups_feed_the_aggregator() {
    let fixture_node = Collector::start(&fixture_node_flags().iter().map(String::as_str).collect::<Vec<_>>())
    .await;
    let real_node =
        Collector::start(&["--housekeeping-interval", "1s", "--node-name", "real-node"]).await;
    let sim = Sim::new(Shape {
        nodes: 1,
        pods_per_node: 2,
        containers_per_pod: 1,
        namespaces: 1,
    });
    let sim_node = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let list = format!("{},{},{}", fixture_node.addr, real_node.addr, sim_node.addr);
    let agg = Aggregator::start(&[
        "--nodes",
        &list,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
    ]);
    let m = format!("{}/api/v1/model", agg.base);

    until("three nodes", WAIT, || async {
        (try_json(&format!("{m}/nodes")).await?
            == serde_json::json!(["fixture-node", "node-0000", "real-node"]))
        .then_some(())
    })
    .await;

    // The fixture's figures arrive unchanged (cgroup files → collector → Summary → aggregator).
    let c = format!("{m}/namespaces/default/pods/web-0/containers/nginx/metrics");
    let ws = until("nginx working set", WAIT, || async {
        latest(&try_json(&format!("{c}/memory/working_set")).await?)
    })
    .await;
    assert_eq!(ws, 83_886_080.0);
    let cpu = until("nginx cpu/usage", WAIT, || async {
        latest(&try_json(&format!("{c}/cpu/usage")).await?)
    })
    .await;
    assert_eq!(cpu, 5_000_000_000.0);
    // The fixture does not change: its rate is zero, never negative.
    let rate = until("nginx rate", WAIT, || async {
        latest(&try_json(&format!("{c}/cpu/usage_rate")).await?)
    })
    .await;
    assert_eq!(rate, 0.0);

    // This machine: CPU is being used (the build, the tests), memory capacity is about MemTotal.
    let n = format!("{m}/nodes/real-node/metrics");
    let cpu = until("real node cpu rate", WAIT, || async {
        latest(&try_json(&format!("{n}/cpu/usage_rate")).await?).filter(|v| *v > 0.0)
    })
    .await;
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    assert!(
        cpu <= cores * 1000.0 * 1.1,
        "real node cpu/usage_rate {cpu} m on {cores} cores"
    );
    let cap = until("real node memory capacity", WAIT, || async {
        latest(&try_json(&format!("{n}/memory/node_capacity")).await?)
    })
    .await;
    let total = mem_total_bytes();
    assert!(
        cap > total * 0.3 && cap <= total * 1.05,
        "memory/node_capacity {cap} vs MemTotal {total}"
    );
    let ws = latest(&get_json(&format!("{n}/memory/working_set")).await).unwrap();
    assert!(ws > 0.0 && ws < total, "{ws}");

    // kubectl top's view of the real node.
    let nm = until("NodeMetrics real-node", WAIT, || async {
        try_json(&format!(
            "{}/apis/metrics.k8s.io/v1beta1/nodes/real-node",
            agg.base
        ))
        .await
    })
    .await;
    assert_eq!(nm["kind"], "NodeMetrics");
    assert!(
        nm["usage"]["cpu"].as_str().unwrap().ends_with('n') || nm["usage"]["cpu"] == "0",
        "{nm}"
    );
    let t = get(&format!("{}/metrics", agg.base)).await.1;
    assert_eq!(
        t.lines()
            .filter(|l| l.starts_with("vigil_aggregator_node_up{") && l.ends_with(" 1"))
            .count(),
        3,
        "{t}"
    );
}
