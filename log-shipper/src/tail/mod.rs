//! Tailing: the reader loop that follows every discovered file, parses new lines into batches, and advances
//! checkpoints only when the sink has acknowledged everything before them.

pub mod checkpoint;
pub mod fingerprint;
pub mod watcher;

use crate::discovery::{Discovery, FileMeta};
use crate::enrich::{Encoder, FileContext};
use crate::metrics::Metrics;
use crate::parse::{multiline, Entry, FileParser, OverLong, ParserConfig};
use crate::sinks::Batch;
use checkpoint::{Position, Store};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

/// Errors of the reader.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// A multiline rule and the files it applies to.
#[derive(Debug, Clone)]
pub struct MultilineSelector {
    /// Applies to this namespace only (any if `None`).
    pub namespace: Option<String>,
    /// Applies to containers of this name only (any if `None`).
    pub container: Option<String>,
    pub rule: multiline::Rule,
}

/// Everything the reader needs.
pub struct ReaderConfig {
    pub discovery: Discovery,
    pub max_line_bytes: usize,
    pub over_long: OverLong,
    pub multiline: Vec<MultilineSelector>,
    pub encoder: Encoder,
    /// A batch is sent once it holds this many bytes...
    pub batch_bytes: usize,
    /// ...or once its first record is this old.
    pub batch_timeout: Duration,
    /// How often every open file is checked for growth (inotify usually wakes the reader sooner).
    pub poll_interval: Duration,
    pub rescan_interval: Duration,
    pub store: Store,
    /// How often checkpoints are written when they changed.
    pub checkpoint_interval: Duration,
    /// Where batch buffers come from (the sinks hand them back).
    pub buffers: crate::sinks::BufferPool,
    /// Pod labels and annotations, filled in the background (`None`: path metadata only).
    pub pod_metadata: Option<Arc<crate::metadata::PodCache>>,
}

/// Read at most this much from one file per pass, so one busy file cannot starve the others.
const CHUNK: usize = 256 * 1024;
/// Entries kept for reuse at most (about one read chunk of short lines)...
const SPARE_ENTRIES: usize = 4096;
/// ...and only those whose message buffer is at most this large.
const SPARE_MESSAGE_BYTES: usize = 4096;
/// A rotated file read to its end and unchanged for this long is closed (and reopened if it grows).
const DORMANT_AFTER: Duration = Duration::from_secs(3);

struct Tracked {
    slot: u64,
    path: PathBuf,
    ctx: FileContext,
    file: Option<File>,
    dev: u64,
    ino: u64,
    generation: Option<u64>,
    /// Offset of the next byte to read.
    read_offset: u64,
    /// Bytes of an incomplete line (they start at `read_offset - carry.len()` unless skipping).
    carry: Vec<u8>,
    /// Skipping the rest of an over-long line that started at this offset...
    skip_from: Option<u64>,
    /// ...whose first `max_line_bytes` are kept here (policy `truncate`).
    kept: Vec<u8>,
    /// Hash of the bytes just before `read_offset`.
    near: u64,
    parser: FileParser,
    committed: u64,
    resume: Option<Position>,
    deleted: bool,
    last_data: Instant,
}

impl Tracked {
    fn consumed(&self) -> u64 {
        match self.skip_from {
            Some(s) => s,
            None => self.read_offset - self.carry.len() as u64,
        }
    }
    fn rotated(&self) -> bool {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy() != self.ctx.meta.base)
            .unwrap_or(false)
    }
}

/// The reader: owns the files, the parsers, the batch being built and the checkpoints.
pub struct Reader {
    cfg: ReaderConfig,
    metrics: Arc<Metrics>,
    files: BTreeMap<u64, Tracked>,
    by_inode: HashMap<(u64, u64), u64>,
    saved: HashMap<(u64, u64), Position>,
    next_slot: u64,
    next_seq: u64,
    batch: Batch,
    batch_started: Option<Instant>,
    /// Positions of sent, unacknowledged batches, by sequence number.
    in_flight: BTreeMap<u64, Vec<(u64, u64)>>,
    acked: HashSet<u64>,
    next_commit: u64,
    checkpoint_dirty: bool,
    read_buf: Vec<u8>,
    entries: Vec<Entry>,
    /// Encoded entries kept for reuse (their buffers keep their capacity), lent to the parser being fed.
    spare: Vec<Entry>,
    now_str: String,
    acks: Option<mpsc::Receiver<u64>>,
    poll_cursor: u64,
    last_checkpoint: Instant,
    last_lag: Instant,
}

impl Reader {
    /// Loads the checkpoints (an unreadable checkpoint file is an error: starting over would duplicate
    /// into non-Elasticsearch sinks and hide the problem).
    pub fn new(cfg: ReaderConfig, metrics: Arc<Metrics>) -> Result<Self, TailError> {
        let saved = cfg.store.load()?;
        Ok(Reader {
            cfg,
            metrics,
            files: BTreeMap::new(),
            by_inode: HashMap::new(),
            saved,
            next_slot: 1,
            next_seq: 0,
            batch: Batch::default(),
            batch_started: None,
            in_flight: BTreeMap::new(),
            acked: HashSet::new(),
            next_commit: 0,
            checkpoint_dirty: false,
            read_buf: Vec::with_capacity(CHUNK + 64 * 1024),
            entries: Vec::new(),
            spare: Vec::new(),
            now_str: String::new(),
            acks: None,
            poll_cursor: 0,
            last_checkpoint: Instant::now(),
            last_lag: Instant::now(),
        })
    }

    /// Runs until `stop` says so, then flushes the open batch, waits briefly for the sink, and writes checkpoints.
    pub fn run(
        mut self,
        tx: tokio::sync::mpsc::Sender<Batch>,
        acks: mpsc::Receiver<u64>,
        wake: mpsc::Receiver<watcher::Wake>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), TailError> {
        let mut last_scan = Instant::now() - self.cfg.rescan_interval;
        self.metrics.checkpoint_written(SystemTime::now());
        self.acks = Some(acks);
        let mut sink_gone = false;
        loop {
            if *stop.borrow() {
                break;
            }
            self.drain_acks();
            let mut rescan = last_scan.elapsed() >= self.cfg.rescan_interval;
            let mut woke = false;
            while let Ok(w) = wake.try_recv() {
                woke = true;
                rescan |= w == watcher::Wake::Rescan;
            }
            if rescan {
                self.scan();
                last_scan = Instant::now();
            }
            let progressed = self.poll_all();
            let _ = woke;
            if self.batch_ready() && !self.send(&tx, &stop) {
                sink_gone = true;
                break;
            }
            self.housekeeping();
            if !progressed {
                let mut timeout = self.cfg.poll_interval;
                if let Some(s) = self.batch_started {
                    timeout = timeout.min(self.cfg.batch_timeout.saturating_sub(s.elapsed()));
                }
                match wake.recv_timeout(timeout.max(Duration::from_millis(5))) {
                    Ok(w) => {
                        if w == watcher::Wake::Rescan {
                            last_scan = Instant::now() - self.cfg.rescan_interval;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
                }
            }
        }
        // Shutdown: hand over what was read, give the sink a moment to acknowledge it, save checkpoints.
        if !sink_gone && (!self.batch.items.is_empty() || !self.batch.positions.is_empty()) {
            let (_, never) = tokio::sync::watch::channel(false);
            self.send(&tx, &never);
        }
        drop(tx);
        let acks = self.acks.take().expect("set above");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.in_flight.is_empty() && Instant::now() < deadline {
            match acks.recv_timeout(Duration::from_millis(50)) {
                Ok(seq) => self.ack(seq),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.write_checkpoint();
        Ok(())
    }

    fn drain_acks(&mut self) {
        let mut got = Vec::new();
        if let Some(a) = &self.acks {
            while let Ok(seq) = a.try_recv() {
                got.push(seq);
            }
        }
        for seq in got {
            self.ack(seq);
        }
    }

    /// Periodic work that must go on even while the sink applies backpressure.
    fn housekeeping(&mut self) {
        if self.checkpoint_dirty && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval {
            self.write_checkpoint();
            self.last_checkpoint = Instant::now();
        }
        if self.last_lag.elapsed() >= Duration::from_secs(1) {
            self.publish_lag();
            self.last_lag = Instant::now();
        }
    }

    fn ack(&mut self, seq: u64) {
        self.acked.insert(seq);
        while self.acked.remove(&self.next_commit) {
            if let Some(positions) = self.in_flight.remove(&self.next_commit) {
                for (slot, off) in positions {
                    if let Some(t) = self.files.get_mut(&slot) {
                        if off > t.committed {
                            t.committed = off;
                            self.checkpoint_dirty = true;
                        }
                    }
                }
            }
            self.next_commit += 1;
        }
    }

    fn write_checkpoint(&mut self) {
        let mut positions: Vec<Position> = Vec::new();
        for t in self.files.values() {
            let Some(generation) = t.generation else {
                continue;
            };
            positions.push(Position {
                dev: t.dev,
                ino: t.ino,
                generation,
                offset: t.committed,
                path: t.path.to_string_lossy().into_owned(),
            });
        }
        // Files opened but not yet identified keep their old checkpoint.
        for t in self.files.values() {
            if t.generation.is_none() {
                if let Some(p) = &t.resume {
                    positions.push(p.clone());
                }
            }
        }
        match self.cfg.store.save(&positions) {
            Ok(()) => {
                self.checkpoint_dirty = false;
                self.metrics.checkpoint_written(SystemTime::now());
            }
            Err(e) => {
                self.metrics.checkpoint_errors.inc_by(1);
                tracing::error!(error = %e, "writing checkpoints failed; will retry");
            }
        }
    }

    fn publish_lag(&self) {
        let mut lags = Vec::with_capacity(self.files.len());
        for t in self.files.values() {
            lags.push((t.path.to_string_lossy().into_owned(), t.committed));
        }
        // The metric stats each file when scraped, so the lag is current even while the reader waits on the sink.
        self.metrics.set_positions(lags);
        self.metrics
            .open_files
            .set((self.files.values().filter(|t| t.file.is_some()).count() as u64) as i64);
        self.metrics
            .tracked_files
            .set((self.files.len() as u64) as i64);
    }

    fn parser_config(&self, meta: &FileMeta) -> ParserConfig {
        let multiline = self
            .cfg
            .multiline
            .iter()
            .find(|s| {
                s.namespace.as_deref().is_none_or(|n| n == meta.namespace)
                    && s.container.as_deref().is_none_or(|c| c == meta.container)
            })
            .map(|s| s.rule.clone());
        ParserConfig {
            max_bytes: self.cfg.max_line_bytes,
            over_long: self.cfg.over_long,
            multiline,
        }
    }

    /// Discovers new, renamed and deleted files.
    fn scan(&mut self) {
        let found = self.cfg.discovery.scan();
        let mut seen: HashSet<u64> = HashSet::new();
        for f in found {
            let Ok(md) = std::fs::metadata(&f.path) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            let key = (md.dev(), md.ino());
            if let Some(&slot) = self.by_inode.get(&key) {
                if seen.contains(&slot) {
                    continue;
                }
                let t = self.files.get_mut(&slot).expect("indexed");
                // A closed (dormant) file's inode may have been freed and reused by a new file: same inode,
                // different content. Open files cannot be reused (we hold them), so only dormant ones are checked.
                let reused = t.file.is_none() && {
                    let g = File::open(&f.path)
                        .ok()
                        .and_then(|file| fingerprint::read_head(&file).ok().flatten())
                        .map(|h| fingerprint::generation(&f.meta.dir, &f.meta.base, &h));
                    g != t.generation
                };
                if !reused {
                    seen.insert(slot);
                    if t.path != f.path {
                        tracing::debug!(from = %t.path.display(), to = %f.path.display(), "file renamed");
                        t.path = f.path.clone();
                    }
                    t.deleted = false;
                    if t.file.is_none() && md.len() != t.read_offset {
                        match File::open(&f.path) {
                            Ok(file) => t.file = Some(file),
                            Err(e) => {
                                tracing::warn!(path = %f.path.display(), error = %e, "reopening failed")
                            }
                        }
                    }
                    continue;
                }
                tracing::debug!(path = %f.path.display(), "inode reused by a new file");
                self.files.remove(&slot);
                self.by_inode.remove(&key);
            }
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "cannot open log file");
                    continue;
                }
            };
            let slot = self.next_slot;
            self.next_slot += 1;
            let pc = self.parser_config(&f.meta);
            let path_str = f.path.to_string_lossy().into_owned();
            let t = Tracked {
                slot,
                path: f.path.clone(),
                ctx: FileContext::new(f.meta, &path_str),
                file: Some(file),
                dev: key.0,
                ino: key.1,
                generation: None,
                read_offset: 0,
                carry: Vec::new(),
                skip_from: None,
                kept: Vec::new(),
                near: 0,
                parser: FileParser::new(pc),
                committed: 0,
                resume: self.saved.remove(&key),
                deleted: false,
                last_data: Instant::now(),
            };
            tracing::info!(path = %f.path.display(), "tailing");
            seen.insert(slot);
            self.by_inode.insert(key, slot);
            self.files.insert(slot, t);
        }
        let mut gone = Vec::new();
        for (slot, t) in self.files.iter_mut() {
            if !seen.contains(slot) {
                t.deleted = true;
                if t.file.is_none() {
                    // Closed, fully shipped and now deleted: forget it.
                    gone.push((*slot, (t.dev, t.ino)));
                }
            }
        }
        for (slot, key) in gone {
            self.files.remove(&slot);
            self.by_inode.remove(&key);
            self.checkpoint_dirty = true;
        }
    }

    /// One pass over every open file. Returns whether any data was read.
    fn poll_all(&mut self) -> bool {
        let mut slots: Vec<u64> = self.files.keys().copied().collect();
        // Start after the file polled last, so a full batch never starves the files after it.
        let start = slots
            .iter()
            .position(|&s| s > self.poll_cursor)
            .unwrap_or(0);
        slots.rotate_left(start);
        let mut progressed = false;
        let now = Instant::now();
        self.now_str = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        for slot in slots {
            self.poll_cursor = slot;
            progressed |= self.poll_file(slot, now);
            if self.batch.buf.len() >= self.cfg.batch_bytes {
                break;
            }
        }
        progressed
    }

    fn reset(&mut self, slot: u64, why: &str) {
        let Some(mut t) = self.files.remove(&slot) else {
            return;
        };
        tracing::info!(path = %t.path.display(), reason = why, "file truncated or replaced; reading from offset 0");
        self.metrics.truncations.inc_by(1);
        let new_slot = self.next_slot;
        self.next_slot += 1;
        let pc = self.parser_config(&t.ctx.meta);
        t.slot = new_slot;
        t.generation = None;
        t.read_offset = 0;
        t.carry.clear();
        t.skip_from = None;
        t.kept.clear();
        t.near = 0;
        t.parser = FileParser::new(pc);
        t.committed = 0;
        t.resume = None;
        self.by_inode.insert((t.dev, t.ino), new_slot);
        self.files.insert(new_slot, t);
    }

    fn poll_file(&mut self, slot: u64, now: Instant) -> bool {
        let Some(t) = self.files.get_mut(&slot) else {
            return false;
        };
        let Some(file) = &t.file else { return false };
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return false,
        };
        // Identity of a file seen for the first time (or after truncation): its head.
        if t.generation.is_none() {
            match fingerprint::read_head(file) {
                Ok(Some(head)) => {
                    let g = fingerprint::generation(&t.ctx.meta.dir, &t.ctx.meta.base, &head);
                    t.generation = Some(g);
                    if let Some(p) = t.resume.take() {
                        if p.generation == g && p.offset <= size {
                            t.read_offset = p.offset;
                            t.committed = p.offset;
                            t.near = fingerprint::near_hash(file, p.offset).unwrap_or(0);
                            tracing::info!(path = %t.path.display(), offset = p.offset, "resuming from checkpoint");
                        }
                    }
                }
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "reading file head failed");
                    return false;
                }
            }
        }
        if size < t.read_offset {
            self.reset(slot, "size shrank");
            return true;
        }
        if size > t.read_offset && t.read_offset > 0 {
            // Copytruncate refilled past the read position? The first line (it starts with a timestamp) tells
            // generations apart even when the bytes before the read position repeat (padded, fixed-width lines).
            if let Ok(Some(head)) = fingerprint::read_head(file) {
                if Some(fingerprint::generation(
                    &t.ctx.meta.dir,
                    &t.ctx.meta.base,
                    &head,
                )) != t.generation
                {
                    self.reset(slot, "first line changed");
                    return true;
                }
            }
            match fingerprint::near_hash(file, t.read_offset) {
                Ok(h) if h != t.near => {
                    self.reset(slot, "content before the read position changed");
                    return true;
                }
                _ => {}
            }
        }
        if size == t.read_offset {
            return self.idle(slot, now);
        }
        // Read a chunk behind the carried incomplete line.
        let buf = &mut self.read_buf;
        buf.clear();
        if t.skip_from.is_none() {
            buf.extend_from_slice(&t.carry);
        }
        let carry_len = buf.len();
        let want = CHUNK.min((size - t.read_offset) as usize);
        buf.resize(carry_len + want, 0);
        let n = match file.read_at(&mut buf[carry_len..], t.read_offset) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(path = %t.path.display(), error = %e, "read failed");
                return false;
            }
        };
        buf.truncate(carry_len + n);
        if n == 0 {
            return false;
        }
        let base = t.read_offset - carry_len as u64;
        t.read_offset += n as u64;
        t.near = if n >= fingerprint::NEAR_BYTES as usize {
            fingerprint::near_hash_of(buf)
        } else {
            fingerprint::near_hash(file, t.read_offset).unwrap_or(0)
        };
        t.last_data = now;
        self.metrics.bytes_read.inc_by(n as u64);
        t.carry.clear();
        let max = self.cfg.max_line_bytes;
        let policy = self.cfg.over_long;
        let mut pos = 0usize;
        let mut lines = 0u64;
        let entries = &mut self.entries;
        entries.clear();
        std::mem::swap(&mut t.parser.spare, &mut self.spare);
        while pos < buf.len() {
            let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
                break;
            };
            let line = &buf[pos..pos + nl];
            let start = base + pos as u64;
            let end = start + nl as u64 + 1;
            lines += 1;
            if let Some(skip_start) = t.skip_from.take() {
                // The end of an over-long line whose first part was kept in `kept`.
                let kept = std::mem::take(&mut t.kept);
                over_long(&mut t.parser, policy, &kept, skip_start, end, now, entries);
            } else if line.len() > max {
                over_long(
                    &mut t.parser,
                    policy,
                    &line[..max],
                    start,
                    end,
                    now,
                    entries,
                );
            } else {
                t.parser.push_line(line, start, end, false, now, entries);
            }
            pos += nl + 1;
        }
        // The incomplete rest: carried to the next read, or the start of an over-long line.
        let rest = &buf[pos..];
        if t.skip_from.is_none() {
            if rest.len() > max {
                t.kept.clear();
                if policy == OverLong::Truncate {
                    t.kept.extend_from_slice(&rest[..max]);
                }
                t.skip_from = Some(base + pos as u64);
            } else {
                t.carry.extend_from_slice(rest);
            }
        }
        t.parser.flush_expired(now, entries);
        std::mem::swap(&mut t.parser.spare, &mut self.spare);
        self.metrics.lines_read.inc_by(lines);
        self.emit(slot);
        true
    }

    /// Nothing new in the file: flush timed-out multiline records, finish rotated or deleted files.
    fn idle(&mut self, slot: u64, now: Instant) -> bool {
        let t = self.files.get_mut(&slot).expect("present");
        self.entries.clear();
        t.parser.flush_expired(now, &mut self.entries);
        let finished =
            (t.deleted || t.rotated()) && now.duration_since(t.last_data) >= DORMANT_AFTER;
        if finished {
            // No more data will come: pending partial lines are shipped as they are.
            t.parser.flush_all(&mut self.entries);
        }
        let had = !self.entries.is_empty();
        if had {
            self.emit(slot);
        }
        let t = self.files.get_mut(&slot).expect("present");
        if finished && t.carry.is_empty() && t.skip_from.is_none() {
            if t.deleted {
                if t.committed >= t.read_offset {
                    tracing::info!(path = %t.path.display(), "deleted file fully shipped; released");
                    let key = (t.dev, t.ino);
                    self.files.remove(&slot);
                    self.by_inode.remove(&key);
                    self.checkpoint_dirty = true;
                }
            } else if t.committed >= t.read_offset {
                // Rotated and fully shipped: close it; a rescan reopens it if it grows.
                t.file = None;
            }
        }
        had
    }

    /// Encodes the parsed entries of `slot` into the batch and records its safe position.
    fn emit(&mut self, slot: u64) {
        let t = self.files.get_mut(&slot).expect("present");
        let generation = t.generation.expect("identified before reading");
        if let Some(cache) = &self.cfg.pod_metadata {
            t.ctx.refresh_metadata(cache, &self.metrics);
        }
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        for e in &self.entries {
            let item =
                self.cfg
                    .encoder
                    .encode(e, &t.ctx, generation, &self.now_str, &mut self.batch.buf);
            self.batch.items.push(item);
        }
        // Keep the entries' buffers for the next lines (not those grown by huge records, and not without bound).
        for e in self.entries.drain(..) {
            if self.spare.len() < SPARE_ENTRIES && e.message.capacity() <= SPARE_MESSAGE_BYTES {
                self.spare.push(e);
            }
        }
        let c = t.parser.counts;
        self.metrics.add_parse_counts(c);
        t.parser.counts = Default::default();
        let safe = t.parser.safe_offset(t.consumed());
        match self.batch.positions.last_mut() {
            Some((s, off)) if *s == slot => *off = safe,
            _ => self.batch.positions.push((slot, safe)),
        }
    }

    fn batch_ready(&self) -> bool {
        if self.batch.items.is_empty() && self.batch.positions.is_empty() {
            return false;
        }
        self.batch.buf.len() >= self.cfg.batch_bytes
            || self
                .batch_started
                .is_some_and(|s| s.elapsed() >= self.cfg.batch_timeout)
    }

    /// Sends the open batch, waiting while the sink is busy (backpressure: no more reading meanwhile, but
    /// acknowledgements, checkpoints and metrics go on). False if the sink is gone or `stop` fired.
    fn send(
        &mut self,
        tx: &tokio::sync::mpsc::Sender<Batch>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let mut batch = std::mem::take(&mut self.batch);
        self.batch_started = None;
        batch.seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight.insert(batch.seq, batch.positions.clone());
        self.metrics.records_read.inc_by(batch.items.len() as u64);
        self.batch.buf = self
            .cfg
            .buffers
            .take(self.cfg.batch_bytes.min(16 << 20) + CHUNK);
        let mut batch = Some(batch);
        loop {
            match tx.try_send(batch.take().expect("kept")) {
                Ok(()) => return true,
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return false,
                Err(tokio::sync::mpsc::error::TrySendError::Full(b)) => {
                    batch = Some(b);
                    if *stop.borrow() {
                        // Shutting down while the sink is stuck: these records stay unacknowledged (re-read after restart).
                        return false;
                    }
                    let got = self
                        .acks
                        .as_ref()
                        .map(|a| a.recv_timeout(Duration::from_millis(1)));
                    if let Some(Ok(seq)) = got {
                        self.ack(seq);
                    }
                    self.housekeeping();
                }
            }
        }
    }
}

fn over_long(
    parser: &mut FileParser,
    policy: OverLong,
    kept: &[u8],
    start: u64,
    end: u64,
    now: Instant,
    entries: &mut Vec<Entry>,
) {
    match policy {
        OverLong::Truncate => parser.push_line(kept, start, end, true, now, entries),
        OverLong::Drop => parser.dropped_line(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::DiscoveryConfig;
    use crate::enrich::{IndexPattern, RecordConfig};
    use std::io::Write;

    struct Running {
        rx: tokio::sync::mpsc::Receiver<Batch>,
        ack: mpsc::Sender<u64>,
        stop: tokio::sync::watch::Sender<bool>,
        handle: Option<std::thread::JoinHandle<Result<(), TailError>>>,
        _wake: mpsc::Sender<watcher::Wake>,
    }

    fn start(root: &std::path::Path, data: &std::path::Path) -> Running {
        std::fs::create_dir_all(data).unwrap();
        let discovery = Discovery::new(DiscoveryConfig {
            roots: vec![root.to_path_buf()],
            rescan_interval_ms: 50,
            ..Default::default()
        })
        .unwrap();
        let cfg = ReaderConfig {
            discovery,
            max_line_bytes: 1 << 16,
            over_long: OverLong::Truncate,
            multiline: Vec::new(),
            encoder: Encoder::new(IndexPattern::parse("i").unwrap(), RecordConfig::default()),
            batch_bytes: 1 << 20,
            batch_timeout: Duration::from_millis(10),
            poll_interval: Duration::from_millis(10),
            rescan_interval: Duration::from_millis(50),
            store: Store::new(data),
            checkpoint_interval: Duration::from_millis(10),
            buffers: Default::default(),
            pod_metadata: None,
        };
        let reader = Reader::new(cfg, Arc::new(Metrics::default())).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (ack, ack_rx) = mpsc::channel();
        let (wake, wake_rx) = mpsc::channel();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let handle = std::thread::spawn(move || reader.run(tx, ack_rx, wake_rx, stop_rx));
        Running {
            rx,
            ack,
            stop,
            handle: Some(handle),
            _wake: wake,
        }
    }

    impl Running {
        /// Collects (id, message) of `n` records, acknowledging every batch.
        fn take(&mut self, n: usize) -> Vec<(String, String)> {
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while out.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {n} records",
                    out.len()
                );
                match self.rx.try_recv() {
                    Ok(b) => {
                        for it in &b.items {
                            let a: serde_json::Value =
                                serde_json::from_slice(&b.buf[it.action..it.doc]).unwrap();
                            let d: serde_json::Value =
                                serde_json::from_slice(&b.buf[it.doc..it.end]).unwrap();
                            out.push((
                                a["create"]["_id"].as_str().unwrap().to_string(),
                                d["message"].as_str().unwrap().to_string(),
                            ));
                        }
                        self.ack.send(b.seq).unwrap();
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            out
        }
        fn stop(mut self) {
            self.stop.send(true).unwrap();
            while let Some(b) = self.rx.blocking_recv() {
                let _ = self.ack.send(b.seq);
            }
            self.handle.take().unwrap().join().unwrap().unwrap();
        }
    }

    fn line(n: u64, msg: &str) -> String {
        format!("2026-11-22T10:00:00.{n:09}Z stdout F {msg}\n")
    }

    fn append(p: &std::path::Path, s: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    #[test]
    fn truncation_restarts_at_zero_with_a_new_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        append(&log, &(line(1, "a1") + &line(2, "a2") + &line(3, "a3")));
        let mut r = start(&root, &tmp.path().join("data"));
        let first = r.take(3);
        assert_eq!(
            first.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
            vec!["a1", "a2", "a3"]
        );
        // Copytruncate that shrinks the file.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, &line(4, "b1"));
        let second = r.take(1);
        assert_eq!(second[0].1, "b1");
        assert!(
            second[0].0.ends_with("-0"),
            "read from offset 0: {}",
            second[0].0
        );
        assert_ne!(
            second[0].0.split('-').next(),
            first[0].0.split('-').next(),
            "new generation"
        );
        // Truncate and refill past the read position before the reader looks: caught by the fingerprint
        // of the bytes before the read position.
        std::thread::sleep(Duration::from_millis(100));
        let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(0).unwrap();
        append(&log, &(line(5, "c1-longer-than-before") + &line(6, "c2")));
        let third = r.take(2);
        assert_eq!(
            third.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>(),
            vec!["c1-longer-than-before", "c2"]
        );
        assert!(third[0].0.ends_with("-0"));
        r.stop();
        // The checkpoint is at the end of the current content.
        let cp = Store::new(&tmp.path().join("data")).load().unwrap();
        assert_eq!(
            cp.values().next().unwrap().offset,
            std::fs::metadata(&log).unwrap().len()
        );
    }

    /// Regression: with fixed-width padded lines the bytes before the read position are the same in the old
    /// and the new content, so only the first line shows that copytruncate refilled the file.
    #[test]
    fn copytruncate_refill_with_identical_line_tails_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        let pad = "p".repeat(100);
        let gen = |from: u64| {
            (from..from + 3)
                .map(|n| line(n, &format!("seq {n:06} {pad}")))
                .collect::<String>()
        };
        append(&log, &gen(0));
        let mut r = start(&root, &tmp.path().join("data"));
        let first = r.take(3);
        // Truncate and refill in one step (same inode), so the reader never sees the short file.
        std::fs::write(&log, gen(10) + &gen(13)).unwrap();
        let next = r.take(6);
        let msgs: Vec<&str> = next.iter().map(|(_, m)| &m[..10]).collect();
        assert_eq!(
            msgs,
            vec![
                "seq 000010",
                "seq 000011",
                "seq 000012",
                "seq 000013",
                "seq 000014",
                "seq 000015"
            ]
        );
        assert_ne!(next[0].0.split('-').next(), first[0].0.split('-').next());
        r.stop();
    }

    #[test]
    fn a_renamed_file_keeps_its_ids_and_is_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        append(&log, &line(1, "a1"));
        let mut r = start(&root, &tmp.path().join("data"));
        let first = r.take(1);
        // Kubelet rotation: rename, the runtime's last write lands in the renamed file, a new 0.log starts.
        let rotated = dir.join("0.log.20261122-100000");
        std::fs::rename(&log, &rotated).unwrap();
        append(&rotated, &line(2, "a2"));
        append(&log, &line(3, "b1"));
        let mut rest = r.take(2);
        rest.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(rest[0].1, "a2");
        assert_eq!(
            rest[0].0.split('-').next(),
            first[0].0.split('-').next(),
            "same generation after rename"
        );
        assert_eq!(rest[1].1, "b1");
        assert!(rest[1].0.ends_with("-0"));
        r.stop();
    }
}
