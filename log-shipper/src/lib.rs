//! The log-shipper (not built yet: `vigil log-shipper` exits with an error saying so).

pub mod discovery;
pub mod enrich;
pub mod parse;
pub mod tail;

use tokio::sync::watch;

/// Command-line options of `vigil log-shipper`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {}

/// Errors of the log-shipper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`vigil log-shipper` is not built yet")]
    NotBuilt,
}

/// Runs the log-shipper until `shutdown` fires.
pub async fn run(_args: Args, _shutdown: watch::Receiver<bool>) -> Result<(), Error> {
    Err(Error::NotBuilt)
}
