//! The file sink: documents as NDJSON in a file, rotated by size, written exactly once across retries and restarts.
//!
//! Exactly-once works like the Elasticsearch sink's `create` with a deterministic `_id`: every record carries the id
//! of its source (file generation + start offset, and end for a multiline record), and within one stream of one source
//! file records reach the sink in start order. So a high-water mark per (generation, stream) tells a re-sent record
//! (at or before the mark: skipped and counted as a duplicate) from a new one. The marks and the output size they
//! cover are saved in `<path>.state` (written to a temporary file, synced, renamed) after each batch's data is synced
//! and before the batch is acknowledged; a batch whose write or state save fails is cut off the output again
//! (`ftruncate` needs no space), so a retry, a restart after SIGKILL or after checkpoints could not be saved never
//! writes a line twice. A re-read multiline record that joins more lines than before is written again (its first
//! lines then appear twice), as the Elasticsearch sink stores it under a new id.

use super::Batch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Errors of the file sink.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("file sink state {path} is not valid ({source}); it records what the output holds, so it is not guessed: \
             remove it to start over (records re-sent from older checkpoints are then written again)")]
    State {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// File sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The NDJSON file written to.
    pub path: PathBuf,
    /// Rotate when the file reaches this size (bytes).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`<path>.1` is the newest).
    #[serde(default = "default_keep")]
    pub keep: u32,
}

fn default_max_bytes() -> u64 {
    100 << 20
}
fn default_keep() -> u32 {
    3
}

impl FileSinkConfig {
    pub fn new(path: PathBuf) -> Self {
        FileSinkConfig {
            path,
            max_bytes: default_max_bytes(),
            keep: default_keep(),
        }
    }
}

/// High-water marks kept at most; the least recently written sources are forgotten first (a source idle that long
/// is not re-sent any more: its checkpoint has long moved past it).
const MARKS_MAX: usize = 20_000;

/// The last record written from one stream of one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mark {
    generation: u64,
    /// 0 stdout, 1 stderr, 2 unknown (unparsed lines), 3 gap records.
    stream: u8,
    start: u64,
    /// End offset from a multiline record's id, else 0.
    end: u64,
    /// Batch counter when last moved (for forgetting the oldest).
    touched: u64,
}

/// `<path>.state`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    /// Inode of the output file the size refers to.
    inode: u64,
    /// Bytes of the output file covered by acknowledged batches.
    size: u64,
    batches: u64,
    marks: Vec<Mark>,
}

/// What one call of [`FileSink::write_batch`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Records appended.
    pub written: u64,
    /// Records already in the output (re-sent after a restart), not written again.
    pub duplicates: u64,
}

/// Appends documents; a batch is acknowledged after it and the state covering it are synced.
pub struct FileSink {
    cfg: FileSinkConfig,
    state_path: PathBuf,
    file: File,
    inode: u64,
    /// Output bytes covered by the saved state (the file is cut back to this after a failed batch).
    size: u64,
    batches: u64,
    marks: HashMap<(u64, u8), Mark>,
    /// The saved state does not describe the current file yet (after start-up or a rotation).
    dirty: bool,
}

/// The source of a record: (generation, stream) and (start, end) from its action line and document.
fn record_key(action: &[u8], doc: &[u8]) -> Option<((u64, u8), (u64, u64))> {
    let id = json_value_after(action, b"\"_id\":\"")?;
    let mut parts = id.split(|&b| b == b'-');
    let hex = |p: Option<&[u8]>| -> Option<u64> {
        let p = std::str::from_utf8(p?).ok()?;
        u64::from_str_radix(p, 16).ok()
    };
    let generation = hex(parts.next())?;
    let start = hex(parts.next())?;
    let end = match parts.next() {
        // A gap record (`<generation>-<offset>-gap`, stream "gap") marks lost data at an offset.
        Some(b"gap") | None => 0,
        Some(e) => hex(Some(e))?,
    };
    if parts.next().is_some() {
        return None;
    }
    // The document begins `{"@timestamp":"<checked time>","stream":"...`: the first `"stream":"` is the key.
    let stream = match json_value_after(doc, b"\"stream\":\"")? {
        b"stdout" => 0,
        b"stderr" => 1,
        b"gap" => 3,
        _ => 2,
    };
    Some(((generation, stream), (start, end)))
}

/// The bytes after the first `key` up to the next `"` (values written by the encoder contain no escapes here).
fn json_value_after<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = memchr::memmem::find(b, key)? + key.len();
    let len = memchr::memchr(b'"', &b[at..])?;
    Some(&b[at..at + len])
}

impl FileSink {
    pub fn new(cfg: FileSinkConfig) -> Result<Self, FileSinkError> {
        let io = |source| FileSinkError::Io {
            path: cfg.path.clone(),
            source,
        };
        if let Some(dir) = cfg.path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cfg.path)
            .map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let (inode, len) = (meta.ino(), meta.len());
        let state_path = suffixed(&cfg.path, ".state");
        let state = match std::fs::read(&state_path) {
            Ok(b) => Some(serde_json::from_slice::<StateFile>(&b).map_err(|source| {
                FileSinkError::State {
                    path: state_path.clone(),
                    source,
                }
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(FileSinkError::Io {
                    path: state_path,
                    source,
                })
            }
        };
        let mut size = len;
        let (mut batches, mut marks) = (0, HashMap::new());
        if let Some(st) = state {
            batches = st.batches;
            marks = st
                .marks
                .into_iter()
                .map(|m| ((m.generation, m.stream), m))
                .collect();
            if st.inode == inode && len > st.size {
                // Written by a batch that was never acknowledged (killed between the write and the state save): its
                // records are re-sent, so the copy on disk goes.
                file.set_len(st.size).map_err(io)?;
                tracing::info!(path = %cfg.path.display(), bytes = len - st.size, "file sink: cut the output back to its last acknowledged batch");
                size = st.size;
            }
        }
        Ok(FileSink {
            cfg,
            state_path,
            file,
            inode,
            size,
            batches,
            marks,
            dirty: true,
        })
    }

    /// Appends the records of `batch` not yet in the output, syncs them and saves the state. On error the output is
    /// as before the call, so the batch can simply be retried.
    pub fn write_batch(&mut self, batch: &Batch) -> Result<Written, FileSinkError> {
        let path = self.cfg.path.clone();
        let io = |source| FileSinkError::Io {
            path: path.clone(),
            source,
        };
        if self.size >= self.cfg.max_bytes {
            self.rotate().map_err(io)?;
        }
        if self.dirty {
            self.save_state(&self.marks, self.size, self.batches)?;
            self.dirty = false;
        }
        let mut done = Written::default();
        let mut marks = self.marks.clone();
        let batches = self.batches + 1;
        let mut buf = Vec::with_capacity(batch.buf.len());
        for it in &batch.items {
            let doc = &batch.buf[it.doc..it.end];
            if let Some((key, (start, end))) = record_key(&batch.buf[it.action..it.doc], doc) {
                if let Some(m) = marks.get(&key) {
                    if start < m.start || (start == m.start && end <= m.end) {
                        done.duplicates += 1;
                        continue;
                    }
                }
                marks.insert(
                    key,
                    Mark {
                        generation: key.0,
                        stream: key.1,
                        start,
                        end,
                        touched: batches,
                    },
                );
            }
            buf.extend_from_slice(doc);
            done.written += 1;
        }
        if buf.is_empty() {
            return Ok(done);
        }
        if marks.len() > MARKS_MAX {
            let mut by_age: Vec<(u64, (u64, u8))> =
                marks.iter().map(|(k, m)| (m.touched, *k)).collect();
            by_age.sort_unstable();
            for (_, k) in &by_age[..marks.len() - MARKS_MAX] {
                marks.remove(k);
            }
        }
        let new_size = self.size + buf.len() as u64;
        let result = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
            .map_err(io)
            .and_then(|_| self.save_state(&marks, new_size, batches));
        if let Err(e) = result {
            // Take a partly written batch back off the file (truncating needs no free space).
            if let Err(t) = self.file.set_len(self.size) {
                tracing::error!(path = %self.cfg.path.display(), error = %t, "file sink: cannot cut a failed batch off the output");
            }
            return Err(e);
        }
        self.marks = marks;
        self.size = new_size;
        self.batches = batches;
        if self.size >= self.cfg.max_bytes {
            // The batch is safe (state saved); a failed rotation is retried before the next write.
            self.rotate().map_err(io)?;
            self.save_state(&self.marks, self.size, self.batches)?;
            self.dirty = false;
        }
        Ok(done)
    }

    fn save_state(
        &self,
        marks: &HashMap<(u64, u8), Mark>,
        size: u64,
        batches: u64,
    ) -> Result<(), FileSinkError> {
        let st = StateFile {
            version: 1,
            inode: self.inode,
            size,
            batches,
            marks: marks.values().copied().collect(),
        };
        let io = |source| FileSinkError::Io {
            path: self.state_path.clone(),
            source,
        };
        let tmp = suffixed(&self.state_path, ".tmp");
        let mut f = File::create(&tmp).map_err(io)?;
        let body = serde_json::to_vec(&st).expect("state serializes");
        f.write_all(&body).and_then(|_| f.sync_data()).map_err(io)?;
        std::fs::rename(&tmp, &self.state_path).map_err(io)?;
        if let Some(dir) = self
            .state_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }

    /// Moves the full file to `<path>.1` (older ones up) and starts a new one; its state is saved before any write.
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.cfg.keep == 0 {
            std::fs::remove_file(&self.cfg.path)?;
        } else {
            for n in (1..self.cfg.keep).rev() {
                let _ = std::fs::rename(
                    suffixed(&self.cfg.path, &format!(".{n}")),
                    suffixed(&self.cfg.path, &format!(".{}", n + 1)),
                );
            }
            std::fs::rename(&self.cfg.path, suffixed(&self.cfg.path, ".1"))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)?;
        self.inode = file.metadata()?.ino();
        self.file = file;
        self.size = 0;
        self.dirty = true;
        Ok(())
    }
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.to_path_buf().into_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::Item;

    /// A batch of (generation, start, stream, document) as the encoder lays them out.
    fn batch(recs: &[(u64, u64, &str, &str)]) -> Batch {
        let mut b = Batch::default();
        for (g, start, stream, msg) in recs {
            let action = b.buf.len();
            b.buf.extend_from_slice(
                format!("{{\"create\":{{\"_index\":\"x\",\"_id\":\"{g:016x}-{start:x}\"}}}}\n")
                    .as_bytes(),
            );
            let doc = b.buf.len();
            b.buf.extend_from_slice(
                format!("{{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"stream\":\"{stream}\",\"message\":\"{msg}\"}}\n")
                    .as_bytes(),
            );
            b.items.push(Item {
                action,
                doc,
                end: b.buf.len(),
            });
        }
        b
    }

    fn messages(p: &Path) -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn writes_documents_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/logs.ndjson");
        let mut s = FileSink::new(FileSinkConfig {
            path: path.clone(),
            max_bytes: 150,
            keep: 2,
        })
        .unwrap();
        let w = s
            .write_batch(&batch(&[(1, 0, "stdout", "a"), (1, 10, "stdout", "b")]))
            .unwrap();
        assert_eq!(
            w,
            Written {
                written: 2,
                duplicates: 0
            }
        );
        assert_eq!(messages(&path), ["a", "b"]);
        s.write_batch(&batch(&[(1, 20, "stdout", "c"), (1, 30, "stdout", "d")]))
            .unwrap();
        // Past 150 bytes: rotated to .1, and a fresh file started.
        assert_eq!(
            messages(&path.with_extension("ndjson.1")),
            ["a", "b", "c", "d"]
        );
        assert_eq!(messages(&path), Vec::<String>::new());
        s.write_batch(&batch(&[(1, 40, "stdout", "e")])).unwrap();
        assert_eq!(messages(&path), ["e"]);
    }

    #[test]
    fn re_sent_records_are_skipped_per_source_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.ndjson");
        let mut s = FileSink::new(FileSinkConfig::new(path.clone())).unwrap();
        // stderr at 100 is written before the stdout record at 0 completes (a partial line joined later).
        s.write_batch(&batch(&[
            (7, 100, "stderr", "err"),
            (8, 0, "stdout", "other file"),
        ]))
        .unwrap();
        s.write_batch(&batch(&[(7, 0, "stdout", "joined")]))
            .unwrap();
        drop(s);
        // A restart re-reads both files from the start.
        let mut s = FileSink::new(FileSinkConfig::new(path.clone())).unwrap();
        let w = s
            .write_batch(&batch(&[
                (7, 0, "stdout", "joined"),
                (7, 100, "stderr", "err"),
                (7, 200, "stdout", "new"),
                (8, 0, "stdout", "other file"),
            ]))
            .unwrap();
        assert_eq!(
            w,
            Written {
                written: 1,
                duplicates: 3
            }
        );
        assert_eq!(messages(&path), ["err", "other file", "joined", "new"]);
    }

    #[test]
    fn a_batch_written_but_not_recorded_is_cut_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.ndjson");
        let mut s = FileSink::new(FileSinkConfig::new(path.clone())).unwrap();
        s.write_batch(&batch(&[(1, 0, "stdout", "acked")])).unwrap();
        drop(s);
        // As if killed after writing the next batch's data and before saving the state.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"message\":\"unacknowledged\"}\n").unwrap();
        let mut s = FileSink::new(FileSinkConfig::new(path.clone())).unwrap();
        assert_eq!(messages(&path), ["acked"]);
        s.write_batch(&batch(&[
            (1, 0, "stdout", "acked"),
            (1, 9, "stdout", "next"),
        ]))
        .unwrap();
        assert_eq!(messages(&path), ["acked", "next"]);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.ndjson");
        std::fs::write(dir.path().join("logs.ndjson.state"), b"{\"version\":1,").unwrap();
        let e = FileSink::new(FileSinkConfig::new(path))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("logs.ndjson.state") && e.contains("remove it"),
            "{e}"
        );
    }

    #[test]
    fn record_keys_come_from_the_real_encoder() {
        use crate::discovery::FileMeta;
        use crate::enrich::{Encoder, FileContext, IndexPattern, RecordConfig};
        use crate::parse::{Entry, Stream};
        let mut enc = Encoder::new(
            IndexPattern::parse("logs-%Y.%m.%d").unwrap(),
            RecordConfig::default(),
        );
        let meta = FileMeta {
            namespace: "ns".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            container: "c".into(),
            restart_count: Some(0),
            dir: "/d".into(),
            base: "0.log".into(),
        };
        let ctx = FileContext::new(meta, "/d/0.log");
        let mut b = Batch::default();
        for (stream, start, end, multiline, time) in [
            (Stream::Stderr, 0x1f, 0x40, false, "2026-01-01T00:00:00Z"),
            (Stream::Stdout, 0x40, 0x90, true, ""),
            (Stream::Unknown, 0x90, 0xa0, false, ""),
        ] {
            let e = Entry {
                time: time.into(),
                stream,
                message: b"\"stream\":\"stdout\" in a message".to_vec(),
                start,
                end,
                truncated: false,
                parse_error: None,
                multiline,
            };
            let it = enc.encode(&e, &ctx, 0xfeed, "2026-01-02T00:00:00.5Z", &mut b.buf);
            b.items.push(it);
        }
        let gap = enc.encode_gap(
            &ctx,
            0xfeed,
            0xa0,
            5000,
            42,
            "/d/0.log",
            "2026-01-02T00:00:00.5Z",
            &mut b.buf,
        );
        b.items.push(gap);
        let keys: Vec<_> = b
            .items
            .iter()
            .map(|it| record_key(&b.buf[it.action..it.doc], &b.buf[it.doc..it.end]))
            .collect();
        assert_eq!(
            keys,
            [
                Some(((0xfeed, 1), (0x1f, 0))),
                Some(((0xfeed, 0), (0x40, 0x90))),
                Some(((0xfeed, 2), (0x90, 0))),
                Some(((0xfeed, 3), (0xa0, 0))),
            ]
        );
    }
}
