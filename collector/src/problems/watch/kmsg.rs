//! The `kmsg` watcher: reads kernel records (`pri,seq,ts_usec,flags;message`) from /dev/kmsg
//! (non-blocking, polled), from the oldest record still in the ring buffer.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use super::filelog::{sleep_or_stop, sleep_or_stop_for};
use super::{Common, Retry, MAX_LINE, POLL};
use crate::problems::matcher::LogLine;

/// One parsed kmsg record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Sequence number.
    pub seq: u64,
    /// Microseconds since boot.
    pub ts_usec: u64,
    /// The message, trimmed (as node-problem-detector does).
    pub message: String,
}

/// Parses a record as read from /dev/kmsg (one record per read).
pub fn parse_record(raw: &str) -> Option<Record> {
    let (header, rest) = raw.split_once(';')?;
    let mut fields = header.split(',');
    let _pri: u32 = fields.next()?.parse().ok()?;
    let seq: u64 = fields.next()?.parse().ok()?;
    let ts_usec: u64 = fields.next()?.parse().ok()?;
    // The message ends at the first newline; " KEY=value" continuation lines follow.
    let message = rest.split('\n').next().unwrap_or("");
    Some(Record {
        seq,
        ts_usec,
        message: message.trim().to_string(),
    })
}

/// Reads kernel records until shutdown; the timestamp is boot time + the record's offset.
pub async fn run(
    path: PathBuf,
    boot: DateTime<Utc>,
    common: Common,
    tx: mpsc::Sender<LogLine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retry = Retry::new(common.stats.clone());
    loop {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path);
        let mut file = match file {
            Ok(f) => f,
            Err(e) => {
                let wait = retry.failed(&path, "cannot open kmsg", &e);
                if sleep_or_stop_for(&mut shutdown, wait).await {
                    return;
                }
                continue;
            }
        };
        tracing::debug!(path = %path.display(), "watching kernel messages");
        let mut wait = POLL;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // Non-blocking: one record per read; EAGAIN when there is nothing new.
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    retry.ok(&path);
                    if sleep_or_stop(&mut shutdown).await {
                        return;
                    }
                    continue;
                }
                // Records were overwritten before we read them: carry on with the next.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) => {
                    // e.g. EISDIR or EIO: reopen after a wait that grows while it persists.
                    wait = retry.failed(&path, "cannot read kmsg", &e);
                    break;
                }
            };
            retry.ok(&path);
            if n == 0 {
                break;
            }
            let raw = String::from_utf8_lossy(&buf[..n]);
            let Some(mut rec) = parse_record(&raw) else {
                tracing::debug!(record = %raw, "unparsable kmsg record");
                continue;
            };
            if rec.message.len() > MAX_LINE {
                let mut end = MAX_LINE;
                while !rec.message.is_char_boundary(end) {
                    end -= 1;
                }
                rec.message.truncate(end);
                common.stats.truncated.fetch_add(1, Ordering::Relaxed);
            }
            let timestamp = boot + chrono::Duration::microseconds(rec.ts_usec as i64);
            if timestamp < common.start || common.skipped(&rec.message) {
                continue;
            }
            if tx
                .send(LogLine {
                    timestamp,
                    message: rec.message,
                })
                .await
                .is_err()
            {
                return;
            }
        }
        if sleep_or_stop_for(&mut shutdown, wait).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let r = parse_record(
            "6,1234,5678901,-;EXT4-fs (sda1): Remounting filesystem read-only \n SUBSYSTEM=block\n DEVICE=b8:1\n",
        )
        .unwrap();
        assert_eq!(
            r,
            Record {
                seq: 1234,
                ts_usec: 5678901,
                message: "EXT4-fs (sda1): Remounting filesystem read-only".into()
            }
        );
        let r = parse_record("4,99,1,c,more;divide error: 0000 [#1] SMP \n").unwrap();
        assert_eq!(r.message, "divide error: 0000 [#1] SMP");
        assert!(parse_record("garbage").is_none());
        assert!(parse_record("x,1,2,-;m").is_none());
    }
}
