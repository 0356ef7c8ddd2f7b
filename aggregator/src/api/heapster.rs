//! Heapster's API: /api/v1/metric-export-schema, /api/v1/metric-export, the /api/v1/model
//! routes and /healthz, with Heapster's JSON shapes (heapster metrics/api/v1/types).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::Serialize;

use super::{ApiError, AppState};
use crate::batch::{set_type, Batch, MetricSet, MetricValue};
use crate::processors::decode::{
    namespace_key, node_container_key, node_key, pod_container_key, pod_key,
};
use crate::processors::names::{self, canonical, is_cumulative};
use crate::store::Kind;

type St = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

#[derive(Serialize)]
pub struct LabelDescriptor {
    pub key: &'static str,
    pub description: &'static str,
}

#[derive(Serialize)]
pub struct MetricDescriptor {
    pub name: &'static str,
    pub description: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelDescriptor>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub value_type: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub units: &'static str,
}

#[derive(Serialize)]
pub struct TimeseriesSchema {
    pub metrics: Vec<MetricDescriptor>,
    pub common_labels: Vec<LabelDescriptor>,
    pub pod_labels: Vec<LabelDescriptor>,
}

const RESOURCE_ID: LabelDescriptor = LabelDescriptor {
    key: "resource_id",
    description: "Identifier(s) specific to a metric",
};

fn accel() -> Vec<LabelDescriptor> {
    vec![
        LabelDescriptor {
            key: "make",
            description: "Make of the accelerator (nvidia, amd, google etc.)",
        },
        LabelDescriptor {
            key: "model",
            description: "Model of the accelerator (tesla-p100, tesla-k80 etc.)",
        },
        LabelDescriptor {
            key: "accelerator_id",
            description: "ID of the accelerator",
        },
    ]
}

/// The 28 descriptors in Heapster's order.
pub fn schema() -> TimeseriesSchema {
    let d = |name, description, kind, value_type, units, labels| MetricDescriptor {
        name,
        description,
        labels,
        kind,
        value_type,
        units,
    };
    let rid = || vec![RESOURCE_ID];
    let metrics = vec![
        d("uptime", "Number of milliseconds since the container was started", "cumulative", "int64", "ms", vec![]),
        d("cpu/usage", "Cumulative CPU usage on all cores", "cumulative", "int64", "ns", vec![]),
        d("cpu/load", "CPU load", "gauge", "int64", "", vec![]),
        d("ephemeral_storage/usage", "Ephemeral storage usage", "gauge", "int64", "bytes", vec![]),
        d("memory/usage", "Total memory usage", "gauge", "int64", "bytes", vec![]),
        d("memory/rss", "RSS memory usage", "gauge", "int64", "bytes", vec![]),
        d("memory/cache", "Cache memory usage", "gauge", "int64", "bytes", vec![]),
        d("memory/working_set", "Total working set usage. Working set is the memory being used and not easily dropped by the kernel", "gauge", "int64", "bytes", vec![]),
        d("memory/page_faults", "Number of page faults", "cumulative", "int64", "", vec![]),
        d("memory/major_page_faults", "Number of major page faults", "cumulative", "int64", "", vec![]),
        d("network/rx", "Cumulative number of bytes received over the network", "cumulative", "int64", "bytes", vec![]),
        d("network/rx_errors", "Cumulative number of errors while receiving over the network", "cumulative", "int64", "", vec![]),
        d("network/tx", "Cumulative number of bytes sent over the network", "cumulative", "int64", "bytes", vec![]),
        d("network/tx_errors", "Cumulative number of errors while sending over the network", "cumulative", "int64", "", vec![]),
        d("cpu/limit", "CPU hard limit in millicores.", "gauge", "int64", "", vec![]),
        d("memory/limit", "Memory hard limit in bytes.", "gauge", "int64", "bytes", vec![]),
        d("disk/io_read_bytes", "Number of bytes read from a disk partition", "cumulative", "int64", "bytes", rid()),
        d("disk/io_read_bytes_rate", "Number of bytes read from a disk partition per second", "gauge", "double", "", rid()),
        d("disk/io_write_bytes", "Number of bytes written to a disk partition", "cumulative", "int64", "bytes", rid()),
        d("disk/io_write_bytes_rate", "Number of bytes written to a disk partition per second", "gauge", "double", "", rid()),
        d("filesystem/usage", "Total number of bytes consumed on a filesystem", "gauge", "int64", "bytes", rid()),
        d("filesystem/limit", "The total size of filesystem in bytes", "gauge", "int64", "bytes", rid()),
        d("filesystem/available", "The number of available bytes remaining in a the filesystem", "gauge", "int64", "bytes", rid()),
        d("filesystem/inodes", "The number of available inodes in a the filesystem", "gauge", "int64", "bytes", rid()),
        d("filesystem/inodes_free", "The number of free inodes remaining in a the filesystem", "gauge", "int64", "bytes", rid()),
        d("accelerator/memory_total", "Memory capacity of an accelerator", "gauge", "int64", "bytes", accel()),
        d("accelerator/memory_used", "Memory used of an accelerator", "gauge", "int64", "bytes", accel()),
        d("accelerator/duty_cycle", "Duty cycle of an accelerator", "gauge", "int64", "", accel()),
    ];
    TimeseriesSchema {
        metrics,
        common_labels: vec![
            LabelDescriptor { key: "nodename", description: "nodename where the container ran" },
            LabelDescriptor { key: "hostname", description: "Hostname where the container ran" },
            LabelDescriptor { key: "host_id", description: "Identifier specific to a host. Set by cloud provider or user" },
            LabelDescriptor { key: "container_name", description: "User-provided name of the container or full container name for system containers" },
            LabelDescriptor { key: "container_base_image", description: "User-defined image name that is run inside the container" },
        ],
        pod_labels: vec![
            LabelDescriptor { key: "pod_name", description: "The name of the pod" },
            LabelDescriptor { key: "pod_id", description: "The unique ID of the pod" },
            LabelDescriptor { key: "namespace_id", description: "The UID of namespace of the pod" },
            LabelDescriptor { key: "labels", description: "Comma-separated list of user-provided labels" },
        ],
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    let m = "/api/v1/model";
    let mut r = Router::new()
        .route(
            "/api/v1/metric-export-schema",
            get(|| async { Json(schema()) }),
        )
        .route(
            "/api/v1/metric-export-schema/",
            get(|| async { Json(schema()) }),
        )
        .route("/api/v1/metric-export", get(super::stream::export))
        .route("/api/v1/metric-export/", get(super::stream::export));
    // Each listing answers with and without the trailing slash, as go-restful does.
    let lists: [(&str, axum::routing::MethodRouter<Arc<AppState>>); 6] = [
        ("/nodes", get(list_nodes)),
        ("/namespaces", get(list_namespaces)),
        ("/nodes/{node}/pods", get(list_node_pods)),
        ("/nodes/{node}/freecontainers", get(list_free_containers)),
        ("/namespaces/{ns}/pods", get(list_pods)),
        (
            "/namespaces/{ns}/pods/{pod}/containers",
            get(list_containers),
        ),
    ];
    for (path, h) in lists {
        r = r
            .route(&format!("{m}{path}"), h.clone())
            .route(&format!("{m}{path}/"), h);
    }
    r.route(&format!("{m}/metrics"), get(cluster_names))
        .route(&format!("{m}/metrics/"), get(cluster_names))
        .route(&format!("{m}/metrics/{{*metric}}"), get(cluster_metric))
        .route(&format!("{m}/nodes/{{node}}/metrics"), get(node_names))
        .route(&format!("{m}/nodes/{{node}}/metrics/"), get(node_names))
        .route(
            &format!("{m}/nodes/{{node}}/metrics/{{*metric}}"),
            get(node_metric),
        )
        .route(
            &format!("{m}/nodes/{{node}}/freecontainers/{{c}}/metrics"),
            get(free_names),
        )
        .route(
            &format!("{m}/nodes/{{node}}/freecontainers/{{c}}/metrics/"),
            get(free_names),
        )
        .route(
            &format!("{m}/nodes/{{node}}/freecontainers/{{c}}/metrics/{{*metric}}"),
            get(free_metric),
        )
        .route(&format!("{m}/namespaces/{{ns}}/metrics"), get(ns_names))
        .route(&format!("{m}/namespaces/{{ns}}/metrics/"), get(ns_names))
        .route(
            &format!("{m}/namespaces/{{ns}}/metrics/{{*metric}}"),
            get(ns_metric),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pods/{{pod}}/metrics"),
            get(pod_names),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pods/{{pod}}/metrics/"),
            get(pod_names),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pods/{{pod}}/metrics/{{*metric}}"),
            get(pod_metric),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pods/{{pod}}/containers/{{c}}/metrics"),
            get(container_names),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pods/{{pod}}/containers/{{c}}/metrics/"),
            get(container_names),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pods/{{pod}}/containers/{{c}}/metrics/{{*metric}}"),
            get(container_metric),
        )
        .route(
            &format!("{m}/namespaces/{{ns}}/pod-list/{{pods}}/metrics/{{*metric}}"),
            get(pod_list_metric),
        )
        .route(&format!("{m}/debug/allkeys"), get(all_keys))
        .route(&format!("{m}/debug/allkeys/"), get(all_keys))
}

/// Go's RFC 3339 rendering of a time (`time.Time` in JSON).
pub fn go_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn ms_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

#[derive(Serialize, Debug)]
pub struct MetricPoint {
    pub timestamp: String,
    pub value: u64,
    #[serde(rename = "floatValue", skip_serializing_if = "Option::is_none")]
    pub float_value: Option<f64>,
}

#[derive(Serialize, Debug)]
pub struct MetricResult {
    pub metrics: Vec<MetricPoint>,
    #[serde(rename = "latestTimestamp")]
    pub latest_timestamp: String,
}

#[derive(Serialize)]
pub struct MetricResultList {
    pub items: Vec<MetricResult>,
}

struct Range {
    start: i64,
    end: i64,
    labels: Option<BTreeMap<String, String>>,
}

fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "invalid {name} {v:?}: {e} (expected RFC 3339, e.g. 2024-01-01T00:00:00Z)"
            ))
        })
}

fn parse_range(q: &HashMap<String, String>) -> Result<Range, ApiError> {
    let start = match q.get("start").filter(|s| !s.is_empty()) {
        Some(s) => parse_time("start", s)?,
        None => i64::MIN,
    };
    let end = match q.get("end").filter(|s| !s.is_empty()) {
        Some(s) => parse_time("end", s)?,
        None => Utc::now().timestamp_millis(),
    };
    if start > end {
        return Err(ApiError::BadRequest(format!(
            "start {} is after end {}",
            q["start"],
            q.get("end").map(|s| s.as_str()).unwrap_or("now")
        )));
    }
    let labels = match q.get("labels").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            let mut m = BTreeMap::new();
            for pair in s.split(',') {
                let (k, v) = pair.split_once(':').filter(|(k, _)| !k.is_empty()).ok_or_else(|| {
                    ApiError::BadRequest(format!("invalid labels {s:?}: {pair:?} is not key:value (expected labels=k1:v1,k2:v2)"))
                })?;
                m.insert(k.to_string(), v.to_string());
            }
            Some(m)
        }
    };
    Ok(Range { start, end, labels })
}

fn zero_time() -> String {
    "0001-01-01T00:00:00Z".to_string()
}

fn metric_result(
    st: &AppState,
    key: &str,
    what: &str,
    metric: &str,
    range: &Range,
) -> Result<MetricResult, ApiError> {
    let metric = canonical(metric.trim_matches('/'));
    if metric.is_empty() {
        return Err(ApiError::NotFound("no metric name given".into()));
    }
    if !names::is_known(metric) && !st.store.knows_metric(metric) {
        return Err(ApiError::NotFound(format!("metric {metric:?} not found")));
    }
    let series = st
        .store
        .query(key, metric, range.labels.as_ref(), range.start, range.end)
        .ok_or_else(|| ApiError::NotFound(format!("{what} not found")))?;
    let mut points: Vec<(i64, MetricValue, Kind)> = series
        .into_iter()
        .flat_map(|s| s.points.into_iter().map(move |(t, v)| (t, v, s.kind)))
        .collect();
    points.sort_by_key(|p| p.0);
    let latest = points.iter().map(|p| p.0).max();
    Ok(MetricResult {
        metrics: points
            .into_iter()
            .map(|(t, v, kind)| MetricPoint {
                timestamp: go_time(ms_time(t)),
                // Heapster's MetricPoint.value is a uint64: negative (custom) values clamp at 0
                // rather than wrapping to ~1.8e19; the float keeps its sign in floatValue.
                value: match v {
                    MetricValue::Int(i) => i.max(0) as u64,
                    MetricValue::Float(f) if f.is_finite() && f > 0.0 => f as u64,
                    MetricValue::Float(_) => 0,
                },
                float_value: match (kind, v) {
                    (Kind::Float, MetricValue::Float(f)) if f.is_finite() => Some(f),
                    _ => None,
                },
            })
            .collect(),
        latest_timestamp: latest
            .map(|t| go_time(ms_time(t)))
            .unwrap_or_else(zero_time),
    })
}

/// A metric route: an empty name (trailing slash) lists the names, as go-restful routes do.
fn metric_or_names(
    st: &AppState,
    key: &str,
    what: &str,
    metric: &str,
    q: &HashMap<String, String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if metric.trim_matches('/').is_empty() {
        return names_of(st, key, what).map(|Json(v)| Json(serde_json::json!(v)));
    }
    let r = parse_range(q)?;
    Ok(Json(
        serde_json::to_value(metric_result(st, key, what, metric, &r)?)
            .expect("MetricResult serializes"),
    ))
}

fn names_of(st: &AppState, key: &str, what: &str) -> Result<Json<Vec<String>>, ApiError> {
    st.store
        .metric_names(key)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

fn exists(st: &AppState, key: &str, what: &str) -> Result<(), ApiError> {
    st.store
        .entity(key)
        .map(|_| ())
        .ok_or_else(|| ApiError::NotFound(format!("{what} not found")))
}

/// The last path segment of keys with `prefix` and no further `/`.
fn children(st: &AppState, prefix: &str) -> Vec<String> {
    st.store
        .keys(|k| {
            k.strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        })
        .into_iter()
        .map(|k| k[prefix.len()..].to_string())
        .collect()
}

async fn list_nodes(State(st): St) -> Json<Vec<String>> {
    Json(children(&st, "node:"))
}
async fn list_namespaces(State(st): St) -> Json<Vec<String>> {
    Json(children(&st, "namespace:"))
}
async fn list_pods(State(st): St, Path(ns): Path<String>) -> Result<Json<Vec<String>>, ApiError> {
    exists(&st, &namespace_key(&ns), &format!("namespace {ns:?}"))?;
    Ok(Json(children(&st, &format!("namespace:{ns}/pod:"))))
}
async fn list_containers(
    State(st): St,
    Path((ns, pod)): Path<(String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    exists(&st, &pod_key(&ns, &pod), &format!("pod {ns}/{pod}"))?;
    Ok(Json(children(
        &st,
        &format!("namespace:{ns}/pod:{pod}/container:"),
    )))
}
async fn list_free_containers(
    State(st): St,
    Path(node): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    exists(&st, &node_key(&node), &format!("node {node:?}"))?;
    Ok(Json(children(&st, &format!("node:{node}/container:"))))
}
async fn list_node_pods(
    State(st): St,
    Path(node): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    exists(&st, &node_key(&node), &format!("node {node:?}"))?;
    let pods = st
        .store
        .keys(|k| k.starts_with("namespace:") && k.matches('/').count() == 1);
    Ok(Json(
        pods.into_iter()
            .filter(|k| {
                st.store
                    .entity(k)
                    .is_some_and(|(l, _, _)| l.get(names::LABEL_NODENAME) == Some(&node))
            })
            .filter_map(|k| {
                k.split_once("/pod:")
                    .map(|(ns, p)| format!("{}/{}", &ns["namespace:".len()..], p))
            })
            .collect(),
    ))
}

async fn cluster_names(State(st): St) -> Json<Vec<String>> {
    Json(st.store.metric_names("cluster").unwrap_or_default())
}
async fn cluster_metric(
    State(st): St,
    Path(metric): Path<String>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    if metric.trim_matches('/').is_empty() {
        return Ok(Json(serde_json::json!(st
            .store
            .metric_names("cluster")
            .unwrap_or_default())));
    }
    let r = parse_range(&q)?;
    // Before the first batch the cluster has no set: an empty result, as Heapster answers.
    if st.store.entity("cluster").is_none() {
        let metric = canonical(&metric);
        if !names::is_known(metric) {
            return Err(ApiError::NotFound(format!("metric {metric:?} not found")));
        }
        return Ok(Json(
            serde_json::json!({"metrics": [], "latestTimestamp": zero_time()}),
        ));
    }
    Ok(Json(
        serde_json::to_value(metric_result(&st, "cluster", "cluster", &metric, &r)?).unwrap(),
    ))
}
async fn node_names(
    State(st): St,
    Path(node): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    names_of(&st, &node_key(&node), &format!("node {node:?}"))
}
async fn node_metric(
    State(st): St,
    Path((node, metric)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    metric_or_names(
        &st,
        &node_key(&node),
        &format!("node {node:?}"),
        &metric,
        &q,
    )
}
async fn free_names(
    State(st): St,
    Path((node, c)): Path<(String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    names_of(
        &st,
        &node_container_key(&node, &c),
        &format!("free container {node}/{c}"),
    )
}
async fn free_metric(
    State(st): St,
    Path((node, c, metric)): Path<(String, String, String)>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    metric_or_names(
        &st,
        &node_container_key(&node, &c),
        &format!("free container {node}/{c}"),
        &metric,
        &q,
    )
}
async fn ns_names(State(st): St, Path(ns): Path<String>) -> Result<Json<Vec<String>>, ApiError> {
    names_of(&st, &namespace_key(&ns), &format!("namespace {ns:?}"))
}
async fn ns_metric(
    State(st): St,
    Path((ns, metric)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    metric_or_names(
        &st,
        &namespace_key(&ns),
        &format!("namespace {ns:?}"),
        &metric,
        &q,
    )
}
async fn pod_names(
    State(st): St,
    Path((ns, pod)): Path<(String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    names_of(&st, &pod_key(&ns, &pod), &format!("pod {ns}/{pod}"))
}
async fn pod_metric(
    State(st): St,
    Path((ns, pod, metric)): Path<(String, String, String)>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    metric_or_names(
        &st,
        &pod_key(&ns, &pod),
        &format!("pod {ns}/{pod}"),
        &metric,
        &q,
    )
}
async fn container_names(
    State(st): St,
    Path((ns, pod, c)): Path<(String, String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    names_of(
        &st,
        &pod_container_key(&ns, &pod, &c),
        &format!("container {ns}/{pod}/{c}"),
    )
}
async fn container_metric(
    State(st): St,
    Path((ns, pod, c, metric)): Path<(String, String, String, String)>,
    Query(q): Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    metric_or_names(
        &st,
        &pod_container_key(&ns, &pod, &c),
        &format!("container {ns}/{pod}/{c}"),
        &metric,
        &q,
    )
}
async fn pod_list_metric(
    State(st): St,
    Path((ns, pods, metric)): Path<(String, String, String)>,
    Query(q): Params,
) -> Result<Json<MetricResultList>, ApiError> {
    let r = parse_range(&q)?;
    let mut items = Vec::new();
    for pod in pods.split(',') {
        if pod.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "empty pod name in pod-list {pods:?}"
            )));
        }
        items.push(metric_result(
            &st,
            &pod_key(&ns, pod),
            &format!("pod {ns}/{pod}"),
            &metric,
            &r,
        )?);
    }
    Ok(Json(MetricResultList { items }))
}
async fn all_keys(State(st): St) -> Json<Vec<String>> {
    Json(st.store.keys(|_| true))
}

#[derive(Serialize)]
pub struct Point {
    pub start: String,
    pub end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    pub value: serde_json::Value,
}

#[derive(Serialize)]
pub struct Timeseries {
    pub metrics: BTreeMap<String, Vec<Point>>,
    pub labels: BTreeMap<String, String>,
}

const EXPORT_LABELS: [&str; 9] = [
    "nodename",
    "hostname",
    "host_id",
    "container_name",
    "container_base_image",
    "pod_name",
    "pod_id",
    "namespace_id",
    "labels",
];

fn in_schema(name: &str) -> bool {
    schema().metrics.iter().any(|m| m.name == name)
}

fn json_value(v: MetricValue) -> serde_json::Value {
    match v {
        MetricValue::Int(i) => serde_json::json!(i),
        MetricValue::Float(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
    }
}

/// One set as Heapster's export `Timeseries` (None for the kinds Heapster does not export).
pub fn export_timeseries(batch: &Batch, set: &MetricSet) -> Option<Timeseries> {
    let at = go_time(batch.timestamp);
    let kind = set.labels.get("type").map(|s| s.as_str()).unwrap_or("");
    if !matches!(
        kind,
        set_type::NODE | set_type::POD | set_type::POD_CONTAINER | set_type::SYS_CONTAINER
    ) {
        return None;
    }
    let mut labels: BTreeMap<String, String> = set
        .labels
        .iter()
        .filter(|(k, _)| EXPORT_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    match kind {
        set_type::NODE => {
            labels.insert("container_name".into(), "machine".into());
        }
        set_type::POD => {
            labels.insert("container_name".into(), "/pod".into());
        }
        _ => {}
    }
    let created = set.create_time.map(go_time).unwrap_or_else(|| at.clone());
    let start = |name: &str| {
        if is_cumulative(name) {
            created.clone()
        } else {
            at.clone()
        }
    };
    let mut metrics: BTreeMap<String, Vec<Point>> = BTreeMap::new();
    for (name, v) in set.values.iter().filter(|(n, _)| in_schema(n)) {
        metrics.entry(name.to_string()).or_default().push(Point {
            start: start(name),
            end: at.clone(),
            labels: None,
            value: json_value(*v),
        });
    }
    for m in set.labeled.iter().filter(|m| in_schema(&m.name)) {
        metrics.entry(m.name.to_string()).or_default().push(Point {
            start: start(&m.name),
            end: at.clone(),
            labels: Some((*m.labels).clone()),
            value: json_value(m.value),
        });
    }
    Some(Timeseries { metrics, labels })
}

/// Heapster's freshness check: a batch exists, it is younger than 3 minutes and it has sets.
pub async fn healthz(State(st): St) -> Result<&'static str, ApiError> {
    let Some(b) = st.latest() else {
        return Err(ApiError::Unavailable("no batch collected yet".into()));
    };
    let age = Utc::now() - b.timestamp;
    if age > chrono::Duration::minutes(3) {
        return Err(ApiError::Unavailable(format!(
            "newest batch is {}s old (limit 180s)",
            age.num_seconds()
        )));
    }
    if b.sets.is_empty() {
        return Err(ApiError::Unavailable(
            "newest batch has no metric sets".into(),
        ));
    }
    Ok("ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_heapster_order_and_shape() {
        let s = serde_json::to_value(schema()).unwrap();
        let names: Vec<&str> = s["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), 28);
        assert_eq!(
            &names[..4],
            ["uptime", "cpu/usage", "cpu/load", "ephemeral_storage/usage"]
        );
        assert_eq!(names[14], "cpu/limit");
        assert_eq!(names[27], "accelerator/duty_cycle");
        assert!(s["metrics"][2].get("units").is_none(), "counts omit units");
        assert!(s["metrics"][0].get("labels").is_none());
        assert_eq!(s["metrics"][24]["units"], "bytes");
        assert_eq!(s["metrics"][17]["value_type"], "double");
        assert_eq!(s["metrics"][16]["labels"][0]["key"], "resource_id");
        assert_eq!(s["common_labels"][0]["key"], "nodename");
        assert_eq!(s["pod_labels"][3]["key"], "labels");
    }

    #[test]
    fn bad_query_parameters_are_400() {
        let q = |k: &str, v: &str| HashMap::from([(k.to_string(), v.to_string())]);
        assert!(
            matches!(parse_range(&q("start", "yesterday")), Err(ApiError::BadRequest(m)) if m.contains("start"))
        );
        assert!(
            matches!(parse_range(&q("labels", "resource_id")), Err(ApiError::BadRequest(m)) if m.contains("key:value"))
        );
        let r = parse_range(&q("labels", "resource_id:/,a:b")).unwrap();
        assert_eq!(r.labels.unwrap()["resource_id"], "/");
        let mut both = q("start", "2024-01-02T00:00:00Z");
        both.insert("end".into(), "2024-01-01T00:00:00Z".into());
        assert!(parse_range(&both).is_err());
    }
}
