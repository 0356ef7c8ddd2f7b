//! A kubelet-like writer that rotates in the middle of a record, for the log shipper's tests (the crate's reader tests
//! and the root torture test include this file with `#[path]`).

use std::io::Write;
use std::path::Path;

/// A CRI line: `<time> <stream> <tag> <message>\n`, the time `ts_nanos` nanoseconds after 2026-11-22T00:00:00Z.
pub fn cri(ts_nanos: u64, stream: &str, tag: &str, message: &str) -> String {
    let secs = ts_nanos / 1_000_000_000;
    format!(
        "2026-11-22T{:02}:{:02}:{:02}.{:09}Z {stream} {tag} {message}\n",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        ts_nanos % 1_000_000_000
    )
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("appending to {}: {e}", path.display()));
}

/// Writes one CRI record cut by a rotation, as containerd does for a line longer than its buffer when the kubelet
/// rotates between the two writes: `message[..cut]` as a `P` line at the end of `live` (`<dir>/<n>.log`), then
/// `rotate()` (the kubelet's rename of `live` to `<n>.log.<stamp>`, and whatever it compresses or deletes), then
/// `message[cut..]` as the `F` line that starts the new `live`. The shipper must store one record with the whole
/// `message`, once. Returns the bytes written before and after the rotation.
pub fn cri_record_across_rotation(
    live: &Path,
    ts_nanos: u64,
    stream: &str,
    message: &str,
    cut: usize,
    rotate: impl FnOnce(),
) -> (u64, u64) {
    let (head, tail) = message.split_at(cut);
    let p = cri(ts_nanos, stream, "P", head);
    append(live, &p);
    rotate();
    let f = cri(ts_nanos + 1, stream, "F", tail);
    append(live, &f);
    (p.len() as u64, f.len() as u64)
}
