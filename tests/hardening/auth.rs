//! Who may talk to vigil, end to end: the real `vigil aggregator`, `collector` and `log-shipper`
//! with a static token file, client certificates over real TLS, and delegated
//! authentication/authorization against the loopback fake Kubernetes API server
//! (`support/kube_api.rs`), which follows the documented TokenReview (authentication.k8s.io/v1)
//! and SubjectAccessReview (authorization.k8s.io/v1) protocol and checks every request body it
//! receives. The layer itself is tested beside it (`server/src/auth/tests/`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::kube_api::{Fake, FakeApi};
use crate::support::tls::{client_cert, new_ca, server_cert};
use crate::support::{free_port, start_fails, vigil_bin, Proc};
use serde_json::{json, Value};

/// A `vigil <sub>` on a free loopback port (`base`, its URL), killed when dropped.
struct Vigil {
    proc: Proc,
    base: String,
}

impl Vigil {
    fn start(sub: &str, args: &[&str]) -> Vigil {
        let listen = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new(vigil_bin())
            .arg(sub)
            .arg("--listen")
            .arg(&listen)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        Vigil { proc: Proc { child, name: format!("vigil {sub}") }, base: format!("http://{listen}") }
    }

    async fn ready(&mut self) {
        self.ready_with(&reqwest::Client::new()).await
    }

    /// Waits until `/healthz` answers 200 through `c` (60 s); panics if the process exits.
    async fn ready_with(&mut self, c: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = c.get(format!("{}/healthz", self.base)).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(st) = self.proc.child.try_wait().unwrap() {
                panic!("{} exited at start-up: {st}", self.proc.name);
            }
            assert!(Instant::now() < deadline, "{}: /healthz not answering after 60s", self.proc.name);
            tokio::time::sleep(Duration::from_millis(100)).await;
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

/// The groups the fake's TokenReview gives a service account.
fn sa_groups() -> Vec<String> {
    vec!["system:serviceaccounts".into(), "system:authenticated".into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_token_file_token_review_and_access_review() {
    let dir = tempfile::tempdir().unwrap();
    let api_down_later = Fake {
        tokens: HashMap::from([
            ("sa-grafana".to_string(), ("system:serviceaccount:monitoring:grafana".to_string(), sa_groups())),
            ("sa-other".to_string(), ("system:serviceaccount:default:other".to_string(), sa_groups())),
        ]),
        allow: vec![("system:serviceaccount:monitoring:grafana".into(), "get".into(), "/api/v1/query".into())],
        // What a cluster without a front proxy publishes: the client CA only.
        published: Some(json!({"client-ca-file": new_ca("cluster-ca").0})),
        ..Default::default()
    };
    let mut api = FakeApi::start(api_down_later).await;
    let (rules, notify, tokens) = (dir.path().join("rules.yml"), dir.path().join("notify.yml"), dir.path().join("tokens.yml"));
    std::fs::write(&rules, RULES).unwrap();
    std::fs::write(&notify, NOTIFY).unwrap();
    std::fs::write(&tokens, TOKENS).unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let mut agg = Vigil::start("aggregator", &[
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
    agg.ready().await;
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
    assert_eq!(api.token_reviews(), 0, "static tokens never reach the API server");
    assert_eq!(api.configmap_reads(), 1, "the published CAs are read once at start");

    // A service account token: TokenReview, then SubjectAccessReview; both cached.
    for _ in 0..3 {
        let (s, _, body) = call(&c, reqwest::Method::GET, &q, Some("sa-grafana"), None).await;
        assert_eq!(s, 200, "{body}");
    }
    assert_eq!(api.token_reviews(), 1, "cache hit asks no TokenReview");
    assert_eq!(api.access_reviews(), 1, "cache hit asks no SubjectAccessReview");
    let (s, _, body) = call(&c, reqwest::Method::POST, &reload, Some("sa-grafana"), None).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("Forbidden (user=system:serviceaccount:monitoring:grafana, verb=create, path=/-/reload): no RBAC policy matched"), "{body}");
    let (s, www, body) = call(&c, reqwest::Method::GET, &q, Some("forged"), None).await;
    assert_eq!((s, www.is_some()), (401, true), "{body}");
    assert!(api.violations().is_empty(), "{:?}", api.violations());

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

#[test]
fn write_endpoints_on_a_non_loopback_listener_without_auth_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    // The check runs before anything binds: nothing listens beyond loopback.
    let listen = format!("0.0.0.0:{}", free_port());
    let err = start_fails("aggregator", &["--listen", &listen, "--nodes", "127.0.0.1:9", "--rule-file", rules.to_str().unwrap()]);
    assert!(err.contains(&format!("--listen {listen} is not a loopback address")), "{err}");
    assert!(err.contains("/-/reload") && err.contains("--token-auth-file"), "{err}");

    // Bad auth options are start-up errors naming the flag and the file.
    let tokens = dir.path().join("tokens.yml");
    std::fs::write(&tokens, "tokens:\n  - {token: short, user: a, access: read}\n").unwrap();
    let port = free_port().to_string();
    let err = start_fails("aggregator", &["--listen", &format!("127.0.0.1:{port}"), "--nodes", "127.0.0.1:9", "--token-auth-file", tokens.to_str().unwrap()]);
    assert!(err.contains("--token-auth-file") && err.contains("tokens.yml") && err.contains("entry 0"), "{err}");
    let err = start_fails("aggregator", &["--listen", &format!("127.0.0.1:{port}"), "--nodes", "127.0.0.1:9", "--authentication-kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(err.contains("--authentication-kubeconfig /nonexistent/kubeconfig"), "{err}");
    let err = start_fails("aggregator", &["--listen", &format!("127.0.0.1:{port}"), "--nodes", "127.0.0.1:9", "--authentication-token-webhook-cache-ttl", "soon"]);
    assert!(err.contains("--authentication-token-webhook-cache-ttl") && err.contains("soon"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_auth_section_and_loopback_without_auth() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let cfg = dir.path().join("agg.yml");
    std::fs::write(&cfg, format!("nodes: ['127.0.0.1:9']\nauth:\n  token_auth_file: {}\n", tokens.display())).unwrap();
    let mut agg = Vigil::start("aggregator", &["--config", cfg.to_str().unwrap()]);
    agg.ready().await;
    let c = reqwest::Client::new();
    let q = format!("{}/api/v1/query?query=vector(1)", agg.base);
    let (s, _, _) = call(&c, reqwest::Method::GET, &q, None, None).await;
    assert_eq!(s, 401);
    let (s, _, _) = call(&c, reqwest::Method::GET, &q, Some("grafana-read-0123456789"), None).await;
    assert_eq!(s, 200);
    drop(agg);

    // An unknown key in the auth section is an error naming it.
    std::fs::write(&cfg, "nodes: ['127.0.0.1:9']\nauth:\n  token_file: x\n").unwrap();
    let err = start_fails("aggregator", &["--listen", &format!("127.0.0.1:{}", free_port()), "--config", cfg.to_str().unwrap()]);
    assert!(err.contains("token_file"), "{err}");

    // Loopback without any auth option: open, as `vigil up` runs (rules and reload included).
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let mut agg = Vigil::start("aggregator", &["--nodes", "127.0.0.1:9", "--rule-file", rules.to_str().unwrap()]);
    agg.ready().await;
    let q = format!("{}/api/v1/query?query=vector(1)", agg.base);
    let (s, _, body) = call(&c, reqwest::Method::GET, &q, None, None).await;
    assert_eq!(s, 200, "{body}");
    let (s, _, body) = call(&c, reqwest::Method::POST, &format!("{}/-/reload", agg.base), None, None).await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_and_log_shipper_take_the_same_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.yml");
    std::fs::write(&tokens, TOKENS).unwrap();
    let logs = dir.path().join("pods");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out.ndjson");
    let mut collector = Vigil::start("collector", &["--token-auth-file", tokens.to_str().unwrap()]);
    let mut shipper = Vigil::start(
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
    let err = start_fails("collector", &["--listen", &format!("127.0.0.1:{}", free_port()), "--client-ca-file", tokens.to_str().unwrap()]);
    assert!(err.contains("--client-ca-file") && err.contains("bearer tokens"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_https_listener_authenticates_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = new_ca("client-ca");
    let ca_file = dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &ca.0).unwrap();
    let identity = reqwest::Identity::from_pem(client_cert(&ca, "alice", &[]).as_bytes()).unwrap();
    let secure = format!("127.0.0.1:{}", free_port());
    let mut agg = Vigil::start("aggregator", &["--nodes", "127.0.0.1:9", "--secure-listen", &secure, "--client-ca-file", ca_file.to_str().unwrap()]);
    agg.ready().await;
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
    let ca = new_ca("vigil-test-ca");
    let (server, server_key) = server_cert(&ca, &["localhost", "127.0.0.1"]);
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&crt, server.pem()).unwrap();
    std::fs::write(&key, server_key.serialize_pem()).unwrap();
    let identity = reqwest::Identity::from_pem(client_cert(&ca, "alice", &[]).as_bytes()).unwrap();
    (ca.0, crt, key, identity)
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

    let mut collector = Vigil::start("collector", &tls);
    let shipper_all: Vec<&str> = shipper_args.iter().chain(tls.iter()).copied().collect();
    let mut shipper = Vigil::start("log-shipper", &shipper_all);
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
        let err = start_fails(sub, &args);
        assert!(err.contains("--tls-cert-file") && err.contains("--tls-private-key-file"), "{sub}: {err}");
        let mut args = vec!["--listen", &listen, "--tls-cert-file", missing.to_str().unwrap(), "--tls-private-key-file", key.to_str().unwrap()];
        args.extend(extra);
        let err = start_fails(sub, &args);
        assert!(err.contains("--tls-cert-file") && err.contains("nope.crt"), "{sub}: {err}");
    }
}
