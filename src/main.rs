//! The `vigil` binary: parses the command line and hands over to a crate's `run`.

/// mimalloc rather than glibc's malloc: the aggregator's 1,000-node round spent ~38% of its CPU
/// in glibc's allocator on a fragmented heap (BENCHMARKS.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc options, read by mimalloc from the environment before `main` runs: commit arena
/// memory on use, not up front, and (for the collector and `vigil up`) return freed pages at
/// once; the aggregator and the log shipper keep mimalloc's 1 s purge delay, which saves them
/// CPU on their large, busy heaps.
/// Without them the collector's RSS roughly doubles (BENCHMARKS.md, "Allocator"). An option
/// already set in the environment is left as it is.
fn allocator_env() -> [(&'static str, &'static str); 2] {
    // The subcommand: the first argument that is neither a flag nor --log-format's value.
    let subcommand = std::env::args_os().skip(1).find(|a| {
        let a = a.to_string_lossy();
        !a.starts_with('-') && a != "text" && a != "json"
    });
    let busy = subcommand.is_some_and(|a| a == "aggregator" || a == "log-shipper");
    [
        ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ("MIMALLOC_PURGE_DELAY", if busy { "1000" } else { "0" }),
    ]
}

/// Starts this program again with `allocator_env()` in its environment when any of it is
/// missing (mimalloc reads its options once, at the first allocation, so they cannot be set
/// later). If the exec fails, vigil goes on with mimalloc's defaults.
fn with_allocator_env() {
    let wanted = allocator_env();
    if wanted.iter().all(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1));
    for (k, v) in wanted {
        if std::env::var_os(k).is_none() {
            cmd.env(k, v);
        }
    }
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    eprintln!(
        "vigil: could not restart with the allocator settings ({err}); going on without them"
    );
}

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

mod rules;
mod up;

#[derive(Parser, Debug)]
#[command(
    name = "vigil",
    version,
    about = "Monitoring and logging for Kubernetes"
)]
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
    /// Rule tooling: check rule files, run their unit tests, replay them over a CSV.
    Rules(rules::Args),
}

/// Logs to stderr at `default` level unless RUST_LOG says otherwise.
fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the command; an error is printed once as `Error: ` and its causes, each said once
/// (vigil's messages already carry their cause's text; anyhow's report would repeat it under
/// "Caused by:"), and the exit code is 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", vigil_common::error_chain(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    with_allocator_env();
    let cli = Cli::parse();
    // The rule tools report on stdout/stderr themselves, as promtool: only errors are logged
    // (a failed evaluation is in `replay`'s report, not a second time as a warning).
    let level = match cli.command {
        Command::Rules(_) => "error",
        _ => "info",
    };
    init_logging(cli.log_format, level);
    let command = match cli.command {
        // Rule tooling is synchronous (blocking HTTP for remote queries): no runtime.
        Command::Rules(args) => std::process::exit(rules::run(args)),
        command => command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        match command {
            Command::Collector(args) => vigil_collector::run(args, shutdown).await?,
            Command::Aggregator(args) => vigil_aggregator::run(args, shutdown).await?,
            Command::LogShipper(args) => vigil_log_shipper::run(args, shutdown).await?,
            Command::Up(args) => up::run(args, shutdown).await?,
            Command::Rules(_) => unreachable!("handled before the runtime starts"),
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
