//! Kubernetes labels and annotations: the real `vigil log-shipper` against a fake kubelet / API server (axum on
//! 127.0.0.1) serving the v1 PodList shape, shipping into the strict `_bulk` test server.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use crate::support::es_bulk::{EsServer, Options};
use crate::support::shipper::{append, container_dir, cri_line, wait_for, Shipper};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

const UID: &str = "6f3c0e7a-1b2c-4d5e-8f90-123456789abc";
const TOKEN: &str = "tok-123";

/// How the fake answers.
const GOOD: u8 = 0;
const SLOW: u8 = 1;
const MALFORMED: u8 = 2;
const FORBIDDEN: u8 = 3;

struct Fake {
    mode: AtomicU8,
    requests: AtomicU64,
    /// The API server form needs this node's fieldSelector.
    apiserver: bool,
}

fn pod_list() -> Value {
    json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "4711"},
        "items": [{
            "metadata": {
                "name": "web-0", "namespace": "shop", "uid": UID,
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"prometheus.io/scrape": "true", "secret.example.com/token": "do-not-ship"}
            },
            "spec": {"nodeName": "node-a", "containers": [{"name": "nginx", "image": "nginx:1.25"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "nginx", "ready": true, "restartCount": 0, "image": "docker.io/library/nginx:1.25",
                "imageID": "docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31",
                "containerID": "containerd://3b1d"
            }]}
        }]
    })
}

async fn pods(
    State(f): State<Arc<Fake>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    f.requests.fetch_add(1, Ordering::Relaxed);
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    if f.apiserver && q.get("fieldSelector").map(String::as_str) != Some("spec.nodeName=node-a") {
        return (
            StatusCode::BAD_REQUEST,
            "expected fieldSelector=spec.nodeName=node-a",
        )
            .into_response();
    }
    match f.mode.load(Ordering::Relaxed) {
        SLOW => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            axum::Json(pod_list()).into_response()
        }
        MALFORMED => (
            [("content-type", "application/json")],
            r#"{"kind":"PodList","items":"oops"}"#,
        )
            .into_response(),
        FORBIDDEN => (
            StatusCode::FORBIDDEN,
            [("content-type", "application/json")],
            r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods is forbidden: User \"system:serviceaccount:logging:vigil\" cannot list resource \"pods\" in API group \"\" at the cluster scope","reason":"Forbidden","code":403}"#,
        )
            .into_response(),
        _ => axum::Json(pod_list()).into_response(),
    }
}

async fn start_fake(apiserver: bool, mode: u8) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake {
        mode: AtomicU8::new(mode),
        requests: AtomicU64::new(0),
        apiserver,
    });
    let path = if apiserver { "/api/v1/pods" } else { "/pods" };
    let app = axum::Router::new()
        .route(path, get(pods))
        .with_state(fake.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (fake, url)
}

/// Writes the shipper's metadata settings (a token file, a 200 ms refresh) and starts it on
/// `root`, shipping to `es` in batches of at most 100 ms.
fn start_shipper(
    dir: &std::path::Path,
    root: &std::path::Path,
    es: &EsServer,
    source: &str,
    url: &str,
    extra: &str,
) -> Shipper {
    let token = dir.join("token");
    // The kubelet source trims the file at every read; kube's client (the API server source)
    // sends it as it is, so the shipper refuses a newline there at start.
    let newline = if source == "kubelet" { "\n" } else { "" };
    std::fs::write(&token, format!("{TOKEN}{newline}")).unwrap();
    let cfg = dir.join("shipper.yaml");
    std::fs::write(
        &cfg,
        format!(
            "kubernetes_metadata:\n  source: {source}\n  url: '{url}'\n  token_file: '{}'\n  refresh_interval: 200ms\n  exclude_annotations: ['secret.example.com/*']\n{extra}",
            token.display()
        ),
    )
    .unwrap();
    let sink = format!("es:{}", es.url());
    Shipper::start(
        root,
        &dir.join("data"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--sink",
            &sink,
            "--batch-timeout-ms",
            "100",
        ],
    )
}

fn docs_of(es: &EsServer, pod: &str) -> Vec<Value> {
    es.all_docs()
        .into_iter()
        .map(|(_, _, v)| v)
        .filter(|v| v["kubernetes"]["pod_name"] == pod)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_annotations_host_and_image_from_the_kubelet_and_the_api_server() {
    for source in ["kubelet", "apiserver"] {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let web = container_dir(&root, "shop", "web-0", UID, "nginx");
        let other = container_dir(&root, "shop", "gone-0", "0000-unknown", "app");
        let es = EsServer::start(Options::default()).await;
        let (fake, url) = start_fake(source == "apiserver", GOOD).await;
        let extra = if source == "apiserver" {
            "  node_name: node-a\n"
        } else {
            ""
        };
        let sh = start_shipper(tmp.path(), &root, &es, source, &url, extra);
        wait_for("a metadata refresh", Duration::from_secs(20), || {
            (fake.requests.load(Ordering::Relaxed) > 0).then_some(())
        })
        .await;
        let refreshed = wait_metric(
            &sh,
            "vigil_log_shipper_metadata_refreshes_total",
            1.0,
            Duration::from_secs(10),
        )
        .await;
        assert!(refreshed >= 1.0, "{source}: no refresh:\n{}", sh.stderr());
        for n in 0..20u64 {
            append(
                &web.join("0.log"),
                &cri_line(n + 1, "stdout", "F", &format!("web line {n}")),
            );
            append(
                &other.join("0.log"),
                &cri_line(n + 1, "stdout", "F", &format!("other line {n}")),
            );
        }
        wait_for("40 documents", Duration::from_secs(20), || {
            (es.doc_count() >= 40).then_some(())
        })
        .await;
        let web_docs = docs_of(&es, "web-0");
        assert_eq!(web_docs.len(), 20);
        for d in web_docs {
            let k = &d["kubernetes"];
            assert_eq!(
                k["labels"],
                json!({"app": "web", "tier": "front"}),
                "{source}: {d}"
            );
            assert_eq!(
                k["annotations"],
                json!({"prometheus.io/scrape": "true"}),
                "{source}: {d}"
            );
            assert_eq!(k["host"], "node-a");
            assert_eq!(k["container_image"], "docker.io/library/nginx:1.25");
            assert!(k["container_hash"].as_str().unwrap().contains("sha256:"));
            assert_eq!(k["namespace_name"], "shop");
            assert_eq!(k["pod_id"], UID);
        }
        // A pod the source does not list: path metadata only, counted as a miss.
        let others = docs_of(&es, "gone-0");
        assert_eq!(others.len(), 20);
        for d in others {
            assert!(d["kubernetes"].get("labels").is_none(), "{d}");
            assert_eq!(d["kubernetes"]["container_name"], "app");
        }
        assert!(
            sh.metric("vigil_log_shipper_metadata_misses_total")
                .await
                .unwrap()
                >= 1.0
        );
        assert!(
            sh.metric("vigil_log_shipper_metadata_lookups_total")
                .await
                .unwrap()
                >= 2.0
        );
        assert_eq!(
            sh.metric("vigil_log_shipper_metadata_pods").await,
            Some(1.0)
        );
    }
}

/// A metadata source that hangs, then answers garbage, never holds records back: they ship with path metadata
/// only, each failure is counted and logged, and once the source answers properly new records carry the labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_broken_metadata_source_never_stalls_shipping() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let web = container_dir(&root, "shop", "web-0", UID, "nginx");
    let es = EsServer::start(Options::default()).await;
    let (fake, url) = start_fake(false, SLOW).await;
    let sh = start_shipper(
        tmp.path(),
        &root,
        &es,
        "kubelet",
        &url,
        "  request_timeout: 1500ms\n",
    );
    wait_for(
        "the hanging metadata request",
        Duration::from_secs(20),
        || (fake.requests.load(Ordering::Relaxed) > 0).then_some(()),
    )
    .await;
    // The metadata request hangs for 1.5 s at a time; shipping must not wait for it.
    let log = web.join("0.log");
    ship(&es, &log, 0..100, "early", 100).await;
    for d in docs_of(&es, "web-0") {
        assert!(d["kubernetes"].get("labels").is_none(), "{d}");
        assert_eq!(d["kubernetes"]["namespace_name"], "shop");
    }
    fake.mode.store(MALFORMED, Ordering::Relaxed);
    wait_for(
        "a logged malformed PodList",
        Duration::from_secs(15),
        || sh.stderr().contains("not a PodList").then_some(()),
    )
    .await;
    let errors = wait_metric(
        &sh,
        "vigil_log_shipper_metadata_errors_total",
        2.0,
        Duration::from_secs(15),
    )
    .await;
    assert!(errors >= 2.0, "errors {errors}:\n{}", sh.stderr());
    ship(&es, &log, 100..150, "broken", 150).await;
    fake.mode.store(GOOD, Ordering::Relaxed);
    let r = wait_metric(
        &sh,
        "vigil_log_shipper_metadata_refreshes_total",
        1.0,
        Duration::from_secs(20),
    )
    .await;
    assert!(r >= 1.0, "no good refresh:\n{}", sh.stderr());
    ship(&es, &log, 150..170, "late", 170).await;
    let late: Vec<Value> = docs_of(&es, "web-0")
        .into_iter()
        .filter(|d| d["message"].as_str().unwrap().starts_with("late"))
        .collect();
    assert_eq!(late.len(), 20);
    for d in late {
        assert_eq!(d["kubernetes"]["labels"]["app"], "web", "{d}");
    }
    assert_eq!(es.doc_count(), 170, "every line exactly once");
}

/// Appends the CRI lines numbered `range` (messages `<what> <n>`) and waits until the index holds `total` documents.
async fn ship(
    es: &EsServer,
    log: &std::path::Path,
    range: std::ops::Range<u64>,
    what: &str,
    total: usize,
) {
    for n in range {
        append(log, &cri_line(n + 1, "stdout", "F", &format!("{what} {n}")));
    }
    wait_for(
        &format!("{total} documents after the {what} lines"),
        Duration::from_secs(10),
        || (es.doc_count() >= total).then_some(()),
    )
    .await;
}

/// Polls a metric of the shipper until it reaches `min`; returns its last value.
async fn wait_metric(sh: &Shipper, name: &str, min: f64, timeout: Duration) -> f64 {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let v = sh.metric(name).await.unwrap_or(0.0);
        if v >= min || std::time::Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The API server source, through kube's client: a refused list (403 and the API server's Status),
/// then a malformed one, are logged with the status and the start of the body and counted; the next
/// good list fills the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_malformed_api_server_list_is_logged_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    container_dir(&root, "shop", "web-0", UID, "nginx");
    let es = EsServer::start(Options::default()).await;
    let (fake, url) = start_fake(true, FORBIDDEN).await;
    let sh = start_shipper(tmp.path(), &root, &es, "apiserver", &url, "  node_name: node-a\n");
    let refused = format!("GET {url}/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a: HTTP 403: {{\"kind\":\"Status\"");
    wait_for("a logged 403", Duration::from_secs(20), || {
        let err = sh.stderr();
        (err.contains(&refused) && err.contains("pods is forbidden")).then_some(())
    })
    .await;
    let errors = wait_metric(&sh, "vigil_log_shipper_metadata_errors_total", 1.0, Duration::from_secs(10)).await;
    assert!(errors >= 1.0, "{}", sh.stderr());
    fake.mode.store(MALFORMED, Ordering::Relaxed);
    wait_for("a logged malformed PodList", Duration::from_secs(15), || {
        sh.stderr().contains("not a PodList").then_some(())
    })
    .await;
    assert_eq!(sh.metric("vigil_log_shipper_metadata_refreshes_total").await, Some(0.0));
    fake.mode.store(GOOD, Ordering::Relaxed);
    let r = wait_metric(&sh, "vigil_log_shipper_metadata_refreshes_total", 1.0, Duration::from_secs(15)).await;
    assert!(r >= 1.0, "no good refresh:\n{}", sh.stderr());
    assert_eq!(sh.metric("vigil_log_shipper_metadata_pods").await, Some(1.0));
}

/// `vigil log-shipper --config <yaml>` (with these variables removed) expected to exit non-zero at
/// start (within 30 s, or it is killed and the test fails); its stderr. `support::start_fails` with
/// a config file and a trimmed environment.
fn start_fails(dir: &std::path::Path, yaml: &str, env_remove: &[&str]) -> String {
    let cfg = dir.join("c.yaml");
    std::fs::write(&cfg, format!("{yaml}sink: {{stdout: true}}\n")).unwrap();
    let mut cmd = std::process::Command::new(crate::support::vigil_bin());
    cmd.args(["log-shipper", "--config"])
        .arg(&cfg)
        .args(["--root"])
        .arg(dir)
        .args(["--data-dir"])
        .arg(dir.join("d"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for v in env_remove {
        cmd.env_remove(v);
    }
    let mut p = crate::support::Proc {
        child: cmd.spawn().unwrap(),
        name: "vigil log-shipper".into(),
    };
    let what = format!("vigil log-shipper with {yaml:?} to exit at start-up");
    let status = crate::support::until_blocking(&what, Duration::from_secs(30), || {
        p.child.try_wait().unwrap()
    });
    let mut err = String::new();
    std::io::Read::read_to_string(p.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{yaml} exited 0:\n{err}");
    err
}

/// Bad settings stop the start with a message naming the key.
#[test]
fn bad_metadata_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let err = start_fails(
        dir,
        "kubernetes_metadata: {source: apiserver, url: 'http://127.0.0.1:1'}\n",
        &["NODE_NAME"],
    );
    assert!(err.contains("NODE_NAME"), "{err}");
    // No url and not in a pod: kube's in-cluster configuration names what is missing.
    let err = start_fails(
        dir,
        "kubernetes_metadata: {source: apiserver, node_name: node-a}\n",
        &["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"],
    );
    assert!(
        err.contains("kubernetes_metadata: the apiserver source needs url, or to run in a pod")
            && err.contains("KUBERNETES_SERVICE_HOST"),
        "{err}"
    );
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let err = start_fails(
        dir,
        &format!("kubernetes_metadata: {{source: apiserver, url: 'https://127.0.0.1:1', node_name: node-a, ca_file: '{}'}}\n", ca.display()),
        &[],
    );
    assert!(err.contains(&format!("kubernetes_metadata.ca_file {}: ", ca.display())), "{err}");
    let token = dir.join("token");
    std::fs::write(&token, "tok-123\n").unwrap();
    let err = start_fails(
        dir,
        &format!("kubernetes_metadata: {{source: apiserver, url: 'http://127.0.0.1:1', node_name: node-a, token_file: '{}'}}\n", token.display()),
        &[],
    );
    assert!(err.contains(&format!("kubernetes_metadata.token_file {}: white space (a newline?)", token.display())), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "log-shipper",
            "--kubelet-insecure-tls",
            "--sink",
            "stdout",
            "--root",
        ])
        .arg(tmp.path())
        .args(["--data-dir"])
        .arg(tmp.path().join("d"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kubelet-url"));
}
