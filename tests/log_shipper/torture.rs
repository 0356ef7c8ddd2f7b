//! The torture test: containers (CRI and docker formats) written continuously; half rotate like the kubelet
//! (rename, then at each rotation gzip every older rotated file through `.tmp` and delete beyond 5 files), half
//! by copytruncate (older copies gzipped at the next rotation, as logrotate's `compress` + `delaycompress`); the real `vigil log-shipper` is SIGKILLed and kept down for several rotations, three times;
//! the `_bulk` test server fails 10% of items with 429 and is down long enough for rotated files to be compressed
//! and deleted meanwhile. At the end every line is in the index exactly once, first sent in order per container
//! (per file for copytruncate), with the right metadata; the kubelet-rotated CRI containers rotate in the middle
//! of a `P`/`F` record each time, and each such record arrives whole, once. The variant deletes files during the outage past a small held-bytes cap: exactly the
//! lines the lost-bytes counter and the gap records account for are missing, nothing more.
//!
//! Copytruncate note: lines written between the copy and the truncate are lost by ANY shipper (they are
//! in neither file once the truncate happens). As logrotate's users must, the writer pauses around its
//! copytruncate (here the writer does the rotation itself, so nothing is written in between).
//! Deletion note: the kubelet deletes a rotated file 4 rotations after it was made. A shipper that is down
//! meanwhile (not running, so holding nothing open) loses what it had not read of it; the main test keeps each
//! stop to 2–3 rotations, the variant shows the loss is counted.

use crate::support::kubelet_logs::kubelet_rotate;
#[path = "../../log-shipper/tests/support/rotation.rs"]
mod rotation;
use crate::support::es_bulk::{EsServer, Options};
use crate::support::shipper::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The kubelet's default `containerLogMaxFiles`.
const MAX_FILES: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Rotation {
    Kubelet,
    CopyTruncate,
}

#[derive(Clone, Copy)]
struct WriterCfg {
    docker: bool,
    rotation: Rotation,
    rotate_at: u64,
    /// CRI `P`/`F` pairs and docker partial chunks now and then.
    partials: bool,
}

/// What a writer did: lines written and the byte length of each.
#[derive(Default)]
struct Written {
    lines: AtomicU64,
    lengths: Mutex<Vec<u64>>,
    rotations: AtomicU64,
    compressed: AtomicU64,
    deleted: AtomicU64,
}

fn container_name(k: usize) -> String {
    format!("c{k:02}")
}

/// Gzips every uncompressed rotated copy (through `.tmp`, then the copy is removed), as logrotate's `compress` does.
fn gzip_older_copies(dir: &Path, w: &Written) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("0.log.") || name.ends_with(".gz") || name.ends_with(".tmp") {
            continue;
        }
        let src = dir.join(&name);
        let tmp = dir.join(format!("{name}.tmp"));
        let data = std::fs::read(&src).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&tmp).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(&data).unwrap();
        gz.finish().unwrap();
        std::fs::rename(&tmp, dir.join(format!("{name}.gz"))).unwrap();
        std::fs::remove_file(&src).unwrap();
        w.compressed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Appends numbered lines to `<dir>/0.log` until `stop`, rotating as configured.
fn writer(k: usize, dir: PathBuf, cfg: WriterCfg, stop: Arc<AtomicBool>, w: Arc<Written>) {
    let log = dir.join("0.log");
    let mut seq = 0u64;
    let mut rot = 0u32;
    let pad = "p".repeat(40 + k * 3);
    while !stop.load(Ordering::Relaxed) {
        let mut chunk = String::new();
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let ts = 1_000_000 * seq + k as u64;
            let msg = format!("{} seq {seq:06} {pad}", container_name(k));
            let before = chunk.len();
            if cfg.docker {
                if cfg.partials && seq % 37 == 5 {
                    // A partial line in two json-file chunks.
                    let (a, b) = msg.split_at(10);
                    // The first chunk has no `\n` at the end of its `log` (its own time, so that a file starting
                    // with it still has a first line of its own).
                    let first =
                        docker_line(ts, "stdout", a).replacen("\\n\",\"stream", "\",\"stream", 1);
                    chunk.push_str(&first);
                    chunk.push_str(&docker_line(ts, "stdout", b));
                } else {
                    let stream = if seq % 3 == 0 { "stderr" } else { "stdout" };
                    chunk.push_str(&docker_line(ts, stream, &msg));
                }
            } else if cfg.partials && seq % 41 == 7 {
                let (a, b) = msg.split_at(12);
                chunk.push_str(&cri_line(ts, "stdout", "P", a));
                chunk.push_str(&cri_line(ts + 1, "stdout", "F", b));
            } else {
                chunk.push_str(&cri_line(ts, "stdout", "F", &msg));
            }
            lengths.push((chunk.len() - before) as u64);
            seq += 1;
        }
        append(&log, &chunk);
        w.lengths.lock().unwrap().extend(lengths);
        w.lines.store(seq, Ordering::Relaxed);
        if std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) >= cfg.rotate_at {
            rot += 1;
            let stamp = format!("20261122-{rot:06}");
            match cfg.rotation {
                Rotation::Kubelet => {
                    let mut r = Default::default();
                    if cfg.partials && !cfg.docker {
                        // The kubelet rotates in the middle of a record: its `P` line ends the rotated
                        // file, its `F` line starts the new one; it must arrive as one record, once.
                        let msg = format!("{} seq {seq:06} {pad}", container_name(k));
                        let (p, f) = rotation::cri_record_across_rotation(
                            &log,
                            1_000_000 * seq + k as u64,
                            "stdout",
                            &msg,
                            12,
                            || r = kubelet_rotate(&dir, &stamp, MAX_FILES - 2),
                        );
                        w.lengths.lock().unwrap().push(p + f);
                        seq += 1;
                        w.lines.store(seq, Ordering::Relaxed);
                    } else {
                        r = kubelet_rotate(&dir, &stamp, MAX_FILES - 2);
                    }
                    w.deleted.fetch_add(r.deleted, Ordering::Relaxed);
                    w.compressed.fetch_add(r.compressed, Ordering::Relaxed);
                }
                Rotation::CopyTruncate => {
                    // logrotate's `copytruncate` with `compress` + `delaycompress`: older copies are gzipped (never
                    // deleted here) at the next rotation, so a copy may be compressed before it was read.
                    gzip_older_copies(&dir, &w);
                    std::fs::copy(&log, dir.join(format!("0.log.{stamp}"))).unwrap();
                    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
                    f.set_len(0).unwrap();
                }
            }
            w.rotations.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn seq_of(msg: &str) -> Option<(usize, u64)> {
    let mut it = msg.split(' ');
    let c = it.next()?.strip_prefix('c')?.parse().ok()?;
    if it.next()? != "seq" {
        return None;
    }
    Some((c, it.next()?.parse().ok()?))
}

/// (container, seq) of every stored line.
fn stored(es: &EsServer) -> HashSet<(usize, u64)> {
    es.all_docs()
        .iter()
        .filter_map(|(_, _, d)| seq_of(d["message"].as_str()?))
        .collect()
}

/// A shipper config sending one batch at a time, so the order in which the test server first sees the records
/// is the order the shipper read them in; retries come quickly, so one batch at a time keeps up with the writers
/// despite the 429s.
fn config(dir: &Path, es: &EsServer) -> PathBuf {
    let p = dir.join("shipper.yaml");
    std::fs::write(
        &p,
        format!(
            "sink:\n  elasticsearch: {{url: \"{}\", index: \"logstash-%Y.%m.%d\", concurrency: 1, backoff_initial: 5ms, backoff_max: 200ms}}\n",
            es.url()
        ),
    )
    .unwrap();
    p
}

struct Containers {
    root: PathBuf,
    written: Vec<Arc<Written>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn start_writers(root: &Path, n: usize, cfg: impl Fn(usize) -> WriterCfg) -> Containers {
    let stop = Arc::new(AtomicBool::new(false));
    let mut written = Vec::new();
    let mut threads = Vec::new();
    for k in 0..n {
        let ns = if k % 2 == 0 { "shop" } else { "batch" };
        let dir = container_dir(
            root,
            ns,
            &format!("pod-{k:02}"),
            &format!("uid-{k:02}"),
            &container_name(k),
        );
        let w = Arc::new(Written::default());
        written.push(w.clone());
        let (stop, c) = (stop.clone(), cfg(k));
        threads.push(std::thread::spawn(move || writer(k, dir, c, stop, w)));
    }
    Containers {
        root: root.to_path_buf(),
        written,
        stop,
        threads,
    }
}

impl Containers {
    fn finish(mut self) -> Vec<Arc<Written>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            t.join().unwrap();
        }
        let _ = &self.root;
        self.written.clone()
    }
}

/// A failing test stops its writers too (they would write into a removed directory until the process ends).
impl Drop for Containers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Checks every stored line: metadata, no duplicate, and first sent in order per container (ranks from the test
/// server) for the containers `strict` names, else in order per file generation (copytruncate: lines written just
/// before a truncation that the shipper had not read yet come from the copy, found after the truncation). Returns
/// the seqs stored per container.
fn check_stored(es: &EsServer, strict: impl Fn(usize) -> bool) -> BTreeMap<usize, Vec<u64>> {
    let first_sent = es.first_sent();
    let mut per_container: BTreeMap<usize, Vec<(u64, u64)>> = BTreeMap::new();
    let mut per_generation: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (index, id, d) in &es.all_docs() {
        if d["stream"] == "gap" {
            continue;
        }
        assert_eq!(index, "logstash-2026.11.22");
        let msg = d["message"].as_str().unwrap();
        let (k, seq) = seq_of(msg).unwrap_or_else(|| panic!("unexpected document {d}"));
        assert!(msg.len() > 16, "a partial line shipped alone: {d}");
        let ns = if k % 2 == 0 { "shop" } else { "batch" };
        assert_eq!(d["kubernetes"]["namespace_name"], ns, "{d}");
        assert_eq!(d["kubernetes"]["pod_name"], format!("pod-{k:02}"), "{d}");
        assert_eq!(d["kubernetes"]["pod_id"], format!("uid-{k:02}"), "{d}");
        assert_eq!(d["kubernetes"]["container_name"], container_name(k), "{d}");
        assert!(d.get("parse_error").is_none(), "{d}");
        per_container
            .entry(k)
            .or_default()
            .push((first_sent[id.as_str()], seq));
        let (generation, offset) = id.split_once('-').unwrap();
        if strict(k) {
            continue;
        }
        per_generation
            .entry(generation.to_string())
            .or_default()
            .push((u64::from_str_radix(offset, 16).unwrap(), seq));
    }
    for (g, mut v) in per_generation {
        v.sort();
        let bad: Vec<_> = v.windows(2).filter(|w| w[0].1 >= w[1].1).take(5).collect();
        assert!(
            bad.is_empty(),
            "generation {g}: lines out of order (offset, seq): {bad:?}"
        );
    }
    let mut out = BTreeMap::new();
    for (k, mut v) in per_container {
        v.sort();
        if !strict(k) {
            let mut seqs: Vec<u64> = v.into_iter().map(|(_, s)| s).collect();
            seqs.sort();
            out.insert(k, seqs);
            continue;
        }
        let out_of_order: Vec<_> = v.windows(2).filter(|w| w[0].1 >= w[1].1).take(5).collect();
        assert!(
            out_of_order.is_empty(),
            "container {k}: lines first sent out of order or twice (rank, seq): {out_of_order:?}"
        );
        out.insert(k, v.into_iter().map(|(_, s)| s).collect());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_rotation_compression_crashes_429s_and_outage() {
    const CONTAINERS: usize = 16;
    let started = Instant::now();
    let mut es = EsServer::start(Options::default()).await;
    es.set_failures(0.10, 0.0, 0.0);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let data_dir = tmp.path().join("data");
    let writers = start_writers(&root, CONTAINERS, |k| WriterCfg {
        docker: k % 4 >= 2,
        rotation: if k < CONTAINERS / 2 {
            Rotation::Kubelet
        } else {
            Rotation::CopyTruncate
        },
        rotate_at: 24 * 1024,
        partials: true,
    });
    let cfg = config(tmp.path(), &es);
    let args = ["--config", cfg.to_str().unwrap(), "--batch-bytes", "262144"];
    let mut shipper = Shipper::start(&root, &data_dir, &args);
    // Schedule (seconds since start): SIGKILLs at 4, 10 and 26, each followed by 3.5 s down (2–3 kubelet rotations:
    // the file being read is renamed and then compressed meanwhile); Elasticsearch down from 15 to 21 (3–4 rotations:
    // files compressed and deleted while the shipper holds them, caught up again before the last kill); writers
    // stop at 32.
    let kill_at = [4.0, 10.0, 26.0];
    let mut kills = 0;
    let mut outage_done = false;
    let mut rotations_while_down = 0;
    while started.elapsed() < Duration::from_secs(32) {
        let t = started.elapsed().as_secs_f64();
        if kills < kill_at.len() && t >= kill_at[kills] {
            shipper.kill();
            let count = || -> Vec<u64> {
                writers.written[..CONTAINERS / 2]
                    .iter()
                    .map(|w| w.rotations.load(Ordering::Relaxed))
                    .collect()
            };
            let before = count();
            tokio::time::sleep(Duration::from_millis(3500)).await;
            let most = count()
                .iter()
                .zip(&before)
                .map(|(a, b)| a - b)
                .max()
                .unwrap();
            rotations_while_down = rotations_while_down.max(most);
            shipper = Shipper::start(&root, &data_dir, &args);
            kills += 1;
        }
        if !outage_done && t >= 15.0 {
            es.go_down().await;
            tokio::time::sleep(Duration::from_secs(6)).await;
            es.come_up().await;
            outage_done = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = writers.finish();
    let totals: Vec<u64> = written
        .iter()
        .map(|w| w.lines.load(Ordering::Relaxed))
        .collect();
    let expected: u64 = totals.iter().sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(dest) = std::env::var("TORTURE_LOGS") {
            // Debugging: keep every shipper process's log.
            let _ = std::fs::create_dir_all(&dest);
            for e in std::fs::read_dir(&data_dir).unwrap().flatten() {
                let _ = std::fs::copy(e.path(), Path::new(&dest).join(e.file_name()));
            }
        }
        let set = stored(&es);
        if set.len() as u64 >= expected {
            break;
        }
        if Instant::now() > deadline {
            let mut missing = Vec::new();
            for (k, n) in totals.iter().enumerate() {
                missing.extend((0..*n).filter(|s| !set.contains(&(k, *s))).map(|s| (k, s)));
            }
            missing.truncate(200);
            panic!(
                "only {} of {expected} lines in the index; missing (container, seq): {missing:?}\nshipper log:\n{}",
                set.len(),
                shipper.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Give late duplicates (if any) a chance to show up before checking exactly-once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_container = check_stored(&es, |k| k < CONTAINERS / 2);
    for (k, n) in totals.iter().enumerate() {
        assert_eq!(
            per_container.get(&k).cloned().unwrap_or_default(),
            (0..*n).collect::<Vec<_>>(),
            "container {k}: lost or duplicated lines"
        );
    }
    let gaps = es
        .all_docs()
        .into_iter()
        .filter(|(_, _, d)| d["stream"] == "gap")
        .count();
    assert_eq!(gaps, 0, "no loss expected, yet gap records were written");
    let stats = es.stats();
    let compressed: u64 = written
        .iter()
        .map(|w| w.compressed.load(Ordering::Relaxed))
        .sum();
    let deleted: u64 = written
        .iter()
        .map(|w| w.deleted.load(Ordering::Relaxed))
        .sum();
    assert!(stats.injected_429 > 0);
    assert!(
        compressed > 0 && deleted > 0,
        "{compressed} compressed, {deleted} deleted"
    );
    assert!(
        rotations_while_down >= 2,
        "only {rotations_while_down} rotations while the shipper was down"
    );
    eprintln!(
        "torture: {expected} lines from {CONTAINERS} containers, {kills} kills (up to {rotations_while_down} rotations while down), {} 429s, {} 409s, {compressed} files compressed, {deleted} deleted, {:.1} s",
        stats.injected_429,
        stats.conflicts,
        started.elapsed().as_secs_f64()
    );
}

/// `vigil_log_shipper_<name>_total{...container="<c>"}` values by container.
fn per_container_counter(metrics: &str, name: &str) -> HashMap<String, u64> {
    let prefix = format!("vigil_log_shipper_{name}_total{{");
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let c = rest.split("container=\"").nth(1)?.split('"').next()?;
            let v = rest.rsplit(' ').next()?.parse().ok()?;
            Some((c.to_string(), v))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_files_deleted_during_the_outage_lose_exactly_what_is_counted() {
    const CONTAINERS: usize = 6;
    let started = Instant::now();
    let mut es = EsServer::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let data_dir = tmp.path().join("data");
    // Whole lines only, so that every record is one numbered line and a loss is a set of whole lines.
    let writers = start_writers(&root, CONTAINERS, |k| WriterCfg {
        docker: k % 2 == 1,
        rotation: Rotation::Kubelet,
        rotate_at: 16 * 1024,
        partials: false,
    });
    let cfg = config(tmp.path(), &es);
    // Hold at most 48 KiB of deleted files: during a 9 s outage the kubelet deletes more than that.
    let args = [
        "--config",
        cfg.to_str().unwrap(),
        "--batch-bytes",
        "65536",
        "--deleted-files-max-bytes",
        "49152",
    ];
    let shipper = Shipper::start(&root, &data_dir, &args);
    tokio::time::sleep(Duration::from_secs(2)).await;
    es.go_down().await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    es.come_up().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = writers.finish();
    let totals: Vec<u64> = written
        .iter()
        .map(|w| w.lines.load(Ordering::Relaxed))
        .collect();
    // Wait until every line is either stored or counted lost, and the counters are steady.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (lost_bytes, lost_lines) = loop {
        if let Ok(dest) = std::env::var("TORTURE_LOGS") {
            let _ = std::fs::create_dir_all(&dest);
            for e in std::fs::read_dir(&data_dir).unwrap().flatten() {
                let _ = std::fs::copy(e.path(), Path::new(&dest).join(e.file_name()));
            }
        }
        let text = shipper.get("/metrics").await.unwrap_or_default();
        let bytes = per_container_counter(&text, "lost_bytes");
        let lines = per_container_counter(&text, "lost_lines");
        let have = stored(&es).len() as u64 + lines.values().sum::<u64>();
        if have >= totals.iter().sum::<u64>() {
            break (bytes, lines);
        }
        assert!(
            Instant::now() < deadline,
            "{have} of {} lines stored or counted lost\nshipper log:\n{}",
            totals.iter().sum::<u64>(),
            shipper.stderr()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_container = check_stored(&es, |_| true);
    let gaps: Vec<serde_json::Value> = es
        .all_docs()
        .into_iter()
        .filter(|(_, _, d)| d["stream"] == "gap")
        .map(|(_, _, d)| d)
        .collect();
    let mut total_lost = 0;
    for (k, w) in written.iter().enumerate() {
        let name = container_name(k);
        let have: HashSet<u64> = per_container
            .get(&k)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let lengths = w.lengths.lock().unwrap();
        let missing: Vec<u64> = (0..totals[k]).filter(|s| !have.contains(s)).collect();
        let missing_bytes: u64 = missing.iter().map(|&s| lengths[s as usize]).sum();
        assert_eq!(
            lost_bytes.get(&name).copied().unwrap_or(0),
            missing_bytes,
            "container {name}: lost bytes counted vs missing lines' bytes ({} lines missing)",
            missing.len()
        );
        assert_eq!(
            lost_lines.get(&name).copied().unwrap_or(0),
            missing.len() as u64,
            "container {name}: lost lines counted vs missing"
        );
        let gap_bytes: u64 = gaps
            .iter()
            .filter(|g| g["kubernetes"]["container_name"] == name.as_str())
            .map(|g| g["log_gap"]["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(gap_bytes, missing_bytes, "container {name}: gap records");
        total_lost += missing.len();
    }
    assert!(
        total_lost > 0,
        "the cap was never reached: nothing lost, nothing shown"
    );
    let log = shipper.stderr();
    assert!(
        log.contains("log data deleted before it was shipped"),
        "{log}"
    );
    eprintln!(
        "torture variant: {} lines, {total_lost} lost and counted exactly, {} gap records, {:.1} s",
        totals.iter().sum::<u64>(),
        gaps.len(),
        started.elapsed().as_secs_f64()
    );
}
