//! TLS for any listener (`--tls-cert-file`/`--tls-private-key-file`): the rustls server configuration.
//!
//! Like metrics-server: a certificate and key given by `--tls-cert-file`/`--tls-private-key-file`, or
//! else a self-signed pair kept in `--cert-dir` (reused when it is already there) or made in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// File names of the self-signed pair in `--cert-dir` (the names metrics-server uses).
pub const SELF_SIGNED_CERT: &str = "apiserver.crt";
pub const SELF_SIGNED_KEY: &str = "apiserver.key";

/// Errors while preparing the TLS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--tls-cert-file and --tls-private-key-file go together: only {given} was given")]
    Incomplete { given: &'static str },
    #[error("{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path}: {message}")]
    Pem {
        flag: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("--cert-dir {path}: {source}")]
    CertDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the server's certificate comes from.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM certificate chain (`--tls-cert-file`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (`--tls-private-key-file`).
    pub key_file: Option<PathBuf>,
    /// Directory for the self-signed pair when no files are given (`--cert-dir`).
    pub cert_dir: Option<PathBuf>,
}

/// Builds the rustls server configuration; `hosts` are the names the self-signed certificate covers.
pub fn server_config(opts: &TlsOptions, hosts: &[String]) -> Result<Arc<ServerConfig>, Error> {
    server_config_with(opts, hosts, None)
}

/// As [`server_config`], asking clients for a certificate checked by `clients` when given (see
/// `auth::Auth::client_cert_verifier`); `serve` then puts the chain into each request as
/// `auth::PeerCertificates`.
pub fn server_config_with(
    opts: &TlsOptions,
    hosts: &[String],
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, Error> {
    let (certs, key) = match (&opts.cert_file, &opts.key_file) {
        (Some(c), Some(k)) => (
            read_certs(c, "--tls-cert-file")?,
            read_key(k, "--tls-private-key-file")?,
        ),
        (Some(_), None) => {
            return Err(Error::Incomplete {
                given: "--tls-cert-file",
            })
        }
        (None, Some(_)) => {
            return Err(Error::Incomplete {
                given: "--tls-private-key-file",
            })
        }
        (None, None) => self_signed(opts.cert_dir.as_deref(), hosts)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration of a listener on `addr` whose requests go through `auth`: the
/// certificate from `opts` (a self-signed one covers localhost, 127.0.0.1 and `addr`'s IP), and
/// clients are asked for a certificate when `auth` has client CAs (`--client-ca-file`, the
/// kube-apiserver's front proxy), which the auth layer then checks. Every HTTPS listener (the
/// aggregator's `--secure-listen`, the collector's and log shipper's `--listen` with
/// `--tls-cert-file`) is configured by this.
pub fn listener_config(
    opts: &TlsOptions,
    addr: std::net::SocketAddr,
    auth: &crate::auth::Auth,
) -> Result<Arc<ServerConfig>, Error> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    server_config_with(opts, &hosts, auth.client_cert_verifier())
}

fn read_certs(path: &Path, flag: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        flag,
        path: path.into(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Pem {
            flag,
            path: path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(Error::Pem {
            flag,
            path: path.into(),
            message: "no PEM CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path, flag: &'static str) -> Result<PrivateKeyDer<'static>, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        flag,
        path: path.into(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| Error::Pem {
        flag,
        path: path.into(),
        message: format!("no usable private key: {e}"),
    })
}

/// A self-signed pair: reused from `dir` when both files are there, else made (and saved to `dir`).
fn self_signed(
    dir: Option<&Path>,
    hosts: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    if let Some(dir) = dir {
        let (c, k) = (dir.join(SELF_SIGNED_CERT), dir.join(SELF_SIGNED_KEY));
        if c.exists() && k.exists() {
            return Ok((read_certs(&c, "--cert-dir")?, read_key(&k, "--cert-dir")?));
        }
    }
    let made = rcgen::generate_simple_self_signed(hosts.to_vec())
        .map_err(|e| Error::SelfSigned(e.to_string()))?;
    let (cert_pem, key_pem) = (made.cert.pem(), made.key_pair.serialize_pem());
    if let Some(dir) = dir {
        let io = |source| Error::CertDir {
            path: dir.into(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join(SELF_SIGNED_CERT), &cert_pem).map_err(io)?;
        write_private(&dir.join(SELF_SIGNED_KEY), key_pem.as_bytes()).map_err(io)?;
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::SelfSigned(e.to_string()))?;
    Ok((vec![made.cert.der().clone()], key))
}

/// Writes a key file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;
    use tokio::sync::watch;

    fn client(ca_pem: Option<&str>) -> reqwest::Client {
        let mut b = reqwest::Client::builder().use_rustls_tls();
        match ca_pem {
            Some(pem) => {
                b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            }
            None => b = b.danger_accept_invalid_certs(true),
        }
        b.build().unwrap()
    }

    async fn start(
        config: Arc<ServerConfig>,
    ) -> (
        std::net::SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(crate::serve(
            listener,
            router,
            crate::Options::default().with_tls(config),
            rx,
        ));
        (addr, tx, task)
    }

    #[tokio::test]
    async fn self_signed_pair_is_saved_reused_and_serves_https() {
        let dir = tempfile::tempdir().unwrap();
        let opts = TlsOptions {
            cert_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let hosts = vec!["localhost".to_string()];
        let config = server_config(&opts, &hosts).unwrap();
        let cert_pem = std::fs::read_to_string(dir.path().join(SELF_SIGNED_CERT)).unwrap();
        let mode = std::fs::metadata(dir.path().join(SELF_SIGNED_KEY)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        // A second start reuses the pair instead of making a new one.
        server_config(&opts, &hosts).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SELF_SIGNED_CERT)).unwrap(),
            cert_pem
        );

        let (addr, stop, task) = start(config).await;
        let url = format!("https://localhost:{}/healthz", addr.port());
        let body = client(Some(&cert_pem))
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "ok");
        // Plain HTTP on the TLS port is refused, not answered.
        let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", addr.port())).await;
        assert!(
            plain.is_err(),
            "plain HTTP must not be served on the TLS port: {plain:?}"
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("serve returns after shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn given_files_are_used_and_the_wrong_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (c, k) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&c, made.cert.pem()).unwrap();
        std::fs::write(&k, made.key_pair.serialize_pem()).unwrap();
        let opts = TlsOptions {
            cert_file: Some(c),
            key_file: Some(k),
            cert_dir: None,
        };
        let (addr, stop, _task) = start(server_config(&opts, &[]).unwrap()).await;
        let url = format!("https://localhost:{}/healthz", addr.port());
        assert_eq!(
            client(Some(&made.cert.pem()))
                .get(&url)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let err = client(Some(&other.cert.pem()))
            .get(&url)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        // With verification off (what an APIService with insecureSkipTLSVerify does) it answers.
        assert_eq!(client(None).get(&url).send().await.unwrap().status(), 200);
        stop.send(true).unwrap();
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem file\n").unwrap();
        let only_cert = TlsOptions {
            cert_file: Some(junk.clone()),
            ..Default::default()
        };
        assert!(server_config(&only_cert, &[])
            .unwrap_err()
            .to_string()
            .contains("only --tls-cert-file was given"));
        let both_junk = TlsOptions {
            cert_file: Some(junk.clone()),
            key_file: Some(junk.clone()),
            cert_dir: None,
        };
        let e = server_config(&both_junk, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("--tls-cert-file ")
                && e.contains("junk.pem")
                && e.contains("no PEM CERTIFICATE"),
            "{e}"
        );
        let missing = TlsOptions {
            cert_file: Some(dir.path().join("nope.crt")),
            key_file: Some(junk),
            cert_dir: None,
        };
        let e = server_config(&missing, &[]).unwrap_err().to_string();
        assert!(e.contains("nope.crt") && e.contains("No such file"), "{e}");
    }
}
