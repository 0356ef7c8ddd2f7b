//! How every vigil listener (collector, aggregator, log shipper) serves HTTP: TLS, timeouts,
//! connection bounds, error bodies and authentication, one way for all of them.
//!
//! A component builds its `axum::Router` (wrapped in whatever layers it needs, authentication
//! included), binds a `TcpListener` and calls [`serve`] with [`Options`]: the defaults give the
//! header-read and idle timeouts and the process's connection limit; [`Options::with_tls`] turns
//! on HTTPS with a configuration from [`tls::server_config`].

pub mod auth;
pub mod bodies;
pub mod gate;
pub mod limit;
pub mod listener;
mod serve;
pub mod tls;

pub use gate::Gate;
pub use limit::{write_metrics, ConnectionLimit};
pub use listener::ListenerArgs;
pub use serve::{serve, Options, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
