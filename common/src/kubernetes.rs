//! How every vigil daemon reaches the Kubernetes API server: one [`kube::Config`] built from the
//! pod's service account (`in-cluster`), a kubeconfig file or an explicit URL, with the token
//! file, CA bundle, `insecure_skip_tls_verify` and timeout overrides the daemons' settings offer,
//! and the [`kube::Client`] made from it. kube re-reads a token file (the kubelet rotates bound
//! service account tokens) and a CA file about once a minute.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error_chain;

/// The service account's mount: `token`, `ca.crt`, `namespace`.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The service account's token file.
pub fn token_file() -> PathBuf {
    Path::new(SERVICE_ACCOUNT_DIR).join("token")
}

/// The service account's CA bundle (signs the API server's certificate).
pub fn ca_file() -> PathBuf {
    Path::new(SERVICE_ACCOUNT_DIR).join("ca.crt")
}

/// `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` read through `env`, or the
/// missing variable: for checking at start-up, with a message in the caller's terms, what
/// [`Source::InCluster`] will need (the aggregator's Heapster source flags).
pub fn api_server_url(env: impl Fn(&str) -> Option<String>) -> Result<String, &'static str> {
    let var = |name: &'static str| env(name).filter(|v| !v.is_empty()).ok_or(name);
    let host = var("KUBERNETES_SERVICE_HOST")?;
    let port = var("KUBERNETES_SERVICE_PORT")?;
    Ok(if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    })
}

/// Where the API server and the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `KUBERNETES_SERVICE_HOST`/`_PORT` and the pod's service account (kube's `Config::incluster`).
    InCluster,
    /// A kubeconfig file's current context.
    Kubeconfig(PathBuf),
    /// An `http(s)://` URL; credentials only from [`Access::token_file`] and [`Access::ca_file`].
    Url(String),
}

/// A [`Source`] and what a daemon's settings put over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub source: Source,
    /// Replaces the source's server URL (e.g. a kubeconfig's).
    pub url: Option<String>,
    /// A bearer token file, re-read as it rotates.
    pub token_file: Option<PathBuf>,
    /// A PEM bundle that signs the API server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Do not check the API server's certificate.
    pub insecure_skip_tls_verify: bool,
    /// Bounds connecting, and each read and write of a request.
    pub timeout: Option<Duration>,
    /// kube's own retry of a 429, 503 or 504 answer (up to 15 times, from 5 ms doubling).
    /// Off by default: a daemon that retries on its own schedule would otherwise send a burst
    /// of requests exactly when the API server sheds load, and see a timeout instead of the
    /// answer. Watches and delegated auth, which have no schedule of their own, turn it on.
    pub retry: bool,
}

impl Access {
    /// The source alone, nothing put over it.
    pub fn new(source: Source) -> Self {
        Access {
            source,
            url: None,
            token_file: None,
            ca_file: None,
            insecure_skip_tls_verify: false,
            timeout: None,
            retry: false,
        }
    }

    /// With every request bounded by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The client configuration; the error says which source, file or URL is wrong and why,
    /// for the caller to put under its setting.
    pub async fn config(&self) -> Result<kube::Config, AccessError> {
        let mut config = match &self.source {
            Source::InCluster => {
                api_server_url(|k| std::env::var(k).ok()).map_err(AccessError::NotInCluster)?;
                kube::Config::incluster().map_err(|e| AccessError::InCluster(error_chain(&e)))?
            }
            Source::Kubeconfig(path) => {
                let bad = |e: &dyn std::error::Error| AccessError::Kubeconfig {
                    path: path.clone(),
                    reason: error_chain(e),
                };
                let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| bad(&e))?
            }
            Source::Url(url) => kube::Config::new(parse_url(url)?),
        };
        if let Some(url) = &self.url {
            config.cluster_url = parse_url(url)?;
        }
        if let Some(f) = &self.token_file {
            let bad = |reason: String| AccessError::TokenFile {
                path: f.clone(),
                reason,
            };
            let token = std::fs::read_to_string(f).map_err(|e| bad(e.to_string()))?;
            if token.trim().is_empty() {
                return Err(bad("empty".into()));
            }
            // kube sends the file as it is: a newline would make every request fail.
            if token.trim() != token {
                return Err(bad("white space (a newline?) around the token; write the token alone (e.g. `kubectl create token ... | tr -d '\\n'`)".into()));
            }
            config.auth_info.token = None;
            config.auth_info.token_file = Some(f.display().to_string());
        }
        if let Some(f) = &self.ca_file {
            let bad = |reason: String| AccessError::CaFile {
                path: f.clone(),
                reason,
            };
            let pem = std::fs::read(f).map_err(|e| bad(e.to_string()))?;
            let ders = pem_certificates(&pem).map_err(|e| bad(format!("not valid PEM: {e}")))?;
            if ders.is_empty() {
                return Err(bad("holds no PEM certificate".into()));
            }
            config.root_cert = Some(ders);
            config.root_cert_file = Some(f.clone());
        }
        if self.insecure_skip_tls_verify {
            config.accept_invalid_certs = true;
            config.root_cert = None;
            config.root_cert_file = None;
        }
        config.default_retry = self.retry;
        if let Some(t) = self.timeout {
            config.connect_timeout = Some(t);
            config.read_timeout = Some(t);
            config.write_timeout = Some(t);
            config.reset_reader_on_write = true;
        }
        Ok(config)
    }

    /// A client made from [`Self::config`].
    pub async fn client(&self) -> Result<kube::Client, AccessError> {
        client(self.config().await?)
    }
}

/// A client made from a configuration (the TLS setup can still refuse it).
pub fn client(config: kube::Config) -> Result<kube::Client, AccessError> {
    kube::Client::try_from(config).map_err(|e| AccessError::Client(error_chain(&e)))
}

/// Sends `request` (a path and query; the client puts its API server in front) and reads the
/// whole answer: the HTTP status and the body as they came. For callers that decide by the
/// status themselves: kube's typed calls report an error body that is JSON but not a Status
/// (a proxy's) with code 0.
pub async fn send(
    client: &kube::Client,
    request: http::Request<Vec<u8>>,
) -> Result<(http::StatusCode, bytes::Bytes), String> {
    use http_body_util::BodyExt;
    let resp = client
        .send(request.map(kube::client::Body::from))
        .await
        .map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| error_chain(&e))?
        .to_bytes();
    Ok((status, body))
}

/// Why no client could be made; the text names the variable, file or URL and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// In-cluster, but a variable the API server's address comes from is missing or empty.
    #[error("this is not running in a cluster: {0} is not set")]
    NotInCluster(&'static str),
    /// In-cluster, but kube could not read the service account (under [`SERVICE_ACCOUNT_DIR`]).
    #[error("in-cluster configuration (the service account under {SERVICE_ACCOUNT_DIR}): {0}")]
    InCluster(String),
    #[error("kubeconfig {}: {reason}", path.display())]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("token file {}: {reason}", path.display())]
    TokenFile { path: PathBuf, reason: String },
    #[error("CA file {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    #[error("client: {0}")]
    Client(String),
}

/// An `http(s)://` URL with a host.
fn parse_url(url: &str) -> Result<http::Uri, AccessError> {
    let bad = |reason: String| AccessError::Url {
        url: url.to_string(),
        reason,
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(uri),
        _ => Err(bad("not an http(s):// URL with a host".into())),
    }
}

/// The DER certificates of a PEM bundle.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn the_in_cluster_address_comes_from_the_service_variables() {
        let env = |host: &'static str, port: &'static str| {
            move |k: &str| match k {
                "KUBERNETES_SERVICE_HOST" => Some(host.to_string()),
                "KUBERNETES_SERVICE_PORT" => Some(port.to_string()),
                _ => None,
            }
        };
        assert_eq!(api_server_url(env("10.96.0.1", "443")), Ok("https://10.96.0.1:443".into()));
        assert_eq!(api_server_url(env("fd00::1", "6443")), Ok("https://[fd00::1]:6443".into()));
        assert_eq!(api_server_url(env("", "443")), Err("KUBERNETES_SERVICE_HOST"));
        assert_eq!(api_server_url(env("10.96.0.1", "")), Err("KUBERNETES_SERVICE_PORT"));
        assert!(token_file().ends_with("serviceaccount/token"));
        assert!(ca_file().ends_with("serviceaccount/ca.crt"));
    }

    #[tokio::test]
    async fn a_url_with_token_file_ca_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let mut a = Access::new(Source::Url("https://127.0.0.1:6443".into()))
            .with_timeout(Duration::from_secs(3));
        a.token_file = Some(write(dir.path(), "token", "abc"));
        a.ca_file = Some(write(dir.path(), "ca.crt", &ca.cert.pem()));
        let c = a.config().await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://127.0.0.1:6443/");
        assert_eq!(c.auth_info.token_file.as_deref(), a.token_file.as_ref().unwrap().to_str());
        assert_eq!(c.root_cert.as_ref().map(Vec::len), Some(1));
        assert_eq!(c.read_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(3)));
        assert!(!c.accept_invalid_certs);
        assert!(!c.default_retry, "kube's retry is off unless asked for");
        a.retry = true;
        assert!(a.config().await.unwrap().default_retry);
        a.insecure_skip_tls_verify = true;
        let c = a.config().await.unwrap();
        assert!(c.accept_invalid_certs && c.root_cert.is_none() && c.root_cert_file.is_none());
    }

    #[tokio::test]
    async fn a_kubeconfig_with_the_url_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let kc = write(dir.path(), "kubeconfig", "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:8080'}\nusers:\n- name: u\n  user: {token: t0k}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n");
        let mut a = Access::new(Source::Kubeconfig(kc));
        let c = a.config().await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "http://127.0.0.1:8080/");
        a.url = Some("http://127.0.0.2:9090".into());
        let c = a.config().await.unwrap();
        assert_eq!(c.cluster_url.to_string(), "http://127.0.0.2:9090/");
        assert!(a.client().await.is_ok());
    }

    #[tokio::test]
    async fn bad_sources_and_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = |a: Access| async move { a.config().await.unwrap_err().to_string() };
        let e = err(Access::new(Source::Url("ftp://x".into()))).await;
        assert!(e.contains("not an http(s):// URL with a host"), "{e}");
        let e = err(Access::new(Source::Url("not a url".into()))).await;
        assert!(e.contains("\"not a url\""), "{e}");
        let missing = dir.path().join("nope");
        let e = err(Access::new(Source::Kubeconfig(missing.clone()))).await;
        assert!(e.contains(&missing.display().to_string()), "{e}");
        let mut a = Access::new(Source::Url("http://127.0.0.1:1".into()));
        a.token_file = Some(write(dir.path(), "empty", "  \n"));
        assert!(err(a.clone()).await.ends_with("empty"));
        a.token_file = Some(write(dir.path(), "nl", "abc\n"));
        assert!(err(a.clone()).await.contains("a newline?"));
        a.token_file = None;
        a.ca_file = Some(write(dir.path(), "ca", "just text"));
        assert!(err(a.clone()).await.contains("holds no PEM certificate"));
        a.ca_file = Some(write(dir.path(), "ca2", "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"));
        assert!(err(a.clone()).await.contains("not valid PEM"));
        a.ca_file = Some(missing);
        assert!(err(a).await.contains("CA file"));
    }
}
