//! End to end: three simulated nodes (each its own loopback address, as kubelets are) and the
//! real `vigil aggregator`; every API route answers with the values the inputs imply.

use std::time::Duration;

use crate::support::until;
use crate::support::aggregator::*;
use serde_json::Value;
use vigil_aggregator::sim::{self, Shape, Sim};

const WAIT: Duration = Duration::from_secs(40);

fn shape() -> Shape {
    Shape {
        nodes: 3,
        pods_per_node: 3,
        containers_per_pod: 2,
        namespaces: 2,
    }
}

async fn three_nodes(sim: &std::sync::Arc<Sim>) -> Vec<SimNode> {
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(SimNode::start(sim, i, "127.0.0.1", 0).await);
    }
    nodes
}

/// Polls a MetricResult route until it has a value.
async fn value_of(url: &str) -> f64 {
    until(url, WAIT, || async {
        let (s, body) = get(url).await;
        if s != 200 {
            return None;
        }
        latest(&serde_json::from_str::<Value>(&body).ok()?)
    })
    .await
}

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, want {want} ± {tolerance}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_the_values_the_inputs_imply() {
    let sim = Sim::new(shape());
    let nodes = three_nodes(&sim).await;
    let list = nodes_arg(&nodes);
    let agg = Aggregator::start(&[
        "--nodes",
        &list,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
    ]);
    let b = agg.base.clone();
    let m = format!("{b}/api/v1/model");

    // Rates appear from the second round on: the container's CPU as the simulator set it.
    let (pod, ns) = sim::pod_ref(&sim.shape, 1, 2);
    let c0 = value_of(&format!(
        "{m}/namespaces/{ns}/pods/{pod}/containers/c0/metrics/cpu/usage_rate"
    ))
    .await;
    close(
        c0,
        sim::container_millicores(2, 0) as f64,
        1.0,
        "container cpu/usage_rate",
    );
    let pod_cpu = value_of(&format!(
        "{m}/namespaces/{ns}/pods/{pod}/metrics/cpu/usage_rate"
    ))
    .await;
    close(
        pod_cpu,
        (sim::container_millicores(2, 0) + sim::container_millicores(2, 1)) as f64,
        1.0,
        "pod cpu/usage_rate",
    );
    let rx = value_of(&format!(
        "{m}/namespaces/{ns}/pods/{pod}/metrics/network/rx_rate"
    ))
    .await;
    close(
        rx,
        sim::pod_rx_per_second(2) as f64,
        sim::pod_rx_per_second(2) as f64 * 0.01,
        "pod network/rx_rate",
    );
    let old_name = value_of(&format!("{m}/namespaces/{ns}/pods/{pod}/metrics/cpu-usage")).await;
    close(old_name, pod_cpu, 2.0, "old name cpu-usage");
    // Pod memory comes from the pod's own stats: the containers' working sets.
    let ws = value_of(&format!(
        "{m}/namespaces/{ns}/pods/{pod}/metrics/memory/working_set"
    ))
    .await;
    assert_eq!(
        ws as u64,
        sim::container_working_set(2, 0) + sim::container_working_set(2, 1)
    );

    // Names.
    assert_eq!(
        get_json(&format!("{m}/nodes")).await,
        serde_json::json!(["node-0000", "node-0001", "node-0002"])
    );
    assert_eq!(
        get_json(&format!("{m}/nodes/"))
            .await
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        get_json(&format!("{m}/namespaces/")).await,
        serde_json::json!(["ns-0", "ns-1"])
    );
    let pods = get_json(&format!("{m}/namespaces/{ns}/pods")).await;
    assert!(
        pods.as_array()
            .unwrap()
            .iter()
            .any(|p| p == &Value::String(pod.clone())),
        "{pods}"
    );
    assert_eq!(
        get_json(&format!("{m}/namespaces/{ns}/pods/{pod}/containers")).await,
        serde_json::json!(["c0", "c1"])
    );
    assert_eq!(
        get_json(&format!("{m}/nodes/node-0001/freecontainers/")).await,
        serde_json::json!(["docker-daemon", "kubelet", "pods"])
    );
    let names = get_json(&format!("{m}/nodes/node-0001/metrics/")).await;
    for want in [
        "cpu/usage_rate",
        "memory/working_set",
        "network/rx_rate",
        "uptime",
        "memory/node_utilization",
    ] {
        assert!(
            names.as_array().unwrap().iter().any(|n| n == want),
            "{want} missing from {names}"
        );
    }
    assert!(
        !names
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "filesystem/usage"),
        "labeled metrics are not listed"
    );
    let keys = get_json(&format!("{m}/debug/allkeys")).await;
    for k in [
        "cluster",
        "node:node-0000",
        "node:node-0000/container:kubelet",
        "namespace:ns-0",
        &format!("namespace:{ns}/pod:{pod}/container:c1"),
    ] {
        assert!(
            keys.as_array().unwrap().iter().any(|x| x == k),
            "{k} missing from allkeys"
        );
    }
    let node_pods = get_json(&format!("{m}/nodes/node-0001/pods/")).await;
    assert_eq!(node_pods.as_array().unwrap().len(), 3, "{node_pods}");

    // Node figures: the node's own CPU and memory.
    let node_cpu = value_of(&format!("{m}/nodes/node-0001/metrics/cpu/usage_rate")).await;
    let expect_node: u64 = 100
        + (0..3)
            .flat_map(|p| (0..2).map(move |c| sim::container_millicores(p, c)))
            .sum::<u64>();
    close(node_cpu, expect_node as f64, 1.0, "node cpu/usage_rate");
    let util = value_of(&format!(
        "{m}/nodes/node-0001/metrics/memory/node_utilization"
    ))
    .await;
    assert!(util > 0.0 && util < 1.0, "memory/node_utilization {util}");
    let free = value_of(&format!(
        "{m}/nodes/node-0001/freecontainers/kubelet/metrics/cpu/usage_rate"
    ))
    .await;
    close(free, 30.0, 1.0, "kubelet cpu/usage_rate");

    // Namespace and cluster sums of pod CPU.
    let all_pods: Vec<(String, String, u64)> = (0..3)
        .flat_map(|n| (0..3).map(move |p| (n, p)))
        .map(|(n, p)| {
            let (name, ns) = sim::pod_ref(&sim.shape, n, p);
            (
                name,
                ns,
                sim::container_millicores(p, 0) + sim::container_millicores(p, 1),
            )
        })
        .collect();
    let ns_sum: u64 = all_pods
        .iter()
        .filter(|(_, n, _)| *n == ns)
        .map(|(_, _, c)| c)
        .sum();
    let ns_count = all_pods.iter().filter(|(_, n, _)| *n == ns).count() as f64;
    let got = value_of(&format!("{m}/namespaces/{ns}/metrics/cpu/usage_rate")).await;
    close(got, ns_sum as f64, ns_count, "namespace cpu/usage_rate");
    let total: u64 = all_pods.iter().map(|(_, _, c)| c).sum();
    let got = value_of(&format!("{m}/metrics/cpu/usage_rate")).await;
    close(got, total as f64, 9.0, "cluster cpu/usage_rate");
    assert!(get_json(&format!("{m}/metrics/"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "memory/usage"));

    // Labeled metric with labels=, range parameters, pod-list.
    let fs = get_json(&format!("{m}/namespaces/{ns}/pods/{pod}/containers/c1/metrics/filesystem/usage?labels=resource_id:/")).await;
    assert_eq!(latest(&fs), Some(8192.0), "{fs}");
    let logs = get_json(&format!("{m}/namespaces/{ns}/pods/{pod}/containers/c1/metrics/filesystem/usage?labels=resource_id:logs")).await;
    assert_eq!(latest(&logs), Some(8192.0));
    let r = get_json(&format!("{m}/nodes/node-0000/metrics/memory/usage?start=2000-01-01T00:00:00Z&end=2000-01-02T00:00:00Z")).await;
    assert_eq!(
        r,
        serde_json::json!({"metrics": [], "latestTimestamp": "0001-01-01T00:00:00Z"})
    );
    let r = get_json(&format!(
        "{m}/nodes/node-0000/metrics/memory/usage?start=2000-01-01T00:00:00Z"
    ))
    .await;
    let pts = r["metrics"].as_array().unwrap();
    assert!(!pts.is_empty());
    assert!(pts[0]["timestamp"].as_str().unwrap().ends_with('Z') && pts[0]["value"].is_u64());
    assert_eq!(r["latestTimestamp"], pts.last().unwrap()["timestamp"]);
    let same_ns: Vec<&str> = all_pods
        .iter()
        .filter(|(_, n, _)| *n == ns)
        .map(|(p, _, _)| p.as_str())
        .collect();
    let lst = get_json(&format!(
        "{m}/namespaces/{ns}/pod-list/{}/metrics/memory/usage",
        same_ns.join(",")
    ))
    .await;
    assert_eq!(lst["items"].as_array().unwrap().len(), same_ns.len());

    // Bad input: 400 with a message; unknown names: 404.
    let (s, body) = get(&format!(
        "{m}/nodes/node-0000/metrics/cpu/usage_rate?start=yesterday"
    ))
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("start"), "{body}");
    let (s, body) = get(&format!(
        "{m}/namespaces/{ns}/pods/{pod}/containers/c1/metrics/filesystem/usage?labels=nocolon"
    ))
    .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(
        get(&format!(
            "{m}/namespaces/{ns}/pods/no-such-pod/metrics/cpu/usage_rate"
        ))
        .await
        .0,
        404
    );
    assert_eq!(
        get(&format!("{m}/nodes/node-0000/metrics/no/such_metric"))
            .await
            .0,
        404
    );
    assert_eq!(get(&format!("{m}/namespaces/nope/pods")).await.0, 404);
    assert_eq!(get(&format!("{b}/api/v1/nonsense")).await.0, 404);

    // Schema and export.
    let schema = get_json(&format!("{b}/api/v1/metric-export-schema")).await;
    assert_eq!(schema["metrics"].as_array().unwrap().len(), 28);
    assert_eq!(schema["common_labels"].as_array().unwrap().len(), 5);
    assert_eq!(schema["pod_labels"].as_array().unwrap().len(), 4);
    let export = get_json(&format!("{b}/api/v1/metric-export")).await;
    let export = export.as_array().unwrap();
    let machine = export
        .iter()
        .find(|t| {
            t["labels"]["container_name"] == "machine" && t["labels"]["nodename"] == "node-0002"
        })
        .expect("node series");
    assert!(
        machine["labels"].get("type").is_none()
            && machine["labels"].get("namespace_name").is_none()
    );
    let up = &machine["metrics"]["uptime"][0];
    assert_ne!(
        up["start"], up["end"],
        "cumulative metrics start at the creation time"
    );
    let mem = &machine["metrics"]["memory/usage"][0];
    assert_eq!(mem["start"], mem["end"]);
    assert!(mem["value"].is_i64());
    assert!(export
        .iter()
        .any(|t| t["labels"]["container_name"] == "/pod"));
    assert!(export.iter().any(|t| t["metrics"]["filesystem/usage"]
        .as_array()
        .is_some_and(|p| p[0]["labels"]["resource_id"] == "/")));
    assert!(
        !export
            .iter()
            .any(|t| t["metrics"].get("cpu/usage_rate").is_some()),
        "only schema metrics are exported"
    );

    // metrics.k8s.io, as kubectl top reads it.
    let apis = get_json(&format!("{b}/apis")).await;
    assert_eq!(
        apis["groups"][0]["preferredVersion"]["groupVersion"],
        "metrics.k8s.io/v1beta1"
    );
    let res = get_json(&format!("{b}/apis/metrics.k8s.io/v1beta1")).await;
    assert_eq!(res["kind"], "APIResourceList");
    assert_eq!(res["resources"][1]["kind"], "PodMetrics");
    let nm = get_json(&format!("{b}/apis/metrics.k8s.io/v1beta1/nodes")).await;
    assert_eq!(nm["kind"], "NodeMetricsList");
    assert_eq!(nm["items"].as_array().unwrap().len(), 3);
    let n1 = get_json(&format!("{b}/apis/metrics.k8s.io/v1beta1/nodes/node-0001")).await;
    // The real interval between the two samples behind the rate (review #20): about the 1 s
    // resolution, in Go's duration form ("1s", "998ms", "1.003s").
    let window = n1["window"].as_str().unwrap();
    let secs = match window.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().unwrap() / 1000.0,
        None => window.strip_suffix('s').unwrap().parse::<f64>().unwrap(),
    };
    assert!((0.5..=2.5).contains(&secs), "window {window}");
    let cpu = n1["usage"]["cpu"].as_str().unwrap();
    let nanos: f64 = cpu.strip_suffix('n').unwrap().parse().unwrap();
    close(nanos / 1e6, expect_node as f64, 1.0, "NodeMetrics cpu");
    assert!(
        n1["usage"]["memory"].as_str().unwrap().ends_with("Ki"),
        "{n1}"
    );
    let pm = get_json(&format!(
        "{b}/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{pod}"
    ))
    .await;
    assert_eq!(pm["kind"], "PodMetrics");
    assert_eq!(pm["metadata"]["namespace"], ns.as_str());
    assert_eq!(pm["containers"].as_array().unwrap().len(), 2);
    let ws0 = sim::container_working_set(2, 0);
    assert_eq!(
        pm["containers"][0]["usage"]["memory"],
        format!("{}Ki", ws0 / 1024)
    );
    let all = get_json(&format!("{b}/apis/metrics.k8s.io/v1beta1/pods")).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 9);
    let (s, body) = get(&format!("{b}/apis/metrics.k8s.io/v1beta1/nodes/nope")).await;
    assert_eq!(s, 404);
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (st["kind"].as_str(), st["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );

    // Health and self-metrics.
    assert_eq!(get(&format!("{b}/healthz")).await, (200, "ok".to_string()));
    let (s, text) = get(&format!("{b}/metrics")).await;
    assert_eq!(s, 200);
    assert!(sample(&text, "vigil_aggregator_rounds_total").unwrap() >= 2.0);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("vigil_aggregator_node_up{") && l.ends_with(" 1"))
            .count(),
        3,
        "{text}"
    );
    assert!(sample(&text, "vigil_aggregator_store_series ").unwrap() > 100.0);
    drop(nodes);
}
