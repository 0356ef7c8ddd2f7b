//! Kubernetes pod metadata (labels, annotations, node, images) from the kubelet's `/pods` or the API server, cached
//! by pod uid and refreshed in the background; the reader only ever looks into the cache, so shipping never waits.

use crate::error_chain;
use crate::metrics::Metrics;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The service account's token and CA inside a pod.

/// Errors setting up or running a metadata source.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("kubernetes_metadata: {0}")]
    Config(String),
    #[error("kubernetes_metadata.ca_file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("kubernetes_metadata: building the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("kubernetes_metadata.token_file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("GET {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("GET {url}: not a PodList: {source}")]
    Malformed {
        url: String,
        source: serde_json::Error,
    },
}

/// Where pod metadata comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The node's kubelet: `GET <url>/pods` (every pod of this node).
    Kubelet,
    /// The API server: `GET <url>/api/v1/pods?fieldSelector=spec.nodeName=<node_name>`.
    Apiserver,
}

/// `kubernetes_metadata` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// `kubelet` or `apiserver`.
    pub source: Source,
    /// Base URL. Kubelet: required (e.g. `https://127.0.0.1:10250`). API server: default
    /// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` (in-cluster).
    #[serde(default)]
    pub url: Option<String>,
    /// File holding a bearer token, read at every refresh (tokens rotate). Default: the service account token when
    /// that file exists.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA to trust for `https` URLs. Default for the API server: the service account's `ca.crt` when it exists.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Do not verify the server's certificate (kubelets with self-signed serving certificates).
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// This node's name (API server source). Default: the `NODE_NAME` environment variable.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Time between refreshes, e.g. `30s`.
    #[serde(default = "default_refresh", with = "vigil_common::duration::serde_std")]
    pub refresh_interval: Duration,
    /// A pod no longer listed keeps its metadata this long (its last lines are still being read).
    #[serde(default = "default_ttl", with = "vigil_common::duration::serde_std")]
    pub cache_ttl: Duration,
    /// Timeout of one request.
    #[serde(default = "default_timeout", with = "vigil_common::duration::serde_std")]
    pub request_timeout: Duration,
    /// Add `kubernetes.labels`.
    #[serde(default = "default_true")]
    pub labels: bool,
    /// Add `kubernetes.annotations`.
    #[serde(default = "default_true")]
    pub annotations: bool,
    /// Only these annotations (exact names, or prefixes ending in `*`); empty: all.
    #[serde(default)]
    pub include_annotations: Vec<String>,
    /// Never these annotations (exact names, or prefixes ending in `*`); applied after `include_annotations`.
    #[serde(default = "default_exclude_annotations")]
    pub exclude_annotations: Vec<String>,
}

fn default_refresh() -> Duration {
    Duration::from_secs(30)
}
fn default_ttl() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_true() -> bool {
    true
}
fn default_exclude_annotations() -> Vec<String> {
    // kubectl's copy of the whole object: large and a duplicate of what the record already says.
    vec!["kubectl.kubernetes.io/last-applied-configuration".into()]
}

impl MetadataConfig {
    /// A config for `source` with defaults.
    pub fn new(source: Source, url: Option<String>) -> Self {
        MetadataConfig {
            source,
            url,
            token_file: None,
            ca_file: None,
            insecure_skip_tls_verify: false,
            node_name: None,
            refresh_interval: default_refresh(),
            cache_ttl: default_ttl(),
            request_timeout: default_timeout(),
            labels: true,
            annotations: true,
            include_annotations: Vec::new(),
            exclude_annotations: default_exclude_annotations(),
        }
    }

    /// Checks what can be checked without I/O; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.source == Source::Kubelet && self.url.is_none() {
            return Err("kubernetes_metadata.url: the kubelet source needs the kubelet's URL (e.g. https://127.0.0.1:10250, or --kubelet-url)".into());
        }
        if let Some(u) = &self.url {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || reqwest::Url::parse(u).is_err()
            {
                return Err(format!(
                    "kubernetes_metadata.url {u:?}: must be an http:// or https:// URL"
                ));
            }
        }
        if self.refresh_interval.is_zero() {
            return Err("kubernetes_metadata.refresh_interval: must be longer than 0s".into());
        }
        if self.request_timeout.is_zero() {
            return Err("kubernetes_metadata.request_timeout: must be longer than 0s".into());
        }
        if self.insecure_skip_tls_verify && self.ca_file.is_some() {
            return Err(
                "kubernetes_metadata: set either ca_file or insecure_skip_tls_verify, not both"
                    .into(),
            );
        }
        Ok(())
    }

    fn annotation_wanted(&self, name: &str) -> bool {
        let hit = |p: &String| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        };
        (self.include_annotations.is_empty() || self.include_annotations.iter().any(hit))
            && !self.exclude_annotations.iter().any(hit)
    }
}

/// What the cache knows of one pod, already filtered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Container name → (image, image id).
    pub images: BTreeMap<String, (String, String)>,
}

impl PodMeta {
    /// The JSON members added to a record's `kubernetes` object for `container` (each preceded by a comma):
    /// `host`, `container_image`, `container_hash`, `labels`, `annotations` (Fluent Bit's kubernetes filter names).
    pub fn fragment(&self, container: &str) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("string");
        let mut out = String::new();
        if !self.node.is_empty() {
            out.push_str(&format!(",\"host\":{}", s(&self.node)));
        }
        if let Some((image, id)) = self.images.get(container) {
            if !image.is_empty() {
                out.push_str(&format!(",\"container_image\":{}", s(image)));
            }
            if !id.is_empty() {
                out.push_str(&format!(",\"container_hash\":{}", s(id)));
            }
        }
        if !self.labels.is_empty() {
            out.push_str(",\"labels\":");
            out.push_str(&serde_json::to_string(&self.labels).expect("map"));
        }
        if !self.annotations.is_empty() {
            out.push_str(",\"annotations\":");
            out.push_str(&serde_json::to_string(&self.annotations).expect("map"));
        }
        out
    }
}

/// The shape of a v1 PodList (kubelet `/pods` and API server `/api/v1/pods`), only the fields used.
#[derive(Debug, Deserialize)]
struct PodList {
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Deserialize)]
struct ObjectMeta {
    name: String,
    #[serde(default)]
    namespace: String,
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
struct Container {
    name: String,
    #[serde(default)]
    image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default, rename = "imageID")]
    image_id: String,
}

/// Parses a PodList body into filtered metadata, by pod uid.
fn parse_pod_list(
    body: &[u8],
    cfg: &MetadataConfig,
) -> Result<Vec<(String, PodMeta)>, serde_json::Error> {
    let list: PodList = serde_json::from_slice(body)?;
    Ok(list
        .items
        .into_iter()
        .map(|p| {
            let mut images = BTreeMap::new();
            for c in p.spec.containers.iter().chain(&p.spec.init_containers) {
                images.insert(c.name.clone(), (c.image.clone(), String::new()));
            }
            // The status names the image actually running (resolved tag) and its digest.
            for c in p
                .status
                .container_statuses
                .iter()
                .chain(&p.status.init_container_statuses)
            {
                let e = images.entry(c.name.clone()).or_default();
                if !c.image.is_empty() {
                    e.0 = c.image.clone();
                }
                e.1 = c.image_id.clone();
            }
            let meta = PodMeta {
                namespace: p.metadata.namespace,
                name: p.metadata.name,
                node: p.spec.node_name,
                labels: if cfg.labels {
                    p.metadata.labels
                } else {
                    BTreeMap::new()
                },
                annotations: if cfg.annotations {
                    p.metadata
                        .annotations
                        .into_iter()
                        .filter(|(k, _)| cfg.annotation_wanted(k))
                        .collect()
                } else {
                    BTreeMap::new()
                },
                images,
            };
            (p.metadata.uid, meta)
        })
        .collect())
}

struct Cached {
    pod: Arc<PodMeta>,
    last_seen: Instant,
}

#[derive(Default)]
struct CacheInner {
    by_uid: HashMap<String, Cached>,
    /// `namespace/name` → uid, for files whose path carries no uid (`/var/log/containers` links).
    by_name: HashMap<String, String>,
}

/// Pod metadata by uid. The version changes whenever the contents do, so readers re-check their files only then.
#[derive(Default)]
pub struct PodCache {
    inner: RwLock<CacheInner>,
    version: AtomicU64,
    /// Pods looked up and not found; the first miss of each wakes the refresher early, so a new
    /// pod gets its metadata within `MIN_REFRESH_GAP` instead of a whole refresh interval.
    missed: std::sync::Mutex<std::collections::HashSet<String>>,
    wake: tokio::sync::Notify,
}

/// The shortest time between two refreshes, also when misses ask for one early.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(2);
/// Missed pods remembered (so one pod that is never listed asks for one early refresh only).
const MISSED_REMEMBERED: usize = 10_000;

impl PodCache {
    /// Bumped on every change of the contents.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The pod with this uid (or, when `uid` is empty, this namespace and name); counts lookups and misses.
    pub fn lookup(
        &self,
        uid: &str,
        namespace: &str,
        name: &str,
        metrics: &Metrics,
    ) -> Option<Arc<PodMeta>> {
        metrics.metadata_lookups.inc_by(1);
        let g = self.inner.read().expect("pod cache lock");
        let found = if uid.is_empty() {
            g.by_name
                .get(&format!("{namespace}/{name}"))
                .and_then(|u| g.by_uid.get(u))
        } else {
            g.by_uid.get(uid)
        };
        let found = found.map(|c| c.pod.clone());
        drop(g);
        if found.is_none() {
            metrics.metadata_misses.inc_by(1);
            let key = if uid.is_empty() {
                format!("{namespace}/{name}")
            } else {
                uid.to_string()
            };
            let mut missed = self.missed.lock().expect("missed pods lock");
            if missed.len() >= MISSED_REMEMBERED {
                missed.clear();
            }
            if missed.insert(key) {
                self.wake.notify_one();
            }
        }
        found
    }

    /// Merges a fresh list: new or changed pods replace their entries, pods not listed for `ttl` are dropped.
    fn update(&self, pods: Vec<(String, PodMeta)>, ttl: Duration, now: Instant) -> usize {
        let mut g = self.inner.write().expect("pod cache lock");
        let mut changed = false;
        for (uid, meta) in pods {
            match g.by_uid.get_mut(&uid) {
                Some(c) if *c.pod == meta => c.last_seen = now,
                _ => {
                    let key = format!("{}/{}", meta.namespace, meta.name);
                    g.by_name.insert(key, uid.clone());
                    g.by_uid.insert(
                        uid,
                        Cached {
                            pod: Arc::new(meta),
                            last_seen: now,
                        },
                    );
                    changed = true;
                }
            }
        }
        let before = g.by_uid.len();
        g.by_uid
            .retain(|_, c| now.duration_since(c.last_seen) < ttl);
        if g.by_uid.len() != before {
            let CacheInner { by_uid, by_name } = &mut *g;
            by_name.retain(|_, uid| by_uid.contains_key(uid));
            changed = true;
        }
        if changed {
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        g.by_uid.len()
    }
}

/// The background refresher.
pub struct Refresher {
    cfg: MetadataConfig,
    url: String,
    token_file: Option<PathBuf>,
    client: reqwest::Client,
    cache: Arc<PodCache>,
    metrics: Arc<Metrics>,
}

impl Refresher {
    /// Resolves the in-cluster defaults (environment, service-account files) and builds the HTTP client.
    pub fn new(cfg: MetadataConfig, metrics: Arc<Metrics>) -> Result<Self, MetadataError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let base = match (&cfg.url, cfg.source) {
            (Some(u), _) => u.trim_end_matches('/').to_string(),
            (None, Source::Kubelet) => {
                return Err(MetadataError::Config("the kubelet source needs url".into()))
            }
            // The API server's list of this node's pods by hand (a GET per refresh), not
            // kube's client: the cache, its refresh and the tests' fake servers speak plain
            // reqwest; the in-cluster values come from the one shared reader.
            (None, Source::Apiserver) => vigil_common::kubernetes::api_server_url(env).map_err(|missing| {
                MetadataError::Config(format!("the apiserver source needs url, or KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (in-cluster): {missing} is not set"))
            })?,
        };
        let url = match cfg.source {
            Source::Kubelet => format!("{base}/pods"),
            Source::Apiserver => {
                let node = cfg.node_name.clone().or_else(|| env("NODE_NAME")).ok_or_else(|| {
                    MetadataError::Config("the apiserver source needs node_name or the NODE_NAME environment variable (fieldRef spec.nodeName) to list only this node's pods".into())
                })?;
                let mut u = reqwest::Url::parse(&format!("{base}/api/v1/pods"))
                    .map_err(|e| MetadataError::Config(format!("url {base:?}: {e}")))?;
                u.query_pairs_mut()
                    .append_pair("fieldSelector", &format!("spec.nodeName={node}"));
                u.to_string()
            }
        };
        let sa_token = vigil_common::kubernetes::token_file();
        let token_file = cfg
            .token_file
            .clone()
            .or_else(|| sa_token.exists().then_some(sa_token));
        let ca_file = cfg.ca_file.clone().or_else(|| {
            let ca = vigil_common::kubernetes::ca_file();
            (cfg.source == Source::Apiserver && !cfg.insecure_skip_tls_verify && ca.exists())
                .then_some(ca)
        });
        let mut b = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout);
        if let Some(ca) = &ca_file {
            let pem = std::fs::read(ca).map_err(|e| MetadataError::Ca {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| MetadataError::Ca {
                path: ca.clone(),
                reason: format!("not a PEM certificate: {e}"),
            })?;
            b = b.add_root_certificate(cert);
        }
        if cfg.insecure_skip_tls_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let client = b.build().map_err(MetadataError::Client)?;
        Ok(Refresher {
            cfg,
            url,
            token_file,
            client,
            cache: Arc::new(PodCache::default()),
            metrics,
        })
    }

    /// The cache this refresher fills.
    pub fn cache(&self) -> Arc<PodCache> {
        self.cache.clone()
    }

    /// The URL listed at every refresh.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One refresh: fetch, parse, merge. Returns the number of pods cached.
    pub async fn refresh(&self) -> Result<usize, MetadataError> {
        let mut req = self
            .client
            .get(&self.url)
            .header("Accept", "application/json");
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path).map_err(|source| MetadataError::Token {
                path: path.clone(),
                source,
            })?;
            req = req.bearer_auth(token.trim());
        }
        let fetch = |e: reqwest::Error| MetadataError::Fetch {
            url: self.url.clone(),
            reason: error_chain(&e),
        };
        let resp = req.send().await.map_err(fetch)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(fetch)?;
        if !(200..300).contains(&status) {
            return Err(MetadataError::Status {
                url: self.url.clone(),
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            });
        }
        let pods = parse_pod_list(&body, &self.cfg).map_err(|source| MetadataError::Malformed {
            url: self.url.clone(),
            source,
        })?;
        Ok(self.cache.update(
            pods,
            self.cfg.cache_ttl,
            Instant::now(),
        ))
    }

    /// Refreshes until `shutdown` fires. Failures are counted and logged; the cache keeps what it had.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let every = self.cfg.refresh_interval;
        loop {
            let outcome = tokio::select! {
                r = self.refresh() => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match outcome {
                Ok(n) => {
                    self.metrics.metadata_refreshes.inc_by(1);
                    self.metrics.metadata_pods.set((n as u64) as i64);
                    tracing::debug!(url = %self.url, pods = n, "pod metadata refreshed");
                }
                Err(e) => {
                    self.metrics.metadata_errors.inc_by(1);
                    tracing::warn!(error = %e, "pod metadata refresh failed; records keep the metadata known so far (path metadata only for pods not yet seen)");
                }
            }
            // The next refresh: after the interval, or early (but not before MIN_REFRESH_GAP)
            // when a pod was looked up that the cache does not know yet.
            let early = async {
                self.cache.wake.notified().await;
                tokio::time::sleep(MIN_REFRESH_GAP).await;
            };
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = early => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MetadataConfig {
        MetadataConfig::new(Source::Kubelet, Some("http://127.0.0.1:1".into()))
    }

    #[test]
    fn pod_list_is_parsed_and_annotations_filtered() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/podlist.json"
        ))
        .unwrap();
        let mut c = cfg();
        c.exclude_annotations.push("secret.example.com/*".into());
        let pods = parse_pod_list(&body, &c).unwrap();
        assert_eq!(pods.len(), 2);
        let (uid, web) = &pods[0];
        assert_eq!(uid, "6f3c0e7a-1b2c-4d5e-8f90-123456789abc");
        assert_eq!(web.labels["app"], "web");
        assert_eq!(web.node, "node-a");
        assert!(web.annotations.contains_key("prometheus.io/scrape"));
        assert!(!web.annotations.contains_key("secret.example.com/token"));
        assert!(!web
            .annotations
            .contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(web.images["nginx"].0, "docker.io/library/nginx:1.25");
        assert!(web.images["nginx"]
            .1
            .starts_with("docker.io/library/nginx@sha256:"));
        let frag = web.fragment("nginx");
        let v: serde_json::Value = serde_json::from_str(&format!("{{\"x\":1{frag}}}")).unwrap();
        assert_eq!(v["labels"]["app"], "web");
        assert_eq!(v["host"], "node-a");
        assert_eq!(v["container_image"], "docker.io/library/nginx:1.25");
        // Include list: only the named annotations.
        c.include_annotations = vec!["prometheus.io/*".into()];
        let pods = parse_pod_list(&body, &c).unwrap();
        assert_eq!(
            pods[0].1.annotations.keys().collect::<Vec<_>>(),
            vec!["prometheus.io/port", "prometheus.io/scrape"]
        );
        c.labels = false;
        c.annotations = false;
        let pods = parse_pod_list(&body, &c).unwrap();
        assert!(pods[0].1.labels.is_empty() && pods[0].1.annotations.is_empty());
    }

    #[test]
    fn malformed_pod_lists_are_errors() {
        for bad in [
            &b"{\"items\":\"oops\"}"[..],
            b"not json",
            b"{\"items\":[{\"metadata\":{}}]}",
        ] {
            assert!(
                parse_pod_list(bad, &cfg()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn cache_versions_lookups_and_ttl() {
        let m = Metrics::default();
        let cache = PodCache::default();
        let now = Instant::now();
        let pod = |app: &str| PodMeta {
            namespace: "shop".into(),
            name: "web-0".into(),
            labels: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        };
        assert!(cache.lookup("u1", "shop", "web-0", &m).is_none());
        cache.update(vec![("u1".into(), pod("a"))], Duration::from_secs(60), now);
        let v1 = cache.version();
        assert_eq!(cache.lookup("u1", "", "", &m).unwrap().labels["app"], "a");
        assert_eq!(
            cache.lookup("", "shop", "web-0", &m).unwrap().labels["app"],
            "a"
        );
        // The same content again: no new version.
        cache.update(vec![("u1".into(), pod("a"))], Duration::from_secs(60), now);
        assert_eq!(cache.version(), v1);
        cache.update(vec![("u1".into(), pod("b"))], Duration::from_secs(60), now);
        assert!(cache.version() > v1);
        // Not listed for longer than the TTL: gone.
        cache.update(
            vec![],
            Duration::from_secs(60),
            now + Duration::from_secs(61),
        );
        assert!(cache.lookup("u1", "", "", &m).is_none());
        assert_eq!(m.metadata_lookups.get(), 4);
        assert_eq!(m.metadata_misses.get(), 2);
    }

    #[tokio::test]
    async fn a_missed_pod_brings_the_next_refresh_forward() {
        // A kubelet whose pod list is empty until the pod is created.
        let full = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/podlist.json"
        ))
        .unwrap();
        let created = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c2, list) = (created.clone(), Arc::new(full));
        let app = axum::Router::new().route(
            "/pods",
            axum::routing::get(move || {
                let (created, list) = (c2.clone(), list.clone());
                async move {
                    if created.load(Ordering::SeqCst) {
                        (*list).clone()
                    } else {
                        b"{\"kind\":\"PodList\",\"items\":[]}".to_vec()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut c = MetadataConfig::new(Source::Kubelet, Some(url));
        c.refresh_interval = Duration::from_secs(600);
        let metrics = Arc::new(Metrics::default());
        let refresher = Refresher::new(c, metrics.clone()).unwrap();
        let cache = refresher.cache();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(refresher.run(rx));
        let uid = "6f3c0e7a-1b2c-4d5e-8f90-123456789abc";
        // The first refresh sees no pods; then the pod is created and its first line looked up.
        while metrics.metadata_refreshes.get() < 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        created.store(true, Ordering::SeqCst);
        let asked = Instant::now();
        assert!(cache.lookup(uid, "", "", &metrics).is_none());
        // Known well before the 10-minute interval: after MIN_REFRESH_GAP.
        let deadline = asked + MIN_REFRESH_GAP + Duration::from_secs(10);
        while cache.lookup(uid, "", "", &metrics).is_none() {
            assert!(
                Instant::now() < deadline,
                "the miss did not bring the refresh forward"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(asked.elapsed() >= MIN_REFRESH_GAP);
        assert_eq!(metrics.metadata_refreshes.get(), 2);
        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = MetadataConfig::new(Source::Kubelet, None);
        assert!(c
            .validate()
            .unwrap_err()
            .contains("kubernetes_metadata.url"));
        c.url = Some("ftp://x".into());
        assert!(c.validate().unwrap_err().contains("http"));
        let c = MetadataConfig::new(Source::Apiserver, None);
        c.validate().unwrap();
    }
}
