//! Multiline joining: lines that do not match a start pattern are glued to the record before them (stack traces).

use super::{Entry, ParseCounts, Stream};
use std::time::{Duration, Instant};

/// A compiled multiline rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// A line matching this starts a new record; other lines continue the current one.
    pub start: regex::bytes::Regex,
    /// A pending record is emitted when no line arrived for this long.
    pub flush_timeout: Duration,
}

/// The pending multiline records of one file, one per stream.
#[derive(Debug)]
pub struct Joiner {
    rule: Option<Rule>,
    max_bytes: usize,
    pending: [Option<(Entry, Instant)>; 3],
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::Unknown => 2,
    }
}

fn emit(e: Entry, out: &mut Vec<Entry>, counts: &mut ParseCounts) {
    if e.truncated {
        counts.truncated += 1;
    }
    out.push(e);
}

impl Joiner {
    pub fn new(rule: Option<Rule>, max_bytes: usize) -> Self {
        Joiner {
            rule,
            max_bytes,
            pending: [None, None, None],
        }
    }

    /// Adds one (already partial-joined) entry; complete records go to `out`.
    pub fn push(
        &mut self,
        entry: Entry,
        now: Instant,
        out: &mut Vec<Entry>,
        counts: &mut ParseCounts,
    ) {
        let Some(rule) = &self.rule else {
            emit(entry, out, counts);
            return;
        };
        let s = slot(entry.stream);
        if rule.start.is_match(&entry.message) {
            if let Some((p, _)) = self.pending[s].take() {
                emit(p, out, counts);
            }
            self.pending[s] = Some((entry, now));
            return;
        }
        match &mut self.pending[s] {
            Some((p, at)) => {
                let room = self.max_bytes.saturating_sub(p.message.len());
                if room > entry.message.len() {
                    p.message.push(b'\n');
                    p.message.extend_from_slice(&entry.message);
                } else if room > 0 {
                    p.message.push(b'\n');
                    p.message.extend_from_slice(&entry.message[..room - 1]);
                    p.truncated = true;
                } else {
                    p.truncated = true;
                }
                p.truncated |= entry.truncated;
                p.end = entry.end;
                p.multiline = true;
                *at = now;
            }
            None => self.pending[s] = Some((entry, now)),
        }
    }

    /// Emits the pending record of one stream.
    pub fn flush_stream(&mut self, stream: Stream, out: &mut Vec<Entry>, counts: &mut ParseCounts) {
        if let Some((p, _)) = self.pending[slot(stream)].take() {
            emit(p, out, counts);
        }
    }

    /// Emits pending records older than the flush timeout.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Entry>, counts: &mut ParseCounts) {
        let Some(rule) = &self.rule else { return };
        let timeout = rule.flush_timeout;
        let mut expired: Vec<Entry> = Vec::new();
        for p in self.pending.iter_mut() {
            if matches!(p, Some((_, at)) if now.duration_since(*at) >= timeout) {
                expired.push(p.take().map(|(e, _)| e).expect("checked"));
            }
        }
        expired.sort_by_key(|e| e.start);
        for e in expired {
            emit(e, out, counts);
        }
    }

    /// Emits everything pending.
    pub fn flush_all(&mut self, out: &mut Vec<Entry>, counts: &mut ParseCounts) {
        let mut all: Vec<Entry> = self
            .pending
            .iter_mut()
            .filter_map(|p| p.take().map(|(e, _)| e))
            .collect();
        all.sort_by_key(|e| e.start);
        for e in all {
            emit(e, out, counts);
        }
    }

    /// The start offset of the oldest pending record.
    pub fn oldest_start(&self) -> Option<u64> {
        self.pending.iter().flatten().map(|(e, _)| e.start).min()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{cfg, parse_file};
    use super::super::{FileParser, ParserConfig};
    use super::*;

    fn rule(timeout_ms: u64) -> Rule {
        Rule {
            start: regex::bytes::Regex::new(r"^\d{4}-\d\d-\d\d ").unwrap(),
            flush_timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn stack_traces_are_joined() {
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/cri-multiline.log"
        ))
        .unwrap();
        let config = ParserConfig {
            multiline: Some(rule(1000)),
            ..cfg(1 << 20)
        };
        let (out, _) = parse_file(&data, config);
        let msgs: Vec<String> = out
            .iter()
            .map(|e| String::from_utf8_lossy(&e.message).into_owned())
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert_eq!(msgs[0], "2026-11-22 10:00:00 INFO starting");
        assert!(msgs[1].starts_with(
            "2026-11-22 10:00:01 ERROR boom\njava.lang.IllegalStateException: bad\n\tat a.b.C.d(C.java:10)"
        ));
        assert!(msgs[1].ends_with("\t... 3 more"));
        assert_eq!(msgs[2], "2026-11-22 10:00:02 INFO recovered");
    }

    #[test]
    fn a_pending_record_is_flushed_after_the_timeout() {
        let config = ParserConfig {
            multiline: Some(rule(50)),
            ..cfg(1 << 20)
        };
        let mut p = FileParser::new(config);
        let mut out = Vec::new();
        let t0 = Instant::now();
        p.push_line(
            b"2026-11-22T10:00:00.000000000Z stdout F 2026-11-22 10:00:00 ERROR x",
            0,
            67,
            false,
            t0,
            &mut out,
        );
        p.push_line(
            b"2026-11-22T10:00:00.000000001Z stdout F \tat y",
            67,
            113,
            false,
            t0,
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(p.safe_offset(113), 0);
        p.flush_expired(t0 + Duration::from_millis(10), &mut out);
        assert!(out.is_empty());
        p.flush_expired(t0 + Duration::from_millis(60), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message, b"2026-11-22 10:00:00 ERROR x\n\tat y");
        assert_eq!((out[0].start, out[0].end), (0, 113));
        assert_eq!(p.safe_offset(113), 113);
    }

    #[test]
    fn joined_record_is_bounded() {
        let config = ParserConfig {
            multiline: Some(rule(1000)),
            ..cfg(40)
        };
        let mut p = FileParser::new(config);
        let mut out = Vec::new();
        let now = Instant::now();
        p.push_line(
            b"2026-11-22T10:00:00.000000000Z stdout F 2026-11-22 10:00:00 E",
            0,
            10,
            false,
            now,
            &mut out,
        );
        for i in 0..10 {
            p.push_line(
                b"2026-11-22T10:00:00.000000000Z stdout F \tat something.long",
                10 + i,
                11 + i,
                false,
                now,
                &mut out,
            );
        }
        p.flush_all(&mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].message.len() <= 40);
        assert!(out[0].truncated);
        assert_eq!(p.counts.truncated, 1);
    }
}
