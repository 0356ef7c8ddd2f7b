//! What every vigil crate shares, so that each is done one way: the [`Duration`] type of every
//! config key, flag and rule file (Prometheus's syntax), config-file loading with a size cap and
//! a YAML depth/size budget ([`config`]), the retry [`Backoff`], Prometheus exposition text
//! ([`exposition`]), and where a pod finds the API server and its service account ([`incluster`]).

pub mod backoff;
pub mod config;
pub mod duration;
pub mod exposition;
pub mod incluster;

pub use backoff::Backoff;
pub use duration::{Duration, DurationError};
