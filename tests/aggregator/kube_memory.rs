//! What the Kubernetes source's pod store costs in memory at Heapster's design scale
//! (1,000 nodes × 30 pods), counted by a heap profiler (dhat) as live heap bytes: the pods as the
//! watcher stores them (`PodLite`, only what enrichment reads), the same pods as full
//! `k8s_openapi` Pods (what a plain reflector would keep), and the enrichment view built from them.

use std::time::Instant;

use serde_json::{json, Value};
use vigil_aggregator::scrape::kubernetes::PodStoreProbe;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// A pod as a Deployment's ReplicaSet and the kubelet leave it (managed fields, probes, env,
/// volumes, conditions): about 5.5 KB of JSON.
fn realistic_pod(n: usize, p: usize) -> Value {
    let container = |c: usize| {
        json!({
            "name": format!("c{c}"), "image": format!("registry.example.com/team/app-{c}:v1.2.{p}"),
            "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 8080, "protocol": "TCP", "name": "http"}],
            "env": (0..6).map(|e| json!({"name": format!("ENV_VAR_{e}"), "value": format!("value-{e}-{n}-{p}")})).collect::<Vec<_>>(),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
        })
    };
    let status = |c: usize| {
        json!({
            "name": format!("c{c}"), "image": format!("registry.example.com/team/app-{c}:v1.2.{p}"),
            "imageID": format!("registry.example.com/team/app-{c}@sha256:{:064x}", n * 1000 + p),
            "containerID": format!("containerd://{:064x}", n * 100_000 + p * 10 + c), "ready": true, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2024-05-01T10:00:00Z"}}
        })
    };
    let conditions: Vec<Value> = ["Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("app-{n:04}-{p:02}-7d9f8b6c5d-x2x4z"), "namespace": format!("team-{}", p % 20),
            "uid": format!("{:08x}-1111-2222-3333-{:012x}", n, p), "resourceVersion": "123456789",
            "generateName": "app-7d9f8b6c5d-", "creationTimestamp": "2024-05-01T10:00:00Z",
            "labels": {"app": format!("app-{p}"), "pod-template-hash": "7d9f8b6c5d", "team": "payments", "version": "v1"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T09:59:00Z", "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f8b6c5d", "uid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2024-05-01T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}}, "f:ownerReferences": {}}, "f:spec": {"f:containers": {"k:{\"name\":\"c0\"}": {".": {}, "f:env": {}, "f:image": {}, "f:resources": {}}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2024-05-01T10:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}
            ]
        },
        "spec": {
            "containers": [container(0), container(1)], "nodeName": format!("node-{n:04}"),
            "volumes": [{"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
                        {"name": "kube-api-access-abcde", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "securityContext": {}, "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.244.1.2", "podIPs": [{"ip": "10.244.1.2"}], "qosClass": "Burstable",
            "startTime": "2024-05-01T10:00:00Z", "conditions": conditions, "containerStatuses": [status(0), status(1)]
        }
    })
}

fn live_bytes() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

/// Live heap of the pod store and of the enrichment view, per pod and at 30,000 pods. The
/// regular run counts 1,000 pods (the store grows linearly); `VIGIL_PODS=30000` counts all of
/// Heapster's design target. The store as watched must stay under 2 KB a pod.
#[test]
fn pod_store_memory_at_heapster_scale() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let pods: usize = std::env::var("VIGIL_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let docs: Vec<Vec<u8>> = (0..pods)
        .map(|i| serde_json::to_vec(&realistic_pod(i / 30, i % 30)).unwrap())
        .collect();
    let json_bytes: usize = docs.iter().map(Vec::len).sum();

    let before = live_bytes();
    let lite = PodStoreProbe::fill(&docs, true).unwrap();
    let lite_bytes = live_bytes() - before;
    assert_eq!(lite.len(), pods);
    let before = live_bytes();
    let t = Instant::now();
    let info = lite.cluster_info().unwrap();
    let build = t.elapsed();
    let info_bytes = live_bytes() - before;
    assert_eq!(info.pods.len(), pods);
    drop((info, lite));
    let before = live_bytes();
    let full = PodStoreProbe::fill(&docs, false).unwrap();
    let full_bytes = live_bytes() - before;
    assert_eq!(full.len(), pods);

    let per = |b: u64| b as f64 / pods as f64;
    let at_30k = |b: u64| per(b) * 30_000.0 / 1e6;
    println!(
        "{pods} pods, {:.0} bytes of JSON each: store as watched (PodLite) {:.0} B/pod = {:.1} MB at 30,000; \
         full k8s-openapi Pods {:.0} B/pod = {:.1} MB at 30,000; ClusterInfo {:.0} B/pod = {:.1} MB at 30,000, \
         built in {build:?} (under dhat, debug build)",
        json_bytes as f64 / pods as f64,
        per(lite_bytes),
        at_30k(lite_bytes),
        per(full_bytes),
        at_30k(full_bytes),
        per(info_bytes),
        at_30k(info_bytes),
    );
    assert!(per(lite_bytes) < 2000.0, "{} bytes a pod", per(lite_bytes));
    assert!(lite_bytes * 4 < full_bytes);
}
