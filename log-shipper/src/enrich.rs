//! Enrichment and encoding: a parsed entry plus its file's Kubernetes metadata becomes a bulk action and document.

use crate::discovery::FileMeta;
use crate::parse::Entry;
use serde::Deserialize;

/// Errors of the record/index configuration.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error(
        "index pattern {pattern:?}: unknown placeholder {what:?} (known: %Y %m %d {{namespace}} {{pod}} {{container}})"
    )]
    Placeholder { pattern: String, what: String },
    #[error("index pattern {0:?} must not be empty")]
    Empty(String),
}

/// How records are shaped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// When the message is a JSON object, merge its fields into the record (Fluent Bit's `Merge_Log`).
    #[serde(default)]
    pub merge_log: bool,
    /// Put merged fields under this key instead of the top level (Fluent Bit's `Merge_Log_Key`).
    #[serde(default)]
    pub merge_log_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    Year,
    Month,
    Day,
    Namespace,
    Pod,
    Container,
}

/// A parsed index name pattern such as `logstash-%Y.%m.%d` or `logs-{namespace}-%Y.%m`.
#[derive(Debug, Clone)]
pub struct IndexPattern {
    segs: Vec<Seg>,
    dated: bool,
}

impl IndexPattern {
    pub fn parse(pattern: &str) -> Result<Self, EnrichError> {
        if pattern.is_empty() {
            return Err(EnrichError::Empty(pattern.into()));
        }
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut chars = pattern.chars();
        let bad = |what: String| EnrichError::Placeholder {
            pattern: pattern.into(),
            what,
        };
        while let Some(c) = chars.next() {
            let seg = match c {
                '%' => match chars.next() {
                    Some('Y') => Seg::Year,
                    Some('m') => Seg::Month,
                    Some('d') => Seg::Day,
                    Some('%') => {
                        lit.push('%');
                        continue;
                    }
                    other => {
                        return Err(bad(format!(
                            "%{}",
                            other.map(String::from).unwrap_or_default()
                        )))
                    }
                },
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    match name.as_str() {
                        "namespace" => Seg::Namespace,
                        "pod" => Seg::Pod,
                        "container" => Seg::Container,
                        _ => return Err(bad(format!("{{{name}}}"))),
                    }
                }
                c => {
                    lit.push(c);
                    continue;
                }
            };
            if !lit.is_empty() {
                segs.push(Seg::Lit(std::mem::take(&mut lit)));
            }
            segs.push(seg);
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        let dated = segs
            .iter()
            .any(|s| matches!(s, Seg::Year | Seg::Month | Seg::Day));
        Ok(IndexPattern { segs, dated })
    }

    /// The index name for a record with date `ymd` (`YYYY-MM-DD`) from a file with `meta`.
    pub fn render(&self, ymd: &str, meta: &FileMeta, out: &mut String) {
        out.clear();
        for s in &self.segs {
            match s {
                Seg::Lit(l) => out.push_str(l),
                Seg::Year => out.push_str(&ymd[0..4]),
                Seg::Month => out.push_str(&ymd[5..7]),
                Seg::Day => out.push_str(&ymd[8..10]),
                Seg::Namespace => out.push_str(&meta.namespace),
                Seg::Pod => out.push_str(&meta.pod),
                Seg::Container => out.push_str(&meta.container),
            }
        }
    }

    /// Whether the name depends on the record date.
    pub fn is_dated(&self) -> bool {
        self.dated
    }
}

/// The UTC date (`YYYY-MM-DD`) of an RFC 3339 timestamp, or `None` if it cannot be read.
pub fn utc_date(time: &str) -> Option<std::borrow::Cow<'_, str>> {
    let b = time.as_bytes();
    if b.len() >= 20 && matches!(b[b.len() - 1], b'Z' | b'z') && b[4] == b'-' && b[7] == b'-' {
        return Some(std::borrow::Cow::Borrowed(&time[..10]));
    }
    let t = chrono::DateTime::parse_from_rfc3339(time).ok()?;
    Some(std::borrow::Cow::Owned(
        t.with_timezone(&chrono::Utc).format("%Y-%m-%d").to_string(),
    ))
}

/// Byte ranges of one encoded bulk item inside a batch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// Start of the action line.
    pub action: usize,
    /// Start of the document line.
    pub doc: usize,
    /// End (after the document's `\n`).
    pub end: usize,
}

/// The per-file part of every record, encoded once (again when its pod's Kubernetes metadata arrives or changes).
#[derive(Debug, Clone)]
pub struct FileContext {
    pub meta: FileMeta,
    /// The file's path as first seen.
    path: String,
    /// `"kubernetes":{...},"log":{"file":{"path":...}` without the closing braces.
    fragment: String,
    /// Unique per context (the encoder caches the index name per context and day).
    id: u64,
    /// The pod metadata cache version this context was last checked against (`u64::MAX`: never).
    pub metadata_version: u64,
}

impl FileContext {
    pub fn new(meta: FileMeta, path: &str) -> Self {
        Self::with_pod(meta, path, None)
    }

    /// A context whose `kubernetes` object also carries the pod's metadata (`host`, `container_image`,
    /// `container_hash`, `labels`, `annotations`), when known.
    pub fn with_pod(meta: FileMeta, path: &str, pod: Option<&crate::metadata::PodMeta>) -> Self {
        let s = |v: &str| serde_json::to_string(v).expect("string");
        let mut fragment = format!(
            "\"kubernetes\":{{\"namespace_name\":{},\"pod_name\":{},\"pod_id\":{},\"container_name\":{}",
            s(&meta.namespace),
            s(&meta.pod),
            s(&meta.pod_uid),
            s(&meta.container)
        );
        if let Some(n) = meta.restart_count {
            fragment.push_str(&format!(",\"restart_count\":{n}"));
        }
        if let Some(pod) = pod {
            fragment.push_str(&pod.fragment(&meta.container));
        }
        fragment.push_str(&format!("}},\"log\":{{\"file\":{{\"path\":{}}}", s(path)));
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        FileContext {
            meta,
            path: path.to_string(),
            fragment,
            id,
            metadata_version: u64::MAX,
        }
    }

    /// Brings the context up to date with the pod metadata cache: looks the pod up only when the cache changed since
    /// the last check, and re-encodes the fragment when metadata was found. Never waits on the metadata source.
    pub fn refresh_metadata(
        &mut self,
        cache: &crate::metadata::PodCache,
        metrics: &crate::metrics::Metrics,
    ) {
        let v = cache.version();
        if v == self.metadata_version {
            return;
        }
        let pod = cache.lookup(
            &self.meta.pod_uid,
            &self.meta.namespace,
            &self.meta.pod,
            metrics,
        );
        if let Some(pod) = pod {
            *self = Self::with_pod(self.meta.clone(), &self.path.clone(), Some(&pod));
        }
        self.metadata_version = v;
    }
}

/// Encodes entries into `_bulk` action + document lines.
#[derive(Debug, Clone)]
pub struct Encoder {
    index: IndexPattern,
    record: RecordConfig,
    /// The last rendered index name, as a JSON string, and what it was rendered for (date, file context).
    index_json: Vec<u8>,
    index_key: Option<(String, u64)>,
    index_buf: String,
    id_buf: String,
}

const RESERVED: [&str; 7] = [
    "@timestamp",
    "stream",
    "message",
    "kubernetes",
    "log",
    "parse_error",
    "truncated",
];

impl Encoder {
    pub fn new(index: IndexPattern, record: RecordConfig) -> Self {
        Encoder {
            index,
            record,
            index_json: Vec::new(),
            index_key: None,
            index_buf: String::new(),
            id_buf: String::new(),
        }
    }

    /// Appends the action line and the document of `entry` to `out`.
    pub fn encode(
        &mut self,
        entry: &Entry,
        ctx: &FileContext,
        generation: u64,
        now_rfc3339: &str,
        out: &mut Vec<u8>,
    ) -> Item {
        // No parseable time: the index date comes from `now`. The `_id` is unique per index only, so a re-send of such a
        // record after a restart across midnight lands in another index and is stored twice (see `EsConfig::index`).
        let time: &str = if entry.time.is_empty() {
            now_rfc3339
        } else {
            &entry.time
        };
        let date = utc_date(time)
            .or_else(|| utc_date(now_rfc3339))
            .unwrap_or(std::borrow::Cow::Borrowed("1970-01-01"));
        // Records of one file and day share the index name: render it once.
        let ctx_id = ctx.id;
        let hit = matches!(&self.index_key, Some((d, c)) if *c == ctx_id && d.as_str() == &*date);
        if !hit {
            self.index.render(&date, &ctx.meta, &mut self.index_buf);
            self.index_json.clear();
            write_json_str(&mut self.index_json, self.index_buf.as_bytes());
            self.index_key = Some((date.into_owned(), ctx_id));
        }
        crate::tail::fingerprint::record_id(generation, entry.start, &mut self.id_buf);
        if entry.multiline {
            // A multiline record's end can depend on its flush timeout, so a re-read after a crash may join more lines
            // from the same start. Its end is part of the id: a longer join is a new document (its first lines then
            // appear twice) rather than a 409 that would drop the lines added to it.
            self.id_buf.push('-');
            crate::tail::fingerprint::push_hex(entry.end, &mut self.id_buf);
        }
        let action = out.len();
        out.extend_from_slice(b"{\"create\":{\"_index\":");
        out.extend_from_slice(&self.index_json);
        out.extend_from_slice(b",\"_id\":\"");
        out.extend_from_slice(self.id_buf.as_bytes());
        out.extend_from_slice(b"\"}}\n");
        let doc = out.len();
        out.extend_from_slice(b"{\"@timestamp\":");
        write_json_str(out, time.as_bytes());
        out.extend_from_slice(b",\"stream\":\"");
        out.extend_from_slice(entry.stream.as_str().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        write_json_str(out, &entry.message);
        if let Some(reason) = entry.parse_error {
            out.extend_from_slice(b",\"parse_error\":");
            write_json_str(out, reason.as_bytes());
        }
        if entry.truncated {
            out.extend_from_slice(b",\"truncated\":true");
        }
        if self.record.merge_log && entry.parse_error.is_none() {
            self.merge(&entry.message, out);
        }
        out.push(b',');
        out.extend_from_slice(ctx.fragment.as_bytes());
        out.extend_from_slice(b",\"offset\":");
        push_u64(out, entry.start);
        out.extend_from_slice(b"}}\n");
        Item {
            action,
            doc,
            end: out.len(),
        }
    }

    /// Appends a record marking a gap: `bytes` bytes (`lines` lines) of `file`, from `offset` on, that were deleted
    /// before they could be read. It carries the container's `kubernetes` fields, `stream: "gap"` and a `log_gap`
    /// object; its `_id` (`<generation>-<offset>-gap`) makes a repeated notice after a restart a duplicate.
    #[allow(clippy::too_many_arguments)]
    pub fn encode_gap(
        &mut self,
        ctx: &FileContext,
        generation: u64,
        offset: u64,
        bytes: u64,
        lines: u64,
        file: &str,
        now_rfc3339: &str,
        out: &mut Vec<u8>,
    ) -> Item {
        let date = utc_date(now_rfc3339).unwrap_or(std::borrow::Cow::Borrowed("1970-01-01"));
        self.index.render(&date, &ctx.meta, &mut self.index_buf);
        self.index_key = None;
        crate::tail::fingerprint::record_id(generation, offset, &mut self.id_buf);
        self.id_buf.push_str("-gap");
        let action = out.len();
        out.extend_from_slice(b"{\"create\":{\"_index\":");
        write_json_str(out, self.index_buf.as_bytes());
        out.extend_from_slice(b",\"_id\":\"");
        out.extend_from_slice(self.id_buf.as_bytes());
        out.extend_from_slice(b"\"}}\n");
        let doc = out.len();
        out.extend_from_slice(b"{\"@timestamp\":");
        write_json_str(out, now_rfc3339.as_bytes());
        out.extend_from_slice(b",\"stream\":\"gap\",\"message\":");
        let msg = format!(
            "vigil log-shipper: {bytes} bytes ({lines} lines) of {file} were deleted before they were shipped"
        );
        write_json_str(out, msg.as_bytes());
        out.extend_from_slice(b",\"log_gap\":{\"bytes\":");
        push_u64(out, bytes);
        out.extend_from_slice(b",\"lines\":");
        push_u64(out, lines);
        out.extend_from_slice(b",\"file\":");
        write_json_str(out, file.as_bytes());
        out.extend_from_slice(b"},");
        out.extend_from_slice(ctx.fragment.as_bytes());
        out.extend_from_slice(b",\"offset\":");
        push_u64(out, offset);
        out.extend_from_slice(b"}}\n");
        Item {
            action,
            doc,
            end: out.len(),
        }
    }

    fn merge(&self, message: &[u8], out: &mut Vec<u8>) {
        let trimmed = message.trim_ascii();
        if !trimmed.starts_with(b"{") {
            return;
        }
        let Ok(map) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(trimmed)
        else {
            return;
        };
        match &self.record.merge_log_key {
            Some(key) => {
                out.push(b',');
                write_json_str(out, key.as_bytes());
                out.push(b':');
                serde_json::to_writer(&mut *out, &map).expect("vec write");
            }
            None => {
                for (k, v) in &map {
                    if RESERVED.contains(&k.as_str()) {
                        continue;
                    }
                    out.push(b',');
                    write_json_str(out, k.as_bytes());
                    out.push(b':');
                    serde_json::to_writer(&mut *out, v).expect("vec write");
                }
            }
        }
    }
}

/// Writes `s` as a JSON string; invalid UTF-8 sequences become U+FFFD.
pub fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    if s.is_ascii() {
        escape_into(out, s, HEX);
        out.push(b'"');
        return;
    }
    let mut rest = s;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                escape_into(out, valid.as_bytes(), HEX);
                break;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                escape_into(out, valid, HEX);
                out.extend_from_slice("\u{fffd}".as_bytes());
                let skip = e.error_len().unwrap_or(after.len());
                rest = &after[skip..];
            }
        }
    }
    out.push(b'"');
}

/// Whether any of the 8 bytes in `x` is < 0x20, `"` or `\\` (SWAR; exact, no false positives).
#[inline]
fn needs_escape8(x: u64) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(LO) & !v & HI;
    // Bytes >= 0x80 are masked out of the "less than 0x20" test so UTF-8 continuation bytes never match.
    let lt20 = x.wrapping_sub(0x20 * LO) & !x & HI;
    (lt20 | has_zero(x ^ (0x22 * LO)) | has_zero(x ^ (0x5c * LO))) != 0
}

fn escape_into(out: &mut Vec<u8>, s: &[u8], hex: &[u8; 16]) {
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        // Skip 8 bytes at a time while none needs escaping.
        if i + 8 <= s.len() {
            let x = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
            if !needs_escape8(x) {
                i += 8;
                continue;
            }
        }
        let b = s[i];
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    hex[(b >> 4) as usize],
                    hex[(b & 15) as usize],
                ]);
                i += 1;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&s[start..]);
}

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::Stream;

    fn meta() -> FileMeta {
        FileMeta {
            namespace: "shop".into(),
            pod: "web-0".into(),
            pod_uid: "u1".into(),
            container: "nginx".into(),
            restart_count: Some(2),
            dir: "/var/log/pods/shop_web-0_u1/nginx".into(),
            base: "2.log".into(),
        }
    }

    fn entry(msg: &[u8]) -> Entry {
        Entry {
            time: "2026-11-22T23:59:59.123456789+01:00".into(),
            stream: Stream::Stderr,
            message: msg.to_vec(),
            start: 4096,
            end: 4200,
            truncated: false,
            parse_error: None,
            multiline: false,
        }
    }

    #[test]
    fn encodes_action_and_document() {
        let mut enc = Encoder::new(
            IndexPattern::parse("logstash-%Y.%m.%d").unwrap(),
            RecordConfig::default(),
        );
        let ctx = FileContext::new(meta(), "/var/log/pods/shop_web-0_u1/nginx/2.log");
        let mut out = Vec::new();
        let item = enc.encode(
            &entry(b"caf\xe9 \"q\"\n\x01"),
            &ctx,
            0xabc,
            "2026-11-22T00:00:00Z",
            &mut out,
        );
        let text = String::from_utf8(out.clone()).unwrap();
        let mut lines = text.lines();
        let action: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        // +01:00 at 23:59 is the 22nd locally and the 22nd in UTC (22:59Z).
        assert_eq!(action["create"]["_index"], "logstash-2026.11.22");
        assert_eq!(action["create"]["_id"], "0000000000000abc-1000");
        let doc: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(doc["message"], "caf\u{fffd} \"q\"\n\u{1}");
        assert_eq!(doc["stream"], "stderr");
        assert_eq!(doc["kubernetes"]["namespace_name"], "shop");
        assert_eq!(doc["kubernetes"]["restart_count"], 2);
        assert_eq!(doc["log"]["offset"], 4096);
        assert_eq!(&out[item.doc..item.end], lines_bytes(&text, 1));
    }

    #[test]
    fn gap_record_names_the_container_and_the_loss() {
        let mut enc = Encoder::new(
            IndexPattern::parse("logs-{namespace}-%Y.%m.%d").unwrap(),
            RecordConfig::default(),
        );
        let ctx = FileContext::new(meta(), "/var/log/pods/shop_web-0_u1/nginx/2.log");
        let mut out = Vec::new();
        let file = "/var/log/pods/shop_web-0_u1/nginx/2.log.20261122-101500.gz";
        enc.encode_gap(
            &ctx,
            0xabc,
            0x200,
            5000,
            42,
            file,
            "2026-11-23T01:02:03Z",
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let action: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(action["create"]["_index"], "logs-shop-2026.11.23");
        assert_eq!(action["create"]["_id"], "0000000000000abc-200-gap");
        let doc: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(doc["stream"], "gap");
        assert_eq!(doc["log_gap"]["bytes"], 5000);
        assert_eq!(doc["log_gap"]["lines"], 42);
        assert_eq!(doc["log_gap"]["file"], file);
        assert_eq!(doc["kubernetes"]["container_name"], "nginx");
        assert!(doc["message"]
            .as_str()
            .unwrap()
            .contains("5000 bytes (42 lines)"));
        // The index cache is not confused by the gap record.
        let mut out = Vec::new();
        enc.encode(&entry(b"x"), &ctx, 1, "2026-11-23T00:00:00Z", &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("logs-shop-2026.11.22"));
    }

    fn lines_bytes(text: &str, n: usize) -> &[u8] {
        let l = text.split_inclusive('\n').nth(n).unwrap();
        l.as_bytes()
    }

    #[test]
    fn escaping_round_trips_through_serde_json() {
        let cases: Vec<Vec<u8>> = vec![
            b"plain ascii text that is longer than eight bytes".to_vec(),
            b"quote\" back\\slash\ttab\nnl\rcr \x01\x1f end".to_vec(),
            "caf\u{e9} \u{1F600} \u{7f}\u{80}\u{ff} \"\"\"\"\"\"\"\"\""
                .as_bytes()
                .to_vec(),
            (0u8..128).collect(),
        ];
        for c in cases {
            let mut out = Vec::new();
            write_json_str(&mut out, &c);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back.as_bytes(), &c[..]);
        }
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, format!("0 {}", u64::MAX).into_bytes());
    }

    #[test]
    fn utc_date_converts_offsets() {
        assert_eq!(
            utc_date("2026-11-22T23:30:00.5-02:00").unwrap(),
            "2026-11-23"
        );
        assert_eq!(
            utc_date("2026-11-22T00:00:00.000000001Z").unwrap(),
            "2026-11-22"
        );
        assert!(utc_date("garbage").is_none());
    }

    #[test]
    fn patterns_with_fields_and_bad_placeholders() {
        let p = IndexPattern::parse("logs-{namespace}-%Y.%m").unwrap();
        let mut s = String::new();
        p.render("2026-11-22", &meta(), &mut s);
        assert_eq!(s, "logs-shop-2026.11");
        let e = IndexPattern::parse("logs-{node}").unwrap_err().to_string();
        assert!(e.contains("{node}"), "{e}");
        assert!(IndexPattern::parse("logs-%H").is_err());
    }

    #[test]
    fn merge_log_adds_json_fields() {
        let rc = RecordConfig {
            merge_log: true,
            merge_log_key: None,
        };
        let mut enc = Encoder::new(IndexPattern::parse("x").unwrap(), rc);
        let ctx = FileContext::new(meta(), "/p");
        let mut out = Vec::new();
        let item = enc.encode(
            &entry(br#"{"level":"warn","message":"kept original","n":3}"#),
            &ctx,
            1,
            "2026-11-22T00:00:00Z",
            &mut out,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out[item.doc..item.end]).unwrap();
        assert_eq!(doc["level"], "warn");
        assert_eq!(doc["n"], 3);
        assert_eq!(
            doc["message"],
            r#"{"level":"warn","message":"kept original","n":3}"#
        );
        let rc = RecordConfig {
            merge_log: true,
            merge_log_key: Some("app".into()),
        };
        let mut enc = Encoder::new(IndexPattern::parse("x").unwrap(), rc);
        out.clear();
        let item = enc.encode(
            &entry(br#"{"level":"warn"}"#),
            &ctx,
            1,
            "2026-11-22T00:00:00Z",
            &mut out,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out[item.doc..item.end]).unwrap();
        assert_eq!(doc["app"]["level"], "warn");
        // Not JSON: nothing merged, no error.
        out.clear();
        let item = enc.encode(
            &entry(b"{not json"),
            &ctx,
            1,
            "2026-11-22T00:00:00Z",
            &mut out,
        );
        let doc: serde_json::Value = serde_json::from_slice(&out[item.doc..item.end]).unwrap();
        assert!(doc.get("app").is_none());
    }
}
