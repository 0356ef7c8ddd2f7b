//! The aggregator (not built yet: `vigil aggregator` exits with an error saying so).

pub mod batch;
pub mod sinks;

use tokio::sync::watch;

/// Command-line options of `vigil aggregator`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {}

/// Errors of the aggregator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`vigil aggregator` is not built yet")]
    NotBuilt,
}

/// Runs the aggregator until `shutdown` fires.
pub async fn run(_args: Args, _shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    Err(Error::NotBuilt)
}
