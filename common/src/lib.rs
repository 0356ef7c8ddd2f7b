//! What every vigil crate shares, so that each is done one way: the [`Duration`] type of every
//! config key, flag and rule file (Prometheus's syntax), config-file loading with a size cap and
//! a YAML depth/size budget ([`config`]), the retry [`Backoff`], [`error_chain`], Prometheus exposition text
//! ([`exposition`]), and, with the `kube` feature, how a daemon reaches the
//! Kubernetes API server ([`kubernetes`]).

pub mod backoff;
pub mod config;
pub mod duration;
pub mod exposition;
#[cfg(feature = "kube")]
pub mod kubernetes;

pub use backoff::Backoff;

/// An error and its sources, joined with `: `, each said once (some errors, kube's, already
/// repeat their source; reqwest's hide the useful part, e.g. a certificate error, in one).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct E(String, #[source] Option<Box<E>>);

    #[test]
    fn an_error_chain_says_each_source_once() {
        let inner = E("connection refused".into(), None);
        let mid = E("tcp connect error: connection refused".into(), Some(Box::new(inner)));
        let top = E("request failed".into(), Some(Box::new(mid)));
        assert_eq!(
            super::error_chain(&top),
            "request failed: tcp connect error: connection refused"
        );
        assert_eq!(super::error_chain(&E("alone".into(), None)), "alone");
    }
}
pub use duration::{Duration, DurationError};
