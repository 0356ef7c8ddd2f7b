//! The `journald` watcher: follows `journalctl --follow --output=json` for one
//! SYSLOG_IDENTIFIER (`pluginConfig.source`), restarting it after the last cursor if it exits.

use std::path::PathBuf;
use std::process::Stdio;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::Common;
use crate::problems::matcher::LogLine;

/// One journal entry from `journalctl -o json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `__CURSOR`, to resume after a restart.
    pub cursor: Option<String>,
    /// The line (`MESSAGE` trimmed, `__REALTIME_TIMESTAMP`).
    pub line: LogLine,
}

/// Parses one JSON line of `journalctl -o json` (MESSAGE may be a string or a byte array).
pub fn parse_entry(json: &str) -> Result<Entry, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("invalid journal JSON: {e}"))?;
    let message = match v.get("MESSAGE") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(bytes)) => {
            let b: Vec<u8> = bytes
                .iter()
                .filter_map(|x| x.as_u64().map(|n| n as u8))
                .collect();
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => return Err("journal entry without MESSAGE".to_string()),
    };
    let usec: i64 = v
        .get("__REALTIME_TIMESTAMP")
        .and_then(|t| t.as_str())
        .and_then(|t| t.parse().ok())
        .ok_or("journal entry without __REALTIME_TIMESTAMP")?;
    let timestamp = DateTime::<Utc>::from_timestamp_micros(usec).ok_or("timestamp out of range")?;
    let cursor = v
        .get("__CURSOR")
        .and_then(|c| c.as_str())
        .map(str::to_string);
    Ok(Entry {
        cursor,
        line: LogLine {
            timestamp,
            message: message.trim().to_string(),
        },
    })
}

/// The journalctl arguments for a source, a journal path and a resume point.
pub fn journalctl_args(
    log_path: &str,
    source: &str,
    start: DateTime<Utc>,
    cursor: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "--follow".to_string(),
        "--output=json".into(),
        "--no-pager".into(),
        "--lines=all".into(),
    ];
    if !log_path.is_empty() {
        let p = std::path::Path::new(log_path);
        if p.is_file() {
            args.push(format!("--file={log_path}"));
        } else {
            args.push(format!("--directory={log_path}"));
        }
    }
    match cursor {
        Some(c) => args.push(format!("--after-cursor={c}")),
        None => args.push(format!("--since=@{}", start.timestamp())),
    }
    args.push(format!("SYSLOG_IDENTIFIER={source}"));
    args
}

/// Follows the journal until shutdown.
pub async fn run(
    log_path: PathBuf,
    source: String,
    common: Common,
    tx: mpsc::Sender<LogLine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let log_path = log_path.to_string_lossy().into_owned();
    let mut cursor: Option<String> = None;
    // Restart backoff: 1 s doubling to 30 s while journalctl keeps failing without output.
    let mut backoff = vigil_common::Backoff::new(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    loop {
        let args = journalctl_args(&log_path, &source, common.start, cursor.as_deref());
        let child = tokio::process::Command::new("journalctl")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?wait, "cannot start journalctl");
                if wait_or_stop(&mut shutdown, wait).await {
                    return;
                }
                continue;
            }
        };
        tracing::info!(source = %source, path = %log_path, "following the journal");
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            tokio::select! {
                l = lines.next_line() => match l {
                    Ok(Some(l)) => match parse_entry(&l) {
                        Ok(e) => {
                            backoff.reset();
                            if e.cursor.is_some() {
                                cursor = e.cursor;
                            }
                            if e.line.timestamp < common.start || common.skipped(&e.line.message) {
                                continue;
                            }
                            if tx.send(e.line).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => tracing::debug!(error = %err, "skipping journal line"),
                    },
                    _ => break,
                },
                _ = shutdown.changed() => return,
            }
        }
        let status = child.wait().await;
        let wait = backoff.next_delay();
        tracing::warn!(?status, retry_in = ?wait, "journalctl exited; restarting");
        if wait_or_stop(&mut shutdown, wait).await {
            return;
        }
    }
}

/// Waits `wait`; true when shutdown was requested.
async fn wait_or_stop(shutdown: &mut watch::Receiver<bool>, wait: std::time::Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    stopped || *shutdown.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_journal_json() {
        let text = include_str!("../../../testdata/problems/journal.json");
        let entries: Vec<Entry> = text.lines().map(|l| parse_entry(l).unwrap()).collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].line.message, "Started Kubernetes kubelet.");
        assert_eq!(
            entries[0].line.timestamp.timestamp_micros(),
            1_700_000_000_123_456
        );
        assert_eq!(entries[1].line.message, "binary message");
        assert!(entries[1].cursor.as_deref().unwrap().starts_with("s="));
        assert!(parse_entry("{}").is_err());
        assert!(parse_entry("not json").is_err());
    }

    #[test]
    fn journalctl_arguments() {
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        let a = journalctl_args("/nonexistent/journal", "dockerd", start, None);
        assert!(a.contains(&"--directory=/nonexistent/journal".to_string()));
        assert!(a.contains(&"--since=@1700000000".to_string()));
        assert_eq!(a.last().unwrap(), "SYSLOG_IDENTIFIER=dockerd");
        let a = journalctl_args("", "kernel", start, Some("s=abc"));
        assert!(a.contains(&"--after-cursor=s=abc".to_string()));
        assert!(!a.iter().any(|x| x.starts_with("--directory")));
    }
}
