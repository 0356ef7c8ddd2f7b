//! Turns the raw lines of one log file into log entries: format detection, partial-line joining, multiline.

pub mod cri;
pub mod docker;
pub mod multiline;

use serde::Deserialize;

/// The on-disk format of a container log file, detected from its first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<RFC3339Nano> <stdout|stderr> <P|F> <message>` (containerd, CRI-O).
    Cri,
    /// Docker json-file: `{"log":"...","stream":"...","time":"..."}`.
    Docker,
}

impl Format {
    /// Detects the format from the first line of a file.
    pub fn detect(line: &[u8]) -> Format {
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Format::Docker,
            _ => Format::Cri,
        }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// The line could not be parsed, so its stream is unknown.
    Unknown,
}

impl Stream {
    /// The name written into records.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Unknown => "unknown",
        }
    }
    fn slot(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
            Stream::Unknown => 2,
        }
    }
}

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OverLong {
    /// Keep the first `max_line_bytes` bytes and flag the record `truncated`.
    #[default]
    Truncate,
    /// Drop the line (counted in `vigil_log_shipper_lines_dropped_total`).
    Drop,
}

/// One log entry: a full line, joined partial lines, or a joined multiline record.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The timestamp as written by the runtime (of the first line).
    pub time: String,
    /// Output stream.
    pub stream: Stream,
    /// The message bytes (may be non-UTF-8; the encoder replaces invalid sequences).
    pub message: Vec<u8>,
    /// Byte offset in the file of the first raw line of this entry.
    pub start: u64,
    /// Byte offset just past the last raw line of this entry.
    pub end: u64,
    /// The message was cut at the maximum size.
    pub truncated: bool,
    /// Why the line could not be parsed (the message is then the raw line).
    pub parse_error: Option<&'static str>,
    /// Lines were joined into this record by a multiline rule (where it ends may depend on a flush timeout).
    pub multiline: bool,
}

/// A record cut by a rotation and continued in the next file of its container (the kubelet rotates between a CRI `P`
/// line and its `F` line, or inside a multiline record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    /// Generation of the file the record began in: with [`Entry::start`] (an offset there) it makes the record's id.
    pub generation: u64,
    /// Offset in the file now holding the record where its part of it begins (that file's safe offset meanwhile).
    pub here: u64,
    /// The older files with earlier parts of the record (the reader's slots, oldest first) and the offset in each that
    /// must not be committed past until the record is shipped.
    pub holds: Vec<(u64, u64)>,
}

impl Carried {
    /// Takes in the holds of another record joined into this one.
    pub fn merge(&mut self, other: &Carried) {
        self.here = self.here.min(other.here);
        for &(slot, off) in &other.holds {
            match self.holds.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, o)) => *o = (*o).min(off),
                None => self.holds.push((slot, off)),
            }
        }
    }
}

/// Where a restart must read from in the current file to get a pending entry back.
pub(crate) fn resume_at(e: &Entry, carried: Option<&Carried>) -> u64 {
    carried.map_or(e.start, |c| c.here)
}

/// One line as parsed by a format parser, before joining.
#[derive(Debug, PartialEq)]
pub struct Parsed<'a> {
    /// The runtime's timestamp, checked by [`check_time`]; empty when it was unusable (see `time_error`).
    pub time: std::borrow::Cow<'a, str>,
    /// Why the line's timestamp was unusable: the record is kept with the read time and marked `parse_error`.
    pub time_error: Option<&'static str>,
    pub stream: Stream,
    pub message: std::borrow::Cow<'a, [u8]>,
    /// More of this line follows in the next line of the same stream.
    pub partial: bool,
}

/// Checks a runtime timestamp and puts it in the form Elasticsearch's `strict_date_optional_time` reads (upper-case
/// `T` and `Z`); `None` when it is not a real instant. Shape alone is not enough: `2024-13-45T99:99:99Z` looks right
/// but Elasticsearch rejects the document. Refused as well: leap seconds (`:60`), more than 9 fraction digits and
/// offsets beyond ±18:00, which `java.time` (and so Elasticsearch) does not accept.
pub fn check_time(t: &str) -> Option<std::borrow::Cow<'_, str>> {
    use chrono::Timelike;
    let d = chrono::DateTime::parse_from_rfc3339(t).ok()?;
    if d.nanosecond() >= 1_000_000_000 || d.offset().local_minus_utc().abs() > 18 * 3600 {
        return None;
    }
    if let Some(dot) = t.find('.') {
        let digits = t[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if digits > 9 {
            return None;
        }
    }
    if t.bytes().any(|b| matches!(b, b't' | b'z' | b' ')) {
        let fixed = t.replace(' ', "T").to_ascii_uppercase();
        return Some(std::borrow::Cow::Owned(fixed));
    }
    Some(std::borrow::Cow::Borrowed(t))
}

/// Remembers the date and time to the second that [`check_time`] last accepted as written: the lines of one file
/// mostly share it, and then only a UTC suffix (`Z`, or `.` + up to 9 digits + `Z`) is left to check. The full parse
/// cost ~47 ns a line, about 12 % of the reader's per-line budget.
#[derive(Debug, Default, Clone)]
pub struct TimeCache {
    second: Option<[u8; 19]>,
}

impl TimeCache {
    /// The same answer as [`check_time`], cheaper for a time within the last accepted second.
    pub fn check<'a>(&mut self, t: &'a str) -> Option<std::borrow::Cow<'a, str>> {
        let b = t.as_bytes();
        if b.len() >= 20 && self.second.is_some_and(|s| s[..] == b[..19]) && utc_suffix(&b[19..]) {
            return Some(std::borrow::Cow::Borrowed(t));
        }
        let checked = check_time(t);
        if matches!(checked, Some(std::borrow::Cow::Borrowed(_))) {
            self.second = b.get(..19).and_then(|p| p.try_into().ok());
        }
        checked
    }
}

/// `Z` or `.<1 to 9 digits>Z`.
fn utc_suffix(s: &[u8]) -> bool {
    match s {
        [b'Z'] => true,
        [b'.', digits @ .., b'Z'] => {
            (1..=9).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

/// Per-file parser settings.
#[derive(Debug, Clone)]
pub struct ParserConfig {
    /// Largest message kept, in bytes (raw lines and joined partial/multiline records).
    pub max_bytes: usize,
    /// Over-long handling.
    pub over_long: OverLong,
    /// Multiline joining for this file, if configured for its container or namespace.
    pub multiline: Option<multiline::Rule>,
}

/// Counters a parser bumps while it works.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ParseCounts {
    pub parse_errors: u64,
    pub truncated: u64,
    pub dropped: u64,
}

/// The parsing state of one file: detected format, pending partial lines and multiline records.
#[derive(Debug)]
pub struct FileParser {
    config: ParserConfig,
    format: Option<Format>,
    /// Partial lines waiting for their final part, per stream...
    partial: [Option<Entry>; 3],
    /// ...and for those that began in an older file of the container, where.
    partial_carried: [Option<Box<Carried>>; 3],
    multiline: multiline::Joiner,
    times: TimeCache,
    pub counts: ParseCounts,
    /// Emptied entries to fill instead of allocating new ones (lent by the reader while it feeds this parser).
    pub spare: Vec<Entry>,
    /// For each entry put out that began in an older file: its index in the output and where it began. The reader
    /// takes these with the entries.
    pub carried_out: Vec<(usize, Box<Carried>)>,
}

impl FileParser {
    pub fn new(config: ParserConfig) -> Self {
        let multiline = multiline::Joiner::new(config.multiline.clone(), config.max_bytes);
        FileParser {
            config,
            format: None,
            partial: [None, None, None],
            partial_carried: [None, None, None],
            multiline,
            times: TimeCache::default(),
            counts: ParseCounts::default(),
            spare: Vec::new(),
            carried_out: Vec::new(),
        }
    }

    /// An empty entry, recycled from `spare` when there is one (its buffers keep their capacity).
    fn fresh(&mut self, stream: Stream, start: u64, end: u64) -> Entry {
        match self.spare.pop() {
            Some(mut e) => {
                e.time.clear();
                e.message.clear();
                e.stream = stream;
                e.start = start;
                e.end = end;
                e.truncated = false;
                e.parse_error = None;
                e.multiline = false;
                e
            }
            None => Entry {
                time: String::new(),
                stream,
                message: Vec::new(),
                start,
                end,
                truncated: false,
                parse_error: None,
                multiline: false,
            },
        }
    }

    /// The detected format, once a line has been seen.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// Feeds one raw line (without its `\n`) spanning `[start, end)` in the file.
    /// `cut` says the raw line was already cut at the maximum size by the reader.
    pub fn push_line(
        &mut self,
        raw: &[u8],
        start: u64,
        end: u64,
        cut: bool,
        now: std::time::Instant,
        out: &mut Vec<Entry>,
    ) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let format = *self.format.get_or_insert_with(|| Format::detect(raw));
        let parsed = match format {
            Format::Cri => cri::parse(raw, &mut self.times),
            Format::Docker => docker::parse(raw, &mut self.times),
        };
        match parsed {
            Ok(p) => {
                let slot = p.stream.slot();
                let carried = self.partial_carried[slot].take();
                let entry = match self.partial[slot].take() {
                    Some(mut e) => {
                        let room = self.config.max_bytes.saturating_sub(e.message.len());
                        if p.message.len() > room {
                            e.message.extend_from_slice(&p.message[..room]);
                            e.truncated = true;
                        } else {
                            e.message.extend_from_slice(&p.message);
                        }
                        e.truncated |= cut;
                        e.end = end;
                        e
                    }
                    None => {
                        let mut e = self.fresh(p.stream, start, end);
                        // An unusable time leaves `time` empty: the encoder then dates the record by the read time.
                        e.time.push_str(&p.time);
                        if p.time_error.is_some() {
                            self.counts.parse_errors += 1;
                            e.parse_error = p.time_error;
                        }
                        let keep = p.message.len().min(self.config.max_bytes);
                        e.message.extend_from_slice(&p.message[..keep]);
                        e.truncated = cut || keep < p.message.len();
                        e
                    }
                };
                if p.partial {
                    self.partial[slot] = Some(entry);
                    self.partial_carried[slot] = carried;
                } else {
                    self.finish(entry, carried, now, out);
                }
            }
            Err(reason) => {
                self.counts.parse_errors += 1;
                let mut entry = self.fresh(Stream::Unknown, start, end);
                entry
                    .message
                    .extend_from_slice(&raw[..raw.len().min(self.config.max_bytes)]);
                entry.truncated = cut;
                entry.parse_error = Some(reason);
                self.finish(entry, None, now, out);
            }
        }
    }

    /// Notes a raw line the reader dropped as over-long (policy `drop`).
    pub fn dropped_line(&mut self) {
        self.counts.dropped += 1;
    }

    fn out<'a>(
        out: &'a mut Vec<Entry>,
        carried: &'a mut Vec<(usize, Box<Carried>)>,
        counts: &'a mut ParseCounts,
    ) -> multiline::Out<'a> {
        multiline::Out {
            entries: out,
            carried,
            counts,
        }
    }

    fn finish(
        &mut self,
        entry: Entry,
        carried: Option<Box<Carried>>,
        now: std::time::Instant,
        out: &mut Vec<Entry>,
    ) {
        let mut out = Self::out(out, &mut self.carried_out, &mut self.counts);
        if entry.stream == Stream::Unknown {
            // A line that could not be parsed is shipped on its own, never glued into a multiline record (a parsed
            // line with an unusable time joins as usual; only a record's first line gives its time).
            self.multiline.flush_stream(entry.stream, &mut out);
            out.emit(entry, carried);
            return;
        }
        self.multiline.push(entry, carried, now, &mut out);
    }

    /// Emits multiline records older than their flush timeout.
    pub fn flush_expired(&mut self, now: std::time::Instant, out: &mut Vec<Entry>) {
        let mut out = Self::out(out, &mut self.carried_out, &mut self.counts);
        self.multiline.flush_expired(now, &mut out);
    }

    /// Ends the pending partial lines as they are (their final part never came): they go on as complete lines (to
    /// the multiline joiner, if any).
    pub fn flush_partials(&mut self, out: &mut Vec<Entry>) {
        let mut out = Self::out(out, &mut self.carried_out, &mut self.counts);
        for slot in 0..3 {
            if let Some(e) = self.partial[slot].take() {
                let c = self.partial_carried[slot].take();
                self.multiline
                    .push(e, c, std::time::Instant::now(), &mut out);
            }
        }
    }

    /// Emits everything pending (partial lines as they are), e.g. once a rotated file is finished.
    pub fn flush_all(&mut self, out: &mut Vec<Entry>) {
        self.flush_partials(out);
        let mut out = Self::out(out, &mut self.carried_out, &mut self.counts);
        self.multiline.flush_all(&mut out);
    }

    /// Emits, as they are, the pending entries that began in an older file (this file's content is being replaced).
    pub fn flush_carried(&mut self, out: &mut Vec<Entry>) {
        let mut out = Self::out(out, &mut self.carried_out, &mut self.counts);
        for slot in 0..3 {
            if self.partial_carried[slot].is_some() {
                let c = self.partial_carried[slot].take();
                if let Some(e) = self.partial[slot].take() {
                    out.emit(e, c);
                }
            }
        }
        self.multiline.flush_carried(&mut out);
    }

    /// The smallest file offset a restart must read from so that nothing pending is lost:
    /// the start of the oldest pending entry, or `consumed` when nothing is pending.
    pub fn safe_offset(&self, consumed: u64) -> u64 {
        let mut safe = consumed;
        for (e, c) in self.partial.iter().zip(&self.partial_carried) {
            if let Some(e) = e {
                safe = safe.min(resume_at(e, c.as_deref()));
            }
        }
        if let Some(s) = self.multiline.oldest_start() {
            safe = safe.min(s);
        }
        safe
    }

    /// Whether a partial line or a multiline record is waiting for more lines.
    pub fn has_pending(&self) -> bool {
        self.partial.iter().any(Option::is_some) || self.multiline.has_pending()
    }

    /// Whether a partial line is waiting for its final part.
    pub fn has_partial(&self) -> bool {
        self.partial.iter().any(Option::is_some)
    }

    /// Moves the pending entries to `next`, the parser of the container's next file, which continues them from its
    /// offset `at` (a record cut by a rotation). `generation` and `slot` name this file. Returns the smallest offset
    /// of this file that must not be committed past until they are shipped; `None` when nothing moved. A stream in
    /// which `next` has pending entries of its own keeps its entries here.
    pub fn hand_over(
        &mut self,
        next: &mut FileParser,
        generation: u64,
        slot: u64,
        at: u64,
    ) -> Option<u64> {
        let mut held: Option<u64> = None;
        let mut carry = |e: &Entry, c: &mut Option<Box<Carried>>| {
            let from = resume_at(e, c.as_deref());
            let c = c.get_or_insert_with(|| {
                Box::new(Carried {
                    generation,
                    here: at,
                    holds: Vec::new(),
                })
            });
            c.holds.push((slot, from));
            c.here = at;
            held = Some(held.map_or(from, |h| h.min(from)));
        };
        for s in 0..3 {
            if next.partial[s].is_some() {
                continue;
            }
            if let Some(e) = self.partial[s].take() {
                let mut c = self.partial_carried[s].take();
                carry(&e, &mut c);
                next.partial[s] = Some(e);
                next.partial_carried[s] = c;
            }
        }
        self.multiline.hand_over(&mut next.multiline, &mut carry);
        held
    }

    /// The holds on older files of the pending entries that began in them.
    pub fn carried_holds(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.partial_carried
            .iter()
            .flatten()
            .map(|c| &**c)
            .chain(self.multiline.carried())
            .flat_map(|c| c.holds.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    pub(crate) fn parse_file(data: &[u8], config: ParserConfig) -> (Vec<Entry>, ParseCounts) {
        let mut p = FileParser::new(config);
        let mut out = Vec::new();
        let mut pos = 0u64;
        for line in data.split_inclusive(|&b| b == b'\n') {
            if !line.ends_with(b"\n") {
                break;
            }
            let end = pos + line.len() as u64;
            p.push_line(
                &line[..line.len() - 1],
                pos,
                end,
                false,
                Instant::now(),
                &mut out,
            );
            pos = end;
        }
        p.flush_all(&mut out);
        (out, p.counts)
    }

    pub(crate) fn cfg(max: usize) -> ParserConfig {
        ParserConfig {
            max_bytes: max,
            over_long: OverLong::Truncate,
            multiline: None,
        }
    }

    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/").to_string() + name).unwrap()
    }

    fn messages(out: &[Entry]) -> Vec<String> {
        out.iter()
            .map(|e| String::from_utf8_lossy(&e.message).into_owned())
            .collect()
    }

    #[test]
    fn cri_partial_lines_are_joined() {
        let (out, counts) = parse_file(&testdata("cri-partial.log"), cfg(1 << 20));
        assert_eq!(counts, ParseCounts::default());
        let msgs = messages(&out);
        // The stderr line completes first; the stdout partial is emitted when its final part arrives.
        assert_eq!(
            msgs,
            vec![
                "first full line",
                "err line",
                "a partial line joined in three parts",
                "after"
            ]
        );
        assert_eq!(out[2].stream, Stream::Stdout);
        assert_eq!(out[2].time, "2016-10-06T00:17:10.000000001Z");
        assert_eq!(out[1].stream, Stream::Stderr);
        // The joined entry spans its three raw lines.
        assert!(out[2].start < out[1].start && out[2].end > out[1].start);
    }

    #[test]
    fn docker_partial_lines_are_joined() {
        let (out, counts) = parse_file(&testdata("docker-partial.log"), cfg(1 << 20));
        assert_eq!(counts, ParseCounts::default());
        let msgs = messages(&out);
        assert_eq!(
            msgs,
            vec![
                "hello",
                "a long line in two chunks",
                "oops on stderr",
                "tab\there \"quoted\""
            ]
        );
        assert_eq!(out[2].stream, Stream::Stderr);
    }

    #[test]
    fn malformed_lines_are_kept_raw_with_a_flag() {
        let (out, counts) = parse_file(&testdata("cri-malformed.log"), cfg(1 << 20));
        assert_eq!(counts.parse_errors, 3);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0].parse_error, None);
        assert_eq!(out[1].message, b"this is not a cri line");
        assert!(out[1].parse_error.is_some());
        assert_eq!(out[2].parse_error, Some("cri: unknown stream"));
        assert_eq!(out[3].parse_error, Some("cri: bad timestamp"));
        assert_eq!(
            String::from_utf8_lossy(&out[4].message),
            "still parsed after the bad ones"
        );
    }

    #[test]
    fn malformed_docker_lines_are_kept_raw() {
        let (out, counts) = parse_file(&testdata("docker-malformed.log"), cfg(1 << 20));
        assert_eq!(counts.parse_errors, 2);
        assert_eq!(out.len(), 4);
        assert!(out[1].parse_error.is_some());
        assert_eq!(out[1].message, br#"{"log":"cut in the mid"#);
        assert_eq!(String::from_utf8_lossy(&out[3].message), "fine again");
    }

    #[test]
    fn huge_partial_join_is_truncated_at_max_bytes() {
        let (out, counts) = parse_file(&testdata("cri-huge.log"), cfg(1000));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].message.len(), 1000);
        assert!(out[0].truncated);
        assert_eq!(counts.truncated, 1);
        assert_eq!(String::from_utf8_lossy(&out[1].message), "small after huge");
        assert!(!out[1].truncated);
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let (out, _) = parse_file(&testdata("cri-non-utf8.log"), cfg(1 << 20));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].message, b"latin1 caf\xe9 and \xff\xfe bytes");
        assert_eq!(out[0].parse_error, None);
    }

    #[test]
    fn an_unusable_time_keeps_the_record_with_an_empty_time_and_a_mark() {
        let data = b"2024-13-45T99:99:99Z stdout P joined \n2016-10-06T00:17:09Z stdout F parts\n";
        let (out, counts) = parse_file(data, cfg(1 << 20));
        assert_eq!(counts.parse_errors, 1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].message, b"joined parts");
        assert_eq!(out[0].time, "");
        assert_eq!(out[0].stream, Stream::Stdout);
        assert_eq!(
            out[0].parse_error,
            Some("cri: invalid timestamp (read time used)")
        );
        let docker = br#"{"log":"a\n","stream":"stderr","time":"garbage"}
{"log":"b\n","stream":"stderr","time":"2016-10-20T18:39:20Z"}
"#;
        let (out, counts) = parse_file(docker, cfg(1 << 20));
        assert_eq!(counts.parse_errors, 1);
        assert_eq!((out[0].time.as_str(), out[0].stream), ("", Stream::Stderr));
        assert_eq!(
            out[0].parse_error,
            Some("docker: invalid \"time\" (read time used)")
        );
        assert_eq!(
            (out[1].time.as_str(), out[1].parse_error),
            ("2016-10-20T18:39:20Z", None)
        );
    }

    #[test]
    fn check_time_accepts_real_instants_only() {
        for ok in [
            "2016-10-06T00:17:09.669794202Z",
            "2016-10-06T00:17:09Z",
            "2016-10-06T00:17:09.1-18:00",
            "2024-02-29T23:59:59+05:30",
        ] {
            assert_eq!(check_time(ok).as_deref(), Some(ok), "{ok}");
        }
        assert_eq!(
            check_time("2016-10-06 00:17:09z").as_deref(),
            Some("2016-10-06T00:17:09Z")
        );
        for bad in [
            "",
            "garbage",
            "2024-13-45T99:99:99Z",
            "2023-02-29T00:00:00Z",
            "2016-10-06T24:00:00Z",
            "2016-10-06T23:59:60Z",
            "2016-10-06T00:00:00.0000000001Z",
            "2016-10-06T00:00:00+18:01",
            "2016-10-06T00:00:00",
        ] {
            assert_eq!(check_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_time_cache_answers_as_check_time() {
        let mut c = TimeCache::default();
        for t in [
            "2016-10-06T00:17:09.669794202Z",
            "2016-10-06T00:17:09.1Z",
            "2016-10-06T00:17:09Z",
            "2016-10-06T00:17:09.Z",
            "2016-10-06T00:17:09.1234567890Z",
            "2016-10-06T00:17:09.12a4Z",
            "2016-10-06T00:17:09.5+01:00",
            "2016-10-06T00:17:09z",
            "2016-10-06T00:17:10Z",
            "2016-10-06T00:17:09",
        ] {
            assert_eq!(c.check(t), check_time(t), "{t}");
        }
    }

    #[test]
    fn safe_offset_stops_at_a_pending_partial() {
        let mut p = FileParser::new(cfg(1 << 20));
        let mut out = Vec::new();
        let l1 = b"2016-10-06T00:17:09.669794202Z stdout F one";
        let l2 = b"2016-10-06T00:17:09.669794203Z stdout P two-";
        p.push_line(l1, 0, 44, false, Instant::now(), &mut out);
        assert_eq!(p.safe_offset(44), 44);
        p.push_line(l2, 44, 89, false, Instant::now(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.safe_offset(89), 44);
    }
}
