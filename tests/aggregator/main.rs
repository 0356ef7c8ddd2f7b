//! The aggregator end to end: simulated nodes and real collectors behind the real `vigil aggregator`, its Heapster, metrics.k8s.io and Prometheus query APIs, TLS, Kubernetes discovery and faults.
//!
//! `kube_memory.rs` is its own binary (`aggregator_memory` in Cargo.toml): it counts the heap
//! with dhat's global allocator, which would count every other test running beside it.

#[path = "../support/mod.rs"]
mod support;

mod collectors;
mod e2e;
mod faults;
mod kube;
mod query_api;
mod query_api_prometheus;
mod tls;
