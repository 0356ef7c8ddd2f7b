//! Optional Kubernetes reporting (off by default): patches the node's status conditions and
//! creates Events, as node-problem-detector's k8s exporter does, over the API server's REST API.
//! The requests are made by hand with reqwest (a strategic-merge PATCH of `nodes/<name>/status`,
//! a POST of an Event), the token re-read for each (it rotates), and the in-cluster address and
//! credentials come from the shared reader, `vigil_common::kubernetes`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::watch;

use super::store::{Condition, Event, Severity, Store};

/// Where the in-cluster service account credentials live.
pub use vigil_common::kubernetes::SERVICE_ACCOUNT_DIR;

/// Errors of the Kubernetes reporter.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// Enabled outside a cluster: no API server address in the environment.
    #[error("this is not running in a cluster: {0} is not set")]
    NotInCluster(&'static str),
    /// The service account token or CA could not be read.
    #[error("the service account credential {path} cannot be read: {source}")]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The node name is needed to patch its status.
    #[error("Kubernetes reporting needs the node name")]
    NoNodeName,
    /// The CA bundle holds no PEM certificate.
    #[error("Kubernetes CA bundle contains no PEM certificate")]
    EmptyCa,
    /// The HTTP client could not be built (e.g. an invalid CA bundle).
    #[error("Kubernetes client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How to reach the API server: its address and the in-cluster service account credentials
/// (shared by the problem reporter and the volume claim lookup).
#[derive(Debug, Clone)]
pub struct ApiAccess {
    /// API server base URL, e.g. `https://10.96.0.1:443`.
    pub api_url: String,
    /// Bearer token (the service account's).
    pub token: Option<String>,
    /// Where the token comes from: re-read for every request, as the kubelet rotates bound
    /// service account tokens (about hourly); `token` is kept when a re-read fails.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle that signs the API server's certificate.
    pub ca_pem: Option<Vec<u8>>,
}

impl ApiAccess {
    /// From `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account; a clear error when
    /// there are no credentials.
    pub fn in_cluster() -> Result<Self, KubernetesError> {
        Self::in_cluster_from(|k| std::env::var(k).ok(), Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// As `in_cluster`, with the environment and the service account directory given.
    pub fn in_cluster_from(
        env: impl Fn(&str) -> Option<String>,
        sa_dir: &Path,
    ) -> Result<Self, KubernetesError> {
        let api_url =
            vigil_common::kubernetes::api_server_url(env).map_err(KubernetesError::NotInCluster)?;
        let read = |name: &str| {
            let path = sa_dir.join(name);
            std::fs::read(&path).map_err(|source| KubernetesError::Credentials { path, source })
        };
        let token = String::from_utf8_lossy(&read("token")?).trim().to_string();
        let ca = read("ca.crt")?;
        Ok(ApiAccess {
            api_url,
            token: Some(token),
            token_file: Some(sa_dir.join("token")),
            ca_pem: Some(ca),
        })
    }

    /// An HTTP client that trusts the CA bundle, each request bounded by `timeout`.
    pub fn client(&self, timeout: Duration) -> Result<reqwest::Client, KubernetesError> {
        let mut b = reqwest::Client::builder().timeout(timeout);
        if let Some(ca) = &self.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(ca)?;
            if certs.is_empty() {
                return Err(KubernetesError::EmptyCa);
            }
            for cert in certs {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(b.build()?)
    }

    /// Adds the bearer token, if any: the token file's current content when there is one.
    pub fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let fresh = self
            .token_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        match fresh.as_ref().or(self.token.as_ref()) {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }
}

/// How to reach the API server and what to report as.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// The API server and credentials.
    pub api: ApiAccess,
    /// The node whose status is patched and that Events are about.
    pub node_name: String,
    /// Namespace of the Events (node-problem-detector: `default`).
    pub event_namespace: String,
    /// Conditions are re-sent at least this often even without change (heartbeat).
    pub heartbeat: Duration,
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(300)
}

impl KubernetesConfig {
    /// In-cluster configuration from `KUBERNETES_SERVICE_HOST`/`_PORT` and the service account;
    /// a clear error when there are no credentials.
    pub fn in_cluster(node_name: &str) -> Result<Self, KubernetesError> {
        Self::in_cluster_from(
            node_name,
            |k| std::env::var(k).ok(),
            Path::new(SERVICE_ACCOUNT_DIR),
        )
    }

    /// As `in_cluster`, with the environment and the service account directory given.
    pub fn in_cluster_from(
        node_name: &str,
        env: impl Fn(&str) -> Option<String>,
        sa_dir: &Path,
    ) -> Result<Self, KubernetesError> {
        if node_name.is_empty() {
            return Err(KubernetesError::NoNodeName);
        }
        Ok(KubernetesConfig {
            api: ApiAccess::in_cluster_from(env, sa_dir)?,
            node_name: node_name.to_string(),
            event_namespace: "default".to_string(),
            heartbeat: default_heartbeat(),
        })
    }
}

/// Reports the detector's conditions and events to the API server.
pub struct Reporter {
    cfg: KubernetesConfig,
    client: reqwest::Client,
    store: Arc<Store>,
}

/// The Event object node-problem-detector's recorder creates for an event.
pub fn event_object(cfg: &KubernetesConfig, e: &Event) -> serde_json::Value {
    let ts = e
        .timestamp
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": format!("{}.", cfg.node_name), "namespace": cfg.event_namespace},
        "involvedObject": {"kind": "Node", "name": cfg.node_name, "uid": cfg.node_name, "namespace": ""},
        "reason": e.reason,
        "message": e.message,
        "source": {"component": e.source, "host": cfg.node_name},
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "type": match e.severity { Severity::Warn => "Warning", Severity::Info => "Normal" },
    })
}

/// The strategic-merge patch of the node status with the conditions.
pub fn status_patch(conditions: &[Condition]) -> serde_json::Value {
    json!({"status": {"conditions": conditions}})
}

impl Reporter {
    /// Builds the HTTP client (the CA bundle is checked here).
    pub fn new(cfg: KubernetesConfig, store: Arc<Store>) -> Result<Self, KubernetesError> {
        Ok(Reporter {
            client: cfg.api.client(Duration::from_secs(10))?,
            cfg,
            store,
        })
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        self.cfg.api.auth(req)
    }

    /// Creates one Event; Ok(true) when done or permanently rejected (4xx other than 429:
    /// retrying cannot help), Ok(false) to retry later.
    async fn post_event(&self, e: &Event) -> bool {
        let url = format!(
            "{}/api/v1/namespaces/{}/events",
            self.cfg.api.api_url, self.cfg.event_namespace
        );
        match self
            .auth(self.client.post(&url))
            .json(&event_object(&self.cfg, e))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => true,
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                tracing::warn!(status = %r.status(), reason = %e.reason, "API server rejected the event; dropped");
                true
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "creating event failed; will retry");
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "creating event failed; will retry");
                false
            }
        }
    }

    async fn patch_status(&self, conditions: &[Condition]) -> bool {
        let url = format!(
            "{}/api/v1/nodes/{}/status",
            self.cfg.api.api_url, self.cfg.node_name
        );
        let body = serde_json::to_vec(&status_patch(conditions)).unwrap_or_default();
        let req = self
            .auth(self.client.patch(&url))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/strategic-merge-patch+json",
            )
            .body(body);
        match req.send().await {
            Ok(r) if r.status().is_success() => true,
            Ok(r) => {
                tracing::warn!(status = %r.status(), node = %self.cfg.node_name, "patching node status failed; will retry");
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "patching node status failed; will retry");
                false
            }
        }
    }

    /// Sends new events and changed conditions every `tick` (and the conditions on every
    /// heartbeat) until shutdown. Events that fail are retried in order, never skipped.
    pub async fn run(self, tick: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut next_seq = 0u64;
        let mut sent: Option<Vec<Condition>> = None;
        let mut last_patch = Instant::now();
        loop {
            let (events, _, truncated) = self.store.events_since(next_seq, 100);
            if truncated {
                tracing::warn!(
                    "events were dropped from the bounded log before they could be reported"
                );
            }
            for e in &events {
                if !self.post_event(e).await {
                    break;
                }
                next_seq = e.seq;
            }
            // Compare without the heartbeat time.
            let mut now_conds = self.store.conditions();
            let key: Vec<Condition> = now_conds
                .iter()
                .cloned()
                .map(|mut c| {
                    c.last_heartbeat_time = c.last_transition_time;
                    c
                })
                .collect();
            if (sent.as_ref() != Some(&key) || last_patch.elapsed() >= self.cfg.heartbeat)
                && !now_conds.is_empty()
                && self.patch_status(&now_conds).await
            {
                sent = Some(key);
                last_patch = Instant::now();
            }
            now_conds.clear();
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problems::store::Status;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{patch, post};
    use std::sync::Mutex;

    #[test]
    fn enabling_without_credentials_is_a_clear_error() {
        let e = KubernetesConfig::in_cluster_from("node-1", |_| None, Path::new("/nonexistent"))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "this is not running in a cluster: KUBERNETES_SERVICE_HOST is not set"
        );
        let env = |k: &str| match k {
            "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
            "KUBERNETES_SERVICE_PORT" => Some("443".to_string()),
            _ => None,
        };
        let e = KubernetesConfig::in_cluster_from("node-1", env, Path::new("/nonexistent/sa"))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/sa/token cannot be read"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("token"), "tok\n").unwrap();
        std::fs::write(d.path().join("ca.crt"), "not a certificate").unwrap();
        let cfg = KubernetesConfig::in_cluster_from("node-1", env, d.path()).unwrap();
        assert_eq!(
            (cfg.api.api_url.as_str(), cfg.api.token.as_deref()),
            ("https://10.96.0.1:443", Some("tok"))
        );
        // A rotated token is used from the next request on; a missing file keeps the last one.
        let bearer = |api: &ApiAccess| {
            let req = api.auth(reqwest::Client::new().get("http://127.0.0.1:1/"));
            req.build().unwrap().headers()["authorization"]
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(bearer(&cfg.api), "Bearer tok");
        std::fs::write(d.path().join("token"), "rotated\n").unwrap();
        assert_eq!(bearer(&cfg.api), "Bearer rotated");
        std::fs::remove_file(d.path().join("token")).unwrap();
        assert_eq!(bearer(&cfg.api), "Bearer tok");
        let e = Reporter::new(cfg, Arc::new(Store::default()))
            .err()
            .expect("an invalid CA is refused");
        assert_eq!(
            e.to_string(),
            "Kubernetes CA bundle contains no PEM certificate"
        );
        assert!(matches!(
            KubernetesConfig::in_cluster_from("", env, d.path()),
            Err(KubernetesError::NoNodeName)
        ));
    }

    #[derive(Default)]
    struct Seen {
        events: Vec<serde_json::Value>,
        patches: Vec<(String, serde_json::Value)>,
        fail_next_event: bool,
        auth_ok: bool,
    }

    async fn fake_event(
        State(seen): State<Arc<Mutex<Seen>>>,
        headers: HeaderMap,
        body: axum::Json<serde_json::Value>,
    ) -> StatusCode {
        let mut s = seen.lock().unwrap();
        s.auth_ok = headers
            .get("authorization")
            .map(|v| v == "Bearer secret")
            .unwrap_or(false);
        if std::mem::take(&mut s.fail_next_event) {
            return StatusCode::SERVICE_UNAVAILABLE;
        }
        s.events.push(body.0);
        StatusCode::CREATED
    }

    async fn fake_patch(
        State(seen): State<Arc<Mutex<Seen>>>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.lock()
            .unwrap()
            .patches
            .push((ct, serde_json::from_str(&body).unwrap()));
        StatusCode::OK
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn patches_node_status_and_creates_events_without_losing_any() {
        let seen = Arc::new(Mutex::new(Seen {
            fail_next_event: true,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/api/v1/namespaces/default/events", post(fake_event))
            .route("/api/v1/nodes/node-1/status", patch(fake_patch))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let now = chrono::Utc::now();
        let store = Store::kernel_monitor_sample(now);
        store.push_event(
            "kernel-monitor",
            Severity::Info,
            now,
            "DockerHung",
            "Node condition KernelDeadlock is now: True",
        );
        let cfg = KubernetesConfig {
            api: ApiAccess {
                api_url: format!("http://{addr}"),
                token: Some("secret".into()),
                token_file: None,
                ca_pem: None,
            },
            node_name: "node-1".into(),
            event_namespace: "default".into(),
            heartbeat: default_heartbeat(),
        };
        let (tx, rx) = watch::channel(false);
        let run = tokio::spawn(
            Reporter::new(cfg, store.clone())
                .unwrap()
                .run(Duration::from_millis(50), rx),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if seen.lock().unwrap().events.len() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "events not delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let s = seen.lock().unwrap();
            assert!(s.auth_ok);
            // The first attempt got 503: retried, in order, nothing lost or duplicated.
            assert_eq!(s.events[0]["reason"], "OOMKilling");
            assert_eq!(s.events[0]["type"], "Warning");
            assert_eq!(s.events[0]["involvedObject"]["kind"], "Node");
            assert_eq!(s.events[0]["involvedObject"]["name"], "node-1");
            assert_eq!(s.events[0]["source"]["component"], "kernel-monitor");
            assert_eq!(s.events[1]["reason"], "DockerHung");
            assert_eq!(s.events[1]["type"], "Normal");
            let (ct, p) = &s.patches[0];
            assert_eq!(ct, "application/strategic-merge-patch+json");
            assert_eq!(p["status"]["conditions"][0]["type"], "KernelDeadlock");
            assert_eq!(p["status"]["conditions"][0]["status"], "False");
        }
        // A condition change is patched again.
        store.set_conditions(
            0,
            &[Condition {
                kind: "KernelDeadlock".into(),
                status: Status::True,
                last_heartbeat_time: now,
                last_transition_time: now,
                reason: "DockerHung".into(),
                message: "task docker:1 blocked".into(),
            }],
        );
        loop {
            let done = seen
                .lock()
                .unwrap()
                .patches
                .iter()
                .any(|(_, p)| p["status"]["conditions"][0]["status"] == "True");
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "changed condition not patched");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
    }
}
