//! Log watchers (kmsg, filelog, journald) that turn a log source into `LogLine`s.

pub mod filelog;
pub mod gotime;
pub mod journald;
pub mod kmsg;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// What every watcher shares: where reading starts, which lines are dropped, and the counters
/// it reports its health in.
#[derive(Debug, Clone)]
pub struct Common {
    /// Lines logged before this are discarded (node-problem-detector's start time).
    pub start: DateTime<Utc>,
    /// Lines containing one of these substrings are dropped.
    pub skip_list: Vec<String>,
    /// The watcher's health: read errors, whether it is failing now, truncated lines.
    pub stats: Arc<WatchStats>,
}

/// A watcher's health, shown on `/metrics` by the monitor's source.
#[derive(Debug, Default)]
pub struct WatchStats {
    /// Failed attempts to open or read the log source.
    pub errors: AtomicU64,
    /// True while the source cannot be read (set at the first error, cleared by a good read).
    pub failing: AtomicBool,
    /// Lines longer than [`MAX_LINE`] that were cut.
    pub truncated: AtomicU64,
    /// The last error, while failing.
    pub last_error: Mutex<Option<String>>,
}

/// The longest line a watcher keeps, in bytes: the rest of a longer line, up to its newline,
/// is dropped unread and the line counted as truncated. 8 KiB is what node-problem-detector's
/// kmsg reader takes per record (go-kmsg-parser reads into an 8192-byte buffer) and rsyslog's
/// default `maxMessageSize`, so no real kernel or syslog line is cut.
pub const MAX_LINE: usize = 8 * 1024;

/// Longest wait between two attempts to read a source that keeps failing.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Retries a failing source with exponential backoff (from [`POLL`] up to [`MAX_BACKOFF`],
/// with jitter), logging once when it starts failing and once when it recovers, never per attempt.
#[derive(Debug)]
pub struct Retry {
    backoff: vigil_common::Backoff,
    stats: Arc<WatchStats>,
}

impl Retry {
    pub fn new(stats: Arc<WatchStats>) -> Self {
        Retry {
            backoff: vigil_common::Backoff::new(POLL, MAX_BACKOFF),
            stats,
        }
    }

    /// Records a failed attempt and returns how long to wait before the next one.
    pub fn failed(&mut self, path: &Path, what: &str, error: &dyn std::fmt::Display) -> Duration {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        if !self.stats.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(path = %path.display(), error = %error, max_retry_interval = ?MAX_BACKOFF, "{what}; retrying with backoff (logged once until it recovers)");
        }
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(format!("{what} {}: {error}", path.display()));
        self.backoff.next_delay()
    }

    /// Records a good read: ends a failing spell (logged) and resets the backoff.
    pub fn ok(&mut self, path: &Path) {
        self.backoff.reset();
        if self.stats.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(path = %path.display(), "log source readable again");
            *self
                .stats
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes, looking at each byte once
/// (a line without a newline is neither kept whole nor scanned again on every read).
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// The pending line passed [`MAX_LINE`]: its rest is being skipped.
    cut: bool,
}

/// One complete line from a [`LineSplitter`] (without its newline).
#[derive(Debug, Clone, PartialEq)]
pub struct SplitLine {
    /// The line, invalid UTF-8 replaced, at most [`MAX_LINE`] bytes of the original.
    pub text: String,
    /// The original line was longer and was cut.
    pub truncated: bool,
}

impl LineSplitter {
    /// Feeds the next bytes; returns the lines they complete.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<SplitLine> {
        let mut out = Vec::new();
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            self.keep(&data[..nl]);
            out.push(SplitLine {
                text: String::from_utf8_lossy(&self.pending).into_owned(),
                truncated: self.cut,
            });
            self.pending.clear();
            self.cut = false;
            data = &data[nl + 1..];
        }
        self.keep(data);
        out
    }

    fn keep(&mut self, part: &[u8]) {
        let room = MAX_LINE - self.pending.len();
        if part.len() > room {
            self.pending.extend_from_slice(&part[..room]);
            self.cut = true;
        } else {
            self.pending.extend_from_slice(part);
        }
    }

    /// Forgets the incomplete line (the file was truncated or replaced).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.cut = false;
    }

    /// Bytes held for the incomplete line (at most [`MAX_LINE`]).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

impl Common {
    /// Whether a line is in the skip list.
    pub fn skipped(&self, line: &str) -> bool {
        self.skip_list.iter().any(|s| line.contains(s.as_str()))
    }
}

/// The node's uptime from /proc/uptime.
pub fn uptime() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

/// node-problem-detector's start time: lines older than `now - lookback` are skipped, and
/// while the node has been up for less than `delay`, lines before `boot + delay` too.
pub fn start_time(
    now: DateTime<Utc>,
    uptime: Duration,
    lookback: Duration,
    delay: Duration,
) -> DateTime<Utc> {
    let boot = now - chrono::Duration::from_std(uptime).unwrap_or_default();
    let mut start = now - chrono::Duration::from_std(lookback.min(uptime)).unwrap_or_default();
    if uptime < delay {
        start = start.max(boot + chrono::Duration::from_std(delay).unwrap_or_default());
    }
    start
}

/// Poll interval of the file and journal watchers when there is nothing new.
pub const POLL: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_follows_lookback_and_delay() {
        let now = Utc::now();
        let m = |s| Duration::from_secs(s);
        assert_eq!(
            start_time(now, m(3600), m(300), m(0)),
            now - chrono::Duration::seconds(300)
        );
        // Lookback longer than uptime: from boot.
        assert_eq!(
            start_time(now, m(60), m(300), m(0)),
            now - chrono::Duration::seconds(60)
        );
        // Up for less than delay: nothing before boot + delay.
        assert_eq!(
            start_time(now, m(60), m(300), m(100)),
            now + chrono::Duration::seconds(40)
        );
        assert_eq!(start_time(now, m(3600), m(0), m(0)), now);
    }

    #[test]
    fn lines_are_split_and_capped() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"abc").is_empty());
        let l = s.push(b"def\nxy\n\nz");
        let texts: Vec<&str> = l.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["abcdef", "xy", ""]);
        assert!(l.iter().all(|l| !l.truncated));
        // A line far over the cap, fed in pieces: only MAX_LINE bytes are ever held.
        let big = vec![b'x'; 3 * MAX_LINE];
        for _ in 0..10 {
            assert!(s.push(&big).is_empty());
            assert_eq!(s.pending_len(), MAX_LINE);
        }
        let l = s.push(b"tail\nnext\n");
        assert_eq!(l.len(), 2);
        assert!(l[0].truncated && l[0].text.len() == MAX_LINE && l[0].text.starts_with("zx"));
        assert_eq!(
            l[1],
            SplitLine {
                text: "next".into(),
                truncated: false
            }
        );
    }

    #[test]
    fn retry_backs_off_and_recovers() {
        let stats = Arc::new(WatchStats::default());
        let mut r = Retry::new(stats.clone());
        let p = Path::new("/x");
        let waits: Vec<Duration> = (0..10)
            .map(|_| r.failed(p, "read failed", &"EISDIR"))
            .collect();
        // Each wait is drawn from [d/2, d] of a delay d doubling from POLL to MAX_BACKOFF.
        let within = |w: Duration, d: Duration| w >= d / 2 && w <= d;
        assert!(within(waits[0], POLL), "{waits:?}");
        assert!(within(waits[1], POLL * 2), "{waits:?}");
        assert!(within(*waits.last().unwrap(), MAX_BACKOFF), "{waits:?}");
        assert!(stats.failing.load(Ordering::Relaxed));
        assert_eq!(stats.errors.load(Ordering::Relaxed), 10);
        assert!(stats
            .last_error
            .lock()
            .unwrap()
            .as_deref()
            .unwrap()
            .contains("EISDIR"));
        r.ok(p);
        assert!(!stats.failing.load(Ordering::Relaxed));
        assert!(stats.last_error.lock().unwrap().is_none());
        assert!(within(r.failed(p, "again", &"e"), POLL));
    }
}
