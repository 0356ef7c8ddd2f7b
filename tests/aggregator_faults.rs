//! End to end, the bad cases: a node returning garbage, a node disappearing, a counter going
//! backwards, a container restarting; snapshots surviving a restart; the nodes file changing.

mod aggregator_support;

use std::time::Duration;

use aggregator_support::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(40);

fn shape() -> Shape {
    Shape {
        nodes: 3,
        pods_per_node: 2,
        containers_per_pod: 2,
        namespaces: 1,
    }
}

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
    let sim = Sim::new(shape());
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(SimNode::start(&sim, i, "127.0.0.1", 0).await);
    }
    let list = nodes
        .iter()
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
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
    let sim = Sim::new(shape());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_source_lists_nodes_and_their_cpu_capacity() {
    // A loopback API server answering the node list; every kubelet on its own 127.0.0.x address
    // and the same port, as in a cluster.
    let sim = Sim::new(shape());
    let port = free_port();
    let mut kubelets = Vec::new();
    for i in 0..2 {
        kubelets.push(SimNode::start(&sim, i, &format!("127.0.0.{}", i + 1), port).await);
    }
    let items: Vec<Value> = (0..2)
        .map(|i| serde_json::json!({
            "metadata": {"name": sim::node_name(i)},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("127.0.0.{}", i + 1)}],
                       "capacity": {"cpu": "4", "memory": "8Gi"}, "conditions": [{"type": "Ready", "status": "True"}]}}))
        .collect();
    let list =
        serde_json::json!({"kind": "NodeList", "apiVersion": "v1", "items": items}).to_string();
    // Every simulated container requests 100m and 64Mi and is limited to 500m.
    let pods: Vec<Value> = (0..2)
        .flat_map(|n| (0..2).map(move |p| (n, p)))
        .map(|(n, p)| {
            let (name, ns) = sim::pod_ref(&sim.shape, n, p);
            let containers: Vec<Value> = (0..2)
                .map(|c| serde_json::json!({"name": format!("c{c}"), "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}}))
                .collect();
            serde_json::json!({"metadata": {"name": name, "namespace": ns, "uid": format!("uid-{n}-{p}"), "labels": {"app": "sim", "node": n.to_string()}}, "spec": {"containers": containers}})
        })
        .collect();
    let pod_list = serde_json::json!({"kind": "PodList", "items": pods}).to_string();
    let ns_list = serde_json::json!({"kind": "NamespaceList", "items": [{"metadata": {"name": "ns-0", "uid": "ns-0-uid"}}]}).to_string();
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_addr = api.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut s in api.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let (status, body) = if req.starts_with("GET /api/v1/nodes ") {
                ("200 OK", list.clone())
            } else if req.starts_with("GET /api/v1/pods ") {
                ("200 OK", pod_list.clone())
            } else if req.starts_with("GET /api/v1/namespaces ") {
                ("200 OK", ns_list.clone())
            } else {
                ("404 Not Found", String::new())
            };
            let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    let source = format!(
        "kubernetes.summary_api:http://{api_addr}?kubeletPort={port}&inClusterConfig=false"
    );
    let agg = Aggregator::start(&[
        "--source",
        &source,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
    ]);
    let m = format!("{}/api/v1/model", agg.base);
    until("both nodes", WAIT, || async {
        (try_json(&format!("{m}/nodes")).await?.as_array()?.len() == 2).then_some(())
    })
    .await;
    let cap = until("cpu capacity", WAIT, || async {
        latest(&try_json(&format!("{m}/nodes/node-0001/metrics/cpu/node_capacity")).await?)
    })
    .await;
    assert_eq!(cap, 4000.0);
    // Requests and limits from the pod specs: summed into pods, the namespace and the node.
    let (pod, ns) = sim::pod_ref(&sim.shape, 1, 0);
    let req = |path: String| async move { latest(&try_json(&path).await?) };
    let c = until("container cpu/request", WAIT, || {
        req(format!(
            "{m}/namespaces/{ns}/pods/{pod}/containers/c1/metrics/cpu/request"
        ))
    })
    .await;
    assert_eq!(c, 100.0);
    assert_eq!(
        until("pod cpu/limit", WAIT, || req(format!(
            "{m}/namespaces/{ns}/pods/{pod}/metrics/cpu/limit"
        )))
        .await,
        1000.0
    );
    assert_eq!(
        until("pod memory/request", WAIT, || req(format!(
            "{m}/namespaces/{ns}/pods/{pod}/metrics/memory/request"
        )))
        .await,
        (128u64 << 20) as f64
    );
    assert_eq!(
        until("node cpu/request", WAIT, || req(format!(
            "{m}/nodes/node-0001/metrics/cpu/request"
        )))
        .await,
        400.0
    );
    assert_eq!(
        until("namespace cpu/request", WAIT, || req(format!(
            "{m}/namespaces/ns-0/metrics/cpu/request"
        )))
        .await,
        800.0
    );
    let reservation = until("node reservation", WAIT, || {
        req(format!("{m}/nodes/node-0001/metrics/cpu/node_reservation"))
    })
    .await;
    assert!((reservation - 0.1).abs() < 1e-9, "{reservation}");
    let export = get_json(&format!("{}/api/v1/metric-export", agg.base)).await;
    let c1 = export
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["pod_name"] == pod.as_str() && t["labels"]["container_name"] == "c1")
        .expect("container series");
    assert_eq!(c1["labels"]["labels"], "app:sim,node:1");
    assert_eq!(c1["labels"]["namespace_id"], "ns-0-uid");
    assert_eq!(c1["metrics"]["cpu/limit"][0]["value"], 500);
    let util = until("cpu utilization", WAIT, || async {
        latest(&try_json(&format!("{m}/nodes/node-0001/metrics/cpu/node_utilization")).await?)
    })
    .await;
    assert!(util > 0.0 && util < 1.0, "{util}");

    // In-cluster config outside a pod is a clear start-up error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "aggregator",
            "--listen",
            "127.0.0.1:0",
            "--source",
            "kubernetes.summary_api:''?inClusterConfig=true",
        ])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KUBERNETES_SERVICE_HOST"), "{err}");
    drop(kubelets);
}

/// A hanging API server (the pod list never answers within the client's 10 s timeout) delays
/// the enrichment lists, never the rounds: the node is still pulled every resolution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_api_server_does_not_stall_the_rounds() {
    let sim = Sim::new(shape());
    let port = free_port();
    let kubelet = SimNode::start(&sim, 0, "127.0.0.1", port).await;
    let list = serde_json::json!({"kind": "NodeList", "apiVersion": "v1", "items": [{
        "metadata": {"name": sim::node_name(0)},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "capacity": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": "True"}]}}]})
    .to_string();
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_addr = api.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in api.incoming().flatten() {
            let list = list.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = s;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                if req.starts_with("GET /api/v1/nodes ") {
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{list}", list.len());
                } else {
                    // Pods and namespaces: hang past the client's timeout.
                    std::thread::sleep(Duration::from_secs(60));
                }
            });
        }
    });
    let source = format!("kubernetes.summary_api:http://{api_addr}?kubeletPort={port}&inClusterConfig=false");
    let agg = Aggregator::start(&["--source", &source, "--metric-resolution", "1s", "--allow-short-resolution"]);
    let url = format!("{}/api/v1/model/nodes/{}/metrics/cpu/usage", agg.base, sim::node_name(0));
    // Rounds 1 s apart: 6 points well before one 10 s timeout of the pod list has passed twice.
    let started = std::time::Instant::now();
    until("six rounds while the pod list hangs", WAIT, || async {
        (points(&try_json(&url).await?).len() >= 6).then_some(())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(15), "rounds stalled: {:?}", started.elapsed());
    drop(kubelet);
}

/// Nodes come from one list and then a watch: a node ADDED by a watch event is pulled, a node
/// MODIFIED to NotReady is no longer pulled, a 410 ERROR event makes the aggregator list again,
/// and rounds do not list the nodes (the watch keeps them current).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watch_follows_added_not_ready_and_gone_resource_versions() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sim = Sim::new(shape());
    let port = free_port();
    let _k0 = SimNode::start(&sim, 0, "127.0.0.1", port).await;
    let _k1 = SimNode::start(&sim, 1, "127.0.0.2", port).await;
    let node = |i: usize, ready: &str, rv: u32| {
        serde_json::json!({"metadata": {"name": sim::node_name(i), "resourceVersion": rv.to_string()},
            "status": {"addresses": [{"type": "InternalIP", "address": format!("127.0.0.{}", i + 1)}],
                       "capacity": {"cpu": "4"}, "conditions": [{"type": "Ready", "status": ready}]}})
    };
    let list = serde_json::json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
        "items": [node(0, "True", 10)]}).to_string();
    // The list after the watch's events: what a relist after the 410 sees.
    let list_later = serde_json::json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "12"},
        "items": [node(0, "False", 12), node(1, "True", 11)]}).to_string();
    let changed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let added = serde_json::json!({"type": "ADDED", "object": node(1, "True", 11)}).to_string();
    let not_ready = serde_json::json!({"type": "MODIFIED", "object": node(0, "False", 12)}).to_string();
    let gone = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 10 (12)","reason":"Expired","code":410}}"#.to_string();
    let lists = std::sync::Arc::new(AtomicUsize::new(0));
    let watches = std::sync::Arc::new(AtomicUsize::new(0));
    let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_addr = api.local_addr().unwrap();
    let (l2, w2, c2) = (lists.clone(), watches.clone(), changed.clone());
    std::thread::spawn(move || {
        for s in api.incoming().flatten() {
            let (list, list_later, added, not_ready, gone, lists, watches, changed) = (
                list.clone(), list_later.clone(), added.clone(), not_ready.clone(), gone.clone(), l2.clone(), w2.clone(), c2.clone(),
            );
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = s;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
                if req.starts_with("GET /api/v1/nodes ") {
                    lists.fetch_add(1, Ordering::SeqCst);
                    let body = if changed.load(Ordering::SeqCst) { &list_later } else { &list };
                    let _ = write!(s, "{head}{body}");
                } else if req.starts_with("GET /api/v1/nodes?") && req.contains("watch=1") {
                    // The first watch adds node 1, later makes node 0 NotReady, then expires;
                    // later watches stay open without events.
                    let _ = write!(s, "{head}");
                    if watches.fetch_add(1, Ordering::SeqCst) == 0 {
                        assert!(req.contains("resourceVersion=10"), "{req}");
                        let _ = writeln!(s, "{added}");
                        let _ = s.flush();
                        std::thread::sleep(Duration::from_secs(4));
                        changed.store(true, Ordering::SeqCst);
                        let _ = writeln!(s, "{not_ready}");
                        let _ = s.flush();
                        std::thread::sleep(Duration::from_secs(1));
                        let _ = writeln!(s, "{gone}");
                        let _ = s.flush();
                    }
                    std::thread::sleep(Duration::from_secs(60));
                } else if req.starts_with("GET /api/v1/pods ") {
                    let _ = write!(s, "{head}{{\"kind\":\"PodList\",\"items\":[]}}");
                } else if req.starts_with("GET /api/v1/namespaces ") {
                    let _ = write!(s, "{head}{{\"kind\":\"NamespaceList\",\"items\":[]}}");
                } else {
                    let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            });
        }
    });
    let source = format!("kubernetes.summary_api:http://{api_addr}?kubeletPort={port}&inClusterConfig=false");
    let agg = Aggregator::start(&["--source", &source, "--metric-resolution", "1s", "--allow-short-resolution"]);
    let usage = |i: usize| format!("{}/api/v1/model/nodes/{}/metrics/cpu/usage", agg.base, sim::node_name(i));
    // Node 1 only ever arrives through the watch.
    until("node 1 pulled after its ADDED event", WAIT, || async {
        (!points(&try_json(&usage(1)).await?).is_empty()).then_some(())
    })
    .await;
    // After the MODIFIED (NotReady) event node 0 is no longer pulled: its points stop growing.
    until("node 0 no longer pulled after it became NotReady", WAIT, || async {
        let before = points(&try_json(&usage(0)).await?).len();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        (points(&try_json(&usage(0)).await?).len() == before).then_some(())
    })
    .await;
    // The 410 made it list again, and then watch again; rounds themselves never list.
    until("a second list after the 410", WAIT, || async { (lists.load(Ordering::SeqCst) >= 2).then_some(()) }).await;
    until("a second watch", WAIT, || async { (watches.load(Ordering::SeqCst) >= 2).then_some(()) }).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lists.load(Ordering::SeqCst), 2, "rounds must not list the nodes");
}

#[test]
fn bad_options_are_named_at_start() {
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
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("aggregator")
            .args(&args)
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
    let sim = Sim::new(shape());
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
