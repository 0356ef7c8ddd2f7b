//! Fills the store's whole window without waiting for wall-clock time: `rounds` simulated
//! rounds 15 s apart (virtual time) of `nodes` × 30 pods × 2 containers, each serialized to
//! JSON, parsed, processed and stored exactly as a live round is. Prints the CPU seconds of
//! the aggregator's part per round (generation and serialization excluded) and the process's
//! resident memory at checkpoints. Used for BENCHMARKS.md.
//!
//! cargo run --release -p vigil-aggregator --features perf --example window_memory -- <nodes> <rounds>

/// The allocator the `vigil` binary uses (src/main.rs), so the figures are the binary's; run
/// with the binary's allocator settings in the environment:
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=1000`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use chrono::Utc;
use vigil_aggregator::processors::Processor;
use vigil_aggregator::sim::{self, Shape, Sim};
use vigil_aggregator::store::Store;

fn status(key: &str) -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        .unwrap_or_default()
}

/// CPU seconds (user + system) this process has used; it is single-threaded here.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: window_memory <nodes> <rounds>");
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(60);
    let sim = Sim::new(Shape::heapster(nodes));
    let store = Store::new(15 * 60 * 1000, 10_000_000);
    let mut proc = Processor::new(Duration::from_secs(900));
    let decoder = vigil_aggregator::processors::Decoder::default();
    let mut latest = None;
    let mut t = Utc::now();
    let mut busy = 0.0f64;
    for r in 1..=rounds {
        t += chrono::Duration::seconds(15);
        // As the live aggregator: each body is decoded straight into its node's sets as it
        // arrives and dropped (the scraper holds at most its concurrency's bodies). Bodies are
        // generated 50 at a time outside the measured CPU.
        let mut docs = Vec::with_capacity(nodes);
        for lo in (0..nodes).step_by(50) {
            let bodies: Vec<Vec<u8>> = (lo..(lo + 50).min(nodes))
                .map(|i| serde_json::to_vec(&sim.summary(i, t)).expect("serialize"))
                .collect();
            let s = cpu_seconds();
            for (i, b) in (lo..).zip(&bodies) {
                docs.push(
                    decoder
                        .decode(&sim::node_name(i), "", Some(8.0), b)
                        .expect("simulated document decodes"),
                );
            }
            busy += cpu_seconds() - s;
        }
        let start = cpu_seconds();
        let batch = proc.process_owned(t, docs);
        store.ingest(&batch).unwrap();
        // The live aggregator keeps the newest batch for /api/v1/metric-export and the sinks.
        latest = Some(std::sync::Arc::new(batch));
        busy += cpu_seconds() - start;
        if r == 1 || r % 10 == 0 || r == rounds {
            println!(
                "nodes={nodes} round={r} cpu_s_per_round={:.3} VmRSS_kB={} VmHWM_kB={} series={} points_bytes={}",
                busy / r as f64,
                status("VmRSS:"),
                status("VmHWM:"),
                store.stats.series.load(std::sync::atomic::Ordering::Relaxed),
                store.points_heap_bytes()
            );
        }
    }
    // Query latency on the full window: the model API's pod cpu/usage_rate lookup.
    let mut lat = Vec::new();
    for i in 0..2000usize {
        let (pod, ns) = vigil_aggregator::sim::pod_ref(&sim.shape, (i * 7919) % nodes, i % 30);
        let key = format!("namespace:{ns}/pod:{pod}");
        let s = Instant::now();
        let r = store
            .query(&key, "cpu/usage_rate", None, i64::MIN, i64::MAX)
            .expect("pod exists");
        lat.push(s.elapsed());
        assert!(!r[0].points.is_empty());
    }
    lat.sort();
    println!(
        "store_query_p50_us={} p99_us={}",
        lat[1000].as_micros(),
        lat[1980].as_micros()
    );
    drop(latest);
}
