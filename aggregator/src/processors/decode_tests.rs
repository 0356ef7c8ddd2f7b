//! Tests of the Summary decoder: kubelet and collector documents to Heapster's sets, bad and
//! oversized documents refused with what is wrong.

use super::*;
use crate::batch::Batch;

#[test]
fn kubelet_document_decodes_to_heapster_sets() {
    let doc = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/kubelet-summary.json"
    ))
    .unwrap();
    let b = process(doc, None);
    let keys: Vec<&str> = b.sets.keys().map(|k| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "cluster",
            "namespace:default",
            "namespace:default/pod:web-0",
            "namespace:default/pod:web-0/container:web",
            "node:node-1",
            "node:node-1/container:docker-daemon",
            "node:node-1/container:kubelet",
        ]
    );
    let node = &b.sets["node:node-1"];
    assert_eq!(node.labels["type"], "node");
    assert_eq!(node.labels["hostname"], "node-1");
    assert_eq!(
        node.values["cpu/usage"],
        MetricValue::Int(3_000_000_000_000)
    );
    assert_eq!(node.values["uptime"], MetricValue::Int(600_000));
    assert_eq!(
        node.values["memory/node_capacity"],
        MetricValue::Float(2500.0)
    );
    assert_eq!(node.values["network/rx"], MetricValue::Int(1));
    let fs: Vec<_> = node
        .labeled
        .iter()
        .filter(|m| m.name == "filesystem/usage")
        .collect();
    assert_eq!(fs[0].labels["resource_id"], "/");
    let c = &b.sets["namespace:default/pod:web-0/container:web"];
    assert_eq!(c.labels["type"], "pod_container");
    assert_eq!(c.labels["pod_id"], "0a1b");
    assert_eq!(c.labels["namespace_name"], "default");
    assert_eq!(c.labels["container_name"], "web");
    assert_eq!(
        c.values["ephemeral_storage/usage"],
        MetricValue::Int(4096 + 8192)
    );
    assert!(c
        .labeled
        .iter()
        .any(|m| m.name == "filesystem/usage" && m.labels["resource_id"] == "logs"));
    let pod = &b.sets["namespace:default/pod:web-0"];
    assert!(pod
        .labeled
        .iter()
        .any(|m| m.labels["resource_id"] == "Volume:data"));
    assert_eq!(
        b.sets["node:node-1/container:docker-daemon"].labels["type"],
        "sys_container"
    );
}

fn testdata() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/kubelet-summary.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn sets_of(n: &NodeSets) -> BTreeMap<&str, &MetricSet> {
    n.sets.iter().map(|(k, s)| (k.as_str(), s)).collect()
}

/// The second document of a target reuses the label maps of the first (same allocation), so
/// the rate pass and the store see an unchanged pointer; a pod recreated under the same name
/// (new UID) and a changed node name get new maps.
#[test]
fn label_maps_are_reused_until_the_entity_changes() {
    let body = serde_json::to_vec(&testdata()).unwrap();
    let mut cache = NodeCache::default();
    let a = decode_document(&body, "f", &mut cache).unwrap();
    let b = decode_document(&body, "f", &mut cache).unwrap();
    assert_eq!(a, b);
    for ((ka, sa), (kb, sb)) in a.sets.iter().zip(&b.sets) {
        assert_eq!(ka, kb);
        assert!(Arc::ptr_eq(&sa.labels, &sb.labels), "{ka}");
    }
    let mut v = testdata();
    v["pods"][0]["podRef"]["uid"] = "new-uid".into();
    let c = decode_document(&serde_json::to_vec(&v).unwrap(), "f", &mut cache).unwrap();
    let (b, c) = (sets_of(&b), sets_of(&c));
    let pod = "namespace:default/pod:web-0";
    assert!(!Arc::ptr_eq(&b[pod].labels, &c[pod].labels));
    assert_eq!(c[pod].labels["pod_id"], "new-uid");
    let web = "namespace:default/pod:web-0/container:web";
    assert_eq!(c[web].labels["pod_id"], "new-uid");
    assert!(Arc::ptr_eq(
        &b["node:node-1"].labels,
        &c["node:node-1"].labels
    ));
    v["node"]["nodeName"] = "".into();
    let d = decode_document(&serde_json::to_vec(&v).unwrap(), "fallback-7", &mut cache).unwrap();
    assert_eq!(d.node_name, "fallback-7");
    assert_eq!(
        sets_of(&d)["node:fallback-7"].labels["hostname"],
        "fallback-7"
    );
    assert_eq!(sets_of(&d)[web].labels["nodename"], "fallback-7");
}

/// Go's `null` lists are empty lists; a bad time, a wrong type or a missing required field
/// refuses the document with a message naming what is wrong; unread fields are skipped.
#[test]
fn nulls_bad_times_and_wrong_types() {
    let mut v = testdata();
    v["pods"][0]["containers"] = serde_json::Value::Null;
    v["pods"][0]["volume"] = serde_json::Value::Null;
    v["node"]["systemContainers"] = serde_json::Value::Null;
    v["node"]["network"]["interfaces"] = serde_json::Value::Null;
    v["pods"][0]["cpu"]["psi"] = serde_json::json!({"full": {"total": 1}});
    let n = decode_document(
        &serde_json::to_vec(&v).unwrap(),
        "f",
        &mut NodeCache::default(),
    )
    .unwrap();
    let keys: Vec<&str> = sets_of(&n).keys().copied().collect();
    assert_eq!(keys, ["namespace:default/pod:web-0", "node:node-1"]);
    // The pod's network is the inlined default interface.
    assert_eq!(
        sets_of(&n)["namespace:default/pod:web-0"].values[NETWORK_TX],
        MetricValue::Int(200)
    );
    let refuse = |v: serde_json::Value| {
        decode_document(
            &serde_json::to_vec(&v).unwrap(),
            "f",
            &mut NodeCache::default(),
        )
        .unwrap_err()
        .to_string()
    };
    let mut v = testdata();
    v["pods"][0]["containers"][0]["cpu"]["time"] = "yesterday".into();
    let e = refuse(v);
    assert!(e.contains("cpu.time") && e.contains("yesterday"), "{e}");
    let mut v = testdata();
    v["node"]["startTime"] = "2024-13-01T00:00:00Z".into();
    assert!(refuse(v).contains("node.startTime"));
    let mut v = testdata();
    v["node"]["memory"]["usageBytes"] = "many".into();
    assert!(refuse(v).contains("invalid type"));
    let mut v = testdata();
    v["pods"][0]["podRef"]
        .as_object_mut()
        .unwrap()
        .remove("uid");
    assert!(refuse(v).contains("missing field `uid`"));
    let mut v = testdata();
    v.as_object_mut().unwrap().remove("node");
    assert!(refuse(v).contains("missing field `node`"));
    assert!(decode_document(
        b"{\"node\": {\"nodeName\": 42, ",
        "f",
        &mut NodeCache::default()
    )
    .is_err());
    // chrono's looser form (a space for the `T`) is still accepted, as before.
    let mut v = testdata();
    v["node"]["startTime"] = "2024-01-01 00:00:00Z".into();
    let n = decode_document(
        &serde_json::to_vec(&v).unwrap(),
        "f",
        &mut NodeCache::default(),
    )
    .unwrap();
    assert_eq!(
        sets_of(&n)["node:node-1"].create_time,
        Some("2024-01-01T00:00:00Z".parse().unwrap())
    );
}

/// Regression (#19, item 6): two pods with the same namespace/name in one document no
/// longer overwrite each other: the first is kept, the second counted every document and
/// remembered so it is logged once while it lasts.
#[test]
fn duplicate_pod_names_keep_the_first_and_are_counted() {
    let mut v = testdata();
    let mut second = v["pods"][0].clone();
    second["podRef"]["uid"] = "other-uid".into();
    second["containers"][0]["memory"]["workingSetBytes"] = 1.into();
    v["pods"].as_array_mut().unwrap().push(second);
    let body = serde_json::to_vec(&v).unwrap();
    let mut cache = NodeCache::default();
    let n = decode_document(&body, "f", &mut cache).unwrap();
    assert_eq!(n.duplicate_pods, 1);
    let web = "namespace:default/pod:web-0/container:web";
    assert_eq!(n.sets.iter().filter(|(k, _)| k == web).count(), 1);
    let sets = sets_of(&n);
    assert_eq!(sets[web].labels["pod_id"], "0a1b");
    assert_ne!(sets[web].values[MEMORY_WORKING_SET], MetricValue::Int(1));
    assert!(cache.duplicated.contains("default/web-0"));
    // The next document still has it: counted again (the log is not repeated).
    assert_eq!(
        decode_document(&body, "f", &mut cache)
            .unwrap()
            .duplicate_pods,
        1
    );
    // Gone: forgotten, so a later duplicate is logged again.
    let clean = serde_json::to_vec(&testdata()).unwrap();
    assert_eq!(
        decode_document(&clean, "f", &mut cache)
            .unwrap()
            .duplicate_pods,
        0
    );
    assert!(cache.duplicated.is_empty());
}

/// A document yielding more sets than a node may report is refused before any set is
/// built (a small document of minimal pods must not cost hundreds of MB).
#[test]
fn too_many_sets_are_refused() {
    let mut v = testdata();
    let pod = v["pods"][0].clone();
    let pods: Vec<serde_json::Value> = (0..MAX_SETS_PER_DOCUMENT / 2)
        .map(|i| {
            let mut p = pod.clone();
            p["podRef"]["name"] = format!("p{i}").into();
            p
        })
        .collect();
    v["pods"] = pods.clone().into();
    let e = decode_document(
        &serde_json::to_vec(&v).unwrap(),
        "f",
        &mut NodeCache::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than the 10000"), "{e}");
    // Far more entries than that: refused while parsing, before they are all built.
    let many: Vec<serde_json::Value> = (0..MAX_ENTRIES_PER_DOCUMENT + 1)
        .map(|i| serde_json::json!({"podRef": {"name": format!("p{i}"), "namespace": "n", "uid": "u"}}))
        .collect();
    v["pods"] = many.into();
    let e = decode_document(
        &serde_json::to_vec(&v).unwrap(),
        "f",
        &mut NodeCache::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than 20000 list entries"), "{e}");
    // A big but real node (1,000 pods with a container each) is accepted.
    v["pods"] = pods[..1000].to_vec().into();
    assert!(decode_document(
        &serde_json::to_vec(&v).unwrap(),
        "f",
        &mut NodeCache::default()
    )
    .is_ok());
}

fn with_vigil_spec(spec: serde_json::Value) -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/kubelet-summary.json"
    ))
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["pods"][0]["containers"][0]["vigilSpec"] = spec;
    serde_json::to_vec(&v).unwrap()
}

fn process(body: Vec<u8>, info: Option<super::super::enrich::ClusterInfo>) -> Batch {
    let mut p = super::super::Processor::new(std::time::Duration::from_secs(600));
    p.cluster_info = info.map(std::sync::Arc::new);
    let doc = super::super::Decoder::default()
        .decode("http://127.0.0.1:1", "fallback", Some(2.0), &body)
        .unwrap();
    p.process("2024-01-01T00:10:00Z".parse().unwrap(), &[doc])
}

/// A vigil collector's `vigilSpec` yields the four Heapster metrics on the container, and
/// through aggregation on the pod, namespace, node (with `*/node_reservation`) and cluster.
#[test]
fn vigil_spec_derives_requests_limits_and_node_reservation() {
    // shares 256 = 250m × 1024 / 1000; quota 50000 / period 100000 = 500m.
    let summary = with_vigil_spec(serde_json::json!({
        "cpuShares": 256, "cpuQuotaMicros": 50000, "cpuPeriodMicros": 100000,
        "memoryLimitBytes": 1000, "memoryMinBytes": 500
    }));
    let b = process(summary, None);
    let c = &b.sets["namespace:default/pod:web-0/container:web"];
    assert_eq!(c.values[CPU_REQUEST], MetricValue::Int(250));
    assert_eq!(c.values[CPU_LIMIT], MetricValue::Int(500));
    assert_eq!(c.values[MEMORY_REQUEST], MetricValue::Int(500));
    assert_eq!(c.values[MEMORY_LIMIT], MetricValue::Int(1000));
    for key in [
        "namespace:default/pod:web-0",
        "namespace:default",
        "node:node-1",
        "cluster",
    ] {
        let s = &b.sets[key];
        assert_eq!(s.values[CPU_REQUEST], MetricValue::Int(250), "{key}");
        assert_eq!(s.values[MEMORY_LIMIT], MetricValue::Int(1000), "{key}");
    }
    let n = &b.sets["node:node-1"];
    // 250m of 2 cores; 500 B of memory capacity available 1000 + working set 1500.
    assert_eq!(n.values[CPU_NODE_RESERVATION], MetricValue::Float(0.125));
    assert_eq!(n.values[MEMORY_NODE_RESERVATION], MetricValue::Float(0.2));
}

/// Kubelet minimum shares (2), no quota, unlimited memory: all four are 0 ("not set").
#[test]
fn vigil_spec_without_limits_is_zero() {
    assert_eq!(
        derive_requests_and_limits(&VigilSpec {
            cpu_shares: Some(2),
            cpu_period_micros: Some(100_000),
            memory_limit_bytes: Some(u64::MAX),
            ..VigilSpec::default()
        }),
        (0, 0, 0, 0)
    );
    // 100m → ⌊102.4⌋ = 102 shares → ⌈99.6⌉ = 100m; quota 150000 / period 100000 → 1500m.
    assert_eq!(
        derive_requests_and_limits(&VigilSpec {
            cpu_shares: Some(102),
            cpu_quota_micros: Some(150_000),
            cpu_period_micros: Some(100_000),
            ..VigilSpec::default()
        }),
        (100, 1500, 0, 0)
    );
    // A kubelet document has no vigilSpec: no derived metrics.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/kubelet-summary.json"
    ))
    .unwrap();
    let b = process(text.into_bytes(), None);
    let c = &b.sets["namespace:default/pod:web-0/container:web"];
    assert!(!c.values.contains_key(CPU_REQUEST) && !c.values.contains_key(MEMORY_LIMIT));
}

/// With the Kubernetes API source, the pod spec's values win over the derived ones.
#[test]
fn kubernetes_values_win_over_vigil_spec() {
    use super::super::enrich::{ClusterInfo, PodInfo, Resources};
    let summary = with_vigil_spec(serde_json::json!({
        "cpuShares": 256, "cpuQuotaMicros": 50000, "cpuPeriodMicros": 100000,
        "memoryLimitBytes": 1000
    }));
    let mut info = ClusterInfo::default();
    info.pods.insert(
        ("default".into(), "web-0".into()),
        PodInfo {
            labels: String::new(),
            containers: [(
                "web".to_string(),
                Resources {
                    cpu_request: 100,
                    cpu_limit: 200,
                    memory_request: 300,
                    memory_limit: 400,
                    ..Resources::default()
                },
            )]
            .into(),
        },
    );
    let b = process(summary, Some(info));
    let c = &b.sets["namespace:default/pod:web-0/container:web"];
    assert_eq!(c.values[CPU_REQUEST], MetricValue::Int(100));
    assert_eq!(c.values[CPU_LIMIT], MetricValue::Int(200));
    assert_eq!(c.values[MEMORY_REQUEST], MetricValue::Int(300));
    assert_eq!(c.values[MEMORY_LIMIT], MetricValue::Int(400));
    assert_eq!(
        b.sets["node:node-1"].values[CPU_REQUEST],
        MetricValue::Int(100)
    );
}
