//! Client certificates: users from `--client-ca-file` certificates (CN, O), and the kube-apiserver's front proxy (`--requestheader-*`, `X-Remote-User`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::HeaderMap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::User;

/// Errors loading a CA file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{flag} {path}: {message}")]
    Ca {
        flag: &'static str,
        path: PathBuf,
        message: String,
    },
}

/// The certificates a CA file holds, as a root store.
pub fn load_roots(flag: &'static str, path: &Path) -> Result<RootCertStore, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::Ca {
        flag,
        path: path.into(),
        message: e.to_string(),
    })?;
    parse_roots(flag, path, &pem)
}

/// The certificates of PEM text (`source` names where it came from, for errors).
pub fn parse_roots(flag: &'static str, source: &Path, pem: &[u8]) -> Result<RootCertStore, Error> {
    let bad = |message: String| Error::Ca {
        flag,
        path: source.into(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c).map_err(|e| bad(e.to_string()))?;
    }
    Ok(roots)
}

/// A verifier that accepts chains up to `roots` and also connections without a certificate
/// (those may still bring a bearer token).
pub fn verifier(roots: RootCertStore) -> Arc<dyn ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .expect("a non-empty root store builds a verifier")
}

/// True when `chain` (leaf first) verifies against `v`'s roots now.
fn verifies(v: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> bool {
    match chain.split_first() {
        Some((leaf, rest)) => v.verify_client_cert(leaf, rest, UnixTime::now()).is_ok(),
        None => false,
    }
}

/// Subject common name and organizations of a DER certificate.
fn subject(der: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let s = cert.subject();
    let cn = s.iter_common_name().next()?.as_str().ok()?.to_string();
    let orgs = s
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

/// `--client-ca-file`: a verified client certificate's CN is the user, its O entries the groups.
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientCa {
    pub fn new(roots: RootCertStore) -> Self {
        ClientCa {
            verifier: verifier(roots),
        }
    }

    pub fn authenticate(&self, chain: &[CertificateDer<'static>]) -> Option<User> {
        if !verifies(self.verifier.as_ref(), chain) {
            return None;
        }
        let (name, groups) = subject(&chain[0])?;
        (!name.is_empty()).then(|| User {
            name,
            uid: String::new(),
            groups,
            extra: BTreeMap::new(),
        })
    }
}

/// Header names of the front proxy's identity (metrics-server's `--requestheader-*` defaults).
#[derive(Debug, Clone)]
pub struct RequestHeaderNames {
    pub username: Vec<String>,
    pub group: Vec<String>,
    pub extra_prefix: Vec<String>,
}

/// `--requestheader-client-ca-file`: the kube-apiserver proxies a request for the APIService with
/// its front-proxy client certificate and the user in `X-Remote-User`/`X-Remote-Group`.
pub struct FrontProxy {
    verifier: Arc<dyn ClientCertVerifier>,
    allowed_names: Vec<String>,
    names: RequestHeaderNames,
}

/// What the front-proxy check found.
#[derive(Debug, PartialEq)]
pub enum FrontProxyResult {
    /// Not the front proxy's certificate, or no user header: other methods may still apply.
    NotApplicable,
    /// The front proxy's CA signed it, but its CN is not an allowed name.
    NameNotAllowed(String),
    User(User),
}

impl FrontProxy {
    pub fn new(
        roots: RootCertStore,
        allowed_names: Vec<String>,
        names: RequestHeaderNames,
    ) -> Self {
        FrontProxy {
            verifier: verifier(roots),
            allowed_names,
            names,
        }
    }

    pub fn authenticate(
        &self,
        chain: &[CertificateDer<'static>],
        headers: &HeaderMap,
    ) -> FrontProxyResult {
        if !verifies(self.verifier.as_ref(), chain) {
            return FrontProxyResult::NotApplicable;
        }
        if !self.allowed_names.is_empty() {
            let cn = subject(&chain[0]).map(|s| s.0).unwrap_or_default();
            if !self.allowed_names.contains(&cn) {
                return FrontProxyResult::NameNotAllowed(cn);
            }
        }
        let value = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let Some(name) = self
            .names
            .username
            .iter()
            .flat_map(|h| value(h))
            .find(|v| !v.is_empty())
        else {
            return FrontProxyResult::NotApplicable;
        };
        let groups = self.names.group.iter().flat_map(|h| value(h)).collect();
        let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (h, v) in headers {
            for prefix in &self.names.extra_prefix {
                let lower = prefix.to_ascii_lowercase();
                if let Some(key) = h.as_str().strip_prefix(lower.as_str()) {
                    if let Ok(v) = v.to_str() {
                        extra.entry(unescape(key)).or_default().push(v.to_string());
                    }
                }
            }
        }
        FrontProxyResult::User(User {
            name,
            uid: String::new(),
            groups,
            extra,
        })
    }
}

/// Extra keys are percent-encoded by the kube-apiserver (and header names are lower case).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = key
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_keys_are_unescaped() {
        assert_eq!(unescape("scopes"), "scopes");
        assert_eq!(unescape("example.com%2fteam"), "example.com/team");
        assert_eq!(unescape("bad%zz"), "bad%zz");
        assert_eq!(unescape("end%2"), "end%2");
    }
}
