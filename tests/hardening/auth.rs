//! Who may talk to vigil, end to end: the real `vigil aggregator` with a static token file and
//! delegated authentication/authorization against a loopback fake Kubernetes API server that
//! follows the documented TokenReview (authentication.k8s.io/v1) and SubjectAccessReview
//! (authorization.k8s.io/v1) protocol and checks every request body it receives. Client
//! certificates over real TLS are tested beside the layer (`server/src/auth/tests.rs`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::aggregator::{free_port, Aggregator};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The token vigil's own kubeconfig presents to the API server.
const SA_TOKEN: &str = "vigil-aggregator-service-account";

#[derive(Default)]
struct Fake {
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    violations: Mutex<Vec<String>>,
    /// token → user
    tokens: HashMap<String, String>,
    /// (user, verb, path) allowed
    allow: Vec<(String, String, String)>,
    configmap_reads: AtomicUsize,
}

impl Fake {
    fn violation(&self, v: String) {
        self.violations.lock().unwrap().push(v);
    }

    /// vigil's credentials, JSON, the right apiVersion/kind, and only the documented top-level fields.
    fn check(&self, h: &HeaderMap, body: &Value, kind: &str, api_version: &str) {
        if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SA_TOKEN}")) {
            self.violation(format!("{kind}: not sent with vigil's service account token"));
        }
        if !h.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json")) {
            self.violation(format!("{kind}: content-type is not application/json"));
        }
        if body["apiVersion"] != api_version || body["kind"] != kind {
            self.violation(format!("{kind}: apiVersion/kind wrong in {body}"));
        }
        if let Some(o) = body.as_object() {
            for k in o.keys() {
                if !["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()) {
                    self.violation(format!("{kind}: unexpected top-level field {k}"));
                }
            }
        }
    }
}

async fn token_review(State(f): State<Arc<Fake>>, h: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    f.token_reviews.fetch_add(1, Ordering::SeqCst);
    f.check(&h, &body, "TokenReview", "authentication.k8s.io/v1");
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        f.violation("TokenReview: spec.token missing".into());
    }
    let mut answer = body.clone();
    answer["status"] = match f.tokens.get(token) {
        Some(user) => json!({"authenticated": true, "user": {"username": user, "uid": "4f1c", "groups": ["system:serviceaccounts", "system:authenticated"]}}),
        None => json!({"authenticated": false, "error": "token lookup failed"}),
    };
    (StatusCode::CREATED, Json(answer))
}

async fn access_review(State(f): State<Arc<Fake>>, h: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    f.access_reviews.fetch_add(1, Ordering::SeqCst);
    f.check(&h, &body, "SubjectAccessReview", "authorization.k8s.io/v1");
    let spec = &body["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    if spec["groups"] != json!(["system:serviceaccounts", "system:authenticated"]) || spec["uid"] != "4f1c" {
        f.violation(format!("SubjectAccessReview: the TokenReview's uid/groups not passed on: {spec}"));
    }
    let nr = &spec["nonResourceAttributes"];
    if nr.is_null() || !spec["resourceAttributes"].is_null() {
        f.violation(format!("SubjectAccessReview: expected only nonResourceAttributes: {spec}"));
    }
    let (verb, path) = (nr["verb"].as_str().unwrap_or_default(), nr["path"].as_str().unwrap_or_default());
    let allowed = f.allow.iter().any(|(u, v, p)| u == user && v == verb && p == path);
    let mut answer = body.clone();
    answer["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"vigil-readers\""})
    } else {
        json!({"allowed": false, "reason": "no RBAC policy matched"})
    };
    (StatusCode::CREATED, Json(answer))
}

/// kube-system/extension-apiserver-authentication as a cluster without a front proxy publishes it.
async fn auth_configmap(State(f): State<Arc<Fake>>, h: HeaderMap) -> Json<Value> {
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SA_TOKEN}")) {
        f.violation("ConfigMap read without vigil's service account token".into());
    }
    f.configmap_reads.fetch_add(1, Ordering::SeqCst);
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    Json(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
        "data": {"client-ca-file": ca.pem()}}))
}

/// The fake API server on loopback; `stop` closes its port (idle connections included).
struct FakeApi {
    addr: SocketAddr,
    state: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApi {
    async fn start(fake: Fake) -> FakeApi {
        let state = Arc::new(fake);
        let app = Router::new()
            .route("/apis/authentication.k8s.io/v1/tokenreviews", post(token_review))
            .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", post(access_review))
            .route(
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                axum::routing::get(auth_configmap),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        FakeApi { addr, state, stop: Some(tx), task: Some(task) }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t).await.expect("fake API server stops").unwrap();
        }
    }

    fn kubeconfig(&self, dir: &std::path::Path) -> String {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: 'http://{}'}}\nusers:\n- name: vigil\n  user: {{token: {SA_TOKEN}}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: vigil}}\ncurrent-context: fake\n",
                self.addr
            ),
        )
        .unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

const RULES: &str = "groups:\n  - name: g\n    rules:\n      - alert: Always\n        expr: vector(1)\n";
const NOTIFY: &str = "route:\n  receiver: none\nreceivers:\n  - name: none\n";
const TOKENS: &str = "tokens:\n  - {token: grafana-read-0123456789, user: grafana, groups: [dashboards], access: read}\n  - {token: ops-write-0123456789ab, user: ops, access: write}\n";

/// (status, WWW-Authenticate, body) of one request, with a deadline.
async fn call(c: &reqwest::Client, method: reqwest::Method, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Option<String>, String) {
    let mut r = c.request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = tokio::time::timeout(Duration::from_secs(20), r.send()).await.expect("request within 20s").expect("vigil answers");
    let www = resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), www, resp.text().await.unwrap())
}

async fn wait_ready(agg: &mut Aggregator) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/healthz", agg.base)).await {
            if r.status().as_u16() == 200 {
                return;
            }
        }
        if let Some(st) = agg.child.try_wait().unwrap() {
            panic!("aggregator exited at start-up: {st}");
        }
        assert!(Instant::now() < deadline, "aggregator not serving /healthz after 60s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_token_file_token_review_and_access_review() {
    let dir = tempfile::tempdir().unwrap();
    let api_down_later = Fake {
        tokens: HashMap::from([
            ("sa-grafana".to_string(), "system:serviceaccount:monitoring:grafana".to_string()),
            ("sa-other".to_string(), "system:serviceaccount:default:other".to_string()),
        ]),
        allow: vec![("system:serviceaccount:monitoring:grafana".into(), "get".into(), "/api/v1/query".into())],
        ..Default::default()
    };
    let mut api = FakeApi::start(api_down_later).await;
    let (rules, notify, tokens) = (dir.path().join("rules.yml"), dir.path().join("notify.yml"), dir.path().join("tokens.yml"));
    std::fs::write(&rules, RULES).unwrap();
    std::fs::write(&notify, NOTIFY).unwrap();
    std::fs::write(&tokens, TOKENS).unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let mut agg = Aggregator::start(&[
        "--nodes",
        "127.0.0.1:9",
        "--rule-file",
        rules.to_str().unwrap(),
        "--notify-config",
        notify.to_str().unwrap(),
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authentication-kubeconfig",
        &kubeconfig,
    ]);
    wait_ready(&mut agg).await;
    let b = agg.base.clone();
    let c = reqwest::Client::new();
    let q = format!("{b}/api/v1/query?query=vector(1)");

    // No credentials: 401 with WWW-Authenticate and a body; health stays open.
    let (s, www, body) = call(&c, reqwest::Method::GET, &q, None, None).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(www.as_deref(), Some("Bearer realm=\"vigil\""));
    assert!(body.contains("no credentials"), "{body}");

    // Static tokens: read may query but not reload or silence; write may.
    let (s, _, body) = call(&c, reqwest::Method::GET, &q, Some("grafana-read-0123456789"), None).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"status\":\"success\""), "{body}");
    let (s, _, body) = call(&c, reqwest::Method::POST, &format!("{b}/api/v1/query"), Some("grafana-read-0123456789"), None).await;
    assert_ne!(s, 403, "a POSTed query is a read: {body}");
    let reload = format!("{b}/-/reload");
    let (s, _, body) = call(&c, reqwest::Method::POST, &reload, Some("grafana-read-0123456789"), None).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Forbidden (user=grafana, verb=create, path=/-/reload)"), "{body}");
    let (s, _, body) = call(&c, reqwest::Method::POST, &reload, Some("ops-write-0123456789ab"), None).await;
    assert_eq!(s, 200, "{body}");
    let now = chrono::Utc::now();
    let silence = json!({
        "matchers": [{"name": "alertname", "value": "Always", "isRegex": false, "isEqual": true}],
        "startsAt": now.to_rfc3339(),
        "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
        "createdBy": "test",
        "comment": "security_auth"
    });
    let silences = format!("{b}/api/v2/silences");
    let (s, _, body) = call(&c, reqwest::Method::POST, &silences, Some("grafana-read-0123456789"), Some(silence.clone())).await;
    assert_eq!(s, 403, "{body}");
    let (s, _, body) = call(&c, reqwest::Method::POST, &silences, Some("ops-write-0123456789ab"), Some(silence)).await;
    assert_eq!(s, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"].as_str().expect("silenceID").to_string();
    let one = format!("{b}/api/v2/silence/{id}");
    let (s, _, body) = call(&c, reqwest::Method::DELETE, &one, Some("grafana-read-0123456789"), None).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("verb=delete"), "{body}");
    let (s, _, body) = call(&c, reqwest::Method::DELETE, &one, Some("ops-write-0123456789ab"), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 0, "static tokens never reach the API server");
    assert_eq!(api.state.configmap_reads.load(Ordering::SeqCst), 1, "the published CAs are read once at start");

    // A service account token: TokenReview, then SubjectAccessReview; both cached.
    for _ in 0..3 {
        let (s, _, body) = call(&c, reqwest::Method::GET, &q, Some("sa-grafana"), None).await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 1, "cache hit asks no TokenReview");
    assert_eq!(api.state.access_reviews.load(Ordering::SeqCst), 1, "cache hit asks no SubjectAccessReview");
    let (s, _, body) = call(&c, reqwest::Method::POST, &reload, Some("sa-grafana"), None).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Forbidden (user=system:serviceaccount:monitoring:grafana, verb=create, path=/-/reload): no RBAC policy matched"), "{body}");
    let (s, www, body) = call(&c, reqwest::Method::GET, &q, Some("forged"), None).await;
    assert_eq!((s, www.is_some()), (401, true), "{body}");
    assert!(api.state.violations.lock().unwrap().is_empty(), "{:?}", api.state.violations.lock().unwrap());

    // The API server goes down: new tokens are 401, undecided requests 500 (kube-rbac-proxy's
    // answers), cached answers and static tokens keep working, vigil keeps serving.
    api.stop().await;
    let (s, www, body) = call(&c, reqwest::Method::GET, &q, Some("sa-other"), None).await;
    assert_eq!((s, www.is_some()), (401, true), "{body}");
    let (s, _, body) = call(&c, reqwest::Method::GET, &format!("{b}/api/v1/labels"), Some("sa-grafana"), None).await;
    assert_eq!(s, 500, "{body}");
    assert!(body.contains("Authorization error (user=system:serviceaccount:monitoring:grafana, verb=get, path=/api/v1/labels)"), "{body}");
    let (s, _, _) = call(&c, reqwest::Method::GET, &q, Some("sa-grafana"), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&c, reqwest::Method::GET, &q, Some("grafana-read-0123456789"), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&c, reqwest::Method::GET, &format!("{b}/healthz"), None, None).await;
    assert_eq!(s, 200);
}

/// Runs `vigil aggregator <args>` expecting it to exit at start-up; returns its stderr.
fn start_fails(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("aggregator")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vigil aggregator {args:?} still running after 30s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "vigil aggregator {args:?} exited 0");
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn write_endpoints_on_a_non_loopback_listener_without_auth_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    // The check runs before anything binds: nothing listens beyond loopback.
    let listen = format!("0.0.0.0:{}", free_port());
    let err = start_fails(&["--listen", &listen, "--nodes", "127.0.0.1:9", "--rule-file", rules.to_str().unwrap()]);
    assert!(err.contains(&format!("--listen {listen} is not a loopback address")), "{err}");
    assert!(err.contains("/-/reload") && err.contains("--token-auth-file"), "{err}");

    // Bad auth options are start-up errors naming the flag and the file.
    let tokens = dir.path().join("tokens.yml");
    std::fs::write(&tokens, "tokens:\n  - {token: short, user: a, access: read}\n").unwrap();
    let port = free_port().to_string();
    let err = start_fails(&["--listen", &format!("127.0.0.1:{port}"), "--nodes", "127.0.0.1:9", "--token-auth-file", tokens.to_str().unwrap()]);
    assert!(err.contains("--token-auth-file") && err.contains("tokens.yml") && err.contains("entry 0"), "{err}");
    let err = start_fails(&["--listen", &format!("127.0.0.1:{port}"), "--nodes", "127.0.0.1:9", "--authentication-kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(err.contains("--authentication-kubeconfig /nonexistent/kubeconfig"), "{err}");
    let err = start_fails(&["--listen", &format!("127.0.0.1:{port}"), "--nodes", "127.0.0.1:9", "--authentication-token-webhook-cache-ttl", "soon"]);
    assert!(err.contains("--authentication-token-webhook-cache-ttl") && err.contains("soon"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_auth_section_and_loopback_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let cfg = dir.path().join("agg.yml");
    std::fs::write(&cfg, format!("nodes: ['127.0.0.1:9']\nauth:\n  token_auth_file: {}\n", tokens.display())).unwrap();
    let mut agg = Aggregator::start(&["--config", cfg.to_str().unwrap()]);
    wait_ready(&mut agg).await;
    let c = reqwest::Client::new();
    let q = format!("{}/api/v1/query?query=vector(1)", agg.base);
    let (s, _, _) = call(&c, reqwest::Method::GET, &q, None, None).await;
    assert_eq!(s, 401);
    let (s, _, _) = call(&c, reqwest::Method::GET, &q, Some("grafana-read-0123456789"), None).await;
    assert_eq!(s, 200);
    drop(agg);

    // An unknown key in the auth section is an error naming it.
    std::fs::write(&cfg, "nodes: ['127.0.0.1:9']\nauth:\n  token_file: x\n").unwrap();
    let err = start_fails(&["--listen", &format!("127.0.0.1:{}", free_port()), "--config", cfg.to_str().unwrap()]);
    assert!(err.contains("token_file"), "{err}");

    // Loopback without any auth option: open, as `vigil up` runs (rules and reload included).
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let mut agg = Aggregator::start(&["--nodes", "127.0.0.1:9", "--rule-file", rules.to_str().unwrap()]);
    wait_ready(&mut agg).await;
    let q = format!("{}/api/v1/query?query=vector(1)", agg.base);
    let (s, _, body) = call(&c, reqwest::Method::GET, &q, None, None).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = call(&c, reqwest::Method::POST, &format!("{}/-/reload", agg.base), None, None).await;
    assert_eq!(s, 200, "{body}");
}

/// A `vigil <sub>` process on a loopback port, killed when dropped.
struct Proc {
    child: std::process::Child,
    base: String,
}

impl Proc {
    fn start(sub: &str, args: &[&str]) -> Proc {
        let listen = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg(sub)
            .arg("--listen")
            .arg(&listen)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Proc { child, base: format!("http://{listen}") }
    }

    async fn ready(&mut self) {
        self.ready_with(&reqwest::Client::new()).await
    }

    async fn ready_with(&mut self, c: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = c.get(format!("{}/healthz", self.base)).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("exited at start-up: {st}");
            }
            assert!(Instant::now() < deadline, "/healthz not answering after 60s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_and_log_shipper_take_the_same_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let logs = dir.path().join("pods");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out.ndjson");
    let mut collector = Proc::start("collector", &["--token-auth-file", tokens.to_str().unwrap()]);
    let mut shipper = Proc::start(
        "log-shipper",
        &[
            "--root",
            logs.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--sink",
            &format!("file:{}", out.display()),
            "--token-auth-file",
            tokens.to_str().unwrap(),
        ],
    );
    collector.ready().await;
    shipper.ready().await;
    let c = reqwest::Client::new();
    for base in [&collector.base, &shipper.base] {
        let (s, www, body) = call(&c, reqwest::Method::GET, &format!("{base}/metrics"), None, None).await;
        assert_eq!((s, www.is_some()), (401, true), "{base}: {body}");
        let (s, _, body) = call(&c, reqwest::Method::GET, &format!("{base}/metrics"), Some("grafana-read-0123456789"), None).await;
        assert_eq!(s, 200, "{base}: {body}");
    }
    drop(collector);
    // Client certificates cannot reach a plain-HTTP listener: refused at start, saying why.
    let err = start_fails_sub("collector", &["--listen", &format!("127.0.0.1:{}", free_port()), "--client-ca-file", tokens.to_str().unwrap()]);
    assert!(err.contains("--client-ca-file") && err.contains("bearer tokens"), "{err}");
}

fn start_fails_sub(sub: &str, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil")).arg(sub).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vigil {sub} {args:?} still running after 30s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_https_listener_authenticates_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, "client-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "alice");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    let identity = reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes()).unwrap();
    let secure = format!("127.0.0.1:{}", free_port());
    let mut agg = Aggregator::start(&["--nodes", "127.0.0.1:9", "--secure-listen", &secure, "--client-ca-file", ca_file.to_str().unwrap()]);
    wait_ready(&mut agg).await;
    let q = format!("https://{secure}/api/v1/query?query=vector(1)");
    // The aggregator's serving certificate is self-signed: only the client side is under test.
    let with = reqwest::Client::builder().use_rustls_tls().danger_accept_invalid_certs(true).identity(identity).build().unwrap();
    let without = reqwest::Client::builder().use_rustls_tls().danger_accept_invalid_certs(true).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (s, _, body) = loop {
        match tokio::time::timeout(Duration::from_secs(10), with.get(&q).send()).await {
            Ok(Ok(r)) => {
                let s = r.status().as_u16();
                break (s, (), r.text().await.unwrap());
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("HTTPS listener not answering: {other:?}"),
        }
    };
    assert_eq!(s, 200, "{body}");
    let (s, www, body) = call(&without, reqwest::Method::GET, &q, None, None).await;
    assert_eq!((s, www.is_some()), (401, true), "{body}");
}

/// A CA, a serving certificate it signed for localhost/127.0.0.1, and a client certificate it
/// signed for `alice` (CN = user), as PEM files in `dir`: (ca, cert, key, client identity).
fn tls_files(dir: &std::path::Path) -> (String, std::path::PathBuf, std::path::PathBuf, reqwest::Identity) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, "vigil-test-ca");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = p.signed_by(&server_key, &ca, &ca_key).unwrap();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&crt, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, "alice");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = p.signed_by(&client_key, &ca, &ca_key).unwrap();
    let identity = reqwest::Identity::from_pem(format!("{}{}", client.pem(), client_key.serialize_pem()).as_bytes()).unwrap();
    (ca.pem(), crt, key, identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_and_log_shipper_serve_https_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, crt, key, identity) = tls_files(dir.path());
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let logs = dir.path().join("pods");
    std::fs::create_dir_all(&logs).unwrap();
    let data = dir.path().join("data");
    let sink = format!("file:{}", dir.path().join("out.ndjson").display());
    let shipper_args = ["--root", logs.to_str().unwrap(), "--data-dir", data.to_str().unwrap(), "--sink", &sink];
    let tls = ["--tls-cert-file", crt.to_str().unwrap(), "--tls-private-key-file", key.to_str().unwrap(), "--client-ca-file", ca_file.to_str().unwrap()];
    let root = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let trusting = reqwest::Client::builder().use_rustls_tls().add_root_certificate(root.clone()).build().unwrap();
    let with_cert = reqwest::Client::builder().use_rustls_tls().add_root_certificate(root).identity(identity).build().unwrap();
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();

    let mut collector = Proc::start("collector", &tls);
    let shipper_all: Vec<&str> = shipper_args.iter().chain(tls.iter()).copied().collect();
    let mut shipper = Proc::start("log-shipper", &shipper_all);
    for p in [&mut collector, &mut shipper] {
        let port = p.base.rsplit(':').next().unwrap().to_string();
        p.base = format!("https://localhost:{port}");
        p.ready_with(&trusting).await;
        // Client certificate → authenticated as alice (no kubeconfig: the CA is trusted for
        // everything); no credentials → 401 (/healthz stays open).
        let (s, _, body) = call(&with_cert, reqwest::Method::GET, &format!("{}/metrics", p.base), None, None).await;
        assert_eq!(s, 200, "{}: {body}", p.base);
        let (s, www, body) = call(&trusting, reqwest::Method::GET, &format!("{}/metrics", p.base), None, None).await;
        assert_eq!((s, www.is_some()), (401, true), "{}: {body}", p.base);
        // HTTPS only: plain HTTP on that port gets no answer.
        let r = plain.get(format!("http://127.0.0.1:{port}/healthz")).send().await;
        assert!(r.is_err(), "plain HTTP answered on the HTTPS port {port}: {r:?}");
    }
    drop(collector);
    drop(shipper);

    // Bad input: one of the pair, or a file that is not there, stops start-up naming the flag.
    let listen = format!("127.0.0.1:{}", free_port());
    let missing = dir.path().join("nope.crt");
    for (sub, extra) in [("collector", &[][..]), ("log-shipper", &shipper_args[..])] {
        let mut args = vec!["--listen", &listen, "--tls-cert-file", crt.to_str().unwrap()];
        args.extend(extra);
        let err = start_fails_sub(sub, &args);
        assert!(err.contains("--tls-cert-file") && err.contains("--tls-private-key-file"), "{sub}: {err}");
        let mut args = vec!["--listen", &listen, "--tls-cert-file", missing.to_str().unwrap(), "--tls-private-key-file", key.to_str().unwrap()];
        args.extend(extra);
        let err = start_fails_sub(sub, &args);
        assert!(err.contains("--tls-cert-file") && err.contains("nope.crt"), "{sub}: {err}");
    }
}
