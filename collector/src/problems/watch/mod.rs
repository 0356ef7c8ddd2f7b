//! Log watchers (kmsg, filelog, journald) that turn a log source into `LogLine`s.

pub mod filelog;
pub mod gotime;
pub mod journald;
pub mod kmsg;

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What every watcher shares: where reading starts and which lines are dropped.
#[derive(Debug, Clone)]
pub struct Common {
    /// Lines logged before this are discarded (node-problem-detector's start time).
    pub start: DateTime<Utc>,
    /// Lines containing one of these substrings are dropped.
    pub skip_list: Vec<String>,
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
}
