//! The layer against a loopback fake API server (TokenReview, SubjectAccessReview) and real TLS client certificates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::{HeaderMap, StatusCode};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::{json, Value};

use super::*;

/// The service account token vigil presents to the fake API server.
const SA_TOKEN: &str = "vigil-service-account-token";

/// What the fake API server saw and answers.
#[derive(Default)]
struct Fake {
    token_reviews: AtomicUsize,
    access_reviews: AtomicUsize,
    /// Request bodies that broke the documented protocol.
    violations: Mutex<Vec<String>>,
    /// token → (user, groups)
    tokens: HashMap<String, (String, Vec<String>)>,
    /// (user, verb, path-or-resource) allowed
    allow: Vec<(String, String, String)>,
    /// `data` of kube-system/extension-apiserver-authentication; `None`: 404.
    published: Option<Value>,
    configmap_reads: AtomicUsize,
}

fn violation(f: &Fake, what: String) {
    f.violations.lock().unwrap().push(what);
}

/// Checks what every call to the API server carries: vigil's credentials and a JSON body of the
/// right apiVersion and kind, with `spec` and nothing but `apiVersion`, `kind`, `metadata`, `spec`.
fn check_envelope(f: &Fake, h: &HeaderMap, body: &Value, kind: &str, group: &str) {
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SA_TOKEN}")) {
        violation(f, format!("{kind}: missing service account bearer token"));
    }
    if !h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        violation(f, format!("{kind}: content-type is not application/json"));
    }
    if body["apiVersion"] != json!(format!("{group}/v1")) || body["kind"] != json!(kind) {
        violation(f, format!("{kind}: wrong apiVersion/kind in {body}"));
    }
    for k in body
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_else(Vec::new)
    {
        if !["apiVersion", "kind", "metadata", "spec"].contains(&k.as_str()) {
            violation(f, format!("{kind}: unexpected field {k}"));
        }
    }
}

async fn token_review(
    State(f): State<Arc<Fake>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    f.token_reviews.fetch_add(1, Ordering::SeqCst);
    check_envelope(&f, &h, &body, "TokenReview", "authentication.k8s.io");
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        violation(&f, "TokenReview: spec.token is empty".into());
    }
    let status = match f.tokens.get(token) {
        Some((user, groups)) => {
            json!({"authenticated": true, "user": {"username": user, "uid": "u-1", "groups": groups}})
        }
        None => json!({"authenticated": false, "error": "invalid bearer token"}),
    };
    let mut answer = body.clone();
    answer["status"] = status;
    answer["metadata"] = json!({"creationTimestamp": null});
    (StatusCode::CREATED, Json(answer))
}

async fn access_review(
    State(f): State<Arc<Fake>>,
    h: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    f.access_reviews.fetch_add(1, Ordering::SeqCst);
    check_envelope(&f, &h, &body, "SubjectAccessReview", "authorization.k8s.io");
    let spec = &body["spec"];
    let user = spec["user"].as_str().unwrap_or_default().to_string();
    if user.is_empty() {
        violation(&f, "SubjectAccessReview: spec.user is empty".into());
    }
    let (res, nonres) = (&spec["resourceAttributes"], &spec["nonResourceAttributes"]);
    if res.is_null() == nonres.is_null() {
        violation(&f, format!("SubjectAccessReview: exactly one of resourceAttributes and nonResourceAttributes: {spec}"));
    }
    let (verb, what) = if !nonres.is_null() {
        (
            nonres["verb"].as_str().unwrap_or_default(),
            nonres["path"].as_str().unwrap_or_default().to_string(),
        )
    } else {
        if res["group"] != json!("metrics.k8s.io") || res["version"] != json!("v1beta1") {
            violation(
                &f,
                format!("SubjectAccessReview: unexpected group/version {res}"),
            );
        }
        (
            res["verb"].as_str().unwrap_or_default(),
            res["resource"].as_str().unwrap_or_default().to_string(),
        )
    };
    let allowed = f
        .allow
        .iter()
        .any(|(u, v, p)| *u == user && v == verb && *p == what);
    let mut answer = body.clone();
    answer["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding"})
    } else {
        json!({"allowed": false, "reason": "no RBAC policy matched"})
    };
    (StatusCode::CREATED, Json(answer))
}

async fn auth_configmap(State(f): State<Arc<Fake>>, h: HeaderMap) -> (StatusCode, Json<Value>) {
    f.configmap_reads.fetch_add(1, Ordering::SeqCst);
    if h.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {SA_TOKEN}")) {
        violation(
            &f,
            "ConfigMap read without the service account token".into(),
        );
    }
    match &f.published {
        Some(data) => (
            StatusCode::OK,
            Json(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                "data": data})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "configmaps \"extension-apiserver-authentication\" not found",
                "reason": "NotFound", "code": 404}),
            ),
        ),
    }
}

/// A fake API server on loopback; stopped (port closed) when dropped or by `stop`.
struct FakeApi {
    addr: SocketAddr,
    state: Arc<Fake>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApi {
    async fn start(fake: Fake) -> Self {
        let state = Arc::new(fake);
        let app = Router::new()
            .route(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                post(token_review),
            )
            .route(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                post(access_review),
            )
            .route(
                "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication",
                get(auth_configmap),
            )
            .fallback(|uri: http::Uri| async move {
                (
                    StatusCode::NOT_FOUND,
                    format!("fake API server: no route {uri}"),
                )
            })
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
                .unwrap();
        });
        FakeApi {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Takes the API server down: the port refuses connections afterwards.
    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(5), t)
                .await
                .is_err()
            {
                panic!("fake API server did not stop in 5s");
            }
        }
    }

    fn kubeconfig(&self, dir: &std::path::Path) -> String {
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

    fn violations(&self) -> Vec<String> {
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

/// A router like a component's: a read, a write, health; handlers see the [`User`].
fn app() -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/api/v1/query",
            get(|Extension(u): Extension<User>| async move {
                format!("user={} groups={}", u.name, u.groups.join(","))
            }),
        )
        .route("/-/reload", post(|| async { "reloaded" }))
}

/// Serves `router` with `auth` on 127.0.0.1 over plain HTTP; the task stops when the guard drops.
struct Served {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_plain(auth: Auth) -> Served {
    let router = Arc::new(auth).layer(app());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    Served { url, task }
}

fn token_file(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("tokens.yaml");
    std::fs::write(
        &p,
        "tokens:\n- {token: read-token-0123456789, user: grafana, groups: [dashboards], access: read}\n- {token: write-token-0123456789, user: ops, access: write}\n",
    )
    .unwrap();
    p
}

async fn send(
    c: &reqwest::Client,
    m: reqwest::Method,
    url: String,
    token: Option<&str>,
) -> (u16, Option<String>, String) {
    let mut r = c.request(m, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = tokio::time::timeout(std::time::Duration::from_secs(20), r.send())
        .await
        .expect("request timed out")
        .unwrap();
    let www = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), www, resp.text().await.unwrap())
}

#[tokio::test]
async fn static_token_file_read_and_write_access() {
    let dir = tempfile::tempdir().unwrap();
    let args = Args {
        token_auth_file: Some(token_file(dir.path())),
        ..Default::default()
    };
    let s = serve_plain(Auth::new(&args).await.unwrap()).await;
    let c = reqwest::Client::new();
    let (code, www, body) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/api/v1/query", s.url),
        None,
    )
    .await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(www.as_deref(), Some(r#"Bearer realm="vigil""#));
    assert!(body.contains("no credentials"), "{body}");
    let (code, www, body) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/api/v1/query", s.url),
        Some("not-a-token"),
    )
    .await;
    assert_eq!((code, www.is_some()), (401, true), "{body}");
    assert!(body.contains("unknown bearer token"), "{body}");
    let (code, _, body) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/api/v1/query", s.url),
        Some("read-token-0123456789"),
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "user=grafana groups=dashboards")
    );
    let (code, _, body) = send(
        &c,
        reqwest::Method::POST,
        format!("{}/-/reload", s.url),
        Some("read-token-0123456789"),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("Forbidden (user=grafana, verb=create, path=/-/reload)"),
        "{body}"
    );
    let (code, _, body) = send(
        &c,
        reqwest::Method::POST,
        format!("{}/-/reload", s.url),
        Some("write-token-0123456789"),
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "reloaded"));
    // Health stays open; an unknown path is still behind authentication.
    let (code, _, _) = send(&c, reqwest::Method::GET, format!("{}/healthz", s.url), None).await;
    assert_eq!(code, 200);
    let (code, _, _) = send(&c, reqwest::Method::GET, format!("{}/nope", s.url), None).await;
    assert_eq!(code, 401);
    // A malformed Authorization header is a 401 that says so.
    let resp = c
        .get(format!("{}/api/v1/query", s.url))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().contains("Bearer <token>"));
}

fn delegated_fake() -> Fake {
    Fake {
        tokens: HashMap::from([
            (
                "sa-prometheus".to_string(),
                (
                    "system:serviceaccount:monitoring:prometheus".to_string(),
                    vec!["system:serviceaccounts".to_string()],
                ),
            ),
            (
                "sa-nobody".to_string(),
                ("system:serviceaccount:default:nobody".to_string(), vec![]),
            ),
        ]),
        allow: vec![
            (
                "system:serviceaccount:monitoring:prometheus".into(),
                "get".into(),
                "/api/v1/query".into(),
            ),
            ("alice".into(), "get".into(), "/api/v1/query".into()),
            ("bob".into(), "get".into(), "/api/v1/query".into()),
            ("alice".into(), "list".into(), "nodes".into()),
        ],
        // What a cluster without a front proxy publishes: the client CA only.
        published: Some(json!({"client-ca-file": ca("cluster-ca").cert.pem()})),
        ..Default::default()
    }
}

#[tokio::test]
async fn token_review_and_access_review_with_caches_and_an_api_server_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut api = FakeApi::start(delegated_fake()).await;
    let args = Args {
        authentication_kubeconfig: Some(api.kubeconfig(dir.path())),
        ..Default::default()
    };
    let s = serve_plain(Auth::new(&args).await.unwrap()).await;
    let c = reqwest::Client::new();
    let q = format!("{}/api/v1/query", s.url);

    let (code, _, body) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        "user=system:serviceaccount:monitoring:prometheus groups=system:serviceaccounts"
    );
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 1);
    assert_eq!(api.state.access_reviews.load(Ordering::SeqCst), 1);
    // Cache hit: neither review is asked again within the TTL.
    for _ in 0..3 {
        let (code, _, _) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-prometheus")).await;
        assert_eq!(code, 200);
    }
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 1);
    assert_eq!(api.state.access_reviews.load(Ordering::SeqCst), 1);

    // Authenticated but not allowed: 403 with the reason; the denial is cached too.
    let r = format!("{}/-/reload", s.url);
    let (code, _, body) = send(&c, reqwest::Method::POST, r.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(
            "user=system:serviceaccount:monitoring:prometheus, verb=create, path=/-/reload"
        ),
        "{body}"
    );
    assert!(body.contains("no RBAC policy matched"), "{body}");
    let (code, _, _) = send(&c, reqwest::Method::POST, r.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 403);
    assert_eq!(api.state.access_reviews.load(Ordering::SeqCst), 2);

    // A token the API server does not know: 401, cached as well.
    for _ in 0..2 {
        let (code, www, body) = send(&c, reqwest::Method::GET, q.clone(), Some("stolen")).await;
        assert_eq!((code, www.is_some()), (401, true), "{body}");
    }
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 2);
    assert!(api.violations().is_empty(), "{:?}", api.violations());

    // The API server goes down: a cached identity and decision still serve; a new token is 401
    // (it cannot be reviewed); a known token needing a new decision is 500; the listener lives on.
    api.stop().await;
    let (code, _, _) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-prometheus")).await;
    assert_eq!(code, 200);
    let (code, www, body) = send(&c, reqwest::Method::GET, q.clone(), Some("sa-nobody")).await;
    assert_eq!((code, www.is_some()), (401, true), "{body}");
    assert!(body.contains("could not be checked"), "{body}");
    let (code, _, body) = send(
        &c,
        reqwest::Method::GET,
        format!("{}/nope", s.url),
        Some("sa-prometheus"),
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("Authorization error (user=system:serviceaccount:monitoring:prometheus, verb=get, path=/nope)"), "{body}");
    let (code, _, _) = send(&c, reqwest::Method::GET, format!("{}/healthz", s.url), None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn zero_ttls_ask_the_api_server_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(delegated_fake()).await;
    let args = Args {
        authentication_kubeconfig: Some(api.kubeconfig(dir.path())),
        authentication_token_webhook_cache_ttl: Some(vigil_common::Duration::ZERO),
        authorization_webhook_cache_authorized_ttl: Some(vigil_common::Duration::ZERO),
        ..Default::default()
    };
    let s = serve_plain(Auth::new(&args).await.unwrap()).await;
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let (code, _, _) = send(
            &c,
            reqwest::Method::GET,
            format!("{}/api/v1/query", s.url),
            Some("sa-prometheus"),
        )
        .await;
        assert_eq!(code, 200);
    }
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 3);
    assert_eq!(api.state.access_reviews.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn bad_options_are_errors_naming_the_flag() {
    // A TTL is a duration where it is read: a flag or a config key.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        auth: Args,
    }
    let e = <Cli as clap::Parser>::try_parse_from([
        "vigil",
        "--authentication-token-webhook-cache-ttl",
        "ten",
    ])
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("--authentication-token-webhook-cache-ttl") && e.contains("ten"),
        "{e}"
    );
    let ok = <Cli as clap::Parser>::try_parse_from(["vigil", "--authorization-webhook-cache-authorized-ttl", "1m30s"]).unwrap();
    assert_eq!(ok.auth.authorization_webhook_cache_authorized_ttl, Some(vigil_common::Duration::from_secs(90)));
    let e = vigil_common::config::from_yaml::<Args>(
        "authorization_webhook_cache_unauthorized_ttl: 10\n",
        std::path::Path::new("c.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("key `authorization_webhook_cache_unauthorized_ttl`") && e.contains("no unit"),
        "{e}"
    );
    let e = Auth::new(&Args {
        requestheader_allowed_names: vec!["x".into()],
        ..Default::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("--requestheader-allowed-names") && e.contains("--requestheader-client-ca-file"),
        "{e}"
    );
    let e = Auth::new(&Args {
        client_ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("--client-ca-file /nonexistent/ca.pem"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let e = Auth::new(&Args {
        requestheader_client_ca_file: Some(empty),
        ..Default::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("--requestheader-client-ca-file") && e.contains("no PEM certificate"),
        "{e}"
    );
    let e = Auth::new(&Args {
        authentication_kubeconfig: Some("/nonexistent/kubeconfig".into()),
        ..Default::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("--authentication-kubeconfig /nonexistent/kubeconfig"),
        "{e}"
    );
    let e = Auth::new(&Args {
        authorization_always_allow_paths: vec!["healthz".into()],
        ..Default::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("--authorization-always-allow-paths"), "{e}");
}

#[tokio::test]
async fn writes_on_a_non_loopback_listener_need_authentication() {
    let off = Auth::disabled();
    let any: SocketAddr = "0.0.0.0:8082".parse().unwrap();
    let lo: SocketAddr = "127.0.0.1:8082".parse().unwrap();
    let e = off
        .check_listener("--listen", any, &["/-/reload", "/api/v2/silences"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--listen 0.0.0.0:8082")
            && e.contains("/-/reload, /api/v2/silences")
            && e.contains("--token-auth-file"),
        "{e}"
    );
    off.check_listener("--listen", lo, &["/-/reload"]).unwrap();
    off.check_listener("--listen", any, &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let on = Auth::new(&Args {
        token_auth_file: Some(token_file(dir.path())),
        ..Default::default()
    })
    .await
    .unwrap();
    on.check_listener("--listen", any, &["/-/reload"]).unwrap();
}

// ---- TLS client certificates ----

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A client certificate and key (PEM, for reqwest's identity) signed by `ca`.
fn client_identity(ca: &Ca, cn: &str, orgs: &[&str]) -> reqwest::Identity {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    for o in orgs {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    reqwest::Identity::from_pem(format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes())
        .unwrap()
}

/// Serves `router` over TLS as a vigil listener does: the handshake asks for a client certificate
/// with [`Auth::client_cert_verifier`], and the chain goes into every request as [`PeerCertificates`].
async fn serve_tls(auth: Auth) -> (Served, String) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "vigil");
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_client_cert_verifier(auth.client_cert_verifier().expect("a CA file is set"))
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let router = Arc::new(auth).layer(app());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, router) = (acceptor.clone(), router.clone());
            conns.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls.get_ref().1.peer_certificates().map(|c| {
                    PeerCertificates(Arc::new(c.iter().map(|c| c.clone().into_owned()).collect()))
                });
                let service = tower::ServiceExt::map_request(
                    router,
                    move |req: http::Request<hyper::body::Incoming>| {
                        let mut req = req.map(axum::body::Body::new);
                        if let Some(p) = &peer {
                            req.extensions_mut().insert(p.clone());
                        }
                        req
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(
                        TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(service),
                    )
                    .await;
            });
        }
    });
    (Served { url, task }, cert.pem())
}

fn tls_client(server_pem: &str, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(server_pem.as_bytes()).unwrap());
    if let Some(i) = identity {
        b = b.identity(i);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn client_certificates_and_the_front_proxy_over_real_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (clients, front, stranger) = (ca("client-ca"), ca("front-proxy-ca"), ca("someone-else"));
    let (client_pem, front_pem) = (
        dir.path().join("client-ca.pem"),
        dir.path().join("front-proxy-ca.pem"),
    );
    std::fs::write(&client_pem, clients.cert.pem()).unwrap();
    std::fs::write(&front_pem, front.cert.pem()).unwrap();
    let args = Args {
        client_ca_file: Some(client_pem),
        requestheader_client_ca_file: Some(front_pem),
        requestheader_allowed_names: vec!["front-proxy-client".into()],
        token_auth_file: Some(token_file(dir.path())),
        ..Default::default()
    };
    let (s, server_pem) = serve_tls(Auth::new(&args).await.unwrap()).await;
    let q = format!("{}/api/v1/query", s.url);

    // A certificate from --client-ca-file: CN is the user, O the groups (rcgen writes one O).
    let c = tls_client(
        &server_pem,
        Some(client_identity(&clients, "alice", &["ops"])),
    );
    let (code, _, body) = send(&c, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!((code, body.as_str()), (200, "user=alice groups=ops"));

    // The kube-apiserver's front proxy: the user comes from X-Remote-User / X-Remote-Group.
    let fp = tls_client(
        &server_pem,
        Some(client_identity(&front, "front-proxy-client", &[])),
    );
    let resp = fp
        .get(q.clone())
        .header("X-Remote-User", "bob")
        .header("X-Remote-Group", "system:authenticated")
        .header("X-Remote-Group", "devs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "user=bob groups=system:authenticated,devs"
    );
    // The front proxy's certificate without X-Remote-User identifies nobody.
    let (code, www, _) = send(&fp, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!((code, www.is_some()), (401, true));
    // X-Remote-User from a client that is not the front proxy is ignored: alice stays alice.
    let resp = c
        .get(q.clone())
        .header("X-Remote-User", "system:admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "user=alice groups=ops");
    // The front-proxy CA signed it, but the CN is not an allowed name.
    let other = tls_client(&server_pem, Some(client_identity(&front, "mallory", &[])));
    let resp = other
        .get(q.clone())
        .header("X-Remote-User", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("\"mallory\" is not in --requestheader-allowed-names"));

    // No certificate, no token: 401; a token still works over TLS.
    let anon = tls_client(&server_pem, None);
    let (code, www, _) = send(&anon, reqwest::Method::GET, q.clone(), None).await;
    assert_eq!((code, www.is_some()), (401, true));
    let (code, _, body) = send(
        &anon,
        reqwest::Method::GET,
        q.clone(),
        Some("read-token-0123456789"),
    )
    .await;
    assert_eq!(
        (code, body.as_str()),
        (200, "user=grafana groups=dashboards")
    );

    // A certificate from an unknown CA fails the handshake.
    let bad = tls_client(&server_pem, Some(client_identity(&stranger, "eve", &[])));
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        bad.get(q.clone()).send(),
    )
    .await
    .unwrap();
    assert!(
        r.is_err(),
        "a stranger's certificate was accepted: {:?}",
        r.map(|r| r.status())
    );
}

#[tokio::test]
async fn certificate_users_are_authorized_with_subject_access_review() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(delegated_fake()).await;
    let clients = ca("client-ca");
    let client_pem = dir.path().join("client-ca.pem");
    std::fs::write(&client_pem, clients.cert.pem()).unwrap();
    let args = Args {
        client_ca_file: Some(client_pem),
        authorization_kubeconfig: Some(api.kubeconfig(dir.path())),
        ..Default::default()
    };
    let (s, server_pem) = serve_tls(Auth::new(&args).await.unwrap()).await;
    let alice = tls_client(
        &server_pem,
        Some(client_identity(&clients, "alice", &["ops"])),
    );
    let (code, _, body) = send(
        &alice,
        reqwest::Method::GET,
        format!("{}/api/v1/query", s.url),
        None,
    )
    .await;
    assert_eq!((code, body.as_str()), (200, "user=alice groups=ops"));
    let (code, _, body) = send(
        &alice,
        reqwest::Method::POST,
        format!("{}/-/reload", s.url),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("Forbidden (user=alice, verb=create, path=/-/reload)"),
        "{body}"
    );
    // metrics.k8s.io paths are asked as resources (list nodes allowed: on to the router's 404).
    let m = format!("{}/apis/metrics.k8s.io/v1beta1", s.url);
    let (code, _, _) = send(&alice, reqwest::Method::GET, format!("{m}/nodes"), None).await;
    assert_eq!(code, 404);
    let (code, _, body) = send(
        &alice,
        reqwest::Method::GET,
        format!("{m}/namespaces/kube-system/pods"),
        None,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("verb=list, resource=pods.metrics.k8s.io, namespace=kube-system"),
        "{body}"
    );
    assert_eq!(api.state.token_reviews.load(Ordering::SeqCst), 0);
    assert_eq!(api.state.access_reviews.load(Ordering::SeqCst), 4);
    assert!(api.violations().is_empty(), "{:?}", api.violations());
}

#[tokio::test]
async fn the_front_proxy_ca_published_by_the_api_server_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let front = ca("front-proxy-ca");
    let api = FakeApi::start(Fake {
        published: Some(json!({
            "requestheader-client-ca-file": front.cert.pem(),
            "requestheader-allowed-names": "[\"front-proxy-client\"]",
            "requestheader-username-headers": "[\"X-Remote-User\"]",
            "requestheader-group-headers": "[\"X-Remote-Group\"]",
            "requestheader-extra-headers-prefix": "[\"X-Remote-Extra-\"]",
        })),
        ..delegated_fake()
    })
    .await;
    let args = Args {
        authentication_kubeconfig: Some(api.kubeconfig(dir.path())),
        ..Default::default()
    };
    let (s, server_pem) = serve_tls(Auth::new(&args).await.unwrap()).await;
    assert_eq!(api.state.configmap_reads.load(Ordering::SeqCst), 1);
    let q = format!("{}/api/v1/query", s.url);
    let fp = tls_client(
        &server_pem,
        Some(client_identity(&front, "front-proxy-client", &[])),
    );
    let resp = fp
        .get(q.clone())
        .header("X-Remote-User", "bob")
        .header("X-Remote-Group", "devs")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), "user=bob groups=devs");
    let other = tls_client(&server_pem, Some(client_identity(&front, "mallory", &[])));
    let resp = other
        .get(q)
        .header("X-Remote-User", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(api.violations().is_empty(), "{:?}", api.violations());
}

#[tokio::test]
async fn an_unreadable_authentication_configmap_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::start(Fake {
        published: None,
        ..delegated_fake()
    })
    .await;
    let kubeconfig = api.kubeconfig(dir.path());
    let e = Auth::new(&Args {
        authentication_kubeconfig: Some(kubeconfig.clone()),
        ..Default::default()
    })
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("extension-apiserver-authentication")
            && e.contains("--authentication-skip-lookup")
            && e.contains("not found"),
        "{e}"
    );
    let args = Args {
        authentication_kubeconfig: Some(kubeconfig),
        authentication_skip_lookup: true,
        ..Default::default()
    };
    let auth = Auth::new(&args).await.unwrap();
    assert!(auth.enabled() && auth.client_cert_verifier().is_none());
    assert_eq!(api.state.configmap_reads.load(Ordering::SeqCst), 1);
}
