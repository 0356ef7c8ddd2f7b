//! The aggregator's own metrics on /metrics (rounds, durations, node pulls, rates, store, snapshots, Kubernetes watches), written with `vigil_common::exposition`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vigil_common::exposition::{Format, Histogram, Kind, Writer};

use crate::scrape::kubernetes::{WatchStats, RESOURCES};
use crate::scrape::{NodeState, Scraper};
use crate::store::Store;

/// Counters and gauges updated by the run loop.
#[derive(Debug)]
pub struct SelfMetrics {
    pub rounds: AtomicU64,
    pub last_round_seconds: Mutex<f64>,
    /// Wall time of each round (fetch, process, store).
    pub round_seconds: Histogram,
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
    /// The Kubernetes source's watcher counters, when that source is used.
    pub kube_watch: Option<Arc<WatchStats>>,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        SelfMetrics {
            rounds: AtomicU64::new(0),
            last_round_seconds: Mutex::new(0.0),
            // 50 ms to 25.6 s.
            round_seconds: Histogram::exponential(0.05, 2.0, 10),
            last_fetch_seconds: Mutex::new(0.0),
            last_process_seconds: Mutex::new(0.0),
            last_store_seconds: Mutex::new(0.0),
            last_batch_sets: AtomicU64::new(0),
            last_batch_timestamp_seconds: AtomicU64::new(0),
            discovery_errors: AtomicU64::new(0),
            store_errors: AtomicU64::new(0),
            snapshots_written: AtomicU64::new(0),
            snapshot_errors: AtomicU64::new(0),
            rates_computed: AtomicU64::new(0),
            counter_resets: AtomicU64::new(0),
            container_restarts: AtomicU64::new(0),
            rate_state_sets: AtomicU64::new(0),
            duplicate_nodes: AtomicU64::new(0),
            kube_watch: None,
        }
    }
}

impl SelfMetrics {
    pub fn set(m: &Mutex<f64>, v: f64) {
        *m.lock().unwrap() = v;
    }

    /// Appends the exposition text (Prometheus text format 0.0.4).
    pub fn render(&self, out: &mut String, store: &Store, scraper: &Scraper) {
        let g = |m: &Mutex<f64>| *m.lock().unwrap();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut w = Writer::new(out, Format::Text);
        w.counter(
            "vigil_aggregator_rounds_total",
            "Scrape rounds completed.",
            c(&self.rounds),
        );
        w.histogram(
            "vigil_aggregator_round_duration_seconds",
            "Wall time of scrape rounds (fetch, process, store).",
            &self.round_seconds,
        );
        let phases = "vigil_aggregator_last_round_phase_seconds";
        w.header(phases, Kind::Gauge, "Wall time of the last round's phases.");
        for (phase, v) in [
            ("total", &self.last_round_seconds),
            ("fetch", &self.last_fetch_seconds),
            ("process", &self.last_process_seconds),
            ("store", &self.last_store_seconds),
        ] {
            w.sample(phases, &[("phase", phase)], g(v));
        }
        w.gauge(
            "vigil_aggregator_batch_metric_sets",
            "Metric sets in the newest batch.",
            c(&self.last_batch_sets),
        );
        w.gauge(
            "vigil_aggregator_batch_timestamp_seconds",
            "Time of the newest batch.",
            c(&self.last_batch_timestamp_seconds),
        );
        for (name, help, v) in [
            (
                "vigil_aggregator_discovery_errors_total",
                "Failed node-list refreshes (the previous list is kept).",
                &self.discovery_errors,
            ),
            (
                "vigil_aggregator_rates_computed_total",
                "Rates derived from counters.",
                &self.rates_computed,
            ),
            (
                "vigil_aggregator_counter_resets_total",
                "Counters that went backwards (no rate emitted).",
                &self.counter_resets,
            ),
            (
                "vigil_aggregator_container_restarts_total",
                "Container start-time changes seen.",
                &self.container_restarts,
            ),
            (
                "vigil_aggregator_duplicate_node_names_total",
                "Node documents dropped because another target in the same round reported the same node name.",
                &self.duplicate_nodes,
            ),
        ] {
            w.counter(name, help, c(v));
        }
        w.gauge(
            "vigil_aggregator_rate_state_sets",
            "Metric sets whose previous counters are remembered.",
            c(&self.rate_state_sets),
        );

        let s = &store.stats;
        w.gauge(
            "vigil_aggregator_store_series",
            "Series in the in-memory window.",
            s.series.load(Ordering::Relaxed) as u64,
        );
        w.gauge(
            "vigil_aggregator_store_entities",
            "Metric sets (containers, pods, namespaces, nodes, cluster) in the store.",
            s.entities.load(Ordering::Relaxed) as u64,
        );
        w.counter(
            "vigil_aggregator_store_points_appended_total",
            "Points added to the store.",
            s.points_appended.load(Ordering::Relaxed),
        );
        w.counter(
            "vigil_aggregator_store_series_rejected_total",
            "New series refused because --max-series was reached.",
            s.series_rejected.load(Ordering::Relaxed),
        );
        w.counter(
            "vigil_aggregator_store_points_out_of_order_total",
            "Points not newer than their series' last point (dropped).",
            s.points_out_of_order.load(Ordering::Relaxed),
        );
        w.gauge(
            "vigil_aggregator_store_points_bytes",
            "Heap bytes of encoded points at the last round.",
            s.heap_bytes.load(Ordering::Relaxed) as u64,
        );
        let snapshots = "vigil_aggregator_snapshots_total";
        w.header(
            snapshots,
            Kind::Counter,
            "Store snapshots written to --data-dir, by result.",
        );
        w.sample(snapshots, &[("result", "ok")], c(&self.snapshots_written));
        w.sample(snapshots, &[("result", "error")], c(&self.snapshot_errors));

        w.counter(
            "vigil_aggregator_duplicate_pod_names_total",
            "Pods dropped because an earlier pod in the same node document had the same namespace and name.",
            scraper.duplicate_pods(),
        );
        let nodes = scraper.node_states();
        type PerNode = fn(&NodeState) -> f64;
        let per_node: [(&str, Kind, &str, PerNode); 4] = [
            (
                "vigil_aggregator_node_up",
                Kind::Gauge,
                "1 when the node's last pull succeeded, 0 when the node is stale.",
                |n| f64::from(u8::from(n.up)),
            ),
            (
                "vigil_aggregator_node_scrape_failures_total",
                Kind::Counter,
                "Failed pulls per node.",
                |n| n.failures as f64,
            ),
            (
                "vigil_aggregator_node_scrape_late_total",
                Kind::Counter,
                "Rounds the node missed because it had not answered by the round's deadline.",
                |n| n.late as f64,
            ),
            (
                "vigil_aggregator_node_scrape_duration_seconds",
                Kind::Gauge,
                "Duration of the node's last Summary request.",
                |n| n.last_duration.as_secs_f64(),
            ),
        ];
        for (name, kind, help, get) in per_node {
            w.header(name, kind, help);
            for (url, n) in &nodes {
                let labels = [("node", n.name.as_str()), ("url", url.as_str())];
                w.sample(name, &labels, get(n));
            }
        }
        let by_reason = "vigil_aggregator_scrape_failures_total";
        w.header(
            by_reason,
            Kind::Counter,
            "Failed pulls by reason (transport, timeout, status, malformed, too_large, late).",
        );
        let counted = scraper.failures_by_reason();
        for reason in crate::scrape::FAILURE_REASONS {
            let n = counted
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            w.sample(by_reason, &[("reason", reason)], n);
        }

        if let Some(watch) = &self.kube_watch {
            type Get = fn(&WatchStats, usize) -> u64;
            let families: [(&str, Kind, &str, Get); 4] = [
                (
                    "vigil_aggregator_kubernetes_watch_errors_total",
                    Kind::Counter,
                    "Failed Kubernetes list or watch requests and ERROR events, by resource (each retried with backoff).",
                    |w, k| w.errors[k].load(Ordering::Relaxed),
                ),
                (
                    "vigil_aggregator_kubernetes_lists_total",
                    Kind::Counter,
                    "Full Kubernetes lists by resource: the first one and each relist (after a 410 or an expired watch).",
                    |w, k| w.lists[k].load(Ordering::Relaxed),
                ),
                (
                    "vigil_aggregator_kubernetes_watch_events_total",
                    Kind::Counter,
                    "Objects added, modified or deleted by Kubernetes watch events, by resource.",
                    |w, k| w.events[k].load(Ordering::Relaxed),
                ),
                (
                    "vigil_aggregator_kubernetes_objects",
                    Kind::Gauge,
                    "Objects in the Kubernetes reflector store, by resource.",
                    |w, k| w.objects[k].load(Ordering::Relaxed),
                ),
            ];
            for (name, kind, help, get) in families {
                w.header(name, kind, help);
                for (k, resource) in RESOURCES.iter().enumerate() {
                    w.sample(name, &[("resource", resource)], get(watch, k));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format_with_unchanged_names() {
        let m = SelfMetrics {
            kube_watch: Some(Arc::default()),
            ..Default::default()
        };
        m.rounds.fetch_add(3, Ordering::Relaxed);
        m.round_seconds.observe(0.3);
        SelfMetrics::set(&m.last_fetch_seconds, 0.25);
        m.snapshot_errors.fetch_add(2, Ordering::Relaxed);
        let store = Store::new(60_000, 1000);
        let scraper = Scraper::new(std::time::Duration::from_secs(1), 1);
        let mut out = String::new();
        m.render(&mut out, &store, &scraper);
        for want in [
            "# HELP vigil_aggregator_rounds_total Scrape rounds completed.\n# TYPE vigil_aggregator_rounds_total counter\nvigil_aggregator_rounds_total 3\n",
            "# TYPE vigil_aggregator_round_duration_seconds histogram\n",
            "vigil_aggregator_round_duration_seconds_count 1\n",
            "vigil_aggregator_last_round_phase_seconds{phase=\"fetch\"} 0.25\n",
            "vigil_aggregator_snapshots_total{result=\"error\"} 2\n",
            "vigil_aggregator_scrape_failures_total{reason=\"too_large\"} 0\n",
            "# TYPE vigil_aggregator_store_series gauge\nvigil_aggregator_store_series 0\n",
            "vigil_aggregator_kubernetes_watch_errors_total{resource=\"pods\"} 0\n",
            "vigil_aggregator_kubernetes_objects{resource=\"namespaces\"} 0\n",
        ] {
            assert!(out.contains(want), "{want:?} missing in:\n{out}");
        }
        assert!(!out.contains("# EOF") && !out.contains(".."), "{out}");
        assert!(
            out.contains("vigil_aggregator_round_duration_seconds_bucket{le=\"0.4\"} 1\n"),
            "{out}"
        );
    }
}
