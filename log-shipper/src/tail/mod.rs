//! Tailing: file identity, checkpoints, and the watcher that wakes the reader.

pub mod checkpoint;
pub mod fingerprint;
