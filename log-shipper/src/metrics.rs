//! Self-metrics of the log shipper, rendered in the Prometheus text format on `/metrics`.

use crate::parse::ParseCounts;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// Counters and gauges shared by the reader, the sink and the HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub records_read: AtomicU64,
    pub records_shipped: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub records_retried: AtomicU64,
    pub records_dead_lettered: AtomicU64,
    pub parse_errors: AtomicU64,
    pub lines_truncated: AtomicU64,
    pub lines_dropped: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub bulk_request_errors: AtomicU64,
    pub bulk_splits: AtomicU64,
    pub truncations: AtomicU64,
    pub open_files: AtomicU64,
    pub tracked_files: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    pub metadata_lookups: AtomicU64,
    pub metadata_misses: AtomicU64,
    pub metadata_errors: AtomicU64,
    pub metadata_refreshes: AtomicU64,
    pub metadata_pods: AtomicU64,
    checkpoint_written_ms: AtomicU64,
    lags: Mutex<Vec<(String, u64)>>,
}

impl Metrics {
    pub fn add_parse_counts(&self, c: ParseCounts) {
        if c.parse_errors > 0 {
            self.parse_errors
                .fetch_add(c.parse_errors, Ordering::Relaxed);
        }
        if c.truncated > 0 {
            self.lines_truncated
                .fetch_add(c.truncated, Ordering::Relaxed);
        }
        if c.dropped > 0 {
            self.lines_dropped.fetch_add(c.dropped, Ordering::Relaxed);
        }
    }

    pub fn checkpoint_written(&self, at: SystemTime) {
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.checkpoint_written_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets the acknowledged offset of every tracked file; the lag is the file size minus it, taken at scrape time.
    pub fn set_positions(&self, positions: Vec<(String, u64)>) {
        *self.lags.lock().expect("lags lock") = positions;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let p = "vigil_log_shipper_";
        counter(
            &mut out,
            &format!("{p}lines_read_total"),
            "Raw lines read from log files.",
            &self.lines_read,
        );
        counter(
            &mut out,
            &format!("{p}bytes_read_total"),
            "Bytes read from log files.",
            &self.bytes_read,
        );
        counter(
            &mut out,
            &format!("{p}records_read_total"),
            "Records handed to the sink.",
            &self.records_read,
        );
        counter(
            &mut out,
            &format!("{p}records_shipped_total"),
            "Records acknowledged by the sink (including duplicates).",
            &self.records_shipped,
        );
        counter(
            &mut out,
            &format!("{p}records_duplicate_total"),
            "Records the sink already had (409 on create).",
            &self.records_duplicate,
        );
        counter(
            &mut out,
            &format!("{p}records_retried_total"),
            "Record retries after 429/5xx item or request failures.",
            &self.records_retried,
        );
        counter(
            &mut out,
            &format!("{p}records_dead_lettered_total"),
            "Records rejected permanently and written to the dead-letter file.",
            &self.records_dead_lettered,
        );
        counter(
            &mut out,
            &format!("{p}parse_errors_total"),
            "Lines that could not be parsed (shipped raw with parse_error).",
            &self.parse_errors,
        );
        counter(
            &mut out,
            &format!("{p}lines_truncated_total"),
            "Records cut at the maximum size.",
            &self.lines_truncated,
        );
        counter(
            &mut out,
            &format!("{p}lines_dropped_total"),
            "Over-long lines dropped (over_long: drop).",
            &self.lines_dropped,
        );
        counter(
            &mut out,
            &format!("{p}bulk_requests_total"),
            "Bulk requests sent.",
            &self.bulk_requests,
        );
        counter(
            &mut out,
            &format!("{p}bulk_request_errors_total"),
            "Bulk requests that failed as a whole.",
            &self.bulk_request_errors,
        );
        counter(
            &mut out,
            &format!("{p}bulk_splits_total"),
            "Bulk requests split after a 413 or a whole-request 400.",
            &self.bulk_splits,
        );
        counter(
            &mut out,
            &format!("{p}file_truncations_total"),
            "Files found truncated or replaced (read again from 0).",
            &self.truncations,
        );
        counter(
            &mut out,
            &format!("{p}checkpoint_errors_total"),
            "Failed checkpoint writes.",
            &self.checkpoint_errors,
        );
        counter(
            &mut out,
            &format!("{p}metadata_lookups_total"),
            "Pod metadata cache lookups (a file's pod looked up after the cache changed).",
            &self.metadata_lookups,
        );
        counter(
            &mut out,
            &format!("{p}metadata_misses_total"),
            "Pod metadata cache lookups that found nothing (records carry path metadata only).",
            &self.metadata_misses,
        );
        counter(
            &mut out,
            &format!("{p}metadata_errors_total"),
            "Failed pod metadata refreshes (unreachable, HTTP errors, malformed PodList).",
            &self.metadata_errors,
        );
        counter(
            &mut out,
            &format!("{p}metadata_refreshes_total"),
            "Successful pod metadata refreshes.",
            &self.metadata_refreshes,
        );
        gauge(
            &mut out,
            &format!("{p}metadata_pods"),
            "Pods in the metadata cache.",
            self.metadata_pods.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            &format!("{p}open_files"),
            "Log files held open.",
            self.open_files.load(Ordering::Relaxed) as f64,
        );
        gauge(
            &mut out,
            &format!("{p}tracked_files"),
            "Log files tracked (open or finished).",
            self.tracked_files.load(Ordering::Relaxed) as f64,
        );
        let written = self.checkpoint_written_ms.load(Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        gauge(
            &mut out,
            &format!("{p}checkpoint_age_seconds"),
            "Seconds since checkpoints were last written.",
            now.saturating_sub(written) as f64 / 1000.0,
        );
        let name = format!("{p}file_lag_bytes");
        let _ = writeln!(
            out,
            "# HELP {name} Bytes of a file not yet acknowledged by the sink.\n# TYPE {name} gauge"
        );
        for (path, committed) in self.lags.lock().expect("lags lock").iter() {
            let size = std::fs::metadata(path)
                .map(|m| m.len())
                .unwrap_or(*committed);
            let lag = size.saturating_sub(*committed);
            let escaped = path
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(out, "{name}{{path=\"{escaped}\"}} {lag}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_lags() {
        let m = Metrics::default();
        m.lines_read.fetch_add(3, Ordering::Relaxed);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("0.log");
        std::fs::write(&file, [b'x'; 100]).unwrap();
        m.set_positions(vec![
            ("/nonexistent/a\"b/0.log".into(), 42),
            (file.to_string_lossy().into_owned(), 42),
        ]);
        m.checkpoint_written(SystemTime::now());
        let text = m.render();
        assert!(text.contains("vigil_log_shipper_lines_read_total 3\n"));
        assert!(text
            .contains("vigil_log_shipper_file_lag_bytes{path=\"/nonexistent/a\\\"b/0.log\"} 0\n"));
        assert!(
            text.contains(&format!(
                "vigil_log_shipper_file_lag_bytes{{path=\"{}\"}} 58\n",
                file.display()
            )),
            "{text}"
        );
        assert!(text.contains("# TYPE vigil_log_shipper_checkpoint_age_seconds gauge"));
    }
}
