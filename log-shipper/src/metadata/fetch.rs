//! Fetching a PodList body: from the node's kubelet (`GET <url>/pods`, not an API server route) over
//! reqwest, or from the API server (`/api/v1/pods?fieldSelector=spec.nodeName=<node>`) through one
//! `kube::Client` made by `vigil_common::kubernetes::Access`, which owns the in-cluster address, the
//! credentials (re-reading a rotated token file), the CA and the connect/read/write timeouts.

use super::{MetadataConfig, MetadataError, Source};
use vigil_common::error_chain;
use bytes::Bytes;
use std::path::PathBuf;
use std::time::Duration;
use vigil_common::kubernetes::{self, Access, AccessError};

/// How much of an error response's body an error keeps.
const BODY_IN_ERROR: usize = 300;

/// One source's client and what it lists.
pub(super) struct Fetcher {
    client: Client,
    /// The full URL listed, for errors and logs.
    url: String,
    /// Bounds one whole request, answer body included.
    timeout: Duration,
}

enum Client {
    /// The bearer token is read from `token_file` at every refresh (tokens rotate).
    Kubelet {
        http: reqwest::Client,
        token_file: Option<PathBuf>,
    },
    /// `list` is the path and query, relative to the client's API server.
    Apiserver { kube: kube::Client, list: http::Uri },
}

impl Fetcher {
    /// The client of `cfg.source` with the in-cluster defaults resolved.
    pub(super) async fn new(cfg: &MetadataConfig) -> Result<Self, MetadataError> {
        match cfg.source {
            Source::Kubelet => Self::kubelet(cfg),
            Source::Apiserver => Self::apiserver(cfg).await,
        }
    }

    fn kubelet(cfg: &MetadataConfig) -> Result<Self, MetadataError> {
        let base = cfg
            .url
            .as_deref()
            .ok_or_else(|| MetadataError::Config("the kubelet source needs url".into()))?;
        let mut b = reqwest::Client::builder().connect_timeout(cfg.request_timeout);
        if let Some(ca) = &cfg.ca_file {
            let ca_error = |reason: String| MetadataError::Ca {
                path: ca.clone(),
                reason,
            };
            let pem = std::fs::read(ca).map_err(|e| ca_error(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| ca_error(format!("not a PEM certificate: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        if cfg.insecure_skip_tls_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b
            .build()
            .map_err(|e| MetadataError::Client(error_chain(&e)))?;
        Ok(Fetcher {
            client: Client::Kubelet {
                http,
                token_file: token_file(cfg),
            },
            url: format!("{}/pods", base.trim_end_matches('/')),
            timeout: cfg.request_timeout,
        })
    }

    async fn apiserver(cfg: &MetadataConfig) -> Result<Self, MetadataError> {
        let node = cfg
            .node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|v| !v.is_empty()))
            .ok_or_else(|| MetadataError::Config("the apiserver source needs node_name or the NODE_NAME environment variable (fieldRef spec.nodeName) to list only this node's pods".into()))?;
        // The path and query only: kube's client puts its API server in front.
        let mut q = reqwest::Url::parse("http://apiserver/api/v1/pods").expect("a valid URL");
        q.query_pairs_mut()
            .append_pair("fieldSelector", &format!("spec.nodeName={node}"));
        let list: http::Uri = format!("{}?{}", q.path(), q.query().unwrap_or_default())
            .parse()
            .map_err(|e| MetadataError::Config(format!("node_name {node:?}: {e}")))?;
        let mut access = Access::new(match &cfg.url {
            Some(url) => kubernetes::Source::Url(url.clone()),
            None => kubernetes::Source::InCluster,
        })
        .with_timeout(cfg.request_timeout);
        access.token_file = token_file(cfg);
        // In-cluster, kube trusts the service account's CA; with a `url`, `ca_file` or else the
        // system's roots (as client-go does).
        access.ca_file = cfg.ca_file.clone();
        access.insecure_skip_tls_verify = cfg.insecure_skip_tls_verify;
        let config = access.config().await.map_err(|e| access_error(cfg, e))?;
        let url = format!(
            "{}{list}",
            config.cluster_url.to_string().trim_end_matches('/')
        );
        let kube = kubernetes::client(config).map_err(|e| match e {
            AccessError::Client(reason) => MetadataError::Client(reason),
            e => MetadataError::Client(e.to_string()),
        })?;
        Ok(Fetcher {
            client: Client::Apiserver { kube, list },
            url,
            timeout: cfg.request_timeout,
        })
    }

    /// The URL listed at every refresh.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// The body of a 2xx answer; any other status is an error with the start of its body.
    pub(super) async fn get(&self) -> Result<Bytes, MetadataError> {
        let (status, body) = tokio::time::timeout(self.timeout, self.send())
            .await
            .map_err(|_| self.fetch_error(format!("no answer within {:?}", self.timeout)))??;
        if !(200..300).contains(&status) {
            return Err(MetadataError::Status {
                url: self.url.clone(),
                status,
                body: String::from_utf8_lossy(&body[..body.len().min(BODY_IN_ERROR)]).into_owned(),
            });
        }
        Ok(body)
    }

    async fn send(&self) -> Result<(u16, Bytes), MetadataError> {
        let fetch = |e: &dyn std::error::Error| self.fetch_error(error_chain(e));
        match &self.client {
            Client::Kubelet { http, token_file } => {
                let mut req = http
                    .get(&self.url)
                    .header(http::header::ACCEPT, "application/json");
                if let Some(path) = token_file {
                    let token =
                        std::fs::read_to_string(path).map_err(|e| MetadataError::Token {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                    req = req.bearer_auth(token.trim());
                }
                let resp = req.send().await.map_err(|e| fetch(&e))?;
                let status = resp.status().as_u16();
                Ok((status, resp.bytes().await.map_err(|e| fetch(&e))?))
            }
            Client::Apiserver { kube, list } => {
                let req = http::Request::get(list.clone())
                    .header(http::header::ACCEPT, "application/json")
                    .body(Vec::new())
                    .expect("a GET of a parsed URI");
                let (status, body) = kubernetes::send(kube, req)
                    .await
                    .map_err(|reason| self.fetch_error(reason))?;
                Ok((status.as_u16(), body))
            }
        }
    }

    fn fetch_error(&self, reason: String) -> MetadataError {
        MetadataError::Fetch {
            url: self.url.clone(),
            reason,
        }
    }
}

/// `token_file`, else the service account's token when that file exists.
fn token_file(cfg: &MetadataConfig) -> Option<PathBuf> {
    let sa_token = kubernetes::token_file();
    cfg.token_file
        .clone()
        .or_else(|| sa_token.exists().then_some(sa_token))
}

/// An error of [`Access::config`] under the setting it concerns: `ca_file` or `token_file` when it
/// is about that file, else `url` or the in-cluster environment.
fn access_error(cfg: &MetadataConfig, e: AccessError) -> MetadataError {
    match e {
        AccessError::CaFile { path, reason } => MetadataError::Ca { path, reason },
        AccessError::TokenFile { path, reason } => MetadataError::Token { path, reason },
        e => match &cfg.url {
            Some(url) => MetadataError::Config(format!("url {url:?}: {e}")),
            None => MetadataError::Config(format!(
                "the apiserver source needs url, or to run in a pod (in-cluster): {e}"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};

    /// What a fake API server saw: the Authorization header and the query of each list.
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A fake API server on 127.0.0.1 answering `/api/v1/pods` with `status` and `body`.
    async fn fake_apiserver(status: u16, body: &'static str) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .route(
                "/api/v1/pods",
                axum::routing::get(
                    move |State(seen): State<Seen>, RawQuery(q): RawQuery, h: HeaderMap| async move {
                        let auth = h
                            .get("authorization")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        seen.lock().unwrap().push((auth, q.unwrap_or_default()));
                        (StatusCode::from_u16(status).unwrap(), body)
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn apiserver(url: &str, dir: &Path) -> MetadataConfig {
        let mut c = MetadataConfig::new(Source::Apiserver, Some(url.into()));
        c.node_name = Some("node-a".into());
        let token = dir.join("token");
        std::fs::write(&token, "tok-123").unwrap();
        c.token_file = Some(token);
        c
    }

    #[tokio::test]
    async fn the_apiserver_list_carries_the_token_and_this_nodes_field_selector() {
        let dir = tempfile::tempdir().unwrap();
        let (url, seen) = fake_apiserver(200, r#"{"kind":"PodList","items":[]}"#).await;
        let f = Fetcher::new(&apiserver(&url, dir.path())).await.unwrap();
        assert_eq!(
            f.url(),
            format!("{url}/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a")
        );
        assert_eq!(
            &f.get().await.unwrap()[..],
            br#"{"kind":"PodList","items":[]}"#
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![(
                "Bearer tok-123".to_string(),
                "fieldSelector=spec.nodeName%3Dnode-a".to_string()
            )]
        );
    }

    #[tokio::test]
    async fn a_refused_list_names_the_status_and_the_start_of_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = fake_apiserver(403, r#"{"kind":"Status","message":"pods is forbidden: User \"system:serviceaccount:logging:vigil\" cannot list resource \"pods\""}"#).await;
        let e = Fetcher::new(&apiserver(&url, dir.path()))
            .await
            .unwrap()
            .get()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("GET {url}/api/v1/pods?")), "{e}");
        assert!(
            e.contains("HTTP 403: {\"kind\":\"Status\",\"message\":\"pods is forbidden"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_apiserver_is_named() {
        let dir = tempfile::tempdir().unwrap();
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let e = Fetcher::new(&apiserver(&url, dir.path()))
            .await
            .unwrap()
            .get()
            .await
            .unwrap_err();
        assert!(matches!(e, MetadataError::Fetch { .. }), "{e}");
        let e = e.to_string();
        assert!(e.starts_with(&format!("GET {url}/api/v1/pods")), "{e}");
        assert!(e.to_lowercase().contains("connect"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_apiserver_times_out_after_request_timeout() {
        let dir = tempfile::tempdir().unwrap();
        // Accepts the connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut c = apiserver(&url, dir.path());
        c.request_timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let e = Fetcher::new(&c).await.unwrap().get().await.unwrap_err();
        assert!(matches!(e, MetadataError::Fetch { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
    }

    #[tokio::test]
    async fn bad_credentials_files_name_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = apiserver("https://127.0.0.1:6443", dir.path());
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        c.ca_file = Some(ca.clone());
        let e = Fetcher::new(&c).await.err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "kubernetes_metadata.ca_file {}: holds no PEM certificate",
                ca.display()
            )
        );
        c.ca_file = Some(dir.path().join("missing.crt"));
        let e = Fetcher::new(&c).await.err().unwrap().to_string();
        assert!(e.starts_with("kubernetes_metadata.ca_file "), "{e}");
        assert!(e.contains("missing.crt: "), "{e}");
        c.ca_file = None;
        c.token_file = Some(dir.path().join("no-token"));
        let e = Fetcher::new(&c).await.err().unwrap().to_string();
        assert!(e.starts_with("kubernetes_metadata.token_file "), "{e}");
        assert!(e.contains("no-token: "), "{e}");
        let token = dir.path().join("token-nl");
        std::fs::write(&token, "tok-123\n").unwrap();
        c.token_file = Some(token.clone());
        let e = Fetcher::new(&c).await.err().unwrap().to_string();
        assert!(
            e.starts_with(&format!(
                "kubernetes_metadata.token_file {}: white space (a newline?)",
                token.display()
            )),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_apiserver_source_needs_this_nodes_name() {
        if std::env::var_os("NODE_NAME").is_some() {
            return; // NODE_NAME is the fallback; the binary's test removes it.
        }
        let mut c = MetadataConfig::new(Source::Apiserver, Some("http://127.0.0.1:1".into()));
        c.node_name = None;
        let e = Fetcher::new(&c).await.err().unwrap().to_string();
        assert!(
            e.contains("node_name or the NODE_NAME environment variable"),
            "{e}"
        );
    }
}
