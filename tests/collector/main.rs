//! The collector end to end: the real `vigil collector` on fixture trees and on this machine's cgroups, read by Prometheus, promtool and node_exporter; the node problem detector.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod problems;
mod prometheus;
mod real_cgroups;
mod volumes;
