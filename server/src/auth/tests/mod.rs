//! The layer on real sockets: a router like a component's behind [`Auth::layer`], served by
//! [`crate::serve`] over plain HTTP or over TLS configured by [`crate::tls::listener_config`] (as
//! every HTTPS listener is), against the loopback fake API server and the test CA that the root
//! tests use too (both included from `tests/support/` with `#[path]`: one copy). By concept:
//! `tokens` (static token file), `options` (start-up errors and checks), `delegated` (TokenReview,
//! SubjectAccessReview, their caches, the ConfigMap lookup), `certificates` (client and
//! front-proxy certificates over TLS).

#[path = "../../../../tests/support/kube_api.rs"]
#[allow(dead_code)]
mod kube_api;
#[path = "../../../../tests/support/tls.rs"]
#[allow(dead_code)]
mod test_tls;

mod certificates;
mod delegated;
mod options;
mod tokens;

use std::collections::HashMap;
use std::path::Path;

use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::json;
use tokio::sync::watch;

use super::*;
use kube_api::{Fake, FakeApi};

/// A router like a component's: a read, a write, health; the read answers with the [`User`].
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

/// [`app`] behind an [`Auth`], served on 127.0.0.1 until dropped.
struct Served {
    url: String,
    /// Over TLS: the PEM of the CA that signed the serving certificate, for clients to trust.
    server_ca: Option<String>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Over plain HTTP.
    async fn plain(auth: Auth) -> Served {
        Served::start(auth, false).await
    }

    /// Over TLS, asking for client certificates when `auth` has client CAs; each request then
    /// carries the connection's [`PeerCertificates`].
    async fn tls(auth: Auth) -> Served {
        Served::start(auth, true).await
    }

    async fn start(auth: Auth, tls: bool) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut opts, mut server_ca) = (crate::Options::default(), None);
        if tls {
            let dir = tempfile::tempdir().unwrap();
            let ca = test_tls::new_ca("serving-ca");
            let (cert, key) = test_tls::server_cert(&ca, &["127.0.0.1"]);
            let files = crate::tls::TlsOptions {
                cert_file: Some(dir.path().join("tls.crt")),
                key_file: Some(dir.path().join("tls.key")),
                cert_dir: None,
            };
            std::fs::write(files.cert_file.as_ref().unwrap(), cert.pem()).unwrap();
            std::fs::write(files.key_file.as_ref().unwrap(), key.serialize_pem()).unwrap();
            opts = opts.with_tls(crate::tls::listener_config(&files, addr, &auth).unwrap());
            server_ca = Some(ca.0);
        }
        let router = Arc::new(auth).layer(app());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(crate::serve(listener, router, opts, rx));
        let scheme = if tls { "https" } else { "http" };
        Served { url: format!("{scheme}://{addr}"), server_ca, stop, task }
    }

    /// A client of this server; over TLS it trusts the serving CA and presents `identity` (a
    /// certificate and key PEM from [`test_tls::client_cert`]) when given.
    fn client(&self, identity: Option<String>) -> reqwest::Client {
        let mut b = reqwest::Client::builder().use_rustls_tls();
        if let Some(ca) = &self.server_ca {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        if let Some(pem) = identity {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

/// A token file with a read token (grafana, group dashboards) and a write token (ops).
fn token_file(dir: &Path) -> PathBuf {
    let p = dir.join("tokens.yaml");
    std::fs::write(
        &p,
        "tokens:\n- {token: read-token-0123456789, user: grafana, groups: [dashboards], access: read}\n- {token: write-token-0123456789, user: ops, access: write}\n",
    )
    .unwrap();
    p
}

/// (status, WWW-Authenticate, body) of one request, with a deadline.
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

/// The API server of a cluster without a front proxy: two service account tokens, RBAC that lets
/// prometheus, alice and bob query and alice list nodes, and the client CA published.
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
        published: Some(json!({"client-ca-file": test_tls::new_ca("cluster-ca").0})),
        ..Default::default()
    }
}
