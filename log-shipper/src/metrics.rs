//! Self-metrics of the log shipper: counters and gauges registered once in [`Metrics`], exposed on `/metrics` as OpenMetrics text written with `vigil_common::exposition`.

use crate::parse::ParseCounts;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;
use vigil_common::exposition::{Counter, CounterFamily, Format, Gauge, Kind, Writer};

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = vigil_common::exposition::OPENMETRICS_CONTENT_TYPE;

/// Counters and gauges shared by the reader, the sink, the metadata refresher and the HTTP server.
#[derive(Debug, Default)]
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
    lost_bytes: CounterFamily,
    /// Lines in those bytes (counted when the shipper still held the file, else estimated from its average line).
    lost_lines: CounterFamily,
    /// Bytes held in deleted log files the shipper keeps open because it has not read them to the end yet.
    pub deleted_held_bytes: Gauge,
    checkpoint_written_ms: AtomicU64,
    /// Per tracked file: path, acknowledged offset, decompressed size when known.
    lags: Mutex<Vec<(String, u64, Option<u64>)>>,
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
        let labels = [namespace, pod, container];
        self.lost_bytes.inc_by(&labels, bytes);
        self.lost_lines.inc_by(&labels, lines);
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
        let mut out = String::with_capacity(4096);
        let mut w = Writer::new(&mut out, Format::OpenMetrics);
        let counters: [(&str, &str, &Counter); 20] = [
            ("vigil_log_shipper_lines_read_total", "Raw lines read from log files.", &self.lines_read),
            ("vigil_log_shipper_bytes_read_total", "Bytes read from log files.", &self.bytes_read),
            ("vigil_log_shipper_records_read_total", "Records handed to the sink.", &self.records_read),
            ("vigil_log_shipper_records_shipped_total", "Records acknowledged by the sink (including duplicates).", &self.records_shipped),
            ("vigil_log_shipper_records_duplicate_total", "Records the sink already had (409 on create; re-sent records already in the file sink's output).", &self.records_duplicate),
            ("vigil_log_shipper_records_retried_total", "Record retries after 429/5xx item or request failures, or failed file sink writes.", &self.records_retried),
            ("vigil_log_shipper_records_dead_lettered_total", "Records rejected permanently and written to the dead-letter file.", &self.records_dead_lettered),
            ("vigil_log_shipper_parse_errors_total", "Lines that could not be parsed (shipped raw) or whose time was unusable (read time used), marked parse_error.", &self.parse_errors),
            ("vigil_log_shipper_lines_truncated_total", "Records cut at the maximum size.", &self.lines_truncated),
            ("vigil_log_shipper_lines_dropped_total", "Over-long lines dropped (over_long: drop).", &self.lines_dropped),
            ("vigil_log_shipper_bulk_requests_total", "Bulk requests sent.", &self.bulk_requests),
            ("vigil_log_shipper_bulk_request_errors_total", "Bulk requests that failed as a whole.", &self.bulk_request_errors),
            ("vigil_log_shipper_bulk_splits_total", "Bulk requests split after a 413 or a whole-request 400.", &self.bulk_splits),
            ("vigil_log_shipper_file_truncations_total", "Files found truncated or replaced (read again from 0).", &self.truncations),
            ("vigil_log_shipper_checkpoint_errors_total", "Failed checkpoint writes.", &self.checkpoint_errors),
            ("vigil_log_shipper_files_refused_total", "Log file opens refused: the path led out of the log roots and discovery.link_targets, or to another file than discovery saw.", &self.files_refused),
            ("vigil_log_shipper_metadata_lookups_total", "Pod metadata cache lookups (a file's pod looked up after the cache changed).", &self.metadata_lookups),
            ("vigil_log_shipper_metadata_misses_total", "Pod metadata cache lookups that found nothing (records carry path metadata only).", &self.metadata_misses),
            ("vigil_log_shipper_metadata_errors_total", "Failed pod metadata refreshes (unreachable, HTTP errors, malformed PodList).", &self.metadata_errors),
            ("vigil_log_shipper_metadata_refreshes_total", "Successful pod metadata refreshes.", &self.metadata_refreshes),
        ];
        for (name, help, c) in counters {
            w.counter(name, help, c.get());
        }
        let gauges: [(&str, &str, &Gauge); 3] = [
            (
                "vigil_log_shipper_metadata_pods",
                "Pods in the metadata cache.",
                &self.metadata_pods,
            ),
            (
                "vigil_log_shipper_open_files",
                "Log files held open.",
                &self.open_files,
            ),
            (
                "vigil_log_shipper_tracked_files",
                "Log files tracked (open or finished).",
                &self.tracked_files,
            ),
        ];
        for (name, help, g) in gauges {
            w.gauge(name, help, g.get());
        }
        let container = ["namespace", "pod", "container"];
        w.counters(
            "vigil_log_shipper_lost_bytes_total",
            "Bytes of log files deleted before they were shipped (never read).",
            &container,
            &self.lost_bytes,
        );
        w.counters(
            "vigil_log_shipper_lost_lines_total",
            "Lines in the lost bytes (exact while the file was held, else estimated from its average line length).",
            &container,
            &self.lost_lines,
        );
        w.gauge(
            "vigil_log_shipper_deleted_held_bytes",
            "Bytes of deleted log files held open until they are read to the end.",
            self.deleted_held_bytes.get(),
        );
        let written = self.checkpoint_written_ms.load(Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        w.gauge(
            "vigil_log_shipper_checkpoint_age_seconds",
            "Seconds since checkpoints were last written.",
            now.saturating_sub(written) as f64 / 1000.0,
        );
        // Only the files tracked now: the lag of each, with the size taken at this scrape.
        let lag = "vigil_log_shipper_file_lag_bytes";
        w.header(
            lag,
            Kind::Gauge,
            "Bytes of a file not yet acknowledged by the sink.",
        );
        for (path, committed, known) in self.lags.lock().expect("lags lock").iter() {
            let size = known.unwrap_or_else(|| {
                std::fs::metadata(path)
                    .map(|m| m.len())
                    .unwrap_or(*committed)
            });
            w.sample(lag, &[("path", path)], size.saturating_sub(*committed));
        }
        w.finish();
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
