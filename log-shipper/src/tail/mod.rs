//! Tailing: the reader loop that follows every discovered file (plain or gzip-compressed), reads the files of each
//! container in order, parses new lines into batches, advances checkpoints only when the sink has acknowledged
//! everything before them, and reports log data deleted before it could be read.

pub mod checkpoint;
pub mod fingerprint;
pub mod gz;
pub mod watcher;
mod join;
mod loss;
pub mod open;
mod read;
mod scan;
#[cfg(test)]
mod tests;

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
    /// Records that began here are continued in the container's next file: this file is not committed past this
    /// offset until they are shipped.
    lent: Option<u64>,
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
    /// The offset a restart must read from so that no record read so far is lost.
    fn safe(&self) -> u64 {
        self.parser
            .safe_offset(self.consumed())
            .min(self.lent.unwrap_or(u64::MAX))
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
    /// Paths whose open was refused (each logged once).
    refused: HashSet<PathBuf>,
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
    /// The last checkpoint write failed: no more reading until one succeeds (reading on would ship records that a
    /// restart ships again).
    checkpoint_failed: bool,
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
            refused: HashSet::new(),
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
            checkpoint_failed: false,
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
            let progressed = !self.checkpoint_failed && self.poll_all();
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
                if self.checkpoint_failed {
                    tracing::info!("checkpoints written again; reading resumes");
                }
                self.checkpoint_failed = false;
                self.metrics.checkpoint_written(SystemTime::now());
            }
            Err(e) => {
                self.metrics.checkpoint_errors.inc_by(1);
                if !self.checkpoint_failed {
                    tracing::error!(error = %e, "writing checkpoints failed: reading stops until they can be written; retrying");
                }
                self.checkpoint_failed = true;
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

    pub(super) fn batch_ready(&self) -> bool {
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
