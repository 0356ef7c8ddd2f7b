//! The `filelog` watcher: tails a text log, splits each line into timestamp and message with
//! the config's regexes and Go layout, and reopens the file when it is rotated, truncated or
//! comes back after disappearing.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use chrono::Utc;
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

use super::gotime::GoLayout;
use super::{Common, LineSplitter, Retry, MAX_LINE, POLL};
use crate::problems::matcher::{translate_go_regex, LogLine};

/// Turns a raw line into a `LogLine` (node-problem-detector's filelog translator).
#[derive(Debug, Clone)]
pub struct Translator {
    timestamp: Regex,
    message: Regex,
    layout: GoLayout,
}

/// Last submatch of a Go `FindStringSubmatch` ("" if that group did not take part).
fn last_submatch<'a>(re: &Regex, line: &'a str) -> Option<&'a str> {
    let caps = re.captures(line)?;
    Some(caps.get(caps.len() - 1).map_or("", |m| m.as_str()))
}

impl Translator {
    /// Builds the translator from `pluginConfig` (already validated).
    pub fn new(timestamp: &str, message: &str, layout: &str) -> Result<Self, regex::Error> {
        Ok(Translator {
            timestamp: Regex::new(&translate_go_regex(timestamp))?,
            message: Regex::new(&translate_go_regex(message))?,
            layout: GoLayout::new(layout),
        })
    }

    /// Parses one line (without its "\n").
    pub fn translate(&self, line: &str) -> Result<LogLine, String> {
        let ts = last_submatch(&self.timestamp, line)
            .ok_or_else(|| format!("no timestamp found in line {line:?}"))?;
        let timestamp = self.layout.parse(ts, Utc::now())?;
        let message = last_submatch(&self.message, line)
            .ok_or_else(|| format!("no message found in line {line:?}"))?;
        Ok(LogLine {
            timestamp,
            message: message.to_string(),
        })
    }
}

/// Tails `path` until shutdown, sending every translated line logged at or after `common.start`.
///
/// A source that cannot be opened or read (missing, a directory, permission denied, an I/O
/// error) is retried with exponential backoff up to [`MAX_BACKOFF`](super::MAX_BACKOFF), logged
/// once when it starts failing and once when it recovers, and shown in `common.stats`. Lines
/// longer than [`MAX_LINE`](super::MAX_LINE) are cut and counted.
pub async fn run(
    path: PathBuf,
    translator: Translator,
    common: Common,
    tx: mpsc::Sender<LogLine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retry = Retry::new(common.stats.clone());
    let mut truncation_logged = false;
    'open: loop {
        if *shutdown.borrow() {
            return;
        }
        let opened = match tokio::fs::File::open(&path).await {
            Ok(f) => f.metadata().await.map(|m| (f, m.ino())),
            Err(e) => Err(e),
        };
        let (mut file, ino) = match opened {
            Ok(o) => o,
            Err(e) => {
                let wait = retry.failed(&path, "cannot open log file", &e);
                if sleep_or_stop_for(&mut shutdown, wait).await {
                    return;
                }
                continue 'open;
            }
        };
        tracing::debug!(path = %path.display(), "watching log file");
        let mut pos: u64 = 0;
        let mut lines = LineSplitter::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut draining = false;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    // e.g. EISDIR: reopening at once would spin; wait, longer each time.
                    let wait = retry.failed(&path, "cannot read log file", &e);
                    if sleep_or_stop_for(&mut shutdown, wait).await {
                        return;
                    }
                    continue 'open;
                }
            };
            retry.ok(&path);
            if n > 0 {
                pos += n as u64;
                for line in lines.push(&buf[..n]) {
                    if line.truncated {
                        common.stats.truncated.fetch_add(1, Ordering::Relaxed);
                        if !truncation_logged {
                            truncation_logged = true;
                            tracing::warn!(path = %path.display(), max_bytes = MAX_LINE, "log line longer than the maximum; cut (counted, logged once)");
                        }
                    }
                    if common.skipped(&line.text) {
                        continue;
                    }
                    match translator.translate(&line.text) {
                        Ok(l) if l.timestamp >= common.start => {
                            if tx.send(l).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(path = %path.display(), error = %e, "unable to parse line")
                        }
                    }
                }
                continue;
            }
            if draining {
                // The rotated file is read to its end: move to the new one.
                continue 'open;
            }
            // At the end: wait, then check whether the file was rotated or truncated.
            if sleep_or_stop(&mut shutdown).await {
                return;
            }
            match tokio::fs::metadata(&path).await {
                Ok(m) if m.ino() != ino => {
                    // Rotated: read what was appended to the old file, then open the new one.
                    tracing::info!(path = %path.display(), "log file rotated; reopening");
                    draining = true;
                }
                Ok(m) if m.len() < pos => {
                    tracing::info!(path = %path.display(), "log file truncated; reading from the start");
                    pos = 0;
                    lines.clear();
                    if file.seek(SeekFrom::Start(0)).await.is_err() {
                        continue 'open;
                    }
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::info!(path = %path.display(), "log file disappeared; waiting for it");
                    draining = true;
                }
            }
        }
    }
}

/// Sleeps `wait`; true when shutdown was requested.
pub(crate) async fn sleep_or_stop_for(
    shutdown: &mut watch::Receiver<bool>,
    wait: std::time::Duration,
) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(wait) => *shutdown.borrow(),
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
    }
}

/// Sleeps one poll interval; true when shutdown was requested.
pub(crate) async fn sleep_or_stop(shutdown: &mut watch::Receiver<bool>) -> bool {
    sleep_or_stop_for(shutdown, POLL).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_kern_log_lines() {
        let t = Translator::new(r"^.{15}", r"kernel: \[.*\] (.*)", "Jan _2 15:04:05").unwrap();
        let l = t
            .translate("Nov  2 10:11:12 node kernel: [ 12.345678] divide error: 0000 [#1] SMP ")
            .unwrap();
        // Go's greedy `\[.*\] ` runs to the last "] ": node-problem-detector gets "SMP " here too,
        // so the divide-error rule never fires through this filelog config.
        assert_eq!(l.message, "SMP ");
        let l = t
            .translate("Nov  2 10:11:12 node kernel: [ 12.345678] Killed process 1 (x)")
            .unwrap();
        assert_eq!(l.message, "Killed process 1 (x)");
        assert!(t.translate("short").is_err());
        assert!(
            t.translate("Nov  2 10:11:12 node sshd: hello").is_err(),
            "no kernel: prefix"
        );
    }
}
