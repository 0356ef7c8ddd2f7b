//! How every vigil listener (collector, aggregator, log shipper) serves HTTP: TLS, timeouts,
//! connection bounds, error bodies and authentication, one way for all of them.
