//! Dashboards: charts drawn on the server (`chart`), the web UI, and the Grafana dashboards.

pub mod chart;
