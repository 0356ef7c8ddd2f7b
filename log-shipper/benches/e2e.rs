//! End-to-end throughput: log files → `vigil log-shipper` (in process) → the strict `_bulk` test server,
//! and rsyslog's imfile → omfile on the same files in the same run (the peer). Prints MiB/s for both.
//!
//! Then the same amount of data again with a kubelet-like compressed backlog: per container three gzip-compressed
//! rotated files, one plain rotated file and the live file (rsyslog cannot read `.gz`, so it has no figure there).
//!
//! Run: `cargo bench -p vigil-log-shipper --bench e2e` (release). Set `E2E_MIB` to change the data size,
//! `E2E_GZ=0` to skip the compressed run. `E2E_OUTAGE_SECS=30` measures instead what an Elasticsearch outage costs
//! (memory, deleted files held open, loss) while kubelet-rotated containers write.

#[path = "../../tests/support/es_bulk.rs"]
#[allow(dead_code, unused_imports)]
mod es_bulk_server;
#[path = "../../tests/support/kubelet_logs.rs"]
mod kubelet_logs;
mod support;

/// The allocator the `vigil` binary uses (src/main.rs), so the figures are the binary's; run
/// with the binary's allocator settings in the environment:
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=1000`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use kubelet_logs::kubelet_rotate;

const FILES: usize = 8;

fn write_files(root: &Path, total: usize) -> (usize, usize) {
    let (mut bytes, mut lines) = (0, 0);
    for f in 0..FILES {
        let dir = root.join(format!("ns_pod-{f}_uid-{f}/app"));
        std::fs::create_dir_all(&dir).unwrap();
        let (s, n) = support::cri_lines(total / FILES, &format!("f{f} "));
        std::fs::write(dir.join("0.log"), &s).unwrap();
        bytes += s.len();
        lines += n;
    }
    (bytes, lines)
}

/// The same data split like the kubelet leaves it: `0.log.<stamp>.gz` ×3, `0.log.<stamp>`, `0.log`.
/// Returns (decompressed bytes, lines, bytes on disk).
fn write_files_with_backlog(root: &Path, total: usize) -> (usize, usize, u64) {
    use std::io::Write;
    let (mut bytes, mut lines, mut disk) = (0, 0, 0u64);
    for f in 0..FILES {
        let dir = root.join(format!("ns_pod-{f}_uid-{f}/app"));
        std::fs::create_dir_all(&dir).unwrap();
        let (s, n) = support::cri_lines(total / FILES, &format!("f{f} "));
        bytes += s.len();
        lines += n;
        // Five parts cut at line ends.
        let mut parts = Vec::new();
        let mut start = 0;
        for p in 1..=5 {
            let end = if p == 5 {
                s.len()
            } else {
                let at = s.len() * p / 5;
                at + s[at..].find('\n').unwrap() + 1
            };
            parts.push(&s[start..end]);
            start = end;
        }
        for (i, part) in parts.iter().enumerate() {
            let name = match i {
                0..=2 => format!("0.log.20261122-10000{i}.gz"),
                3 => "0.log.20261122-100003".to_string(),
                _ => "0.log".to_string(),
            };
            let path = dir.join(&name);
            if name.ends_with(".gz") {
                let mut gz = flate2::write::GzEncoder::new(
                    std::fs::File::create(&path).unwrap(),
                    flate2::Compression::default(),
                );
                gz.write_all(part.as_bytes()).unwrap();
                gz.finish().unwrap();
            } else {
                std::fs::write(&path, part).unwrap();
            }
            disk += std::fs::metadata(&path).unwrap().len();
        }
    }
    (bytes, lines, disk)
}

fn count_lines(path: &Path) -> usize {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return 0,
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => return n,
            Ok(k) => n += memchr::memchr_iter(b'\n', &buf[..k]).count(),
        }
    }
}

const SERVER_THREAD: &str = "es-bulk-server";

/// CPU seconds of this process's test-server threads and of its main thread (from /proc/self/task/*/stat).
fn thread_cpu() -> (f64, f64) {
    let me = std::process::id().to_string();
    let (mut server, mut main) = (0.0, 0.0);
    for t in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let tid = t.file_name().to_string_lossy().into_owned();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let cpu =
            (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0;
        if &stat[open + 1..close] == SERVER_THREAD {
            server += cpu;
        } else if tid == me {
            main += cpu;
        }
    }
    (server, main)
}

/// CPU seconds (user + system) of a process from /proc/<pid>/stat.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return 0.0;
    };
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

fn rsyslog(root: &Path, work: &Path, lines: usize) -> Option<(Duration, f64)> {
    let out = work.join("rsyslog-out.log");
    let conf = work.join("rsyslog.conf");
    let state = work.join("rsyslog-state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{state}" maxMessageSize="64k")
module(load="imfile" mode="inotify")
input(type="imfile" file="{root}/*/app/0.log" tag="k8s:" readMode="0")
template(name="raw" type="string" string="%msg%\n")
main_queue(queue.type="direct")
action(type="omfile" file="{out}" template="raw")
"#,
            state = state.display(),
            root = root.display(),
            out = out.display()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let mut child = match std::process::Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(work.join("rsyslog.pid"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rsyslogd not runnable: {e}");
            return None;
        }
    };
    let deadline = start + Duration::from_secs(300);
    let mut done = None;
    // Count the output's lines incrementally (re-reading the whole file every poll would steal CPU from rsyslog).
    let (mut seen, mut reader) = (0usize, None::<std::fs::File>);
    let mut buf = vec![0u8; 1 << 20];
    while Instant::now() < deadline {
        if reader.is_none() {
            reader = std::fs::File::open(&out).ok();
        }
        if let Some(f) = reader.as_mut() {
            while let Ok(k) = f.read(&mut buf) {
                if k == 0 {
                    break;
                }
                seen += memchr::memchr_iter(b'\n', &buf[..k]).count();
            }
        }
        if seen >= lines {
            done = Some((start.elapsed(), cpu_seconds(&child.id().to_string())));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    done
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of this process while the shipper tails 1,000 files (file sink), at steady state.
fn footprint(rt: &tokio::runtime::Runtime) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    for f in 0..1000 {
        let dir = root.join(format!("ns_pod-{f}_uid-{f}/app"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = String::new();
        for n in 0..50 {
            s.push_str(&format!("2026-11-22T10:00:{:02}.{n:09}Z stdout F file {f} line {n} some payload text here\n", n % 60));
        }
        std::fs::write(dir.join("0.log"), s).unwrap();
    }
    let before = rss_kib("VmRSS:");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = tmp.path().join("out.ndjson");
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let args = vigil_log_shipper::Args {
            roots: vec![root.clone()],
            data_dir: Some(tmp.path().join("data")),
            listen: Some(format!("127.0.0.1:{port}")),
            sink: Some(format!("file:{}", out.display())),
            ..Default::default()
        };
        let h = tokio::spawn(vigil_log_shipper::run(args, rx));
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && count_lines(&out) < 50_000 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Steady state: everything shipped, 1,000 files still tailed (and written to now and then).
        for round in 0..5 {
            for f in (0..1000).step_by(10) {
                let p = root.join(format!("ns_pod-{f}_uid-{f}/app/0.log"));
                let mut file = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                use std::io::Write;
                writeln!(file, "2026-11-22T10:01:00.{round:09}Z stdout F more").unwrap();
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        let metrics = reqwest_free_get(port, "/metrics");
        let open = metrics.lines().find(|l| l.starts_with("vigil_log_shipper_open_files ")).unwrap_or("?").to_string();
        println!(
            "footprint: 1000 files tailed ({open}), {} lines shipped; process RSS {:.1} MiB (before start {:.1} MiB, peak {:.1} MiB)",
            count_lines(&out),
            rss_kib("VmRSS:") as f64 / 1024.0,
            before as f64 / 1024.0,
            rss_kib("VmHWM:") as f64 / 1024.0
        );
        let _ = tx.send(true);
        let _ = h.await;
    });
}

fn reqwest_free_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Ships every line under `root` with the in-process shipper; (wall, CPU in all, test server CPU, shipper CPU).
fn run_vigil(
    rt: &tokio::runtime::Runtime,
    es: &es_bulk_server::EsServer,
    root: &Path,
    data_dir: &Path,
    es_cfg: &Path,
    lines: usize,
) -> Option<(Duration, f64, f64, f64)> {
    let created0 = es.stats().created as usize;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let args = vigil_log_shipper::Args {
            roots: vec![root.to_path_buf()],
            data_dir: Some(data_dir.to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            sink: None,
            config: Some(es_cfg.to_path_buf()),
            ..Default::default()
        };
        let start = Instant::now();
        let cpu0 = cpu_seconds("self");
        let (srv0, main0) = thread_cpu();
        let h = tokio::spawn(vigil_log_shipper::run(args, rx));
        let deadline = start + Duration::from_secs(300);
        let mut done = None;
        // When each tenth of the records had arrived: the last one shows the final partial batch's wait for its
        // batch timeout (1 s by default), which a finite backlog always ends with.
        let mut marks = Vec::new();
        while Instant::now() < deadline {
            let got = es.stats().created as usize - created0;
            while marks.len() < 10 && got * 10 >= lines * (marks.len() + 1) {
                marks.push(format!(
                    "{}%@{:.2}s",
                    (marks.len() + 1) * 10,
                    start.elapsed().as_secs_f64()
                ));
            }
            if got >= lines {
                println!("e2e: records arrived {}", marks.join(" "));
                let total = cpu_seconds("self") - cpu0;
                let (srv, main) = thread_cpu();
                let server = srv - srv0;
                done = Some((
                    start.elapsed(),
                    total,
                    server,
                    total - server - (main - main0),
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = tx.send(true);
        let _ = h.await;
        assert_eq!(es.stats().conflicts, 0);
        done
    })
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Elasticsearch unreachable while 20 kubelet-rotated containers write: what the shipper holds (memory, deleted files
/// kept open) and loses, with the default cap and a small one.
fn outage(rt: &tokio::runtime::Runtime, secs: u64, cap: Option<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    const CONTAINERS: usize = 20;
    const RATE: usize = 512 * 1024;
    const ROTATE: u64 = 2 << 20;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dirs: Vec<_> = (0..CONTAINERS)
        .map(|k| {
            let d = root.join(format!("ns_pod-{k}_uid-{k}/app"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("0.log"), "").unwrap();
            d
        })
        .collect();
    let rss0 = rss_kib("VmRSS:");
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let args = vigil_log_shipper::Args {
            roots: vec![root.clone()],
            data_dir: Some(tmp.path().join("data")),
            listen: Some(format!("127.0.0.1:{port}")),
            sink: Some(format!("es:http://127.0.0.1:{closed}")),
            deleted_files_max_bytes: cap,
            ..Default::default()
        };
        let h = tokio::spawn(vigil_log_shipper::run(args, rx));
        let (mut written, mut deleted, mut rot, mut seq) = (0usize, 0usize, 0u32, 0u64);
        let (mut peak_rss, mut peak_held) = (0u64, 0f64);
        let start = Instant::now();
        let pad = "x".repeat(100);
        while start.elapsed() < Duration::from_secs(secs) {
            for d in &dirs {
                let mut chunk = String::new();
                while chunk.len() < RATE / 10 {
                    chunk.push_str(&format!("2026-11-22T10:00:00.{seq:09}Z stdout F seq {seq:010} {pad}\n"));
                    seq += 1;
                }
                use std::io::Write;
                std::fs::OpenOptions::new().append(true).open(d.join("0.log")).unwrap().write_all(chunk.as_bytes()).unwrap();
                written += chunk.len();
                if std::fs::metadata(d.join("0.log")).unwrap().len() >= ROTATE {
                    rot += 1;
                    deleted += kubelet_rotate(d, &format!("20261122-{rot:06}"), 3).deleted as usize;
                    std::fs::write(d.join("0.log"), "").unwrap();
                }
            }
            let m = reqwest_free_get(port, "/metrics");
            peak_held = peak_held.max(metric_sum(&m, "vigil_log_shipper_deleted_held_bytes"));
            peak_rss = peak_rss.max(rss_kib("VmRSS:"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let m = reqwest_free_get(port, "/metrics");
        let kept: u64 = dirs
            .iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
            .map(|e| e.metadata().unwrap().len())
            .sum();
        println!(
            "outage: {secs} s, Elasticsearch unreachable, {CONTAINERS} containers x {} KiB/s, rotation at {} MiB (kubelet: gzip, 5 files): \
             {:.1} MiB written, {deleted} files deleted by the \"kubelet\"; cap {}: peak held in deleted files {:.1} MiB, \
             lost {:.1} MiB ({} lines) counted; files kept by the kubelet {:.1} MiB on disk; process RSS peak {:.1} MiB (before start {:.1} MiB)",
            RATE / 1024,
            ROTATE >> 20,
            written as f64 / 1048576.0,
            cap.map_or("1 GiB (default)".to_string(), |c| format!("{} MiB", c >> 20)),
            peak_held / 1048576.0,
            metric_sum(&m, "vigil_log_shipper_lost_bytes_total") / 1048576.0,
            metric_sum(&m, "vigil_log_shipper_lost_lines_total"),
            kept as f64 / 1048576.0,
            peak_rss as f64 / 1024.0,
            rss0 as f64 / 1024.0,
        );
        let _ = tx.send(true);
        let _ = h.await;
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(secs) = std::env::var("E2E_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Only the outage figures.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        outage(&rt, secs, None);
        outage(&rt, secs, Some(16 << 20));
        return;
    }
    if std::env::var("E2E_FOOTPRINT").as_deref() != Ok("0") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        footprint(&rt);
    }
    let mib: usize = std::env::var("E2E_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let mib_total = mib << 20;
    let (bytes, lines) = write_files(&root, mib_total);
    println!(
        "e2e: {FILES} files, {:.1} MiB, {lines} CRI lines of 100-200 bytes",
        bytes as f64 / 1048576.0
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The test server runs on its own threads so its CPU time is measured apart from the shipper's.
    let srv_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let es = srv_rt.block_on(es_bulk_server::EsServer::start(es_bulk_server::Options {
        store_documents: false,
        ..Default::default()
    }));
    // Defaults unless E2E_CONCURRENCY / E2E_BATCH_BYTES say otherwise (to explore the in-flight trade-off).
    let es_cfg = tmp.path().join("es.yaml");
    let mut extra = String::new();
    if let Ok(c) = std::env::var("E2E_CONCURRENCY") {
        extra.push_str(&format!(", concurrency: {c}"));
    }
    if let Ok(b) = std::env::var("E2E_BATCH_BYTES") {
        extra.push_str(&format!(", batch_bytes: {b}"));
    }
    std::fs::write(
        &es_cfg,
        format!("sink: {{elasticsearch: {{url: '{}'{extra}}}}}\n", es.url()),
    )
    .unwrap();
    println!(
        "e2e: shipper config: {}",
        std::fs::read_to_string(&es_cfg).unwrap().trim()
    );
    let vigil = run_vigil(&rt, &es, &root, &tmp.path().join("data"), &es_cfg, lines);
    let mibs = |d: Duration| bytes as f64 / 1048576.0 / d.as_secs_f64();
    let mib = bytes as f64 / 1048576.0;
    match vigil {
        Some((d, cpu, server, shipper)) => println!(
            "e2e: vigil log-shipper -> _bulk test server: {:.2} s, {:.1} MiB/s wall; {cpu:.2} CPU-s in all = {:.1} MiB per CPU-second; \
             of which the shipper {shipper:.2} CPU-s = {:.1} MiB per shipper CPU-second, the test server {server:.2} CPU-s",
            d.as_secs_f64(),
            mibs(d),
            mib / cpu,
            mib / shipper
        ),
        None => println!("e2e: vigil did not finish in 300 s"),
    }
    let peer = rsyslog(&root, tmp.path(), lines);
    match peer {
        Some((d, cpu)) => println!(
            "e2e: rsyslog imfile -> omfile: {:.2} s, {:.1} MiB/s wall; {cpu:.2} CPU-s = {:.1} MiB per CPU-second",
            d.as_secs_f64(),
            mibs(d),
            mib / cpu
        ),
        None => println!("e2e: rsyslog did not finish"),
    }
    if let (Some((v, vc, _, _)), Some((p, pc))) = (vigil, peer) {
        println!(
            "e2e: speed ratio vigil/rsyslog = {:.2} (wall), {:.2} (per CPU-second)",
            p.as_secs_f64() / v.as_secs_f64(),
            pc / vc
        );
    }
    if std::env::var("E2E_GZ").as_deref() != Ok("0") {
        let root_gz = tmp.path().join("pods-gz");
        let (gz_bytes, gz_lines, disk) = write_files_with_backlog(&root_gz, mib_total);
        let gz_mib = gz_bytes as f64 / 1048576.0;
        println!(
            "e2e: with compressed backlog: {FILES} containers, each 3 .gz + 1 plain rotated + the live file; \
             {gz_mib:.1} MiB ({:.1} MiB on disk), {gz_lines} lines",
            disk as f64 / 1048576.0
        );
        match run_vigil(&rt, &es, &root_gz, &tmp.path().join("data-gz"), &es_cfg, gz_lines) {
            Some((d, cpu, server, shipper)) => println!(
                "e2e: vigil, compressed backlog -> _bulk test server: {:.2} s, {:.1} MiB/s wall (decompressed); \
                 {cpu:.2} CPU-s in all; the shipper {shipper:.2} CPU-s = {:.1} MiB per shipper CPU-second, the test server {server:.2} CPU-s",
                d.as_secs_f64(),
                gz_mib / d.as_secs_f64(),
                gz_mib / shipper
            ),
            None => println!("e2e: vigil (compressed backlog) did not finish in 300 s"),
        }
    }
}
