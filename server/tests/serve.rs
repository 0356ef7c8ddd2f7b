//! vigil-server against real sockets: timeouts, the connection limit, error bodies, TLS.

// The root tests' TLS helpers (the client that accepts any certificate), one copy for both.
#[path = "../../tests/support/tls.rs"]
#[allow(dead_code)]
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use vigil_server::{ConnectionLimit, Options};

/// A running server; stops (and waits for it) when dropped.
struct Server {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn router() -> Router {
    Router::new()
        .route("/ok", get(|| async { "ok\n" }))
        .route("/write", post(|| async { "written\n" }))
}

async fn start(opts: Options) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(vigil_server::serve(listener, router(), opts, rx));
    Server {
        addr,
        stop,
        task: Some(task),
    }
}

fn quick(max: usize) -> Options {
    Options {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        tls: None,
        limit: ConnectionLimit::new(max),
    }
}

/// Reads until the peer closes (or 5 s pass: a failure); returns what was read and the time.
async fn read_to_close<S: AsyncReadExt + Unpin>(s: &mut S) -> (String, Duration) {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after 5 s; read so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), t0.elapsed())
}

async fn request(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_to_close(&mut s).await.0
}

#[tokio::test]
async fn slow_partial_request_head_is_closed_after_the_header_timeout() {
    let srv = start(quick(64)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, took) = read_to_close(&mut s).await;
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    // Nothing sent at all (hyper's version detection waits for bytes): closed as well.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    let (_, took) = read_to_close(&mut silent).await;
    assert!(took < Duration::from_secs(2), "silent closed after {took:?}");
}

#[tokio::test]
async fn kept_alive_connection_is_closed_when_no_next_request_comes() {
    let srv = start(quick(64)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (text, took) = read_to_close(&mut s).await;
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("ok\n"), "{text}");
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_with_a_body_and_counted() {
    let srv = start(quick(4)).await;
    let before = vigil_server::limit::STATS
        .refused
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(srv.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = request(srv.addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("retry-after: 1") && text.contains("too many open connections"),
        "{text}"
    );
    let after = vigil_server::limit::STATS
        .refused
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(after > before);
    // The held ones time out (header timeout) and free their slots.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = request(srv.addr, b"GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn every_4xx_has_a_body_including_hypers_own() {
    let srv = start(quick(64)).await;
    let close = "Host: x\r\nConnection: close\r\n\r\n";
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (format!("GET /nope HTTP/1.1\r\n{close}").into_bytes(), "404", "no route for GET /nope"),
        (format!("DELETE /ok HTTP/1.1\r\n{close}").into_bytes(), "405", "/ok does not take DELETE"),
        (format!("GET /write HTTP/1.1\r\n{close}").into_bytes(), "405", "allow: POST"),
        (
            format!("GET /ok?q={} HTTP/1.1\r\n{close}", "a".repeat(70_000)).into_bytes(),
            "414",
            "longer than 65,534 bytes",
        ),
        (
            format!("GET /ok?q={} HTTP/1.1\r\n{close}", "a".repeat(1 << 20)).into_bytes(),
            "431",
            "over 408 KiB",
        ),
        (
            format!("GET /ok HTTP/1.1\r\nX-Big: {}\r\n{close}", "b".repeat(500_000)).into_bytes(),
            "431",
            "over 408 KiB",
        ),
        (b"G\x01T /ok HTTP/1.1\r\n\r\n".to_vec(), "400", "malformed"),
    ];
    for (raw, status, says) in cases {
        let text = request(srv.addr, &raw).await;
        let first = text.lines().next().unwrap_or("");
        assert!(first.starts_with(&format!("HTTP/1.1 {status}")), "{status}: {first}");
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(!body.is_empty() && text.contains(says), "{status}: {text}");
        let len: usize = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
            .unwrap();
        assert_eq!(len, body.len(), "{status}: {text}");
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    vigil_server::tls::server_config(&Default::default(), &["localhost".into()]).unwrap()
}

#[tokio::test]
async fn slow_partial_request_after_the_tls_handshake_is_closed_too() {
    let srv = start(quick(64).with_tls(tls_config())).await;
    // A client that accepts any certificate: the test is about timing, not trust.
    let client = tls::any_cert_client().with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    tls.flush().await.unwrap();
    let (_, took) = read_to_close(&mut tls).await;
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
    // A TCP connection that never starts the handshake: closed at the same deadline.
    let mut raw = TcpStream::connect(srv.addr).await.unwrap();
    let (_, took) = read_to_close(&mut raw).await;
    assert!(took < Duration::from_secs(2), "no handshake: closed after {took:?}");
}

#[tokio::test]
async fn shutdown_returns_and_closes_idle_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(vigil_server::serve(listener, router(), quick(8), rx));
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
}

/// Over TLS with a client-certificate verifier, the client's chain reaches the handler as
/// `auth::PeerCertificates` (what certificate authentication reads); without one, nothing.
#[tokio::test]
async fn tls_client_certificate_chain_reaches_the_request() {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let ca = tls::new_ca("vigil test CA");
    let client_pem = tls::client_cert(&ca, "front-proxy", &[]);
    let client: Vec<CertificateDer> = CertificateDer::pem_slice_iter(client_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.1.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    let config = vigil_server::tls::server_config_with(
        &Default::default(),
        &["localhost".into()],
        Some(verifier),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let app = Router::new().route(
        "/who",
        get(|req: axum::extract::Request| async move {
            let n = req
                .extensions()
                .get::<vigil_server::auth::PeerCertificates>()
                .map_or(0, |p| p.0.len());
            format!("certs={n}\n")
        }),
    );
    let _srv = Server {
        addr,
        stop,
        task: Some(tokio::spawn(vigil_server::serve(
            listener,
            app,
            quick(8).with_tls(config),
            rx,
        ))),
    };
    for with_cert in [true, false] {
        let builder = tls::any_cert_client();
        let cfg = if with_cert {
            let key = PrivateKeyDer::from_pem_slice(client_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(client.clone(), key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (text, _) = read_to_close(&mut tls).await;
        let want = if with_cert { "certs=1" } else { "certs=0" };
        assert!(text.contains(want), "with_cert={with_cert}: {text}");
    }
}
