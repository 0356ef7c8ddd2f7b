//! Serving one listener: accept under the connection limit, optional TLS, HTTP/1 and HTTP/2 with
//! header-read and idle timeouts, error bodies, graceful shutdown.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::limit::{ConnectionLimit, STATS};

/// How long a client may take to send a request head (also: to finish the TLS handshake, and to
/// send the next request on a kept-alive HTTP/1 connection).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay without any traffic (HTTP/2, or a client that stopped reading).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long shutdown waits for open requests before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How a listener serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Request head deadline, from the connection's start or the previous response's end.
    pub header_read_timeout: Duration,
    /// No bytes either way for this long: the connection is closed (gracefully first).
    pub idle_timeout: Duration,
    /// Serve HTTPS with this configuration (see [`crate::tls::server_config`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections allowed, shared with the process's other listeners by default.
    pub limit: ConnectionLimit,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            tls: None,
            limit: ConnectionLimit::process(),
        }
    }
}

impl Options {
    /// These options, over TLS.
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// Serves `router` on `listener` until `shutdown` turns true; requests in progress then get
/// [`SHUTDOWN_GRACE`] to finish. The router may come wrapped in layers (authentication, say):
/// `serve` adds only the error-body layer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: Options,
    shutdown: watch::Receiver<bool>,
) {
    let stop = stopped(shutdown.clone());
    tokio::pin!(stop);
    let router = router.layer(axum::middleware::from_fn(crate::bodies::fill_empty));
    let acceptor = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let opts = Arc::new(opts);
    let mut conns = JoinSet::new();
    loop {
        let Ok((tcp, peer)) = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            _ = &mut stop => break,
        }
        .map_err(|e| {
            // Out of descriptors and the like: wait a little rather than spin.
            tracing::warn!(error = %e, "accept failed");
        })
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(permit) = opts.limit.try_acquire() else {
            STATS.refused.fetch_add(1, Ordering::Relaxed);
            refuse(tcp, acceptor.is_none());
            continue;
        };
        STATS.accepted.fetch_add(1, Ordering::Relaxed);
        let (router, acceptor, opts, stop) = (
            router.clone(),
            acceptor.clone(),
            opts.clone(),
            shutdown.clone(),
        );
        conns.spawn(async move {
            let _permit = permit;
            let _open = OpenGuard::new();
            let started = Instant::now();
            match acceptor {
                None => connection(tcp, router, &opts, started, stop, None).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(tcp);
                    match tokio::time::timeout(opts.header_read_timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            // The client's verified chain, for authentication by certificate.
                            let peer = tls.get_ref().1.peer_certificates().map(|chain| {
                                crate::auth::PeerCertificates(Arc::new(
                                    chain.iter().map(|c| c.clone().into_owned()).collect(),
                                ))
                            });
                            connection(tls, router, &opts, started, stop, peer).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            STATS.header_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let drained = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        conns.abort_all();
    }
}

/// Resolves once `shutdown` turns true (or its sender is gone).
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Over the limit: a plain-HTTP client is told so (best effort, never waiting), then closed.
fn refuse(tcp: TcpStream, plain: bool) {
    const BODY: &str = "503 Service Unavailable: too many open connections; retry later\n";
    if plain {
        let resp = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = tcp.try_write(resp.as_bytes());
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGuard;

impl OpenGuard {
    fn new() -> Self {
        STATS.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        STATS.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Milliseconds since `base`, for the activity clock.
fn millis(base: Instant) -> u64 {
    base.elapsed().as_millis() as u64
}

/// Serves one connection (plain or after the handshake) until it ends, times out or shutdown;
/// `peer` (a TLS client's certificate chain) goes into every request's extensions.
async fn connection<I>(
    io: I,
    router: Router,
    opts: &Options,
    started: Instant,
    stop: watch::Receiver<bool>,
    peer: Option<crate::auth::PeerCertificates>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(AtomicU64::new(millis(started)));
    let requests = Arc::new(AtomicU64::new(0));
    let io = Watched {
        inner: io,
        activity: activity.clone(),
        started,
        pending: None,
    };
    let counted = requests.clone();
    let service = tower::ServiceExt::map_request(
        router,
        move |mut req: http::Request<hyper::body::Incoming>| {
            counted.fetch_add(1, Ordering::Relaxed);
            if let Some(p) = &peer {
                req.extensions_mut().insert(p.clone());
            }
            req
        },
    );
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100);
    let conn = builder.serve_connection_with_upgrades(
        TokioIo::new(io),
        hyper_util::service::TowerToHyperService::new(service),
    );
    tokio::pin!(conn);
    let stop = stopped(stop);
    tokio::pin!(stop);
    let tick = (opts.header_read_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    let timed_out = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        STATS.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(error = %e, timed_out, "connection ended with an error");
                }
                return;
            }
            _ = &mut stop, if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(tick) => {
                let now = millis(started);
                // No request yet (HTTP/2 preface or first request head not sent): the header
                // deadline runs from the connection's start.
                if requests.load(Ordering::Relaxed) == 0
                    && started.elapsed() >= opts.header_read_timeout
                {
                    STATS.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let quiet = Duration::from_millis(now.saturating_sub(activity.load(Ordering::Relaxed)));
                if quiet >= opts.idle_timeout {
                    if closing {
                        // Asked to close an idle timeout ago and still nothing moved: drop it.
                        return;
                    }
                    STATS.idle_closed.fetch_add(1, Ordering::Relaxed);
                    closing = true;
                    activity.store(now, Ordering::Relaxed);
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A connection's byte stream that notes when bytes last moved and gives hyper's own error
/// responses (400/414/431 for unparsable heads) a body.
struct Watched<I> {
    inner: I,
    activity: Arc<AtomicU64>,
    started: Instant,
    /// A rewritten response being written: bytes, how many are written, the length to report.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<I> Watched<I> {
    fn touch(&self) {
        self.activity
            .store(millis(self.started), Ordering::Relaxed);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            if let Some(body) = crate::bodies::for_automatic(buf) {
                self.pending = Some((crate::bodies::with_body(buf, body), 0, buf.len()));
            }
        }
        let this = &mut *self;
        if let Some((bytes, written, report)) = &mut this.pending {
            while *written < bytes.len() {
                match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *written += n,
                    other => return other,
                }
            }
            let n = *report;
            this.pending = None;
            this.touch();
            return Poll::Ready(Ok(n));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
