//! Multiline joining: lines that do not match a start pattern are glued to the record before them (stack traces).

use super::{resume_at, Carried, Entry, ParseCounts, Stream};
use std::time::{Duration, Instant};

/// A compiled multiline rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// A line matching this starts a new record; other lines continue the current one.
    pub start: regex::bytes::Regex,
    /// A pending record is emitted when no line arrived for this long.
    pub flush_timeout: Duration,
}

/// A record waiting for its continuation lines.
#[derive(Debug)]
struct Open {
    entry: Entry,
    /// When its last line arrived.
    at: Instant,
    /// Set when the record began in an older file of the container.
    carried: Option<Box<Carried>>,
}

/// Where finished records go: the entries, a note for each that began in an older file (its index in `entries`),
/// and the counters.
pub struct Out<'a> {
    pub entries: &'a mut Vec<Entry>,
    pub carried: &'a mut Vec<(usize, Box<Carried>)>,
    pub counts: &'a mut ParseCounts,
}

impl Out<'_> {
    pub fn emit(&mut self, e: Entry, carried: Option<Box<Carried>>) {
        if e.truncated {
            self.counts.truncated += 1;
        }
        if let Some(c) = carried {
            self.carried.push((self.entries.len(), c));
        }
        self.entries.push(e);
    }
}

/// The pending multiline records of one file, one per stream.
#[derive(Debug)]
pub struct Joiner {
    rule: Option<Rule>,
    max_bytes: usize,
    pending: [Option<Open>; 3],
}

fn slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::Unknown => 2,
    }
}

impl Joiner {
    pub fn new(rule: Option<Rule>, max_bytes: usize) -> Self {
        Joiner {
            rule,
            max_bytes,
            pending: [None, None, None],
        }
    }

    /// Adds one (already partial-joined) entry; complete records go to `out`. `carried` is set when the entry began in
    /// an older file of the container.
    pub fn push(
        &mut self,
        entry: Entry,
        carried: Option<Box<Carried>>,
        now: Instant,
        out: &mut Out<'_>,
    ) {
        let Some(rule) = &self.rule else {
            out.emit(entry, carried);
            return;
        };
        let s = slot(entry.stream);
        // A record that began in an older file never continues one of this file (it is older than all of them).
        let starts = rule.start.is_match(&entry.message)
            || (carried.is_some() && self.pending[s].as_ref().is_some_and(|p| p.carried.is_none()));
        if starts {
            if let Some(p) = self.pending[s].take() {
                out.emit(p.entry, p.carried);
            }
            self.pending[s] = Some(Open {
                entry,
                at: now,
                carried,
            });
            return;
        }
        match &mut self.pending[s] {
            Some(Open {
                entry: p,
                at,
                carried: pc,
            }) => {
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
                // Both began in older files: the joined record holds back what either held.
                if let (Some(pc), Some(c)) = (pc.as_mut(), carried) {
                    pc.merge(&c);
                }
            }
            None => {
                self.pending[s] = Some(Open {
                    entry,
                    at: now,
                    carried,
                })
            }
        }
    }

    /// Emits the pending record of one stream.
    pub fn flush_stream(&mut self, stream: Stream, out: &mut Out<'_>) {
        if let Some(p) = self.pending[slot(stream)].take() {
            out.emit(p.entry, p.carried);
        }
    }

    /// Emits pending records older than the flush timeout.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Out<'_>) {
        let Some(rule) = &self.rule else { return };
        let timeout = rule.flush_timeout;
        let mut expired: Vec<Open> = Vec::new();
        for p in self.pending.iter_mut() {
            if p.as_ref().is_some_and(|p| now.duration_since(p.at) >= timeout) {
                expired.extend(p.take());
            }
        }
        Self::emit_in_order(expired, out);
    }

    /// Emits everything pending.
    pub fn flush_all(&mut self, out: &mut Out<'_>) {
        let all: Vec<Open> = self.pending.iter_mut().filter_map(Option::take).collect();
        Self::emit_in_order(all, out);
    }

    /// Emits the pending records that began in an older file.
    pub fn flush_carried(&mut self, out: &mut Out<'_>) {
        let carried: Vec<Open> = self
            .pending
            .iter_mut()
            .filter(|p| p.as_ref().is_some_and(|p| p.carried.is_some()))
            .filter_map(Option::take)
            .collect();
        Self::emit_in_order(carried, out);
    }

    fn emit_in_order(mut records: Vec<Open>, out: &mut Out<'_>) {
        records.sort_by_key(|p| resume_at(&p.entry, p.carried.as_deref()));
        for p in records {
            out.emit(p.entry, p.carried);
        }
    }

    /// The offset in this file a restart must read from for the oldest pending record.
    pub fn oldest_start(&self) -> Option<u64> {
        self.pending
            .iter()
            .flatten()
            .map(|p| resume_at(&p.entry, p.carried.as_deref()))
            .min()
    }

    /// Whether a record is pending.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// Moves the pending records to `next` (the joiner of the container's next file) where it has none in the same
    /// stream; `carry` marks each one as continued there.
    pub fn hand_over(
        &mut self,
        next: &mut Joiner,
        mut carry: impl FnMut(&Entry, &mut Option<Box<Carried>>),
    ) {
        for (mine, theirs) in self.pending.iter_mut().zip(next.pending.iter_mut()) {
            if theirs.is_none() {
                if let Some(mut p) = mine.take() {
                    carry(&p.entry, &mut p.carried);
                    *theirs = Some(p);
                }
            }
        }
    }

    /// The older files' holds of the pending records that began in them.
    pub fn carried(&self) -> impl Iterator<Item = &Carried> {
        self.pending.iter().flatten().filter_map(|p| p.carried.as_deref())
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
