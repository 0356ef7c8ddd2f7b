//! The torture test: 20 containers (CRI and docker formats) written continuously, kubelet-style rename
//! rotation (plus gzip of older rotated files) on half of them and copytruncate on the other half; the
//! real `vigil log-shipper` is SIGKILLed and restarted several times; the `_bulk` test server fails 10%
//! of items with 429 and is down for several seconds. At the end every line is in the index exactly
//! once, in order per file, with the right metadata.
//!
//! Copytruncate note: lines written between the copy and the truncate are lost by ANY shipper (they are
//! in neither file once the truncate happens). As logrotate's users must, the writer pauses around its
//! copytruncate (here the writer does the rotation itself, so nothing is written in between).
//! Gzip note: like the kubelet, a rotated file is compressed only at a later rotation; here additionally
//! only once its last line is in the index, because deleting a file that no shipper has read yet loses it
//! for any shipper (the kubelet's rotation interval makes this practically never happen).

#[path = "es_bulk_server/mod.rs"]
mod es_bulk_server;
#[path = "es_bulk_server/harness.rs"]
mod harness;

use es_bulk_server::{EsServer, Options};
use harness::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CONTAINERS: usize = 20;
const ROTATE_AT: u64 = 48 * 1024;

#[derive(Clone, Copy, PartialEq)]
enum Rotation {
    Rename,
    CopyTruncate,
}

struct Rotated {
    container: usize,
    path: PathBuf,
    first_seq: u64,
    last_seq: u64,
}

fn container_name(k: usize) -> String {
    format!("c{k:02}")
}

/// Appends numbered lines to `<dir>/0.log` until `stop`, rotating as configured.
fn writer(
    k: usize,
    dir: PathBuf,
    docker: bool,
    rotation: Rotation,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    rotated: Arc<Mutex<Vec<Rotated>>>,
) {
    let log = dir.join("0.log");
    let mut seq = 0u64;
    let mut first_seq = 0u64;
    let mut rot = 0u32;
    let pad = "p".repeat(40 + k * 3);
    while !stop.load(Ordering::Relaxed) {
        let mut chunk = String::new();
        for _ in 0..5 {
            let ts = 1_000_000 * seq + k as u64;
            let msg = format!("{} seq {seq:06} {pad}", container_name(k));
            if docker {
                if seq % 37 == 5 {
                    // A partial line in two json-file chunks.
                    let (a, b) = msg.split_at(10);
                    let la = serde_json::to_string(a).unwrap();
                    chunk.push_str(&format!("{{\"log\":{la},\"stream\":\"stdout\",\"time\":\"2026-11-22T10:00:00.000000000Z\"}}\n"));
                    chunk.push_str(&docker_line(ts, "stdout", b));
                } else {
                    chunk.push_str(&docker_line(
                        ts,
                        if seq % 3 == 0 { "stderr" } else { "stdout" },
                        &msg,
                    ));
                }
            } else if seq % 41 == 7 {
                let (a, b) = msg.split_at(12);
                chunk.push_str(&cri_line(ts, "stdout", "P", a));
                chunk.push_str(&cri_line(ts + 1, "stdout", "F", b));
            } else {
                chunk.push_str(&cri_line(ts, "stdout", "F", &msg));
            }
            seq += 1;
        }
        append(&log, &chunk);
        written.store(seq, Ordering::Relaxed);
        if std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) >= ROTATE_AT {
            rot += 1;
            let target = dir.join(format!("0.log.20261122-1030{rot:02}"));
            match rotation {
                Rotation::Rename => {
                    std::fs::rename(&log, &target).unwrap();
                }
                Rotation::CopyTruncate => {
                    std::fs::copy(&log, &target).unwrap();
                    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
                    f.set_len(0).unwrap();
                }
            }
            rotated.lock().unwrap().push(Rotated {
                container: k,
                path: target,
                first_seq,
                last_seq: seq - 1,
            });
            first_seq = seq;
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

/// (container, seq) of every stored document.
fn stored(es: &EsServer) -> HashSet<(usize, u64)> {
    es.all_docs()
        .iter()
        .filter_map(|(_, _, d)| seq_of(d["message"].as_str()?))
        .collect()
}

fn gzip(path: &PathBuf) {
    let data = std::fs::read(path).unwrap();
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&tmp).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&data).unwrap();
    gz.finish().unwrap();
    std::fs::rename(&tmp, format!("{}.gz", path.display())).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_rotation_crashes_429s_and_outage() {
    let started = Instant::now();
    let mut es = EsServer::start(Options::default()).await;
    es.set_failures(0.10, 0.0, 0.0);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let data_dir = tmp.path().join("data");
    let stop = Arc::new(AtomicBool::new(false));
    let rotated: Arc<Mutex<Vec<Rotated>>> = Arc::default();
    let mut counts = Vec::new();
    let mut threads = Vec::new();
    for k in 0..CONTAINERS {
        let ns = if k % 2 == 0 { "shop" } else { "batch" };
        let dir = container_dir(
            &root,
            ns,
            &format!("pod-{k:02}"),
            &format!("uid-{k:02}"),
            &container_name(k),
        );
        let docker = k % 4 >= 2;
        let rotation = if k < CONTAINERS / 2 {
            Rotation::Rename
        } else {
            Rotation::CopyTruncate
        };
        let written = Arc::new(AtomicU64::new(0));
        counts.push(written.clone());
        let (stop, rotated) = (stop.clone(), rotated.clone());
        threads.push(std::thread::spawn(move || {
            writer(k, dir, docker, rotation, stop, written, rotated)
        }));
    }
    let sink = format!("es:{}", es.url());
    let args = ["--sink", sink.as_str(), "--batch-bytes", "262144"];
    let mut shipper = Shipper::start(&root, &data_dir, &args);
    let mut kills = 0;
    let mut outage_done = false;
    let mut gzipped = 0usize;
    let mut last_gzip_check = Instant::now();
    // Schedule (seconds since start): kills at 5, 11 and 22; Elasticsearch down from 14 to 19; writers stop at 28.
    let kill_at = [5.0, 11.0, 22.0];
    while started.elapsed() < Duration::from_secs(28) {
        let t = started.elapsed().as_secs_f64();
        if kills < kill_at.len() && t >= kill_at[kills] {
            shipper.kill();
            tokio::time::sleep(Duration::from_millis(300)).await;
            shipper = Shipper::start(&root, &data_dir, &args);
            kills += 1;
        }
        if !outage_done && t >= 14.0 {
            es.go_down().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            es.come_up().await;
            outage_done = true;
        }
        if last_gzip_check.elapsed() > Duration::from_secs(2) {
            last_gzip_check = Instant::now();
            let have = stored(&es);
            let mut r = rotated.lock().unwrap();
            // Keep the newest rotated file of each container uncompressed (the kubelet gzips at the next rotation).
            let mut newest: HashMap<usize, usize> = HashMap::new();
            for (i, f) in r.iter().enumerate() {
                newest.insert(f.container, i);
            }
            let mut keep = Vec::new();
            for (i, f) in r.drain(..).enumerate() {
                let complete = (f.first_seq..=f.last_seq).all(|n| have.contains(&(f.container, n)));
                if newest.get(&f.container) != Some(&i) && complete {
                    gzip(&f.path);
                    gzipped += 1;
                } else {
                    keep.push(f);
                }
            }
            *r = keep;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let totals: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let expected: u64 = totals.iter().sum();
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let set = stored(&es);
        let have = set.len() as u64;
        if have >= expected {
            break;
        }
        if Instant::now() > deadline {
            let mut missing = Vec::new();
            for (k, n) in totals.iter().enumerate() {
                for seq in 0..*n {
                    if !set.contains(&(k, seq)) {
                        missing.push((k, seq));
                    }
                }
            }
            missing.truncate(200);
            panic!("only {have} of {expected} lines in the index; missing (container, seq): {missing:?}\nshipper log:\n{}", shipper.stderr());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Give late duplicates (if any) a chance to show up before checking exactly-once.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let docs = es.all_docs();
    let mut per_container: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut per_generation: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (index, id, d) in &docs {
        assert_eq!(index, "logstash-2026.11.22");
        let msg = d["message"].as_str().unwrap();
        let (k, seq) = seq_of(msg).unwrap_or_else(|| panic!("unexpected document {d}"));
        per_container.entry(k).or_default().push(seq);
        let ns = if k % 2 == 0 { "shop" } else { "batch" };
        assert_eq!(d["kubernetes"]["namespace_name"], ns, "{d}");
        assert_eq!(d["kubernetes"]["pod_name"], format!("pod-{k:02}"), "{d}");
        assert_eq!(d["kubernetes"]["pod_id"], format!("uid-{k:02}"), "{d}");
        assert_eq!(d["kubernetes"]["container_name"], container_name(k), "{d}");
        assert!(d.get("parse_error").is_none(), "{d}");
        let (generation, offset) = id.split_once('-').unwrap();
        per_generation
            .entry(generation.to_string())
            .or_default()
            .push((u64::from_str_radix(offset, 16).unwrap(), seq));
    }
    for (k, seqs) in &per_container {
        let mut sorted = seqs.clone();
        sorted.sort();
        let n = totals[*k];
        let dups = sorted.windows(2).filter(|w| w[0] == w[1]).count();
        assert_eq!(dups, 0, "container {k}: duplicated lines");
        assert_eq!(
            sorted,
            (0..n).collect::<Vec<_>>(),
            "container {k}: lost lines"
        );
    }
    // In order per file: within a file generation, offsets and line numbers rise together.
    for (g, mut v) in per_generation {
        v.sort();
        assert!(
            v.windows(2).all(|w| w[0].1 < w[1].1),
            "generation {g}: lines out of order"
        );
    }
    let stats = es.stats();
    assert!(stats.injected_429 > 0);
    assert!(gzipped > 0, "no rotated file was compressed");
    eprintln!(
        "torture: {expected} lines from {CONTAINERS} containers, {kills} kills, {} 429s, {} 409s, {gzipped} gzipped, {:.1} s",
        stats.injected_429,
        stats.conflicts,
        started.elapsed().as_secs_f64()
    );
}
