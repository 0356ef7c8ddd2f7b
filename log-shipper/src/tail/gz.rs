//! Compressed rotated files (`<n>.log.<stamp>.gz`, as the kubelet writes them): the head of the decompressed stream,
//! its size from the gzip trailer, and a sequential reader that resumes at an offset within the decompressed stream.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Reads a file with positional reads from an offset (the descriptor's own offset, shared with its duplicates, is
/// left alone).
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Whether a path names a gzip-compressed rotated file.
pub fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The head of the decompressed stream (see [`super::fingerprint::read_head`]): its first line, cut at
/// `HEAD_BYTES`. `None` when the stream has neither a full line nor `HEAD_BYTES` bytes.
pub fn read_head(file: &File) -> std::io::Result<Option<Vec<u8>>> {
    let mut dec = MultiGzDecoder::new(BufReader::with_capacity(8192, ReadAt { file, pos: 0 }));
    let mut buf = vec![0u8; super::fingerprint::HEAD_BYTES];
    let mut n = 0;
    while n < buf.len() {
        let r = dec.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
        if memchr::memchr(b'\n', &buf[..n]).is_some() {
            break;
        }
    }
    buf.truncate(n);
    Ok(match memchr::memchr(b'\n', &buf) {
        Some(i) => {
            buf.truncate(i + 1);
            Some(buf)
        }
        None if n == super::fingerprint::HEAD_BYTES => Some(buf),
        None => None,
    })
}

/// The decompressed size from the gzip trailer (ISIZE: the size modulo 2^32 of the last member; exact for the
/// kubelet's single-member files under 4 GiB).
pub fn trailer_size(file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len < 18 {
        return Ok(0);
    }
    let mut b = [0u8; 4];
    file.read_exact_at(&mut b, len - 4)?;
    Ok(u64::from(u32::from_le_bytes(b)))
}

/// Reads a compressed file's decompressed stream in order, from an offset reached by decompressing and discarding.
pub struct GzReader {
    dec: MultiGzDecoder<BufReader<File>>,
    /// Offset in the decompressed stream of the next byte `dec` yields.
    pos: u64,
}

/// Decompressed bytes discarded per call while seeking, so one resumed file does not hold up the others.
pub const SKIP_STEP: u64 = 4 << 20;

impl GzReader {
    /// Reads a file already open (held since it was found, so the kubelet deleting it loses nothing).
    pub fn from_file(file: File) -> Self {
        GzReader {
            dec: MultiGzDecoder::new(BufReader::with_capacity(64 * 1024, file)),
            pos: 0,
        }
    }

    /// Offset of the next byte.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Discards up to `SKIP_STEP` bytes towards `offset`. Returns false at the end of the stream.
    pub fn skip_towards(&mut self, offset: u64) -> std::io::Result<bool> {
        let want = offset.saturating_sub(self.pos).min(SKIP_STEP);
        let n = std::io::copy(&mut (&mut self.dec).take(want), &mut std::io::sink())?;
        self.pos += n;
        Ok(n == want)
    }

    /// Reads into `buf` at the current offset; 0 at the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        // Fill the buffer as far as the decoder goes (it yields small pieces), so lines are split in large chunks.
        while n < buf.len() {
            let r = self.dec.read(&mut buf[n..])?;
            if r == 0 {
                break;
            }
            n += r;
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(path: &Path, data: &[u8]) {
        let mut e =
            flate2::write::GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap();
    }

    #[test]
    fn head_size_and_resumed_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log.20261122-101500.gz");
        let data: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        gz(&p, &data);
        assert!(is_gz(&p) && !is_gz(&dir.path().join("0.log.20261122-101500")));
        let f = File::open(&p).unwrap();
        assert_eq!(read_head(&f).unwrap().unwrap(), b"line 0\n");
        // The head is read without moving the descriptor's offset: a reader made from it starts at 0.
        let mut all = Vec::new();
        GzReader::from_file(f).dec.read_to_end(&mut all).unwrap();
        assert_eq!(all, data);
        assert_eq!(
            trailer_size(&File::open(&p).unwrap()).unwrap(),
            data.len() as u64
        );
        let open = || GzReader::from_file(File::open(&p).unwrap());
        let mut r = open();
        while r.pos() < 1000 {
            assert!(r.skip_towards(1000).unwrap());
        }
        let mut rest = vec![0u8; data.len()];
        let n = r.read(&mut rest).unwrap();
        assert_eq!(&rest[..n], &data[1000..]);
        assert_eq!(r.read(&mut rest).unwrap(), 0);
        // Skipping past the end reports the end.
        let mut r = open();
        assert!(!r.skip_towards(data.len() as u64 + 10).unwrap());
    }

    #[test]
    fn a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.gz");
        std::fs::write(&p, b"\x1f\x8b\x08\x00garbage that is not deflate").unwrap();
        let mut r = GzReader::from_file(File::open(&p).unwrap());
        let mut buf = [0u8; 64];
        assert!(r.read(&mut buf).is_err());
    }
}
