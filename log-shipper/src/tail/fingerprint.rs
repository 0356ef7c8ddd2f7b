//! File identity: device + inode, a hash of the first line (the content generation) and of the bytes before the read position.

use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes of the first line hashed into the head fingerprint.
pub const HEAD_BYTES: usize = 1024;
/// Bytes just before the read position checked on every growth to detect truncate-and-refill.
pub const NEAR_BYTES: u64 = 64;

/// 64-bit FNV-1a (the `fnv` crate) with `seed` xor-ed into its offset basis: stable across
/// builds and platforms (ids and checkpoints depend on it).
pub fn hash64(seed: u64, parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    let mut h = fnv::FnvHasher::with_key(OFFSET_BASIS ^ seed);
    for part in parts {
        h.write(part);
        // Separate the parts so ("ab","c") and ("a","bc") differ.
        h.write_u8(0xff);
    }
    h.finish()
}

/// Reads the head of a file: its first line (with the `\n`), cut at `HEAD_BYTES`.
/// Returns `None` while the file has neither a full first line nor `HEAD_BYTES` bytes.
pub fn read_head(file: &File) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; HEAD_BYTES];
    let mut n = 0;
    while n < buf.len() {
        let r = file.read_at(&mut buf[n..], n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
        if memchr::memchr(b'\n', &buf[..n]).is_some() {
            break;
        }
    }
    buf.truncate(n);
    match memchr::memchr(b'\n', &buf) {
        Some(i) => {
            buf.truncate(i + 1);
            Ok(Some(buf))
        }
        None if n == HEAD_BYTES => Ok(Some(buf)),
        None => Ok(None),
    }
}

/// Hash of the up to `NEAR_BYTES` bytes before `offset`, read from the file.
pub fn near_hash(file: &File, offset: u64) -> std::io::Result<u64> {
    let from = offset.saturating_sub(NEAR_BYTES);
    let mut buf = vec![0u8; (offset - from) as usize];
    let mut n = 0;
    while n < buf.len() {
        let r = file.read_at(&mut buf[n..], from + n as u64)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    buf.truncate(n);
    Ok(hash64(0x6e, &[&buf]))
}

/// Hash of the bytes before `offset` from an in-memory tail of the data read so far.
pub fn near_hash_of(tail: &[u8]) -> u64 {
    let keep = tail.len().min(NEAR_BYTES as usize);
    hash64(0x6e, &[&tail[tail.len() - keep..]])
}

/// The generation key of a file's content: stable across renames and restarts, new after copytruncate
/// or inode reuse. `dir` is the container's log directory and `base` the `<n>.log` name the file
/// started as, so a rotated copy of the same content has the same key (and so the same record ids).
pub fn generation(dir: &str, base: &str, head: &[u8]) -> u64 {
    hash64(0x67, &[dir.as_bytes(), base.as_bytes(), head])
}

/// The deterministic Elasticsearch `_id` of the record starting at `offset` in a file generation.
pub fn record_id(generation: u64, offset: u64, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.clear();
    for shift in (0..16).rev() {
        out.push(HEX[((generation >> (shift * 4)) & 15) as usize] as char);
    }
    out.push('-');
    push_hex(offset, out);
}

/// Appends `v` in lower-case hex without leading zeros.
pub fn push_hex(v: u64, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = if v == 0 {
        1
    } else {
        (64 - v.leading_zeros()).div_ceil(4)
    };
    for shift in (0..digits).rev() {
        out.push(HEX[((v >> (shift * 4)) & 15) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn head_needs_a_full_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(b"no newline yet").unwrap();
        let r = std::fs::File::open(&p).unwrap();
        assert_eq!(read_head(&r).unwrap(), None);
        f.write_all(b"\nsecond\n").unwrap();
        assert_eq!(read_head(&r).unwrap().unwrap(), b"no newline yet\n");
    }

    #[test]
    fn near_hash_matches_in_memory_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("0.log");
        let data: Vec<u8> = (0..200u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        assert_eq!(near_hash(&f, 150).unwrap(), near_hash_of(&data[..150]));
        assert_eq!(near_hash(&f, 10).unwrap(), near_hash_of(&data[..10]));
        assert_ne!(near_hash(&f, 150).unwrap(), near_hash(&f, 149).unwrap());
    }

    #[test]
    fn hashes_are_those_of_existing_checkpoints() {
        // Computed with the hand-written FNV-1a this replaced (and checked against an
        // independent implementation): checkpoint ids and generations written before stay valid.
        for (seed, parts, want) in [
            (
                0x67,
                &[&b"default_web_1234/nginx"[..], b"0.log", b"2024-01-01T00:00:00Z stdout F hello\n"][..],
                0x5a09_7267_f73a_cef8,
            ),
            (0x6e, &[&[b'x'; 64][..]][..], 0x7298_04f5_c00a_0bdc),
            (0, &[][..], 0xcbf2_9ce4_8422_2325),
            (0x67, &[&b""[..], b""][..], 0x0a37_c907_b6a3_7d08),
        ] {
            assert_eq!(hash64(seed, parts), want, "{seed:#x} {parts:?}");
        }
        assert_ne!(hash64(1, &[b"ab", b"c"]), hash64(1, &[b"a", b"bc"]));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let g1 = generation("/var/log/pods/ns_p_u/c", "0.log", b"2026 first line\n");
        let g2 = generation("/var/log/pods/ns_p_u/c", "0.log", b"2026 other line\n");
        assert_ne!(g1, g2);
        assert_eq!(
            g1,
            generation("/var/log/pods/ns_p_u/c", "0.log", b"2026 first line\n")
        );
        let mut id = String::new();
        record_id(0xabc, 4096, &mut id);
        assert_eq!(id, "0000000000000abc-1000");
        record_id(u64::MAX, 0, &mut id);
        assert_eq!(id, "ffffffffffffffff-0");
        record_id(1, 0x1f, &mut id);
        assert_eq!(id, format!("{:016x}-{:x}", 1, 0x1f));
    }
}
