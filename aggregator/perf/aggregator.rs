//! `vigil aggregator` as a standalone program (the same `vigil_aggregator::run`), so the scale
//! benchmark can build just this crate in release mode.

/// The allocator the `vigil` binary uses (src/main.rs), so the figures are the binary's; run
/// with the binary's allocator settings in the environment:
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=1000`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: vigil_aggregator::Args,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = tx.send(true);
    });
    if let Err(e) = vigil_aggregator::run(cli.args, rx).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
