//! The Kubernetes source's view of the cluster: kube-runtime watchers feeding reflector stores of Nodes, Pods and Namespaces, read by the rounds for their targets and `ClusterInfo`.
//!
//! Each resource is one `watcher` (a paged list, then a watch from the list's resourceVersion
//! with bookmarks; a 410 or an expired watch lists again; errors retry with the watcher's
//! default backoff; watch requests at least `WATCH_SPACING` apart) into a `reflector` store.
//! Only what targets and enrichment read is kept: nodes are stripped with `.modify()`, pods are
//! decoded straight into `PodLite`, namespaces are watched as metadata only
//! (`Api<PartialObjectMeta<Namespace>>`), and pods in a final phase (Succeeded, Failed) are left
//! out by a field selector, as they run no container to pull. A round never waits on the API
//! server: it reads the stores and the enrichment view rebuilt in the background.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeCondition, NodeStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde::Deserialize;

use super::discovery::{targets_of, Error, KubeSource, Target};
use crate::processors::enrich::{parse_quantity, ClusterInfo, PodInfo, Resources};

/// The watched resources, in the order of every per-resource array here.
pub const RESOURCES: [&str; 3] = ["nodes", "pods", "namespaces"];
const NODES: usize = 0;
const PODS: usize = 1;
const NAMESPACES: usize = 2;

/// Pods that can still run containers (the phases Succeeded and Failed are final).
pub const POD_FIELD_SELECTOR: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// Per-resource counters of the watchers (the aggregator's self-metrics).
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Failed list or watch requests and ERROR events (each retried with backoff).
    pub errors: [AtomicU64; 3],
    /// Full lists: the first one and each relist (after a 410 or an expired watch).
    pub lists: [AtomicU64; 3],
    /// Objects added, modified or deleted by watch events.
    pub events: [AtomicU64; 3],
    /// Objects in the store after the last change.
    pub objects: [AtomicU64; 3],
}

/// What the watcher tasks share with the rounds.
struct Shared {
    source: Arc<KubeSource>,
    nodes: Store<Node>,
    pods: Store<PodLite>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Bumped on every change a store applied, per resource.
    generation: [AtomicU64; 3],
    /// The resource's first full list has been stored.
    listed: [AtomicBool; 3],
    /// The node watcher has had its first outcome (a list or an error).
    nodes_settled: tokio::sync::watch::Sender<bool>,
    stats: Arc<WatchStats>,
    /// The last watch error, reported once by the next round.
    error: Mutex<Option<Error>>,
    /// Targets as of the node generation they were built from.
    /// The targets, built for this node store generation and kubelet token.
    targets: Mutex<(u64, Option<Arc<str>>, Arc<Vec<Target>>)>,
    /// ClusterInfo as of the (pods, namespaces) generations it was built from.
    info: Mutex<Option<((u64, u64), Arc<ClusterInfo>)>>,
    /// Pods or namespaces changed: the enrichment view is rebuilt (by `rebuild_info`).
    info_changed: tokio::sync::Notify,
}

/// At most one rebuild of the enrichment view per this interval (a burst of pod events costs one).
const INFO_DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(500);

/// The running watchers and their stores; dropping it stops them.
pub struct KubeWatch {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A cheap handle on the enrichment view, which a background task rebuilds from the stores.
#[derive(Clone)]
pub struct InfoSource(Arc<Shared>);

impl InfoSource {
    /// The pods' and namespaces' enrichment view as of the last rebuild (within about
    /// `INFO_DEBOUNCE` of a change). `None` until the first pod list has been stored.
    pub fn cluster_info(&self) -> Option<Arc<ClusterInfo>> {
        let cached = self.0.info.lock().expect("kubernetes info lock");
        cached.as_ref().map(|(_, info)| info.clone())
    }
}

impl KubeWatch {
    /// Starts the three watchers on `client` (must run inside a tokio runtime).
    pub fn start(client: kube::Client, source: Arc<KubeSource>) -> Self {
        let (nodes, nodes_w) = reflector::store::<Node>();
        let (pods, pods_w) = reflector::store::<PodLite>();
        let (namespaces, ns_w) = reflector::store::<PartialObjectMeta<Namespace>>();
        let shared = Arc::new(Shared {
            source,
            nodes,
            pods,
            namespaces,
            generation: Default::default(),
            listed: Default::default(),
            nodes_settled: tokio::sync::watch::channel(false).0,
            stats: Default::default(),
            error: Mutex::new(None),
            targets: Mutex::new((u64::MAX, None, Arc::new(Vec::new()))),
            info: Mutex::new(None),
            info_changed: tokio::sync::Notify::new(),
        });
        // Paged lists (500 objects a page, as client-go): each page is stripped before the next
        // one is read, so a relist of 30,000 pods never holds them all in full. (A
        // resourceVersion=0 list would come from the API server's cache, but in one piece:
        // the server ignores `limit` there.)
        let config = watcher::Config::default;
        let node_stream = watcher(Api::<Node>::all(client.clone()), config())
            .default_backoff()
            .modify(strip_node)
            .reflect(nodes_w);
        let pod_stream = watcher(
            Api::<PodLite>::all(client.clone()),
            config().fields(POD_FIELD_SELECTOR),
        )
        .default_backoff()
        .modify(strip_pod)
        .reflect(pods_w);
        let ns_stream = watcher(Api::<PartialObjectMeta<Namespace>>::all(client), config())
            .default_backoff()
            .modify(strip_namespace)
            .reflect(ns_w);
        let tasks = vec![
            tokio::spawn(drive(NODES, node_stream, shared.clone())),
            tokio::spawn(drive(PODS, pod_stream, shared.clone())),
            tokio::spawn(drive(NAMESPACES, ns_stream, shared.clone())),
            tokio::spawn(rebuild_info(shared.clone())),
        ];
        KubeWatch { shared, tasks }
    }

    /// Waits until the node watcher's first list is stored or has failed, at most `limit`.
    pub async fn wait_first_nodes(&self, limit: std::time::Duration) {
        let mut rx = self.shared.nodes_settled.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| *s)).await;
    }

    /// The Ready nodes' targets (rebuilt only when the node store or the kubelet token
    /// changed: the token file is read once a call), and the last watch error if one happened
    /// since the previous call.
    pub fn targets(&self) -> (Arc<Vec<Target>>, Option<Error>) {
        let s = &self.shared;
        let generation = s.generation[NODES].load(Ordering::Acquire);
        let token = s.source.kubelet_token();
        let targets = {
            let mut cached = s.targets.lock().expect("kubernetes targets lock");
            if cached.0 != generation || cached.1 != token {
                let nodes = s.nodes.state();
                let targets = Arc::new(targets_of(nodes.iter().map(|n| &**n), &s.source));
                *cached = (generation, token, targets);
            }
            cached.2.clone()
        };
        (
            targets,
            s.error.lock().expect("kubernetes error lock").take(),
        )
    }

    /// Every watched node's conditions as `(node, condition type, status)`, for
    /// [`store_node_conditions`].
    pub fn node_conditions(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for n in self.shared.nodes.state() {
            let name = n.metadata.name.clone().unwrap_or_default();
            let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
            for c in conditions.into_iter().flatten() {
                out.push((name.clone(), c.type_.clone(), c.status.clone()));
            }
        }
        out
    }

    /// A handle that builds the enrichment view.
    pub fn info_source(&self) -> InfoSource {
        InfoSource(self.shared.clone())
    }

    /// The watchers' counters.
    pub fn stats(&self) -> Arc<WatchStats> {
        self.shared.stats.clone()
    }
}

impl Shared {
    /// Builds the enrichment view from the stores unless it is current (blocking: seconds'
    /// worth of CPU at 30,000 pods in a debug build, tens of milliseconds in release).
    fn rebuild_info(&self) {
        if !self.listed[PODS].load(Ordering::Acquire) {
            return;
        }
        let key = (
            self.generation[PODS].load(Ordering::Acquire),
            self.generation[NAMESPACES].load(Ordering::Acquire),
        );
        if matches!(&*self.info.lock().expect("kubernetes info lock"), Some((k, _)) if *k == key) {
            return;
        }
        let info = Arc::new(build_info(&self.pods.state(), &self.namespaces.state()));
        *self.info.lock().expect("kubernetes info lock") = Some((key, info));
    }

    fn store_len(&self, resource: usize) -> usize {
        match resource {
            NODES => self.nodes.len(),
            PODS => self.pods.len(),
            _ => self.namespaces.len(),
        }
    }
}

/// The least time between two watch requests for the same resource. The watcher starts a new
/// watch at once when the server ends one without an error (normally after `timeoutSeconds`),
/// so a proxy that ends watches right away would otherwise make a busy loop.
const WATCH_SPACING: std::time::Duration = std::time::Duration::from_secs(1);

/// The API client: kube's default stack (auth, token refresh, TLS) with watch requests spaced.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(kube::client::ClientBuilder::try_from(config)?
        // kube's stack is a BoxService, not Clone: a Buffer in front makes it shareable.
        .with_layer(&tower::layer::layer_fn(|inner| SpaceWatches {
            inner: tower::buffer::Buffer::new(inner, 1024),
            last: Default::default(),
        }))
        .build())
}

/// Delays a watch request until `WATCH_SPACING` after the previous watch of the same path.
#[derive(Clone)]
struct SpaceWatches<S> {
    inner: S,
    last: Arc<Mutex<std::collections::HashMap<String, tokio::time::Instant>>>,
}

impl<S, B> tower::Service<http::Request<B>> for SpaceWatches<S>
where
    S: tower::Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let uri = req.uri();
        let is_watch = uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let start = is_watch.then(|| {
            let now = tokio::time::Instant::now();
            let mut last = self.last.lock().expect("watch spacing lock");
            let at = match last.get(uri.path()) {
                Some(prev) => (*prev + WATCH_SPACING).max(now),
                None => now,
            };
            last.insert(uri.path().to_string(), at);
            at
        });
        // The ready inner service serves this request; a clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let Some(at) = start {
                tokio::time::sleep_until(at).await;
            }
            inner.call(req).await
        })
    }
}

/// Runs one resource's reflector stream for ever, counting and logging what it does.
async fn drive<K>(
    resource: usize,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    shared: Arc<Shared>,
) {
    let name = RESOURCES[resource];
    let stats = &shared.stats;
    futures_util::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let changed = match event {
            Ok(watcher::Event::Init) => {
                stats.lists[resource].fetch_add(1, Ordering::Relaxed);
                tracing::debug!(resource = name, "kubernetes watch: listing");
                false
            }
            Ok(watcher::Event::InitApply(_)) => false,
            Ok(watcher::Event::InitDone) => {
                shared.listed[resource].store(true, Ordering::Release);
                tracing::info!(
                    resource = name,
                    objects = shared.store_len(resource),
                    "kubernetes watch: list stored"
                );
                true
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                stats.events[resource].fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(e) => {
                stats.errors[resource].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(resource = name, error = %e, "kubernetes watch failed; retrying with backoff");
                *shared.error.lock().expect("kubernetes error lock") = Some(Error::Kubernetes {
                    url: format!("{}/api/v1/{name}", shared.source.master),
                    message: e.to_string(),
                });
                if resource == NODES {
                    shared.nodes_settled.send_replace(true);
                }
                false
            }
        };
        if changed {
            stats.objects[resource].store(shared.store_len(resource) as u64, Ordering::Relaxed);
            shared.generation[resource].fetch_add(1, Ordering::AcqRel);
            if resource == NODES {
                shared.nodes_settled.send_replace(true);
            } else {
                shared.info_changed.notify_one();
            }
        }
    }
}

/// Rebuilds the enrichment view after pod or namespace changes, on a blocking thread and at most
/// once per `INFO_DEBOUNCE`: a round only takes the latest one, it never builds it.
async fn rebuild_info(shared: Arc<Shared>) {
    loop {
        shared.info_changed.notified().await;
        let s = shared.clone();
        if tokio::task::spawn_blocking(move || s.rebuild_info())
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(INFO_DEBOUNCE).await;
    }
}

/// Writes the nodes' conditions into the store as kube-state-metrics does:
/// `kube_node_status_condition{node, condition, status="true"|"false"|"unknown"}`, 1 for the
/// node's status and 0 for the two others, so `…{condition="Ready",status="true"} == 0` finds a
/// node that is not Ready. A node gone from the watch gets no more samples (its series end
/// with the lookback). Returns how many samples the store refused.
pub fn store_node_conditions(
    conditions: &[(String, String, String)],
    t_ms: i64,
    store: &crate::store::Store,
) -> usize {
    let mut refused = 0;
    for (node, condition, status) in conditions {
        let status = status.to_ascii_lowercase();
        for s in ["true", "false", "unknown"] {
            let labels: std::collections::BTreeMap<String, String> = [
                ("__name__", "kube_node_status_condition"),
                ("node", node.as_str()),
                ("condition", condition.as_str()),
                ("status", s),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let v = if status == s { 1.0 } else { 0.0 };
            if let Err(e) = store.append(&labels, t_ms, v) {
                refused += 1;
                tracing::debug!(error = %e, "node condition not stored");
            }
        }
    }
    refused
}

/// Keeps a node's name, addresses, Ready-style conditions (type and status) and capacity.
fn strip_node(node: &mut Node) {
    let meta = &mut node.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
    node.spec = None;
    if let Some(status) = node.status.take() {
        node.status = Some(NodeStatus {
            addresses: status.addresses,
            capacity: status.capacity,
            conditions: status.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| NodeCondition {
                        type_: c.type_,
                        status: c.status,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        });
    }
}

/// The part of a Pod that enrichment reads: name, namespace, labels; each container's name,
/// image, cpu and memory requests and limits; each container status' name and restart count.
/// The watcher decodes the API server's Pods straight into it (every other field is skipped
/// while parsing), so a pod costs a few hundred bytes in the store instead of a full
/// `k8s_openapi` Pod.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodLite {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: LiteSpec,
    #[serde(default)]
    status: LiteStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct LiteSpec {
    #[serde(default)]
    containers: Vec<LiteContainer>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct LiteContainer {
    name: String,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    resources: LiteResources,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct LiteResources {
    #[serde(default)]
    requests: CpuMemory,
    #[serde(default)]
    limits: CpuMemory,
}

/// The `cpu` and `memory` entries of a resource list (other resources are skipped).
#[derive(Clone, Debug, Default, Deserialize)]
struct CpuMemory {
    cpu: Option<Quantity>,
    memory: Option<Quantity>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct LiteStatus {
    #[serde(default, rename = "containerStatuses")]
    container_statuses: Vec<LiteContainerStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct LiteContainerStatus {
    name: String,
    #[serde(default, rename = "restartCount")]
    restart_count: i64,
}

impl kube::Resource for PodLite {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// Drops the metadata enrichment does not read (managed fields, annotations, owners, and the
/// resourceVersion and UID, which the watcher has read by now).
fn strip_pod(pod: &mut PodLite) {
    let labels = pod.metadata.labels.take();
    pod.metadata = ObjectMeta {
        name: pod.metadata.name.take(),
        namespace: pod.metadata.namespace.take(),
        labels,
        ..Default::default()
    };
}

/// Keeps a namespace's name and UID.
fn strip_namespace(ns: &mut PartialObjectMeta<Namespace>) {
    let meta = &mut ns.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
    meta.finalizers = None;
}

/// The enrichment view of the stored pods and namespaces (Heapster's pod and namespace
/// enrichers: requests, limits, image, restart count, `labels`, `namespace_id`).
pub fn build_info(
    pods: &[Arc<PodLite>],
    namespaces: &[Arc<PartialObjectMeta<Namespace>>],
) -> ClusterInfo {
    let mut info = ClusterInfo::default();
    info.namespaces.reserve(namespaces.len());
    for ns in namespaces {
        if let Some(name) = &ns.metadata.name {
            info.namespaces
                .insert(name.clone(), ns.metadata.uid.clone().unwrap_or_default());
        }
    }
    info.pods.reserve(pods.len());
    let quantity = |q: &Option<Quantity>, scale: f64| {
        q.as_ref()
            .and_then(|q| parse_quantity(&q.0, scale))
            .unwrap_or(0)
    };
    for p in pods {
        let (Some(name), Some(namespace)) = (&p.metadata.name, &p.metadata.namespace) else {
            continue;
        };
        let labels = p
            .metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let statuses = &p.status.container_statuses;
        let containers = p
            .spec
            .containers
            .iter()
            .map(|c| {
                let r = &c.resources;
                let resources = Resources {
                    cpu_request: quantity(&r.requests.cpu, 1000.0),
                    cpu_limit: quantity(&r.limits.cpu, 1000.0),
                    memory_request: quantity(&r.requests.memory, 1.0),
                    memory_limit: quantity(&r.limits.memory, 1.0),
                    image: c.image.clone().unwrap_or_default(),
                    restart_count: statuses
                        .iter()
                        .find(|s| s.name == c.name)
                        .map(|s| s.restart_count),
                };
                (c.name.clone(), resources)
            })
            .collect();
        info.pods.insert(
            (namespace.clone(), name.clone()),
            PodInfo { labels, containers },
        );
    }
    info
}

/// For the memory measurement in tests/aggregator_kube_memory.rs: reflector stores filled with
/// Pod documents decoded as the watcher decodes them (`PodLite`, stripped) or as full
/// `k8s_openapi` Pods.
#[doc(hidden)]
pub struct PodStoreProbe {
    lite: Option<(Store<PodLite>, reflector::store::Writer<PodLite>)>,
    full: Option<(
        Store<k8s_openapi::api::core::v1::Pod>,
        reflector::store::Writer<k8s_openapi::api::core::v1::Pod>,
    )>,
}

impl PodStoreProbe {
    pub fn fill(docs: &[Vec<u8>], lite: bool) -> Result<Self, serde_json::Error> {
        let mut probe = PodStoreProbe {
            lite: None,
            full: None,
        };
        if lite {
            let (store, mut writer) = reflector::store::<PodLite>();
            for d in docs {
                let mut pod: PodLite = serde_json::from_slice(d)?;
                strip_pod(&mut pod);
                writer.apply_watcher_event(&watcher::Event::Apply(pod));
            }
            probe.lite = Some((store, writer));
        } else {
            let (store, mut writer) = reflector::store::<k8s_openapi::api::core::v1::Pod>();
            for d in docs {
                writer.apply_watcher_event(&watcher::Event::Apply(serde_json::from_slice(d)?));
            }
            probe.full = Some((store, writer));
        }
        Ok(probe)
    }

    pub fn len(&self) -> usize {
        self.lite
            .as_ref()
            .map(|s| s.0.len())
            .or(self.full.as_ref().map(|s| s.0.len()))
            .unwrap_or(0)
    }

    /// The enrichment view of the stripped store.
    pub fn cluster_info(&self) -> Option<ClusterInfo> {
        self.lite.as_ref().map(|(s, _)| build_info(&s.state(), &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_json() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "9",
                "labels": {"b": "2", "a": "1"}, "annotations": {"big": "x".repeat(4000)},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"nodeName": "n1", "volumes": [{"name": "v", "emptyDir": {}}],
                "containers": [{"name": "app", "image": "nginx:1.27",
                    "env": [{"name": "X", "value": "y"}],
                    "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}},
                    {"name": "side", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.1.2.3",
                "containerStatuses": [{"name": "app", "image": "nginx:1.27", "imageID": "sha256:abc", "ready": true, "restartCount": 3}]}
        })
    }

    #[test]
    fn pods_decode_to_what_enrichment_reads() {
        let mut pod: PodLite = serde_json::from_value(pod_json()).unwrap();
        strip_pod(&mut pod);
        assert!(pod.metadata.managed_fields.is_none() && pod.metadata.annotations.is_none());
        // A pod without spec or status, and one with other resources, decode too.
        let bare: PodLite = serde_json::from_value(serde_json::json!({"metadata": {"name": "x", "namespace": "y"},
            "spec": {"containers": [{"name": "gpu", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}})).unwrap();
        assert_eq!(bare.spec.containers[0].resources.limits.cpu, None);
        let ns: PartialObjectMeta<Namespace> = serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "shop", "uid": "ns-uid", "labels": {"x": "y"}}
        }))
        .unwrap();
        let info = build_info(&[Arc::new(pod), Arc::new(bare)], &[Arc::new(ns)]);
        assert_eq!(info.namespaces["shop"], "ns-uid");
        let p = &info.pods[&("shop".to_string(), "web-1".to_string())];
        assert_eq!(p.labels, "a:1,b:2");
        assert_eq!(
            p.containers["app"],
            Resources {
                cpu_request: 250,
                cpu_limit: 1000,
                memory_request: 64 << 20,
                memory_limit: 1 << 30,
                image: "nginx:1.27".into(),
                restart_count: Some(3),
            }
        );
        assert_eq!(p.containers["side"].restart_count, None);
        assert_eq!(p.containers["side"].cpu_request, 0);
    }

    #[test]
    fn stripped_nodes_keep_addresses_conditions_and_capacity() {
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n1", "resourceVersion": "3", "labels": {"k": "v"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.9"}],
                "capacity": {"cpu": "8"}, "images": [{"names": ["a", "b"], "sizeBytes": 1}],
                "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "down",
                    "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        strip_node(&mut node);
        let st = node.status.as_ref().unwrap();
        assert!(st.images.is_none() && node.spec.is_none());
        assert_eq!(st.conditions.as_ref().unwrap()[0].status, "False");
        assert!(st.conditions.as_ref().unwrap()[0].message.is_none());
        let k = super::super::discovery::parse_source(
            "kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false",
        )
        .unwrap();
        // Not Ready: no target.
        assert!(targets_of([&node], &k).is_empty());
        node.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        let t = targets_of([&node], &k);
        assert_eq!(
            (t[0].url.as_str(), t[0].cpu_cores),
            ("http://127.0.0.9:10255/stats/summary", Some(8.0))
        );
        assert!(t[0].bearer_token.is_none(), "no token to the read-only port");
        // HTTPS kubelets get the token file's current token: a rotated one from the next build.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "first\n").unwrap();
        let k = super::super::discovery::parse_source(&format!(
            "kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&kubeletHttps=true&kubeletPort=10250&tokenFile={}",
            f.display()
        ))
        .unwrap();
        assert_eq!(targets_of([&node], &k)[0].bearer_token.as_deref(), Some("first"));
        std::fs::write(&f, "second").unwrap();
        assert_eq!(targets_of([&node], &k)[0].bearer_token.as_deref(), Some("second"));
        // A file that cannot be read keeps the token read at start.
        std::fs::remove_file(&f).unwrap();
        assert_eq!(targets_of([&node], &k)[0].bearer_token.as_deref(), Some("first"));
    }
}
