//! A sink's bounded delivery queue: encoded payloads in memory, spilled to segment files on disk
//! when memory is full, delivered in order, the oldest dropped (and counted) at the disk cap.
//!
//! Order is kept by one rule: payloads live in three places served in this order, memory, then
//! disk, then `overflow`, and every payload in an earlier place is older than every payload in a
//! later one. A payload goes to memory only while nothing waits on disk or in overflow; to
//! overflow when the disk fails while segments wait (and every later push follows it there until
//! the disk has drained, when overflow becomes memory). A segment file is
//! `<seq:020>.seg`: an 8-byte magic, then records `[seq u64][len u32][points u32][crc32 u32][body]`
//! (little endian). Each segment knows its own delivered offset (`start`); the file `cursor`
//! holds one `<segment> <offset>` line per partly delivered segment.
//! Fully delivered segments are deleted. At shutdown the memory part is written as a segment
//! that sorts before the others (and overflow is appended behind them), so a restart delivers
//! everything in the same order.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;

const MAGIC: &[u8; 8] = b"VIGILSQ1";
const HEADER: u64 = 8;
const REC_HEADER: usize = 20;

/// Errors of the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("spill directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One encoded request body and the number of points in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub body: Bytes,
    pub points: u32,
}

/// A payload taken from the queue for delivery; hand it back to `ack` once done with.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub payload: Payload,
    pos: Pos,
}

#[derive(Debug, Clone, Copy)]
enum Pos {
    Memory,
    Disk { segment: u64, end: u64 },
}

/// Sizes and counters, for self-metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QueueStats {
    pub memory_payloads: u64,
    pub memory_bytes: u64,
    pub disk_payloads: u64,
    pub disk_bytes: u64,
    pub dropped_payloads: u64,
    pub dropped_points: u64,
}

struct Segment {
    id: u64,
    path: PathBuf,
    /// Offset of the first undelivered record.
    start: u64,
    size: u64,
    records: u64,
    points: u64,
}

struct Disk {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    max_bytes: u64,
    segment_bytes: u64,
}

struct Inner {
    mem: VecDeque<Entry>,
    mem_bytes: u64,
    max_mem: u64,
    /// Payloads newer than everything on disk, kept in memory because the disk failed.
    overflow: VecDeque<Entry>,
    overflow_bytes: u64,
    disk: Option<Disk>,
    next_seq: u64,
    dropped_payloads: u64,
    dropped_points: u64,
}

/// The queue. Every method takes `&self`; a mutex guards the state.
pub struct Queue {
    name: String,
    inner: Mutex<Inner>,
    notify: tokio::sync::Notify,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

impl Queue {
    /// Opens the queue of sink `name`; with `dir`, payloads spilled there earlier are loaded.
    pub fn open(
        name: &str,
        max_mem: u64,
        dir: Option<&Path>,
        max_disk: u64,
    ) -> Result<Queue, QueueError> {
        let mut next_seq = 0;
        let disk = match dir {
            None => None,
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                let (disk, last) = Disk::load(name, dir, max_disk)?;
                next_seq = last;
                Some(disk)
            }
        };
        Ok(Queue {
            name: name.to_string(),
            inner: Mutex::new(Inner {
                mem: VecDeque::new(),
                mem_bytes: 0,
                max_mem,
                overflow: VecDeque::new(),
                overflow_bytes: 0,
                disk,
                next_seq,
                dropped_payloads: 0,
                dropped_points: 0,
            }),
            notify: tokio::sync::Notify::new(),
        })
    }

    /// Resolves when something may have been pushed since the last call.
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    /// Appends a payload; never blocks on the network. At a cap the oldest data is dropped and counted.
    pub fn push(&self, payload: Payload) {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let len = payload.body.len() as u64;
        Self::settle(inner);
        let entry = Entry {
            seq,
            payload,
            pos: Pos::Memory,
        };
        if !inner.overflow.is_empty() {
            // Older payloads wait on disk and newer ones already in overflow: join them.
            Self::push_overflow(&self.name, inner, entry);
        } else if let Some(disk) = inner
            .disk
            .as_mut()
            .filter(|d| !d.segments.is_empty() || inner.mem_bytes + len > inner.max_mem)
        {
            match disk.append(&self.name, seq, &entry.payload) {
                Ok((dp, dpts)) => {
                    inner.dropped_payloads += dp;
                    inner.dropped_points += dpts;
                }
                Err(e) if disk.segments.is_empty() => {
                    // Disk trouble, nothing older on disk: keep the payload in memory rather than lose it.
                    tracing::error!(sink = %self.name, error = %e, "cannot spill to disk; keeping the payload in memory");
                    inner.mem_bytes += len;
                    inner.mem.push_back(entry);
                    Self::trim_memory(&self.name, inner, 2);
                }
                Err(e) => {
                    // Older payloads wait on disk: this one must be served after them.
                    tracing::error!(sink = %self.name, error = %e,
                        "cannot spill to disk; keeping the payload in memory behind the spilled ones");
                    Self::push_overflow(&self.name, inner, entry);
                }
            }
        } else {
            inner.mem_bytes += len;
            inner.mem.push_back(entry);
            Self::trim_memory(&self.name, inner, 1);
        }
        drop(g);
        self.notify.notify_one();
    }

    /// Once nothing waits on disk, overflow (newer than memory) joins the memory queue.
    fn settle(inner: &mut Inner) {
        if inner.overflow.is_empty() || inner.disk.as_ref().is_some_and(|d| !d.segments.is_empty())
        {
            return;
        }
        inner.mem_bytes += inner.overflow_bytes;
        inner.overflow_bytes = 0;
        inner.mem.extend(inner.overflow.drain(..));
    }

    /// Overflow is capped like memory, dropping its oldest (counted).
    fn push_overflow(name: &str, inner: &mut Inner, entry: Entry) {
        inner.overflow_bytes += entry.payload.body.len() as u64;
        inner.overflow.push_back(entry);
        while inner.overflow_bytes > inner.max_mem && inner.overflow.len() > 1 {
            let e = inner.overflow.pop_front().unwrap();
            inner.overflow_bytes -= e.payload.body.len() as u64;
            inner.dropped_payloads += 1;
            inner.dropped_points += e.payload.points as u64;
            tracing::warn!(sink = %name, points = e.payload.points, max_memory_bytes = inner.max_mem,
                "disk failing and overflow full: dropped the oldest overflow payload");
        }
    }

    /// Without a disk (or when the disk fails), memory is capped by dropping the oldest.
    fn trim_memory(name: &str, inner: &mut Inner, factor: u64) {
        if inner.disk.is_some() && factor == 1 {
            return;
        }
        while inner.mem_bytes > inner.max_mem * factor && inner.mem.len() > 1 {
            let e = inner.mem.pop_front().unwrap();
            inner.mem_bytes -= e.payload.body.len() as u64;
            inner.dropped_payloads += 1;
            inner.dropped_points += e.payload.points as u64;
            tracing::warn!(sink = %name, points = e.payload.points, max_memory_bytes = inner.max_mem,
                "queue full: dropped the oldest payload");
        }
    }

    /// The oldest `n` payloads (fewer if fewer wait), without removing them. Segment files are
    /// read without holding the lock, so `push` never waits on disk reads.
    pub fn peek(&self, n: usize) -> Vec<Entry> {
        let views: Vec<SegView> = {
            let mut g = self.inner.lock().unwrap();
            let inner = &mut *g;
            Self::settle(inner);
            if !inner.mem.is_empty() {
                return inner.mem.iter().take(n).cloned().collect();
            }
            match inner.disk.as_ref() {
                None => return Vec::new(),
                Some(disk) => disk
                    .segments
                    .iter()
                    .map(|s| SegView {
                        id: s.id,
                        path: s.path.clone(),
                        start: s.start,
                        size: s.size,
                    })
                    .collect(),
            }
        };
        if views.is_empty() {
            return Vec::new();
        }
        let (mut out, failed) = read_segments(&views, n);
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        let Some(disk) = inner.disk.as_mut() else {
            return Vec::new();
        };
        // Segments dropped at the cap meanwhile: their payloads are counted as dropped.
        out.retain(|e| match e.pos {
            Pos::Disk { segment, .. } => disk.segments.iter().any(|s| s.id == segment),
            Pos::Memory => true,
        });
        if let Some((id, e)) = failed {
            let still_there = disk.segments.iter().any(|s| s.id == id);
            if still_there && out.is_empty() && disk.segments.front().is_some_and(|s| s.id == id) {
                tracing::error!(sink = %self.name, error = %e, "cannot read the spill directory; dropping its head segment");
                let (p, pts) = disk.drop_head();
                inner.dropped_payloads += p;
                inner.dropped_points += pts;
            }
            if out.is_empty() {
                // Let the delivery loop look again rather than wait for the next push.
                drop(g);
                self.notify.notify_one();
            }
        }
        out
    }

    /// Removes delivered (or rejected) entries, which must be the oldest ones, in order.
    pub fn ack(&self, entries: &[Entry]) {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        for e in entries {
            match e.pos {
                Pos::Memory => {
                    while inner.mem.front().is_some_and(|f| f.seq <= e.seq) {
                        let f = inner.mem.pop_front().unwrap();
                        inner.mem_bytes -= f.payload.body.len() as u64;
                    }
                }
                Pos::Disk { segment, end } => {
                    if let Some(disk) = inner.disk.as_mut() {
                        if let Err(err) = disk.ack(segment, end, e.payload.points) {
                            tracing::error!(sink = %self.name, error = %err, "cannot record delivery in the spill directory");
                        }
                    }
                }
            }
        }
        Self::settle(inner);
    }

    /// Sizes and drop counters.
    pub fn stats(&self) -> QueueStats {
        let g = self.inner.lock().unwrap();
        let (dp, db) = match &g.disk {
            Some(d) => (
                d.segments.iter().map(|s| s.records).sum(),
                d.segments.iter().map(|s| s.size).sum(),
            ),
            None => (0, 0),
        };
        QueueStats {
            memory_payloads: (g.mem.len() + g.overflow.len()) as u64,
            memory_bytes: g.mem_bytes + g.overflow_bytes,
            disk_payloads: dp,
            disk_bytes: db,
            dropped_payloads: g.dropped_payloads,
            dropped_points: g.dropped_points,
        }
    }

    /// At shutdown: writes what waits in memory to disk ahead of the older spill (and overflow
    /// behind it), and syncs. Without a data dir, says how much is lost.
    pub fn spill_memory(&self) -> Result<(), QueueError> {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        Self::settle(inner);
        let Some(disk) = inner.disk.as_mut() else {
            if !inner.mem.is_empty() {
                let points: u64 = inner.mem.iter().map(|e| e.payload.points as u64).sum();
                tracing::warn!(sink = %self.name, payloads = inner.mem.len(), points,
                    "shutting down without a data dir: undelivered payloads are lost");
            }
            return Ok(());
        };
        if !inner.mem.is_empty() {
            let id = inner.mem.front().unwrap().seq;
            let path = seg_path(&disk.dir, id);
            let mut buf =
                Vec::with_capacity(inner.mem_bytes as usize + inner.mem.len() * REC_HEADER + 8);
            buf.extend_from_slice(MAGIC);
            let mut points = 0u64;
            for e in &inner.mem {
                write_record(&mut buf, e.seq, &e.payload);
                points += e.payload.points as u64;
            }
            let tmp = path.with_extension("tmp");
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
            disk.segments.push_front(Segment {
                id,
                path,
                start: HEADER,
                size: buf.len() as u64,
                records: inner.mem.len() as u64,
                points,
            });
            tracing::info!(sink = %self.name, payloads = inner.mem.len(), points, "spilled the memory queue to disk for the next start");
            inner.mem.clear();
            inner.mem_bytes = 0;
        }
        // Overflow is newer than everything on disk: it goes behind it.
        let mut lost = (0u64, 0u64);
        let mut failed = None;
        while let Some(e) = inner.overflow.pop_front() {
            inner.overflow_bytes -= e.payload.body.len() as u64;
            if failed.is_none() {
                match disk.append(&self.name, e.seq, &e.payload) {
                    Ok((dp, dpts)) => {
                        inner.dropped_payloads += dp;
                        inner.dropped_points += dpts;
                        continue;
                    }
                    Err(err) => failed = Some(err),
                }
            }
            lost.0 += 1;
            lost.1 += e.payload.points as u64;
        }
        if let Some(w) = disk.writer.as_mut() {
            w.sync_all().map_err(io_err(&disk.dir))?;
        }
        let saved = disk.save_cursor();
        if let Some(err) = failed {
            inner.dropped_payloads += lost.0;
            inner.dropped_points += lost.1;
            tracing::error!(sink = %self.name, payloads = lost.0, points = lost.1, error = %err,
                "shutting down with a failing spill directory: the newest undelivered payloads are lost");
            return Err(err);
        }
        saved
    }
}

/// What `peek` needs of a segment to read it without the lock.
struct SegView {
    id: u64,
    path: PathBuf,
    start: u64,
    size: u64,
}

/// Reads up to `n` undelivered records from the segments in order; on an error, what was read
/// before it and the failing segment.
fn read_segments(views: &[SegView], n: usize) -> (Vec<Entry>, Option<(u64, QueueError)>) {
    let mut out = Vec::new();
    for seg in views {
        if out.len() >= n {
            break;
        }
        let mut off = seg.start.max(HEADER);
        if off >= seg.size {
            continue;
        }
        let opened =
            File::open(&seg.path).and_then(|mut f| f.seek(SeekFrom::Start(off)).map(|_| f));
        let f = match opened {
            Ok(f) => f,
            Err(e) => return (out, Some((seg.id, io_err(&seg.path)(e)))),
        };
        let mut reader = std::io::BufReader::new(f);
        while out.len() < n && off < seg.size {
            match read_record(&mut reader) {
                Ok(Some((seq, payload))) => {
                    off += (REC_HEADER + payload.body.len()) as u64;
                    out.push(Entry {
                        seq,
                        payload,
                        pos: Pos::Disk {
                            segment: seg.id,
                            end: off,
                        },
                    });
                }
                Ok(None) => break,
                Err(why) => {
                    let e = QueueError::Io {
                        path: seg.path.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
                    };
                    return (out, Some((seg.id, e)));
                }
            }
        }
    }
    (out, None)
}

fn write_record(buf: &mut Vec<u8>, seq: u64, p: &Payload) {
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&(p.body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&p.points.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&p.body).to_le_bytes());
    buf.extend_from_slice(&p.body);
}

/// Reads one record at the file's position; `Ok(None)` at a clean end, `Err` text for a torn or corrupt one.
fn read_record(f: &mut impl Read) -> Result<Option<(u64, Payload)>, String> {
    let mut h = [0u8; REC_HEADER];
    let mut got = 0;
    while got < REC_HEADER {
        match f.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("truncated record header".into()),
            Ok(n) => got += n,
            Err(e) => return Err(e.to_string()),
        }
    }
    let seq = u64::from_le_bytes(h[0..8].try_into().unwrap());
    let len = u32::from_le_bytes(h[8..12].try_into().unwrap()) as usize;
    let points = u32::from_le_bytes(h[12..16].try_into().unwrap());
    let crc = u32::from_le_bytes(h[16..20].try_into().unwrap());
    let mut body = vec![0u8; len];
    f.read_exact(&mut body)
        .map_err(|_| "truncated record body".to_string())?;
    if crc32fast::hash(&body) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok(Some((
        seq,
        Payload {
            body: Bytes::from(body),
            points,
        },
    )))
}

impl Disk {
    fn load(name: &str, dir: &Path, max_bytes: u64) -> Result<(Disk, u64), QueueError> {
        let mut ids = Vec::new();
        for ent in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let ent = ent.map_err(io_err(dir))?;
            let fname = ent.file_name();
            let fname = fname.to_string_lossy();
            if let Some(stem) = fname.strip_suffix(".seg") {
                if let Ok(id) = stem.parse::<u64>() {
                    ids.push(id);
                }
            } else if fname.ends_with(".tmp") {
                let _ = std::fs::remove_file(ent.path());
            }
        }
        ids.sort_unstable();
        let cursor_path = dir.join("cursor");
        let cursor: std::collections::HashMap<u64, u64> = std::fs::read_to_string(&cursor_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((
                    it.next()?.parse::<u64>().ok()?,
                    it.next()?.parse::<u64>().ok()?,
                ))
            })
            .collect();
        let mut segments = VecDeque::new();
        let mut last_seq = 0u64;
        for id in ids {
            let path = seg_path(dir, id);
            let start = cursor.get(&id).copied().unwrap_or(HEADER).max(HEADER);
            let mut f = File::open(&path).map_err(io_err(&path))?;
            let mut magic = [0u8; 8];
            if f.read_exact(&mut magic).is_err() || &magic != MAGIC {
                tracing::warn!(sink = %name, path = %path.display(), "not a spill segment; removing it");
                let _ = std::fs::remove_file(&path);
                continue;
            }
            // Scan every record (for the sequence numbers), counting only those after the cursor.
            let mut reader = std::io::BufReader::new(f);
            let mut off = HEADER;
            let (mut records, mut points) = (0u64, 0u64);
            let mut first_undelivered = None;
            loop {
                match read_record(&mut reader) {
                    Ok(None) => break,
                    Ok(Some((seq, p))) => {
                        let end = off + (REC_HEADER + p.body.len()) as u64;
                        if off >= start {
                            first_undelivered.get_or_insert(off);
                            records += 1;
                            points += p.points as u64;
                        }
                        last_seq = last_seq.max(seq + 1);
                        off = end;
                    }
                    Err(why) => {
                        tracing::warn!(sink = %name, path = %path.display(), offset = off, reason = %why,
                            "damaged spill segment; keeping the records before the damage");
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&path)
                            .map_err(io_err(&path))?;
                        f.set_len(off).map_err(io_err(&path))?;
                        break;
                    }
                }
            }
            if records == 0 {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            segments.push_back(Segment {
                id,
                path,
                start: first_undelivered.unwrap_or(off),
                size: off,
                records,
                points,
            });
        }
        let total: u64 = segments.iter().map(|s| s.records).sum();
        if total > 0 {
            tracing::info!(sink = %name, payloads = total, "found undelivered payloads spilled by an earlier run");
        }
        let segment_bytes = (max_bytes / 8).clamp(4096, 64 << 20);
        Ok((
            Disk {
                dir: dir.to_path_buf(),
                segments,
                writer: None,
                max_bytes,
                segment_bytes,
            },
            last_seq,
        ))
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Appends; returns what had to be dropped to stay under the cap.
    fn append(&mut self, name: &str, seq: u64, p: &Payload) -> Result<(u64, u64), QueueError> {
        let rec_len = (REC_HEADER + p.body.len()) as u64;
        let (mut dropped_p, mut dropped_pts) = (0, 0);
        if rec_len + HEADER > self.max_bytes {
            tracing::warn!(sink = %name, points = p.points, bytes = rec_len, max_disk_bytes = self.max_bytes,
                "payload larger than the disk cap: dropped");
            return Ok((1, p.points as u64));
        }
        while !self.segments.is_empty() && self.total_bytes() + rec_len + HEADER > self.max_bytes {
            let (dp, dpts) = self.drop_head();
            tracing::warn!(sink = %name, payloads = dp, points = dpts, max_disk_bytes = self.max_bytes,
                "spill directory full: dropped the oldest segment");
            dropped_p += dp;
            dropped_pts += dpts;
        }
        let need_new = match (self.segments.back(), &self.writer) {
            (Some(last), Some(_)) => last.size + rec_len > self.segment_bytes,
            _ => true,
        };
        if need_new {
            let path = seg_path(&self.dir, seq);
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .map_err(io_err(&path))?;
            if let Err(e) = f.write_all(MAGIC) {
                let _ = std::fs::remove_file(&path);
                self.writer = None;
                return Err(io_err(&path)(e));
            }
            self.segments.push_back(Segment {
                id: seq,
                path,
                start: HEADER,
                size: HEADER,
                records: 0,
                points: 0,
            });
            self.writer = Some(f);
        }
        let mut buf = Vec::with_capacity(rec_len as usize);
        write_record(&mut buf, seq, p);
        let seg = self.segments.back_mut().unwrap();
        if let Err(e) = self.writer.as_mut().unwrap().write_all(&buf) {
            // The file may now end in a partial record: never write behind it again (records are
            // read up to `size` only); drop a segment that holds nothing.
            self.writer = None;
            let err = io_err(&seg.path)(e);
            if seg.records == 0 {
                let s = self.segments.pop_back().unwrap();
                let _ = std::fs::remove_file(&s.path);
            } else {
                let _ = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .and_then(|f| f.set_len(seg.size));
            }
            return Err(err);
        }
        seg.size += rec_len;
        seg.records += 1;
        seg.points += p.points as u64;
        Ok((dropped_p, dropped_pts))
    }

    /// Deletes the oldest segment; returns the payloads and points it still held.
    fn drop_head(&mut self) -> (u64, u64) {
        let Some(s) = self.segments.pop_front() else {
            return (0, 0);
        };
        let _ = std::fs::remove_file(&s.path);
        if self.segments.is_empty() {
            self.writer = None;
        }
        (s.records, s.points)
    }

    fn ack(&mut self, segment: u64, end: u64, points: u32) -> Result<(), QueueError> {
        let Some(head) = self.segments.front_mut() else {
            return Ok(());
        };
        if head.id != segment {
            // Its segment was dropped at the cap meanwhile.
            return Ok(());
        }
        if end <= head.start {
            // Already acknowledged.
            return Ok(());
        }
        head.records = head.records.saturating_sub(1);
        head.points = head.points.saturating_sub(points as u64);
        head.start = end;
        if head.records == 0 && end >= head.size {
            let s = self.segments.pop_front().unwrap();
            std::fs::remove_file(&s.path).map_err(io_err(&s.path))?;
            if self.segments.is_empty() {
                self.writer = None;
            }
        }
        self.save_cursor()
    }

    /// Writes one `<segment> <offset>` line per partly delivered segment.
    fn save_cursor(&self) -> Result<(), QueueError> {
        let mut text = String::new();
        for s in self.segments.iter().filter(|s| s.start > HEADER) {
            text.push_str(&format!("{} {}\n", s.id, s.start));
        }
        let path = self.dir.join("cursor");
        let tmp = self.dir.join("cursor.tmp");
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
