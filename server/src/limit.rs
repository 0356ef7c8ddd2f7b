//! Connection bounds: the descriptor limit raised at start, a per-process cap on open connections
//! that keeps a reserve of descriptors for the process's own work, and the listeners' counters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use vigil_common::exposition::{Format, Writer};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most this many connections per process, however high the descriptor limit.
pub const MAX_CONNECTIONS: usize = 4096;
/// At least this many connections, however low the descriptor limit.
pub const MIN_CONNECTIONS: usize = 16;

/// Raises the soft RLIMIT_NOFILE to the hard limit (as Go's runtime and Prometheus do) and returns
/// the soft limit in effect afterwards.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    if lim.maximum.is_some_and(|hard| hard > soft) || (lim.maximum.is_none() && soft != u64::MAX) {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return lim.maximum.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(error = %e, soft, "cannot raise the open-file limit"),
        }
    }
    soft
}

/// The connection cap for a descriptor limit: half of it (the other half is the reserve for the
/// process's own files, sockets and peers), between [`MIN_CONNECTIONS`] and [`MAX_CONNECTIONS`].
pub fn connections_for(nofile: u64) -> usize {
    usize::try_from(nofile / 2)
        .unwrap_or(usize::MAX)
        .clamp(MIN_CONNECTIONS, MAX_CONNECTIONS)
}

/// Open connections allowed at once, shared by every listener given the same limit.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    /// A limit of `max` connections (tests and callers with their own figure).
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The process's limit: made once, after raising RLIMIT_NOFILE, shared by all its listeners
    /// (`vigil up` runs several components in one process).
    pub fn process() -> Self {
        static LIMIT: OnceLock<ConnectionLimit> = OnceLock::new();
        LIMIT
            .get_or_init(|| {
                let nofile = raise_nofile_limit();
                let max = connections_for(nofile);
                tracing::info!(
                    nofile,
                    max_connections = max,
                    "HTTP connections capped below the descriptor limit"
                );
                STATS.limit.store(max as u64, Ordering::Relaxed);
                ConnectionLimit::new(max)
            })
            .clone()
    }

    /// The cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more connection, or None when all are taken.
    pub(crate) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }
}

/// What every listener of the process counts.
#[derive(Debug, Default)]
pub struct Stats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub idle_closed: AtomicU64,
    pub busy: AtomicU64,
    pub limit: AtomicU64,
}

/// The process's counters.
pub static STATS: Stats = Stats {
    open: AtomicU64::new(0),
    accepted: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    header_timeouts: AtomicU64::new(0),
    idle_closed: AtomicU64::new(0),
    busy: AtomicU64::new(0),
    limit: AtomicU64::new(0),
};

/// Appends the listeners' counters as exposition text; `openmetrics` names counter families
/// without `_total` in HELP/TYPE as OpenMetrics wants (the sample names keep it either way),
/// and writes no `# EOF`: the caller's exposition goes on or ends.
pub fn write_metrics(out: &mut String, openmetrics: bool) {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let families: [(&str, &str, bool, u64); 7] = [
        (
            "vigil_http_connections_open",
            "HTTP connections open now, all listeners of the process.",
            false,
            get(&STATS.open),
        ),
        (
            "vigil_http_connections_limit",
            "HTTP connections allowed at once (half the descriptor limit, at most 4096).",
            false,
            get(&STATS.limit),
        ),
        (
            "vigil_http_connections_accepted_total",
            "HTTP connections accepted.",
            true,
            get(&STATS.accepted),
        ),
        (
            "vigil_http_connections_refused_total",
            "HTTP connections closed at once because the connection limit was reached.",
            true,
            get(&STATS.refused),
        ),
        (
            "vigil_http_header_timeouts_total",
            "HTTP connections closed because a request head (or TLS handshake) did not arrive in time.",
            true,
            get(&STATS.header_timeouts),
        ),
        (
            "vigil_http_idle_closed_total",
            "HTTP connections closed after the idle timeout without traffic.",
            true,
            get(&STATS.idle_closed),
        ),
        (
            "vigil_http_requests_rejected_busy_total",
            "Requests answered 503 because an expensive endpoint was at its concurrency bound.",
            true,
            get(&STATS.busy),
        ),
    ];
    let format = if openmetrics {
        Format::OpenMetrics
    } else {
        Format::Text
    };
    let mut w = Writer::new(out, format);
    for (name, help, counter, value) in families {
        if counter {
            w.counter(name, help, value);
        } else {
            w.gauge(name, help, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_half_the_descriptor_limit_within_bounds() {
        assert_eq!(connections_for(1024), 512);
        assert_eq!(connections_for(20_000), MAX_CONNECTIONS);
        assert_eq!(connections_for(10), MIN_CONNECTIONS);
        assert_eq!(connections_for(u64::MAX), MAX_CONNECTIONS);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_nofile_limit();
        let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(lim.current, lim.maximum);
        assert_eq!(lim.current.unwrap_or(u64::MAX), soft);
    }

    #[test]
    fn metrics_are_valid_in_both_formats() {
        let mut text = String::new();
        write_metrics(&mut text, false);
        assert!(text.contains("# TYPE vigil_http_connections_refused_total counter\n"));
        let mut om = String::new();
        write_metrics(&mut om, true);
        assert!(om.contains("# TYPE vigil_http_connections_refused counter\n"));
        assert!(om.contains("\nvigil_http_connections_refused_total "));
    }
}
