//! HTTPS for the aggregator's API lives in `vigil_server::tls` (every listener shares it); these
//! are its names as the aggregator's config and errors use them.

pub use vigil_server::tls::{server_config, Error, TlsOptions, SELF_SIGNED_CERT, SELF_SIGNED_KEY};
