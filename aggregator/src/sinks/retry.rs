//! The sinks' retry delays: vigil's one exponential backoff with jitter (`vigil_common::Backoff`).

pub use vigil_common::Backoff;
