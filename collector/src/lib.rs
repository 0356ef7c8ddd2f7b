//! The per-node collector: cgroup (v1 and v2) and /proc figures for every container, served as
//! cAdvisor-compatible Prometheus metrics and as the kubelet Summary API.

pub mod problems;
pub mod summary;

use std::net::SocketAddr;
use tokio::sync::watch;

/// Command-line options of `vigil collector`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Address to serve /metrics, /stats/summary and /healthz on.
    #[arg(long, default_value = "0.0.0.0:4194")]
    pub listen: SocketAddr,
}

impl Args {
    /// The collector's options for `vigil up`: defaults, listening on `listen`.
    pub fn for_up(listen: SocketAddr) -> Self {
        Args { listen }
    }
}

/// Errors of the collector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("http server: {0}")]
    Serve(std::io::Error),
}

/// Runs the collector until `shutdown` fires.
pub async fn run(args: Args, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| Error::Listen { addr: args.listen, source })?;
    tracing::info!(listen = %args.listen, "collector listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(Error::Serve)
}
