//! Rule evaluation over the store at 1,000 nodes × 30 pods × 2 containers: 1,000 threshold
//! rules (one per node, over its 30 pods' working sets: 30,000 series per round) evaluated once
//! through the in-process engine, as the aggregator's rule groups do every 15 s.
//!
//! `cargo bench -p vigil-aggregator --bench rules -- --warm-up-time 1 --measurement-time 3`
//! Environment: `RULES_BENCH_NODES` (1000), `RULES_BENCH_ROUNDS` (8 rounds 15 s apart in the store).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use vigil_aggregator::alerting::{StoreQuery, StoreWriter};
use vigil_aggregator::processors::{Decoder, Processor};
use vigil_aggregator::sim::{self, Shape, Sim};
use vigil_aggregator::store::Store;
use vigil_alerting::rules::template::Env;
use vigil_alerting::rules::{EvalOptions, GroupState};
use vigil_promql::Engine;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn bench(c: &mut Criterion) {
    let nodes = env_usize("RULES_BENCH_NODES", 1000);
    let rounds = env_usize("RULES_BENCH_ROUNDS", 8);
    let sim = Sim::new(Shape::heapster(nodes));
    let store = Arc::new(Store::new(15 * 60 * 1000, 10_000_000));
    let mut proc = Processor::new(Duration::from_secs(900));
    let decoder = Decoder::default();
    let mut t = Utc::now() - chrono::Duration::seconds(15 * rounds as i64 + 60);
    let mut round_t = Duration::ZERO;
    for _ in 0..rounds {
        t += chrono::Duration::seconds(15);
        let bodies = sim::bodies(&sim, t);
        let t0 = Instant::now();
        let batch = proc.process_owned(t, sim::decode_bodies(&decoder, &bodies));
        store.ingest(&batch).unwrap();
        round_t += t0.elapsed();
    }
    // 1,000 rules in 10 groups of 100, one per node.
    let mut text = String::from("groups:\n");
    for g in 0..10 {
        text.push_str(&format!("- name: nodes-{g}\n  interval: 15s\n  rules:\n"));
        for i in (g * nodes / 10)..((g + 1) * nodes / 10) {
            text.push_str(&format!(
                "  - alert: PodMemoryHigh\n    expr: memory_working_set{{type=\"pod\",nodename=\"{}\"}} > 1e12\n    for: 5m\n    labels: {{severity: warning}}\n",
                sim::node_name(i)
            ));
        }
    }
    let file = vigil_alerting::rules::file::parse("bench.yml", &text).unwrap();
    let mut groups: Vec<GroupState> = file.groups.into_iter().map(GroupState::new).collect();
    let query = StoreQuery { store: store.clone(), engine: Engine::default() };
    let writer = StoreWriter(store.clone());
    let opts = EvalOptions::default();
    let env = Env::default();
    let at = t.timestamp_millis();
    let series: usize = groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| vigil_alerting::Query::instant(&query, &r.rule.expr.replace(" > 1e12", ""), at).unwrap().len())
        .sum();
    // One round outside criterion for the summary line.
    let t0 = Instant::now();
    for g in &mut groups {
        g.eval(at, &query, &writer, &opts, &env);
    }
    let one = t0.elapsed();
    eprintln!(
        "rules bench: {nodes} nodes, {} series in the store, 1,000 rules over {series} series; \
         one round {:.1} ms ({:.0} series/s on one core, {:.2} % of a 15 s interval); \
         the aggregator's ingest of a round {:.0} ms",
        store.stats.series.load(std::sync::atomic::Ordering::Relaxed),
        one.as_secs_f64() * 1000.0,
        series as f64 / one.as_secs_f64(),
        one.as_secs_f64() / 15.0 * 100.0,
        round_t.as_secs_f64() * 1000.0 / rounds as f64,
    );
    let mut g = c.benchmark_group("rules");
    g.sample_size(10);
    g.bench_function("round_1000_threshold_rules", |b| {
        b.iter(|| {
            for grp in &mut groups {
                grp.eval(at, &query, &writer, &opts, &env);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
