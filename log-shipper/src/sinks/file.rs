//! The file sink: documents as NDJSON in a file, rotated by size (for `vigil up` and debugging).

use super::Batch;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Errors of the file sink.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
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

/// Appends documents; a batch is acknowledged after it is written and synced.
pub struct FileSink {
    cfg: FileSinkConfig,
    file: File,
    size: u64,
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
        let size = file.metadata().map_err(io)?.len();
        Ok(FileSink { cfg, file, size })
    }

    pub fn write_batch(&mut self, batch: &Batch) -> Result<(), FileSinkError> {
        if batch.items.is_empty() {
            return Ok(());
        }
        let path = self.cfg.path.clone();
        let io = |source| FileSinkError::Io {
            path: path.clone(),
            source,
        };
        let mut buf = Vec::with_capacity(batch.buf.len());
        for it in &batch.items {
            buf.extend_from_slice(&batch.buf[it.doc..it.end]);
        }
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.size += buf.len() as u64;
        if self.size >= self.cfg.max_bytes {
            self.rotate().map_err(io)?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |n: u32| {
            let mut p = self.cfg.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        if self.cfg.keep == 0 {
            std::fs::remove_file(&self.cfg.path)?;
        } else {
            for n in (1..self.cfg.keep).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            std::fs::rename(&self.cfg.path, name(1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.cfg.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::Item;

    fn batch(docs: &[&str]) -> Batch {
        let mut b = Batch::default();
        for d in docs {
            let action = b.buf.len();
            b.buf.extend_from_slice(b"{\"create\":{}}\n");
            let doc = b.buf.len();
            b.buf.extend_from_slice(d.as_bytes());
            b.buf.push(b'\n');
            b.items.push(Item {
                action,
                doc,
                end: b.buf.len(),
            });
        }
        b
    }

    #[test]
    fn writes_documents_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out/logs.ndjson");
        let mut s = FileSink::new(FileSinkConfig {
            path: path.clone(),
            max_bytes: 20,
            keep: 2,
        })
        .unwrap();
        s.write_batch(&batch(&["{\"a\":1}", "{\"a\":2}"])).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        s.write_batch(&batch(&["{\"a\":3}", "{\"a\":4}"])).unwrap();
        // 32 bytes >= 20: rotated to .1, and a fresh file started.
        assert_eq!(
            std::fs::read_to_string(path.with_extension("ndjson.1")).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n{\"a\":4}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
