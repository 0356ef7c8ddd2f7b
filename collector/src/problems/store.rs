//! Shared problem state: node conditions, the event log (with sequence numbers for pulling)
//! and node-problem-detector's `problem_counter` / `problem_gauge` metrics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::watch::WatchStats;
use vigil_common::exposition::{Format, Kind, Writer};

/// How many events are kept for `/problems/events`.
pub const EVENT_CAPACITY: usize = 4096;

/// `/conditions` and `/problems/events` documents (shared with the aggregator, which pulls them).
pub use vigil_summary::problems::{Condition, Event, EventPage, Severity, Status};

/// A system log monitor's source health, as `/problems/sources` serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceHealth {
    /// The monitor's `source`.
    pub source: String,
    /// The log source cannot be opened or read now (retried with backoff).
    pub failing: bool,
    /// Failed attempts to open or read it so far.
    pub read_errors: u64,
    /// Lines cut at the 8 KiB maximum so far.
    pub lines_truncated: u64,
    /// What failed, while failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Conditions per monitor, in registration order.
    conditions: Vec<(String, Vec<Condition>)>,
    events: VecDeque<Event>,
    next_seq: u64,
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<(String, String), bool>,
    last_reason: HashMap<String, String>,
    /// Self-metrics: log lines read per monitor source.
    lines: BTreeMap<String, Arc<AtomicU64>>,
    /// Self-metrics: plugin runs per (source, result).
    plugin_runs: BTreeMap<(String, &'static str), u64>,
    /// Self-metrics: each log monitor's watcher health.
    watchers: BTreeMap<String, Arc<WatchStats>>,
}

/// The detector's shared state; every monitor writes, HTTP and metrics read.
#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

/// Go's `%q` for the condition-change message (close enough for printable text).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a monitor's conditions (returns its slot).
    pub fn register(&self, source: &str, conditions: Vec<Condition>) -> usize {
        let mut g = self.lock();
        g.conditions.push((source.to_string(), conditions));
        g.conditions.len() - 1
    }

    /// Replaces a monitor's conditions.
    pub fn set_conditions(&self, slot: usize, conditions: &[Condition]) {
        let mut g = self.lock();
        if let Some(entry) = g.conditions.get_mut(slot) {
            entry.1 = conditions.to_vec();
        }
    }

    /// Every condition of every monitor, with `lastHeartbeatTime` = now.
    pub fn conditions(&self) -> Vec<Condition> {
        let now = Utc::now();
        let g = self.lock();
        g.conditions
            .iter()
            .flat_map(|(_, c)| c.iter().cloned())
            .map(|mut c| {
                c.last_heartbeat_time = now;
                c
            })
            .collect()
    }

    /// Appends an event; returns its sequence number.
    pub fn push_event(
        &self,
        source: &str,
        severity: Severity,
        timestamp: DateTime<Utc>,
        reason: &str,
        message: &str,
    ) -> u64 {
        let mut g = self.lock();
        g.next_seq += 1;
        let seq = g.next_seq;
        if g.events.len() == EVENT_CAPACITY {
            g.events.pop_front();
        }
        g.events.push_back(Event {
            seq,
            source: source.to_string(),
            severity,
            timestamp,
            reason: reason.to_string(),
            message: message.to_string(),
        });
        seq
    }

    /// The condition-change event node-problem-detector emits.
    pub fn push_condition_change(
        &self,
        source: &str,
        kind: &str,
        status: Status,
        reason: &str,
        message: &str,
        timestamp: DateTime<Utc>,
    ) -> u64 {
        let text = format!(
            "Node condition {kind} is now: {status}, reason: {reason}, message: {}",
            go_quote(message)
        );
        self.push_event(source, Severity::Info, timestamp, reason, &text)
    }

    /// Events with `seq > since` (oldest first), the last sequence number, and whether
    /// events after `since` were already dropped from the bounded log.
    pub fn events_since(&self, since: u64, limit: usize) -> (Vec<Event>, u64, bool) {
        let g = self.lock();
        let oldest = g.events.front().map(|e| e.seq).unwrap_or(g.next_seq + 1);
        let truncated = since + 1 < oldest && since < g.next_seq;
        let events: Vec<Event> = g
            .events
            .iter()
            .filter(|e| e.seq > since)
            .take(limit)
            .cloned()
            .collect();
        let last = events.last().map(|e| e.seq).unwrap_or(g.next_seq);
        (events, last, truncated)
    }

    /// node-problem-detector's `IncrementProblemCounter(reason, n)` (n = 0 creates the series).
    pub fn increment_counter(&self, reason: &str, n: u64) {
        let mut g = self.lock();
        *g.counters.entry(reason.to_string()).or_insert(0) += n;
    }

    /// node-problem-detector's `SetProblemGauge`: a type has one reason at a time, so the
    /// previous reason of the type drops to 0.
    pub fn set_gauge(&self, kind: &str, reason: &str, value: bool) {
        let mut g = self.lock();
        if let Some(last) = g.last_reason.get(kind).cloned() {
            if last != reason {
                g.gauges.insert((kind.to_string(), last), false);
            }
        }
        g.last_reason.insert(kind.to_string(), reason.to_string());
        g.gauges
            .insert((kind.to_string(), reason.to_string()), value);
    }

    /// The counter of lines a log monitor has read (shared, lock-free on the hot path).
    pub fn line_counter(&self, source: &str) -> Arc<AtomicU64> {
        self.lock()
            .lines
            .entry(source.to_string())
            .or_default()
            .clone()
    }

    /// The health counters of a log monitor's watcher (shared with the watcher).
    pub fn watch_stats(&self, source: &str) -> Arc<WatchStats> {
        self.lock()
            .watchers
            .entry(source.to_string())
            .or_default()
            .clone()
    }

    /// The health of every system log monitor's source, by source name.
    pub fn source_health(&self) -> Vec<SourceHealth> {
        self.lock()
            .watchers
            .iter()
            .map(|(source, w)| SourceHealth {
                source: source.clone(),
                failing: w.failing.load(Ordering::Relaxed),
                read_errors: w.errors.load(Ordering::Relaxed),
                lines_truncated: w.truncated.load(Ordering::Relaxed),
                last_error: w
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            })
            .collect()
    }

    /// Counts one plugin run with its result (`ok`, `nonok`, `unknown`).
    pub fn count_plugin_run(&self, source: &str, result: &'static str) {
        *self
            .lock()
            .plugin_runs
            .entry((source.to_string(), result))
            .or_insert(0) += 1;
    }

    /// Appends the metrics in the Prometheus text format: the detector's own counters, then
    /// node-problem-detector's `problem_counter` / `problem_gauge` under NPD's exact names (a
    /// counter without `_total`, as NPD exports it).
    pub fn write_metrics(&self, out: &mut String) {
        let g = self.lock();
        let mut w = Writer::new(out, Format::Text);
        let lines = "vigil_problem_detector_log_lines_total";
        w.header(
            lines,
            Kind::Counter,
            "Log lines read by each system log monitor.",
        );
        for (source, n) in &g.lines {
            w.sample(lines, &[("source", source)], n.load(Ordering::Relaxed));
        }
        let runs = "vigil_problem_detector_plugin_runs_total";
        w.header(runs, Kind::Counter, "Custom plugin runs by result.");
        for ((source, result), n) in &g.plugin_runs {
            w.sample(runs, &[("result", result), ("source", source)], *n);
        }
        type Get = fn(&WatchStats) -> u64;
        let watch: [(&str, Kind, &str, Get); 3] = [
            (
                "vigil_problem_detector_log_read_errors_total",
                Kind::Counter,
                "Failed attempts to open or read a log monitor's source (retried with backoff).",
                |w| w.errors.load(Ordering::Relaxed),
            ),
            (
                "vigil_problem_detector_log_lines_truncated_total",
                Kind::Counter,
                "Log lines cut at the maximum line length (8 KiB).",
                |w| w.truncated.load(Ordering::Relaxed),
            ),
            (
                "vigil_problem_detector_log_source_failing",
                Kind::Gauge,
                "1 while a log monitor's source cannot be opened or read.",
                |w| u64::from(w.failing.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, get) in watch {
            w.header(name, kind, help);
            for (source, stats) in &g.watchers {
                w.sample(name, &[("source", source)], get(stats));
            }
        }
        w.header(
            "problem_counter",
            Kind::Counter,
            "Number of times a specific type of problem have occurred.",
        );
        for (reason, n) in &g.counters {
            w.sample("problem_counter", &[("reason", reason)], *n);
        }
        w.header(
            "problem_gauge",
            Kind::Gauge,
            "Whether a specific type of problem is affecting the node or not.",
        );
        for ((kind, reason), v) in &g.gauges {
            w.sample(
                "problem_gauge",
                &[("reason", reason), ("type", kind)],
                u64::from(*v),
            );
        }
    }
}

#[cfg(any(test, feature = "testing"))]
impl Store {
    /// A store for tests (here and in the aggregator's problem pull tests, through the
    /// `testing` feature): kernel-monitor with the KernelDeadlock condition False and one
    /// OOMKilling warning at `now`.
    pub fn kernel_monitor_sample(now: chrono::DateTime<chrono::Utc>) -> Arc<Store> {
        let store = Arc::new(Store::default());
        store.register(
            "kernel-monitor",
            vec![Condition {
                kind: "KernelDeadlock".into(),
                status: Status::False,
                last_heartbeat_time: now,
                last_transition_time: now,
                reason: "KernelHasNoDeadlock".into(),
                message: "kernel has no deadlock".into(),
            }],
        );
        store.push_event(
            "kernel-monitor",
            Severity::Warn,
            now,
            "OOMKilling",
            "Killed process 1",
        );
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauge_keeps_one_reason_per_type() {
        let s = Store::default();
        s.set_gauge("KernelDeadlock", "DockerHung", false);
        s.set_gauge("KernelDeadlock", "DockerHung", true);
        s.set_gauge("KernelDeadlock", "OtherHung", true);
        let mut out = String::new();
        s.write_metrics(&mut out);
        assert!(
            out.contains("problem_gauge{reason=\"DockerHung\",type=\"KernelDeadlock\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("problem_gauge{reason=\"OtherHung\",type=\"KernelDeadlock\"} 1\n"),
            "{out}"
        );
    }

    #[test]
    fn events_since_pages_and_reports_truncation() {
        let s = Store::default();
        let t = Utc::now();
        for i in 0..(EVENT_CAPACITY + 10) {
            s.push_event("src", Severity::Warn, t, "R", &format!("m{i}"));
        }
        let (ev, last, truncated) = s.events_since(0, 5);
        assert!(truncated);
        assert_eq!(ev.len(), 5);
        assert_eq!(ev[0].seq, 11);
        assert_eq!(last, 15);
        let (ev, last, truncated) = s.events_since((EVENT_CAPACITY + 10) as u64, 100);
        assert!(ev.is_empty() && !truncated);
        assert_eq!(last, (EVENT_CAPACITY + 10) as u64);
    }

    #[test]
    fn label_values_are_escaped() {
        let s = Store::default();
        s.increment_counter("a\"b\\c\nd", 1);
        let mut out = String::new();
        s.write_metrics(&mut out);
        assert!(
            out.contains(r#"problem_counter{reason="a\"b\\c\nd"} 1"#),
            "{out}"
        );
    }
}
