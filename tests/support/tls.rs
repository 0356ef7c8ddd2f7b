//! TLS for the tests: one test CA (rcgen) and the serving and client certificates it signs, a TLS
//! front that puts a certificate signed by it before a plain-HTTP test server (the shipper's
//! `https` + `ca_file` path against the strict `_bulk` server), and a client that accepts any
//! certificate. `server/tests/serve.rs`, vigil-server's auth tests and the aggregator's scrape
//! tests include this file too (`#[path]`), so there is one copy; it needs only rcgen and
//! tokio-rustls.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;
use tokio_rustls::rustls;

/// A test CA: its certificate's PEM, and the certificate and key that sign leaves.
pub type Ca = (String, rcgen::Certificate, rcgen::KeyPair);

/// A fresh CA named `name`.
pub fn new_ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert, key)
}

/// A serving certificate signed by `ca` for `hosts` (DNS names or IP addresses): the
/// certificate and the key, for rustls or as PEM files.
pub fn server_cert(ca: &Ca, hosts: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    (params.signed_by(&key, &ca.1, &ca.2).unwrap(), key)
}

/// A client certificate signed by `ca` for user `cn` in groups `orgs` (Kubernetes reads CN as the
/// user, O as the groups): certificate and key PEM, one after the other, as
/// `reqwest::Identity::from_pem` takes them.
pub fn client_cert(ca: &Ca, cn: &str, orgs: &[&str]) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params.distinguished_name.push(rcgen::DnType::OrganizationName, *o);
    }
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.1, &ca.2).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// Listens on a free 127.0.0.1 port, speaks TLS with a leaf for 127.0.0.1 signed by a new CA, and pipes every
/// connection to `target`. Returns the port and the CA's PEM.
pub async fn tls_front(target: SocketAddr) -> (u16, String) {
    let ca = new_ca("vigil test CA");
    let (leaf, leaf_key) = server_cert(&ca, &["127.0.0.1"]);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate aborts the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca.0)
}

/// A client configuration that accepts any server certificate, for tests about timing or
/// certificate forwarding rather than trust; finish it with or without a client certificate.
pub fn any_cert_client() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
}

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, signature)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
