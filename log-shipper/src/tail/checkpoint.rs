//! Checkpoints: per file identity, the offset up to which every record is acknowledged by the sink; written atomically.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors reading or writing the checkpoint file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The saved position of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Device number of the file.
    pub dev: u64,
    /// Inode number of the file.
    pub ino: u64,
    /// Content generation (hash of the container directory, base name and first line).
    pub generation: u64,
    /// Every record before this offset has been acknowledged by the sink.
    pub offset: u64,
    /// Path when last seen (informational; identity is dev + inode + generation).
    pub path: String,
    /// Bytes of the file (of its decompressed stream when compressed) known to exist and not yet counted as lost:
    /// a restart that finds no file of this generation counts `size - offset` bytes as lost.
    #[serde(default)]
    pub size: u64,
    /// The file is gzip-compressed; `offset` and `size` are in its decompressed stream.
    #[serde(default)]
    pub compressed: bool,
    /// Average line length read from the file (for the lost-lines estimate).
    #[serde(default)]
    pub line_bytes: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    files: Vec<Position>,
}

/// The checkpoint file under `--data-dir`.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    /// The store at `<data_dir>/checkpoints.json`.
    pub fn new(data_dir: &Path) -> Self {
        Store {
            path: data_dir.join("checkpoints.json"),
        }
    }

    /// Path of the checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads saved positions keyed by (dev, inode); a missing file means none.
    pub fn load(&self) -> Result<HashMap<(u64, u64), Position>, CheckpointError> {
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let f: FileFormat =
            serde_json::from_slice(&data).map_err(|source| CheckpointError::Parse {
                path: self.path.clone(),
                source,
            })?;
        Ok(f.files.into_iter().map(|p| ((p.dev, p.ino), p)).collect())
    }

    /// Writes all positions atomically: temp file, fsync, rename, fsync of the directory.
    pub fn save(&self, positions: &[Position]) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec(&FileFormat {
            version: 1,
            files: positions.to_vec(),
        })
        .map_err(|source| CheckpointError::Parse {
            path: self.path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(ino: u64, offset: u64) -> Position {
        Position {
            dev: 1,
            ino,
            generation: u64::MAX - ino,
            offset,
            path: format!("/p/{ino}"),
            size: offset + 5,
            compressed: ino.is_multiple_of(2),
            line_bytes: 100,
        }
    }

    #[test]
    fn round_trip_and_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        assert!(s.load().unwrap().is_empty());
        s.save(&[pos(1, 10), pos(2, 20)]).unwrap();
        s.save(&[pos(1, 30)]).unwrap();
        let m = s.load().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[&(1, 1)], pos(1, 30));
        // No temp file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn old_checkpoints_without_size_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        std::fs::write(
            s.path(),
            br#"{"version":1,"files":[{"dev":1,"ino":2,"generation":3,"offset":4,"path":"/p"}]}"#,
        )
        .unwrap();
        let p = &s.load().unwrap()[&(1, 2)];
        assert_eq!((p.offset, p.size, p.compressed), (4, 0, false));
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        std::fs::write(s.path(), b"{not json").unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("checkpoints.json"), "{e}");
    }
}
