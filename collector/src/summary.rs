//! The kubelet Summary API wire types (`/stats/summary`), defined in the `vigil-summary` crate so
//! that the aggregator reads the same types without depending on the collector.

pub use vigil_summary::*;
