//! The `filelog` watcher: tails a text log, splits each line into timestamp and message with
//! the config's regexes and Go layout, and reopens the file when it is rotated, truncated or
//! comes back after disappearing.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use chrono::Utc;
use regex::Regex;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};

use super::gotime::GoLayout;
use super::{Common, POLL};
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
pub async fn run(
    path: PathBuf,
    translator: Translator,
    common: Common,
    tx: mpsc::Sender<LogLine>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut missing_logged = false;
    'open: loop {
        if *shutdown.borrow() {
            return;
        }
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                if !missing_logged {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open log file; retrying");
                    missing_logged = true;
                }
                if sleep_or_stop(&mut shutdown).await {
                    return;
                }
                continue 'open;
            }
        };
        missing_logged = false;
        let ino = match file.metadata().await {
            Ok(m) => m.ino(),
            Err(_) => continue 'open,
        };
        tracing::info!(path = %path.display(), "watching log file");
        let mut pos: u64 = 0;
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut draining = false;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "read failed; reopening");
                    continue 'open;
                }
            };
            if n > 0 {
                pos += n as u64;
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(nl) = memchr_newline(&pending[start..]) {
                    let raw = &pending[start..start + nl];
                    start += nl + 1;
                    let line = String::from_utf8_lossy(raw);
                    if common.skipped(&line) {
                        continue;
                    }
                    match translator.translate(&line) {
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
                pending.drain(..start);
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
                    pending.clear();
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

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Sleeps one poll interval; true when shutdown was requested.
pub(crate) async fn sleep_or_stop(shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(POLL) => *shutdown.borrow(),
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
    }
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
