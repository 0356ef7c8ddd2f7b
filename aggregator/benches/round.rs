//! One aggregation round without the network: parse every node's Summary document, compute
//! rates and aggregates, append to the store. 100 and 1,000 simulated nodes × 30 pods × 2
//! containers. The floor in the same run: parsing the documents alone (serde_json).

/// The allocator the `vigil` binary uses (src/main.rs), so the figures are the binary's; run
/// with the binary's allocator settings in the environment:
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=1000`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vigil_aggregator::processors::{Decoder, Processor};
use vigil_aggregator::sim::{self, Shape, Sim};
use vigil_aggregator::store::Store;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("aggregator_round");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for nodes in [100usize, 1000] {
        let sim = Sim::new(Shape::heapster(nodes));
        let bodies = sim::bodies(&sim, Utc::now());
        let mb: usize = bodies.iter().map(|b| b.len()).sum::<usize>() / 1_000_000;
        eprintln!("{nodes} nodes: {mb} MB of Summary JSON per round");
        g.bench_with_input(
            BenchmarkId::new("parse_only_floor", nodes),
            &bodies,
            |b, bodies| b.iter(|| sim::parse_bodies(bodies)),
        );
        // Steady state: each iteration is the next round (15 s later) of a warm processor and store.
        let store = Store::new(15 * 60 * 1000, 10_000_000);
        let mut proc = Processor::new(Duration::from_secs(900));
        let decoder = Decoder::default();
        let mut t = Utc::now();
        for _ in 0..2 {
            t += chrono::Duration::seconds(15);
            let batch = proc.process_owned(t, sim::decode_bodies(&decoder, &sim::bodies(&sim, t)));
            store.ingest(&batch).unwrap();
        }
        g.bench_function(BenchmarkId::new("parse_process_store", nodes), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    t += chrono::Duration::seconds(15);
                    let bodies = sim::bodies(&sim, t);
                    let start = Instant::now();
                    let batch = proc.process_owned(t, sim::decode_bodies(&decoder, &bodies));
                    store.ingest(&batch).unwrap();
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
