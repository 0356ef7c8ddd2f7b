//! Cost of `Baseline::update` per sample (none/daily/weekly/auto, a model past its warm-up),
//! beside a rolling z-score over one day (the Prometheus-only recipe, as a floor measured in the
//! same run), and of one host comparison of 10 and 1,000 members over a 15 min window.
//!
//! `cargo bench -p vigil-alerting --bench anomaly -- --warm-up-time 1 --measurement-time 3`

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use vigil_alerting::anomaly::outlier::{evaluate, OutlierConfig};
use vigil_alerting::anomaly::{Baseline, BaselineConfig, Seasonality};
use vigil_alerting::RangeSeries;

const STEP_MS: i64 = 300_000;
const T0: i64 = 1_704_067_200_000;

fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x % 20_001) as f64 / 10_000.0 - 1.0
}

fn value(i: i64) -> f64 {
    let hour = ((i * STEP_MS) % 86_400_000) as f64 / 3_600_000.0;
    50.0 - 20.0 * (hour / 24.0 * std::f64::consts::TAU).cos() + 3.0 * noise(i)
}

/// A rolling mean/stddev over the last 288 samples (one day at 5 min): the floor.
struct ZScore {
    ring: Vec<f64>,
    head: usize,
    sum: f64,
    sum2: f64,
}

impl ZScore {
    fn update(&mut self, x: f64) -> bool {
        let n = self.ring.len() as f64;
        let mean = self.sum / n;
        let sd = (self.sum2 / n - mean * mean).max(0.0).sqrt();
        let old = std::mem::replace(&mut self.ring[self.head], x);
        self.head = (self.head + 1) % self.ring.len();
        self.sum += x - old;
        self.sum2 += x * x - old * old;
        (x - mean).abs() > 3.0 * sd
    }
}

fn baseline(c: &mut Criterion) {
    // 5 weeks of history: past warm-up, profiles filled, auto has chosen.
    const HISTORY: i64 = 5 * 7 * 288;
    const BATCH: i64 = 1000;
    let mut g = c.benchmark_group("baseline_update_x1000");
    for s in [
        Seasonality::None,
        Seasonality::Daily,
        Seasonality::Weekly,
        Seasonality::Auto,
    ] {
        let mut config = BaselineConfig::new("value");
        config.seasonality = s;
        let mut model = Baseline::new(&config);
        for i in 0..HISTORY {
            model.update(T0 + i * STEP_MS, value(i)).unwrap();
        }
        println!(
            "{s:?}: {} bytes per series, seasonality in use {:?}",
            model.bytes(),
            model.active_seasonality()
        );
        g.bench_function(format!("{s:?}").to_lowercase(), |b| {
            b.iter_batched_ref(
                || model.clone(),
                |m| {
                    for i in HISTORY..HISTORY + BATCH {
                        black_box(m.update(T0 + i * STEP_MS, value(i)).unwrap());
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    let values: Vec<f64> = (0..288).map(value).collect();
    let z = ZScore {
        sum: values.iter().sum(),
        sum2: values.iter().map(|v| v * v).sum(),
        ring: values,
        head: 0,
    };
    g.bench_function("rolling_zscore_floor", |b| {
        b.iter_batched_ref(
            || ZScore {
                ring: z.ring.clone(),
                ..z
            },
            |m| {
                for i in HISTORY..HISTORY + BATCH {
                    black_box(m.update(value(i)));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn outlier(c: &mut Criterion) {
    let mut g = c.benchmark_group("outlier_evaluate_15m_at_15s");
    for n in [10usize, 1000] {
        let series: Vec<RangeSeries> = (0..n)
            .map(|k| RangeSeries {
                labels: BTreeMap::from([("nodename".to_string(), format!("node-{k}"))]),
                points: (0..60)
                    .map(|i| (i * 15_000, 50.0 + 3.0 * noise(i * 7919 + k as i64)))
                    .collect(),
            })
            .collect();
        let config = OutlierConfig::new("node_cpu", &["nodename"]);
        g.bench_function(format!("{n}_members"), |b| {
            b.iter(|| black_box(evaluate(&config, &series)))
        });
    }
    g.finish();
}

criterion_group!(benches, baseline, outlier);
criterion_main!(benches);
