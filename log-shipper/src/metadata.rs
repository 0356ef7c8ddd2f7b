//! Kubernetes pod metadata (labels, annotations, node, images) from the kubelet's `/pods` or the API
//! server (through kube's client), cached by pod uid and refreshed in the background; the reader only
//! ever looks into the cache, so shipping never waits.

mod cache;
mod fetch;
mod pods;

pub use cache::{PodCache, MIN_REFRESH_GAP};
pub use pods::PodMeta;

use crate::metrics::Metrics;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Errors setting up or running a metadata source.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("kubernetes_metadata: {0}")]
    Config(String),
    #[error("kubernetes_metadata.ca_file {path}: {reason}")]
    Ca { path: PathBuf, reason: String },
    #[error("kubernetes_metadata: building the client: {0}")]
    Client(String),
    #[error("kubernetes_metadata.token_file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
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
    /// The API server: `GET <url>/api/v1/pods?fieldSelector=spec.nodeName=<node_name>` through kube's
    /// client (`vigil_common::kubernetes::Access`).
    Apiserver,
}

/// `kubernetes_metadata` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// `kubelet` or `apiserver`.
    pub source: Source,
    /// Base URL. Kubelet: required (e.g. `https://127.0.0.1:10250`). API server: default in-cluster
    /// (`https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the service account's token and CA).
    #[serde(default)]
    pub url: Option<String>,
    /// File holding a bearer token, re-read as it rotates (kubelet: at every refresh; API server: by kube's client,
    /// about once a minute). Default: the service account token when that file exists.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA to trust for `https` URLs (the only CA then). Default: in-cluster (API server, no `url`), the service
    /// account's `ca.crt`; with a `url`, the system's trusted roots (as client-go).
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
    /// Timeout of one request, answer included (also bounds connecting, and each read and write).
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

/// The background refresher.
pub struct Refresher {
    cfg: MetadataConfig,
    fetcher: fetch::Fetcher,
    cache: Arc<PodCache>,
    metrics: Arc<Metrics>,
}

impl Refresher {
    /// Resolves the in-cluster defaults (environment, service-account files) and builds the
    /// source's client: reqwest for the kubelet, kube's for the API server.
    pub async fn new(cfg: MetadataConfig, metrics: Arc<Metrics>) -> Result<Self, MetadataError> {
        let fetcher = fetch::Fetcher::new(&cfg).await?;
        Ok(Refresher {
            cfg,
            fetcher,
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
        self.fetcher.url()
    }

    /// One refresh: fetch, parse, merge. Returns the number of pods cached.
    pub async fn refresh(&self) -> Result<usize, MetadataError> {
        let body = self.fetcher.get().await?;
        let pods = pods::parse_pod_list(&body, &self.cfg).map_err(|source| {
            MetadataError::Malformed {
                url: self.url().to_string(),
                source,
            }
        })?;
        Ok(self
            .cache
            .update(pods, self.cfg.cache_ttl, Instant::now()))
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
                    tracing::debug!(url = %self.url(), pods = n, "pod metadata refreshed");
                }
                Err(e) => {
                    self.metrics.metadata_errors.inc_by(1);
                    tracing::warn!(error = %e, "pod metadata refresh failed; records keep the metadata known so far (path metadata only for pods not yet seen)");
                }
            }
            // The next refresh: after the interval, or early (but not before MIN_REFRESH_GAP)
            // when a pod was looked up that the cache does not know yet.
            let early = async {
                self.cache.missed_pod().await;
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
    use std::sync::atomic::Ordering;

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
        let refresher = Refresher::new(c, metrics.clone()).await.unwrap();
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
