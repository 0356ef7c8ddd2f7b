//! A fake Kubernetes API server on loopback for delegated authentication and authorization:
//! TokenReview (authentication.k8s.io/v1), SubjectAccessReview (authorization.k8s.io/v1) and the
//! kube-system/extension-apiserver-authentication ConfigMap, answering as the documented protocol
//! does and recording every request that breaks it (see [`FakeApi::violations`]).
//!
//! One copy for the root tests (`tests/hardening/auth.rs`, against the real binaries) and
//! vigil-server's own tests of its auth layer, which include this file with `#[path]`; so it uses
//! only what both have: axum (and its `http`), serde_json, tokio.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// The service account token vigil's kubeconfig presents; every call must carry it.
pub const SA_TOKEN: &str = "vigil-service-account-token";
/// The uid a TokenReview answers for every known token; a SubjectAccessReview about that token's
/// user must pass it (and the user's groups) on.
pub const TOKEN_UID: &str = "4f1c-token-uid";

/// What the fake knows (set by the test) and saw (counted by the fake).
#[derive(Default)]
pub struct Fake {
    /// token → (user, groups), what TokenReview answers; other tokens are not authenticated.
    pub tokens: HashMap<String, (String, Vec<String>)>,
    /// (user, verb, path or resource) a SubjectAccessReview allows; nothing else is.
    pub allow: Vec<(String, String, String)>,
    /// `data` of kube-system/extension-apiserver-authentication; `None`: 404 Not Found.
    pub published: Option<Value>,
    pub token_reviews: AtomicUsize,
    pub access_reviews: AtomicUsize,
    pub configmap_reads: AtomicUsize,
    /// Requests that broke the documented protocol (read with [`FakeApi::violations`]).
    pub violations: Mutex<Vec<String>>,
}

impl Fake {
    fn violation(&self, what: String) {
        self.violations.lock().unwrap().push(what);
    }

    fn check_token(&self, h: &HeaderMap, what: &str) {
        if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SA_TOKEN}")) {
            self.violation(format!("{what}: not sent with vigil's service account token"));
        }
    }

    /// vigil's credentials, a JSON body of the right apiVersion and kind, with `spec` and nothing
    /// but `apiVersion`, `kind`, `metadata`, `spec` at the top.
    fn check_envelope(&self, h: &HeaderMap, body: &Value, kind: &str, group: &str) {
        self.check_token(h, kind);
        if !h
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
        {
            self.violation(format!("{kind}: content-type is not application/json"));
        }
        if body["apiVersion"] != json!(format!("{group}/v1")) || body["kind"] != json!(kind) {
            self.violation(format!("{kind}: wrong apiVersion/kind in {body}"));
        }
        if body["spec"].is_null() {
            self.violation(format!("{kind}: no spec in {body}"));
        }
        for k in body.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_else(Vec::new) {
            if !["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()) {
                self.violation(format!("{kind}: unexpected top-level field {k}"));
            }
        }
    }
}

async fn token_review(State(f): State<Arc<Fake>>, h: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    f.token_reviews.fetch_add(1, Ordering::SeqCst);
    f.check_envelope(&h, &body, "TokenReview", "authentication.k8s.io");
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        f.violation("TokenReview: spec.token is empty".into());
    }
    let mut answer = body.clone();
    answer["status"] = match f.tokens.get(token) {
        Some((user, groups)) => {
            json!({"authenticated": true, "user": {"username": user, "uid": TOKEN_UID, "groups": groups}})
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    answer["metadata"] = json!({"creationTimestamp": null});
    (StatusCode::CREATED, Json(answer))
}

async fn access_review(State(f): State<Arc<Fake>>, h: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    f.access_reviews.fetch_add(1, Ordering::SeqCst);
    f.check_envelope(&h, &body, "SubjectAccessReview", "authorization.k8s.io");
    let spec = &body["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    if user.is_empty() {
        f.violation("SubjectAccessReview: spec.user is empty".into());
    }
    // A user a TokenReview named is asked about with that review's uid and groups.
    if let Some((_, groups)) = f.tokens.values().find(|(u, _)| u == user) {
        if spec["uid"] != TOKEN_UID || spec["groups"] != json!(groups) {
            f.violation(format!("SubjectAccessReview: the TokenReview's uid/groups not passed on: {spec}"));
        }
    }
    let (res, nonres) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    if res.is_null() == nonres.is_null() {
        f.violation(format!("SubjectAccessReview: not exactly one of resourceAttributes and nonResourceAttributes: {spec}"));
    }
    let (verb, what) = if !nonres.is_null() {
        (nonres["verb"].as_str().unwrap_or_default(), nonres["path"].as_str().unwrap_or_default())
    } else {
        if res["group"] != "metrics.k8s.io" || res["version"] != "v1beta1" {
            f.violation(format!("SubjectAccessReview: unexpected group/version {res}"));
        }
        (res["verb"].as_str().unwrap_or_default(), res["resource"].as_str().unwrap_or_default())
    };
    let allowed = f.allow.iter().any(|(u, v, p)| u == user && v == verb && p == what);
    let mut answer = body.clone();
    answer["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"vigil-readers\""})
    } else {
        json!({"allowed": false, "reason": "no RBAC policy matched"})
    };
    (StatusCode::CREATED, Json(answer))
}

async fn auth_configmap(State(f): State<Arc<Fake>>, h: HeaderMap) -> (StatusCode, Json<Value>) {
    f.configmap_reads.fetch_add(1, Ordering::SeqCst);
    f.check_token(&h, "ConfigMap read");
    match &f.published {
        Some(data) => (
            StatusCode::OK,
            Json(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                "data": data})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "configmaps \"extension-apiserver-authentication\" not found",
                "reason": "NotFound", "code": 404})),
        ),
    }
}

/// The fake on a loopback port; `stop` (or drop) closes the port, idle connections included.
pub struct FakeApi {
    pub addr: SocketAddr,
    pub state: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApi {
    pub async fn start(fake: Fake) -> FakeApi {
        let state = Arc::new(fake);
        let app = Router::new()
            .route("/apis/authentication.k8s.io/v1/tokenreviews", post(token_review))
            .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", post(access_review))
            .route(
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                get(auth_configmap),
            )
            .fallback(|uri: Uri| async move { (StatusCode::NOT_FOUND, format!("fake API server: no route {uri}")) })
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("fake API server serves");
        });
        FakeApi { addr, state, stop: Some(tx), task: Some(task) }
    }

    /// Takes the API server down: its port refuses connections afterwards.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("fake API server stops within 10s")
                .unwrap();
        }
    }

    /// Writes a kubeconfig for this server (with [`SA_TOKEN`]) into `dir`; returns its path.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> String {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: vigil}}\ncurrent-context: fake\nusers:\n- name: vigil\n  user:\n    token: {SA_TOKEN}\n",
                self.addr
            ),
        )
        .unwrap();
        path.to_string_lossy().into_owned()
    }

    pub fn token_reviews(&self) -> usize {
        self.state.token_reviews.load(Ordering::SeqCst)
    }

    pub fn access_reviews(&self) -> usize {
        self.state.access_reviews.load(Ordering::SeqCst)
    }

    pub fn configmap_reads(&self) -> usize {
        self.state.configmap_reads.load(Ordering::SeqCst)
    }

    /// What broke the protocol so far (empty when every request was right).
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
