//! File → `_bulk` body throughput of the real reader (discovery, read, CRI parse, encode, batch), on one core,
//! against a floor: reading the same file and splitting it into lines.

mod support;

/// The allocator the `vigil` binary uses (src/main.rs), so the figures are the binary's; run
/// with the binary's allocator settings in the environment:
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=1000`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vigil_log_shipper::discovery::{Discovery, DiscoveryConfig};
use vigil_log_shipper::enrich::{Encoder, IndexPattern, RecordConfig};
use vigil_log_shipper::metrics::Metrics;
use vigil_log_shipper::parse::OverLong;
use vigil_log_shipper::tail::{checkpoint::Store, Reader, ReaderConfig};

/// Writes CRI lines of 100–200 bytes; returns (bytes, lines).
pub fn write_cri(path: &Path, target_bytes: usize) -> (usize, usize) {
    let (s, n) = support::cri_lines(target_bytes, "");
    std::fs::write(path, &s).unwrap();
    (s.len(), n)
}

/// Runs the reader over `root` until `lines` records came out; acknowledges every batch. Returns body bytes.
pub fn read_all(root: &Path, data_dir: &Path, lines: usize) -> usize {
    let _ = std::fs::remove_file(data_dir.join("checkpoints.json"));
    let discovery = Discovery::new(DiscoveryConfig {
        roots: vec![root.to_path_buf()],
        ..Default::default()
    })
    .unwrap();
    // An acknowledging sink hands buffers back, as the real ones do.
    let buffers = vigil_log_shipper::sinks::BufferPool::default();
    let cfg = ReaderConfig {
        discovery,
        max_line_bytes: 1 << 20,
        over_long: OverLong::Truncate,
        multiline: Vec::new(),
        encoder: Encoder::new(
            IndexPattern::parse("logstash-%Y.%m.%d").unwrap(),
            RecordConfig::default(),
        ),
        batch_bytes: 5 << 20,
        batch_timeout: Duration::from_millis(5),
        poll_interval: Duration::from_millis(5),
        rescan_interval: Duration::from_secs(60),
        store: Store::new(data_dir),
        checkpoint_interval: Duration::from_secs(60),
        buffers: buffers.clone(),
        pod_metadata: None,
        deleted_files_max_bytes: 1 << 30,
    };
    let reader = Reader::new(cfg, Arc::new(Metrics::default())).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let (_wake_tx, wake_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let h = std::thread::spawn(move || reader.run(tx, ack_rx, wake_rx, stop_rx));
    let (mut n, mut bytes) = (0usize, 0usize);
    while n < lines {
        let b = rx.blocking_recv().expect("reader alive");
        n += b.items.len();
        bytes += b.buf.len();
        let _ = ack_tx.send(b.seq);
        buffers.give(b.buf);
    }
    stop_tx.send(true).unwrap();
    while let Some(b) = rx.blocking_recv() {
        let _ = ack_tx.send(b.seq);
    }
    h.join().unwrap().unwrap();
    assert_eq!(n, lines);
    bytes
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = root.join("ns_pod_uid/app");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("0.log");
    let (bytes, lines) = write_cri(&file, 32 << 20);
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut g = c.benchmark_group("file_to_bulk_body");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.bench_function("reader_cri_100_200B_lines", |b| {
        b.iter(|| read_all(&root, &data_dir, lines))
    });
    g.bench_function("floor_read_and_split_lines", |b| {
        b.iter(|| {
            let data = std::fs::read(&file).unwrap();
            let n = memchr::memchr_iter(b'\n', &data).count();
            assert_eq!(n, lines);
        })
    });
    g.finish();
}

/// Process CPU seconds (user + system) from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of the line (utime, stime) are 12 and 13 after the command name and state.
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// Throughput per CPU second: on a shared, loaded machine this is the "one core" figure.
fn per_cpu_second(_c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = root.join("ns_pod_uid/app");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("0.log");
    let (bytes, lines) = write_cri(&file, 64 << 20);
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let runs = 4;
    let c0 = cpu_seconds();
    let w0 = std::time::Instant::now();
    for _ in 0..runs {
        read_all(&root, &data_dir, lines);
    }
    let (cpu, wall) = (cpu_seconds() - c0, w0.elapsed().as_secs_f64());
    let mib = (bytes * runs) as f64 / 1048576.0;
    println!("per-cpu: reader file->bulk body: {:.1} MiB per CPU-second ({:.1} MiB/s wall, {cpu:.2} CPU-s)", mib / cpu, mib / wall);
    let c0 = cpu_seconds();
    for _ in 0..runs {
        let data = std::fs::read(&file).unwrap();
        assert_eq!(memchr::memchr_iter(b'\n', &data).count(), lines);
    }
    let cpu = cpu_seconds() - c0;
    println!(
        "per-cpu: floor read+split lines: {:.1} MiB per CPU-second",
        mib / cpu
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = bench, per_cpu_second
}
criterion_main!(benches);
