//! The `vigil` binary: parses the command line and hands over to a crate's `run`.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

mod up;

#[derive(Parser, Debug)]
#[command(name = "vigil", version, about = "Monitoring and logging for Kubernetes")]
struct Cli {
    /// Log format: `text` for people, `json` for machines.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per-node collector: cgroup and /proc figures as cAdvisor metrics and the kubelet Summary API.
    Collector(vigil_collector::Args),
    /// Cluster aggregator: pulls every node, Heapster's API, metrics.k8s.io, /federate, sinks.
    Aggregator(vigil_aggregator::Args),
    /// Log shipper: tails container logs and forwards them to Elasticsearch.
    LogShipper(vigil_log_shipper::Args),
    /// Everything on this machine with embedded defaults.
    Up(up::Args),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        match cli.command {
            Command::Collector(args) => vigil_collector::run(args, shutdown).await?,
            Command::Aggregator(args) => vigil_aggregator::run(args, shutdown).await?,
            Command::LogShipper(args) => vigil_log_shipper::run(args, shutdown).await?,
            Command::Up(args) => up::run(args, shutdown).await?,
        }
        Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C; every subsystem flushes and returns when it fires.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}
