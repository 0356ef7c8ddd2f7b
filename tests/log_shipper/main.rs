//! The log shipper end to end: the real `vigil log-shipper` tailing a fake /var/log/pods into the strict Elasticsearch `_bulk` test server (support/es_bulk.rs), with TLS, Kubernetes metadata, faults and a kubelet-like torture writer.

#[path = "../support/mod.rs"]
mod support;

mod e2e;
mod es_server;
mod hardening;
mod kubernetes;
mod metrics;
mod tls;
mod torture;
