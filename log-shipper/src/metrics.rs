//! Self-metrics of the log shipper, kept in `prometheus-client` counters and gauges and exposed on `/metrics` in its
//! OpenMetrics text encoding.

use crate::parse::ParseCounts;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counters and gauges shared by the reader, the sink, the metadata refresher and the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    pub lines_read: Counter,
    pub bytes_read: Counter,
    pub records_read: Counter,
    pub records_shipped: Counter,
    pub records_duplicate: Counter,
    pub records_retried: Counter,
    pub records_dead_lettered: Counter,
    pub parse_errors: Counter,
    pub lines_truncated: Counter,
    pub lines_dropped: Counter,
    pub bulk_requests: Counter,
    pub bulk_request_errors: Counter,
    pub bulk_splits: Counter,
    pub truncations: Counter,
    pub checkpoint_errors: Counter,
    /// Opens refused: the path led out of the log roots, or to another file than discovery saw.
    pub files_refused: Counter,
    pub metadata_lookups: Counter,
    pub metadata_misses: Counter,
    pub metadata_errors: Counter,
    pub metadata_refreshes: Counter,
    pub metadata_pods: Gauge,
    pub open_files: Gauge,
    pub tracked_files: Gauge,
    /// Bytes of log files deleted (or dropped past `deleted_files_max_bytes`) before they were shipped, per container.
    lost_bytes: Family<Vec<(String, String)>, Counter>,
    /// Lines in those bytes (counted when the shipper still held the file, else estimated from its average line).
    lost_lines: Family<Vec<(String, String)>, Counter>,
    /// Bytes held in deleted log files the shipper keeps open because it has not read them to the end yet.
    pub deleted_held_bytes: Gauge,
    /// Seconds since checkpoints were last written (set when scraped).
    checkpoint_age: Gauge<f64, AtomicU64>,
    /// Unacknowledged bytes per file (refilled when scraped).
    file_lag: Family<Vec<(String, String)>, Gauge>,
    checkpoint_written_ms: AtomicU64,
    lags: Mutex<Vec<(String, u64, Option<u64>)>>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            lines_read: Counter::default(),
            bytes_read: Counter::default(),
            records_read: Counter::default(),
            records_shipped: Counter::default(),
            records_duplicate: Counter::default(),
            records_retried: Counter::default(),
            records_dead_lettered: Counter::default(),
            parse_errors: Counter::default(),
            lines_truncated: Counter::default(),
            lines_dropped: Counter::default(),
            bulk_requests: Counter::default(),
            bulk_request_errors: Counter::default(),
            bulk_splits: Counter::default(),
            truncations: Counter::default(),
            checkpoint_errors: Counter::default(),
            files_refused: Counter::default(),
            metadata_lookups: Counter::default(),
            metadata_misses: Counter::default(),
            metadata_errors: Counter::default(),
            metadata_refreshes: Counter::default(),
            metadata_pods: Gauge::default(),
            open_files: Gauge::default(),
            tracked_files: Gauge::default(),
            lost_bytes: Family::default(),
            lost_lines: Family::default(),
            deleted_held_bytes: Gauge::default(),
            checkpoint_age: Gauge::default(),
            file_lag: Family::default(),
            checkpoint_written_ms: AtomicU64::new(0),
            lags: Mutex::new(Vec::new()),
            registry: Registry::with_prefix("vigil_log_shipper"),
        };
        let mut r = std::mem::take(&mut m.registry);
        r.register(
            "lines_read",
            "Raw lines read from log files",
            m.lines_read.clone(),
        );
        r.register(
            "bytes_read",
            "Bytes read from log files",
            m.bytes_read.clone(),
        );
        r.register(
            "records_read",
            "Records handed to the sink",
            m.records_read.clone(),
        );
        r.register(
            "records_shipped",
            "Records acknowledged by the sink (including duplicates)",
            m.records_shipped.clone(),
        );
        r.register(
            "records_duplicate",
            "Records the sink already had (409 on create; re-sent records already in the file sink's output)",
            m.records_duplicate.clone(),
        );
        r.register(
            "records_retried",
            "Record retries after 429/5xx item or request failures, or failed file sink writes",
            m.records_retried.clone(),
        );
        r.register(
            "records_dead_lettered",
            "Records rejected permanently and written to the dead-letter file",
            m.records_dead_lettered.clone(),
        );
        r.register(
            "parse_errors",
            "Lines that could not be parsed (shipped raw) or whose time was unusable (read time used), marked parse_error",
            m.parse_errors.clone(),
        );
        r.register(
            "lines_truncated",
            "Records cut at the maximum size",
            m.lines_truncated.clone(),
        );
        r.register(
            "lines_dropped",
            "Over-long lines dropped (over_long: drop)",
            m.lines_dropped.clone(),
        );
        r.register(
            "bulk_requests",
            "Bulk requests sent",
            m.bulk_requests.clone(),
        );
        r.register(
            "bulk_request_errors",
            "Bulk requests that failed as a whole",
            m.bulk_request_errors.clone(),
        );
        r.register(
            "bulk_splits",
            "Bulk requests split after a 413 or a whole-request 400",
            m.bulk_splits.clone(),
        );
        r.register(
            "file_truncations",
            "Files found truncated or replaced (read again from 0)",
            m.truncations.clone(),
        );
        r.register(
            "checkpoint_errors",
            "Failed checkpoint writes",
            m.checkpoint_errors.clone(),
        );
        r.register(
            "files_refused",
            "Log file opens refused: the path led out of the log roots and discovery.link_targets, or to another file than discovery saw",
            m.files_refused.clone(),
        );
        r.register(
            "metadata_lookups",
            "Pod metadata cache lookups (a file's pod looked up after the cache changed)",
            m.metadata_lookups.clone(),
        );
        r.register(
            "metadata_misses",
            "Pod metadata cache lookups that found nothing (records carry path metadata only)",
            m.metadata_misses.clone(),
        );
        r.register(
            "metadata_errors",
            "Failed pod metadata refreshes (unreachable, HTTP errors, malformed PodList)",
            m.metadata_errors.clone(),
        );
        r.register(
            "metadata_refreshes",
            "Successful pod metadata refreshes",
            m.metadata_refreshes.clone(),
        );
        r.register(
            "metadata_pods",
            "Pods in the metadata cache",
            m.metadata_pods.clone(),
        );
        r.register("open_files", "Log files held open", m.open_files.clone());
        r.register(
            "tracked_files",
            "Log files tracked (open or finished)",
            m.tracked_files.clone(),
        );
        r.register(
            "lost_bytes",
            "Bytes of log files deleted before they were shipped (never read)",
            m.lost_bytes.clone(),
        );
        r.register(
            "lost_lines",
            "Lines in the lost bytes (exact while the file was held, else estimated from its average line length)",
            m.lost_lines.clone(),
        );
        r.register(
            "deleted_held_bytes",
            "Bytes of deleted log files held open until they are read to the end",
            m.deleted_held_bytes.clone(),
        );
        r.register(
            "checkpoint_age_seconds",
            "Seconds since checkpoints were last written",
            m.checkpoint_age.clone(),
        );
        r.register(
            "file_lag_bytes",
            "Bytes of a file not yet acknowledged by the sink",
            m.file_lag.clone(),
        );
        m.registry = r;
        m
    }
}

impl Metrics {
    pub fn add_parse_counts(&self, c: ParseCounts) {
        if c.parse_errors > 0 {
            self.parse_errors.inc_by(c.parse_errors);
        }
        if c.truncated > 0 {
            self.lines_truncated.inc_by(c.truncated);
        }
        if c.dropped > 0 {
            self.lines_dropped.inc_by(c.dropped);
        }
    }

    /// Counts bytes and lines of a container's log that can no longer be shipped.
    pub fn lost(&self, namespace: &str, pod: &str, container: &str, bytes: u64, lines: u64) {
        let labels = vec![
            ("namespace".to_string(), namespace.to_string()),
            ("pod".to_string(), pod.to_string()),
            ("container".to_string(), container.to_string()),
        ];
        self.lost_bytes.get_or_create(&labels).inc_by(bytes);
        self.lost_lines.get_or_create(&labels).inc_by(lines);
    }

    pub fn checkpoint_written(&self, at: SystemTime) {
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.checkpoint_written_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets the acknowledged offset of every tracked file and, for compressed files, the decompressed size; the lag is
    /// that size (or the file's size, taken at scrape time) minus the offset.
    pub fn set_positions(&self, positions: Vec<(String, u64, Option<u64>)>) {
        *self.lags.lock().expect("lags lock") = positions;
    }

    /// The OpenMetrics text exposition (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let written = self.checkpoint_written_ms.load(Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.checkpoint_age
            .set(now.saturating_sub(written) as f64 / 1000.0);
        // Files stop being reported once no longer tracked: the family is rebuilt at every scrape.
        self.file_lag.clear();
        for (path, committed, known) in self.lags.lock().expect("lags lock").iter() {
            let size = known.unwrap_or_else(|| {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .unwrap_or(*committed)
            });
            self.file_lag
                .get_or_create(&vec![("path".to_string(), path.clone())])
                .set(size.saturating_sub(*committed) as i64);
        }
        let mut out = String::with_capacity(4096);
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_lags() {
        let m = Metrics::default();
        m.lines_read.inc_by(3);
        m.open_files.set(7);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("0.log");
        std::fs::write(&file, [b'x'; 100]).unwrap();
        m.set_positions(vec![
            ("/nonexistent/a\"b/0.log".into(), 42, None),
            (file.to_string_lossy().into_owned(), 42, None),
            ("/p/0.log.1.gz".into(), 10, Some(25)),
        ]);
        m.lost("ns", "p", "c", 100, 3);
        m.checkpoint_written(SystemTime::now());
        let text = m.render();
        assert!(
            text.contains("# TYPE vigil_log_shipper_lines_read counter\n"),
            "{text}"
        );
        assert!(text.contains("vigil_log_shipper_lines_read_total 3\n"));
        assert!(text.contains("vigil_log_shipper_open_files 7\n"));
        assert!(
            text.contains(
                "vigil_log_shipper_file_lag_bytes{path=\"/nonexistent/a\\\"b/0.log\"} 0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "vigil_log_shipper_file_lag_bytes{{path=\"{}\"}} 58\n",
                file.display()
            )),
            "{text}"
        );
        assert!(text.contains("# TYPE vigil_log_shipper_checkpoint_age_seconds gauge"));
        assert!(text.contains("vigil_log_shipper_file_lag_bytes{path=\"/p/0.log.1.gz\"} 15\n"));
        assert!(
            text.contains(
                "vigil_log_shipper_lost_bytes_total{namespace=\"ns\",pod=\"p\",container=\"c\"} 100\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "vigil_log_shipper_lost_lines_total{namespace=\"ns\",pod=\"p\",container=\"c\"} 3\n"
        ));
        assert!(text.ends_with("# EOF\n"));
        // A file no longer tracked disappears from the lag family.
        m.set_positions(vec![]);
        assert!(!m.render().contains("file_lag_bytes{"));
    }
}
