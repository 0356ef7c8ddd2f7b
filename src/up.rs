//! `vigil up`: every part of vigil on this machine, with embedded defaults.

use anyhow::Result;
use clap::Parser;
use tokio::sync::watch;

#[derive(Parser, Debug)]
pub struct Args {
    /// Address of the collector (cAdvisor metrics, Summary API).
    #[arg(long, default_value = "127.0.0.1:4194")]
    collector_listen: std::net::SocketAddr,
}

pub async fn run(args: Args, shutdown: watch::Receiver<bool>) -> Result<()> {
    let collector_args = vigil_collector::Args::for_up(args.collector_listen);
    println!("vigil collector: http://{}/metrics", args.collector_listen);
    vigil_collector::run(collector_args, shutdown).await?;
    Ok(())
}
