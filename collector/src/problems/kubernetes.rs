//! Optional Kubernetes reporting (off by default): patches the node's status conditions and
//! creates Events, as node-problem-detector's k8s exporter does, through kube: a strategic-merge
//! patch of `nodes/<name>/status` (`Api<Node>::patch_status`) and a POST of the Event object
//! node-problem-detector writes (`event_object`, sent as is). Also makes the collector's one
//! API server client (shared with the volume claim lookup) from the in-cluster service account
//! through `vigil_common::kubernetes::Access`; kube re-reads the rotating token file.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;
use vigil_common::error_chain;
use vigil_common::kubernetes::{Access, AccessError, Source};

use super::store::{Condition, Event, Severity, Store};

/// Where the in-cluster service account credentials live.
pub use vigil_common::kubernetes::SERVICE_ACCOUNT_DIR;

/// Bounds connecting to the API server and each read and write of the in-cluster client.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds each of the reporter's requests as a whole (kube's own retries of a 429, 503 or 504
/// included); what is not done by then is retried on a later tick.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the Kubernetes reporter and of making the API server client.
#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    /// The node name is needed to patch its status.
    #[error("Kubernetes reporting needs the node name")]
    NoNodeName,
    /// The client could not be made: names the variable, service account file, URL or setting
    /// that is missing or malformed.
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// The collector's API server client from the pod's service account
/// (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA under [`SERVICE_ACCOUNT_DIR`]), each
/// connect, read and write bounded by [`CLIENT_TIMEOUT`], and the API server URL; a clear error
/// naming what is missing.
pub async fn in_cluster_client() -> Result<(kube::Client, String), KubernetesError> {
    client(&Access::new(Source::InCluster).with_timeout(CLIENT_TIMEOUT)).await
}

/// A client made from `access`, and the URL of the API server it talks to (for the logs).
pub async fn client(access: &Access) -> Result<(kube::Client, String), KubernetesError> {
    let config = access.config().await?;
    let url = config.cluster_url.to_string();
    Ok((vigil_common::kubernetes::client(config)?, url))
}

/// The start of an answer's body, for a log line or an error: a Status's `message` when it is
/// one, else the text itself.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<kube::core::Status>(body) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    text.trim().chars().take(200).collect()
}

/// What to report as.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
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
    /// node-problem-detector's defaults for `node_name`: Events in `default`, a heartbeat every
    /// five minutes; an error without a node name.
    pub fn new(node_name: &str) -> Result<Self, KubernetesError> {
        if node_name.is_empty() {
            return Err(KubernetesError::NoNodeName);
        }
        Ok(KubernetesConfig {
            node_name: node_name.to_string(),
            event_namespace: "default".to_string(),
            heartbeat: default_heartbeat(),
        })
    }
}

/// Reports the detector's conditions and events to the API server.
pub struct Reporter {
    cfg: KubernetesConfig,
    client: kube::Client,
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
    /// Reports the store's conditions and events for `cfg` through `client`.
    pub fn new(cfg: KubernetesConfig, client: kube::Client, store: Arc<Store>) -> Self {
        Reporter { cfg, client, store }
    }

    /// Creates one Event; true when done or permanently rejected (4xx other than 429:
    /// retrying cannot help), false to retry later.
    async fn post_event(&self, e: &Event) -> bool {
        let path = format!("/api/v1/namespaces/{}/events", self.cfg.event_namespace);
        // Sent as node-problem-detector writes it, not re-encoded through a typed Event.
        let body = serde_json::to_vec(&event_object(&self.cfg, e)).unwrap_or_default();
        let req = match kube::core::Request::new(&path).create(&PostParams::default(), body) {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(error = %err, path = %path, reason = %e.reason, "the event request cannot be built; dropped");
                return true;
            }
        };
        // Decided by the HTTP status itself: a proxy's error body is not always a Status.
        let sent = vigil_common::kubernetes::send(&self.client, req);
        match tokio::time::timeout(REQUEST_TIMEOUT, sent).await {
            Ok(Ok((status, _))) if status.is_success() => true,
            Ok(Ok((status, body))) if status.is_client_error() && status.as_u16() != 429 => {
                tracing::warn!(status = status.as_u16(), answer = %snippet(&body), reason = %e.reason, "API server rejected the event; dropped");
                true
            }
            Ok(Ok((status, body))) => {
                tracing::warn!(status = status.as_u16(), answer = %snippet(&body), "creating event failed; will retry");
                false
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "creating event failed; will retry");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?REQUEST_TIMEOUT, "creating event got no answer in time; will retry");
                false
            }
        }
    }

    /// Patches the node status with `conditions`; true when the API server took it.
    async fn patch_status(&self, conditions: &[Condition]) -> bool {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = Patch::Strategic(status_patch(conditions));
        let node = &self.cfg.node_name;
        match tokio::time::timeout(
            REQUEST_TIMEOUT,
            nodes.patch_status(node, &PatchParams::default(), &patch),
        )
        .await
        {
            Ok(Ok(_)) => true,
            // A success answer whose body is not a Node: the patch was applied all the same.
            Ok(Err(kube::Error::SerdeError(err))) => {
                tracing::debug!(error = %err, node = %node, "node status patched; the answer is not a Node");
                true
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %error_chain(&err), node = %node, "patching node status failed; will retry");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?REQUEST_TIMEOUT, node = %node, "patching node status got no answer in time; will retry");
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

    /// (Missing in-cluster variables are named by `vigil_common::kubernetes`'s tests and, end to
    /// end, by `tests/collector/cli.rs`.)
    #[tokio::test]
    async fn a_missing_node_name_or_credential_is_named() {
        assert!(matches!(
            KubernetesConfig::new(""),
            Err(KubernetesError::NoNodeName)
        ));
        // A credential that cannot be read is named.
        let d = tempfile::tempdir().unwrap();
        let mut access = Access::new(Source::Url("https://127.0.0.1:6443".into()));
        access.token_file = Some(d.path().join("token"));
        let e = client(&access)
            .await
            .err()
            .expect("no token file")
            .to_string();
        assert!(
            e.starts_with("token file ")
                && e.contains(&d.path().join("token").display().to_string()),
            "{e}"
        );
        std::fs::write(d.path().join("ca.crt"), "not a certificate").unwrap();
        access.token_file = None;
        access.ca_file = Some(d.path().join("ca.crt"));
        let e = client(&access)
            .await
            .err()
            .expect("an invalid CA is refused")
            .to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
    }

    #[derive(Default)]
    struct Seen {
        events: Vec<serde_json::Value>,
        patches: Vec<(String, serde_json::Value)>,
        fail_next_event: bool,
        auth_ok: bool,
        rejected: usize,
    }

    async fn fake_event(
        State(seen): State<Arc<Mutex<Seen>>>,
        headers: HeaderMap,
        body: axum::Json<serde_json::Value>,
    ) -> (StatusCode, axum::Json<serde_json::Value>) {
        let mut s = seen.lock().unwrap();
        s.auth_ok = headers
            .get("authorization")
            .map(|v| v == "Bearer secret")
            .unwrap_or(false);
        if std::mem::take(&mut s.fail_next_event) {
            // kube's own retry is off (vigil_common::kubernetes::Access): this is the reporter's.
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "the server is currently unable to handle the request", "reason": "ServiceUnavailable", "code": 503});
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(status));
        }
        if body.0["reason"] == "ProxyRejected" {
            // A proxy in front of the API server: JSON, but not a Status.
            s.rejected += 1;
            return (StatusCode::FORBIDDEN, axum::Json(json!({"error": "denied by proxy"})));
        }
        let mut created = body.0.clone();
        created["metadata"]["name"] = json!(format!("node-1.{}", s.events.len()));
        s.events.push(body.0);
        (StatusCode::CREATED, axum::Json(created))
    }

    /// Answers the patched Node, as the API server does.
    async fn fake_patch(
        State(seen): State<Arc<Mutex<Seen>>>,
        headers: HeaderMap,
        body: String,
    ) -> (StatusCode, axum::Json<serde_json::Value>) {
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let patch: serde_json::Value = serde_json::from_str(&body).unwrap();
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
            "status": patch["status"]});
        seen.lock().unwrap().patches.push((ct, patch));
        (StatusCode::OK, axum::Json(node))
    }

    /// The fake API server of the events and node status routes, on a loopback port.
    async fn fake_api_server(seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
        let app = axum::Router::new()
            .route("/api/v1/namespaces/default/events", post(fake_event))
            .route("/api/v1/nodes/node-1/status", patch(fake_patch))
            .with_state(seen);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    }

    /// A 4xx whose body is not a Status (kube's typed calls read such a body as code 0) is
    /// still a rejection: the event is dropped once, and the events after it are sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_event_refused_by_a_proxy_is_dropped_and_the_next_ones_sent() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let addr = fake_api_server(seen.clone()).await;
        let now = chrono::Utc::now();
        let store = Arc::new(Store::default());
        store.push_event("kernel-monitor", Severity::Warn, now, "ProxyRejected", "m1");
        store.push_event("kernel-monitor", Severity::Warn, now, "AfterIt", "m2");
        let access = Access::new(Source::Url(format!("http://{addr}")));
        let (client, _) = client(&access).await.unwrap();
        let (tx, rx) = watch::channel(false);
        let cfg = KubernetesConfig::new("node-1").unwrap();
        let run = tokio::spawn(Reporter::new(cfg, client, store).run(Duration::from_millis(50), rx));
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.lock().unwrap().events.is_empty() {
            assert!(Instant::now() < deadline, "the event after the refused one was not sent");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        tx.send(true).unwrap();
        run.await.unwrap();
        let s = seen.lock().unwrap();
        assert_eq!(s.rejected, 1, "a refused event is not retried");
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0]["reason"], "AfterIt");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn patches_node_status_and_creates_events_without_losing_any() {
        let seen = Arc::new(Mutex::new(Seen {
            fail_next_event: true,
            ..Default::default()
        }));
        let addr = fake_api_server(seen.clone()).await;

        let now = chrono::Utc::now();
        let store = Store::kernel_monitor_sample(now);
        store.push_event(
            "kernel-monitor",
            Severity::Info,
            now,
            "DockerHung",
            "Node condition KernelDeadlock is now: True",
        );
        // The bearer token comes from a token file, as in a pod; kube re-reads the file about
        // once a minute (a rotated token is used from then on), which is longer than this test.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "secret").unwrap();
        let mut access =
            Access::new(Source::Url(format!("http://{addr}"))).with_timeout(Duration::from_secs(5));
        access.token_file = Some(dir.path().join("token"));
        let (client, url) = client(&access).await.unwrap();
        assert_eq!(url, format!("http://{addr}/"));
        let cfg = KubernetesConfig::new("node-1").unwrap();
        let (tx, rx) = watch::channel(false);
        let run = tokio::spawn(
            Reporter::new(cfg, client, store.clone()).run(Duration::from_millis(50), rx),
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
            assert!(s.auth_ok, "the token file's bearer token arrives");
            // The first attempt got 503: retried, in order, nothing lost or duplicated.
            assert_eq!(s.events[0]["reason"], "OOMKilling");
            assert_eq!(s.events[0]["type"], "Warning");
            assert_eq!(s.events[0]["involvedObject"]["kind"], "Node");
            assert_eq!(s.events[0]["involvedObject"]["name"], "node-1");
            assert_eq!(s.events[0]["source"]["component"], "kernel-monitor");
            assert_eq!(s.events[1]["reason"], "DockerHung");
            assert_eq!(s.events[1]["type"], "Normal");
            // The body is node-problem-detector's Event object, as written.
            let expected = event_object(
                &KubernetesConfig::new("node-1").unwrap(),
                &store.events_since(0, 100).0[1],
            );
            assert_eq!(s.events[1], expected);
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
