//! Where the aggregator's bytes live: a counting global allocator reports the live heap after
//! each stage of a simulated round (documents parsed, batch built, stored, previous batch
//! dropped) and the share of each long-lived part. Used for BENCHMARKS.md's memory profile.
//!
//! cargo run --release -p vigil-aggregator --features perf --example heap_profile -- <nodes> <rounds>
//!
//! It also writes dhat-heap.json (allocation sites at the peak; view with dhat's viewer).

use std::time::Duration;

use chrono::Utc;
use vigil_aggregator::processors::Processor;
use vigil_aggregator::sim::{self, Shape, Sim};
use vigil_aggregator::store::Store;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn mb() -> f64 {
    dhat::HeapStats::get().curr_bytes as f64 / 1e6
}

fn main() {
    let _profiler = dhat::Profiler::new_heap();
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: heap_profile <nodes> <rounds>");
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(10);
    let sim = Sim::new(Shape::heapster(nodes));
    let store = Store::new(15 * 60 * 1000, 10_000_000);
    let mut proc = Processor::new(Duration::from_secs(900));
    let decoder = vigil_aggregator::processors::Decoder::default();
    let mut latest = None;
    let mut t = Utc::now();
    for r in 1..=rounds {
        t += chrono::Duration::seconds(15);
        let bodies = sim::bodies(&sim, t);
        let base = mb();
        let docs = sim::decode_bodies(&decoder, &bodies);
        let docs_mb = mb() - base;
        drop(bodies);
        let before_proc = mb();
        let batch = proc.process_owned(t, docs);
        let proc_mb = mb() - before_proc;
        let before_store = mb();
        store.ingest(&batch).unwrap();
        let store_delta = mb() - before_store;
        let peak_hint = mb();
        latest = Some(std::sync::Arc::new(batch));
        let after = mb();
        println!(
            "round={r} live_MB={after:.1} decoded_docs_MB={docs_mb:.1} process_MB(new batch + rate state delta)={proc_mb:.1} store_delta_MB={store_delta:.1} live_before_old_batch_dropped_MB={peak_hint:.1} points_bytes_MB={:.1}",
            store.points_heap_bytes() as f64 / 1e6
        );
    }
    let with_all = mb();
    drop(latest);
    let no_batch = mb();
    drop(proc);
    let no_rates = mb();
    drop(store);
    println!(
        "newest_batch_MB={:.1} rate_state_MB={:.1} store_MB={:.1} rest_MB={:.1}",
        with_all - no_batch,
        no_batch - no_rates,
        no_rates - mb(),
        mb()
    );
}
