//! Sink benchmarks: line-protocol and remote_write (protobuf + snappy) encoding throughput on
//! one core (criterion), then end to end into a local VictoriaMetrics compared with the floor:
//! the same payloads, pre-encoded, posted in-process through the sinks' own keep-alive HTTP
//! client at the same concurrency, to the same server in the same run.
//!
//! `cargo bench -p vigil-aggregator --bench sinks` (set `VIGIL_BENCH_E2E=0` to skip the
//! end-to-end part, which needs `victoria-metrics`).

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use vigil_aggregator::batch::{Batch, LabeledMetric, MetricSet, MetricValue};
use vigil_aggregator::sinks::influxdb::LineProtocol;
use vigil_aggregator::sinks::prometheus::RemoteWriteEncoder;
use vigil_aggregator::sinks::SinkSet;

/// A cluster-sized batch: `nodes` nodes × `pods` pods, one container each, Heapster's labels
/// and ~10 metrics per set (ints, floats, labeled filesystem metrics).
fn big_batch(nodes: usize, pods: usize, ts_ms: i64, k: i64) -> Batch {
    let mut sets = BTreeMap::new();
    let l = |p: &[(&str, String)]| {
        std::sync::Arc::new(
            p.iter()
                .map(|(a, b)| (a.to_string(), b.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    for n in 0..nodes {
        let node = format!("node-{n:04}");
        let mut values = BTreeMap::new();
        values.insert("cpu/usage_rate".into(), MetricValue::Int(900 + k));
        values.insert("memory/usage".into(), MetricValue::Int(4 << 30));
        values.insert("memory/working_set".into(), MetricValue::Int(3 << 30));
        values.insert(
            "cpu/node_utilization".into(),
            MetricValue::Float(0.25 + k as f64 / 1e4),
        );
        values.insert("network/rx_rate".into(), MetricValue::Float(12345.5));
        values.insert("uptime".into(), MetricValue::Int(3_600_000 + k));
        sets.insert(
            format!("node:{node}"),
            MetricSet {
                labels: l(&[
                    ("type", "node".into()),
                    ("nodename", node.clone()),
                    ("hostname", node.clone()),
                ]),
                values,
                labeled: vec![LabeledMetric {
                    name: "filesystem/usage".into(),
                    labels: l(&[("resource_id", "/".into())]),
                    value: MetricValue::Int(1 << 30),
                }],
                ..Default::default()
            },
        );
        for p in 0..pods {
            let pod = format!("app-{n}-{p}-7f9c8d");
            let ns = format!("team-{}", p % 7);
            let mut values = BTreeMap::new();
            values.insert("cpu/usage_rate".into(), MetricValue::Int(50 + p as i64 + k));
            values.insert("cpu/usage".into(), MetricValue::Int(123_456_789_000 + k));
            values.insert(
                "memory/usage".into(),
                MetricValue::Int(100_000_000 + p as i64),
            );
            values.insert(
                "memory/working_set".into(),
                MetricValue::Int(90_000_000 + p as i64),
            );
            values.insert("memory/rss".into(), MetricValue::Int(80_000_000));
            values.insert("memory/page_faults_rate".into(), MetricValue::Float(1.25));
            values.insert(
                "network/rx_rate".into(),
                MetricValue::Float(2048.5 + k as f64),
            );
            values.insert("network/tx_rate".into(), MetricValue::Float(1024.25));
            values.insert("uptime".into(), MetricValue::Int(60_000 + k));
            sets.insert(
                format!("namespace:{ns}/pod:{pod}/container:main"),
                MetricSet {
                    labels: l(&[
                        ("type", "pod_container".into()),
                        ("nodename", node.clone()),
                        ("namespace_name", ns.clone()),
                        ("pod_name", pod.clone()),
                        ("container_name", "main".into()),
                        ("container_base_image", "registry.example/app:1.2.3".into()),
                        ("labels", format!("app:app-{p},tier:web")),
                        ("pod_id", format!("5f0c{n:04}-{p:04}-uid")),
                    ]),
                    values,
                    labeled: vec![LabeledMetric {
                        name: "filesystem/usage".into(),
                        labels: l(&[("resource_id", "Volume:data".into())]),
                        value: MetricValue::Int(4096 + k),
                    }],
                    ..Default::default()
                },
            );
        }
    }
    Batch {
        timestamp: chrono::DateTime::from_timestamp_millis(ts_ms).unwrap(),
        sets,
    }
}

fn points(b: &Batch) -> u64 {
    b.sets
        .values()
        .map(|s| (s.values.len() + s.labeled.len()) as u64)
        .sum()
}

fn encoding(c: &mut Criterion) {
    let batch = big_batch(20, 100, 1_700_000_000_000, 0);
    let n = points(&batch);
    let mut g = c.benchmark_group("sinks_encode");
    g.throughput(Throughput::Elements(n));
    let lp = LineProtocol {
        with_fields: false,
        cluster_name: "default".into(),
        disable_counter_metrics: false,
        batch_size: 10_000,
        max_body_bytes: 4 << 20,
        gzip: false,
    };
    g.bench_function("line_protocol", |b| b.iter(|| lp.encode(&batch)));
    let rw = RemoteWriteEncoder {
        batch_size: 2000,
        cluster_name: String::new(),
    };
    g.bench_function("remote_write_protobuf_snappy", |b| {
        b.iter(|| rw.encode(&batch))
    });
    g.bench_function("remote_write_protobuf_only", |b| {
        b.iter(|| rw.encode_raw(&batch))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(20);
    targets = encoding
}

struct Vm {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_vm() -> Vm {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("victoria-metrics")
        .arg(format!("-storageDataPath={}", dir.path().display()))
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg("-loggerLevel=ERROR")
        .arg("-retentionPeriod=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("victoria-metrics must be installed for the end-to-end benchmark");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Vm {
                child,
                port,
                _dir: dir,
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("victoria-metrics did not start");
}

/// Pushes `batches` through a SinkSet into `uri`; returns seconds until all points were accepted.
fn vigil_run(uri: &str, batches: &[Arc<Batch>]) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let set = Arc::new(SinkSet::from_uris(&[uri.to_string()], None).unwrap());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let h = tokio::spawn(set.clone().run(rx));
        let total: u64 = batches.iter().map(|b| points(b)).sum();
        let t = Instant::now();
        for b in batches {
            set.push(b.clone());
        }
        loop {
            let st = &set.stats()[0];
            assert_eq!(
                st.batches_dropped + st.payloads_rejected + st.queue.dropped_payloads,
                0,
                "{st:?}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "not delivered within 120s: {st:?}"
            );
            if st.points_sent >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let _ = tx.send(true);
        let _ = h.await;
        secs
    })
}

/// The floor: posts the pre-encoded payloads through the sinks' own HTTP client
/// (`sinks::http::client`, keep-alive pool), `concurrency` requests at a time in order, as the
/// delivery loop does, on the same runtime shape as `vigil_run`. Returns seconds.
fn floor_run(
    url: &str,
    headers: &[(&str, &str)],
    bodies: &[bytes::Bytes],
    concurrency: usize,
) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = vigil_aggregator::sinks::http::client(Duration::from_secs(30), false).unwrap();
        let t = Instant::now();
        for chunk in bodies.chunks(concurrency) {
            let sends = chunk.iter().map(|b| {
                let mut req = client.post(url).body(b.clone());
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                async move {
                    let resp = req.send().await.expect("floor request failed");
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    assert!(status.is_success(), "floor request: HTTP {status}: {text}");
                }
            });
            futures_util::future::join_all(sends).await;
        }
        t.elapsed().as_secs_f64()
    })
}

fn end_to_end() {
    if std::env::var("VIGIL_BENCH_E2E").as_deref() == Ok("0") {
        return;
    }
    let vm = start_vm();
    let base = format!("http://127.0.0.1:{}", vm.port);
    let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
    // 10 resolutions of a 20-node × 100-pod cluster.
    let mk = |offset: i64| -> Vec<Arc<Batch>> {
        (0..10)
            .map(|k| Arc::new(big_batch(20, 100, now - (offset + 10 - k) * 10_000, k)))
            .collect()
    };
    let tok = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tok.path(), "bench").unwrap();
    for (name, uri, url, headers, offset) in [
        (
            "remote_write",
            format!("prometheus-remote-write:{base}/api/v1/write?max_pending_batches=16&max_memory_bytes=268435456"),
            format!("{base}/api/v1/write"),
            vec![
                ("Content-Encoding", "snappy"),
                ("Content-Type", "application/x-protobuf"),
                ("X-Prometheus-Remote-Write-Version", "0.1.0"),
            ],
            0,
        ),
        (
            "influxdb_v2",
            format!(
                "influxdb2:{base}?org=o&bucket=b&max_pending_batches=16&max_memory_bytes=268435456&token_file={}",
                tok.path().display()
            ),
            format!("{base}/api/v2/write?org=o&bucket=b&precision=ns"),
            vec![
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Authorization", "Token bench"),
            ],
            100,
        ),
    ] {
        // Warm up the server's series index with the same series.
        let warm = mk(offset + 20);
        vigil_run(&uri, &warm[..2]);
        // Floor: the same encoding, pre-encoded, posted through the same client (new
        // timestamps, same series), once before and once after vigil's run; the faster counts.
        let floor_batches = mk(offset + 40);
        let encode_all = |floor_batches: &[Arc<Batch>]| -> Vec<bytes::Bytes> {
            if name == "remote_write" {
                let enc = RemoteWriteEncoder {
                    batch_size: 2000,
                    cluster_name: String::new(),
                };
                floor_batches
                    .iter()
                    .flat_map(|b| enc.encode(b))
                    .map(|p| p.body)
                    .collect()
            } else {
                let enc = LineProtocol {
                    with_fields: false,
                    cluster_name: "default".into(),
                    disable_counter_metrics: false,
                    batch_size: 10_000,
                    max_body_bytes: 4 << 20,
                    gzip: false,
                };
                floor_batches
                    .iter()
                    .flat_map(|b| enc.encode(b).payloads)
                    .map(|p| p.body)
                    .collect()
            }
        };
        let total: u64 = floor_batches.iter().map(|b| points(b)).sum();
        let bodies = encode_all(&floor_batches);
        let bodies2 = encode_all(&mk(offset + 60));
        let floor1 = floor_run(&url, &headers, &bodies, 1);
        let vigil_s = vigil_run(&uri, &mk(offset));
        let floor2 = floor_run(&url, &headers, &bodies2, 1);
        let floor_s = floor1.min(floor2);
        let (v, f) = (total as f64 / vigil_s, total as f64 / floor_s);
        println!(
            "e2e {name}: {total} points in {} requests; vigil {:.0} points/s ({vigil_s:.3}s, encode+queue+send) vs floor (pre-encoded, same client, concurrency 1) {:.0} points/s (best of {floor1:.3}s before, {floor2:.3}s after): ratio {:.2}",
            bodies.len(),
            v,
            f,
            v / f
        );
    }
}

/// On-CPU nanoseconds of the calling thread (`/proc/thread-self/schedstat`), so the per-core
/// figure does not depend on how busy the shared machine is.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Encodes the batch repeatedly for ~2 s of wall time; prints points per CPU-second and per wall-second.
fn per_core(name: &str, batch: &Batch, f: &dyn Fn(&Batch) -> usize) {
    let n = points(batch);
    let (w0, c0) = (Instant::now(), thread_cpu_ns());
    let mut iters = 0u64;
    let mut bytes = 0usize;
    while w0.elapsed() < Duration::from_secs(2) {
        bytes += std::hint::black_box(f(batch));
        iters += 1;
    }
    let wall = w0.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns() - c0) as f64 / 1e9;
    println!(
        "per-core {name}: {:.2} M points per CPU-second ({:.2} M per wall-second; {iters} x {n} points, {:.0} bytes/point)",
        (iters * n) as f64 / cpu / 1e6,
        (iters * n) as f64 / wall / 1e6,
        bytes as f64 / (iters * n) as f64
    );
}

fn main() {
    benches();
    let batch = big_batch(20, 100, 1_700_000_000_000, 0);
    let lp = LineProtocol {
        with_fields: false,
        cluster_name: "default".into(),
        disable_counter_metrics: false,
        batch_size: 10_000,
        max_body_bytes: 4 << 20,
        gzip: false,
    };
    let rw = RemoteWriteEncoder {
        batch_size: 2000,
        cluster_name: String::new(),
    };
    per_core("line_protocol", &batch, &|b| {
        lp.encode(b).payloads.iter().map(|p| p.body.len()).sum()
    });
    per_core("remote_write_protobuf_snappy", &batch, &|b| {
        rw.encode(b).iter().map(|p| p.body.len()).sum()
    });
    per_core("remote_write_protobuf_only", &batch, &|b| {
        rw.encode_raw(b).iter().map(|p| p.0.len()).sum()
    });
    // A floor from the same run: copying a buffer the size of the line-protocol output.
    let lp_bytes: usize = lp
        .encode(&batch)
        .payloads
        .iter()
        .map(|p| p.body.len())
        .sum();
    let src = vec![b'x'; lp_bytes];
    per_core("floor_memcpy_of_line_protocol_bytes", &batch, &|_| {
        std::hint::black_box(src.clone()).len()
    });
    Criterion::default().configure_from_args().final_summary();
    end_to_end();
}
