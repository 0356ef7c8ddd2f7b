//! `vigil aggregator` as a standalone program (the same `vigil_aggregator::run`), so the scale
//! benchmark can build just this crate in release mode.

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
