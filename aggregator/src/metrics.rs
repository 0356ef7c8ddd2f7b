//! The aggregator's own metrics on /metrics (rounds, durations, node pulls, rates, store, snapshots, Kubernetes watches), encoded with prometheus-client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use vigil_collector::self_metrics::{counter_family, encode, set, Labels};

use crate::scrape::kubernetes::{WatchStats, RESOURCES};
use crate::scrape::Scraper;
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
            round_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 10)),
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

/// prometheus-client adds the final period of HELP texts itself.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

/// A registry under construction, named with the `vigil_aggregator_` prefix and without the
/// `_total` of counters (prometheus-client adds it).
struct Reg(Registry);

impl Reg {
    fn counter(&mut self, name: &str, text: &str, v: u64) {
        self.0.register(name, help(text), ConstCounter::new(v));
    }
    fn gauge(&mut self, name: &str, text: &str, v: i64) {
        self.0.register(name, help(text), ConstGauge::new(v));
    }
    fn counters(
        &mut self,
        name: &str,
        text: &str,
    ) -> Family<Labels, prometheus_client::metrics::counter::Counter> {
        counter_family(&mut self.0, name, help(text))
    }
    fn gauges(&mut self, name: &str, text: &str) -> Family<Labels, Gauge> {
        let f = Family::<Labels, Gauge>::default();
        self.0.register(name, help(text), f.clone());
        f
    }
    fn gauges_f64(&mut self, name: &str, text: &str) -> Family<Labels, Gauge<f64, AtomicU64>> {
        let f = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        self.0.register(name, help(text), f.clone());
        f
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl SelfMetrics {
    pub fn set(m: &Mutex<f64>, v: f64) {
        *m.lock().unwrap() = v;
    }

    /// Appends the exposition text (Prometheus text format 0.0.4).
    pub fn render(&self, out: &mut String, store: &Store, scraper: &Scraper) {
        let g = |m: &Mutex<f64>| *m.lock().unwrap();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let i = |a: &AtomicU64| a.load(Ordering::Relaxed) as i64;
        let mut r = Reg(Registry::with_prefix("vigil_aggregator"));
        r.counter("rounds", "Scrape rounds completed.", c(&self.rounds));
        r.0.register(
            "round_duration_seconds",
            "Wall time of scrape rounds (fetch, process, store)",
            self.round_seconds.clone(),
        );
        let phases = r.gauges_f64(
            "last_round_phase_seconds",
            "Wall time of the last round's phases.",
        );
        for (phase, v) in [
            ("total", &self.last_round_seconds),
            ("fetch", &self.last_fetch_seconds),
            ("process", &self.last_process_seconds),
            ("store", &self.last_store_seconds),
        ] {
            phases.get_or_create(&labels(&[("phase", phase)])).set(g(v));
        }
        r.gauge(
            "batch_metric_sets",
            "Metric sets in the newest batch.",
            i(&self.last_batch_sets),
        );
        r.gauge(
            "batch_timestamp_seconds",
            "Time of the newest batch.",
            i(&self.last_batch_timestamp_seconds),
        );
        r.counter(
            "discovery_errors",
            "Failed node-list refreshes (the previous list is kept).",
            c(&self.discovery_errors),
        );
        r.counter(
            "rates_computed",
            "Rates derived from counters.",
            c(&self.rates_computed),
        );
        r.counter(
            "counter_resets",
            "Counters that went backwards (no rate emitted).",
            c(&self.counter_resets),
        );
        r.counter(
            "container_restarts",
            "Container start-time changes seen.",
            c(&self.container_restarts),
        );
        r.counter(
            "duplicate_node_names",
            "Node documents dropped because another target in the same round reported the same node name.",
            c(&self.duplicate_nodes),
        );
        r.gauge(
            "rate_state_sets",
            "Metric sets whose previous counters are remembered.",
            i(&self.rate_state_sets),
        );

        let s = &store.stats;
        r.gauge(
            "store_series",
            "Series in the in-memory window.",
            s.series.load(Ordering::Relaxed) as i64,
        );
        r.gauge(
            "store_entities",
            "Metric sets (containers, pods, namespaces, nodes, cluster) in the store.",
            s.entities.load(Ordering::Relaxed) as i64,
        );
        r.counter(
            "store_points_appended",
            "Points added to the store.",
            s.points_appended.load(Ordering::Relaxed) as u64,
        );
        r.counter(
            "store_series_rejected",
            "New series refused because --max-series was reached.",
            s.series_rejected.load(Ordering::Relaxed) as u64,
        );
        r.counter(
            "store_points_out_of_order",
            "Points not newer than their series' last point (dropped).",
            s.points_out_of_order.load(Ordering::Relaxed) as u64,
        );
        r.gauge(
            "store_points_bytes",
            "Heap bytes of encoded points at the last round.",
            s.heap_bytes.load(Ordering::Relaxed) as i64,
        );
        let snapshots = r.counters(
            "snapshots",
            "Store snapshots written to --data-dir, by result.",
        );
        set(&snapshots, &[("result", "ok")], c(&self.snapshots_written));
        set(&snapshots, &[("result", "error")], c(&self.snapshot_errors));

        r.counter(
            "duplicate_pod_names",
            "Pods dropped because an earlier pod in the same node document had the same namespace and name.",
            scraper.duplicate_pods(),
        );
        let nodes = scraper.node_states();
        let up = r.gauges(
            "node_up",
            "1 when the node's last pull succeeded, 0 when the node is stale.",
        );
        let failures = r.counters("node_scrape_failures", "Failed pulls per node.");
        let late = r.counters(
            "node_scrape_late",
            "Rounds the node missed because it had not answered by the round's deadline.",
        );
        let durations = r.gauges_f64(
            "node_scrape_duration_seconds",
            "Duration of the node's last Summary request.",
        );
        for (url, n) in &nodes {
            let l = labels(&[("node", &n.name), ("url", url)]);
            up.get_or_create(&l).set(i64::from(n.up));
            failures.get_or_create(&l).inc_by(n.failures);
            late.get_or_create(&l).inc_by(n.late);
            durations
                .get_or_create(&l)
                .set(n.last_duration.as_secs_f64());
        }
        let by_reason = r.counters(
            "scrape_failures",
            "Failed pulls by reason (transport, timeout, status, malformed, too_large, late).",
        );
        let counted = scraper.failures_by_reason();
        for reason in crate::scrape::FAILURE_REASONS {
            let n = counted
                .iter()
                .find(|(r, _)| *r == reason)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            set(&by_reason, &[("reason", reason)], n);
        }

        if let Some(w) = &self.kube_watch {
            let errors = r.counters(
                "kubernetes_watch_errors",
                "Failed Kubernetes list or watch requests and ERROR events, by resource (each retried with backoff).",
            );
            let lists = r.counters(
                "kubernetes_lists",
                "Full Kubernetes lists by resource: the first one and each relist (after a 410 or an expired watch).",
            );
            let events = r.counters(
                "kubernetes_watch_events",
                "Objects added, modified or deleted by Kubernetes watch events, by resource.",
            );
            let objects = r.gauges(
                "kubernetes_objects",
                "Objects in the Kubernetes reflector store, by resource.",
            );
            for (k, name) in RESOURCES.iter().enumerate() {
                let res = [("resource", *name)];
                set(&errors, &res, c(&w.errors[k]));
                set(&lists, &res, c(&w.lists[k]));
                set(&events, &res, c(&w.events[k]));
                objects.get_or_create(&labels(&res)).set(i(&w.objects[k]));
            }
        }
        encode_text(&r.0, out);
    }
}

/// Appends a registry in the Prometheus text format (0.0.4) without OpenMetrics' end marker:
/// /metrics is the aggregator's families followed by the sinks'.
pub(crate) fn encode_text(registry: &Registry, out: &mut String) {
    let start = out.len();
    encode(registry, out);
    if out[start..].ends_with("# EOF\n") {
        out.truncate(out.len() - "# EOF\n".len());
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
    }
}
