//! The web UI in Debian's headless Chromium, and the Grafana dashboards' queries run against live servers.

#[path = "../support/mod.rs"]
mod support;

mod browser;
mod grafana;
mod problems;
