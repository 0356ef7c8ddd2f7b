//! vigil's default rules (`alerting/rules/default.yml`) read series the aggregator really stores:
//! each selector of an aggregator series in the file (`name{type="..."}`) is queried on a running
//! aggregator over simulated nodes and must answer. A rule whose series is absent never fires
//! and nothing says so (two did: `uptime` and `restart_count` are stored as `uptime_total` and
//! `restart_count_total`). The problem detector's, kube-state-metrics' and self-metrics' series
//! of the same file are tested in `problems.rs` and `rules_unittest.rs`.

use std::collections::BTreeSet;

use crate::support::query::{get_params, Cluster};
use vigil_aggregator::sim::Shape;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rules_read_series_the_aggregator_stores() {
    let selector = regex::Regex::new(r#"([a-z_:]+)\{type="([a-z_]+)"\}"#).unwrap();
    let selectors: BTreeSet<(String, String)> = selector
        .captures_iter(vigil_alerting::rules::DEFAULT_RULES)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    // uptime_total, cpu_node_utilization, memory_node_utilization, filesystem_available,
    // filesystem_limit, restart_count_total: the test must not pass by finding none.
    assert!(selectors.len() >= 6, "{selectors:?}");
    let shape = Shape {
        nodes: 2,
        pods_per_node: 2,
        containers_per_pod: 1,
        namespaces: 1,
    };
    let c = Cluster::start(shape, &[]).await;
    c.wait_for_rates().await;
    let url = format!("{}/api/v1/query", c.base());
    let mut missing = Vec::new();
    for (name, kind) in &selectors {
        // Allocatable CPU comes from the Kubernetes Node object (as in Heapster), which a
        // `--nodes` list has not: tested with the Kubernetes source (processors' unit tests and
        // tests/aggregator/kube.rs give nodes their capacity).
        if name == "cpu_node_utilization" {
            continue;
        }
        let q = format!("count({name}{{type=\"{kind}\"}})");
        let (status, v) = get_params(&url, &[("query", &q)]).await;
        assert_eq!(status, 200, "{q}: {v}");
        if v["data"]["result"].as_array().is_none_or(|r| r.is_empty()) {
            missing.push(q);
        }
    }
    assert!(missing.is_empty(), "no series for {missing:?}");
}
