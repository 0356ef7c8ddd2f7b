//! The engine alone over the in-memory storage at the size of 1,000 nodes' pods: 30,000 pod
//! series per metric (plus 60,000 container series the selectors must not touch), 15 minutes
//! at 15 s resolution.

use criterion::{criterion_group, criterion_main, Criterion};
use vigil_promql::testing::MemStorage;
use vigil_promql::{Engine, Labels, Value};

const NODES: usize = 1000;
const PODS_PER_NODE: usize = 30;
const NAMESPACES: usize = 20;
const STEP_MS: i64 = 15_000;
const POINTS: i64 = 61; // 15 minutes at 15 s
const END_MS: i64 = 1_700_000_000_000;

fn storage() -> MemStorage {
    let mut s = MemStorage::new();
    let start = END_MS - (POINTS - 1) * STEP_MS;
    for node in 0..NODES {
        for pod in 0..PODS_PER_NODE {
            let p = node * PODS_PER_NODE + pod;
            for (ty, containers) in [("pod", 1), ("pod_container", 2)] {
                for c in 0..containers {
                    for metric in ["cpu_usage_rate", "memory_working_set", "network_rx_total"] {
                        let mut l = Labels::new();
                        l.insert("__name__".into(), metric.into());
                        l.insert("type".into(), ty.into());
                        l.insert("nodename".into(), format!("node-{node}"));
                        l.insert("namespace_name".into(), format!("ns-{}", p % NAMESPACES));
                        l.insert("pod_name".into(), format!("pod-{p}"));
                        if ty == "pod_container" {
                            l.insert("container_name".into(), format!("c-{c}"));
                        }
                        for i in 0..POINTS {
                            let v = match metric {
                                "network_rx_total" => (p as f64) * 1000.0 + i as f64 * 1500.0,
                                _ => (p % 97) as f64 + i as f64,
                            };
                            s.add(&l, start + i * STEP_MS, v);
                        }
                    }
                }
            }
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let s = storage();
    let engine = Engine::default();
    let start = END_MS - (POINTS - 1) * STEP_MS;
    let sum = r#"sum by (namespace_name) (cpu_usage_rate{type="pod"})"#;
    let r = engine.instant(&s, sum, END_MS).unwrap();
    assert!(matches!(&r.value, Value::Vector(v) if v.len() == NAMESPACES));

    // The storage's share of the instant query: selecting the 30,000 series.
    let m = vec![
        vigil_promql::Matcher::new(vigil_promql::MatchOp::Equal, "__name__", "cpu_usage_rate").unwrap(),
        vigil_promql::Matcher::new(vigil_promql::MatchOp::Equal, "type", "pod").unwrap(),
    ];
    let mut g = c.benchmark_group("promql");
    g.sample_size(10);
    g.bench_function("memstorage_select_30k_series_15m", |b| {
        let hints = vigil_promql::Hints::default();
        b.iter(|| vigil_promql::Storage::select(&s, &m, start - 300_000, END_MS, &hints).unwrap())
    });
    g.sample_size(10);
    g.bench_function("sum_by_namespace_instant_30k_series", |b| {
        b.iter(|| engine.instant(&s, sum, END_MS).unwrap())
    });
    g.bench_function("sum_by_namespace_range_15m_step15s", |b| {
        b.iter(|| engine.range(&s, sum, start, END_MS, STEP_MS).unwrap())
    });
    g.bench_function("topk10_rate5m_network_rx_instant", |b| {
        b.iter(|| {
            engine
                .instant(&s, r#"topk(10, rate(network_rx_total{type="pod"}[5m]))"#, END_MS)
                .unwrap()
        })
    });
    g.bench_function("one_pod_memory_range_15m", |b| {
        b.iter(|| {
            engine
                .range(
                    &s,
                    r#"memory_working_set{type="pod",pod_name="pod-12345"}"#,
                    start,
                    END_MS,
                    STEP_MS,
                )
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
