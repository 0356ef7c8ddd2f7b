//! What every vigil crate shares, so that each is done one way: the [`Duration`] type of every
//! config key, flag and rule file (Prometheus's syntax), config-file loading with a size cap and
//! a YAML depth/size budget ([`config`]), the retry [`Backoff`], Prometheus exposition text
//! ([`exposition`]), and, with the `kube` feature, how a daemon reaches the
//! Kubernetes API server ([`kubernetes`]).

pub mod backoff;
pub mod config;
pub mod duration;
pub mod exposition;
#[cfg(feature = "kube")]
pub mod kubernetes;

pub use backoff::Backoff;
pub use duration::{Duration, DurationError};
