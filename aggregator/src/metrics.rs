//! The aggregator's own metrics (Prometheus text on /metrics): rounds, durations, node pulls,
//! rates, store size and limits, snapshots.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::scrape::Scraper;
use crate::store::Store;

/// Counters and gauges updated by the run loop.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    pub rounds: AtomicU64,
    pub last_round_seconds: Mutex<f64>,
    pub round_seconds_sum: Mutex<f64>,
    pub last_fetch_seconds: Mutex<f64>,
    pub last_process_seconds: Mutex<f64>,
    pub last_store_seconds: Mutex<f64>,
    pub last_batch_sets: AtomicU64,
    pub last_batch_timestamp_seconds: AtomicU64,
    pub discovery_errors: AtomicU64,
    pub store_errors: AtomicU64,
    pub snapshots_written: AtomicU64,
    pub snapshot_errors: AtomicU64,
    pub rates_computed: AtomicU64,
    pub counter_resets: AtomicU64,
    pub container_restarts: AtomicU64,
    pub rate_state_sets: AtomicU64,
    pub duplicate_nodes: AtomicU64,
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

impl SelfMetrics {
    pub fn set(m: &Mutex<f64>, v: f64) {
        *m.lock().unwrap() = v;
    }

    /// Appends the exposition text.
    pub fn render(&self, out: &mut String, store: &Store, scraper: &Scraper) {
        let g = |m: &Mutex<f64>| *m.lock().unwrap();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        head(
            out,
            "vigil_aggregator_rounds_total",
            "counter",
            "Scrape rounds completed.",
        );
        let _ = writeln!(out, "vigil_aggregator_rounds_total {}", c(&self.rounds));
        head(
            out,
            "vigil_aggregator_round_duration_seconds",
            "summary",
            "Wall time of scrape rounds (fetch, process, store).",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_round_duration_seconds_sum {}",
            g(&self.round_seconds_sum)
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_round_duration_seconds_count {}",
            c(&self.rounds)
        );
        head(
            out,
            "vigil_aggregator_last_round_phase_seconds",
            "gauge",
            "Wall time of the last round's phases.",
        );
        for (phase, v) in [
            ("total", &self.last_round_seconds),
            ("fetch", &self.last_fetch_seconds),
            ("process", &self.last_process_seconds),
            ("store", &self.last_store_seconds),
        ] {
            let _ = writeln!(
                out,
                "vigil_aggregator_last_round_phase_seconds{{phase=\"{phase}\"}} {}",
                g(v)
            );
        }
        head(
            out,
            "vigil_aggregator_batch_metric_sets",
            "gauge",
            "Metric sets in the newest batch.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_batch_metric_sets {}",
            c(&self.last_batch_sets)
        );
        head(
            out,
            "vigil_aggregator_batch_timestamp_seconds",
            "gauge",
            "Time of the newest batch.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_batch_timestamp_seconds {}",
            c(&self.last_batch_timestamp_seconds)
        );
        head(
            out,
            "vigil_aggregator_discovery_errors_total",
            "counter",
            "Failed node-list refreshes (the previous list is kept).",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_discovery_errors_total {}",
            c(&self.discovery_errors)
        );
        head(
            out,
            "vigil_aggregator_rates_computed_total",
            "counter",
            "Rates derived from counters.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_rates_computed_total {}",
            c(&self.rates_computed)
        );
        head(
            out,
            "vigil_aggregator_counter_resets_total",
            "counter",
            "Counters that went backwards (no rate emitted).",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_counter_resets_total {}",
            c(&self.counter_resets)
        );
        head(
            out,
            "vigil_aggregator_container_restarts_total",
            "counter",
            "Container start-time changes seen.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_container_restarts_total {}",
            c(&self.container_restarts)
        );
        head(
            out,
            "vigil_aggregator_duplicate_node_names_total",
            "counter",
            "Node documents dropped because another target in the same round reported the same node name.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_duplicate_node_names_total {}",
            c(&self.duplicate_nodes)
        );
        head(
            out,
            "vigil_aggregator_rate_state_sets",
            "gauge",
            "Metric sets whose previous counters are remembered.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_rate_state_sets {}",
            c(&self.rate_state_sets)
        );

        let s = &store.stats;
        head(
            out,
            "vigil_aggregator_store_series",
            "gauge",
            "Series in the in-memory window.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_store_series {}",
            s.series.load(Ordering::Relaxed)
        );
        head(
            out,
            "vigil_aggregator_store_entities",
            "gauge",
            "Metric sets (containers, pods, namespaces, nodes, cluster) in the store.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_store_entities {}",
            s.entities.load(Ordering::Relaxed)
        );
        head(
            out,
            "vigil_aggregator_store_points_appended_total",
            "counter",
            "Points added to the store.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_store_points_appended_total {}",
            s.points_appended.load(Ordering::Relaxed)
        );
        head(
            out,
            "vigil_aggregator_store_series_rejected_total",
            "counter",
            "New series refused because --max-series was reached.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_store_series_rejected_total {}",
            s.series_rejected.load(Ordering::Relaxed)
        );
        head(
            out,
            "vigil_aggregator_store_points_out_of_order_total",
            "counter",
            "Points not newer than their series' last point (dropped).",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_store_points_out_of_order_total {}",
            s.points_out_of_order.load(Ordering::Relaxed)
        );
        head(
            out,
            "vigil_aggregator_store_points_bytes",
            "gauge",
            "Heap bytes of encoded points at the last round.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_store_points_bytes {}",
            s.heap_bytes.load(Ordering::Relaxed)
        );
        head(
            out,
            "vigil_aggregator_snapshots_total",
            "counter",
            "Store snapshots written to --data-dir, by result.",
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_snapshots_total{{result=\"ok\"}} {}",
            c(&self.snapshots_written)
        );
        let _ = writeln!(
            out,
            "vigil_aggregator_snapshots_total{{result=\"error\"}} {}",
            c(&self.snapshot_errors)
        );

        let nodes = scraper.node_states();
        head(
            out,
            "vigil_aggregator_node_up",
            "gauge",
            "1 when the node's last pull succeeded, 0 when the node is stale.",
        );
        for (url, n) in &nodes {
            let _ = writeln!(
                out,
                "vigil_aggregator_node_up{{node=\"{}\",url=\"{}\"}} {}",
                esc(&n.name),
                esc(url),
                u8::from(n.up)
            );
        }
        head(
            out,
            "vigil_aggregator_node_scrape_failures_total",
            "counter",
            "Failed pulls per node.",
        );
        for (url, n) in &nodes {
            let _ = writeln!(
                out,
                "vigil_aggregator_node_scrape_failures_total{{node=\"{}\",url=\"{}\"}} {}",
                esc(&n.name),
                esc(url),
                n.failures
            );
        }
        head(
            out,
            "vigil_aggregator_node_scrape_duration_seconds",
            "gauge",
            "Duration of the node's last Summary request.",
        );
        for (url, n) in &nodes {
            let _ = writeln!(
                out,
                "vigil_aggregator_node_scrape_duration_seconds{{node=\"{}\",url=\"{}\"}} {}",
                esc(&n.name),
                esc(url),
                n.last_duration.as_secs_f64()
            );
        }
        head(
            out,
            "vigil_aggregator_scrape_failures_total",
            "counter",
            "Failed pulls by reason (transport, timeout, status, malformed, too_large).",
        );
        for reason in ["transport", "timeout", "status", "malformed", "too_large"] {
            let n = scraper
                .failures_by_reason()
                .into_iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| n)
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "vigil_aggregator_scrape_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
    }
}
