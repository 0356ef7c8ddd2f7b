//! PromQL over the store at 1,000 nodes × 30 pods × 2 containers with the full 15-minute window
//! (60 rounds, 15 s apart): the four queries of issue 14 and the web UI overview's three instant
//! queries (issue 17) through the engine (criterion), and the
//! same queries, same data, same run, on a real Prometheus filled through remote_write by the
//! aggregator's own encoder (median of its HTTP API's answer time).
//!
//! `cargo bench -p vigil-aggregator --bench query -- --warm-up-time 1 --measurement-time 3`
//! Environment: `QUERY_BENCH_NODES` (1000), `QUERY_BENCH_ROUNDS` (60),
//! `QUERY_BENCH_PROMETHEUS` (the `prometheus` binary; `off` leaves the peer out),
//! `QUERY_BENCH_PROMETHEUS_METRICS` (a comma list of Heapster names, e.g.
//! `cpu/usage_rate,memory/working_set,network/rx`: only these are written into Prometheus, so
//! that 1,000 nodes can be loaded into it in minutes; vigil's store still holds everything, and
//! only the queries over those names are comparable).

/// The allocator the `vigil` binary uses (src/main.rs); run with
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=1000` as the binary sets them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use vigil_aggregator::processors::{Decoder, Processor};
use vigil_aggregator::sim::{self, Shape, Sim};
use vigil_aggregator::sinks::prometheus::RemoteWriteEncoder;
use vigil_aggregator::store::Store;
use vigil_promql::Engine;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A real Prometheus with the remote-write receiver on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(bin: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(&conf, "global:\n  scrape_interval: 15s\n").unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", conf.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--query.max-samples=500000000")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin} (Debian package prometheus) must be installed: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let client = blocking::blocking_client();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{url}/-/ready")).send().map(|r| r.status().is_success()) != Ok(true) {
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    Prometheus {
        child,
        url,
        _dir: dir,
    }
}

/// A tiny blocking HTTP client over reqwest's async one (the aggregator has no blocking feature).
mod blocking {
    pub use ::reqwest::*;
    pub struct Blocking {
        rt: tokio::runtime::Runtime,
        client: ::reqwest::Client,
    }
    pub struct Req<'a> {
        b: &'a Blocking,
        req: ::reqwest::RequestBuilder,
    }
    pub fn blocking_client() -> Blocking {
        Blocking {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: ::reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(300))
                .build()
                .unwrap(),
        }
    }
    impl Blocking {
        pub fn get(&self, url: String) -> Req<'_> {
            Req {
                b: self,
                req: self.client.get(url),
            }
        }
        pub fn post(&self, url: String) -> Req<'_> {
            Req {
                b: self,
                req: self.client.post(url),
            }
        }
    }
    impl Req<'_> {
        pub fn query(self, q: &[(&str, String)]) -> Self {
            Req {
                b: self.b,
                req: self.req.query(q),
            }
        }
        pub fn header(self, k: &str, v: &str) -> Self {
            Req {
                b: self.b,
                req: self.req.header(k, v),
            }
        }
        pub fn body(self, body: Vec<u8>) -> Self {
            Req {
                b: self.b,
                req: self.req.body(body),
            }
        }
        pub fn send(self) -> std::result::Result<Resp, String> {
            let b = self.b;
            b.rt.block_on(async move {
                let r = self.req.send().await.map_err(|e| e.to_string())?;
                let status = r.status();
                let text = r.text().await.map_err(|e| e.to_string())?;
                Ok(Resp { status, text })
            })
        }
    }
    pub struct Resp {
        status: StatusCode,
        pub text: String,
    }
    impl Resp {
        pub fn status(&self) -> StatusCode {
            self.status
        }
    }
}

/// The UI's `tagged()`: each expression labelled with its name, joined with `or`.
fn tagged(tag: &str, parts: &[(&str, &str)]) -> String {
    parts
        .iter()
        .map(|(e, n)| format!("label_replace({e}, \"{tag}\", \"{n}\", \"\", \"\")"))
        .collect::<Vec<_>>()
        .join(" or ")
}

struct Query {
    name: &'static str,
    expr: String,
    /// None: instant at `t`; Some: range over the window at 15 s.
    range: bool,
}

fn bench(c: &mut Criterion) {
    let nodes = env_usize("QUERY_BENCH_NODES", 1000);
    let rounds = env_usize("QUERY_BENCH_ROUNDS", 60);
    let peer_bin = std::env::var("QUERY_BENCH_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let prom = (peer_bin != "off").then(|| start_prometheus(&peer_bin));
    let peer_only: Option<Vec<String>> = std::env::var("QUERY_BENCH_PROMETHEUS_METRICS")
        .ok()
        .map(|v| v.split(',').map(|n| n.trim().to_string()).collect());
    let http = blocking::blocking_client();

    // The window: `rounds` rounds 15 s apart, each processed and stored as live, and the same
    // batch written into Prometheus as the remote_write sink writes it.
    let sim = Sim::new(Shape::heapster(nodes));
    let store = Store::new(15 * 60 * 1000, 10_000_000);
    let mut proc = Processor::new(Duration::from_secs(900));
    let decoder = Decoder::default();
    let encoder = RemoteWriteEncoder {
        batch_size: 50_000,
        cluster_name: String::new(),
    };
    let start = Utc::now() - chrono::Duration::seconds(15 * rounds as i64 + 60);
    let mut t = start;
    let (mut store_t, mut write_t) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        t += chrono::Duration::seconds(15);
        let bodies = sim::bodies(&sim, t);
        let t0 = Instant::now();
        let batch = proc.process_owned(t, sim::decode_bodies(&decoder, &bodies));
        store.ingest(&batch).unwrap();
        store_t += t0.elapsed();
        if let Some(p) = &prom {
            let t1 = Instant::now();
            let filtered;
            let to_write = match &peer_only {
                None => &batch,
                Some(names) => {
                    let mut b = batch.clone();
                    for set in b.sets.values_mut() {
                        set.values.retain(|name, _| names.iter().any(|n| n.as_str() == *name));
                        set.labeled.retain(|m| names.iter().any(|n| n.as_str() == m.name));
                    }
                    filtered = b;
                    &filtered
                }
            };
            for payload in encoder.encode(to_write) {
                let r = http
                    .post(format!("{}/api/v1/write", p.url))
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .body(payload.body.to_vec())
                    .send()
                    .expect("remote write to prometheus");
                assert!(r.status().is_success(), "prometheus refused a write: {}", r.text);
            }
            write_t += t1.elapsed();
        }
    }
    let series = store.stats.series.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "query bench: {nodes} nodes, {rounds} rounds, {series} series; store {:.1} s, \
         remote write {:.1} s; points {} MB, label index {} MB",
        store_t.as_secs_f64(),
        write_t.as_secs_f64(),
        store.points_heap_bytes() / 1_000_000,
        store.index_heap_bytes() / 1_000_000,
    );

    let at = t.timestamp_millis();
    let (pod, ns) = sim::pod_ref(&sim.shape, nodes / 2, 7);
    let queries = [
        Query {
            name: "sum_by_namespace_instant",
            expr: "sum by (namespace_name) (cpu_usage_rate{type=\"pod\"})".into(),
            range: false,
        },
        Query {
            name: "sum_by_namespace_range_15m_15s",
            expr: "sum by (namespace_name) (cpu_usage_rate{type=\"pod\"})".into(),
            range: true,
        },
        Query {
            name: "one_pod_memory_working_set_range_15m",
            expr: format!(
                "memory_working_set{{type=\"pod\",namespace_name=\"{ns}\",pod_name=\"{pod}\"}}"
            ),
            range: true,
        },
        Query {
            name: "topk10_rate_network_rx_5m",
            expr: "topk(10, rate(network_rx_total{type=\"pod\"}[5m]))".into(),
            range: false,
        },
        // The web UI overview's three instant queries over every pod (issue 17), as
        // dashboards/assets/app.js builds them at 15 s resolution.
        Query {
            name: "overview_tiles",
            expr: tagged(
                "series",
                &[
                    ("count(memory_working_set{type=\"node\"})", "nodes"),
                    ("count(memory_working_set{type=\"pod\"})", "pods"),
                    ("count(count by (namespace_name) (memory_working_set{type=\"pod\"}))", "namespaces"),
                    ("count(memory_working_set{type=\"pod_container\"})", "containers"),
                    ("count(time() - timestamp(memory_working_set{type=\"node\"}) > 45)", "stale"),
                    ("sum(cpu_usage_rate{type=\"node\"}) / 1000", "cpu"),
                    ("sum(memory_working_set{type=\"node\"})", "memory"),
                ],
            ),
            range: false,
        },
        Query {
            name: "overview_node_table",
            expr: tagged(
                "__vigil_col",
                &[
                    ("max by (nodename) (cpu_usage_rate{type=\"node\"} / 1000)", "cpu"),
                    ("max by (nodename) (cpu_node_capacity{type=\"node\"} / 1000)", "cpucap"),
                    ("max by (nodename) (memory_working_set{type=\"node\"})", "mem"),
                    ("max by (nodename) (memory_node_capacity{type=\"node\"})", "memcap"),
                    ("max by (nodename) (filesystem_usage{type=\"node\"})", "fs"),
                    ("max by (nodename) (filesystem_limit{type=\"node\"})", "fslim"),
                    ("count by (nodename) (memory_working_set{type=\"pod\"})", "pods"),
                    ("max by (nodename) (time() - timestamp(memory_working_set{type=\"node\"}))", "age"),
                ],
            ),
            range: false,
        },
        Query {
            name: "overview_top_pods",
            expr: tagged(
                "series",
                &[
                    ("topk(10, cpu_usage_rate{type=\"pod\"}) / 1000", "cpu"),
                    ("topk(10, memory_working_set{type=\"pod\"})", "mem"),
                ],
            ),
            range: false,
        },
    ];
    let window_start = at - 15 * 60 * 1000 + 15_000;
    let engine = Engine::default();
    let mut g = c.benchmark_group("promql_1000_nodes");
    g.sample_size(10);
    for q in &queries {
        // Checked once: the answer is not empty.
        let r = if q.range {
            engine.range(&store, &q.expr, window_start, at, 15_000)
        } else {
            engine.instant(&store, &q.expr, at)
        }
        .unwrap_or_else(|e| panic!("{}: {e}", q.expr));
        assert!(!matches!(&r.value, vigil_promql::Value::Vector(v) if v.is_empty()), "{}", q.expr);
        g.bench_function(q.name, |b| {
            b.iter(|| {
                if q.range {
                    engine.range(&store, &q.expr, window_start, at, 15_000)
                } else {
                    engine.instant(&store, &q.expr, at)
                }
                .unwrap()
            })
        });
    }
    g.finish();

    // The peer: median of 10 answers of its HTTP API per query (after one warm-up answer).
    if let Some(p) = &prom {
        for q in &queries {
            let secs = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
            let (path, params) = if q.range {
                (
                    "query_range",
                    vec![
                        ("query", q.expr.clone()),
                        ("start", secs(window_start)),
                        ("end", secs(at)),
                        ("step", "15".to_string()),
                    ],
                )
            } else {
                ("query", vec![("query", q.expr.clone()), ("time", secs(at))])
            };
            let mut times = Vec::new();
            for i in 0..11 {
                let t0 = Instant::now();
                let r = http
                    .get(format!("{}/api/v1/{path}", p.url))
                    .query(&params)
                    .send()
                    .expect("prometheus query");
                let dt = t0.elapsed();
                assert!(
                    r.status().is_success() && r.text.contains("\"result\":[{"),
                    "{}: {}",
                    q.expr,
                    &r.text[..r.text.len().min(300)]
                );
                if i > 0 {
                    times.push(dt);
                }
            }
            times.sort();
            eprintln!(
                "prometheus {}: median {:.2} ms (min {:.2}, max {:.2}) over 10 HTTP answers",
                q.name,
                times[5].as_secs_f64() * 1000.0,
                times[0].as_secs_f64() * 1000.0,
                times[9].as_secs_f64() * 1000.0
            );
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
