//! Dashboards: charts, the web UI and the Grafana dashboards.
//! Not built yet; see the open issues.
