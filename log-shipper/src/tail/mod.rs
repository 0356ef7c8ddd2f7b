//! Tailing: the reader loop that follows every discovered file (plain or gzip-compressed), reads the files of each
//! container in order, parses new lines into batches, advances checkpoints only when the sink has acknowledged
//! everything before them, and reports log data deleted before it could be read.

pub mod checkpoint;
pub mod fingerprint;
pub mod gz;
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
    /// Deleted files not yet read to the end are held open up to this many bytes on disk together; past it the
    /// oldest is let go and its unread bytes are counted as lost.
    pub deleted_files_max_bytes: u64,
}

/// Read at most this much from one file per pass, so one busy file cannot starve the others.
const CHUNK: usize = 256 * 1024;
/// Entries kept for reuse at most (about one read chunk of short lines)...
const SPARE_ENTRIES: usize = 4096;
/// ...and only those whose message buffer is at most this large.
const SPARE_MESSAGE_BYTES: usize = 4096;
/// A rotated file read to its end and unchanged for this long is closed (and reopened if it grows).
const DORMANT_AFTER: Duration = Duration::from_secs(3);
/// Line length assumed for a lost-lines estimate when nothing is known of the file.
const DEFAULT_LINE_BYTES: u64 = 200;

/// A `.gz` holding a tracked plain file's content: its path, (dev, inode), and (size, mtime).
type GzCopy = (PathBuf, (u64, u64), (u64, i64));

/// Where a file stands among the files of its container: restart count, then rotated files by their stamp, then
/// the live file.
type OrderKey = (u32, bool, String);

struct Tracked {
    slot: u64,
    path: PathBuf,
    ctx: FileContext,
    /// The plain file's handle (for a compressed slot: its original, while still being read through it).
    file: Option<File>,
    dev: u64,
    ino: u64,
    generation: Option<u64>,
    /// The identity is a gzip file: `path`, `dev` and `ino` are the `.gz`'s and offsets are in its decompressed stream.
    compressed: bool,
    /// A compressed file's handle, held from when it is found until it is read to its end...
    gz_file: Option<File>,
    /// ...and its decompressing reader once reading began (a compressed file read without its original).
    gz: Option<gz::GzReader>,
    /// A `.gz` holding this (still existing, plain) file's content: its path, (dev, inode), and (size, mtime).
    gz_copy: Option<GzCopy>,
    /// (size, mtime) of the `.gz` of a compressed slot (a changed one means the inode was reused).
    gz_stat: (u64, i64),
    /// A compressed file with nothing more to read.
    done: bool,
    /// Last known size (of the decompressed stream when compressed).
    size: u64,
    /// Bytes on disk this file holds (the `.gz`'s size when read through gzip).
    disk: u64,
    /// Bytes from this offset on were already counted as lost.
    lost_from: Option<u64>,
    /// Lines and bytes split so far (for the average line length of lost-lines estimates).
    lines_seen: u64,
    bytes_seen: u64,
    order: OrderKey,
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
    fn line_bytes(&self) -> u64 {
        self.bytes_seen
            .checked_div(self.lines_seen)
            .unwrap_or(DEFAULT_LINE_BYTES)
            .max(1)
    }
    /// Whether the file is held open (by a plain handle or a gzip reader).
    fn held(&self) -> bool {
        self.file.is_some() || self.gz.is_some() || self.gz_file.is_some()
    }
    /// Whether the inode the slot is known by is held open (so its number cannot have been reused). A compressed
    /// slot still read through its original's handle does not hold the `.gz`.
    fn holds_identity(&self) -> bool {
        if self.compressed {
            self.gz.is_some() || self.gz_file.is_some()
        } else {
            self.file.is_some()
        }
    }
}

/// The order of a file among its container's files, and the container it belongs to.
fn order_of(meta: &FileMeta, path: &std::path::Path) -> (String, OrderKey) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = name
        .strip_prefix(meta.base.as_str())
        .unwrap_or(&name)
        .trim_start_matches('.');
    let stamp = stamp.strip_suffix(".gz").unwrap_or(stamp);
    let group = match meta.restart_count {
        Some(_) => meta.dir.clone(),
        // /var/log/containers links: one file per container in one directory.
        None => format!("{}/{}", meta.dir, meta.base),
    };
    (
        group,
        (
            meta.restart_count.unwrap_or(0),
            stamp.is_empty(),
            stamp.to_string(),
        ),
    )
}

/// The reader: owns the files, the parsers, the batch being built and the checkpoints.
pub struct Reader {
    cfg: ReaderConfig,
    metrics: Arc<Metrics>,
    files: BTreeMap<u64, Tracked>,
    by_inode: HashMap<(u64, u64), u64>,
    saved: HashMap<(u64, u64), Position>,
    /// Saved positions no file matched are reported lost once, after the first scan that found a log root.
    saved_checked: bool,
    /// The files of each container in reading order (rebuilt when files come, go or are renamed).
    groups: Vec<Vec<u64>>,
    groups_dirty: bool,
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
    poll_cursor: usize,
    last_scan: Instant,
    last_checkpoint: Instant,
    last_lag: Instant,
}

impl Reader {
    /// Loads the checkpoints (an unreadable checkpoint file is an error: starting over would duplicate
    /// into non-Elasticsearch sinks and hide the problem).
    pub fn new(cfg: ReaderConfig, metrics: Arc<Metrics>) -> Result<Self, TailError> {
        let saved = cfg.store.load()?;
        let last_scan = Instant::now() - cfg.rescan_interval;
        Ok(Reader {
            cfg,
            metrics,
            files: BTreeMap::new(),
            by_inode: HashMap::new(),
            saved,
            saved_checked: false,
            groups: Vec::new(),
            groups_dirty: true,
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
            last_scan,
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
        self.metrics.checkpoint_written(SystemTime::now());
        self.acks = Some(acks);
        let mut sink_gone = false;
        loop {
            if *stop.borrow() {
                break;
            }
            self.drain_acks();
            let mut rescan = self.last_scan.elapsed() >= self.cfg.rescan_interval;
            while let Ok(w) = wake.try_recv() {
                rescan |= w == watcher::Wake::Rescan;
            }
            if rescan {
                self.scan();
            }
            let progressed = self.poll_all();
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
                            self.last_scan = Instant::now() - self.cfg.rescan_interval;
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
                size: t.lost_from.unwrap_or(t.size.max(t.read_offset)),
                compressed: t.compressed,
                line_bytes: t.line_bytes(),
            });
        }
        // Saved positions not matched yet (before the first scan that found a root) are kept.
        positions.extend(self.saved.values().cloned());
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
        let mut held = 0u64;
        for t in self.files.values() {
            let known = t.compressed.then_some(t.size.max(t.committed));
            lags.push((t.path.to_string_lossy().into_owned(), t.committed, known));
            if t.deleted && t.held() {
                held += t.disk;
            }
        }
        // The metric stats each file when scraped, so the lag is current even while the reader waits on the sink.
        self.metrics.set_positions(lags);
        self.metrics
            .open_files
            .set((self.files.values().filter(|t| t.held()).count() as u64) as i64);
        self.metrics
            .tracked_files
            .set((self.files.len() as u64) as i64);
        self.metrics.deleted_held_bytes.set(held as i64);
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

    /// Discovers new, renamed, compressed and deleted files; reports saved positions whose file is gone; lets go
    /// of the oldest deleted files past the held-bytes cap.
    fn scan(&mut self) {
        self.last_scan = Instant::now();
        let found = self.cfg.discovery.scan();
        // Slots seen under their own identity, and slots whose `.gz` copy was seen.
        let mut seen: HashSet<u64> = HashSet::new();
        let mut seen_gz: HashSet<u64> = HashSet::new();
        for mut f in found {
            let md = match std::fs::metadata(&f.path) {
                Ok(md) => md,
                Err(_) if !gz::is_gz(&f.path) => {
                    // Compressed between the listing and now: its `.gz` stands in its place.
                    let gz_path = PathBuf::from(format!("{}.gz", f.path.display()));
                    match std::fs::metadata(&gz_path) {
                        Ok(md) => {
                            f.path = gz_path;
                            md
                        }
                        Err(_) => continue,
                    }
                }
                Err(_) => continue,
            };
            if !md.is_file() {
                continue;
            }
            let key = (md.dev(), md.ino());
            let is_gz = gz::is_gz(&f.path);
            if let Some(&slot) = self.by_inode.get(&key) {
                if seen.contains(&slot) {
                    continue;
                }
                let t = self.files.get_mut(&slot).expect("indexed");
                if t.gz_copy.as_ref().is_some_and(|(_, k, _)| *k == key) {
                    let stat = (md.len(), md.mtime());
                    if t.gz_copy.as_ref().is_some_and(|(_, _, s)| *s == stat) {
                        seen_gz.insert(slot);
                        continue;
                    }
                    // The copy's inode now holds something else: forget the link and look at it as a new file.
                    t.gz_copy = None;
                    self.by_inode.remove(&key);
                } else {
                    // A closed (dormant) file's inode may have been freed and reused by a new file: same inode,
                    // different content. Open files cannot be reused (we hold them), so only closed ones are checked;
                    // a `.gz` is written once, so its size and mtime tell.
                    let reused = !t.holds_identity()
                        && if t.compressed {
                            t.gz_stat != (md.len(), md.mtime())
                        } else {
                            let g = File::open(&f.path)
                                .ok()
                                .and_then(|file| fingerprint::read_head(&file).ok().flatten())
                                .map(|h| fingerprint::generation(&f.meta.dir, &f.meta.base, &h));
                            g != t.generation
                        };
                    if !reused {
                        seen.insert(slot);
                        if t.generation.is_none() {
                            // Identify it now, even if reading is held up (backpressure, older files first): a
                            // `.gz` of it must be recognised, and a checkpoint must name it.
                            let head = t.file.as_ref().map(fingerprint::read_head);
                            if let Some(Ok(Some(h))) = head {
                                let g =
                                    fingerprint::generation(&t.ctx.meta.dir, &t.ctx.meta.base, &h);
                                self.identified(slot, g);
                            }
                        }
                        let t = self.files.get_mut(&slot).expect("indexed");
                        if t.path != f.path {
                            tracing::debug!(from = %t.path.display(), to = %f.path.display(), "file renamed");
                            t.path = f.path.clone();
                            self.groups_dirty = true;
                        }
                        t.deleted = false;
                        if !t.compressed {
                            t.size = md.len();
                            t.disk = md.len();
                        }
                        if !t.held() && !t.compressed && md.len() != t.read_offset {
                            match File::open(&f.path) {
                                Ok(file) => t.file = Some(file),
                                Err(e) => {
                                    tracing::warn!(path = %f.path.display(), error = %e, "reopening failed")
                                }
                            }
                        }
                        continue;
                    }
                    // The old slot keeps what it still holds (a deleted file read through another handle) and
                    // is forgotten like any deleted file; only its inode number goes to the new file.
                    tracing::debug!(path = %f.path.display(), "inode number reused by a new file");
                    self.by_inode.remove(&key);
                }
            }
            // A new file: identify it by its head (of the decompressed stream for a `.gz`).
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "cannot open log file");
                    continue;
                }
            };
            let head = if is_gz {
                gz::read_head(&f.path)
            } else {
                fingerprint::read_head(&file)
            };
            let generation = match head {
                Ok(h) => h.map(|h| fingerprint::generation(&f.meta.dir, &f.meta.base, &h)),
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "reading the file's head failed");
                    None
                }
            };
            // A `.gz` is complete when it appears: one that cannot be decompressed never will be.
            let broken_gz = is_gz && generation.is_none();
            if is_gz {
                // The compressed copy of a file being tracked: the slot goes on (through its open handle if any)
                // and takes the `.gz` as its identity once the original is gone.
                let original = generation.and_then(|g| {
                    self.files
                        .iter()
                        .find(|(_, t)| {
                            t.generation == Some(g) && !t.compressed && t.gz_copy.is_none()
                        })
                        .map(|(s, _)| *s)
                });
                if let Some(slot) = original {
                    let t = self.files.get_mut(&slot).expect("found");
                    tracing::debug!(path = %t.path.display(), gz = %f.path.display(), "file compressed");
                    t.gz_copy = Some((f.path.clone(), key, (md.len(), md.mtime())));
                    self.by_inode.insert(key, slot);
                    seen_gz.insert(slot);
                    continue;
                }
            }
            let slot = self.next_slot;
            self.next_slot += 1;
            let pc = self.parser_config(&f.meta);
            let path_str = f.path.to_string_lossy().into_owned();
            let (_, order) = order_of(&f.meta, &f.path);
            let size = if is_gz {
                gz::trailer_size(&file).unwrap_or(0)
            } else {
                md.len()
            };
            let t = Tracked {
                slot,
                path: f.path.clone(),
                ctx: FileContext::new(f.meta, &path_str),
                gz_file: is_gz.then(|| file.try_clone().ok()).flatten(),
                file: (!is_gz).then_some(file),
                dev: key.0,
                ino: key.1,
                generation: None,
                compressed: is_gz,
                gz: None,
                gz_copy: None,
                gz_stat: (md.len(), md.mtime()),
                done: false,
                size,
                disk: md.len(),
                lost_from: None,
                lines_seen: 0,
                bytes_seen: 0,
                order,
                read_offset: 0,
                carry: Vec::new(),
                skip_from: None,
                kept: Vec::new(),
                near: 0,
                parser: FileParser::new(pc),
                committed: 0,
                deleted: false,
                last_data: Instant::now(),
            };
            tracing::info!(path = %f.path.display(), "tailing");
            seen.insert(slot);
            self.by_inode.insert(key, slot);
            self.files.insert(slot, t);
            self.groups_dirty = true;
            if let Some(g) = generation {
                self.identified(slot, g);
            } else if broken_gz {
                self.unreadable_gz(slot);
            }
        }
        let mut gone = Vec::new();
        for (slot, t) in self.files.iter_mut() {
            if seen.contains(slot) {
                continue;
            }
            if seen_gz.contains(slot) {
                // The original is gone; its `.gz` carries the identity from now on (same content, same offsets).
                let (path, key, stat) = t.gz_copy.take().expect("seen through its copy");
                tracing::debug!(path = %path.display(), "original of a compressed file removed");
                if self.by_inode.get(&(t.dev, t.ino)) == Some(slot) {
                    self.by_inode.remove(&(t.dev, t.ino));
                }
                (t.dev, t.ino) = key;
                t.path = path;
                t.gz_stat = stat;
                t.compressed = true;
                t.deleted = false;
                // Finished through the original handle: nothing left to decompress.
                t.done = t.file.is_none();
                self.groups_dirty = true;
                self.checkpoint_dirty = true;
                continue;
            }
            t.deleted = true;
            if !t.held() && (t.committed >= t.read_offset || t.generation.is_none()) {
                // Closed, fully shipped and now deleted: forget it.
                gone.push(*slot);
            }
        }
        for slot in gone {
            self.forget(slot);
            self.checkpoint_dirty = true;
            self.groups_dirty = true;
        }
        if !self.saved_checked && !self.cfg.discovery.watch_roots().is_empty() {
            self.saved_checked = true;
            self.report_lost_saved();
        }
        self.enforce_deleted_cap();
    }

    /// Drops a slot and the inode numbers that still point to it (a number reused by another file stays with it).
    fn forget(&mut self, slot: u64) {
        let Some(t) = self.files.remove(&slot) else {
            return;
        };
        let mut keys = vec![(t.dev, t.ino)];
        keys.extend(t.gz_copy.map(|(_, k, _)| k));
        for k in keys {
            if self.by_inode.get(&k) == Some(&slot) {
                self.by_inode.remove(&k);
            }
        }
        self.groups_dirty = true;
    }

    /// A file's generation is known: resume from its saved position (found by inode, else by generation: a file
    /// compressed or renamed while the shipper was down has a new inode but the same first line).
    fn identified(&mut self, slot: u64, g: u64) {
        let t = self.files.get_mut(&slot).expect("present");
        t.generation = Some(g);
        let key = (t.dev, t.ino);
        let by_inode = self.saved.get(&key).is_some_and(|p| p.generation == g);
        let saved_key = if by_inode {
            Some(key)
        } else {
            self.saved
                .iter()
                .find(|(_, p)| p.generation == g)
                .map(|(k, _)| *k)
        };
        let Some(p) = saved_key.and_then(|k| self.saved.remove(&k)) else {
            return;
        };
        if t.compressed || p.offset <= t.size {
            t.read_offset = p.offset;
            t.committed = p.offset;
            // A compressed file read to its end before: nothing to decompress (and nothing to hold).
            t.done = t.compressed && t.size > 0 && p.offset >= t.size;
            if t.done {
                t.gz_file = None;
            }
            if let Some(file) = &t.file {
                t.near = fingerprint::near_hash(file, p.offset).unwrap_or(0);
            }
            tracing::info!(path = %t.path.display(), offset = p.offset, compressed = t.compressed, "resuming from checkpoint");
        } else {
            tracing::warn!(path = %t.path.display(), offset = p.offset, size = t.size, "checkpoint beyond the end of the file; reading from offset 0");
        }
    }

    /// Saved positions whose file no longer exists (deleted while the shipper was down): their unread bytes are lost.
    fn report_lost_saved(&mut self) {
        let lost: Vec<Position> = self.saved.drain().map(|(_, p)| p).collect();
        // The same content under another inode (a copytruncate copy of a file that was then truncated) is not lost.
        let tracked: HashSet<u64> = self.files.values().filter_map(|t| t.generation).collect();
        for p in lost {
            let bytes = p.size.saturating_sub(p.offset);
            if bytes == 0 || tracked.contains(&p.generation) {
                continue;
            }
            let path = PathBuf::from(&p.path);
            let Some(meta) = self.cfg.discovery.meta_of(&path) else {
                tracing::warn!(path = %p.path, bytes, "a checkpointed file outside the log roots is gone; its unread bytes are lost");
                continue;
            };
            let lines = bytes.div_ceil(p.line_bytes.max(1));
            let ctx = FileContext::new(meta, &p.path);
            self.report_loss(&ctx, p.generation, p.offset, bytes, lines, &p.path, true);
        }
        self.checkpoint_dirty = true;
    }

    /// Logs, counts and records (a gap record in the output) bytes of a file that can no longer be shipped.
    #[allow(clippy::too_many_arguments)]
    fn report_loss(
        &mut self,
        ctx: &FileContext,
        generation: u64,
        offset: u64,
        bytes: u64,
        lines: u64,
        file: &str,
        estimated: bool,
    ) {
        let m = &ctx.meta;
        tracing::warn!(
            namespace = %m.namespace, pod = %m.pod, container = %m.container, file, offset, bytes, lines,
            lines_estimated = estimated,
            "log data deleted before it was shipped: lost"
        );
        self.metrics
            .lost(&m.namespace, &m.pod, &m.container, bytes, lines);
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        self.now_str = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let item = self.cfg.encoder.encode_gap(
            ctx,
            generation,
            offset,
            bytes,
            lines,
            file,
            &self.now_str,
            &mut self.batch.buf,
        );
        self.batch.items.push(item);
    }

    /// A `.gz` that cannot be decompressed (or holds no full line): its content is unknown, so the loss is its
    /// trailer's size and the lines are estimated. It stays tracked (by inode) so this is reported once.
    fn unreadable_gz(&mut self, slot: u64) {
        let t = self.files.get_mut(&slot).expect("present");
        let path = t.path.to_string_lossy().into_owned();
        let g = fingerprint::hash64(0x67, &[path.as_bytes()]);
        t.generation = Some(g);
        t.done = true;
        t.gz_file = None;
        t.lost_from = Some(0);
        let bytes = t.size;
        let ctx = t.ctx.clone();
        if bytes > 0 {
            self.report_loss(
                &ctx,
                g,
                0,
                bytes,
                bytes.div_ceil(DEFAULT_LINE_BYTES),
                &path,
                true,
            );
        }
    }

    /// Past the cap on bytes held in deleted files, lets go of the oldest (their unread rest is lost and reported).
    fn enforce_deleted_cap(&mut self) {
        loop {
            let mut held = 0u64;
            let mut oldest = None;
            for (slot, t) in &self.files {
                if t.deleted && t.held() {
                    held += t.disk;
                    oldest.get_or_insert(*slot);
                }
            }
            if held <= self.cfg.deleted_files_max_bytes {
                return;
            }
            let Some(slot) = oldest else { return };
            self.let_go(slot);
        }
    }

    /// Closes a deleted file before its end: pending records are shipped as they are, the rest is lost.
    fn let_go(&mut self, slot: u64) {
        let max = self.cfg.deleted_files_max_bytes;
        let t = self.files.get_mut(&slot).expect("present");
        if t.generation.is_none() {
            // Never identified (no full first line was ever seen): the gap record's id comes from the path.
            t.generation = Some(fingerprint::hash64(
                0x67,
                &[t.path.to_string_lossy().as_bytes()],
            ));
        }
        let from = t.consumed();
        if t.file.is_none() && t.gz.is_none() {
            // A compressed file held but not read yet: decompress up to where reading stopped.
            if let Some(f) = t.gz_file.take() {
                let mut r = gz::GzReader::from_file(f);
                while r.pos() < t.read_offset && r.skip_towards(t.read_offset).unwrap_or(false) {}
                t.gz = Some(r);
            }
        }
        // Count the lines that will not be read from the file still held (a last line without `\n` counts too).
        let mut lines = 0u64;
        let mut end = from;
        let mut last = b'\n';
        let buf = &mut self.read_buf;
        buf.resize(CHUNK, 0);
        if let Some(file) = &t.file {
            loop {
                match file.read_at(buf, end) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                        last = buf[n - 1];
                        end += n as u64;
                    }
                }
            }
        } else if let Some(r) = &mut t.gz {
            // The gzip reader is at `read_offset`; the carried (or skipped) bytes before it count too.
            end = t.read_offset;
            if end > from {
                last = 0;
            }
            loop {
                match r.read(buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                        last = buf[n - 1];
                        end += n as u64;
                    }
                }
            }
        }
        if last != b'\n' && end > from {
            lines += 1;
        }
        let bytes = end - from;
        tracing::warn!(path = %t.path.display(), max_bytes = max, "deleted files held past deleted_files_max_bytes: letting go of the oldest");
        t.file = None;
        t.gz = None;
        t.gz_file = None;
        t.done = true;
        t.carry.clear();
        t.skip_from = None;
        t.kept.clear();
        t.read_offset = end;
        t.size = end;
        t.lost_from = Some(from);
        self.entries.clear();
        t.parser.flush_all(&mut self.entries);
        self.emit(slot);
        let t = self.files.get(&slot).expect("present");
        let (ctx, generation, path) = (
            t.ctx.clone(),
            t.generation.unwrap_or(0),
            t.path.to_string_lossy().into_owned(),
        );
        if bytes > 0 {
            self.report_loss(&ctx, generation, from, bytes, lines, &path, false);
        }
        self.checkpoint_dirty = true;
    }

    /// The files of each container in reading order.
    fn rebuild_groups(&mut self) {
        let mut by_group: BTreeMap<String, Vec<(OrderKey, u64)>> = BTreeMap::new();
        for (slot, t) in &mut self.files {
            let (group, order) = order_of(&t.ctx.meta, &t.path);
            t.order = order.clone();
            by_group.entry(group).or_default().push((order, *slot));
        }
        self.groups = by_group
            .into_values()
            .map(|mut v| {
                v.sort();
                v.into_iter().map(|(_, s)| s).collect()
            })
            .collect();
        self.groups_dirty = false;
    }

    /// One pass over every container: its files are read oldest first (older rotations, newer rotations, the live
    /// file), a newer one only while every older one has nothing to read. Returns whether any data was read.
    fn poll_all(&mut self) -> bool {
        if self.groups_dirty {
            self.rebuild_groups();
        }
        let n = self.groups.len();
        if n == 0 {
            return false;
        }
        let mut progressed = false;
        let now = Instant::now();
        self.now_str = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        // Start after the container polled last, so a full batch never starves the containers after it.
        let start = (self.poll_cursor + 1) % n;
        for i in 0..n {
            let g = (start + i) % n;
            self.poll_cursor = g;
            for j in 0..self.groups.get(g).map_or(0, Vec::len) {
                let slot = self.groups[g][j];
                if self.poll_file(slot, now) {
                    progressed = true;
                    break;
                }
            }
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
        t.lost_from = None;
        t.gz_copy = None;
        self.by_inode.insert((t.dev, t.ino), new_slot);
        self.files.insert(new_slot, t);
        self.groups_dirty = true;
        // A copytruncate copy of the old content may have just appeared: find it before reading the new content, so
        // the copy (an older file of the container) is read first.
        self.last_scan = Instant::now() - self.cfg.rescan_interval;
    }

    fn poll_file(&mut self, slot: u64, now: Instant) -> bool {
        let Some(t) = self.files.get_mut(&slot) else {
            return false;
        };
        if t.file.is_none() {
            let more = t.compressed && !t.done;
            return more && self.poll_gz(slot, now);
        }
        let file = t.file.as_ref().expect("checked");
        let size = match file.metadata() {
            Ok(m) => m.len(),
            Err(_) => return false,
        };
        t.size = size;
        t.disk = size;
        // Identity of a file whose first line was not complete when it was found (or after truncation): its head.
        if t.generation.is_none() {
            match fingerprint::read_head(file) {
                Ok(Some(head)) => {
                    let g = fingerprint::generation(&t.ctx.meta.dir, &t.ctx.meta.base, &head);
                    self.identified(slot, g);
                }
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "reading file head failed");
                    return false;
                }
            }
        }
        let t = self.files.get_mut(&slot).expect("present");
        let file = t.file.as_ref().expect("checked");
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
        self.split(slot, base, n, now);
        true
    }

    /// Reads the next chunk of a compressed file's decompressed stream (after decompressing up to a resumed offset).
    fn poll_gz(&mut self, slot: u64, now: Instant) -> bool {
        let t = self.files.get_mut(&slot).expect("present");
        if t.generation.is_none() {
            return false;
        }
        if t.gz.is_none() {
            let opened = match t.gz_file.take() {
                Some(f) => Ok(gz::GzReader::from_file(f)),
                None => gz::GzReader::open(&t.path),
            };
            match opened {
                Ok(r) => t.gz = Some(r),
                Err(e) => {
                    tracing::warn!(path = %t.path.display(), error = %e, "cannot open compressed file");
                    return false;
                }
            }
        }
        let r = t.gz.as_mut().expect("opened");
        let result = if r.pos() < t.read_offset {
            match r.skip_towards(t.read_offset) {
                Ok(true) => return true,
                Ok(false) => {
                    tracing::warn!(path = %t.path.display(), offset = t.read_offset, size = r.pos(), "compressed file shorter than its checkpoint; nothing more to read");
                    Ok(0)
                }
                Err(e) => Err(e),
            }
        } else {
            let buf = &mut self.read_buf;
            buf.clear();
            if t.skip_from.is_none() {
                buf.extend_from_slice(&t.carry);
            }
            let carry_len = buf.len();
            buf.resize(carry_len + CHUNK, 0);
            let got = r.read(&mut buf[carry_len..]);
            buf.truncate(carry_len + *got.as_ref().unwrap_or(&0));
            got
        };
        match result {
            Ok(0) => {
                // The end of a compressed file: nothing will ever follow, so a last line without `\n` and pending
                // partial lines are shipped as they are.
                t.gz = None;
                t.done = true;
                t.size = t.read_offset;
                self.entries.clear();
                let end = t.read_offset;
                if let Some(skip_start) = t.skip_from.take() {
                    let kept = std::mem::take(&mut t.kept);
                    over_long(
                        &mut t.parser,
                        self.cfg.over_long,
                        &kept,
                        skip_start,
                        end,
                        now,
                        &mut self.entries,
                    );
                } else if !t.carry.is_empty() {
                    let line = std::mem::take(&mut t.carry);
                    let start = end - line.len() as u64;
                    let max = self.cfg.max_line_bytes;
                    if line.len() > max {
                        over_long(
                            &mut t.parser,
                            self.cfg.over_long,
                            &line[..max],
                            start,
                            end,
                            now,
                            &mut self.entries,
                        );
                    } else {
                        t.parser
                            .push_line(&line, start, end, false, now, &mut self.entries);
                    }
                    self.metrics.lines_read.inc_by(1);
                }
                t.parser.flush_all(&mut self.entries);
                tracing::info!(path = %t.path.display(), bytes = end, "compressed file read to its end");
                self.emit(slot);
                true
            }
            Ok(n) => {
                let base = t.read_offset - (self.read_buf.len() - n) as u64;
                t.read_offset += n as u64;
                self.split(slot, base, n, now);
                true
            }
            Err(e) => {
                // Corrupt or cut: what could not be decompressed is lost.
                tracing::warn!(path = %t.path.display(), error = %e, "decompressing failed");
                let from = t.consumed();
                let bytes = t.size.saturating_sub(from);
                let lines = bytes.div_ceil(t.line_bytes());
                t.gz = None;
                t.done = true;
                t.carry.clear();
                t.skip_from = None;
                t.read_offset = t.size.max(from);
                t.lost_from = Some(from);
                self.entries.clear();
                t.parser.flush_all(&mut self.entries);
                self.emit(slot);
                let t = self.files.get(&slot).expect("present");
                let (ctx, g, path) = (
                    t.ctx.clone(),
                    t.generation.unwrap_or(0),
                    t.path.to_string_lossy().into_owned(),
                );
                if bytes > 0 {
                    self.report_loss(&ctx, g, from, bytes, lines, &path, true);
                }
                true
            }
        }
    }

    /// Splits `self.read_buf` (the carried incomplete line, then `n` new bytes; it starts at file offset `base`)
    /// into lines for the slot's parser and emits the entries.
    fn split(&mut self, slot: u64, base: u64, n: usize, now: Instant) {
        let t = self.files.get_mut(&slot).expect("present");
        let buf = &self.read_buf;
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
        t.lines_seen += lines;
        t.bytes_seen += pos as u64;
        t.parser.flush_expired(now, entries);
        std::mem::swap(&mut t.parser.spare, &mut self.spare);
        self.metrics.lines_read.inc_by(lines);
        self.emit(slot);
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
                    self.forget(slot);
                    self.checkpoint_dirty = true;
                    self.groups_dirty = true;
                }
            } else if t.committed >= t.read_offset {
                // Rotated and fully shipped: close it; a rescan reopens it if it grows (a compressed one never does).
                t.file = None;
                t.done = t.compressed;
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
    /// acknowledgements, checkpoints, metrics and rescans go on: new files are opened, so the kubelet deleting them
    /// later does not lose them). False if the sink is gone or `stop` fired.
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
                    if self.last_scan.elapsed() >= self.cfg.rescan_interval {
                        self.scan();
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
        metrics: Arc<Metrics>,
    }

    fn start(root: &std::path::Path, data: &std::path::Path) -> Running {
        start_with(root, data, 1 << 30)
    }

    fn start_with(root: &std::path::Path, data: &std::path::Path, deleted_max: u64) -> Running {
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
            deleted_files_max_bytes: deleted_max,
        };
        let metrics = Arc::new(Metrics::default());
        let reader = Reader::new(cfg, metrics.clone()).unwrap();
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
            metrics,
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
        /// Collects the documents of `n` records (gap records included), acknowledging every batch.
        fn take_docs(&mut self, n: usize) -> Vec<serde_json::Value> {
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(10);
            while out.len() < n {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {n} records: {out:?}",
                    out.len()
                );
                match self.rx.try_recv() {
                    Ok(b) => {
                        for it in &b.items {
                            let a: serde_json::Value =
                                serde_json::from_slice(&b.buf[it.action..it.doc]).unwrap();
                            let mut d: serde_json::Value =
                                serde_json::from_slice(&b.buf[it.doc..it.end]).unwrap();
                            d["_id"] = a["create"]["_id"].clone();
                            out.push(d);
                        }
                        self.ack.send(b.seq).unwrap();
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            out
        }
        /// Nothing more arrives within `wait`.
        fn quiet(&mut self, wait: Duration) {
            std::thread::sleep(wait);
            while let Ok(b) = self.rx.try_recv() {
                assert!(
                    b.items.is_empty(),
                    "unexpected records: {}",
                    String::from_utf8_lossy(&b.buf)
                );
                self.ack.send(b.seq).unwrap();
            }
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

    fn gzip_file(p: &std::path::Path) -> std::path::PathBuf {
        let data = std::fs::read(p).unwrap();
        let gz = std::path::PathBuf::from(format!("{}.gz", p.display()));
        let tmp = std::path::PathBuf::from(format!("{}.tmp", p.display()));
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&tmp).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        std::fs::rename(&tmp, &gz).unwrap();
        std::fs::remove_file(p).unwrap();
        gz
    }

    fn messages(docs: &[serde_json::Value]) -> Vec<String> {
        docs.iter()
            .map(|d| d["message"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_file_compressed_while_down_resumes_in_the_decompressed_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let data = tmp.path().join("data");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        append(&log, &(line(1, "a1") + &line(2, "a2") + &line(3, "a3")));
        let mut r = start(&root, &data);
        let first = r.take(3);
        r.stop();
        // While the shipper is down: more lines, rotation, a newer file, compression of the rotated one.
        append(&log, &(line(4, "a4") + &line(5, "a5")));
        let rotated = dir.join("0.log.20261122-100000");
        std::fs::rename(&log, &rotated).unwrap();
        append(&log, &line(6, "b1"));
        let gz = gzip_file(&rotated);
        let mut r = start(&root, &data);
        let docs = r.take_docs(3);
        assert_eq!(
            messages(&docs),
            vec!["a4", "a5", "b1"],
            "in order, nothing again"
        );
        let gen = |id: &str| id.split('-').next().unwrap().to_string();
        assert_eq!(
            gen(docs[0]["_id"].as_str().unwrap()),
            gen(&first[0].0),
            "same ids as the plain file"
        );
        assert_eq!(docs[0]["log"]["offset"], line(1, "a1").len() * 3);
        r.quiet(Duration::from_millis(300));
        r.stop();
        // The checkpoint keeps the compressed file, read to its end, by its own inode.
        let cp = Store::new(&data).load().unwrap();
        let p = cp
            .values()
            .find(|p| p.compressed)
            .expect("compressed position");
        assert_eq!(p.offset, p.size);
        assert_eq!(p.path, gz.to_string_lossy());
        // A third start reads nothing again (and does not decompress the finished file).
        let mut r = start(&root, &data);
        r.quiet(Duration::from_millis(400));
        append(&log, &line(7, "b2"));
        assert_eq!(messages(&r.take_docs(1)), vec!["b2"]);
        r.stop();
    }

    #[test]
    fn files_first_seen_compressed_are_read_in_full_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        // Oldest compressed (with a CRI partial line joined inside it and a last line without `\n`), then an older
        // compressed one listed after it by name, then the newest rotated plain file, then the live file.
        let old = dir.join("0.log.20261122-090000");
        append(
            &old,
            &(line(1, "x1")
                + "2026-11-22T10:00:00.000000002Z stdout P x2-part-\n"
                + &line(3, "x2-end")
                + "2026-11-22T10:00:00.000000004Z stdout F x3-no-newline"),
        );
        gzip_file(&old);
        let mid = dir.join("0.log.20261122-091000");
        append(&mid, &(line(5, "y1") + &line(6, "y2")));
        gzip_file(&mid);
        append(&dir.join("0.log.20261122-092000"), &line(7, "z1"));
        append(&dir.join("0.log"), &line(8, "live1"));
        let mut r = start(&root, &tmp.path().join("data"));
        let docs = r.take_docs(7);
        assert_eq!(
            messages(&docs),
            vec![
                "x1",
                "x2-part-x2-end",
                "x3-no-newline",
                "y1",
                "y2",
                "z1",
                "live1"
            ]
        );
        r.quiet(Duration::from_millis(300));
        r.stop();
    }

    #[test]
    fn a_file_deleted_while_down_is_reported_lost_with_a_gap_record() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let data = tmp.path().join("data");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let gone = dir.join("0.log.20261122-090000.gz");
        Store::new(&data)
            .save(&[Position {
                dev: 1,
                ino: 424242,
                generation: 0xabc,
                offset: 100,
                size: 1000,
                path: gone.to_string_lossy().into_owned(),
                compressed: true,
                line_bytes: 50,
            }])
            .unwrap();
        append(&dir.join("0.log"), &line(1, "after"));
        let mut r = start(&root, &data);
        let mut docs = r.take_docs(2);
        docs.sort_by_key(|d| d["stream"] == "gap");
        assert_eq!(docs[0]["message"], "after");
        let gap = &docs[1];
        assert_eq!(gap["stream"], "gap");
        assert_eq!(gap["log_gap"]["bytes"], 900);
        assert_eq!(gap["log_gap"]["lines"], 18);
        assert_eq!(gap["log_gap"]["file"], gone.to_string_lossy().as_ref());
        assert_eq!(gap["kubernetes"]["container_name"], "c");
        assert_eq!(gap["kubernetes"]["pod_name"], "p");
        assert_eq!(gap["_id"], "0000000000000abc-64-gap");
        let text = r.metrics.render();
        assert!(
            text.contains("vigil_log_shipper_lost_bytes_total{namespace=\"ns\",pod=\"p\",container=\"c\"} 900"),
            "{text}"
        );
        assert!(text.contains(
            "vigil_log_shipper_lost_lines_total{namespace=\"ns\",pod=\"p\",container=\"c\"} 18"
        ));
        r.stop();
        // Reported once: the position is gone from the checkpoint.
        let cp = Store::new(&data).load().unwrap();
        assert!(cp.values().all(|p| p.ino != 424242));
    }

    #[test]
    fn deleted_files_past_the_cap_are_let_go_and_the_loss_counted_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        let rotated = dir.join("0.log.20261122-090000");
        let total = 40_000u64;
        let mut text = String::new();
        for n in 0..total {
            text.push_str(&line(
                n,
                &format!("seq {n:06} {}", "x".repeat((n % 50) as usize)),
            ));
        }
        append(&rotated, &text);
        append(&dir.join("0.log"), &line(total, "live"));
        // Cap 0: a deleted file is let go at once. The sink is not read, so the reader blocks after two batches.
        let mut r = start_with(&root, &tmp.path().join("data"), 0);
        std::thread::sleep(Duration::from_millis(300));
        std::fs::remove_file(&rotated).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut got = Vec::new();
        let mut gap = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while gap.is_none() || !got.iter().any(|m: &String| m == "live") {
            assert!(Instant::now() < deadline, "no gap record or no live line");
            for d in r.take_docs(1) {
                if d["stream"] == "gap" {
                    gap = Some(d);
                } else {
                    got.push(d["message"].as_str().unwrap().to_string());
                }
            }
        }
        let gap = gap.unwrap();
        let shipped: HashSet<u64> = got
            .iter()
            .filter_map(|m| m.strip_prefix("seq ")?.get(..6)?.parse().ok())
            .collect();
        let lost: Vec<u64> = (0..total).filter(|n| !shipped.contains(n)).collect();
        assert!(
            !lost.is_empty() && lost.len() < total as usize,
            "{} lost",
            lost.len()
        );
        // The lost lines are exactly the end of the file, and the counters say exactly how much.
        assert_eq!(lost[0] + lost.len() as u64, total);
        let lost_bytes: u64 = lost
            .iter()
            .map(|&n| {
                line(n, &format!("seq {n:06} {}", "x".repeat((n % 50) as usize))).len() as u64
            })
            .sum();
        assert_eq!(gap["log_gap"]["bytes"], lost_bytes);
        assert_eq!(gap["log_gap"]["lines"], lost.len());
        let text = r.metrics.render();
        assert!(text.contains(&format!(
            "vigil_log_shipper_lost_bytes_total{{namespace=\"ns\",pod=\"p\",container=\"c\"}} {lost_bytes}\n"
        )));
        r.stop();
    }

    #[test]
    fn a_file_compressed_and_deleted_while_the_sink_is_blocked_is_read_once_through_its_handle() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let dir = root.join("ns_p_u/c");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        let total = 30_000u64;
        let text: String = (0..total)
            .map(|n| line(n, &format!("seq {n:06}")))
            .collect();
        append(&log, &text);
        // The sink is not read: the reader blocks after two batches, scanning on.
        let mut r = start(&root, &tmp.path().join("data"));
        std::thread::sleep(Duration::from_millis(300));
        let rotated = dir.join("0.log.20261122-100000");
        std::fs::rename(&log, &rotated).unwrap();
        append(&log, &line(total, "live"));
        std::thread::sleep(Duration::from_millis(200));
        let gz = gzip_file(&rotated);
        std::thread::sleep(Duration::from_millis(200));
        std::fs::remove_file(&gz).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let docs = r.take_docs(total as usize + 1);
        let msgs = messages(&docs);
        assert_eq!(msgs.len(), total as usize + 1);
        for (n, m) in msgs.iter().take(total as usize).enumerate() {
            assert_eq!(m, &format!("seq {n:06}"));
        }
        assert_eq!(msgs[total as usize], "live");
        r.quiet(Duration::from_millis(300));
        assert!(!r.metrics.render().contains("lost_bytes_total{"));
        r.stop();
    }
}
