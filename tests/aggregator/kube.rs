//! End to end, the Kubernetes source (`--source=kubernetes.summary_api:...`) against a loopback
//! API server that speaks the documented list/watch protocol: nodes, pods (field-selected) and
//! namespaces (metadata only) are listed once and then watched; a 410 relists; a hanging API
//! server never stalls a round; the aggregator's /metrics passes promtool.

use crate::support::{free_port, until};
use crate::support::promtool;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::aggregator::*;
use serde_json::{json, Value};
use vigil_aggregator::sim::{self, Shape, Sim};

const WAIT: Duration = Duration::from_secs(40);

/// One received request: method and path with query, and the Accept header.
#[derive(Debug, Clone)]
struct Request {
    target: String,
    accept: String,
    authorization: String,
}

impl Request {
    fn resource(&self) -> &str {
        let path = self.target.split('?').next().unwrap_or("");
        path.strip_prefix("/api/v1/").unwrap_or("")
    }
    fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| url_decode(v))
        })
    }
    fn is_watch(&self) -> bool {
        matches!(self.query("watch").as_deref(), Some("true" | "1"))
    }
    fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Default)]
struct State {
    /// The cluster-wide resourceVersion counter.
    rv: u64,
    /// Watches from a resourceVersion below this answer 410 (etcd compaction).
    compacted: u64,
    /// Objects by resource and key (namespace/name).
    objects: BTreeMap<(String, String), Value>,
    /// Every change: (resourceVersion, resource, event type, object).
    events: Vec<(u64, String, String, Value)>,
    /// Resources whose requests hang (a slow API server).
    hanging: Vec<String>,
    /// Watches end as soon as they start, without an event (a misbehaving proxy).
    close_watches: bool,
    requests: Vec<Request>,
}

/// A loopback Kubernetes API server for /api/v1/{nodes,pods,namespaces}: lists with
/// `metadata.resourceVersion`, watches streaming `{type, object}` lines from a resourceVersion
/// (BOOKMARKs when idle, an ERROR Status 410 below the compaction point), metadata-only answers
/// for `Accept: ...;as=PartialObjectMetadata...`, and `status.phase!=` field selectors.
#[derive(Clone)]
struct FakeApi {
    addr: String,
    state: Arc<Mutex<State>>,
}

fn kind_of(resource: &str) -> &'static str {
    match resource {
        "nodes" => "Node",
        "pods" => "Pod",
        _ => "Namespace",
    }
}

fn key_of(obj: &Value) -> String {
    let m = &obj["metadata"];
    format!(
        "{}/{}",
        m["namespace"].as_str().unwrap_or(""),
        m["name"].as_str().unwrap_or("")
    )
}

impl FakeApi {
    fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let api = FakeApi {
            addr: listener.local_addr().unwrap().to_string(),
            state: Arc::new(Mutex::new(State {
                rv: 100,
                ..Default::default()
            })),
        };
        let a = api.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let a = a.clone();
                std::thread::spawn(move || a.serve(s));
            }
        });
        api
    }

    /// Adds or replaces an object (ADDED or MODIFIED), stamping its resourceVersion.
    fn apply(&self, resource: &str, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!(kind_of(resource));
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (resource.to_string(), key_of(&obj));
        let kind = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.objects.insert(key, obj.clone());
        st.events
            .push((rv, resource.to_string(), kind.to_string(), obj));
    }

    /// Forgets an object as if it had never been created (set-up only: no event).
    fn delete_without_event(&self, resource: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.objects
            .remove(&(resource.to_string(), format!("/{name}")));
        st.events
            .retain(|(_, r, _, o)| !(r == resource && o["metadata"]["name"] == name));
    }

    /// Every watch open now and every watch from an older resourceVersion gets a 410.
    fn compact(&self) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        st.compacted = st.rv;
    }

    fn hang(&self, resource: &str) {
        self.state
            .lock()
            .unwrap()
            .hanging
            .push(resource.to_string());
    }

    fn requests(&self, resource: &str, watch: bool) -> Vec<Request> {
        let st = self.state.lock().unwrap();
        st.requests
            .iter()
            .filter(|r| r.resource() == resource && r.is_watch() == watch)
            .cloned()
            .collect()
    }

    fn serve(&self, mut s: TcpStream) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let head = String::from_utf8_lossy(&buf).into_owned();
        let mut lines = head.lines();
        let first = lines.next().unwrap_or("");
        let target = first.split(' ').nth(1).unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let req = Request {
            target,
            accept: header("accept"),
            authorization: header("authorization"),
        };
        let resource = req.resource().to_string();
        let hanging = {
            let mut st = self.state.lock().unwrap();
            st.requests.push(req.clone());
            st.hanging.contains(&resource)
        };
        if !first.starts_with("GET ")
            || !["nodes", "pods", "namespaces"].contains(&resource.as_str())
        {
            let _ = write!(
                s,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        if hanging {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        let filter = match phase_filter(req.query("fieldSelector").as_deref()) {
            Ok(f) => f,
            Err(msg) => {
                let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": msg, "reason": "BadRequest", "code": 400}).to_string();
                let _ = write!(s, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                return;
            }
        };
        let shape = |obj: &Value| -> Value {
            if req.metadata_only() {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
            } else {
                obj.clone()
            }
        };
        if !req.is_watch() {
            let st = self.state.lock().unwrap();
            let items: Vec<Value> = st
                .objects
                .iter()
                .filter(|((r, _), o)| *r == resource && filter(o))
                .map(|(_, o)| {
                    let mut o = shape(o);
                    // Items of a list carry no kind/apiVersion of their own.
                    if let Some(m) = o.as_object_mut() {
                        m.remove("kind");
                        m.remove("apiVersion");
                    }
                    o
                })
                .collect();
            let (kind, api_version) = if req.metadata_only() {
                ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1")
            } else {
                (format!("{}List", kind_of(&resource)), "v1")
            };
            let body = json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}).to_string();
            drop(st);
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            return;
        }
        // A watch: events after the requested resourceVersion, streamed until the timeout.
        if self.state.lock().unwrap().close_watches {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        let mut from: u64 = req
            .query("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bookmarks = req.query("allowWatchBookmarks").as_deref() == Some("true");
        let timeout = Duration::from_secs(
            req.query("timeoutSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(60)
                .min(60),
        );
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
        );
        let started = Instant::now();
        let mut idle = Instant::now();
        while started.elapsed() < timeout {
            let (lines, gone, rv) = {
                let st = self.state.lock().unwrap();
                let gone = from < st.compacted;
                let lines: Vec<(u64, String)> = st
                    .events
                    .iter()
                    .filter(|(rv, r, _, o)| *rv > from && *r == resource && filter(o))
                    .map(|(rv, _, kind, o)| {
                        (*rv, json!({"type": kind, "object": shape(o)}).to_string())
                    })
                    .collect();
                (lines, gone, st.rv)
            };
            if gone {
                let status = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {from} ({rv})"), "reason": "Expired", "code": 410}});
                let _ = writeln!(s, "{status}");
                return;
            }
            for (rv, line) in &lines {
                if writeln!(s, "{line}").is_err() {
                    return;
                }
                from = *rv;
                idle = Instant::now();
            }
            if bookmarks && idle.elapsed() > Duration::from_secs(1) {
                let kind = if req.metadata_only() {
                    "PartialObjectMetadata"
                } else {
                    kind_of(&resource)
                };
                let api_version = if req.metadata_only() {
                    "meta.k8s.io/v1"
                } else {
                    "v1"
                };
                let bm = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": rv.to_string()}}});
                if writeln!(s, "{bm}").is_err() {
                    return;
                }
                from = from.max(rv);
                idle = Instant::now();
            }
            let _ = s.flush();
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The `status.phase!=X` terms of a field selector (the only field the aggregator selects on).
fn phase_filter(selector: Option<&str>) -> Result<Box<dyn Fn(&Value) -> bool>, String> {
    let mut excluded = Vec::new();
    for term in selector.unwrap_or("").split(',').filter(|t| !t.is_empty()) {
        match term.strip_prefix("status.phase!=") {
            Some(p) => excluded.push(p.to_string()),
            None => return Err(format!("field label not supported: {term}")),
        }
    }
    Ok(Box::new(move |o: &Value| {
        let phase = o["status"]["phase"].as_str().unwrap_or("");
        !excluded.iter().any(|e| e == phase)
    }))
}

fn node(i: usize, ip: &str, ready: &str) -> Value {
    json!({"metadata": {"name": sim::node_name(i), "uid": format!("node-uid-{i}")},
        "status": {"addresses": [{"type": "Hostname", "address": format!("host-{i}")}, {"type": "InternalIP", "address": ip}],
                   "capacity": {"cpu": "4", "memory": "8Gi"}, "allocatable": {"cpu": "4"},
                   "images": [{"names": ["registry.example/big:1"], "sizeBytes": 1}],
                   "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready, "reason": "KubeletReady"}]}})
}

/// A pod of the simulated shape: every container requests `cpu`m and 64Mi and is limited to 500m.
fn pod(shape: &Shape, n: usize, p: usize, cpu: u32, labels: Value, phase: &str) -> Value {
    let (name, ns) = sim::pod_ref(shape, n, p);
    let containers: Vec<Value> = (0..shape.containers_per_pod)
        .map(|c| json!({"name": format!("c{c}"), "image": format!("registry.example/app-{c}:1"),
            "env": [{"name": "A", "value": "b"}],
            "resources": {"requests": {"cpu": format!("{cpu}m"), "memory": "64Mi"}, "limits": {"cpu": "500m"}}}))
        .collect();
    let statuses: Vec<Value> = (0..shape.containers_per_pod)
        .map(|c| json!({"name": format!("c{c}"), "image": format!("registry.example/app-{c}:1"), "imageID": "sha256:0", "ready": true, "restartCount": 2}))
        .collect();
    json!({"metadata": {"name": name, "namespace": ns, "uid": format!("uid-{n}-{p}"), "labels": labels,
            "annotations": {"note": "x"}, "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
        "spec": {"nodeName": sim::node_name(n), "containers": containers},
        "status": {"phase": phase, "containerStatuses": statuses}})
}

/// Simulated kubelets (node `i` on 127.0.0.{i+1}, all on one port, as in a cluster) with their
/// Ready nodes in a fake API server.
struct Cluster {
    sim: Arc<Sim>,
    port: u16,
    api: FakeApi,
    _kubelets: Vec<SimNode>,
}

impl Cluster {
    async fn start(nodes: usize) -> Cluster {
        let sim = Sim::new(small_shape());
        let port = free_port();
        let api = FakeApi::start();
        let mut kubelets = Vec::new();
        for i in 0..nodes {
            let ip = format!("127.0.0.{}", i + 1);
            kubelets.push(SimNode::start(&sim, i, &ip, port).await);
            api.apply("nodes", node(i, &ip, "True"));
        }
        Cluster {
            sim,
            port,
            api,
            _kubelets: kubelets,
        }
    }

    /// The source flag for the fake API server's URL.
    fn source(&self) -> String {
        format!(
            "kubernetes.summary_api:http://{}?kubeletPort={}&inClusterConfig=false",
            self.api.addr, self.port
        )
    }

    /// An aggregator with this source, one round a second.
    fn aggregator(source: &str) -> Aggregator {
        Aggregator::start(&[
            "--source",
            source,
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ])
    }

    /// The model API's URL of node `i`'s `cpu/usage`.
    fn usage(&self, agg: &Aggregator, i: usize) -> String {
        format!(
            "{}/api/v1/model/nodes/{}/metrics/cpu/usage",
            agg.base,
            sim::node_name(i)
        )
    }
}

fn points(v: &Value) -> usize {
    v["metrics"].as_array().map(Vec::len).unwrap_or(0)
}

async fn metrics_text(base: &str) -> String {
    get(&format!("{base}/metrics")).await.1
}

/// Nodes, pods and namespaces from the watchers: targets with their CPU capacity, requests and
/// limits summed into pods, the namespace and the node, labels and namespace_id in the export;
/// a pod MODIFIED by a watch event changes the answers without a relist; a Succeeded pod is
/// not asked for; /metrics counts the watches and passes promtool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_watchers_feed_targets_requests_and_labels() {
    let cluster = Cluster::start(2).await;
    let (sim, api) = (&cluster.sim, &cluster.api);
    for n in 0..2 {
        for p in 0..2 {
            let labels = json!({"app": "sim", "node": n.to_string()});
            api.apply("pods", pod(&sim.shape, n, p, 100, labels, "Running"));
        }
    }
    api.apply("pods", json!({"metadata": {"name": "job-done", "namespace": "ns-0"}, "spec": {"containers": [{"name": "x"}]}, "status": {"phase": "Succeeded"}}));
    api.apply("namespaces", json!({"metadata": {"name": "ns-0", "uid": "ns-0-uid", "labels": {"team": "a"}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}));
    let agg = Cluster::aggregator(&cluster.source());
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
    let (pod1, ns) = sim::pod_ref(&sim.shape, 1, 0);
    let req = |path: String| async move { latest(&try_json(&path).await?) };
    let c = until("container cpu/request", WAIT, || {
        req(format!(
            "{m}/namespaces/{ns}/pods/{pod1}/containers/c1/metrics/cpu/request"
        ))
    })
    .await;
    assert_eq!(c, 100.0);
    // The pod page's request line is this PromQL query (dashboards/assets/app.js, podPage): the
    // same figure reaches the UI, by container, in cores.
    let ui_request = format!(
        "{}/api/v1/query?query={}",
        agg.base,
        format!(
            "cpu_request%7Btype%3D%22pod_container%22%2Cnamespace_name%3D%22{ns}%22%2Cpod_name%3D%22{pod1}%22%7D%20%2F%201000"
        )
    );
    let v = get_json(&ui_request).await;
    let c1 = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"]["container_name"] == "c1")
        .unwrap_or_else(|| panic!("no c1 request line for the UI: {v}"));
    assert_eq!(c1["value"][1], "0.1", "{v}");
    let limit = until("pod cpu/limit", WAIT, || {
        req(format!("{m}/namespaces/{ns}/pods/{pod1}/metrics/cpu/limit"))
    })
    .await;
    assert_eq!(limit, 1000.0);
    let mem = until("pod memory/request", WAIT, || {
        req(format!(
            "{m}/namespaces/{ns}/pods/{pod1}/metrics/memory/request"
        ))
    })
    .await;
    assert_eq!(mem, (128u64 << 20) as f64);
    let node_req = until("node cpu/request", WAIT, || {
        req(format!("{m}/nodes/node-0001/metrics/cpu/request"))
    })
    .await;
    assert_eq!(node_req, 400.0);
    let ns_req = until("namespace cpu/request", WAIT, || {
        req(format!("{m}/namespaces/ns-0/metrics/cpu/request"))
    })
    .await;
    assert_eq!(ns_req, 800.0);
    let reservation = until("node reservation", WAIT, || {
        req(format!("{m}/nodes/node-0001/metrics/cpu/node_reservation"))
    })
    .await;
    assert!((reservation - 0.1).abs() < 1e-9, "{reservation}");
    let restarts = until("restart_count from the pod status", WAIT, || {
        req(format!(
            "{m}/namespaces/{ns}/pods/{pod1}/containers/c1/metrics/restart_count"
        ))
    })
    .await;
    assert_eq!(restarts, 2.0);
    let export_c1 = |export: Value, pod: String| {
        export
            .as_array()
            .unwrap()
            .iter()
            .find(|t| {
                t["labels"]["pod_name"] == pod.as_str() && t["labels"]["container_name"] == "c1"
            })
            .cloned()
    };
    let c1 = export_c1(
        get_json(&format!("{}/api/v1/metric-export", agg.base)).await,
        pod1.clone(),
    )
    .expect("container series");
    assert_eq!(c1["labels"]["labels"], "app:sim,node:1");
    assert_eq!(c1["labels"]["namespace_id"], "ns-0-uid");
    assert_eq!(
        c1["labels"]["container_base_image"],
        "registry.example/app-1:1"
    );
    assert_eq!(c1["metrics"]["cpu/limit"][0]["value"], 500);

    // The pod changes through a watch event: new labels and requests, no new list.
    let pod_lists = api.requests("pods", false).len();
    api.apply(
        "pods",
        pod(
            &sim.shape,
            1,
            0,
            250,
            json!({"app": "sim", "tier": "gold"}),
            "Running",
        ),
    );
    let c = until("container cpu/request after MODIFIED", WAIT, || async {
        let v = latest(
            &try_json(&format!(
                "{m}/namespaces/{ns}/pods/{pod1}/containers/c1/metrics/cpu/request"
            ))
            .await?,
        )?;
        (v == 250.0).then_some(v)
    })
    .await;
    assert_eq!(c, 250.0);
    until("labels after MODIFIED", WAIT, || async {
        let c1 = export_c1(
            try_json(&format!("{}/api/v1/metric-export", agg.base)).await?,
            pod1.clone(),
        )?;
        (c1["labels"]["labels"] == "app:sim,tier:gold").then_some(())
    })
    .await;
    assert_eq!(
        api.requests("pods", false).len(),
        pod_lists,
        "a watch event must not relist"
    );

    // The protocol the watchers spoke: paged lists, watches from the list's resourceVersion
    // with bookmarks and a timeout, pods field-selected, namespaces as metadata only.
    let list = &api.requests("nodes", false)[0];
    assert_eq!(list.query("limit").as_deref(), Some("500"), "{list:?}");
    let w = &api.requests("nodes", true)[0];
    assert!(
        w.query("resourceVersion")
            .is_some_and(|v| v.parse::<u64>().unwrap() > 100),
        "{w:?}"
    );
    assert_eq!(
        w.query("allowWatchBookmarks").as_deref(),
        Some("true"),
        "{w:?}"
    );
    assert!(w.query("timeoutSeconds").is_some(), "{w:?}");
    let pods = api.requests("pods", false);
    assert_eq!(
        pods[0].query("fieldSelector").as_deref(),
        Some("status.phase!=Succeeded,status.phase!=Failed")
    );
    assert!(api
        .requests("namespaces", true)
        .iter()
        .chain(&api.requests("namespaces", false))
        .all(Request::metadata_only));

    // Self-metrics: objects in the stores, events, no errors; the text passes promtool.
    let text = until("watch metrics", WAIT, || async {
        let t = metrics_text(&agg.base).await;
        (sample(
            &t,
            "vigil_aggregator_kubernetes_watch_events_total{resource=\"pods\"}",
        )? >= 1.0)
            .then_some(t)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            "vigil_aggregator_kubernetes_objects{resource=\"pods\"}"
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "vigil_aggregator_kubernetes_objects{resource=\"nodes\"}"
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "vigil_aggregator_kubernetes_objects{resource=\"namespaces\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "vigil_aggregator_kubernetes_watch_errors_total{resource=\"nodes\"}"
        ),
        Some(0.0),
        "{text}"
    );
    // promtool finds nothing but the one lint kept on purpose: the released name
    // vigil_aggregator_counter_resets_total names its type (dashboards and alerts use it).
    promtool::check_metrics(
        &text,
        &["vigil_aggregator_counter_resets_total metric name should not include type 'counter'"],
    );
}

/// Nodes come from one list and then a watch: a node ADDED by a watch event is pulled, a node
/// MODIFIED to NotReady is no longer pulled, a 410 makes the watcher list again (counted), and
/// rounds do not list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_watch_follows_added_not_ready_and_gone_resource_versions() {
    let cluster = Cluster::start(2).await;
    let api = &cluster.api;
    // Node 1 only ever arrives through the watch.
    api.delete_without_event("nodes", &sim::node_name(1));
    let agg = Cluster::aggregator(&cluster.source());
    let usage = |i: usize| cluster.usage(&agg, i);
    until("node 0 pulled", WAIT, || async {
        (points(&try_json(&usage(0)).await?) > 0).then_some(())
    })
    .await;
    until("a watch open", WAIT, || async {
        (!api.requests("nodes", true).is_empty()).then_some(())
    })
    .await;
    // Node 1 only ever arrives through the watch.
    api.apply("nodes", node(1, "127.0.0.2", "True"));
    until("node 1 pulled after its ADDED event", WAIT, || async {
        (points(&try_json(&usage(1)).await?) > 0).then_some(())
    })
    .await;
    // After the MODIFIED (NotReady) event node 0 is no longer pulled: its points stop growing.
    api.apply("nodes", node(0, "127.0.0.1", "False"));
    until(
        "node 0 no longer pulled after it became NotReady",
        WAIT,
        || async {
            let before = points(&try_json(&usage(0)).await?);
            tokio::time::sleep(Duration::from_millis(2500)).await;
            (points(&try_json(&usage(0)).await?) == before).then_some(())
        },
    )
    .await;
    // Its Ready condition is a series, as kube-state-metrics writes it, so a rule finds it.
    let ready = format!(
        "{}/api/v1/query?query={}",
        agg.base, "kube_node_status_condition%7Bcondition%3D%22Ready%22%2Cstatus%3D%22true%22%7D"
    );
    until("node 0 Ready=0 and node 1 Ready=1 as series", WAIT, || async {
        let v = try_json(&ready).await?;
        let value = |i: usize| {
            v["data"]["result"].as_array()?.iter().find_map(|r| {
                (r["metric"]["node"] == sim::node_name(i).as_str())
                    .then(|| r["value"][1].as_str().map(str::to_string))?
            })
        };
        (value(0)? == "0" && value(1)? == "1").then_some(())
    })
    .await;
    assert_eq!(
        api.requests("nodes", false).len(),
        1,
        "watch events must not relist"
    );
    // The resourceVersion expires: the 410 makes the watcher list and watch again.
    api.compact();
    until("a second list after the 410", WAIT, || async {
        (api.requests("nodes", false).len() >= 2).then_some(())
    })
    .await;
    until("a watch from the new list", WAIT, || async {
        let st = api.state.lock().unwrap();
        let compacted = st.compacted;
        drop(st);
        api.requests("nodes", true)
            .iter()
            .any(|w| {
                w.query("resourceVersion")
                    .and_then(|v| v.parse::<u64>().ok())
                    >= Some(compacted)
            })
            .then_some(())
    })
    .await;
    // Node 1 is still pulled after the relist; node 0 still not.
    let before = points(&get_json(&usage(1)).await);
    until("node 1 still pulled", WAIT, || async {
        (points(&try_json(&usage(1)).await?) > before).then_some(())
    })
    .await;
    let text = until("the 410 counted", WAIT, || async {
        let t = metrics_text(&agg.base).await;
        (sample(
            &t,
            "vigil_aggregator_kubernetes_watch_errors_total{resource=\"nodes\"}",
        )? >= 1.0
            && sample(
                &t,
                "vigil_aggregator_kubernetes_lists_total{resource=\"nodes\"}",
            )? >= 2.0)
            .then_some(t)
    })
    .await;
    assert!(
        sample(&text, "vigil_aggregator_discovery_errors_total").unwrap() >= 1.0,
        "{text}"
    );
    // Rounds themselves never list.
    let lists = api.requests("nodes", false).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        api.requests("nodes", false).len(),
        lists,
        "rounds must not list the nodes"
    );
}

/// A hanging API server (pods and namespaces never answer) delays the enrichment stores, never
/// the rounds: the node is still pulled every resolution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_api_server_does_not_stall_the_rounds() {
    let cluster = Cluster::start(1).await;
    cluster.api.hang("pods");
    cluster.api.hang("namespaces");
    let agg = Cluster::aggregator(&cluster.source());
    let url = cluster.usage(&agg, 0);
    let started = Instant::now();
    until("six rounds while the pod list hangs", WAIT, || async {
        (points(&try_json(&url).await?) >= 6).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "rounds stalled: {:?}",
        started.elapsed()
    );
}

/// `auth=<kubeconfig>` (with `inClusterConfig=false`): the API server and its token come from
/// the kubeconfig's current context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_auth_option_reaches_the_api_server() {
    let cluster = Cluster::start(1).await;
    let api = &cluster.api;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{}\nusers:\n- name: u\n  user:\n    token: kubeconfig-token\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
            api.addr
        ),
    )
    .unwrap();
    let source = format!(
        "kubernetes.summary_api:?inClusterConfig=false&kubeletPort={}&auth={}",
        cluster.port,
        kubeconfig.display()
    );
    let agg = Cluster::aggregator(&source);
    let url = cluster.usage(&agg, 0);
    until("node from the kubeconfig's API server", WAIT, || async {
        (points(&try_json(&url).await?) > 0).then_some(())
    })
    .await;
    for r in api
        .requests("nodes", false)
        .iter()
        .chain(&api.requests("pods", true))
    {
        assert_eq!(r.authorization, "Bearer kubeconfig-token", "{r:?}");
    }
}

/// A proxy that ends every watch at once (200, no event) does not turn the watchers into a busy
/// loop: watch requests for one resource stay about a second apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_closed_at_once_are_not_reopened_in_a_busy_loop() {
    let cluster = Cluster::start(1).await;
    cluster.api.state.lock().unwrap().close_watches = true;
    let agg = Cluster::aggregator(&cluster.source());
    let url = cluster.usage(&agg, 0);
    until("node pulled", WAIT, || async {
        (points(&try_json(&url).await?) > 0).then_some(())
    })
    .await;
    until("a first watch", WAIT, || async {
        (!cluster.api.requests("nodes", true).is_empty()).then_some(())
    })
    .await;
    let before = cluster.api.requests("nodes", true).len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let watches = cluster.api.requests("nodes", true).len() - before;
    assert!((1..=6).contains(&watches), "{watches} node watches in 4 s");
}
