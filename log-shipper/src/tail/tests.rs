//! Tests of the reader: rotation, truncation, compression, deletion and loss accounting.

use super::*;
use crate::discovery::DiscoveryConfig;
use crate::enrich::{IndexPattern, RecordConfig};
use std::io::Write;

mod join;
mod open;

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
    start_full(root, data, deleted_max, Vec::new())
}

fn start_full(
    root: &std::path::Path,
    data: &std::path::Path,
    deleted_max: u64,
    multiline: Vec<MultilineSelector>,
) -> Running {
    let cfg = reader_config(root, data, deleted_max, multiline);
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

/// The reader's settings in these tests: fast rescans, polls, batches and checkpoints.
fn reader_config(
    root: &std::path::Path,
    data: &std::path::Path,
    deleted_max: u64,
    multiline: Vec<MultilineSelector>,
) -> ReaderConfig {
    std::fs::create_dir_all(data).unwrap();
    let discovery = Discovery::new(DiscoveryConfig {
        roots: vec![root.to_path_buf()],
        rescan_interval: std::time::Duration::from_millis(50),
        ..Default::default()
    })
    .unwrap();
    ReaderConfig {
        discovery,
        max_line_bytes: 1 << 16,
        over_long: OverLong::Truncate,
        multiline,
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
        self.collect_docs(n, true)
    }
    /// Collects the documents of `n` records, each with its `_id`; `ack`: acknowledge every batch
    /// (false: a shipper killed before the sink answered).
    fn collect_docs(&mut self, n: usize, ack: bool) -> Vec<serde_json::Value> {
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
                    if ack {
                        self.ack.send(b.seq).unwrap();
                    }
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

/// Regression (the reader thread panicked at `expect("indexed")`): the `.gz` of a copytruncate copy was linked to
/// the live file (same first line until the truncation), the live file was then truncated, and the `.gz`'s inode
/// index entry was left pointing at the slot the truncation replaced.
#[test]
fn a_compressed_copytruncate_copy_never_leaves_a_stale_inode_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = root.join("ns_p_u/c");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    append(&log, &(line(1, "a1") + &line(2, "a2")));
    let mut r = start(&root, &tmp.path().join("data"));
    let first = r.take(2);
    // Copy (same content, same ids), compress the copy while the live file still has the same first line.
    let copy = dir.join("0.log.20261122-100000");
    std::fs::copy(&log, &copy).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let gz = gzip_file(&copy);
    std::thread::sleep(Duration::from_millis(200));
    // Now truncate and refill the live file; further scans must go on.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &line(3, "b1"));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.iter().any(|(_, m): &(String, String)| m == "b1") {
        assert!(Instant::now() < deadline, "no b1: {got:?}");
        got.extend(r.take(1));
    }
    std::thread::sleep(Duration::from_millis(300));
    append(&log, &line(4, "b2"));
    got.extend(r.take(1));
    // Whatever was read from the copy or its `.gz` carries the ids of the original's records.
    let ids: HashSet<&str> = first.iter().map(|(id, _)| id.as_str()).collect();
    for (id, m) in &got {
        if m.starts_with('a') {
            assert!(ids.contains(id.as_str()), "{m} under a new id {id}");
        }
    }
    let b: Vec<&str> = got.iter().filter(|(_, m)| m.starts_with('b')).map(|(_, m)| m.as_str()).collect();
    assert_eq!(b, vec!["b1", "b2"]);
    assert!(gz.exists());
    // The reader thread is alive and stops cleanly (a panic would fail the join).
    r.stop();
}

/// Regression (torture test: `generation …: lines out of order (offset, seq)`): the live file was identified while
/// an older file of its container was read first (the sink blocked), then copied, truncated and refilled before
/// its first read; its new content was read under the copy's generation, so the copy and the refilled file gave
/// records the same ids.
#[test]
fn a_copytruncate_refill_before_the_first_read_gets_its_own_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = root.join("ns_p_u/c");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    // An older file big enough to fill the channel, so the reader blocks before it reaches the live file.
    let older: String = (0..30_000u64).map(|n| line(n, &format!("old {n:06}"))).collect();
    append(&dir.join("0.log.20261122-090000"), &older);
    append(&log, &(line(1, "a1") + &line(2, "a2")));
    let mut r = start(&root, &tmp.path().join("data"));
    std::thread::sleep(Duration::from_millis(300));
    // Copytruncate while the reader waits on the sink: the copy holds a1 a2, the live file starts over.
    std::fs::copy(&log, dir.join("0.log.20261122-100000")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &(line(3, "b1") + &line(4, "b2") + &line(5, "b3")));
    std::thread::sleep(Duration::from_millis(200));
    let got = r.take(30_005);
    let mut ids: HashMap<&str, &str> = HashMap::new();
    for (id, m) in &got {
        if let Some(other) = ids.insert(id, m) {
            assert_eq!(other, m, "two records with id {id}");
        }
    }
    let wanted: Vec<&str> = got
        .iter()
        .map(|(_, m)| m.as_str())
        .filter(|m| !m.starts_with("old"))
        .collect();
    assert_eq!(wanted, vec!["a1", "a2", "b1", "b2", "b3"]);
    let gen = |m: &str| got.iter().find(|(_, x)| x == m).unwrap().0.split('-').next().unwrap().to_string();
    assert_ne!(gen("a1"), gen("b1"), "the refilled file has a generation of its own");
    r.quiet(Duration::from_millis(300));
    r.stop();
}

/// Regression (issue 19 item 10): with checkpoints that could not be saved the reader read and shipped on, so a
/// restart shipped everything again. Now reading stops until a checkpoint is written.
#[test]
fn a_checkpoint_that_cannot_be_saved_stops_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let data = tmp.path().join("data");
    let dir = root.join("ns_p_u/c");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("0.log");
    append(&log, &line(1, "a1"));
    let mut r = start(&root, &data);
    assert_eq!(r.take(1)[0].1, "a1");
    std::thread::sleep(Duration::from_millis(200));
    // A directory where the checkpoint's temporary file goes: every save fails.
    let blocker = data.join("checkpoints.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    append(&log, &line(2, "a2"));
    assert_eq!(r.take(1)[0].1, "a2");
    std::thread::sleep(Duration::from_millis(300));
    append(&log, &line(3, "a3"));
    r.quiet(Duration::from_millis(500));
    assert!(r.metrics.checkpoint_errors.get() > 0, "no checkpoint error counted");
    // Saving works again: reading resumes where it stopped.
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(r.take(1)[0].1, "a3");
    r.stop();
    let cp = Store::new(&data).load().unwrap();
    assert_eq!(cp.values().next().unwrap().offset, std::fs::metadata(&log).unwrap().len());
}
