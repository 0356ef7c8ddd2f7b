//! The aggregator's sinks against the real InfluxDB, VictoriaMetrics and Prometheus: what arrives, and what is kept or dropped when the peer fails.

#[path = "../support/mod.rs"]
mod support;

mod e2e;
mod faults;
mod influxdb;
mod prometheus;
mod victoria;
