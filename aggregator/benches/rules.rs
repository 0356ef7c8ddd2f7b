//! Rule evaluation over the store at 1,000 nodes × 30 pods × 2 containers: 1,000 threshold
//! rules (one per node, over its 30 pods' working sets: 30,000 series per round) evaluated once
//! through the in-process engine, as the aggregator's rule groups do every 15 s.
//!
//! The peer, in the same run: Debian's Prometheus 2.42 with the same rule file over the same
//! samples of `memory_working_set` (every type: the metric the rules select from, exported from
//! the store and backfilled with `promtool tsdb create-blocks-from openmetrics`); its own
//! `prometheus_rule_group_duration_seconds` gives its time per round.
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
    let first_ms = (t + chrono::Duration::seconds(15)).timestamp_millis();
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
    let (prom_round, prom_series) = prometheus_round(&query, &text, first_ms, at);
    eprintln!(
        "rules bench peer: Prometheus 2.42, the same 1,000 rules over the same {prom_series} \
         memory_working_set series (only those: backfilled): one round {:.1} ms \
         (mean of its groups' durations x 10 groups, groups run concurrently)",
        prom_round * 1000.0
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

/// Kills the peer on every path.
struct Peer(std::process::Child);
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus evaluating `rules` over the store's `memory_working_set` samples from `start_ms`
/// to `end_ms`: returns (seconds per round of all groups, series exported).
fn prometheus_round(query: &StoreQuery, rules: &str, start_ms: i64, end_ms: i64) -> (f64, usize) {
    use std::fmt::Write as _;
    use std::process::{Command, Stdio};
    let series = vigil_alerting::Query::range(query, "memory_working_set", start_ms, end_ms, 15_000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut om = String::from("# TYPE memory_working_set gauge\n");
    for s in &series {
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
            .collect();
        let labels = labels.join(",");
        for (t, v) in s.points.iter().filter(|(_, v)| v.is_finite()) {
            let _ = writeln!(om, "memory_working_set{{{labels}}} {v} {}.{:03}", t / 1000, t % 1000);
        }
    }
    om.push_str("# EOF\n");
    let input = dir.path().join("data.om");
    std::fs::write(&input, om).unwrap();
    let tsdb = dir.path().join("tsdb");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&tsdb)
        .output()
        .expect("promtool must be installed (Debian package prometheus)");
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global: {evaluation_interval: 15s}\nrule_files: [rules.yml]\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _peer = Peer(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // The samples end before the backfill does: let the rules see them.
            .arg("--query.lookback-delta=1h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus must be installed (Debian package prometheus)"),
    );
    // Three evaluations of every group, then its mean group duration (at most 3 minutes).
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let Ok(text) = reqwest::blocking::get(&metrics_url).and_then(|r| r.text()) else {
            assert!(Instant::now() < deadline, "prometheus did not answer");
            continue;
        };
        let value = |name: &str| -> f64 {
            text.lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        let evaluated = value("prometheus_rule_evaluations_total{");
        let failed = value("prometheus_rule_evaluation_failures_total{");
        assert!(failed == 0.0, "prometheus failed {failed} rule evaluations");
        if evaluated >= 3000.0 {
            let (sum, count) = (
                value("prometheus_rule_group_duration_seconds_sum"),
                value("prometheus_rule_group_duration_seconds_count"),
            );
            return (sum / count * 10.0, series.len());
        }
        assert!(Instant::now() < deadline, "prometheus evaluated {evaluated} rules in 3 minutes");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
