//! Pod and namespace enrichment from the Kubernetes API (heapster metrics/processors/
//! pod_based_enricher.go, namespace_based_enricher.go): container requests and limits, the
//! `labels` label, `namespace_id`, `container_base_image` from the pod spec's image and
//! `restart_count` from the pod status' `containerStatuses[].restartCount`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::names::*;
use crate::batch::{set_type, Batch, MetricValue};

/// Requests and limits of one container: cpu in millicores, memory in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub cpu_request: i64,
    pub cpu_limit: i64,
    pub memory_request: i64,
    pub memory_limit: i64,
    /// `spec.containers[].image`: Heapster's `container_base_image` label.
    pub image: String,
    /// `status.containerStatuses[].restartCount`: Heapster's `restart_count`.
    pub restart_count: Option<i64>,
}

/// What the API server says about one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// `k:v` pairs joined by `,`, sorted by key.
    pub labels: String,
    pub containers: HashMap<String, Resources>,
}

/// Pods by (namespace, name) and namespace UIDs by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterInfo {
    pub pods: HashMap<(String, String), PodInfo>,
    pub namespaces: HashMap<String, String>,
}

/// Parses a Kubernetes quantity into a value scaled by `scale` (1000 for millicores of CPU,
/// 1 for bytes): `100m`, `0.5`, `2`, `128Mi`, `1G`, `1e3`.
pub fn parse_quantity(q: &str, scale: f64) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mut n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => {
            let exp: i32 = s[1..].parse().ok()?;
            10f64.powi(exp)
        }
        _ => return None,
    };
    n *= mult * scale;
    n.is_finite().then(|| n.ceil() as i64)
}

#[derive(Deserialize)]
struct List<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}
#[derive(Deserialize)]
struct Meta {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}
#[derive(Deserialize)]
struct Pod {
    metadata: Meta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}
#[derive(Deserialize, Default)]
struct PodStatus {
    #[serde(rename = "containerStatuses", default)]
    container_statuses: Vec<ContainerStatus>,
}
#[derive(Deserialize)]
struct ContainerStatus {
    name: String,
    #[serde(rename = "restartCount", default)]
    restart_count: i64,
}
#[derive(Deserialize, Default)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}
#[derive(Deserialize)]
struct Container {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    resources: ResourceReqs,
}
#[derive(Deserialize, Default)]
struct ResourceReqs {
    #[serde(default)]
    requests: BTreeMap<String, String>,
    #[serde(default)]
    limits: BTreeMap<String, String>,
}
#[derive(Deserialize)]
struct Namespace {
    metadata: Meta,
}

/// Builds the info from PodList and NamespaceList documents.
pub fn from_lists(pods: &[u8], namespaces: &[u8]) -> Result<ClusterInfo, String> {
    let pods: List<Pod> =
        serde_json::from_slice(pods).map_err(|e| format!("malformed PodList: {e}"))?;
    let nss: List<Namespace> =
        serde_json::from_slice(namespaces).map_err(|e| format!("malformed NamespaceList: {e}"))?;
    let mut info = ClusterInfo::default();
    for ns in nss.items {
        info.namespaces.insert(ns.metadata.name, ns.metadata.uid);
    }
    for p in pods.items {
        let labels = p
            .metadata
            .labels
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut containers = HashMap::new();
        for c in p.spec.containers {
            let get = |m: &BTreeMap<String, String>, k: &str, scale: f64| {
                m.get(k).and_then(|q| parse_quantity(q, scale)).unwrap_or(0)
            };
            let r = &c.resources;
            let restart_count = p
                .status
                .container_statuses
                .iter()
                .find(|s| s.name == c.name)
                .map(|s| s.restart_count);
            containers.insert(
                c.name,
                Resources {
                    cpu_request: get(&r.requests, "cpu", 1000.0),
                    cpu_limit: get(&r.limits, "cpu", 1000.0),
                    memory_request: get(&r.requests, "memory", 1.0),
                    memory_limit: get(&r.limits, "memory", 1.0),
                    image: c.image.clone(),
                    restart_count,
                },
            );
        }
        info.pods.insert(
            (p.metadata.namespace, p.metadata.name),
            PodInfo { labels, containers },
        );
    }
    Ok(info)
}

/// Adds requests, limits, `labels` and `namespace_id` to container and pod sets.
pub fn enrich(batch: &mut Batch, info: &ClusterInfo) {
    for set in batch.sets.values_mut() {
        let kind = set.labels.get(LABEL_TYPE).cloned().unwrap_or_default();
        let kind = kind.as_str();
        if !matches!(kind, set_type::POD | set_type::POD_CONTAINER) {
            continue;
        }
        let (Some(ns), Some(pod)) = (
            set.labels.get(LABEL_NAMESPACE_NAME).cloned(),
            set.labels.get(LABEL_POD_NAME).cloned(),
        ) else {
            continue;
        };
        if let Some(uid) = info.namespaces.get(&ns) {
            std::sync::Arc::make_mut(&mut set.labels)
                .insert(LABEL_NAMESPACE_ID.to_string(), uid.clone());
        }
        let Some(p) = info.pods.get(&(ns, pod)) else {
            continue;
        };
        std::sync::Arc::make_mut(&mut set.labels)
            .insert(LABEL_LABELS.to_string(), p.labels.clone());
        if kind == set_type::POD_CONTAINER {
            let name = set
                .labels
                .get(LABEL_CONTAINER_NAME)
                .cloned()
                .unwrap_or_default();
            if let Some(r) = p.containers.get(&name) {
                for (metric, v) in [
                    (CPU_REQUEST, r.cpu_request),
                    (CPU_LIMIT, r.cpu_limit),
                    (MEMORY_REQUEST, r.memory_request),
                    (MEMORY_LIMIT, r.memory_limit),
                ] {
                    set.values.insert(metric, MetricValue::Int(v));
                }
                if !r.image.is_empty() {
                    std::sync::Arc::make_mut(&mut set.labels)
                        .insert(LABEL_CONTAINER_BASE_IMAGE.to_string(), r.image.clone());
                }
                // The kubelet's count wins over the restarts this aggregator happened to see.
                if let Some(n) = r.restart_count {
                    set.values.insert(RESTART_COUNT, MetricValue::Int(n));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::MetricSet;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m", 1000.0), Some(100));
        assert_eq!(parse_quantity("0.5", 1000.0), Some(500));
        assert_eq!(parse_quantity("2", 1000.0), Some(2000));
        assert_eq!(parse_quantity("128Mi", 1.0), Some(134_217_728));
        assert_eq!(parse_quantity("1G", 1.0), Some(1_000_000_000));
        assert_eq!(parse_quantity("1e3", 1.0), Some(1000));
        assert_eq!(parse_quantity("lots", 1.0), None);
        assert_eq!(parse_quantity("1Zi", 1.0), None);
    }

    #[test]
    fn containers_get_requests_limits_and_labels() {
        let pods = br#"{"items":[{"metadata":{"name":"p","namespace":"ns","uid":"u","labels":{"app":"web","tier":"fe"}},
            "spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.9","resources":{"requests":{"cpu":"250m","memory":"64Mi"},"limits":{"cpu":"1"}}}]},
            "status":{"containerStatuses":[{"name":"other","restartCount":9},{"name":"c","restartCount":3}]}}]}"#;
        let nss = br#"{"items":[{"metadata":{"name":"ns","uid":"ns-uid"}}]}"#;
        let info = from_lists(pods, nss).unwrap();
        let mut b = Batch {
            timestamp: chrono::Utc::now(),
            sets: Default::default(),
        };
        let mut c = MetricSet::default();
        for (k, v) in [
            ("type", "pod_container"),
            ("namespace_name", "ns"),
            ("pod_name", "p"),
            ("container_name", "c"),
        ] {
            std::sync::Arc::make_mut(&mut c.labels).insert(k.into(), v.into());
        }
        b.sets.insert("namespace:ns/pod:p/container:c".into(), c);
        enrich(&mut b, &info);
        let c = &b.sets["namespace:ns/pod:p/container:c"];
        assert_eq!(c.values["cpu/request"], MetricValue::Int(250));
        assert_eq!(c.values["cpu/limit"], MetricValue::Int(1000));
        assert_eq!(c.values["memory/request"], MetricValue::Int(64 << 20));
        assert_eq!(
            c.values["memory/limit"],
            MetricValue::Int(0),
            "unset is 0, as Heapster"
        );
        assert_eq!(c.labels["labels"], "app:web,tier:fe");
        assert_eq!(c.labels["namespace_id"], "ns-uid");
        assert_eq!(
            c.labels["container_base_image"],
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(c.values["restart_count"], MetricValue::Int(3));
        // The rate pass keeps the kubelet's count rather than the restarts it observed itself.
        let mut rates = super::super::rates::Rates::default();
        rates.process(&mut b, 900_000);
        assert_eq!(
            b.sets["namespace:ns/pod:p/container:c"].values["restart_count"],
            MetricValue::Int(3)
        );
        assert!(from_lists(b"[", nss).unwrap_err().contains("PodList"));
    }
}
